//! The executor against the interpreter, before any JIT: a test backend runs each section
//! with the interpreter's `Machine` directly on the executor's memory (raw addresses, as
//! compiled code does). Any mistake in the memory plan (overlapping live buffers), the
//! address computation, the chunking or the barriers shows up as a difference from the
//! interpreter, whose buffers are separate `Vec`s.

mod exec_programs;

use bfly_ir::kernel::{BodyId, KernelProgram};
use bfly_targets::exec::{Executor, Syms};
use bfly_targets::interp::Interp;
use bfly_targets::reference::{Tensor, Weights};
use exec_programs::raw::{RawRunner, bits};
use exec_programs::*;
use std::sync::{Arc, Mutex};

fn executor(program: &KernelProgram, weights: &Weights, threads: usize) -> Executor {
    let program = Arc::new(program.clone());
    let runner = RawRunner::new(&program);
    Executor::new(program, runner, weights, threads).unwrap()
}

#[test]
fn matches_the_interpreter_bit_for_bit_on_any_thread_count() {
    let cases: Vec<(KernelProgram, Weights, Vec<Tensor>, Syms)> = vec![
        (
            map_program(),
            map_weights(),
            vec![map_input(13)],
            Syms::tokens(13),
        ),
        (
            kv_program(16),
            kv_weights(),
            vec![Tensor::tokens(&[1, 5, 9, 2, 0, 10, 3])],
            Syms::tokens(7),
        ),
        (
            train_program(),
            train_weights(),
            train_batch(3, 7),
            Syms::batch(3, 7),
        ),
        (
            quant_program(),
            quant_weights(),
            vec![quant_input(6)],
            Syms::tokens(6),
        ),
    ];
    for (program, weights, inputs, syms) in cases {
        let want = Interp::new(&program, &weights)
            .unwrap()
            .step(&inputs, syms)
            .unwrap();
        for threads in 1..=4 {
            let mut ex = executor(&program, &weights, threads);
            assert_eq!(ex.threads(), threads);
            let got = ex.step(&inputs, syms).unwrap();
            assert_eq!(
                bits(&got),
                bits(&want),
                "{} on {threads} threads",
                program.name
            );
            assert_eq!(
                got.iter().map(|t| &t.shape).collect::<Vec<_>>(),
                want.iter().map(|t| &t.shape).collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn decode_steps_keep_the_kv_cache() {
    let p = kv_program(8);
    let w = kv_weights();
    let tokens = [3u32, 1, 4, 1, 5, 9];
    let mut interp = Interp::new(&p, &w).unwrap();
    let prefill = interp
        .step(&[Tensor::tokens(&tokens)], Syms::tokens(6))
        .unwrap();
    let prefill = prefill[0].floats().unwrap().to_vec();
    for threads in [1, 3] {
        let mut ex = executor(&p, &w, threads);
        for round in 0..2 {
            let mut got = Vec::new();
            let first = ex
                .step(&[Tensor::tokens(&tokens[..3])], Syms::decode(3, 0))
                .unwrap();
            got.extend_from_slice(first[0].floats().unwrap());
            for (i, &t) in tokens.iter().enumerate().skip(3) {
                let out = ex
                    .step(&[Tensor::tokens(&[t])], Syms::decode(1, i))
                    .unwrap();
                got.extend_from_slice(out[0].floats().unwrap());
            }
            assert_eq!(got, prefill, "threads {threads}, round {round}");
            ex.reset_state();
        }
        let e = ex
            .step(&[Tensor::tokens(&[1, 2])], Syms::decode(2, 7))
            .unwrap_err();
        assert!(e.message.contains("exceeds the KV cache of 8 rows"), "{e}");
        let e = ex
            .step(&[Tensor::tokens(&[99])], Syms::decode(1, 0))
            .unwrap_err();
        assert!(e.message.contains("is out of range 0..11"), "{e}");
    }
}

#[test]
fn training_steps_update_params_identically() {
    let p = train_program();
    let w = train_weights();
    let mut interp = Interp::new(&p, &w).unwrap();
    let mut exs: Vec<Executor> = [1, 2, 4].iter().map(|&n| executor(&p, &w, n)).collect();
    for step in 0..6 {
        let batch = train_batch(1 + step % 4, 8 - step);
        let syms = Syms::batch(1 + step % 4, 8 - step);
        let want = interp.step(&batch, syms).unwrap();
        for ex in &mut exs {
            let got = ex.step(&batch, syms).unwrap();
            assert_eq!(
                bits(&got),
                bits(&want),
                "step {step}, {} threads",
                ex.threads()
            );
            assert_eq!(ex.param_f32("w"), interp.param("w"));
        }
    }
    let ex = &mut exs[0];
    ex.set_param("w", &[1.0, 2.0, 3.0, 4.0]).unwrap();
    assert_eq!(ex.param_f32("w").unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
    assert!(ex.set_param("w", &[1.0]).is_err());
    assert!(ex.param_f32("nope").is_none());
    let e = ex.step(&train_batch(5, 2), Syms::batch(5, 2)).unwrap_err();
    assert!(e.message.contains("B = 5 is outside 1..=4"), "{e}");
}

#[test]
fn load_phase_results_follow_set_param() {
    let p = quant_program();
    let w = quant_weights();
    let x = vec![quant_input(2)];
    let mut ex = executor(&p, &w, 2);
    let before = ex.step(&x, Syms::tokens(2)).unwrap();
    let doubled: Vec<f32> = ex.param_f32("w").unwrap().iter().map(|v| v * 2.0).collect();
    ex.set_param("w", &doubled).unwrap();
    let after = ex.step(&x, Syms::tokens(2)).unwrap();
    let (b, a) = (before[0].floats().unwrap(), after[0].floats().unwrap());
    for (b, a) in b.iter().zip(a) {
        assert!(
            (a - 2.0 * b).abs() <= 1e-5 * b.abs().max(1.0),
            "{a} vs 2 × {b}"
        );
    }
    // State written by the load phase survives a reset (only step state is cleared).
    ex.reset_state();
    assert_eq!(bits(&ex.step(&x, Syms::tokens(2)).unwrap()), bits(&after));
}

#[test]
fn parallel_sections_split_into_contiguous_chunks() {
    let program = Arc::new(map_program());
    let runner = RawRunner::new(&program);
    let mut ex = Executor::new(Arc::clone(&program), runner.clone(), &map_weights(), 3).unwrap();
    ex.step(&[map_input(8)], Syms::tokens(8)).unwrap();
    let mut calls = runner.calls.lock().unwrap().clone();
    calls.sort();
    let (b0, b1) = (BodyId(0), BodyId(1));
    assert_eq!(
        calls,
        vec![
            // 0..T·4 = 0..32 in three chunks.
            (b0, 0, 0, 10),
            (b0, 0, 10, 21),
            (b0, 0, 21, 32),
            (b1, 0, 0, 2),
            (b1, 0, 2, 5),
            (b1, 0, 5, 8),
            // The serial section runs once, on the caller.
            (b1, 1, 0, 0),
        ]
    );
    runner.calls.lock().unwrap().clear();
    ex.step(&[map_input(2)], Syms::tokens(2)).unwrap();
    let mut calls = runner.calls.lock().unwrap().clone();
    calls.sort();
    assert_eq!(
        calls,
        vec![
            (b0, 0, 0, 2),
            (b0, 0, 2, 5),
            (b0, 0, 5, 8),
            (b1, 0, 0, 1),
            (b1, 0, 1, 2),
            (b1, 1, 0, 0)
        ]
    );
}

#[test]
fn profiles_kernels_when_asked() {
    let mut ex = executor(&train_program(), &train_weights(), 2);
    let batch = train_batch(2, 2);
    ex.step(&batch, Syms::batch(2, 2)).unwrap();
    assert!(ex.profile().is_empty());
    ex.set_profiling(true);
    ex.step(&batch, Syms::batch(2, 2)).unwrap();
    ex.step(&batch, Syms::batch(2, 2)).unwrap();
    let prof = ex.profile();
    let names: Vec<(&str, &str, u64)> = prof
        .iter()
        .map(|(n, f, _, c)| (n.as_str(), f.as_str(), *c))
        .collect();
    assert_eq!(
        names,
        vec![
            ("k0", "gemm", 2),
            ("k1", "backward.gemm", 2),
            ("k2", "optimizer.sgd", 2)
        ]
    );
    ex.reset_profile();
    assert!(ex.profile().is_empty());
    assert_eq!(ex.backend(), "raw interpreter");
}

#[test]
fn a_panicking_backend_is_an_error() {
    let program = Arc::new(map_program());
    let runner = Arc::new(RawRunner {
        program: Arc::clone(&program),
        calls: Mutex::new(Vec::new()),
        panic_on_worker_chunk: true,
    });
    let mut ex = Executor::new(program, runner, &map_weights(), 2).unwrap();
    let e = ex.step(&[map_input(8)], Syms::tokens(8)).unwrap_err();
    assert!(
        e.message.contains("the raw interpreter backend panicked"),
        "{e}"
    );
}

#[test]
fn rejects_bad_programs_and_weights() {
    let program = Arc::new(map_program());
    let runner = RawRunner::new(&program);
    let e = Executor::new(Arc::clone(&program), runner.clone(), &Weights::new(), 1)
        .err()
        .unwrap();
    assert_eq!(e.message, "no value for param @w");
    let mut w = map_weights();
    w.insert("w".into(), Tensor::f32(vec![5], vec![0.0; 5]));
    let e = Executor::new(Arc::clone(&program), runner.clone(), &w, 1)
        .err()
        .unwrap();
    assert!(e.message.contains("weight @w has shape [5]"), "{e}");
    let mut bad = map_program();
    bad.kernels.swap(0, 1);
    let e = Executor::new(Arc::new(bad), runner, &map_weights(), 1)
        .err()
        .unwrap();
    assert!(e.message.contains("is not valid Kernel IR"), "{e}");
}
