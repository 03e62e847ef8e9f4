//! Parsing + lowering + verifying IR text never panics, whatever the text: mutated and
//! truncated versions of real printed graphs (the golden tiny-dense model's shape of IR and a
//! graph with huge dims) must come back as `Ok` or located diagnostics.

use bfly_grammar::SourceFile;
use bfly_ir::parse::parse_graph;
use proptest::prelude::*;

const SAMPLE: &str =
    "graph @g(%tokens: i32[T]) -> (%logits: f32[T, 32], %loss: f32[]) where T <= 8 {
  param @embed.weight: f32[32, 16] init normal(0.02) trainable
  param @norm.gain: f32[16] init ones trainable
  param @q.theta: f32[4, 1, 1, 2, 2] init uniform(-3.0, 3.0) trainable
  param @q.diag: f32[4, 1, 1, 2, 4] init ones trainable
  param @m.w1: f32[1, 4, 8, 4] init normal(0.5) trainable
  param @m.w2: f32[1, 4, 8, 8] init normal(0.3) trainable
  %0 = embed %tokens, @embed.weight : f32[T, 16] loc(3:7)
  %1 = rmsnorm %0, @norm.gain {eps = 1e-5} : f32[T, 16]
  %2 = dib_twiddles @q.theta, @q.diag {stride = increasing} : f32[4, 1, 1, 2, 2, 2, 2]
  %3 = butterfly %1, %2 {in = 4, out = 4, stride = increasing} : f32[T, 16]
  %4 = hadamard_twiddles {n = 16, groups = 1, stacks = 1, blocks = 1} : f32[1, 1, 1, 4, 8, 2, 2]
  %5 = butterfly %3, %4 {in = 16, out = 16, stride = decreasing} : f32[T, 16]
  %6 = monarch %5, @m.w1, @m.w2 {in = 16, out = 32} : f32[T, 32]
  %7, %8 = split %6 {axis = 1, sizes = [16, 16]} : f32[T, 16], f32[T, 16]
  %9 = concat %7, %8 {axis = 1} : f32[T, 32]
  %10 = reshape %9 {dims = [T, 4, 8]} : f32[T, 4, 8]
  %11 = transpose %10 {perm = [0, 2, 1]} : f32[T, 8, 4]
  %12 = reshape %11 {dims = [T, 32]} : f32[T, 32]
  %13 = cross_entropy %12, %tokens : f32[]
  return %12, %13
}
";

fn parse(text: &str) {
    let _ = parse_graph(&SourceFile::new("fuzz.bfir", text));
}

#[test]
fn the_sample_parses() {
    parse_graph(&SourceFile::new("sample.bfir", SAMPLE)).expect("the sample is valid IR");
}

#[test]
fn huge_dims_are_errors_not_overflows() {
    for dims in [
        "18446744073709551615, 2",
        "4294967296, 4294967296",
        "9223372036854775807",
    ] {
        let text = SAMPLE.replace(
            "f32[32, 16] init normal",
            &format!("f32[{dims}] init normal"),
        );
        assert!(parse_graph(&SourceFile::new("huge.bfir", text)).is_err());
    }
    let text = SAMPLE.replace(
        "{in = 16, out = 32}",
        "{in = 16, out = 18446744073709551615}",
    );
    assert!(parse_graph(&SourceFile::new("huge.bfir", text)).is_err());
}

/// Digits and dims are where semantic errors hide, so mutations favour them.
fn mutation() -> impl Strategy<Value = (usize, u8, String)> {
    (
        0..SAMPLE.len(),
        0u8..4,
        prop_oneof![
            Just("0".to_string()),
            Just("1".to_string()),
            Just("99999999999".to_string()),
            Just(", T".to_string()),
            Just("%3".to_string()),
            Just("@q.diag".to_string()),
            "[a-z%@,\\[\\]{}=: 0-9]{1,4}",
        ],
    )
}

fn apply(text: &str, (pos, kind, insert): &(usize, u8, String)) -> String {
    let mut at = (*pos).min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let mut end = (at + 1).min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    match kind {
        0 => format!("{}{}", &text[..at], &text[end..]),
        1 => format!("{}{insert}{}", &text[..at], &text[at..]),
        2 => format!("{}{insert}{}", &text[..at], &text[end..]),
        _ => text[..at].to_string(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mutated_ir_never_panics(muts in proptest::collection::vec(mutation(), 1..4)) {
        let mut text = SAMPLE.to_string();
        for m in &muts {
            text = apply(&text, m);
        }
        parse(&text);
    }
}
