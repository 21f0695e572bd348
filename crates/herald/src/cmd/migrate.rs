//! `herald migrate`: bring a store's schema up to date (what every node also does on
//! start) and print the migrations applied.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use herald_server::{Config, storage};

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The store: `postgres://user@host/db[?schema=NAME]` or `sqlite:PATH`. Default: the
    /// embedded file herald.db in --data-dir.
    #[arg(long, env = "HERALD_STORE")]
    pub store: Option<String>,
    /// Data directory of the embedded default store. Default: ./herald-data
    #[arg(long, env = "HERALD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML configuration file whose `store` and `data_dir` to use.
    #[arg(long, env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,
}

pub async fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(store) = args.store {
        config.store = store;
    }
    let durability = storage::durability(&config)?;
    let target = storage::target(&config.store, &config.data_dir, durability, None)?;
    if !target.is_shared() {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating {}", config.data_dir.display()))?;
    }
    let name = match &target.options.postgres.schema {
        Some(schema) if target.is_shared() => format!("{} (schema {schema})", target.redacted()),
        _ => target.redacted(),
    };
    let applied = storage::migrate(&target)
        .await
        .with_context(|| format!("migrating {name}"))?;
    if applied.is_empty() {
        println!("{name}: up to date, nothing applied");
    } else {
        println!(
            "{}: applied {} migration(s):",
            target.redacted(),
            applied.len()
        );
        for name in &applied {
            println!("  {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
