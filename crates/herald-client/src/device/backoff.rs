//! Reconnect delays: exponential backoff with jitter, reset after a successful welcome.

use std::time::Duration;

use rand::Rng;

/// The first and the largest reconnect delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
}

/// Doubles the delay after each failure up to the cap; each delay is drawn uniformly from
/// the upper half of the current step so that devices that lost a server together do
/// not come back together.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    failures: u32,
}

impl Backoff {
    pub fn new(config: BackoffConfig) -> Self {
        Backoff {
            config,
            failures: 0,
        }
    }

    /// The step before jitter for the next attempt.
    fn step(&self) -> Duration {
        let factor = 1u32 << self.failures.min(16);
        self.config
            .initial
            .saturating_mul(factor)
            .min(self.config.max)
    }

    /// The delay before the next attempt; each call counts one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step();
        self.failures = self.failures.saturating_add(1);
        let half = step / 2;
        let jitter_ms = rand::rng().random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// Called once connected: the next failure starts from the initial delay again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(BackoffConfig {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(10),
        });
        let expected_steps_ms = [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000];
        for step in expected_steps_ms {
            let d = b.next_delay().as_millis() as u64;
            assert!(
                (step / 2..=step).contains(&d),
                "delay {d} ms outside [{}, {step}]",
                step / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(200));
    }
}
