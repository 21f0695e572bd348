//! The parent's side of the fleets: spawns `herald-bench fleet` child processes, spreads
//! devices over them, and gathers what they report.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::ProgressBar;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

use crate::wire::{Collected, Command, DeviceTarget, Event};

/// Answers (not ticks) waiting for the parent, per fleet; a fleet answers one command at a
/// time, so a handful is plenty.
const ANSWER_BACKLOG: usize = 8;
/// How long one fleet may take to answer a command that is not a connect.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// File descriptors a fleet process needs besides its sockets.
const SPARE_FILES: u64 = 200;

/// The fleet processes of a run.
#[derive(Debug)]
pub struct Fleets {
    procs: Vec<FleetProc>,
    sizes: Vec<usize>,
}

#[derive(Debug)]
struct FleetProc {
    child: Child,
    stdin: ChildStdin,
    answers: mpsc::Receiver<Event>,
    /// From the fleet's latest tick.
    connected: Arc<AtomicU64>,
    delivered: Arc<AtomicU64>,
}

impl Fleets {
    /// Enough fleets for `devices`, at most `per_process` each (and within the open-file
    /// limit, which each child inherits from this process).
    pub fn spawn(devices: usize, per_process: usize) -> anyhow::Result<Fleets> {
        let limit = crate::procfs::open_files_limit().unwrap_or(1024);
        let fits = limit.saturating_sub(SPARE_FILES) as usize;
        if fits == 0 {
            bail!("the open-files limit ({limit}) leaves no room for sockets");
        }
        let per_process = per_process.clamp(1, fits);
        let count = devices.div_ceil(per_process).max(1);
        let sizes: Vec<usize> = (0..count)
            .map(|i| devices / count + usize::from(i < devices % count))
            .collect();
        let exe = std::env::current_exe().context("finding this executable")?;
        let mut procs = Vec::with_capacity(count);
        for index in 0..count {
            let mut child = tokio::process::Command::new(&exe)
                .args(["fleet", "--index", &index.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {} fleet", exe.display()))?;
            let stdin = child.stdin.take().context("fleet stdin")?;
            let stdout = child.stdout.take().context("fleet stdout")?;
            let (tx, answers) = mpsc::channel(ANSWER_BACKLOG);
            let connected = Arc::new(AtomicU64::new(0));
            let delivered = Arc::new(AtomicU64::new(0));
            tokio::spawn(read_events(
                stdout,
                tx,
                connected.clone(),
                delivered.clone(),
            ));
            procs.push(FleetProc {
                child,
                stdin,
                answers,
                connected,
                delivered,
            });
        }
        Ok(Fleets { procs, sizes })
    }

    pub fn processes(&self) -> usize {
        self.procs.len()
    }

    /// Devices connected, as of the fleets' latest ticks.
    pub fn connected(&self) -> u64 {
        self.procs
            .iter()
            .map(|p| p.connected.load(Ordering::Relaxed))
            .sum()
    }

    /// Unique messages received since the last collect, as of the latest ticks.
    pub fn delivered(&self) -> u64 {
        self.procs
            .iter()
            .map(|p| p.delivered.load(Ordering::Relaxed))
            .sum()
    }

    /// Connects every fleet's share of devices to `target`; returns their addresses
    /// (tokens, ids, topics), fleet after fleet.
    pub async fn connect(
        &mut self,
        target: &DeviceTarget,
        concurrency: usize,
        bar: &ProgressBar,
    ) -> anyhow::Result<Vec<String>> {
        let per_fleet = concurrency.div_ceil(self.procs.len()).max(1);
        for (proc, &count) in self.procs.iter_mut().zip(&self.sizes) {
            proc.send(&Command::Connect {
                target: target.clone(),
                count,
                concurrency: per_fleet,
            })
            .await?;
        }
        let mut all = Vec::new();
        for i in 0..self.procs.len() {
            let answer = self.wait_answer(i, None, bar).await?;
            match answer {
                Event::Connected { tokens } => all.extend(tokens),
                other => bail!("fleet {i} could not connect its devices: {other:?}"),
            }
        }
        bar.set_position(self.connected());
        Ok(all)
    }

    /// Closes every device (sending pending acks first), keeping their identities.
    pub async fn disconnect(&mut self) -> anyhow::Result<()> {
        self.all(&Command::Disconnect, |e| matches!(e, Event::Disconnected))
            .await
    }

    /// Brings every device back as itself.
    pub async fn reconnect(&mut self, concurrency: usize, bar: &ProgressBar) -> anyhow::Result<()> {
        let per_fleet = concurrency.div_ceil(self.procs.len()).max(1);
        for proc in &mut self.procs {
            proc.send(&Command::Reconnect {
                concurrency: per_fleet,
            })
            .await?;
        }
        for i in 0..self.procs.len() {
            match self.wait_answer(i, None, bar).await? {
                Event::Reconnected => {}
                other => bail!("fleet {i} could not reconnect its devices: {other:?}"),
            }
        }
        Ok(())
    }

    /// Every fleet's counters and latencies since the last collect, merged; resets them.
    pub async fn collect(&mut self) -> anyhow::Result<Collected> {
        for proc in &mut self.procs {
            proc.send(&Command::Collect).await?;
        }
        let mut all = Collected::default();
        for i in 0..self.procs.len() {
            match self
                .wait_answer(i, Some(ANSWER_TIMEOUT), &ProgressBar::hidden())
                .await?
            {
                Event::Collected(c) => all.merge(c),
                other => bail!("fleet {i} did not report: {other:?}"),
            }
        }
        for proc in &self.procs {
            proc.delivered.store(0, Ordering::Relaxed);
        }
        Ok(all)
    }

    /// Closes every device and ends the fleet processes.
    pub async fn stop(mut self) {
        for proc in &mut self.procs {
            let _ = proc.send(&Command::Stop).await;
        }
        for proc in &mut self.procs {
            if tokio::time::timeout(ANSWER_TIMEOUT, proc.child.wait())
                .await
                .is_err()
            {
                let _ = proc.child.kill().await;
            }
        }
    }

    async fn all(&mut self, command: &Command, ok: fn(&Event) -> bool) -> anyhow::Result<()> {
        for proc in &mut self.procs {
            proc.send(command).await?;
        }
        for i in 0..self.procs.len() {
            let answer = self
                .wait_answer(i, Some(ANSWER_TIMEOUT), &ProgressBar::hidden())
                .await?;
            if !ok(&answer) {
                bail!("fleet {i} answered {answer:?} to {command:?}");
            }
        }
        Ok(())
    }

    /// The next answer of fleet `i`, moving `bar` along with the connected devices.
    async fn wait_answer(
        &mut self,
        i: usize,
        limit: Option<Duration>,
        bar: &ProgressBar,
    ) -> anyhow::Result<Event> {
        let started = tokio::time::Instant::now();
        loop {
            let connected: u64 = self
                .procs
                .iter()
                .map(|p| p.connected.load(Ordering::Relaxed))
                .sum();
            bar.set_position(connected);
            let proc = &mut self.procs[i];
            match tokio::time::timeout(Duration::from_millis(100), proc.answers.recv()).await {
                Ok(Some(Event::Failed { error })) => bail!("fleet {i}: {error}"),
                Ok(Some(event)) => return Ok(event),
                Ok(None) => bail!("fleet {i} exited"),
                Err(_) => {
                    if limit.is_some_and(|l| started.elapsed() > l) {
                        bail!("fleet {i} did not answer within {limit:?}");
                    }
                }
            }
        }
    }
}

impl FleetProc {
    async fn send(&mut self, command: &Command) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(command)?;
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .context("writing to a fleet")?;
        self.stdin.flush().await?;
        Ok(())
    }
}

/// Splits a fleet's stdout into ticks (kept in the counters) and answers (forwarded).
async fn read_events(
    stdout: tokio::process::ChildStdout,
    answers: mpsc::Sender<Event>,
    connected: Arc<AtomicU64>,
    delivered: Arc<AtomicU64>,
) {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match serde_json::from_str::<Event>(&line) {
            Ok(Event::Tick {
                connected: c,
                delivered: d,
            }) => {
                connected.store(c, Ordering::Relaxed);
                delivered.store(d, Ordering::Relaxed);
            }
            Ok(event) => {
                if answers.send(event).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e, line, "Unreadable line from a fleet."),
        }
    }
}
