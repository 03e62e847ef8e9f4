//! Parser for the textual Graph IR: pest grammar `ir.pest` → [`IrGraph`].

use pest::iterators::Pair;
use pest_derive::Parser;

use crate::diagnostic::Diagnostic;
use crate::ir_ast::{
    Attr, AttrValue, DimAst, InitAst, IrGraph, Operand, ParamDecl, RegionAst, Stmt, SymBound,
    TypeAst, ValueDecl,
};
use crate::lexscan::Lexical;
use crate::literal::{self, Number};
use crate::span::{SourceFile, Span, Spanned};
use crate::syntax_error::{self, ErrorContext, SyntaxErrors};
use crate::tree::{Children, internal, only_child};

#[derive(Parser)]
#[grammar = "ir.pest"]
struct IrParser;

/// Parses one graph in IR text form. Never panics; every failure is a [`Diagnostic`].
pub fn parse_ir(file: &SourceFile) -> Result<IrGraph, Diagnostic> {
    let mut pairs = syntax_error::parse::<IrParser, _>(&IrErrors, Rule::file, &file.text)?;
    let whole = Span::new(0, file.text.len());
    let top = pairs.next().ok_or_else(|| internal(whole))?;
    graph(Children::of(top, noise).expect(Rule::graph)?)
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
            | Rule::colon
            | Rule::eq
            | Rule::arrow
            | Rule::le
            | Rule::kw_graph
            | Rule::kw_where
            | Rule::kw_param
            | Rule::kw_init
            | Rule::kw_loc
            | Rule::kw_return
            | Rule::kw_fused
            | Rule::EOI
    )
}

fn span_of(p: &P<'_>) -> Span {
    p.as_span().into()
}

fn spanned(p: &P<'_>) -> Spanned<String> {
    Spanned::new(p.as_str().to_string(), span_of(p))
}

/// `%x` / `@x` → `x`; the span keeps the sigil.
fn sigil_name(p: &P<'_>) -> Spanned<String> {
    Spanned::new(p.as_str().get(1..).unwrap_or("").to_string(), span_of(p))
}

fn graph(pair: P<'_>) -> Result<IrGraph, Diagnostic> {
    let span = span_of(&pair);
    let mut c = Children::of(pair, noise);
    let name = sigil_name(&c.expect(Rule::global)?);
    let inputs = decls(c.expect(Rule::inputs)?)?;
    let outputs = decls(c.expect(Rule::outputs)?)?;
    let bounds = match c.optional(Rule::bounds) {
        Some(b) => Children::of(b, noise)
            .map(bound)
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let (mut params, mut stmts, mut regions, mut ret) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for p in c {
        match p.as_rule() {
            Rule::param => params.push(param(p)?),
            Rule::stmt => stmts.push(stmt(p)?),
            Rule::region => regions.push(region(p, &mut stmts)?),
            Rule::ret => ret = Children::of(p, noise).map(|v| sigil_name(&v)).collect(),
            _ => return Err(internal(span_of(&p))),
        }
    }
    Ok(IrGraph {
        name,
        inputs,
        outputs,
        bounds,
        params,
        stmts,
        regions,
        ret,
        span,
    })
}

/// `fused @name { stmts }`: appends the statements to `stmts` and returns the region over
/// them. Nested and empty regions are errors located at the offending region's header.
fn region(pair: P<'_>, stmts: &mut Vec<Stmt>) -> Result<RegionAst, Diagnostic> {
    let span = span_of(&pair);
    let mut c = Children::of(pair, noise);
    let name = sigil_name(&c.expect(Rule::global)?);
    let header = Span::new(span.start, name.span.end);
    let first = stmts.len();
    for p in c {
        match p.as_rule() {
            Rule::stmt => stmts.push(stmt(p)?),
            Rule::region => {
                let inner_span = span_of(&p);
                let inner = Children::of(p, noise)
                    .next_any()
                    .map_or(inner_span, |g| Span::new(inner_span.start, span_of(&g).end));
                return Err(Diagnostic::error("fused regions cannot be nested", inner)
                    .with_label(format!("inside region `@{}`", name.node))
                    .with_hint(format!(
                        "a region is one kernel; close `@{}` with `}}` before opening another",
                        name.node
                    )));
            }
            _ => return Err(internal(span_of(&p))),
        }
    }
    if stmts.len() == first {
        return Err(
            Diagnostic::error(format!("fused region `@{}` is empty", name.node), header)
                .with_label("no statements inside")
                .with_hint(
                    "put the statements of the kernel inside the braces, or drop the region",
                ),
        );
    }
    Ok(RegionAst {
        name,
        stmts: first..stmts.len(),
        span,
    })
}

fn decls(pair: P<'_>) -> Result<Vec<ValueDecl>, Diagnostic> {
    Children::of(pair, noise)
        .map(|d| {
            let mut c = Children::of(d, noise);
            let (name, param) = match c.optional(Rule::global) {
                Some(g) => (sigil_name(&g), true),
                None => (sigil_name(&c.expect(Rule::local)?), false),
            };
            let ty = ty(c.expect(Rule::ty)?)?;
            Ok(ValueDecl { name, ty, param })
        })
        .collect()
}

fn bound(pair: P<'_>) -> Result<SymBound, Diagnostic> {
    let mut c = Children::of(pair, noise);
    let name = spanned(&c.expect(Rule::sym)?);
    let max = c.expect(Rule::uint)?;
    let max_span = span_of(&max);
    let value = literal::unsigned(max.as_str(), max_span, "a bound")?;
    Ok(SymBound {
        name,
        max: Spanned::new(value, max_span),
    })
}

fn ty(pair: P<'_>) -> Result<TypeAst, Diagnostic> {
    let span = span_of(&pair);
    let mut c = Children::of(pair, noise);
    let dtype = spanned(&c.expect(Rule::dtype)?);
    let dims = c
        .map(|d| {
            let dspan = span_of(&d);
            let inner = only_child(d, noise)?;
            let dim = match inner.as_rule() {
                Rule::dim_const => {
                    DimAst::Const(literal::unsigned(inner.as_str(), dspan, "a dimension")?)
                }
                _ => DimAst::Sym(inner.as_str().to_string()),
            };
            Ok(Spanned::new(dim, dspan))
        })
        .collect::<Result<_, Diagnostic>>()?;
    Ok(TypeAst { dtype, dims, span })
}

fn param(pair: P<'_>) -> Result<ParamDecl, Diagnostic> {
    let span = span_of(&pair);
    let mut c = Children::of(pair, noise);
    let name = sigil_name(&c.expect(Rule::global)?);
    let ty = ty(c.expect(Rule::ty)?)?;
    let init = match c.next_any() {
        Some(p) if p.as_rule() == Rule::init => Some(init(p)?),
        Some(p) if p.as_rule() == Rule::kw_external => None,
        _ => return Err(internal(span)),
    };
    let trainable = match c.next_any().map(|p| p.as_rule()) {
        Some(Rule::kw_trainable) => true,
        Some(Rule::kw_frozen) => false,
        _ => return Err(internal(span)),
    };
    Ok(ParamDecl {
        name,
        ty,
        init,
        trainable,
        span,
    })
}

fn init(pair: P<'_>) -> Result<InitAst, Diagnostic> {
    let end = pair.as_span().end();
    let mut c = Children::of(pair, noise);
    let name = spanned(&c.expect(Rule::init_name)?);
    let args = c
        .map(|n| {
            let nspan = span_of(&n);
            let v = match literal::number(n.as_str(), nspan)? {
                Number::Int(i) => i as f64,
                Number::Float(f) => f,
            };
            Ok(Spanned::new(v, nspan))
        })
        .collect::<Result<_, Diagnostic>>()?;
    let span = Span::new(name.span.start, end);
    Ok(InitAst { name, args, span })
}

fn stmt(pair: P<'_>) -> Result<Stmt, Diagnostic> {
    let span = span_of(&pair);
    let mut c = Children::of(pair, noise);
    let mut results = Vec::new();
    while let Some(r) = c.optional(Rule::result) {
        results.push(sigil_name(&r));
    }
    let op = spanned(&c.expect(Rule::op_name)?);
    let mut operands = Vec::new();
    while let Some(o) = c.optional(Rule::operand) {
        let inner = only_child(o, noise)?;
        operands.push(match inner.as_rule() {
            Rule::global => Operand::Param(sigil_name(&inner)),
            _ => Operand::Value(sigil_name(&inner)),
        });
    }
    let attrs = match c.optional(Rule::attrs) {
        Some(a) => Children::of(a, noise).map(attr).collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let mut types = Vec::new();
    while let Some(t) = c.optional(Rule::ty) {
        types.push(ty(t)?);
    }
    let loc = c.optional(Rule::loc).map(loc).transpose()?;
    Ok(Stmt {
        results,
        op,
        operands,
        attrs,
        types,
        loc,
        span,
    })
}

fn loc(pair: P<'_>) -> Result<(u32, u32), Diagnostic> {
    let mut c = Children::of(pair, noise);
    let mut part = |what: &str| -> Result<u32, Diagnostic> {
        let p = c.expect(Rule::uint)?;
        let pspan = span_of(&p);
        let v = literal::unsigned(p.as_str(), pspan, what)?;
        u32::try_from(v).map_err(|_| {
            Diagnostic::error(format!("`{v}` is too large for {what}"), pspan)
                .with_label("must fit in 32 bits")
        })
    };
    let line = part("a line number")?;
    let col = part("a column number")?;
    Ok((line, col))
}

fn attr(pair: P<'_>) -> Result<Attr, Diagnostic> {
    let span = span_of(&pair);
    let mut c = Children::of(pair, noise);
    let key = spanned(&c.expect(Rule::attr_key)?);
    let value = attr_value(c.expect(Rule::attr_value)?)?;
    Ok(Attr { key, value, span })
}

fn attr_value(pair: P<'_>) -> Result<AttrValue, Diagnostic> {
    let span = span_of(&pair);
    let inner = only_child(pair, noise)?;
    let text = inner.as_str();
    Ok(match inner.as_rule() {
        Rule::number => match literal::number(text, span)? {
            Number::Int(i) => AttrValue::Int(i),
            Number::Float(f) => AttrValue::Float(f),
        },
        Rule::bool => AttrValue::Bool(text == "true"),
        Rule::string => AttrValue::Str(literal::string(text, span)?),
        Rule::ident => AttrValue::Ident(text.to_string()),
        Rule::attr_list => AttrValue::List(
            Children::of(inner, noise)
                .map(attr_value)
                .collect::<Result<_, _>>()?,
        ),
        _ => return Err(internal(span)),
    })
}

/// The `@name` of the fused region whose `{` is the innermost open bracket, if it is one.
fn open_region<'a>(cx: &ErrorContext<'a>) -> Option<&'a str> {
    let open = cx.innermost().filter(|o| o.ch == '{')?;
    match cx.words_before(open, 2)[..] {
        ["fused", name] if name.starts_with('@') => Some(name),
        _ => None,
    }
}

static LEXICAL: Lexical = Lexical {
    comments: &["#", "//"],
};

/// Human wording of IR parse errors.
struct IrErrors;

impl SyntaxErrors for IrErrors {
    type Rule = Rule;
    const RBRACE: Rule = Rule::rbrace;
    const RPAREN: Rule = Rule::rparen;
    const RBRACKET: Rule = Rule::rbracket;
    const EOI: Rule = Rule::EOI;

    fn lexical(&self) -> &'static Lexical {
        &LEXICAL
    }

    fn prune(&self, rules: &mut Vec<Rule>, cx: &ErrorContext<'_>) {
        // `}` where `return` is required: the body is just missing its `return`.
        if cx.found() == Some("}") && rules.contains(&Rule::kw_return) {
            rules.retain(|r| *r == Rule::kw_return);
        }
    }

    fn expected(&self, rule: Rule, cx: &ErrorContext<'_>) -> Option<String> {
        let prev = cx.prev(0);
        let s = match rule {
            Rule::EOI => "the end of the file".into(),
            Rule::graph | Rule::kw_graph => "`graph`".into(),
            Rule::global => "a `@name`".into(),
            Rule::lparen => match prev {
                Some("->") => "`(` and the graph outputs".into(),
                Some("loc") => "`(`".into(),
                Some(p) if p.starts_with('@') && cx.prev(1) == Some("graph") => {
                    "`(` and the graph inputs".into()
                }
                // `(` after an initializer name is optional: not worth listing.
                _ => return None,
            },
            Rule::rparen => "`)`".into(),
            Rule::value_decl | Rule::local => "a `%value`".into(),
            Rule::output_decl => "an output `%value: TYPE` or `@param: TYPE`".into(),
            Rule::result if prev == Some(",") => "a `%value`".into(),
            Rule::result | Rule::stmt => "a statement `%x = op ...`".into(),
            Rule::colon => "`:`".into(),
            Rule::ty | Rule::dtype => "a type such as `f32[T, 128]`".into(),
            Rule::lbracket => "`[` and the shape".into(),
            Rule::dim | Rule::dim_const | Rule::sym => {
                "a dimension (an integer or a symbol)".into()
            }
            Rule::rbracket => "`]`".into(),
            Rule::comma => "`,`".into(),
            Rule::arrow => "`->` and the graph outputs".into(),
            Rule::bounds | Rule::kw_where => "`where`".into(),
            Rule::bound => "a bound such as `T <= 64`".into(),
            Rule::le => "`<=`".into(),
            Rule::uint => "an integer".into(),
            Rule::lbrace => match cx.innermost() {
                None => "`{` to open the graph body".into(),
                Some(_)
                    if prev.is_some_and(|p| p.starts_with('@')) && cx.prev(1) == Some("fused") =>
                {
                    "`{` to open the fused region".into()
                }
                Some(_) => "attributes `{...}`".into(),
            },
            Rule::rbrace => match (open_region(cx), cx.around.open.len()) {
                (Some(name), _) => format!("`}}` to close the fused region `{name}`"),
                (None, 0 | 1) => "`}` to close the graph body".into(),
                (None, _) => "`}` to close the attributes".into(),
            },
            // Regions are compiler output (the `fuse` pass); listing them among the body items
            // of every error about a hand-written graph would only be noise.
            Rule::region | Rule::kw_fused => return None,
            Rule::param | Rule::kw_param => "`param`".into(),
            Rule::ret | Rule::kw_return => "`return`".into(),
            Rule::init | Rule::kw_init => "`init`".into(),
            Rule::kw_external => "`external`".into(),
            Rule::kw_trainable => "`trainable`".into(),
            Rule::kw_frozen => "`frozen`".into(),
            Rule::init_name => "an initializer such as `normal(0.02)`".into(),
            Rule::number => "a number".into(),
            Rule::eq => "`=`".into(),
            Rule::op_name => "an op name".into(),
            Rule::operand => "an operand (`%value` or `@param`)".into(),
            Rule::attr | Rule::attr_key => "an attribute `key = value`".into(),
            Rule::attr_value | Rule::attr_list => {
                "an attribute value (number, boolean, identifier, string or list)".into()
            }
            Rule::loc | Rule::kw_loc => "`loc(line:col)`".into(),
            _ => return None,
        };
        Some(s)
    }

    fn hint(&self, rules: &[Rule], cx: &ErrorContext<'_>) -> Option<String> {
        let wants = |r: Rule| rules.contains(&r);
        let found = cx.found();
        if wants(Rule::kw_graph) {
            return Some(
                "an IR file holds one graph: `graph @name(%in: i32[T]) -> (%out: f32[T, 256]) { ... }`"
                    .into(),
            );
        }
        if wants(Rule::rbrace)
            && let Some(name) = open_region(cx)
        {
            let line = cx.innermost().map_or(0, |o| cx.line_of(o.span.start));
            return Some(format!(
                "a fused region holds statements only; is the `}}` of `{name}` (opened on line {line}) missing?"
            ));
        }
        if wants(Rule::kw_return) && found == Some("}") {
            return Some(
                "the graph body must end with `return` (a bare `return` returns nothing)".into(),
            );
        }
        if wants(Rule::lbracket) && cx.prev_token(0).is_some() {
            return Some(
                "a type is a dtype and a shape, e.g. `f32[T, 128]`; scalars are `f32[]`".into(),
            );
        }
        if wants(Rule::kw_init) || wants(Rule::kw_external) {
            return Some("write `init normal(0.02)` (or another initializer) or `external`".into());
        }
        if wants(Rule::kw_trainable) || wants(Rule::kw_frozen) {
            return Some("every param ends with `trainable` or `frozen`".into());
        }
        if wants(Rule::colon) && wants(Rule::lbrace) {
            return Some("a statement ends with its result types, e.g. `: f32[T, 128]`".into());
        }
        if wants(Rule::eq) && found == Some(":") {
            return Some("attributes are written `{key = value, ...}`".into());
        }
        None
    }
}
