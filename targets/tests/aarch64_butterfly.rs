//! The aarch64 butterfly forward microkernel (`butterfly.f32.*`) against the f64 reference:
//! random widths n = 2..512 (in ≤ n, out up to 3 stacks, 1–3 groups, 1–2 blocks, both
//! stride orders), T ∈ {1, 2, 3, 4, 5, 8} (tokens-in-lanes for 4-row blocks, pairs-in-lanes
//! for the rest), 1 and 3 threads (lo..hi splits), inference and training layouts, with and
//! without bias and the fused epilogues (residual add, SiLU·mul, GELU).
//!
//! Every case asserts that the butterfly microkernel was selected and which variant
//! (`tokens+pairs` when n ≥ 8, `pairs` otherwise). On a non-aarch64 host only emission and
//! selection are checked; under QEMU the code runs.
//!
//! Tolerance: `4e-6 · L` (L = blocks · log2 n stages, at least `1e-5`) relative to
//! `max(1, max |reference|)`. Each stage rounds every value about twice in f32 (2^-24 each,
//! FMUL + FMLA) relative to the stage's inputs, which for random twiddles in [−1, 1) stay
//! within ~10× the outputs' scale: ≈ 2·6e-8·10 = 1.2e-6 per stage, 4e-6 leaves 3× margin.
//! The exp polynomial adds ≤ 2 ulp relative. A wrong index or twiddle shows at O(1).

mod aarch64_common;
mod lower_common;

use aarch64_common::butterfly::{Epi, Shape, butterfly_case};
use aarch64_common::{expect_micro, features, golden_programs, run_and_compare};
use bfly_ir::init::SplitMix64;
use bfly_ir::kernel::KernelKind;
use bfly_targets::aarch64::Aarch64Plan;
use lower_common::*;

fn prepare(seed: u64, batch: Option<usize>, t: usize, s: Shape) -> Prepared {
    butterfly_case(Case::new(seed, batch, t), s, |c, dims| c.param(dims))
}

fn tolerance(s: &Shape) -> f64 {
    (4e-6 * s.stages() as f64).max(1e-5)
}

/// Asserts the butterfly microkernel (and the expected variant) was selected.
fn check_selected(p: &Prepared, s: &Shape) {
    let f = features();
    let plan = expect_micro(p, f, "butterfly.f32");
    let want = if s.n() >= 8 { "tokens+pairs" } else { "pairs" };
    let m = plan
        .micro
        .iter()
        .find(|m| m.micro.name.starts_with("butterfly.f32"))
        .expect("selected");
    let variant = m.micro.name.split(' ').next().unwrap_or_default();
    assert_eq!(
        variant,
        format!("butterfly.f32.{want}"),
        "variant for n = {}: {}",
        s.n(),
        m.micro.name
    );
    assert!(
        !plan
            .fallbacks
            .iter()
            .filter_map(|fb| fb.reason.as_deref().filter(|_| fb.family == "butterfly"))
            .any(|r| !r.starts_with("not the layer's section:")),
        "a butterfly section was declined:\n{}",
        plan.fallback_report()
    );
}

fn run(seed: u64, batch: Option<usize>, t: usize, s: Shape) {
    let p = prepare(seed, batch, t, s);
    check_selected(&p, &s);
    for threads in [1, 3] {
        run_and_compare(&p, features(), threads, tolerance(&s));
    }
}

#[test]
fn random_shapes_and_token_counts() {
    let mut rng = SplitMix64::new(0xb0f1);
    for case in 0..36u64 {
        let s = Shape::random(
            &mut rng,
            &[Epi::Add, Epi::SiluMul, Epi::Gelu, Epi::None, Epi::None],
        );
        let t = [1, 2, 3, 4, 5, 8][(case % 6) as usize];
        let batch = (case % 7 == 3).then_some(2);
        run(case, batch, t, s);
    }
}

#[test]
fn every_width_in_place_and_truncated() {
    for log in 1..=9u32 {
        let n = 1u64 << log;
        for (k, (n_in, n_out)) in [(n, n), (n, 2 * n), (n.max(3) - 1, n / 2 + 1)]
            .into_iter()
            .enumerate()
        {
            let s = Shape {
                n_in: n_in.max(2),
                n_out: n_out.max(1),
                groups: 1,
                blocks: 1 + (log as u64 + k as u64) % 2,
                inc: k != 1,
                bias: k == 2,
                epi: Epi::None,
            };
            run(u64::from(log) * 10 + k as u64, None, [1, 5, 8][k], s);
        }
    }
}

#[test]
fn fused_epilogues() {
    for (k, epi) in [Epi::Add, Epi::SiluMul, Epi::Gelu].into_iter().enumerate() {
        for (n_in, n_out, groups, t) in [(32, 32, 4, 5), (128, 256, 1, 4), (64, 96, 2, 3)] {
            let s = Shape {
                n_in,
                n_out,
                groups,
                blocks: 1,
                inc: k % 2 == 0,
                bias: k == 0,
                epi,
            };
            run(k as u64 + n_in, None, t, s);
        }
    }
}

/// Every pairs-in-lanes butterfly section of every golden model (inference and training)
/// gets the microkernel.
#[test]
fn golden_models_get_the_microkernel() {
    for (stem, mode, p) in golden_programs() {
        let plan = Aarch64Plan::emit(&p, features());
        for k in &p.kernels {
            let KernelKind::Butterfly(d) = &k.kind else {
                continue;
            };
            if d.layout != "pairs-in-lanes" {
                continue;
            }
            assert!(
                plan.micro.iter().any(|m| m.body == k.body),
                "{stem} {mode:?}: {} has no microkernel:\n{}",
                k.name,
                plan.fallback_report()
            );
        }
    }
}

/// The tile comment of the selected butterfly microkernel (it lists the token passes).
fn selected_tile(p: &Prepared) -> String {
    let plan = expect_micro(p, features(), "butterfly.f32");
    plan.micro
        .iter()
        .find(|m| m.micro.name.starts_with("butterfly.f32"))
        .map(|m| m.micro.tile.clone())
        .expect("selected")
}

/// The tokens radix-8 pass (three stages fused on two octets of vectors): every width
/// n = 8..2048, both stride orders, 1–2 blocks, T = 1 (4 rows by a batch of 4) and T > 4,
/// 1 and 3 threads, with the epilogues. Asserts the pass was planned whenever three
/// stages remain and n ≥ 16 (stride 1 needs 16 vectors per iteration; n = 8 keeps
/// radix-4 + radix-2). Same f64-reference tolerance as above: the radix-8 pass does each
/// stage's arithmetic exactly as the radix-2 pass (FMUL lo·a, then FMLA + hi·b), so it
/// is bit-identical to the unfused passes.
#[test]
fn radix8_codelets() {
    let mut rng = SplitMix64::new(0x8a8);
    for log in 3..=11u32 {
        let n = 1u64 << log;
        for k in 0..2u64 {
            let epi =
                [Epi::None, Epi::Add, Epi::SiluMul, Epi::Gelu][((log as u64 + k) % 4) as usize];
            let s = Shape {
                n_in: n - rng.next_u64() % (n / 4),
                n_out: n / 2 + rng.next_u64() % (2 * n),
                groups: 1 + u64::from(n <= 64),
                blocks: 1 + k,
                inc: (log as u64 + k).is_multiple_of(2),
                bias: k == 1,
                epi,
            };
            let (batch, t) = if k == 0 {
                (Some(4), 1)
            } else {
                (None, 5 + (log as usize % 4))
            };
            let mut c = Case::new(u64::from(log) * 7 + k, batch, t);
            c.g.set_bound("B", 4);
            let p = butterfly_case(c, s, |c, dims| c.param(dims));
            check_selected(&p, &s);
            let tile = selected_tile(&p);
            assert_eq!(tile.contains("radix8["), n >= 16, "n = {n}:\n{tile}");
            for threads in [1, 3] {
                run_and_compare(&p, features(), threads, tolerance(&s));
            }
        }
    }
}

/// Sets the stage grouping of every butterfly layer kernel of `p` (the descriptor's
/// `radix`, as the graph's `radix` attribute would).
fn set_radix(p: &mut Prepared, radix: &[u32]) {
    let mut set = 0;
    for k in &mut p.program.kernels {
        if let KernelKind::Butterfly(d) = &mut k.kind
            && d.layout == "pairs-in-lanes"
        {
            d.radix = radix.to_vec();
            assert!(k.kind.to_string().contains(&format!(
                "radix = [{}]",
                radix.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            )));
            set += 1;
        }
    }
    assert_eq!(set, 1);
}

/// The descriptor's grouping drives the tokens passes (n = 128, 2 blocks: strides
/// 1..64 then 64..1): each group becomes one pass, results within the usual tolerance
/// on 1 and 3 threads; a grouping that does not cover a block is declined, never
/// silently replaced.
#[test]
fn descriptor_grouping_drives_the_token_passes() {
    let s = Shape {
        n_in: 128,
        n_out: 128,
        groups: 1,
        blocks: 2,
        inc: true,
        bias: false,
        epi: Epi::Add,
    };
    let cases: [(&[u32], &str); 4] = [
        (
            &[8, 8, 2],
            "radix8[1,2,4] radix8[8,16,32] radix2[64] radix8[64,32,16] radix8[8,4,2] radix2[1]",
        ),
        (
            &[2, 8, 8],
            "radix2[1] radix8[2,4,8] radix8[16,32,64] radix2[64] radix8[32,16,8] radix8[4,2,1]",
        ),
        (
            &[4, 4, 4, 2],
            "radix4[1,2] radix4[4,8] radix4[16,32] radix2[64] radix4[64,32] radix4[16,8] \
             radix4[4,2] radix2[1]",
        ),
        (
            &[],
            "radix8[1,2,4] radix8[8,16,32] radix2[64] radix8[64,32,16] radix8[8,4,2] radix2[1]",
        ),
    ];
    for (k, (radix, passes)) in cases.into_iter().enumerate() {
        let mut p = prepare(90 + k as u64, None, 6, s);
        if !radix.is_empty() {
            set_radix(&mut p, radix);
        }
        check_selected(&p, &s);
        let tile = selected_tile(&p);
        assert!(
            tile.contains(&format!("passes {passes}\n")),
            "{radix:?}:\n{tile}"
        );
        for threads in [1, 3] {
            run_and_compare(&p, features(), threads, tolerance(&s));
        }
    }
    let mut p = prepare(99, None, 6, s);
    set_radix(&mut p, &[8, 8]);
    let plan = Aarch64Plan::emit(&p.program, features());
    assert!(
        plan.fallback_report().contains("stage grouping"),
        "{}",
        plan.fallback_report()
    );
}
