//! The inference folds preserve what every golden model computes: for each fold pass, the
//! logits of the graph right before it and right after it, on the f64 reference interpreter.
//!
//! - Inputs: 7 pseudo-random tokens. Weights: each spec's seed-5 init with every entry moved
//!   by a deterministic offset in [−0.1, 0.1). Without the offset the folds would be
//!   vacuous: LoRA `B` starts at zero and norm gains at one.
//! - Tolerance: `max |before − after| ≤ 1e-12 · max |before|`. Every fold is exact algebra
//!   (`W + s·B·A`, `W·diag(g)`, block concatenation, identities), so the two graphs differ
//!   only in where f64 rounding happens: a few ulps per dot product (≈ 1e-16 relative), grown
//!   by the depth of the model; 1e-12 leaves three orders of magnitude of headroom while
//!   still catching any real error (a wrong column scale or a dropped adapter term is
//!   ≥ 1e-3 here). Folds that only reorganize the same arithmetic — sharing `A·x` between
//!   adapters (`mixed`), composing butterflies, const-fold's exact identities — must be
//!   bit-identical, and are asserted so where a golden spec exercises them.

mod common;

use std::collections::BTreeSet;

use bfly_compiler::Mode;
use bfly_ir::{Graph, print_graph};
use bfly_targets::reference::{Data, Weights};
use common::*;

const FOLDS: [&str; 4] = [
    "fold-lora",
    "fold-norm-gain",
    "compose-butterflies",
    "const-fold",
];
const TOLERANCE: f64 = 1e-12;

/// Seed-5 weights, each entry moved by an offset in [−0.1, 0.1) from a SplitMix-style hash
/// of its parameter's position and index.
fn perturbed_weights(g: &Graph) -> Weights {
    let mut w = weights(g, 5);
    for (p, t) in w.values_mut().enumerate() {
        if let Data::F(values) = &mut t.data {
            for (i, v) in values.iter_mut().enumerate() {
                let mut z = (((p as u64) << 32) ^ i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                *v += 0.2 * ((z >> 11) as f64 / (1u64 << 53) as f64) - 0.1;
            }
        }
    }
    w
}

fn logits(g: &Graph, vocab: u64, w: &Weights) -> Vec<f64> {
    let inputs = inputs_for(g, vocab, 1, 7);
    floats(&eval(g, &inputs, w)[0]).to_vec()
}

#[test]
fn every_fold_keeps_the_logits_of_every_golden_model() {
    let mut changed = BTreeSet::new();
    let mut report = String::new();
    for (stem, spec, file) in golden_specs() {
        let vocab = spec.model.vocab.node;
        let stages = every_stage(&spec, &file, Mode::Infer);
        // Params are only ever added to the graph by the builder: the first stage has them all.
        let w = perturbed_weights(&stages[0].1);
        for fold in FOLDS {
            let at = stages
                .iter()
                .position(|(name, _)| name == fold)
                .unwrap_or_else(|| panic!("the infer pipeline has no `{fold}`"));
            let (before, after) = (&stages[at - 1].1, &stages[at].1);
            if print_graph(before) == print_graph(after) {
                continue;
            }
            changed.insert(format!("{stem} {fold}"));
            let (a, b) = (logits(before, vocab, &w), logits(after, vocab, &w));
            assert_eq!(a.len(), b.len(), "{stem} {fold}");
            let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let diff = a
                .iter()
                .zip(&b)
                .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
            let rel = diff / scale;
            report.push_str(&format!("{stem} {fold}: {rel:.2e}\n"));
            assert!(
                rel <= TOLERANCE,
                "{stem}: `{fold}` changed the logits by {rel:e} (relative)\n{report}"
            );
            // Sharing `A·x` is the same arithmetic in the same order.
            if stem == "mixed" && fold == "fold-lora" {
                assert_eq!(a, b, "mixed: shared adapter products are not bit-identical");
            }
        }
    }
    eprintln!("{report}");
    // The folds that golden specs exercise (so the comparisons above are not vacuous).
    for want in [
        "mixed fold-lora",
        "tiny-lora-dense fold-lora",
        "tiny-lora-dense fold-norm-gain",
        "tiny-dense fold-norm-gain",
        "tiny-butterfly fold-norm-gain",
        "tiny-dib fold-norm-gain",
        "tiny-monarch fold-norm-gain",
        "wide-2048 fold-norm-gain",
    ] {
        assert!(
            changed.contains(want),
            "`{want}` changed nothing: {changed:?}"
        );
    }
}

#[test]
fn folded_graphs_lose_what_they_folded() {
    let count = |g: &Graph, op: &str| {
        g.node_ids()
            .filter(|&id| g.node(id).op.name() == op)
            .count()
    };
    let (spec, file) = golden_spec("tiny-lora-dense");
    let g = graph_at(&spec, &file, Mode::Infer, Some("cse"));
    // Layer 0's three adapters merged; layer 1's two (per-head) share one product.
    assert_eq!(count(&g, "lora"), 0, "{}", print_graph(&g));
    assert_eq!(count(&g, "split"), 1, "{}", print_graph(&g));
    // Every rmsnorm reads the one shared `fill` of ones: all five gains folded.
    let norms: BTreeSet<_> = g
        .node_ids()
        .filter(|&id| g.node(id).op.name() == "rmsnorm")
        .map(|id| g.operands(id)[1])
        .collect();
    assert_eq!(count(&g, "rmsnorm"), 5);
    assert_eq!(norms.len(), 1);
    let ones = norms.first().expect("a gain");
    assert_eq!(g.node(ones.node).op.name(), "fill");

    // The tied head keeps `final_norm.gain` in its norm (the table is also the embedding).
    let (spec, file) = golden_spec("tiny-dense");
    let g = graph_at(&spec, &file, Mode::Infer, Some("cse"));
    let gains: Vec<String> = g
        .topo_order()
        .expect("acyclic")
        .into_iter()
        .filter(|&id| g.node(id).op.name() == "rmsnorm")
        .map(|id| {
            let gain = g.operands(id)[1];
            match &g.node(gain.node).op {
                bfly_ir::Op::Param(p) => p.name.clone(),
                op => op.name().into_owned(),
            }
        })
        .collect();
    assert_eq!(gains, ["fill", "fill", "fill", "fill", "final_norm.gain"]);
}
