//! `herald-bench report`: docs/PERFORMANCE.md and its SVG charts, generated from the JSON
//! results of one run, so that every number in the document is one the run printed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use crate::charts::{self, Series};

/// Arguments of `herald-bench report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The directory the scenarios wrote their JSON into.
    #[arg(long, value_name = "DIR")]
    pub results: PathBuf,
    /// The Markdown file to write; the SVG charts go next to it (`performance-*.svg`).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Reads one number of a target out of the run.
type Getter<'a> = Box<dyn Fn(&str) -> Value + 'a>;

/// The three targets, in the order every table shows them.
const TARGETS: [&str; 3] = ["herald", "ceiling", "mosquitto"];

/// The results of one run, by file.
#[derive(Debug, Default)]
struct Run {
    run: Value,
    connections: Value,
    ingress: Value,
    fanout: Value,
    ceiling: Value,
    mosquitto: Value,
    latency: Value,
    recovery: Value,
}

impl Run {
    fn load(dir: &Path) -> anyhow::Result<Run> {
        let read = |name: &str| -> anyhow::Result<Value> {
            let path = dir.join(format!("{name}.json"));
            match std::fs::read_to_string(&path) {
                Ok(text) => serde_json::from_str(&text)
                    .with_context(|| format!("parsing {}", path.display())),
                Err(_) => Ok(Value::Null),
            }
        };
        let run = Run {
            run: read("run")?,
            connections: read("connections")?,
            ingress: read("ingress")?,
            fanout: read("fanout")?,
            ceiling: read("ceiling")?,
            mosquitto: read("mosquitto")?,
            latency: read("latency")?,
            recovery: read("recovery")?,
        };
        if run.scenarios().is_empty() {
            anyhow::bail!("no results in {}", dir.display());
        }
        Ok(run)
    }

    fn scenarios(&self) -> Vec<&Value> {
        // The order scripts/bench runs them in.
        [
            &self.connections,
            &self.fanout,
            &self.ceiling,
            &self.mosquitto,
            &self.ingress,
            &self.latency,
            &self.recovery,
        ]
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
    }

    /// The connections section of a target.
    fn connections_of(&self, target: &str) -> &Value {
        match target {
            "herald" => &self.connections["connections"],
            "ceiling" => &self.ceiling["connections"],
            _ => &self.mosquitto["connections"],
        }
    }

    /// The fan-out section of a target.
    fn fanout_of(&self, target: &str) -> &Value {
        match target {
            "herald" => &self.fanout["fanout"],
            "ceiling" => &self.ceiling["fanout"],
            _ => &self.mosquitto["fanout"],
        }
    }
}

pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let run = Run::load(&args.results)?;
    let dir = args
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    std::fs::create_dir_all(&dir)?;
    let charts = write_charts(&run, &dir)?;
    let markdown = render(&run, &charts);
    std::fs::write(&args.out, markdown)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("Wrote {}.", args.out.display());
    for chart in &charts {
        println!("Wrote {}.", dir.join(chart).display());
    }
    Ok(())
}

/// Draws the charts the results allow; returns their file names.
fn write_charts(run: &Run, dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut written = Vec::new();
    let steps: Vec<Series> = TARGETS
        .iter()
        .filter_map(|t| {
            let steps = run.latency["targets"][t]["steps"].as_array()?;
            let points = steps
                .iter()
                .filter_map(|s| {
                    Some((
                        s["offered_per_sec"].as_f64()?,
                        s["delivered_per_sec"].as_f64()?,
                    ))
                })
                .collect();
            Some(Series::new(t, points))
        })
        .collect();
    if !steps.is_empty() {
        let svg = charts::throughput_svg(
            "Delivered against offered load (open loop)",
            &format!(
                "{} devices, {} tokens/request, {} s per step; same offered rates for every target",
                run.latency["devices"], run.latency["tokens_per_request"], run.latency["step_secs"]
            ),
            &steps,
        );
        write_file(dir, "performance-throughput.svg", &svg, &mut written)?;
    }
    let at_rate: Vec<Series> = TARGETS
        .iter()
        .filter_map(|t| cdf_series(t, &run.latency["targets"][t]["at_rate"]["latency_cdf_ms"]))
        .collect();
    if !at_rate.is_empty() {
        let svg = charts::latency_cdf_svg(
            "Send-to-device latency at a fixed offered rate (CDF)",
            &format!(
                "{} notifications/s offered (open loop), {} devices, {} tokens/request",
                num(&run.latency["rate"]),
                run.latency["devices"],
                run.latency["tokens_per_request"]
            ),
            &at_rate,
        );
        write_file(dir, "performance-latency.svg", &svg, &mut written)?;
    }
    let saturated: Vec<Series> = TARGETS
        .iter()
        .filter_map(|t| cdf_series(t, &run.fanout_of(t)["latency_cdf_ms"]))
        .collect();
    if !saturated.is_empty() {
        let svg = charts::latency_cdf_svg(
            "Send-to-device latency at full fan-out (closed loop, CDF)",
            &format!(
                "{} devices, {} messages, {} tokens/request, {} requests in flight",
                run.fanout["devices"],
                run.fanout["fanout"]["messages"],
                run.fanout["fanout"]["tokens_per_request"],
                run.fanout["fanout"]["concurrency"]
            ),
            &saturated,
        );
        write_file(dir, "performance-fanout-latency.svg", &svg, &mut written)?;
    }
    Ok(written)
}

fn cdf_series(target: &str, cdf: &Value) -> Option<Series> {
    let points: Vec<(f64, f64)> = cdf
        .as_array()?
        .iter()
        .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
        .collect();
    (!points.is_empty()).then(|| Series::new(target, points))
}

fn write_file(dir: &Path, name: &str, text: &str, written: &mut Vec<String>) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    written.push(name.to_owned());
    Ok(())
}

/// The whole document.
fn render(run: &Run, charts: &[String]) -> String {
    let mut md = String::new();
    let first = run
        .scenarios()
        .first()
        .copied()
        .cloned()
        .unwrap_or(Value::Null);
    let machine = &first["machine"];
    let date = run.run["date"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("unix time {}", first["started_unix"]));
    let commit = run.run["commit"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| first["version"].as_str().unwrap_or("?").to_owned());
    let _ = writeln!(
        md,
        "# Herald performance, side by side\n\n\
         <!-- Generated by `herald-bench report` from the JSON results of one `scripts/bench` run; do not edit by hand. -->\n\n\
         Herald measured as a separate `herald serve` process against this machine's WebSocket ceiling \
         (a bare server built into herald-bench) and against Mosquitto, in the same run and with the same \
         workloads. Every number below is one the run printed; rerun `scripts/bench` to reproduce it.\n"
    );
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| date | {date} |");
    let _ = writeln!(md, "| commit | `{commit}` |");
    let _ = writeln!(
        md,
        "| bench | {} |",
        first["version"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        md,
        "| CPU | {} |",
        machine["cpu_model"].as_str().unwrap_or("?")
    );
    let _ = writeln!(md, "| cores (nproc) | {} |", machine["cpus"]);
    let _ = writeln!(md, "| memory | {} GiB |", machine["memory_gib"]);
    let _ = writeln!(
        md,
        "| kernel | {} |",
        machine["kernel"].as_str().unwrap_or("?")
    );
    let _ = writeln!(md, "| open-files limit | {} |", machine["open_files_limit"]);
    let loads: Vec<String> = run
        .scenarios()
        .iter()
        .filter_map(|s| {
            Some(format!(
                "{} {}",
                s["scenario"].as_str()?,
                s["machine"]["loadavg"].as_str()?
            ))
        })
        .collect();
    if !loads.is_empty() {
        let _ = writeln!(
            md,
            "| load average (1/5/15 min) as each scenario started | {} |",
            loads.join("; ")
        );
    }
    if let Some(m) = run.mosquitto["server"]["version"].as_str() {
        let _ = writeln!(md, "| mosquitto | {m} |");
    }
    md.push('\n');

    render_commands(&mut md, run);
    render_method(&mut md, run);
    render_summary(&mut md, run);
    render_connections(&mut md, run);
    render_fanout(&mut md, run, charts);
    render_ingress(&mut md, run);
    render_latency(&mut md, run, charts);
    render_recovery(&mut md, run);
    let _ = writeln!(
        md,
        "## Micro-benchmarks\n\n\
         `cargo bench --workspace` runs the criterion benchmarks of the hot functions: send-body parse and \
         validation (`crates/herald-core/benches/send.rs`), JWT verification with a warm cache \
         (`crates/herald-server/benches/auth.rs`) and device frame encoding \
         (`crates/herald-proto/benches/frames.rs`). Their numbers are in `target/criterion/`; \
         they are not part of this document because criterion compares runs on one machine, \
         not machines.\n\n\
         ## History\n\n\
         `docs/benchmarks.md` keeps the earlier in-process measurements (server and devices \
         in one process), for comparison with older commits only."
    );
    md
}

fn render_commands(md: &mut String, run: &Run) {
    let _ = writeln!(md, "## Commands\n\n```sh");
    if let Some(build) = run.run["build"].as_str() {
        let _ = writeln!(md, "{build}");
    }
    if let Some(invocation) = run.run["invocation"].as_str() {
        let _ = writeln!(md, "{invocation}");
        let _ = writeln!(md, "# which ran:");
    }
    for s in run.scenarios() {
        if let Some(c) = s["command"].as_str() {
            let _ = writeln!(md, "{c}");
        }
    }
    if let Some(report) = run.run["report"].as_str() {
        let _ = writeln!(md, "{report}");
    }
    let _ = writeln!(md, "```\n");
}

fn render_method(md: &mut String, run: &Run) {
    let exempt = run.fanout["server"]["env"]["HERALD_LIMITS_EXEMPT"]
        .as_str()
        .or(run.connections["server"]["env"]["HERALD_LIMITS_EXEMPT"].as_str())
        .unwrap_or("127.0.0.0/8");
    let _ = writeln!(
        md,
        "## How it was measured\n\n\
         - **Servers are separate processes.** herald-bench starts `herald serve` from the release \
           binary on a fresh temporary data directory and a free port (default configuration: SQLite \
           `synchronous = full`, WAL), with `HERALD_LIMITS_EXEMPT={exempt}` so that per-address limits \
           do not throttle the bench's own loopback traffic; it raises the bootstrapped app's quotas and \
           grants it `IM` through the admin API. The ceiling server (`herald-bench ceiling-server`) and \
           `mosquitto` are started the same way. Server memory is `VmRSS` of `/proc/<pid>/status` and \
           server CPU is `utime + stime` of `/proc/<pid>/stat`, **of the server process alone**. RSS is user-space \
           memory: the kernel's socket buffers (a few KiB of slab per TCP socket, the same for all \
           three) are not in it.\n\
         - **Devices live in other processes** (`herald-bench fleet`, up to 15,000 sockets each), \
           talking the documented device protocol (`docs/protocol.md`): Herald devices register \
           (`hello`), ask for a token, and ack every message in batches gathered for 20 ms as the SDK \
           does. Ceiling devices read a ~200-byte frame and answer a ~40-byte ack at once. MQTT devices \
           are rumqttc clients with persistent sessions (`clean_session = false`), one topic per device, \
           QoS 1 (PUBACK per message).\n\
         - **The same workload for all three**: N devices, M notifications in requests naming K \
           devices each, C requests in flight. Herald gets Push Kit `messages:send` requests (an \
           `IM` notification, signed JWT, answered after the store commit); the ceiling gets the same \
           request shape on `/fanout`; Mosquitto gets K QoS 1 publishes per request, one per device \
           topic, and a request counts as accepted when every PUBACK is back.\n\
         - **Rates count deliveries at the devices**, from the first send to the last message received; \
           latency is from the send time stamped into the payload to receipt (one wall clock, one \
           machine). Closed loop (fan-out) latencies are latencies at saturation; the latency \
           scenario offers fixed rates on a schedule (open loop) and stamps each message with its \
           scheduled slot, so a server that falls behind shows it.\n\
         - **Durability differs**: Herald commits every accepted notification to SQLite with \
           `synchronous = full` before answering. Mosquitto's persistence writes its in-memory state \
           to disk only at `autosave_interval` and on shutdown, so its QoS 1 PUBACK does not mean \
           durable. The ceiling keeps nothing.\n\
         - The ceiling takes its requests as HTTP/JSON like Herald does and has one task per \
           socket; Mosquitto (C, one thread) takes publishes over one MQTT connection per \
           publisher, so it can beat the \"ceiling\": the ceiling bounds what a Rust HTTP + \
           WebSocket server does on this machine, not what any broker can.\n\
         - Other work on the machine moves every rate: the load-average row above says how busy \
           it was, and on a shared 2-core machine rates differ by tens of percent between runs. \
           Compare targets within one run (the ratios), not runs with each other.\n\
         - Client and server share the machine's cores, so every rate is also bounded by the load \
           generator; the ceiling shows how much.\n"
    );
    if let Some(config) = run.mosquitto["server"]["config"].as_str() {
        let _ = writeln!(
            md,
            "Mosquitto's generated configuration:\n\n```\n{}```\n",
            config
        );
    }
}

fn render_summary(md: &mut String, run: &Run) {
    let _ = writeln!(
        md,
        "## Summary\n\n\
         Same run, same workload. Ratios are Herald ÷ the other (for rates higher is better for \
         Herald; for CPU and memory lower is).\n"
    );
    let _ = writeln!(
        md,
        "| | Herald | ceiling | Mosquitto | Herald ÷ ceiling | Herald ÷ Mosquitto |\n|---|---:|---:|---:|---:|---:|"
    );
    let rows: [(&str, Getter<'_>); 7] = [
        (
            "fan-out: delivered and acked per second",
            Box::new(|t| run.fanout_of(t)["delivered_per_sec"].clone()),
        ),
        (
            "fan-out latency p50 (ms)",
            Box::new(|t| run.fanout_of(t)["latency_ms"]["p50"].clone()),
        ),
        (
            "fan-out latency p99 (ms)",
            Box::new(|t| run.fanout_of(t)["latency_ms"]["p99"].clone()),
        ),
        (
            "fan-out latency p99.9 (ms)",
            Box::new(|t| run.fanout_of(t)["latency_ms"]["p999"].clone()),
        ),
        (
            "server CPU seconds per 1,000 deliveries",
            Box::new(|t| run.fanout_of(t)["server_cpu_secs_per_1000"].clone()),
        ),
        (
            "server RSS per idle connected device (bytes)",
            Box::new(|t| run.connections_of(t)["server_rss_per_device_bytes"].clone()),
        ),
        (
            "devices connected per second",
            Box::new(|t| run.connections_of(t)["connects_per_sec"].clone()),
        ),
    ];
    for (name, get) in rows {
        let values: Vec<Value> = TARGETS.iter().map(|t| get(t)).collect();
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} |",
            num(&values[0]),
            num(&values[1]),
            num_or_skipped(&values[2], &run.mosquitto),
            ratio(&values[0], &values[1]),
            ratio(&values[0], &values[2]),
        );
    }
    if let Some(r) = run.latency["rate"].as_f64() {
        for (name, key) in [("p50", "p50"), ("p99", "p99"), ("p99.9", "p999")] {
            let values: Vec<Value> = TARGETS
                .iter()
                .map(|t| run.latency["targets"][t]["at_rate"]["latency_ms"][key].clone())
                .collect();
            let _ = writeln!(
                md,
                "| latency {name} at {} /s offered (ms) | {} | {} | {} | {} | {} |",
                fmt_f(r),
                num(&values[0]),
                num(&values[1]),
                num_or_skipped(&values[2], &run.mosquitto),
                ratio(&values[0], &values[1]),
                ratio(&values[0], &values[2]),
            );
        }
    }
    md.push('\n');
    for t in TARGETS {
        let f = run.fanout_of(t);
        let (messages, accepted, delivered) = (
            f["messages"].as_u64(),
            f["accepted"].as_u64(),
            f["delivered"].as_u64(),
        );
        if let (Some(m), Some(a), Some(d)) = (messages, accepted, delivered)
            && (a < m || d < a)
        {
            let _ = writeln!(
                md,
                "**Warning: {t}'s fan-out did not deliver everything in this run**: {m} sent, {a} accepted, {d} delivered (answers: {}).\n",
                f["send"]["codes"]
            );
        }
    }
    let failed: Vec<&str> = run.run["failed"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(Value::as_str)
                .filter(|n| !n.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if !failed.is_empty() {
        let names = failed;
        let _ = writeln!(
            md,
            "**Scenarios that reported a failure in this run** (lost messages, or an error; their numbers are below where they were written): {}.\n",
            names.join(", ")
        );
    }
    if let Some(why) = run.mosquitto["skipped"].as_str() {
        let _ = writeln!(md, "**Mosquitto was skipped in this run**: {why}.\n");
    }
}

fn render_connections(md: &mut String, run: &Run) {
    let _ = writeln!(
        md,
        "## Connections (idle devices)\n\n\
         N devices connect (Herald: register and get a token) and stay idle. RSS per device is \
         (server RSS after − before) ÷ N; idle CPU is the server's over the idle window.\n"
    );
    let _ = writeln!(
        md,
        "| | Herald | ceiling | Mosquitto |\n|---|---:|---:|---:|"
    );
    let rows = [
        ("devices", "devices"),
        ("connect time (s)", "connect_secs"),
        ("devices connected per second", "connects_per_sec"),
        ("server RSS before (KiB)", "server_rss_before_kib"),
        ("server RSS after (KiB)", "server_rss_after_kib"),
        (
            "server RSS per device (bytes)",
            "server_rss_per_device_bytes",
        ),
        (
            "server CPU while connecting (s)",
            "server_cpu_secs_connecting",
        ),
        ("idle window (s)", "idle_secs"),
        ("server idle CPU (%)", "server_idle_cpu_percent"),
        ("client processes", "client_processes"),
    ];
    for (name, key) in rows {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} |",
            num(&run.connections_of("herald")[key]),
            num(&run.connections_of("ceiling")[key]),
            num_or_skipped(&run.connections_of("mosquitto")[key], &run.mosquitto),
        );
    }
    md.push('\n');
}

fn render_fanout(md: &mut String, run: &Run, charts: &[String]) {
    let f = &run.fanout["fanout"];
    let _ = writeln!(
        md,
        "## Fan-out\n\n\
         {} devices, {} notifications in requests of {} tokens, {} requests in flight (closed loop).\n",
        num(&run.fanout["devices"]),
        num(&f["messages"]),
        num(&f["tokens_per_request"]),
        num(&f["concurrency"])
    );
    let _ = writeln!(
        md,
        "| | Herald | ceiling | Mosquitto | Herald ÷ ceiling | Herald ÷ Mosquitto |\n|---|---:|---:|---:|---:|---:|"
    );
    let rows: [(&str, &str, &str); 12] = [
        ("accepted", "accepted", ""),
        ("delivered", "delivered", ""),
        ("duplicates", "duplicates", ""),
        ("acks recorded by the server", "acks_recorded_by_server", ""),
        ("send phase (s)", "send", "secs"),
        ("accepted per second", "send", "accepted_per_sec"),
        ("request round trip p50 (ms)", "send", "request_ms.p50"),
        ("delivered and acked per second", "delivered_per_sec", ""),
        ("latency p50 (ms)", "latency_ms", "p50"),
        ("latency p99 (ms)", "latency_ms", "p99"),
        ("latency p99.9 (ms)", "latency_ms", "p999"),
        (
            "server CPU per 1,000 deliveries (s)",
            "server_cpu_secs_per_1000",
            "",
        ),
    ];
    for (name, key, sub) in rows {
        let get = |t: &str| -> Value {
            let mut v = run.fanout_of(t)[key].clone();
            for part in sub.split('.').filter(|p| !p.is_empty()) {
                v = v[part].clone();
            }
            v
        };
        let (h, c, m) = (get("herald"), get("ceiling"), get("mosquitto"));
        let show_ratio = !matches!(
            key,
            "accepted" | "delivered" | "duplicates" | "acks_recorded_by_server"
        );
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} |",
            num(&h),
            num(&c),
            num_or_skipped(&m, &run.mosquitto),
            if show_ratio {
                ratio(&h, &c)
            } else {
                String::new()
            },
            if show_ratio {
                ratio(&h, &m)
            } else {
                String::new()
            },
        );
    }
    let _ = writeln!(
        md,
        "\nMosquitto does not count PUBACKs anywhere a client can read, hence no \"acks recorded\"; its devices acked every message (QoS 1).\n"
    );
    if charts.iter().any(|c| c == "performance-fanout-latency.svg") {
        let _ = writeln!(
            md,
            "![latency CDF at full fan-out](performance-fanout-latency.svg)\n"
        );
    }
}

fn render_ingress(md: &mut String, run: &Run) {
    let i = &run.ingress["ingress"];
    if i.is_null() {
        return;
    }
    let _ = writeln!(
        md,
        "## Ingress (Herald)\n\n\
         {} concurrent backends, each with its own keep-alive connection and one request at a time, \
         send {} single-token notifications to {} connected devices.\n",
        num(&run.ingress["backends"]),
        num(&i["requests"]),
        num(&run.ingress["devices"])
    );
    let _ = writeln!(md, "| | Herald |\n|---|---:|");
    let _ = writeln!(
        md,
        "| accepted | {} of {} |",
        num(&i["accepted"]),
        num(&i["requests"])
    );
    let _ = writeln!(
        md,
        "| every answer `80000000` | {} |",
        i["every_answer_success"]
    );
    let _ = writeln!(
        md,
        "| accepted per second | {} |",
        num(&i["accepted_per_sec"])
    );
    for (name, key) in [
        ("p50", "p50"),
        ("p99", "p99"),
        ("p99.9", "p999"),
        ("max", "max"),
    ] {
        let _ = writeln!(
            md,
            "| request round trip {name} (ms) | {} |",
            num(&i["send"]["request_ms"][key])
        );
    }
    let _ = writeln!(md, "| server CPU (s) | {} |", num(&i["server_cpu_secs"]));
    let _ = writeln!(
        md,
        "| delivered to the devices | {} |",
        num(&i["delivered"])
    );
    let _ = writeln!(
        md,
        "\nDurability: {}.\n",
        i["durable"].as_str().unwrap_or("?")
    );
}

fn render_latency(md: &mut String, run: &Run, charts: &[String]) {
    let l = &run.latency;
    if l.is_null() {
        return;
    }
    let _ = writeln!(
        md,
        "## Latency at fixed offered rates (open loop)\n\n\
         Offered rates are fractions of Herald's fan-out rate ({} /s, from {}), up to {} /s; a \
         target stops climbing after the first rate it delivered less than 80 % of (\"–\" above \
         it). The headline rate is {} /s. Each rate lasts {} s on {} connected devices, requests \
         of {} tokens. Latency is from each request's scheduled slot to receipt.\n",
        num(&l["max_rate"]),
        l["max_rate_from"].as_str().unwrap_or("?"),
        num(&l["max_offered"]),
        num(&l["rate"]),
        num(&l["step_secs"]),
        num(&l["devices"]),
        num(&l["tokens_per_request"]),
    );
    let _ = writeln!(
        md,
        "| offered /s | Herald delivered /s | Herald p50 / p99 / p99.9 (ms) | ceiling delivered /s | ceiling p50 / p99 / p99.9 (ms) | Mosquitto delivered /s | Mosquitto p50 / p99 / p99.9 (ms) |\n|---:|---:|---:|---:|---:|---:|---:|"
    );
    let rates = l["offered_rates"].as_array().cloned().unwrap_or_default();
    for (i, rate) in rates.iter().enumerate() {
        let mut row = format!("| {} ", num(rate));
        for t in TARGETS {
            let step = &l["targets"][t]["steps"][i];
            if step.is_null() {
                row.push_str("| – | – ");
                continue;
            }
            let p = &step["latency_ms"];
            let _ = write!(
                row,
                "| {} | {} / {} / {} ",
                num(&step["delivered_per_sec"]),
                num(&p["p50"]),
                num(&p["p99"]),
                num(&p["p999"])
            );
        }
        row.push('|');
        let _ = writeln!(md, "{row}");
    }
    md.push('\n');
    if charts.iter().any(|c| c == "performance-throughput.svg") {
        let _ = writeln!(
            md,
            "![delivered against offered load](performance-throughput.svg)\n"
        );
    }
    if charts.iter().any(|c| c == "performance-latency.svg") {
        let _ = writeln!(
            md,
            "![latency CDF at the headline rate](performance-latency.svg)\n"
        );
    }
}

fn render_recovery(md: &mut String, run: &Run) {
    let r = &run.recovery["recovery"];
    if r.is_null() {
        return;
    }
    let _ = writeln!(
        md,
        "## Recovery after SIGKILL (Herald)\n\n\
         {} notifications are queued for {} offline devices; the node is killed with SIGKILL (no \
         shutdown at all) and started again on the same data directory; the devices come back.\n",
        num(&r["queued"]),
        num(&run.recovery["devices"])
    );
    let _ = writeln!(md, "| | Herald |\n|---|---:|");
    let _ = writeln!(
        md,
        "| SIGKILL → `/healthz` answers (s) | {} |",
        num(&r["kill_to_healthz_secs"])
    );
    let _ = writeln!(
        md,
        "| SIGKILL → every device reconnected (s) | {} |",
        num(&r["kill_to_devices_reconnected_secs"])
    );
    let _ = writeln!(
        md,
        "| SIGKILL → every queued message delivered (s) | {} |",
        num(&r["kill_to_all_delivered_secs"])
    );
    let _ = writeln!(
        md,
        "| delivered | {} of {} |",
        num(&r["delivered"]),
        num(&r["queued"])
    );
    let _ = writeln!(md, "| duplicates | {} |", num(&r["duplicates"]));
    md.push('\n');
}

/// A number as the run printed it (thousands separated), or "–".
fn num(v: &Value) -> String {
    match v {
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => group(&u.to_string()),
            (None, Some(f)) => fmt_f(f),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        _ => "–".to_owned(),
    }
}

fn num_or_skipped(v: &Value, mosquitto: &Value) -> String {
    if mosquitto["skipped"].is_string() {
        "skipped".to_owned()
    } else {
        num(v)
    }
}

/// A float with its decimals as recorded, integer part grouped.
fn fmt_f(f: f64) -> String {
    let s = format!("{f}");
    let (int, frac) = s.split_once('.').unwrap_or((&s, ""));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    if frac.is_empty() {
        format!("{sign}{}", group(digits))
    } else {
        format!("{sign}{}.{frac}", group(digits))
    }
}

fn group(digits: &str) -> String {
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

/// `a ÷ b` as "0.42×", or empty when either is missing or b is zero.
fn ratio(a: &Value, b: &Value) -> String {
    match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) if b != 0.0 => {
            let r = a / b;
            if r >= 10.0 {
                format!("{r:.0}×")
            } else {
                format!("{r:.2}×")
            }
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_read_as_printed() {
        assert_eq!(num(&json!(1234567)), "1\u{202f}234\u{202f}567");
        assert_eq!(num(&json!(12345.67)), "12\u{202f}345.67");
        assert_eq!(num(&json!(0.0042)), "0.0042");
        assert_eq!(num(&Value::Null), "–");
        assert_eq!(ratio(&json!(1.0), &json!(4.0)), "0.25×");
        assert_eq!(ratio(&json!(50.0), &json!(2.0)), "25×");
        assert_eq!(ratio(&json!(1.0), &Value::Null), "");
    }
}
