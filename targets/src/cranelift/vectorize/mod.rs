//! `vector for` loops as 4×f32 SIMD.
//!
//! **Analysis.** Every expression in the loop gets a *shape*: a uniform f32 (same in every
//! lane, computed as a scalar and splatted where needed), a per-lane f32 (`F32X4`), an int
//! *known per lane* (`ints`: lane l = lane 0 + a compile-time offset; uniform ints, `c·i +
//! rest`, and `/`, `%` by constants when lane 0's residue makes them exact, e.g. butterfly
//! pairs `2·i - i % s`; the value held is lane 0's), a per-lane comparison *mask* (of floats,
//! or of ints known per lane such as a one-hot `i == target`), or per-lane ints loaded from
//! an int param (only `f32()` may consume those). Loads by lane offsets: `[0, 1, 2, 3]` → one
//! unaligned `load.f32x4` (f16: `uload16x4` + inline conversion), all equal → one scalar load
//! (splatted when combined), f32 `[0, 2, 4, 6]` (interleaved pairs such as rope's cos/sin
//! table) → two vector loads and one de-interleaving shuffle, anything else → four scalar
//! loads + `insertlane`. Stores to a
//! float param: `[0, 1, 2, 3]` → one vector store, other patterns (strides, butterfly pairs)
//! → four scalar stores in lane order, which the IR's independent iterations allow.
//! Reductions `acc = acc + e`, `acc = max(acc, e)` (and `min`) into f32 locals defined
//! outside the loop get vector accumulators.
//!
//! The loop runs serially, with a note, when it contains a loop or an `if`, stores to a
//! loop-invariant index or into an int param, computes ints per lane that are not known per
//! lane at compile time (a product with the loop var by a runtime value, `%` whose lanes
//! wrap differently per iteration, int loads used other than through `f32()`), converts
//! floats to ints per lane, reduces ints, reads a reduction accumulator elsewhere, assigns an
//! outer local other than by a reduction, keeps a local that is read after the loop, or
//! selects ints per lane. Loops with a constant trip count below 4 run serially without a
//! note.
//!
//! **Emission.** Without reductions: one vector per iteration, except copy-like bodies (at
//! most two stores of at most 6 float operations in all, e.g. embed, concat, an elementwise
//! add) with 16 or more (or unknown) trips, which are unrolled 4× like reductions, then a
//! single-vector loop and the scalar tail. With reductions: 4
//! independent accumulators per reduction and the body unrolled 4× (16 elements per
//! iteration) so the adds of consecutive vectors do not wait on each other (2× for constant
//! trip counts 8..15); then single vectors into accumulator 0; then the accumulators are
//! combined pairwise, reduced horizontally, and folded into the local once; then a scalar
//! tail runs the last `(end - start) % 4` iterations with the scalar code. Accumulators start
//! at the operation's identity (`-0.0` for sums, so `-0.0` sums stay exact; ∓inf for
//! max/min). Constant trip counts pick the stages at compile time.

mod analyze;
mod emit;
mod ints;

use super::lower::{LResult, Lower};
use bfly_ir::DType;
use bfly_ir::kernel::{BinOp, Local, LoopVar, Stmt};
use cranelift_codegen::ir::{Type, Value};
use ints::Ints;
use std::collections::BTreeMap;

/// What an expression is across the 4 lanes of one vector iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// An f32 equal in every lane (a scalar value, splatted where combined).
    UniF,
    /// An f32 per lane (`F32X4`).
    VecF,
    /// An int known per lane relative to lane 0 (uniform, `c·i + rest`, butterfly pair
    /// patterns, see `ints`); the value held is lane 0's.
    Int(Ints),
    /// A per-lane 0/1 from a float comparison (`I32X4` all-ones / zero).
    Mask,
    /// Per-lane ints loaded from an int param (`I32X4`).
    IntLanes,
}

impl Shape {
    fn is_float(self) -> bool {
        matches!(self, Shape::UniF | Shape::VecF)
    }
}

/// A reduction `acc = acc op e` (or `e op acc`).
struct Reduction {
    local: Local,
    op: BinOp,
}

/// The analysis result: enough to recompute any expression's shape during emission.
struct Plan {
    var: LoopVar,
    /// The loop var's lanes (lane 0's residue mod 4 is known for a constant start).
    var_ints: Ints,
    dtypes: Vec<DType>,
    names: Vec<String>,
    reductions: Vec<Reduction>,
    /// Locals defined by a `let` in the loop, by shape (ordered, so emission is
    /// deterministic).
    inner: BTreeMap<Local, Shape>,
    /// Types of the other locals the loop reads.
    outer: BTreeMap<Local, Type>,
}

/// Compiles `for var in start..end` (a `vector for`) with SIMD if the body allows it;
/// `start_const` is the start's value when it is a compile-time constant.
pub(super) fn vector_loop(
    lw: &mut Lower,
    var: LoopVar,
    start_const: Option<i64>,
    start: Value,
    end: Value,
    trips: Option<i64>,
    body: &[Stmt],
) -> LResult<()> {
    if trips.is_some_and(|t| t < 4) {
        return lw.serial_loop(var, start, end, trips, body);
    }
    match analyze::analyze(lw, var, start_const, body) {
        Ok(plan) => emit::emit(lw, &plan, start, end, trips, body),
        Err(reason) => {
            lw.note(var, &reason);
            lw.serial_loop(var, start, end, trips, body)
        }
    }
}
