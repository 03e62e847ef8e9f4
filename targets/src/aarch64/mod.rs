//! The aarch64 backend: dynasm-emitted NEON / dotprod / fp16 microkernels for the hot kernel
//! kinds, Cranelift's aarch64 code for the rest.
//!
//! ```text
//! emit/       typed instruction emitter over dynasmrt's VecAssembler (the only raw dynasm!)
//! kernels/    one module per microkernel family: strict matcher + emitter per variant
//! features.rs HWCAP detection (dotprod, fp16, i8mm) and the BFLY_AARCH64_FEATURES knob
//! program.rs  Aarch64Plan (emission, any host) and Aarch64Program (runs, aarch64 only)
//! code.rs     executable pages: RW → icache sync → RX, never both
//! disasm.rs   listings with yaxpeax-arm
//! ```
//!
//! The same emitter produces the same bytes on every host, so `bfly inspect --emit asm
//! --target aarch64+dotprod+fp16` and the golden listings work on x86; only
//! `Aarch64Program::compile` needs an aarch64 CPU.

pub mod code;
pub mod disasm;
pub mod emit;
pub mod features;
pub mod kernels;
pub mod program;

pub use features::{CpuFeatures, FEATURES_ENV};
pub use program::{Aarch64Plan, Aarch64Program, Fallback, MicroSection};
