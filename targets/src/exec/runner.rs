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

/// The native section ABI every JIT backend compiles to (see [`SectionRunner`]).
pub type SectionFn = unsafe extern "C" fn(*const usize, *const i64, i64, i64);

/// Calls the compiled section at address `entry` for iterations `lo..hi`.
///
/// The one place a backend's code address becomes a callable function: Cranelift's
/// `HostProgram` and the aarch64 microkernels share it.
///
/// # Safety
/// - `entry` is the start of finalized, executable machine code with exactly the
///   [`SectionFn`] signature in the host's C calling convention (it preserves the
///   callee-saved registers), and that code stays mapped for the whole call.
/// - The code reads at most `args.len()` addresses from `args` (one per body param: the
///   caller checked `args` against the body's param count) and the three values of `syms`.
/// - The [`SectionRunner::run_section`] contract holds for `args`, `syms`, `lo` and `hi`:
///   live, large enough, 16-byte aligned buffers, writes disjoint from other threads, and
///   `lo..hi` inside the section's range. The code touches exactly the elements the body's
///   section does.
#[allow(unsafe_code)]
pub unsafe fn call_section(entry: usize, args: &[usize], syms: &[i64; 3], lo: i64, hi: i64) {
    // SAFETY: `entry` is the start of code with the `SectionFn` signature that stays mapped
    // for the call (first point of this function's contract).
    let f = unsafe { std::mem::transmute::<usize, SectionFn>(entry) };
    // SAFETY: the arrays outlive the call and hold everything the code reads from them; the
    // memory behind the addresses is the caller's promise (second and third points).
    unsafe { f(args.as_ptr(), syms.as_ptr(), lo, hi) };
}
