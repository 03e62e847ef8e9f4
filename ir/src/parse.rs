//! Graph IR text → `Graph`: resolves names, rebuilds typed ops from attributes, then runs the
//! verifier and maps its errors back to the statement that caused them.
//!
//! A `fused @name { ... }` block puts its statements into one fresh region; the name only
//! identifies the block within the file (it must be unique) and is not kept: the printer
//! renumbers regions in order of appearance.
//!
//! `radix = [...]` among a statement's attributes is the node's stage grouping
//! (`Node::radix`), not an op attribute: it is taken out before the op is rebuilt and checked
//! like the verifier does (only on a butterfly, covering its stages exactly).

use crate::graph::{Graph, Loc, NodeId, Output, Value};
use crate::op::{AttrValue, Init, Op, Param};
use crate::print::RADIX_ATTR;
use crate::types::{DType, Dim, Type};
use crate::verify::{check_radix, verify};
use bfly_grammar::ir_ast::{self as ast, IrGraph, Operand};
use bfly_grammar::suggest::hint;
use bfly_grammar::{Diagnostic, SourceFile, Span};
use std::collections::HashMap;

/// Parses and verifies a graph. Returns every error found, each pointing at its span.
pub fn parse_graph(file: &SourceFile) -> Result<Graph, Vec<Diagnostic>> {
    let ast = bfly_grammar::parse_ir(file).map_err(|d| vec![d])?;
    lower(&ast, file)
}

fn lower_type(t: &ast::TypeAst) -> Result<Type, Diagnostic> {
    let dtype = DType::from_name(&t.dtype.node).ok_or_else(|| {
        let names: Vec<&str> = DType::ALL.iter().map(|d| d.name()).collect();
        Diagnostic::error(format!("unknown dtype `{}`", t.dtype.node), t.dtype.span)
            .with_label("not a dtype")
            .with_hint(hint(&t.dtype.node, &names))
    })?;
    Ok(Type::new(
        dtype,
        t.dims.iter().map(|d| match &d.node {
            ast::DimAst::Const(c) => Dim::Const(*c),
            ast::DimAst::Sym(s) => Dim::Sym(s.clone()),
        }),
    ))
}

fn lower_init(init: &Option<ast::InitAst>) -> Result<Init, Diagnostic> {
    let Some(init) = init else {
        return Ok(Init::External);
    };
    let args: Vec<f64> = init.args.iter().map(|a| a.node).collect();
    let arity = |n: usize, usage: &str| {
        if args.len() == n {
            Ok(())
        } else {
            Err(Diagnostic::error(
                format!(
                    "`{}` takes {n} argument(s), found {}",
                    init.name.node,
                    args.len()
                ),
                init.span,
            )
            .with_hint(format!("write `init {usage}`")))
        }
    };
    Ok(match init.name.node.as_str() {
        "zeros" => arity(0, "zeros").map(|()| Init::Zeros)?,
        "ones" => arity(0, "ones").map(|()| Init::Ones)?,
        "const" => arity(1, "const(VALUE)").map(|()| Init::Const(args[0]))?,
        "normal" => arity(1, "normal(STD)").map(|()| Init::Normal { std: args[0] })?,
        "uniform" => arity(2, "uniform(LO, HI)").map(|()| Init::Uniform {
            lo: args[0],
            hi: args[1],
        })?,
        other => {
            return Err(Diagnostic::error(
                format!("unknown initializer `{other}`"),
                init.name.span,
            )
            .with_hint(hint(
                other,
                &["zeros", "ones", "const", "normal", "uniform"],
            )));
        }
    })
}

fn lower_attr(v: &ast::AttrValue) -> AttrValue {
    match v {
        ast::AttrValue::Int(i) => AttrValue::Int(*i),
        ast::AttrValue::Float(f) => AttrValue::Float(*f),
        ast::AttrValue::Bool(b) => AttrValue::Bool(*b),
        ast::AttrValue::Ident(s) => AttrValue::Ident(s.clone()),
        ast::AttrValue::Str(s) => AttrValue::Str(s.clone()),
        ast::AttrValue::List(items) => AttrValue::List(items.iter().map(lower_attr).collect()),
    }
}

/// Removes the `radix = [...]` attribute (a butterfly's stage grouping) from `attrs`.
fn take_radix(attrs: &mut Vec<(String, AttrValue)>) -> Result<Option<Vec<u32>>, String> {
    let Some(at) = attrs.iter().position(|(k, _)| k == RADIX_ATTR) else {
        return Ok(None);
    };
    let (_, value) = attrs.remove(at);
    let bad = || format!("`{RADIX_ATTR}` must be a list of radices, e.g. `[4, 4, 2]`");
    let AttrValue::List(items) = value else {
        return Err(bad());
    };
    items
        .iter()
        .map(|v| match v {
            AttrValue::Int(i) => u32::try_from(*i).map_err(|_| bad()),
            _ => Err(bad()),
        })
        .collect::<Result<Vec<u32>, String>>()
        .map(Some)
}

fn lower(ast: &IrGraph, file: &SourceFile) -> Result<Graph, Vec<Diagnostic>> {
    let mut g = Graph::new(ast.name.node.clone());
    let mut errors = Vec::new();
    for b in &ast.bounds {
        if g.bound(&b.name.node).is_some() {
            errors.push(Diagnostic::error(
                format!("symbol `{}` is bounded twice", b.name.node),
                b.name.span,
            ));
        }
        g.set_bound(&b.name.node, b.max.node);
    }
    let mut values: HashMap<&str, Value> = HashMap::new();
    let mut params: HashMap<&str, Value> = HashMap::new();
    let mut spans: HashMap<NodeId, Span> = HashMap::new();
    for input in &ast.inputs {
        if input.name.node.starts_with(|c: char| c.is_ascii_digit()) {
            errors.push(
                Diagnostic::error(
                    format!("input `%{}` needs a name, not a number", input.name.node),
                    input.name.span,
                )
                .with_hint("numbers are reserved for op results; call it e.g. `%tokens`"),
            );
            continue;
        }
        match lower_type(&input.ty) {
            Ok(ty) => {
                let v = g.add_input(&input.name.node, ty);
                spans.insert(v.node, input.name.span);
                if values.insert(&input.name.node, v).is_some() {
                    errors.push(Diagnostic::error(
                        format!("input `%{}` is declared twice", input.name.node),
                        input.name.span,
                    ));
                }
            }
            Err(d) => errors.push(d),
        }
    }
    for p in &ast.params {
        let (ty, init) = match (lower_type(&p.ty), lower_init(&p.init)) {
            (Ok(t), Ok(i)) => (t, i),
            (t, i) => {
                errors.extend(t.err());
                errors.extend(i.err());
                continue;
            }
        };
        if params.contains_key(p.name.node.as_str()) {
            errors.push(
                Diagnostic::error(
                    format!("param `@{}` is declared twice", p.name.node),
                    p.name.span,
                )
                .with_hint("rename one of them; parameter names are unique"),
            );
            continue;
        }
        let v = g.add_param(
            Param {
                name: p.name.node.clone(),
                init,
                trainable: p.trainable,
            },
            ty,
        );
        spans.insert(v.node, p.span);
        params.insert(&p.name.node, v);
    }
    let mut region_of = vec![None; ast.stmts.len()];
    let mut region_names: HashMap<&str, Span> = HashMap::new();
    for r in &ast.regions {
        if let Some(first) = region_names.get(r.name.node.as_str()) {
            let (line, _) = file.line_col(first.start);
            errors.push(
                Diagnostic::error(
                    format!("fused region `@{}` is declared twice", r.name.node),
                    r.name.span,
                )
                .with_label(format!("already declared on line {line}"))
                .with_hint(
                    "a region is one contiguous block; rename this one or merge the two blocks",
                ),
            );
            continue;
        }
        region_names.insert(&r.name.node, r.name.span);
        let id = g.new_region();
        for slot in region_of.get_mut(r.stmts.clone()).into_iter().flatten() {
            *slot = Some(id);
        }
    }
    for (i, stmt) in ast.stmts.iter().enumerate() {
        let mut operands = Vec::new();
        let mut ok = true;
        for o in &stmt.operands {
            let found = match o {
                Operand::Value(n) => values.get(n.node.as_str()).copied().ok_or_else(|| {
                    Diagnostic::error(format!("use of undefined value `%{}`", n.node), n.span)
                        .with_label("not defined above")
                        .with_hint(
                            "values must be defined (or be graph inputs) before they are used",
                        )
                }),
                Operand::Param(n) => params.get(n.node.as_str()).copied().ok_or_else(|| {
                    let names: Vec<&str> = params.keys().copied().collect();
                    Diagnostic::error(format!("unknown param `@{}`", n.node), n.span)
                        .with_hint(hint(&n.node, &names))
                }),
            };
            match found {
                Ok(v) => operands.push(v),
                Err(d) => {
                    errors.push(d);
                    ok = false;
                }
            }
        }
        let mut attrs: Vec<(String, AttrValue)> = stmt
            .attrs
            .iter()
            .map(|a| (a.key.node.clone(), lower_attr(&a.value)))
            .collect();
        // The stage grouping is the node's, not the op's (see `Node::radix`).
        let radix = match take_radix(&mut attrs) {
            Ok(r) => r,
            Err(m) => {
                errors.push(Diagnostic::error(m, stmt.span));
                continue;
            }
        };
        let op = match Op::from_text(&stmt.op.node, &attrs) {
            Ok(op) => op,
            Err(m) => {
                let mut d = Diagnostic::error(m, stmt.op.span);
                if !Op::NAMES.contains(&stmt.op.node.as_str()) {
                    d = d.with_hint(hint(&stmt.op.node, Op::NAMES));
                }
                errors.push(d);
                continue;
            }
        };
        if let Some(r) = &radix
            && let Err(m) = check_radix(&op, r)
        {
            errors.push(Diagnostic::error(m, stmt.span));
            continue;
        }
        let types: Result<Vec<Type>, _> = stmt.types.iter().map(lower_type).collect();
        let types = match types {
            Ok(t) => t,
            Err(d) => {
                errors.push(d);
                continue;
            }
        };
        if types.len() != stmt.results.len() {
            errors.push(
                Diagnostic::error(
                    format!(
                        "{} result name(s) but {} type(s)",
                        stmt.results.len(),
                        types.len()
                    ),
                    stmt.span,
                )
                .with_hint("give one type after `:` per result, in order"),
            );
            continue;
        }
        if !ok {
            continue;
        }
        let loc = stmt.loc.map(|(line, col)| Loc { line, col });
        let results = g.add_op_typed(op, &operands, types, loc);
        if let Some(v) = results.first() {
            spans.insert(v.node, stmt.span);
            g.set_region(v.node, region_of.get(i).copied().flatten());
            g.set_radix(v.node, radix);
        }
        for (name, v) in stmt.results.iter().zip(results) {
            if values.insert(&name.node, v).is_some() {
                errors.push(
                    Diagnostic::error(
                        format!("value `%{}` is defined twice", name.node),
                        name.span,
                    )
                    .with_hint("every value is assigned exactly once (SSA)"),
                );
            }
        }
    }
    if ast.ret.len() != ast.outputs.len() {
        errors.push(Diagnostic::error(
            format!(
                "the signature declares {} output(s) but `return` gives {}",
                ast.outputs.len(),
                ast.ret.len()
            ),
            ast.ret.first().map_or(ast.span, |r| r.span),
        ));
    }
    let mut outputs = Vec::new();
    for (decl, r) in ast.outputs.iter().zip(&ast.ret) {
        let Some(&v) = values.get(r.node.as_str()) else {
            errors.push(Diagnostic::error(
                format!("use of undefined value `%{}`", r.node),
                r.span,
            ));
            continue;
        };
        if let Ok(ty) = lower_type(&decl.ty)
            && &ty != g.value_type(v)
        {
            errors.push(Diagnostic::error(
                format!(
                    "output `{}{}` is declared {ty} but `%{}` is {}",
                    if decl.param { '@' } else { '%' },
                    decl.name.node,
                    r.node,
                    g.value_type(v)
                ),
                r.span,
            ));
        }
        outputs.push(Output {
            name: decl.name.node.clone(),
            value: v,
            param: decl.param,
        });
    }
    g.set_outputs(outputs);
    // Verify whatever was built, so a mistyped statement is reported at its own line even when
    // a later error (e.g. an output type) follows from it; report everything in source order.
    if let Err(errs) = verify(&g) {
        errors.extend(errs.into_iter().map(|e| {
            let span = e
                .node
                .and_then(|n| spans.get(&n).copied())
                .unwrap_or(ast.span);
            Diagnostic::error(e.message, span)
        }));
    }
    if errors.is_empty() {
        Ok(g)
    } else {
        errors.sort_by_key(|d| (d.span.start, d.span.end));
        Err(errors)
    }
}
