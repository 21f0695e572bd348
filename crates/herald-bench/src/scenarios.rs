//! The scenarios: each starts its own server process(es) and fleets, measures, prints its
//! numbers and writes one JSON file into `--out` (`connections.json`, `ingress.json`,
//! `fanout.json`, `ceiling.json`, `mosquitto.json`, `latency.json`, `recovery.json`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::drive::{self, Plan};
use crate::fleets::Fleets;
use crate::procfs::{Usage, now_us};
use crate::sender::Sender;
use crate::servers::{Ceiling, Herald, HeraldSource, Mosquitto};
use crate::stats::{Percentiles, cdf_points, per_sec, round2, round4};
use crate::wire::{Collected, DeviceTarget};

/// Points kept of each latency distribution (enough to draw its CDF).
const CDF_POINTS: usize = 200;
/// Descriptors a server needs besides its device sockets (database, logs, listeners).
const SERVER_SPARE_FILES: u64 = 256;
/// A load is more than a target can take when it delivers less than this share of it.
const SATURATED: f64 = 0.8;
/// How long the server's acks may take to be recorded after the devices sent them.
const ACK_STALL: Duration = Duration::from_secs(10);

/// What every scenario needs.
#[derive(Debug, Clone)]
pub struct Common {
    pub out: PathBuf,
    pub herald: HeraldSource,
    pub per_process: usize,
    pub connect_concurrency: usize,
    /// Quiet time before and after connecting, so that memory and CPU readings settle.
    pub settle: Duration,
    /// The command line, recorded in the results.
    pub command: String,
}

impl Common {
    fn header(&self, scenario: &str) -> Value {
        json!({
            "scenario": scenario,
            "version": crate::version(),
            "command": self.command,
            "started_unix": now_us() / 1_000_000,
            "machine": crate::procfs::machine(),
        })
    }

    fn write(&self, name: &str, results: Value, header: Value) -> anyhow::Result<PathBuf> {
        let mut all = match header {
            Value::Object(h) => h,
            _ => serde_json::Map::new(),
        };
        if let Value::Object(r) = results {
            all.extend(r);
        }
        let results = Value::Object(all);
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("creating {}", self.out.display()))?;
        let path = self.out.join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&results)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("Wrote {}.", path.display());
        Ok(path)
    }

    /// Copies a server's log (warnings and errors only) next to the results, as
    /// `<name>.log`, when it has anything in it: the numbers' explanation when a run went
    /// wrong, and the server's temp directory is gone after the run.
    fn keep_log(&self, name: &str, log: Option<&Path>) {
        let Some(log) = log else { return };
        let Ok(text) = std::fs::read_to_string(log) else {
            return;
        };
        if text.trim().is_empty() {
            return;
        }
        let kept = self.out.join(format!("{name}.log"));
        if std::fs::create_dir_all(&self.out).is_ok() && std::fs::write(&kept, text).is_ok() {
            println!("Server log kept in {}.", kept.display());
        }
    }

    async fn herald(&self) -> anyhow::Result<Herald> {
        let node = Herald::start(&self.herald).await?;
        node.prepare_app().await?;
        Ok(node)
    }

    /// Client processes for `devices` against a server the bench starts: the server
    /// inherits this process's open-files limit and needs a descriptor per device, so a run
    /// that cannot fit is refused up front rather than failing halfway.
    fn fleets_for_own_server(&self, devices: usize) -> anyhow::Result<Fleets> {
        let limit = crate::procfs::open_files_limit().unwrap_or(u64::MAX);
        if devices as u64 + SERVER_SPARE_FILES > limit {
            bail!(
                "{devices} devices need about {} open files in the server process, which inherits \
                 this process's limit of {limit}; use fewer devices or raise `ulimit -n`",
                devices as u64 + SERVER_SPARE_FILES
            );
        }
        Fleets::spawn(devices, self.per_process)
    }

    /// Client processes for `devices` against the Herald node (checked as above unless it
    /// is a node the user runs, whose limits are the user's).
    fn fleets_for_herald(&self, devices: usize) -> anyhow::Result<Fleets> {
        match self.herald {
            HeraldSource::Spawn { .. } => self.fleets_for_own_server(devices),
            HeraldSource::External { .. } => Fleets::spawn(devices, self.per_process),
        }
    }
}

/// The server a phase measures (memory, CPU, acks it recorded).
enum Measured<'a> {
    Herald(&'a Herald, i64),
    Ceiling(&'a Ceiling),
    Mosquitto(&'a Mosquitto),
}

impl Measured<'_> {
    fn usage(&self) -> Option<Usage> {
        match self {
            Measured::Herald(h, _) => h.usage(),
            Measured::Ceiling(c) => c.proc.usage(),
            Measured::Mosquitto(m) => m.proc.usage(),
        }
    }

    /// Acks the server recorded, once it caught up with `expected` or stopped moving.
    async fn acks_recorded(&self, expected: u64) -> Option<u64> {
        let mut last = (u64::MAX, Instant::now());
        loop {
            let now = match self {
                Measured::Herald(h, since_ms) => h.acks_recorded(*since_ms).await.ok()?,
                Measured::Ceiling(c) => c.acks_recorded().await.ok()?,
                // Mosquitto does not count PUBACKs anywhere a client can read.
                Measured::Mosquitto(_) => return None,
            };
            if now >= expected || last.1.elapsed() > ACK_STALL {
                return Some(now);
            }
            if now != last.0 {
                last = (now, Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn bar(len: u64, name: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{prefix:>22} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(len)
        .with_style(style)
        .with_prefix(name.to_owned())
}

/// Connects `fleets`' devices to `target`; memory and CPU of the server before and after,
/// and idle CPU over `idle_secs` with every device connected.
async fn connections_phase(
    label: &str,
    fleets: &mut Fleets,
    devices: usize,
    target: &DeviceTarget,
    server: &Measured<'_>,
    common: &Common,
    idle_secs: f64,
) -> anyhow::Result<(Value, Vec<String>)> {
    tokio::time::sleep(common.settle).await;
    let before = server.usage();
    let bar = bar(devices as u64, &format!("{label}: connect"));
    let started = Instant::now();
    let tokens = fleets
        .connect(target, common.connect_concurrency, &bar)
        .await?;
    let connect_secs = started.elapsed().as_secs_f64();
    bar.finish();
    tokio::time::sleep(common.settle).await;
    let after = server.usage();
    tokio::time::sleep(Duration::from_secs_f64(idle_secs)).await;
    let idle_end = server.usage();
    let rss_per_device = before
        .zip(after)
        .map(|(b, a)| a.rss_kib.saturating_sub(b.rss_kib) * 1024 / devices.max(1) as u64);
    let idle_cpu = after
        .zip(idle_end)
        .map(|(a, e)| round4(e.cpu_secs - a.cpu_secs));
    let result = json!({
        "devices": devices,
        "connected": tokens.len(),
        "connect_secs": round2(connect_secs),
        "connects_per_sec": per_sec(tokens.len() as u64, connect_secs),
        "server_rss_before_kib": before.map(|u| u.rss_kib),
        "server_rss_after_kib": after.map(|u| u.rss_kib),
        "server_rss_per_device_bytes": rss_per_device,
        "server_cpu_secs_connecting": before.zip(after).map(|(b, a)| round2(a.cpu_secs - b.cpu_secs)),
        "idle_secs": idle_secs,
        "server_idle_cpu_secs": idle_cpu,
        "server_idle_cpu_percent": idle_cpu.map(|c| round2(c / idle_secs * 100.0)),
        "client_processes": fleets.processes(),
    });
    println!(
        "{label}: {} devices connected in {:.2} s ({} /s); server RSS {} → {} KiB, {} bytes per idle device; idle CPU {}% ",
        tokens.len(),
        connect_secs,
        result["connects_per_sec"],
        shown(&result["server_rss_before_kib"]),
        shown(&result["server_rss_after_kib"]),
        shown(&result["server_rss_per_device_bytes"]),
        shown(&result["server_idle_cpu_percent"]),
    );
    Ok((result, tokens))
}

/// Sends `plan` through `sender` to `tokens` (closed loop), waits for the devices, and
/// measures the fan-out rate, latency and server CPU per 1,000 deliveries.
async fn fanout_phase(
    label: &str,
    fleets: &mut Fleets,
    sender: Sender,
    tokens: Vec<String>,
    plan: Plan,
    server: &Measured<'_>,
) -> anyhow::Result<Value> {
    fleets.collect().await?; // start from zero
    let cpu_before = server.usage();
    let accepted_bar = bar(plan.messages as u64, &format!("{label}: accepted"));
    let sent = drive::closed_loop(Arc::new(sender), Arc::new(tokens), plan, &accepted_bar).await;
    accepted_bar.finish();
    let delivered_bar = bar(sent.accepted, &format!("{label}: delivered"));
    let drain_secs = drive::wait_delivered(fleets, sent.accepted, &delivered_bar).await;
    delivered_bar.finish();
    let cpu_after = server.usage();
    let collected = fleets.collect().await?;
    let acks_recorded = server.acks_recorded(collected.acks).await;
    let result = fanout_result(
        &sent,
        &collected,
        plan,
        drain_secs,
        cpu_before,
        cpu_after,
        acks_recorded,
    );
    warn_if_lost(
        label,
        plan.messages as u64,
        sent.accepted,
        collected.delivered,
    );
    println!(
        "{label}: fan-out {} of {} delivered, {} /s (acked); latency p50 {} ms, p99 {} ms, p99.9 {} ms; server CPU per 1,000 deliveries {}",
        result["delivered"],
        result["accepted"],
        result["delivered_per_sec"],
        result["latency_ms"]["p50"],
        result["latency_ms"]["p99"],
        result["latency_ms"]["p999"],
        shown_with(&result["server_cpu_secs_per_1000"], " s"),
    );
    Ok(result)
}

#[allow(clippy::too_many_arguments)] // one call site; the numbers of one phase
fn fanout_result(
    sent: &drive::Sent,
    collected: &Collected,
    plan: Plan,
    drain_secs: f64,
    cpu_before: Option<Usage>,
    cpu_after: Option<Usage>,
    acks_recorded: Option<u64>,
) -> Value {
    let mut latencies = collected.latencies_us.clone();
    let latency = Percentiles::from_micros(&mut latencies);
    let delivery_secs = collected.last_delivery_us.saturating_sub(sent.started_us) as f64 / 1e6;
    let cpu = cpu_before
        .zip(cpu_after)
        .map(|(b, a)| a.cpu_secs - b.cpu_secs);
    json!({
        "messages": plan.messages,
        "tokens_per_request": plan.tokens_per_request,
        "concurrency": plan.concurrency,
        "send": sent,
        "accepted": sent.accepted,
        "delivered": collected.delivered,
        "duplicates": collected.duplicates,
        "connections_lost": collected.lost,
        "acks_sent_by_devices": collected.acks,
        "acks_recorded_by_server": acks_recorded,
        "delivery_secs": round2(delivery_secs),
        "delivered_per_sec": per_sec(collected.delivered, delivery_secs),
        "drain_after_last_send_secs": drain_secs,
        "latency_ms": latency,
        "latency_cdf_ms": cdf_points(&latencies, CDF_POINTS),
        "server_cpu_secs": cpu.map(round2),
        "server_cpu_secs_per_1000": cpu.filter(|_| collected.delivered > 0)
            .map(|c| round4(c / collected.delivered as f64 * 1000.0)),
    })
}

/// A number as printed; `null` (a server the bench did not start) as "not measured".
fn shown(v: &Value) -> String {
    if v.is_null() {
        "not measured".to_owned()
    } else {
        v.to_string()
    }
}

/// As [`shown`], with a unit after a measured number.
fn shown_with(v: &Value, unit: &str) -> String {
    if v.is_null() {
        shown(v)
    } else {
        format!("{v}{unit}")
    }
}

/// Says loudly when not every notification was accepted and delivered.
/// The exit status then says so too (after the results are written).
fn warn_if_lost(label: &str, messages: u64, accepted: u64, delivered: u64) {
    if accepted < messages || delivered < accepted {
        eprintln!(
            "WARNING {label}: {messages} sent, {accepted} accepted, {delivered} delivered: not every message arrived."
        );
        LOST.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Set when any phase of this run lost or refused messages.
static LOST: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether any phase of this run lost or refused messages.
pub fn messages_lost() -> bool {
    LOST.load(std::sync::atomic::Ordering::Relaxed)
}

/// Parameters of the fan-out workload, shared by Herald, the ceiling and Mosquitto.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct FanoutArgs {
    /// Simulated devices (each one socket).
    #[arg(long, default_value_t = 2000)]
    pub devices: usize,
    /// Notifications to deliver in all (round-robin over the devices).
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Tokens (devices) named in each request (Push Kit allows up to 1000).
    #[arg(long, default_value_t = 1000)]
    pub tokens_per_request: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Seconds of idle CPU measured with every device connected.
    #[arg(long, default_value_t = 5.0)]
    pub idle_secs: f64,
}

impl FanoutArgs {
    fn plan(&self) -> anyhow::Result<Plan> {
        if self.devices == 0 || self.messages == 0 || self.concurrency == 0 {
            bail!("--devices, --messages and --concurrency must be at least 1");
        }
        if !(1..=1000).contains(&self.tokens_per_request) {
            bail!("--tokens-per-request must be between 1 and 1000");
        }
        if self.tokens_per_request > self.devices {
            bail!(
                "--tokens-per-request must not exceed --devices: a request names each token once"
            );
        }
        Ok(Plan {
            messages: self.messages,
            tokens_per_request: self.tokens_per_request,
            concurrency: self.concurrency,
        })
    }
}

fn herald_target(node: &Herald) -> anyhow::Result<DeviceTarget> {
    Ok(DeviceTarget::Herald {
        ws_url: herald_client::device::ws_url(&node.url)?,
        client_id: node.client_id.clone(),
    })
}

/// `connections`: N Herald devices register, get tokens and stay idle.
pub async fn connections(common: &Common, args: &FanoutArgs) -> anyhow::Result<()> {
    let header = common.header("connections");
    let node = common.herald().await?;
    let mut fleets = common.fleets_for_herald(args.devices)?;
    let since = node_ms();
    let (result, _) = connections_phase(
        "herald",
        &mut fleets,
        args.devices,
        &herald_target(&node)?,
        &Measured::Herald(&node, since),
        common,
        args.idle_secs,
    )
    .await?;
    fleets.stop().await;
    let server = node.describe();
    common.keep_log("connections-herald", node.log());
    node.stop().await;
    common.write(
        "connections",
        json!({"target": "herald", "server": server, "connections": result}),
        header,
    )?;
    Ok(())
}

/// `fanout`: N Herald devices, requests of K tokens, C in flight.
pub async fn fanout(common: &Common, args: &FanoutArgs) -> anyhow::Result<()> {
    let plan = args.plan()?;
    let header = common.header("fanout");
    let node = common.herald().await?;
    let since = node_ms();
    let mut fleets = common.fleets_for_herald(args.devices)?;
    let connect = bar(args.devices as u64, "herald: connect");
    let tokens = fleets
        .connect(&herald_target(&node)?, common.connect_concurrency, &connect)
        .await?;
    connect.finish();
    let sender = Sender::herald(&node, plan.concurrency)?;
    let result = fanout_phase(
        "herald",
        &mut fleets,
        sender,
        tokens,
        plan,
        &Measured::Herald(&node, since),
    )
    .await?;
    let processes = fleets.processes();
    fleets.stop().await;
    let server = node.describe();
    common.keep_log("fanout-herald", node.log());
    node.stop().await;
    common.write(
        "fanout",
        json!({"target": "herald", "server": server, "devices": args.devices,
               "client_processes": processes, "fanout": result}),
        header,
    )?;
    Ok(())
}

/// `ceiling`: the same connections and fan-out against the bare WebSocket server.
pub async fn ceiling(common: &Common, args: &FanoutArgs) -> anyhow::Result<()> {
    let plan = args.plan()?;
    let header = common.header("ceiling");
    let server = Ceiling::start().await?;
    let mut fleets = common.fleets_for_own_server(args.devices)?;
    let target = DeviceTarget::Ceiling {
        ws_url: format!("{}/ws", server.url.replacen("http://", "ws://", 1)),
    };
    let measured = Measured::Ceiling(&server);
    let (connections, tokens) = connections_phase(
        "ceiling",
        &mut fleets,
        args.devices,
        &target,
        &measured,
        common,
        args.idle_secs,
    )
    .await?;
    let fanout = fanout_phase(
        "ceiling",
        &mut fleets,
        Sender::ceiling(&server.url)?,
        tokens,
        plan,
        &measured,
    )
    .await?;
    let processes = fleets.processes();
    fleets.stop().await;
    server.proc.stop().await;
    common.write(
        "ceiling",
        json!({
            "target": "ceiling",
            "server": {"kind": "herald-bench ceiling-server", "websocket": "axum ws, read buffer 4 KiB, no write buffer", "frame_bytes": crate::ceiling::frame("0-0", now_us()).len()},
            "devices": args.devices,
            "client_processes": processes,
            "connections": connections,
            "fanout": fanout,
        }),
        header,
    )?;
    Ok(())
}

/// `mosquitto`: the same connections and fan-out over MQTT, one topic per device at QoS 1.
pub async fn mosquitto(common: &Common, args: &FanoutArgs, bin: &Path) -> anyhow::Result<()> {
    let plan = args.plan()?;
    let header = common.header("mosquitto");
    let Some(broker) = Mosquitto::start(bin).await? else {
        skip_mosquitto(common, bin, header)?;
        return Ok(());
    };
    let mut fleets = common.fleets_for_own_server(args.devices)?;
    let target = DeviceTarget::Mqtt {
        host: "127.0.0.1".to_owned(),
        port: broker.port,
    };
    let measured = Measured::Mosquitto(&broker);
    let (connections, tokens) = connections_phase(
        "mosquitto",
        &mut fleets,
        args.devices,
        &target,
        &measured,
        common,
        args.idle_secs,
    )
    .await?;
    let sender = Sender::mqtt(broker.port, plan.concurrency).await?;
    let fanout = fanout_phase("mosquitto", &mut fleets, sender, tokens, plan, &measured).await?;
    let processes = fleets.processes();
    fleets.stop().await;
    let version = mosquitto_version(bin).await;
    let config = broker.config.clone();
    broker.proc.stop().await;
    common.write(
        "mosquitto",
        json!({
            "target": "mosquitto",
            "server": {"kind": "mosquitto", "bin": bin.display().to_string(), "version": version, "config": config,
                       "qos": 1, "clean_session": false, "topics": "one per device"},
            "devices": args.devices,
            "client_processes": processes,
            "connections": connections,
            "fanout": fanout,
        }),
        header,
    )?;
    Ok(())
}

/// Writes a visible "skipped" result and tells how to install the broker.
fn skip_mosquitto(common: &Common, bin: &Path, header: Value) -> anyhow::Result<()> {
    let why = format!(
        "{} is not installed; install it with `apt-get install mosquitto` (Debian/Ubuntu) to compare",
        bin.display()
    );
    eprintln!("SKIPPED mosquitto: {why}.");
    common.write(
        "mosquitto",
        json!({"target": "mosquitto", "skipped": why}),
        header,
    )?;
    Ok(())
}

async fn mosquitto_version(bin: &Path) -> Option<String> {
    // `mosquitto -h` prints "mosquitto version X.Y.Z" first and exits non-zero.
    let out = tokio::process::Command::new(bin)
        .arg("-h")
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.contains("version"))
        .map(|l| l.trim().to_owned())
}

/// Milliseconds since the Unix epoch, a little in the past (the push report's `since_ms`).
fn node_ms() -> i64 {
    (now_us() / 1000) as i64 - 60_000
}

/// Parameters of `ingress`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct IngressArgs {
    /// Concurrent backends, each with its own keep-alive connection, one request at a time.
    #[arg(long, default_value_t = 16)]
    pub backends: usize,
    /// Single-token notifications to send in all.
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,
    /// Connected devices the notifications go to (round-robin); they ack as the SDK does.
    #[arg(long, default_value_t = 100)]
    pub devices: usize,
}

/// `ingress`: C backends send single-token notifications over keep-alive HTTP.
pub async fn ingress(common: &Common, args: &IngressArgs) -> anyhow::Result<()> {
    if args.backends == 0 || args.requests == 0 || args.devices == 0 {
        bail!("--backends, --requests and --devices must be at least 1");
    }
    let header = common.header("ingress");
    let node = common.herald().await?;
    let since = node_ms();
    let mut fleets = common.fleets_for_herald(args.devices)?;
    let connect = bar(args.devices as u64, "ingress: connect");
    let tokens = fleets
        .connect(&herald_target(&node)?, common.connect_concurrency, &connect)
        .await?;
    connect.finish();
    fleets.collect().await?;
    let plan = Plan {
        messages: args.requests,
        tokens_per_request: 1,
        concurrency: args.backends,
    };
    let cpu_before = node.usage();
    let accepted_bar = bar(args.requests as u64, "ingress: accepted");
    let sent = drive::closed_loop(
        Arc::new(Sender::herald(&node, args.backends)?),
        Arc::new(tokens),
        plan,
        &accepted_bar,
    )
    .await;
    accepted_bar.finish();
    let cpu_after = node.usage();
    let delivered_bar = bar(sent.accepted, "ingress: delivered");
    drive::wait_delivered(&fleets, sent.accepted, &delivered_bar).await;
    delivered_bar.finish();
    let collected = fleets.collect().await?;
    let all_success = sent.tally.errors.is_empty()
        && sent
            .tally
            .codes
            .keys()
            .all(|c| c == herald_proto::Code::Success.as_str());
    warn_if_lost(
        "ingress",
        args.requests as u64,
        sent.accepted,
        collected.delivered,
    );
    let cpu = cpu_before
        .zip(cpu_after)
        .map(|(b, a)| round2(a.cpu_secs - b.cpu_secs));
    println!(
        "ingress: {} of {} accepted ({} /s) by {} backends, every answer 80000000: {}; request p50 {} ms, p99 {} ms, p99.9 {} ms",
        sent.accepted,
        args.requests,
        sent.accepted_per_sec,
        args.backends,
        all_success,
        sent.request_ms.p50,
        sent.request_ms.p99,
        sent.request_ms.p999,
    );
    let processes = fleets.processes();
    fleets.stop().await;
    let server = node.describe();
    common.keep_log("ingress-herald", node.log());
    node.stop().await;
    common.write(
        "ingress",
        json!({
            "target": "herald",
            "server": server,
            "backends": args.backends,
            "devices": args.devices,
            "client_processes": processes,
            "ingress": {
                "requests": args.requests,
                "accepted": sent.accepted,
                "accepted_per_sec": sent.accepted_per_sec,
                "every_answer_success": all_success,
                "durable": "an answer 80000000 is sent after the notification is committed to the store",
                "send": sent,
                "server_cpu_secs": cpu,
                "delivered": collected.delivered,
                "since_ms": since,
            },
        }),
        header,
    )?;
    Ok(())
}

/// Parameters of `latency`.
#[derive(Debug, Clone, clap::Args)]
pub struct LatencyArgs {
    /// Offered notifications per second for the headline percentiles. Default: half of
    /// the fan-out rate in `--out`/fanout.json.
    #[arg(long)]
    pub rate: Option<f64>,
    /// The rate the sweep's fractions are of. Default: the fan-out rate in fanout.json.
    #[arg(long)]
    pub max_rate: Option<f64>,
    /// Offered loads for the throughput chart, as fractions of the maximum rate. A target
    /// stops climbing after the first load it could not keep up with (delivered < 80 %).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.25,0.5,0.75,1,1.25,2,4,8"
    )]
    pub sweep: Vec<f64>,
    /// No offered load above this. Default: 1.5 × the highest fan-out rate in `--out`
    /// (fanout.json, ceiling.json, mosquitto.json), so the sweep reaches every target's knee.
    #[arg(long)]
    pub max_offered: Option<f64>,
    /// Seconds each offered load lasts.
    #[arg(long, default_value_t = 5.0)]
    pub step_secs: f64,
    #[arg(long, default_value_t = 2000)]
    pub devices: usize,
    /// Tokens per request; the fan-out's K keeps the rates comparable with its maximum.
    #[arg(long, default_value_t = 1000)]
    pub tokens_per_request: usize,
    /// Targets to measure (herald, ceiling, mosquitto).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "herald,ceiling,mosquitto"
    )]
    pub targets: Vec<String>,
}

/// `latency`: open-loop offered rates against each target; percentiles at each.
pub async fn latency(
    common: &Common,
    args: &LatencyArgs,
    mosquitto_bin: &Path,
) -> anyhow::Result<()> {
    let header = common.header("latency");
    let fanout_rate = read_fanout_rate(&common.out, "fanout");
    let max_rate = args.max_rate.or(fanout_rate).context(
        "no --max-rate and no fanout.json in --out: run `herald-bench fanout` first or pass --max-rate",
    )?;
    let rate = args.rate.unwrap_or(max_rate / 2.0);
    if !(rate > 0.0 && max_rate > 0.0) {
        bail!("rates must be positive");
    }
    let fastest = ["fanout", "ceiling", "mosquitto"]
        .iter()
        .filter_map(|name| read_fanout_rate(&common.out, name))
        .fold(max_rate, f64::max);
    let cap = args.max_offered.unwrap_or(1.5 * fastest);
    let rates: Vec<f64> = args
        .sweep
        .iter()
        .map(|f| round2(f * max_rate))
        .filter(|r| *r > 0.0 && *r <= cap)
        .collect();
    let k = args.tokens_per_request.clamp(1, args.devices.max(1));
    // A step sends whole requests of K, so each rate becomes the nearest one it can offer
    // exactly in `step_secs` (what the tables then show as offered).
    let offerable = |r: f64| {
        let requests = (r * args.step_secs / k as f64).round().max(1.0);
        round2(requests * k as f64 / args.step_secs)
    };
    let rate = offerable(rate);
    let mut rates: Vec<f64> = rates.into_iter().map(offerable).collect();
    rates.push(rate);
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    let mut by_target = serde_json::Map::new();
    for target in &args.targets {
        let steps = match target.as_str() {
            "herald" => {
                let node = common.herald().await?;
                let mut fleets = common.fleets_for_herald(args.devices)?;
                let c = bar(args.devices as u64, "latency herald: connect");
                let tokens = fleets
                    .connect(&herald_target(&node)?, common.connect_concurrency, &c)
                    .await?;
                c.finish();
                // One client: its connection pool opens as many connections as requests in flight.
                let sender = Arc::new(Sender::herald(&node, 1)?);
                let steps = sweep(
                    "herald",
                    &mut fleets,
                    sender,
                    tokens,
                    &rates,
                    rate,
                    args.step_secs,
                    k,
                )
                .await?;
                fleets.stop().await;
                common.keep_log("latency-herald", node.log());
                node.stop().await;
                steps
            }
            "ceiling" => {
                let server = Ceiling::start().await?;
                let mut fleets = common.fleets_for_own_server(args.devices)?;
                let c = bar(args.devices as u64, "latency ceiling: connect");
                let ws_url = format!("{}/ws", server.url.replacen("http://", "ws://", 1));
                let tokens = fleets
                    .connect(
                        &DeviceTarget::Ceiling { ws_url },
                        common.connect_concurrency,
                        &c,
                    )
                    .await?;
                c.finish();
                let sender = Arc::new(Sender::ceiling(&server.url)?);
                let steps = sweep(
                    "ceiling",
                    &mut fleets,
                    sender,
                    tokens,
                    &rates,
                    rate,
                    args.step_secs,
                    k,
                )
                .await?;
                fleets.stop().await;
                server.proc.stop().await;
                steps
            }
            "mosquitto" => {
                let Some(broker) = Mosquitto::start(mosquitto_bin).await? else {
                    eprintln!(
                        "SKIPPED latency against mosquitto: {} is not installed (apt-get install mosquitto).",
                        mosquitto_bin.display()
                    );
                    by_target.insert(
                        target.clone(),
                        json!({"skipped": "mosquitto is not installed"}),
                    );
                    continue;
                };
                let mut fleets = common.fleets_for_own_server(args.devices)?;
                let c = bar(args.devices as u64, "latency mosquitto: connect");
                let tokens = fleets
                    .connect(
                        &DeviceTarget::Mqtt {
                            host: "127.0.0.1".into(),
                            port: broker.port,
                        },
                        common.connect_concurrency,
                        &c,
                    )
                    .await?;
                c.finish();
                let sender = Arc::new(Sender::mqtt(broker.port, 4).await?);
                let steps = sweep(
                    "mosquitto",
                    &mut fleets,
                    sender,
                    tokens,
                    &rates,
                    rate,
                    args.step_secs,
                    k,
                )
                .await?;
                fleets.stop().await;
                broker.proc.stop().await;
                steps
            }
            other => bail!("unknown target {other:?} (herald, ceiling, mosquitto)"),
        };
        by_target.insert(target.clone(), steps);
    }
    common.write(
        "latency",
        json!({
            "rate": round2(rate),
            "max_rate": round2(max_rate),
            "max_rate_from": if args.max_rate.is_some() { "--max-rate" } else { "fanout.json delivered_per_sec" },
            "offered_rates": rates,
            "max_offered": round2(cap),
            "step_secs": args.step_secs,
            "devices": args.devices,
            "tokens_per_request": k,
            "targets": by_target,
        }),
        header,
    )?;
    Ok(())
}

/// The fan-out rate of an earlier `fanout`, `ceiling` or `mosquitto` run in `out`.
fn read_fanout_rate(out: &Path, scenario: &str) -> Option<f64> {
    let text = std::fs::read_to_string(out.join(format!("{scenario}.json"))).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["fanout"]["delivered_per_sec"]
        .as_f64()
        .filter(|r| *r > 0.0)
}

/// Each offered rate for `secs`, one after the other on the same connected devices.
#[allow(clippy::too_many_arguments)] // one scenario's knobs, passed through once
async fn sweep(
    label: &str,
    fleets: &mut Fleets,
    sender: crate::sender::Shared,
    tokens: Vec<String>,
    rates: &[f64],
    headline: f64,
    secs: f64,
    k: usize,
) -> anyhow::Result<Value> {
    let tokens = Arc::new(tokens);
    let mut steps = Vec::new();
    let mut at_rate = Value::Null;
    for &rate in rates {
        fleets.collect().await?;
        let expected = ((rate * secs) / k as f64).round().max(1.0) as u64 * k as u64;
        let b = bar(expected, &format!("{label} @ {rate:.0}/s"));
        let sent = drive::open_loop(sender.clone(), tokens.clone(), rate, secs, k, &b).await;
        drive::wait_delivered(fleets, sent.accepted, &b).await;
        b.finish();
        let collected = fleets.collect().await?;
        let mut latencies = collected.latencies_us.clone();
        let p = Percentiles::from_micros(&mut latencies);
        let window = collected.last_delivery_us.saturating_sub(sent.started_us) as f64 / 1e6;
        warn_if_lost(
            &format!("{label} @ {rate:.0}/s"),
            sent.requests as u64 * k as u64,
            sent.accepted,
            collected.delivered,
        );
        let delivered_per_sec = per_sec(collected.delivered, window.max(secs));
        let saturated = delivered_per_sec < SATURATED * rate;
        let step = json!({
            "offered_per_sec": rate,
            "accepted": sent.accepted,
            "delivered": collected.delivered,
            "delivered_per_sec": delivered_per_sec,
            "saturated": saturated,
            "late_requests": sent.late_requests,
            "errors": sent.tally.errors,
            "latency_ms": p,
        });
        println!(
            "{label}: offered {rate:.0} /s → delivered {} of {} ({} /s); latency p50 {} ms, p99 {} ms, p99.9 {} ms",
            collected.delivered, sent.accepted, step["delivered_per_sec"], p.p50, p.p99, p.p999
        );
        if (rate - headline).abs() < 0.01 {
            at_rate = json!({"offered_per_sec": rate, "latency_ms": p, "latency_cdf_ms": cdf_points(&latencies, CDF_POINTS),
                             "delivered": collected.delivered, "accepted": sent.accepted});
        }
        steps.push(step);
        if saturated && rate >= headline {
            println!("{label}: saturated at {rate:.0} /s offered; no higher loads.");
            break;
        }
    }
    Ok(json!({"steps": steps, "at_rate": at_rate}))
}

/// Parameters of `recovery`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct RecoveryArgs {
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// Messages queued for the offline devices before the kill.
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
}

/// `recovery`: queue M messages for offline devices, SIGKILL the node, start it again,
/// time until `/healthz` answers and until every queued message is delivered.
pub async fn recovery(common: &Common, args: &RecoveryArgs) -> anyhow::Result<()> {
    if !matches!(common.herald, HeraldSource::Spawn { .. }) {
        bail!("recovery kills the node, so it needs a node the bench starts (no --server)");
    }
    if args.devices == 0 || args.messages == 0 {
        bail!("--devices and --messages must be at least 1");
    }
    let header = common.header("recovery");
    let mut node = common.herald().await?;
    let mut fleets = common.fleets_for_herald(args.devices)?;
    let c = bar(args.devices as u64, "recovery: connect");
    let tokens = fleets
        .connect(&herald_target(&node)?, common.connect_concurrency, &c)
        .await?;
    c.finish();
    fleets.disconnect().await?;
    fleets.collect().await?;
    let plan = Plan {
        messages: args.messages,
        tokens_per_request: 1000.min(args.devices),
        concurrency: 4,
    };
    let queued_bar = bar(args.messages as u64, "recovery: queued");
    let sent = drive::closed_loop(
        Arc::new(Sender::herald(&node, plan.concurrency)?),
        Arc::new(tokens),
        plan,
        &queued_bar,
    )
    .await;
    queued_bar.finish();
    if sent.accepted != args.messages as u64 {
        bail!(
            "only {} of {} messages were accepted: {:?}",
            sent.accepted,
            args.messages,
            sent.tally
        );
    }
    node.kill().await?;
    let killed = Instant::now();
    let killed_us = now_us();
    node.restart().await?;
    let healthy = killed.elapsed().as_secs_f64();
    let back = bar(args.devices as u64, "recovery: reconnect");
    fleets.reconnect(common.connect_concurrency, &back).await?;
    back.finish();
    let reconnected = killed.elapsed().as_secs_f64();
    let delivered_bar = bar(sent.accepted, "recovery: delivered");
    drive::wait_delivered(&fleets, sent.accepted, &delivered_bar).await;
    delivered_bar.finish();
    let collected = fleets.collect().await?;
    let all_delivered = collected.last_delivery_us.saturating_sub(killed_us) as f64 / 1e6;
    warn_if_lost(
        "recovery",
        args.messages as u64,
        sent.accepted,
        collected.delivered,
    );
    println!(
        "recovery: {} queued; SIGKILL → /healthz {:.2} s; → devices back {:.2} s; → {} of {} delivered {:.2} s (duplicates {})",
        sent.accepted,
        healthy,
        reconnected,
        collected.delivered,
        sent.accepted,
        all_delivered,
        collected.duplicates
    );
    let processes = fleets.processes();
    fleets.stop().await;
    let server = node.describe();
    common.keep_log("recovery-herald", node.log());
    node.stop().await;
    common.write(
        "recovery",
        json!({
            "target": "herald",
            "server": server,
            "devices": args.devices,
            "client_processes": processes,
            "recovery": {
                "queued": sent.accepted,
                "kill_to_healthz_secs": round2(healthy),
                "kill_to_devices_reconnected_secs": round2(reconnected),
                "kill_to_all_delivered_secs": round2(all_delivered),
                "delivered": collected.delivered,
                "duplicates": collected.duplicates,
                "connections_lost": collected.lost,
            },
        }),
        header,
    )?;
    Ok(())
}
