//! Shapes of a `vector for` body's expressions, and whether the loop can be vectorized.

use super::{Plan, Reduction, Shape};
use crate::cranelift::lower::Lower;
use crate::cranelift::scan;
use bfly_ir::DType;
use bfly_ir::kernel::{BinOp, Expr, Local, LoopVar, Stmt, UnOp};
use cranelift_codegen::ir::types;
use std::collections::BTreeMap;

pub(super) fn analyze(lw: &Lower, var: LoopVar, body: &[Stmt]) -> Result<Plan, String> {
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
                        Shape::Affine(1) => {}
                        Shape::Affine(0) => {
                            return Err("it stores to a loop-invariant index".into());
                        }
                        Shape::Affine(c) => return Err(format!("it stores with stride {c}")),
                        _ => return Err(format!("a store index is not affine in {var}")),
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
        (x, y) if x == y && x != Shape::Mask && x != Shape::IntLanes => Ok(x),
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
        Ok(match e {
            Expr::F32(_) => Shape::UniF,
            Expr::Int(_) | Expr::Sym(_) => Shape::Affine(0),
            Expr::Var(v) => Shape::Affine(i64::from(*v == self.var)),
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
                        Shape::Affine(0)
                    }
                } else {
                    return Err(format!("{l} is read before its let"));
                }
            }
            Expr::Load { arg, index } => {
                let Shape::Affine(c) = self.shape(index)? else {
                    let name = self.names.get(*arg as usize).map_or("?", |n| n.as_str());
                    return Err(format!(
                        "the index into {name} is not affine in {}",
                        self.var
                    ));
                };
                match (self.dtype(*arg)?.is_float(), c) {
                    (true, 0) => Shape::UniF,
                    (true, _) => Shape::VecF,
                    (false, 0) => Shape::Affine(0),
                    (false, _) => Shape::IntLanes,
                }
            }
            Expr::Bin(op, a, b) => self.bin_shape(*op, a, b)?,
            Expr::Un(op, a) => self.un_shape(*op, a)?,
            Expr::Select { cond, then, els } => {
                let (c, t, f) = (self.shape(cond)?, self.shape(then)?, self.shape(els)?);
                match (c, t, f) {
                    (Shape::Affine(0), Shape::Affine(x), Shape::Affine(y)) if x == y => t,
                    (Shape::Affine(0), Shape::UniF, Shape::UniF) => Shape::UniF,
                    (Shape::Affine(0) | Shape::Mask, x, y) if x.is_float() && y.is_float() => {
                        Shape::VecF
                    }
                    (Shape::Affine(0) | Shape::Mask, _, _) => {
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
                BinOp::Lt | BinOp::Le | BinOp::Eq if uniform => Shape::Affine(0),
                BinOp::Lt | BinOp::Le | BinOp::Eq => Shape::Mask,
                _ if uniform => Shape::UniF,
                _ => Shape::VecF,
            });
        }
        let (Shape::Affine(ca), Shape::Affine(cb)) = (sa, sb) else {
            return Err(format!("it computes `{}` on per-lane ints", op.name()));
        };
        let overflow = || "an index stride overflows".to_string();
        Ok(match op {
            BinOp::Add => Shape::Affine(ca.checked_add(cb).ok_or_else(overflow)?),
            BinOp::Sub => Shape::Affine(ca.checked_sub(cb).ok_or_else(overflow)?),
            BinOp::Mul => match (ca, cb) {
                (0, 0) => Shape::Affine(0),
                (c, 0) | (0, c) => {
                    let k = scan::const_int(if ca == 0 { a } else { b })
                        .ok_or_else(|| format!("it multiplies {} by a runtime value", self.var))?;
                    Shape::Affine(c.checked_mul(k).ok_or_else(overflow)?)
                }
                _ => return Err(format!("it multiplies {} by itself", self.var)),
            },
            _ if ca == 0 && cb == 0 => Shape::Affine(0),
            _ => {
                return Err(format!(
                    "it computes `{}` of {} per lane",
                    op.name(),
                    self.var
                ));
            }
        })
    }

    fn un_shape(&self, op: UnOp, a: &Expr) -> Result<Shape, String> {
        let s = self.shape(a)?;
        Ok(match (op, s) {
            (UnOp::ToF32, Shape::Affine(0)) => Shape::UniF,
            (UnOp::ToF32, Shape::Affine(_) | Shape::IntLanes | Shape::Mask) => Shape::VecF,
            (UnOp::ToInt, Shape::UniF) => Shape::Affine(0),
            (UnOp::ToInt, Shape::VecF) => return Err("it converts f32 to int per lane".into()),
            (UnOp::Neg, Shape::Affine(c)) => Shape::Affine(c.checked_neg().ok_or("overflow")?),
            (UnOp::Abs, Shape::Affine(0)) => Shape::Affine(0),
            (_, Shape::UniF | Shape::VecF) if !matches!(op, UnOp::ToF32) => s,
            _ => return Err(format!("it computes {}() of a per-lane int", op.name())),
        })
    }
}
