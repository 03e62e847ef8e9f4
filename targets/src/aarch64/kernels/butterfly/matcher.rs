//! Recognizing a butterfly forward body: read its geometry off the descriptor and the loop
//! nest, rebuild the section with the lowering's own builder
//! (`lower::butterfly::rebuild_section`) for that geometry, and require statement-for-statement
//! equality. Only the tail loop's body (bias + fused epilogue) is not rebuilt: it is returned
//! as it is, and `epilogue.rs` translates exactly what it says or declines.

use crate::lower::butterfly::{Geo, SectionParams, SectionShape, rebuild_section};
use crate::lower::merge::Renumber;
use bfly_ir::kernel::{BinOp, Body, ButterflyDesc, Expr, Local, LoopKind, LoopVar, Stmt};
use bfly_ir::{DType, StrideOrder};

/// Prefix of the reason given for the other sections of a fused body (the twiddle pack
/// concatenated before the layer in training).
pub const NOT_THE_LAYER: &str = "not the layer's section:";

/// A recognized section.
#[derive(Clone, Debug)]
pub struct Matched {
    pub geo: Geo,
    pub params: SectionParams,
    pub shape: SectionShape,
    /// Loop vars of the row (parallel), group and stack loops (`None` when elided).
    pub row: LoopVar,
    pub group: Option<LoopVar>,
    pub stack: Option<LoopVar>,
    /// The tail loop (`vector for j in 0..count { body }`), when the section has one.
    pub tail: Option<Tail>,
    /// Integer `let`s on the path from the row loop to the tail loop, in order.
    pub lets: Vec<(Local, Expr)>,
}

#[derive(Clone, Debug)]
pub struct Tail {
    pub var: LoopVar,
    pub body: Vec<Stmt>,
}

/// Recognizes section `section` of `body` as the butterfly forward layer (alone, or
/// concatenated after other sections, e.g. the twiddle pack in training, with params and
/// ids renumbered); `Err` is the reason to decline.
pub fn recognize(body: &Body, desc: &ButterflyDesc, section: usize) -> Result<Matched, String> {
    if desc.layout != "pairs-in-lanes" {
        return Err(format!("layout `{}` has no microkernel", desc.layout));
    }
    let n = desc.n;
    if !n.is_power_of_two() || n < 2 || desc.stages != u64::from(n.trailing_zeros()) {
        return Err(format!("n = {n} with {} stages", desc.stages));
    }
    let Some(
        stmt @ Stmt::For {
            var: row,
            start: Expr::Int(0),
            end: rows,
            kind: LoopKind::Parallel,
            body: row_body,
        },
    ) = body.stmts.get(section)
    else {
        return Err(format!("{NOT_THE_LAYER} not `parallel for row in 0..rows`"));
    };
    let layer = copy_params(row_body).and_then(|(x, w)| Some((x, w, twiddle_param(row_body, w)?)));
    let Some((x, work, tw)) = layer else {
        return Err(format!(
            "{NOT_THE_LAYER} no copy into a work row followed by stages"
        ));
    };
    let n_in = first_vector_end(row_body).ok_or("no copy loop")?;
    let (group, stack, path_lets, last_loop) = walk_nest(row_body, desc)?;
    let renumber = Renumber {
        args: None,
        vars: row.0,
        locals: first_local(row_body).map_or(0, |l| l.0),
    };
    // With a tail (bias, epilogue or truncation) the stack block ends with it; without,
    // with the last stage (itself a vector loop). The rebuild decides which.
    for tail in [false, true] {
        let tail_loop = if tail { last_loop.clone() } else { None };
        if tail && tail_loop.is_none() || !tail && !desc.epilogue.is_empty() {
            continue;
        }
        let y = match &tail_loop {
            Some(Stmt::For { body, .. }) => match body.last() {
                Some(Stmt::Store { arg, .. }) => *arg,
                _ => continue,
            },
            _ => work,
        };
        let bias = match desc.epilogue.first() {
            Some(b) if b == "bias" => match tail_loop.as_ref().and_then(|t| bias_param(t, work)) {
                Some(b) => Some(b),
                None => continue,
            },
            _ => None,
        };
        let n_out = match &tail_loop {
            Some(Stmt::For { end, .. }) => match tail_count_n_out(end, n as i64, desc.stacks) {
                Some(v) => v,
                None => continue,
            },
            _ => (desc.stacks * n) as i64,
        };
        for p in [Some(x), Some(tw), Some(y), Some(work), bias]
            .into_iter()
            .flatten()
        {
            let param = body.params.get(p as usize).ok_or("param index")?;
            // The packed twiddles may be stored f16 (DESIGN §5): the rebuilt template
            // below takes every param's dtype from the body, so it is the f16 form then.
            let f16_twiddles = p == tw && param.dtype == DType::F16;
            if param.dtype != DType::F32 && !f16_twiddles {
                return Err(format!(
                    "param `{}` is {} (the microkernel reads and writes f32 only; the \
                     twiddles may be f32 or f16)",
                    param.name, param.dtype
                ));
            }
        }
        let params = SectionParams {
            x,
            tw,
            bias,
            y,
            work,
        };
        let shape = SectionShape {
            gi_n_in: desc.groups as i64 * n_in,
            gi_n_out: desc.groups as i64 * n_out,
            in_place: y == work,
            tail,
        };
        for stride in [StrideOrder::Increasing, StrideOrder::Decreasing] {
            let geo = Geo {
                n_in,
                n_out,
                n: n as i64,
                half: (n / 2) as i64,
                groups: desc.groups,
                stacks: desc.stacks,
                blocks: desc.blocks,
                stages: desc.stages,
                stride,
            };
            let mut want = rebuild_section(&body.params, &geo, &params, &shape, rows.clone());
            let Some(want) = want.stmts.pop() else {
                continue;
            };
            let want = renumber.stmt(&want);
            let Some(want) = with_tail_body(want, desc, &tail_loop) else {
                continue;
            };
            if want == *stmt {
                let tail = match tail_loop {
                    Some(Stmt::For { var, body, .. }) => Some(Tail { var, body }),
                    _ => None,
                };
                return Ok(Matched {
                    geo,
                    params,
                    shape,
                    row: *row,
                    group,
                    stack,
                    tail,
                    lets: path_lets,
                });
            }
        }
    }
    Err("the section is not the lowering's butterfly section for its geometry".into())
}

/// `(x, work)` of the first vector loop: `work[..] = x[..]`.
fn copy_params(stmts: &[Stmt]) -> Option<(u32, u32)> {
    for s in stmts {
        if let Stmt::For { kind, body, .. } = s {
            if *kind == LoopKind::Vector {
                return match body.as_slice() {
                    [
                        Stmt::Store {
                            arg,
                            value: Expr::Load { arg: x, .. },
                            ..
                        },
                    ] => Some((*x, *arg)),
                    _ => None,
                };
            }
            if let Some(r) = copy_params(body) {
                return Some(r);
            }
        }
    }
    None
}

/// The twiddle param: `t` in the first `work[p] = t[..]·a + t[..]·b`.
fn twiddle_param(stmts: &[Stmt], work: u32) -> Option<u32> {
    for s in stmts {
        match s {
            Stmt::For { body, .. } => {
                if let Some(t) = twiddle_param(body, work) {
                    return Some(t);
                }
            }
            Stmt::Store {
                arg,
                value: Expr::Bin(BinOp::Add, a, _),
                ..
            } if *arg == work => {
                if let Expr::Bin(BinOp::Mul, t, _) = &**a
                    && let Expr::Load { arg, .. } = &**t
                {
                    return Some(*arg);
                }
            }
            _ => {}
        }
    }
    None
}

/// The bias param: `b` in the tail's `work[..] + b[..]`.
fn bias_param(tail: &Stmt, work: u32) -> Option<u32> {
    let Stmt::For { body, .. } = tail else {
        return None;
    };
    body.iter().find_map(|s| {
        let (Stmt::Let { value, .. } | Stmt::Store { value, .. }) = s else {
            return None;
        };
        match value {
            Expr::Bin(BinOp::Add, a, b) => match (&**a, &**b) {
                (Expr::Load { arg: w, .. }, Expr::Load { arg: b, .. }) if *w == work => Some(*b),
                _ => None,
            },
            _ => None,
        }
    })
}

/// The first local defined in the section (the rebuilt section's `a0`).
fn first_local(stmts: &[Stmt]) -> Option<Local> {
    for s in stmts {
        match s {
            Stmt::Let { local, .. } => return Some(*local),
            Stmt::For { body, .. } => {
                if let Some(l) = first_local(body) {
                    return Some(l);
                }
            }
            _ => {}
        }
    }
    None
}

/// The end of the first `vector for _ in 0..c` (the copy of `x` into the work row).
fn first_vector_end(stmts: &[Stmt]) -> Option<i64> {
    for s in stmts {
        if let Stmt::For {
            kind,
            start,
            end,
            body,
            ..
        } = s
        {
            if *kind == LoopKind::Vector {
                return match (start, end) {
                    (Expr::Int(0), Expr::Int(c)) => Some(*c),
                    _ => None,
                };
            }
            if let Some(c) = first_vector_end(body) {
                return Some(c);
            }
        }
    }
    None
}

type Nest = (
    Option<LoopVar>,
    Option<LoopVar>,
    Vec<(Local, Expr)>,
    Option<Stmt>,
);

/// Descends the group and stack loops (present when their count is > 1), collecting the
/// integer `let`s on the way; returns the vars and the last statement of the stack block
/// when it is a vector loop (the tail).
fn walk_nest(row_body: &[Stmt], desc: &ButterflyDesc) -> Result<Nest, String> {
    let mut lets = Vec::new();
    let mut block = row_body;
    let mut vars = [None, None];
    for (k, count) in [desc.groups, desc.stacks].into_iter().enumerate() {
        if count == 1 {
            continue;
        }
        collect_lets(block, &mut lets);
        match block {
            [
                ..,
                Stmt::For {
                    var,
                    start: Expr::Int(0),
                    end: Expr::Int(c),
                    kind: LoopKind::Serial,
                    body,
                },
            ] if *c == count as i64 => {
                vars[k] = Some(*var);
                block = body;
            }
            _ => return Err("group/stack loops are not the lowering's".into()),
        }
    }
    collect_lets(block, &mut lets);
    let tail = match block.last() {
        Some(
            s @ Stmt::For {
                kind: LoopKind::Vector,
                start: Expr::Int(0),
                ..
            },
        ) => Some(s.clone()),
        _ => None,
    };
    Ok((vars[0], vars[1], lets, tail))
}

fn collect_lets(block: &[Stmt], lets: &mut Vec<(Local, Expr)>) {
    for s in block {
        if let Stmt::Let { local, value } = s {
            lets.push((*local, value.clone()));
        }
    }
}

/// `n_out` from the tail count `min(n, n_out − s·n)` (folded to `n_out` with one stack).
fn tail_count_n_out(end: &Expr, n: i64, stacks: u64) -> Option<i64> {
    match end {
        Expr::Int(c) if stacks == 1 => Some(*c),
        Expr::Bin(BinOp::Min, a, b) => match (&**a, &**b) {
            (Expr::Int(m), Expr::Bin(BinOp::Sub, no, _)) if *m == n => match &**no {
                Expr::Int(v) => Some(*v),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// The rebuilt section with its tail loop's body replaced by the body's own (`None` when
/// the rebuilt and actual tails do not have the same place and header).
fn with_tail_body(mut want: Stmt, desc: &ButterflyDesc, tail: &Option<Stmt>) -> Option<Stmt> {
    let Some(Stmt::For {
        var,
        start,
        end,
        kind,
        body,
    }) = tail
    else {
        return Some(want);
    };
    let slot = tail_slot(&mut want, desc)?;
    match slot {
        Stmt::For {
            var: v,
            start: s,
            end: e,
            kind: k,
            body: b,
        } if v == var && s == start && e == end && k == kind => {
            *b = body.clone();
            Some(want)
        }
        _ => None,
    }
}

fn tail_slot<'a>(section: &'a mut Stmt, desc: &ButterflyDesc) -> Option<&'a mut Stmt> {
    let Stmt::For { body, .. } = section else {
        return None;
    };
    let mut block = body;
    for count in [desc.groups, desc.stacks] {
        if count == 1 {
            continue;
        }
        match block.last_mut() {
            Some(Stmt::For { body, .. }) => block = body,
            _ => return None,
        }
    }
    block.last_mut()
}
