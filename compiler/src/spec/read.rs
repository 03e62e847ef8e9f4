//! Typed readers for spec values: each checks one value's type and range and reports what was
//! found, where, and how to write it instead. A reader returns `None` after reporting.

use bfly_grammar::{Arg, Diagnostic, Span, Spanned, Value, ValueKind};

use super::glob;
use super::sink::Sink;
use bfly_grammar::suggest;

/// What a value is, in words, quoting its source text: "the number `4.5`".
pub fn describe(sink: &Sink<'_>, v: &Value) -> String {
    let what = match &v.kind {
        ValueKind::Int(_) => "the integer",
        ValueKind::Float(_) => "the number",
        ValueKind::Bool(_) => "the boolean",
        ValueKind::Ident(_) => "the name",
        ValueKind::Str(_) => "the string",
        ValueKind::List(_) => "the list",
        ValueKind::Call { .. } => "the call",
    };
    format!("{what} `{}`", sink.snippet(v.span))
}

fn mistyped(sink: &mut Sink<'_>, v: &Value, what: &str, want: &str, hint: String) {
    let found = describe(sink, v);
    sink.push(
        Diagnostic::error(format!("`{what}` must be {want}, found {found}"), v.span)
            .with_label(format!("expected {want}"))
            .with_hint(hint),
    );
}

pub fn int(sink: &mut Sink<'_>, v: &Value, what: &str) -> Option<i64> {
    match &v.kind {
        ValueKind::Int(i) => return Some(*i),
        ValueKind::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => {
            let hint = format!("write it without a fraction or exponent: `{what} = {f:.0}`");
            mistyped(sink, v, what, "an integer", hint);
        }
        ValueKind::Str(s) if s.trim().parse::<i64>().is_ok() => {
            let hint = format!("remove the quotes: `{what} = {}`", s.trim());
            mistyped(sink, v, what, "an integer", hint);
        }
        _ => mistyped(
            sink,
            v,
            what,
            "an integer",
            "write a whole number such as `64`".into(),
        ),
    }
    None
}

/// An integer in `min..=max` (sizes, counts).
pub fn size(sink: &mut Sink<'_>, v: &Value, what: &str, min: u64, max: u64) -> Option<u64> {
    let i = int(sink, v, what)?;
    match u64::try_from(i) {
        Ok(u) if (min..=max).contains(&u) => Some(u),
        Ok(u) if u > max => {
            sink.push(
                Diagnostic::error(
                    format!("`{what}` = {i} is larger than the supported maximum {max}"),
                    v.span,
                )
                .with_label("too large")
                .with_hint(format!("use a value from {min} to {max}")),
            );
            None
        }
        _ => {
            let why = if i < 0 {
                "cannot be negative".to_string()
            } else {
                format!("must be at least {min}")
            };
            sink.push(
                Diagnostic::error(
                    format!("`{what}` must be at least {min}, found {i}"),
                    v.span,
                )
                .with_label(why)
                .with_hint(format!("use a value from {min} to {max}")),
            );
            None
        }
    }
}

/// An integer or float that is finite and satisfies `ok`, described by `expected`
/// ("greater than 0").
pub fn number(
    sink: &mut Sink<'_>,
    v: &Value,
    what: &str,
    ok: impl Fn(f64) -> bool,
    expected: &str,
) -> Option<f64> {
    let x = match &v.kind {
        ValueKind::Int(i) => *i as f64,
        ValueKind::Float(f) => *f,
        ValueKind::Str(s) if s.trim().parse::<f64>().is_ok() => {
            let hint = format!("remove the quotes: `{what} = {}`", s.trim());
            mistyped(sink, v, what, "a number", hint);
            return None;
        }
        _ => {
            mistyped(
                sink,
                v,
                what,
                "a number",
                "write a number such as `0.5` or `1e-5`".into(),
            );
            return None;
        }
    };
    if x.is_finite() && ok(x) {
        return Some(x);
    }
    sink.push(
        Diagnostic::error(
            format!(
                "`{what}` must be {expected}, found {}",
                sink.snippet(v.span)
            ),
            v.span,
        )
        .with_label(format!("not {expected}"))
        .with_hint(format!("use a finite number {expected}")),
    );
    None
}

pub fn boolean(sink: &mut Sink<'_>, v: &Value, what: &str) -> Option<bool> {
    if let ValueKind::Bool(b) = v.kind {
        return Some(b);
    }
    let hint = match &v.kind {
        ValueKind::Ident(s) | ValueKind::Str(s)
            if ["yes", "on", "1", "true", "True", "TRUE"].contains(&s.as_str()) =>
        {
            format!("write `{what} = true`")
        }
        ValueKind::Ident(s) | ValueKind::Str(s)
            if ["no", "off", "0", "false", "False", "FALSE"].contains(&s.as_str()) =>
        {
            format!("write `{what} = false`")
        }
        ValueKind::Int(1) => format!("write `{what} = true`"),
        ValueKind::Int(0) => format!("write `{what} = false`"),
        _ => "write `true` or `false`".into(),
    };
    mistyped(sink, v, what, "`true` or `false`", hint);
    None
}

/// One of a fixed set of names (`stride = increasing`); returns its index in `choices`.
pub fn choice(sink: &mut Sink<'_>, v: &Value, what: &str, choices: &[&str]) -> Option<usize> {
    let want = format!("one of {}", suggest::list(choices));
    match &v.kind {
        ValueKind::Ident(name) => {
            if let Some(i) = choices.iter().position(|c| c == name) {
                return Some(i);
            }
            sink.push(
                Diagnostic::error(format!("unknown `{what}` value `{name}`"), v.span)
                    .with_label(format!("expected {want}"))
                    .with_hint(suggest::hint(name, choices)),
            );
        }
        ValueKind::Str(s) if choices.contains(&s.as_str()) => {
            let hint = format!("names are written without quotes: `{what} = {s}`");
            mistyped(sink, v, what, &want, hint);
        }
        ValueKind::Call { name, .. } if choices.contains(&name.node.as_str()) => {
            let hint = format!(
                "`{}` takes no arguments: write `{what} = {}`",
                name.node, name.node
            );
            mistyped(sink, v, what, &want, hint);
        }
        _ => {
            let hint = format!(
                "write `{what} = {}`",
                choices.first().copied().unwrap_or("…")
            );
            mistyped(sink, v, what, &want, hint);
        }
    }
    None
}

/// A call `name(key = value, …)` or a bare `name` (all defaults), with `name` in `kinds`.
pub struct Call<'a> {
    pub name: &'a str,
    pub args: &'a [Arg],
}

/// Reads a call whose name is one of `kinds`; `example` shows a correct value in hints.
pub fn call<'a>(
    sink: &mut Sink<'_>,
    v: &'a Value,
    what: &str,
    kinds: &[&str],
    example: &str,
) -> Option<Call<'a>> {
    let (name, name_span, args): (&str, Span, &[Arg]) = match &v.kind {
        ValueKind::Ident(n) => (n, v.span, &[]),
        ValueKind::Call { name, args } => (&name.node, name.span, args),
        ValueKind::Str(s) if kinds.contains(&s.as_str()) => {
            let hint = format!("names are written without quotes: `{what} = {s}`");
            mistyped(
                sink,
                v,
                what,
                &format!("one of {}", suggest::list(kinds)),
                hint,
            );
            return None;
        }
        _ => {
            let want = format!("one of {}", suggest::list(kinds));
            mistyped(
                sink,
                v,
                what,
                &want,
                format!("for example `{what} = {example}`"),
            );
            return None;
        }
    };
    if kinds.contains(&name) {
        return Some(Call { name, args });
    }
    sink.push(
        Diagnostic::error(format!("unknown `{what}` kind `{name}`"), name_span)
            .with_label(format!("expected one of {}", suggest::list(kinds)))
            .with_hint(suggest::hint(name, kinds)),
    );
    None
}

/// The keyword arguments of a call, checked against the names the callee accepts.
pub struct Kwargs<'a> {
    args: Vec<(&'a str, &'a Value)>,
    /// Some argument was positional (and reported); a "missing argument" error would then
    /// only repeat it.
    pub positional: bool,
}

impl<'a> Kwargs<'a> {
    pub fn new(sink: &mut Sink<'_>, call: &Call<'a>, allowed: &[&str]) -> Kwargs<'a> {
        let mut kw = Kwargs {
            args: Vec::new(),
            positional: false,
        };
        for (i, arg) in call.args.iter().enumerate() {
            let Some(key) = &arg.key else {
                kw.positional = true;
                let hint = match allowed.get(i) {
                    Some(name) => format!("write `{name} = {}`", sink.snippet(arg.value.span)),
                    None => format!("`{}` accepts {}", call.name, suggest::list(allowed)),
                };
                sink.push(
                    Diagnostic::error(
                        format!("arguments of `{}` must be named", call.name),
                        arg.span,
                    )
                    .with_label("positional argument")
                    .with_hint(hint),
                );
                continue;
            };
            if !allowed.contains(&key.node.as_str()) {
                let hint = match suggest::closest(&key.node, allowed) {
                    _ if allowed.is_empty() => format!("write a bare `{}`", call.name),
                    Some(c) => format!("did you mean `{c}`?"),
                    None => match allowed {
                        [only] => format!(
                            "the only argument of `{}` is `{only}`: write `{only} = {}`",
                            call.name,
                            sink.snippet(arg.value.span)
                        ),
                        _ => format!(
                            "the arguments of `{}` are {}",
                            call.name,
                            suggest::list_all(allowed)
                        ),
                    },
                };
                let has = if allowed.is_empty() {
                    "takes no arguments".to_string()
                } else {
                    format!("takes {}", suggest::list(allowed))
                };
                sink.push(
                    Diagnostic::error(
                        format!("`{}` has no argument `{}`", call.name, key.node),
                        key.span,
                    )
                    .with_label(format!("`{}` {has}", call.name))
                    .with_hint(hint),
                );
            } else if kw.get(&key.node).is_some() {
                sink.push(
                    Diagnostic::error(
                        format!("argument `{}` of `{}` is given twice", key.node, call.name),
                        key.span,
                    )
                    .with_label("given again here")
                    .with_hint("keep one of the two"),
                );
            } else {
                kw.args.push((&key.node, &arg.value));
            }
        }
        kw
    }

    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.args.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

/// A list of glob strings (`["layers.*.attn.q", "head"]`), each checked for syntax.
pub fn glob_list(sink: &mut Sink<'_>, v: &Value, what: &str) -> Option<Vec<Spanned<String>>> {
    let items = match &v.kind {
        ValueKind::List(items) => items,
        ValueKind::Str(s) => {
            let hint = format!("put it in brackets: `{what} = [\"{s}\"]`");
            mistyped(sink, v, what, "a list of glob strings", hint);
            return None;
        }
        _ => {
            let hint = format!("for example `{what} = [\"layers.*.attn.q\", \"layers.*.attn.v\"]`");
            mistyped(sink, v, what, "a list of glob strings", hint);
            return None;
        }
    };
    let mut globs = Vec::new();
    let mut ok = true;
    for item in items {
        match &item.kind {
            ValueKind::Str(s) => match glob::validate(s) {
                Ok(()) => globs.push(Spanned::new(s.clone(), item.span)),
                Err(m) => {
                    ok = false;
                    sink.push(
                        Diagnostic::error(format!("invalid glob in `{what}`: {m}"), item.span)
                            .with_label("invalid glob")
                            .with_hint(GLOB_SYNTAX),
                    );
                }
            },
            _ => {
                ok = false;
                let hint = format!("quote it: `\"{}\"`", sink.snippet(item.span));
                mistyped(sink, item, what, "a list of glob strings", hint);
            }
        }
    }
    ok.then_some(globs)
}

/// How globs are written, for hints.
pub const GLOB_SYNTAX: &str = "globs are dotted names where `*` matches any run of characters (dots included), e.g. `layers.*.attn.q` or `*.mlp.down`";
