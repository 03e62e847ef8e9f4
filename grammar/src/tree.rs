//! A checked cursor over pest child pairs, so AST building never panics.
//!
//! The grammars guarantee the tree shapes the builders expect; if that ever
//! breaks, the builders report an internal-error diagnostic instead of panicking.

use pest::RuleType;
use pest::iterators::{Pair, Pairs};

use crate::diagnostic::Diagnostic;
use crate::span::Span;

/// The children of a pair, minus punctuation (`noise`) rules.
pub(crate) struct Children<'i, R: RuleType> {
    inner: Pairs<'i, R>,
    parent: Span,
    noise: fn(R) -> bool,
}

impl<'i, R: RuleType> Children<'i, R> {
    pub fn of(pair: Pair<'i, R>, noise: fn(R) -> bool) -> Self {
        let parent = Span::from(pair.as_span());
        Children {
            inner: pair.into_inner(),
            parent,
            noise,
        }
    }

    pub fn peek(&self) -> Option<R> {
        self.inner
            .clone()
            .find(|p| !(self.noise)(p.as_rule()))
            .map(|p| p.as_rule())
    }

    /// The next child whatever its rule, if any.
    pub fn next_any(&mut self) -> Option<Pair<'i, R>> {
        let noise = self.noise;
        self.inner.find(|p| !noise(p.as_rule()))
    }

    /// The next child, which must be `rule`.
    pub fn expect(&mut self, rule: R) -> Result<Pair<'i, R>, Diagnostic> {
        match self.next_any() {
            Some(p) if p.as_rule() == rule => Ok(p),
            _ => Err(internal(self.parent)),
        }
    }

    /// The next child if it is `rule`.
    pub fn optional(&mut self, rule: R) -> Option<Pair<'i, R>> {
        if self.peek() == Some(rule) {
            self.next_any()
        } else {
            None
        }
    }
}

impl<'i, R: RuleType> Iterator for Children<'i, R> {
    type Item = Pair<'i, R>;

    fn next(&mut self) -> Option<Pair<'i, R>> {
        self.next_any()
    }
}

/// The first child of `pair` (skipping noise), which must exist.
pub(crate) fn only_child<R: RuleType>(
    pair: Pair<'_, R>,
    noise: fn(R) -> bool,
) -> Result<Pair<'_, R>, Diagnostic> {
    let span = Span::from(pair.as_span());
    Children::of(pair, noise)
        .next_any()
        .ok_or_else(|| internal(span))
}

pub(crate) fn internal(span: Span) -> Diagnostic {
    Diagnostic::error(
        "internal error: unexpected parse tree (this is a bug in bfly-grammar)",
        span,
    )
}
