//! Parser for the model spec language: pest grammar `spec.pest` → [`SpecFile`].

use pest::iterators::Pair;
use pest_derive::Parser;

use crate::diagnostic::Diagnostic;
use crate::lexscan::Lexical;
use crate::literal::{self, Number};
use crate::span::{SourceFile, Span, Spanned};
use crate::spec_ast::{Arg, Item, Section, SpecFile, Value, ValueKind};
use crate::syntax_error::{self, ErrorContext, SyntaxErrors};
use crate::tree::{Children, internal, only_child};

#[derive(Parser)]
#[grammar = "spec.pest"]
struct SpecParser;

/// Parses a model spec. Never panics; every failure is a [`Diagnostic`].
pub fn parse_spec(file: &SourceFile) -> Result<SpecFile, Diagnostic> {
    let mut pairs = syntax_error::parse::<SpecParser, _>(&SpecErrors, Rule::file, &file.text)?;
    let span = Span::new(0, file.text.len());
    let top = pairs.next().ok_or_else(|| internal(span))?;
    let mut sections = Vec::new();
    for pair in Children::of(top, noise) {
        if pair.as_rule() == Rule::section {
            sections.push(section(pair)?);
        }
    }
    Ok(SpecFile { sections, span })
}

type P<'i> = Pair<'i, Rule>;

fn noise(r: Rule) -> bool {
    matches!(
        r,
        Rule::lbrace
            | Rule::rbrace
            | Rule::lparen
            | Rule::rparen
            | Rule::lbracket
            | Rule::rbracket
            | Rule::comma
            | Rule::eq
            | Rule::override_kw
            | Rule::EOI
    )
}

fn spanned(p: &P<'_>) -> Spanned<String> {
    Spanned::new(p.as_str().to_string(), p.as_span().into())
}

fn section(pair: P<'_>) -> Result<Section, Diagnostic> {
    let span = pair.as_span().into();
    let mut c = Children::of(pair, noise);
    let kind = spanned(&c.expect(Rule::section_kind)?);
    let name = c.optional(Rule::section_name).map(|p| spanned(&p));
    let items = c.map(item).collect::<Result<_, _>>()?;
    Ok(Section {
        kind,
        name,
        items,
        span,
    })
}

fn item(pair: P<'_>) -> Result<Item, Diagnostic> {
    let span = pair.as_span().into();
    let rule = pair.as_rule();
    let mut c = Children::of(pair, noise);
    match rule {
        Rule::assign => {
            let key = spanned(&c.expect(Rule::key)?);
            let value = value(c.expect(Rule::value)?)?;
            Ok(Item::Assign { key, value, span })
        }
        Rule::override_item => {
            let pat = c.expect(Rule::string)?;
            let pat_span = pat.as_span().into();
            let pattern = Spanned::new(literal::string(pat.as_str(), pat_span)?, pat_span);
            let value = value(c.expect(Rule::value)?)?;
            Ok(Item::Override {
                pattern,
                value,
                span,
            })
        }
        _ => Err(internal(span)),
    }
}

fn value(pair: P<'_>) -> Result<Value, Diagnostic> {
    let span: Span = pair.as_span().into();
    let inner = only_child(pair, noise)?;
    let text = inner.as_str();
    let kind = match inner.as_rule() {
        Rule::number => match literal::number(text, span)? {
            Number::Int(i) => ValueKind::Int(i),
            Number::Float(f) => ValueKind::Float(f),
        },
        Rule::bool => ValueKind::Bool(text == "true"),
        Rule::ident => ValueKind::Ident(text.to_string()),
        Rule::string => ValueKind::Str(literal::string(text, span)?),
        Rule::list => ValueKind::List(
            Children::of(inner, noise)
                .map(value)
                .collect::<Result<_, _>>()?,
        ),
        Rule::call => {
            let mut c = Children::of(inner, noise);
            let name = spanned(&c.expect(Rule::call_name)?);
            let args = c.map(arg).collect::<Result<_, _>>()?;
            ValueKind::Call { name, args }
        }
        _ => return Err(internal(span)),
    };
    Ok(Value { kind, span })
}

fn arg(pair: P<'_>) -> Result<Arg, Diagnostic> {
    let span = pair.as_span().into();
    let mut c = Children::of(pair, noise);
    let key = c.optional(Rule::arg_key).map(|p| spanned(&p));
    let value = value(c.expect(Rule::value)?)?;
    Ok(Arg { key, value, span })
}

static LEXICAL: Lexical = Lexical { comments: &["#"] };

/// Human wording of spec parse errors.
struct SpecErrors;

impl SpecErrors {
    /// The kind of the section enclosing the error (`model`, `train`, ...).
    fn section_kind<'a>(cx: &ErrorContext<'a>) -> Option<&'a str> {
        let open = cx.around.open.iter().find(|o| o.ch == '{')?;
        cx.words_before(*open, 2).first().copied()
    }
}

impl SpecErrors {
    /// Whether the offending token is followed by `=` (a stray `key = value`).
    fn followed_by_eq(cx: &ErrorContext<'_>) -> bool {
        cx.around
            .at
            .and_then(|t| cx.text.get(t.span.end..))
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    }
}

impl SyntaxErrors for SpecErrors {
    type Rule = Rule;
    const RBRACE: Rule = Rule::rbrace;
    const RPAREN: Rule = Rule::rparen;
    const RBRACKET: Rule = Rule::rbracket;
    const EOI: Rule = Rule::EOI;

    fn lexical(&self) -> &'static Lexical {
        &LEXICAL
    }

    fn prune(&self, rules: &mut Vec<Rule>, cx: &ErrorContext<'_>) {
        // `override name = ...`: only the missing quotes matter.
        if cx.prev(0) == Some("override") && rules.contains(&Rule::string) {
            rules.retain(|r| *r == Rule::string);
        }
    }

    fn expected(&self, rule: Rule, cx: &ErrorContext<'_>) -> Option<String> {
        let s = match rule {
            Rule::EOI => "the end of the file".into(),
            Rule::section | Rule::section_kind => "a section such as `model name { ... }`".into(),
            Rule::section_name => "a section name".into(),
            Rule::lbrace => "`{` to open the section".into(),
            Rule::rbrace => match Self::section_kind(cx) {
                Some(kind) => format!("`}}` to close the `{kind}` section"),
                None => "`}`".into(),
            },
            Rule::key | Rule::assign => "another `key = value` item".into(),
            Rule::eq => match (cx.prev_token(0), cx.prev(0)) {
                (Some(t), _) if matches!(t.kind, crate::lexscan::TokKind::Str { .. }) => {
                    "`=` after the override pattern".into()
                }
                (_, Some(p)) => format!("`=` after `{p}`"),
                _ => "`=`".into(),
            },
            Rule::value => "a value (number, identifier, string, list or call)".into(),
            Rule::string if cx.prev(0) == Some("override") => {
                "a quoted glob pattern after `override`".into()
            }
            Rule::string => "a quoted string".into(),
            Rule::arg | Rule::arg_key => "an argument".into(),
            Rule::comma => "`,`".into(),
            Rule::rparen => match cx.innermost().filter(|o| o.ch == '(') {
                Some(o) => match cx.words_before(o, 1).last() {
                    Some(name) => format!("`)` to close the call to `{name}`"),
                    None => "`)`".into(),
                },
                None => "`)`".into(),
            },
            Rule::rbracket => "`]` to close the list".into(),
            // `(` after an identifier value is optional (it would make a call): not worth listing.
            _ => return None,
        };
        Some(s)
    }

    fn hint(&self, rules: &[Rule], cx: &ErrorContext<'_>) -> Option<String> {
        let found = cx.found();
        let wants = |r: Rule| rules.contains(&r);
        if wants(Rule::eq) && matches!(found, Some(":" | ":=" | "=>")) {
            return Some("write `key = value`".into());
        }
        if wants(Rule::string) && cx.prev(0) == Some("override") {
            return Some(
                "put the pattern in quotes: `override \"layers.*.mlp.down\" = dense`".into(),
            );
        }
        if wants(Rule::key) {
            match found {
                Some(",") | Some(";") => {
                    return Some("items are separated by spaces or newlines, not commas".into());
                }
                // `a =` (value missing) then `b = 1`: `b` was read as the value of `a`.
                Some("=") if cx.prev(1) == Some("=") => {
                    return Some(format!(
                        "is a value missing on line {}? `{}` was read as the value of `{}`",
                        cx.prev_token(1).map_or(0, |t| cx.line_of(t.span.start)),
                        cx.prev(0).unwrap_or(""),
                        cx.prev(2).unwrap_or("the previous key"),
                    ));
                }
                Some("{") => {
                    return Some(
                        "sections cannot be nested; is a `}` missing before this section?".into(),
                    );
                }
                _ => {}
            }
        }
        if wants(Rule::eq)
            && found == Some("{")
            && let Some(kind) = Self::section_kind(cx)
        {
            return Some(format!(
                "sections cannot be nested; is the `{kind}` section missing its closing `}}`?"
            ));
        }
        if (wants(Rule::lbrace) && found == Some("="))
            || (wants(Rule::section_kind) && Self::followed_by_eq(cx))
        {
            return Some(
                "`key = value` items must be inside a section such as `model name { ... }`".into(),
            );
        }
        if wants(Rule::lbrace) {
            return Some("a section looks like `kind name { key = value ... }`".into());
        }
        if wants(Rule::value) && found.is_some_and(|f| f.starts_with('.')) {
            return Some("write a leading zero: `0.5`, not `.5`".into());
        }
        None
    }
}
