//! The `herald` binary: argument parsing and output only; the work is in the library crates.

mod cmd;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version,
    about = "A self-hosted push service that speaks HarmonyOS Push Kit v3."
)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "HERALD_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a Herald node.
    Serve(serve::ServeArgs),
    /// Apply the store's missing schema migrations and print them.
    Migrate(cmd::migrate::MigrateArgs),
    /// Run a simulated HarmonyOS device that receives pushes.
    Device(cmd::device::DeviceArgs),
    /// Send a message through the Push Kit v3 API, signing a JWT from a key file.
    Send(cmd::send::SendArgs),
    /// Withdraw a notification by notifyId through the Push Kit revoke API.
    Revoke(cmd::revoke::RevokeArgs),
    /// Operate a server: projects, apps, keys, scenario rights, quotas (prints JSON).
    Admin(cmd::admin::AdminArgs),
    /// Development certificates: a local CA and a server certificate for HTTPS.
    Cert(cmd::cert::CertArgs),
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the annotated default configuration (TOML).
    Default,
}

fn init_logging(json: bool, default_level: &str) {
    let filter =
        EnvFilter::try_from_env("HERALD_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // One TLS provider for the whole process, before anything builds a TLS config.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    init_logging(cli.log_json, "info");
    let result = match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Migrate(args) => cmd::migrate::run(args).await,
        Command::Device(args) => cmd::device::run(args).await,
        Command::Send(args) => cmd::send::run(args).await,
        Command::Admin(args) => cmd::admin::run(args).await,
        Command::Revoke(args) => cmd::revoke::run(args).await,
        Command::Cert(args) => cmd::cert::run(args).await,
        Command::Config {
            command: ConfigCommand::Default,
        } => {
            print!("{}", herald_server::Config::annotated_default());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
