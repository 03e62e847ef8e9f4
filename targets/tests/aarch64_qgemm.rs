//! The int8 GEMM microkernels (`qgemm.i8.sdot` with dotprod, `qgemm.i8.smull` without) on
//! random shapes: N with 4-, 2- and 1-column tiles, K with and without a 16-byte tail, T in
//! 1..=8 (and B·T rows in training mode), no/bias/residual/other epilogues, 1 and 3 threads.
//!
//! Tolerances: integer accumulation is exact and the epilogue does the body's f32 operations
//! in the body's order, so on aarch64 the output must equal the Kernel IR interpreter's
//! **bit for bit** (tolerance 0; the activation quantizer runs Cranelift's code, which
//! computes the same correctly rounded f32 operations). Against the f64 reference the
//! tolerance is `lower_ops`'s for `qmatmul` (2e-2 of max |y|): one int8 step of an activation
//! that lands on the other side of a rounding tie moves y by scale·w.

mod aarch64_common;
mod lower_common;

use aarch64_common::{expect_micro, features, prepare_fused};
use bfly_ir::Op;
use bfly_ir::init::SplitMix64;
use bfly_targets::aarch64::{Aarch64Plan, CpuFeatures};
use lower_common::*;

/// What follows the `qmatmul` inside its fused region.
#[derive(Clone, Copy, Debug)]
enum Tail {
    None,
    /// `residual + y` (a `[.., N]` activation).
    ResidualAdd,
    /// `y - residual`, then `· 0.5`.
    SubScale,
    /// `y · column_param`, then `neg`.
    MulColNeg,
    /// `y · y`.
    Square,
    /// `y + per_row[.., 1]`, then `· scalar[1]`.
    RowAddScalarMul,
}

const TAILS: [Tail; 6] = [
    Tail::None,
    Tail::ResidualAdd,
    Tail::SubScale,
    Tail::MulColNeg,
    Tail::Square,
    Tail::RowAddScalarMul,
];

struct Shape {
    seed: u64,
    batch: Option<usize>,
    t: usize,
    n: u64,
    k: u64,
    bias: bool,
    tail: Tail,
}

fn build(s: &Shape) -> lower_common::Prepared {
    let mut c = Case::new(s.seed, s.batch, s.t);
    c.int_tol = 1;
    let x = c.act(s.k);
    let w = c.param(&[s.n, s.k]);
    let xq = c.op(Op::Quantize, &[x]);
    let wq = c.op(Op::Quantize, &[w]);
    let mut args = vec![xq[0], xq[1], wq[0], wq[1]];
    if s.bias {
        args.push(c.param(&[s.n]));
    }
    let y = c.op1(Op::QMatmul, &args);
    let mut region = vec![y];
    let out = match s.tail {
        Tail::None => y,
        Tail::ResidualAdd => {
            let res = c.act(s.n);
            let z = c.op1(Op::Add, &[res, y]);
            region.push(z);
            z
        }
        Tail::SubScale => {
            let res = c.act(s.n);
            let d = c.op1(Op::Sub, &[y, res]);
            let z = c.op1(Op::Scale { factor: 0.5 }, &[d]);
            region.extend([d, z]);
            z
        }
        Tail::MulColNeg => {
            let g = c.param(&[s.n]);
            let m = c.op1(Op::Mul, &[y, g]);
            let z = c.op1(Op::Neg, &[m]);
            region.extend([m, z]);
            z
        }
        Tail::Square => {
            let z = c.op1(Op::Mul, &[y, y]);
            region.push(z);
            z
        }
        Tail::RowAddScalarMul => {
            let per_row = c.act(1);
            let scalar = c.param(&[1]);
            let a = c.op1(Op::Add, &[y, per_row]);
            let z = c.op1(Op::Mul, &[a, scalar]);
            region.extend([a, z]);
            z
        }
    };
    prepare_fused(c, &region, out)
}

/// Random shapes: N covers 4-, 2- and 1-column tiles and several tiles per thread; K covers
/// exact multiples of 16 and every tail length.
fn shapes(count: usize, seed: u64) -> Vec<Shape> {
    let mut rng = SplitMix64::new(seed);
    let mut pick = |n: u64| rng.next_u64() % n;
    (0..count)
        .map(|i| {
            let n = [1, 2, 3, 4, 6, 8, 12, 13, 20, 36][pick(10) as usize];
            let k = if i % 3 == 0 {
                16 * (1 + pick(6))
            } else {
                16 + pick(120)
            };
            Shape {
                seed: 1000 + i as u64,
                batch: (i % 5 == 4).then(|| 1 + pick(3) as usize),
                t: 1 + pick(8) as usize,
                n,
                k,
                bias: pick(2) == 1,
                tail: TAILS[i % TAILS.len()],
            }
        })
        .collect()
}

fn variant_for(f: CpuFeatures) -> &'static str {
    if f.dotprod {
        "qgemm.i8.sdot"
    } else {
        "qgemm.i8.smull"
    }
}

/// Runs on the aarch64 backend and checks the outputs bit-exactly against the Kernel IR
/// interpreter, and within the qmatmul tolerance against the reference.
#[cfg(target_arch = "aarch64")]
fn run_exact(p: &lower_common::Prepared, f: CpuFeatures, threads: usize) {
    use bfly_targets::interp::run_program;
    let got = aarch64_common::executor(p, f, threads)
        .step(&p.inputs, p.syms)
        .unwrap_or_else(|e| panic!("running: {e}"));
    let interp = run_program(&p.program, &p.weights, &p.inputs, p.syms)
        .unwrap_or_else(|e| panic!("interpreting: {e}"));
    for (i, (g, w)) in got.iter().zip(&interp).enumerate() {
        let (g, w) = (floats(g), floats(w));
        let diff = max_abs_diff(g, w);
        assert!(
            diff == 0.0,
            "output {i} differs from the interpreter by {diff:e} ({threads} threads)\n{}",
            p.program.print()
        );
    }
    p.compare(&got, 2e-2);
}

#[cfg(not(target_arch = "aarch64"))]
fn run_exact(_: &lower_common::Prepared, _: CpuFeatures, _: usize) {}

#[test]
fn random_shapes_match_the_interpreter_exactly() {
    let f = features();
    for s in shapes(40, 7) {
        let p = build(&s);
        let plan = expect_micro(&p, f, variant_for(f));
        assert!(
            !plan.fallbacks.iter().any(|fb| fb.family == "qgemm"),
            "n = {}, k = {}: {}",
            s.n,
            s.k,
            plan.fallback_report()
        );
        for threads in [1, 3] {
            run_exact(&p, f, threads);
        }
    }
}

#[test]
fn both_variants_are_emitted_for_both_feature_sets() {
    let dot = CpuFeatures::parse_target("aarch64+dotprod").unwrap();
    for s in shapes(10, 11) {
        let p = build(&s);
        for f in [dot, CpuFeatures::BASELINE] {
            let plan = expect_micro(&p, f, variant_for(f));
            let m = plan
                .micro
                .iter()
                .find(|m| m.family == "qgemm")
                .expect("a qgemm section");
            let hot = m.micro.code.mark("hot_loop").expect("hot loop marked");
            let end = m.micro.code.mark("hot_loop_end").expect("hot loop end");
            assert!(hot < end && m.micro.useful_per_iter > 0);
        }
    }
}

#[test]
fn golden_quantized_models_run_every_qgemm_as_a_microkernel() {
    for stem in ["tiny-quant", "mixed"] {
        let (spec, file) = golden_spec(stem);
        let g = graph_at(&spec, &file, bfly_compiler::Mode::Infer, None);
        let mode = bfly_targets::lower::LowerMode::Inference {
            context: spec.model.context.node,
        };
        let p =
            bfly_targets::lower::lower_graph(&g, mode).unwrap_or_else(|e| panic!("{stem}: {e}"));
        for f in [
            CpuFeatures::parse_target("aarch64+dotprod").unwrap(),
            CpuFeatures::BASELINE,
        ] {
            let plan = Aarch64Plan::emit(&p, f);
            let qgemm: Vec<_> = plan
                .fallbacks
                .iter()
                .filter(|fb| fb.family == "qgemm")
                .collect();
            assert!(qgemm.is_empty(), "{stem} {f}: {qgemm:?}");
            assert!(
                plan.micro
                    .iter()
                    .any(|m| m.micro.name.starts_with(variant_for(f)))
            );
        }
    }
}

#[test]
fn short_k_is_declined_with_a_reason() {
    let s = Shape {
        seed: 3,
        batch: None,
        t: 2,
        n: 8,
        k: 12,
        bias: false,
        tail: Tail::None,
    };
    let p = build(&s);
    let plan = Aarch64Plan::emit(&p.program, features());
    let fb = plan
        .fallbacks
        .iter()
        .find(|fb| fb.family == "qgemm")
        .expect("the qgemm section falls back");
    assert!(
        fb.reason.as_deref().is_some_and(|r| r.contains("K = 12")),
        "{fb:?}"
    );
}
