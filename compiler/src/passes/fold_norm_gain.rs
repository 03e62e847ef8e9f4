//! `fold-norm-gain`: an RMSNorm gain folds into the linear ops that read the norm (DESIGN §4
//! "Folding").
//!
//! `rmsnorm(x, g) = n ⊙ g` with `n = x / rms(x)`, and every consumer below is linear in its
//! input, applied before any bias: `L(n ⊙ g) = L'(n)` where `L'` is `L` with its input
//! columns scaled by `g`. So `rmsnorm(x, g)` becomes `rmsnorm(x, ones)` (a `fill` of 1.0,
//! which a backend may drop) and each consumer gets a weight-time scaled weight:
//!
//! | consumer | input columns | scaled weight |
//! |---|---|---|
//! | `matmul n, W[N, K]` | `W[:, k]` | `mul W, g` (`[N, K] · [K]` broadcasts) |
//! | `matmul n, W[G, N, K]` (per head) | group `j` reads `n[j·K + k]` | `mul W, reshape(g, [G, 1, K])` |
//! | `lora n, A[r, K], B` | `A[:, k]` | `mul A, g` |
//! | `monarch n, w1[G, k, q, p], w2` | block `a` reads `n[a·p + j]` | `mul w1, reshape(pad(g), [G, k, 1, p])` |
//! | `butterfly n, T` | stage 0 of block 0 | see below |
//!
//! **Butterfly.** The input is zero-padded to `n` and every stack starts with block 0's first
//! stage, which mixes the pairs `(p, q)` of its stride: `[y_p, y_q] = T·[x_p g_p, x_q g_q] =
//! (T·diag(g_p, g_q))·[x_p, x_q]`, so column 0 of each of those 2×2s scales by `g_p` and
//! column 1 by `g_q`. Block 0 runs in the op's own stride order, so stage 0 has stride 1
//! (`increasing`: pair `i` is `(2i, 2i+1)`, i.e. `g` reshaped to `[G, n/2, 2]`) or `n/2`
//! (`decreasing`: pair `i` is `(i, i + n/2)`, i.e. `g` reshaped to `[G, 2, n/2]` and
//! transposed). Padding positions get factor 1 (they hold zeros anyway). That factor is
//! placed at `[block 0, stage 0]` of a `[G, 1, B, L, n/2, 1, 2]` tensor of ones (by `concat`
//! with `fill`s), and `mul T, F` broadcasts it over stacks and the 2×2's rows: every other
//! twiddle is multiplied by exactly 1.0. Per-head butterflies (`G` groups) read `g` group by
//! group, which is the `[G, …]` leading axis of `F`.
//!
//! Skipped (left unchanged), because the fold would not be provably legal or not a win:
//! - any consumer outside the table, or the norm read in another operand slot or as a graph
//!   output: the gain cannot be removed from the norm, so nothing is gained by folding it into
//!   only some consumers;
//! - a weight read by anything else (the tied LM head shares `embed.weight` with the
//!   embedding): folding would store a second, scaled copy of the matrix;
//! - `hadamard` and `ternary` twiddles: their fixed `[[1, ±1]]`-shaped structure is what makes
//!   those butterflies multiply-free; general twiddles would lose it;
//! - `layernorm` (its bias would have to move through the weight as a new bias), a gain that
//!   is not weight-time, and dtype mismatches.
//!
//! Exact up to rounding: `Σ n_k (W_jk g_k)` versus `Σ (n_k g_k) W_jk`.

use bfly_grammar::Diagnostic;
use bfly_ir::{Dim, Graph, NodeId, Op, StrideOrder, TwiddleShape, Value};

use super::fold_util::{add1, is_output, reads, rebuild, remove_if_dead, sole_user};
use super::weight_time::WeightTime;
use super::{Pass, PassContext};

pub struct FoldNormGain;

impl Pass for FoldNormGain {
    fn name(&self) -> &'static str {
        "fold-norm-gain"
    }

    fn description(&self) -> &'static str {
        "fold RMSNorm gains into the weights of the linear ops that read the norm"
    }

    fn run(&self, g: &mut Graph, cx: &PassContext<'_>) -> Result<(), Vec<Diagnostic>> {
        fold_norm_gains(g)
            .map(|_| ())
            .map_err(|m| vec![cx.bug(self.name(), m)])
    }
}

/// How one consumer absorbs the gain: which operand slot holds the weight to scale, and how.
#[derive(Clone, Copy)]
enum Absorb {
    /// `mul W, g` (2-D dense weight, or LoRA A).
    Columns,
    /// `mul W, reshape(g, [G, 1, K])`.
    Grouped { groups: u64, k: u64 },
    /// `mul w1, reshape(pad(g), [G, k, 1, p])`.
    Monarch {
        groups: u64,
        n_in: u64,
        k: u64,
        p: u64,
    },
    /// `mul T, F` with F of the module doc.
    Butterfly {
        shape: TwiddleShape,
        n_in: u64,
        stride: StrideOrder,
    },
}

struct Consumer {
    node: NodeId,
    slot: usize,
    how: Absorb,
}

/// Folds every legal RMSNorm gain; returns how many norms it rewrote.
pub fn fold_norm_gains(g: &mut Graph) -> Result<usize, String> {
    let norms: Vec<NodeId> = g
        .topo_order()
        .unwrap_or_default()
        .into_iter()
        .filter(|&id| matches!(g.node(id).op, Op::RmsNorm { .. }))
        .collect();
    let mut folded = 0;
    for norm in norms {
        // A fresh memo per norm: each rewrite changes the graph (see `WeightTime`).
        if let Some(consumers) = plan(g, &mut WeightTime::default(), norm) {
            rewrite(g, norm, &consumers)?;
            folded += 1;
        }
    }
    Ok(folded)
}

/// Every consumer's rewrite, or `None` when the norm must stay as it is.
fn plan(g: &Graph, wt: &mut WeightTime, norm: NodeId) -> Option<Vec<Consumer>> {
    let [_, gain] = g.operands(norm)[..] else {
        return None;
    };
    // Already folded (or never had a gain): nothing to move.
    if matches!(g.node(gain.node).op, Op::Fill { value, .. } if value == 1.0) {
        return None;
    }
    let gain_ty = g.value_type(gain);
    let d = gain_ty.dims.first().and_then(Dim::as_const)?;
    let out = Value::first(norm);
    let uses = reads(g, out);
    if uses.is_empty() || is_output(g, out) || !wt.is(g, gain) {
        return None;
    }
    let mut consumers = Vec::with_capacity(uses.len());
    for (user, slot) in uses {
        if slot != 0 {
            return None;
        }
        let ops = g.operands(user);
        let (wslot, how) = absorb(g, user, &ops, d)?;
        let w = ops[wslot];
        let legal =
            sole_user(g, w) == Some(user) && g.value_type(w).dtype == gain_ty.dtype && wt.is(g, w);
        if !legal {
            return None;
        }
        consumers.push(Consumer {
            node: user,
            slot: wslot,
            how,
        });
    }
    Some(consumers)
}

/// Which weight of `user` scales, and how, for a norm of width `d`.
fn absorb(g: &Graph, user: NodeId, ops: &[Value], d: u64) -> Option<(usize, Absorb)> {
    let dims = |slot: usize| g.value_type(*ops.get(slot)?).const_dims();
    match &g.node(user).op {
        Op::Matmul => match dims(1)?[..] {
            [_, k] if k as u64 == d => Some((1, Absorb::Columns)),
            [groups, _, k] if (groups * k) as u64 == d => Some((
                1,
                Absorb::Grouped {
                    groups: groups as u64,
                    k: k as u64,
                },
            )),
            _ => None,
        },
        Op::Lora { .. } => match dims(1)?[..] {
            [_, k] if k as u64 == d => Some((1, Absorb::Columns)),
            _ => None,
        },
        Op::Monarch { n_in, .. } => match dims(1)?[..] {
            [groups, k, _, p] if groups as u64 * n_in == d && *n_in <= (k * p) as u64 => Some((
                1,
                Absorb::Monarch {
                    groups: groups as u64,
                    n_in: *n_in,
                    k: k as u64,
                    p: p as u64,
                },
            )),
            _ => None,
        },
        Op::Butterfly { n_in, stride, .. } => {
            let tw = *ops.get(1)?;
            let structured = matches!(
                g.node(tw.node).op,
                Op::HadamardTwiddles { .. } | Op::TernaryTwiddles { .. }
            );
            let shape = TwiddleShape::of(g.value_type(tw), "twiddles").ok()?;
            (!structured && shape.groups * n_in == d).then_some((
                1,
                Absorb::Butterfly {
                    shape,
                    n_in: *n_in,
                    stride: *stride,
                },
            ))
        }
        _ => None,
    }
}

fn rewrite(g: &mut Graph, norm: NodeId, consumers: &[Consumer]) -> Result<(), String> {
    let Op::RmsNorm { eps } = g.node(norm).op else {
        return Err("not an rmsnorm".into());
    };
    let [x, gain] = g.operands(norm)[..] else {
        return Err("rmsnorm without two operands".into());
    };
    let gain_ty = g.value_type(gain).clone();
    let ones = add1(
        g,
        Op::Fill {
            value: 1.0,
            dtype: gain_ty.dtype,
            dims: gain_ty.dims.clone(),
        },
        &[],
        norm,
    )?;
    let normed = add1(g, Op::RmsNorm { eps }, &[x, ones], norm)?;
    for c in consumers {
        let mut ops = g.operands(c.node);
        let scaled = scale_weight(g, ops[c.slot], gain, c.how, c.node)?;
        ops[0] = normed;
        ops[c.slot] = scaled;
        rebuild(g, c.node, &ops)?;
    }
    remove_if_dead(g, norm);
    Ok(())
}

/// The weight-time `w` with its input columns scaled by `gain`.
fn scale_weight(
    g: &mut Graph,
    w: Value,
    gain: Value,
    how: Absorb,
    at: NodeId,
) -> Result<Value, String> {
    let dtype = g.value_type(gain).dtype;
    let ones = |dims: &[u64]| Op::Fill {
        value: 1.0,
        dtype,
        dims: dims.iter().map(|&d| Dim::Const(d)).collect(),
    };
    let reshape = |dims: &[u64]| Op::Reshape {
        dims: dims.iter().map(|&d| Dim::Const(d)).collect(),
    };
    // `gain` as `[G, width]`, padded with ones to `to` columns.
    let padded = |g: &mut Graph, groups: u64, width: u64, to: u64| -> Result<Value, String> {
        let rows = add1(g, reshape(&[groups, width]), &[gain], at)?;
        if width == to {
            return Ok(rows);
        }
        let pad = add1(g, ones(&[groups, to - width]), &[], at)?;
        add1(g, Op::Concat { axis: 1 }, &[rows, pad], at)
    };
    let factor = match how {
        Absorb::Columns => gain,
        Absorb::Grouped { groups, k } => add1(g, reshape(&[groups, 1, k]), &[gain], at)?,
        Absorb::Monarch { groups, n_in, k, p } => {
            let rows = padded(g, groups, n_in, k * p)?;
            add1(g, reshape(&[groups, k, 1, p]), &[rows], at)?
        }
        Absorb::Butterfly {
            shape,
            n_in,
            stride,
        } => {
            let (gr, half, stages, blocks) =
                (shape.groups, shape.n / 2, shape.stages, shape.blocks);
            let rows = padded(g, gr, n_in, shape.n)?;
            // Column c of pair i multiplies position p_i (c = 0) or q_i (c = 1).
            let pairs = match stride {
                StrideOrder::Increasing => add1(g, reshape(&[gr, half, 2]), &[rows], at)?,
                StrideOrder::Decreasing => {
                    let cols = add1(g, reshape(&[gr, 2, half]), &[rows], at)?;
                    add1(
                        g,
                        Op::Transpose {
                            perm: vec![0, 2, 1],
                        },
                        &[cols],
                        at,
                    )?
                }
            };
            let mut f = add1(g, reshape(&[gr, 1, 1, 1, half, 1, 2]), &[pairs], at)?;
            if stages > 1 {
                let rest = add1(g, ones(&[gr, 1, 1, stages - 1, half, 1, 2]), &[], at)?;
                f = add1(g, Op::Concat { axis: 3 }, &[f, rest], at)?;
            }
            if blocks > 1 {
                let rest = add1(g, ones(&[gr, 1, blocks - 1, stages, half, 1, 2]), &[], at)?;
                f = add1(g, Op::Concat { axis: 2 }, &[f, rest], at)?;
            }
            f
        }
    };
    add1(g, Op::Mul, &[w, factor], at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::fold_util::testing::{count_ops, eval, param, rel_diff};
    use bfly_ir::{DType, Init, Output, Param, Type, print_graph, verify};

    fn input(g: &mut Graph, d: u64) -> Value {
        g.set_bound("T", 3);
        g.add_input("x", Type::new(DType::F32, [Dim::sym("T"), Dim::Const(d)]))
    }

    fn norm(g: &mut Graph, x: Value, d: u64) -> Value {
        let gain = param(g, "gain", &[d]);
        g.add1(Op::RmsNorm { eps: 1e-5 }, &[x, gain], None)
            .expect("rmsnorm")
    }

    fn outputs(g: &mut Graph, vals: &[Value]) {
        g.set_outputs(
            vals.iter()
                .enumerate()
                .map(|(i, v)| Output::value(format!("y{i}"), *v))
                .collect(),
        );
    }

    fn check_folds(mut g: Graph) -> Graph {
        let before = eval(&g);
        assert_eq!(fold_norm_gains(&mut g), Ok(1), "{}", print_graph(&g));
        assert_eq!(verify(&g), Ok(()));
        let text = print_graph(&g);
        assert!(text.contains("rmsnorm") && text.contains("fill"), "{text}");
        let err = rel_diff(&before, &eval(&g));
        assert!(err <= 1e-14, "{err:e}\n{text}");
        assert_eq!(fold_norm_gains(&mut g), Ok(0), "idempotent");
        g
    }

    #[test]
    fn folds_into_dense_grouped_dense_lora_and_monarch_consumers() {
        let mut g = Graph::new("t");
        let x = input(&mut g, 12);
        let h = norm(&mut g, x, 12);
        let w = param(&mut g, "w", &[5, 12]);
        let bias = param(&mut g, "bias", &[5]);
        let y0 = g.add1(Op::Matmul, &[h, w, bias], None).expect("matmul");
        let wg = param(&mut g, "wg", &[3, 2, 4]);
        let y1 = g.add1(Op::Matmul, &[h, wg], None).expect("matmul");
        let (a, b) = (param(&mut g, "a", &[2, 12]), param(&mut g, "b", &[4, 2]));
        let y2 = g
            .add1(Op::Lora { scale: 2.0 }, &[h, a, b], None)
            .expect("lora");
        // Per-head monarch, n_in = 4 per group padded to k·p = 2·3 = 6.
        let w1 = param(&mut g, "w1", &[3, 2, 2, 3]);
        let w2 = param(&mut g, "w2", &[3, 2, 2, 2]);
        let op = Op::Monarch { n_in: 4, n_out: 3 };
        let y3 = g.add1(op, &[h, w1, w2], None).expect("monarch");
        outputs(&mut g, &[y0, y1, y2, y3]);
        let g = check_folds(g);
        assert_eq!(count_ops(&g, "mul"), 4, "{}", print_graph(&g));
    }

    /// `x[T, G·n_in] → rmsnorm → butterfly` with random twiddles of the given geometry.
    fn butterfly_graph(
        groups: u64,
        n_in: u64,
        n_out: u64,
        blocks: u64,
        stride: StrideOrder,
    ) -> Graph {
        let mut g = Graph::new("t");
        let d = groups * n_in;
        let x = input(&mut g, d);
        let h = norm(&mut g, x, d);
        let n = bfly_ir::butterfly_width(n_in);
        let shape = TwiddleShape {
            groups,
            stacks: n_out.div_ceil(n),
            blocks,
            stages: u64::from(n.trailing_zeros()),
            n,
        };
        let tw = param(&mut g, "tw", &shape.dims());
        let bias = param(&mut g, "bias", &[groups * n_out]);
        let op = Op::Butterfly {
            n_in,
            n_out,
            stride,
        };
        let y = g.add1(op, &[h, tw, bias], None).expect("butterfly");
        outputs(&mut g, &[y]);
        g
    }

    #[test]
    fn folds_into_butterfly_twiddles_of_every_geometry() {
        for stride in [StrideOrder::Increasing, StrideOrder::Decreasing] {
            // Square; padded input (6 → 8) with two stacks; per-head groups with 3 blocks.
            for (groups, n_in, n_out, blocks) in [(1, 8, 8, 1), (1, 6, 11, 2), (2, 4, 4, 3)] {
                check_folds(butterfly_graph(groups, n_in, n_out, blocks, stride));
            }
        }
    }

    #[test]
    fn folds_into_dib_twiddles_but_not_hadamard_or_ternary() {
        let mut g = Graph::new("t");
        let x = input(&mut g, 8);
        let h = norm(&mut g, x, 8);
        let theta = param(&mut g, "theta", &[1, 1, 1, 3, 4]);
        let diag = param(&mut g, "diag", &[1, 1, 1, 3, 8]);
        let stride = StrideOrder::Decreasing;
        let tw = g
            .add1(Op::DibTwiddles { stride }, &[theta, diag], None)
            .expect("dib");
        let op = Op::Butterfly {
            n_in: 8,
            n_out: 8,
            stride,
        };
        let y = g.add1(op, &[h, tw], None).expect("butterfly");
        outputs(&mut g, &[y]);
        check_folds(g);

        for structured in [true, false] {
            let mut g = Graph::new("t");
            let x = input(&mut g, 8);
            let h = norm(&mut g, x, 8);
            let tw = if structured {
                let op = Op::HadamardTwiddles {
                    groups: 1,
                    stacks: 1,
                    blocks: 1,
                    n: 8,
                };
                g.add1(op, &[], None).expect("hadamard")
            } else {
                let w = param(&mut g, "w", &[1, 1, 1, 3, 4]);
                g.add1(Op::TernaryTwiddles { alpha: 0.5 }, &[w], None)
                    .expect("ternary")
            };
            let op = Op::Butterfly {
                n_in: 8,
                n_out: 8,
                stride: StrideOrder::Increasing,
            };
            let y = g.add1(op, &[h, tw], None).expect("butterfly");
            outputs(&mut g, &[y]);
            assert_eq!(fold_norm_gains(&mut g), Ok(0));
        }
    }

    #[test]
    fn skips_norms_that_cannot_lose_their_gain() {
        // One consumer is not linear.
        let mut g = Graph::new("t");
        let x = input(&mut g, 4);
        let h = norm(&mut g, x, 4);
        let w = param(&mut g, "w", &[3, 4]);
        let y = g.add1(Op::Matmul, &[h, w], None).expect("matmul");
        let s = g.add1(Op::Silu, &[h], None).expect("silu");
        outputs(&mut g, &[y, s]);
        assert_eq!(fold_norm_gains(&mut g), Ok(0));

        // The norm is an output.
        let mut g = Graph::new("t");
        let x = input(&mut g, 4);
        let h = norm(&mut g, x, 4);
        let w = param(&mut g, "w", &[3, 4]);
        let y = g.add1(Op::Matmul, &[h, w], None).expect("matmul");
        outputs(&mut g, &[y, h]);
        assert_eq!(fold_norm_gains(&mut g), Ok(0));

        // A tied head: the weight is also the embedding table.
        let mut g = Graph::new("t");
        g.set_bound("T", 3);
        let tok = g.add_input("tokens", Type::new(DType::I32, [Dim::sym("T")]));
        let table = param(&mut g, "table", &[5, 4]);
        let e = g.add1(Op::Embed, &[tok, table], None).expect("embed");
        let h = norm(&mut g, e, 4);
        let y = g.add1(Op::Matmul, &[h, table], None).expect("matmul");
        outputs(&mut g, &[y]);
        assert_eq!(fold_norm_gains(&mut g), Ok(0));

        // The norm feeds the weight slot, and a gain that is an activation.
        let mut g = Graph::new("t");
        let x = g.add_input("x", Type::fixed(DType::F32, [4, 4].as_slice()));
        let h = norm(&mut g, x, 4);
        let y = g.add1(Op::Matmul, &[x, h], None).expect("matmul");
        let v = g.add_input("v", Type::fixed(DType::F32, &[4]));
        let h2 = g
            .add1(Op::RmsNorm { eps: 1e-5 }, &[x, v], None)
            .expect("norm");
        let w = g.add_param(
            Param {
                name: "w2".into(),
                init: Init::Ones,
                trainable: false,
            },
            Type::fixed(DType::F32, &[2, 4]),
        );
        let y2 = g.add1(Op::Matmul, &[h2, w], None).expect("matmul");
        outputs(&mut g, &[y, y2]);
        assert_eq!(fold_norm_gains(&mut g), Ok(0));
    }
}
