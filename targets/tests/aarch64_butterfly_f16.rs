//! The aarch64 butterfly forward microkernel with f16 twiddles (DESIGN §5: `quantize {
//! butterfly = fp16 }`): the layer's packed twiddle param is `f16` and every load of it
//! widens exactly. Cases are built with the twiddle param itself `f16` (values drawn
//! uniform in [−1, 1) and rounded to f16), which lowers to the same f16 packed param.
//!
//! - `butterfly.f16w.*` (any CPU; chosen without FEAT_FP16): f16 loads widened by FCVTL,
//!   f32 arithmetic. Its results must be BIT-IDENTICAL to the f32 microkernel run on the
//!   same case with f32 twiddles holding the same (f16-representable) values. (Against
//!   the interpreter / Cranelift they are not bit-identical, and neither is the f32
//!   microkernel: it fuses `a·x + b·y` as FMUL + FMLA where Cranelift rounds the product
//!   separately; both are checked against the f64 reference with the f32 tolerance of
//!   `aarch64_butterfly.rs`.)
//! - `butterfly.f16.tokens8+tokens+pairs` (FEAT_FP16, 8 ≤ n ≤ 2048): 8 rows at a time in
//!   `.8h` lanes, f16 arithmetic; the remaining rows run the f16w code. Checked against
//!   the f64 reference with [`f16_tolerance`].
//!
//! Shapes: random widths n = 2..512, in ≤ n, out up to 3 stacks, 1–3 groups, 1–2 blocks,
//! both stride orders, bias and fused epilogues, T = 1..=20 (so 8-row blocks, 4-row
//! blocks and single rows all occur), 1 and 3 threads (lo..hi splits), inference and
//! training layouts. Every case asserts which variant was selected, for the CPU with and
//! without fp16. Off aarch64 only selection/emission is checked; under QEMU the code runs
//! (`QEMU_CPU=max` runs both variants, `cortex-a53` the f16w one).

mod aarch64_common;
mod lower_common;

use aarch64_common::butterfly::{Epi, Shape, butterfly_case};
use aarch64_common::{expect_micro, features, run_and_compare};
use bfly_ir::init::SplitMix64;
use bfly_ir::{DType, Init, Param, Type, Value};
use bfly_targets::aarch64::{Aarch64Plan, CpuFeatures};
use bfly_targets::reference::Tensor;
use lower_common::*;

/// A twiddle param of `dtype` whose values are f16-representable (uniform in
/// [−1.25, 1.25) rounded to f16), so the f16 and f32 cases of one seed hold the same
/// numbers. The scale keeps the values' magnitude about constant through the stages
/// (E[a²+b²] = 2·1.25²/3 ≈ 1.04), so the outputs are on the scale of the inputs and an
/// error bound relative to the outputs means something.
fn twiddles(c: &mut Case, dims: &[u64], dtype: DType) -> Value {
    let name = format!("p{}", c.weights.len());
    let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
    let data: Vec<f64> = (0..shape.iter().product::<usize>())
        .map(|_| f64::from(half::f16::from_f64(1.25 * c.uniform())))
        .collect();
    c.weights
        .insert(name.clone(), Tensor::float(dtype, shape, data));
    let param = Param {
        name,
        init: Init::External,
        trainable: true,
    };
    c.g.add_param(param, Type::fixed(dtype, dims))
}

/// The case, its twiddles stored as `tw_dtype`; T may be up to 20.
fn prepare(seed: u64, batch: Option<usize>, t: usize, s: Shape, tw_dtype: DType) -> Prepared {
    let mut c = Case::new(seed, batch, t);
    c.g.set_bound("T", 20);
    butterfly_case(c, s, |c, dims| twiddles(c, dims, tw_dtype))
}

/// f32 arithmetic (f32 and f16w kernels), as `aarch64_butterfly.rs`: each stage rounds
/// every value about twice in f32 (2^-24 each) relative to inputs within ~10× the
/// outputs' scale: 4e-6 per stage leaves 3× margin.
fn f32_tolerance(s: &Shape) -> f64 {
    (4e-6 * s.stages() as f64).max(1e-5)
}

/// f16 arithmetic (`butterfly.f16.*`), relative to `max(1, max |reference|)`.
///
/// f16 unit roundoff u = 2^-11 ≈ 4.9e-4. The inputs are rounded once to f16 (FCVTN: ≤ u
/// relative); each of the L stages computes `a·x + b·y` as FMUL (one rounding) + FMLA
/// (one more), so ≤ 2u relative to `|a·x| + |b·y|`; the widening back (FCVTL) and the f32
/// epilogue add nothing at this scale. Each error propagates through the later stages
/// with gain ≈ 1 (the twiddles keep magnitudes about constant, see [`twiddles`]), so the
/// sum is (1 + 2L)·u·G relative to the outputs, G = 2 for `|a·x| + |b·y|` exceeding
/// `|a·x + b·y|` and the largest output exceeding a typical one. Worst case (L = 18: 2
/// blocks of n = 512): 37·4.9e-4·2 ≈ 0.036 of the output scale — far below the O(1) error
/// of a wrong index, lane or twiddle. The roundings add like a random walk, so the
/// observed errors (QEMU max) are below 0.1 of this bound.
fn f16_tolerance(s: &Shape) -> f64 {
    const U: f64 = 1.0 / 2048.0;
    (1.0 + 2.0 * s.stages() as f64) * U * 2.0
}

fn without_fp16(f: CpuFeatures) -> CpuFeatures {
    CpuFeatures { fp16: false, ..f }
}

/// The butterfly microkernel's name in the plan for `features`; asserts no butterfly
/// section was declined.
fn selected(p: &Prepared, f: CpuFeatures, prefix: &str) -> String {
    let plan: Aarch64Plan = expect_micro(p, f, prefix);
    assert!(
        !plan
            .fallbacks
            .iter()
            .filter_map(|fb| fb.reason.as_deref().filter(|_| fb.family == "butterfly"))
            .any(|r| !r.starts_with("not the layer's section:")),
        "a butterfly section was declined:\n{}",
        plan.fallback_report()
    );
    let m = plan
        .micro
        .iter()
        .find(|m| m.micro.name.starts_with(prefix))
        .expect("selected");
    m.micro
        .name
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The variant names expected for `s` with and without fp16.
fn check_selection(p: &Prepared, s: &Shape) {
    let n = s.n();
    let f = features();
    let f16w = if n >= 8 {
        "butterfly.f16w.tokens+pairs"
    } else {
        "butterfly.f16w.pairs"
    };
    assert_eq!(selected(p, without_fp16(f), "butterfly.f16w"), f16w);
    let with = CpuFeatures { fp16: true, ..f };
    let want = if (8..=2048).contains(&n) {
        "butterfly.f16.tokens8+tokens+pairs"
    } else {
        f16w
    };
    let prefix = want.split('.').take(2).collect::<Vec<_>>().join(".");
    assert_eq!(selected(p, with, &prefix), want);
}

/// Outputs of `p` on the aarch64 backend.
#[cfg(target_arch = "aarch64")]
fn outputs(p: &Prepared, f: CpuFeatures, threads: usize) -> Vec<Tensor> {
    aarch64_common::executor(p, f, threads)
        .step(&p.inputs, p.syms)
        .unwrap_or_else(|e| panic!("running: {e}"))
}

/// f16w: bit-identical to the f32 kernel on the widened twiddles, and within the f32
/// tolerance of the reference.
fn check_f16w(seed: u64, batch: Option<usize>, t: usize, s: Shape, p16: &Prepared) {
    let f = without_fp16(features());
    for threads in [1, 3] {
        run_and_compare(p16, f, threads, f32_tolerance(&s));
    }
    #[cfg(target_arch = "aarch64")]
    {
        let p32 = prepare(seed, batch, t, s, DType::F32);
        assert!(selected(&p32, f, "butterfly.f32").starts_with("butterfly.f32."));
        for threads in [1, 3] {
            let want = outputs(&p32, f, threads);
            let got = outputs(p16, f, threads);
            for (k, (w, g)) in want.iter().zip(&got).enumerate() {
                let (w, g) = (floats(w), floats(g));
                let same = w.iter().zip(g).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "f16w output {k} is not bit-identical to f32 ({s:?}, T = {t}, \
                     {threads} threads): max |Δ| = {:e}",
                    max_abs_diff(w, g)
                );
            }
        }
    }
    #[cfg(not(target_arch = "aarch64"))]
    let _ = (seed, batch, t);
}

/// Largest `max |Δ| / max |want|` over the outputs of the f16 kernel with `threads`.
#[cfg(target_arch = "aarch64")]
fn f16_error(p16: &Prepared, threads: usize) -> f64 {
    let got = outputs(p16, features(), threads);
    p16.want
        .iter()
        .zip(&got)
        .map(|(w, g)| {
            let (w, g) = (floats(w), floats(g));
            max_abs_diff(w, g) / max_abs(w).max(1e-30)
        })
        .fold(0.0, f64::max)
}

/// f16 arithmetic (only where the CPU has FEAT_FP16) on 1, 2 and 3 threads (8-row blocks
/// from row 0 and, with 2 threads and T ≥ 16, from lo > 0; lo..hi splits): every output
/// within [`f16_tolerance`] of the reference, relative to its own largest magnitude.
fn check_f16(p16: &Prepared, s: &Shape) {
    let tol = f16_tolerance(s);
    if !features().fp16 {
        return;
    }
    #[cfg(target_arch = "aarch64")]
    for threads in [1, 2, 3] {
        let rel = f16_error(p16, threads);
        assert!(
            rel <= tol,
            "f16: max |Δ| / max |want| = {rel:e} > {tol:e} ({s:?}, {threads} threads)"
        );
    }
    #[cfg(not(target_arch = "aarch64"))]
    let _ = (p16, tol);
}

fn run(seed: u64, batch: Option<usize>, t: usize, s: Shape) {
    let p16 = prepare(seed, batch, t, s, DType::F16);
    check_selection(&p16, &s);
    check_f16w(seed, batch, t, s, &p16);
    check_f16(&p16, &s);
}

#[test]
fn random_shapes_and_token_counts() {
    let mut rng = SplitMix64::new(0xf16b);
    for case in 0..30u64 {
        let s = Shape::random(&mut rng, &[Epi::Add, Epi::SiluMul, Epi::None, Epi::None]);
        let t = 1 + (rng.next_u64() % 20) as usize;
        let batch = (case % 7 == 3).then_some(2);
        let t = if batch.is_some() { t.min(8) } else { t };
        run(case, batch, t, s);
    }
}

/// Every width, with T covering 8-row blocks plus 4-row and single leftovers.
#[test]
fn every_width_and_row_split() {
    for log in 1..=9u32 {
        let n = 1u64 << log;
        for (k, t) in [1usize, 8, 13, 20].into_iter().enumerate() {
            let s = Shape {
                n_in: n,
                n_out: if k == 2 { n / 2 + 1 } else { n },
                groups: 1 + (k as u64 % 2),
                blocks: 1 + u64::from(log + k as u32) % 2,
                inc: k % 2 == 0,
                bias: k == 3,
                epi: Epi::None,
            };
            run(u64::from(log) * 10 + k as u64, None, t, s);
        }
    }
}

/// The f16 kernel really runs f16 arithmetic on 8-row blocks (its error is f16-sized, far
/// above f32 rounding), yet stays inside the bound.
#[test]
fn f16_blocks_round_like_f16() {
    let s = Shape {
        n_in: 256,
        n_out: 256,
        groups: 1,
        blocks: 2,
        inc: true,
        bias: false,
        epi: Epi::None,
    };
    let p = prepare(7, None, 16, s, DType::F16);
    check_selection(&p, &s);
    #[cfg(target_arch = "aarch64")]
    if features().fp16 {
        let rel = f16_error(&p, 1);
        // f32 arithmetic would give ~1e-6; one f16 rounding alone is up to 2^-12.
        assert!(rel > 2e-5, "f16 blocks did not run: error {rel:e}");
        assert!(rel <= f16_tolerance(&s), "error {rel:e}");
    }
}

/// Every pairs-in-lanes butterfly section of the golden models whose packed twiddles are
/// f16 (`quantize { butterfly = fp16 }`) gets the f16 variant on `aarch64+fp16` (the
/// f16w one outside 8 ≤ n ≤ 2048) and the f16w variant on plain `aarch64`.
#[test]
fn golden_f16_twiddle_sections_get_the_f16_variants() {
    let fp16 = CpuFeatures::parse_target("aarch64+dotprod+fp16").unwrap();
    let plain = CpuFeatures::parse_target("aarch64").unwrap();
    let mut seen = 0;
    for (stem, mode, p) in aarch64_common::golden_programs() {
        let plans = [
            (fp16, Aarch64Plan::emit(&p, fp16)),
            (plain, Aarch64Plan::emit(&p, plain)),
        ];
        for k in &p.kernels {
            let bfly_ir::kernel::KernelKind::Butterfly(d) = &k.kind else {
                continue;
            };
            let body = &p.bodies[k.body.0 as usize];
            let f16 = body
                .params
                .iter()
                .any(|q| q.name == "tw" && q.dtype == DType::F16);
            if d.layout != "pairs-in-lanes" || !f16 {
                continue;
            }
            seen += 1;
            for (f, plan) in &plans {
                let want = if f.fp16 && (8..=2048).contains(&d.n) {
                    "butterfly.f16."
                } else {
                    "butterfly.f16w."
                };
                assert!(
                    plan.micro
                        .iter()
                        .any(|m| m.body == k.body && m.micro.name.starts_with(want)),
                    "{stem} {mode:?} {f}: {} has no `{want}` microkernel:\n{}",
                    k.name,
                    plan.fallback_report()
                );
            }
        }
    }
    assert!(seen > 0, "no golden butterfly section has f16 twiddles");
    eprintln!("{seen} f16-twiddle butterfly sections checked");
}

/// The tile comment of the butterfly microkernel selected with `f` (it lists the passes).
fn selected_tile(p: &Prepared, f: CpuFeatures, prefix: &str) -> String {
    let plan = expect_micro(p, f, prefix);
    plan.micro
        .iter()
        .find(|m| m.micro.name.starts_with(prefix))
        .map(|m| m.micro.tile.clone())
        .expect("selected")
}

/// The tokens radix-8 pass (three stages fused) in `.8h` (f16) and f16w lanes: every
/// width n = 8..2048, both stride orders, 1–2 blocks, T = 1 (8 rows by a batch of 8) and
/// T > 4 (8-row blocks plus 4-row and single leftovers), 1..3 threads, with epilogues.
/// Asserts the pass was planned whenever n ≥ 16 (n = 8 keeps radix-4 + radix-2), then
/// the checks of [`run`]: f16w bit-identical to the f32 kernel, f16 within
/// [`f16_tolerance`]. The radix-8 pass does each stage's FMUL/FMLA exactly as the
/// radix-2 pass, so the f32 standard (bit-identity of f16w vs f32) carries over.
#[test]
fn radix8_codelets() {
    for log in 3..=11u32 {
        let n = 1u64 << log;
        for k in 0..2u64 {
            let s = Shape {
                n_in: n,
                n_out: if k == 0 { n } else { n / 2 + 3 },
                groups: 1,
                blocks: 1 + k,
                inc: (log as u64 + k).is_multiple_of(2),
                bias: k == 1,
                epi: if k == 1 { Epi::SiluMul } else { Epi::None },
            };
            let (batch, t) = if k == 0 { (Some(8), 1) } else { (None, 13) };
            let seed = u64::from(log) * 11 + k;
            let mut c = Case::new(seed, batch, t);
            c.g.set_bound("T", 20);
            c.g.set_bound("B", 8);
            let p16 = butterfly_case(c, s, |c, dims| twiddles(c, dims, DType::F16));
            check_selection(&p16, &s);
            let with = CpuFeatures {
                fp16: true,
                ..features()
            };
            for (f, prefix) in [
                (with, "butterfly.f16."),
                (without_fp16(with), "butterfly.f16w"),
            ] {
                let tile = selected_tile(&p16, f, prefix);
                assert_eq!(tile.contains("radix8["), n >= 16, "n = {n} {f}:\n{tile}");
            }
            if batch.is_none() {
                check_f16w(seed, batch, t, s, &p16);
            } else {
                let f = without_fp16(features());
                for threads in [1, 3] {
                    run_and_compare(&p16, f, threads, f32_tolerance(&s));
                }
            }
            check_f16(&p16, &s);
        }
    }
}
