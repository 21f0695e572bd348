//! Receipt retry policy: when a failed callback is tried again, and when it is given up.
//!
//! Exponential backoff with jitter: the n-th retry waits `base · 2^(n-1)` (capped), scaled
//! by a random factor in [0.5, 1.0] so that many receipts failing together do not retry
//! in lock-step. After `retry_for_ms` since the receipt was queued it is dropped.

/// What happens to a receipt after a callback attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptFate {
    /// The endpoint answered `{"code":"0"}`.
    Sent,
    /// Try again at this time (ms).
    Retry { next_attempt_at: i64 },
    /// The retry window is over; the receipt is given up (counted and logged).
    Dropped,
}

/// How failed callbacks are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first retry's delay (before jitter).
    pub base_ms: i64,
    /// No delay is longer than this.
    pub cap_ms: i64,
    /// How long after queueing a receipt is retried before it is dropped.
    pub retry_for_ms: i64,
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (1 = the first retry); `jitter` in [0, 1).
    pub fn delay_ms(&self, attempt: u32, jitter: f64) -> i64 {
        let exp = attempt.saturating_sub(1).min(40);
        let raw = self.base_ms.saturating_mul(1_i64 << exp).min(self.cap_ms);
        let factor = 0.5 + 0.5 * jitter.clamp(0.0, 1.0);
        ((raw as f64) * factor).round().max(1.0) as i64
    }

    /// The fate of a receipt queued at `created_at` whose `attempts`-th attempt (1 = the
    /// first) just failed at `now`.
    pub fn after_failure(
        &self,
        attempts: u32,
        created_at: i64,
        now: i64,
        jitter: f64,
    ) -> ReceiptFate {
        let deadline = created_at.saturating_add(self.retry_for_ms);
        if now >= deadline {
            return ReceiptFate::Dropped;
        }
        // Near the end of the window, the last try lands exactly on it.
        ReceiptFate::Retry {
            next_attempt_at: (now + self.delay_ms(attempts, jitter)).min(deadline),
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_ms: 1_000,
            cap_ms: 300_000,
            retry_for_ms: 86_400_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_about_a_second_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay_ms(1, 1.0), 1_000);
        assert_eq!(p.delay_ms(1, 0.0), 500);
        assert_eq!(p.delay_ms(2, 1.0), 2_000);
        assert_eq!(p.delay_ms(5, 1.0), 16_000);
        assert_eq!(p.delay_ms(20, 1.0), 300_000);
        assert_eq!(p.delay_ms(u32::MAX, 1.0), 300_000);
    }

    #[test]
    fn receipts_are_dropped_after_the_retry_window() {
        let p = RetryPolicy {
            base_ms: 1_000,
            cap_ms: 10_000,
            retry_for_ms: 60_000,
        };
        assert_eq!(
            p.after_failure(1, 0, 0, 1.0),
            ReceiptFate::Retry {
                next_attempt_at: 1_000
            }
        );
        // Near the end of the window the last try lands exactly on it.
        assert_eq!(
            p.after_failure(9, 0, 55_000, 1.0),
            ReceiptFate::Retry {
                next_attempt_at: 60_000
            }
        );
        assert_eq!(p.after_failure(10, 0, 60_000, 1.0), ReceiptFate::Dropped);
    }
}
