//! `herald serve`: run a node until SIGINT/SIGTERM, printing what to do next on first start.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use herald_server::{BootstrapInfo, Config, Herald};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Data directory (database, key file, bootstrap.json). Default: ./herald-data
    #[arg(long, env = "HERALD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The store: `postgres://user@host/db[?schema=NAME]` (shared by any number of
    /// nodes) or `sqlite:PATH`. Default: the embedded file herald.db in --data-dir.
    #[arg(long, env = "HERALD_STORE")]
    pub store: Option<String>,
    /// The bus between nodes sharing a store: `nats://host:4222`. Default: none.
    #[arg(long, env = "HERALD_BUS")]
    pub bus: Option<String>,
    /// Address to listen on. Default: 127.0.0.1:8080
    #[arg(long, env = "HERALD_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// TOML configuration file (`herald config default` prints one).
    #[arg(long, env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,
    /// PEM certificate chain: serve everything over TLS (with --tls-key).
    #[arg(long, env = "HERALD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "HERALD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Emulator mode, for a backend's own tests: the `/emulator/v1` API (virtual devices,
    /// the clock, faults, receipts; see docs/emulator.md), and, without --data-dir, a
    /// throwaway data directory deleted on exit.
    #[arg(long, env = "HERALD_EMULATOR")]
    pub emulator: bool,
    /// With --emulator: the project id of a first start (default: a new one).
    #[arg(long, requires = "emulator")]
    pub project_id: Option<String>,
    /// With --emulator: the client id of the first start's app (default: a new one).
    #[arg(long, requires = "emulator")]
    pub client_id: Option<String>,
    /// With --emulator: a service-account key file (Huawei's layout) to serve instead of
    /// a new key, so a backend's configuration stays the same from run to run.
    #[arg(long, requires = "emulator")]
    pub key_file: Option<PathBuf>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    // Emulator mode without --data-dir: a throwaway directory, removed when this returns.
    let mut throwaway = None;
    // (A data directory named by the flag, HERALD_DATA_DIR or the config file is kept.)
    if args.emulator && args.data_dir.is_none() && config.data_dir == Config::default().data_dir {
        let dir = tempfile::Builder::new()
            .prefix("herald-emulator-")
            .tempdir()
            .context("cannot create a throwaway data directory")?;
        config.data_dir = dir.path().to_owned();
        // Nothing here outlives the process: commit without waiting for the disk.
        if std::env::var_os("HERALD_SQLITE_SYNCHRONOUS").is_none() {
            config.sqlite_synchronous = "normal".into();
        }
        throwaway = Some(dir);
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(store) = args.store {
        config.store = store;
    }
    if let Some(bus) = args.bus {
        config.bus = bus;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls_cert = cert.display().to_string();
        config.tls_key = key.display().to_string();
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let data_dir = config.data_dir.clone();
    if args.emulator {
        let choices = herald_server::bootstrap::Choices {
            project_id: args.project_id,
            client_id: args.client_id,
            key_file: match &args.key_file {
                Some(path) => Some(herald_client::sender::load_key_file(path)?),
                None => None,
            },
        };
        let herald = Herald::prepare_emulator(listener, config, choices).await?;
        print_emulator(&herald, &data_dir, throwaway.is_some());
        herald.run(shutdown_signal()).await?;
        drop(throwaway);
        return Ok(ExitCode::SUCCESS);
    }
    let herald = Herald::prepare_with_system_clock(listener, config).await?;
    match herald.bootstrap_info() {
        Some(info) => print_what_next(info, &data_dir),
        None => eprintln!(
            "Herald is serving at {} (data in {}; see bootstrap.json there).",
            herald.public_url(),
            data_dir.display()
        ),
    }
    herald.run(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

fn print_what_next(info: &BootstrapInfo, data_dir: &std::path::Path) {
    // The path of this binary, so the commands below can be pasted as they are (a
    // newcomer running `cargo run` has no `herald` on their PATH).
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "herald".to_owned());
    eprintln!(
        "\
Herald is serving at {url}  (first start: bootstrapped {dir})

  project_id  {project}
  client_id   {client}  ({package})
  admin       {user} / see {dir}/bootstrap.json
  key file    {key}

What next:
  1. Connect a simulated device (prints its push token):
       {exe} device --server {url} --client-id {client} --json
  2. Send it a notification with the service-account key:
       {exe} send --key-file {key} --server {url} --token <TOKEN> --title Hello --body World
     or POST {url}/v3/{project}/messages:send with a PS256 JWT signed with that key.
  3. Open the console (push report, rights, keys, receipts) at {console}
     and sign in as {user} with the password in bootstrap.json.
",
        url = info.push_api_url,
        dir = data_dir.display(),
        project = info.project_id,
        client = info.client_id,
        package = info.package_name,
        user = info.admin_username,
        console = info.console_url,
        key = info.service_account_file,
    );
}

/// Where an emulator's files and API are, for the person or the test suite that started it.
fn print_emulator(herald: &Herald, data_dir: &std::path::Path, throwaway: bool) {
    let url = herald.public_url();
    let bootstrap = data_dir.join(herald_server::bootstrap::BOOTSTRAP_FILE);
    let key = data_dir.join(herald_server::bootstrap::SERVICE_ACCOUNT_FILE);
    let lifetime = if throwaway {
        "throwaway: deleted on exit"
    } else {
        "kept"
    };
    let ids = match herald.bootstrap_info() {
        Some(info) => format!(
            "  project_id  {}\n  client_id   {}\n",
            info.project_id, info.client_id
        ),
        None => String::new(),
    };
    eprintln!(
        "\
Herald emulator is serving at {url}
  bootstrap   {bootstrap}
  key file    {key}
  data        {dir} ({lifetime})
{ids}  emulator API {url}/emulator/v1 (admin token in bootstrap.json; docs/emulator.md)",
        bootstrap = bootstrap.display(),
        key = key.display(),
        dir = data_dir.display(),
    );
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("Shutdown requested.");
}
