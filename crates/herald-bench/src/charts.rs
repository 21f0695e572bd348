//! The report's charts as small hand-written SVG (a plotting crate would outweigh them):
//! delivered against offered load (log-log), and latency CDFs on a logarithmic time axis.

use std::fmt::Write as _;

/// One line on a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: &str, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.to_owned(),
            points,
        }
    }
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 60.0;
const BOTTOM: f64 = 56.0;

/// Herald, the ceiling and Mosquitto always get the same colours.
fn colour(name: &str) -> &'static str {
    match name {
        "herald" => "#e76f51",
        "ceiling" => "#264653",
        "mosquitto" => "#2a9d8f",
        _ => "#d4a017",
    }
}

fn open(title: &str, subtitle: &str) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>
<text x="{LEFT}" y="40" fill="#555">{}</text>
"##,
        escape(title),
        escape(subtitle)
    );
    svg
}

fn close(svg: &mut String, series: &[Series]) {
    // Legend in the top-left corner of the plot.
    for (row, s) in series.iter().enumerate() {
        let y = TOP + 18.0 + row as f64 * 16.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="3"/><text x="{:.1}" y="{y:.1}">{}</text>"##,
            LEFT + 10.0,
            y - 4.0,
            LEFT + 30.0,
            y - 4.0,
            colour(&s.name),
            LEFT + 36.0,
            escape(&s.name)
        );
    }
    let _ = write!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#999"/>
</svg>
"##,
        WIDTH - LEFT - RIGHT,
        HEIGHT - TOP - BOTTOM
    );
}

/// Delivered per second (y) against offered per second (x), both on the same logarithmic
/// scale so that the y = x line (keeping up) is the diagonal and every knee shows.
pub fn throughput_svg(title: &str, subtitle: &str, series: &[Series]) -> String {
    let mut svg = open(title, subtitle);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let values = || {
        series
            .iter()
            .flat_map(|s| s.points.iter().flat_map(|&(x, y)| [x, y]))
            .filter(|v| *v > 0.0)
    };
    let (min, max) = (
        values().fold(f64::INFINITY, f64::min),
        values().fold(0.0f64, f64::max),
    );
    if !(min.is_finite() && max > 0.0) {
        let _ = writeln!(
            svg,
            r##"<text x="{LEFT}" y="{}">no data</text>"##,
            TOP + 20.0
        );
        close(&mut svg, &[]);
        return svg;
    }
    let lo = min.log10().floor();
    let hi = max.log10().ceil().max(lo + 1.0);
    let frac = |v: f64| (v.max(10f64.powf(lo)).log10() - lo) / (hi - lo);
    let x_of = |v: f64| LEFT + frac(v) * plot_w;
    let y_of = |v: f64| TOP + (1.0 - frac(v)) * plot_h;
    let mut decade = lo;
    while decade <= hi {
        for (step, major) in [(1.0, true), (2.0, false), (5.0, false)] {
            let v = step * 10f64.powf(decade);
            if v > 10f64.powf(hi) * 1.0001 {
                continue;
            }
            let (x, y) = (x_of(v), y_of(v));
            let (stroke, ink) = if major {
                ("#ccc", "#000")
            } else {
                ("#eee", "#777")
            };
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="{stroke}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="{ink}">{}</text><line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{stroke}"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="{ink}">{}</text>"##,
                TOP + plot_h,
                TOP + plot_h + 16.0,
                short(v),
                LEFT + plot_w,
                LEFT - 6.0,
                y + 4.0,
                short(v)
            );
        }
        decade += 1.0;
    }
    let (corner_lo, corner_hi) = (10f64.powf(lo), 10f64.powf(hi));
    let _ = write!(
        svg,
        r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#bbb" stroke-dasharray="5 4"/>
<text x="{:.1}" y="{:.1}" text-anchor="middle">offered notifications per second (log scale; dashed: delivered = offered)</text>
<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">delivered per second (log scale)</text>
"##,
        x_of(corner_lo),
        y_of(corner_lo),
        x_of(corner_hi),
        y_of(corner_hi),
        LEFT + plot_w / 2.0,
        HEIGHT - 12.0,
        TOP + plot_h / 2.0
    );
    for s in series {
        let points: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", x_of(x), y_of(y)))
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"##,
            colour(&s.name),
            points.join(" ")
        );
        for &(x, y) in &s.points {
            let _ = writeln!(
                svg,
                r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"##,
                x_of(x),
                y_of(y),
                colour(&s.name)
            );
        }
    }
    close(&mut svg, series);
    svg
}

/// Cumulative distributions of latency (x: ms, log scale; y: fraction delivered within).
pub fn latency_cdf_svg(title: &str, subtitle: &str, series: &[Series]) -> String {
    let mut svg = open(title, subtitle);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let all = || series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (min, max) = (
        all().fold(f64::INFINITY, f64::min),
        all().fold(0.0f64, f64::max),
    );
    if !(min.is_finite() && max > 0.0) {
        let _ = writeln!(
            svg,
            r##"<text x="{LEFT}" y="{}">no data</text>"##,
            TOP + 20.0
        );
        close(&mut svg, &[]);
        return svg;
    }
    let lo = min.max(0.01).log10().floor();
    let hi = max.max(0.01).log10().ceil().max(lo + 1.0);
    let x_of = |ms: f64| LEFT + (ms.max(0.01).log10() - lo) / (hi - lo) * plot_w;
    let y_of = |fraction: f64| TOP + (1.0 - fraction) * plot_h;
    let mut decade = lo;
    while decade <= hi {
        for (step, major) in [(1.0, true), (2.0, false), (5.0, false)] {
            let ms = step * 10f64.powf(decade);
            let x = x_of(ms);
            if x > LEFT + plot_w + 0.5 {
                continue;
            }
            let label = if major || hi - lo <= 3.0 {
                ms_label(ms)
            } else {
                String::new()
            };
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="{}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="{}">{label}</text>"##,
                TOP + plot_h,
                if major { "#ccc" } else { "#eee" },
                TOP + plot_h + 16.0,
                if major { "#000" } else { "#777" }
            );
        }
        decade += 1.0;
    }
    for pct in [0, 25, 50, 75, 90, 99, 100] {
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
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">latency, send stamp → device received (ms, log scale)</text>
<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">messages delivered within</text>
"##,
        LEFT + plot_w / 2.0,
        HEIGHT - 12.0,
        TOP + plot_h / 2.0
    );
    for s in series {
        let points: Vec<String> = s
            .points
            .iter()
            .map(|&(ms, f)| format!("{:.1},{:.1}", x_of(ms), y_of(f)))
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"##,
            colour(&s.name),
            points.join(" ")
        );
    }
    close(&mut svg, series);
    svg
}

/// `12k`, `1.5M`, `250`.
fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
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
mod tests {
    use super::*;

    #[test]
    fn charts_are_small_svgs_even_without_data() {
        let cdf = Series::new(
            "herald",
            (1..=200)
                .map(|i| (i as f64 * 0.7, i as f64 / 200.0))
                .collect(),
        );
        let svg = latency_cdf_svg("t <1>", "s", &[cdf]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("t &lt;1&gt;"));
        assert!(svg.len() < 30_000, "{} bytes", svg.len());
        let tp = Series::new("ceiling", vec![(100.0, 100.0), (200.0, 190.0)]);
        assert!(throughput_svg("t", "s", &[tp]).contains("<polyline"));
        assert!(latency_cdf_svg("t", "s", &[]).contains("no data"));
        assert!(throughput_svg("t", "s", &[]).contains("no data"));
    }

    #[test]
    fn labels_read_naturally() {
        assert_eq!(short(12_500.0), "12.5k");
        assert_eq!(ms_label(1200.0), "1.2 s");
    }
}
