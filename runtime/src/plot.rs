//! Loss curves as a self-contained SVG, so a phone-side training run can leave a picture that
//! any browser opens, with no plotting dependency.

use std::fmt::Write as _;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 44.0;
const TRAIN_COLOR: &str = "#1f77b4";
const VAL_COLOR: &str = "#ff7f0e";

/// An SVG of training and validation loss against step. Non-finite losses are skipped (a
/// diverged run still plots its finite part); empty series draw empty axes with "no data".
pub fn loss_curve_svg(train: &[(u64, f32)], val: &[(u64, f32)], title: &str) -> String {
    let finite = |s: &[(u64, f32)]| -> Vec<(f64, f64)> {
        s.iter()
            .filter(|p| p.1.is_finite())
            .map(|&(x, y)| (x as f64, f64::from(y)))
            .collect()
    };
    let (train, val) = (finite(train), finite(val));
    let all: Vec<(f64, f64)> = train.iter().chain(&val).copied().collect();
    let xs = Axis::new(all.iter().map(|p| p.0), 6);
    let ys = Axis::new(all.iter().map(|p| p.1), 5);

    let mut svg = String::new();
    // `write!` into a String cannot fail; the results are ignored for that reason.
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">"#
    );
    svg.push('\n');
    let _ = writeln!(
        svg,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    let (x0, x1, y0, y1) = (LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM);
    let px = |x: f64| x0 + (x1 - x0) * xs.frac(x);
    let py = |y: f64| y1 - (y1 - y0) * ys.frac(y);

    // Grid, ticks and labels.
    for t in xs.ticks() {
        let x = px(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            y1 + 16.0,
            xs.label(t)
        );
    }
    for t in ys.ticks() {
        let y = py(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 6.0,
            y + 4.0,
            ys.label(t)
        );
    }
    let _ = writeln!(
        svg,
        r#"<polyline points="{x0},{y0} {x0},{y1} {x1},{y1}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">step</text>"#,
        (x0 + x1) / 2.0,
        HEIGHT - 8.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="14" y="{:.1}" text-anchor="middle" transform="rotate(-90 14 {:.1})">loss</text>"#,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0
    );
    if all.is_empty() {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#888">no data</text>"##,
            (x0 + x1) / 2.0,
            (y0 + y1) / 2.0
        );
    }

    // Series and legend.
    let mut legend_y = y0 + 8.0;
    for (name, color, pts) in [("train", TRAIN_COLOR, &train), ("val", VAL_COLOR, &val)] {
        if pts.is_empty() {
            continue;
        }
        let points: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.5"/>"#,
            points.join(" ")
        );
        if let [(x, y)] = pts.as_slice() {
            // A lone point is invisible as a line.
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                px(*x),
                py(*y)
            );
        }
        let lx = x1 - 70.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx:.1}" y1="{legend_y:.1}" x2="{:.1}" y2="{legend_y:.1}" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{name}</text>"#,
            lx + 18.0,
            lx + 24.0,
            legend_y + 4.0
        );
        legend_y += 16.0;
    }
    svg.push_str("</svg>\n");
    svg
}

/// A linear axis over finite values with "nice" ticks (1, 2 or 5 × 10^k apart).
struct Axis {
    lo: f64,
    hi: f64,
    step: f64,
}

impl Axis {
    fn new(values: impl Iterator<Item = f64>, target_ticks: usize) -> Axis {
        let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        if !(lo.is_finite() && hi.is_finite()) {
            (lo, hi) = (0.0, 1.0);
        }
        if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
            // One value (or all equal): widen so the point sits mid-axis.
            let pad = (hi.abs() * 0.1).max(1.0);
            (lo, hi) = (lo - pad, hi + pad);
        }
        let step = nice_step((hi - lo) / target_ticks.max(1) as f64);
        Axis {
            lo: (lo / step).floor() * step,
            hi: (hi / step).ceil() * step,
            step,
        }
    }

    /// Position of `v` along the axis, 0 at `lo` and 1 at `hi`.
    fn frac(&self, v: f64) -> f64 {
        let f = (v - self.lo) / (self.hi - self.lo);
        if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    fn ticks(&self) -> Vec<f64> {
        let n = ((self.hi - self.lo) / self.step).round();
        if !(n.is_finite() && (0.0..=50.0).contains(&n)) {
            return vec![self.lo, self.hi];
        }
        (0..=n as usize)
            .map(|i| self.lo + i as f64 * self.step)
            .collect()
    }

    /// As many decimals as the tick spacing needs, scientific notation for extreme scales,
    /// and no "-0".
    fn label(&self, v: f64) -> String {
        if self.step < 1e-4 || self.lo.abs().max(self.hi.abs()) >= 1e9 {
            return format!("{v:.2e}");
        }
        let decimals = (-self.step.log10().floor()).clamp(0.0, 6.0) as usize;
        let s = format!("{v:.decimals$}");
        if s.trim_start_matches('-')
            .chars()
            .all(|c| c == '0' || c == '.')
        {
            s.trim_start_matches('-').to_string()
        } else {
            s
        }
    }
}

/// The 1-2-5 step nearest above `raw`; 1 when `raw` is not positive and finite.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let m = raw / mag;
    let nice = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn well_formed(svg: &str) {
        assert!(svg.starts_with("<svg "), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        for bad in ["NaN", "inf"] {
            assert!(!svg.contains(bad), "{bad} in {svg}");
        }
        assert_eq!(svg.matches('<').count(), svg.matches('>').count());
    }

    #[test]
    fn two_series_with_legend_and_ticks() {
        let train: Vec<(u64, f32)> = (0..100).map(|s| (s * 10, 5.0 / (1.0 + s as f32))).collect();
        let val = [(0, 5.2), (500, 1.1), (990, 0.4)];
        let svg = loss_curve_svg(&train, &val, "tiny-dib <run 1> & co");
        well_formed(&svg);
        assert_eq!(svg.matches("stroke-width=\"1.5\"").count(), 2);
        assert!(svg.contains(">train</text>") && svg.contains(">val</text>"));
        assert!(svg.contains("tiny-dib &lt;run 1&gt; &amp; co"));
        assert!(svg.contains(">1000</text>"), "x ticks reach the last step");
        let pts = svg.split("points=\"").nth(2).unwrap();
        assert!(pts.split(' ').count() >= 100);
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        well_formed(&loss_curve_svg(&[], &[], ""));
        assert!(loss_curve_svg(&[], &[], "").contains("no data"));
        let one = loss_curve_svg(&[(5, 2.0)], &[], "one");
        well_formed(&one);
        assert!(one.contains("<circle"));
        let nan = loss_curve_svg(
            &[(0, f32::NAN), (1, 3.0), (2, f32::INFINITY), (3, 2.5)],
            &[(0, f32::NAN)],
            "nan",
        );
        well_formed(&nan);
        well_formed(&loss_curve_svg(&[(0, 1.0), (0, 1.0)], &[(0, 1.0)], "same"));
        well_formed(&loss_curve_svg(
            &[(0, f32::MAX), (u64::MAX, -f32::MAX)],
            &[],
            "extreme",
        ));
        well_formed(&loss_curve_svg(&[(0, 1e-30), (1, 2e-30)], &[], "tiny"));
    }

    #[test]
    fn labels_are_clean() {
        let a = Axis::new([0.0, 1.0].into_iter(), 5);
        assert_eq!(a.step, 0.2);
        assert_eq!(a.label(0.4), "0.4");
        assert_eq!(a.label(-0.0), "0.0");
        assert_eq!(a.ticks().len(), 6);
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(nice_step(37.0), 50.0);
    }
}
