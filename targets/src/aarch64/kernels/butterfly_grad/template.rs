//! The exact body form the butterfly-backward microkernels implement.
//!
//! Matching rebuilds, for a candidate geometry, the first two sections of the canonical
//! butterfly VJP (`lower/grad/butterfly.rs`, DESIGN §4) and requires the kernel's sections
//! to be equal to them statement for statement, index for index (up to the numbering of
//! loop variables and locals). The builder below is deliberately a private copy of that
//! lowering, not a call into it: it pins the semantics the assembly implements, so a change
//! to the lowering makes bodies stop matching (and run Cranelift's code) instead of making
//! the microkernels silently compute the old thing.

use bfly_ir::DType;
use bfly_ir::kernel::{Access, BinOp, Body, BodyBuilder, Expr, LoopKind, Stmt};
use std::collections::HashMap;
use std::ops::Rem;

/// Geometry of one butterfly layer's backward: `groups × stacks` slabs, each `blocks`
/// blocks of `l = log2 n` stages over `n` positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geo {
    pub groups: u64,
    pub stacks: u64,
    pub blocks: u64,
    pub n: u64,
    pub l: u64,
    pub n_in: u64,
    pub n_out: u64,
    pub increasing: bool,
}

impl Geo {
    pub fn stages(&self) -> u64 {
        self.blocks * self.l
    }

    pub fn half(&self) -> u64 {
        self.n / 2
    }

    /// One unpadded stack: the first stage's input gradient is stored straight into `dx`.
    pub fn direct_dx(&self) -> bool {
        self.stacks == 1 && self.n_in == self.n
    }

    /// Stride of stage `st` (over all blocks): block `b = st / l` runs increasing strides
    /// when `increasing XOR (b odd)`.
    pub fn stride(&self, st: u64) -> u64 {
        let (blk, sl) = (st / self.l, st % self.l);
        let inc = self.increasing ^ (blk % 2 == 1);
        1 << if inc { sl } else { self.l - 1 - sl }
    }
}

/// Body params, in order.
pub const X: u32 = 0;
pub const TW: u32 = 1;
pub const DY: u32 = 2;
pub const XS: u32 = 3;
pub const GS: u32 = 4;
pub const DX: u32 = 5;
pub const DTW: u32 = 6;
const NAMES: [&str; 7] = ["x", "tw", "dy", "xs", "gs", "dx", "dtw"];

/// Whether `body`'s params are the f32 butterfly-backward params (plus `dbias` with a
/// bias).
pub fn params_match(body: &Body, has_bias: bool) -> bool {
    let want = NAMES.len() + usize::from(has_bias);
    body.params.len() == want
        && body.params.iter().all(|p| p.dtype == DType::F32)
        && body
            .params
            .iter()
            .zip(NAMES.iter().chain(["dbias"].iter()))
            .all(|(p, n)| p.name == *n)
}

/// The first two sections (rows, then twiddle gradients) for `geo` with `rows` rows.
pub fn build(geo: &Geo, rows: &Expr) -> Body {
    let mut b = BodyBuilder::new();
    for name in NAMES {
        b.param(name, DType::F32, Access::Read);
    }
    rows_section(&mut b, geo, rows.clone());
    twiddle_section(&mut b, geo, rows.clone());
    let mut body = b.finish();
    fold_stmts(&mut body.stmts);
    body
}

/// Folds integer constants (`c1 op c2`, `x + 0`, `x · 1`, `x · 0`, `x / 1`, `x % 1`,
/// `(x + c1) + c2`, `(x · c1) · c2`), bottom-up, as the lowering's finishing pass does.
/// Matching folds both sides, so it compares canonical forms; every rule is exact on the
/// non-negative index arithmetic of bodies.
pub fn fold_stmts(stmts: &mut [Stmt]) {
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

fn fold(e: &mut Expr) {
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
    use Expr::Int;
    let Expr::Bin(op, a, b) = e else {
        return None;
    };
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
        (BinOp::Add | BinOp::Mul, Expr::Bin(inner, x, c1), Int(c2)) if inner == op => {
            let Int(c1) = **c1 else {
                return None;
            };
            let c = if *op == BinOp::Add {
                c1.checked_add(*c2)?
            } else {
                c1.checked_mul(*c2)?
            };
            Some(Expr::bin(*op, (**x).clone(), Int(c)))
        }
        _ => None,
    }
}

fn for_maybe(b: &mut BodyBuilder, n: u64, f: impl FnOnce(&mut BodyBuilder, Expr)) {
    if n == 1 {
        f(b, Expr::Int(0));
    } else {
        b.serial(0, n as i64, |b, i| f(b, Expr::Var(i)));
    }
}

fn for_pairs(
    b: &mut BodyBuilder,
    half: i64,
    stride: i64,
    f: impl FnOnce(&mut BodyBuilder, Expr, Expr, Expr),
) {
    if stride >= 8 {
        for_maybe(b, (half / stride) as u64, |b, blk| {
            b.for_(LoopKind::Vector, 0, stride, |b, low| {
                let i = blk.clone() * stride + low;
                let p = blk * (2 * stride) + low;
                let q = p.clone() + stride;
                f(b, i, p, q);
            });
        });
    } else {
        b.for_(LoopKind::Vector, 0, half, |b, i| {
            let p = i * 2 - Expr::Var(i).rem(Expr::Int(stride));
            let q = p.clone() + stride;
            f(b, Expr::Var(i), p, q);
        });
    }
}

fn twiddle(slab: Expr, st: u64, stages: u64, half: i64, i: Expr, c: i64) -> Expr {
    Expr::load(TW, ((slab * stages as i64 + st as i64) * half + i) * 4 + c)
}

/// Section 1: per row, forward recompute into `xs`, backward into `gs`, `dx`.
fn rows_section(b: &mut BodyBuilder, geo: &Geo, rows: Expr) {
    let (groups, stacks, stages) = (geo.groups as i64, geo.stacks as i64, geo.stages());
    let (n, half) = (geo.n as i64, geo.n as i64 / 2);
    let (n_in, n_out) = (geo.n_in as i64, geo.n_out as i64);
    let total = rows.clone() * groups;
    let direct_dx = geo.direct_dx();
    b.for_(LoopKind::Parallel, 0, total, |b, r| {
        let (m, g) = if groups == 1 {
            (Expr::Var(r), Expr::Int(0))
        } else {
            (Expr::Var(r) / groups, Expr::Var(r).rem(Expr::Int(groups)))
        };
        let xbase = |slab: &Expr, st: u64| {
            ((slab.clone() * stages as i64 + st as i64) * rows.clone() + m.clone()) * n
        };
        let gbase = |slab: &Expr, st: u64| {
            ((slab.clone() * (stages as i64 + 1) + st as i64) * rows.clone() + m.clone()) * n
        };
        for_maybe(b, geo.stacks, |b, s| {
            let slab = g.clone() * stacks + s.clone();
            let x0 = xbase(&slab, 0);
            b.for_(LoopKind::Vector, 0, n_in, |b, j| {
                b.store(XS, x0.clone() + j, Expr::load(X, r * n_in + j));
            });
            if n_in < n {
                b.for_(LoopKind::Vector, n_in, n, |b, j| {
                    b.store(XS, x0.clone() + j, Expr::f32(0.0));
                });
            }
            for st in 0..stages.saturating_sub(1) {
                let stride = geo.stride(st) as i64;
                let (src, dst) = (xbase(&slab, st), xbase(&slab, st + 1));
                for_pairs(b, half, stride, |b, i, pp, q| {
                    let t = |c| twiddle(slab.clone(), st, stages, half, i.clone(), c);
                    let xp = b.let_(Expr::load(XS, src.clone() + pp.clone()));
                    let xq = b.let_(Expr::load(XS, src.clone() + q.clone()));
                    b.store(XS, dst.clone() + pp, t(0) * xp + t(1) * xq);
                    b.store(XS, dst.clone() + q, t(2) * xp + t(3) * xq);
                });
            }
            let top = gbase(&slab, stages);
            let len = Expr::Int(n).min(Expr::Int(n_out) - s.clone() * n);
            b.for_(LoopKind::Vector, 0, len.clone(), |b, j| {
                let d = Expr::load(DY, r * n_out + s.clone() * n + j);
                b.store(GS, top.clone() + j, d);
            });
            if n_out % n != 0 {
                b.for_(LoopKind::Vector, len, n, |b, j| {
                    b.store(GS, top.clone() + j, Expr::f32(0.0));
                });
            }
            for st in (0..stages).rev() {
                let stride = geo.stride(st) as i64;
                let src = gbase(&slab, st + 1);
                let (dst_arg, dst) = if st == 0 && direct_dx {
                    (DX, Expr::Var(r) * n_in)
                } else {
                    (GS, gbase(&slab, st))
                };
                for_pairs(b, half, stride, |b, i, pp, q| {
                    let t = |c| twiddle(slab.clone(), st, stages, half, i.clone(), c);
                    let gp = b.let_(Expr::load(GS, src.clone() + pp.clone()));
                    let gq = b.let_(Expr::load(GS, src.clone() + q.clone()));
                    b.store(dst_arg, dst.clone() + pp, t(0) * gp + t(2) * gq);
                    b.store(dst_arg, dst.clone() + q, t(1) * gp + t(3) * gq);
                });
            }
        });
        if direct_dx {
            return;
        }
        b.for_(LoopKind::Vector, 0, n_in, |b, j| {
            let mut sum: Option<Expr> = None;
            for s in 0..stacks {
                let slab = g.clone() * stacks + s;
                let term = Expr::load(GS, gbase(&slab, 0) + j);
                sum = Some(match sum {
                    None => term,
                    Some(acc) => acc + term,
                });
            }
            b.store(DX, r * n_in + j, sum.unwrap_or(Expr::f32(0.0)));
        });
    });
}

/// Section 2: parallel over `(slab, stage)`: zero the stage's twiddle gradient, then sum
/// `g ⊗ x` over all rows in order, one branch per distinct stride.
fn twiddle_section(b: &mut BodyBuilder, geo: &Geo, rows: Expr) {
    let stages = geo.stages();
    let (n, half) = (geo.n as i64, geo.n as i64 / 2);
    let st_i = stages as i64;
    let total = (geo.groups * geo.stacks * stages) as i64;
    b.for_(LoopKind::Parallel, 0, total, |b, w| {
        let slab = Expr::Var(w) / st_i;
        let st = b.let_(Expr::Var(w).rem(Expr::Int(st_i)));
        b.for_(LoopKind::Vector, 0, half * 4, |b, e| {
            b.store(DTW, w * (half * 4) + e, Expr::f32(0.0));
        });
        let mut by_stride: Vec<(i64, Vec<u64>)> = Vec::new();
        for s in 0..stages {
            let stride = geo.stride(s) as i64;
            match by_stride.iter_mut().find(|(v, _)| *v == stride) {
                Some((_, list)) => list.push(s),
                None => by_stride.push((stride, vec![s])),
            }
        }
        for (stride, list) in by_stride {
            let cond = list
                .iter()
                .map(|&s| Expr::from(st).eq_(Expr::Int(s as i64)))
                .reduce(|a, c| a + c)
                .unwrap_or(Expr::Int(0));
            b.if_(cond, |b| {
                b.serial(0, rows.clone(), |b, m| {
                    let xrow = (w * rows.clone() + m) * n;
                    let grow = ((Expr::Var(w) + slab.clone() + 1) * rows.clone() + m) * n;
                    for_pairs(b, half, stride, |b, i, pp, q| {
                        let xp = b.let_(Expr::load(XS, xrow.clone() + pp.clone()));
                        let xq = b.let_(Expr::load(XS, xrow.clone() + q.clone()));
                        let gp = b.let_(Expr::load(GS, grow.clone() + pp));
                        let gq = b.let_(Expr::load(GS, grow + q));
                        let base = (w * half + i) * 4;
                        for (c, prod) in [(0, gp * xp), (1, gp * xq), (2, gq * xp), (3, gq * xq)] {
                            let at = base.clone() + c;
                            b.store(DTW, at.clone(), Expr::load(DTW, at) + prod);
                        }
                    });
                });
            });
        }
    });
}

/// Structural equality of statement lists up to a consistent renaming of loop variables
/// and locals (`a`'s ids to `b`'s).
#[derive(Default)]
pub struct Renaming {
    /// `a`'s id → `b`'s id, and back (the renaming must be one-to-one).
    vars: (HashMap<u32, u32>, HashMap<u32, u32>),
    locals: (HashMap<u32, u32>, HashMap<u32, u32>),
}

impl Renaming {
    fn bind(maps: &mut (HashMap<u32, u32>, HashMap<u32, u32>), a: u32, b: u32) -> bool {
        *maps.0.entry(a).or_insert(b) == b && *maps.1.entry(b).or_insert(a) == a
    }

    pub fn same_stmts(&mut self, a: &[Stmt], b: &[Stmt]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| self.same_stmt(x, y))
    }

    fn same_stmt(&mut self, a: &Stmt, b: &Stmt) -> bool {
        match (a, b) {
            (
                Stmt::For {
                    var: va,
                    start: sa,
                    end: ea,
                    kind: ka,
                    body: ba,
                },
                Stmt::For {
                    var: vb,
                    start: sb,
                    end: eb,
                    kind: kb,
                    body: bb,
                },
            ) => {
                ka == kb
                    && self.same_expr(sa, sb)
                    && self.same_expr(ea, eb)
                    && Self::bind(&mut self.vars, va.0, vb.0)
                    && self.same_stmts(ba, bb)
            }
            (
                Stmt::Let {
                    local: la,
                    value: xa,
                },
                Stmt::Let {
                    local: lb,
                    value: xb,
                },
            )
            | (
                Stmt::Assign {
                    local: la,
                    value: xa,
                },
                Stmt::Assign {
                    local: lb,
                    value: xb,
                },
            ) => self.same_expr(xa, xb) && Self::bind(&mut self.locals, la.0, lb.0),
            (
                Stmt::Store {
                    arg: aa,
                    index: ia,
                    value: xa,
                },
                Stmt::Store {
                    arg: ab,
                    index: ib,
                    value: xb,
                },
            ) => aa == ab && self.same_expr(ia, ib) && self.same_expr(xa, xb),
            (Stmt::If { cond: ca, then: ta }, Stmt::If { cond: cb, then: tb }) => {
                self.same_expr(ca, cb) && self.same_stmts(ta, tb)
            }
            _ => false,
        }
    }

    fn same_expr(&mut self, a: &Expr, b: &Expr) -> bool {
        match (a, b) {
            (Expr::F32(x), Expr::F32(y)) => x.to_bits() == y.to_bits(),
            (Expr::Int(x), Expr::Int(y)) => x == y,
            (Expr::Sym(x), Expr::Sym(y)) => x == y,
            (Expr::Var(x), Expr::Var(y)) => Self::bind(&mut self.vars, x.0, y.0),
            (Expr::Local(x), Expr::Local(y)) => Self::bind(&mut self.locals, x.0, y.0),
            (Expr::Load { arg: aa, index: ia }, Expr::Load { arg: ab, index: ib }) => {
                aa == ab && self.same_expr(ia, ib)
            }
            (Expr::Bin(oa, xa, ya), Expr::Bin(ob, xb, yb)) => {
                oa == ob && self.same_expr(xa, xb) && self.same_expr(ya, yb)
            }
            (Expr::Un(oa, xa), Expr::Un(ob, xb)) => oa == ob && self.same_expr(xa, xb),
            (
                Expr::Select {
                    cond: ca,
                    then: ta,
                    els: ea,
                },
                Expr::Select {
                    cond: cb,
                    then: tb,
                    els: eb,
                },
            ) => self.same_expr(ca, cb) && self.same_expr(ta, tb) && self.same_expr(ea, eb),
            _ => false,
        }
    }
}
