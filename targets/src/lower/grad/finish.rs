//! Closing a backward kernel: binding body params to `ArgRef`s, folding constant integer
//! arithmetic, and deriving each param's access from what the body does with it (the
//! program verifier checks access against the buffers it is bound to).

use crate::lower::site::{ArgRef, LoweredKernel};
use bfly_ir::DType;
use bfly_ir::kernel::{Access, BinOp, Body, BodyBuilder, Expr, KernelKind, Stmt};

/// Params of the body under construction and what each is bound to.
#[derive(Default)]
pub struct Args {
    refs: Vec<ArgRef>,
}

impl Args {
    /// Declares a param bound to `r`. Its access is derived from the body in [`finish`].
    pub fn bind(&mut self, b: &mut BodyBuilder, name: &str, dtype: DType, r: ArgRef) -> u32 {
        self.refs.push(r);
        b.param(name, dtype, Access::Read)
    }
}

/// Closes a kernel: folds constant integer arithmetic and sets every param's access from the
/// loads and stores of the body (the program verifier checks access against the buffers).
pub fn finish(b: BodyBuilder, args: Args, kind: KernelKind) -> LoweredKernel {
    let mut body = b.finish();
    simplify_stmts(&mut body.stmts);
    derive_access(&mut body);
    LoweredKernel {
        kind,
        body,
        args: args.refs,
    }
}

fn derive_access(body: &mut Body) {
    let n = body.params.len();
    let (mut reads, mut writes) = (vec![false; n], vec![false; n]);
    visit_stmts(
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

/// Calls `expr` on every top-level expression of the statements and `store` on every stored
/// param.
fn visit_stmts(stmts: &[Stmt], expr: &mut dyn FnMut(&Expr), store: &mut dyn FnMut(u32)) {
    for s in stmts {
        match s {
            Stmt::For {
                start, end, body, ..
            } => {
                expr(start);
                expr(end);
                visit_stmts(body, expr, store);
            }
            Stmt::Let { value, .. } | Stmt::Assign { value, .. } => expr(value),
            Stmt::Store { arg, index, value } => {
                store(*arg);
                expr(index);
                expr(value);
            }
            Stmt::If { cond, then } => {
                expr(cond);
                visit_stmts(then, expr, store);
            }
        }
    }
}

fn simplify_stmts(stmts: &mut [Stmt]) {
    for s in stmts {
        match s {
            Stmt::For {
                start, end, body, ..
            } => {
                simplify(start);
                simplify(end);
                simplify_stmts(body);
            }
            Stmt::Let { value, .. } | Stmt::Assign { value, .. } => simplify(value),
            Stmt::Store { index, value, .. } => {
                simplify(index);
                simplify(value);
            }
            Stmt::If { cond, then } => {
                simplify(cond);
                simplify_stmts(then);
            }
        }
    }
}

/// Folds integer arithmetic on literals and drops `+ 0`, `* 1`, `* 0`, `/ 1`. Only
/// `Bin` nodes with an `Int` literal operand are rewritten; a well-typed body never mixes
/// an int literal with an f32 operand, so the rewrites never touch float arithmetic (where
/// `x * 0` is not 0 for NaN or infinity).
fn simplify(e: &mut Expr) {
    match e {
        Expr::Load { index, .. } => simplify(index),
        Expr::Un(_, a) => simplify(a),
        Expr::Select { cond, then, els } => {
            simplify(cond);
            simplify(then);
            simplify(els);
        }
        Expr::Bin(op, a, b) => {
            simplify(a);
            simplify(b);
            if let Some(folded) = fold(*op, a, b) {
                *e = folded;
            }
        }
        Expr::F32(_) | Expr::Int(_) | Expr::Var(_) | Expr::Sym(_) | Expr::Local(_) => {}
    }
}

fn fold(op: BinOp, a: &Expr, b: &Expr) -> Option<Expr> {
    use BinOp::*;
    match (op, a, b) {
        (_, Expr::Int(x), Expr::Int(y)) => {
            let (x, y) = (*x, *y);
            let v = match op {
                Add => x.checked_add(y)?,
                Sub => x.checked_sub(y)?,
                Mul => x.checked_mul(y)?,
                Div if x >= 0 && y > 0 => x / y,
                Rem if x >= 0 && y > 0 => x % y,
                Min => x.min(y),
                Max => x.max(y),
                Lt => i64::from(x < y),
                Le => i64::from(x <= y),
                Eq => i64::from(x == y),
                _ => return None,
            };
            Some(Expr::Int(v))
        }
        (Add, x, Expr::Int(0)) | (Add, Expr::Int(0), x) | (Sub, x, Expr::Int(0)) => Some(x.clone()),
        (Mul, x, Expr::Int(1)) | (Mul, Expr::Int(1), x) | (Div, x, Expr::Int(1)) => Some(x.clone()),
        (Mul, _, Expr::Int(0)) | (Mul, Expr::Int(0), _) => Some(Expr::Int(0)),
        (Rem, _, Expr::Int(1)) => Some(Expr::Int(0)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bfly_ir::kernel::LoopKind;

    #[test]
    fn folds_int_arithmetic_and_derives_access() {
        let mut b = BodyBuilder::new();
        let mut a = Args::default();
        let x = a.bind(&mut b, "x", DType::F32, ArgRef::Operand(0));
        let acc = a.bind(&mut b, "acc", DType::F32, ArgRef::Result(0));
        let y = a.bind(&mut b, "y", DType::F32, ArgRef::Result(1));
        b.for_(LoopKind::Parallel, 0, Expr::Int(2) * 3, |b, i| {
            let at = Expr::Var(i) * 1 + Expr::Int(0) * 7;
            b.store(
                acc,
                at.clone(),
                Expr::load(acc, at.clone()) + Expr::load(x, at.clone()),
            );
            // `x * 0.0` is float arithmetic: it must stay (NaN · 0 is NaN).
            b.store(y, at.clone(), Expr::load(x, at) * Expr::f32(0.0));
        });
        let k = finish(b, a, KernelKind::Other { op: "t".into() });
        let text = k.body.print("t");
        assert!(text.contains("parallel for i0 in 0..6"), "{text}");
        assert!(text.contains("acc[i0] = acc[i0] + x[i0]"), "{text}");
        assert!(text.contains("y[i0] = x[i0] * 0.0"), "{text}");
        let access: Vec<Access> = k.body.params.iter().map(|p| p.access).collect();
        assert_eq!(access, [Access::Read, Access::ReadWrite, Access::Write]);
        assert_eq!(
            k.args,
            [ArgRef::Operand(0), ArgRef::Result(0), ArgRef::Result(1)]
        );
    }
}
