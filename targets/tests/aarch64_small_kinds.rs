//! The per-token microkernels of inference steps — `quantize.f32.i8`, `rope.f32.*`,
//! `copy.kv_append`, `copy.embed` — on random shapes (row lengths that are not multiples
//! of 4 or 16, 1..4 heads of 2..18 dims, T in 1..=8, training B·T rows, decode steps at
//! `pos > 0` after a prefill), 1 and 3 threads.
//!
//! Tolerances: quantize, rope and embed are compared with the Kernel IR interpreter
//! **bit for bit** (the kernels do the body's f32 operations exactly: see their module
//! docs), including quantize's edge rows (all zeros, exact ties at scale 1, huge values,
//! subnormal rows whose scale underflows to 0). kv_append is observed through the
//! attention that reads the caches (which may run its own microkernel, reassociating its
//! sums): 2e-5 of max(1, max |y|) against the interpreter, far below what one wrong or
//! missing cache row would cost. Single-step cases are also checked against the f64
//! reference (2e-5; quantized ints within one step of a tie).

mod aarch64_common;
mod lower_common;

use aarch64_common::{expect_micro, features, golden_programs, rows, run_and_compare};
use bfly_ir::Op;
use bfly_ir::init::SplitMix64;
use bfly_targets::aarch64::CpuFeatures;
use bfly_targets::exec::Syms;
use bfly_targets::interp::Interp;
use bfly_targets::reference::{Data, Tensor};
use lower_common::*;

const TOL: f64 = 2e-5;

/// One step: the inputs and the symbols.
type Step = (Vec<Tensor>, Syms);

/// A prefill of `split` tokens, then the rest of `p.inputs` at `pos = split`.
fn prefill_then_decode(p: &Prepared, split: usize) -> Vec<Step> {
    let t = p.syms.t;
    let first = p.inputs.iter().map(|x| rows(x, 0, split)).collect();
    let rest = p.inputs.iter().map(|x| rows(x, split, t)).collect();
    vec![
        (first, Syms::tokens(split)),
        (rest, Syms::decode(t - split, split)),
    ]
}

/// Runs `steps` on the interpreter and (on aarch64) on the aarch64 backend with `threads`
/// threads; every step's outputs must be identical (`tol = None`) or within `tol` of
/// max(1, max |interpreter|).
fn same_as_interpreter(
    p: &Prepared,
    features: CpuFeatures,
    threads: usize,
    steps: &[Step],
    tol: Option<f64>,
) {
    #[cfg(target_arch = "aarch64")]
    {
        let mut exec = aarch64_common::executor(p, features, threads);
        let mut interp = Interp::new(&p.program, &p.weights).unwrap_or_else(|e| panic!("{e}"));
        for (s, (inputs, syms)) in steps.iter().enumerate() {
            let want = interp
                .step(inputs, *syms)
                .unwrap_or_else(|e| panic!("interpreter step {s}: {e}"));
            let got = exec
                .step(inputs, *syms)
                .unwrap_or_else(|e| panic!("aarch64 step {s}: {e}"));
            compare_outputs(&want, &got, tol, &format!("step {s} at {syms:?}"));
        }
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        let _ = (p, features, threads, steps, tol, Interp::new);
    }
}

#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
fn compare_outputs(want: &[Tensor], got: &[Tensor], tol: Option<f64>, what: &str) {
    assert_eq!(want.len(), got.len(), "{what}: output count");
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        assert_eq!(w.shape, g.shape, "{what}: output {i} shape");
        match (&w.data, &g.data, tol) {
            (Data::F(w), Data::F(g), None) => {
                let bad = w
                    .iter()
                    .zip(g)
                    .position(|(a, b)| (*a as f32).to_bits() != (*b as f32).to_bits());
                if let Some(k) = bad {
                    panic!("{what}: output {i}[{k}]: want {:e}, got {:e}", w[k], g[k]);
                }
            }
            (Data::F(w), Data::F(g), Some(tol)) => {
                let err = max_abs_diff(w, g);
                let bound = tol * max_abs(w).max(1.0);
                assert!(
                    err <= bound,
                    "{what}: output {i}: |Δ| = {err:e} > {bound:e}"
                );
            }
            (Data::I(w), Data::I(g), _) => {
                if let Some(k) = w.iter().zip(g).position(|(a, b)| a != b) {
                    panic!("{what}: output {i}[{k}]: want {}, got {}", w[k], g[k]);
                }
            }
            _ => panic!("{what}: output {i}: dtype kinds differ"),
        }
    }
}

/// Row lengths: the edge cases of 16-float steps, 4-float vectors and single floats, and
/// random ones.
fn lengths(rng: &mut SplitMix64, fixed: &[u64], random: usize, max: u64) -> Vec<u64> {
    let mut v = fixed.to_vec();
    v.extend((0..random).map(|_| 1 + rng.next_u64() % max));
    v
}

/// T in 1..=8 and, every third case, a training batch.
fn tokens_and_batch(rng: &mut SplitMix64, i: usize) -> (usize, Option<usize>) {
    let t = 1 + (rng.next_u64() % 8) as usize;
    let batch = (i % 3 == 2).then(|| 1 + (rng.next_u64() % 3) as usize);
    (t, batch)
}

// ---------------------------------------------------------------------------------------
// quantize

/// Activations `x` and a weight of `wrows` rows quantized (the weight at load).
fn quant_case(seed: u64, batch: Option<usize>, t: usize, cols: u64, wrows: u64) -> Prepared {
    let mut c = Case::new(seed, batch, t);
    c.int_tol = 1;
    let x = c.act(cols);
    let w = c.param(&[wrows, cols]);
    let xq = c.op(Op::Quantize, &[x]);
    let wq = c.op(Op::Quantize, &[w]);
    for v in [xq[0], xq[1], wq[0], wq[1]] {
        c.out(v);
    }
    c.prepare()
}

/// Row `r` of an edge-case activation: random, zeros, exact ties at scale 1, huge and
/// tiny values, a subnormal row (its scale underflows to 0: x / 0 = ±inf and 0 / 0 = NaN
/// must both follow the body), ±127.5 boundaries.
fn edge_row(rng: &mut SplitMix64, r: usize, cols: usize) -> Vec<f64> {
    let pick = |rng: &mut SplitMix64, n: u64| (rng.next_u64() % n) as i64;
    let f = |v: f32| f64::from(v);
    (0..cols)
        .map(|j| match r % 6 {
            0 => f((rng.next_f64() * 2.0 - 1.0) as f32),
            1 => 0.0,
            // absmax 127 → scale exactly 1: every x.5 is a tie.
            2 if j == 0 => 127.0,
            2 => f((pick(rng, 254) - 127) as f32 + 0.5) * if j % 5 == 0 { 0.0 } else { 1.0 },
            3 => f([1e30f32, -3e29, 1e-30, -0.0, 2.5e30][j % 5]),
            4 => {
                f(f32::from_bits(1 + rng.next_u64() as u32 % 3)
                    * if j % 2 == 0 { 1.0 } else { -1.0 })
            }
            _ => f([126.75f32, -127.0, 0.5, -0.5, 1.5, -2.5, 0.49999997][j % 7]),
        })
        .collect()
}

#[test]
fn quantize_is_bit_exact_with_the_interpreter() {
    let f = features();
    let mut rng = SplitMix64::new(0x5eed_0a01);
    let cols_list = lengths(&mut rng, &[1, 3, 4, 5, 15, 16, 17, 31, 64, 100], 8, 200);
    for (i, &cols) in cols_list.iter().enumerate() {
        let (t, batch) = tokens_and_batch(&mut rng, i);
        let wrows = 1 + rng.next_u64() % 9;
        let p = quant_case(rng.next_u64(), batch, t, cols, wrows);
        expect_micro(&p, f, "quantize.f32.i8");
        // Random activations: the reference (ints within one step of a tie) …
        for threads in [1, 3] {
            run_and_compare(&p, f, threads, TOL);
        }
        // … and the interpreter, exactly, on random and on edge-case rows.
        let mut edge = p.inputs.clone();
        let n = edge[0].numel() / cols as usize;
        let data = (0..n)
            .flat_map(|r| edge_row(&mut rng, r + i, cols as usize))
            .collect();
        edge[0] = Tensor::f32(edge[0].shape.clone(), data);
        for threads in [1, 3] {
            for inputs in [&p.inputs, &edge] {
                let steps = [(inputs.clone(), p.syms)];
                same_as_interpreter(&p, f, threads, &steps, None);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// rope

fn rope_case(seed: u64, batch: Option<usize>, t: usize, heads: u64, hd: u64) -> Prepared {
    let mut c = Case::new(seed, batch, t);
    let q = c.act(heads * hd);
    let qr = c.op1(Op::Rope { heads, base: 100.0 }, &[q]);
    c.out(qr);
    c.prepare()
}

#[test]
fn rope_is_bit_exact_in_prefill_decode_and_training() {
    let f = features();
    let mut rng = SplitMix64::new(0x5eed_0a02);
    let mut shapes: Vec<(u64, u64)> = vec![(1, 2), (1, 8), (4, 16), (3, 6), (2, 10), (2, 64)];
    for _ in 0..10 {
        shapes.push((1 + rng.next_u64() % 4, 2 * (1 + rng.next_u64() % 9)));
    }
    for (i, &(heads, hd)) in shapes.iter().enumerate() {
        let (t, batch) = tokens_and_batch(&mut rng, i);
        let p = rope_case(rng.next_u64(), batch, t, heads, hd);
        let variant = if batch.is_some() {
            "rope.f32.sequence"
        } else {
            "rope.f32.cached"
        };
        expect_micro(&p, f, variant);
        for threads in [1, 3] {
            run_and_compare(&p, f, threads, TOL);
            same_as_interpreter(&p, f, threads, &[(p.inputs.clone(), p.syms)], None);
        }
        // Decode: the positions of the second step start at pos > 0.
        if batch.is_none() && t >= 2 {
            let split = 1 + (rng.next_u64() as usize) % (t - 1);
            for threads in [1, 3] {
                same_as_interpreter(&p, f, threads, &prefill_then_decode(&p, split), None);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// kv_append

#[test]
fn kv_append_fills_the_cache_that_decode_attention_reads() {
    let f = features();
    let mut rng = SplitMix64::new(0x5eed_0a03);
    for i in 0..14 {
        let kv_heads = 1 + rng.next_u64() % 2;
        let per = 1 + rng.next_u64() % 2;
        let hd = [2u64, 4, 6, 8, 10, 16, 18][i % 7];
        let heads = kv_heads * per;
        let t = 2 + (rng.next_u64() % 7) as usize;
        let mut c = Case::new(rng.next_u64(), None, t);
        let q = c.act(heads * hd);
        let k = c.act(kv_heads * hd);
        let v = c.act(kv_heads * hd);
        let qr = c.op1(
            Op::Rope {
                heads,
                base: 10000.0,
            },
            &[q],
        );
        let kr = c.op1(
            Op::Rope {
                heads: kv_heads,
                base: 10000.0,
            },
            &[k],
        );
        let y = c.op1(Op::CausalAttention { heads, kv_heads }, &[qr, kr, v]);
        c.out(y);
        let p = c.prepare();
        expect_micro(&p, f, "copy.kv_append");
        expect_micro(&p, f, "rope.f32.cached");
        let split = 1 + (rng.next_u64() as usize) % (t - 1);
        for threads in [1, 3] {
            run_and_compare(&p, f, threads, TOL);
            let mut steps = prefill_then_decode(&p, split);
            // Then one more token (the last row again) at pos = t while the context has room.
            if t < T_MAX as usize {
                let last: Vec<Tensor> = p.inputs.iter().map(|x| rows(x, t - 1, t)).collect();
                steps.push((last, Syms::decode(1, t)));
            }
            same_as_interpreter(&p, f, threads, &steps, Some(TOL));
        }
    }
}

// ---------------------------------------------------------------------------------------
// embed

#[test]
fn embed_is_bit_exact_with_the_interpreter() {
    let f = features();
    let mut rng = SplitMix64::new(0x5eed_0a04);
    let dims = lengths(&mut rng, &[1, 3, 4, 5, 16, 17, 64, 70], 6, 100);
    for (i, &dim) in dims.iter().enumerate() {
        let (t, batch) = tokens_and_batch(&mut rng, i);
        let vocab = 1 + rng.next_u64() % 50;
        let mut c = Case::new(rng.next_u64(), batch, t);
        let ids = c.ids(vocab);
        let table = c.param(&[vocab, dim]);
        let emb = c.op1(Op::Embed, &[ids, table]);
        c.out(emb);
        let p = c.prepare();
        expect_micro(&p, f, "copy.embed");
        for threads in [1, 3] {
            run_and_compare(&p, f, threads, 0.0);
            same_as_interpreter(&p, f, threads, &[(p.inputs.clone(), p.syms)], None);
            if batch.is_none() && t >= 2 {
                let split = 1 + (rng.next_u64() as usize) % (t - 1);
                same_as_interpreter(&p, f, threads, &prefill_then_decode(&p, split), None);
            }
        }
    }
}

/// Every quantize / rope / kv_append / embed section of every golden model, inference
/// and training, runs a microkernel (on the baseline feature set: none of them needs
/// dotprod or fp16).
#[test]
fn golden_models_select_the_small_kinds() {
    use bfly_targets::aarch64::Aarch64Plan;
    let f = CpuFeatures::parse_target("aarch64").expect("baseline target");
    let mut seen = 0;
    for (stem, mode, p) in golden_programs() {
        let plan = Aarch64Plan::emit(&p, f);
        seen += plan
            .micro
            .iter()
            .filter(|m| {
                ["quantize.", "rope.", "copy."]
                    .iter()
                    .any(|v| m.micro.name.starts_with(v))
            })
            .count();
        for fb in &plan.fallbacks {
            let ours = matches!(
                fb.family.as_str(),
                "row.quantize" | "rope" | "kv_append" | "embed"
            );
            assert!(
                !ours,
                "{stem} {mode:?}: {} section {} fell back: {:?}",
                fb.kernel, fb.section, fb.reason
            );
        }
    }
    assert!(seen > 0, "no small-kind microkernel in any golden model");
}
