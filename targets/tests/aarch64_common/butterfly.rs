//! One butterfly layer as a lowered case, shared by the f32 and f16 butterfly tests: the
//! shape, an optional bias and a fused epilogue, with the twiddle param made by the caller
//! (an f32 param, or f16-representable values stored as f16).

use super::fuse;
use crate::lower_common::{Case, Prepared};
use bfly_ir::init::SplitMix64;
use bfly_ir::{Op, StrideOrder, Value, butterfly_width};

#[derive(Clone, Copy, Debug)]
pub enum Epi {
    None,
    Add,
    SiluMul,
    Gelu,
}

#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub n_in: u64,
    pub n_out: u64,
    pub groups: u64,
    pub blocks: u64,
    pub inc: bool,
    pub bias: bool,
    pub epi: Epi,
}

impl Shape {
    /// A random layer: n = 2 ..= 512, n_in in the upper half of the width (so the kernel pads),
    /// n_out up to 3n (truncated or stacked), 1–3 groups, 1–2 blocks, either stride order,
    /// a bias one time in three, and an epilogue drawn from `epilogues` (repeat `Epi::None`
    /// to weight it).
    pub fn random(rng: &mut SplitMix64, epilogues: &[Epi]) -> Shape {
        let log = 1 + rng.next_u64() % 9;
        let n = 1u64 << log;
        let n_in = if n == 2 {
            2
        } else {
            n / 2 + 1 + rng.next_u64() % (n / 2)
        };
        let n_out = 1 + rng.next_u64() % (3 * n);
        let epi = epilogues[(rng.next_u64() % epilogues.len() as u64) as usize];
        Shape {
            n_in,
            n_out,
            groups: 1 + rng.next_u64() % 3,
            blocks: 1 + rng.next_u64() % 2,
            inc: rng.next_u64().is_multiple_of(2),
            bias: rng.next_u64().is_multiple_of(3),
            epi,
        }
    }

    /// The butterfly width (n_in rounded up to a power of two).
    pub fn n(&self) -> u64 {
        butterfly_width(self.n_in)
    }

    /// Stages per (group, stack): blocks · log2 n.
    pub fn stages(&self) -> u64 {
        self.blocks * u64::from(self.n().trailing_zeros())
    }
}

/// `s` as a graph on `c` (x, twiddles of `[groups, stacks, blocks, log2 n, n/2, 2, 2]` from
/// `twiddles`, bias, the epilogue fused with the butterfly), lowered and evaluated.
pub fn butterfly_case(
    mut c: Case,
    s: Shape,
    twiddles: impl FnOnce(&mut Case, &[u64]) -> Value,
) -> Prepared {
    let n = s.n();
    let stacks = s.n_out.div_ceil(n);
    let stages = u64::from(n.trailing_zeros());
    let x = c.act(s.groups * s.n_in);
    let tw = twiddles(&mut c, &[s.groups, stacks, s.blocks, stages, n / 2, 2, 2]);
    let mut args = vec![x, tw];
    if s.bias {
        args.push(c.param(&[s.groups * s.n_out]));
    }
    let stride = if s.inc {
        StrideOrder::Increasing
    } else {
        StrideOrder::Decreasing
    };
    let op = Op::Butterfly {
        n_in: s.n_in,
        n_out: s.n_out,
        stride,
    };
    let y = c.op1(op, &args);
    let out = match s.epi {
        Epi::None => y,
        Epi::Add => {
            let res = c.act(s.groups * s.n_out);
            let a = c.op1(Op::Add, &[res, y]);
            fuse(&mut c, &[y, a]);
            a
        }
        Epi::SiluMul => {
            let up = c.act(s.groups * s.n_out);
            let a = c.op1(Op::Silu, &[y]);
            let m = c.op1(Op::Mul, &[a, up]);
            fuse(&mut c, &[y, a, m]);
            m
        }
        Epi::Gelu => {
            let a = c.op1(Op::Gelu, &[y]);
            fuse(&mut c, &[y, a]);
            a
        }
    };
    c.out(out);
    c.prepare()
}
