//! `herald bench`: connect N devices, send M notifications in requests of K tokens at
//! concurrency C, and measure connect rate, send throughput and end-to-end latency; prints
//! a table and writes `results.json` and `latency.svg`.
//!
//! By default it measures a node it starts in-process on a throwaway data directory, so
//! `herald bench` alone works on a fresh machine; `--server` measures a running one.

mod fleet;
mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use herald_client::admin::AdminClient;
use herald_client::sender::{JwtSigner, KeyFile, PushClient, load_key_file};
use herald_proto::Code;
use herald_server::{Config, Herald, ServerError};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use fleet::{Fleet, FleetTarget, Received, SENT_AT_KEY};
use report::{ChartLabels, Percentiles, Table, round2};

/// Devices registering at once. The listen backlog is 1024; staying well under it keeps
/// the connect phase free of SYN retries (which would add whole seconds to the numbers).
const CONNECT_CONCURRENCY: usize = 256;
/// After the last send, give up waiting for deliveries when none arrived for this long.
const DRAIN_STALL: Duration = Duration::from_secs(15);
/// After the devices closed, give up waiting for the server to record acks after this.
const ACK_STALL: Duration = Duration::from_secs(10);
/// Limits and quotas high enough that the benchmark measures the server, not its policy.
const UNLIMITED: u32 = 1_000_000_000;
/// The most tokens Push Kit takes in one request.
const MAX_TOKENS_PER_REQUEST: usize = 1000;
/// File descriptors the process needs besides the sockets (database, logs, HTTP pool).
const SPARE_FILES: u64 = 256;

/// Arguments of `herald bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Simulated devices to connect (each registers and gets a token).
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// Notifications to deliver in all (one per token per request).
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Tokens in each send request (at most 1000, and at most --devices).
    #[arg(long, default_value_t = 100)]
    pub tokens_per_request: usize,
    /// Send requests in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Measure this running server instead of an embedded one (needs --key-file and
    /// --client-id).
    #[arg(long, value_name = "URL", requires_all = ["key_file", "client_id"])]
    pub server: Option<String>,
    /// With --server: the service-account key file to sign sends with.
    #[arg(long, value_name = "FILE", requires = "server")]
    pub key_file: Option<PathBuf>,
    /// With --server: the app whose tokens the devices get.
    #[arg(long, value_name = "ID", requires = "server")]
    pub client_id: Option<String>,
    /// With --server: an admin token, to raise the app's limits and grant it `IM` first.
    #[arg(
        long,
        env = "HERALD_ADMIN_TOKEN",
        value_name = "TOKEN",
        requires = "server"
    )]
    pub admin_token: Option<String>,
    /// Where to write results.json and latency.svg.
    #[arg(long, value_name = "DIR", default_value = "herald-bench")]
    pub out: PathBuf,
}

/// The validated shape of a run.
#[derive(Debug, Clone, Copy)]
struct Plan {
    devices: usize,
    messages: usize,
    tokens_per_request: usize,
    concurrency: usize,
    requests: usize,
}

impl Plan {
    fn from_args(args: &BenchArgs) -> anyhow::Result<Plan> {
        if args.devices == 0 || args.messages == 0 || args.concurrency == 0 {
            bail!("--devices, --messages and --concurrency must be at least 1");
        }
        if !(1..=MAX_TOKENS_PER_REQUEST).contains(&args.tokens_per_request) {
            bail!("--tokens-per-request must be between 1 and {MAX_TOKENS_PER_REQUEST}");
        }
        if args.tokens_per_request > args.devices {
            bail!(
                "--tokens-per-request ({}) must not exceed --devices ({}): a request names each token once",
                args.tokens_per_request,
                args.devices
            );
        }
        Ok(Plan {
            devices: args.devices,
            messages: args.messages,
            tokens_per_request: args.tokens_per_request,
            concurrency: args.concurrency,
            requests: args.messages.div_ceil(args.tokens_per_request),
        })
    }

    /// The tokens of request `i`: the next K of the messages, round-robin over devices.
    fn tokens_of(&self, request: usize, tokens: &[String]) -> Vec<String> {
        let first = request * self.tokens_per_request;
        let last = (first + self.tokens_per_request).min(self.messages);
        (first..last)
            .map(|m| tokens[m % tokens.len()].clone())
            .collect()
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let plan = Plan::from_args(&args)?;
    let epoch = Instant::now();
    let node = Node::start(&args).await?;
    check_open_files(&plan, node.embedded.is_some())?;
    node.prepare_app().await?;

    let progress = MultiProgress::new();
    let received = Arc::new(Received::new(epoch, plan.messages));
    let rss_before = rss_kib();
    let (fleet, connect) = connect_devices(&node, &plan, &received, &progress).await?;
    let rss_after = rss_kib();

    let client = PushClient::new(&node.url, JwtSigner::new(&node.key_file)?)?;
    // Sign the JWT before the clock starts: the first request should not pay for it.
    client.signer().token()?;
    let accepted_bar = progress.add(bar(plan.messages as u64, "accepted")?);
    let delivered_bar = progress.add(bar(plan.messages as u64, "delivered")?);
    let ticker = tokio::spawn(follow_deliveries(received.clone(), delivered_bar.clone()));
    let sent = send_messages(
        Arc::new(client),
        &plan,
        &fleet.tokens,
        &received,
        &accepted_bar,
    )
    .await;
    accepted_bar.finish();
    let drain_started = Instant::now();
    wait_for_deliveries(&received, sent.accepted).await;
    let drain_secs = drain_started.elapsed().as_secs_f64();
    ticker.abort();
    delivered_bar.set_position(received.delivered());
    delivered_bar.finish();
    fleet.stop().await;
    let acks_recorded = node.acks_recorded(received.acks_sent()).await;
    let sqlite_synchronous = node.embedded.as_ref().map(|e| e.sqlite_synchronous.clone());
    let url = node.url.clone();
    let embedded = node.embedded.is_some();
    node.stop().await?;

    let mut latencies = received.take_latencies();
    let latency = Percentiles::from_micros(&mut latencies);
    let delivered = received.delivered();
    let delivery_secs = (received.last_delivery_us().saturating_sub(sent.started_us)) as f64 / 1e6;
    let results = json!({
        "version": version(),
        "machine": {
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
        },
        "parameters": {
            "devices": plan.devices,
            "messages": plan.messages,
            "tokens_per_request": plan.tokens_per_request,
            "concurrency": plan.concurrency,
            "server": if embedded { "embedded".to_owned() } else { url },
            "sqlite_synchronous": sqlite_synchronous,
            // The embedded node's devices all come from loopback, exempted from the
            // per-address limits ([limits] exempt); null for --server (its own config).
            "limits_exempt": if embedded {
                serde_json::to_value(herald_server::config::Cidrs::loopback())?
            } else {
                serde_json::Value::Null
            },
        },
        "connect": {
            "devices": plan.devices,
            "secs": round2(connect.as_secs_f64()),
            "per_sec": round2(plan.devices as f64 / connect.as_secs_f64().max(1e-9)),
        },
        "memory": {
            "scope": if embedded {
                "one process: the server and the simulated devices, both ends of each connection"
            } else {
                "this process: the simulated devices only"
            },
            "rss_before_connect_kib": rss_before,
            "rss_after_connect_kib": rss_after,
            "rss_per_device_bytes": rss_before.zip(rss_after)
                .map(|(b, a)| a.saturating_sub(b) * 1024 / plan.devices as u64),
        },
        "send": {
            "requests": plan.requests,
            "requests_ok": sent.requests_ok,
            "requests_failed": plan.requests - sent.requests_ok,
            "codes": sent.codes,
            "errors": sent.errors,
            "sent": plan.messages,
            "accepted": sent.accepted,
            "secs": round2(sent.secs),
            "tokens_per_sec": round2(sent.accepted as f64 / sent.secs.max(1e-9)),
            "requests_per_sec": round2(sent.requests_ok as f64 / sent.secs.max(1e-9)),
            "request_ms": sent.request_ms,
        },
        "delivery": {
            "delivered": delivered,
            "duplicates": received.duplicates(),
            "connections_lost": received.lost(),
            "secs": round2(delivery_secs),
            "per_sec": round2(delivered as f64 / delivery_secs.max(1e-9)),
            "drain_after_last_send_secs": round2(drain_secs),
            "latency_ms": latency,
        },
        "acks": {
            "sent_by_devices": received.acks_sent(),
            "recorded_by_server": acks_recorded,
        },
    });

    let svg = report::latency_cdf_svg(
        &latencies,
        &latency,
        &ChartLabels {
            title: "Herald: notification latency (CDF)",
            subtitle: &format!(
                "{} devices, {} messages, {} tokens/request, concurrency {}, {} server",
                plan.devices,
                plan.messages,
                plan.tokens_per_request,
                plan.concurrency,
                if embedded { "embedded" } else { "remote" },
            ),
        },
    );
    write_outputs(&args.out, &results, &svg)?;
    print!("{}", table(&results).render());
    println!(
        "Wrote {} and {}.",
        args.out.join("results.json").display(),
        args.out.join("latency.svg").display()
    );
    if delivered < plan.messages as u64 {
        eprintln!(
            "error: {delivered} of {} messages were delivered (accepted: {}).",
            plan.messages, sent.accepted
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The server under test, and how to sign for and administer it.
#[derive(Debug)]
struct Node {
    url: String,
    key_file: KeyFile,
    client_id: String,
    admin_token: Option<String>,
    embedded: Option<Embedded>,
}

/// A node running in this process on a throwaway data directory.
#[derive(Debug)]
struct Embedded {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServerError>>,
    state: herald_server::state::Shared,
    sqlite_synchronous: String,
    _dir: tempfile::TempDir,
}

impl Node {
    async fn start(args: &BenchArgs) -> anyhow::Result<Node> {
        if let Some(url) = &args.server {
            let key_file = args.key_file.as_deref().context("--key-file is required")?;
            return Ok(Node {
                url: url.trim_end_matches('/').to_owned(),
                key_file: load_key_file(key_file)?,
                client_id: args.client_id.clone().context("--client-id is required")?,
                admin_token: args.admin_token.clone(),
                embedded: None,
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("herald-bench-")
            .tempdir()
            .context("creating a temporary data directory")?;
        // Defaults and HERALD_* (e.g. HERALD_SQLITE_SYNCHRONOUS=normal to compare), but
        // always our own directory and a free port.
        let mut config = Config::load(None, std::env::vars())?;
        config.data_dir = dir.path().to_path_buf();
        config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        config.public_url = String::new();
        // Every simulated device connects from 127.0.0.1: exempt loopback from the
        // per-address limits (registrations, sockets per address) explicitly, and let
        // the open-files limit, not the connection cap, bound the run. A node measured
        // with --server needs the same (HERALD_LIMITS_EXEMPT=127.0.0.1/32).
        config.limits.exempt = herald_server::config::Cidrs::loopback();
        config.limits.max_connections = usize::MAX >> 1;
        let sqlite_synchronous = config.sqlite_synchronous.clone();
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let herald = Herald::prepare_with_system_clock(listener, config).await?;
        let info = herald
            .bootstrap_info()
            .context("a fresh data directory is bootstrapped")?
            .clone();
        let key_file = load_key_file(&info.service_account_file)?;
        let url = herald.public_url().to_owned();
        let state = herald.state();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(herald.run(async {
            let _ = stopped.await;
        }));
        Ok(Node {
            url,
            key_file,
            client_id: info.client_id,
            admin_token: Some(info.admin_token),
            embedded: Some(Embedded {
                stop,
                task,
                state,
                sqlite_synchronous,
                _dir: dir,
            }),
        })
    }

    /// Raises the app's limits and grants it `IM` (so notifications are IM, not
    /// MARKETING with its 2 a day), through the admin API as an operator would.
    async fn prepare_app(&self) -> anyhow::Result<()> {
        let Some(token) = &self.admin_token else {
            eprintln!(
                "note: no --admin-token; the app's limits and rights stay as they are (sends past them are dropped)."
            );
            return Ok(());
        };
        let admin = AdminClient::new(&self.url, token)?;
        let app = format!("/api/v1/apps/{}", self.client_id);
        let patched = admin
            .patch(
                &app,
                &json!({
                    "marketing_per_day": UNLIMITED,
                    "device_daily_total": UNLIMITED,
                    "send_rate_per_sec": UNLIMITED,
                }),
            )
            .await?;
        if !patched.is_success() {
            bail!(
                "raising the app's limits failed: HTTP {} {}",
                patched.status,
                patched.body
            );
        }
        let rights = admin.get(&format!("{app}/rights")).await?;
        let has_im = rights.body["granted"]
            .as_array()
            .is_some_and(|g| g.iter().any(|r| r == "IM"));
        if !has_im {
            let granted = admin
                .post(
                    &format!("{app}/rights/IM/grant"),
                    &json!({"reason": "herald bench"}),
                )
                .await?;
            if !granted.is_success() {
                bail!(
                    "granting IM failed: HTTP {} {}",
                    granted.status,
                    granted.body
                );
            }
        }
        Ok(())
    }

    /// Acks the embedded server recorded (deliveries no longer queued), once it has
    /// caught up with `expected` or stopped making progress; `None` for a remote server.
    async fn acks_recorded(&self, expected: u64) -> Option<u64> {
        let embedded = self.embedded.as_ref()?;
        let mut last = (0, Instant::now());
        loop {
            let acked = match embedded.state.store.delivery_counts().await {
                Ok(counts) => counts
                    .iter()
                    .filter(|(state, _)| {
                        matches!(
                            state.as_str(),
                            "delivered" | "shown" | "suppressed" | "clicked"
                        )
                    })
                    .map(|(_, n)| n)
                    .sum(),
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot count deliveries.");
                    return None;
                }
            };
            if acked >= expected || last.1.elapsed() > ACK_STALL {
                return Some(acked);
            }
            if acked != last.0 {
                last = (acked, Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(self) -> anyhow::Result<()> {
        if let Some(embedded) = self.embedded {
            let _ = embedded.stop.send(());
            embedded
                .task
                .await
                .context("the embedded server panicked")??;
        }
        Ok(())
    }
}

/// Connects the devices, `CONNECT_CONCURRENCY` at a time; returns them and how long it took.
async fn connect_devices(
    node: &Node,
    plan: &Plan,
    received: &Arc<Received>,
    progress: &MultiProgress,
) -> anyhow::Result<(Fleet, Duration)> {
    let target = FleetTarget {
        ws_url: herald_client::device::ws_url(&node.url)?,
        client_id: node.client_id.clone(),
    };
    let bar = progress.add(bar(plan.devices as u64, "connect")?);
    let started = Instant::now();
    let mut fleet = Fleet::default();
    let mut handshakes = futures_util::stream::iter(0..plan.devices)
        .map(|_| fleet::handshake(&target))
        .buffer_unordered(CONNECT_CONCURRENCY);
    while let Some(device) = handshakes.next().await {
        let (socket, token) = device.context("connecting a device")?;
        fleet.adopt(socket, token, received);
        bar.inc(1);
    }
    let took = started.elapsed();
    bar.finish();
    Ok((fleet, took))
}

/// What the send phase did.
#[derive(Debug, Default)]
struct Sent {
    requests_ok: usize,
    accepted: u64,
    /// Push Kit codes answered, with how many requests got each.
    codes: BTreeMap<String, u64>,
    /// Requests that got no Push Kit answer (transport errors), by message.
    errors: BTreeMap<String, u64>,
    /// When the first request was issued, µs since the bench's epoch.
    started_us: u64,
    secs: f64,
    request_ms: Percentiles,
}

/// Sends every request, `concurrency` in flight; a request's send time goes into its
/// `clickAction.data` so that devices can measure the latency.
async fn send_messages(
    client: Arc<PushClient>,
    plan: &Plan,
    tokens: &[String],
    received: &Arc<Received>,
    accepted_bar: &ProgressBar,
) -> Sent {
    let tokens = Arc::new(tokens.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let started_us = received.now_us();
    let mut workers = JoinSet::new();
    for _ in 0..plan.concurrency {
        let (client, tokens, next, received, bar, plan) = (
            client.clone(),
            tokens.clone(),
            next.clone(),
            received.clone(),
            accepted_bar.clone(),
            *plan,
        );
        workers.spawn(async move {
            let mut mine = Sent::default();
            let mut round_trips = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= plan.requests {
                    break;
                }
                let batch = plan.tokens_of(i, &tokens);
                let n = batch.len() as u64;
                let issued = Instant::now();
                let body = notification(batch, i, received.now_us());
                match client.send(0, &body).await {
                    Ok((_, response)) => {
                        *mine.codes.entry(response.code.clone()).or_default() += 1;
                        if response.code == Code::Success.as_str() {
                            mine.requests_ok += 1;
                            mine.accepted += n;
                            bar.inc(n);
                        }
                    }
                    Err(e) => *mine.errors.entry(e.to_string()).or_default() += 1,
                }
                round_trips.push(issued.elapsed().as_micros() as u64);
            }
            (mine, round_trips)
        });
    }
    let mut all = Sent {
        started_us,
        ..Sent::default()
    };
    let mut round_trips = Vec::with_capacity(plan.requests);
    while let Some(joined) = workers.join_next().await {
        let Ok((mine, trips)) = joined else { continue };
        all.requests_ok += mine.requests_ok;
        all.accepted += mine.accepted;
        for (code, n) in mine.codes {
            *all.codes.entry(code).or_default() += n;
        }
        for (error, n) in mine.errors {
            *all.errors.entry(error).or_default() += n;
        }
        round_trips.extend(trips);
    }
    all.secs = started.elapsed().as_secs_f64();
    all.request_ms = Percentiles::from_micros(&mut round_trips);
    all
}

/// Moves the delivered bar along until aborted.
async fn follow_deliveries(received: Arc<Received>, bar: ProgressBar) {
    loop {
        bar.set_position(received.delivered());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `expected` messages arrived, or none did for [`DRAIN_STALL`].
async fn wait_for_deliveries(received: &Received, expected: u64) {
    let mut seen = received.delivered();
    let mut progressed = Instant::now();
    while seen < expected && progressed.elapsed() < DRAIN_STALL {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = received.delivered();
        if now != seen {
            seen = now;
            progressed = Instant::now();
        }
    }
}

/// A chat notification to `tokens`, stamped with when it was issued.
fn notification(tokens: Vec<String>, request: usize, sent_us: u64) -> Value {
    json!({
        "payload": {"notification": {
            "category": "IM",
            "title": "Herald bench",
            "body": format!("request {request}"),
            "clickAction": {"actionType": 0, "data": {SENT_AT_KEY: sent_us}},
        }},
        "target": {"token": tokens},
    })
}

fn bar(len: u64, name: &str) -> anyhow::Result<ProgressBar> {
    let style = ProgressStyle::with_template(
        "{prefix:>9} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec}, eta {eta})",
    )?;
    Ok(ProgressBar::new(len)
        .with_style(style)
        .with_prefix(name.to_owned()))
}

/// Both ends of each connection live in this process when the server is embedded.
fn check_open_files(plan: &Plan, embedded: bool) -> anyhow::Result<()> {
    let per_device = if embedded { 2 } else { 1 };
    let needed = plan.devices as u64 * per_device + SPARE_FILES;
    if let Some(limit) = open_files_limit()
        && needed > limit
    {
        bail!(
            "{} devices need about {needed} open files here, but the limit is {limit}; use fewer devices (or `ulimit -n`){}",
            plan.devices,
            if embedded {
                ", or run the server separately with --server"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// The soft open-files limit, from `/proc/self/limits` (Linux).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// This process's resident memory in KiB, from `/proc/self/status` (Linux).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The crate version and, when built from a git checkout, `git describe`.
fn version() -> String {
    match option_env!("HERALD_GIT_DESCRIBE").filter(|d| !d.is_empty()) {
        Some(describe) => format!("herald {} ({describe})", env!("CARGO_PKG_VERSION")),
        None => format!("herald {}", env!("CARGO_PKG_VERSION")),
    }
}

fn write_outputs(dir: &Path, results: &Value, svg: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json_path = dir.join("results.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(results)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    let svg_path = dir.join("latency.svg");
    std::fs::write(&svg_path, svg).with_context(|| format!("writing {}", svg_path.display()))?;
    Ok(())
}

/// The human-readable summary of `results.json`.
fn table(r: &Value) -> Table {
    let mut t = Table::default();
    let p = &r["parameters"];
    t.section("Herald bench");
    t.row("version", r["version"].as_str().unwrap_or("?"));
    t.row("server", p["server"].as_str().unwrap_or("?"));
    if let Some(sync) = p["sqlite_synchronous"].as_str() {
        t.row("sqlite synchronous", sync);
    }
    t.row("cpus", &r["machine"]["cpus"]);
    t.row(
        "shape",
        format!(
            "{} devices, {} messages, {} tokens/request, concurrency {}",
            p["devices"], p["messages"], p["tokens_per_request"], p["concurrency"]
        ),
    );
    let c = &r["connect"];
    t.section("Connect");
    t.row("time", format!("{} s", c["secs"]));
    t.row("rate", format!("{} devices/s", c["per_sec"]));
    let m = &r["memory"];
    if let Some(per) = m["rss_per_device_bytes"].as_u64() {
        t.row(
            "RSS",
            format!(
                "{} → {} KiB, {:.1} KiB per device ({})",
                m["rss_before_connect_kib"],
                m["rss_after_connect_kib"],
                per as f64 / 1024.0,
                if p["server"] == "embedded" {
                    "server + device ends"
                } else {
                    "device ends"
                }
            ),
        );
    }
    let s = &r["send"];
    t.section("Send");
    t.row(
        "requests",
        format!(
            "{} ok of {} ({} failed)",
            s["requests_ok"], s["requests"], s["requests_failed"]
        ),
    );
    t.row(
        "tokens accepted",
        format!("{} of {}", s["accepted"], s["sent"]),
    );
    t.row("time", format!("{} s", s["secs"]));
    t.row(
        "throughput",
        format!(
            "{} tokens/s, {} requests/s",
            s["tokens_per_sec"], s["requests_per_sec"]
        ),
    );
    t.row("request round trip", percentiles(&s["request_ms"]));
    let d = &r["delivery"];
    t.section("Delivery");
    t.row(
        "delivered",
        format!(
            "{} (duplicates {}, connections lost {})",
            d["delivered"], d["duplicates"], d["connections_lost"]
        ),
    );
    t.row(
        "rate",
        format!("{} messages/s over {} s", d["per_sec"], d["secs"]),
    );
    t.row("latency", percentiles(&d["latency_ms"]));
    let a = &r["acks"];
    t.row(
        "acks",
        format!(
            "{} sent by devices, {} recorded by the server",
            a["sent_by_devices"],
            a["recorded_by_server"]
                .as_u64()
                .map_or_else(|| "?".to_owned(), |n| n.to_string())
        ),
    );
    t
}

fn percentiles(p: &Value) -> String {
    format!(
        "p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
        p["p50"], p["p90"], p["p99"], p["max"]
    )
}
