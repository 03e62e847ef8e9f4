//! Whole-model gradient checks: the `autodiff` pass against finite differences of the loss,
//! both evaluated on the f64 reference interpreter, for every golden spec.
//!
//! How gradients are read: the train pipeline stops after `autodiff`, whose graph returns
//! `%loss` and one `%grad_NAME` output per trainable param; the finite differences evaluate
//! the graph after `loss` (the same forward, returning only `%loss`).
//!
//! - Batch `B = 2, T = 5`, fixed tokens and targets, weights from the spec's init. Params that
//!   start at zero (lora B, biases) get small random values, so no gradient is zero by
//!   accident of the init.
//! - Every golden spec is checked with `trainable = all` (all kinds of params), and `mixed`
//!   also as written (`trainable = lora`).
//! - Entries: for the first and last param of every kind (`weight`, `theta`, `diag`,
//!   `twiddles`, `w`, `gain`, …) the entry with the largest gradient and a pseudo-random one;
//!   more params until at least 12 entries.
//! - Finite differences: the fourth-order central stencil
//!   `(8(f(h) − f(−h)) − (f(2h) − f(−2h))) / 12h`, `h = 1e-4`. Truncation is `O(h⁴)`: at
//!   `h = 1e-3` the largest embedding entries (rows of norm ≈ 0.16 going into rmsnorm, where
//!   the loss curves hard) were off by 1.5e-6; f64 rounding of a loss near 5 adds ≈ 1e-11
//!   absolute. The relative error is `|fd − ad| / max(|fd|, |ad|, 1e-4)`, bound 1e-6: relative
//!   for every entry of magnitude ≥ 1e-4 (at least half the entries, asserted), absolute 1e-10
//!   below that, where the rounding of the differences would dominate. Observed: ≤ 3e-8.
//! - Ternary twiddles train by the straight-through estimator (the forward rounds `w` to
//!   {−α, 0, α}, whose true derivative is 0). Their `w` is checked where the STE is exact: `w`
//!   is put on the grid, and the finite differences run on a copy of the graph whose
//!   `ternary_twiddles` is the unrounded `[[1, w], [1, −w]]`, built from plain ops. At grid
//!   points that copy computes the same loss bit for bit.

mod common;

use bfly_compiler::passes::grad_output_name;
use bfly_compiler::{Mode, ModelSpec};
use bfly_grammar::SourceFile;
use bfly_ir::{DType, Dim, Graph, Op, Value};
use bfly_targets::reference::{Data, Weights};
use common::*;

const B: usize = 2;
const T: usize = 5;
const SEED: u64 = 3;
const H: f64 = 1e-4;
const TOLERANCE: f64 = 1e-6;
const FLOOR: f64 = 1e-4;

struct Entry {
    param: String,
    index: usize,
    ad: f64,
    fd: f64,
}

impl Entry {
    fn error(&self) -> f64 {
        (self.fd - self.ad).abs() / self.fd.abs().max(self.ad.abs()).max(FLOOR)
    }
}

fn kind(param: &str) -> &str {
    param.rsplit('.').next().unwrap_or(param)
}

/// Names of the params whose values feed a `ternary_twiddles`, with that op's α.
fn ternary_params(g: &Graph) -> Vec<(String, f64)> {
    g.node_ids()
        .filter_map(|id| match &g.node(id).op {
            Op::TernaryTwiddles { alpha } => {
                let w = g.operands(id)[0];
                match &g.node(w.node).op {
                    Op::Param(p) => Some((p.name.clone(), *alpha)),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect()
}

/// Replaces every `ternary_twiddles w {alpha}` by the unrounded `[[1, w], [1, −w]]`.
fn unrounded_ternary(g: &Graph) -> Graph {
    let mut g = g.clone();
    let nodes: Vec<_> = g
        .node_ids()
        .filter(|&id| matches!(g.node(id).op, Op::TernaryTwiddles { .. }))
        .collect();
    for id in nodes {
        let w = g.operands(id)[0];
        let mut dims = g.value_type(w).dims.clone();
        dims.extend([Dim::Const(1), Dim::Const(1)]);
        let mut op = |op: Op, args: &[Value]| g.add1(op, args, None).expect("valid op");
        let w7 = op(Op::Reshape { dims: dims.clone() }, &[w]);
        let one = op(
            Op::Fill {
                value: 1.0,
                dtype: DType::F32,
                dims,
            },
            &[],
        );
        let neg = op(Op::Neg, &[w7]);
        let row0 = op(Op::Concat { axis: 6 }, &[one, w7]);
        let row1 = op(Op::Concat { axis: 6 }, &[one, neg]);
        let tw = op(Op::Concat { axis: 5 }, &[row0, row1]);
        g.replace_uses(Value::first(id), tw);
        g.remove_node(id);
    }
    assert_eq!(bfly_ir::verify(&g), Ok(()));
    g
}

fn data_mut<'a>(w: &'a mut Weights, name: &str) -> &'a mut Vec<f64> {
    match &mut w.get_mut(name).expect("param has a value").data {
        Data::F(v) => v,
        Data::I(_) => panic!("@{name} is not a float tensor"),
    }
}

/// Weights for the check: the init, zero params made small and random, ternary `w` on its
/// grid.
fn check_weights(g: &Graph) -> Weights {
    let mut w = weights(g, SEED);
    for (name, t) in w.iter_mut() {
        if let Data::F(v) = &mut t.data
            && v.iter().all(|x| *x == 0.0)
        {
            let ids = token_ids(v.len(), 2001, name.len() as u64);
            for (x, r) in v.iter_mut().zip(ids) {
                *x = (r as f64 - 1000.0) * 5e-5;
            }
        }
    }
    for (name, alpha) in ternary_params(g) {
        for x in data_mut(&mut w, &name) {
            *x = alpha * (*x / alpha).round().clamp(-1.0, 1.0);
        }
    }
    w
}

/// Picks `(param, index)` pairs: first and last param of each kind, largest and a random
/// entry of each, more params until at least 12 entries.
fn pick(grads: &[(String, Vec<f64>)]) -> Vec<(usize, usize)> {
    let mut chosen: Vec<usize> = Vec::new();
    let mut kinds: Vec<&str> = grads.iter().map(|(n, _)| kind(n)).collect();
    kinds.dedup();
    for k in &kinds {
        let of_kind: Vec<usize> = (0..grads.len())
            .filter(|&i| kind(&grads[i].0) == *k)
            .collect();
        for i in [of_kind.first(), of_kind.last()].into_iter().flatten() {
            if !chosen.contains(i) {
                chosen.push(*i);
            }
        }
    }
    let mut rest = (0..grads.len())
        .filter(|i| !chosen.contains(i))
        .collect::<Vec<_>>()
        .into_iter();
    while chosen.len() * 2 < 12 {
        match rest.next() {
            Some(i) => chosen.push(i),
            None => break,
        }
    }
    let mut entries = Vec::new();
    for i in chosen {
        let g = &grads[i].1;
        let largest = (0..g.len())
            .max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()))
            .unwrap_or(0);
        let random = token_ids(1, g.len() as u64, i as u64 + 11)[0] as usize;
        entries.push((i, largest));
        if random != largest {
            entries.push((i, random));
        }
    }
    entries
}

fn check(stem: &str, spec: &ModelSpec, file: &SourceFile) -> Vec<Entry> {
    let vocab = spec.model.vocab.node;
    let grad_graph = graph_at(spec, file, Mode::Train, Some("autodiff"));
    let loss_graph = graph_at(spec, file, Mode::Train, Some("loss"));
    let unrounded = unrounded_ternary(&loss_graph);
    let ternary: Vec<String> = ternary_params(&loss_graph)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let inputs = inputs_for(&loss_graph, vocab, B, T);
    let mut w = check_weights(&grad_graph);
    let outs = eval(&grad_graph, &inputs, &w);
    let loss = scalar(&outs[0]);
    assert!(loss.is_finite() && loss > 0.0, "{stem}: loss {loss}");
    assert_eq!(
        scalar(&eval(&loss_graph, &inputs, &w)[0]).to_bits(),
        loss.to_bits(),
        "{stem}: the loss graph and the gradient graph disagree on the loss"
    );
    let trainable: Vec<String> = grad_graph
        .params()
        .filter(|(_, p, _)| p.trainable)
        .map(|(_, p, _)| p.name.clone())
        .collect();
    assert_eq!(
        outs.len(),
        1 + trainable.len(),
        "{stem}: one gradient per param"
    );
    let grads: Vec<(String, Vec<f64>)> = trainable
        .iter()
        .zip(&outs[1..])
        .zip(&grad_graph.outputs()[1..])
        .map(|((name, t), o)| {
            assert_eq!(o.name, grad_output_name(name));
            assert_eq!(t.shape, w[name].shape, "{stem}: gradient of @{name}");
            (name.clone(), floats(t).to_vec())
        })
        .collect();
    let mut entries = Vec::new();
    for (i, index) in pick(&grads) {
        let name = &grads[i].0;
        let graph = if ternary.contains(name) {
            &unrounded
        } else {
            &loss_graph
        };
        let x0 = data_mut(&mut w, name)[index];
        let mut f = |delta: f64| {
            data_mut(&mut w, name)[index] = x0 + delta;
            scalar(&eval(graph, &inputs, &w)[0])
        };
        let fd = (8.0 * (f(H) - f(-H)) - (f(2.0 * H) - f(-2.0 * H))) / (12.0 * H);
        data_mut(&mut w, name)[index] = x0;
        entries.push(Entry {
            param: name.clone(),
            index,
            ad: grads[i].1[index],
            fd,
        });
    }
    entries
}

fn assert_close(stem: &str, entries: &[Entry], spec: &ModelSpec) {
    let mut report = format!("{stem}: {} entries\n", entries.len());
    for e in entries {
        report.push_str(&format!(
            "  @{}[{}]: autodiff {:+.12e}  fd {:+.12e}  rel {:.1e}\n",
            e.param,
            e.index,
            e.ad,
            e.fd,
            e.error()
        ));
    }
    eprint!("{report}");
    assert!(entries.len() >= 12, "{report}");
    let params: std::collections::BTreeSet<&str> =
        entries.iter().map(|e| e.param.as_str()).collect();
    assert!(params.len() >= 2, "{report}");
    let has_butterfly = spec.sites.iter().any(|s| {
        !matches!(
            s.kind.op,
            bfly_compiler::spec::LinearOp::Dense
                | bfly_compiler::spec::LinearOp::Monarch { .. }
                | bfly_compiler::spec::LinearOp::Hadamard
        )
    });
    let twiddle_entry = entries
        .iter()
        .any(|e| ["twiddles", "theta", "diag", "w"].contains(&kind(&e.param)));
    if has_butterfly && spec.trainable() == bfly_compiler::spec::Trainable::All {
        assert!(twiddle_entry, "{stem}: no twiddle entry\n{report}");
    }
    let nonzero = entries.iter().filter(|e| e.ad.abs() > 1e-4).count();
    assert!(
        nonzero * 2 >= entries.len(),
        "{stem}: gradients too small to test\n{report}"
    );
    for e in entries {
        assert!(
            e.error() <= TOLERANCE,
            "{stem}: @{}[{}]\n{report}",
            e.param,
            e.index
        );
    }
}

fn check_golden(stem: &str) {
    let (spec, file) = golden_spec(stem);
    let all = train_all(&spec);
    assert_close(stem, &check(stem, &all, &file), &all);
}

#[test]
fn tiny_dense_gradients_match_finite_differences() {
    check_golden("tiny-dense");
}

#[test]
fn tiny_lora_dense_gradients_match_finite_differences() {
    check_golden("tiny-lora-dense");
}

#[test]
fn tiny_dib_gradients_match_finite_differences() {
    check_golden("tiny-dib");
}

#[test]
fn tiny_butterfly_gradients_match_finite_differences() {
    check_golden("tiny-butterfly");
}

#[test]
fn tiny_hadamard_gradients_match_finite_differences() {
    check_golden("tiny-hadamard");
}

#[test]
fn tiny_monarch_gradients_match_finite_differences() {
    check_golden("tiny-monarch");
}

#[test]
fn tiny_quant_gradients_match_finite_differences() {
    check_golden("tiny-quant");
}

#[test]
fn wide_2048_gradients_match_finite_differences() {
    check_golden("wide-2048");
}

#[test]
fn mixed_gradients_match_finite_differences() {
    check_golden("mixed");
}

#[test]
fn mixed_lora_only_gradients_match_finite_differences() {
    let (spec, file) = golden_spec("mixed");
    let entries = check("mixed (lora)", &spec, &file);
    assert!(entries.iter().all(|e| e.param.contains(".lora_")));
    assert_close("mixed (lora)", &entries, &spec);
}

#[test]
fn every_golden_spec_has_a_gradient_check() {
    let checked = [
        "mixed",
        "tiny-butterfly",
        "tiny-dense",
        "tiny-dib",
        "tiny-hadamard",
        "tiny-lora-dense",
        "tiny-monarch",
        "tiny-quant",
        "wide-2048",
    ];
    let stems: Vec<String> = golden_specs().into_iter().map(|(s, _, _)| s).collect();
    assert_eq!(stems, checked, "add a test above for each new golden spec");
}
