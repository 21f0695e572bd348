//! A really full disk: `herald serve` with its data directory on a 16 MiB tmpfs of its
//! own (a private mount namespace, `unshare -m`), filled up by the test while sends run.
//! SQLite then fails at commit (the write-ahead log cannot grow), where the in-process
//! test (`herald-server` `faults.rs`, `max_page_count`) fails inside a statement: the
//! two cover both places a full disk shows up. Needs root (or the right to mount in a
//! user namespace); prints SKIPPED and checks nothing without it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::process::{DeviceProc, Server, post_send, read_json, sign_jwt};

/// Mounting a tmpfs in a private mount namespace works here.
fn can_mount(dir: &Path) -> bool {
    Command::new("unshare")
        .arg("-m")
        .args(["sh", "-c", "mount -t tmpfs -o size=1m tmpfs \"$1\"", "sh"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `herald serve` on a fresh 16 MiB tmpfs mounted at `mount` in its own namespace; the
/// test sees that filesystem through `/proc/<pid>/root`.
fn serve_on_tmpfs(mount: &Path) -> (Server, PathBuf) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    // `unshare` and `sh` exec, so the child's pid is the server's.
    let child = Command::new("unshare")
        .arg("-m")
        .args([
            "sh",
            "-c",
            "mount -t tmpfs -o size=16m tmpfs \"$1\" && exec \"$2\" serve --data-dir \"$1/data\" --listen \"$3\"",
            "sh",
        ])
        .arg(mount)
        .arg(env!("CARGO_BIN_EXE_herald"))
        .arg(format!("127.0.0.1:{port}"))
        .env("HERALD_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let root =
        PathBuf::from(format!("/proc/{}/root", child.id())).join(mount.strip_prefix("/").unwrap());
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
        data_dir: root.join("data"),
    };
    server.wait_healthy();
    (server, root)
}

/// Fill the filesystem at `dir` with one file until a write fails; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("ballast");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    // The last few blocks, then nothing.
    while file.write_all(&chunk[..512]).is_ok() {}
    path
}

fn note(token: &str, title: &str) -> Value {
    json!({"payload": {"notification": {"category": "MARKETING", "title": title,
        "body": format!("{title}:{}", "x".repeat(3000)), "clickAction": {"actionType": 0}}},
        "target": {"token": [token]}, "pushOptions": {"testMessage": true}})
}

#[test]
fn a_full_filesystem_answers_81000001_loses_nothing_accepted_and_recovers_by_itself() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("mnt");
    std::fs::create_dir(&mount).unwrap();
    if !can_mount(&mount) {
        eprintln!("SKIPPED: cannot mount a tmpfs in a private mount namespace (needs root)");
        return;
    }
    let (server, root) = serve_on_tmpfs(&mount);
    let boot = server.bootstrap();
    let project = boot["project_id"].as_str().unwrap().to_owned();
    let client_id = boot["client_id"].as_str().unwrap().to_owned();
    let key = read_json(&server.data_dir.join("service-account.json"));
    let jwt = sign_jwt(&key);
    let state = dir.path().join("device");
    let device = DeviceProc::start(&server.url, &client_id, &state, &[]);
    let token = device.expect("token", Duration::from_secs(20))["token"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(device);

    let send = |title: &str| -> bool {
        let (status, resp) = post_send(&server.url, &project, &jwt, &note(&token, title));
        match resp["code"].as_str() {
            Some("80000000") => true,
            Some("81000001") => {
                assert_eq!(status, 500);
                false
            }
            _ => panic!("{title}: {status} {resp}"),
        }
    };
    let mut accepted = Vec::new();
    for i in 0..5 {
        let title = format!("before-{i}");
        assert!(send(&title));
        accepted.push(title);
    }
    let ballast = fill(&root);
    let mut refused = 0;
    for i in 0.. {
        assert!(i < 200, "the filesystem never filled");
        let title = format!("during-{i}");
        if send(&title) {
            accepted.push(title);
        } else {
            refused += 1;
            if refused == 5 {
                break;
            }
        }
    }
    std::fs::remove_file(ballast).unwrap();
    // Once space is back the gateway registers new devices again. (While the disk is full
    // a registration, itself a durable write, may fail like a send: not checked there.)
    let probe = DeviceProc::start(&server.url, &client_id, &dir.path().join("probe"), &[]);
    probe.expect("token", Duration::from_secs(20));
    drop(probe);
    for i in 0..5 {
        let title = format!("after-{i}");
        assert!(send(&title), "{title}: not accepted once space came back");
        accepted.push(title);
    }

    // A marker sent last: every accepted message comes before it.
    assert!(send("marker"));
    let device = DeviceProc::start(&server.url, &client_id, &state, &[]);
    let mut shown: HashMap<String, usize> = HashMap::new();
    let before = device.until(Duration::from_secs(60), |v| {
        v["event"] == "notification" && v["title"] == "marker"
    });
    for n in before.iter().filter(|v| v["event"] == "notification") {
        let title = n["title"].as_str().unwrap().to_owned();
        assert_eq!(
            n["body"].as_str().unwrap(),
            format!("{title}:{}", "x".repeat(3000)),
            "intact"
        );
        *shown.entry(title).or_default() += 1;
    }
    let mut got: Vec<&String> = shown.keys().collect();
    got.sort();
    let mut expected: Vec<&String> = accepted.iter().collect();
    expected.sort();
    assert_eq!(got, expected, "exactly the accepted messages");
    assert!(shown.values().all(|n| *n == 1), "each once: {shown:?}");
    eprintln!(
        "{} accepted, {refused} refused while full; all accepted delivered once",
        accepted.len()
    );
}
