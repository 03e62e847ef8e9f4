//! `vector for` loops as 4×f32 SIMD.
//!
//! **Analysis.** Every expression in the loop gets a *shape*: a uniform f32 (same in every
//! lane, computed as a scalar and splatted where needed), a per-lane f32 (`F32X4`), an
//! *affine* int `c·i + rest` with `c` known at compile time and `rest` loop-invariant (kept
//! as its lane-0 scalar; `c = 0` is a uniform int), a per-lane comparison *mask*, or per-lane
//! ints loaded from an int buffer (only `f32()` may consume those). Loads by index shape:
//! `c = 1` → one unaligned `load.f32x4` (f16: `uload16x4` + inline conversion), `c = 0` →
//! scalar load (splatted when combined), other `c` → four scalar loads + `insertlane`.
//! Stores need `c = 1` and a float param. Reductions `acc = acc + e`, `acc = max(acc, e)`
//! (and `min`) into f32 locals defined outside the loop get vector accumulators.
//!
//! The loop runs serially, with a note, when it contains a loop or an `if`, stores with
//! another stride or into an int param, computes ints per lane (other than `c·i + rest`
//! addresses, `f32()` of those, and int loads fed to `f32()`), converts floats to ints per
//! lane, reads a reduction accumulator elsewhere, assigns an outer local other than by a
//! reduction, keeps a local that is read after the loop, or selects ints per lane. Loops with
//! a constant trip count below 4 run serially without a note.
//!
//! **Emission.** Without reductions: one vector per iteration. With reductions: 4
//! independent accumulators per reduction and the body unrolled 4× (16 elements per
//! iteration) so the adds of consecutive vectors do not wait on each other (2× for constant
//! trip counts 8..15); then single vectors into accumulator 0; then the accumulators are
//! combined pairwise, reduced horizontally, and folded into the local once; then a scalar
//! tail runs the last `(end - start) % 4` iterations with the scalar code. Accumulators start
//! at the operation's identity (`-0.0` for sums, so `-0.0` sums stay exact; ∓inf for
//! max/min). Constant trip counts pick the stages at compile time.

mod analyze;
mod emit;

use super::lower::{LResult, Lower};
use bfly_ir::DType;
use bfly_ir::kernel::{BinOp, Local, LoopVar, Stmt};
use cranelift_codegen::ir::{Type, Value};
use std::collections::BTreeMap;

/// What an expression is across the 4 lanes of one vector iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shape {
    /// An f32 equal in every lane (a scalar value, splatted where combined).
    UniF,
    /// An f32 per lane (`F32X4`).
    VecF,
    /// `c·i + rest`; the value held is lane 0's.
    Affine(i64),
    /// A per-lane 0/1 from a float comparison (`I32X4` all-ones / zero).
    Mask,
    /// Per-lane ints loaded from an int param (`I32X4`).
    IntLanes,
}

impl Shape {
    pub(super) fn is_float(self) -> bool {
        matches!(self, Shape::UniF | Shape::VecF)
    }
}

/// A reduction `acc = acc op e` (or `e op acc`).
pub(super) struct Reduction {
    pub local: Local,
    pub op: BinOp,
}

/// The analysis result: enough to recompute any expression's shape during emission.
pub(super) struct Plan {
    pub var: LoopVar,
    pub dtypes: Vec<DType>,
    pub names: Vec<String>,
    pub reductions: Vec<Reduction>,
    /// Locals defined by a `let` in the loop, by shape (ordered, so emission is
    /// deterministic).
    pub inner: BTreeMap<Local, Shape>,
    /// Types of the other locals the loop reads.
    pub outer: BTreeMap<Local, Type>,
}

/// Compiles `for var in start..end` (a `vector for`) with SIMD if the body allows it.
pub(super) fn vector_loop(
    lw: &mut Lower,
    var: LoopVar,
    start: Value,
    end: Value,
    trips: Option<i64>,
    body: &[Stmt],
) -> LResult<()> {
    if trips.is_some_and(|t| t < 4) {
        return lw.serial_loop(var, start, end, trips, body);
    }
    match analyze::analyze(lw, var, body) {
        Ok(plan) => emit::emit(lw, &plan, start, end, trips, body),
        Err(reason) => {
            lw.note(var, &reason);
            lw.serial_loop(var, start, end, trips, body)
        }
    }
}
