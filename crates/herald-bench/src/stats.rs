//! Percentiles of latency samples and small rounding helpers for the results files.

use serde::{Deserialize, Serialize};

/// Percentiles of a set of durations, in milliseconds (nearest rank).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub count: usize,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// From microseconds, sorted in place.
    pub fn from_micros(samples: &mut [u64]) -> Percentiles {
        samples.sort_unstable();
        let Some(&max) = samples.last() else {
            return Percentiles::default();
        };
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        Percentiles {
            count: samples.len(),
            mean: round_ms(sum as f64 / samples.len() as f64),
            p50: round_ms(rank(samples, 0.50) as f64),
            p90: round_ms(rank(samples, 0.90) as f64),
            p99: round_ms(rank(samples, 0.99) as f64),
            p999: round_ms(rank(samples, 0.999) as f64),
            max: round_ms(max as f64),
        }
    }
}

/// The nearest-rank `q` quantile of sorted, non-empty `samples`.
pub fn rank(sorted: &[u64], q: f64) -> u64 {
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Microseconds to milliseconds with three decimals.
fn round_ms(us: f64) -> f64 {
    us.round() / 1000.0
}

/// Rounded to two decimals, for rates and seconds.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Rounded to four decimals, for small CPU figures.
pub fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// `count / secs`, zero when no time passed.
pub fn per_sec(count: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        round2(count as f64 / secs)
    } else {
        0.0
    }
}

/// A cumulative distribution reduced to at most `points` (latency ms, fraction) pairs,
/// enough to draw it later without keeping every sample in the results file.
pub fn cdf_points(sorted_us: &[u64], points: usize) -> Vec<(f64, f64)> {
    if sorted_us.is_empty() || points == 0 {
        return Vec::new();
    }
    let n = sorted_us.len();
    (0..=points)
        .map(|i| {
            let fraction = i as f64 / points as f64;
            let idx = ((fraction * n as f64).ceil() as usize).clamp(1, n) - 1;
            (round_ms(sorted_us[idx] as f64), fraction)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut us: Vec<u64> = (1..=1000).rev().map(|i| i * 1000).collect();
        let p = Percentiles::from_micros(&mut us);
        assert_eq!(
            (p.p50, p.p90, p.p99, p.p999, p.max),
            (500.0, 900.0, 990.0, 999.0, 1000.0)
        );
        assert_eq!(p.count, 1000);
        assert_eq!(p.mean, 500.5);
        assert_eq!(Percentiles::from_micros(&mut []).count, 0);
    }

    #[test]
    fn a_cdf_is_reduced_to_its_points() {
        let us: Vec<u64> = (1..=10_000).collect();
        let cdf = cdf_points(&us, 100);
        assert_eq!(cdf.len(), 101);
        assert_eq!(cdf[0], (0.001, 0.0));
        assert_eq!(cdf[100], (10.0, 1.0));
        assert!(cdf.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(cdf_points(&[], 10).is_empty());
    }
}
