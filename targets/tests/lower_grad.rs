//! Kernel IR lowerings of every `OP.grad` op and the optimizers, run by the Kernel IR
//! interpreter against the f64 reference interpreter.
//!
//! Each case is a single-node graph whose operands are all graph inputs (forward operands,
//! then upstream gradients) and whose outputs are the node's results. The reference
//! evaluates the graph; `lower_grad` lowers the node, a small assembler here binds its
//! kernels to input, output and scratch buffers, and `interp::run_program` runs it — with the
//! interpreter's checks on: every index against its buffer, reads of unwritten scratch
//! (scratch is NaN-filled), and the `Parallel` contract (no two iterations of a parallel
//! section touch an element one of them writes).
//!
//! Tolerance: per result, `max |kernel − reference| ≤ 1e-4 · max(|reference|∞, 0.1)`. The
//! kernels compute in f32 (unit roundoff 6e-8) what the reference computes in f64; the
//! longest reductions here sum a few hundred products and the deepest chain is a butterfly's
//! 2·log2(n) stages, so the f32 error is around 1e-6 of the magnitudes involved. Inputs and
//! upstream gradients are uniform in [−1, 1), so those magnitudes are O(1): a result much
//! smaller than 0.1 comes from cancellation, and its (absolute) rounding error is judged
//! against 0.1 rather than against the small result. A wrong index, a missing term or a
//! wrong sign is an O(0.1–1) error either way.

use bfly_ir::init::SplitMix64;
use bfly_ir::kernel::{Buffer, BufferId, BufferKind, Kernel, KernelProgram, Phase, verify_body};
use bfly_ir::{DType, Dim, Graph, Op, Output, StrideOrder, Type, Value};
use bfly_targets::exec::Syms;
use bfly_targets::interp::run_program;
use bfly_targets::lower::grad::lower_grad;
use bfly_targets::lower::{ArgRef, LowerMode, OpLowering, OpSite};
use bfly_targets::reference::{Tensor, Weights, evaluate};
use proptest::prelude::*;

const TOL: f64 = 1e-4;
/// Symbol bounds of every case program (the buffers are sized at them).
const BOUNDS: [(&str, u64); 2] = [("B", 4), ("T", 8)];

// ---- operands -------------------------------------------------------------------------

/// One graph input: declared dims (maybe symbolic), integer ids or floats.
#[derive(Clone, Debug)]
struct Arg {
    dims: Vec<Dim>,
    ids: Option<usize>,
    dtype: DType,
}

fn cdims(shape: &[u64]) -> Vec<Dim> {
    shape.iter().map(|&d| Dim::Const(d)).collect()
}

/// `f32` of constant shape.
fn x(shape: &[u64]) -> Arg {
    Arg {
        dims: cdims(shape),
        ids: None,
        dtype: DType::F32,
    }
}

/// `f32[syms.., rest..]`, e.g. `seq(&["B", "T"], &[8])`.
fn seq(syms: &[&str], rest: &[u64]) -> Arg {
    let mut dims: Vec<Dim> = syms.iter().map(|s| Dim::sym(s)).collect();
    dims.extend(cdims(rest));
    Arg {
        dims,
        ids: None,
        dtype: DType::F32,
    }
}

/// `i32` ids in `0..vocab` with dims `syms`.
fn ids(syms: &[&str], vocab: usize) -> Arg {
    Arg {
        ids: Some(vocab),
        dtype: DType::I32,
        ..seq(syms, &[])
    }
}

impl Arg {
    fn ty(&self) -> Type {
        Type::new(self.dtype, self.dims.iter().cloned())
    }
}

fn shape_at(dims: &[Dim], syms: Syms) -> Vec<usize> {
    dims.iter()
        .map(|d| match d {
            Dim::Const(c) => *c as usize,
            Dim::Sym(s) if s == "B" => syms.b,
            Dim::Sym(_) => syms.t,
        })
        .collect()
}

fn sample(
    dtype: DType,
    dims: &[Dim],
    ids: Option<usize>,
    syms: Syms,
    rng: &mut SplitMix64,
) -> Tensor {
    let shape = shape_at(dims, syms);
    let n: usize = shape.iter().product();
    let ids = ids.or((!dtype.is_float()).then_some(100));
    match ids {
        Some(vocab) => Tensor::int(
            dtype,
            shape,
            (0..n)
                .map(|_| (rng.next_u64() % vocab as u64) as i64)
                .collect(),
        ),
        // f16 values are drawn on the f16 grid, as the kernel's buffers hold them.
        None => Tensor::float(
            dtype,
            shape,
            (0..n)
                .map(|_| {
                    let v = 2.0 * rng.next_f64() - 1.0;
                    match dtype {
                        DType::F16 => half::f16::from_f64(v).to_f64(),
                        _ => v,
                    }
                })
                .collect(),
        ),
    }
}

// ---- one case -------------------------------------------------------------------------

/// A graph of inputs `args` and node `op` (all results are outputs).
fn graph(op: &Op, args: &[Type]) -> (Graph, Vec<Value>) {
    let mut g = Graph::new("case");
    for (s, b) in BOUNDS {
        g.set_bound(s, b);
    }
    let operands: Vec<Value> = args
        .iter()
        .enumerate()
        .map(|(i, t)| g.add_input(&format!("a{i}"), t.clone()))
        .collect();
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
    bfly_ir::verify(&g).unwrap_or_else(|e| panic!("{}: {e:?}", op.name()));
    (g, results)
}

/// Binds an op's lowering to buffers: operand `i` → input `i`, result `i` → output `i`,
/// scratch → temps. With `alias`, result `i` binds instead to the buffer of operand
/// `alias[i]`, a param buffer `p{operand}` (as the driver binds optimizer updates in place);
/// the other operands stay inputs, numbered in order.
fn assemble(site: &OpSite, low: &OpLowering, alias: Option<&[usize]>) -> KernelProgram {
    let mut p = KernelProgram {
        name: "case".into(),
        bounds: BOUNDS.iter().map(|&(s, v)| (s.to_string(), v)).collect(),
        buffers: vec![],
        bodies: vec![],
        kernels: vec![],
    };
    let add = |p: &mut KernelProgram, name: String, ty: &Type, kind: BufferKind| {
        let id = BufferId(p.buffers.len() as u32);
        p.buffers.push(Buffer {
            id,
            name,
            dtype: ty.dtype,
            dims: ty.dims.clone(),
            kind,
        });
        id
    };
    let aliased = |i: usize| alias.is_some_and(|a| a.contains(&i));
    let mut operands = Vec::new();
    let mut next_input = 0;
    for (i, t) in site.operands.iter().enumerate() {
        let kind = if aliased(i) {
            BufferKind::Param {
                name: format!("p{i}"),
            }
        } else {
            next_input += 1;
            BufferKind::Input {
                index: next_input - 1,
            }
        };
        operands.push(add(&mut p, format!("a{i}"), t, kind));
    }
    let results: Vec<BufferId> = match alias {
        Some(a) => a.iter().map(|&i| operands[i]).collect(),
        None => site
            .results
            .iter()
            .enumerate()
            .map(|(i, t)| add(&mut p, format!("r{i}"), t, BufferKind::Output { index: i }))
            .collect(),
    };
    let scratch: Vec<BufferId> = low
        .scratch
        .iter()
        .enumerate()
        .map(|(i, (dtype, dims))| {
            let ty = Type::new(*dtype, dims.iter().cloned());
            add(&mut p, format!("s{i}"), &ty, BufferKind::Temp)
        })
        .collect();
    for (ki, k) in low.kernels.iter().enumerate() {
        if let Err(e) = verify_body(&k.body) {
            panic!(
                "{}: kernel {ki} does not verify: {e}\n{}",
                site.name,
                k.body.print("body")
            );
        }
        let args = k
            .args
            .iter()
            .map(|a| match a {
                ArgRef::Operand(i) => operands[*i],
                ArgRef::Result(i) => results[*i],
                ArgRef::Scratch(i) => scratch[*i],
                ArgRef::State { .. } => panic!("gradient kernels keep no state"),
            })
            .collect();
        let body = p.intern_body(k.body.clone());
        p.kernels.push(Kernel {
            name: format!("k{ki}"),
            kind: k.kind.clone(),
            body,
            args,
            phase: Phase::Step,
            computes: vec![],
        });
    }
    p
}

/// The first values of a tensor, for failure messages.
fn head(t: &Tensor) -> String {
    let v = t.floats().unwrap_or(&[]);
    let shown: Vec<String> = v.iter().take(12).map(|x| format!("{x:.6}")).collect();
    format!(
        "{:?} [{}{}]",
        t.shape,
        shown.join(", "),
        if v.len() > 12 { ", …" } else { "" }
    )
}

/// `max |got − want|` and the scale it is judged against.
fn error(got: &Tensor, want: &Tensor) -> (f64, f64) {
    let (g, w) = (
        got.floats().expect("float result"),
        want.floats().expect("float result"),
    );
    assert_eq!(g.len(), w.len());
    let scale = w.iter().fold(0.1f64, |m, v| m.max(v.abs()));
    let err = g.iter().zip(w).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    (err, scale)
}

/// Lowers and runs `op` on `args` (forward operands, or all operands of an optimizer), with
/// random upstream gradients for `OP.grad`, and compares every result with the reference.
fn check(op: &Op, args: &[Arg], syms: Syms, seed: u64) {
    let mut rng = SplitMix64::new(seed);
    let what = format!(
        "{} {:?} at B = {}, T = {}",
        op.name(),
        args.iter().map(|a| a.ty().to_string()).collect::<Vec<_>>(),
        syms.b,
        syms.t
    );
    let mut types: Vec<Type> = args.iter().map(Arg::ty).collect();
    let mut inputs: Vec<Tensor> = args
        .iter()
        .map(|a| sample(a.dtype, &a.dims, a.ids, syms, &mut rng))
        .collect();
    if let Op::Grad(inner) = op {
        let (fg, outs) = graph(inner, &types);
        for v in outs {
            let t = fg.value_type(v).clone();
            inputs.push(sample(t.dtype, &t.dims, None, syms, &mut rng));
            types.push(t);
        }
    }
    let (g, outs) = graph(op, &types);
    let want = evaluate(&g, &inputs, &Weights::new()).unwrap_or_else(|e| panic!("{what}: {e}"));

    let site = OpSite {
        op,
        operands: types.clone(),
        results: outs.iter().map(|&v| g.value_type(v).clone()).collect(),
        mode: LowerMode::Training,
        name: "%case".into(),
        radix: Vec::new(),
    };
    let low = lower_grad(&site).unwrap_or_else(|e| panic!("{what}: lowering failed: {e}"));
    let program = assemble(&site, &low, None);
    let got = run_program(&program, &Weights::new(), &inputs, syms).unwrap_or_else(|e| {
        panic!("{what}: {e}\n{}", program.print());
    });
    assert_eq!(got.len(), want.len(), "{what}: result count");
    for (i, (gt, wt)) in got.iter().zip(&want).enumerate() {
        assert_eq!(gt.shape, wt.shape, "{what}: shape of result {i}");
        let (err, scale) = error(gt, wt);
        assert!(
            err <= TOL * scale,
            "{what}: result {i} is off by {err:e} (scale {scale:e})\n got  {}\n want {}",
            head(gt),
            head(wt),
        );
    }
}

fn grad(op: Op) -> Op {
    Op::Grad(Box::new(op))
}

fn bfly(n_in: u64, n_out: u64, stride: StrideOrder) -> Op {
    Op::Butterfly {
        n_in,
        n_out,
        stride,
    }
}

// ---- fixed cases: every differentiable op, the shapes of `grad_ops.rs` ------------------

fn fixed_cases() -> Vec<(Op, Vec<Arg>)> {
    use StrideOrder::{Decreasing, Increasing};
    let bt = ["B", "T"];
    vec![
        (Op::Embed, vec![ids(&["T"], 5), x(&[5, 4])]),
        (Op::Embed, vec![ids(&bt, 3), x(&[3, 20])]),
        (Op::Matmul, vec![x(&[4, 5]), x(&[3, 5])]),
        (Op::Matmul, vec![seq(&bt, &[6]), x(&[4, 6]), x(&[4])]),
        (Op::Matmul, vec![seq(&bt, &[6]), x(&[2, 4, 3]), x(&[8])]),
        (
            bfly(5, 12, Increasing),
            vec![seq(&bt, &[10]), x(&[2, 2, 2, 3, 4, 2, 2]), x(&[24])],
        ),
        (
            bfly(6, 3, Decreasing),
            vec![x(&[3, 6]), x(&[1, 1, 3, 3, 4, 2, 2])],
        ),
        (
            bfly(8, 8, Decreasing),
            vec![seq(&bt, &[8]), x(&[1, 1, 1, 3, 4, 2, 2])],
        ),
        // n = 32: strides ≥ 8 take the blocked pair loop.
        (
            bfly(32, 40, Increasing),
            vec![seq(&bt, &[32]), x(&[1, 2, 2, 5, 16, 2, 2])],
        ),
        (
            Op::Monarch { n_in: 5, n_out: 4 },
            vec![seq(&bt, &[10]), x(&[2, 2, 3, 3]), x(&[2, 3, 2, 2]), x(&[8])],
        ),
        (
            Op::Monarch { n_in: 4, n_out: 4 },
            vec![x(&[3, 4]), x(&[1, 2, 2, 2]), x(&[1, 2, 2, 2])],
        ),
        (Op::GivensTwiddles, vec![x(&[2, 1, 2, 3, 4])]),
        (
            Op::DibTwiddles { stride: Increasing },
            vec![x(&[1, 2, 2, 2, 2]), x(&[1, 2, 2, 2, 4])],
        ),
        (
            Op::DibTwiddles { stride: Decreasing },
            vec![x(&[2, 1, 3, 4, 8]), x(&[2, 1, 3, 4, 16])],
        ),
        (
            Op::TernaryTwiddles { alpha: 0.5 },
            vec![x(&[1, 2, 2, 2, 2])],
        ),
        (
            Op::Lora { scale: 0.5 },
            vec![seq(&bt, &[5]), x(&[2, 5]), x(&[4, 2])],
        ),
        (Op::Add, vec![x(&[3, 4]), x(&[3, 4])]),
        (Op::Add, vec![seq(&["T"], &[4]), x(&[4])]),
        (Op::Sub, vec![x(&[1, 4]), x(&[3, 1])]),
        (Op::Sub, vec![x(&[4]), seq(&bt, &[4])]),
        (Op::Mul, vec![x(&[2, 1, 4]), x(&[3, 1])]),
        (Op::Mul, vec![seq(&bt, &[4]), x(&[4])]),
        (Op::Mul, vec![seq(&bt, &[4]), seq(&bt, &[4])]),
        (Op::Neg, vec![seq(&bt, &[4])]),
        (Op::Exp, vec![x(&[3, 4])]),
        (Op::Silu, vec![seq(&bt, &[4])]),
        (Op::Gelu, vec![x(&[3, 4])]),
        (Op::Sigmoid, vec![x(&[3, 4])]),
        (Op::Scale { factor: -1.5 }, vec![seq(&bt, &[4])]),
        (Op::RmsNorm { eps: 1e-5 }, vec![seq(&bt, &[5]), x(&[5])]),
        (Op::RmsNorm { eps: 1e-5 }, vec![seq(&bt, &[40]), x(&[40])]),
        (
            Op::LayerNorm { eps: 1e-5 },
            vec![seq(&bt, &[5]), x(&[5]), x(&[5])],
        ),
        (Op::Softmax, vec![seq(&bt, &[5])]),
        (
            Op::Rope {
                heads: 2,
                base: 10000.0,
            },
            vec![seq(&bt, &[8])],
        ),
        (
            Op::Rope {
                heads: 1,
                base: 100.0,
            },
            vec![x(&[4, 6])],
        ),
        (
            Op::CausalAttention {
                heads: 4,
                kv_heads: 2,
            },
            vec![seq(&bt, &[8]), seq(&bt, &[4]), seq(&bt, &[4])],
        ),
        (
            Op::CausalAttention {
                heads: 2,
                kv_heads: 2,
            },
            vec![x(&[4, 6]), x(&[4, 6]), x(&[4, 6])],
        ),
        (
            Op::Reshape {
                dims: cdims(&[6, 4]),
            },
            vec![x(&[2, 3, 4])],
        ),
        (
            Op::Reshape {
                dims: vec![Dim::sym("T"), Dim::Const(2), Dim::Const(2)],
            },
            vec![seq(&["T"], &[4])],
        ),
        (
            Op::Transpose {
                perm: vec![2, 0, 1],
            },
            vec![x(&[2, 3, 4])],
        ),
        (Op::Transpose { perm: vec![1, 0] }, vec![x(&[3, 5])]),
        (
            Op::Transpose {
                perm: vec![1, 0, 2],
            },
            vec![seq(&bt, &[3])],
        ),
        (
            Op::Split {
                axis: 1,
                sizes: vec![1, 2, 3],
            },
            vec![x(&[2, 6, 3])],
        ),
        (
            Op::Split {
                axis: 2,
                sizes: vec![3, 1],
            },
            vec![seq(&bt, &[4])],
        ),
        (Op::Concat { axis: 1 }, vec![x(&[2, 3, 4]), x(&[2, 2, 4])]),
        (
            Op::Concat { axis: 2 },
            vec![seq(&bt, &[2]), seq(&bt, &[3]), seq(&bt, &[1])],
        ),
        (Op::Cast { to: DType::F32 }, vec![seq(&bt, &[4])]),
        (Op::Cast { to: DType::F16 }, vec![seq(&bt, &[4])]),
        // float → int: zero gradient; int → float: no gradient at all (no result, no kernel).
        (Op::Cast { to: DType::I32 }, vec![seq(&bt, &[4])]),
        (Op::Cast { to: DType::F32 }, vec![ids(&bt, 9)]),
        (Op::CrossEntropy, vec![seq(&["T"], &[7]), ids(&["T"], 7)]),
        (Op::CrossEntropy, vec![seq(&bt, &[5]), ids(&bt, 5)]),
    ]
}

#[test]
fn every_gradient_lowering_matches_the_reference() {
    for (i, (op, args)) in fixed_cases().into_iter().enumerate() {
        for syms in [Syms::batch(2, 3), Syms::batch(1, 1), Syms::batch(4, 8)] {
            check(&grad(op.clone()), &args, syms, i as u64);
        }
    }
}

/// Every differentiable op has a fixed case, so a new op cannot skip its lowering test.
#[test]
fn every_differentiable_op_is_covered() {
    let covered: Vec<String> = fixed_cases()
        .iter()
        .map(|(op, _)| op.name().into_owned())
        .collect();
    // The ops without a gradient (`Op::is_differentiable` is false for each).
    let exempt = [
        "hadamard_twiddles",
        "quantize",
        "dequantize",
        "qmatmul",
        "fill",
        "sgd",
        "adamw",
    ];
    for name in Op::NAMES {
        assert!(
            covered.iter().any(|c| c == name) || exempt.contains(name),
            "no lowering case for `{name}.grad`"
        );
    }
}

// ---- optimizers -----------------------------------------------------------------------

fn optimizer_args(op: &Op, dims: &[u64]) -> Vec<Arg> {
    match op {
        Op::Sgd { .. } => vec![x(dims), x(dims)],
        // p, g, m, v, step (v is made non-negative and step set by the caller).
        _ => vec![x(dims), x(dims), x(dims), x(dims), x(&[])],
    }
}

/// Runs an optimizer both into separate outputs and in place (results bound to the
/// operands' param buffers), against the reference.
fn check_optimizer(op: &Op, dims: &[u64], step: f64, seed: u64) {
    let args = optimizer_args(op, dims);
    let types: Vec<Type> = args.iter().map(Arg::ty).collect();
    let mut rng = SplitMix64::new(seed);
    let syms = Syms::batch(1, 1);
    let mut inputs: Vec<Tensor> = args
        .iter()
        .map(|a| sample(a.dtype, &a.dims, None, syms, &mut rng))
        .collect();
    if let Op::AdamW { .. } = op {
        let v = inputs[3]
            .floats()
            .unwrap()
            .iter()
            .map(|v| v.abs())
            .collect();
        inputs[3] = Tensor::f32(inputs[3].shape.clone(), v);
        inputs[4] = Tensor::f32(vec![], vec![step]);
    }
    let (g, outs) = graph(op, &types);
    let want = evaluate(&g, &inputs, &Weights::new()).unwrap();
    let site = OpSite {
        op,
        operands: types.clone(),
        results: outs.iter().map(|&v| g.value_type(v).clone()).collect(),
        mode: LowerMode::Training,
        name: "%opt".into(),
        radix: Vec::new(),
    };
    let low = lower_grad(&site).unwrap();
    let compare = |got: &[Tensor], how: &str| {
        for (i, (gt, wt)) in got.iter().zip(&want).enumerate() {
            let (err, scale) = error(gt, wt);
            assert!(
                err <= TOL * scale,
                "{} {how} result {i}: off by {err:e} (scale {scale:e})",
                op.name()
            );
        }
    };
    let program = assemble(&site, &low, None);
    let got = run_program(&program, &Weights::new(), &inputs, syms).unwrap();
    compare(&got, "into outputs");

    // The driver's in-place binding: p' → p, and for adamw m' → m, v' → v.
    let alias: &[usize] = if site.results.len() == 1 {
        &[0]
    } else {
        &[0, 2, 3]
    };
    let program = assemble(&site, &low, Some(alias));
    let mut weights = Weights::new();
    let mut rest = Vec::new();
    for (i, t) in inputs.iter().enumerate() {
        if alias.contains(&i) {
            weights.insert(format!("p{i}"), t.clone());
        } else {
            rest.push(t.clone());
        }
    }
    let mut interp = bfly_targets::interp::Interp::new(&program, &weights).unwrap();
    interp.step(&rest, syms).unwrap();
    let got: Vec<Tensor> = alias
        .iter()
        .zip(&want)
        .map(|(&i, w)| {
            let v = interp.param(&format!("p{i}")).unwrap();
            Tensor::f32(w.shape.clone(), v.iter().map(|&x| f64::from(x)).collect())
        })
        .collect();
    compare(&got, "in place");
}

#[test]
fn optimizers_match_the_reference_into_outputs_and_in_place() {
    let adamw = |wd: f64, beta2: f64| Op::AdamW {
        lr: 1e-2,
        beta1: 0.9,
        beta2,
        eps: 1e-8,
        weight_decay: wd,
    };
    check_optimizer(&Op::Sgd { lr: 0.1 }, &[3, 300], 1.0, 1);
    for (i, step) in [1.0, 2.0, 7.0, 1000.0].into_iter().enumerate() {
        check_optimizer(&adamw(0.01, 0.999), &[300], step, 10 + i as u64);
        check_optimizer(&adamw(0.0, 0.95), &[2, 3, 4], step, 20 + i as u64);
    }
}

// ---- random shapes --------------------------------------------------------------------

/// Draws small geometry from a seed.
struct Draw(SplitMix64);

impl Draw {
    fn int(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.0.next_u64() % (hi - lo + 1)
    }

    fn coin(&mut self) -> bool {
        self.0.next_u64().is_multiple_of(2)
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.0.next_u64() as usize % items.len()].clone()
    }

    /// Rows as `[B, T]`, `[T]` or a constant, followed by `rest`.
    fn rows(&mut self, rest: &[u64]) -> Arg {
        match self.int(0, 2) {
            0 => seq(&["B", "T"], rest),
            1 => seq(&["T"], rest),
            _ => {
                let mut d = vec![self.int(1, 5)];
                d.extend_from_slice(rest);
                x(&d)
            }
        }
    }
}

/// A random `OP.grad` case of the op family `family`.
fn random_case(family: u64, d: &mut Draw) -> (Op, Vec<Arg>) {
    let stride = d.pick(&[StrideOrder::Increasing, StrideOrder::Decreasing]);
    match family {
        0 => {
            let (v, dim) = (d.int(1, 6), d.int(1, 20));
            let tok = if d.coin() {
                ids(&["B", "T"], v as usize)
            } else {
                ids(&["T"], v as usize)
            };
            (Op::Embed, vec![tok, x(&[v, dim])])
        }
        1 => {
            let (g, n, k) = (d.int(1, 3), d.int(1, 5), d.int(1, 5));
            let w = if g == 1 && d.coin() {
                x(&[n, k])
            } else {
                x(&[g, n, k])
            };
            let mut args = vec![d.rows(&[g * k]), w];
            if d.coin() {
                args.push(x(&[g * n]));
            }
            (Op::Matmul, args)
        }
        2 => {
            // n_in = 1 is left out: the IR pads it to n = 2 (`butterfly_width`), the
            // reference's `butterfly_dims` to n = 1, so the reference cannot evaluate it.
            let n_in = d.int(2, 17);
            let n = n_in.max(2).next_power_of_two();
            let n_out = d.int(1, 2 * n + 1);
            let (g, blocks) = (d.int(1, 2), d.int(1, 3));
            let stacks = n_out.div_ceil(n);
            let l = u64::from(n.trailing_zeros());
            let mut args = vec![d.rows(&[g * n_in]), x(&[g, stacks, blocks, l, n / 2, 2, 2])];
            if d.coin() {
                args.push(x(&[g * n_out]));
            }
            (bfly(n_in, n_out, stride), args)
        }
        3 => {
            let (k, q, p) = (d.int(1, 3), d.int(1, 3), d.int(1, 3));
            let divisors: Vec<u64> = (1..=k * q).filter(|l| (k * q) % l == 0).collect();
            let l = d.pick(&divisors);
            let (r, s) = ((k * q) / l, d.int(1, 3));
            let (n_in, n_out, g) = (d.int(1, k * p), d.int(1, l * s), d.int(1, 2));
            let mut args = vec![d.rows(&[g * n_in]), x(&[g, k, q, p]), x(&[g, l, s, r])];
            if d.coin() {
                args.push(x(&[g * n_out]));
            }
            (Op::Monarch { n_in, n_out }, args)
        }
        4 => {
            let l = d.int(1, 4);
            let half = 1u64 << (l - 1);
            let lead = [d.int(1, 2), d.int(1, 2), d.int(1, 3), l];
            let theta = x(&[lead[0], lead[1], lead[2], l, half]);
            match d.int(0, 2) {
                0 => (Op::GivensTwiddles, vec![theta]),
                1 => (Op::TernaryTwiddles { alpha: 0.25 }, vec![theta]),
                _ => (
                    Op::DibTwiddles { stride },
                    vec![theta, x(&[lead[0], lead[1], lead[2], l, 2 * half])],
                ),
            }
        }
        5 => {
            let (k, r, n) = (d.int(1, 6), d.int(1, 3), d.int(1, 5));
            (
                Op::Lora { scale: 0.75 },
                vec![d.rows(&[k]), x(&[r, k]), x(&[n, r])],
            )
        }
        6 => {
            // Broadcasting: an output shape, each operand keeping or collapsing each axis.
            let op = d.pick(&[Op::Add, Op::Sub, Op::Mul]);
            let mut out: Vec<Dim> = Vec::new();
            if d.coin() {
                out.push(Dim::sym("B"));
            }
            if d.coin() {
                out.push(Dim::sym("T"));
            }
            for _ in 0..d.int(1, 2) {
                out.push(Dim::Const(d.int(1, 4)));
            }
            let operand = |d: &mut Draw| {
                let drop = d.int(0, out.len() as u64 - 1) as usize;
                let dims: Vec<Dim> = out[drop..]
                    .iter()
                    .map(|dim| if d.coin() { dim.clone() } else { Dim::Const(1) })
                    .collect();
                Arg {
                    dims,
                    ids: None,
                    dtype: DType::F32,
                }
            };
            let (mut a, b) = (operand(d), operand(d));
            // Keep the output shape reachable: one operand has every axis.
            if d.coin() {
                a.dims = out.clone();
            }
            (op, vec![a, b])
        }
        7 => {
            let op = d.pick(&[
                Op::Neg,
                Op::Exp,
                Op::Silu,
                Op::Gelu,
                Op::Sigmoid,
                Op::Scale { factor: 0.3 },
            ]);
            let w = d.int(1, 300);
            (op, vec![d.rows(&[w])])
        }
        8 => {
            // Widths from 4: at d ≤ 2 a normalized row is ±1 whatever x, so dx is zero up to
            // eps and the f32 result is pure cancellation — no test of the lowering.
            let w = d.int(4, 40);
            match d.int(0, 2) {
                0 => (Op::RmsNorm { eps: 1e-5 }, vec![d.rows(&[w]), x(&[w])]),
                1 => (
                    Op::LayerNorm { eps: 1e-5 },
                    vec![d.rows(&[w]), x(&[w]), x(&[w])],
                ),
                _ => (Op::Softmax, vec![d.rows(&[w])]),
            }
        }
        9 => {
            let (heads, hd) = (d.int(1, 3), 2 * d.int(1, 3));
            let x = if d.coin() {
                seq(&["B", "T"], &[heads * hd])
            } else {
                seq(&["T"], &[heads * hd])
            };
            (
                Op::Rope {
                    heads,
                    base: 10000.0,
                },
                vec![x],
            )
        }
        10 => {
            let kv = d.int(1, 2);
            let (heads, hd) = (kv * d.int(1, 2), d.int(1, 4));
            let sy: &[&str] = if d.coin() { &["B", "T"] } else { &["T"] };
            (
                Op::CausalAttention {
                    heads,
                    kv_heads: kv,
                },
                vec![
                    seq(sy, &[heads * hd]),
                    seq(sy, &[kv * hd]),
                    seq(sy, &[kv * hd]),
                ],
            )
        }
        11 => {
            let (a, b, c) = (d.int(1, 3), d.int(1, 3), d.int(1, 4));
            match d.int(0, 3) {
                0 => (
                    Op::Transpose {
                        perm: d.pick(&[vec![0, 2, 1], vec![2, 1, 0], vec![1, 2, 0]]),
                    },
                    vec![x(&[a, b, c])],
                ),
                1 => {
                    let sizes = vec![a, b, c];
                    (
                        Op::Split { axis: 2, sizes },
                        vec![seq(&["B", "T"], &[a + b + c])],
                    )
                }
                2 => (
                    Op::Concat { axis: 1 },
                    vec![seq(&["T"], &[a]), seq(&["T"], &[b])],
                ),
                _ => (
                    Op::Reshape {
                        dims: vec![Dim::sym("B"), Dim::sym("T"), Dim::Const(a), Dim::Const(b)],
                    },
                    vec![seq(&["B", "T"], &[a * b])],
                ),
            }
        }
        _ => {
            let v = d.int(1, 30);
            let sy: &[&str] = if d.coin() { &["B", "T"] } else { &["T"] };
            (Op::CrossEntropy, vec![seq(sy, &[v]), ids(sy, v as usize)])
        }
    }
}

const FAMILIES: u64 = 13;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn random_gradient_cases_match_the_reference(seed in any::<u64>(), b in 1usize..=4, t in 1usize..=8) {
        for family in 0..FAMILIES {
            let mut d = Draw(SplitMix64::new(seed ^ family.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
            let (op, args) = random_case(family, &mut d);
            check(&grad(op), &args, Syms::batch(b, t), seed);
        }
    }
}

// ---- errors, not panics ---------------------------------------------------------------

#[test]
fn malformed_sites_are_errors() {
    let f = |d: &[u64]| Type::fixed(DType::F32, d);
    let lower = |op: Op, operands: Vec<Type>, results: Vec<Type>| {
        let site = OpSite {
            op: &op,
            operands,
            results,
            mode: LowerMode::Training,
            name: "%bad".into(),
            radix: Vec::new(),
        };
        lower_grad(&site).map(|_| ()).unwrap_err().message
    };
    let e = lower(Op::Add, vec![f(&[2]), f(&[2])], vec![f(&[2])]);
    assert!(e.contains("not a gradient"), "{e}");
    let e = lower(
        grad(Op::Quantize),
        vec![f(&[2, 2]), f(&[2, 2])],
        vec![f(&[2, 2])],
    );
    assert!(e.contains("no gradient"), "{e}");
    let e = lower(grad(Op::Neg), vec![f(&[2])], vec![f(&[2])]);
    assert!(e.contains("forward operands"), "{e}");
    let e = lower(grad(Op::Neg), vec![f(&[2]), f(&[2])], vec![]);
    assert!(e.contains("results"), "{e}");
    // Twiddles for n = 8 under a butterfly of width 16.
    let tw = f(&[1, 1, 1, 3, 4, 2, 2]);
    let e = lower(
        grad(bfly(16, 16, StrideOrder::Increasing)),
        vec![f(&[3, 16]), tw.clone(), f(&[3, 16])],
        vec![f(&[3, 16]), tw],
    );
    assert!(e.contains("do not fit"), "{e}");
    let e = lower(Op::Sgd { lr: 0.1 }, vec![f(&[2]), f(&[3])], vec![f(&[2])]);
    assert!(e.contains("shaped like the param"), "{e}");
}
