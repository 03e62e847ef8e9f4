//! The memory plan on every golden model (inference and training programs): live buffers
//! never share bytes, and running in the planned arena (through the raw test backend)
//! gives bit for bit what the interpreter gives with a separate `Vec` per buffer.

mod exec_golden;
mod exec_programs;
mod lower_common;

use bfly_compiler::Mode;
use bfly_ir::kernel::BufferKind;
use bfly_targets::exec::{Executor, Syms};
use bfly_targets::interp::Interp;
use bfly_targets::plan::{ALIGN, MemoryPlan, Region, plan_memory};
use exec_golden::golden;
use exec_programs::raw::{RawRunner, bits};
use lower_common::golden_specs;
use std::sync::Arc;

fn check_no_overlap(stem: &str, plan: &MemoryPlan) {
    let temps: Vec<_> = plan
        .buffers
        .iter()
        .filter(|b| b.region == Region::Arena && b.live.is_some() && b.bytes > 0)
        .collect();
    for (i, a) in temps.iter().enumerate() {
        assert_eq!(a.offset % ALIGN, 0);
        assert!(
            a.offset + a.bytes <= plan.arena_bytes(),
            "{stem}: {a:?} past the arena"
        );
        for b in &temps[i + 1..] {
            let (af, al) = a.live.unwrap_or_default();
            let (bf, bl) = b.live.unwrap_or_default();
            if af <= bl && bf <= al {
                assert!(
                    a.offset + a.bytes <= b.offset || b.offset + b.bytes <= a.offset,
                    "{stem}: {a:?} and {b:?} are live together and overlap"
                );
            }
        }
    }
}

#[test]
fn every_golden_plan_keeps_live_buffers_apart() {
    for (stem, _, _) in golden_specs() {
        for mode in [Mode::Infer, Mode::Train] {
            let g = golden(&stem, mode);
            let plan = plan_memory(&g.program).unwrap_or_else(|e| panic!("{stem}: {e}"));
            check_no_overlap(&stem, &plan);
            assert!(plan.arena_bytes() <= plan.temp_bytes);
            let params: u64 = g
                .program
                .buffers
                .iter()
                .filter(|b| matches!(b.kind, BufferKind::Param { .. }))
                .map(|b| plan.buffers[b.id.0 as usize].bytes)
                .sum();
            assert!(plan.param_bytes() >= params);
            let text = plan.render(&g.program);
            assert!(text.contains("arena (peak)"), "{stem}: {text}");
        }
    }
}

#[test]
fn the_arena_reuses_memory() {
    let g = golden("tiny-dib", Mode::Train);
    let plan = plan_memory(&g.program).unwrap();
    assert!(
        plan.arena_bytes() * 2 < plan.temp_bytes,
        "arena {} of {} temp bytes",
        plan.arena_bytes(),
        plan.temp_bytes
    );
}

/// The planned arena against separate buffers, on real lowered programs.
#[test]
fn golden_programs_run_the_same_in_the_arena() {
    for stem in ["tiny-dense", "tiny-quant"] {
        let g = golden(stem, Mode::Infer);
        let program = Arc::new(g.program.clone());
        let mut interp = Interp::new(&g.program, &g.weights).unwrap();
        interp.set_race_check(false);
        let mut ex = Executor::new(
            Arc::clone(&program),
            RawRunner::new(&program),
            &g.weights,
            3,
        )
        .unwrap_or_else(|e| panic!("{stem}: {e}"));
        let prompt = g.tokens(5, 3);
        let want = interp.step(&prompt, Syms::tokens(5)).unwrap();
        let got = ex.step(&prompt, Syms::tokens(5)).unwrap();
        assert_eq!(bits(&got), bits(&want), "{stem} prefill");
        let next = g.tokens(1, 4);
        let want = interp.step(&next, Syms::decode(1, 5)).unwrap();
        let got = ex.step(&next, Syms::decode(1, 5)).unwrap();
        assert_eq!(bits(&got), bits(&want), "{stem} decode");
    }
    let g = golden("tiny-dense", Mode::Train);
    let program = Arc::new(g.program.clone());
    let mut interp = Interp::new(&g.program, &g.weights).unwrap();
    interp.set_race_check(false);
    let mut ex = Executor::new(
        Arc::clone(&program),
        RawRunner::new(&program),
        &g.weights,
        2,
    )
    .unwrap();
    for step in 0..2 {
        let (inputs, syms) = g.batch(2, 3, step);
        let want = interp.step(&inputs, syms).unwrap();
        let got = ex.step(&inputs, syms).unwrap();
        assert_eq!(bits(&got), bits(&want), "training step {step}");
    }
    for name in g.params() {
        assert_eq!(ex.param_f32(&name), interp.param(&name), "@{name}");
    }
}
