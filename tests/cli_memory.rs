//! `bfly inspect --emit memory` and fused regions from the command line: the report for both
//! modes, and a fused IR file written by `inspect` that reads back as written.

mod common;
use common::*;

const DIB: &str = "golden/specs/tiny-dib.bfly";

#[test]
fn memory_report_in_both_modes() {
    let infer = ok(&["inspect", DIB, "--emit", "memory"]);
    assert!(
        infer.starts_with("memory of @tiny_dib (inference) at T = 64\n"),
        "{infer}"
    );
    assert!(infer.contains("live at the peak ("), "{infer}");
    assert!(!infer.contains("kept for backward"), "{infer}");
    assert!(!infer.contains("live bytes per step"), "{infer}");

    let train = ok(&[
        "inspect",
        DIB,
        "--emit",
        "memory",
        "--mode",
        "train",
        "--per-step",
    ]);
    assert!(
        train.starts_with("memory of @tiny_dib (one training step) at B = 8, T = 64\n"),
        "{train}"
    );
    assert!(train.contains("kept for backward ("), "{train}");
    assert!(train.contains("param updates"), "{train}");
    let steps = train
        .split("live bytes per step")
        .nth(1)
        .expect("per-step table");
    assert!(steps.lines().count() > 100, "{steps}");
}

#[test]
fn fused_ir_reads_back_and_reports_the_same_memory() {
    let dir = std::env::temp_dir().join(format!("bfly-cli-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ir = dir.join("dib.bfir");
    let text = ok(&["inspect", DIB]);
    assert!(text.contains("  fused @r0 {\n"), "{text}");
    std::fs::write(&ir, &text).expect("write IR");
    let path = ir.to_str().expect("utf-8 path");
    assert_eq!(ok(&["inspect", path]), text);
    assert_eq!(
        ok(&["inspect", path, "--emit", "memory"]),
        ok(&["inspect", DIB, "--emit", "memory"])
    );
    let _ = std::fs::remove_dir_all(&dir);
}
