//! What `herald bench` reports: percentiles, the results table, `results.json` and the
//! latency CDF drawn as a small hand-written SVG (a plotting crate would outweigh it).

use std::fmt::Write as _;

use serde::Serialize;

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// From microseconds, sorted in place (nearest-rank percentiles).
    pub fn from_micros(samples: &mut [u64]) -> Percentiles {
        samples.sort_unstable();
        if samples.is_empty() {
            return Percentiles::default();
        }
        let sum: u64 = samples.iter().sum();
        Percentiles {
            count: samples.len(),
            mean: round_ms(sum as f64 / samples.len() as f64),
            p50: round_ms(rank(samples, 0.50) as f64),
            p90: round_ms(rank(samples, 0.90) as f64),
            p99: round_ms(rank(samples, 0.99) as f64),
            max: round_ms(*samples.last().unwrap_or(&0) as f64),
        }
    }
}

/// The nearest-rank `q` quantile of sorted, non-empty `samples`.
fn rank(sorted: &[u64], q: f64) -> u64 {
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Microseconds to milliseconds with three decimals (JSON stays readable).
fn round_ms(us: f64) -> f64 {
    us.round() / 1000.0
}

/// Rounded to two decimals, for rates and seconds in the results.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Rows of a two-column table, printed aligned.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<(String, String)>,
}

impl Table {
    pub fn section(&mut self, title: &str) {
        self.rows.push((format!("{title}:"), String::new()));
    }

    pub fn row(&mut self, name: &str, value: impl std::fmt::Display) {
        self.rows.push((format!("  {name}"), value.to_string()));
    }

    pub fn render(&self) -> String {
        let width = self.rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (k, v) in &self.rows {
            if v.is_empty() {
                let _ = writeln!(out, "{k}");
            } else {
                let _ = writeln!(out, "{k:<width$}  {v}");
            }
        }
        out
    }
}

/// What the chart is labelled with.
#[derive(Debug)]
pub struct ChartLabels<'a> {
    pub title: &'a str,
    pub subtitle: &'a str,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 56.0;
const BOTTOM: f64 = 52.0;
/// Points on the CDF line; enough for a smooth curve, few enough for a small file.
const CDF_POINTS: usize = 400;

/// The cumulative distribution of latencies (µs, sorted) on a logarithmic time axis, with
/// p50, p90 and p99 marked.
pub fn latency_cdf_svg(sorted_us: &[u64], p: &Percentiles, labels: &ChartLabels<'_>) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>
<text x="{LEFT}" y="40" fill="#555">{}</text>
"##,
        escape(labels.title),
        escape(labels.subtitle)
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let (Some(&min), Some(&max)) = (sorted_us.first(), sorted_us.last()) else {
        let _ = writeln!(
            svg,
            r##"<text x="{LEFT}" y="{}">no latencies recorded</text></svg>"##,
            TOP + 20.0
        );
        return svg;
    };
    // Whole decades of milliseconds around the data.
    let lo = (min.max(1) as f64 / 1000.0).log10().floor();
    let hi = ((max.max(1) as f64 / 1000.0).log10().ceil()).max(lo + 1.0);
    let x_of = |us: f64| LEFT + ((us.max(1.0) / 1000.0).log10() - lo) / (hi - lo) * plot_w;
    let y_of = |fraction: f64| TOP + (1.0 - fraction) * plot_h;

    // Grid and axes: every decade, and 2× and 5× when there are few decades to label.
    let label_minor = hi - lo <= 3.0;
    let mut decade = lo;
    while decade <= hi {
        for (step, major) in [(1.0, true), (2.0, false), (5.0, false)] {
            let ms = step * 10f64.powf(decade);
            let x = x_of(ms * 1000.0);
            if x > LEFT + plot_w + 0.5 {
                continue;
            }
            let (stroke, label) = match (major, label_minor) {
                (true, _) => ("#ccc", ms_label(ms)),
                (false, true) => ("#eee", ms_label(ms)),
                (false, false) => ("#eee", String::new()),
            };
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="{stroke}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="{}">{label}</text>"##,
                TOP + plot_h,
                TOP + plot_h + 16.0,
                if major { "#000" } else { "#777" }
            );
        }
        decade += 1.0;
    }
    for pct in [0, 25, 50, 75, 100] {
        let y = y_of(pct as f64 / 100.0);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{pct}%</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">latency, send request issued → device received (ms, log scale)</text>
<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">messages delivered within</text>
"##,
        LEFT + plot_w / 2.0,
        HEIGHT - 12.0,
        TOP + plot_h / 2.0
    );

    // Percentile markers, with a legend in the top-left corner (a CDF never reaches it).
    for (row, (name, ms, colour)) in [
        ("p50", p.p50, "#2a9d8f"),
        ("p90", p.p90, "#d4a017"),
        ("p99", p.p99, "#e76f51"),
    ]
    .into_iter()
    .enumerate()
    {
        let x = x_of(ms * 1000.0);
        let y = TOP + 18.0 + row as f64 * 16.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="{colour}" stroke-dasharray="4 3"/><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-dasharray="4 3" stroke-width="2"/><text x="{:.1}" y="{y:.1}">{name} {}</text>"##,
            TOP + plot_h,
            LEFT + 10.0,
            y - 4.0,
            LEFT + 30.0,
            y - 4.0,
            LEFT + 36.0,
            ms_label(ms)
        );
    }

    // The curve.
    let n = sorted_us.len();
    let mut points = String::new();
    for i in 0..=CDF_POINTS {
        let fraction = i as f64 / CDF_POINTS as f64;
        let idx = ((fraction * n as f64).ceil() as usize).clamp(1, n) - 1;
        let _ = write!(
            points,
            "{:.1},{:.1} ",
            x_of(sorted_us[idx] as f64),
            y_of(fraction)
        );
    }
    let _ = write!(
        svg,
        r##"<polyline fill="none" stroke="#264653" stroke-width="2" points="{}"/>
<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>
</svg>
"##,
        points.trim_end()
    );
    svg
}

/// `0.1 ms`, `5 ms`, `1.2 s`.
fn ms_label(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{} s", trim(ms / 1000.0))
    } else {
        format!("{} ms", trim(ms))
    }
}

fn trim(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut us: Vec<u64> = (1..=100).rev().map(|i| i * 1000).collect();
        let p = Percentiles::from_micros(&mut us);
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(p.count, 100);
        assert_eq!(p.mean, 50.5);
        assert_eq!(Percentiles::from_micros(&mut []).count, 0);
    }

    #[test]
    fn the_chart_is_a_small_svg_even_without_data() {
        let labels = ChartLabels {
            title: "t <1>",
            subtitle: "s",
        };
        let mut us: Vec<u64> = (0..10_000).map(|i| 500 + i * 7).collect();
        let p = Percentiles::from_micros(&mut us);
        let svg = latency_cdf_svg(&us, &p, &labels);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("t &lt;1&gt;"));
        assert!(svg.len() < 50_000, "{} bytes", svg.len());
        assert!(latency_cdf_svg(&[], &Percentiles::default(), &labels).starts_with("<svg"));
    }

    #[test]
    fn labels_read_naturally() {
        assert_eq!(ms_label(0.1), "0.1 ms");
        assert_eq!(ms_label(5.0), "5 ms");
        assert_eq!(ms_label(1200.0), "1.2 s");
    }
}
