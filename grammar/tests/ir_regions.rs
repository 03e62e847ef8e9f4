//! `fused @name { ... }` regions in the IR grammar: their statements stay in the flat
//! statement list (a region is a grouping, not a scope), each region records the range it
//! covers, and nesting or emptiness is a located error. Mutations never panic.

use bfly_grammar::{SourceFile, parse_ir};
use proptest::prelude::*;

const FUSED: &str = "\
graph @g(%x: f32[T, 4]) -> (%y: f32[T, 4]) where T <= 8 {
  param @w: f32[4, 4] init normal(0.5) trainable
  %0 = neg %x : f32[T, 4]
  fused @r0 {
    %1 = matmul %0, @w : f32[T, 4]
    %2 = gelu %1 : f32[T, 4]
  }
  fused @next.one {
    %3 = exp %2 : f32[T, 4]
  }
  return %3
}
";

#[test]
fn regions_cover_ranges_of_the_flat_statement_list() {
    let file = SourceFile::new("fused.bfir", FUSED);
    let g = parse_ir(&file).expect("parses");
    let results: Vec<&str> = g.stmts.iter().map(|s| s.results[0].node.as_str()).collect();
    assert_eq!(results, ["0", "1", "2", "3"]);
    assert_eq!(g.regions.len(), 2);
    assert_eq!(g.regions[0].name.node, "r0");
    assert_eq!(g.regions[0].stmts, 1..3);
    assert_eq!(g.regions[1].name.node, "next.one");
    assert_eq!(g.regions[1].stmts, 3..4);
    let span = |s: bfly_grammar::Span| &FUSED[s.start..s.end];
    assert_eq!(span(g.regions[0].name.span), "@r0");
    assert!(span(g.regions[0].span).starts_with("fused @r0 {"));
    assert!(span(g.regions[0].span).ends_with('}'));
}

#[test]
fn fused_is_only_a_keyword_at_the_start_of_a_body_item() {
    // An op may not be called `fused` (statements start with a result), but a value or a
    // param may.
    let text = FUSED.replace("%x", "%fused").replace("@w", "@fused");
    let g = parse_ir(&SourceFile::new("names.bfir", text)).expect("parses");
    assert_eq!(g.inputs[0].name.node, "fused");
    assert_eq!(g.params[0].name.node, "fused");
}

#[test]
fn nesting_and_empty_regions_are_located_errors() {
    let nested = FUSED.replace(
        "  fused @next.one {\n    %3",
        "  fused @next.one {\n    fused @inner { %9 = neg %2 : f32[T, 4] }\n    %3",
    );
    let d = parse_ir(&SourceFile::new("nested.bfir", nested.clone())).expect_err("nested");
    assert_eq!(d.message, "fused regions cannot be nested");
    assert_eq!(&nested[d.span.start..d.span.end], "fused @inner");
    assert_eq!(d.label, "inside region `@next.one`");

    let empty = FUSED.replace("  return", "  fused @idle {}\n  return");
    let d = parse_ir(&SourceFile::new("empty.bfir", empty.clone())).expect_err("empty");
    assert_eq!(d.message, "fused region `@idle` is empty");
    assert_eq!(&empty[d.span.start..d.span.end], "fused @idle");
}

#[test]
fn a_region_needs_a_name() {
    let text = FUSED.replace("fused @r0 {", "fused {");
    let d = parse_ir(&SourceFile::new("anon.bfir", text)).expect_err("anonymous");
    assert_eq!(d.message, "expected a `@name`");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mutated_regions_never_panic(
        at in 0..FUSED.len(),
        insert in prop_oneof![
            Just("fused @a {"),
            Just("fused"),
            Just("}"),
            Just("{"),
            Just("@"),
        ],
        delete in any::<bool>(),
    ) {
        let text = if delete {
            format!("{}{}", &FUSED[..at], &FUSED[at + 1..])
        } else {
            format!("{}{insert}{}", &FUSED[..at], &FUSED[at..])
        };
        let file = SourceFile::new("fuzz.bfir", text);
        if let Err(d) = parse_ir(&file) {
            prop_assert!(!d.message.is_empty());
            let _ = d.render(&file, false);
        }
    }
}
