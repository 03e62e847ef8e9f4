//! The error sink shared by every check: errors are collected, never returned early, so one
//! run reports everything that is wrong with a spec.

use bfly_grammar::{Diagnostic, SourceFile, Span};

pub struct Sink<'f> {
    pub file: &'f SourceFile,
    pub errors: Vec<Diagnostic>,
}

impl<'f> Sink<'f> {
    pub fn new(file: &'f SourceFile) -> Self {
        Sink {
            file,
            errors: Vec::new(),
        }
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.errors.push(d);
    }

    /// `line 3, column 5`, for notes that refer to a second place in the file.
    pub fn at(&self, span: Span) -> String {
        let (line, col) = self.file.line_col(span.start);
        format!("line {line}, column {col}")
    }

    /// The source text of a span, shortened for messages (`found `…``).
    pub fn snippet(&self, span: Span) -> String {
        let span = self.file.clamp_span(span);
        let text = self.file.text.get(span.start..span.end).unwrap_or("");
        let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if one_line.chars().count() > 40 {
            let cut: String = one_line.chars().take(37).collect();
            format!("{cut}...")
        } else {
            one_line
        }
    }
}
