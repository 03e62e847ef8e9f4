//! The design's example spec parses, with the expected AST and spans.

use bfly_grammar::{Item, SourceFile, Span, SpecFile, Value, ValueKind, dump_spec_ast, parse_spec};

const EXAMPLE: &str = include_str!("data/tiny_dib.bfly");

fn parsed() -> (SourceFile, SpecFile) {
    let file = SourceFile::new("tiny_dib.bfly", EXAMPLE);
    match parse_spec(&file) {
        Ok(ast) => (file, ast),
        Err(d) => panic!("example must parse:\n{}", d.render(&file, false)),
    }
}

fn assign<'a>(file: &'a SpecFile, section: &str, key: &str) -> &'a Value {
    let s = file
        .sections
        .iter()
        .find(|s| s.kind.node == section)
        .unwrap_or_else(|| panic!("no section {section}"));
    s.items
        .iter()
        .find_map(|i| match i {
            Item::Assign { key: k, value, .. } if k.node == key => Some(value),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no key {key}"))
}

fn text(file: &SourceFile, span: Span) -> &str {
    &file.text[span.start..span.end]
}

#[test]
fn sections_and_names() {
    let (file, ast) = parsed();
    let kinds: Vec<&str> = ast.sections.iter().map(|s| s.kind.node.as_str()).collect();
    assert_eq!(kinds, ["model", "lora", "quantize", "train"]);
    let model = &ast.sections[0];
    assert_eq!(
        model.name.as_ref().map(|n| n.node.as_str()),
        Some("tiny_dib")
    );
    assert!(ast.sections[1].name.is_none());
    assert_eq!(model.items.len(), 9);
    assert!(text(&file, model.span).starts_with("model tiny_dib {"));
    assert!(text(&file, model.span).ends_with('}'));
    assert_eq!(ast.span, Span::new(0, EXAMPLE.len()));
}

#[test]
fn scalar_values() {
    let (_, ast) = parsed();
    assert_eq!(assign(&ast, "model", "vocab").kind, ValueKind::Int(256));
    assert_eq!(
        assign(&ast, "model", "tie_embeddings").kind,
        ValueKind::Bool(true)
    );
    assert_eq!(
        assign(&ast, "train", "trainable").kind,
        ValueKind::Ident("lora".into())
    );
    assert_eq!(assign(&ast, "train", "seed").kind, ValueKind::Int(1));
    assert_eq!(assign(&ast, "lora", "alpha").kind, ValueKind::Int(16));
    assert_eq!(
        assign(&ast, "quantize", "butterfly").kind.describe(),
        "identifier"
    );
}

#[test]
fn eps_float_span_maps_to_line_and_column() {
    let (file, ast) = parsed();
    let ValueKind::Call { name, args } = &assign(&ast, "model", "norm").kind else {
        panic!("norm is a call");
    };
    assert_eq!(name.node, "rmsnorm");
    assert_eq!(args.len(), 1);
    let eps = &args[0];
    assert_eq!(eps.key.as_ref().map(|k| k.node.as_str()), Some("eps"));
    assert_eq!(eps.value.kind, ValueKind::Float(1e-5));
    assert_eq!(text(&file, eps.value.span), "1e-5");
    // line 6: `    norm = rmsnorm(eps = 1e-5)`
    assert_eq!(file.line_col(eps.value.span.start), (6, 26));
    assert_eq!(text(&file, eps.span), "eps = 1e-5");
}

#[test]
fn calls_lists_and_strings() {
    let (file, ast) = parsed();
    let ValueKind::Call { args, .. } = &assign(&ast, "train", "optimizer").kind else {
        panic!("optimizer is a call");
    };
    let got: Vec<(&str, &ValueKind)> = args
        .iter()
        .map(|a| {
            (
                a.key.as_ref().map_or("", |k| k.node.as_str()),
                &a.value.kind,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("lr", &ValueKind::Float(3e-4)),
            ("beta1", &ValueKind::Float(0.9)),
            ("beta2", &ValueKind::Float(0.95)),
            ("weight_decay", &ValueKind::Float(0.01)),
        ]
    );
    let targets = assign(&ast, "lora", "targets");
    assert_eq!(text(&file, targets.span), r#"["*.attn.q", "*.attn.v"]"#);
    assert_eq!(
        targets.kind,
        ValueKind::List(vec![
            Value {
                kind: ValueKind::Str("*.attn.q".into()),
                span: Span::new(504, 514)
            },
            Value {
                kind: ValueKind::Str("*.attn.v".into()),
                span: Span::new(516, 526)
            },
        ])
    );
}

#[test]
fn overrides() {
    let (file, ast) = parsed();
    let overrides: Vec<(&str, &Value, Span)> = ast.sections[0]
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Override {
                pattern,
                value,
                span,
            } => Some((pattern.node.as_str(), value, *span)),
            _ => None,
        })
        .collect();
    assert_eq!(overrides.len(), 2);
    assert_eq!(overrides[0].0, "layers.*.mlp.down");
    assert_eq!(overrides[0].1.kind, ValueKind::Ident("dense".into()));
    assert_eq!(
        text(&file, overrides[0].2),
        r#"override "layers.*.mlp.down" = dense"#
    );
    assert_eq!(overrides[1].0, "layers.1.attn.*");
    let ValueKind::Call { name, args } = &overrides[1].1.kind else {
        panic!("butterfly(...) is a call");
    };
    assert_eq!(name.node, "butterfly");
    assert_eq!(args[2].value.kind, ValueKind::Bool(true));
    assert_eq!(overrides[1].1.kind.describe(), "call");
}

#[test]
fn generic_syntax_features() {
    let src = "x {\n  a = [1, -2, 0.5,\n       \"q\\\"\\n\",]\n  b = f(1, k = g(), [],)  c = -0.5 d = 1e3\n}\ny name {}\n";
    let file = SourceFile::new("g.bfly", src);
    let ast = parse_spec(&file).unwrap_or_else(|d| panic!("{}", d.render(&file, false)));
    assert_eq!(ast.sections.len(), 2);
    assert_eq!(ast.sections[0].items.len(), 4);
    let a = ast.sections[0].items[0].value();
    let ValueKind::List(items) = &a.kind else {
        panic!("a is a list");
    };
    let kinds: Vec<&str> = items.iter().map(|v| v.kind.describe()).collect();
    assert_eq!(kinds, ["integer", "integer", "float", "string"]);
    assert_eq!(items[3].kind, ValueKind::Str("q\"\n".into()));
    let ValueKind::Call { args, .. } = &ast.sections[0].items[1].value().kind else {
        panic!("b is a call");
    };
    assert!(args[0].key.is_none());
    assert_eq!(args[1].key.as_ref().map(|k| k.node.as_str()), Some("k"));
    assert_eq!(args[2].value.kind, ValueKind::List(vec![]));
    assert_eq!(
        ast.sections[0].items[3].value().kind,
        ValueKind::Float(1000.0)
    );
}

#[test]
fn keywords_are_not_prefixes() {
    let src = "s { override = 1 overrides = truex falsey = false }";
    let file = SourceFile::new("k.bfly", src);
    let ast = parse_spec(&file).unwrap_or_else(|d| panic!("{}", d.render(&file, false)));
    let items = &ast.sections[0].items;
    assert!(matches!(&items[0], Item::Assign { key, .. } if key.node == "override"));
    assert_eq!(items[1].value().kind, ValueKind::Ident("truex".into()));
    assert_eq!(items[2].value().kind, ValueKind::Bool(false));
}

#[test]
fn empty_and_comment_only_files_are_valid() {
    for src in ["", "# nothing\n", "\n\n  \t\n"] {
        let ast = parse_spec(&SourceFile::new("e.bfly", src)).expect("valid");
        assert!(ast.sections.is_empty());
    }
}

#[test]
fn dump_is_one_node_per_line_with_spans() {
    let (_, ast) = parsed();
    let dump = dump_spec_ast(&ast);
    assert!(dump.starts_with("SpecFile [0.."));
    assert!(dump.contains("\n  Section model tiny_dib [60..463]\n"));
    assert!(dump.contains("\n        Arg eps [145..155]\n          Float 1e-5 [151..155]\n"));
    assert!(dump.contains("Override \"layers.*.mlp.down\" [296..332]"));
    insta::assert_snapshot!("tiny_dib_spec_ast", dump);
}
