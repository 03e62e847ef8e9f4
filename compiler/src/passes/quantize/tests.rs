//! Unit tests of the quantization pass on small specs and hand-built graphs.

use bfly_grammar::SourceFile;
use bfly_ir::parse::parse_graph;
use bfly_ir::{DType, Graph, Init, Op, Output, Param, Type, print_graph, verify};
use bfly_targets::reference::{Tensor, evaluate, init_weights};

use super::*;
use crate::passes::{Mode, PassContext};
use crate::quant_report::rel_l2;
use crate::{ModelSpec, build_graph, compile_spec_source};

const BODY: &str = "vocab = 16  d_model = 8  layers = 1  heads = 2  context = 6";

fn spec(model: &str, rest: &str) -> (ModelSpec, SourceFile) {
    let text = format!("model m {{ {BODY} {model} }}\n{rest}\n");
    let file = SourceFile::new("t.bfly", text);
    match compile_spec_source(&file) {
        Ok((spec, _)) => (spec, file),
        Err(d) => panic!("{}", crate::render_diagnostics(&file, &d, false)),
    }
}

/// The infer graph as built and after the `quantize` pass.
fn quantized(model: &str, rest: &str) -> (Graph, Graph) {
    let (spec, file) = spec(model, rest);
    let g0 = build_graph(&spec, &file).expect("builds");
    let mut g1 = g0.clone();
    Quantize
        .run(&mut g1, &PassContext::new(&spec, Mode::Infer))
        .expect("quantizes");
    assert_eq!(verify(&g1), Ok(()));
    (g0, g1)
}

fn count(g: &Graph, pred: impl Fn(&Op) -> bool) -> usize {
    g.node_ids().filter(|&id| pred(&g.node(id).op)).count()
}

/// Logits of `g` for a fixed 6-token input and seed-3 weights.
fn logits(g: &Graph) -> Vec<f64> {
    let w = init_weights(g, 3).expect("weights");
    let out = evaluate(g, &[Tensor::tokens(&[1, 7, 3, 15, 0, 9])], &w).expect("evaluates");
    out[0].floats().expect("floats").to_vec()
}

/// The display names of the sites `quantize_graph` rotated.
fn rotated_sites(applied: &[Applied]) -> Vec<String> {
    applied
        .iter()
        .filter(|a| a.scheme == Scheme::Int8Rotated)
        .map(|a| a.site.display_name())
        .collect()
}

fn round_trips(g: &Graph) {
    let text = print_graph(g);
    let again = parse_graph(&SourceFile::new("q.bfir", text.clone())).expect("parses back");
    assert_eq!(print_graph(&again), text);
}

#[test]
fn without_a_quantize_section_the_pass_changes_nothing() {
    let (g0, g1) = quantized("mlp = gelu(hidden = 16)", "");
    assert_eq!(print_graph(&g1), print_graph(&g0));
}

#[test]
fn dense_int8_becomes_qmatmul_with_shared_activation_quantization() {
    let (g0, g1) = quantized(
        "mlp = swiglu(hidden = 16)",
        "quantize { dense = int8  rotate = false }",
    );
    // q k v o gate up down; the tied head stays f32 (`TIED_HEAD_REASON`).
    assert_eq!(count(&g1, |o| matches!(o, Op::QMatmul)), 7);
    assert_eq!(count(&g1, |o| matches!(o, Op::Matmul)), 1);
    // 7 weights + 4 activations: q/k/v share the attention norm's output, gate/up the MLP
    // norm's; o and down have their own.
    assert_eq!(count(&g1, |o| matches!(o, Op::Quantize)), 11);
    // The embedding gather still reads the f32 table.
    let text = print_graph(&g1);
    assert!(text.contains("embed %tokens, @embed.weight"), "{text}");
    assert!(text.contains("quantize @layers.0.attn.q.weight"), "{text}");
    let err = rel_l2(&logits(&g1), &logits(&g0));
    assert!(err > 0.0 && err < 0.02, "{err}");
    round_trips(&g1);
}

#[test]
fn rotate_puts_one_hadamard_butterfly_before_each_activation_and_weight_quantize() {
    let rest = "quantize { dense = int8  rotate = true }";
    let (g0, g1) = quantized("mlp = swiglu(hidden = 16)", rest);
    assert_eq!(count(&g1, |o| matches!(o, Op::QMatmul)), 7);
    // 4 activation rotations (q/k/v share one, gate/up one, o, down) + 7 weight rotations,
    // over two twiddle nodes (widths 8 and 16).
    assert_eq!(count(&g1, |o| matches!(o, Op::Butterfly { .. })), 11);
    assert_eq!(count(&g1, |o| matches!(o, Op::HadamardTwiddles { .. })), 2);
    let text = print_graph(&g1);
    assert!(
        text.contains("butterfly @layers.0.mlp.down.weight, "),
        "{text}"
    );
    // Every site reports the rotated scheme.
    let (spec, _) = spec("mlp = swiglu(hidden = 16)", rest);
    let plan = QuantPlan::from_spec(&spec).expect("a section");
    let mut g = g0.clone();
    let applied = quantize_graph(&mut g, &plan, &|_, _| true).expect("quantizes");
    assert_eq!(applied.len(), 7);
    assert!(applied.iter().all(|a| a.scheme == Scheme::Int8Rotated));
    let err = rel_l2(&logits(&g1), &logits(&g0));
    assert!(err > 0.0 && err < 0.02, "{err}");
    round_trips(&g1);
}

#[test]
fn an_odd_input_width_is_not_rotated() {
    // d_model = 7 has no power-of-two factor: every dense site reading the residual stream
    // stays `Int8Dynamic`; `mlp.down` (hidden = 16) still rotates.
    let text = "model m { vocab = 16  d_model = 7  layers = 1  heads = 1  context = 6  \
                position = none  mlp = gelu(hidden = 16) }\nquantize { dense = int8  rotate = true }\n";
    let file = SourceFile::new("t.bfly", text);
    let (spec, _) = compile_spec_source(&file).expect("compiles");
    let g0 = build_graph(&spec, &file).expect("builds");
    let plan = QuantPlan::from_spec(&spec).expect("a section");
    let mut g = g0.clone();
    let applied = quantize_graph(&mut g, &plan, &|_, _| true).expect("quantizes");
    let rotated = rotated_sites(&applied);
    assert_eq!(rotated, ["layers.0.mlp.down"]);
    assert_eq!(verify(&g), Ok(()));
}

#[test]
fn by_default_only_mlp_down_is_rotated() {
    let (spec, file) = spec("mlp = swiglu(hidden = 16)", "quantize { }");
    let g0 = build_graph(&spec, &file).expect("builds");
    let plan = QuantPlan::from_spec(&spec).expect("a section");
    assert_eq!(plan.rotate, Rotate::Globs(vec!["*.mlp.down".into()]));
    let mut g = g0.clone();
    let applied = quantize_graph(&mut g, &plan, &|_, _| true).expect("quantizes");
    let rotated = rotated_sites(&applied);
    assert_eq!(rotated, ["layers.0.mlp.down"]);
    for (rest, want) in [
        ("quantize { rotate = false }", Rotate::None),
        ("quantize { rotate = true }", Rotate::All),
        (
            "quantize { rotate = [\"*.attn.o\"] }",
            Rotate::Globs(vec!["*.attn.o".into()]),
        ),
    ] {
        let (s, _) = self::spec("mlp = swiglu(hidden = 16)", rest);
        assert_eq!(QuantPlan::from_spec(&s).expect("a section").rotate, want);
    }
}

#[test]
fn keep_globs_leave_sites_and_the_tied_head_in_f32() {
    let (_, g1) = quantized(
        "mlp = swiglu(hidden = 16)",
        "quantize { dense = int8  keep = [\"embed\", \"layers.0.attn.*\"] }",
    );
    // q k v o and the head (kept through `embed`) stay matmuls.
    assert_eq!(count(&g1, |o| matches!(o, Op::Matmul)), 5);
    assert_eq!(count(&g1, |o| matches!(o, Op::QMatmul)), 3);
    let text = print_graph(&g1);
    assert!(!text.contains("quantize @layers.0.attn"), "{text}");
    assert!(!text.contains("quantize @embed.weight"), "{text}");
    // With int8 the tied head stays f32 with or without a `keep` entry for it.
    for rest in ["quantize { keep = [\"head\"] }", "quantize { }"] {
        let (_, g1) = quantized("mlp = gelu(hidden = 16)", rest);
        assert_eq!(count(&g1, |o| matches!(o, Op::Matmul)), 1, "{rest}");
        assert!(
            !print_graph(&g1).contains("quantize @embed.weight"),
            "{rest}"
        );
    }
}

#[test]
fn running_twice_changes_nothing_more() {
    for rest in [
        "quantize { dense = int8 }",
        "quantize { dense = f16 }",
        "quantize { butterfly = fp16 }",
    ] {
        let (spec, _) = spec("linear = dib  mlp = gelu(hidden = 16)", rest);
        let (_, once) = quantized("linear = dib  mlp = gelu(hidden = 16)", rest);
        let mut twice = once.clone();
        Quantize
            .run(&mut twice, &PassContext::new(&spec, Mode::Infer))
            .expect("quantizes");
        assert_eq!(print_graph(&twice), print_graph(&once), "{rest}");
    }
}

#[test]
fn f16_dense_weights_are_cast_and_widened_back() {
    let (g0, g1) = quantized("mlp = gelu(hidden = 16)", "quantize { dense = f16 }");
    // q k v o up down head: one f16 cast and one f32 cast each (f16 keeps the tied head).
    assert_eq!(count(&g1, |o| *o == Op::Cast { to: DType::F16 }), 7);
    assert_eq!(count(&g1, |o| *o == Op::Cast { to: DType::F32 }), 7);
    assert_eq!(count(&g1, |o| matches!(o, Op::Matmul)), 7);
    let err = rel_l2(&logits(&g1), &logits(&g0));
    assert!(err > 0.0 && err < 1e-3, "{err}");
    round_trips(&g1);
}

#[test]
fn monarch_factors_are_int8_weight_only() {
    let (g0, g1) = quantized(
        "linear = monarch(blocks = 2, bias = true)  mlp = gelu(hidden = 16)",
        "quantize { dense = int8 }",
    );
    // 6 monarchs with 2 factors each, dequantized; the tied head stays an f32 matmul.
    assert_eq!(count(&g1, |o| matches!(o, Op::Monarch { .. })), 6);
    assert_eq!(count(&g1, |o| matches!(o, Op::Dequantize)), 12);
    assert_eq!(count(&g1, |o| matches!(o, Op::QMatmul)), 0);
    let text = print_graph(&g1);
    assert!(text.contains("quantize @layers.0.attn.q.w1"), "{text}");
    let err = rel_l2(&logits(&g1), &logits(&g0));
    assert!(err > 0.0 && err < 0.02, "{err}");
    round_trips(&g1);
}

#[test]
fn butterfly_twiddles_are_stored_as_fp16() {
    let (g0, g1) = quantized(
        "linear = dib  mlp = gelu(hidden = 16)  override \"*.mlp.*\" = butterfly(nblocks = 2)",
        "quantize { dense = none  butterfly = fp16 }",
    );
    // 6 butterflies; the head stays f32 (`dense = none`).
    assert_eq!(count(&g1, |o| *o == Op::Cast { to: DType::F16 }), 6);
    assert_eq!(count(&g1, |o| matches!(o, Op::Matmul)), 1);
    let text = print_graph(&g1);
    // The producer's canonical twiddles are cast, not its angles.
    assert!(
        text.contains("cast @layers.0.mlp.up.twiddles {to = f16}"),
        "{text}"
    );
    assert!(!text.contains("cast @layers.0.attn.q.theta"), "{text}");
    let err = rel_l2(&logits(&g1), &logits(&g0));
    assert!(err > 0.0 && err < 0.01, "{err}");
    round_trips(&g1);
}

#[test]
fn per_head_dense_quantizes_each_group() {
    let (g0, g1) = quantized(
        "linear = dense(per_head = true, bias = true)  mlp = gelu(hidden = 16)  \
         override \"*.mlp.*\" = dense",
        "quantize { dense = int8  keep = [\"head\"] }",
    );
    // q k v o per head (2 groups each) and up, down.
    assert_eq!(count(&g1, |o| matches!(o, Op::QMatmul)), 4 * 2 + 2);
    assert_eq!(count(&g1, |o| matches!(o, Op::Concat { .. })), 4);
    let err = rel_l2(&logits(&g1), &logits(&g0));
    assert!(err > 0.0 && err < 0.02, "{err}");
    round_trips(&g1);
}

#[test]
fn unnamed_hadamard_sites_are_kept_when_a_glob_names_one() {
    let model = "linear = hadamard  mlp = gelu(hidden = 16)  override \"*.mlp.*\" = dense";
    let (_, all) = quantized(model, "quantize { butterfly = fp16  dense = none }");
    assert_eq!(count(&all, |o| *o == Op::Cast { to: DType::F16 }), 4);
    let (_, kept) = quantized(
        model,
        "quantize { butterfly = fp16  dense = none  keep = [\"layers.0.attn.q\"] }",
    );
    assert_eq!(count(&kept, |o| *o == Op::Cast { to: DType::F16 }), 0);
    let sites = find_sites(&kept).expect("acyclic");
    assert!(sites.iter().any(|s| s.name.is_none()
        && s.display_name().starts_with("butterfly (hadamard) at 1:")));
}

#[test]
fn weight_time_products_are_not_sites() {
    // `y = x · (a · b)ᵀ`: the inner matmul multiplies two params (weight-time), the outer one
    // is the site, named after the first site-like parameter.
    let mut g = Graph::new("t");
    g.set_bound("T", 4);
    let x = g.add_input(
        "x",
        Type::new(DType::F32, [bfly_ir::Dim::sym("T"), 4u64.into()]),
    );
    let p = |g: &mut Graph, name: &str, dims: &[u64]| {
        g.add_param(
            Param {
                name: name.into(),
                init: Init::Normal { std: 1.0 },
                trainable: false,
            },
            Type::fixed(DType::F32, dims),
        )
    };
    let a = p(&mut g, "site.lora_b", &[4, 2]);
    let b = p(&mut g, "site.weight", &[4, 2]);
    let ab = g.add1(Op::Matmul, &[a, b], None).expect("matmul");
    let y = g.add1(Op::Matmul, &[x, ab], None).expect("matmul");
    g.set_outputs(vec![Output::value("y", y)]);
    let sites = find_sites(&g).expect("acyclic");
    assert_eq!(sites.len(), 1);
    assert_eq!(sites[0].node, y.node);
    assert_eq!(sites[0].name.as_deref(), Some("site"));
    let applied = quantize_graph(&mut g, &QuantPlan::defaults(), &|_, _| true).expect("quantizes");
    assert_eq!(applied.len(), 1);
    assert_eq!(verify(&g), Ok(()));
    assert_eq!(count(&g, |o| matches!(o, Op::Matmul)), 1);
    assert_eq!(g.outputs()[0].value, applied[0].output);
}
