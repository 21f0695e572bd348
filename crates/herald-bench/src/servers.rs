//! The servers under test, each a separate process whose memory and CPU the bench reads
//! from `/proc`: `herald serve` (started here from a given binary, or one the user runs),
//! the ceiling server (`herald-bench ceiling-server`) and Debian's `mosquitto`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use herald_client::admin::AdminClient;
use serde_json::{Value, json};
use tokio::process::Child;
use tokio::time::Instant;

use crate::procfs::{Usage, free_port};

/// Per-address limits never apply to the bench's own loopback traffic.
pub const LIMITS_EXEMPT: &str = "127.0.0.0/8";
/// Limits and quotas high enough that the bench measures the server, not its policy.
const UNLIMITED: u32 = 1_000_000_000;
/// How long a server may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A server process this bench started: killed when dropped.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    pub pid: u32,
    pub log: PathBuf,
}

impl Proc {
    fn spawn(mut command: tokio::process::Command, log: &Path) -> anyhow::Result<Proc> {
        // Appended to, so that a restarted server's log follows the killed one's.
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("creating {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {:?}", command.as_std().get_program()))?;
        let pid = child.id().context("the server exited at once")?;
        Ok(Proc {
            child,
            pid,
            log: log.to_owned(),
        })
    }

    pub fn usage(&self) -> Option<Usage> {
        Usage::of(self.pid)
    }

    /// SIGKILL, and wait for the process to be gone.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Ends a server whose data the bench throws away: SIGKILL, because a graceful
    /// shutdown would only add its grace period to every scenario's wall time.
    pub async fn stop(mut self) {
        self.kill().await;
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

/// Where to find the Herald node under test.
#[derive(Debug, Clone)]
pub enum HeraldSource {
    /// Start `herald serve` from this binary on a fresh data directory and a free port.
    Spawn { bin: PathBuf },
    /// A node the user runs, and its bootstrap.json (admin token, client id, key file).
    External { url: String, bootstrap: PathBuf },
}

/// A Herald node under test.
#[derive(Debug)]
pub struct Herald {
    pub url: String,
    pub client_id: String,
    pub admin_token: String,
    pub service_account_file: PathBuf,
    /// `None` for a node the user runs (its memory and CPU are not measured).
    pub proc: Option<Proc>,
    /// How to start it again after a kill (same binary, directory and port).
    restart: Option<(PathBuf, u16)>,
    dir: Option<tempfile::TempDir>,
}

impl Herald {
    pub async fn start(source: &HeraldSource) -> anyhow::Result<Herald> {
        match source {
            HeraldSource::External { url, bootstrap } => {
                let info = read_bootstrap(bootstrap)?;
                let herald = Herald {
                    url: url.trim_end_matches('/').to_owned(),
                    client_id: info.client_id,
                    admin_token: info.admin_token,
                    service_account_file: info.service_account_file,
                    proc: None,
                    restart: None,
                    dir: None,
                };
                wait_healthy(&herald.url, None).await?;
                Ok(herald)
            }
            HeraldSource::Spawn { bin } => {
                let dir = tempfile::Builder::new()
                    .prefix("herald-bench-")
                    .tempdir()
                    .context("creating a temporary data directory")?;
                let port = free_port()?;
                let url = format!("http://127.0.0.1:{port}");
                let mut proc = spawn_herald(bin, dir.path(), port)?;
                if let Err(e) = wait_healthy(&url, Some(&mut proc)).await {
                    bail!("{e:#}\n--- herald log:\n{}", proc.log_tail());
                }
                let info = read_bootstrap(&dir.path().join("data").join("bootstrap.json"))?;
                Ok(Herald {
                    url,
                    client_id: info.client_id,
                    admin_token: info.admin_token,
                    service_account_file: info.service_account_file,
                    proc: Some(proc),
                    restart: Some((bin.clone(), port)),
                    dir: Some(dir),
                })
            }
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.proc.as_ref().and_then(Proc::usage)
    }

    /// The log of a node the bench started.
    pub fn log(&self) -> Option<&Path> {
        self.proc.as_ref().map(|p| p.log.as_path())
    }

    /// SIGKILL the node (no shutdown at all), for the recovery scenario.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        let proc = self
            .proc
            .as_mut()
            .context("only a node the bench started can be killed")?;
        proc.kill().await;
        Ok(())
    }

    /// Starts the node again on the same data directory and port; returns once its
    /// `/healthz` answers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let (bin, port) = self
            .restart
            .clone()
            .context("not a node the bench started")?;
        let dir = self.dir.as_ref().context("no data directory")?;
        let mut proc = spawn_herald(&bin, dir.path(), port)?;
        if let Err(e) = wait_healthy(&self.url, Some(&mut proc)).await {
            bail!("{e:#}\n--- herald log:\n{}", proc.log_tail());
        }
        self.proc = Some(proc);
        Ok(())
    }

    pub fn admin(&self) -> anyhow::Result<AdminClient> {
        Ok(AdminClient::new(&self.url, &self.admin_token)?)
    }

    /// Raises the app's limits and grants it `IM` (so notifications are IM, not MARKETING
    /// with its 2 a day), through the admin API as an operator would.
    pub async fn prepare_app(&self) -> anyhow::Result<()> {
        let admin = self.admin()?;
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
                    &json!({"reason": "herald-bench"}),
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

    /// Deliveries the node recorded as acknowledged for the app (the push report's
    /// `summary.delivered`, since the start of the run).
    pub async fn acks_recorded(&self, since_ms: i64) -> anyhow::Result<u64> {
        let report = self
            .admin()?
            .get(&format!(
                "/api/v1/report?client_id={}&since_ms={since_ms}",
                self.client_id
            ))
            .await?;
        if !report.is_success() {
            bail!(
                "the push report failed: HTTP {} {}",
                report.status,
                report.body
            );
        }
        report.body["summary"]["delivered"]
            .as_u64()
            .context("the push report has no summary.delivered")
    }

    pub fn describe(&self) -> Value {
        json!({
            "kind": "herald serve",
            "url": self.url,
            "started_by_bench": self.proc.is_some(),
            "env": {"HERALD_LIMITS_EXEMPT": LIMITS_EXEMPT},
        })
    }

    pub async fn stop(self) {
        if let Some(proc) = self.proc {
            proc.stop().await;
        }
    }
}

fn spawn_herald(bin: &Path, dir: &Path, port: u16) -> anyhow::Result<Proc> {
    if !bin.is_file() {
        bail!(
            "no herald binary at {} (build it with `cargo build --release -p herald`, or pass --herald-bin)",
            bin.display()
        );
    }
    let mut command = tokio::process::Command::new(bin);
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("HERALD_LIMITS_EXEMPT", LIMITS_EXEMPT)
        .env(
            "HERALD_LOG",
            std::env::var("HERALD_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env_remove("HERALD_CONFIG")
        .env_remove("HERALD_DATA_DIR")
        .env_remove("HERALD_STORE")
        .env_remove("HERALD_BUS")
        .env_remove("HERALD_LISTEN")
        .env_remove("HERALD_PUBLIC_URL");
    Proc::spawn(command, &dir.join("herald.log"))
}

/// The fields of herald's bootstrap.json the bench needs.
#[derive(Debug)]
struct Bootstrap {
    client_id: String,
    admin_token: String,
    service_account_file: PathBuf,
}

fn read_bootstrap(path: &Path) -> anyhow::Result<Bootstrap> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let field = |name: &str| -> anyhow::Result<String> {
        v[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("{} has no {name}", path.display()))
    };
    let mut key = PathBuf::from(field("service_account_file")?);
    if key.is_relative() {
        key = path.parent().unwrap_or(Path::new(".")).join(key);
    }
    Ok(Bootstrap {
        client_id: field("client_id")?,
        admin_token: field("admin_token")?,
        service_account_file: key,
    })
}

/// Polls `{url}/healthz` until it answers 200 (or the process exits, or a minute passes).
pub async fn wait_healthy(url: &str, mut proc: Option<&mut Proc>) -> anyhow::Result<Duration> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let started = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{url}/healthz")).send().await
            && r.status().is_success()
        {
            return Ok(started.elapsed());
        }
        if let Some(p) = proc.as_deref_mut()
            && p.exited()
        {
            bail!("the server at {url} exited before answering /healthz");
        }
        if started.elapsed() > START_TIMEOUT {
            bail!("{url}/healthz did not answer within {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
async fn wait_listening(port: u16, proc: &mut Proc) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if proc.exited() {
            bail!("the server exited before listening:\n{}", proc.log_tail());
        }
        if started.elapsed() > START_TIMEOUT {
            bail!("nothing listened on port {port} within {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The ceiling server, as its own process (`herald-bench ceiling-server`).
#[derive(Debug)]
pub struct Ceiling {
    pub url: String,
    pub proc: Proc,
    _dir: tempfile::TempDir,
}

impl Ceiling {
    pub async fn start() -> anyhow::Result<Ceiling> {
        let dir = tempfile::Builder::new()
            .prefix("herald-bench-ceiling-")
            .tempdir()?;
        let port = free_port()?;
        let mut command = tokio::process::Command::new(std::env::current_exe()?);
        command
            .arg("ceiling-server")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"));
        let mut proc = Proc::spawn(command, &dir.path().join("ceiling.log"))?;
        let url = format!("http://127.0.0.1:{port}");
        wait_healthy(&url, Some(&mut proc)).await?;
        Ok(Ceiling {
            url,
            proc,
            _dir: dir,
        })
    }

    /// Acks the ceiling server has read.
    pub async fn acks_recorded(&self) -> anyhow::Result<u64> {
        let stats: Value = reqwest::get(format!("{}/stats", self.url))
            .await?
            .json()
            .await?;
        stats["acks"].as_u64().context("no acks in /stats")
    }
}

/// Debian's mosquitto on a free port with a generated configuration.
#[derive(Debug)]
pub struct Mosquitto {
    pub port: u16,
    pub proc: Proc,
    pub config: String,
    _dir: tempfile::TempDir,
}

/// Where Debian installs the broker.
pub const MOSQUITTO_BIN: &str = "/usr/sbin/mosquitto";

impl Mosquitto {
    /// `Ok(None)` when the broker is not installed (the caller says how to install it).
    pub async fn start(bin: &Path) -> anyhow::Result<Option<Mosquitto>> {
        if !bin.is_file() {
            return Ok(None);
        }
        let dir = tempfile::Builder::new()
            .prefix("herald-bench-mosquitto-")
            .tempdir()?;
        let port = free_port()?;
        let config = mosquitto_config(port, dir.path());
        let path = dir.path().join("mosquitto.conf");
        std::fs::write(&path, &config)?;
        let mut command = tokio::process::Command::new(bin);
        command.arg("-c").arg(&path);
        let mut proc = Proc::spawn(command, &dir.path().join("mosquitto.log"))?;
        wait_listening(port, &mut proc).await?;
        Ok(Some(Mosquitto {
            port,
            proc,
            config,
            _dir: dir,
        }))
    }
}

/// One listener on loopback, anonymous clients, persistent sessions kept on disk, at most
/// 1000 queued QoS 1 messages per client (Herald keeps every message of a device).
fn mosquitto_config(port: u16, dir: &Path) -> String {
    format!(
        "# Generated by herald-bench.
listener {port} 127.0.0.1
allow_anonymous true
max_connections -1
set_tcp_nodelay true
persistence true
persistence_location {dir}/
max_queued_messages 1000
log_dest stderr
log_type error
log_type warning
",
        dir = dir.display()
    )
}
