//! Strict recognition by rebuilding: a family builds the section its lowering would have
//! produced for the parameters it read, folds it with the lowering's own integer folding
//! (`lower::emit::fold_stmts`, what `tidy` does to every real body), and requires it to
//! equal the real section up to the numbering of loop variables, locals and params.

use crate::lower::emit::fold_stmts;
use bfly_ir::kernel::{Expr, Local, LoopVar, Stmt};
use std::collections::HashMap;

/// If `actual` equals `template` up to renumbering, the actual param index of each
/// template param (`map[template_param]`), for the params the template uses.
pub fn match_section(actual: &Stmt, template: &Stmt) -> Option<HashMap<u32, u32>> {
    let mut template = template.clone();
    fold_stmts(std::slice::from_mut(&mut template));
    let (a, a_args) = canonical(actual);
    let (t, t_args) = canonical(&template);
    if a != t || a_args.len() != t_args.len() {
        return None;
    }
    Some(t_args.into_iter().zip(a_args).collect())
}

/// `stmt` with loop vars, locals and params renumbered by first appearance, and the
/// original param index of each canonical one.
fn canonical(stmt: &Stmt) -> (Stmt, Vec<u32>) {
    let mut r = Renumber::default();
    let s = r.stmt(stmt);
    (s, r.args)
}

#[derive(Default)]
struct Renumber {
    vars: HashMap<u32, u32>,
    locals: HashMap<u32, u32>,
    args: Vec<u32>,
}

impl Renumber {
    fn var(&mut self, v: LoopVar) -> LoopVar {
        let n = self.vars.len() as u32;
        LoopVar(*self.vars.entry(v.0).or_insert(n))
    }

    fn local(&mut self, l: Local) -> Local {
        let n = self.locals.len() as u32;
        Local(*self.locals.entry(l.0).or_insert(n))
    }

    fn arg(&mut self, a: u32) -> u32 {
        match self.args.iter().position(|&x| x == a) {
            Some(i) => i as u32,
            None => {
                self.args.push(a);
                (self.args.len() - 1) as u32
            }
        }
    }

    fn stmt(&mut self, s: &Stmt) -> Stmt {
        match s {
            Stmt::For {
                var,
                start,
                end,
                kind,
                body,
            } => {
                let (start, end) = (self.expr(start), self.expr(end));
                let var = self.var(*var);
                Stmt::For {
                    var,
                    start,
                    end,
                    kind: *kind,
                    body: body.iter().map(|s| self.stmt(s)).collect(),
                }
            }
            Stmt::Let { local, value } => {
                let value = self.expr(value);
                Stmt::Let {
                    local: self.local(*local),
                    value,
                }
            }
            Stmt::Assign { local, value } => {
                let value = self.expr(value);
                Stmt::Assign {
                    local: self.local(*local),
                    value,
                }
            }
            Stmt::Store { arg, index, value } => {
                let arg = self.arg(*arg);
                Stmt::Store {
                    arg,
                    index: self.expr(index),
                    value: self.expr(value),
                }
            }
            Stmt::If { cond, then } => Stmt::If {
                cond: self.expr(cond),
                then: then.iter().map(|s| self.stmt(s)).collect(),
            },
        }
    }

    fn expr(&mut self, e: &Expr) -> Expr {
        match e {
            Expr::F32(_) | Expr::Int(_) | Expr::Sym(_) => e.clone(),
            Expr::Var(v) => Expr::Var(self.var(*v)),
            Expr::Local(l) => Expr::Local(self.local(*l)),
            Expr::Load { arg, index } => {
                let arg = self.arg(*arg);
                Expr::load(arg, self.expr(index))
            }
            Expr::Bin(op, a, b) => {
                let a = self.expr(a);
                Expr::bin(*op, a, self.expr(b))
            }
            Expr::Un(op, a) => Expr::un(*op, self.expr(a)),
            Expr::Select { cond, then, els } => {
                let cond = self.expr(cond);
                let then = self.expr(then);
                Expr::select(cond, then, self.expr(els))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bfly_ir::kernel::{LoopKind, RtSym};

    fn section(first_var: u32, first_local: u32, x: u32, y: u32, width: i64) -> Stmt {
        let (i, a) = (LoopVar(first_var), Local(first_local));
        Stmt::For {
            var: i,
            start: Expr::Int(0),
            end: Expr::Sym(RtSym::T),
            kind: LoopKind::Parallel,
            body: vec![
                Stmt::Let {
                    local: a,
                    value: Expr::Var(i) * width,
                },
                Stmt::Store {
                    arg: y,
                    index: Expr::Local(a),
                    value: Expr::load(x, Expr::Local(a)).exp(),
                },
            ],
        }
    }

    #[test]
    fn equal_up_to_numbering_maps_params() {
        let actual = section(7, 3, 4, 2, 16);
        let template = section(0, 0, 0, 1, 16);
        let map = match_section(&actual, &template).expect("matches");
        assert_eq!(map[&0], 4);
        assert_eq!(map[&1], 2);
    }

    #[test]
    fn a_different_constant_or_an_aliased_param_does_not_match() {
        assert!(match_section(&section(0, 0, 0, 1, 8), &section(0, 0, 0, 1, 16)).is_none());
        assert!(match_section(&section(0, 0, 0, 0, 16), &section(0, 0, 0, 1, 16)).is_none());
    }

    #[test]
    fn the_template_is_folded() {
        // The lowering folded `i * 1` to `i`; the template still says `i * 1`.
        let mut actual = section(0, 0, 0, 1, 1);
        if let Stmt::For { body, .. } = &mut actual {
            body[0] = Stmt::Let {
                local: Local(0),
                value: Expr::Var(LoopVar(0)),
            };
        }
        assert!(match_section(&actual, &section(0, 0, 0, 1, 1)).is_some());
    }
}
