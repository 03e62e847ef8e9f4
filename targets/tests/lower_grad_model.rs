//! One whole training step of golden models, lowered with `LowerMode::Training` and run by
//! the Kernel IR interpreter — and as Cranelift-compiled code on the threaded executor —
//! against the f64 reference interpreter's step: the loss, and every param and optimizer
//! state the step updates (written in place by the optimizer kernels).
//!
//! Tolerances (f32 kernels vs the f64 reference):
//! - the loss and the AdamW moments `m' = (1−β1)·g`, `v' = (1−β2)·g²` (at step 1, direct
//!   images of the gradients): `max |Δ| ≤ 1e-4 · max |reference|`. A gradient here has gone
//!   back through the whole network — a dozen matmuls, norms, attention and the butterfly
//!   stages, each adding f32 rounding of ~1e-6 of its magnitudes — so 1e-4 leaves room for
//!   the accumulated rounding (measured: ≤ 5e-6), while a wrong index or term is O(1);
//! - updated params: AdamW's step-1 update `g/(|g| + eps)` (= m̂/(√v̂ + eps)) is ≈ sign(g),
//!   so it resolves only gradients well above eps = 1e-8: an element whose reference
//!   gradient is below 1e-6 (that is, rounding-level) may differ by up to `2·lr`; every other
//!   element within `1e-3·lr + 1e-6·|p|` (the second term is f32 resolution of `p`). SGD's
//!   update `lr·g` is linear: within `1e-3·lr·max|g| + 1e-6·|p|`.

use bfly_compiler::{Mode, compile_spec_source, compile_to_stage, render_diagnostics};
use bfly_grammar::SourceFile;
use bfly_ir::kernel::{BufferKind, KernelProgram};
use bfly_ir::{DType, Graph, Op};
use bfly_targets::cranelift::HostProgram;
use bfly_targets::exec::Executor;
use bfly_targets::exec::Syms;
use bfly_targets::interp::Interp;
use bfly_targets::lower::{LowerMode, lower_graph};
use bfly_targets::reference::{Tensor, Weights, evaluate, init_weights};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

const B: usize = 2;
const T: usize = 5;

fn train_graph(stem: &str) -> Graph {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../golden/specs")
        .join(format!("{stem}.bfly"));
    let text = std::fs::read_to_string(&path).expect("golden spec");
    let file = SourceFile::new(format!("golden/specs/{stem}.bfly"), text);
    let (spec, _) = compile_spec_source(&file)
        .unwrap_or_else(|d| panic!("{}", render_diagnostics(&file, &d, false)));
    compile_to_stage(&spec, &file, Mode::Train, None)
        .unwrap_or_else(|d| panic!("{}", render_diagnostics(&file, &d, false)))
}

/// Deterministic ids in `0..vocab` (a small LCG).
fn ids(n: usize, vocab: u64, seed: u64) -> Vec<i64> {
    let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 33) % vocab) as i64
        })
        .collect()
}

/// `%tokens`, `%targets` as `[B, T]` ids and `%step` = 1, in graph input order.
fn inputs(g: &Graph) -> Vec<Tensor> {
    let vocab = g
        .params()
        .find(|(_, p, _)| p.name == "embed.weight")
        .and_then(|(_, _, ty)| ty.dims[0].as_const())
        .expect("an embedding table");
    g.inputs()
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let ty = &g.node(id).results[0];
            match (ty.dtype, ty.rank()) {
                (DType::F32, 0) => Tensor::f32(vec![], vec![1.0]),
                (DType::I32, 2) => {
                    Tensor::int(DType::I32, vec![B, T], ids(B * T, vocab, i as u64 + 7))
                }
                _ => panic!("unexpected input type {ty}"),
            }
        })
        .collect()
}

fn floats(t: &Tensor) -> &[f64] {
    t.floats().expect("float tensor")
}

/// Checks an updated param against the reference (see the module doc for the bounds).
fn check_param(
    g: &Graph,
    stem: &str,
    name: &str,
    got: &[f64],
    want: &[f64],
    before: &[f64],
    reference: &HashMap<&str, &[f64]>,
) {
    let o = g
        .outputs()
        .iter()
        .find(|o| o.param && o.name == name)
        .expect("output");
    let (lr, grads): (f64, Vec<f64>) = match &g.node(o.value.node).op {
        // At step 1 from m = 0, m' = (1−β1)·g.
        Op::AdamW { lr, beta1, .. } => {
            let m = reference[format!("{name}.adam_m").as_str()];
            (*lr, m.iter().map(|m| m / (1.0 - beta1)).collect())
        }
        // p' = p − lr·g.
        Op::Sgd { lr } => (
            *lr,
            want.iter().zip(before).map(|(w, p)| (p - w) / lr).collect(),
        ),
        other => panic!("@{name} is updated by `{}`", other.name()),
    };
    let adam = matches!(g.node(o.value.node).op, Op::AdamW { .. });
    let g_max = grads.iter().fold(0f64, |m, v| m.max(v.abs()));
    for (i, (((&k, &r), &p), &gr)) in got.iter().zip(want).zip(before).zip(&grads).enumerate() {
        let d = (k - r).abs();
        let strict = if adam {
            1e-3 * lr + 1e-6 * p.abs()
        } else {
            1e-3 * lr * g_max + 1e-6 * p.abs()
        };
        // AdamW's g/(|g| + eps) only resolves gradients well above eps = 1e-8.
        let sensitive = adam && gr.abs() < 1e-6;
        let bound = if sensitive { 2.0 * lr } else { strict };
        assert!(
            d <= bound,
            "{stem} @{name}[{i}]: kernel {k:e}, reference {r:e} (before {p:e}, gradient {gr:e}, lr {lr:e})"
        );
    }
}

/// A step's results: the plain outputs (the loss) in output order, and every param's values.
struct Stepped {
    outputs: Vec<Tensor>,
    params: HashMap<String, Vec<f32>>,
}

/// Names of the program's param buffers.
fn param_names(program: &KernelProgram) -> Vec<String> {
    program
        .buffers
        .iter()
        .filter_map(|b| match &b.kind {
            BufferKind::Param { name } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// One step on the Kernel IR interpreter.
fn interpreted(program: &KernelProgram, w: &Weights, inputs: &[Tensor]) -> Result<Stepped, String> {
    let mut interp = Interp::new(program, w).map_err(|e| e.to_string())?;
    let outputs = interp
        .step(inputs, Syms::batch(B, T))
        .map_err(|e| e.to_string())?;
    let params = param_names(program)
        .into_iter()
        .filter_map(|n| interp.param(&n).map(|v| (n, v)))
        .collect();
    Ok(Stepped { outputs, params })
}

/// One step of Cranelift-compiled code on the threaded executor, once per entry of
/// `threads` (that many threads). The program is compiled once and shared by the executors:
/// compilation does not depend on the thread count, so compiling per count only doubled the
/// Cranelift time (the slowest part of this file under QEMU); each count still gets a fresh
/// executor and runs the whole step.
fn compiled(
    program: &KernelProgram,
    w: &Weights,
    inputs: &[Tensor],
    threads: &[usize],
) -> Result<Vec<Stepped>, String> {
    let program = Arc::new(program.clone());
    let jit = Arc::new(HostProgram::compile(&program).map_err(|e| e.to_string())?);
    threads
        .iter()
        .map(|&count| {
            let mut ex = Executor::new(Arc::clone(&program), jit.clone(), w, count)
                .map_err(|e| e.to_string())?;
            let outputs = ex
                .step(inputs, Syms::batch(B, T))
                .map_err(|e| e.to_string())?;
            let params = param_names(&program)
                .into_iter()
                .filter_map(|n| ex.param_f32(&n).map(|v| (n, v)))
                .collect();
            Ok(Stepped { outputs, params })
        })
        .collect()
}

fn training_step_matches(stem: &str) {
    let g = train_graph(stem);
    let w: Weights = init_weights(&g, 3).expect("weights");
    let inputs = inputs(&g);
    let want = evaluate(&g, &inputs, &w).unwrap_or_else(|e| panic!("{stem}: {e}"));
    let program = lower_graph(&g, LowerMode::Training).unwrap_or_else(|e| panic!("{stem}: {e}"));
    let got = interpreted(&program, &w, &inputs).unwrap_or_else(|e| panic!("{stem}: {e}"));
    check_step(&g, stem, &w, &want, &got);
}

/// Compares one step's loss, moments and params with the reference step.
fn check_step(g: &Graph, stem: &str, w: &Weights, want: &[Tensor], got: &Stepped) {
    let by_name: HashMap<&str, &[f64]> = g
        .outputs()
        .iter()
        .zip(want)
        .map(|(o, t)| (o.name.as_str(), floats(t)))
        .collect();
    let mut plain = got.outputs.iter();
    let mut updated = 0;
    for (o, want) in g.outputs().iter().zip(want) {
        let want = floats(want);
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
        if !o.param {
            let got = plain
                .next()
                .unwrap_or_else(|| panic!("{stem}: missing output %{}", o.name));
            let err = max_diff(floats(got), want);
            assert!(
                err <= 1e-4 * scale.max(1e-6),
                "{stem} %{}: off by {err:e} (scale {scale:e})",
                o.name
            );
            continue;
        }
        updated += 1;
        let got: Vec<f64> = got
            .params
            .get(&o.name)
            .unwrap_or_else(|| panic!("{stem}: no param @{}", o.name))
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        if o.name.ends_with(".adam_m") || o.name.ends_with(".adam_v") {
            let err = max_diff(&got, want);
            assert!(
                err <= 1e-4 * scale.max(1e-30),
                "{stem} @{}: off by {err:e} (scale {scale:e})",
                o.name
            );
            continue;
        }
        check_param(g, stem, &o.name, &got, want, floats(&w[&o.name]), &by_name);
    }
    assert!(updated > 0, "{stem}: the step updates no param");
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn tiny_dense_training_step_matches_the_reference() {
    training_step_matches("tiny-dense");
}

#[test]
fn tiny_dib_training_step_matches_the_reference() {
    training_step_matches("tiny-dib");
}

#[test]
fn tiny_monarch_training_step_matches_the_reference() {
    training_step_matches("tiny-monarch");
}

#[test]
fn tiny_lora_dense_training_step_matches_the_reference() {
    training_step_matches("tiny-lora-dense");
}

/// Canonical butterflies with trainable twiddles (n up to 512, up to three stacks).
#[test]
fn tiny_butterfly_training_step_matches_the_reference() {
    training_step_matches("tiny-butterfly");
}

/// LoRA adapters trained with SGD.
#[test]
fn mixed_training_step_matches_the_reference() {
    training_step_matches("mixed");
}

/// Fixed Hadamard twiddles: the butterfly backward with a non-trainable twiddle operand.
#[test]
fn tiny_hadamard_training_step_matches_the_reference() {
    training_step_matches("tiny-hadamard");
}

/// The same step as Cranelift-compiled code on the threaded executor: it matches the
/// reference within the same bounds, and is bit-identical on 1 and 3 threads (every sum over
/// rows runs inside one parallel iteration, in one order).
#[test]
fn compiled_training_steps_match_and_do_not_depend_on_threads() {
    for stem in [
        "tiny-dense",
        "tiny-dib",
        "tiny-monarch",
        "tiny-lora-dense",
        "tiny-butterfly",
        "tiny-hadamard",
        "mixed",
    ] {
        let g = train_graph(stem);
        let w: Weights = init_weights(&g, 3).expect("weights");
        let inputs = inputs(&g);
        let want = evaluate(&g, &inputs, &w).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let program =
            lower_graph(&g, LowerMode::Training).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let mut runs =
            compiled(&program, &w, &inputs, &[1, 3]).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let three = runs.pop().expect("the 3-thread run");
        let one = runs.pop().expect("the 1-thread run");
        check_step(&g, stem, &w, &want, &one);
        let bits = |s: &Stepped| -> Vec<Vec<u32>> {
            let mut all: Vec<Vec<u32>> = s
                .outputs
                .iter()
                .map(|t| floats(t).iter().map(|&v| (v as f32).to_bits()).collect())
                .collect();
            for o in g.outputs().iter().filter(|o| o.param) {
                let v = s.params.get(&o.name).cloned().unwrap_or_default();
                all.push(v.iter().map(|x| x.to_bits()).collect());
            }
            all
        };
        assert!(bits(&one) == bits(&three), "{stem}: 1 and 3 threads differ");
    }
}
