//! AST of the model spec language, and a readable tree dump of it.

use std::fmt::Write;

use crate::span::{Span, Spanned};

/// A whole spec file: its sections in source order.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecFile {
    pub sections: Vec<Section>,
    pub span: Span,
}

/// `kind name? { items }`, e.g. `model tiny_dib { ... }` or `lora { ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Section {
    pub kind: Spanned<String>,
    pub name: Option<Spanned<String>>,
    pub items: Vec<Item>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// `key = value`
    Assign {
        key: Spanned<String>,
        value: Value,
        span: Span,
    },
    /// `override "glob" = value`; `pattern` is the decoded string, its span includes the quotes.
    Override {
        pattern: Spanned<String>,
        value: Value,
        span: Span,
    },
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Assign { span, .. } | Item::Override { span, .. } => *span,
        }
    }

    pub fn value(&self) -> &Value {
        match self {
            Item::Assign { value, .. } | Item::Override { value, .. } => value,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    Int(i64),
    Float(f64),
    Bool(bool),
    Ident(String),
    /// Decoded string contents (escapes resolved).
    Str(String),
    List(Vec<Value>),
    /// `name(args)`
    Call {
        name: Spanned<String>,
        args: Vec<Arg>,
    },
}

impl ValueKind {
    /// What kind of value this is, for error messages ("expected an integer, found a float").
    pub fn describe(&self) -> &'static str {
        match self {
            ValueKind::Int(_) => "integer",
            ValueKind::Float(_) => "float",
            ValueKind::Bool(_) => "boolean",
            ValueKind::Ident(_) => "identifier",
            ValueKind::Str(_) => "string",
            ValueKind::List(_) => "list",
            ValueKind::Call { .. } => "call",
        }
    }
}

/// A call argument: `key = value` or a positional `value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub key: Option<Spanned<String>>,
    pub value: Value,
    pub span: Span,
}

/// An indented tree dump, one node per line, with byte spans `[start..end]`.
pub fn dump_spec_ast(file: &SpecFile) -> String {
    let mut out = String::new();
    line(&mut out, 0, "SpecFile", file.span);
    for s in &file.sections {
        let name = s
            .name
            .as_ref()
            .map(|n| format!(" {}", n.node))
            .unwrap_or_default();
        line(
            &mut out,
            1,
            &format!("Section {}{name}", s.kind.node),
            s.span,
        );
        for item in &s.items {
            match item {
                Item::Assign { key, value, span } => {
                    line(&mut out, 2, &format!("Assign {}", key.node), *span);
                    dump_value(&mut out, 3, value);
                }
                Item::Override {
                    pattern,
                    value,
                    span,
                } => {
                    line(&mut out, 2, &format!("Override {:?}", pattern.node), *span);
                    dump_value(&mut out, 3, value);
                }
            }
        }
    }
    out
}

fn line(out: &mut String, depth: usize, text: &str, span: Span) {
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "{:indent$}{text} [{}..{}]",
        "",
        span.start,
        span.end,
        indent = depth * 2
    );
}

fn dump_value(out: &mut String, depth: usize, v: &Value) {
    match &v.kind {
        ValueKind::Int(i) => line(out, depth, &format!("Int {i}"), v.span),
        ValueKind::Float(f) => line(out, depth, &format!("Float {f:?}"), v.span),
        ValueKind::Bool(b) => line(out, depth, &format!("Bool {b}"), v.span),
        ValueKind::Ident(s) => line(out, depth, &format!("Ident {s}"), v.span),
        ValueKind::Str(s) => line(out, depth, &format!("Str {s:?}"), v.span),
        ValueKind::List(items) => {
            line(out, depth, "List", v.span);
            for item in items {
                dump_value(out, depth + 1, item);
            }
        }
        ValueKind::Call { name, args } => {
            line(out, depth, &format!("Call {}", name.node), v.span);
            for arg in args {
                match &arg.key {
                    Some(k) => line(out, depth + 1, &format!("Arg {}", k.node), arg.span),
                    None => line(out, depth + 1, "Arg", arg.span),
                }
                dump_value(out, depth + 2, &arg.value);
            }
        }
    }
}
