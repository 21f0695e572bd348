//! The smoke run CI does: every scenario with a handful of devices for a few seconds, then
//! the report. It asserts that every message was delivered (and acknowledged where the
//! server counts acks), never a speed: CI machines vary. The bench's own counters are
//! checked against a server this test starts and reads itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// `target/debug/herald`, which `cargo test --workspace` builds for herald's own tests.
fn herald_bin() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_herald-bench"));
    let herald = bench.with_file_name("herald");
    assert!(
        herald.is_file(),
        "{} is missing: run `cargo build -p herald` (or `cargo test --workspace`) first",
        herald.display()
    );
    herald
}

fn bench(out: &Path, args: &[&str]) {
    let run = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .arg("--out")
        .arg(out)
        .arg("--herald-bin")
        .arg(herald_bin())
        .args(["--settle-secs", "0.2"])
        .args(args)
        .output()
        .expect("herald-bench runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "herald-bench {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("WARNING"),
        "herald-bench {args:?} lost messages\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

fn read(out: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(out.join(format!("{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every message of a fan-out was accepted, delivered once and (where counted) acked.
/// Where the server counts acks, its count is the one that must be whole: the devices'
/// own count is read as soon as the last message arrived, and a Herald device gathers
/// its acks for 20 ms before it sends (and counts) them.
fn assert_all_delivered(f: &Value, messages: u64, server_counts_acks: bool) {
    assert_eq!(f["messages"], messages, "{f:#}");
    assert_eq!(f["accepted"], messages, "{f:#}");
    assert_eq!(f["delivered"], messages, "{f:#}");
    assert_eq!(f["duplicates"], 0, "{f:#}");
    assert_eq!(f["connections_lost"], 0, "{f:#}");
    assert_eq!(f["latency_ms"]["count"], messages, "{f:#}");
    if server_counts_acks {
        assert_eq!(f["acks_recorded_by_server"], messages, "{f:#}");
        assert!(
            f["acks_sent_by_devices"].as_u64().unwrap() <= messages,
            "{f:#}"
        );
    } else {
        assert_eq!(f["acks_sent_by_devices"], messages, "{f:#}");
    }
}

#[test]
fn every_scenario_delivers_every_message_and_the_report_shows_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let fanout = [
        "--devices",
        "20",
        "--messages",
        "200",
        "--tokens-per-request",
        "10",
        "--idle-secs",
        "0.2",
    ];

    bench(out, &[&["connections"][..], &fanout].concat());
    let c = read(out, "connections");
    assert_eq!(c["connections"]["connected"], 20, "{c:#}");
    assert!(c["connections"]["server_rss_after_kib"].as_u64().unwrap() > 0);
    assert_eq!(c["server"]["env"]["HERALD_LIMITS_EXEMPT"], "127.0.0.0/8");

    bench(out, &[&["fanout"][..], &fanout].concat());
    assert_all_delivered(&read(out, "fanout")["fanout"], 200, true);

    bench(out, &[&["ceiling"][..], &fanout].concat());
    let ceiling = read(out, "ceiling");
    assert_eq!(ceiling["connections"]["connected"], 20);
    assert_all_delivered(&ceiling["fanout"], 200, true);

    bench(out, &[&["mosquitto"][..], &fanout].concat());
    let mosquitto = read(out, "mosquitto");
    if Path::new("/usr/sbin/mosquitto").is_file() {
        assert_eq!(mosquitto["connections"]["connected"], 20);
        assert_all_delivered(&mosquitto["fanout"], 200, false);
    } else {
        let why = mosquitto["skipped"].as_str().unwrap();
        assert!(why.contains("apt-get install mosquitto"), "{why}");
    }

    bench(
        out,
        &[
            "ingress",
            "--backends",
            "4",
            "--requests",
            "100",
            "--devices",
            "10",
        ],
    );
    let i = read(out, "ingress");
    assert_eq!(i["ingress"]["accepted"], 100, "{i:#}");
    assert_eq!(i["ingress"]["every_answer_success"], true, "{i:#}");
    assert_eq!(i["ingress"]["delivered"], 100, "{i:#}");

    // Low rates so that any machine keeps up; the rate comes from --max-rate, not a
    // measurement, so the test does not depend on the fan-out's speed.
    bench(
        out,
        &[
            "latency",
            "--max-rate",
            "400",
            "--sweep",
            "0.5,1",
            "--step-secs",
            "0.5",
            "--devices",
            "20",
            "--tokens-per-request",
            "10",
        ],
    );
    let l = read(out, "latency");
    for target in ["herald", "ceiling", "mosquitto"] {
        let Some(steps) = l["targets"][target]["steps"].as_array() else {
            assert!(l["targets"][target]["skipped"].is_string(), "{l:#}");
            continue;
        };
        // A slow machine may saturate at the first rate, which ends the climb.
        assert!(!steps.is_empty() && steps.len() <= 2, "{l:#}");
        for step in steps {
            assert!(step["accepted"].as_u64().unwrap() > 0, "{step:#}");
            assert_eq!(step["delivered"], step["accepted"], "{target}: {step:#}");
        }
        assert!(
            l["targets"][target]["at_rate"]["latency_ms"]["count"]
                .as_u64()
                .unwrap()
                > 0
        );
    }

    bench(out, &["recovery", "--devices", "20", "--messages", "200"]);
    let r = read(out, "recovery");
    assert_eq!(r["recovery"]["queued"], 200, "{r:#}");
    assert_eq!(r["recovery"]["delivered"], 200, "{r:#}");
    assert_eq!(r["recovery"]["duplicates"], 0, "{r:#}");

    let doc = out.join("doc").join("PERFORMANCE.md");
    let report = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .args(["report", "--results"])
        .arg(out)
        .arg("--out")
        .arg(&doc)
        .output()
        .unwrap();
    assert!(report.status.success(), "{report:?}");
    let md = std::fs::read_to_string(&doc).unwrap();
    for section in [
        "## Summary",
        "## Connections",
        "## Fan-out",
        "## Ingress",
        "## Latency",
        "## Recovery",
        "HERALD_LIMITS_EXEMPT=127.0.0.0/8",
    ] {
        assert!(md.contains(section), "{section} missing from\n{md}");
    }
    for chart in [
        "performance-throughput.svg",
        "performance-latency.svg",
        "performance-fanout-latency.svg",
    ] {
        let svg = std::fs::read_to_string(doc.with_file_name(chart)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{chart}"
        );
        assert!(md.contains(chart), "{chart} not linked");
    }
}

/// A `herald serve` this test runs, exempt from the per-address limits as the bench's own
/// servers are; killed when dropped.
struct Serve {
    child: std::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start() -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let child = Command::new(herald_bin())
            .args(["serve", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("HERALD_LOG", "warn")
            .env("HERALD_LIMITS_EXEMPT", "127.0.0.0/8")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let serve = Serve { child, port, dir };
        // The bench itself waits for /healthz (--server); bootstrap.json is written before
        // the node listens.
        let boot = serve.bootstrap_path();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !boot.is_file() || std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "herald serve did not start"
            );
            // tidy: waiting for a child process to listen (no event to await across processes)
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        serve
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn bootstrap_path(&self) -> PathBuf {
        self.dir.path().join("data").join("bootstrap.json")
    }

    /// `GET /api/v1/report` with the admin token, over a plain socket.
    fn report(&self) -> Value {
        use std::io::{Read, Write};
        let boot: Value =
            serde_json::from_str(&std::fs::read_to_string(self.bootstrap_path()).unwrap()).unwrap();
        let token = boot["admin_token"].as_str().unwrap();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "GET /api/v1/report HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        serde_json::from_str(body).unwrap()
    }
}

/// The bench's counters can only be trusted if they are the server's: a fan-out against
/// a node this test started, then the node's own push report says how many messages it
/// accepted and how many acks it recorded.
#[test]
fn the_fanout_the_bench_reports_is_what_the_server_recorded() {
    let serve = Serve::start();
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .arg("--out")
        .arg(out.path())
        .args(["--server", &serve.url(), "--bootstrap"])
        .arg(serve.bootstrap_path())
        .args([
            "--settle-secs",
            "0.2",
            "fanout",
            "--devices",
            "20",
            "--messages",
            "200",
        ])
        .args(["--tokens-per-request", "10", "--idle-secs", "0.2"])
        .output()
        .expect("herald-bench runs");
    assert!(
        run.status.success(),
        "herald-bench fanout failed\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let f = read(out.path(), "fanout")["fanout"].clone();
    assert_all_delivered(&f, 200, true);
    let report = serve.report();
    let summary = &report["summary"];
    assert_eq!(summary["sent"], 200, "{report:#}");
    assert_eq!(summary["delivered"], f["delivered"], "{report:#}");
    assert_eq!(summary["not_delivered"], 0, "{report:#}");
}
