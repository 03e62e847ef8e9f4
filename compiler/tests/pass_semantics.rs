//! `dce` and `cse` preserve semantics on every golden model: the graph before them and after
//! them give bit-identical outputs on the f64 reference interpreter, in both modes (the infer
//! graph after the folds, and the training step right after `optimizer`).

mod common;

use bfly_compiler::Mode;
use bfly_compiler::passes::{pipeline, stage_names};
use bfly_ir::Graph;
use common::*;

fn bits(g: &Graph, vocab: u64) -> Vec<Vec<u64>> {
    let inputs = inputs_for(g, vocab, 2, 5);
    let w = weights(g, 5);
    eval(g, &inputs, &w)
        .iter()
        .map(|t| floats(t).iter().map(|v| v.to_bits()).collect())
        .collect()
}

#[test]
fn dce_and_cse_keep_every_output_bit_identical() {
    let mut merged = Vec::new();
    for (stem, spec, file) in golden_specs() {
        let vocab = spec.model.vocab.node;
        for mode in [Mode::Infer, Mode::Train] {
            // The stage right before `dce` (the folds and other passes come earlier and are
            // checked by their own tests), against the graph right after `cse`.
            let names = stage_names(&pipeline(mode, &spec));
            let dce = names.iter().position(|n| *n == "dce").expect("a dce stage");
            let before = graph_at(&spec, &file, mode, Some(names[dce - 1]));
            let after = graph_at(&spec, &file, mode, Some("cse"));
            assert_eq!(
                before.outputs().len(),
                after.outputs().len(),
                "{stem} {mode}"
            );
            assert_eq!(bits(&before, vocab), bits(&after, vocab), "{stem} {mode}");
            merged.push((
                format!("{stem}.{mode}"),
                before.node_count() - after.node_count(),
            ));
        }
    }
    // The per-head Hadamard twiddles of all attention projections are one constant: cse keeps
    // one per layer shape (a real saving, and proof the comparison above saw merged graphs).
    let hadamard: Vec<_> = merged
        .iter()
        .filter(|(n, _)| n.starts_with("tiny-hadamard"))
        .collect();
    assert!(hadamard.iter().all(|(_, m)| *m >= 7), "{merged:?}");
}
