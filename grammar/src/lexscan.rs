//! A rough, never-failing tokenizer shared by both grammars.
//!
//! It is not the parser: it only finds what pest cannot explain well — bracket
//! nesting (to bound recursion before pest runs), unterminated strings, the
//! token at an error position and the brackets still open there.

use crate::span::{Span, is_line_break};

/// Lexical conventions of a grammar.
pub(crate) struct Lexical {
    /// Strings that start a comment running to the end of the line.
    pub comments: &'static [&'static str],
}

/// Deeper bracket nesting than this is rejected before parsing.
pub(crate) const MAX_NESTING: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokKind {
    /// Identifier, number, `%name`, `@name` (anything word-like).
    Word,
    Str {
        terminated: bool,
    },
    Open(char),
    Close(char),
    Punct,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: TokKind,
    pub span: Span,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '@' | '%')
}

/// Tokens of a text; whitespace and comments are skipped.
pub(crate) struct Tokens<'a> {
    text: &'a str,
    pos: usize,
    lex: &'a Lexical,
}

pub(crate) fn tokens<'a>(text: &'a str, lex: &'a Lexical) -> Tokens<'a> {
    Tokens { text, pos: 0, lex }
}

impl Tokens<'_> {
    fn rest(&self) -> &str {
        self.text.get(self.pos..).unwrap_or("")
    }

    fn skip_trivia(&mut self) {
        loop {
            let rest = self.rest();
            if let Some(c) = rest.chars().next().filter(|c| c.is_whitespace()) {
                self.pos += c.len_utf8();
            } else if self.lex.comments.iter().any(|s| rest.starts_with(s)) {
                let len = rest.find(is_line_break).unwrap_or(rest.len());
                self.pos += len;
            } else {
                return;
            }
        }
    }

    fn string_len(rest: &str) -> (usize, bool) {
        let mut chars = rest.char_indices().skip(1);
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return (i + 1, true),
                '\\' => {
                    if let Some((j, d)) = chars.next()
                        && is_line_break(d)
                    {
                        return (j, false);
                    }
                }
                c if is_line_break(c) => return (i, false),
                _ => {}
            }
        }
        (rest.len(), false)
    }

    fn word_len(rest: &str) -> usize {
        let mut end = 0;
        let mut prev = '\0';
        let numeric = rest
            .trim_start_matches('-')
            .starts_with(|c: char| c.is_ascii_digit());
        for (i, c) in rest.char_indices() {
            let sign_ok = (i == 0 && c == '-') || (numeric && matches!(prev, 'e' | 'E'));
            if is_word_char(c) || (sign_ok && matches!(c, '-' | '+')) {
                end = i + c.len_utf8();
                prev = c;
            } else {
                break;
            }
        }
        end
    }
}

impl Iterator for Tokens<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        self.skip_trivia();
        let rest = self.rest();
        let c = rest.chars().next()?;
        let starts_number = c == '-' && rest[1..].starts_with(|d: char| d.is_ascii_digit());
        let (len, kind) = if c == '"' {
            let (len, terminated) = Self::string_len(rest);
            (len, TokKind::Str { terminated })
        } else if is_word_char(c) || starts_number {
            (Self::word_len(rest), TokKind::Word)
        } else if matches!(c, '(' | '[' | '{') {
            (1, TokKind::Open(c))
        } else if matches!(c, ')' | ']' | '}') {
            (1, TokKind::Close(c))
        } else if rest.starts_with("->") || rest.starts_with("<=") {
            (2, TokKind::Punct)
        } else {
            (c.len_utf8(), TokKind::Punct)
        };
        let len = len.max(c.len_utf8());
        let span = Span::new(self.pos, self.pos + len);
        self.pos += len;
        Some(Token { kind, span })
    }
}

pub(crate) fn closer_of(open: char) -> char {
    match open {
        '(' => ')',
        '[' => ']',
        _ => '}',
    }
}

/// Problems found by a lexical pre-scan of a whole file.
#[derive(Default)]
pub(crate) struct Prescan {
    /// The first opening bracket nested deeper than [`MAX_NESTING`].
    pub too_deep: Option<Span>,
    /// The first string literal without a closing quote on its line.
    pub unterminated: Option<Span>,
}

pub(crate) fn prescan(text: &str, lex: &Lexical) -> Prescan {
    let mut out = Prescan::default();
    let mut depth = 0usize;
    for tok in tokens(text, lex) {
        match tok.kind {
            TokKind::Open(_) => {
                depth += 1;
                if depth > MAX_NESTING && out.too_deep.is_none() {
                    out.too_deep = Some(tok.span);
                }
            }
            TokKind::Close(_) => depth = depth.saturating_sub(1),
            TokKind::Str { terminated: false } if out.unterminated.is_none() => {
                out.unterminated = Some(tok.span);
            }
            _ => {}
        }
        if out.too_deep.is_some() && out.unterminated.is_some() {
            break;
        }
    }
    out
}

/// An opening bracket that is not closed before some position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Open {
    pub ch: char,
    pub span: Span,
}

/// Lexical surroundings of a byte position.
pub(crate) struct Surroundings {
    /// Unclosed brackets before the position, innermost last.
    pub open: Vec<Open>,
    /// Up to three tokens before the position, nearest last.
    pub before: Vec<Token>,
    /// The token starting at (or containing) the position; `None` at end of input.
    pub at: Option<Token>,
}

pub(crate) fn surroundings(text: &str, pos: usize, lex: &Lexical) -> Surroundings {
    let mut open: Vec<Open> = Vec::new();
    let mut before: Vec<Token> = Vec::new();
    let mut at = None;
    for tok in tokens(text, lex) {
        if tok.span.end > pos {
            at = Some(tok);
            break;
        }
        match tok.kind {
            TokKind::Open(ch) => open.push(Open { ch, span: tok.span }),
            TokKind::Close(c) if open.last().is_some_and(|o| closer_of(o.ch) == c) => {
                open.pop();
            }
            _ => {}
        }
        if before.len() == 3 {
            before.remove(0);
        }
        before.push(tok);
    }
    // A token that straddles `pos` (pest stopped inside it): show it from `pos`.
    if let Some(tok) = at.as_mut()
        && tok.span.start < pos
    {
        tok.span.start = pos;
    }
    Surroundings { open, before, at }
}

/// Up to `max` word tokens directly before byte `pos` (nearest last).
pub(crate) fn words_before<'a>(
    text: &'a str,
    pos: usize,
    max: usize,
    lex: &Lexical,
) -> Vec<&'a str> {
    let head = text.get(..pos).unwrap_or(text);
    let mut words: Vec<&str> = Vec::new();
    for tok in tokens(head, lex) {
        if tok.kind == TokKind::Word {
            words.push(&head[tok.span.start..tok.span.end]);
            if words.len() > max {
                words.remove(0);
            }
        } else {
            words.clear();
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEX: Lexical = Lexical {
        comments: &["#", "//"],
    };

    fn kinds(text: &str) -> Vec<(TokKind, &str)> {
        tokens(text, &LEX)
            .map(|t| (t.kind, &text[t.span.start..t.span.end]))
            .collect()
    }

    #[test]
    fn tokenizes_words_numbers_strings() {
        use TokKind::*;
        assert_eq!(
            kinds("a = -1e-5 # c\n\"x\\\"y\" @p.q [%0] -> \"open"),
            vec![
                (Word, "a"),
                (Punct, "="),
                (Word, "-1e-5"),
                (Str { terminated: true }, "\"x\\\"y\""),
                (Word, "@p.q"),
                (Open('['), "["),
                (Word, "%0"),
                (Close(']'), "]"),
                (Punct, "->"),
                (Str { terminated: false }, "\"open"),
            ]
        );
    }

    #[test]
    fn prescan_finds_depth_and_strings() {
        let deep = "[".repeat(MAX_NESTING + 1);
        assert_eq!(prescan(&deep, &LEX).too_deep, Some(Span::new(64, 65)));
        let p = prescan("a = \"x\nb = 1", &LEX);
        assert_eq!(p.unterminated, Some(Span::new(4, 6)));
        assert!(prescan("a = \"#[\" # \"", &LEX).unterminated.is_none());
    }

    #[test]
    fn surroundings_track_open_brackets() {
        let text = "model m {\n  x = f(a, [1\n";
        let s = surroundings(text, text.len(), &LEX);
        let chars: Vec<char> = s.open.iter().map(|o| o.ch).collect();
        assert_eq!(chars, vec!['{', '(', '[']);
        assert!(s.at.is_none());
        assert_eq!(words_before(text, 8, 2, &LEX), vec!["model", "m"]);
    }
}
