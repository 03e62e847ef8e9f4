//! The call boundary between the executor and a JIT backend.

use bfly_ir::kernel::BodyId;

/// Compiled code for every body of a program, one function per section.
///
/// Backends (Cranelift on any host, dynasm on aarch64) compile each body's sections to
/// `extern "C" fn(args: *const usize, syms: *const i64, lo: i64, hi: i64)`: `args` holds one
/// buffer address per body param, `syms` the runtime symbols in `RtSym::slot` order, and a
/// parallel section runs iterations `lo..hi` of its loop (other sections ignore them).
pub trait SectionRunner: Send + Sync {
    /// The backend's name for reports (`cranelift x86_64`, `aarch64 neon+dotprod`).
    fn name(&self) -> String;

    /// Runs iterations `lo..hi` of section `section` of `body`.
    ///
    /// # Safety
    /// Each `args[i]` must be the address of a live allocation, aligned to 16 bytes, large
    /// enough for every element the body addresses through param `i` when the symbols take
    /// the values in `syms` (the memory plan sizes buffers at the symbols' bounds; the
    /// executor checks `syms` against them), and no other thread may access the elements
    /// this call writes. `lo..hi` must lie within the section's range.
    #[allow(unsafe_code)]
    unsafe fn run_section(
        &self,
        body: BodyId,
        section: usize,
        args: &[usize],
        syms: &[i64; 3],
        lo: i64,
        hi: i64,
    );
}
