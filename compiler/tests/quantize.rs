//! The `quantize` pass on every golden model: accuracy against f32 (the numbers `bfly inspect
//! --emit quant-report` prints), keep lists, no change without a `quantize` section, and the
//! IR text round trip of quantized graphs.
//!
//! The accuracy tests give each golden spec without a `quantize` section a test-local
//! `quantize { dense = int8  butterfly = fp16 }`: int8 dense (the tied head stays f32; the
//! `mlp.down` inputs Hadamard-rotated first, the default `rotate`), int8 weight-only monarch,
//! fp16 twiddles. The specs with a section (`mixed`, `tiny-quant`) keep
//! theirs, keep list included. Measured twice: at random init (the report's input) and after
//! a short training run on the reference (see "Trained weights" below).

mod common;

use bfly_compiler::Mode;
use bfly_compiler::passes::quantize::{
    QuantPlan, Rotate, Scheme, SiteKind, find_sites, rotate_graph,
};
use bfly_compiler::passes::{pipeline, stage_names};
use bfly_compiler::quant_report::{
    Batch, MIN_POSITIONS, Measured, QuantReport, f32_graph, measure, measure_with, quant_report,
    rel_l2,
};
use bfly_compiler::{ModelSpec, compile_spec_source, render_diagnostics};
use bfly_grammar::SourceFile;
use bfly_ir::parse::parse_graph;
use bfly_ir::{DType, Graph, Op, print_graph, verify};
use bfly_targets::reference::Tensor;
use common::*;

/// The settings every golden model is measured with.
const SECTION: &str = "quantize { dense = int8  butterfly = fp16 }";

/// Accuracy bounds against f32 over the report's batch (≥ 256 positions).
const MIN_TOP1: f64 = 0.99;
const MAX_LOGITS_REL_L2: f64 = 0.02;

/// Golden models that miss the bounds with random-init weights, each with the ceiling its
/// measured error must stay under and the floor for top-1: the misses are listed, not hidden,
/// and may not get worse. Ceilings are the measured value (with the default `rotate =
/// ["*.mlp.down"]`) plus about 0.1 percentage point of logits error, floors the measured
/// top-1 minus one position of 256 (0.39 pp), so a regression fails. Why they miss (see the
/// README): random-init logits are nearly uniform, so some positions have a top-1/top-2 gap
/// below the quantization noise (tiny-dib flips 3 of 256 at a 0.15 % logits error; every flip
/// but mixed's is at a gap under 4× the RMS logit error, see `DECISIVE_MISSES`); and int8 noise
/// of ~0.84 % per dense site (the absmax int8 floor for both operands of near-Gaussian
/// activations, which a Hadamard rotation does not lower) compounds over the 13–14 int8 sites
/// of tiny-dense and tiny-lora-dense through layers that do nothing useful yet. Trained, every
/// model meets the bounds (`trained_golden_models_meet_the_bounds`).
///
/// Measured (logits rel L2, top-1), `rotate = false` → default: tiny-dense 3.10 %, 95.31 % →
/// 2.91 %, 95.70 %; tiny-lora-dense 3.30 %, 93.75 % → 3.02 %, 95.31 %; mixed 2.33 %, 96.53 %
/// → 1.61 %, 99.31 % (now meets the bounds: no longer listed); tiny-dib 0.15 %, 98.83 % and
/// tiny-monarch 1.68 %, 98.44 % unchanged (no rotated site). `(stem, max logits rel L2, min
/// top-1)`.
const RANDOM_INIT_MISSES: &[(&str, f64, f64)] = &[
    ("tiny-dense", 0.030, 0.953),
    ("tiny-dib", 0.0025, 0.984),
    ("tiny-lora-dense", 0.031, 0.949),
    ("tiny-monarch", 0.0178, 0.980),
];

/// Top-1 agreement on decisive positions (gap > 4× the RMS logit error) is 100 % at random
/// init for every model but these, `(stem, floor)`: mixed flips 1 of 277 (5 of 274 without
/// the rotation).
const DECISIVE_MISSES: &[(&str, f64)] = &[("mixed", 0.995)];

/// `text` with its `quantize { … }` section (if any) replaced by `section`.
fn with_section(text: &str, section: &str) -> String {
    with_named_section(text, "quantize {", section)
}

/// `text` with its section opened by `open` (`"train {"`; if any) replaced by `section`.
fn with_named_section(text: &str, open: &str, section: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(open) {
        let line_start = rest[..at].rfind('\n').map_or(0, |i| i + 1);
        if !rest[line_start..at].trim().is_empty() {
            // The keyword inside a comment or a string: keep it.
            out.push_str(&rest[..at + open.len()]);
            rest = &rest[at + open.len()..];
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
        let min_decisive = DECISIVE_MISSES
            .iter()
            .find(|m| m.0 == stem)
            .map_or(1.0, |m| m.1);
        if r.decisive_top1() < min_decisive {
            failures.push(format!(
                "{stem}: decisive top-1 {:.4} (min {min_decisive})",
                r.decisive_top1()
            ));
        }
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

/// The online Hadamard rotation alone (no int8) is an identity up to rounding: `(W Hᵀ)(H x)`
/// against `W x` on every golden model, every int8 dense site rotated (`rotate = true`).
///
/// Tolerance: logits relative L2 ≤ 1e-12 and max abs difference ≤ 1e-12 × max |logit|. The
/// reference interpreter computes in f64, so the only difference is f64 rounding in the
/// 2 log₂ n extra butterfly stages per site (measured ≤ 3e-15 relative); a wrong `H` (not
/// orthonormal, or not matched between the two sides) is off by O(1). The models with no
/// int8 dense site (butterfly and monarch layers only) have nothing to rotate.
#[test]
fn rotation_alone_preserves_the_logits() {
    let mut rotated_models = 0;
    for (stem, spec, file) in quantized_specs() {
        let g0 = f32_graph(&spec, &file).unwrap_or_else(|e| panic!("{e}"));
        let mut plan = QuantPlan::from_spec(&spec).expect("a quantize section");
        plan.rotate = Rotate::All;
        let mut g1 = g0.clone();
        let n = rotate_graph(&mut g1, &plan).unwrap_or_else(|e| panic!("{stem}: {e}"));
        assert_eq!(verify(&g1), Ok(()), "{stem}");
        let dense_int8 = find_sites(&g0)
            .expect("acyclic")
            .iter()
            .filter(|s| plan.scheme(s) == Some(Scheme::Int8Dynamic))
            .count();
        // Every golden model's dense widths have a power-of-two factor ≥ 2.
        assert_eq!(n, dense_int8, "{stem}: rotated sites");
        if n == 0 {
            continue;
        }
        rotated_models += 1;
        let inputs = inputs_for(&g0, spec.model.vocab.node, 1, 16);
        let w = weights(&g0, 3);
        let (a, b) = (eval(&g0, &inputs, &w), eval(&g1, &inputs, &w));
        let (a, b) = (floats(&a[0]), floats(&b[0]));
        let l2 = rel_l2(b, a);
        let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let max_abs = a
            .iter()
            .zip(b)
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
        eprintln!("{stem}: {n} sites rotated, logits rel L2 {l2:.2e}, max abs {max_abs:.2e}");
        assert!(l2 <= 1e-12, "{stem}: rel L2 {l2:e}");
        assert!(
            max_abs <= 1e-12 * scale,
            "{stem}: max abs {max_abs:e} of {scale}"
        );
    }
    assert!(rotated_models >= 4, "{rotated_models}");
}

/// The reason for the rotation: `mlp.down` reads the heavy-tailed SwiGLU product, whose
/// per-token int8 error the rotation cuts (tiny-dense at random init, measured 1.46 % →
/// 0.88 % for `layers.0.mlp.down` alone on the report's 256 positions); the other sites read
/// near-Gaussian activations and stay at the ≈ 0.84 % absmax floor either way.
#[test]
fn rotation_lowers_the_int8_error_of_mlp_down() {
    let (spec, file) = checked(
        "tiny-dense.bfly",
        with_section(&golden_spec("tiny-dense").1.text, SECTION),
    );
    let g0 = f32_graph(&spec, &file).unwrap_or_else(|e| panic!("{e}"));
    let mut batch = Batch::for_spec(&spec);
    batch.tokens.truncate(4);
    batch.sequences = 4;
    let site_error = |rotate: Rotate| {
        let mut plan = QuantPlan::from_spec(&spec).expect("a quantize section");
        plan.rotate = rotate;
        let m = measure(&g0, &plan, &batch, true).unwrap_or_else(|e| panic!("{e}"));
        let down = m
            .sites
            .iter()
            .find(|s| s.site == "layers.0.mlp.down")
            .expect("mlp.down is a site")
            .clone();
        (down, m.logits_rel_l2)
    };
    let (plain, plain_l2) = site_error(Rotate::None);
    let (rotated, rotated_l2) = site_error(Rotate::Globs(vec!["*.mlp.down".into()]));
    assert_eq!(plain.scheme, Scheme::Int8Dynamic);
    assert_eq!(rotated.scheme, Scheme::Int8Rotated);
    let (rotated_alone, plain_alone) = (
        rotated.alone.expect("per site"),
        plain.alone.expect("per site"),
    );
    assert!(
        rotated_alone < 0.75 * plain_alone,
        "{rotated_alone} vs {plain_alone}"
    );
    assert!(rotated_l2 < plain_l2, "{rotated_l2} vs {plain_l2}");
}

/// `rotate` selects sites by glob; a rotation butterfly is not a site itself (it stays f32:
/// fp16 twiddles would break the cancellation with the rotated weight), so quantizing twice
/// changes nothing.
#[test]
fn rotate_globs_select_sites_and_rotations_are_not_sites() {
    let text = with_section(
        &golden_spec("tiny-dense").1.text,
        "quantize { dense = int8  butterfly = fp16  rotate = [\"layers.1.mlp.*\"] }",
    );
    let (spec, file) = checked("tiny-dense.bfly", text);
    let g = graph_at(&spec, &file, Mode::Infer, Some("quantize"));
    let rotations = count(&g, |o| matches!(o, Op::Butterfly { .. }));
    // The rotated sites: layers.1.mlp.{gate, up} share one input rotation; down has its own;
    // plus one weight rotation each.
    assert_eq!(rotations, 2 + 3, "{}", print_graph(&g));
    assert_eq!(count(&g, |o| matches!(o, Op::HadamardTwiddles { .. })), 2);
    for site in find_sites(&g).expect("acyclic") {
        assert_eq!(site.kind, SiteKind::TiedHead, "{site:?}");
    }
    let mut again = g.clone();
    let plan = QuantPlan::from_spec(&spec).expect("a quantize section");
    let applied = bfly_compiler::passes::quantize::quantize_graph(&mut again, &plan, &|_, _| true)
        .expect("quantize");
    assert!(applied.is_empty(), "{applied:?}");
    assert_eq!(print_graph(&again), print_graph(&g));
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
        let int8_or_f16 = |o: &Op| {
            matches!(o, Op::Quantize)
                || *o
                    == Op::Cast {
                        to: bfly_ir::DType::F16,
                    }
        };
        assert!(count(&g, int8_or_f16) > 0, "{stem}");
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
    assert!(r.tied_head);
    assert!(
        rendered.contains("     head: tied to the f32 embedding table"),
        "{rendered}"
    );
}

// ---------------------------------------------------------------------------------------------
// Trained weights: what users quantize. Random-init logits are nearly uniform, so there top-1
// flips at near-ties and the error compounds through layers that do nothing useful yet; a
// trained model has decisive logits. Each golden model (with the measurement's `quantize`
// section) is trained from its init by AdamW on the reference interpreter, on a learnable
// token stream, then measured like `quant-report` does, on held-out sequences of that stream.

/// The test-local training: every parameter trains (LoRA specs included: their base is what
/// gets quantized), short sequences so that a step is cheap.
const TRAIN_SECTION: &str = "train {\n    trainable = all\n    optimizer = adamw(lr = 3e-3)\n    batch = 4  seq = 16  seed = 5  steps = 1\n}";
const TRAIN_BATCH: usize = 4;
const TRAIN_SEQ: usize = 16;

/// `rows` sequences of `len` tokens of a deterministic bigram language: `t' = (5 t + 3) mod
/// vocab` (a permutation of the vocabulary), each from a start drawn by `SplitMix64(seed)`.
fn bigram_rows(rows: usize, len: usize, vocab: u64, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = bfly_ir::init::SplitMix64::new(seed);
    (0..rows)
        .map(|_| {
            let mut t = rng.next_u64() % vocab;
            (0..len)
                .map(|_| {
                    let now = t as u32;
                    t = (5 * t + 3) % vocab;
                    now
                })
                .collect()
        })
        .collect()
}

/// The golden spec `stem` with the measurement's `quantize` (unless it has one) and `train`
/// sections.
fn trainable_spec(stem: &str) -> (ModelSpec, SourceFile) {
    let (spec, file) = golden_spec(stem);
    let mut text = with_named_section(&file.text, "train {", TRAIN_SECTION);
    if spec.quantize.is_none() {
        text = with_section(&text, SECTION);
    }
    checked(&file.name, text)
}

/// Trains `spec` for `steps` steps; returns the weights and the first and last loss.
fn train(
    spec: &ModelSpec,
    file: &SourceFile,
    steps: usize,
) -> (bfly_targets::reference::Weights, f64, f64) {
    let g = graph_at(spec, file, Mode::Train, None);
    let vocab = spec.model.vocab.node;
    let mut w = weights(&g, 5);
    let (mut first, mut last) = (f64::NAN, f64::NAN);
    for step in 1..=steps {
        let rows = bigram_rows(TRAIN_BATCH, TRAIN_SEQ + 1, vocab, 1000 + step as u64);
        let column = |from: usize| -> Vec<i64> {
            rows.iter()
                .flat_map(|r| r[from..from + TRAIN_SEQ].iter().map(|&t| i64::from(t)))
                .collect()
        };
        let inputs: Vec<Tensor> = g
            .inputs()
            .iter()
            .map(|&id| match &g.node(id).op {
                Op::Input { name } if name == "tokens" => {
                    Tensor::int(DType::I32, vec![TRAIN_BATCH, TRAIN_SEQ], column(0))
                }
                Op::Input { name } if name == "targets" => {
                    Tensor::int(DType::I32, vec![TRAIN_BATCH, TRAIN_SEQ], column(1))
                }
                _ => Tensor::f32(vec![], vec![step as f64]),
            })
            .collect();
        let outs = eval(&g, &inputs, &w);
        last = scalar(&outs[0]);
        if step == 1 {
            first = last;
        }
        for (o, t) in g.outputs().iter().zip(outs) {
            if o.param {
                w.insert(o.name.clone(), t);
            }
        }
    }
    (w, first, last)
}

/// Trains `stem` and measures its quantization on 256 held-out positions of the same stream,
/// with the spec's `rotate` setting or `rotate` when given.
fn measure_trained(stem: &str, steps: usize, rotate: Option<&Rotate>) -> (Measured, f64, f64) {
    let (spec, file) = trainable_spec(stem);
    let (w, first, last) = train(&spec, &file, steps);
    let g0 = f32_graph(&spec, &file).unwrap_or_else(|e| panic!("{e}"));
    let mut plan = QuantPlan::from_spec(&spec).expect("a quantize section");
    if let Some(r) = rotate {
        plan.rotate = r.clone();
    }
    let sequences = MIN_POSITIONS / TRAIN_SEQ;
    let vocab = spec.model.vocab.node;
    let batch = Batch {
        sequences,
        seq_len: TRAIN_SEQ,
        vocab,
        weight_seed: 5,
        tokens: bigram_rows(sequences, TRAIN_SEQ, vocab, 99),
    };
    let m = measure_with(&g0, &plan, &batch, false, Some(&w)).unwrap_or_else(|e| panic!("{e}"));
    (m, first, last)
}

fn trained_row(stem: &str, m: &Measured, first: f64, last: f64, steps: usize) -> String {
    let n = MIN_POSITIONS;
    format!(
        "{stem} | {:.2} % ({}/{n}) | {:.3} % | loss {first:.3} -> {last:.3} in {steps} steps\n",
        100.0 * m.top1.agree as f64 / n as f64,
        m.top1.agree,
        100.0 * m.logits_rel_l2,
    )
}

/// Training steps of the trained measurement: enough for every model's loss to fall well
/// below `ln vocab` (the bigram is then mostly learned) while the eight small models stay at
/// about 20 s in a debug build.
const TRAIN_STEPS: usize = 120;

/// `wide-2048` takes ~35 s to train in a debug build: measured by the `--ignored` table only.
const SLOW_TO_TRAIN: &[&str] = &["wide-2048"];

/// Trains and measures `stems`; returns the table and the bound violations. A model that did
/// not train (its loss did not fall below half its start) is a violation too: the measurement
/// would then be a random-init one in disguise.
fn trained_check(stems: &[String], rotate: Option<&Rotate>) -> (String, Vec<String>) {
    let mut table = String::from("model | top-1 agreement | logits rel L2 | training\n");
    let mut failures = Vec::new();
    for stem in stems {
        let (m, first, last) = measure_trained(stem, TRAIN_STEPS, rotate);
        table.push_str(&trained_row(stem, &m, first, last, TRAIN_STEPS));
        let top1 = m.top1.agree as f64 / MIN_POSITIONS as f64;
        // NaN losses count as not trained.
        let trained = last < 0.5 * first;
        if m.logits_rel_l2 > MAX_LOGITS_REL_L2 || top1 < MIN_TOP1 || !trained {
            failures.push(format!(
                "{stem}: rel L2 {:.4}, top-1 {top1:.4}, loss {first:.3} -> {last:.3}",
                m.logits_rel_l2
            ));
        }
    }
    (table, failures)
}

fn golden_stems() -> Vec<String> {
    golden_specs()
        .into_iter()
        .map(|(stem, _, _)| stem)
        .collect()
}

#[test]
// Platform-independent f64 reference training (~15 s on the host, ~4.5 min under QEMU, which
// would add nothing the host leg does not check): the QEMU legs of scripts/test-all.sh skip it.
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "reference-only training; runs on the x86 host leg (slow under QEMU)"
)]
fn trained_golden_models_meet_the_bounds() {
    let stems: Vec<String> = golden_stems()
        .into_iter()
        .filter(|s| !SLOW_TO_TRAIN.contains(&s.as_str()))
        .collect();
    assert!(stems.len() >= 8, "{stems:?}");
    let (table, failures) = trained_check(&stems, None);
    eprintln!("{table}");
    assert!(failures.is_empty(), "{failures:#?}\n{table}");
}

/// The README's trained table, every golden model:
/// `cargo test -p bfly-compiler --test quantize -- --ignored --nocapture trained_table`.
#[test]
#[ignore = "trains wide-2048 (~35 s in debug); run for the README table"]
fn trained_table_of_every_golden_model() {
    let (table, failures) = trained_check(&golden_stems(), None);
    eprintln!("{table}");
    assert!(failures.is_empty(), "{failures:#?}\n{table}");
}

/// The same table with `rotate = false`, for comparison (bounds not enforced):
/// `cargo test -p bfly-compiler --test quantize -- --ignored --nocapture trained_table`.
#[test]
#[ignore = "trains wide-2048 (~35 s in debug); run for the README table"]
fn trained_table_without_rotation() {
    let (table, failures) = trained_check(&golden_stems(), Some(&Rotate::None));
    eprintln!("rotate = false\n{table}{failures:#?}");
}
