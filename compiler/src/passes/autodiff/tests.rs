//! Autodiff on small hand-built graphs: the structure it emits (zero fills for unused
//! results, `add` for fan-out, nothing for frozen params) and its numbers against finite
//! differences.

use bfly_ir::{DType, Dim, Graph, Init, Op, Output, Param, Type, Value};
use bfly_targets::reference::{Data, Tensor, evaluate, init_weights};

use super::Autodiff;
use crate::passes::test_graphs::small_spec;
use crate::passes::{Mode, Pass, PassContext};

/// `loss = cross_entropy(matmul(concat(a, a), @f), %targets)` with
/// `a, _ = split(embed(%tokens, @e))`: `@e` trainable, `@f` frozen; `mid` is spliced in
/// between the embedding and the split.
fn graph(mid: impl Fn(&mut Graph, Value) -> Value) -> Graph {
    let mut g = Graph::new("t");
    g.set_bound("B", 2);
    g.set_bound("T", 3);
    let ids = Type::new(DType::I32, [Dim::sym("B"), Dim::sym("T")]);
    let tokens = g.add_input("tokens", ids.clone());
    let targets = g.add_input("targets", ids);
    let param = |name: &str, trainable| Param {
        name: name.into(),
        init: Init::Normal { std: 0.5 },
        trainable,
    };
    let e = g.add_param(param("e", true), Type::fixed(DType::F32, &[8, 4]));
    let f = g.add_param(param("f", false), Type::fixed(DType::F32, &[8, 4]));
    let h = g.add1(Op::Embed, &[tokens, e], None).expect("embed");
    let h = mid(&mut g, h);
    let split = Op::Split {
        axis: 2,
        sizes: vec![2, 2],
    };
    let parts = g.add_op(split, &[h], None).expect("split");
    let c = g
        .add1(Op::Concat { axis: 2 }, &[parts[0], parts[0]], None)
        .expect("concat");
    let logits = g.add1(Op::Matmul, &[c, f], None).expect("matmul");
    let loss = g
        .add1(Op::CrossEntropy, &[logits, targets], None)
        .expect("loss");
    g.set_outputs(vec![Output::value("loss", loss)]);
    g
}

fn differentiate(g: &mut Graph) -> Result<(), Vec<bfly_grammar::Diagnostic>> {
    let (spec, _) = small_spec();
    let r = Autodiff.run(g, &PassContext::new(&spec, Mode::Train));
    if r.is_ok() {
        assert_eq!(bfly_ir::verify(g), Ok(()));
    }
    r
}

fn count(g: &Graph, pred: impl Fn(&Op) -> bool) -> usize {
    g.node_ids().filter(|&id| pred(&g.node(id).op)).count()
}

#[test]
fn emits_zero_fills_fan_out_adds_and_nothing_for_frozen_params() {
    let mut g = graph(|_, h| h);
    differentiate(&mut g).expect("differentiates");
    let outputs: Vec<&str> = g.outputs().iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outputs, ["loss", "grad_e"]);
    let grads: Vec<String> = g
        .node_ids()
        .filter_map(|id| match &g.node(id).op {
            Op::Grad(inner) => Some(inner.name().into_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(grads.len(), 5, "{grads:?}");
    for op in ["cross_entropy", "matmul", "concat", "split", "embed"] {
        assert!(grads.iter().any(|g| g == op), "{op}: {grads:?}");
    }
    // The unused half of the split gets a zero upstream gradient; `a` is used twice.
    let zero = |op: &Op| matches!(op, Op::Fill { value, .. } if *value == 0.0);
    let one = |op: &Op| matches!(op, Op::Fill { value, .. } if *value == 1.0);
    assert_eq!(count(&g, zero), 1);
    assert_eq!(count(&g, one), 1);
    assert_eq!(count(&g, |op| matches!(op, Op::Add)), 1);
}

#[test]
fn gradients_match_finite_differences() {
    let mut g = graph(|g, h| g.add1(Op::Silu, &[h], None).expect("silu"));
    let forward = g.clone();
    differentiate(&mut g).expect("differentiates");
    let ids = |v: &[i64]| Tensor::int(DType::I32, vec![2, 3], v.to_vec());
    let inputs = [ids(&[1, 5, 2, 7, 1, 0]), ids(&[3, 3, 6, 0, 2, 5])];
    let mut w = init_weights(&g, 9).expect("weights");
    let outs = evaluate(&g, &inputs, &w).expect("evaluates");
    let grad = outs[1].floats().expect("floats").to_vec();
    for i in [4, 7, 20, 31] {
        let mut loss_at = |x: f64| {
            if let Some(Data::F(v)) = w.get_mut("e").map(|t| &mut t.data) {
                v[i] = x;
            }
            let outs = evaluate(&forward, &inputs, &w).expect("evaluates");
            outs[0].floats().expect("floats")[0]
        };
        let x0 = init_weights(&forward, 9).expect("weights")["e"]
            .floats()
            .expect("floats")[i];
        let h = 1e-5;
        let fd = (loss_at(x0 + h) - loss_at(x0 - h)) / (2.0 * h);
        loss_at(x0);
        assert!(
            (fd - grad[i]).abs() <= 1e-8 * fd.abs().max(1e-2),
            "e[{i}]: autodiff {} vs fd {fd}",
            grad[i]
        );
    }
    // Rows of tokens that never occur get exactly zero.
    assert!(grad[4 * 4..5 * 4].iter().all(|&d| d == 0.0));
}

#[test]
fn refuses_to_differentiate_through_int8_ops() {
    let mut g = graph(|g, h| {
        let q = g.add_op(Op::Quantize, &[h], None).expect("quantize");
        g.add1(Op::Dequantize, &[q[0], q[1]], None)
            .expect("dequantize")
    });
    let errs = differentiate(&mut g).expect_err("no gradient");
    assert!(
        errs[0].message.contains("`quantize` has no gradient"),
        "{:?}",
        errs[0]
    );
}

#[test]
fn needs_the_loss_pass_first() {
    let mut g = graph(|_, h| h);
    let loss = g.outputs()[0].value;
    g.set_outputs(vec![Output::value("logits", loss)]);
    let errs = differentiate(&mut g).expect_err("no loss");
    assert!(
        errs[0].message.contains("no `%loss` output"),
        "{:?}",
        errs[0]
    );
}
