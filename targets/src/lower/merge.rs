//! Concatenating kernels into one: the bodies' sections run in order in a single kernel,
//! params bound to the same buffer become one param (its access the union), and loop vars
//! and locals are renumbered so ids stay dense. Used for fused regions that are not a
//! producer with an epilogue (grad-accumulation trees, butterfly chains), and on every single
//! kernel to collapse params bound to one buffer (an in-place optimizer's `p` and `p'`), so
//! no backend ever sees two params aliasing one buffer.

use super::emit::tidy;
use bfly_ir::kernel::{Body, BodyParam, BufferId, Expr, Local, LoopVar, Stmt};

/// Merges `parts` (body, one buffer per param) into one body and its args.
pub(crate) fn merge(parts: &[(&Body, &[BufferId])]) -> (Body, Vec<BufferId>) {
    let mut params: Vec<BodyParam> = Vec::new();
    let mut args: Vec<BufferId> = Vec::new();
    let mut stmts = Vec::new();
    let (mut vars, mut locals) = (0u32, 0u32);
    for (body, bufs) in parts {
        let map: Vec<u32> = body
            .params
            .iter()
            .zip(bufs.iter())
            .map(|(p, &buf)| match args.iter().position(|&a| a == buf) {
                Some(i) => i as u32,
                None => {
                    let mut name = p.name.clone();
                    let mut k = 1;
                    while params.iter().any(|q| q.name == name) {
                        name = format!("{}{k}", p.name);
                        k += 1;
                    }
                    params.push(BodyParam {
                        name,
                        dtype: p.dtype,
                        access: p.access,
                    });
                    args.push(buf);
                    (params.len() - 1) as u32
                }
            })
            .collect();
        let r = Renumber {
            args: Some(&map),
            vars,
            locals,
        };
        stmts.extend(body.stmts.iter().map(|s| r.stmt(s)));
        vars += body.num_vars;
        locals += body.num_locals;
    }
    let mut body = Body {
        params,
        stmts,
        num_vars: vars,
        num_locals: locals,
    };
    tidy(&mut body);
    (body, args)
}

/// Moves one body's statements into a combined body: loop vars and locals shifted by
/// `vars` and `locals`, params mapped through `args` (`None`: kept as they are). Also used by
/// the aarch64 butterfly matcher to place a rebuilt section at a concatenated one's ids.
pub(crate) struct Renumber<'a> {
    pub args: Option<&'a [u32]>,
    pub vars: u32,
    pub locals: u32,
}

impl Renumber<'_> {
    fn arg(&self, a: u32) -> u32 {
        match self.args {
            // An arg beyond the map is a malformed body; keep it out of range so verify
            // reports it.
            Some(map) => map.get(a as usize).copied().unwrap_or(u32::MAX),
            None => a,
        }
    }

    pub fn stmt(&self, s: &Stmt) -> Stmt {
        match s {
            Stmt::For {
                var,
                start,
                end,
                kind,
                body,
            } => Stmt::For {
                var: LoopVar(var.0 + self.vars),
                start: self.expr(start),
                end: self.expr(end),
                kind: *kind,
                body: body.iter().map(|s| self.stmt(s)).collect(),
            },
            Stmt::Let { local, value } => Stmt::Let {
                local: Local(local.0 + self.locals),
                value: self.expr(value),
            },
            Stmt::Assign { local, value } => Stmt::Assign {
                local: Local(local.0 + self.locals),
                value: self.expr(value),
            },
            Stmt::Store { arg, index, value } => Stmt::Store {
                arg: self.arg(*arg),
                index: self.expr(index),
                value: self.expr(value),
            },
            Stmt::If { cond, then } => Stmt::If {
                cond: self.expr(cond),
                then: then.iter().map(|s| self.stmt(s)).collect(),
            },
        }
    }

    fn expr(&self, e: &Expr) -> Expr {
        match e {
            Expr::Var(v) => Expr::Var(LoopVar(v.0 + self.vars)),
            Expr::Local(l) => Expr::Local(Local(l.0 + self.locals)),
            Expr::Load { arg, index } => Expr::load(self.arg(*arg), self.expr(index)),
            Expr::Bin(op, a, b) => Expr::bin(*op, self.expr(a), self.expr(b)),
            Expr::Un(op, a) => Expr::un(*op, self.expr(a)),
            Expr::Select { cond, then, els } => {
                Expr::select(self.expr(cond), self.expr(then), self.expr(els))
            }
            Expr::F32(_) | Expr::Int(_) | Expr::Sym(_) => e.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bfly_ir::DType;
    use bfly_ir::kernel::{Access, BodyBuilder, LoopKind, RtSym};

    fn copy_body() -> Body {
        let mut b = BodyBuilder::new();
        let x = b.param("x", DType::F32, Access::Read);
        let y = b.param("y", DType::F32, Access::Write);
        b.for_(LoopKind::Parallel, 0, RtSym::T, |b, i| {
            let v = b.let_(Expr::load(x, Expr::Var(i)));
            b.store(y, i, v);
        });
        b.finish()
    }

    #[test]
    fn merges_sections_and_shared_buffers() {
        let a = copy_body();
        let (b0, b1, b2) = (BufferId(0), BufferId(1), BufferId(2));
        let (body, args) = merge(&[(&a, &[b0, b1]), (&a, &[b1, b2])]);
        assert_eq!(args, vec![b0, b1, b2]);
        assert_eq!(body.num_sections(), 2);
        assert_eq!((body.num_vars, body.num_locals), (2, 2));
        let names: Vec<&str> = body.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["x", "y", "y1"]);
        assert_eq!(body.params[1].access, Access::ReadWrite);
        assert_eq!(bfly_ir::kernel::verify_body(&body), Ok(()));
        // One part without duplicates comes back unchanged.
        let (same, _) = merge(&[(&a, &[b0, b1])]);
        assert_eq!(same, a);
    }
}
