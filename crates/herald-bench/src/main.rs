//! `herald-bench`: Herald's performance, side by side with this machine's socket ceiling
//! and with Mosquitto. It drives a separate `herald serve` process (started here, or one
//! the user runs), reads that process's memory and CPU from `/proc`, and spreads the
//! simulated devices over `herald-bench fleet` child processes. `scripts/bench` runs every
//! scenario and `herald-bench report` turns the JSON results into docs/PERFORMANCE.md.

mod ceiling;
mod charts;
mod drive;
mod fleet;
mod fleets;
mod procfs;
mod report;
mod scenarios;
mod sender;
mod servers;
mod stats;
mod wire;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use scenarios::{Common, FanoutArgs, IngressArgs, LatencyArgs, RecoveryArgs};
use servers::HeraldSource;

#[derive(Debug, Parser)]
#[command(
    name = "herald-bench",
    version,
    about = "Measure a separate Herald process against a bare WebSocket ceiling and Mosquitto."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct GlobalArgs {
    /// Directory for the JSON results (one file per scenario).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "bench-results"
    )]
    out: PathBuf,
    /// The herald binary to start (`herald serve` on a fresh temp data directory and a free
    /// port). Default: `herald` next to this executable.
    #[arg(long, global = true, value_name = "PATH")]
    herald_bin: Option<PathBuf>,
    /// Measure a node you run instead (its memory and CPU are then not measured).
    #[arg(long, global = true, value_name = "URL", requires = "bootstrap")]
    server: Option<String>,
    /// With --server: the node's bootstrap.json (admin_token, client_id, service_account_file).
    #[arg(long, global = true, value_name = "FILE", requires = "server")]
    bootstrap: Option<PathBuf>,
    /// Devices per client process (each device is one socket; the limit is 20,000 files).
    #[arg(long, global = true, default_value_t = 15_000)]
    devices_per_process: usize,
    /// Device handshakes in flight at once, over all client processes.
    #[arg(long, global = true, default_value_t = 256)]
    connect_concurrency: usize,
    /// Seconds of quiet before and after connecting, for memory and CPU readings.
    #[arg(long, global = true, default_value_t = 2.0, hide = true)]
    settle_secs: f64,
    /// The Mosquitto broker to compare with.
    #[arg(long, global = true, value_name = "PATH", default_value = servers::MOSQUITTO_BIN)]
    mosquitto_bin: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// N devices register, get tokens and stay idle: server RSS per device, idle CPU.
    Connections(FanoutArgs),
    /// C backends send single-token notifications: accepted per second, request latency.
    Ingress(IngressArgs),
    /// N devices, requests of K tokens: delivered-and-acked per second, latency, CPU.
    Fanout(FanoutArgs),
    /// The same connections and fan-out against a bare WebSocket server (the ceiling).
    Ceiling(FanoutArgs),
    /// The same connections and fan-out against Debian's mosquitto over MQTT (QoS 1).
    Mosquitto(FanoutArgs),
    /// Fixed offered rates (open loop): latency percentiles and throughput against load.
    Latency(LatencyArgs),
    /// Queue messages for offline devices, SIGKILL the node, restart: time to recover.
    Recovery(RecoveryArgs),
    /// Write docs/PERFORMANCE.md (and its SVG charts) from a directory of results.
    Report(report::ReportArgs),
    /// A client process of simulated devices (started by the scenarios).
    #[command(hide = true)]
    Fleet {
        #[arg(long)]
        index: usize,
    },
    /// The ceiling server (started by the scenarios, as its own process).
    #[command(hide = true)]
    CeilingServer {
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
}

fn main() -> ExitCode {
    // One TLS provider for the whole process, before anything builds a TLS config.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HERALD_BENCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = cli.global;
    let common = || -> anyhow::Result<Common> {
        let herald = match (&g.server, &g.bootstrap) {
            (Some(url), Some(bootstrap)) => HeraldSource::External {
                url: url.clone(),
                bootstrap: bootstrap.clone(),
            },
            _ => HeraldSource::Spawn {
                bin: match &g.herald_bin {
                    Some(bin) => bin.clone(),
                    None => default_herald_bin()?,
                },
            },
        };
        Ok(Common {
            out: g.out.clone(),
            herald,
            per_process: g.devices_per_process,
            connect_concurrency: g.connect_concurrency.max(1),
            settle: std::time::Duration::from_secs_f64(g.settle_secs.max(0.0)),
            command: command_line(),
        })
    };
    match cli.command {
        Command::Fleet { index } => fleet::run(index).await?,
        Command::CeilingServer { listen } => ceiling::run(listen).await?,
        Command::Report(args) => report::run(&args)?,
        Command::Connections(args) => scenarios::connections(&common()?, &args).await?,
        Command::Ingress(args) => scenarios::ingress(&common()?, &args).await?,
        Command::Fanout(args) => scenarios::fanout(&common()?, &args).await?,
        Command::Ceiling(args) => scenarios::ceiling(&common()?, &args).await?,
        Command::Mosquitto(args) => {
            scenarios::mosquitto(&common()?, &args, &g.mosquitto_bin).await?
        }
        Command::Latency(args) => scenarios::latency(&common()?, &args, &g.mosquitto_bin).await?,
        Command::Recovery(args) => scenarios::recovery(&common()?, &args).await?,
    }
    if scenarios::messages_lost() {
        eprintln!(
            "error: not every message was accepted and delivered (results written; see WARNING above)."
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `herald` next to this executable (`target/release/herald` beside
/// `target/release/herald-bench`).
fn default_herald_bin() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("finding this executable")?;
    let dir = me.parent().context("this executable has no directory")?;
    // Integration tests run from target/debug/deps; the binaries are one level up.
    let candidates = [dir.join("herald"), dir.join("../herald")];
    Ok(candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| candidates[0].clone()))
}

/// This invocation as a shell command, for the results.
fn command_line() -> String {
    let mut args = std::env::args();
    let _ = args.next();
    std::iter::once("herald-bench".to_owned())
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The crate version and, when built from a git checkout, `git describe`.
pub fn version() -> String {
    match option_env!("HERALD_GIT_DESCRIBE").filter(|d| !d.is_empty()) {
        Some(describe) => format!("herald-bench {} ({describe})", env!("CARGO_PKG_VERSION")),
        None => format!("herald-bench {}", env!("CARGO_PKG_VERSION")),
    }
}
