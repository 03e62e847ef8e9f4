//! Whole-model properties of every golden spec, on the reference backend:
//! - the graph verifies and its IR text round-trips; the parsed graph computes the same logits;
//! - logits are finite with shape [T, vocab];
//! - causality: changing tokens after position t never changes logits at positions ≤ t.

use bfly_grammar::SourceFile;
use bfly_ir::{Graph, print_graph};
use bfly_targets::reference::{Tensor, evaluate, init_weights};
use std::path::PathBuf;

fn golden_specs() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/specs");
    let mut specs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("golden/specs exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "bfly"))
        .collect();
    specs.sort();
    assert!(
        specs.len() >= 6,
        "expected the golden specs in {}",
        dir.display()
    );
    specs
}

fn build(path: &PathBuf) -> Graph {
    let text = std::fs::read_to_string(path).expect("readable spec");
    let file = SourceFile::new(path.display().to_string(), text);
    match bfly_compiler::compile_spec_source(&file) {
        Ok((_, g)) => g,
        Err(d) => panic!("{}", bfly_compiler::render_diagnostics(&file, &d, false)),
    }
}

/// Deterministic pseudo-random tokens below `vocab`.
fn tokens(len: usize, vocab: u32, salt: u32) -> Vec<u32> {
    (0..len as u32)
        .map(|i| {
            (i.wrapping_mul(2_654_435_761)
                .wrapping_add(salt.wrapping_mul(40_503)))
                % vocab
        })
        .collect()
}

fn logits(g: &Graph, weights: &bfly_targets::reference::Weights, toks: &[u32]) -> Vec<f64> {
    let out = evaluate(g, &[Tensor::tokens(toks)], weights).unwrap_or_else(|e| panic!("{e}"));
    out[0].floats().expect("float logits").to_vec()
}

fn vocab_of(g: &Graph) -> u32 {
    g.value_type(g.outputs()[0].value)
        .last_const()
        .expect("const vocab") as u32
}

#[test]
fn golden_models_round_trip_and_evaluate_identically_from_text() {
    for path in golden_specs() {
        let g = build(&path);
        let text = print_graph(&g);
        let parsed = bfly_ir::parse::parse_graph(&SourceFile::new("roundtrip.bfir", text.clone()))
            .unwrap_or_else(|d| panic!("{}: {d:?}", path.display()));
        assert_eq!(print_graph(&parsed), text, "{}", path.display());
        let w = init_weights(&g, 1).expect("all params have an init");
        let toks = tokens(5, vocab_of(&g), 3);
        let a = logits(&g, &w, &toks);
        let b = logits(&parsed, &w, &toks);
        assert_eq!(
            a,
            b,
            "{}: text round trip changed the computation",
            path.display()
        );
        assert_eq!(a.len(), 5 * vocab_of(&g) as usize);
        assert!(
            a.iter().all(|v| v.is_finite()),
            "{}: non-finite logits",
            path.display()
        );
    }
}

#[test]
fn golden_models_are_causal() {
    for path in golden_specs() {
        let g = build(&path);
        let vocab = vocab_of(&g);
        let w = init_weights(&g, 7).expect("all params have an init");
        let len = 8usize.min(g.bound("T").expect("T bound") as usize);
        let base = tokens(len, vocab, 1);
        let reference = logits(&g, &w, &base);
        for t in [0, len / 2, len - 2] {
            let mut changed = base.clone();
            for tok in &mut changed[t + 1..] {
                *tok = (*tok + 1 + t as u32) % vocab;
            }
            let other = logits(&g, &w, &changed);
            let keep = (t + 1) * vocab as usize;
            // Each row's computation reads only rows ≤ its own, so the values are bit-identical.
            assert_eq!(
                reference[..keep],
                other[..keep],
                "{}: logits at ≤ {t} changed when later tokens did",
                path.display()
            );
            assert_ne!(
                reference[keep..],
                other[keep..],
                "{}: later tokens had no effect",
                path.display()
            );
        }
    }
}
