//! The text form round-trips (`print(parse(print(g))) == print(g)`) for a graph that uses
//! every op, and malformed IR is rejected with a located error.

use bfly_grammar::SourceFile;
use bfly_ir::parse::parse_graph;
use bfly_ir::{
    DType, Dim, Graph, Init, Loc, Op, Output, Param, StrideOrder, Type, print_graph, verify,
};

fn param(g: &mut Graph, name: &str, dims: &[u64], init: Init) -> bfly_ir::Value {
    g.add_param(
        Param {
            name: name.into(),
            init,
            trainable: true,
        },
        Type::fixed(DType::F32, dims),
    )
}

/// A graph touching every op of the forward set.
fn every_op_graph() -> Graph {
    let mut g = Graph::new("every_op");
    g.set_bound("T", 16);
    let t = Dim::sym("T");
    let tokens = g.add_input("tokens", Type::new(DType::I32, [t.clone()]));
    let embed = param(
        &mut g,
        "embed.weight",
        &[32, 16],
        Init::Normal { std: 0.02 },
    );
    let gain = param(&mut g, "norm.gain", &[16], Init::Ones);
    let bias = param(&mut g, "norm.bias", &[16], Init::Zeros);
    let theta = param(
        &mut g,
        "q.theta",
        &[4, 1, 1, 2, 2],
        Init::Uniform { lo: -3.0, hi: 3.0 },
    );
    let diag = param(&mut g, "q.diag", &[4, 1, 1, 2, 4], Init::Ones);
    let gth = param(&mut g, "k.theta", &[1, 1, 1, 4, 8], Init::Const(0.5));
    let tw = param(
        &mut g,
        "v.twiddles",
        &[1, 1, 2, 4, 8, 2, 2],
        Init::Normal { std: 0.7 },
    );
    let tern = param(
        &mut g,
        "t.w",
        &[1, 1, 1, 4, 8],
        Init::Uniform { lo: -1.0, hi: 1.0 },
    );
    let w1 = param(&mut g, "m.w1", &[1, 4, 8, 4], Init::Normal { std: 0.5 });
    let w2 = param(&mut g, "m.w2", &[1, 4, 8, 8], Init::Normal { std: 0.3 });
    let dense = param(&mut g, "o.weight", &[16, 16], Init::Normal { std: 0.25 });
    let la = param(&mut g, "o.lora_a", &[2, 16], Init::Normal { std: 0.25 });
    let lb = param(&mut g, "o.lora_b", &[16, 2], Init::Zeros);
    let loc = Some(Loc { line: 3, col: 7 });
    let x = g.add1(Op::Embed, &[tokens, embed], loc).unwrap();
    let h = g
        .add1(Op::LayerNorm { eps: 1e-5 }, &[x, gain, bias], None)
        .unwrap();
    let h = g.add1(Op::RmsNorm { eps: 1e-6 }, &[h, gain], None).unwrap();
    let dib = g
        .add1(
            Op::DibTwiddles {
                stride: StrideOrder::Increasing,
            },
            &[theta, diag],
            None,
        )
        .unwrap();
    let q = g
        .add1(
            Op::Butterfly {
                n_in: 4,
                n_out: 4,
                stride: StrideOrder::Increasing,
            },
            &[h, dib],
            None,
        )
        .unwrap();
    let gt = g.add1(Op::GivensTwiddles, &[gth], None).unwrap();
    let k = g
        .add1(
            Op::Butterfly {
                n_in: 16,
                n_out: 16,
                stride: StrideOrder::Decreasing,
            },
            &[h, gt],
            None,
        )
        .unwrap();
    let v = g
        .add1(
            Op::Butterfly {
                n_in: 16,
                n_out: 16,
                stride: StrideOrder::Increasing,
            },
            &[h, tw, gain],
            None,
        )
        .unwrap();
    let q = g
        .add1(
            Op::Rope {
                heads: 4,
                base: 10000.0,
            },
            &[q],
            None,
        )
        .unwrap();
    let a = g
        .add1(
            Op::CausalAttention {
                heads: 4,
                kv_heads: 4,
            },
            &[q, k, v],
            None,
        )
        .unwrap();
    let had = g
        .add1(
            Op::HadamardTwiddles {
                groups: 1,
                stacks: 1,
                blocks: 1,
                n: 16,
            },
            &[],
            None,
        )
        .unwrap();
    let a = g
        .add1(
            Op::Butterfly {
                n_in: 16,
                n_out: 16,
                stride: StrideOrder::Increasing,
            },
            &[a, had],
            None,
        )
        .unwrap();
    let tt = g
        .add1(Op::TernaryTwiddles { alpha: 0.5 }, &[tern], None)
        .unwrap();
    let a = g
        .add1(
            Op::Butterfly {
                n_in: 16,
                n_out: 16,
                stride: StrideOrder::Increasing,
            },
            &[a, tt],
            None,
        )
        .unwrap();
    let m = g
        .add1(
            Op::Monarch {
                n_in: 16,
                n_out: 32,
            },
            &[a, w1, w2],
            None,
        )
        .unwrap();
    let parts = g
        .add_op(
            Op::Split {
                axis: 1,
                sizes: vec![16, 16],
            },
            &[m],
            None,
        )
        .unwrap();
    let s = g.add1(Op::Silu, &[parts[0]], None).unwrap();
    let e = g.add1(Op::Mul, &[s, parts[1]], None).unwrap();
    let e = g.add1(Op::Gelu, &[e], None).unwrap();
    let e = g.add1(Op::Sigmoid, &[e], None).unwrap();
    let e = g.add1(Op::Exp, &[e], None).unwrap();
    let e = g.add1(Op::Neg, &[e], None).unwrap();
    let e = g.add1(Op::Scale { factor: 0.125 }, &[e], None).unwrap();
    let e = g.add1(Op::Softmax, &[e], None).unwrap();
    let o = g.add1(Op::Matmul, &[e, dense], None).unwrap();
    let lo = g.add1(Op::Lora { scale: 2.0 }, &[e, la, lb], None).unwrap();
    let o = g.add1(Op::Add, &[o, lo], None).unwrap();
    let o = g.add1(Op::Sub, &[o, x], None).unwrap();
    let r = g
        .add1(
            Op::Reshape {
                dims: vec![t.clone(), Dim::Const(4), Dim::Const(4)],
            },
            &[o],
            None,
        )
        .unwrap();
    let r = g
        .add1(
            Op::Transpose {
                perm: vec![0, 2, 1],
            },
            &[r],
            None,
        )
        .unwrap();
    let r = g
        .add1(
            Op::Reshape {
                dims: vec![t.clone(), Dim::Const(16)],
            },
            &[r],
            None,
        )
        .unwrap();
    let c = g.add1(Op::Concat { axis: 1 }, &[r, o], None).unwrap();
    let c16 = g.add1(Op::Cast { to: DType::F16 }, &[c], None).unwrap();
    let c = g.add1(Op::Cast { to: DType::F32 }, &[c16], None).unwrap();
    let qx = g.add_op(Op::Quantize, &[c], None).unwrap();
    let deq = g.add1(Op::Dequantize, &[qx[0], qx[1]], None).unwrap();
    let head = param(&mut g, "head.weight", &[32, 32], Init::Normal { std: 0.2 });
    let wq = g.add_op(Op::Quantize, &[head], None).unwrap();
    let logits = g
        .add1(Op::QMatmul, &[qx[0], qx[1], wq[0], wq[1]], None)
        .unwrap();
    let logits = g.add1(Op::Add, &[logits, deq], None).unwrap();
    let loss = g.add1(Op::CrossEntropy, &[logits, tokens], None).unwrap();
    // Training ops: the loss seed, one VJP, and both optimizers writing params back.
    let seed = g
        .add1(
            Op::Fill {
                value: 1.0,
                dtype: DType::F32,
                dims: vec![],
            },
            &[],
            None,
        )
        .unwrap();
    let dlogits = g
        .add_op(
            Op::Grad(Box::new(Op::CrossEntropy)),
            &[logits, tokens, seed],
            None,
        )
        .unwrap();
    let zeros = g
        .add1(
            Op::Fill {
                value: 0.0,
                dtype: DType::F32,
                dims: vec![t.clone(), Dim::Const(16)],
            },
            &[],
            None,
        )
        .unwrap();
    let dnorm = g
        .add_op(
            Op::Grad(Box::new(Op::RmsNorm { eps: 1e-6 })),
            &[h, gain, zeros],
            None,
        )
        .unwrap();
    let new_gain = g
        .add1(Op::Sgd { lr: 0.1 }, &[gain, dnorm[1]], None)
        .unwrap();
    let m = param(&mut g, "o.weight.adam_m", &[16, 16], Init::Zeros);
    let v = param(&mut g, "o.weight.adam_v", &[16, 16], Init::Zeros);
    let step = g.add_input("step", Type::scalar(DType::F32));
    let dw = g
        .add_op(Op::Grad(Box::new(Op::Matmul)), &[e, dense, o], None)
        .unwrap();
    let adam = g
        .add_op(
            Op::AdamW {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.95,
                eps: 1e-8,
                weight_decay: 0.01,
            },
            &[dense, dw[1], m, v, step],
            None,
        )
        .unwrap();
    assert_eq!(dlogits.len(), 1);
    g.set_outputs(vec![
        Output::value("logits", logits),
        Output::value("loss", loss),
        Output::param_update("norm.gain", new_gain),
        Output::param_update("o.weight", adam[0]),
    ]);
    g
}

#[test]
fn every_op_round_trips_through_text() {
    let g = every_op_graph();
    verify(&g).expect("the hand-built graph verifies");
    let text = print_graph(&g);
    let covered: std::collections::BTreeSet<String> = g
        .node_ids()
        .map(|id| g.node(id).op.name().into_owned())
        .collect();
    for name in Op::NAMES {
        assert!(
            covered.contains(*name),
            "op `{name}` is missing from the round-trip graph"
        );
    }
    assert!(covered.contains("matmul.grad") && text.contains("@o.weight: f32[16, 16]"));
    let parsed = parse_graph(&SourceFile::new("every_op.bfir", text.clone()))
        .unwrap_or_else(|d| panic!("{d:?}\n{text}"));
    assert_eq!(print_graph(&parsed), text);
}

fn parse_err(src: &str) -> String {
    let file = SourceFile::new("bad.bfir", src);
    match parse_graph(&file) {
        Ok(_) => panic!("accepted malformed IR:\n{src}"),
        Err(d) => d
            .iter()
            .map(|d| d.short(&file))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

const HEADER: &str = "graph @g(%x: f32[T, 8]) -> (%y: f32[T, 8]) where T <= 4 {\n";

#[test]
fn malformed_ir_is_located() {
    let cases = [
        (
            "  %0 = silu %nope : f32[T, 8]\n  return %0\n}\n",
            "bad.bfir:2:13",
            "undefined value `%nope`",
        ),
        (
            "  %0 = slu %x : f32[T, 8]\n  return %0\n}\n",
            "bad.bfir:2:8",
            "did you mean `silu`",
        ),
        (
            "  %0 = silu %x : f32[T, 9]\n  return %0\n}\n",
            "bad.bfir:2:3",
            "declared type f32[T, 9]",
        ),
        (
            "  %0 = rmsnorm %x, @g : f32[T, 8]\n  return %0\n}\n",
            "bad.bfir:2:20",
            "unknown param `@g`",
        ),
        (
            "  %0 = rmsnorm %x, %x {eps = 1e-5} : f32[T, 8]\n  return %0\n}\n",
            "bad.bfir:2:3",
            "norm gain/bias",
        ),
        (
            "  %0 = silu %x {fast = true} : f32[T, 8]\n  return %0\n}\n",
            "bad.bfir:2:8",
            "no attribute `fast`",
        ),
        (
            "  %0 = silu %x : f32[T, 8]\n  %0 = silu %0 : f32[T, 8]\n  return %0\n}\n",
            "bad.bfir:3:3",
            "defined twice",
        ),
        (
            "  %0 = silu %x : q32[T, 8]\n  return %0\n}\n",
            "bad.bfir:2:18",
            "unknown dtype",
        ),
        (
            "  %0 = silu %x : f32[T, 8]\n  return %0, %0\n}\n",
            "bad.bfir:",
            "declares 1 output(s)",
        ),
        (
            "  %0 = silu %x : f32[N, 8]\n  return %0\n}\n",
            "bad.bfir:2:3",
            "symbol `N`",
        ),
    ];
    for (body, at, what) in cases {
        let err = parse_err(&format!("{HEADER}{body}"));
        assert!(
            err.contains(at) && err.contains(what),
            "expected `{at}` … `{what}`, got:\n{err}"
        );
    }
}
