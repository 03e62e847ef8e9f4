//! Random elementwise expressions for property tests, their lowering to Kernel IR and a
//! Rust evaluation with the backend's exact semantics.

use super::{Buf, Rng, exp_mirror, fmax, fmin, tanh_mirror};
use bfly_ir::DType;
use bfly_ir::kernel::*;
use proptest::prelude::*;

pub const LEN: usize = 220;

#[derive(Clone, Debug)]
pub enum E {
    /// `x[stride·i + off]`
    Load(i64, i64),
    /// `x[2·i - i % s + k·s]`: the `k`th element of butterfly pair `i` at stride `s`
    Pair(i64, i64),
    /// `s[k]`
    Bcast(i64),
    Const(f32),
    /// `f32(c·i - 3)`
    Iota(i64),
    /// `f32(q[stride·i + 1])` from an i8 param
    Dequant(i64),
    /// `h[stride·i]` from an f16 param
    Half(i64),
    Bin(u8, Box<E>, Box<E>),
    Un(u8, Box<E>),
    /// `select(a < b, c, d)`
    Sel(Box<E>, Box<E>, Box<E>, Box<E>),
    /// `select(c·i OP k, a, b)` with OP one of `<`, `<=`, `==` (a per-lane int comparison)
    IdxSel(u8, i64, i64, Box<E>, Box<E>),
}

impl E {
    /// Whether vectorizing needs the loop to start at a multiple of 4: `i % s` for s ≥ 8 is
    /// only known per lane when lane 0 is (vector iterations start every 4).
    pub fn needs_aligned_start(&self) -> bool {
        match self {
            E::Pair(s, _) => *s >= 8,
            E::Bin(_, a, b) | E::IdxSel(_, _, _, a, b) => {
                a.needs_aligned_start() || b.needs_aligned_start()
            }
            E::Un(_, a) => a.needs_aligned_start(),
            E::Sel(a, b, c, d) => [a, b, c, d].iter().any(|x| x.needs_aligned_start()),
            _ => false,
        }
    }
}

fn leaf() -> impl Strategy<Value = E> {
    prop_oneof![
        3 => (0i64..4, 0i64..6).prop_map(|(s, o)| E::Load(s, o)),
        1 => (0i64..4).prop_map(E::Bcast),
        1 => (prop_oneof![Just(1i64), Just(2), Just(4), Just(8)], 0i64..2).prop_map(|(s, k)| E::Pair(s, k)),
        1 => prop_oneof![Just(0.0f32), Just(-1.5), Just(2.0), Just(0.5), -4.0f32..4.0].prop_map(E::Const),
        1 => (-3i64..4).prop_map(E::Iota),
        1 => (0i64..3).prop_map(E::Dequant),
        1 => (0i64..3).prop_map(E::Half),
    ]
}

/// Any expression; `exact: true` leaves out `exp`, `tanh` (which oracles may compute
/// differently) and float `min`/`max` (whose NaN handling differs between Rust and Cranelift).
pub fn expr_with(exact: bool) -> impl Strategy<Value = E> {
    leaf().prop_recursive(4, 24, 4, move |inner| {
        prop_oneof![
            3 => (0u8..6, inner.clone(), inner.clone())
                .prop_filter("min/max excluded", move |(o, _, _)| !exact || *o < 4)
                .prop_map(|(o, a, b)| E::Bin(o, Box::new(a), Box::new(b))),
            2 => (0u8..7, inner.clone())
                .prop_filter("exp/tanh excluded", move |(o, _)| !exact || !(2..=3).contains(o))
                .prop_map(|(o, a)| E::Un(o, Box::new(a))),
            1 => (inner.clone(), inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c, d)| E::Sel(Box::new(a), Box::new(b), Box::new(c), Box::new(d))),
            1 => (
                0u8..3,
                -3i64..4,
                prop_oneof![-2i64..40, Just(1i64 << 40), Just(-(1i64 << 40))],
                inner.clone(),
                inner,
            )
                .prop_map(|(o, c, k, a, b)| E::IdxSel(o, c, k, Box::new(a), Box::new(b))),
        ]
    })
}

/// Param numbers of the inputs.
pub struct Ins {
    pub x: u32,
    pub s: u32,
    pub q: u32,
    pub h: u32,
}

pub fn build(e: &E, p: &Ins, i: LoopVar) -> Expr {
    let iv = || Expr::Var(i);
    match e {
        E::Load(st, o) => Expr::load(p.x, iv() * *st + *o),
        E::Bcast(k) => Expr::load(p.s, Expr::int(*k)),
        E::Pair(s, k) => Expr::load(p.x, iv() * 2 - iv() % *s + *k * *s),
        E::Const(c) => Expr::f32(*c),
        E::Iota(c) => (iv() * *c - 3).to_f32(),
        E::Dequant(st) => Expr::load(p.q, iv() * *st + 1).to_f32(),
        E::Half(st) => Expr::load(p.h, iv() * *st),
        E::Bin(o, a, b) => {
            let (a, b) = (build(a, p, i), build(b, p, i));
            match o {
                0 => a + b,
                1 => a - b,
                2 => a * b,
                3 => a / b,
                4 => a.min(b),
                _ => a.max(b),
            }
        }
        E::Un(o, a) => {
            let a = build(a, p, i);
            match o {
                0 => -a,
                1 => a.abs(),
                2 => a.exp(),
                3 => a.tanh(),
                4 => a.abs().sqrt(),
                5 => a.round(),
                _ => a.lt(Expr::f32(0.0)).to_f32(),
            }
        }
        E::Sel(a, b, c, d) => Expr::select(
            build(a, p, i).lt(build(b, p, i)),
            build(c, p, i),
            build(d, p, i),
        ),
        E::IdxSel(o, c, k, a, b) => {
            let (x, y) = (iv() * *c, Expr::int(*k));
            let cond = match o {
                0 => x.lt(y),
                1 => x.le(y),
                _ => x.eq_(y),
            };
            Expr::select(cond, build(a, p, i), build(b, p, i))
        }
    }
}

pub struct Data {
    pub x: Vec<f32>,
    pub s: Vec<f32>,
    pub q: Vec<i8>,
    pub h: Vec<u16>,
}

impl Data {
    /// Random inputs; `specials` plants NaN, inf, ±0 and a subnormal among them.
    pub fn new(seed: u64, specials: bool) -> Data {
        let mut r = Rng(seed);
        let mut x = r.vec(LEN, -3.0, 3.0);
        // A few specials so NaN/inf/±0 flow through every op.
        for (k, v) in [0.0, -0.0, f32::INFINITY, f32::NAN, 1e-40]
            .into_iter()
            .enumerate()
            .filter(|_| specials)
        {
            x[(seed as usize * 7 + k * 31) % LEN] = v;
        }
        Data {
            x,
            s: vec![0.75, -2.0, 0.0, 3.5],
            q: (0..LEN).map(|_| r.next_u64() as i8).collect(),
            h: (0..LEN)
                .map(|_| half::f16::from_f32(r.f32(-8.0, 8.0)).to_bits())
                .collect(),
        }
    }

    pub fn bufs(&self, outs: usize) -> Vec<Buf> {
        let mut v = vec![
            Buf::F32(self.x.clone()),
            Buf::F32(self.s.clone()),
            Buf::I8(self.q.clone()),
            Buf::F16(self.h.clone()),
        ];
        for _ in 0..outs {
            v.push(Buf::F32(vec![-7.0; LEN]));
        }
        v
    }
}

/// The backend's semantics in Rust.
pub fn mirror(e: &E, d: &Data, i: i64) -> f32 {
    let at = |st: i64, o: i64| (st * i + o) as usize;
    match e {
        E::Load(st, o) => d.x[at(*st, *o)],
        E::Bcast(k) => d.s[*k as usize],
        E::Pair(s, k) => d.x[(2 * i - i % s + k * s) as usize],
        E::Const(c) => *c,
        E::Iota(c) => (c * i - 3) as f32,
        E::Dequant(st) => f32::from(d.q[at(*st, 1)]),
        E::Half(st) => half::f16::from_bits(d.h[at(*st, 0)]).to_f32(),
        E::Bin(o, a, b) => {
            let (a, b) = (mirror(a, d, i), mirror(b, d, i));
            match o {
                0 => a + b,
                1 => a - b,
                2 => a * b,
                3 => a / b,
                4 => fmin(a, b),
                _ => fmax(a, b),
            }
        }
        E::Un(o, a) => {
            let a = mirror(a, d, i);
            match o {
                0 => -a,
                1 => a.abs(),
                2 => exp_mirror(a),
                3 => tanh_mirror(a),
                4 => a.abs().sqrt(),
                5 => a.round_ties_even(),
                _ => f32::from(u8::from(a < 0.0)),
            }
        }
        E::Sel(a, b, c, dd) => {
            let (t, f) = (mirror(c, d, i), mirror(dd, d, i));
            if mirror(a, d, i) < mirror(b, d, i) {
                t
            } else {
                f
            }
        }
        E::IdxSel(o, c, k, a, b) => {
            let x = c * i;
            let cond = match o {
                0 => x < *k,
                1 => x <= *k,
                _ => x == *k,
            };
            let (t, f) = (mirror(a, d, i), mirror(b, d, i));
            if cond { t } else { f }
        }
    }
}

pub fn inputs(b: &mut BodyBuilder) -> Ins {
    Ins {
        x: b.param("x", DType::F32, Access::Read),
        s: b.param("s", DType::F32, Access::Read),
        q: b.param("q", DType::I8, Access::Read),
        h: b.param("h", DType::F16, Access::Read),
    }
}

pub fn end_expr(start: i64, len: i64, runtime: bool) -> Expr {
    if runtime {
        Expr::sym(RtSym::T) + start
    } else {
        Expr::int(start + len)
    }
}
