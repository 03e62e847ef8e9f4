//! Compiled specs through the artifact format, and safetensors weight import onto a graph.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use bfly_compiler::artifact::{ImportError, ImportProblem, artifact_tensors, import_weights};
use bfly_compiler::{Mode, compile_to_stage, render_diagnostics};
use bfly_ir::{DType, Graph, print_graph};
use bfly_runtime::artifact::tensor::dtype_to_safetensors;
use bfly_runtime::artifact::{Artifact, ArtifactMode, ArtifactParts, HostTensor, write_artifact};
use bfly_targets::reference::kernels::quant::{f16_bits, round_to_f16};
use bfly_targets::reference::{Tensor, Weights, init_weights};
use common::golden_spec;
use safetensors::Dtype;
use safetensors::tensor::TensorView as StView;

/// A fresh directory for one test (the process id keeps the two QEMU legs of
/// scripts/test-all.sh, which run the same binaries at once, apart).
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("artifact-import-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// The fully optimized `mode` graph of a golden spec, with its source text and vocabulary.
fn compiled(stem: &str, mode: Mode) -> (Graph, String, u32) {
    let (spec, file) = golden_spec(stem);
    let g = compile_to_stage(&spec, &file, mode, None)
        .unwrap_or_else(|d| panic!("{}", render_diagnostics(&file, &d, false)));
    let vocab = u32::try_from(spec.model.vocab.node).expect("vocab fits u32");
    (g, file.text.clone(), vocab)
}

fn floats(t: &Tensor) -> Vec<f32> {
    t.floats()
        .expect("float tensor")
        .iter()
        .map(|&v| v as f32)
        .collect()
}

/// Writes a plain safetensors file of `tensors` (no metadata), as an exporter would.
fn write_safetensors(path: &Path, tensors: &BTreeMap<String, HostTensor>) {
    let bytes = safetensors::serialize(tensors.iter(), None).expect("serialize");
    fs::write(path, bytes).expect("write weights file");
}

fn f32_tensor(dims: Vec<usize>) -> HostTensor {
    let n = dims.iter().product::<usize>();
    let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.25).collect();
    HostTensor::from_f32(dims, &data).expect("sizes match")
}

fn roundtrip_artifact(stem: &str, mode: Mode) {
    let (g, source, vocab) = compiled(stem, mode);
    let weights = init_weights(&g, 1).expect("weights materialize");
    let tensors = artifact_tensors(&g, &weights).expect("weights convert");
    let path = scratch(&format!("{stem}-{}", mode.name())).join(format!("{stem}.bfa"));
    let artifact_mode = match mode {
        Mode::Infer => ArtifactMode::Infer,
        Mode::Train => ArtifactMode::Train,
    };
    // A train artifact carries the inference graph over the same params.
    let eval = (mode == Mode::Train).then(|| compiled(stem, Mode::Infer).0);
    let parts = ArtifactParts {
        graph: &g,
        mode: artifact_mode,
        spec_source: &source,
        spec_name: &format!("{stem}.bfly"),
        vocab,
        tensors: &tensors,
        eval_graph: eval.as_ref(),
    };
    write_artifact(&path, &parts).unwrap_or_else(|e| panic!("{stem}: {e}"));
    let a = Artifact::open(&path).unwrap_or_else(|e| panic!("{stem}: {e}"));
    assert_eq!(print_graph(a.graph()), print_graph(&g), "{stem}");
    assert_eq!(
        a.eval_graph().map(print_graph),
        eval.as_ref().map(print_graph),
        "{stem}"
    );
    assert_eq!(a.spec_source(), source);
    assert_eq!(a.spec_name(), format!("{stem}.bfly"));
    assert_eq!(a.mode(), artifact_mode);
    assert_eq!(a.vocab(), vocab);
    assert_eq!(a.tensor_names().count(), weights.len(), "{stem}");
    for (name, t) in &weights {
        let v = a
            .tensor(name)
            .unwrap_or_else(|| panic!("{stem}: no tensor {name}"));
        assert_eq!(v.dims, t.shape.as_slice(), "{stem}: {name}");
        if t.dtype.is_float() {
            assert_eq!(v.to_f32_vec(), floats(t), "{stem}: {name}");
        } else {
            assert_eq!(Some(v.to_i64_vec().as_slice()), t.ints(), "{stem}: {name}");
        }
    }
    // Seeded values are exact in every stored dtype: the reference weights survive unchanged.
    assert_eq!(a.to_reference_weights(), weights, "{stem}");
}

#[test]
fn tiny_dense_round_trips_through_an_artifact() {
    roundtrip_artifact("tiny-dense", Mode::Infer);
}

#[test]
fn every_small_golden_model_round_trips_in_both_modes() {
    for stem in [
        "mixed",
        "tiny-butterfly",
        "tiny-dib",
        "tiny-hadamard",
        "tiny-lora-dense",
        "tiny-monarch",
        "tiny-quant",
    ] {
        for mode in Mode::ALL {
            roundtrip_artifact(stem, mode);
        }
    }
}

#[test]
fn exported_weights_import_exactly() {
    let (g, _, _) = compiled("tiny-dense", Mode::Infer);
    let weights = init_weights(&g, 3).expect("weights materialize");
    let path = scratch("exact").join("weights.safetensors");
    write_safetensors(&path, &artifact_tensors(&g, &weights).expect("convert"));
    let imported = import_weights(&g, &path, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(imported, weights);
}

#[test]
fn half_precision_tensors_are_widened() {
    let (g, _, _) = compiled("tiny-dense", Mode::Infer);
    let weights = init_weights(&g, 3).expect("weights materialize");
    let mut tensors = artifact_tensors(&g, &weights).expect("convert");
    let name = "layers.0.attn.q.weight";
    let original = weights[name].floats().expect("floats").to_vec();
    let dims = weights[name].shape.clone();
    let halves: Vec<u8> = original
        .iter()
        .flat_map(|&v| f16_bits(v).to_le_bytes())
        .collect();
    tensors.insert(
        name.into(),
        HostTensor {
            dtype: DType::F16,
            dims: dims.clone(),
            bytes: halves,
        },
    );
    // bf16: the top 16 bits of each f32 (truncation, so the expected values are exact).
    let bf_name = "layers.0.attn.k.weight";
    let bf_src = weights[bf_name].floats().expect("floats").to_vec();
    let bf_expected: Vec<f64> = bf_src
        .iter()
        .map(|&v| f64::from(f32::from_bits((v as f32).to_bits() & 0xFFFF_0000)))
        .collect();
    let bf_bytes: Vec<u8> = bf_src
        .iter()
        .flat_map(|&v| (((v as f32).to_bits() >> 16) as u16).to_le_bytes())
        .collect();
    // HostTensor cannot say BF16, so the file is written through safetensors' own views.
    tensors.remove(bf_name);
    let mut views: Vec<(String, StView<'_>)> = tensors
        .iter()
        .map(|(n, t)| {
            let dtype = dtype_to_safetensors(t.dtype);
            let view = StView::new(dtype, t.dims.clone(), &t.bytes).expect("view");
            (n.clone(), view)
        })
        .collect();
    let bf_shape = weights[bf_name].shape.clone();
    let bf_view = StView::new(Dtype::BF16, bf_shape, &bf_bytes).expect("bf16 view");
    views.push((bf_name.to_string(), bf_view));
    let path = scratch("half").join("weights.safetensors");
    fs::write(
        &path,
        safetensors::serialize(views, None).expect("serialize"),
    )
    .expect("write");

    let imported = import_weights(&g, &path, None).unwrap_or_else(|e| panic!("{e}"));
    let want: Vec<f64> = original.iter().map(|&v| round_to_f16(v)).collect();
    assert_eq!(imported[name].floats(), Some(want.as_slice()));
    assert_eq!(imported[name].dtype, DType::F32, "kept the param's dtype");
    assert_eq!(imported[bf_name].floats(), Some(bf_expected.as_slice()));
}

#[test]
fn missing_unexpected_and_misshaped_tensors_are_reported_together() {
    let (g, _, _) = compiled("tiny-dense", Mode::Infer);
    let weights = init_weights(&g, 3).expect("weights materialize");
    let mut tensors = artifact_tensors(&g, &weights).expect("convert");
    // Missing: dropped. Unexpected: a typo of another param's name. Mis-shaped: transposed.
    tensors
        .remove("layers.1.mlp.up.weight")
        .expect("param exists");
    let typo = tensors
        .remove("layers.0.attn.q.weight")
        .expect("param exists");
    tensors.insert("layers.0.attn.q.wieght".into(), typo);
    tensors.insert("final_norm.gain".into(), f32_tensor(vec![32, 2]));
    let path = scratch("mismatch").join("weights.safetensors");
    write_safetensors(&path, &tensors);

    let e = import_weights(&g, &path, None).expect_err("mismatched file");
    let msg = e.to_string();
    let ImportError::Mismatch { problems, .. } = &e else {
        panic!("expected a mismatch, got: {msg}");
    };
    assert_eq!(problems.len(), 4, "{msg}");
    assert!(matches!(
        &problems[0],
        ImportProblem::WrongShape { name, found, .. } if name == "final_norm.gain" && found == &[32, 2]
    ));
    for needle in [
        "weights.safetensors: the weights do not match the graph's params (4 problem(s)):",
        "tensor `final_norm.gain`: shape [32, 2], but param @final_norm.gain is f32[64]",
        "missing tensor `layers.0.attn.q.weight` (param @layers.0.attn.q.weight: f32[64, 64])",
        "unexpected tensor `layers.0.attn.q.wieght`: the graph has no such param (did you mean `layers.0.attn.q.weight`?)",
        "missing tensor `layers.1.mlp.up.weight` (param @layers.1.mlp.up.weight: f32[128, 64])",
        "a partial import keeps the seeded init",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
    }
}

#[test]
fn partial_import_keeps_the_fallback_for_absent_params() {
    let (g, _, _) = compiled("tiny-dense", Mode::Infer);
    let base = init_weights(&g, 1).expect("weights materialize");
    let other = init_weights(&g, 2).expect("weights materialize");
    let mut tensors = artifact_tensors(&g, &other).expect("convert");
    tensors.remove("embed.weight").expect("param exists");
    let path = scratch("partial").join("weights.safetensors");
    write_safetensors(&path, &tensors);

    let e = import_weights(&g, &path, None).expect_err("strict import");
    assert!(
        e.to_string().contains("missing tensor `embed.weight`"),
        "{e}"
    );

    let w: Weights = import_weights(&g, &path, Some(&base)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w["embed.weight"], base["embed.weight"]);
    for (name, t) in &other {
        if name != "embed.weight" {
            assert_eq!(&w[name], t, "{name}");
        }
    }
    // A typo is still an error with a fallback: the user's tensor would be silently dropped.
    tensors.insert("embed.wieght".into(), f32_tensor(vec![256, 64]));
    write_safetensors(&path, &tensors);
    let e = import_weights(&g, &path, Some(&base)).expect_err("unexpected tensor");
    assert!(
        e.to_string().contains("did you mean `embed.weight`?"),
        "{e}"
    );
}

#[test]
fn wrong_dtype_class_and_unreadable_files() {
    let (g, _, _) = compiled("tiny-dense", Mode::Infer);
    let weights = init_weights(&g, 3).expect("weights materialize");
    let mut tensors = artifact_tensors(&g, &weights).expect("convert");
    tensors.insert(
        "final_norm.gain".into(),
        HostTensor::from_ints(DType::I32, vec![64], &[1; 64]).expect("sizes"),
    );
    let dir = scratch("dtype");
    let path = dir.join("weights.safetensors");
    write_safetensors(&path, &tensors);
    let e = import_weights(&g, &path, None).expect_err("int tensor for a float param");
    assert!(
        e.to_string().contains(
            "tensor `final_norm.gain`: dtype I32 cannot hold param @final_norm.gain: f32[64]; store it as F32, F16 or BF16"
        ),
        "{e}"
    );

    let bytes = fs::read(&path).expect("read");
    fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
    let e = import_weights(&g, &path, None).expect_err("truncated");
    assert!(matches!(e, ImportError::Malformed { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("truncated or not a safetensors file"),
        "{e}"
    );

    let e = import_weights(&g, &dir.join("nope.safetensors"), None).expect_err("missing");
    assert!(matches!(e, ImportError::Io { .. }), "{e}");
}

/// Offsets near `usize::MAX` are an error, not an arithmetic overflow inside safetensors.
#[test]
fn huge_offsets_are_an_error_not_a_panic() {
    let (g, _, _) = compiled("tiny-dense", Mode::Infer);
    let step: u64 = 1 << 60;
    let mut header = String::from("{");
    for i in 0..16u64 {
        let end = if i == 15 { u64::MAX } else { (i + 1) * step };
        let sep = if i == 0 { "" } else { "," };
        header.push_str(&format!(
            r#"{sep}"t{i}":{{"dtype":"I8","shape":[{}],"data_offsets":[{},{end}]}}"#,
            end - i * step,
            i * step
        ));
    }
    header.push('}');
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    let path = scratch("huge").join("huge.safetensors");
    fs::write(&path, bytes).expect("write");
    let e = import_weights(&g, &path, None).expect_err("impossible offsets");
    assert!(matches!(e, ImportError::Malformed { .. }), "{e}");
}

#[test]
fn an_eval_graph_whose_params_are_not_stored_is_refused() {
    let (train, source, vocab) = compiled("tiny-dense", Mode::Train);
    let (other, _, _) = compiled("tiny-dib", Mode::Infer);
    let weights = init_weights(&train, 1).expect("weights materialize");
    let tensors = artifact_tensors(&train, &weights).expect("weights convert");
    let path = scratch("eval-mismatch").join("m.bfa");
    let parts = ArtifactParts {
        graph: &train,
        mode: ArtifactMode::Train,
        spec_source: &source,
        spec_name: "tiny-dense.bfly",
        vocab,
        tensors: &tensors,
        eval_graph: Some(&other),
    };
    let err = write_artifact(&path, &parts).expect_err("tiny-dib params are not tiny-dense's");
    let text = err.to_string();
    assert!(text.contains("layers.0.attn.q.theta"), "{text}");
    assert!(!path.exists(), "nothing written");
}
