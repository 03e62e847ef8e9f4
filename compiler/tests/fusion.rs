//! The `fuse` pass on every golden model, both modes: regions leave every output bit-identical
//! on the f64 reference interpreter, survive the text round trip (the parsed graph prints
//! the same and evaluates the same), and the schedule runs each region as one block. Plus the
//! memory report of tiny-dib, snapshotted in `golden/snapshots/memory/` (write with
//! `INSTA_UPDATE=always cargo test -p bfly-compiler --test fusion`).

mod common;

use bfly_compiler::Mode;
use bfly_compiler::liveness::{analyze_memory, bound_bindings, render_memory};
use bfly_compiler::passes::{pipeline, stage_names};
use bfly_grammar::SourceFile;
use bfly_ir::parse::parse_graph;
use bfly_ir::{Graph, print_graph, verify};
use common::*;

fn bits(g: &Graph, vocab: u64) -> Vec<Vec<u64>> {
    let inputs = inputs_for(g, vocab, 2, 5);
    let w = weights(g, 7);
    eval(g, &inputs, &w)
        .iter()
        .map(|t| floats(t).iter().map(|v| v.to_bits()).collect())
        .collect()
}

/// The stage right before `fuse` in `mode`'s pipeline.
fn before_fuse(spec: &bfly_compiler::ModelSpec, mode: Mode) -> &'static str {
    let names = stage_names(&pipeline(mode, spec));
    let at = names
        .iter()
        .position(|n| *n == "fuse")
        .expect("fuse is in every pipeline");
    names[at - 1]
}

#[test]
fn fusion_keeps_every_output_bit_identical_and_round_trips() {
    let mut regions = Vec::new();
    for (stem, spec, file) in golden_specs() {
        let vocab = spec.model.vocab.node;
        for mode in Mode::ALL {
            let name = format!("{stem}.{mode}");
            let before = graph_at(&spec, &file, mode, Some(before_fuse(&spec, mode)));
            let after = graph_at(&spec, &file, mode, None);
            assert!(before.regions().is_empty(), "{name}: regions before fuse");
            assert_eq!(verify(&after), Ok(()), "{name}");
            assert_eq!(bits(&before, vocab), bits(&after, vocab), "{name}");

            // Each region is one contiguous run of the schedule.
            let order = after.topo_order().expect("schedules");
            let mut seen = std::collections::HashSet::new();
            let mut prev = None;
            for id in &order {
                let r = after.node(*id).region;
                if r != prev
                    && let Some(r) = r
                {
                    assert!(seen.insert(r), "{name}: region {r} is split");
                }
                prev = r;
            }

            let text = print_graph(&after);
            let parsed = parse_graph(&SourceFile::new(format!("{name}.bfir"), text.clone()))
                .unwrap_or_else(|d| panic!("{name} does not parse back: {d:?}"));
            assert_eq!(print_graph(&parsed), text, "{name}: print(parse(print(g)))");
            assert_eq!(parsed.regions().len(), after.regions().len(), "{name}");
            assert_eq!(bits(&parsed, vocab), bits(&after, vocab), "{name}: parsed");
            regions.push((name, after.regions().len()));
        }
    }
    // Every inference program fuses something (each model has a residual add after its output
    // projection, or a SwiGLU/GELU epilogue), and so does every training step (at least the
    // loss gradient with its seed).
    assert!(regions.iter().all(|(_, n)| *n > 0), "{regions:?}");
}

#[test]
fn memory_report_of_tiny_dib() {
    let (spec, file) = golden_spec("tiny-dib");
    for mode in Mode::ALL {
        let g = graph_at(&spec, &file, mode, None);
        let report = analyze_memory(&g, &bound_bindings(&g)).expect("analyzes");
        // The bindings are the program's bounds: T = context for inference, B = batch and
        // T = seq for a training step.
        let want: Vec<(&str, u64)> = match mode {
            Mode::Infer => vec![("T", spec.model.context.node)],
            Mode::Train => {
                let (b, t) = bfly_compiler::train_bounds(&spec);
                vec![("B", b), ("T", t)]
            }
        };
        let got: Vec<(&str, u64)> = report
            .bindings
            .iter()
            .map(|(s, v)| (s.as_str(), *v))
            .collect();
        assert_eq!(got, want);
        assert!(report.peak_bytes >= report.fused_peak_bytes);
        assert_eq!(report.training, mode == Mode::Train);
        insta::with_settings!({
            snapshot_path => "../../golden/snapshots/memory",
            prepend_module_to_snapshot => false,
            description => format!("bfly inspect golden/specs/tiny-dib.bfly --emit memory --mode {mode}"),
            omit_expression => true,
        }, {
            insta::assert_snapshot!(format!("tiny-dib.{mode}"), render_memory(&report, false));
        });
    }
}
