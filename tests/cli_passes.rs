//! `bfly inspect --mode/--passes/--after`: the pass pipelines from the command line.

mod common;
use common::*;

const DIB: &str = "golden/specs/tiny-dib.bfly";

#[test]
fn passes_lists_each_pipeline_in_order() {
    let train = ok(&["inspect", DIB, "--mode", "train", "--passes"]);
    let names: Vec<&str> = train
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(
        names,
        [
            "build",
            "loss",
            "autodiff",
            "optimizer",
            "dce",
            "cse",
            "fuse"
        ],
        "{train}"
    );
    assert!(train.contains("reverse mode"), "{train}");
    let infer = ok(&["inspect", DIB, "--passes"]);
    assert!(infer.starts_with("infer pipeline"), "{infer}");
    assert!(infer.contains("  02  fold-lora "), "{infer}");
}

#[test]
fn after_shows_each_stage_of_the_train_pipeline() {
    let built = ok(&["inspect", DIB, "--mode", "train", "--after", "build"]);
    assert!(
        built.contains("(%tokens: i32[B, T]) -> (%logits: f32[B, T, 256]) where B <= 8, T <= 64"),
        "{built}"
    );
    let loss = ok(&["inspect", DIB, "--mode", "train", "--after", "loss"]);
    assert!(
        loss.contains("%targets: i32[B, T]) -> (%loss: f32[])"),
        "{loss}"
    );
    let grads = ok(&[
        "inspect", DIB, "--mode", "train", "--after", "autodiff", "--emit", "ir",
    ]);
    assert!(grads.contains("%grad_layers_0_attn_q_theta: f32[4, 1, 1, 5, 16]"));
    assert!(grads.contains("dib_twiddles.grad"));
    let step = ok(&["inspect", DIB, "--mode", "train"]);
    assert!(step.contains("%step: f32[]"));
    assert!(step.contains("@layers.0.attn.q.theta.adam_v: f32[4, 1, 1, 5, 16]"));
    assert_eq!(
        step,
        ok(&["inspect", DIB, "--mode", "train", "--after", "fuse"])
    );
    // Other emit kinds work on the selected stage.
    let dot = ok(&[
        "inspect", DIB, "--mode", "train", "--after", "autodiff", "--emit", "dot",
    ]);
    assert!(
        dot.contains("causal_attention.grad"),
        "{}",
        &dot[..dot.len().min(400)]
    );
    let summary = ok(&["inspect", DIB, "--mode", "train", "--emit", "summary"]);
    assert!(!summary.is_empty());
}

#[test]
fn unknown_passes_and_ir_input_fail_with_a_hint() {
    let err = fails(&["inspect", DIB, "--mode", "train", "--after", "autodif"]);
    assert!(
        err.contains("unknown pass `autodif`: did you mean `autodiff`?"),
        "{err}"
    );
    assert!(err.contains("`optimizer`"), "{err}");
    let err = fails(&["inspect", DIB, "--after", "optimizer"]);
    assert!(err.contains("`build`, `fold-lora`, "), "{err}");

    let dir = std::env::temp_dir().join(format!("bfly-cli-passes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ir = dir.join("dense.bfir");
    let text = ok(&[
        "inspect",
        "golden/specs/tiny-dense.bfly",
        "--mode",
        "train",
        "--after",
        "autodiff",
    ]);
    std::fs::write(&ir, &text).expect("write IR");
    let path = ir.to_str().expect("utf-8 path");
    // The IR of any stage parses back; pipelines need the spec.
    assert_eq!(ok(&["inspect", path]), text);
    let err = fails(&["inspect", path, "--mode", "train"]);
    assert!(err.contains("is graph IR"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
