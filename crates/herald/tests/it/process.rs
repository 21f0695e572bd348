//! Child-process helpers: a server on a free port (plain or over TLS), a device whose JSON lines are read
//! with timeouts, and a self-signed PS256 JWT.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn herald() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_herald"));
    c.env("HERALD_LOG", "warn");
    c
}

/// A `herald serve` child process. Dropping it kills the process.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        Server::start_on(data_dir, free_port())
    }

    pub fn start_on(data_dir: &Path, port: u16) -> Server {
        Server::start_with_env(data_dir, port, &[])
    }

    /// `herald serve` on `port` with extra `HERALD_*` settings in its environment, once
    /// healthy.
    pub fn start_with_env(data_dir: &Path, port: u16, env: &[(&str, &str)]) -> Server {
        let child = herald()
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("herald serve starts");
        let server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            data_dir: data_dir.to_owned(),
        };
        server.wait_healthy();
        server
    }

    /// `herald serve --data-dir DIR --listen 127.0.0.1:PORT EXTRA…` on a free port, its
    /// log (at `info`) written to `log`; returns at once (see [`Server::wait_healthy`]).
    pub fn launch(data_dir: &Path, extra: &[&str], log: &Path) -> Server {
        Server::launch_logging("info", data_dir, extra, log)
    }

    /// [`Server::launch`] with the log at `level` (a `HERALD_LOG` filter).
    pub fn launch_logging(level: &str, data_dir: &Path, extra: &[&str], log: &Path) -> Server {
        let port = free_port();
        let child = herald()
            .env("HERALD_LOG", level)
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("herald serve starts");
        Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            data_dir: data_dir.to_owned(),
        }
    }

    /// `herald serve --listen 127.0.0.1:PORT ARGS…` on a free port (no `--data-dir`
    /// unless `args` has one), its log (at `warn`) written to `log`; returns at once
    /// (see [`Server::wait_healthy`]). `data_dir` is left empty.
    pub fn launch_args(args: &[&str], log: &Path) -> Server {
        let port = free_port();
        let child = herald()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"))
            .spawn()
            .expect("herald serve starts");
        Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            data_dir: PathBuf::new(),
        }
    }

    /// Wait (at most 30 s) until `/healthz` answers 200.
    pub fn wait_healthy(&self) {
        let port = self.port();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                let _ = s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200") {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "server did not become healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `herald serve --tls-cert CERT --tls-key KEY` on a free port: `https://127.0.0.1:PORT`,
    /// healthy once `/healthz` answers over TLS to a client trusting only `ca`.
    pub fn start_tls(data_dir: &Path, cert: &Path, key: &Path, ca: &Path) -> Server {
        let port = free_port();
        let child = herald()
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("herald serve starts");
        let url = format!("https://127.0.0.1:{port}");
        let client = https_client(ca);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !rt.block_on(async {
            client
                .get(format!("{url}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }) {
            assert!(
                Instant::now() < deadline,
                "server did not become healthy over TLS"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Server {
            child,
            url,
            data_dir: data_dir.to_owned(),
        }
    }

    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }

    pub fn bootstrap(&self) -> Value {
        read_json(&self.data_dir.join("bootstrap.json"))
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTPS client that trusts only the CA certificates in `ca` (PEM).
pub fn https_client(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("CA file");
    reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).expect("PEM certificates"))
        .build()
        .expect("HTTPS client")
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("readable")).expect("JSON")
}

/// A `herald device --json` child process and its output lines.
pub struct DeviceProc {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    lines: mpsc::Receiver<Value>,
}

impl DeviceProc {
    pub fn start(url: &str, client_id: &str, state_dir: &Path, extra: &[&str]) -> DeviceProc {
        DeviceProc::spawn(url, client_id, state_dir, extra, None)
    }

    /// [`DeviceProc::start`] with the device's own log, at `debug`, written to `log`.
    pub fn start_logged(url: &str, client_id: &str, state_dir: &Path, log: &Path) -> DeviceProc {
        DeviceProc::spawn(url, client_id, state_dir, &[], Some(log))
    }

    fn spawn(
        url: &str,
        client_id: &str,
        state_dir: &Path,
        extra: &[&str],
        log: Option<&Path>,
    ) -> DeviceProc {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
            None => Stdio::null(),
        };
        let mut child = herald()
            .env("HERALD_LOG", if log.is_some() { "debug" } else { "warn" })
            .args([
                "device",
                "--server",
                url,
                "--client-id",
                client_id,
                "--json",
                "--state-dir",
            ])
            .arg(state_dir)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("herald device starts");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| panic!("device printed a non-JSON line: {line}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        DeviceProc {
            child,
            stdin,
            lines,
        }
    }

    /// Writes one JSON command line to the device's standard input.
    pub fn command(&mut self, command: Value) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{command}").expect("write a command");
        stdin.flush().expect("flush");
    }

    /// The next event named `event`, skipping others, within `timeout`.
    pub fn expect(&self, event: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if v["event"] == event => return v,
                Ok(_) => continue,
                Err(_) => panic!("no {event:?} event within {timeout:?}"),
            }
        }
    }

    /// Every line before the first one `stop` accepts (which is not included), within
    /// `timeout`. With a later event as `stop` (a marker the test caused), "nothing else
    /// came" is a check on these lines rather than a quiet period.
    pub fn until(&self, timeout: Duration, stop: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if stop(&v) => return before,
                Ok(v) => before.push(v),
                Err(_) => panic!("the awaited line did not come within {timeout:?}: {before:?}"),
            }
        }
    }
}

impl Drop for DeviceProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PS256 JWT signed from a Huawei-layout key file, as any backend would sign it.
pub fn sign_jwt(key_file: &Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::PS256);
    header.kid = key_file["key_id"].as_str().map(str::to_owned);
    header.typ = Some("JWT".into());
    let claims = serde_json::json!({
        "iss": key_file["sub_account"],
        "aud": "https://oauth-login.cloud.huawei.com/oauth2/v3/token",
        "iat": now,
        "exp": now + 3600,
    });
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(
        key_file["private_key"]
            .as_str()
            .expect("private_key")
            .as_bytes(),
    )
    .expect("PKCS#8 key");
    jsonwebtoken::encode(&header, &claims, &key).expect("signed")
}

/// POST a push-type 0 send with a fresh JWT; returns (status, body).
pub fn post_send(url: &str, project_id: &str, jwt: &str, body: &Value) -> (u16, Value) {
    post_push(url, &format!("v3/{project_id}/messages:send"), jwt, 0, body)
}

/// POST to a Push Kit endpoint (`v3/{projectId}/messages:send`,
/// `v1/{clientId}/messages:revoke`) with a JWT and a `push-type`.
pub fn post_push(url: &str, path: &str, jwt: &str, push_type: u8, body: &Value) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .post(format!("{url}/{path}"))
            .header("Authorization", format!("Bearer {jwt}"))
            .header("push-type", push_type.to_string())
            .json(body)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON"))
    })
}

/// Run `herald ARGS…` with its JWT cache under `cache_home`: whether it succeeded, and
/// the JSON it printed (stdout and stderr are in the panic message when it is not JSON).
pub fn cli(args: &[&str], cache_home: &Path) -> (bool, Value) {
    let out = herald()
        .args(args)
        .env("XDG_CACHE_HOME", cache_home)
        .output()
        .expect("herald runs");
    let body: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "herald {args:?} printed non-JSON: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), body)
}

/// `herald admin --bootstrap BOOT ARGS…`: whether it succeeded, and the JSON it printed.
pub fn admin(boot: &Path, args: &[&str]) -> (bool, Value) {
    let boot = boot.to_str().expect("a UTF-8 path");
    let all: Vec<&str> = ["admin", "--bootstrap", boot]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    cli(&all, &std::env::temp_dir())
}
