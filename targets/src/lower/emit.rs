//! Building one kernel of a lowering: params bound to [`ArgRef`]s as they are declared, loop
//! helpers, and a finishing pass that folds integer constants and derives each param's access
//! from what the body does with it (so no lowering can declare a wrong `in`/`out`).

use super::site::{ArgRef, LoweredKernel};
use bfly_ir::DType;
use bfly_ir::kernel::{Access, BinOp, Body, BodyBuilder, Expr, KernelKind, LoopKind, Stmt};

/// A kernel under construction: its body builder and what each param is bound to.
pub(crate) struct Kb {
    pub b: BodyBuilder,
    refs: Vec<ArgRef>,
}

impl Kb {
    pub fn new() -> Kb {
        Kb {
            b: BodyBuilder::new(),
            refs: Vec::new(),
        }
    }

    /// Declares the next param, bound to `r`. Its access is derived in [`Kb::finish`].
    pub fn arg(&mut self, name: &str, dtype: DType, r: ArgRef) -> u32 {
        self.refs.push(r);
        self.b.param(name, dtype, Access::Read)
    }

    pub fn finish(self, kind: KernelKind) -> LoweredKernel {
        let mut body = self.b.finish();
        tidy(&mut body);
        LoweredKernel {
            kind,
            body,
            args: self.refs,
        }
    }
}

/// Folds constants and sets param access from loads and stores.
pub(crate) fn tidy(body: &mut Body) {
    fold_stmts(&mut body.stmts);
    derive_access(body);
}

/// `e` as a local (`let`), unless it folds to a constant, a loop var, a symbol or a local,
/// which are used as they are (no `let a0 = 0` in bodies whose group loop was elided).
pub(crate) fn bind(b: &mut BodyBuilder, e: Expr) -> Expr {
    let mut e = e;
    fold(&mut e);
    match e {
        Expr::Int(_) | Expr::Var(_) | Expr::Local(_) | Expr::Sym(_) => e,
        e => Expr::Local(b.let_(e)),
    }
}

/// `f(b, i)` inside `for i in 0..n`, or `f(b, 0)` without a loop when `n == 1`.
pub(crate) fn maybe_loop(b: &mut BodyBuilder, n: u64, f: impl FnOnce(&mut BodyBuilder, Expr)) {
    if n == 1 {
        f(b, Expr::Int(0));
    } else {
        b.serial(0, n as i64, |b, v| f(b, Expr::Var(v)));
    }
}

/// A statement block that is one serial section (`for _ in 0..1`): top-level statements are
/// sections of their own, so a scalar computation must sit inside one loop to keep its locals.
pub(crate) fn single(b: &mut BodyBuilder, f: impl FnOnce(&mut BodyBuilder)) {
    b.serial(0, 1, |b, _| f(b));
}

/// An f32 constant from an f64 attribute (rounded to nearest).
pub(crate) fn f32c(v: f64) -> Expr {
    Expr::F32(v as f32)
}

/// `round(v)` with ties away from zero (the reference's `f64::round`), exact in f32: the
/// fraction `|v| − trunc|v|` is exact for every f32, unlike `trunc(|v| + 0.5)`, which rounds
/// 0.49999997 up. `v` should be a local (it is read twice). Large |v| saturate in `int`
/// and are clamped by every caller.
pub(crate) fn round_half_away(b: &mut BodyBuilder, v: Expr) -> Expr {
    let a = b.let_(v.clone().abs());
    let t = b.let_(Expr::Local(a).to_int().to_f32());
    let frac = Expr::Local(a) - Expr::Local(t);
    let up = Expr::select(Expr::f32(0.5).le(frac), Expr::f32(1.0), Expr::f32(0.0));
    let r = b.let_(Expr::Local(t) + up);
    Expr::select(v.lt(Expr::f32(0.0)), -Expr::Local(r), Expr::Local(r))
}

/// Number of `chunk`-sized pieces that cover `count` items (the last may be short).
pub(crate) fn chunks(count: &Expr, chunk: i64) -> Expr {
    (count.clone() + (chunk - 1)) / chunk
}

/// `parallel for c in chunks { vector for e in c·chunk .. min(c·chunk + chunk, count) }`.
pub(crate) fn chunked(
    b: &mut BodyBuilder,
    count: Expr,
    chunk: i64,
    f: impl FnOnce(&mut BodyBuilder, Expr),
) {
    let n = chunks(&count, chunk);
    b.for_(LoopKind::Parallel, 0, n, |b, c| {
        let lo = c * chunk;
        let hi = (lo.clone() + chunk).min(count);
        b.for_(LoopKind::Vector, lo, hi, |b, e| f(b, Expr::Var(e)));
    });
}

/// Does the body read a runtime symbol (`T`, `B`, `pos`)? Load-phase kernels may not.
pub(crate) fn uses_syms(body: &Body) -> bool {
    fn expr(e: &Expr) -> bool {
        match e {
            Expr::Sym(_) => true,
            Expr::Load { index, .. } => expr(index),
            Expr::Bin(_, a, b) => expr(a) || expr(b),
            Expr::Un(_, a) => expr(a),
            Expr::Select { cond, then, els } => expr(cond) || expr(then) || expr(els),
            Expr::F32(_) | Expr::Int(_) | Expr::Var(_) | Expr::Local(_) => false,
        }
    }
    let mut found = false;
    walk(&body.stmts, &mut |e| found |= expr(e), &mut |_| {});
    found
}

// ---------------------------------------------------------------------------------------
// Access derivation.

fn derive_access(body: &mut Body) {
    let n = body.params.len();
    let (mut reads, mut writes) = (vec![false; n], vec![false; n]);
    walk(
        &body.stmts,
        &mut |e| mark_loads(e, &mut reads),
        &mut |arg| {
            if let Some(w) = writes.get_mut(arg as usize) {
                *w = true;
            }
        },
    );
    for (i, p) in body.params.iter_mut().enumerate() {
        p.access = match (reads[i], writes[i]) {
            (true, true) => Access::ReadWrite,
            (false, true) => Access::Write,
            _ => Access::Read,
        };
    }
}

fn mark_loads(e: &Expr, reads: &mut [bool]) {
    match e {
        Expr::Load { arg, index } => {
            if let Some(r) = reads.get_mut(*arg as usize) {
                *r = true;
            }
            mark_loads(index, reads);
        }
        Expr::Bin(_, a, b) => {
            mark_loads(a, reads);
            mark_loads(b, reads);
        }
        Expr::Un(_, a) => mark_loads(a, reads),
        Expr::Select { cond, then, els } => {
            mark_loads(cond, reads);
            mark_loads(then, reads);
            mark_loads(els, reads);
        }
        Expr::F32(_) | Expr::Int(_) | Expr::Var(_) | Expr::Sym(_) | Expr::Local(_) => {}
    }
}

fn walk(stmts: &[Stmt], expr: &mut dyn FnMut(&Expr), store: &mut dyn FnMut(u32)) {
    for s in stmts {
        match s {
            Stmt::For {
                start, end, body, ..
            } => {
                expr(start);
                expr(end);
                walk(body, expr, store);
            }
            Stmt::Let { value, .. } | Stmt::Assign { value, .. } => expr(value),
            Stmt::Store { arg, index, value } => {
                store(*arg);
                expr(index);
                expr(value);
            }
            Stmt::If { cond, then } => {
                expr(cond);
                walk(then, expr, store);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Constant folding of integer index arithmetic (lowerings build `0 * n + j` freely).

/// [`fold`] over every expression of `stmts` (also how the aarch64 matchers bring a rebuilt
/// section to the form the finishing pass gives real bodies).
pub(crate) fn fold_stmts(stmts: &mut [Stmt]) {
    for s in stmts {
        match s {
            Stmt::For {
                start, end, body, ..
            } => {
                fold(start);
                fold(end);
                fold_stmts(body);
            }
            Stmt::Let { value, .. } | Stmt::Assign { value, .. } => fold(value),
            Stmt::Store { index, value, .. } => {
                fold(index);
                fold(value);
            }
            Stmt::If { cond, then } => {
                fold(cond);
                fold_stmts(then);
            }
        }
    }
}

/// Folds int constants bottom-up: `c1 op c2`, `x + 0`, `x · 1`, `x · 0`, `x / 1`, `x % 1`,
/// `(x + c1) + c2`. Float arithmetic is left alone (folding it could change rounding).
pub(crate) fn fold(e: &mut Expr) {
    match e {
        Expr::Bin(_, a, b) => {
            fold(a);
            fold(b);
        }
        Expr::Un(_, a) => fold(a),
        Expr::Load { index, .. } => fold(index),
        Expr::Select { cond, then, els } => {
            fold(cond);
            fold(then);
            fold(els);
        }
        _ => return,
    }
    if let Some(new) = simplify(e) {
        *e = new;
    }
}

fn simplify(e: &Expr) -> Option<Expr> {
    let Expr::Bin(op, a, b) = e else {
        return None;
    };
    use Expr::Int;
    match (op, &**a, &**b) {
        (BinOp::Add, Int(x), Int(y)) => x.checked_add(*y).map(Int),
        (BinOp::Sub, Int(x), Int(y)) => x.checked_sub(*y).map(Int),
        (BinOp::Mul, Int(x), Int(y)) => x.checked_mul(*y).map(Int),
        (BinOp::Div, Int(x), Int(y)) if *x >= 0 && *y > 0 => Some(Int(x / y)),
        (BinOp::Rem, Int(x), Int(y)) if *x >= 0 && *y > 0 => Some(Int(x % y)),
        (BinOp::Min, Int(x), Int(y)) => Some(Int(*x.min(y))),
        (BinOp::Max, Int(x), Int(y)) => Some(Int(*x.max(y))),
        (BinOp::Lt, Int(x), Int(y)) => Some(Int(i64::from(x < y))),
        (BinOp::Le, Int(x), Int(y)) => Some(Int(i64::from(x <= y))),
        (BinOp::Eq, Int(x), Int(y)) => Some(Int(i64::from(x == y))),
        (BinOp::Add, Int(0), x) | (BinOp::Add | BinOp::Sub, x, Int(0)) => Some(x.clone()),
        (BinOp::Mul, Int(1), x) | (BinOp::Mul | BinOp::Div, x, Int(1)) => Some(x.clone()),
        (BinOp::Mul, Int(0), _) | (BinOp::Mul, _, Int(0)) | (BinOp::Rem, _, Int(1)) => Some(Int(0)),
        // (x + c1) + c2 → x + (c1 + c2), (x · c1) · c2 → x · (c1 · c2): keeps unrolled
        // offsets readable.
        (BinOp::Add | BinOp::Mul, Expr::Bin(inner, x, c1), Int(c2)) if inner == op => match &**c1 {
            Int(c1) => {
                let c = if *op == BinOp::Add {
                    c1.checked_add(*c2)?
                } else {
                    c1.checked_mul(*c2)?
                };
                Some(Expr::bin(*op, (**x).clone(), Int(c)))
            }
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bfly_ir::kernel::RtSym;

    #[test]
    fn folds_index_arithmetic() {
        let mut e = Expr::Int(0) * Expr::Sym(RtSym::T) + (Expr::Sym(RtSym::T) * 1 + 0);
        fold(&mut e);
        assert_eq!(e, Expr::Sym(RtSym::T));
        let mut e = (Expr::Sym(RtSym::T) + 3) + 4;
        fold(&mut e);
        assert_eq!(e, Expr::Sym(RtSym::T) + 7);
    }
}
