//! No input may panic the front end: mutations of the golden specs (deleted, inserted and
//! replaced characters, truncation) go through parse, check and build.

use std::path::Path;

use bfly_compiler::{compile_spec_source, render_diagnostics};
use bfly_grammar::SourceFile;
use proptest::prelude::*;

fn golden_texts() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../golden/specs");
    let mut texts: Vec<String> = std::fs::read_dir(dir)
        .expect("golden/specs exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "bfly"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    texts.sort();
    texts
}

#[derive(Clone, Debug)]
enum Mutation {
    Delete(usize),
    Insert(usize, char),
    Replace(usize, char),
    Truncate(usize),
}

/// Characters that matter to the grammar and the checker, plus a multi-byte one.
const ALPHABET: &[char] = &[
    '{', '}', '(', ')', '[', ']', '=', ',', '"', '#', '.', '*', '-', '+', 'e', '0', '1', '9', 'a',
    'z', '_', ' ', '\n', '\\', 'é', '\u{0}',
];

fn mutation() -> impl Strategy<Value = Mutation> {
    let ch = prop::sample::select(ALPHABET);
    prop_oneof![
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), ch.clone()).prop_map(|(i, c)| Mutation::Insert(i, c)),
        (any::<usize>(), ch).prop_map(|(i, c)| Mutation::Replace(i, c)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

/// Applies a mutation at a char boundary (positions taken modulo the char count).
fn apply(text: &str, m: &Mutation) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
    match *m {
        Mutation::Delete(i) if !chars.is_empty() => {
            chars.remove(at(i, chars.len()));
        }
        Mutation::Insert(i, c) => chars.insert(at(i, chars.len() + 1), c),
        Mutation::Replace(i, c) if !chars.is_empty() => {
            let i = at(i, chars.len());
            chars[i] = c;
        }
        Mutation::Truncate(i) => chars.truncate(at(i, chars.len() + 1)),
        _ => {}
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn compile_never_panics_on_mutated_specs(
        which in any::<prop::sample::Index>(),
        muts in prop::collection::vec(mutation(), 1..5),
    ) {
        let texts = golden_texts();
        let mut text = which.get(&texts).clone();
        for m in &muts {
            text = apply(&text, m);
        }
        let file = SourceFile::new("mutant.bfly", text);
        match compile_spec_source(&file) {
            Ok((_, g)) => prop_assert!(bfly_ir::verify(&g).is_ok()),
            Err(ds) => {
                prop_assert!(!ds.is_empty());
                let _ = render_diagnostics(&file, &ds, false);
            }
        }
    }
}
