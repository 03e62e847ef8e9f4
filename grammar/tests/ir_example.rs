//! The design's example IR graph parses, with the expected AST and spans.

use bfly_grammar::{AttrValue, DimAst, IrGraph, Operand, SourceFile, Span, parse_ir};

const EXAMPLE: &str = include_str!("data/tiny_dib.ir");

fn parsed() -> (SourceFile, IrGraph) {
    let file = SourceFile::new("tiny_dib.ir", EXAMPLE);
    match parse_ir(&file) {
        Ok(g) => (file, g),
        Err(d) => panic!("example must parse:\n{}", d.render(&file, false)),
    }
}

fn text(file: &SourceFile, span: Span) -> &str {
    &file.text[span.start..span.end]
}

fn dims(d: &[bfly_grammar::Spanned<DimAst>]) -> Vec<DimAst> {
    d.iter().map(|s| s.node.clone()).collect()
}

#[test]
fn header() {
    let (file, g) = parsed();
    assert_eq!(g.name.node, "tiny_dib");
    assert_eq!(text(&file, g.name.span), "@tiny_dib");
    assert_eq!(g.inputs.len(), 1);
    assert_eq!(g.inputs[0].name.node, "tokens");
    assert_eq!(g.inputs[0].ty.dtype.node, "i32");
    assert_eq!(dims(&g.inputs[0].ty.dims), [DimAst::Sym("T".into())]);
    assert_eq!(g.outputs[0].name.node, "logits");
    assert_eq!(text(&file, g.outputs[0].ty.span), "f32[T, 256]");
    assert_eq!(g.bounds.len(), 1);
    assert_eq!(g.bounds[0].name.node, "T");
    assert_eq!(g.bounds[0].max.node, 64);
    assert!(text(&file, g.span).starts_with("graph @tiny_dib("));
    assert!(text(&file, g.span).ends_with('}'));
}

#[test]
fn params() {
    let (file, g) = parsed();
    let names: Vec<&str> = g.params.iter().map(|p| p.name.node.as_str()).collect();
    assert_eq!(
        names,
        ["embed", "layers.0.norm1", "layers.0.attn.q.theta", "w"]
    );
    let embed = &g.params[0];
    assert_eq!(
        dims(&embed.ty.dims),
        [DimAst::Const(256), DimAst::Const(128)]
    );
    let init = embed.init.as_ref().expect("embed has an init");
    assert_eq!(init.name.node, "normal");
    assert_eq!(init.args.len(), 1);
    assert_eq!(init.args[0].node, 0.02);
    assert_eq!(text(&file, init.span), "normal(0.02)");
    assert!(embed.trainable);
    let ones = g.params[1].init.as_ref().expect("init ones");
    assert_eq!(ones.name.node, "ones");
    assert!(ones.args.is_empty());
    let theta = &g.params[2];
    assert!(!theta.trainable);
    let args: Vec<f64> = theta
        .init
        .as_ref()
        .map(|i| i.args.iter().map(|a| a.node).collect())
        .unwrap_or_default();
    assert_eq!(args, [-std::f64::consts::PI, std::f64::consts::PI]);
    assert_eq!(g.params[3].init, None);
    assert!(!g.params[3].trainable);
    assert_eq!(
        text(&file, g.params[3].span),
        "param @w: f32[2, 2] external frozen"
    );
}

#[test]
fn statements() {
    let (file, g) = parsed();
    let ops: Vec<&str> = g.stmts.iter().map(|s| s.op.node.as_str()).collect();
    assert_eq!(
        ops,
        [
            "embed",
            "rmsnorm",
            "hadamard_twiddles",
            "butterfly",
            "split",
            "cross_entropy"
        ]
    );
    let embed = &g.stmts[0];
    assert_eq!(embed.results[0].node, "0");
    assert_eq!(
        embed.operands,
        [
            Operand::Value(bfly_grammar::Spanned::new(
                "tokens".into(),
                embed.operands[0].name().span
            )),
            Operand::Param(bfly_grammar::Spanned::new(
                "embed".into(),
                embed.operands[1].name().span
            )),
        ]
    );
    assert_eq!(text(&file, embed.operands[1].name().span), "@embed");
    assert_eq!(embed.loc, None);

    let norm = &g.stmts[1];
    assert_eq!(norm.loc, Some((7, 12)));
    assert_eq!(norm.attrs.len(), 1);
    assert_eq!(norm.attrs[0].key.node, "eps");
    assert_eq!(norm.attrs[0].value, AttrValue::Float(1e-5));
    assert_eq!(text(&file, norm.attrs[0].span), "eps = 1e-5");
    let eps_start = norm.attrs[0].span.start + "eps = ".len();
    assert_eq!(file.line_col(eps_start), (8, 43));

    let tw = &g.stmts[2];
    assert!(tw.operands.is_empty());
    assert_eq!(tw.attrs.len(), 4);
    assert_eq!(tw.types[0].dims.len(), 7);

    let bf = &g.stmts[3];
    assert_eq!(bf.attrs[2].value, AttrValue::Ident("increasing".into()));

    let split = &g.stmts[4];
    let results: Vec<&str> = split.results.iter().map(|r| r.node.as_str()).collect();
    assert_eq!(results, ["4", "5"]);
    assert_eq!(
        split.attrs[1].value,
        AttrValue::List(vec![AttrValue::Int(64), AttrValue::Int(64)])
    );
    assert_eq!(split.types.len(), 2);

    let ce = &g.stmts[5];
    assert!(ce.types[0].dims.is_empty(), "f32[] is a scalar");
    assert_eq!(text(&file, ce.types[0].span), "f32[]");

    let ret: Vec<&str> = g.ret.iter().map(|r| r.node.as_str()).collect();
    assert_eq!(ret, ["3", "6"]);
}

#[test]
fn rust_debug_floats_and_misc_syntax() {
    let src = "// leading comment\ngraph @g.x_1(%a: f32[B, T], %b: f16[]) -> () {\n  %y = op %a {f = 10000.0, g = -2.75, h = 1e20, i = 1e-7, s = \"a\\\"b\", t = true, l = [[1], [], [x, 2.5]]} : f32[B, T] # trailing\n  return\n}\n";
    let file = SourceFile::new("m.ir", src);
    let g = parse_ir(&file).unwrap_or_else(|d| panic!("{}", d.render(&file, false)));
    assert_eq!(g.name.node, "g.x_1");
    assert!(g.outputs.is_empty());
    assert!(g.bounds.is_empty());
    assert!(g.ret.is_empty());
    let vals: Vec<&AttrValue> = g.stmts[0].attrs.iter().map(|a| &a.value).collect();
    assert_eq!(
        vals,
        [
            &AttrValue::Float(10000.0),
            &AttrValue::Float(-2.75),
            &AttrValue::Float(1e20),
            &AttrValue::Float(1e-7),
            &AttrValue::Str("a\"b".into()),
            &AttrValue::Bool(true),
            &AttrValue::List(vec![
                AttrValue::List(vec![AttrValue::Int(1)]),
                AttrValue::List(vec![]),
                AttrValue::List(vec![AttrValue::Ident("x".into()), AttrValue::Float(2.5)]),
            ]),
        ]
    );
}

#[test]
fn debug_printed_floats_round_trip() {
    for v in [
        1e-5,
        10000.0,
        -2.75,
        1e20,
        0.1 + 0.2,
        f64::MIN_POSITIVE,
        f64::MAX,
        -0.0,
    ] {
        let src = format!(
            "graph @g() -> () {{\n  param @p: f32[] init const({v:?}) frozen\n  return\n}}\n"
        );
        let file = SourceFile::new("f.ir", src);
        let g = parse_ir(&file).unwrap_or_else(|d| panic!("{}", d.render(&file, false)));
        let got = g.params[0].init.as_ref().map(|i| i.args[0].node);
        assert_eq!(got.map(f64::to_bits), Some(v.to_bits()), "{v:?}");
    }
}
