//! Every golden model, lowered: the program verifies, shares bodies across layers, and its
//! logits on the Kernel IR interpreter match the f64 reference interpreter of the graph.
//!
//! Tolerance: `max |Δlogit| ≤ 1e-4 · max(1, max |logit|)`. The lowered program computes in
//! f32 (unit round-off 6e-8) where the reference computes in f64; each layer adds a few
//! dozen roundings per value (dot products of ≤ 2048 terms, norms, softmax), so the f32
//! error stays around 1e-6 relative to the logits' scale for these depths. 1e-4 leaves two
//! orders of magnitude of margin while a wrong index, stride or missing term shows at O(1).
//!
//! A whole training step (forward, backward, optimizer, all lowered; the backward and
//! optimizer lowerings are `lower::grad`'s) is compared through what is not chaotic in f32:
//! the loss, the Adam first moments `m' = (1 − β1)·g` after one step (the gradients, to 1e-4
//! of their largest) and SGD updates `p' − p = −lr·g` (to 1e-3: `p'` is rounded to f32 at
//! the scale of `p`, which is ~100× the update). Adam's `p'` is not compared: after one step
//! it moves by `lr · g/(|g| + eps)`, whose f32 and f64 values differ at O(1) for gradients
//! near `eps`.
//!
//! Models with runtime int8 activation quantization (`quantize` of an activation) get
//! `2e-2`: an f32 quotient `x/scale` that lands on the other side of a rounding boundary
//! than the f64 one moves one int8 value by one step, i.e. one product by `scale · w`
//! (~1/127 of a row's largest term) — a legitimate difference, not a bug.

mod lower_common;

use bfly_compiler::Mode;
use bfly_ir::kernel::{KernelKind, verify_program};
use bfly_ir::{Graph, Op};
use bfly_targets::exec::Syms;
use bfly_targets::interp::{Interp, run_program};
use bfly_targets::lower::{LowerMode, lower_graph};
use bfly_targets::reference::Tensor;
use lower_common::*;

fn inference(spec: &bfly_compiler::ModelSpec) -> LowerMode {
    LowerMode::Inference {
        context: spec.model.context.node,
    }
}

/// Does the graph quantize activations at run time (not only weights)?
fn quantizes_activations(g: &Graph) -> bool {
    g.node_ids().any(|id| {
        matches!(g.node(id).op, Op::Quantize)
            && g.node(id).results[0]
                .dims
                .iter()
                .any(|d| d.as_const().is_none())
    })
}

fn tolerance(g: &Graph) -> f64 {
    if quantizes_activations(g) { 2e-2 } else { 1e-4 }
}

#[test]
fn every_golden_model_lowers_to_a_verified_program() {
    for (stem, spec, file) in golden_specs() {
        let g = graph_at(&spec, &file, Mode::Infer, None);
        let p = lower_graph(&g, inference(&spec)).unwrap_or_else(|e| panic!("{stem}: {e}"));
        if let Err(errors) = verify_program(&p) {
            panic!("{stem}:\n{}\n\n{}", errors.join("\n"), p.print());
        }
        // The training step: everything per step, no cache, optimizers in place and last.
        let g = graph_at(&spec, &file, Mode::Train, None);
        let p = lower_graph(&g, LowerMode::Training).unwrap_or_else(|e| panic!("{stem}: {e}"));
        if let Err(errors) = verify_program(&p) {
            panic!("{stem} (train):\n{}", errors.join("\n"));
        }
        let first_optimizer = p
            .kernels
            .iter()
            .position(|k| matches!(k.kind, KernelKind::Optimizer { .. }))
            .unwrap_or(p.kernels.len());
        assert!(
            p.kernels[first_optimizer..]
                .iter()
                .all(|k| matches!(k.kind, KernelKind::Optimizer { .. })),
            "{stem}: optimizer kernels run last"
        );
    }
}

#[test]
fn layers_share_bodies() {
    for (stem, spec, file) in golden_specs() {
        if spec.model.layers.node < 2 {
            continue;
        }
        let g = graph_at(&spec, &file, Mode::Infer, None);
        let p = lower_graph(&g, inference(&spec)).expect("lowers");
        assert!(
            p.bodies.len() < p.kernels.len(),
            "{stem}: {} bodies for {} kernels",
            p.bodies.len(),
            p.kernels.len()
        );
    }
}

#[test]
fn golden_logits_match_the_reference() {
    for (stem, spec, file) in golden_specs() {
        let g = graph_at(&spec, &file, Mode::Infer, None);
        let p = lower_graph(&g, inference(&spec)).expect("lowers");
        let w = weights(&g, 7);
        let t = 12.min(spec.model.context.node as usize);
        let ids = token_ids(t, spec.model.vocab.node, 3);
        let want = eval(&g, &[tokens(&ids)], &w);
        let got = run_program(&p, &w, &[tokens(&ids)], Syms::tokens(t))
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
        let (want, got) = (floats(&want[0]), floats(&got[0]));
        let scale = max_abs(want).max(1.0);
        let err = max_abs_diff(want, got) / scale;
        let tol = tolerance(&g);
        assert!(err <= tol, "{stem}: relative logit error {err:e} > {tol:e}");
    }
}

/// Training-mode forward and loss over a `[B, T]` batch: per-sequence rope positions and
/// attention, and the mean cross-entropy.
#[test]
fn golden_training_forward_matches_the_reference() {
    for stem in ["tiny-dense", "tiny-dib", "mixed"] {
        let (spec, file) = golden_spec(stem);
        let g = graph_at(&spec, &file, Mode::Train, Some("loss"));
        let p = lower_graph(&g, LowerMode::Training).expect("lowers");
        let w = weights(&g, 5);
        let (b, t) = (2, 4);
        let vocab = spec.model.vocab.node;
        let batch = |seed| {
            bfly_targets::reference::Tensor::int(
                bfly_ir::DType::I32,
                vec![b, t],
                token_ids(b * t, vocab, seed),
            )
        };
        let inputs: Vec<_> = g
            .inputs()
            .iter()
            .enumerate()
            .map(|(i, _)| batch(i as u64 + 1))
            .collect();
        let want = eval(&g, &inputs, &w);
        let got = run_program(&p, &w, &inputs, Syms::batch(b, t))
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
        for (o, (want, got)) in want.iter().zip(&got).enumerate() {
            let (want, got) = (floats(want), floats(got));
            let err = max_abs_diff(want, got) / max_abs(want).max(1.0);
            assert!(err <= 1e-4, "{stem} output {o}: relative error {err:e}");
        }
    }
}

/// Prefill k tokens, then decode one at `pos = k` from the KV cache: its logits match the
/// reference's full-sequence logits at the last position.
#[test]
fn kv_cache_decode_matches_the_full_sequence() {
    for (stem, spec, file) in golden_specs() {
        let g = graph_at(&spec, &file, Mode::Infer, None);
        let p = lower_graph(&g, inference(&spec)).expect("lowers");
        let w = weights(&g, 11);
        let vocab = spec.model.vocab.node;
        let k = 4.min(spec.model.context.node as usize - 1);
        let ids = token_ids(k + 1, vocab, 9);
        let want = eval(&g, &[tokens(&ids)], &w);
        let want = floats(&want[0]);
        let width = want.len() / (k + 1);
        let last = &want[k * width..];

        let mut run = Interp::new(&p, &w).unwrap_or_else(|e| panic!("{stem}: {e}"));
        run.step(&[tokens(&ids[..k])], Syms::tokens(k))
            .unwrap_or_else(|e| panic!("{stem} prefill: {e}"));
        let got = run
            .step(&[tokens(&ids[k..])], Syms::decode(1, k))
            .unwrap_or_else(|e| panic!("{stem} decode: {e}"));
        let got = floats(&got[0]);
        let err = max_abs_diff(last, got) / max_abs(last).max(1.0);
        let tol = tolerance(&g);
        assert!(
            err <= tol,
            "{stem}: decode logits differ by {err:e} (> {tol:e})"
        );
    }
}

#[test]
fn golden_training_steps_match_the_reference() {
    for (stem, spec, file) in golden_specs() {
        let g = graph_at(&spec, &file, Mode::Train, None);
        let p = lower_graph(&g, LowerMode::Training).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let w = weights(&g, 5);
        let (b, t) = (2, 3);
        let vocab = spec.model.vocab.node;
        let inputs: Vec<Tensor> = g
            .inputs()
            .iter()
            .enumerate()
            .map(|(i, &id)| match g.node(id).results[0].rank() {
                0 => Tensor::f32(vec![], vec![1.0]),
                _ => Tensor::int(
                    bfly_ir::DType::I32,
                    vec![b, t],
                    token_ids(b * t, vocab, i as u64 + 1),
                ),
            })
            .collect();
        let want = eval(&g, &inputs, &w);
        let mut run = Interp::new(&p, &w).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let values = run
            .step(&inputs, Syms::batch(b, t))
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
        let mut values = values.into_iter();
        for (o, want) in g.outputs().iter().zip(&want) {
            let want = floats(want);
            if !o.param {
                let got = values.next().expect("a value output");
                let err = max_abs_diff(want, floats(&got)) / max_abs(want).max(1.0);
                assert!(err <= 1e-4, "{stem} %{}: relative error {err:e}", o.name);
                continue;
            }
            let got: Vec<f64> = run
                .param(&o.name)
                .unwrap_or_else(|| panic!("{stem}: no param @{}", o.name))
                .into_iter()
                .map(f64::from)
                .collect();
            let sgd = matches!(g.node(o.value.node).op, Op::Sgd { .. });
            let (want, got, tol) = if sgd {
                let before = floats(&w[&o.name]);
                let delta = |v: &[f64]| v.iter().zip(before).map(|(a, b)| a - b).collect();
                (delta(want), delta(&got), 1e-3)
            } else if o.name.ends_with(".adam_m") {
                (want.to_vec(), got, 1e-4)
            } else {
                continue;
            };
            let err = max_abs_diff(&want, &got) / max_abs(&want).max(1e-30);
            assert!(
                err <= tol,
                "{stem} @{}: relative error {err:e} > {tol:e}",
                o.name
            );
        }
    }
}
