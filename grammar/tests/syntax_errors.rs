//! Snapshots of representative syntax errors in both grammars, rendered as
//! plain text: the one-line form, then the full ariadne report.

use bfly_grammar::{Diagnostic, SourceFile, parse_ir, parse_spec};

fn render(file: &SourceFile, d: &Diagnostic) -> String {
    let (line, col) = file.line_col(d.span.start);
    let full = d.render(file, false);
    assert!(
        full.contains(&format!("{}:{line}:{col}", file.name)),
        "header shows file:line:col\n{full}"
    );
    assert!(!full.contains('\u{1b}'), "no colour codes\n{full}");
    if let Some(hint) = &d.hint {
        assert!(full.contains(&format!("Help: {hint}")), "{full}");
    }
    format!("{}\n\n{full}", d.short(file))
}

fn spec_error(name: &str, src: &str) -> String {
    let file = SourceFile::new(name, src);
    match parse_spec(&file) {
        Ok(ast) => panic!("{name} should not parse: {ast:?}"),
        Err(d) => render(&file, &d),
    }
}

fn ir_error(name: &str, src: &str) -> String {
    let file = SourceFile::new(name, src);
    match parse_ir(&file) {
        Ok(g) => panic!("{name} should not parse: {g:?}"),
        Err(d) => render(&file, &d),
    }
}

#[test]
fn spec_colon_instead_of_eq() {
    insta::assert_snapshot!(spec_error(
        "colon.bfly",
        "model tiny {\n    vocab: 256\n    d_model = 128\n}\n"
    ));
}

#[test]
fn spec_unclosed_section_at_eof() {
    insta::assert_snapshot!(spec_error(
        "unclosed.bfly",
        "model tiny {\n    vocab = 256\n    layers = 2   # more to come\n"
    ));
}

#[test]
fn spec_unterminated_string() {
    insta::assert_snapshot!(spec_error(
        "string.bfly",
        "model m {\n    vocab = 256\n    name = \"tiny_dib\n}\n"
    ));
}

#[test]
fn spec_quote_missing_in_list() {
    insta::assert_snapshot!(spec_error(
        "quotes.bfly",
        "lora {\n    rank = 8\n    targets = [\"*.attn.q, \"*.attn.v\"]\n}\n"
    ));
}

#[test]
fn spec_missing_value() {
    insta::assert_snapshot!(spec_error(
        "value.bfly",
        "train {\n    optimizer = adamw(lr = , beta1 = 0.9)\n}\n"
    ));
}

#[test]
fn spec_commas_between_items() {
    insta::assert_snapshot!(spec_error("commas.bfly", "lora { rank = 8, alpha = 16 }\n"));
}

#[test]
fn spec_unclosed_call() {
    insta::assert_snapshot!(spec_error(
        "call.bfly",
        "model m {\n    norm = rmsnorm(eps = 1e-5\n    mlp = swiglu(hidden = 256)\n}\n"
    ));
}

#[test]
fn spec_trailing_dot_number() {
    insta::assert_snapshot!(spec_error(
        "number.bfly",
        "train {\n    optimizer = adamw(lr = 2.)\n}\n"
    ));
}

#[test]
fn spec_bad_escape() {
    insta::assert_snapshot!(spec_error(
        "escape.bfly",
        "model m {\n    override \"layers\\.1\" = dense\n}\n"
    ));
}

#[test]
fn spec_unquoted_override_pattern() {
    insta::assert_snapshot!(spec_error(
        "override.bfly",
        "model m {\n    override layers.*.mlp = dense\n}\n"
    ));
}

#[test]
fn spec_item_outside_section() {
    insta::assert_snapshot!(spec_error("toplevel.bfly", "vocab = 256\n"));
}

#[test]
fn spec_integer_overflow() {
    insta::assert_snapshot!(spec_error(
        "overflow.bfly",
        "train { seed = 123456789012345678901234567890 }\n"
    ));
}

#[test]
fn ir_missing_return() {
    insta::assert_snapshot!(ir_error(
        "noreturn.ir",
        "graph @g(%x: f32[T]) -> (%y: f32[T]) {\n  %0 = neg %x : f32[T]\n}\n"
    ));
}

#[test]
fn ir_missing_result_type() {
    insta::assert_snapshot!(ir_error(
        "notype.ir",
        "graph @g(%x: f32[T]) -> (%y: f32[T]) {\n  %0 = neg %x\n  return %0\n}\n"
    ));
}

#[test]
fn ir_param_without_trainability() {
    insta::assert_snapshot!(ir_error(
        "param.ir",
        "graph @g(%x: f32[T]) -> (%y: f32[T]) {\n  param @w: f32[128] init ones\n  return %x\n}\n"
    ));
}

#[test]
fn ir_type_without_shape() {
    insta::assert_snapshot!(ir_error(
        "shape.ir",
        "graph @g(%x: f32) -> (%y: f32[T]) {\n  return %x\n}\n"
    ));
}

#[test]
fn ir_negative_dimension() {
    insta::assert_snapshot!(ir_error(
        "dim.ir",
        "graph @g(%x: f32[T, -4]) -> (%y: f32[T]) {\n  return %x\n}\n"
    ));
}

#[test]
fn ir_unclosed_attributes() {
    insta::assert_snapshot!(ir_error(
        "attrs.ir",
        "graph @g(%x: f32[T]) -> (%y: f32[T]) {\n  %0 = rmsnorm %x {eps = 1e-5 : f32[T]\n  return %0\n}\n"
    ));
}

#[test]
fn ir_empty_file() {
    insta::assert_snapshot!(ir_error("empty.ir", ""));
}

#[test]
fn multibyte_text_before_the_error() {
    // Columns count chars, and the underline sits under the right token.
    insta::assert_snapshot!(spec_error(
        "utf8.bfly",
        "model m {\n    name = \"héllo → wörld\" vocab 256\n}\n"
    ));
}
