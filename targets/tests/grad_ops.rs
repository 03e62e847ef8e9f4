//! IR-level gradient checks: every differentiable op's `OP.grad`, built as a real graph node
//! and run by the reference interpreter, against central finite differences of
//! `L = Σ_i ⟨upstream_i, forward_result_i⟩` re-evaluated through the forward graph.
//!
//! Tolerance: |analytic − numeric| ≤ 1e-6 · max(|analytic|, |numeric|, 1). The interpreter
//! computes in f64, so each evaluation of L (O(10) here) carries ~1e-14 of round-off, which the
//! difference quotient amplifies by 1/(2h) to ~1e-8; the truncation error of the central
//! difference is O(h²·L‴) ≈ 1e-12. Both sit far below 1e-6, while a wrong index or a missing
//! term shows up at O(1). The floor of 1 keeps near-zero gradients from demanding a relative
//! precision the quotient cannot deliver.
//!
//! Also here: known answers for `sgd`, `adamw` (two steps, bias correction, weight decay),
//! `fill` with a symbolic dim, `cast` gradients, and errors (never panics) on bad data.

use bfly_ir::init::{SplitMix64, fnv1a};
use bfly_ir::{DType, Dim, Graph, Init, Op, Output, Param, StrideOrder, Type, Value};
use bfly_targets::reference::{Data, EvalError, Tensor, Weights, evaluate};

const H: f64 = 1e-6;
const TOL: f64 = 1e-6;

/// Bounds of the symbols the cases use.
const BOUNDS: [(&str, u64); 2] = [("B", 8), ("T", 16)];

struct Rng(SplitMix64);

impl Rng {
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.0.next_f64()
    }
}

/// How an operand enters the graph, and what values it gets.
#[derive(Clone, Debug)]
enum Kind {
    /// An `f32` trainable param, uniform in [−1, 1).
    Param,
    /// An `f32` graph input, uniform in [−1, 1).
    Input,
    /// An `i32` graph input of ids in `0..vocab` (tokens, targets): not differentiable.
    Ids { vocab: usize },
}

/// One operand of a case: declared dims (possibly symbolic), the concrete shape, the kind.
#[derive(Clone, Debug)]
struct Arg {
    kind: Kind,
    dims: Vec<Dim>,
    shape: Vec<usize>,
}

/// `f32` param of a constant shape.
fn p(shape: &[usize]) -> Arg {
    Arg {
        kind: Kind::Param,
        dims: shape.iter().map(|&d| Dim::from(d)).collect(),
        shape: shape.to_vec(),
    }
}

/// `f32` input of a constant shape.
fn x(shape: &[usize]) -> Arg {
    Arg {
        kind: Kind::Input,
        ..p(shape)
    }
}

/// `f32` input with leading symbolic dims, e.g. `seq(&[("B", 2), ("T", 3)], &[8])` is
/// `f32[B, T, 8]` evaluated at B = 2, T = 3.
fn seq(syms: &[(&str, usize)], rest: &[usize]) -> Arg {
    let mut dims: Vec<Dim> = syms.iter().map(|(s, _)| Dim::sym(s)).collect();
    dims.extend(rest.iter().map(|&d| Dim::from(d)));
    let mut shape: Vec<usize> = syms.iter().map(|&(_, v)| v).collect();
    shape.extend_from_slice(rest);
    Arg {
        kind: Kind::Input,
        dims,
        shape,
    }
}

/// `i32` ids in `0..vocab` with the (symbolic) dims of `syms`.
fn ids(syms: &[(&str, usize)], vocab: usize) -> Arg {
    Arg {
        kind: Kind::Ids { vocab },
        ..seq(syms, &[])
    }
}

impl Arg {
    fn ty(&self) -> Type {
        let dtype = match self.kind {
            Kind::Ids { .. } => DType::I32,
            _ => DType::F32,
        };
        Type::new(dtype, self.dims.iter().cloned())
    }

    fn sample(&self, rng: &mut Rng) -> Tensor {
        let numel = self.shape.iter().product();
        match self.kind {
            Kind::Ids { vocab } => Tensor::int(
                DType::I32,
                self.shape.clone(),
                (0..numel)
                    .map(|_| (rng.0.next_u64() % vocab as u64) as i64)
                    .collect(),
            ),
            _ => random(&self.shape, rng),
        }
    }
}

fn random(shape: &[usize], rng: &mut Rng) -> Tensor {
    let numel = shape.iter().product();
    Tensor::f32(
        shape.to_vec(),
        (0..numel).map(|_| rng.uniform(-1.0, 1.0)).collect(),
    )
}

/// How the gradient is checked.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    FiniteDiff,
    /// The straight-through estimator of `ternary_twiddles`: its forward is a step function
    /// (true derivative 0), so the gradient is checked against finite differences of the
    /// surrogate `T = [[1, w], [1, −w]]` that treats the rounding as the identity — and the
    /// true finite difference is checked to be 0, which is why the STE exists.
    Ste,
}

struct Case {
    op: Op,
    args: Vec<Arg>,
    mode: Mode,
}

fn case(op: Op, args: Vec<Arg>) -> Case {
    Case {
        op,
        args,
        mode: Mode::FiniteDiff,
    }
}

/// A graph with `args` as sources (params named `p0`, `p1`, … by slot; inputs `x0`, …), then
/// the extra `upstream` inputs, then `op` applied to all of them; every result is an output.
fn build(op: &Op, args: &[Arg], upstream: &[Type]) -> Graph {
    let mut g = Graph::new("case");
    for (s, b) in BOUNDS {
        g.set_bound(s, b);
    }
    let mut operands: Vec<Value> = args
        .iter()
        .enumerate()
        .map(|(i, a)| match a.kind {
            Kind::Param => g.add_param(
                Param {
                    name: format!("p{i}"),
                    init: Init::External,
                    trainable: true,
                },
                a.ty(),
            ),
            _ => g.add_input(&format!("x{i}"), a.ty()),
        })
        .collect();
    for (i, t) in upstream.iter().enumerate() {
        operands.push(g.add_input(&format!("dy{i}"), t.clone()));
    }
    let results = g
        .add_op(op.clone(), &operands, None)
        .unwrap_or_else(|e| panic!("{}: {e}", op.name()));
    g.set_outputs(
        results
            .iter()
            .enumerate()
            .map(|(i, &v)| Output::value(format!("r{i}"), v))
            .collect(),
    );
    if let Err(errs) = bfly_ir::verify(&g) {
        panic!("{}: graph does not verify: {errs:?}", op.name());
    }
    g
}

/// Evaluates a graph built by [`build`] on the operand `values` and the `upstream` tensors.
fn run(
    g: &Graph,
    args: &[Arg],
    values: &[Tensor],
    upstream: &[Tensor],
) -> Result<Vec<Tensor>, EvalError> {
    let mut inputs = Vec::new();
    let mut weights = Weights::new();
    for (i, (a, v)) in args.iter().zip(values).enumerate() {
        match a.kind {
            Kind::Param => {
                weights.insert(format!("p{i}"), v.clone());
            }
            _ => inputs.push(v.clone()),
        }
    }
    inputs.extend(upstream.iter().cloned());
    evaluate(g, &inputs, &weights)
}

fn f(t: &Tensor) -> &[f64] {
    t.floats().expect("float tensor")
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Relative error of `a` against `b`, floored at 1 (see the module doc).
fn rel_err(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1.0)
}

/// The whole check for one case: forward, random upstream, `OP.grad`, result order and types,
/// and every gradient element against central finite differences.
fn check(c: &Case) {
    let name = c.op.name();
    let what = format!(
        "{name} {:?}",
        c.args.iter().map(|a| &a.shape).collect::<Vec<_>>()
    );
    let mut rng = Rng(SplitMix64::new(fnv1a(&what)));
    let values: Vec<Tensor> = c.args.iter().map(|a| a.sample(&mut rng)).collect();

    let fwd = build(&c.op, &c.args, &[]);
    let ys = run(&fwd, &c.args, &values, &[]).unwrap_or_else(|e| panic!("{what}: {e}"));
    let ups: Vec<Tensor> = ys.iter().map(|y| random(&y.shape, &mut rng)).collect();
    let up_types: Vec<Type> = fwd
        .outputs()
        .iter()
        .map(|o| fwd.value_type(o.value).clone())
        .collect();
    let loss = |vals: &[Tensor]| -> f64 {
        let ys = run(&fwd, &c.args, vals, &[]).unwrap_or_else(|e| panic!("{what}: {e}"));
        ys.iter().zip(&ups).map(|(y, u)| dot(f(y), f(u))).sum()
    };

    let grad_op = Op::Grad(Box::new(c.op.clone()));
    let bwd = build(&grad_op, &c.args, &up_types);
    let grads = run(&bwd, &c.args, &values, &ups).unwrap_or_else(|e| panic!("{what}: {e}"));

    // One result per float operand, in operand order, typed like the operand.
    let float_args: Vec<usize> = (0..c.args.len())
        .filter(|&i| !matches!(c.args[i].kind, Kind::Ids { .. }))
        .collect();
    assert_eq!(grads.len(), float_args.len(), "{what}: result count");
    let declared: Vec<&Type> = bwd
        .outputs()
        .iter()
        .map(|o| bwd.value_type(o.value))
        .collect();
    for ((&j, gt), ty) in float_args.iter().zip(&grads).zip(&declared) {
        assert_eq!(
            **ty,
            c.args[j].ty(),
            "{what}: declared type of gradient {j}"
        );
        assert_eq!(gt.shape, values[j].shape, "{what}: shape of gradient {j}");
        assert_eq!(gt.dtype, DType::F32, "{what}: dtype of gradient {j}");
    }

    for (&j, gt) in float_args.iter().zip(&grads) {
        let numeric: Vec<f64> = (0..values[j].numel())
            .map(|e| {
                let at = |delta: f64| {
                    let mut vals = values.clone();
                    if let Data::F(v) = &mut vals[j].data {
                        v[e] += delta;
                    }
                    vals
                };
                let (plus, minus) = (at(H), at(-H));
                let real = (loss(&plus) - loss(&minus)) / (2.0 * H);
                match c.mode {
                    Mode::FiniteDiff => real,
                    Mode::Ste => {
                        assert_eq!(
                            real, 0.0,
                            "{what}: ternary forward is not piecewise constant"
                        );
                        let surrogate = |vals: &[Tensor]| -> f64 {
                            let tw: Vec<f64> = f(&vals[j])
                                .iter()
                                .flat_map(|&w| [1.0, w, 1.0, -w])
                                .collect();
                            dot(&tw, f(&ups[0]))
                        };
                        (surrogate(&plus) - surrogate(&minus)) / (2.0 * H)
                    }
                }
            })
            .collect();
        for (e, (&a, &n)) in f(gt).iter().zip(&numeric).enumerate() {
            assert!(
                rel_err(a, n) <= TOL,
                "{what}: d/d(operand {j})[{e}]: analytic {a}, numeric {n}"
            );
        }
    }
}

fn bfly(n_in: u64, n_out: u64, stride: StrideOrder) -> Op {
    Op::Butterfly {
        n_in,
        n_out,
        stride,
    }
}

/// Every gradient case, one line each. Shapes: `[B, T, D]` batches, groups > 1, biases,
/// padded/stacked butterflies and monarchs, kv_heads < heads, broadcasting, multi-part
/// split and concat, a rank-3 transpose.
fn cases() -> Vec<Case> {
    use StrideOrder::{Decreasing, Increasing};
    let bt = [("B", 2), ("T", 3)];
    vec![
        case(Op::Embed, vec![ids(&[("T", 6)], 5), p(&[5, 4])]),
        case(Op::Embed, vec![ids(&bt, 3), p(&[3, 2])]),
        case(Op::Matmul, vec![x(&[4, 5]), p(&[3, 5])]),
        case(Op::Matmul, vec![seq(&bt, &[6]), p(&[4, 6]), p(&[4])]),
        // Grouped: w [G=2, N=4, K=3], x [.., G·K = 6] → y [.., G·N = 8].
        case(Op::Matmul, vec![seq(&bt, &[6]), p(&[2, 4, 3]), p(&[8])]),
        // in = 5 pads to n = 8 (L = 3); out = 12 needs 2 stacks; 2 groups, 2 blocks, bias.
        case(
            bfly(5, 12, Increasing),
            vec![seq(&bt, &[10]), p(&[2, 2, 2, 3, 4, 2, 2]), p(&[24])],
        ),
        case(
            bfly(6, 3, Decreasing),
            vec![x(&[3, 6]), p(&[1, 1, 3, 3, 4, 2, 2])],
        ),
        case(
            bfly(8, 8, Decreasing),
            vec![seq(&bt, &[8]), p(&[1, 1, 1, 3, 4, 2, 2])],
        ),
        // w1 [G=2, k=2, q=3, p=3], w2 [2, l=3, s=2, r=2]: k·q = l·r = 6, in 5 < k·p = 6,
        // out 4 < l·s = 6, so both the input padding and the output truncation are exercised.
        case(
            Op::Monarch { n_in: 5, n_out: 4 },
            vec![seq(&bt, &[10]), p(&[2, 2, 3, 3]), p(&[2, 3, 2, 2]), p(&[8])],
        ),
        case(
            Op::Monarch { n_in: 4, n_out: 4 },
            vec![x(&[3, 4]), p(&[1, 2, 2, 2]), p(&[1, 2, 2, 2])],
        ),
        case(Op::GivensTwiddles, vec![p(&[2, 1, 2, 3, 4])]),
        case(
            Op::DibTwiddles { stride: Increasing },
            vec![p(&[1, 2, 2, 2, 2]), p(&[1, 2, 2, 2, 4])],
        ),
        case(
            Op::DibTwiddles { stride: Decreasing },
            vec![p(&[2, 1, 3, 3, 4]), p(&[2, 1, 3, 3, 8])],
        ),
        Case {
            op: Op::TernaryTwiddles { alpha: 0.5 },
            args: vec![p(&[1, 2, 2, 2, 2])],
            mode: Mode::Ste,
        },
        case(
            Op::Lora { scale: 0.5 },
            vec![seq(&bt, &[5]), p(&[2, 5]), p(&[4, 2])],
        ),
        case(Op::Add, vec![x(&[3, 4]), x(&[3, 4])]),
        case(Op::Add, vec![seq(&[("T", 3)], &[4]), p(&[4])]),
        case(Op::Sub, vec![x(&[1, 4]), x(&[3, 1])]),
        case(Op::Sub, vec![p(&[4]), seq(&bt, &[4])]),
        case(Op::Mul, vec![x(&[2, 1, 4]), x(&[3, 1])]),
        case(Op::Mul, vec![seq(&bt, &[4]), p(&[4])]),
        case(Op::Neg, vec![seq(&bt, &[4])]),
        case(Op::Exp, vec![x(&[3, 4])]),
        case(Op::Silu, vec![seq(&bt, &[4])]),
        case(Op::Gelu, vec![x(&[3, 4])]),
        case(Op::Sigmoid, vec![x(&[3, 4])]),
        case(Op::Scale { factor: -1.5 }, vec![seq(&bt, &[4])]),
        case(Op::RmsNorm { eps: 1e-5 }, vec![seq(&bt, &[5]), p(&[5])]),
        case(
            Op::LayerNorm { eps: 1e-5 },
            vec![seq(&bt, &[5]), p(&[5]), p(&[5])],
        ),
        case(Op::Softmax, vec![seq(&bt, &[5])]),
        case(
            Op::Rope {
                heads: 2,
                base: 10000.0,
            },
            vec![seq(&bt, &[8])],
        ),
        case(
            Op::Rope {
                heads: 1,
                base: 100.0,
            },
            vec![x(&[4, 6])],
        ),
        // heads 4 share kv_heads 2 (head_dim 2).
        case(
            Op::CausalAttention {
                heads: 4,
                kv_heads: 2,
            },
            vec![seq(&bt, &[8]), seq(&bt, &[4]), seq(&bt, &[4])],
        ),
        case(
            Op::CausalAttention {
                heads: 2,
                kv_heads: 2,
            },
            vec![x(&[4, 6]), x(&[4, 6]), x(&[4, 6])],
        ),
        case(
            Op::Reshape {
                dims: vec![Dim::Const(6), Dim::Const(4)],
            },
            vec![x(&[2, 3, 4])],
        ),
        case(
            Op::Reshape {
                dims: vec![Dim::sym("T"), Dim::Const(2), Dim::Const(2)],
            },
            vec![seq(&[("T", 3)], &[4])],
        ),
        case(
            Op::Transpose {
                perm: vec![2, 0, 1],
            },
            vec![x(&[2, 3, 4])],
        ),
        case(Op::Transpose { perm: vec![1, 0] }, vec![p(&[3, 5])]),
        case(
            Op::Split {
                axis: 1,
                sizes: vec![1, 2, 3],
            },
            vec![x(&[2, 6, 3])],
        ),
        case(
            Op::Split {
                axis: 2,
                sizes: vec![3, 1],
            },
            vec![seq(&bt, &[4])],
        ),
        case(Op::Concat { axis: 1 }, vec![x(&[2, 3, 4]), x(&[2, 2, 4])]),
        case(
            Op::Concat { axis: 2 },
            vec![seq(&bt, &[2]), seq(&bt, &[3]), seq(&bt, &[1])],
        ),
        case(Op::Cast { to: DType::F32 }, vec![seq(&bt, &[4])]),
        case(
            Op::CrossEntropy,
            vec![seq(&[("T", 4)], &[7]), ids(&[("T", 4)], 7)],
        ),
        case(Op::CrossEntropy, vec![seq(&bt, &[5]), ids(&bt, 5)]),
    ]
}

#[test]
fn every_gradient_matches_finite_differences() {
    let cases = cases();
    for c in &cases {
        check(c);
    }
}

/// Every differentiable op in `Op::NAMES` has at least one case above, so a new op cannot
/// skip its gradient check: it is either covered or listed here as non-differentiable (and
/// the op itself must agree).
#[test]
fn every_differentiable_op_is_covered() {
    let covered: Vec<String> = cases().iter().map(|c| c.op.name().into_owned()).collect();
    for c in cases() {
        assert!(
            c.op.is_differentiable(),
            "{} has a case but no gradient",
            c.op.name()
        );
    }
    let not_differentiable = [
        Op::HadamardTwiddles {
            groups: 1,
            stacks: 1,
            blocks: 1,
            n: 2,
        },
        Op::Quantize,
        Op::Dequantize,
        Op::QMatmul,
        Op::Fill {
            value: 0.0,
            dtype: DType::F32,
            dims: vec![],
        },
        Op::Sgd { lr: 0.1 },
        Op::AdamW {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
        },
    ];
    for name in Op::NAMES {
        if covered.iter().any(|c| c == name) {
            continue;
        }
        let Some(op) = not_differentiable.iter().find(|op| op.name() == *name) else {
            panic!("op `{name}` has no gradient case: add one to `cases()`");
        };
        assert!(
            !op.is_differentiable(),
            "op `{name}` is differentiable: it needs a gradient case, not an exemption"
        );
    }
}

// ---- known answers: optimizer updates, fill, cast gradients ----

fn graph_with_bounds() -> Graph {
    let mut g = Graph::new("kat");
    for (s, b) in BOUNDS {
        g.set_bound(s, b);
    }
    g
}

fn assert_close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= 1e-12, "{what}[{i}]: got {a}, want {b}");
    }
}

#[test]
fn sgd_two_steps() {
    let mut g = graph_with_bounds();
    let ty = Type::fixed(DType::F32, &[2]);
    let pv = g.add_input("p", ty.clone());
    let gv = g.add_input("g", ty);
    let out = g.add1(Op::Sgd { lr: 0.1 }, &[pv, gv], None).unwrap();
    g.set_outputs(vec![Output::value("p2", out)]);
    bfly_ir::verify(&g).unwrap();
    let step = |p: Vec<f64>, grad: Vec<f64>| {
        let r = evaluate(
            &g,
            &[Tensor::f32(vec![2], p), Tensor::f32(vec![2], grad)],
            &Weights::new(),
        );
        f(&r.unwrap()[0]).to_vec()
    };
    // p − 0.1·g: [1, −2] − 0.1·[0.5, 0.25] = [0.95, −2.025].
    let p1 = step(vec![1.0, -2.0], vec![0.5, 0.25]);
    assert_close(&p1, &[0.95, -2.025], "sgd step 1");
    // [0.95, −2.025] − 0.1·[−1, 2] = [1.05, −2.225].
    let p2 = step(p1, vec![-1.0, 2.0]);
    assert_close(&p2, &[1.05, -2.225], "sgd step 2");
}

fn adamw_graph() -> Graph {
    let mut g = graph_with_bounds();
    let ty = Type::fixed(DType::F32, &[2]);
    let mut operands: Vec<Value> = ["p", "g", "m", "v"]
        .iter()
        .map(|n| g.add_input(n, ty.clone()))
        .collect();
    operands.push(g.add_input("step", Type::scalar(DType::F32)));
    let op = Op::AdamW {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    let r = g.add_op(op, &operands, None).unwrap();
    g.set_outputs(vec![
        Output::value("p2", r[0]),
        Output::value("m2", r[1]),
        Output::value("v2", r[2]),
    ]);
    bfly_ir::verify(&g).unwrap();
    g
}

#[test]
fn adamw_two_steps_with_bias_correction_and_weight_decay() {
    let g = adamw_graph();
    let t = |v: &[f64]| Tensor::f32(vec![v.len()], v.to_vec());
    let step = |p: &[f64], grad: &[f64], m: &[f64], v: &[f64], s: f64| {
        let r = evaluate(
            &g,
            &[t(p), t(grad), t(m), t(v), Tensor::f32(vec![], vec![s])],
            &Weights::new(),
        )
        .unwrap();
        (f(&r[0]).to_vec(), f(&r[1]).to_vec(), f(&r[2]).to_vec())
    };
    // lr 0.1, β1 0.9, β2 0.99, eps 1e-8, wd 0.1; p = [1, −2], m = v = 0.
    // Step 1, g = [0.5, −1]:
    //   m = 0.1·g = [0.05, −0.1]; v = 0.01·g² = [0.0025, 0.01]
    //   m̂ = m/(1 − 0.9) = [0.5, −1]; v̂ = v/(1 − 0.99) = [0.25, 1]; √v̂ = [0.5, 1]
    //   p = 1 − 0.1·(0.5/(0.5 + 1e-8) + 0.1·1) = 1 − 0.1·(0.99999998 + 0.1) = 0.890000002
    //   p = −2 − 0.1·(−1/(1 + 1e-8) + 0.1·(−2)) = −2 + 0.1·(0.99999999 + 0.2) = −1.880000001
    let (p1, m1, v1) = step(&[1.0, -2.0], &[0.5, -1.0], &[0.0, 0.0], &[0.0, 0.0], 1.0);
    assert_close(&m1, &[0.05, -0.1], "m after step 1");
    assert_close(&v1, &[0.0025, 0.01], "v after step 1");
    assert_close(&p1, &[0.890000002, -1.880000001], "p after step 1");
    // Step 2, g = [−0.25, 3]:
    //   m = 0.9·m + 0.1·g = [0.045 − 0.025, −0.09 + 0.3] = [0.02, 0.21]
    //   v = 0.99·v + 0.01·g² = [0.002475 + 0.000625, 0.0099 + 0.09] = [0.0031, 0.0999]
    //   bias corrections 1 − 0.9² = 0.19 and 1 − 0.99² = 0.0199:
    //   m̂ = [0.02/0.19, 0.21/0.19] = [0.10526315789474, 1.10526315789474]
    //   v̂ = [0.0031/0.0199, 0.0999/0.0199] = [0.15577889447236, 5.02010050251256]
    //   √v̂ = [0.39468835107254, 2.24055807836185]
    //   m̂/(√v̂ + eps) = [0.26669942232066, 0.49329814907983]
    //   p = 0.890000002 − 0.1·(0.26669942232066 + 0.1·0.890000002) = 0.85443005974793
    //   p = −1.880000001 − 0.1·(0.49329814907983 − 0.1·1.880000001) = −1.91052981589798
    let (p2, m2, v2) = step(&p1, &[-0.25, 3.0], &m1, &v1, 2.0);
    assert_close(&m2, &[0.02, 0.21], "m after step 2");
    assert_close(&v2, &[0.0031, 0.0999], "v after step 2");
    assert_close(
        &p2,
        &[0.85443005974793, -1.91052981589798],
        "p after step 2",
    );
}

#[test]
fn adamw_rejects_a_zero_step_instead_of_dividing_by_zero() {
    let g = adamw_graph();
    let z = || Tensor::f32(vec![2], vec![0.0, 0.0]);
    let err = evaluate(
        &g,
        &[z(), z(), z(), z(), Tensor::f32(vec![], vec![0.0])],
        &Weights::new(),
    )
    .unwrap_err();
    assert!(err.message.contains("step must be ≥ 1"), "{err}");
}

#[test]
fn fill_binds_symbolic_dims_from_the_inputs() {
    let mut g = graph_with_bounds();
    // Only binds T: fill reads no operand.
    g.add_input("tokens", Type::new(DType::I32, [Dim::sym("T")]));
    let ones = g
        .add1(
            Op::Fill {
                value: 1.5,
                dtype: DType::F32,
                dims: vec![Dim::sym("T"), Dim::Const(3)],
            },
            &[],
            None,
        )
        .unwrap();
    let tenth = g
        .add1(
            Op::Fill {
                value: 0.1,
                dtype: DType::F16,
                dims: vec![Dim::Const(2)],
            },
            &[],
            None,
        )
        .unwrap();
    let seven = g
        .add1(
            Op::Fill {
                value: 7.0,
                dtype: DType::I32,
                dims: vec![Dim::sym("T")],
            },
            &[],
            None,
        )
        .unwrap();
    g.set_outputs(vec![
        Output::value("a", ones),
        Output::value("b", tenth),
        Output::value("c", seven),
    ]);
    bfly_ir::verify(&g).unwrap();
    let r = evaluate(&g, &[Tensor::tokens(&[1, 2, 3, 4])], &Weights::new()).unwrap();
    assert_eq!(r[0], Tensor::f32(vec![4, 3], vec![1.5; 12]));
    // 0.1 is stored as its nearest f16, 0.0999755859375.
    assert_eq!(
        r[1],
        Tensor::float(DType::F16, vec![2], vec![0.0999755859375; 2])
    );
    assert_eq!(r[2], Tensor::int(DType::I32, vec![4], vec![7; 4]));
}

#[test]
fn fill_with_an_unbound_symbol_is_an_error() {
    let mut g = graph_with_bounds();
    let v = g
        .add1(
            Op::Fill {
                value: 1.0,
                dtype: DType::F32,
                dims: vec![Dim::sym("B")],
            },
            &[],
            None,
        )
        .unwrap();
    g.set_outputs(vec![Output::value("a", v)]);
    let err = evaluate(&g, &[], &Weights::new()).unwrap_err();
    assert!(err.message.contains("symbol"), "{err}");
}

/// `cast.grad` for one operand type and cast target, with upstream `dy`.
fn cast_grad(from: DType, to: DType, x: Tensor, dy: Tensor) -> Vec<Tensor> {
    let mut g = graph_with_bounds();
    let xv = g.add_input("x", Type::fixed(from, &[2]));
    let dv = g.add_input("dy", Type::fixed(to, &[2]));
    let r = g
        .add_op(Op::Grad(Box::new(Op::Cast { to })), &[xv, dv], None)
        .unwrap();
    g.set_outputs(
        r.iter()
            .enumerate()
            .map(|(i, &v)| Output::value(format!("r{i}"), v))
            .collect(),
    );
    bfly_ir::verify(&g).unwrap();
    evaluate(&g, &[x, dy], &Weights::new()).unwrap()
}

#[test]
fn cast_gradients_return_to_the_operand_dtype() {
    let f16 = |v: Vec<f64>| Tensor::float(DType::F16, vec![2], v);
    // f16 → f32: the f32 gradient is rounded to the operand's f16.
    let r = cast_grad(
        DType::F16,
        DType::F32,
        f16(vec![0.5, 1.0]),
        Tensor::f32(vec![2], vec![0.1, -3.0]),
    );
    assert_eq!(r, vec![f16(vec![0.0999755859375, -3.0])]);
    // f32 → f16: the rounding counts as the identity (straight through).
    let r = cast_grad(
        DType::F32,
        DType::F16,
        Tensor::f32(vec![2], vec![0.3, 0.7]),
        f16(vec![0.25, -2.0]),
    );
    assert_eq!(r, vec![Tensor::f32(vec![2], vec![0.25, -2.0])]);
    // f32 → i32 is piecewise constant: the gradient is exactly zero.
    let r = cast_grad(
        DType::F32,
        DType::I32,
        Tensor::f32(vec![2], vec![0.3, 0.7]),
        Tensor::int(DType::I32, vec![2], vec![5, -1]),
    );
    assert_eq!(r, vec![Tensor::f32(vec![2], vec![0.0, 0.0])]);
    // i32 → f32: an integer operand has no gradient at all.
    let r = cast_grad(
        DType::I32,
        DType::F32,
        Tensor::int(DType::I32, vec![2], vec![1, 2]),
        Tensor::f32(vec![2], vec![1.0, 1.0]),
    );
    assert!(r.is_empty());
}

// ---- errors on bad data, never panics ----

/// `OP.grad` of a two-operand forward whose first operand is ids, on the given ids.
fn ids_grad(
    op: Op,
    ids_shape: &[usize],
    ids_val: Vec<i64>,
    table: Tensor,
    dy: Tensor,
) -> EvalError {
    let mut g = graph_with_bounds();
    let iv = g.add_input("ids", Type::fixed(DType::I32, &[ids_shape[0] as u64]));
    let tv = g.add_input(
        "t",
        Type::fixed(
            DType::F32,
            &table.shape.iter().map(|&d| d as u64).collect::<Vec<_>>(),
        ),
    );
    let dv = g.add_input(
        "dy",
        Type::fixed(
            DType::F32,
            &dy.shape.iter().map(|&d| d as u64).collect::<Vec<_>>(),
        ),
    );
    let operands = match op {
        Op::CrossEntropy => [tv, iv, dv],
        _ => [iv, tv, dv],
    };
    let r = g.add_op(Op::Grad(Box::new(op)), &operands, None).unwrap();
    g.set_outputs(vec![Output::value("r", r[0])]);
    bfly_ir::verify(&g).unwrap();
    let ids = Tensor::int(DType::I32, ids_shape.to_vec(), ids_val);
    evaluate(&g, &[ids, table, dy], &Weights::new()).unwrap_err()
}

#[test]
fn bad_token_ids_and_targets_are_errors() {
    let table = Tensor::f32(vec![3, 2], vec![0.0; 6]);
    let dy = Tensor::f32(vec![2, 2], vec![1.0; 4]);
    let err = ids_grad(Op::Embed, &[2], vec![1, 3], table, dy);
    assert!(err.message.contains("outside the vocabulary"), "{err}");
    let logits = Tensor::f32(vec![2, 3], vec![0.0; 6]);
    let err = ids_grad(
        Op::CrossEntropy,
        &[2],
        vec![-1, 0],
        logits,
        Tensor::f32(vec![], vec![1.0]),
    );
    assert!(err.message.contains("outside the vocabulary"), "{err}");
}

#[test]
fn a_grad_node_with_too_few_operands_is_an_error() {
    // Built with declared types, as the text parser does, and never verified: the interpreter
    // must refuse it rather than index past the operands.
    let mut g = graph_with_bounds();
    let xv = g.add_input("x", Type::fixed(DType::F32, &[2]));
    let ty = Type::fixed(DType::F32, &[2]);
    let r = g.add_op_typed(
        Op::Grad(Box::new(Op::Mul)),
        &[xv],
        vec![ty.clone(), ty],
        None,
    );
    g.set_outputs(vec![Output::value("r", r[0])]);
    let err = evaluate(&g, &[Tensor::f32(vec![2], vec![1.0, 2.0])], &Weights::new()).unwrap_err();
    assert!(err.message.contains("operands"), "{err}");
}
