//! Runs a pest parser and turns its errors into friendly [`Diagnostic`]s.
//!
//! Each grammar supplies a [`SyntaxErrors`] implementation that names its rules
//! in human words; everything else (locating the offending token, unclosed
//! brackets, unterminated strings, generic hints) is shared here.

use pest::error::{Error, ErrorVariant, InputLocation};
use pest::iterators::Pairs;
use pest::{Parser, RuleType};

use crate::diagnostic::Diagnostic;
use crate::lexscan::{
    self, Lexical, MAX_NESTING, Open, Prescan, Surroundings, TokKind, Token, closer_of,
};
use crate::span::{Span, line_col};

/// What the parser was looking at when it failed.
pub(crate) struct ErrorContext<'a> {
    pub text: &'a str,
    pub lex: &'a Lexical,
    pub around: Surroundings,
}

impl<'a> ErrorContext<'a> {
    fn slice(&self, tok: &Token) -> &'a str {
        self.text.get(tok.span.start..tok.span.end).unwrap_or("")
    }

    /// Text of the offending token; `None` at end of input.
    pub fn found(&self) -> Option<&'a str> {
        self.around.at.as_ref().map(|t| self.slice(t))
    }

    /// The `n`-th token before the error (0 = nearest).
    pub fn prev_token(&self, n: usize) -> Option<&Token> {
        self.around.before.iter().rev().nth(n)
    }

    /// Text of the `n`-th token before the error (0 = nearest).
    pub fn prev(&self, n: usize) -> Option<&'a str> {
        self.prev_token(n).map(|t| self.slice(t))
    }

    /// The innermost bracket still open at the error.
    pub fn innermost(&self) -> Option<Open> {
        self.around.open.last().copied()
    }

    /// Word tokens directly before an opening bracket (e.g. a section header).
    pub fn words_before(&self, open: Open, max: usize) -> Vec<&'a str> {
        lexscan::words_before(self.text, open.span.start, max, self.lex)
    }

    pub fn line_of(&self, byte: usize) -> usize {
        line_col(self.text, byte).0
    }
}

/// Grammar-specific wording of parse errors.
pub(crate) trait SyntaxErrors {
    type Rule: RuleType;

    fn lexical(&self) -> &'static Lexical;

    /// How to describe an expected rule ("`=` after `vocab`"); `None` hides it.
    fn expected(&self, rule: Self::Rule, cx: &ErrorContext<'_>) -> Option<String>;

    /// The grammar's closing-bracket rules and end of input. Both grammars spell them
    /// alike, but pest generates a separate `Rule` enum per grammar, so each names its own.
    const RBRACE: Self::Rule;
    const RPAREN: Self::Rule;
    const RBRACKET: Self::Rule;
    const EOI: Self::Rule;

    /// The closing bracket a rule stands for, if it is one.
    fn closes(&self, rule: Self::Rule) -> Option<char> {
        [
            (Self::RBRACE, '}'),
            (Self::RPAREN, ')'),
            (Self::RBRACKET, ']'),
        ]
        .into_iter()
        .find(|(r, _)| *r == rule)
        .map(|(_, c)| c)
    }

    /// Whether a rule's phrase goes at the end of the list (closing brackets, end of file).
    fn last(&self, rule: Self::Rule) -> bool {
        rule == Self::EOI || self.closes(rule).is_some()
    }

    /// Drops expected rules that would only confuse in this context.
    fn prune(&self, _rules: &mut Vec<Self::Rule>, _cx: &ErrorContext<'_>) {}

    /// A grammar-specific hint; the shared fallbacks apply when this is `None`.
    fn hint(&self, rules: &[Self::Rule], cx: &ErrorContext<'_>) -> Option<String>;
}

/// Parses `text` starting at `rule`, mapping every failure to a [`Diagnostic`].
pub(crate) fn parse<'i, P, G>(
    errors: &G,
    rule: G::Rule,
    text: &'i str,
) -> Result<Pairs<'i, G::Rule>, Diagnostic>
where
    P: Parser<G::Rule>,
    G: SyntaxErrors,
{
    let pre = lexscan::prescan(text, errors.lexical());
    if let Some(span) = pre.too_deep {
        return Err(Diagnostic::error("brackets are nested too deeply", span)
            .with_label(format!("more than {MAX_NESTING} levels deep here"))
            .with_hint("simplify the value; nesting is limited to keep parsing fast and safe"));
    }
    P::parse(rule, text).map_err(|e| convert(e, text, errors, &pre))
}

fn convert<G: SyntaxErrors>(
    err: Error<G::Rule>,
    text: &str,
    errors: &G,
    pre: &Prescan,
) -> Diagnostic {
    let pos = match err.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    // An unclosed string derails everything after it: report it first.
    if let Some(span) = pre.unterminated.filter(|s| s.start <= pos) {
        return Diagnostic::error("unterminated string", span)
            .with_label("this string is never closed")
            .with_hint(
                "add a closing `\"` (strings cannot span lines; write `\\n` for a newline)",
            );
    }
    let cx = ErrorContext {
        text,
        lex: errors.lexical(),
        around: lexscan::surroundings(text, pos, errors.lexical()),
    };
    let positives = match err.variant {
        ErrorVariant::ParsingError { positives, .. } => positives,
        ErrorVariant::CustomError { message } => {
            return Diagnostic::error(message, locate(&cx, pos).0);
        }
    };
    let mut rules: Vec<G::Rule> = Vec::new();
    for r in positives {
        if !rules.contains(&r) {
            rules.push(r);
        }
    }
    // At the end of input, a missing closing bracket is the whole story.
    if cx.around.at.is_none()
        && let Some(open) = cx.innermost()
    {
        let want = closer_of(open.ch);
        if rules.iter().any(|r| errors.closes(*r) == Some(want)) {
            rules.retain(|r| errors.closes(*r) == Some(want));
        }
    }
    errors.prune(&mut rules, &cx);
    rules.sort_by_key(|r| errors.last(*r));
    let mut phrases: Vec<String> = Vec::new();
    for r in &rules {
        if let Some(p) = errors.expected(*r, &cx)
            && !phrases.contains(&p)
        {
            phrases.push(p);
        }
    }
    let message = if phrases.is_empty() {
        match cx.found() {
            Some(t) => format!("unexpected `{}`", shorten(t)),
            None => "unexpected end of file".to_string(),
        }
    } else {
        format!("expected {}", join_or(&phrases))
    };
    let wants_closer = cx.innermost().is_some_and(|o| {
        rules
            .iter()
            .any(|r| errors.closes(*r) == Some(closer_of(o.ch)))
    });
    let (span, label) = locate(&cx, pos);
    let d = Diagnostic::error(message, span).with_label(label);
    let hint = errors
        .hint(&rules, &cx)
        .or_else(|| quote_hint(&cx, pre))
        .or_else(|| generic_hint(&cx, wants_closer));
    match hint {
        Some(h) => d.with_hint(h),
        None => d,
    }
}

/// The span to underline and its label.
fn locate(cx: &ErrorContext<'_>, pos: usize) -> (Span, String) {
    match (&cx.around.at, cx.prev_token(0)) {
        (Some(tok), _) => (
            tok.span,
            format!("unexpected `{}`", shorten(cx.found().unwrap_or(""))),
        ),
        (None, Some(prev)) => (prev.span, "the file ends after this".to_string()),
        (None, None) if cx.text.trim().is_empty() => {
            (Span::point(pos), "the file is empty".to_string())
        }
        (None, None) => (Span::point(pos), "the file ends here".to_string()),
    }
}

/// `["a, "b"]`: a missing quote makes one string swallow the next opening
/// quote, so the error comes after a string, before a string that never ends.
fn quote_hint(cx: &ErrorContext<'_>, pre: &Prescan) -> Option<String> {
    let prev = cx.prev_token(0)?;
    let later = pre.unterminated?;
    let same_line = cx.line_of(prev.span.start) == cx.line_of(later.start);
    (matches!(prev.kind, TokKind::Str { .. }) && same_line).then(|| {
        format!(
            "check the quotes on this line: `{}` was read as one string, and a later string is never closed",
            shorten(cx.prev(0).unwrap_or(""))
        )
    })
}

fn generic_hint(cx: &ErrorContext<'_>, wants_closer: bool) -> Option<String> {
    let open = cx.innermost();
    match (&cx.around.at, open) {
        (Some(tok), Some(o))
            if wants_closer
                && matches!(o.ch, '(' | '[')
                && cx.line_of(tok.span.start) > cx.line_of(o.span.start) =>
        {
            Some(format!(
                "is a `{}` missing? the `{}` on line {} is still open",
                closer_of(o.ch),
                o.ch,
                cx.line_of(o.span.start)
            ))
        }
        (None, Some(o)) => Some(format!(
            "add `{}` to close the `{}` opened on line {}",
            closer_of(o.ch),
            o.ch,
            cx.line_of(o.span.start)
        )),
        (
            Some(Token {
                kind: TokKind::Close(c),
                ..
            }),
            Some(o),
        ) if closer_of(o.ch) != *c => Some(format!(
            "this `{c}` does not match the `{}` opened on line {}; close that first with `{}`",
            o.ch,
            cx.line_of(o.span.start),
            closer_of(o.ch)
        )),
        (
            Some(Token {
                kind: TokKind::Close(c),
                ..
            }),
            None,
        ) => Some(format!("this `{c}` has no matching opening bracket")),
        _ => None,
    }
}

/// Truncates long token text for labels.
fn shorten(t: &str) -> String {
    const MAX: usize = 30;
    if t.chars().count() <= MAX {
        t.to_string()
    } else {
        let mut s: String = t.chars().take(MAX).collect();
        s.push('…');
        s
    }
}

/// "a", "a or b", "a, b or c".
fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_with_or() {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(join_or(&v(&["a"])), "a");
        assert_eq!(join_or(&v(&["a", "b"])), "a or b");
        assert_eq!(join_or(&v(&["a", "b", "c"])), "a, b or c");
    }

    #[test]
    fn shortens_long_tokens() {
        assert_eq!(shorten("abc"), "abc");
        assert_eq!(shorten(&"x".repeat(40)).chars().count(), 31);
    }
}
