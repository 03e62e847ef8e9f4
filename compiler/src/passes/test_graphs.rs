//! Small hand-built graphs and a bit-exact evaluator for the passes' unit tests.

use bfly_ir::{DType, Graph, Init, Op, Output, Param, Type, Value};
use bfly_targets::reference::{Tensor, evaluate, init_weights};

/// `x, spare: f32[4]`; outputs `h = (x·w + x·w) + σ(x)` and `k`, the same sum spelled with
/// a second `σ(x)`; a dead chain `neg(exp(@unused))` and an unused input `%spare`.
pub fn dead_and_duplicated() -> Graph {
    let mut g = Graph::new("t");
    let ty = Type::fixed(DType::F32, &[4]);
    let x = g.add_input("x", ty.clone());
    g.add_input("spare", ty.clone());
    let param = |name: &str| Param {
        name: name.into(),
        init: Init::Normal { std: 1.0 },
        trainable: true,
    };
    let w = g.add_param(param("w"), ty.clone());
    let unused = g.add_param(param("unused"), ty);
    let mut op = |op: Op, args: &[Value]| g.add1(op, args, None).expect("valid op");
    let a = op(Op::Mul, &[x, w]);
    let b = op(Op::Mul, &[x, w]);
    let c = op(Op::Add, &[a, b]);
    let d = op(Op::Exp, &[unused]);
    op(Op::Neg, &[d]);
    let s1 = op(Op::Sigmoid, &[x]);
    let s2 = op(Op::Sigmoid, &[x]);
    let h = op(Op::Add, &[c, s1]);
    let k = op(Op::Add, &[c, s2]);
    g.set_outputs(vec![Output::value("h", h), Output::value("k", k)]);
    g
}

/// Every output's f64 bits on fixed inputs `x[i] = 0.3·i − 0.5` and seed-1 weights.
pub fn eval_bits(g: &Graph) -> Vec<Vec<u64>> {
    let input = Tensor::f32(vec![4], (0..4).map(|i| 0.3 * f64::from(i) - 0.5).collect());
    eval_bits_on(g, &input, 1)
}

/// Every output's f64 bits with `input` fed to every graph input and `seed` weights.
pub fn eval_bits_on(g: &Graph, input: &Tensor, seed: u64) -> Vec<Vec<u64>> {
    let weights = init_weights(g, seed).expect("weights");
    let inputs = vec![input.clone(); g.inputs().len()];
    evaluate(g, &inputs, &weights)
        .expect("evaluates")
        .iter()
        .map(|t| {
            t.floats()
                .unwrap_or_default()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        })
        .collect()
}

/// A small checked spec, for the `PassContext` of unit tests.
pub fn small_spec() -> (crate::ModelSpec, bfly_grammar::SourceFile) {
    let file = bfly_grammar::SourceFile::new(
        "small.bfly",
        "model small { vocab = 8 d_model = 8 layers = 1 heads = 2 context = 4 \
         mlp = gelu(hidden = 8) } train { optimizer = sgd(lr = 0.5) batch = 2 seq = 3 }",
    );
    let (spec, _) = crate::compile_spec_source(&file).expect("valid spec");
    (spec, file)
}
