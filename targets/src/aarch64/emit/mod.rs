//! The typed emitter: every aarch64 instruction the microkernels use, as a method on
//! [`Asm`] taking typed registers. This module (and only it) invokes raw `dynasm!`, always
//! with `.arch aarch64`, into a `VecAssembler` — plain bytes, so the same code is produced on
//! any host (for `inspect`, snapshots and the QEMU legs) and is made executable only on
//! aarch64 (`code.rs`).
//!
//! Immediates are range-checked here before they reach dynasm (which would panic): an
//! out-of-range immediate records an error, emission continues, and [`Asm::finish`] returns
//! it, so the caller falls back to Cranelift for that section instead of crashing.
//!
//! ```text
//! mod.rs      Asm, registers, labels, comments, finish
//! int.rs      general-purpose integer ops, branches, constants, stack saves
//! mem.rs      vector/scalar loads and stores (offset, post-index, register, structures)
//! float.rs    f32 (.4s / scalar) and f16 (.8h) arithmetic and conversions
//! simd_int.rs integer SIMD: SDOT, widening multiplies, pairwise adds
//! shuffle.rs  TRN/ZIP/UZP/EXT, lane moves and broadcasts
//! ```

mod attention_ops;
mod butterfly_grad_ops;
mod float;
mod int;
pub mod mem;
mod shuffle;
mod simd_int;
mod small_ops;

use dynasmrt::aarch64::Aarch64Relocation;
use dynasmrt::{DynamicLabel, DynasmApi, VecAssembler};

pub use int::Cond;
pub use mem::Width;

/// A general-purpose register `x0..x30` (31 reads as `xzr` where the instruction allows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct X(pub u32);

/// A SIMD&FP register `v0..v31`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct V(pub u32);

/// The section ABI (`exec::runner`): `x0` = address of the `args` array (one buffer address
/// per body param), `x1` = address of `syms` (`T`, `B`, `pos`), `x2` = `lo`, `x3` = `hi`.
pub const ARGS: X = X(0);
pub const SYMS: X = X(1);
pub const LO: X = X(2);
pub const HI: X = X(3);
/// The intra-procedure-call scratch registers; the emitter itself uses `x17` to build
/// large immediates, so kernels must not keep values in it across an emitter call.
pub const IP0: X = X(16);
pub const IP1: X = X(17);
/// The zero register.
pub const XZR: X = X(31);

/// A branch target created by [`Asm::new_label`] and placed by [`Asm::bind`].
#[derive(Clone, Copy, Debug)]
pub struct Label(DynamicLabel);

/// Emitted machine code with its annotations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Code {
    pub bytes: Vec<u8>,
    /// `(byte offset, text)`: comments shown above the instruction at that offset in
    /// listings (`inspect --emit asm`).
    pub comments: Vec<(usize, String)>,
    /// `(name, byte offset)`: named positions, e.g. the hot loop's start and end for the
    /// llvm-mca script.
    pub marks: Vec<(String, usize)>,
}

impl Code {
    pub fn mark(&self, name: &str) -> Option<usize> {
        self.marks.iter().find(|(n, _)| n == name).map(|&(_, o)| o)
    }
}

/// An aarch64 assembler with typed, range-checked instruction methods.
pub struct Asm {
    pub(crate) ops: VecAssembler<Aarch64Relocation>,
    error: Option<String>,
    comments: Vec<(usize, String)>,
    marks: Vec<(String, usize)>,
}

impl Default for Asm {
    fn default() -> Asm {
        Asm::new()
    }
}

impl Asm {
    pub fn new() -> Asm {
        Asm {
            ops: VecAssembler::new(0),
            error: None,
            comments: Vec::new(),
            marks: Vec::new(),
        }
    }

    /// Bytes emitted so far.
    pub fn offset(&self) -> usize {
        self.ops.offset().0
    }

    /// A comment shown above the next instruction in listings.
    pub fn comment(&mut self, text: impl Into<String>) {
        let at = self.offset();
        self.comments.push((at, text.into()));
    }

    /// Names the current position (`hot_loop`, `hot_loop_end`).
    pub fn mark(&mut self, name: &str) {
        let at = self.offset();
        self.marks.push((name.to_string(), at));
    }

    pub fn new_label(&mut self) -> Label {
        Label(self.ops.new_dynamic_label())
    }

    /// Places `label` at the current position.
    pub fn bind(&mut self, label: Label) {
        let at = self.ops.offset();
        if self.ops.labels_mut().define_dynamic(label.0, at).is_err() {
            self.fail("label bound twice".to_string());
        }
    }

    /// Records the first emission error (an immediate out of range, a bad register); the
    /// offending instruction is not emitted.
    pub(crate) fn fail(&mut self, message: String) {
        if self.error.is_none() {
            self.error = Some(message);
        }
    }

    /// Checks a condition on operands; on failure records `what` and returns false.
    pub(crate) fn check(&mut self, ok: bool, what: impl FnOnce() -> String) -> bool {
        if !ok {
            self.fail(what());
        }
        ok
    }

    /// Emits one raw instruction word (for encodings dynasm's tables lack; each use says
    /// which).
    pub(crate) fn inst(&mut self, word: u32) {
        if self.check(true, String::new) {
            dynasmrt::dynasm!(self.ops ; .arch aarch64 ; .u32 word);
        }
    }

    /// Resolves labels and returns the code, or the first emission error.
    pub fn finish(mut self) -> Result<Code, String> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let bytes = self
            .ops
            .finalize()
            .map_err(|e| format!("resolving labels: {e}"))?;
        Ok(Code {
            bytes,
            comments: self.comments,
            marks: self.marks,
        })
    }
}

#[cfg(test)]
mod tests;
