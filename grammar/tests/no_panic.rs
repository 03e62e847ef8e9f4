//! Parsers and diagnostic rendering never panic, whatever the input.

use bfly_grammar::{Diagnostic, SourceFile, Span, parse_ir, parse_spec};
use proptest::prelude::*;

const SPEC: &str = include_str!("data/tiny_dib.bfly");
const IR: &str = include_str!("data/tiny_dib.ir");

/// Runs both parsers on `text` and renders any error both ways.
fn exercise(text: &str) {
    let file = SourceFile::new("fuzz.txt", text);
    let spec = parse_spec(&file).err();
    let ir = parse_ir(&file).err();
    for d in spec.iter().chain(ir.iter()) {
        assert!(!d.message.is_empty());
        let plain = d.render(&file, false);
        assert!(plain.contains("fuzz.txt:"), "{plain}");
        let _ = d.render(&file, true);
        assert!(d.short(&file).starts_with("fuzz.txt:"));
    }
}

#[derive(Clone, Debug)]
enum Edit {
    Delete(usize),
    Insert(usize, char),
    Replace(usize, char),
}

/// Characters that matter to the grammars, plus some awkward ones.
fn interesting_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => prop::sample::select(vec![
            '{', '}', '(', ')', '[', ']', ',', '=', ':', '"', '\\', '#', '/', '%', '@', '.',
            '-', '+', 'e', '<', '>', '\n', '\r', ' ', '\t', '0', '9', 'a', '_',
        ]),
        1 => any::<char>(),
        1 => prop::sample::select(vec!['é', '→', '\u{2028}', '\u{85}', '\u{0}', '\u{feff}', '𝔘']),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), interesting_char()).prop_map(|(i, c)| Edit::Insert(i, c)),
        (any::<usize>(), interesting_char()).prop_map(|(i, c)| Edit::Replace(i, c)),
    ]
}

/// Applies edits at char positions (taken modulo the current length).
fn mutate(base: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = base.chars().collect();
    for e in edits {
        let n = chars.len();
        match *e {
            Edit::Delete(i) if n > 0 => {
                chars.remove(i % n);
            }
            Edit::Insert(i, c) => chars.insert(i % (n + 1), c),
            Edit::Replace(i, c) if n > 0 => chars[i % n] = c,
            _ => {}
        }
    }
    chars.into_iter().collect()
}

/// The prefix of `s` cut at the char boundary at or before `byte % (len + 1)`.
fn truncate(s: &str, byte: usize) -> &str {
    let mut b = byte % (s.len() + 1);
    while !s.is_char_boundary(b) {
        b -= 1;
    }
    &s[..b]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_unicode(text in any::<String>()) {
        exercise(&text);
    }

    #[test]
    fn grammar_flavoured_noise(
        text in "[a-z0-9_ ={}\\[\\](),\"#%@:.<>\\-\n\\\\]{0,200}"
    ) {
        exercise(&text);
    }

    #[test]
    fn mutated_spec(edits in prop::collection::vec(edit(), 1..6)) {
        exercise(&mutate(SPEC, &edits));
    }

    #[test]
    fn mutated_ir(edits in prop::collection::vec(edit(), 1..6)) {
        exercise(&mutate(IR, &edits));
    }

    #[test]
    fn truncated_examples(cut in any::<usize>(), which in any::<bool>()) {
        let base = if which { SPEC } else { IR };
        exercise(truncate(base, cut));
    }

    #[test]
    fn truncated_mutants(edits in prop::collection::vec(edit(), 0..4), cut in any::<usize>()) {
        exercise(truncate(&mutate(SPEC, &edits), cut));
        exercise(truncate(&mutate(IR, &edits), cut));
    }

    #[test]
    fn render_with_arbitrary_spans(
        text in any::<String>(),
        start in 0usize..300,
        len in 0usize..300,
        label in ".{0,10}",
        hint in proptest::option::of(".{0,20}"),
    ) {
        let file = SourceFile::new("any", text);
        let d = Diagnostic::error("message", Span::new(start, start + len))
            .with_label(label);
        let d = match hint { Some(h) => d.with_hint(h), None => d };
        prop_assert!(d.render(&file, false).contains("any:"));
        let _ = d.render(&file, true);
        let _ = d.short(&file);
        let reversed = Diagnostic::error("m", Span::new(start + len, start));
        let _ = reversed.render(&file, false);
    }
}

#[test]
fn every_truncation_of_the_examples() {
    for base in [SPEC, IR] {
        for (i, _) in base.char_indices() {
            exercise(&base[..i]);
        }
    }
}

#[test]
fn huge_nesting_is_an_error_not_a_stack_overflow() {
    let deep_list = format!("m {{ x = {} }}", "[".repeat(100_000));
    let deep_call = format!("m {{ x = {} }}", "f(".repeat(100_000));
    let deep_attr = format!(
        "graph @g() -> () {{\n %0 = f {{a = {}}} : f32[]\n return\n}}",
        "[".repeat(100_000)
    );
    for text in [deep_list, deep_call] {
        let file = SourceFile::new("deep", text);
        let d = parse_spec(&file).expect_err("too deep");
        assert!(d.message.contains("nested too deeply"), "{}", d.message);
    }
    let file = SourceFile::new("deep", deep_attr);
    let d = parse_ir(&file).expect_err("too deep");
    assert!(d.message.contains("nested too deeply"), "{}", d.message);
    // Moderate nesting is fine.
    let ok = format!("m {{ x = {}{} }}", "[".repeat(40), "]".repeat(40));
    assert!(parse_spec(&SourceFile::new("ok", ok)).is_ok());
}

#[test]
fn long_inputs_parse_quickly() {
    let mut spec = String::from("model big {\n");
    for i in 0..20_000 {
        spec.push_str(&format!("  key_{i} = f(a = [1, 2.5, \"s\"], b = x)\n"));
    }
    spec.push_str("}\n");
    let start = std::time::Instant::now();
    let ast = parse_spec(&SourceFile::new("big", spec.as_str())).expect("valid");
    assert_eq!(ast.sections[0].items.len(), 20_000);
    // An error at the very end of a long file is also found quickly.
    let broken = format!("{}oops", &spec[..spec.len() - 2]);
    let file = SourceFile::new("big", broken);
    let d = parse_spec(&file).expect_err("broken");
    let _ = d.render(&file, false);
    assert!(start.elapsed().as_secs() < 20, "took {:?}", start.elapsed());
}
