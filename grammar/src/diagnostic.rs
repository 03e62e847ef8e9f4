//! User-facing error diagnostics and their rendering (ariadne, byte-indexed spans).

use std::fmt;

use ariadne::{Color, Config, IndexType, Label, Report, ReportKind, Source};

use crate::span::{SourceFile, Span, is_line_break};

/// An error with a primary span, a label for the span, an optional hint and notes.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub message: String,
    pub span: Span,
    pub label: String,
    pub hint: Option<String>,
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error at `span`; the label defaults to `""` (rendered as "here").
    pub fn error(message: impl Into<String>, span: Span) -> Self {
        Diagnostic {
            message: message.into(),
            span,
            label: String::new(),
            hint: None,
            notes: Vec::new(),
        }
    }

    pub fn with_label(mut self, l: impl Into<String>) -> Self {
        self.label = l.into();
        self
    }

    pub fn with_hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }

    pub fn with_note(mut self, n: impl Into<String>) -> Self {
        self.notes.push(n.into());
        self
    }

    /// Multi-line report: `Error: message`, a `file:line:col` header, the source
    /// line with the span underlined and labelled, the hint as a help line and the
    /// notes. `color = false` gives plain text. Never panics: the span is clamped.
    pub fn render(&self, file: &SourceFile, color: bool) -> String {
        let span = display_span(file, self.span);
        let name = file.name.as_str();
        let range = span.start..span.end;
        let config = Config::new()
            .with_index_type(IndexType::Byte)
            .with_color(color);
        let label_text = if self.label.is_empty() {
            "here"
        } else {
            self.label.as_str()
        };
        let mut label = Label::new((name, range.clone())).with_message(label_text);
        if color {
            label = label.with_color(Color::Red);
        }
        let mut report = Report::build(ReportKind::Error, (name, range))
            .with_config(config)
            .with_message(&self.message)
            .with_label(label);
        if let Some(hint) = &self.hint {
            report = report.with_help(hint);
        }
        for note in &self.notes {
            report = report.with_note(note);
        }
        let mut out = Vec::new();
        match report
            .finish()
            .write((name, Source::from(file.text.as_str())), &mut out)
        {
            Ok(()) => String::from_utf8_lossy(&out).into_owned(),
            Err(_) => self.short(file) + "\n",
        }
    }

    /// One line: `file:line:col: error: message` plus ` (hint: ...)` when there is a hint.
    pub fn short(&self, file: &SourceFile) -> String {
        let span = display_span(file, self.span);
        let (line, col) = file.line_col(span.start);
        let mut s = format!("{}:{line}:{col}: error: {}", file.name, self.message);
        if let Some(hint) = &self.hint {
            s.push_str(" (hint: ");
            s.push_str(hint);
            s.push(')');
        }
        s
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

/// The span actually shown: clamped to the text and to char boundaries, never
/// inside a `\r\n` pair, and an empty span at the very end of a file that ends
/// with a line break is moved to the end of the last line (so it is shown under
/// that line rather than past it).
fn display_span(file: &SourceFile, span: Span) -> Span {
    let text = file.text.as_str();
    let mut span = file.clamp_span(span);
    let inside_crlf = |b: usize| text[..b].ends_with('\r') && text[b..].starts_with('\n');
    if inside_crlf(span.start) {
        span.start -= 1;
    }
    if inside_crlf(span.end) {
        span.end += 1;
    }
    if span.is_empty() && span.start == text.len() {
        let trimmed = text.trim_end_matches(is_line_break);
        if trimmed.len() < text.len() {
            // Back up over exactly one line break (`\r\n` counts as one).
            let mut pos = text.len();
            if let Some(c) = text.chars().next_back() {
                pos -= c.len_utf8();
                if c == '\n' && text[..pos].ends_with('\r') {
                    pos -= 1;
                }
            }
            span = Span::point(pos);
        }
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_form_has_location_and_hint() {
        let f = SourceFile::new("m.bfly", "model a {\n  x : 1\n}\n");
        let d =
            Diagnostic::error("expected `=`", Span::new(14, 15)).with_hint("write `key = value`");
        assert_eq!(
            d.short(&f),
            "m.bfly:2:5: error: expected `=` (hint: write `key = value`)"
        );
    }

    #[test]
    fn render_shows_header_line_label_and_help() {
        let f = SourceFile::new("m.bfly", "model a {\n  x : 1\n}\n");
        let d = Diagnostic::error("expected `=`", Span::new(14, 15))
            .with_label("found `:`")
            .with_hint("write `key = value`")
            .with_note("a note");
        let r = d.render(&f, false);
        assert!(r.contains("m.bfly:2:5"), "{r}");
        assert!(r.contains("x : 1"), "{r}");
        assert!(r.contains("found `:`"), "{r}");
        assert!(r.contains("Help: write `key = value`"), "{r}");
        assert!(r.contains("Note: a note"), "{r}");
        assert!(!r.contains('\u{1b}'), "no escape codes without color: {r}");
    }

    #[test]
    fn render_clamps_bad_spans() {
        for text in ["", "\n", "\r\n", "é", "a\r\nb", "x\n\n"] {
            let f = SourceFile::new("f", text);
            for (s, e) in [
                (0, 0),
                (0, 99),
                (99, 99),
                (1, 1),
                (2, 1),
                (1, 2),
                (usize::MAX, 0),
            ] {
                let d = Diagnostic::error("m", Span::new(s, e));
                let r = d.render(&f, false);
                assert!(r.contains("f:"), "{r}");
                let _ = d.short(&f);
            }
        }
    }

    #[test]
    fn eof_after_newline_is_shown_on_last_line() {
        let f = SourceFile::new("f", "a = 1\n");
        let d = Diagnostic::error("m", Span::point(6));
        assert!(d.short(&f).starts_with("f:1:6:"));
        assert!(d.render(&f, false).contains("f:1:6"));
    }
}
