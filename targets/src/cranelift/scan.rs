//! Read-only scans of a body that lowering needs before it emits code.

use bfly_ir::kernel::{BinOp, Expr, Local, RtSym, Stmt, UnOp};
use std::collections::HashMap;

/// Calls `f` on `e` and every sub-expression.
pub(super) fn visit_expr(e: &Expr, f: &mut dyn FnMut(&Expr)) {
    f(e);
    match e {
        Expr::F32(_) | Expr::Int(_) | Expr::Var(_) | Expr::Sym(_) | Expr::Local(_) => {}
        Expr::Load { index, .. } => visit_expr(index, f),
        Expr::Bin(_, a, b) => {
            visit_expr(a, f);
            visit_expr(b, f);
        }
        Expr::Un(_, a) => visit_expr(a, f),
        Expr::Select { cond, then, els } => {
            visit_expr(cond, f);
            visit_expr(then, f);
            visit_expr(els, f);
        }
    }
}

/// Calls `f` on every expression (and sub-expression) of `stmts`, nested ones included.
pub(super) fn visit_stmts(stmts: &[Stmt], f: &mut dyn FnMut(&Expr)) {
    for s in stmts {
        match s {
            Stmt::For {
                start, end, body, ..
            } => {
                visit_expr(start, f);
                visit_expr(end, f);
                visit_stmts(body, f);
            }
            Stmt::Let { value, .. } | Stmt::Assign { value, .. } => visit_expr(value, f),
            Stmt::Store { index, value, .. } => {
                visit_expr(index, f);
                visit_expr(value, f);
            }
            Stmt::If { cond, then } => {
                visit_expr(cond, f);
                visit_stmts(then, f);
            }
        }
    }
}

/// Params (by index) and runtime symbols a section touches: their addresses / values are
/// loaded once in the entry block.
pub(super) struct Uses {
    pub args: Vec<u32>,
    pub syms: Vec<RtSym>,
}

pub(super) fn uses(stmts: &[Stmt]) -> Uses {
    let mut args = Vec::new();
    let mut syms = Vec::new();
    fn stores(stmts: &[Stmt], args: &mut Vec<u32>) {
        for s in stmts {
            match s {
                Stmt::Store { arg, .. } => args.push(*arg),
                Stmt::For { body, .. } => stores(body, args),
                Stmt::If { then, .. } => stores(then, args),
                Stmt::Let { .. } | Stmt::Assign { .. } => {}
            }
        }
    }
    stores(stmts, &mut args);
    visit_stmts(stmts, &mut |e| match e {
        Expr::Load { arg, .. } => args.push(*arg),
        Expr::Sym(s) => syms.push(*s),
        _ => {}
    });
    args.sort_unstable();
    args.dedup();
    syms.sort_unstable();
    syms.dedup();
    Uses { args, syms }
}

/// How many times each local is read in `stmts`.
pub(super) fn local_reads(stmts: &[Stmt]) -> HashMap<Local, usize> {
    let mut n = HashMap::new();
    visit_stmts(stmts, &mut |e| {
        if let Expr::Local(l) = e {
            *n.entry(*l).or_insert(0) += 1;
        }
    });
    n
}

pub(super) fn mentions_local(e: &Expr, l: Local) -> bool {
    let mut found = false;
    visit_expr(e, &mut |x| found |= *x == Expr::Local(l));
    found
}

/// The value of an int expression made of literals and arithmetic only (static extents and
/// multipliers). `None` for anything else or on overflow.
pub(super) fn const_int(e: &Expr) -> Option<i64> {
    match e {
        Expr::Int(v) => Some(*v),
        Expr::Bin(op, a, b) => {
            let (a, b) = (const_int(a)?, const_int(b)?);
            match op {
                BinOp::Add => a.checked_add(b),
                BinOp::Sub => a.checked_sub(b),
                BinOp::Mul => a.checked_mul(b),
                BinOp::Div if b > 0 => a.checked_div(b),
                BinOp::Rem if b > 0 => a.checked_rem(b),
                BinOp::Min => Some(a.min(b)),
                BinOp::Max => Some(a.max(b)),
                _ => None,
            }
        }
        Expr::Un(UnOp::Neg, a) => const_int(a)?.checked_neg(),
        _ => None,
    }
}
