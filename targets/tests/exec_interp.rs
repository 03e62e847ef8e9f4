//! The Kernel IR interpreter on hand-written programs: f32 semantics, state across steps,
//! in-place optimizer updates, and the checks compiled code cannot make.

mod exec_programs;

use bfly_ir::DType;
use bfly_ir::kernel::{Access, BodyBuilder, BufferKind, Expr, KernelKind, LoopKind};
use bfly_targets::exec::Syms;
use bfly_targets::interp::{Interp, run_program};
use bfly_targets::reference::{Tensor, Weights};
use exec_programs::*;
use half::f16;

fn floats(t: &Tensor) -> Vec<f32> {
    t.floats()
        .expect("float output")
        .iter()
        .map(|&v| v as f32)
        .collect()
}

#[test]
fn map_program_matches_f32_arithmetic_bit_for_bit() {
    let p = map_program();
    let x = map_input(5);
    let out = run_program(
        &p,
        &map_weights(),
        std::slice::from_ref(&x),
        Syms::tokens(5),
    )
    .unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].shape, vec![5, 4]);
    assert_eq!(out[1].shape, Vec::<usize>::new());
    let w: Vec<f32> = [0.5f32, -1.0, 0.25, 2.0].to_vec();
    let mut sum = 0f32;
    let y = floats(&out[0]);
    for (i, &xv) in x.floats().unwrap().iter().enumerate() {
        let want = (xv as f32 * 2.0).exp() * f16::from_f32(w[i % 4]).to_f32() + 1.0;
        assert_eq!(y[i].to_bits(), want.to_bits(), "element {i}");
        sum += want;
    }
    assert_eq!(floats(&out[1])[0].to_bits(), sum.to_bits());
}

#[test]
fn checks_symbols_and_inputs() {
    let p = map_program();
    let w = map_weights();
    let e = run_program(&p, &w, &[map_input(17)], Syms::tokens(17)).unwrap_err();
    assert!(e.message.contains("T = 17 is outside 1..=16"), "{e}");
    let e = run_program(&p, &w, &[map_input(3)], Syms::tokens(4)).unwrap_err();
    assert!(e.message.contains("input 0 `x` has shape [3, 4]"), "{e}");
    let e = run_program(&p, &w, &[], Syms::tokens(4)).unwrap_err();
    assert!(e.message.contains("takes 1 inputs, got 0"), "{e}");
    let ints = Tensor::int(DType::I32, vec![4, 4], vec![1; 16]);
    let e = run_program(&p, &w, &[ints], Syms::tokens(4)).unwrap_err();
    assert_eq!(e.message, "input 0 `x` is i32; the program expects f32");
    let e = run_program(&p, &Weights::new(), &[map_input(2)], Syms::tokens(2)).unwrap_err();
    assert_eq!(e.message, "no value for param @w");
}

#[test]
fn kv_cache_persists_across_decode_steps() {
    let p = kv_program(8);
    let w = kv_weights();
    let tokens = [3u32, 1, 4, 1, 5];
    let prefill = run_program(&p, &w, &[Tensor::tokens(&tokens)], Syms::tokens(5)).unwrap();
    let prefill = floats(&prefill[0]);

    let mut interp = Interp::new(&p, &w).unwrap();
    let mut decoded = Vec::new();
    // Two tokens, then one at a time.
    let out = interp
        .step(&[Tensor::tokens(&tokens[..2])], Syms::decode(2, 0))
        .unwrap();
    decoded.extend(floats(&out[0]));
    for (i, &tok) in tokens.iter().enumerate().skip(2) {
        let out = interp
            .step(&[Tensor::tokens(&[tok])], Syms::decode(1, i))
            .unwrap();
        decoded.extend(floats(&out[0]));
    }
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&decoded), bits(&prefill));

    let e = interp
        .step(&[Tensor::tokens(&[1, 2, 3, 4])], Syms::decode(4, 5))
        .unwrap_err();
    assert!(
        e.message
            .contains("pos + T = 5 + 4 = 9 exceeds the KV cache of 8 rows"),
        "{e}"
    );

    // After a reset the cache is empty again: decoding from 0 repeats the first step.
    interp.reset_state();
    let again = interp
        .step(&[Tensor::tokens(&tokens[..2])], Syms::decode(2, 0))
        .unwrap();
    assert_eq!(bits(&floats(&again[0])), bits(&prefill[..6]));
}

#[test]
fn token_ids_are_checked_against_the_vocabulary() {
    let p = kv_program(8);
    let e = run_program(
        &p,
        &kv_weights(),
        &[Tensor::tokens(&[1, 11])],
        Syms::tokens(2),
    )
    .unwrap_err();
    assert!(
        e.message
            .contains("input 0 `tokens`[1] = 11 is out of range 0..11"),
        "{e}"
    );
    assert!(e.message.contains("embed{vocab = 11"), "{e}");
}

#[test]
fn training_updates_params_in_place() {
    let p = train_program();
    let mut interp = Interp::new(&p, &train_weights()).unwrap();
    let batch = train_batch(2, 3);
    let w0 = interp.param("w").unwrap();

    // The first step by hand, in the kernels' order of operations.
    let (x, y) = (batch[0].floats().unwrap(), batch[1].floats().unwrap());
    let f = FEATURES as usize;
    let pred: Vec<f32> = (0..6)
        .map(|r| (0..f).fold(0f32, |a, j| a + x[r * f + j] as f32 * w0[j]))
        .collect();
    let n = 6f32;
    let loss = (0..6).fold(0f32, |a, r| {
        let e = pred[r] - y[r] as f32;
        a + e * e
    }) / n;
    let w1: Vec<f32> = (0..f)
        .map(|j| {
            let g = (0..6).fold(0f32, |a, r| {
                a + (pred[r] - y[r] as f32) * x[r * f + j] as f32
            });
            w0[j] - LR * (g * 2.0 / n)
        })
        .collect();

    let out = interp.step(&batch, Syms::batch(2, 3)).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(floats(&out[0])[0].to_bits(), loss.to_bits());
    assert_eq!(interp.param("w").unwrap(), w1);

    let mut last = loss;
    for _ in 0..20 {
        let l = floats(&interp.step(&batch, Syms::batch(2, 3)).unwrap()[0])[0];
        assert!(l < last, "loss went from {last} to {l}");
        last = l;
    }
    interp.set_param("w", &w0).unwrap();
    assert_eq!(interp.param("w").unwrap(), w0);
    assert!(interp.set_param("w", &[1.0]).is_err());
    assert!(interp.set_param("nope", &[1.0]).is_err());
}

#[test]
fn quantized_kernels_use_int_arithmetic_and_load_phase_state() {
    let p = quant_program();
    let w = quant_weights();
    let x = quant_input(3);
    let out = run_program(&p, &w, std::slice::from_ref(&x), Syms::tokens(3)).unwrap();
    let quant = |v: &[f32]| {
        let m = v.iter().fold(1e-12f32, |m, x| m.max(x.abs()));
        let s = m / 127.0;
        let q: Vec<i64> = v
            .iter()
            .map(|x| ((x / s).round_ties_even() as i64).clamp(-127, 127))
            .collect();
        (q, s)
    };
    let wf: Vec<f32> = w["w"].floats().unwrap().iter().map(|&v| v as f32).collect();
    let xf: Vec<f32> = x.floats().unwrap().iter().map(|&v| v as f32).collect();
    let y = floats(&out[0]);
    for r in 0..3 {
        let (xq, xs) = quant(&xf[r * 8..][..8]);
        for c in 0..4 {
            let (wq, ws) = quant(&wf[c * 8..][..8]);
            let acc: i64 = (0..8).map(|j| xq[j] * wq[j]).sum();
            let want = acc as f32 * xs * ws;
            assert_eq!(y[r * 4 + c].to_bits(), want.to_bits(), "row {r} col {c}");
        }
    }
}

/// A program with one kernel `body(x: f32[T], y: f32[T])`.
fn one_kernel(body: bfly_ir::kernel::Body) -> bfly_ir::kernel::KernelProgram {
    let mut p = Builder::new("one", &[("T", 8)]);
    let x = p.buf("x", DType::F32, &["T"], BufferKind::Input { index: 0 });
    let y = p.buf("y", DType::F32, &["T"], BufferKind::Output { index: 0 });
    p.step(map("test"), body, &[x, y]);
    p.finish()
}

fn run_one(f: impl FnOnce(&mut BodyBuilder, u32, u32)) -> Result<Vec<f32>, String> {
    let mut bb = BodyBuilder::new();
    let x = bb.param("x", DType::F32, Access::Read);
    let y = bb.param("y", DType::F32, Access::Write);
    f(&mut bb, x, y);
    let p = one_kernel(bb.finish());
    let x = Tensor::f32(vec![4], vec![1.0, 2.0, 3.0, 4.0]);
    run_program(&p, &Weights::new(), &[x], Syms::tokens(4))
        .map(|o| floats(&o[0]))
        .map_err(|e| e.message)
}

#[test]
fn out_of_bounds_indices_name_kernel_param_and_index() {
    let e = run_one(|bb, x, y| {
        bb.for_(LoopKind::Parallel, 0, t(), |bb, i| {
            bb.store(y, i, ld(x, i + 1))
        });
    })
    .unwrap_err();
    assert!(
        e.contains("kernel #0 `k0` (map{test}), body0 section 0"),
        "{e}"
    );
    assert!(e.contains("index 4 of param `x` is out of bounds"), "{e}");
    assert!(
        e.contains("b0 `x` f32[T], which has 4 elements at this step"),
        "{e}"
    );
    // In bounds of the allocation (T <= 8) is not enough: the shape at this step counts.
    let e = run_one(|bb, x, y| bb.store(y, -1, ld(x, 0))).unwrap_err();
    assert!(e.contains("index -1 of param `y`"), "{e}");
}

#[test]
fn select_evaluates_both_arms() {
    let e = run_one(|bb, x, y| {
        bb.for_(LoopKind::Parallel, 0, t(), |bb, i| {
            let v = Expr::select((i + 1).lt(t()), ld(x, i + 1), Expr::f32(0.0));
            bb.store(y, i, v);
        });
    })
    .unwrap_err();
    assert!(e.contains("index 4 of param `x`"), "{e}");
}

#[test]
fn detects_parallel_races() {
    let e = run_one(|bb, x, y| {
        bb.for_(LoopKind::Parallel, 0, t(), |bb, i| bb.store(y, 0, ld(x, i)));
    })
    .unwrap_err();
    assert!(
        e.contains("breaks the parallel contract: iteration 1 writes element 0 of `y`"),
        "{e}"
    );

    // Reading what another iteration writes.
    let mut bb = BodyBuilder::new();
    let y = bb.param("y", DType::F32, Access::ReadWrite);
    bb.for_(LoopKind::Parallel, 0, t(), |bb, i| {
        bb.store(y, i, Expr::f32(1.0));
        bb.if_(Expr::int(0).lt(i.into()), |bb| {
            bb.store(y, i, ld(y, i - 1));
        });
    });
    let mut p = Builder::new("rw", &[("T", 8)]);
    let yb = p.buf("y", DType::F32, &["T"], BufferKind::Output { index: 0 });
    p.step(map("scan"), bb.finish(), &[yb]);
    let p = p.finish();
    let e = run_program(&p, &Weights::new(), &[], Syms::tokens(4)).unwrap_err();
    assert!(
        e.message
            .contains("iteration 1 reads element 0 of `y`, which iteration 0"),
        "{e}"
    );
    // Without the check the program runs (serially, so the scan happens to work).
    let mut interp = Interp::new(&p, &Weights::new()).unwrap();
    interp.set_race_check(false);
    assert!(interp.step(&[], Syms::tokens(4)).is_ok());
}

#[test]
fn int_division_of_negative_operands_is_an_error() {
    let e = run_one(|bb, x, y| {
        bb.for_(LoopKind::Parallel, 0, t(), |bb, i| {
            bb.store(y, (i - 1) / 2 + 1, ld(x, i));
        });
    })
    .unwrap_err();
    assert!(e.contains("with -1 / 2"), "{e}");
}

#[test]
fn unwritten_outputs_read_as_nan() {
    let y = run_one(|bb, x, y| {
        bb.for_(LoopKind::Parallel, 0, t() - 1, |bb, i| {
            bb.store(y, i, ld(x, i))
        });
    })
    .unwrap();
    assert_eq!(&y[..3], &[1.0, 2.0, 3.0]);
    assert!(y[3].is_nan());
}

#[test]
fn rejects_invalid_programs_with_the_verifier_message() {
    let mut p = map_program();
    p.kernels[1].kind = KernelKind::Other { op: "x".into() };
    p.kernels.swap(0, 1);
    let e = Interp::new(&p, &map_weights()).err().unwrap();
    assert!(
        e.message.starts_with("program @map is not valid Kernel IR"),
        "{e}"
    );
    assert!(
        e.message
            .contains("temp b2 `t` is read before any kernel writes it"),
        "{e}"
    );
}
