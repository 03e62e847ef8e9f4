//! Byte spans into source text, spanned AST nodes and source files with line/column lookup.

/// A half-open byte range `start..end` into a [`SourceFile`]'s text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// A zero-width span at `pos`.
    pub fn point(pos: usize) -> Self {
        Span::new(pos, pos)
    }

    /// The smallest span covering both `self` and `other`.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }

    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<pest::Span<'_>> for Span {
    fn from(s: pest::Span<'_>) -> Self {
        Span::new(s.start(), s.end())
    }
}

/// An AST node together with the span it was parsed from.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    pub node: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    pub fn new(node: T, span: Span) -> Self {
        Spanned { node, span }
    }
}

/// A named source text. `name` is the path shown to the user in diagnostics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// Characters that end a line. Matches ariadne's notion of a line so that
/// [`SourceFile::line_col`] agrees with the rendered diagnostics (`\r\n` counts once).
pub(crate) fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// Largest char boundary `<= byte` (clamped to the text length).
pub(crate) fn floor_char_boundary(text: &str, byte: usize) -> usize {
    let mut b = byte.min(text.len());
    while b > 0 && !text.is_char_boundary(b) {
        b -= 1;
    }
    b
}

/// Smallest char boundary `>= byte` (clamped to the text length).
pub(crate) fn ceil_char_boundary(text: &str, byte: usize) -> usize {
    let mut b = byte.min(text.len());
    while b < text.len() && !text.is_char_boundary(b) {
        b += 1;
    }
    b
}

/// See [`SourceFile::line_col`].
pub(crate) fn line_col(text: &str, byte: usize) -> (usize, usize) {
    let byte = floor_char_boundary(text, byte);
    let mut line = 1;
    let mut col = 1;
    let mut prev_cr = false;
    for c in text[..byte].chars() {
        if c == '\n' && prev_cr {
            // second half of a `\r\n` pair: the line was already counted
        } else if is_line_break(c) {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
        prev_cr = c == '\r';
    }
    (line, col)
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        SourceFile {
            name: name.into(),
            text: text.into(),
        }
    }

    /// 1-based line and column of a byte offset; the column counts chars, not bytes.
    /// Offsets past the end are clamped to the end; offsets inside a char are
    /// moved to the start of that char.
    pub fn line_col(&self, byte: usize) -> (usize, usize) {
        line_col(&self.text, byte)
    }

    /// Clamps `span` to the text and snaps it outwards to char boundaries.
    pub fn clamp_span(&self, span: Span) -> Span {
        let start = floor_char_boundary(&self.text, span.start);
        let end = ceil_char_boundary(&self.text, span.end.max(start));
        Span::new(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_chars_and_lines() {
        let f = SourceFile::new("f", "ab\nçd\r\ne");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(2), (1, 3));
        assert_eq!(f.line_col(3), (2, 1));
        assert_eq!(f.line_col(5), (2, 2)); // after the two-byte `ç`
        assert_eq!(f.line_col(4), (2, 1)); // inside `ç`: snapped back
        assert_eq!(f.line_col(8), (3, 1));
        assert_eq!(f.line_col(9), (3, 2));
        assert_eq!(f.line_col(999), (3, 2));
    }

    #[test]
    fn line_col_of_empty_file() {
        let f = SourceFile::new("f", "");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(5), (1, 1));
    }

    #[test]
    fn clamp_span_snaps_to_boundaries() {
        let f = SourceFile::new("f", "aé");
        assert_eq!(f.clamp_span(Span::new(2, 2)), Span::new(1, 3));
        assert_eq!(f.clamp_span(Span::new(1, 2)), Span::new(1, 3));
        assert_eq!(f.clamp_span(Span::new(7, 3)), Span::new(3, 3));
    }
}
