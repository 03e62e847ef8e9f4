//! Fused regions in the IR: the schedule keeps each region contiguous, the text form prints
//! it as a `fused @rN { ... }` block that parses back to the same graph, and malformed
//! regions (nested, empty, duplicate names, ones no schedule can keep together) are located
//! errors.

use bfly_grammar::SourceFile;
use bfly_ir::parse::parse_graph;
use bfly_ir::{DType, Dim, Graph, Init, Op, Output, Param, Type, Value, print_graph, verify};
use proptest::prelude::*;

fn parse(text: &str) -> Result<Graph, Vec<bfly_grammar::Diagnostic>> {
    parse_graph(&SourceFile::new("regions.bfir", text))
}

fn messages(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("expected errors:\n{text}"),
        Err(d) => d.into_iter().map(|d| d.message).collect(),
    }
}

/// `x → matmul → gelu` and a second `matmul → silu` on the same input, built so that node
/// ids interleave the two chains: the schedule must still group each region.
fn interleaved() -> (Graph, [Value; 4]) {
    let mut g = Graph::new("mlp");
    g.set_bound("T", 8);
    let x = g.add_input("x", Type::new(DType::F32, [Dim::sym("T"), Dim::Const(4)]));
    let w = |g: &mut Graph, name: &str| {
        g.add_param(
            Param {
                name: name.into(),
                init: Init::Normal { std: 0.5 },
                trainable: true,
            },
            Type::fixed(DType::F32, &[4, 4]),
        )
    };
    let (wa, wb) = (w(&mut g, "a.weight"), w(&mut g, "b.weight"));
    let a = g.add1(Op::Matmul, &[x, wa], None).unwrap();
    let b = g.add1(Op::Matmul, &[x, wb], None).unwrap();
    let ga = g.add1(Op::Gelu, &[a], None).unwrap();
    let sb = g.add1(Op::Silu, &[b], None).unwrap();
    let out = g.add1(Op::Add, &[ga, sb], None).unwrap();
    g.set_outputs(vec![Output::value("y", out)]);
    (g, [a, b, ga, sb])
}

const INTERLEAVED_FUSED: &str = "\
graph @mlp(%x: f32[T, 4]) -> (%y: f32[T, 4]) where T <= 8 {
  param @a.weight: f32[4, 4] init normal(0.5) trainable
  param @b.weight: f32[4, 4] init normal(0.5) trainable
  fused @r0 {
    %0 = matmul %x, @a.weight : f32[T, 4]
    %1 = gelu %0 : f32[T, 4]
  }
  fused @r1 {
    %2 = matmul %x, @b.weight : f32[T, 4]
    %3 = silu %2 : f32[T, 4]
  }
  %4 = add %1, %3 : f32[T, 4]
  return %4
}
";

#[test]
fn the_schedule_keeps_regions_contiguous_and_the_text_round_trips() {
    let (mut g, [a, b, ga, sb]) = interleaved();
    // Region ids deliberately out of order: names follow the schedule, not the ids.
    let _unused = g.new_region();
    let r_late = g.new_region();
    let r_early = g.new_region();
    g.set_region(a.node, Some(r_early));
    g.set_region(ga.node, Some(r_early));
    g.set_region(b.node, Some(r_late));
    g.set_region(sb.node, Some(r_late));
    assert_eq!(verify(&g), Ok(()));
    let text = print_graph(&g);
    assert_eq!(text, INTERLEAVED_FUSED);
    let again = parse(&text).expect("parses");
    assert_eq!(print_graph(&again), text);
    assert_eq!(again.regions().len(), 2);
    // The parsed graph's ids follow the text, so its schedule is the text order.
    let order = again.topo_order().expect("schedules");
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
}

#[test]
fn without_regions_the_schedule_is_unchanged() {
    let (g, _) = interleaved();
    assert_eq!(g.topo_order(), g.dataflow_order());
    assert!(!print_graph(&g).contains("fused"));
}

#[test]
fn any_region_names_parse_and_print_renumbered() {
    let text = INTERLEAVED_FUSED
        .replace("@r0", "@second_gemm")
        .replace("@r1", "@first.gemm");
    let g = parse(&text).expect("parses");
    assert_eq!(print_graph(&g), INTERLEAVED_FUSED);
}

#[test]
fn values_defined_in_a_region_are_visible_after_it() {
    // `%1` and `%3` are used outside their blocks (by the `add`): regions are not scopes.
    let g = parse(INTERLEAVED_FUSED).expect("parses");
    let add = g
        .node_ids()
        .find(|&n| g.node(n).op == Op::Add)
        .expect("add");
    assert_eq!(g.node(add).region, None);
    let regions: Vec<_> = g
        .operands(add)
        .iter()
        .map(|v| g.node(v.node).region)
        .collect();
    assert!(regions.iter().all(Option::is_some) && regions[0] != regions[1]);
}

#[test]
fn clearing_regions_prints_the_plain_graph() {
    let mut g = parse(INTERLEAVED_FUSED).expect("parses");
    g.clear_regions();
    assert!(g.regions().is_empty());
    let plain = print_graph(&g);
    assert!(!plain.contains("fused"), "{plain}");
    assert_eq!(plain.lines().count(), INTERLEAVED_FUSED.lines().count() - 4);
}

#[test]
fn nested_regions_are_a_located_error() {
    let text = INTERLEAVED_FUSED
        .replace(
            "  fused @r1 {\n    %2",
            "  fused @r1 {\n    fused @inner {\n    %2",
        )
        .replace(
            "    %3 = silu %2 : f32[T, 4]\n  }",
            "    %3 = silu %2 : f32[T, 4]\n  }\n  }",
        );
    let err = parse(&text).expect_err("nested");
    assert_eq!(err.len(), 1);
    let d = &err[0];
    assert_eq!(d.message, "fused regions cannot be nested");
    assert_eq!(&text[d.span.start..d.span.end], "fused @inner");
    assert_eq!(d.label, "inside region `@r1`");
}

#[test]
fn empty_regions_are_a_located_error() {
    let text = INTERLEAVED_FUSED.replace("  %4 = add", "  fused @nothing { }\n  %4 = add");
    let err = parse(&text).expect_err("empty");
    assert_eq!(err[0].message, "fused region `@nothing` is empty");
    assert_eq!(&text[err[0].span.start..err[0].span.end], "fused @nothing");
}

#[test]
fn duplicate_region_names_are_an_error_naming_the_first() {
    let text = INTERLEAVED_FUSED.replace("@r1", "@r0");
    let err = parse(&text).expect_err("duplicate");
    assert_eq!(err.len(), 1, "{err:?}");
    assert_eq!(err[0].message, "fused region `@r0` is declared twice");
    assert_eq!(err[0].label, "already declared on line 4");
    assert_eq!(&text[err[0].span.start..err[0].span.end], "@r0");
    assert_eq!(text[..err[0].span.start].lines().count(), 8);
}

#[test]
fn an_unclosed_region_says_which_brace_is_missing() {
    let text = INTERLEAVED_FUSED.replacen(
        "    %1 = gelu %0 : f32[T, 4]\n  }\n",
        "    %1 = gelu %0 : f32[T, 4]\n",
        1,
    );
    let err = parse(&text).expect_err("unclosed");
    assert!(
        err[0]
            .message
            .contains("`}` to close the fused region `@r0`"),
        "{err:?}"
    );
    let text = INTERLEAVED_FUSED.replacen("fused @r0 {", "fused @r0", 1);
    let err = parse(&text).expect_err("no brace");
    assert!(
        err[0].message.contains("`{` to open the fused region"),
        "{err:?}"
    );
}

#[test]
fn statements_only_inside_a_region() {
    for (what, line) in [
        ("a param", "    param @c: f32[4] init ones frozen\n"),
        ("return", "    return %1\n"),
    ] {
        let text = INTERLEAVED_FUSED.replacen("  }\n", &format!("{line}  }}\n"), 1);
        let err = parse(&text).expect_err(what);
        assert!(
            err[0].message.contains("a statement") && err[0].message.contains("fused region"),
            "{what}: {err:?}"
        );
        assert_eq!(
            err[0].hint.as_deref(),
            Some(
                "a fused region holds statements only; is the `}` of `@r0` (opened on line 4) missing?"
            )
        );
    }
}

#[test]
fn a_region_that_a_value_leaves_and_reenters_does_not_verify() {
    // matmul (r) → gelu (outside) → add (r): no schedule runs r as one block.
    let (mut g, [a, _b, ga, _sb]) = interleaved();
    let r = g.new_region();
    g.set_region(a.node, Some(r));
    let add = g.outputs()[0].value.node;
    g.set_region(add, Some(r));
    assert_eq!(g.topo_order(), None);
    assert!(g.dataflow_order().is_some());
    let cycles = g.region_cycles();
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0].regions, vec![r]);
    assert_eq!(cycles[0].nodes, vec![ga.node]);
    let errs = verify(&g).expect_err("not convex");
    assert_eq!(
        errs[0].message,
        "fused region @r0 cannot run as one block: a value leaves it and flows back in through %2"
    );
    assert_eq!(errs[0].node, Some(a.node));
    // It still prints (as two blocks of the same name) so it can be looked at.
    let text = print_graph(&g);
    assert_eq!(text.matches("fused @r0 {").count(), 2, "{text}");
    assert!(parse(&text).is_err());
}

#[test]
fn two_regions_that_feed_each_other_do_not_verify() {
    // r0 = {a, silu b}, r1 = {b, gelu a}: r0 → r1 (a → gelu) and r1 → r0 (b → silu).
    let (mut g, [a, b, ga, sb]) = interleaved();
    let (r0, r1) = (g.new_region(), g.new_region());
    g.set_region(a.node, Some(r0));
    g.set_region(sb.node, Some(r0));
    g.set_region(b.node, Some(r1));
    g.set_region(ga.node, Some(r1));
    let errs = verify(&g).expect_err("mutual");
    assert_eq!(
        errs[0].message,
        "fused regions @r0 and @r1 feed each other, so neither can run as one block"
    );
}

#[test]
fn sources_cannot_be_fused() {
    let (mut g, [a, ..]) = interleaved();
    let r = g.new_region();
    let w = g.operands(a.node)[1];
    g.set_region(a.node, Some(r));
    g.set_region(w.node, Some(r));
    let errs = verify(&g).expect_err("param in region");
    assert!(
        errs.iter().any(|e| e.message
            == "param @a.weight: is in fused region @r0, but inputs and params are not computed and cannot be fused"),
        "{errs:?}"
    );
}

#[test]
fn region_errors_do_not_hide_other_errors() {
    // A mistyped statement inside a region is reported at its own line, like anywhere else.
    let text = INTERLEAVED_FUSED.replace("%3 = silu %2 : f32[T, 4]", "%3 = silu %2 : f32[T, 5]");
    let err = parse(&text).expect_err("mistyped");
    assert!(
        err[0].message.contains("declared type f32[T, 5]"),
        "{err:?}"
    );
    assert_eq!(
        text[err[0].span.start..err[0].span.end].trim_end(),
        "%3 = silu %2 : f32[T, 5]"
    );
    assert_eq!(messages(&text).len(), err.len());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Mutations around the region syntax never panic the parser, lowering or verifier, and
    /// whatever parses prints and parses back to itself.
    #[test]
    fn mutated_regions_never_panic(
        pos in 0..INTERLEAVED_FUSED.len(),
        insert in prop_oneof![
            Just("fused @r0 {".to_string()),
            Just("fused @r9 {".to_string()),
            Just("}".to_string()),
            Just("{".to_string()),
            Just("fused".to_string()),
            "[a-z%@{} 0-9]{1,4}",
        ],
        cut in any::<bool>(),
    ) {
        let mut at = pos;
        while !INTERLEAVED_FUSED.is_char_boundary(at) {
            at -= 1;
        }
        let text = if cut {
            format!("{}{}", &INTERLEAVED_FUSED[..at], &INTERLEAVED_FUSED[(at + 1).min(INTERLEAVED_FUSED.len())..])
        } else {
            format!("{}{insert}{}", &INTERLEAVED_FUSED[..at], &INTERLEAVED_FUSED[at..])
        };
        if let Ok(g) = parse(&text) {
            let printed = print_graph(&g);
            let again = parse(&printed).expect("printed text parses");
            prop_assert_eq!(print_graph(&again), printed);
        }
    }
}
