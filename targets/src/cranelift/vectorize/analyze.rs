//! Shapes of a `vector for` body's expressions, and whether the loop can be vectorized.

use super::ints::Ints;
use super::{Plan, Reduction, Shape};
use crate::cranelift::lower::Lower;
use crate::cranelift::scan;
use bfly_ir::DType;
use bfly_ir::kernel::{BinOp, Expr, Local, LoopVar, Stmt, UnOp};
use cranelift_codegen::ir::types;
use std::collections::BTreeMap;

/// Largest per-lane step of an int comparison done in 32-bit lanes (`emit::int_compare`).
const MAX_COMPARE_STEP: i64 = 1 << 26;

pub(super) fn analyze(
    lw: &Lower,
    var: LoopVar,
    start_const: Option<i64>,
    body: &[Stmt],
) -> Result<Plan, String> {
    let mut inner_set = Vec::new();
    for s in body {
        match s {
            Stmt::For { .. } => return Err("it contains a loop".into()),
            Stmt::If { .. } => return Err("it contains an if".into()),
            Stmt::Let { local, .. } => inner_set.push(*local),
            Stmt::Assign { .. } | Stmt::Store { .. } => {}
        }
    }
    let loop_reads = scan::local_reads(body);
    for l in &inner_set {
        let here = loop_reads.get(l).copied().unwrap_or(0);
        if lw.reads.get(l).copied().unwrap_or(0) > here {
            return Err(format!("{l} is read after the loop"));
        }
    }
    let mut plan = Plan {
        var,
        var_ints: Ints::loop_var(start_const),
        dtypes: lw.body.params.iter().map(|p| p.dtype).collect(),
        names: lw.body.params.iter().map(|p| p.name.clone()).collect(),
        reductions: Vec::new(),
        inner: BTreeMap::new(),
        outer: BTreeMap::new(),
    };
    for l in loop_reads.keys() {
        if !inner_set.contains(l)
            && let Some((_, ty)) = lw.local(*l)
        {
            plan.outer.insert(*l, ty);
        }
    }
    for s in body {
        if let Stmt::Assign { local, value } = s
            && !inner_set.contains(local)
        {
            let (op, _) = reduction_of(*local, value).ok_or_else(|| {
                format!("it assigns {local}, defined outside, other than by a + or max reduction")
            })?;
            if plan.outer.get(local) != Some(&types::F32) {
                return Err(format!("{local} is not an f32 accumulator"));
            }
            if plan.reductions.iter().any(|r| r.local == *local) {
                return Err(format!("it reduces into {local} twice"));
            }
            plan.reductions.push(Reduction { local: *local, op });
        }
    }
    // Locals can widen (uniform → per lane) after a later assignment: iterate to a fixpoint.
    loop {
        let mut changed = false;
        for s in body {
            match s {
                Stmt::Let { local, value } | Stmt::Assign { local, value }
                    if inner_set.contains(local) =>
                {
                    let sh = plan.shape(value)?;
                    let joined = join(plan.inner.get(local).copied().unwrap_or(sh), sh, *local)?;
                    if plan.inner.get(local) != Some(&joined) {
                        plan.inner.insert(*local, joined);
                        changed = true;
                    }
                }
                Stmt::Assign { local, value } => {
                    let (_, e) = reduction_of(*local, value).ok_or("not a reduction")?;
                    if !plan.shape(e)?.is_float() {
                        return Err(format!("the reduction into {local} is not f32"));
                    }
                }
                Stmt::Store { arg, index, value } => {
                    match plan.shape(index)? {
                        Shape::Int(x) if x.is_uniform() => {
                            return Err("it stores to a loop-invariant index".into());
                        }
                        Shape::Int(_) => {}
                        _ => return Err(format!("a store index is not known per lane of {var}")),
                    }
                    if !plan.dtype(*arg)?.is_float() {
                        return Err("it stores ints per lane".into());
                    }
                    if !plan.shape(value)?.is_float() {
                        return Err("it stores a non-f32 value".into());
                    }
                }
                _ => {}
            }
        }
        if !changed {
            break;
        }
    }
    Ok(plan)
}

/// `acc = acc op e` / `acc = e op acc` with op ∈ {+, max, min} and `e` free of `acc`.
pub(super) fn reduction_of(acc: Local, value: &Expr) -> Option<(BinOp, &Expr)> {
    let Expr::Bin(op @ (BinOp::Add | BinOp::Max | BinOp::Min), a, b) = value else {
        return None;
    };
    let me = Expr::Local(acc);
    if **a == me && !scan::mentions_local(b, acc) {
        Some((*op, b))
    } else if **b == me && !scan::mentions_local(a, acc) {
        Some((*op, a))
    } else {
        None
    }
}

fn join(a: Shape, b: Shape, l: Local) -> Result<Shape, String> {
    match (a, b) {
        (Shape::Int(x), Shape::Int(y)) => x
            .join(y)
            .map(Shape::Int)
            .ok_or_else(|| format!("{l} holds different ints per lane")),
        (x, y) if x == y && x.is_float() => Ok(x),
        (Shape::UniF | Shape::VecF, Shape::UniF | Shape::VecF) => Ok(Shape::VecF),
        _ => Err(format!("{l} holds a per-lane int")),
    }
}

impl Plan {
    fn dtype(&self, arg: u32) -> Result<DType, String> {
        self.dtypes
            .get(arg as usize)
            .copied()
            .ok_or_else(|| format!("param {arg} does not exist"))
    }

    fn is_acc(&self, l: Local) -> bool {
        self.reductions.iter().any(|r| r.local == l)
    }

    pub(super) fn shape(&self, e: &Expr) -> Result<Shape, String> {
        let uniform = Shape::Int(Ints::UNKNOWN);
        Ok(match e {
            Expr::F32(_) => Shape::UniF,
            Expr::Int(k) => Shape::Int(Ints::exact(*k)),
            Expr::Sym(_) => uniform,
            Expr::Var(v) if *v == self.var => Shape::Int(self.var_ints),
            Expr::Var(_) => uniform,
            Expr::Local(l) => {
                if self.is_acc(*l) {
                    return Err(format!(
                        "it reads the accumulator {l} outside its reduction"
                    ));
                }
                if let Some(&s) = self.inner.get(l) {
                    s
                } else if let Some(&ty) = self.outer.get(l) {
                    if ty == types::F32 {
                        Shape::UniF
                    } else {
                        uniform
                    }
                } else {
                    return Err(format!("{l} is read before its let"));
                }
            }
            Expr::Load { arg, index } => {
                let Shape::Int(x) = self.shape(index)? else {
                    let name = self.names.get(*arg as usize).map_or("?", |n| n.as_str());
                    return Err(format!(
                        "the index into {name} is not known per lane of {}",
                        self.var
                    ));
                };
                match (self.dtype(*arg)?.is_float(), x.is_uniform()) {
                    (true, true) => Shape::UniF,
                    (true, false) => Shape::VecF,
                    (false, true) => uniform,
                    (false, false) => Shape::IntLanes,
                }
            }
            Expr::Bin(op, a, b) => self.bin_shape(*op, a, b)?,
            Expr::Un(op, a) => self.un_shape(*op, a)?,
            Expr::Select { cond, then, els } => {
                let (c, t, f) = (self.shape(cond)?, self.shape(then)?, self.shape(els)?);
                let uniform_cond = matches!(c, Shape::Int(x) if x.is_uniform());
                match (t, f) {
                    (Shape::Int(x), Shape::Int(y)) if uniform_cond => x
                        .join(y)
                        .map(Shape::Int)
                        .ok_or("a select picks ints that differ per lane")?,
                    (Shape::UniF, Shape::UniF) if uniform_cond => Shape::UniF,
                    (x, y)
                        if x.is_float() && y.is_float() && (uniform_cond || c == Shape::Mask) =>
                    {
                        Shape::VecF
                    }
                    _ if uniform_cond || c == Shape::Mask => {
                        return Err("a select picks ints per lane".into());
                    }
                    _ => return Err("a select has a per-lane int condition".into()),
                }
            }
        })
    }

    fn bin_shape(&self, op: BinOp, a: &Expr, b: &Expr) -> Result<Shape, String> {
        let (sa, sb) = (self.shape(a)?, self.shape(b)?);
        if sa.is_float() && sb.is_float() {
            let uniform = sa == Shape::UniF && sb == Shape::UniF;
            return Ok(match op {
                BinOp::Rem => return Err("`%` of floats".into()),
                BinOp::Lt | BinOp::Le | BinOp::Eq if uniform => Shape::Int(Ints::UNKNOWN),
                BinOp::Lt | BinOp::Le | BinOp::Eq => Shape::Mask,
                _ if uniform => Shape::UniF,
                _ => Shape::VecF,
            });
        }
        let (Shape::Int(x), Shape::Int(y)) = (sa, sb) else {
            return Err(format!("it computes `{}` on per-lane ints", op.name()));
        };
        let unknown = || {
            format!(
                "it computes `{}` of {} that differs per lane in ways not known at compile time",
                op.name(),
                self.var
            )
        };
        let both_uniform = x.is_uniform() && y.is_uniform();
        let ints = match op {
            BinOp::Add => x.add(y),
            BinOp::Sub => y.neg().and_then(|ny| x.add(ny)),
            BinOp::Mul => match (x.constant(), y.constant()) {
                (Some(k), _) => y.scale(k),
                (_, Some(k)) => x.scale(k),
                _ if both_uniform => Some(Ints::UNKNOWN),
                _ => return Err(format!("it multiplies {} by a runtime value", self.var)),
            },
            BinOp::Div | BinOp::Rem => match y.constant() {
                Some(d) => x.div(d, op == BinOp::Rem),
                None if both_uniform => Some(Ints::UNKNOWN),
                None => None,
            },
            BinOp::Min | BinOp::Max if both_uniform => Some(Ints::UNKNOWN),
            BinOp::Min | BinOp::Max => None,
            BinOp::Lt | BinOp::Le | BinOp::Eq if both_uniform => Some(Ints::UNKNOWN),
            // Lane l compares (a - b)₀ + (rel_a - rel_b)[l] with 0 (`emit::int_compare`).
            BinOp::Lt | BinOp::Le | BinOp::Eq => {
                let steps = y.neg().and_then(|ny| x.add(ny)).ok_or_else(unknown)?;
                if steps.rel.iter().all(|s| s.abs() <= MAX_COMPARE_STEP) {
                    return Ok(Shape::Mask);
                }
                None
            }
        };
        ints.map(Shape::Int).ok_or_else(unknown)
    }

    fn un_shape(&self, op: UnOp, a: &Expr) -> Result<Shape, String> {
        let s = self.shape(a)?;
        Ok(match (op, s) {
            (UnOp::ToF32, Shape::Int(x)) if x.is_uniform() => Shape::UniF,
            (UnOp::ToF32, Shape::Int(_) | Shape::IntLanes | Shape::Mask) => Shape::VecF,
            (UnOp::ToInt, Shape::UniF) => Shape::Int(Ints::UNKNOWN),
            (UnOp::ToInt, Shape::VecF) => return Err("it converts f32 to int per lane".into()),
            (UnOp::Neg, Shape::Int(x)) => Shape::Int(x.neg().ok_or("overflow")?),
            (UnOp::Abs, Shape::Int(x)) if x.is_uniform() => Shape::Int(Ints::UNKNOWN),
            (_, Shape::UniF | Shape::VecF) if !matches!(op, UnOp::ToF32) => s,
            _ => return Err(format!("it computes {}() of a per-lane int", op.name())),
        })
    }
}
