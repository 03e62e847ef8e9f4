//! The `quantize` pass on every golden model: accuracy against f32 (the numbers `bfly inspect
//! --emit quant-report` prints), keep lists, no change without a `quantize` section, and the
//! IR text round trip of quantized graphs.
//!
//! The accuracy test gives each golden spec without a `quantize` section a test-local
//! `quantize { dense = int8  butterfly = fp16 }`: int8 dense and tied head, int8 weight-only
//! monarch, fp16 twiddles. The specs with a section (`mixed`, `tiny-quant`) keep theirs, keep
//! list included.

mod common;

use bfly_compiler::Mode;
use bfly_compiler::passes::quantize::{QuantPlan, SiteKind, find_sites};
use bfly_compiler::passes::{pipeline, stage_names};
use bfly_compiler::quant_report::{MIN_POSITIONS, QuantReport, quant_report};
use bfly_compiler::{ModelSpec, compile_spec_source, render_diagnostics};
use bfly_grammar::SourceFile;
use bfly_ir::parse::parse_graph;
use bfly_ir::{Graph, Op, print_graph, verify};
use common::*;

/// The settings every golden model is measured with.
const SECTION: &str = "quantize { dense = int8  butterfly = fp16 }";

/// Accuracy bounds against f32 over the report's batch (≥ 256 positions).
const MIN_TOP1: f64 = 0.99;
const MAX_LOGITS_REL_L2: f64 = 0.02;

/// Golden models that miss the bounds with random-init weights, each with the ceiling its
/// measured error must stay under (measured + a little) and the floor for top-1: the misses
/// are listed, not hidden, and may not get worse. Why they miss (see the report in the
/// README): random-init logits are nearly uniform, so a few percent of positions have a
/// top-1/top-2 gap below the quantization noise (every flip happens at a gap under 0.1 of the
/// logits' std); int8 noise of ~0.8 % per dense site adds up over 15 sites in tiny-dense; and
/// random general butterflies make heavy-tailed activations (the tied head's input in
/// wide-2048 has max/rms ≈ 17) that per-token int8 quantizes coarsely.
/// `(stem, max logits rel L2, min top-1)`.
const RANDOM_INIT_MISSES: &[(&str, f64, f64)] = &[
    ("mixed", 0.025, 0.96),
    ("tiny-butterfly", 0.015, 0.98),
    ("tiny-dense", 0.034, 0.94),
    ("tiny-lora-dense", 0.035, 0.93),
    ("tiny-monarch", 0.020, 0.98),
    ("wide-2048", 0.040, 0.92),
];

/// `text` with its `quantize { … }` section (if any) replaced by `section`.
fn with_section(text: &str, section: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("quantize {") {
        let line_start = rest[..at].rfind('\n').map_or(0, |i| i + 1);
        if !rest[line_start..at].trim().is_empty() {
            // `quantize {` inside a comment or a string: keep it.
            out.push_str(&rest[..at + 10]);
            rest = &rest[at + 10..];
            continue;
        }
        out.push_str(&rest[..at]);
        let end = rest[at..].find('}').map_or(rest.len(), |i| at + i + 1);
        rest = &rest[end..];
    }
    out.push_str(rest);
    format!("{}\n\n{section}\n", out.trim_end())
}

fn checked(name: &str, text: String) -> (ModelSpec, SourceFile) {
    let file = SourceFile::new(name.to_string(), text);
    match compile_spec_source(&file) {
        Ok((spec, _)) => (spec, file),
        Err(d) => panic!("{}", render_diagnostics(&file, &d, false)),
    }
}

/// Every golden spec, with the test-local `quantize` section where it has none.
fn quantized_specs() -> Vec<(String, ModelSpec, SourceFile)> {
    golden_specs()
        .into_iter()
        .map(|(stem, spec, file)| {
            if spec.quantize.is_some() {
                return (stem, spec, file);
            }
            let (spec, file) = checked(&file.name, with_section(&file.text, SECTION));
            (stem, spec, file)
        })
        .collect()
}

/// The stage right before `quantize` in the infer pipeline.
fn before_quantize(spec: &ModelSpec) -> &'static str {
    let names = stage_names(&pipeline(Mode::Infer, spec));
    let at = names
        .iter()
        .position(|n| *n == "quantize")
        .expect("a quantize stage");
    names[at - 1]
}

fn count(g: &Graph, pred: impl Fn(&Op) -> bool) -> usize {
    g.node_ids().filter(|&id| pred(&g.node(id).op)).count()
}

#[test]
fn the_section_is_replaced_or_appended() {
    let text = "model m {\n  vocab = 2 # quantize { in a comment }\n}\nquantize { keep = [\"head\"] }\ntrain { seed = 1 }\n";
    let out = with_section(text, SECTION);
    assert_eq!(
        out,
        format!(
            "model m {{\n  vocab = 2 # quantize {{ in a comment }}\n}}\n\ntrain {{ seed = 1 }}\n\n{SECTION}\n"
        )
    );
    assert_eq!(
        with_section("model m {}", SECTION),
        format!("model m {{}}\n\n{SECTION}\n")
    );
}

#[test]
fn quantized_golden_models_stay_close_to_f32() {
    let mut table =
        String::from("model | top-1 agreement | logits rel L2 | top-1 on decisive positions\n");
    let mut failures = Vec::new();
    for (stem, spec, file) in quantized_specs() {
        let r: QuantReport = quant_report(&spec, &file, false).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.positions() >= MIN_POSITIONS, "{stem}: {}", r.positions());
        assert!(r.batch.sequences >= 4, "{stem}: several sequences");
        assert!(!r.sites.is_empty(), "{stem}: nothing was quantized");
        table.push_str(&format!(
            "{stem} | {:.2} % ({}/{}) | {:.3} % | {:.2} % ({}/{})\n",
            100.0 * r.top1(),
            r.top1.agree,
            r.positions(),
            100.0 * r.logits_rel_l2,
            100.0 * r.decisive_top1(),
            r.top1.decisive_agree,
            r.top1.decisive,
        ));
        let (max_l2, min_top1) = match RANDOM_INIT_MISSES.iter().find(|m| m.0 == stem) {
            Some(&(_, l2, top1)) => (l2, top1),
            None => (MAX_LOGITS_REL_L2, MIN_TOP1),
        };
        if r.logits_rel_l2 > max_l2 || r.top1() < min_top1 {
            failures.push(format!(
                "{stem}: rel L2 {:.4} (max {max_l2}), top-1 {:.4} (min {min_top1})",
                r.logits_rel_l2,
                r.top1()
            ));
        }
    }
    eprintln!("{table}");
    assert!(failures.is_empty(), "{failures:#?}\n{table}");
}

#[test]
fn specs_without_a_quantize_section_are_left_bit_identical() {
    let mut unchanged = 0;
    for (stem, spec, file) in golden_specs() {
        if spec.quantize.is_some() {
            continue;
        }
        let before = graph_at(&spec, &file, Mode::Infer, Some(before_quantize(&spec)));
        let after = graph_at(&spec, &file, Mode::Infer, Some("quantize"));
        assert_eq!(print_graph(&after), print_graph(&before), "{stem}");
        let inputs = inputs_for(&before, spec.model.vocab.node, 1, 5);
        let w = weights(&before, 2);
        let bits = |g: &Graph| -> Vec<u64> {
            eval(g, &inputs, &w)
                .iter()
                .flat_map(|t| floats(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>())
                .collect()
        };
        assert_eq!(bits(&after), bits(&before), "{stem}");
        unchanged += 1;
    }
    assert!(unchanged >= 5, "{unchanged}");
}

#[test]
fn quantized_graphs_verify_and_round_trip_through_ir_text() {
    for (stem, spec, file) in quantized_specs() {
        for stop in [Some("quantize"), None] {
            let g = graph_at(&spec, &file, Mode::Infer, stop);
            assert_eq!(verify(&g), Ok(()), "{stem} {stop:?}");
            let text = print_graph(&g);
            let again = parse_graph(&SourceFile::new(format!("{stem}.bfir"), text.clone()))
                .unwrap_or_else(|d| panic!("{stem} {stop:?} does not parse back: {d:?}"));
            assert_eq!(print_graph(&again), text, "{stem} {stop:?}");
        }
        let g = graph_at(&spec, &file, Mode::Infer, Some("quantize"));
        // Nothing is left to quantize: every site still in f32 is a kept one.
        let plan = QuantPlan::from_spec(&spec).expect("a quantize section");
        for site in find_sites(&g).expect("acyclic") {
            assert_eq!(plan.scheme(&site), None, "{stem}: {site:?}");
        }
        assert!(count(&g, |o| matches!(o, Op::Quantize)) > 0, "{stem}");
    }
}

#[test]
fn keep_list_sites_and_the_embedding_table_stay_f32() {
    let (spec, file) = golden_spec("tiny-quant");
    let g = graph_at(&spec, &file, Mode::Infer, Some("quantize"));
    // The sites left as they were are exactly the kept ones.
    let left: Vec<(Option<String>, SiteKind)> = find_sites(&g)
        .expect("acyclic")
        .into_iter()
        .map(|s| (s.name, s.kind))
        .collect();
    assert_eq!(
        left,
        [
            (Some("layers.1.attn.o".to_string()), SiteKind::Dense),
            (Some("head".to_string()), SiteKind::TiedHead),
        ]
    );
    // No quantization reads the kept weights or the embedding table.
    let text = print_graph(&g);
    for kept in ["@layers.1.attn.o.weight", "@embed.weight"] {
        for line in text.lines().filter(|l| l.contains(kept)) {
            assert!(
                !line.contains("= quantize") && !line.contains("= cast"),
                "{line}"
            );
        }
    }
    assert!(text.contains("embed %tokens, @embed.weight"), "{text}");
    // Every other kind is there: int8 dense, weight-only monarch, fp16 twiddles.
    assert_eq!(count(&g, |o| matches!(o, Op::QMatmul)), 6);
    assert_eq!(count(&g, |o| matches!(o, Op::Dequantize)), 4);
    assert_eq!(
        count(&g, |o| *o
            == Op::Cast {
                to: bfly_ir::DType::F16
            }),
        5
    );
    let r = quant_report(&spec, &file, true).expect("report");
    assert_eq!(r.kept, ["layers.1.attn.o", "head"]);
    assert!(r.sites.iter().all(|s| s.alone.is_some()));
    let rendered = r.render();
    assert!(
        rendered.contains("butterfly (hadamard) at 17:"),
        "{rendered}"
    );
    assert!(
        rendered
            .contains("f32: embed (the embedding table always stays f32), layers.1.attn.o, head"),
        "{rendered}"
    );
}
