//! Fusion: groups ops that a backend compiles as one kernel into fused regions
//! (`fused @rN { ... }` in the text form). Regions never change what the graph computes; they
//! tell lowering which values never need to reach memory.
//!
//! The pass runs last in both pipelines, after every rewrite, and starts by clearing any
//! regions it finds, so running it twice gives the same regions. It visits nodes in schedule
//! order and forms these regions (a region needs at least two members):
//!
//! 1. **Butterfly chains** — a `butterfly` takes along every directly following `butterfly`
//!    that reads its output: consecutive stages of one transform are one kernel. (Their twiddle
//!    producers are weight-time, see below, so they stay outside.)
//! 2. **Epilogues** — a `matmul`, `butterfly` (or chain of them), `monarch` or `qmatmul` takes
//!    along the chain of elementwise ops that consume its output: `gelu silu sigmoid` (the
//!    activations), `add` (a residual), `mul` (the SwiGLU product), `scale`, `dequantize` and
//!    `cast`. Biases are operands of the producing op already. Each link's other operands come
//!    from outside the region (the SwiGLU `up` projection, the residual stream).
//! 3. **Gradient accumulation** (training graphs) — an `OP.grad` takes along the `add` tree
//!    that sums its upstream gradient and the `fill` that seeds it: the sum is computed where
//!    the VJP reads it.
//!
//! **Weight-time nodes are never members** (values computed only from params and constants:
//! twiddle producers, folded weights such as `W + s·B·A`, weight quantization; see
//! `weight_time`). They run once per weight update — at load for inference, once per step in
//! training — not once per token, so they belong in no per-token kernel; a butterfly then
//! reads its twiddles as an operand like any weight.
//!
//! A node joins a region only through a value with exactly one user, the next member, that is
//! not a graph output: nothing reads the middle of a region from outside (no fan-out), so its
//! intermediates never reach memory. This is also what makes every region schedulable as one
//! contiguous block (a value leaving a region can only leave through its last member, so it
//! can never flow back in), which `verify` checks. A node is in at most one region: rules are
//! applied in the order above and the first that claims a node keeps it.
//!
//! **Stage grouping.** Every per-token `butterfly` also gets its stages grouped into
//! radix-2^k groups, printed as `radix = [...]` on the op (`Node::radix`): runs of three
//! stages form radix-8 groups while three remain, then a radix-4 for two left over or a
//! radix-2 for one (`n = 32`, 5 stages: `[8, 4]`; `n = 128`: `[8, 8, 2]`); `n ≤ 8` keeps
//! radix-4 pairs (`[4, 2]`). These are the aarch64 butterfly codelets' passes over the data
//! (tokens in lanes: three stages per load/store of 16 vectors, which lifts the store-bound
//! ceiling from 80 % to 86 % of the vector pipes; its stride-1 radix-8 needs 16 vectors, so
//! n ≥ 16). The grouping covers the
//! `log2 n` stages of each block (every block and stack uses the same grouping). Like
//! regions, it is a schedule hint: it never changes what the graph computes.
//!
//! In a training graph most forward activations are also read by their backward ops, so those
//! chains stop early by the fan-out rule: the saved values must be written out anyway.

use std::collections::HashSet;

use bfly_grammar::Diagnostic;
use bfly_ir::{Graph, NodeId, Op, Value, butterfly_width};

use super::weight_time::WeightTime;
use super::{Pass, PassContext};

pub struct Fuse;

impl Pass for Fuse {
    fn name(&self) -> &'static str {
        "fuse"
    }

    fn description(&self) -> &'static str {
        "group ops into fused regions, one kernel each (epilogues, butterfly chains, grad sums)"
    }

    fn run(&self, g: &mut Graph, cx: &PassContext<'_>) -> Result<(), Vec<Diagnostic>> {
        fuse_regions(g)
            .map(|_| ())
            .ok_or_else(|| vec![cx.bug(self.name(), "the graph has a cycle")])
    }
}

/// Replaces the graph's regions by the ones the rules of the module doc give. Returns how many
/// regions it formed, or `None` for a cyclic graph (left without regions).
pub fn fuse_regions(g: &mut Graph) -> Option<usize> {
    g.clear_regions();
    let order = g.topo_order()?;
    let outputs: HashSet<NodeId> = g.outputs().iter().map(|o| o.value.node).collect();
    let mut memo = WeightTime::default();
    // Weight-time nodes start out taken, so no rule can claim them.
    let taken: HashSet<NodeId> = order
        .iter()
        .copied()
        .filter(|&id| memo.is(g, Value::first(id)))
        .collect();
    let mut f = Fuser {
        outputs,
        taken,
        regions: Vec::new(),
    };
    for &id in &order {
        f.producer_region(g, id);
    }
    for &id in &order {
        f.grad_region(g, id);
    }
    for &id in &order {
        let grouping = match g.node(id).op {
            Op::Butterfly { n_in, .. } if !memo.is(g, Value::first(id)) => {
                Some(radix_groups(butterfly_width(n_in).trailing_zeros()))
            }
            _ => None,
        };
        g.set_radix(id, grouping);
    }
    let count = f.regions.len();
    for members in f.regions {
        let r = g.new_region();
        for id in members {
            g.set_region(id, Some(r));
        }
    }
    Some(count)
}

/// The stage grouping for `stages` butterfly stages (see the module doc): radix-8 groups
/// while three stages remain (n ≥ 16), then radix-4, then radix-2.
pub fn radix_groups(stages: u32) -> Vec<u32> {
    let mut groups = Vec::new();
    let mut left = stages;
    if stages >= 4 {
        while left >= 3 {
            groups.push(8);
            left -= 3;
        }
    }
    while left >= 2 {
        groups.push(4);
        left -= 2;
    }
    if left == 1 {
        groups.push(2);
    }
    groups
}

struct Fuser {
    /// Nodes with a result that is a graph output: read from outside, never mid-region.
    outputs: HashSet<NodeId>,
    /// Nodes already in a region, and weight-time nodes (never members).
    taken: HashSet<NodeId>,
    regions: Vec<Vec<NodeId>>,
}

fn is_anchor(op: &Op) -> bool {
    matches!(
        op,
        Op::Matmul | Op::Butterfly { .. } | Op::Monarch { .. } | Op::QMatmul
    )
}

fn is_epilogue(op: &Op) -> bool {
    matches!(
        op,
        Op::Gelu
            | Op::Silu
            | Op::Sigmoid
            | Op::Add
            | Op::Mul
            | Op::Scale { .. }
            | Op::Dequantize
            | Op::Cast { .. }
    )
}

impl Fuser {
    /// The only node reading `id`, when `id` has one result, is not a graph output and is
    /// read by exactly one node (maybe through several operands), not yet in a region.
    fn sole_user(&self, g: &Graph, id: NodeId) -> Option<NodeId> {
        if g.node(id).results.len() != 1 || self.outputs.contains(&id) {
            return None;
        }
        match g.users(id)[..] {
            [user] if !self.taken.contains(&user) => Some(user),
            _ => None,
        }
    }

    fn free(&self, id: NodeId) -> bool {
        !self.taken.contains(&id)
    }

    fn claim(&mut self, members: Vec<NodeId>) {
        if members.len() >= 2 {
            self.taken.extend(members.iter().copied());
            self.regions.push(members);
        }
    }

    /// Rules 1 and 2, starting at the anchor `id`.
    fn producer_region(&mut self, g: &Graph, id: NodeId) {
        if !self.free(id) || !is_anchor(&g.node(id).op) {
            return;
        }
        let is_butterfly = |n: NodeId| matches!(g.node(n).op, Op::Butterfly { .. });
        let mut members = vec![id];
        let mut tail = id;
        if is_butterfly(id) {
            while let Some(next) = self.sole_user(g, tail)
                && is_butterfly(next)
                && g.operands(next).first() == Some(&Value::first(tail))
            {
                members.push(next);
                tail = next;
            }
        }
        while let Some(next) = self.sole_user(g, tail)
            && is_epilogue(&g.node(next).op)
        {
            members.push(next);
            tail = next;
        }
        self.claim(members);
    }

    /// Rule 3: a grad op and the `add`/`fill` tree producing its upstream gradients.
    fn grad_region(&mut self, g: &Graph, id: NodeId) {
        let Op::Grad(forward) = &g.node(id).op else {
            return;
        };
        if !self.free(id) {
            return;
        }
        let operands = g.operands(id);
        // The upstream gradients are the last operands, one per forward result.
        let upstream = operands.len().saturating_sub(forward.num_results());
        let mut members = vec![id];
        let mut stack: Vec<(NodeId, NodeId)> =
            operands[upstream..].iter().map(|v| (v.node, id)).collect();
        while let Some((p, consumer)) = stack.pop() {
            if members.contains(&p) || self.sole_user(g, p) != Some(consumer) {
                continue;
            }
            match g.node(p).op {
                Op::Fill { .. } => members.push(p),
                Op::Add => {
                    members.push(p);
                    stack.extend(g.operands(p).iter().map(|v| (v.node, p)));
                }
                _ => {}
            }
        }
        self.claim(members);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::test_graphs::{eval_bits, eval_bits_on};
    use bfly_ir::{DType, Dim, Init, Output, Param, StrideOrder, Type, print_graph, verify};

    fn param(g: &mut Graph, name: &str, dims: &[u64]) -> Value {
        g.add_param(
            Param {
                name: name.into(),
                init: Init::Normal { std: 0.5 },
                trainable: true,
            },
            Type::fixed(DType::F32, dims),
        )
    }

    fn op(g: &mut Graph, op: Op, args: &[Value]) -> Value {
        g.add1(op, args, None).expect("valid op")
    }

    /// The regions as sets of printed statements (`%3 = gelu`), in print order.
    fn regions(g: &Graph) -> Vec<Vec<String>> {
        let text = print_graph(g);
        let mut out = Vec::new();
        let mut cur: Option<Vec<String>> = None;
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with("fused ") {
                cur = Some(Vec::new());
            } else if t == "}" && cur.is_some() {
                out.extend(cur.take());
            } else if let Some(c) = cur.as_mut() {
                let head: Vec<&str> = t.split_whitespace().take(4).collect();
                c.push(head.join(" "));
            }
        }
        out
    }

    /// `x[4]` → dense up (4→4) → gelu → scale → add residual x → out; plus a second linear
    /// on x whose output is both returned and activated (fan-out: must not fuse).
    fn mlp() -> Graph {
        let mut g = Graph::new("mlp");
        let x = g.add_input("x", Type::fixed(DType::F32, &[2, 4]));
        let w = param(&mut g, "w", &[4, 4]);
        let w2 = param(&mut g, "w2", &[4, 4]);
        let h = op(&mut g, Op::Matmul, &[x, w]);
        let a = op(&mut g, Op::Gelu, &[h]);
        let s = op(&mut g, Op::Scale { factor: 0.5 }, &[a]);
        let y = op(&mut g, Op::Add, &[s, x]);
        let side = op(&mut g, Op::Matmul, &[x, w2]);
        let side_act = op(&mut g, Op::Sigmoid, &[side]);
        g.set_outputs(vec![
            Output::value("y", y),
            Output::value("side", side),
            Output::value("side_act", side_act),
        ]);
        g
    }

    #[test]
    fn a_matmul_takes_its_epilogue_chain() {
        let mut g = mlp();
        let before = eval_bits_2x4(&g);
        assert_eq!(fuse_regions(&mut g), Some(1));
        assert_eq!(verify(&g), Ok(()));
        assert_eq!(
            regions(&g),
            [[
                "%0 = matmul %x,",
                "%1 = gelu %0",
                "%2 = scale %1",
                "%3 = add %2,"
            ]]
        );
        // The returned matmul (`side`) feeds a sigmoid too: fusing it would hide a value that
        // leaves the region, so it stays alone.
        assert_eq!(eval_bits_2x4(&g), before);
    }

    #[test]
    fn fan_out_from_the_middle_stops_the_chain() {
        // matmul → gelu, and gelu is read by both a scale and an add: the region is
        // matmul + gelu; neither reader joins.
        let mut g = Graph::new("fan");
        let x = g.add_input("x", Type::fixed(DType::F32, &[2, 4]));
        let w = param(&mut g, "w", &[4, 4]);
        let h = op(&mut g, Op::Matmul, &[x, w]);
        let a = op(&mut g, Op::Gelu, &[h]);
        let s = op(&mut g, Op::Scale { factor: 2.0 }, &[a]);
        let y = op(&mut g, Op::Add, &[a, s]);
        g.set_outputs(vec![Output::value("y", y)]);
        fuse_regions(&mut g);
        assert_eq!(regions(&g), [["%0 = matmul %x,", "%1 = gelu %0"]]);

        // A matmul read twice (by gelu and by the output add) fuses nothing.
        let mut g = Graph::new("fan2");
        let x = g.add_input("x", Type::fixed(DType::F32, &[2, 4]));
        let w = param(&mut g, "w", &[4, 4]);
        let h = op(&mut g, Op::Matmul, &[x, w]);
        let a = op(&mut g, Op::Gelu, &[h]);
        let y = op(&mut g, Op::Add, &[a, h]);
        g.set_outputs(vec![Output::value("y", y)]);
        assert_eq!(fuse_regions(&mut g), Some(0));
        assert!(!print_graph(&g).contains("fused"));
    }

    #[test]
    fn non_epilogue_ops_and_plain_chains_are_not_fused() {
        // rmsnorm → gelu has no GEMM-like producer; matmul → softmax is not an epilogue.
        let mut g = Graph::new("plain");
        let x = g.add_input("x", Type::fixed(DType::F32, &[2, 4]));
        let gain = param(&mut g, "gain", &[4]);
        let w = param(&mut g, "w", &[4, 4]);
        let n = op(&mut g, Op::RmsNorm { eps: 1e-5 }, &[x, gain]);
        let a = op(&mut g, Op::Gelu, &[n]);
        let h = op(&mut g, Op::Matmul, &[a, w]);
        let y = op(&mut g, Op::Softmax, &[h]);
        g.set_outputs(vec![Output::value("y", y)]);
        assert_eq!(fuse_regions(&mut g), Some(0));
    }

    /// SwiGLU on butterflies: gate and up are DIB butterflies, `silu(gate) * up`, then a
    /// butterfly down with a residual add, as the builder makes it.
    fn swiglu() -> Graph {
        let mut g = Graph::new("swiglu");
        g.set_bound("T", 4);
        let x = g.add_input("x", Type::new(DType::F32, [Dim::sym("T"), Dim::Const(8)]));
        let dib = |g: &mut Graph, name: &str, input: Value| {
            let theta = param(g, &format!("{name}.theta"), &[1, 1, 1, 3, 4]);
            let diag = param(g, &format!("{name}.diag"), &[1, 1, 1, 3, 8]);
            let tw = op(
                g,
                Op::DibTwiddles {
                    stride: StrideOrder::Increasing,
                },
                &[theta, diag],
            );
            op(
                g,
                Op::Butterfly {
                    n_in: 8,
                    n_out: 8,
                    stride: StrideOrder::Increasing,
                },
                &[input, tw],
            )
        };
        let gate = dib(&mut g, "gate", x);
        let act = op(&mut g, Op::Silu, &[gate]);
        let up = dib(&mut g, "up", x);
        let prod = op(&mut g, Op::Mul, &[act, up]);
        let down = dib(&mut g, "down", prod);
        let y = op(&mut g, Op::Add, &[x, down]);
        g.set_outputs(vec![Output::value("y", y)]);
        g
    }

    #[test]
    fn butterflies_take_their_swiglu_epilogue_but_not_their_twiddles() {
        let mut g = swiglu();
        let before = eval_bits_t(&g);
        assert_eq!(fuse_regions(&mut g), Some(2));
        assert_eq!(verify(&g), Ok(()));
        let text = print_graph(&g);
        // The DIB producers are weight-time (params only): they run once per weight update,
        // never inside a per-token region. The lone `up` butterfly forms no region.
        assert!(
            !regions(&g)
                .concat()
                .iter()
                .any(|m| m.contains("dib_twiddles")),
            "{text}"
        );
        assert_eq!(
            regions(&g)
                .iter()
                .map(|r| r
                    .iter()
                    .map(|m| m.split(' ').nth(2).unwrap_or(""))
                    .collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            [vec!["butterfly", "silu", "mul"], vec!["butterfly", "add"]],
            "{text}"
        );
        assert_eq!(eval_bits_t(&g), before);
        // Idempotent: a second run clears and re-forms the same regions.
        fuse_regions(&mut g);
        assert_eq!(print_graph(&g), text);
    }

    #[test]
    fn consecutive_butterflies_are_one_region() {
        // butterfly → butterfly → gelu: one region. Twiddles (the constant Hadamard producer
        // and the param) are weight-time, so they are no members.
        let mut g = Graph::new("chain");
        let x = g.add_input("x", Type::fixed(DType::F32, &[2, 8]));
        let tw = param(&mut g, "tw", &[1, 1, 1, 3, 4, 2, 2]);
        let had = op(
            &mut g,
            Op::HadamardTwiddles {
                groups: 1,
                stacks: 1,
                blocks: 1,
                n: 8,
            },
            &[],
        );
        let bf = |n| Op::Butterfly {
            n_in: n,
            n_out: n,
            stride: StrideOrder::Increasing,
        };
        let b1 = op(&mut g, bf(8), &[x, had]);
        let b2 = op(&mut g, bf(8), &[b1, tw]);
        let a = op(&mut g, Op::Gelu, &[b2]);
        // A butterfly after the epilogue starts its own region: the chain rule is for
        // directly consecutive stages only.
        let b3 = op(&mut g, bf(8), &[a, tw]);
        let y = op(&mut g, Op::Sigmoid, &[b3]);
        g.set_outputs(vec![Output::value("y", y)]);
        assert_eq!(fuse_regions(&mut g), Some(2));
        assert_eq!(
            regions(&g),
            [
                vec!["%1 = butterfly %x,", "%2 = butterfly %1,", "%3 = gelu %2"],
                vec!["%4 = butterfly %3,", "%5 = sigmoid %4"],
            ]
        );
        assert_eq!(verify(&g), Ok(()));
    }

    #[test]
    fn a_shared_twiddle_producer_is_not_fused() {
        let mut g = Graph::new("shared");
        let x = g.add_input("x", Type::fixed(DType::F32, &[2, 8]));
        let theta = param(&mut g, "theta", &[1, 1, 1, 3, 4]);
        let tw = op(&mut g, Op::GivensTwiddles, &[theta]);
        let bf = Op::Butterfly {
            n_in: 8,
            n_out: 8,
            stride: StrideOrder::Increasing,
        };
        let b1 = op(&mut g, bf.clone(), &[x, tw]);
        let b2 = op(&mut g, bf, &[x, tw]);
        let y = op(&mut g, Op::Add, &[b1, b2]);
        g.set_outputs(vec![Output::value("y", y)]);
        assert_eq!(fuse_regions(&mut g), Some(1));
        assert_eq!(
            regions(&g),
            [["%2 = butterfly %x,", "%3 = add %2,"]],
            "{}",
            print_graph(&g)
        );
    }

    #[test]
    fn grad_ops_take_their_accumulation_and_seed() {
        // loss = sum-like: fill seed → neg.grad; two grads summed by add → exp.grad.
        let mut g = Graph::new("grads");
        let ty = Type::fixed(DType::F32, &[4]);
        let x = g.add_input("x", ty.clone());
        let e = op(&mut g, Op::Exp, &[x]);
        let seed = op(
            &mut g,
            Op::Fill {
                value: 1.0,
                dtype: DType::F32,
                dims: vec![Dim::Const(4)],
            },
            &[],
        );
        let g1 = op(&mut g, Op::Grad(Box::new(Op::Neg)), &[e, seed]);
        let g2 = op(&mut g, Op::Grad(Box::new(Op::Sigmoid)), &[e, seed]);
        let sum = op(&mut g, Op::Add, &[g1, g2]);
        let sum2 = op(&mut g, Op::Add, &[sum, g1]);
        let gx = op(&mut g, Op::Grad(Box::new(Op::Exp)), &[x, sum2]);
        g.set_outputs(vec![Output::value("gx", gx)]);
        assert_eq!(fuse_regions(&mut g), Some(1));
        assert_eq!(verify(&g), Ok(()));
        // The seed feeds two grads (fan-out): not fused. `g1` is read twice, so it stays
        // out too; the add tree joins `exp.grad`.
        assert_eq!(
            regions(&g),
            [["%4 = add %2,", "%5 = add %4,", "%6 = exp.grad %x,"]],
            "{}",
            print_graph(&g)
        );
    }

    #[test]
    fn a_single_use_seed_joins_its_grad() {
        let mut g = Graph::new("seed");
        let ty = Type::fixed(DType::F32, &[4]);
        let x = g.add_input("x", ty);
        let seed = op(
            &mut g,
            Op::Fill {
                value: 1.0,
                dtype: DType::F32,
                dims: vec![Dim::Const(4)],
            },
            &[],
        );
        let gx = op(&mut g, Op::Grad(Box::new(Op::Exp)), &[x, seed]);
        g.set_outputs(vec![Output::value("gx", gx)]);
        assert_eq!(fuse_regions(&mut g), Some(1));
        assert_eq!(regions(&g), [["%0 = fill {value", "%1 = exp.grad %x,"]]);
    }

    fn eval_bits_2x4(g: &Graph) -> Vec<Vec<u64>> {
        eval_bits_with(g, &[2, 4], 8)
    }

    fn eval_bits_t(g: &Graph) -> Vec<Vec<u64>> {
        eval_bits_with(g, &[3, 8], 24)
    }

    fn eval_bits_with(g: &Graph, dims: &[usize], n: usize) -> Vec<Vec<u64>> {
        let x = bfly_targets::reference::Tensor::f32(
            dims.to_vec(),
            (0..n).map(|i| 0.17 * i as f64 - 1.1).collect(),
        );
        eval_bits_on(g, &x, 3)
    }

    #[test]
    fn radix_groups_are_radix_8_runs_and_cover_every_stage() {
        assert_eq!(radix_groups(1), [2]);
        assert_eq!(radix_groups(2), [4]);
        assert_eq!(radix_groups(3), [4, 2]);
        assert_eq!(radix_groups(4), [8, 2]);
        assert_eq!(radix_groups(5), [8, 4]);
        assert_eq!(radix_groups(7), [8, 8, 2]);
        assert_eq!(radix_groups(11), [8, 8, 8, 4]);
        for stages in 1..=16u32 {
            let groups = radix_groups(stages);
            assert_eq!(groups.iter().product::<u32>(), 1 << stages, "{stages}");
            assert!(
                groups.windows(2).all(|w| w[0] >= w[1])
                    && groups.iter().filter(|&&r| r < 8).count() <= 2,
                "{groups:?}"
            );
        }
    }

    /// `x[3, 32] → butterfly (5 stages) → gelu → butterfly (n = 8 from in = 5: 3 stages)`.
    fn two_butterflies() -> Graph {
        let mut g = Graph::new("radix");
        let x = g.add_input("x", Type::fixed(DType::F32, &[3, 32]));
        let t1 = param(&mut g, "t1", &[1, 1, 1, 5, 16, 2, 2]);
        let t2 = param(&mut g, "t2", &[1, 1, 1, 3, 4, 2, 2]);
        let b1 = op(
            &mut g,
            Op::Butterfly {
                n_in: 32,
                n_out: 5,
                stride: StrideOrder::Increasing,
            },
            &[x, t1],
        );
        let a = op(&mut g, Op::Gelu, &[b1]);
        let b2 = op(
            &mut g,
            Op::Butterfly {
                n_in: 5,
                n_out: 8,
                stride: StrideOrder::Decreasing,
            },
            &[a, t2],
        );
        g.set_outputs(vec![Output::value("y", b2)]);
        g
    }

    #[test]
    fn butterflies_get_their_stage_grouping_which_round_trips_and_changes_nothing() {
        let mut g = two_butterflies();
        let x = bfly_targets::reference::Tensor::f32(
            vec![3, 32],
            (0..96).map(|i| 0.03 * i as f64 - 1.4).collect(),
        );
        let before = eval_bits_on(&g, &x, 5);
        fuse_regions(&mut g);
        let text = print_graph(&g);
        assert!(
            text.contains(
                "butterfly %x, @t1 {in = 32, out = 5, stride = increasing, radix = [8, 4]}"
            ),
            "{text}"
        );
        assert!(text.contains("radix = [4, 2]}"), "{text}");
        assert_eq!(verify(&g), Ok(()));
        assert_eq!(eval_bits_on(&g, &x, 5), before);
        // print → parse → print keeps the grouping, and the parsed graph computes the same.
        let file = bfly_grammar::SourceFile::new("radix.bfir", text.clone());
        let again = bfly_ir::parse::parse_graph(&file).expect("parses back");
        assert_eq!(print_graph(&again), text);
        assert_eq!(eval_bits_on(&again, &x, 5), before);
        // Running the pass again chooses the same grouping.
        fuse_regions(&mut g);
        assert_eq!(print_graph(&g), text);
    }

    #[test]
    fn a_grouping_must_cover_the_stages_exactly_and_only_on_a_butterfly() {
        let mut g = two_butterflies();
        fuse_regions(&mut g);
        let text = print_graph(&g);
        let parse = |t: String| {
            bfly_ir::parse::parse_graph(&bfly_grammar::SourceFile::new("bad.bfir", t))
                .map(|_| ())
                .map_err(|d| {
                    d.iter()
                        .map(|d| d.message.clone())
                        .collect::<Vec<_>>()
                        .join("; ")
                })
        };
        let cases = [
            (
                "radix = [8, 4]",
                "radix = [4, 4]",
                "groups 4 stages, but a butterfly with n = 32 has 5",
            ),
            ("radix = [8, 4]", "radix = [4, 4, 4]", "groups 6 stages"),
            (
                "radix = [8, 4]",
                "radix = [4, 3, 2, 2]",
                "radix 3 is not a power of two",
            ),
            ("radix = [8, 4]", "radix = 32", "must be a list of radices"),
            (
                "gelu %0",
                "gelu %0 {radix = [2]}",
                "`radix` groups butterfly stages, but this is a `gelu`",
            ),
        ];
        for (from, to, want) in cases {
            assert!(text.contains(from), "{text}");
            let err = parse(text.replacen(from, to, 1)).expect_err(to);
            assert!(err.contains(want), "{to}: {err}");
        }
        // The verifier checks a grouping set in memory the same way.
        let b = g
            .node_ids()
            .find(|&id| g.node(id).radix.is_some())
            .expect("a butterfly");
        g.set_radix(b, Some(vec![8, 2]));
        let errs = verify(&g).expect_err("a wrong grouping");
        assert!(errs[0].message.contains("groups 4 stages"), "{errs:?}");
    }

    #[test]
    fn the_shared_evaluator_still_agrees() {
        // `eval_bits` of the pass tests runs `[4]` inputs; a fused copy gives the same bits.
        let mut g = Graph::new("tiny");
        let x = g.add_input("x", Type::fixed(DType::F32, &[4]));
        let w = param(&mut g, "w", &[4, 4]);
        let h = op(&mut g, Op::Matmul, &[x, w]);
        let y = op(&mut g, Op::Silu, &[h]);
        g.set_outputs(vec![Output::value("y", y)]);
        let before = eval_bits(&g);
        assert_eq!(fuse_regions(&mut g), Some(1));
        assert_eq!(eval_bits(&g), before);
    }
}
