//! The smoke version of `herald bench`: a tiny run against its embedded node must deliver
//! every message and write sane results and a chart. No timing assertions: CI machines vary.

use std::process::Stdio;

use crate::process::{herald, read_json};

#[test]
fn a_small_bench_delivers_every_message_and_writes_results_and_a_chart() {
    let out = tempfile::tempdir().unwrap();
    let run = herald()
        .args([
            "bench",
            "--devices",
            "20",
            "--messages",
            "200",
            "--tokens-per-request",
            "10",
            "--out",
        ])
        .arg(out.path())
        .stdin(Stdio::null())
        .output()
        .expect("herald bench runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "herald bench failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("latency"), "a results table: {stdout}");

    let r = read_json(&out.path().join("results.json"));
    assert_eq!(r["parameters"]["server"], "embedded");
    assert_eq!(r["parameters"]["sqlite_synchronous"], "full");
    assert_eq!(r["send"]["sent"], 200);
    assert_eq!(r["send"]["accepted"], 200);
    assert_eq!(r["send"]["requests_ok"], 20);
    assert_eq!(r["delivery"]["delivered"], r["send"]["sent"], "{r:#}");
    assert_eq!(r["delivery"]["duplicates"], 0);
    assert_eq!(r["acks"]["sent_by_devices"], 200);
    assert_eq!(r["acks"]["recorded_by_server"], 200);
    assert!(r["connect"]["per_sec"].as_f64().unwrap() > 0.0);
    assert!(r["send"]["tokens_per_sec"].as_f64().unwrap() > 0.0);
    assert!(r["send"]["requests_per_sec"].as_f64().unwrap() > 0.0);
    let latency = &r["delivery"]["latency_ms"];
    assert_eq!(latency["count"], 200);
    let (p50, p90, p99, max) = (
        latency["p50"].as_f64().unwrap(),
        latency["p90"].as_f64().unwrap(),
        latency["p99"].as_f64().unwrap(),
        latency["max"].as_f64().unwrap(),
    );
    assert!(
        0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= max,
        "{latency}"
    );
    assert!(r["version"].as_str().unwrap().starts_with("herald "));

    let svg = std::fs::read_to_string(out.path().join("latency.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"));
}
