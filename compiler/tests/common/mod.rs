//! Shared helpers of the pass tests: the golden specs, graphs at a pipeline stage, a fixed
//! training batch and evaluation on the f64 reference interpreter.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

use bfly_compiler::passes::{BUILD_STAGE, PassContext, pipeline, run_passes, run_passes_observed};
use bfly_compiler::spec::Trainable;
use bfly_compiler::{Mode, ModelSpec, build_graph_for, compile_spec_source, render_diagnostics};
use bfly_grammar::{SourceFile, Spanned};
use bfly_ir::{DType, Graph};
use bfly_targets::reference::{Tensor, Weights, evaluate, init_weights};

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../golden")
}

/// `(stem, spec, file)` for every `golden/specs/*.bfly`, sorted by stem.
pub fn golden_specs() -> Vec<(String, ModelSpec, SourceFile)> {
    let mut out = Vec::new();
    let dir = golden_dir().join("specs");
    for e in std::fs::read_dir(&dir).expect("golden/specs exists") {
        let path = e.expect("directory entry").path();
        if path.extension().and_then(|x| x.to_str()) != Some("bfly") {
            continue;
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let text = std::fs::read_to_string(&path).expect("readable spec");
        let file = SourceFile::new(format!("golden/specs/{stem}.bfly"), text);
        let spec = match compile_spec_source(&file) {
            Ok((spec, _)) => spec,
            Err(d) => panic!("{stem}: {}", render_diagnostics(&file, &d, false)),
        };
        out.push((stem, spec, file));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

pub fn golden_spec(stem: &str) -> (ModelSpec, SourceFile) {
    golden_specs()
        .into_iter()
        .find(|(s, _, _)| s == stem)
        .map(|(_, spec, file)| (spec, file))
        .unwrap_or_else(|| panic!("no golden spec {stem}"))
}

/// The same spec with every parameter trainable (so gradient checks reach every kind).
pub fn train_all(spec: &ModelSpec) -> ModelSpec {
    let mut spec = spec.clone();
    let kw = spec.model.keyword;
    match spec.train.as_mut() {
        Some(t) => t.trainable = Spanned::new(Trainable::All, kw),
        // Without a train section everything trains unless there is a lora section.
        None => assert!(spec.lora.is_none(), "give this spec a train section"),
    }
    assert_eq!(spec.trainable(), Trainable::All);
    spec
}

fn or_panic<T>(r: Result<T, Vec<bfly_grammar::Diagnostic>>, file: &SourceFile) -> T {
    r.unwrap_or_else(|d| panic!("{}", render_diagnostics(file, &d, false)))
}

/// The `mode` graph after stage `stop` (`build`, a pass name, or `None` for all passes).
pub fn graph_at(spec: &ModelSpec, file: &SourceFile, mode: Mode, stop: Option<&str>) -> Graph {
    let mut g = or_panic(build_graph_for(spec, file, mode), file);
    let passes = pipeline(mode, spec);
    or_panic(
        run_passes(&mut g, &passes, &PassContext::new(spec, mode), stop),
        file,
    );
    g
}

/// `(stage name, graph)` for `build` and after every pass of `mode`, in order.
pub fn every_stage(spec: &ModelSpec, file: &SourceFile, mode: Mode) -> Vec<(String, Graph)> {
    let mut g = or_panic(build_graph_for(spec, file, mode), file);
    let passes = pipeline(mode, spec);
    let mut stages = vec![(BUILD_STAGE.to_string(), g.clone())];
    or_panic(
        run_passes_observed(
            &mut g,
            &passes,
            &PassContext::new(spec, mode),
            None,
            &mut |p, g| stages.push((p.name().to_string(), g.clone())),
        ),
        file,
    );
    stages
}

/// Deterministic token ids in `0..vocab` (a small LCG: reproducible, no dependency).
pub fn token_ids(n: usize, vocab: u64, seed: u64) -> Vec<i64> {
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

/// Inputs for a graph of either mode: `%tokens` (and `%targets`) as `[B, T]` (or `[T]`) ids,
/// `%step` = 1.
pub fn inputs_for(g: &Graph, vocab: u64, b: usize, t: usize) -> Vec<Tensor> {
    g.inputs()
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let ty = &g.node(id).results[0];
            match (ty.dtype, ty.rank()) {
                (DType::F32, 0) => Tensor::f32(vec![], vec![1.0]),
                (DType::I32, 1) => Tensor::int(DType::I32, vec![t], token_ids(t, vocab, i as u64)),
                (DType::I32, 2) => {
                    Tensor::int(DType::I32, vec![b, t], token_ids(b * t, vocab, i as u64))
                }
                _ => panic!("unexpected input type {ty}"),
            }
        })
        .collect()
}

pub fn weights(g: &Graph, seed: u64) -> Weights {
    init_weights(g, seed).expect("weights materialize")
}

pub fn eval(g: &Graph, inputs: &[Tensor], w: &Weights) -> Vec<Tensor> {
    evaluate(g, inputs, w).unwrap_or_else(|e| panic!("@{}: {e}", g.name))
}

/// The float data of a tensor.
pub fn floats(t: &Tensor) -> &[f64] {
    t.floats().expect("a float tensor")
}

/// The scalar value of an `f32[]` tensor.
pub fn scalar(t: &Tensor) -> f64 {
    floats(t)[0]
}
