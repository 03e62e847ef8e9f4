//! The one-line training progress display:
//! `step 120/500 [=====>     ] loss  2.314  val  2.401    1.8k tok/s  ETA  0:42`.
//!
//! Every field has a fixed width, so the bar keeps its length and position from the first
//! step to the last, even when the total is an estimate that changes (a run bounded by time)
//! or the validation loss appears later.
//!
//! On a terminal the line redraws in place (`\r`); in a log file (CI, `adb logcat`, `nohup`)
//! it prints one full line every N steps instead, so logs stay readable and small.

use std::io::{self, IsTerminal, Write};
use std::time::Duration;

/// How `ProgressLine::draw` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrawMode {
    /// Redraw one line in place with `\r`.
    Terminal,
    /// Append a line at the first step, every `every` steps, and at the end (`finish`).
    Lines { every: u64 },
}

impl DrawMode {
    /// `Terminal` when stderr is a terminal, else `Lines { every }`.
    pub fn for_stderr(every: u64) -> DrawMode {
        if io::stderr().is_terminal() {
            DrawMode::Terminal
        } else {
            DrawMode::Lines { every }
        }
    }
}

/// Progress of a training run; feed it with `update`, show it with `draw`.
#[derive(Clone, Debug)]
pub struct ProgressLine {
    total: u64,
    step: u64,
    loss: f32,
    val: Option<f32>,
    tokens_per_sec: f64,
    elapsed: Duration,
    mode: DrawMode,
    width: usize,
    /// Digits reserved for the step counts (never shrinks, so the bar does not move).
    count_width: usize,
    /// Length of the line on screen, so a shorter redraw can blank the rest.
    shown_len: usize,
    last_printed: Option<u64>,
}

impl ProgressLine {
    /// The line width when the terminal's is unknown.
    pub const DEFAULT_WIDTH: usize = 80;

    /// Changes the step count the bar runs to: a run bounded by time estimates its total
    /// from the steps per second so far.
    pub fn set_total(&mut self, total: u64) {
        self.total = total;
        self.count_width = self.count_width.max(digits(total));
    }

    /// Reserves `width` digits for the step counts: for a total that is an estimate, so the
    /// line keeps its layout when the estimate crosses a power of ten.
    pub fn with_count_width(mut self, width: usize) -> ProgressLine {
        self.count_width = self.count_width.max(width);
        self
    }

    /// A progress line for `total` steps; the terminal width comes from `$COLUMNS` (shells
    /// export it) or defaults to 80.
    pub fn new(total: u64, mode: DrawMode) -> ProgressLine {
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.trim().parse::<usize>().ok())
            .filter(|&w| w >= 20)
            .unwrap_or(ProgressLine::DEFAULT_WIDTH);
        ProgressLine {
            total,
            step: 0,
            loss: f32::NAN,
            val: None,
            tokens_per_sec: 0.0,
            elapsed: Duration::ZERO,
            mode,
            // One column spare: writing the last column makes some terminals wrap.
            width: width.saturating_sub(1),
            count_width: digits(total),
            shown_len: 0,
            last_printed: None,
        }
    }

    /// Overrides the width `draw` renders at.
    pub fn with_width(mut self, width: usize) -> ProgressLine {
        self.width = width;
        self
    }

    /// Records the state after `step` steps; `elapsed` is the wall time since step 0 and drives
    /// the ETA. `val` is the latest validation loss, if any yet.
    pub fn update(
        &mut self,
        step: u64,
        loss: f32,
        val: Option<f32>,
        tokens_per_sec: f64,
        elapsed: Duration,
    ) {
        self.step = step;
        self.loss = loss;
        if val.is_some() {
            self.val = val;
        }
        self.tokens_per_sec = tokens_per_sec;
        self.elapsed = elapsed;
    }

    /// The line, at most `width` characters: the bar shrinks first, then disappears, then the
    /// tail is cut.
    pub fn render(&self, width: usize) -> String {
        let w = self
            .count_width
            .max(digits(self.step))
            .max(digits(self.total));
        let head = format!("step {:>w$}/{:<w$}", self.step, self.total);
        let val = self
            .val
            .map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
        let tail = format!(
            "loss {:>6.3}  val {val:>6}  {:>6} tok/s  ETA {:>5}",
            self.loss,
            rate(self.tokens_per_sec),
            self.eta()
        );
        // " [" + bar + "] " around the bar.
        let fixed = head.len() + tail.len() + 4;
        let line = match width.checked_sub(fixed) {
            Some(inner) if inner >= 5 => format!("{head} [{}] {tail}", self.bar(inner)),
            _ => format!("{head}  {tail}"),
        };
        line.chars().take(width).collect()
    }

    fn bar(&self, inner: usize) -> String {
        let frac = if self.total == 0 {
            0.0
        } else {
            (self.step as f64 / self.total as f64).clamp(0.0, 1.0)
        };
        let filled = ((frac * inner as f64) as usize).min(inner);
        if filled == 0 || filled == inner {
            return format!("{}{}", "=".repeat(filled), " ".repeat(inner - filled));
        }
        format!("{}>{}", "=".repeat(filled - 1), " ".repeat(inner - filled))
    }

    /// Remaining time at the average pace so far; `--:--` before the first step.
    fn eta(&self) -> String {
        if self.step == 0 || self.total == 0 {
            return "--:--".to_string();
        }
        let left = self.total.saturating_sub(self.step) as f64;
        let secs = self.elapsed.as_secs_f64() * left / self.step as f64;
        clock(secs)
    }

    /// Records a validation loss measured after the last `update` (a final validation).
    pub fn set_val(&mut self, val: f32) {
        self.val = Some(val);
    }

    /// Shows the current state on `out` (normally stderr), per the `DrawMode`.
    pub fn draw(&mut self, out: &mut impl Write) -> io::Result<()> {
        match self.mode {
            DrawMode::Terminal => {
                let line = self.render(self.width);
                let len = line.chars().count();
                let pad = " ".repeat(self.shown_len.saturating_sub(len));
                write!(out, "\r{line}{pad}")?;
                self.shown_len = len;
                out.flush()
            }
            DrawMode::Lines { every } => {
                // Not `step >= total`: a time-bounded run's estimated total trails the step
                // near the end, which would print every step; `finish` prints the last one.
                let due = self.step.is_multiple_of(every.max(1)) || self.last_printed.is_none();
                if due && self.last_printed != Some(self.step) {
                    self.last_printed = Some(self.step);
                    writeln!(out, "{}", self.render(self.width))?;
                }
                Ok(())
            }
        }
    }

    /// Ends the display: on a terminal, moves past the redrawn line; in a log, prints the last
    /// state if it was not printed yet.
    pub fn finish(&mut self, out: &mut impl Write) -> io::Result<()> {
        match self.mode {
            DrawMode::Terminal => {
                self.draw(out)?;
                writeln!(out)?;
                self.shown_len = 0;
                Ok(())
            }
            DrawMode::Lines { .. } => {
                if self.last_printed != Some(self.step) {
                    self.last_printed = Some(self.step);
                    writeln!(out, "{}", self.render(self.width))?;
                }
                Ok(())
            }
        }
    }
}

fn digits(n: u64) -> usize {
    n.to_string().len()
}

/// `850`, `1.8k`, `12.3M`; `--` when unknown.
fn rate(r: f64) -> String {
    if !(r.is_finite() && r >= 0.0) {
        "--".to_string()
    } else if r < 1_000.0 {
        format!("{r:.0}")
    } else if r < 999_950.0 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{:.1}M", r / 1e6)
    }
}

/// `0:42`, `12:05`, `3:07:09`.
fn clock(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "--:--".to_string();
    }
    let s = secs.round() as u64; // saturates
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(step: u64, total: u64, val: Option<f32>) -> ProgressLine {
        let mut p = ProgressLine::new(total, DrawMode::Lines { every: 10 });
        p.update(step, 2.3141, val, 1830.0, Duration::from_secs_f64(10.08));
        p
    }

    #[test]
    fn renders_the_documented_layout() {
        let p = line(120, 500, Some(2.4012));
        let s = p.render(80);
        assert_eq!(
            s,
            "step 120/500 [==>             ] loss  2.314  val  2.401    1.8k tok/s  ETA  0:32"
        );
        assert_eq!(s.len(), 80);
        let wide = p.render(120);
        assert_eq!(wide.len(), 120);
        assert!(wide.starts_with("step 120/500 [=") && wide.ends_with("ETA  0:32"));
    }

    #[test]
    fn narrow_widths_drop_the_bar_then_cut() {
        let p = line(7, 500, None);
        assert_eq!(p.render(40), "step   7/500  loss  2.314  val      -   ");
        assert_eq!(p.render(0), "");
        let full = line(500, 500, None).render(80);
        assert!(
            full.contains("[=====") && full.contains("ETA  0:00"),
            "{full}"
        );
    }

    #[test]
    fn odd_values_render() {
        let mut p = ProgressLine::new(0, DrawMode::Terminal);
        p.update(0, f32::NAN, None, f64::NAN, Duration::ZERO);
        let s = p.render(80);
        assert!(s.contains("loss    NaN") && s.contains("-- tok/s") && s.contains("ETA --:--"));
        let mut p = ProgressLine::new(10, DrawMode::Terminal);
        p.update(20, 1.0, None, 2.5e6, Duration::from_secs(3600 * 5));
        assert!(p.render(100).contains("2.5M tok/s  ETA  0:00"));
        assert_eq!(clock(3.0 * 3600.0 + 7.0 * 60.0 + 9.0), "3:07:09");
        assert_eq!(clock(1e300), clock(u64::MAX as f64));
        assert_eq!(rate(999.4), "999");
    }

    /// A run bounded by time re-estimates its total every step (978, then 1005 …) and gets
    /// its first validation loss later: the bar must not move or change length.
    #[test]
    fn layout_is_stable_while_the_total_estimate_changes() {
        let mut p = ProgressLine::new(978, DrawMode::Lines { every: 1 }).with_count_width(6);
        let mut shapes = Vec::new();
        for (step, total, val, rate) in [
            (50, 978, None, 850.0),
            (100, 1005, Some(2.5), 1830.0),
            (999, 1000, Some(1.25), 12_345.0),
            (1000, 1000, Some(1.0), 999_999.0),
        ] {
            p.set_total(total);
            p.update(step, 2.0, val, rate, Duration::from_secs(step));
            let line = p.render(80);
            shapes.push((line.len(), line.find('['), line.find(']')));
        }
        assert!(shapes.iter().all(|s| *s == shapes[0]), "{shapes:?}");
        assert_eq!(shapes[0].0, 80);
    }

    #[test]
    fn terminal_mode_redraws_in_place() {
        let mut p = ProgressLine::new(100, DrawMode::Terminal).with_width(60);
        let mut out = Vec::new();
        p.update(1, 2.0, Some(2.5), 100.0, Duration::from_secs(1));
        p.draw(&mut out).unwrap();
        p.update(2, 2.0, None, 100.0, Duration::from_secs(2));
        p.draw(&mut out).unwrap();
        p.finish(&mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s.matches('\r').count(), 3);
        assert_eq!(s.matches('\n').count(), 1);
        assert!(s.contains("val  2.500"), "the last val is kept");
    }

    #[test]
    fn log_mode_prints_every_n_steps() {
        let mut p = ProgressLine::new(25, DrawMode::Lines { every: 10 });
        let mut out = Vec::new();
        for step in 1..=25 {
            p.update(step, 1.0, None, 10.0, Duration::from_secs(step));
            p.draw(&mut out).unwrap();
        }
        p.finish(&mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        let steps: Vec<&str> = s.lines().map(|l| &l[..10]).collect();
        assert!(
            s.lines()
                .all(|l| l.len() == s.lines().next().map_or(0, str::len))
        );
        assert_eq!(
            steps,
            ["step  1/25", "step 10/25", "step 20/25", "step 25/25"]
        );
        assert!(!s.contains('\r'));
    }
}
