//! `fold-lora`: LoRA adapters at inference (DESIGN §5).
//!
//! The builder lowers an adapted site as `y = base(x) + lora(x, A, B){s}` with
//! `lora(x, A, B){s} = s · B (A x)`, `A: [r, K]`, `B: [N, r]`.
//!
//! **Dense sites merge.** `matmul(x, W [, bias]) + lora(x, A, B){s}` becomes
//! `matmul(x, W' [, bias])` with the weight-time `W' = W + s·B·A`, built from existing ops:
//! `B·A = matmul(B, transpose(A))` (`matmul` computes `u · wᵀ`, so `B · (Aᵀ)ᵀ = B·A`,
//! shape `[N, K]` like `W`). This is exact algebra — `x·W'ᵀ = x·Wᵀ + s·x·(B·A)ᵀ` — and differs
//! from the unmerged sum by rounding only. Legal when
//! - the base is a plain `matmul` with a 2-D weight `[N, K]` on the same `x` as the adapter
//!   (a per-head weight `[G, N, K]` is block-diagonal, but `B·A` is a full `[G·N, G·K]`
//!   matrix: it cannot live in the grouped weight, so those keep the side path below);
//! - `W`, `A`, `B` are weight-time (see `weight_time`) and share a dtype;
//! - the base output and the adapter output are each read only by the `add`, and `W` only by
//!   the base matmul (otherwise the unmerged values, or an extra copy of `W`, would still be
//!   needed);
//! - the `add` does not broadcast (its result type is the base's).
//!
//! **Other sites keep the side path, sharing the rank-r product.** Butterfly, DIB, monarch, …
//! cannot absorb `B·A`, so the adapter stays a separate rank-r path (a new adapter can then be
//! swapped in without touching the base weights). What is shared is the read of `x`: adapters
//! on the same input — typically q/k/v of one layer, which all read the same normed
//! activations — get one `matmul(x, concat(A₁, A₂, …))` computing every rank-r `Aᵢ x` in a
//! single pass over `x` (and once per distinct `A`: two adapters with the same `A` share its
//! rows), then a `split` and each adapter's own `scale(matmul(Aᵢx, Bᵢ), sᵢ)`. Per token that
//! is one GEMM of `x` against `Σ rᵢ` rows instead of one `lora` per site, each re-reading the
//! full-width `x`; the arithmetic per output is identical, in the same order, so the rewrite
//! is bit-exact on the reference. The concatenated `A` is weight-time. An input with a single
//! adapter is left as its `lora` op: there is nothing to share.

use std::collections::HashMap;

use bfly_grammar::Diagnostic;
use bfly_ir::{DType, Graph, NodeId, Op, Value};

use super::fold_util::{add1, forward, sole_user};
use super::weight_time::WeightTime;
use super::{Pass, PassContext};

pub struct FoldLora;

impl Pass for FoldLora {
    fn name(&self) -> &'static str {
        "fold-lora"
    }

    fn description(&self) -> &'static str {
        "merge dense LoRA adapters into W + s·B·A; share A·x between adapters on one input"
    }

    fn run(&self, g: &mut Graph, cx: &PassContext<'_>) -> Result<(), Vec<Diagnostic>> {
        fold_lora(g)
            .map(|_| ())
            .map_err(|m| vec![cx.bug(self.name(), m)])
    }
}

/// What [`fold_lora`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoraFolds {
    /// Adapters merged into a dense weight.
    pub merged: usize,
    /// Adapters whose `A x` now comes from a shared product.
    pub shared: usize,
}

/// Runs both rewrites of the module doc. Errors are compiler bugs (a rewrite that does not
/// type-check after its legality checks passed).
pub fn fold_lora(g: &mut Graph) -> Result<LoraFolds, String> {
    let mut done = LoraFolds::default();
    for l in loras(g) {
        // A fresh memo per candidate: each merge changes the graph (see `WeightTime`).
        if let Some(site) = dense_site(g, &mut WeightTime::default(), l) {
            merge_dense(g, l, &site)?;
            done.merged += 1;
        }
    }
    done.shared = share_products(g)?;
    Ok(done)
}

/// Every `lora` node, in schedule order (so rewrites are deterministic).
fn loras(g: &Graph) -> Vec<NodeId> {
    g.topo_order()
        .unwrap_or_default()
        .into_iter()
        .filter(|&id| matches!(g.node(id).op, Op::Lora { .. }))
        .collect()
}

/// A dense site `add(matmul(x, W [, bias]), lora(x, A, B))` that may merge.
struct DenseSite {
    add: NodeId,
    base: NodeId,
    x: Value,
    w: Value,
    bias: Option<Value>,
    a: Value,
    b: Value,
    scale: f64,
}

fn dense_site(g: &Graph, wt: &mut WeightTime, l: NodeId) -> Option<DenseSite> {
    let Op::Lora { scale } = g.node(l).op else {
        return None;
    };
    let [x, a, b] = g.operands(l)[..] else {
        return None;
    };
    let d = Value::first(l);
    let add = sole_user(g, d)?;
    if g.node(add).op != Op::Add {
        return None;
    }
    let y = match g.operands(add)[..] {
        [p, q] if p == d && q != d => q,
        [p, q] if q == d && p != d => p,
        _ => return None,
    };
    if g.node(y.node).op != Op::Matmul || sole_user(g, y) != Some(add) {
        return None;
    }
    let base = g.operands(y.node);
    let (&x2, &w) = (base.first()?, base.get(1)?);
    let w_ty = g.value_type(w);
    let same_dtype = [a, b].iter().all(|v| g.value_type(*v).dtype == w_ty.dtype);
    let legal = x2 == x
        && w_ty.rank() == 2
        && same_dtype
        && sole_user(g, w) == Some(y.node)
        && g.value_type(Value::first(add)) == g.value_type(y)
        && [w, a, b].iter().all(|v| wt.is(g, *v));
    legal.then(|| DenseSite {
        add,
        base: y.node,
        x,
        w,
        bias: base.get(2).copied(),
        a,
        b,
        scale,
    })
}

/// `add(matmul(x, W, bias), lora(x, A, B){s})` → `matmul(x, W + s·B·A, bias)`.
fn merge_dense(g: &mut Graph, l: NodeId, s: &DenseSite) -> Result<(), String> {
    let at = add1(g, Op::Transpose { perm: vec![1, 0] }, &[s.a], l)?;
    let mut ba = add1(g, Op::Matmul, &[s.b, at], l)?;
    // ×1.0 is exact: leave it out rather than make const-fold remove it.
    if s.scale != 1.0 {
        ba = add1(g, Op::Scale { factor: s.scale }, &[ba], l)?;
    }
    let w2 = add1(g, Op::Add, &[s.w, ba], l)?;
    let mut operands = vec![s.x, w2];
    operands.extend(s.bias);
    let y = add1(g, Op::Matmul, &operands, s.base)?;
    // Removes the add, and with it the unmerged matmul and adapter.
    forward(g, Value::first(s.add), y);
    Ok(())
}

/// The shared-`A x` rewrite for every input read by two or more remaining adapters. Returns
/// how many adapters it rewrote.
fn share_products(g: &mut Graph) -> Result<usize, String> {
    // Group by input and A's dtype (a concat needs one dtype), in schedule order, before
    // any rewrite (so one memo serves all the questions).
    let mut wt = WeightTime::default();
    let mut groups: Vec<((Value, DType), Vec<NodeId>)> = Vec::new();
    for l in loras(g) {
        let [x, a, _] = g.operands(l)[..] else {
            continue;
        };
        if !wt.is(g, a) {
            continue;
        }
        let key = (x, g.value_type(a).dtype);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(l),
            None => groups.push((key, vec![l])),
        }
    }
    let mut rewritten = 0;
    for ((x, _), members) in groups.into_iter().filter(|(_, m)| m.len() > 1) {
        share_group(g, x, &members)?;
        rewritten += members.len();
    }
    Ok(rewritten)
}

fn share_group(g: &mut Graph, x: Value, members: &[NodeId]) -> Result<(), String> {
    let Some(&first) = members.first() else {
        return Ok(());
    };
    // Distinct A's in first-use order; `slot[m]` is member m's row block.
    let mut a_values: Vec<Value> = Vec::new();
    let mut slot: HashMap<NodeId, usize> = HashMap::new();
    for &l in members {
        let a = g.operands(l)[1];
        let i = match a_values.iter().position(|&v| v == a) {
            Some(i) => i,
            None => {
                a_values.push(a);
                a_values.len() - 1
            }
        };
        slot.insert(l, i);
    }
    let parts: Vec<Value> = if let [a] = a_values[..] {
        vec![add1(g, Op::Matmul, &[x, a], first)?]
    } else {
        let a_cat = add1(g, Op::Concat { axis: 0 }, &a_values, first)?;
        let ax = add1(g, Op::Matmul, &[x, a_cat], first)?;
        let sizes = a_values
            .iter()
            .map(|a| g.value_type(*a).dims[0].as_const())
            .collect::<Option<Vec<u64>>>()
            .ok_or("a LoRA A has a symbolic rank")?;
        let axis = g.value_type(x).rank().saturating_sub(1) as u64;
        let loc = g.node(first).loc;
        g.add_op(Op::Split { axis, sizes }, &[ax], loc)
            .map_err(|e| format!("could not split the shared A·x: {e}"))?
    };
    for &l in members {
        let Op::Lora { scale } = g.node(l).op else {
            continue;
        };
        let b = g.operands(l)[2];
        let part = parts[slot.get(&l).copied().unwrap_or(0)];
        let mut d = add1(g, Op::Matmul, &[part, b], l)?;
        // The `lora` kernel multiplies by s last; so does this, hence bit-identical results
        // (×1.0 is exact, so it is left out).
        if scale != 1.0 {
            d = add1(g, Op::Scale { factor: scale }, &[d], l)?;
        }
        forward(g, Value::first(l), d);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::fold_util::testing::{count_ops, eval, param, rel_diff};
    use bfly_ir::{Dim, Output, Type, print_graph, verify};

    /// `x: f32[T, 8]`; a dense site `matmul(x, W, bias) + lora(x, A, B){0.5}`.
    fn dense(order_swapped: bool) -> Graph {
        let mut g = Graph::new("t");
        g.set_bound("T", 3);
        let x = g.add_input("x", Type::new(DType::F32, [Dim::sym("T"), Dim::Const(8)]));
        let w = param(&mut g, "w", &[6, 8]);
        let bias = param(&mut g, "bias", &[6]);
        let a = param(&mut g, "a", &[2, 8]);
        let b = param(&mut g, "b", &[6, 2]);
        let y = g.add1(Op::Matmul, &[x, w, bias], None).expect("matmul");
        let d = g
            .add1(Op::Lora { scale: 0.5 }, &[x, a, b], None)
            .expect("lora");
        let args = if order_swapped { [d, y] } else { [y, d] };
        let out = g.add1(Op::Add, &args, None).expect("add");
        g.set_outputs(vec![Output::value("y", out)]);
        g
    }

    #[test]
    fn merges_a_dense_adapter_into_the_weight_in_either_operand_order() {
        for swapped in [false, true] {
            let mut g = dense(swapped);
            let before = eval(&g);
            let done = fold_lora(&mut g).expect("folds");
            assert_eq!(verify(&g), Ok(()));
            let text = print_graph(&g);
            assert_eq!(
                done,
                LoraFolds {
                    merged: 1,
                    shared: 0
                },
                "{text}"
            );
            assert_eq!(count_ops(&g, "lora"), 0, "{text}");
            // One activation matmul, one weight-time B·A.
            assert_eq!(count_ops(&g, "matmul"), 2, "{text}");
            assert!(text.contains("transpose"), "{text}");
            // Exact algebra, f64 rounding only.
            assert!(rel_diff(&before, &eval(&g)) <= 1e-14, "{text}");
            assert_eq!(fold_lora(&mut g), Ok(LoraFolds::default()), "idempotent");
        }
    }

    #[test]
    fn leaves_dense_adapters_that_cannot_merge() {
        // The base output is also a graph output: it must still be computed unmerged.
        let mut g = dense(false);
        let y = g.operands(g.outputs()[0].value.node)[0];
        let mut outs = g.outputs().to_vec();
        outs.push(Output::value("base", y));
        g.set_outputs(outs);
        assert_eq!(fold_lora(&mut g), Ok(LoraFolds::default()));

        // The weight is read elsewhere (as a tied embedding table would be).
        let mut g = dense(false);
        let w = g.find_param("w").expect("w");
        let e = g.add1(Op::Neg, &[w], None).expect("neg");
        let mut outs = g.outputs().to_vec();
        outs.push(Output::value("w2", e));
        g.set_outputs(outs);
        assert_eq!(fold_lora(&mut g), Ok(LoraFolds::default()));

        // A depends on the input: not weight-time.
        let mut g = Graph::new("t");
        let x = g.add_input("x", Type::fixed(DType::F32, &[8, 8]));
        let w = param(&mut g, "w", &[6, 8]);
        let b = param(&mut g, "b", &[6, 8]);
        let y = g.add1(Op::Matmul, &[x, w], None).expect("matmul");
        let a = g.add1(Op::Neg, &[x], None).expect("neg");
        let d = g
            .add1(Op::Lora { scale: 2.0 }, &[x, a, b], None)
            .expect("lora");
        let out = g.add1(Op::Add, &[y, d], None).expect("add");
        g.set_outputs(vec![Output::value("y", out)]);
        assert_eq!(fold_lora(&mut g), Ok(LoraFolds::default()));

        // Base and adapter read different inputs.
        let mut g = Graph::new("t");
        let x = g.add_input("x", Type::fixed(DType::F32, &[8]));
        let x2 = g.add_input("x2", Type::fixed(DType::F32, &[8]));
        let w = param(&mut g, "w", &[6, 8]);
        let a = param(&mut g, "a", &[2, 8]);
        let b = param(&mut g, "b", &[6, 2]);
        let y = g.add1(Op::Matmul, &[x, w], None).expect("matmul");
        let d = g
            .add1(Op::Lora { scale: 2.0 }, &[x2, a, b], None)
            .expect("lora");
        let out = g.add1(Op::Add, &[y, d], None).expect("add");
        g.set_outputs(vec![Output::value("y", out)]);
        assert_eq!(fold_lora(&mut g), Ok(LoraFolds::default()));
    }

    /// Three adapters on `x` (two with their own A, one reusing the first A) over per-head
    /// dense bases that cannot merge, and one adapter alone on another input.
    fn side_paths() -> Graph {
        let mut g = Graph::new("t");
        g.set_bound("T", 3);
        let ty = Type::new(DType::F32, [Dim::sym("T"), Dim::Const(8)]);
        let x = g.add_input("x", ty.clone());
        let z = g.add_input("z", ty);
        let mut outs = Vec::new();
        let a1 = param(&mut g, "a1", &[2, 8]);
        let a2 = param(&mut g, "a2", &[3, 8]);
        for (i, (input, a, scale)) in [(x, a1, 0.5), (x, a2, 1.0), (x, a1, 3.0), (z, a2, 2.0)]
            .into_iter()
            .enumerate()
        {
            let w = param(&mut g, &format!("w{i}"), &[2, 4, 4]);
            let r = g.value_type(a).dims[0].as_const().expect("constant rank");
            let b = param(&mut g, &format!("b{i}"), &[8, r]);
            let y = g.add1(Op::Matmul, &[input, w], None).expect("matmul");
            let d = g
                .add1(Op::Lora { scale }, &[input, a, b], None)
                .expect("lora");
            let out = g.add1(Op::Add, &[y, d], None).expect("add");
            outs.push(Output::value(format!("y{i}"), out));
        }
        g.set_outputs(outs);
        g
    }

    #[test]
    fn adapters_on_one_input_share_one_product_bit_for_bit() {
        let mut g = side_paths();
        let before = eval(&g);
        let done = fold_lora(&mut g).expect("folds");
        assert_eq!(verify(&g), Ok(()));
        let text = print_graph(&g);
        assert_eq!(
            done,
            LoraFolds {
                merged: 0,
                shared: 3
            },
            "{text}"
        );
        // The lone adapter on `z` keeps its op; `x` gets one product against [a1; a2].
        assert_eq!(count_ops(&g, "lora"), 1, "{text}");
        assert_eq!(count_ops(&g, "concat"), 1, "{text}");
        assert_eq!(count_ops(&g, "split"), 1, "{text}");
        assert!(
            text.contains("split") && text.contains("sizes = [2, 3]"),
            "{text}"
        );
        assert_eq!(eval(&g), before, "same arithmetic in the same order");
        assert_eq!(fold_lora(&mut g), Ok(LoraFolds::default()), "idempotent");
    }
}
