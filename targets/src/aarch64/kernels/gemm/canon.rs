//! Comparing a section of a real body with one rebuilt by the lowering itself.
//!
//! The matchers do not pattern-match statement shapes by hand: they ask the lowering to
//! build the body it would build for the descriptor's geometry and require the section to
//! be that, statement for statement. Loop vars and locals are renumbered in order of
//! definition first, so a section that is not its body's first (or a merged body) still
//! compares equal when it computes the same thing.

use bfly_ir::Dim;
use bfly_ir::kernel::{Expr, Local, LoopVar, RtSym, Stmt};
use std::collections::HashMap;

/// `stmts` with loop vars and locals renumbered `0, 1, …` in order of definition; `None`
/// when something is used before it is defined (not a self-contained section).
pub fn canonical(stmts: &[Stmt]) -> Option<Vec<Stmt>> {
    let mut r = Renumber::default();
    r.stmts(stmts)
}

#[derive(Default)]
struct Renumber {
    vars: HashMap<u32, u32>,
    locals: HashMap<u32, u32>,
}

impl Renumber {
    fn stmts(&mut self, stmts: &[Stmt]) -> Option<Vec<Stmt>> {
        stmts.iter().map(|s| self.stmt(s)).collect()
    }

    fn stmt(&mut self, s: &Stmt) -> Option<Stmt> {
        Some(match s {
            Stmt::For {
                var,
                start,
                end,
                kind,
                body,
            } => {
                let (start, end) = (self.expr(start)?, self.expr(end)?);
                let n = self.vars.len() as u32;
                self.vars.insert(var.0, n);
                Stmt::For {
                    var: LoopVar(n),
                    start,
                    end,
                    kind: *kind,
                    body: self.stmts(body)?,
                }
            }
            Stmt::Let { local, value } => {
                let value = self.expr(value)?;
                let n = self.locals.len() as u32;
                self.locals.insert(local.0, n);
                Stmt::Let {
                    local: Local(n),
                    value,
                }
            }
            Stmt::Assign { local, value } => Stmt::Assign {
                local: Local(*self.locals.get(&local.0)?),
                value: self.expr(value)?,
            },
            Stmt::Store { arg, index, value } => Stmt::Store {
                arg: *arg,
                index: self.expr(index)?,
                value: self.expr(value)?,
            },
            Stmt::If { cond, then } => Stmt::If {
                cond: self.expr(cond)?,
                then: self.stmts(then)?,
            },
        })
    }

    fn expr(&self, e: &Expr) -> Option<Expr> {
        Some(match e {
            Expr::Var(v) => Expr::Var(LoopVar(*self.vars.get(&v.0)?)),
            Expr::Local(l) => Expr::Local(Local(*self.locals.get(&l.0)?)),
            Expr::Load { arg, index } => Expr::load(*arg, self.expr(index)?),
            Expr::Bin(op, a, b) => Expr::bin(*op, self.expr(a)?, self.expr(b)?),
            Expr::Un(op, a) => Expr::un(*op, self.expr(a)?),
            Expr::Select { cond, then, els } => {
                Expr::select(self.expr(cond)?, self.expr(then)?, self.expr(els)?)
            }
            Expr::F32(_) | Expr::Int(_) | Expr::Sym(_) => e.clone(),
        })
    }
}

/// Leading dims whose element count the lowering writes as `rows` (`T`, `B * T`, `64`):
/// the inverse of `numel_expr` for the row counts lowerings produce. `None` for any other
/// form (the caller declines).
pub fn rows_to_dims(rows: &Expr) -> Option<Vec<Dim>> {
    match rows {
        Expr::Int(c) if *c >= 0 => Some(vec![Dim::Const(*c as u64)]),
        Expr::Sym(s) => match s {
            RtSym::T | RtSym::B => Some(vec![Dim::sym(s.name())]),
            RtSym::Pos => None,
        },
        Expr::Bin(bfly_ir::kernel::BinOp::Mul, a, b) => {
            let mut d = rows_to_dims(a)?;
            d.extend(rows_to_dims(b)?);
            Some(d)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bfly_ir::kernel::{BodyBuilder, LoopKind};

    fn section(skip_vars: u32) -> Vec<Stmt> {
        let mut b = BodyBuilder::new();
        let x = b.param("x", bfly_ir::DType::F32, bfly_ir::kernel::Access::Read);
        for _ in 0..skip_vars {
            b.serial(0, 1, |b, _| {
                b.let_(Expr::f32(0.0));
            });
        }
        b.for_(LoopKind::Parallel, 0, RtSym::T, |b, i| {
            let a = b.let_(Expr::load(x, Expr::Var(i)));
            b.store(x, Expr::Var(i), Expr::Local(a) * Expr::f32(2.0));
        });
        b.finish().stmts
    }

    #[test]
    fn renumbering_makes_offset_sections_equal() {
        let first = section(0);
        let later = section(3);
        assert_ne!(first[0], later[3]);
        assert_eq!(
            canonical(&first[..1]),
            canonical(&later[3..4]),
            "same computation, different ids"
        );
    }

    #[test]
    fn rows_round_trip() {
        let bt = Expr::Sym(RtSym::B) * Expr::Sym(RtSym::T);
        assert_eq!(rows_to_dims(&bt), Some(vec![Dim::sym("B"), Dim::sym("T")]));
        assert_eq!(rows_to_dims(&Expr::Int(64)), Some(vec![Dim::Const(64)]));
        assert_eq!(rows_to_dims(&Expr::Sym(RtSym::Pos)), None);
    }
}
