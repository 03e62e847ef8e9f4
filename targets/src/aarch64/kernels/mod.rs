//! The microkernels: hand-scheduled NEON code for the hot kernel kinds, each replacing one
//! section of a Kernel IR body with exactly the same effect on memory.
//!
//! Contract of every family's `try_emit(&SectionCtx) -> Selection`:
//! - `NotMine` when the kernel kind is not the family's (the next family is asked);
//! - `Declined(reason)` when it is, but this body/section/feature set is not a form the
//!   microkernel implements (the section then runs Cranelift's code, and `inspect` lists the
//!   reason). Matching is strict — the body's statements, index expressions and constants
//!   are checked, not just the descriptor — because a false match computes wrong values;
//! - `Emitted(Microkernel)`: a complete function with the section ABI (`emit::ARGS`, `SYMS`,
//!   `LO`, `HI`; see `exec::runner`) that performs iterations `lo..hi` of the section's
//!   parallel loop (all of a non-parallel section), preserves callee-saved registers, and
//!   returns.
//!
//! Every microkernel is differential-tested against the reference on random shapes under
//! QEMU (`targets/tests/aarch64_*.rs`) on a CPU with and without dotprod/fp16.

pub mod attention;
pub mod butterfly;
pub mod butterfly_grad;
mod common;
pub mod copy;
pub mod gemm;
pub mod gemm_grad;
mod neon_math;
pub mod qgemm;
pub mod quantize;
pub mod rope;
pub mod rows;
mod section_match;

use super::emit::Code;
use super::features::CpuFeatures;
use bfly_ir::kernel::{Body, Kernel, KernelProgram};

/// What a family sees of one section.
pub struct SectionCtx<'a> {
    pub program: &'a KernelProgram,
    /// The first kernel that runs this body (bodies are shared by identical kernels; the
    /// body alone defines what the section computes).
    pub kernel: &'a Kernel,
    pub body: &'a Body,
    pub section: usize,
    pub features: CpuFeatures,
}

/// An emitted microkernel.
#[derive(Clone, Debug, PartialEq)]
pub struct Microkernel {
    /// Variant name (`gemm.f32.dot 4x5`, `qgemm.i8.sdot 4x4`).
    pub name: String,
    /// The register-tile comment printed atop its listing: what lives in which registers
    /// and how one inner iteration is scheduled.
    pub tile: String,
    pub code: Code,
    /// Useful arithmetic vector instructions (FMLA/SDOT/…) per iteration of the hot loop
    /// (the `hot_loop`..`hot_loop_end` marks), for the llvm-mca efficiency script; 0 when
    /// the kernel has no such loop.
    pub useful_per_iter: u32,
}

/// A family's answer for one section.
#[derive(Clone, Debug, PartialEq)]
pub enum Selection {
    NotMine,
    Declined(String),
    Emitted(Microkernel),
}

/// One family: its name (for reports) and its matcher/emitter.
type Family = (&'static str, fn(&SectionCtx) -> Selection);

/// The families, asked in order.
const FAMILIES: &[Family] = &[
    ("gemm", gemm::try_emit),
    ("gemm_grad", gemm_grad::try_emit),
    ("qgemm", qgemm::try_emit),
    ("butterfly_grad", butterfly_grad::try_emit),
    ("butterfly", butterfly::try_emit),
    ("rows", rows::try_emit),
    ("attention", attention::try_emit),
    ("quantize", quantize::try_emit),
    ("rope", rope::try_emit),
    ("copy", copy::try_emit),
];

/// Asks each family in turn; `NotMine` from all means no microkernel exists for this kind.
pub fn select(ctx: &SectionCtx) -> Selection {
    for (_, family) in FAMILIES {
        match family(ctx) {
            Selection::NotMine => continue,
            other => return other,
        }
    }
    Selection::NotMine
}

/// The names of the families that have microkernels (for `inspect`).
pub fn family_names() -> Vec<&'static str> {
    FAMILIES.iter().map(|(n, _)| *n).collect()
}
