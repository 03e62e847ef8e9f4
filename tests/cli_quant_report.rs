//! `bfly inspect SPEC --emit quant-report`: per-site and whole-model quantization error.

mod common;
use common::*;

const QUANT: &str = "golden/specs/tiny-quant.bfly";

#[test]
fn quant_report_lists_every_site_and_the_model_error() {
    let o = bfly(&["inspect", QUANT, "--emit", "quant-report"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.starts_with("quantization report: model tiny_quant\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "keep = [\"head\", \"layers.1.attn.o\"]  rotate = [\"*.mlp.down\"] (the spec's quantize section)"
        ),
        "{out}"
    );
    assert!(
        out.contains("8 sequences x 32 tokens = 256 positions"),
        "{out}"
    );
    for row in [
        "layers.0.attn.q ",
        "int8 w/channel, x/token",
        "monarch ",
        "int8 w/channel, weight-only",
        "butterfly (dib) ",
        "butterfly (twiddles) ",
        "fp16 twiddles",
        "butterfly (hadamard) at 17:34 ",
    ] {
        assert!(out.contains(row), "{row}: {out}");
    }
    assert!(!out.contains("\nlayers.1.attn.o "), "kept: {out}");
    assert!(
        out.contains("f32: embed (the embedding table always stays f32), layers.1.attn.o, head"),
        "{out}"
    );
    assert!(out.contains("model: logits relative L2 "), "{out}");
    assert!(out.contains("top-1 agreement "), "{out}");
}

/// The default `rotate` Hadamard-rotates the input of `mlp.down` (a dense site in
/// tiny-dense), the other dense sites are plain int8.
#[test]
fn quant_report_shows_the_rotated_sites() {
    let o = bfly(&[
        "inspect",
        "golden/specs/tiny-dense.bfly",
        "--emit",
        "quant-report",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.contains("rotate = [\"*.mlp.down\"] (no quantize section in the spec: the defaults)"),
        "{out}"
    );
    let row = |site: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{site} ")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        row("layers.1.mlp.down").contains("int8 rotated w/ch, x/token"),
        "{out}"
    );
    assert!(
        row("layers.1.mlp.up").contains("int8 w/channel, x/token"),
        "{out}"
    );
}

#[test]
fn quant_report_needs_a_spec_and_the_infer_program() {
    let o = bfly(&[
        "inspect",
        QUANT,
        "--emit",
        "quant-report",
        "--mode",
        "train",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--mode train and --after do not apply"),
        "{err}"
    );

    let dir = std::env::temp_dir().join(format!("bfly-cli-quant-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ir = dir.join("g.bfir");
    std::fs::write(
        &ir,
        "graph @g(%x: f32[2]) -> (%y: f32[2]) {\n  %0 = neg %x : f32[2]\n  return %0\n}\n",
    )
    .expect("write IR");
    let o = bfly(&[
        "inspect",
        ir.to_str().unwrap_or_default(),
        "--emit",
        "quant-report",
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("measures a model spec"), "{err}");
}
