//! Determinism of the threaded executor with compiled code: golden models (inference
//! prefill and decode, training steps) give bit-identical results on 1, 2, 3 and 4
//! threads, since threads only split parallel loops whose iterations are independent.
//! The compiled results also stay close to the interpreter's.

mod exec_golden;
mod exec_programs;
mod lower_common;

use bfly_compiler::Mode;
use bfly_targets::cranelift::HostProgram;
use bfly_targets::exec::{Executor, Syms};
use bfly_targets::interp::Interp;
use bfly_targets::reference::Tensor;
use exec_golden::{Golden, golden};
use exec_programs::raw::bits;
use std::sync::Arc;

fn executors(g: &Golden) -> Vec<Executor> {
    let program = Arc::new(g.program.clone());
    let jit =
        Arc::new(HostProgram::compile(&program).unwrap_or_else(|e| panic!("{}: {e}", g.stem)));
    (1..=4)
        .map(|threads| {
            Executor::new(Arc::clone(&program), jit.clone(), &g.weights, threads)
                .unwrap_or_else(|e| panic!("{}: {e}", g.stem))
        })
        .collect()
}

fn floats(t: &Tensor) -> &[f64] {
    t.floats().expect("float output")
}

#[test]
fn inference_is_bit_identical_on_any_thread_count() {
    for stem in ["tiny-dib", "tiny-dense"] {
        let g = golden(stem, Mode::Infer);
        let mut exs = executors(&g);
        let mut interp = Interp::new(&g.program, &g.weights).unwrap();
        interp.set_race_check(false);
        let steps = [
            (g.tokens(7, 1), Syms::tokens(7)),
            (g.tokens(1, 2), Syms::decode(1, 7)),
        ];
        for (i, (inputs, syms)) in steps.iter().enumerate() {
            let outs: Vec<Vec<Tensor>> = exs
                .iter_mut()
                .map(|ex| {
                    ex.step(inputs, *syms)
                        .unwrap_or_else(|e| panic!("{stem}: {e}"))
                })
                .collect();
            for (n, o) in outs.iter().enumerate().skip(1) {
                assert_eq!(
                    bits(o),
                    bits(&outs[0]),
                    "{stem} step {i}: {} threads vs 1",
                    n + 1
                );
            }
            let want = interp.step(inputs, *syms).unwrap();
            let (w, got) = (floats(&want[0]), floats(&outs[0][0]));
            let scale = w.iter().fold(1f64, |m, v| m.max(v.abs()));
            let err = w
                .iter()
                .zip(got)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(
                err <= 1e-4 * scale,
                "{stem} step {i}: compiled vs interpreted {err:e}"
            );
        }
    }
}

#[test]
fn training_is_bit_identical_on_any_thread_count() {
    for stem in ["tiny-dib", "tiny-dense"] {
        let g = golden(stem, Mode::Train);
        let mut exs = executors(&g);
        for step in 0..2 {
            let (inputs, syms) = g.batch(2, 5, step);
            let outs: Vec<Vec<Tensor>> = exs
                .iter_mut()
                .map(|ex| {
                    ex.step(&inputs, syms)
                        .unwrap_or_else(|e| panic!("{stem}: {e}"))
                })
                .collect();
            for (n, o) in outs.iter().enumerate().skip(1) {
                assert_eq!(
                    bits(o),
                    bits(&outs[0]),
                    "{stem} step {step}: {} threads",
                    n + 1
                );
            }
        }
        for name in g.params() {
            let first = exs[0].param_f32(&name);
            for ex in &exs[1..] {
                let same = ex
                    .param_f32(&name)
                    .map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
                    == first
                        .as_ref()
                        .map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
                assert!(same, "{stem} @{name} differs on {} threads", ex.threads());
            }
        }
    }
}
