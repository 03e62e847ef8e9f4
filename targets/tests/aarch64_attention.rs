//! The fused attention microkernel (`attention.f32.qres` with q in registers for head dims
//! ≤ 64, `attention.f32.qstream` above) on random shapes: heads = kv_heads · per (grouped
//! and plain), head dims 1..=100 including non-multiples of 4, T in 1..=8 with the KV
//! cache (prefill from pos 0, then decode steps at pos > 0 through the same executor's
//! cache) and B·T rows in training (no cache), 1 and 3 threads.
//!
//! Tolerance 1e-5 of max(1, max |y|) against the f64 reference (|y| ≤ 1 here): the kernel
//! reassociates the head-dim dot products and Σe (≤ head_dim·2^-24 relative on a score of
//! magnitude ≤ ~3), fuses y's multiply-adds, and its exp is ≈ 1 ulp — all ~1e-6.

mod aarch64_common;
mod lower_common;

use aarch64_common::{expect_micro, features, run_and_compare};
use bfly_ir::Op;
use bfly_ir::init::SplitMix64;
use lower_common::*;

const TOL: f64 = 1e-5;

/// One attention op on random q, k, v: `[lead.., heads·hd]`, `[lead.., kv_heads·hd]`.
fn attention_case(
    seed: u64,
    batch: Option<usize>,
    t: usize,
    kv: u64,
    per: u64,
    hd: u64,
) -> Prepared {
    let heads = kv * per;
    let mut c = Case::new(seed, batch, t);
    let q = c.act(heads * hd);
    let k = c.act(kv * hd);
    let v = c.act(kv * hd);
    let y = c.op1(
        Op::CausalAttention {
            heads,
            kv_heads: kv,
        },
        &[q, k, v],
    );
    c.out(y);
    c.prepare()
}

struct Shape {
    kv: u64,
    per: u64,
    hd: u64,
}

fn shapes(rng: &mut SplitMix64, n: usize) -> Vec<Shape> {
    let mut v: Vec<Shape> = [
        (1, 1, 8),
        (2, 2, 13),
        (1, 4, 32),
        (3, 1, 64),
        (1, 2, 65),
        (2, 1, 100),
    ]
    .into_iter()
    .map(|(kv, per, hd)| Shape { kv, per, hd })
    .collect();
    for _ in 0..n {
        v.push(Shape {
            kv: 1 + rng.next_u64() % 3,
            per: 1 + rng.next_u64() % 3,
            hd: 1 + rng.next_u64() % 70,
        });
    }
    v
}

fn variant(hd: u64) -> &'static str {
    if hd <= 64 {
        "attention.f32.qres"
    } else {
        "attention.f32.qstream"
    }
}

#[test]
fn prefill_and_training_match_the_reference() {
    let f = features();
    let mut rng = SplitMix64::new(0xa77e_0001);
    for (i, s) in shapes(&mut rng, 12).iter().enumerate() {
        let t = 1 + (rng.next_u64() % 8) as usize;
        let batch = (i % 2 == 1).then(|| 1 + (rng.next_u64() % 3) as usize);
        let p = attention_case(rng.next_u64(), batch, t, s.kv, s.per, s.hd);
        expect_micro(&p, f, variant(s.hd));
        for threads in [1, 3] {
            run_and_compare(&p, f, threads, TOL);
        }
    }
}

#[test]
fn decode_steps_through_the_cache_match_the_reference() {
    let f = features();
    let mut rng = SplitMix64::new(0xa77e_0002);
    for s in shapes(&mut rng, 8) {
        let t = 2 + (rng.next_u64() % 7) as usize;
        let split = 1 + (rng.next_u64() % (t as u64 - 1)) as usize;
        let p = attention_case(rng.next_u64(), None, t, s.kv, s.per, s.hd);
        expect_micro(&p, f, variant(s.hd));
        for threads in [1, 3] {
            decode(&p, split, threads);
        }
    }
}

/// Prefills `split` tokens, then decodes the rest one step of 1..=3 tokens at a time at
/// `pos = tokens so far` on one executor (its KV cache carries over), comparing every
/// step's rows with the reference's rows of the whole sequence.
fn decode(p: &Prepared, split: usize, threads: usize) {
    #[cfg(target_arch = "aarch64")]
    {
        use aarch64_common::rows;
        use bfly_targets::exec::Syms;
        use bfly_targets::reference::Tensor;
        let mut exec = aarch64_common::executor(p, features(), threads);
        let t = p.syms.t;
        let mut lo = 0;
        let mut hi = split;
        while lo < t {
            let inputs: Vec<Tensor> = p.inputs.iter().map(|x| rows(x, lo, hi)).collect();
            let got = exec
                .step(&inputs, Syms::decode(hi - lo, lo))
                .unwrap_or_else(|e| panic!("step at pos {lo}: {e}"));
            let want = rows(&p.want[0], lo, hi);
            let (w, g) = (floats(&want), floats(&got[0]));
            let err = max_abs_diff(w, g);
            let bound = TOL * max_abs(w).max(1.0);
            assert!(
                err <= bound,
                "pos {lo}..{hi}: max |Δ| = {err:e} > {bound:e}"
            );
            lo = hi;
            hi = (hi + 1 + lo % 3).min(t);
        }
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        let _ = (p, split, threads);
    }
}
