//! `compose-butterflies`: two butterflies in a row become one with the blocks of both
//! (DESIGN §4 "Folding": "two butterflies compose by concatenating blocks").
//!
//! A butterfly with `B` blocks runs, on the input zero-padded to `n`, the stages of block 0,
//! then block 1, …, where block `b` uses the stride order `inc_b = increasing XOR (b odd)`
//! (`increasing` is the op's `stride` attribute). So `butterfly₂(butterfly₁(x))` runs
//! `B₁` blocks of `T₁` and then `B₂` blocks of `T₂`, which is a single butterfly over the
//! twiddles `concat(T₁, T₂)` along the block axis (`[G, S, B, L, n/2, 2, 2]`, axis 2) — if
//! every block keeps its stride order. In the composed op (attribute `stride₁`) block
//! `B₁ + b` is `T₂`'s block `b` and runs in `stride₁ XOR ((B₁ + b) odd)`; originally it ran in
//! `stride₂ XOR (b odd)`. Since `(B₁ + b) odd = (B₁ odd) XOR (b odd)`, these agree for every
//! `b` iff
//!
//! ```text
//! stride₂ = stride₁ XOR (B₁ odd)
//! ```
//!
//! i.e. after an even number of blocks the second op must start in the same order as the
//! first, after an odd number in the opposite one. Otherwise the pair is skipped (an identity
//! block to fix the parity would cost `L` stages, more than it saves).
//!
//! Nothing else may happen between the two: the first must produce exactly the second's
//! input, so both have the same width `n` and groups, one stack each (`S = 1`: more stacks
//! would replicate and concatenate, which is not a chain of stages), the first has no bias
//! (a bias between stages does not commute with them) and `out₁ = n` (no truncation), the
//! second has `in₂ = n`. The first's `in₁ ≤ n` may pad: the composed op pads the same way.
//! The second's bias and `out₂` carry over. The first's output must be read only by the
//! second (else it is still needed), and both twiddle tensors must be weight-time so the
//! concatenation is too.
//!
//! The composed op performs the same stage updates on the same values in the same order, so
//! it is bit-exact, not just exact up to rounding.

use bfly_grammar::Diagnostic;
use bfly_ir::{Graph, NodeId, Op, TwiddleShape, Value};

use super::fold_util::{add1, forward, sole_user};
use super::weight_time::WeightTime;
use super::{Pass, PassContext};

pub struct ComposeButterflies;

impl Pass for ComposeButterflies {
    fn name(&self) -> &'static str {
        "compose-butterflies"
    }

    fn description(&self) -> &'static str {
        "merge a butterfly feeding another into one with the blocks of both"
    }

    fn run(&self, g: &mut Graph, cx: &PassContext<'_>) -> Result<(), Vec<Diagnostic>> {
        compose_butterflies(g)
            .map(|_| ())
            .map_err(|m| vec![cx.bug(self.name(), m)])
    }
}

/// A legal pair: `second(first(x, t1), t2 [, bias])`.
struct Pair {
    second: NodeId,
    x: Value,
    t1: Value,
    t2: Value,
    bias: Option<Value>,
    op: Op,
}

/// Composes every legal chain (a chain of k butterflies becomes one); returns how many
/// butterflies were merged away.
pub fn compose_butterflies(g: &mut Graph) -> Result<usize, String> {
    let mut merged = 0;
    // Each composition removes a butterfly, so this ends; schedule order makes a chain fold
    // from its start, the composed op becoming the first of the next pair.
    loop {
        // One memo per unchanged graph (see `WeightTime`).
        let mut wt = WeightTime::default();
        let order = g.topo_order().unwrap_or_default();
        let Some(pair) = order.into_iter().find_map(|id| legal_pair(g, &mut wt, id)) else {
            return Ok(merged);
        };
        let tw = add1(g, Op::Concat { axis: 2 }, &[pair.t1, pair.t2], pair.second)?;
        let mut operands = vec![pair.x, tw];
        operands.extend(pair.bias);
        let y = add1(g, pair.op, &operands, pair.second)?;
        // Removes the second butterfly, and with it the first.
        forward(g, Value::first(pair.second), y);
        merged += 1;
    }
}

fn legal_pair(g: &Graph, wt: &mut WeightTime, second: NodeId) -> Option<Pair> {
    let Op::Butterfly {
        n_in: in2,
        n_out: out2,
        stride: stride2,
    } = g.node(second).op
    else {
        return None;
    };
    let ops2 = g.operands(second);
    let (&v1, &t2) = (ops2.first()?, ops2.get(1)?);
    let first = v1.node;
    let Op::Butterfly {
        n_in: in1,
        n_out: out1,
        stride: stride1,
    } = g.node(first).op
    else {
        return None;
    };
    let [x, t1] = g.operands(first)[..] else {
        return None; // the first has a bias
    };
    let s1 = TwiddleShape::of(g.value_type(t1), "twiddles").ok()?;
    let s2 = TwiddleShape::of(g.value_type(t2), "twiddles").ok()?;
    let n = s1.n;
    let shapes = s2.n == n
        && s1.groups == s2.groups
        && s1.stacks == 1
        && s2.stacks == 1
        && out1 == n
        && in2 == n;
    let parity = stride2.is_increasing() == (stride1.is_increasing() ^ (s1.blocks % 2 == 1));
    let legal = shapes
        && parity
        && sole_user(g, v1) == Some(second)
        && g.value_type(t1).dtype == g.value_type(t2).dtype
        && wt.is(g, t1)
        && wt.is(g, t2);
    legal.then(|| Pair {
        second,
        x,
        t1,
        t2,
        bias: ops2.get(2).copied(),
        op: Op::Butterfly {
            n_in: in1,
            n_out: out2,
            stride: stride1,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::fold_util::testing::{count_ops, eval, param};
    use bfly_ir::{DType, Dim, Output, StrideOrder, Type, print_graph, verify};

    const INC: StrideOrder = StrideOrder::Increasing;
    const DEC: StrideOrder = StrideOrder::Decreasing;

    /// One link of a chain: `(in, out, blocks, stride, bias)`, all of width n = 8, 2 groups.
    type Link = (u64, u64, u64, StrideOrder, bool);

    fn chain(links: &[Link]) -> Graph {
        let mut g = Graph::new("t");
        g.set_bound("T", 3);
        let groups = 2;
        let d = groups * links[0].0;
        let mut v = g.add_input("x", Type::new(DType::F32, [Dim::sym("T"), Dim::Const(d)]));
        for (i, &(n_in, n_out, blocks, stride, bias)) in links.iter().enumerate() {
            let shape = TwiddleShape {
                groups,
                stacks: n_out.div_ceil(8),
                blocks,
                stages: 3,
                n: 8,
            };
            let mut ops = vec![v, param(&mut g, &format!("t{i}"), &shape.dims())];
            if bias {
                ops.push(param(&mut g, &format!("b{i}"), &[groups * n_out]));
            }
            let op = Op::Butterfly {
                n_in,
                n_out,
                stride,
            };
            v = g.add1(op, &ops, None).expect("butterfly");
        }
        g.set_outputs(vec![Output::value("y", v)]);
        g
    }

    fn composes(links: &[Link]) -> usize {
        let mut g = chain(links);
        let before = eval(&g);
        let merged = compose_butterflies(&mut g).expect("composes");
        assert_eq!(verify(&g), Ok(()));
        assert_eq!(eval(&g), before, "bit-exact\n{}", print_graph(&g));
        assert_eq!(count_ops(&g, "butterfly"), links.len() - merged);
        merged
    }

    #[test]
    fn composes_when_every_block_keeps_its_stride_order() {
        // Even B₁: same order.
        assert_eq!(composes(&[(8, 8, 2, INC, false), (8, 8, 1, INC, true)]), 1);
        assert_eq!(composes(&[(8, 8, 2, DEC, false), (8, 8, 3, DEC, false)]), 1);
        // Odd B₁: opposite order.
        assert_eq!(composes(&[(8, 8, 1, INC, false), (8, 8, 1, DEC, false)]), 1);
        assert_eq!(composes(&[(8, 8, 3, DEC, false), (8, 8, 2, INC, true)]), 1);
        // The first pads (5 → 8), the last truncates (8 → 6): both carry over.
        assert_eq!(composes(&[(5, 8, 1, INC, false), (8, 6, 1, DEC, true)]), 1);
        // A chain of three folds to one.
        let three = [
            (8, 8, 1, INC, false),
            (8, 8, 1, DEC, false),
            (8, 8, 2, INC, false),
        ];
        assert_eq!(composes(&three), 2);
        let mut g = chain(&three);
        compose_butterflies(&mut g).expect("composes");
        let text = print_graph(&g);
        assert!(text.contains("f32[2, 1, 4, 3, 4, 2, 2]"), "{text}");
    }

    #[test]
    fn skips_pairs_that_are_not_one_chain_of_stages() {
        // Parity would flip T₂'s blocks.
        assert_eq!(composes(&[(8, 8, 1, INC, false), (8, 8, 1, INC, false)]), 0);
        assert_eq!(composes(&[(8, 8, 2, DEC, false), (8, 8, 1, INC, false)]), 0);
        // A bias between them.
        assert_eq!(composes(&[(8, 8, 2, INC, true), (8, 8, 1, INC, false)]), 0);
        // The first truncates (8 → 6, then the second pads 6 → 8 again).
        assert_eq!(composes(&[(8, 6, 2, INC, false), (6, 8, 1, INC, false)]), 0);
        // Two stacks.
        assert_eq!(
            composes(&[(8, 8, 2, INC, false), (8, 16, 1, INC, false)]),
            0
        );

        // Twiddles that arrive at run time are not weight-time: no concat of them is.
        let mut g = Graph::new("t");
        let x = g.add_input("x", Type::fixed(DType::F32, &[2, 8]));
        let shape = TwiddleShape {
            groups: 1,
            stacks: 1,
            blocks: 1,
            stages: 3,
            n: 8,
        };
        let t1 = param(&mut g, "t1", &shape.dims());
        let t2 = g.add_input("t2", Type::fixed(DType::F32, &shape.dims()));
        let bf = |stride| Op::Butterfly {
            n_in: 8,
            n_out: 8,
            stride,
        };
        let y = g.add1(bf(INC), &[x, t1], None).expect("butterfly");
        let y = g.add1(bf(DEC), &[y, t2], None).expect("butterfly");
        g.set_outputs(vec![Output::value("y", y)]);
        assert_eq!(compose_butterflies(&mut g), Ok(0));

        // The intermediate is also an output.
        let mut g = chain(&[(8, 8, 2, INC, false), (8, 8, 1, INC, false)]);
        let last = g.outputs()[0].value;
        let mid = g.operands(last.node)[0];
        g.set_outputs(vec![Output::value("y", last), Output::value("mid", mid)]);
        assert_eq!(compose_butterflies(&mut g), Ok(0));
    }
}
