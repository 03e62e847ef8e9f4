//! Online Hadamard rotation before int8 (QuaRot-style), the `rotate` setting.
//!
//! A dense site `y = W x` is rewritten as `y = (W Hᵀ)(H x)` with `H` an orthonormal
//! Walsh–Hadamard matrix: the f32 product is unchanged (`HᵀH = I`), but `H x` spreads an
//! outlier of `x` over all its coordinates, so the per-token absmax int8 scale of `H x` is
//! set by the vector's norm rather than by its largest entry, and likewise each row of
//! `W Hᵀ` for the per-channel weight scale. This matters most where activations are
//! heavy-tailed (the SwiGLU product read by `mlp.down`).
//!
//! Both sides are one existing op, `butterfly v, hadamard_twiddles` (twiddles ±1/√2, what
//! the `hadamard` linear kind builds), so every backend already runs them:
//!
//! - **activation side** `H x`: a run-time `butterfly` right before the per-token `quantize`;
//! - **weight side** `W Hᵀ`: `H` is symmetric, so row `i` of `W Hᵀ` is `H wᵢ`, the same
//!   `butterfly` applied to `W` with its rows as tokens. It depends on parameters only: a
//!   weight-time node, evaluated once at load like the weight's `quantize`, which reads it.
//!
//! **Widths that are not a power of two** (`mixed`: `d_model = 96`): `H` is block-diagonal,
//! one Walsh–Hadamard block of size `n` = the largest power of two dividing the input width
//! `K` (96 = 3 · 32: three blocks of 32), which is still orthonormal; a butterfly with
//! `groups = K / n` is exactly that. An odd `K` has no block of 2 or more: the site is not
//! rotated and keeps [`super::Scheme::Int8Dynamic`] (the report shows it). A per-head weight
//! `[G, N, K]` rotates each group's `K` the same way (the blocks never straddle groups since
//! `n` divides `K`).
//!
//! The twiddles stay f32 even with `butterfly = fp16`: `±1/√2` is not exact in f16, and the
//! activation-side and weight-side `H` must cancel exactly. [`is_rotation`] tells the site
//! finder that such a butterfly is not a site.

use std::collections::HashMap;

use bfly_ir::{Graph, IrError, Loc, NodeId, Op, StrideOrder, Value};

/// The Walsh–Hadamard block size for an input width `k`: the largest power of two dividing
/// it, or `None` when that is 1 (odd `k`: no rotation).
pub fn block_size(k: u64) -> Option<u64> {
    if k == 0 {
        return None;
    }
    let n = 1u64 << k.trailing_zeros();
    (n >= 2).then_some(n)
}

/// The input width `K` of a dense weight `[N, K]` or `[G, N, K]`.
pub fn input_width(g: &Graph, w: Value) -> Option<u64> {
    let ty = g.value_type(w);
    match ty.rank() {
        2 | 3 => ty.last_const(),
        _ => None,
    }
}

/// Is `id` an online rotation this pass inserted: a `butterfly` whose twiddles are a bare
/// `hadamard_twiddles` and whose every user is an activation `quantize`? It is not a site.
pub fn is_rotation(g: &Graph, id: NodeId) -> bool {
    let ops = g.operands(id);
    let hadamard = ops
        .get(1)
        .is_some_and(|t| matches!(g.node(t.node).op, Op::HadamardTwiddles { .. }));
    let users = g.users(id);
    hadamard
        && matches!(g.node(id).op, Op::Butterfly { .. })
        && !users.is_empty()
        && users.iter().all(|&u| matches!(g.node(u).op, Op::Quantize))
}

/// Builds rotations, sharing them: an activation read by several sites (q, k, v) is rotated
/// once, a weight once, and one twiddle node serves every rotation of a shape.
#[derive(Default)]
pub struct Rotator {
    twiddles: HashMap<(u64, u64), Value>,
    rotated: HashMap<(Value, u64), Value>,
}

impl Rotator {
    /// `H v` over the last axis of `v`, in Walsh–Hadamard blocks of `n`.
    fn hadamard(
        &mut self,
        g: &mut Graph,
        v: Value,
        n: u64,
        loc: Option<Loc>,
    ) -> Result<Value, IrError> {
        let width = g
            .value_type(v)
            .last_const()
            .ok_or_else(|| IrError::new(format!("rotation of {v}: the last axis is not const")))?;
        if n < 2 || width % n != 0 {
            return Err(IrError::new(format!(
                "rotation of {v}: block {n} does not divide the width {width}"
            )));
        }
        let groups = width / n;
        let tw = match self.twiddles.get(&(groups, n)) {
            Some(&t) => t,
            None => {
                let op = Op::HadamardTwiddles {
                    groups,
                    stacks: 1,
                    blocks: 1,
                    n,
                };
                let t = g.add1(op, &[], loc)?;
                self.twiddles.insert((groups, n), t);
                t
            }
        };
        let op = Op::Butterfly {
            n_in: n,
            n_out: n,
            stride: StrideOrder::Increasing,
        };
        g.add1(op, &[v, tw], loc)
    }

    /// `H v` over the last axis of `v`, shared per `(v, n)`. The same op rotates both sides of
    /// a site: an activation `x` (`H x`, run time) and a weight `W` (row `i` of `W Hᵀ` is `H wᵢ`
    /// since `H` is symmetric; weight time, as it reads parameters only).
    pub fn rotate(
        &mut self,
        g: &mut Graph,
        v: Value,
        n: u64,
        loc: Option<Loc>,
    ) -> Result<Value, IrError> {
        if let Some(&r) = self.rotated.get(&(v, n)) {
            return Ok(r);
        }
        let r = self.hadamard(g, v, n, loc)?;
        self.rotated.insert((v, n), r);
        Ok(r)
    }
}

/// The block size a dense site `matmul x, w` rotates with, if it can.
pub fn site_block(g: &Graph, w: Value) -> Option<u64> {
    input_width(g, w).and_then(block_size)
}

#[cfg(test)]
mod tests {
    use super::block_size;

    #[test]
    fn block_is_the_largest_power_of_two_factor() {
        assert_eq!(block_size(64), Some(64));
        assert_eq!(block_size(96), Some(32));
        assert_eq!(block_size(6), Some(2));
        assert_eq!(block_size(7), None);
        assert_eq!(block_size(0), None);
    }
}
