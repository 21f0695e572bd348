//! Offering load: a closed loop (C requests in flight, as fast as answers come) for the
//! fan-out rate, an open loop (requests issued on a fixed schedule whatever the answers)
//! for latency at a given rate, and waiting for the devices to receive what was accepted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use indicatif::ProgressBar;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::fleets::Fleets;
use crate::procfs::now_us;
use crate::sender::{Shared, Tally};
use crate::stats::{Percentiles, round2};

/// After the last send, stop waiting for deliveries when none arrived for this long.
const DRAIN_STALL: Duration = Duration::from_secs(15);
/// Requests in flight at most in an open loop. Past it the schedule slips, which is
/// counted (`late_requests`) rather than hidden.
const OPEN_LOOP_IN_FLIGHT: usize = 512;
/// An open-loop request issued later than this after its slot counts as late.
const LATE: Duration = Duration::from_millis(10);

/// The shape of a closed-loop run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Plan {
    pub messages: usize,
    pub tokens_per_request: usize,
    pub concurrency: usize,
}

impl Plan {
    pub fn requests(&self) -> usize {
        self.messages.div_ceil(self.tokens_per_request.max(1))
    }

    /// The tokens of request `i`: the next K messages, round-robin over the devices.
    fn tokens_of(&self, request: usize, tokens: &[String]) -> Vec<String> {
        let first = request * self.tokens_per_request;
        let last = (first + self.tokens_per_request).min(self.messages);
        (first..last)
            .map(|m| tokens[m % tokens.len()].clone())
            .collect()
    }
}

/// What a send phase did.
#[derive(Debug, Default, Serialize)]
pub struct Sent {
    pub requests: usize,
    pub requests_ok: u64,
    pub accepted: u64,
    #[serde(flatten)]
    pub tally: Tally,
    /// When the first request was issued, µs since the Unix epoch.
    pub started_us: u64,
    pub secs: f64,
    pub accepted_per_sec: f64,
    pub request_ms: Percentiles,
    /// Open loop only: requests issued more than 10 ms after their slot.
    pub late_requests: u64,
}

/// Sends `plan.messages` notifications in requests of K tokens, C in flight.
pub async fn closed_loop(
    sender: Shared,
    tokens: Arc<Vec<String>>,
    plan: Plan,
    bar: &ProgressBar,
) -> Sent {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let started_us = now_us();
    let mut workers = JoinSet::new();
    for worker in 0..plan.concurrency.max(1) {
        let (sender, tokens, next, bar) =
            (sender.clone(), tokens.clone(), next.clone(), bar.clone());
        workers.spawn(async move {
            let mut tally = Tally::default();
            let (mut ok, mut accepted) = (0u64, 0u64);
            let mut round_trips = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= plan.requests() {
                    break;
                }
                let batch = plan.tokens_of(i, &tokens);
                let issued = Instant::now();
                let result = sender.send(worker, i as u64, &batch, now_us()).await;
                round_trips.push(issued.elapsed().as_micros() as u64);
                tally.add(&result);
                if let Ok(answer) = result
                    && answer.accepted > 0
                {
                    ok += 1;
                    accepted += answer.accepted;
                    bar.inc(answer.accepted);
                }
            }
            (tally, ok, accepted, round_trips)
        });
    }
    let mut sent = Sent {
        requests: plan.requests(),
        started_us,
        ..Sent::default()
    };
    let mut round_trips = Vec::with_capacity(plan.requests());
    while let Some(joined) = workers.join_next().await {
        let Ok((tally, ok, accepted, trips)) = joined else {
            continue;
        };
        sent.tally.merge(tally);
        sent.requests_ok += ok;
        sent.accepted += accepted;
        round_trips.extend(trips);
    }
    sent.secs = round2(started.elapsed().as_secs_f64());
    sent.accepted_per_sec = crate::stats::per_sec(sent.accepted, started.elapsed().as_secs_f64());
    sent.request_ms = Percentiles::from_micros(&mut round_trips);
    sent
}

/// Offers `rate` notifications a second for `secs`, in requests of `k` tokens issued on a
/// fixed schedule. Each notification is stamped with its request's *slot*, not the moment
/// it left, so a slow server shows up in the latencies instead of slowing the offer.
pub async fn open_loop(
    sender: Shared,
    tokens: Arc<Vec<String>>,
    rate: f64,
    secs: f64,
    k: usize,
    bar: &ProgressBar,
) -> Sent {
    let k = k.clamp(1, tokens.len().max(1));
    let requests = ((rate * secs) / k as f64).round().max(1.0) as usize;
    let interval = Duration::from_secs_f64(k as f64 / rate.max(1e-6));
    let plan = Plan {
        messages: requests * k,
        tokens_per_request: k,
        concurrency: 1,
    };
    let in_flight = Arc::new(Semaphore::new(OPEN_LOOP_IN_FLIGHT));
    let started = Instant::now();
    let started_us = now_us();
    let ok = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let mut late = 0u64;
    let mut tasks = JoinSet::new();
    for i in 0..requests {
        let slot = started + interval * i as u32;
        tokio::time::sleep_until(slot).await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        if slot.elapsed() > LATE {
            late += 1;
        }
        let slot_us = started_us + (interval * i as u32).as_micros() as u64;
        let batch = plan.tokens_of(i, &tokens);
        let (sender, ok, accepted, bar) =
            (sender.clone(), ok.clone(), accepted.clone(), bar.clone());
        tasks.spawn(async move {
            let issued = Instant::now();
            let result = sender.send(i, i as u64, &batch, slot_us).await;
            let trip = issued.elapsed().as_micros() as u64;
            drop(permit);
            if let Ok(answer) = &result
                && answer.accepted > 0
            {
                ok.fetch_add(1, Ordering::Relaxed);
                accepted.fetch_add(answer.accepted, Ordering::Relaxed);
                bar.inc(answer.accepted);
            }
            let mut tally = Tally::default();
            tally.add(&result);
            (tally, trip)
        });
        // Reap finished requests as we go, so the set stays as small as what is in flight.
        while let Some(done) = tasks.try_join_next() {
            let _ = done;
        }
    }
    let mut sent = Sent {
        requests,
        started_us,
        late_requests: late,
        ..Sent::default()
    };
    let mut trips = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((tally, trip)) = joined {
            sent.tally.merge(tally);
            trips.push(trip);
        }
    }
    sent.requests_ok = ok.load(Ordering::Relaxed);
    sent.accepted = accepted.load(Ordering::Relaxed);
    sent.secs = round2(started.elapsed().as_secs_f64());
    sent.accepted_per_sec = crate::stats::per_sec(sent.accepted, started.elapsed().as_secs_f64());
    sent.request_ms = Percentiles::from_micros(&mut trips);
    sent
}

/// Waits until the devices received `expected` messages, or none arrived for 15 s.
/// Returns the seconds waited.
pub async fn wait_delivered(fleets: &Fleets, expected: u64, bar: &ProgressBar) -> f64 {
    let started = Instant::now();
    let mut seen = fleets.delivered();
    let mut progressed = Instant::now();
    while seen < expected && progressed.elapsed() < DRAIN_STALL {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = fleets.delivered();
        bar.set_position(now);
        if now != seen {
            seen = now;
            progressed = Instant::now();
        }
    }
    bar.set_position(seen);
    round2(started.elapsed().as_secs_f64())
}
