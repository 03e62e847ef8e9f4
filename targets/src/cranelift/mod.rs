//! The host JIT backend: every Kernel IR body compiled with Cranelift for the machine we run
//! on (x86_64, aarch64, …), one native function per section.
//!
//! ```text
//! HostProgram::compile(&program)      // all bodies, one JITModule, one Context reused
//!   compile.rs   ISA + flags, module, helper symbols, per-section define, timing, texts
//!   lower.rs     Body → CLIF: loops, locals (`Variable`s), expressions, loads/stores
//!   vectorize/   `vector for` loops as 4×f32 SIMD: shapes of expressions (analyze.rs,
//!                ints known per lane in ints.rs), then 4-lane code (emit.rs)
//!   math.rs      exp / tanh inline (scalar and 4-lane), sin / cos inline in 4-lane code,
//!                log (and scalar sin / cos) as helper calls
//!   f16.rs       f16 ⇄ f32 conversions inline, bit-exact with the `half` crate
//!   scan.rs      read-only scans (used params, constants, local references)
//! ```
//!
//! **ABI.** Each section is `extern "C" fn(args: *const usize, syms: *const i64, lo: i64,
//! hi: i64)` in the host's default calling convention (`exec::runner`). Static dims are
//! constants in the code; `syms` (`T`, `B`, `pos`) are the only runtime values. A top-level
//! `parallel for` runs iterations `lo..hi` (the executor's share of the section range); other
//! sections ignore `lo`/`hi`. Indices are not bounds-checked: the executor sizes buffers.
//!
//! **Scalar semantics** (documented where the IR leaves a choice):
//! - float `min`/`max` are Cranelift's `fmin`/`fmax`: NaN if either operand is NaN, and
//!   `-0.0 < +0.0` (IEEE 754-2019 minimum/maximum). So a NaN never disappears in a max
//!   reduction, and min/max are exactly associative (vector reductions stay exact).
//! - int `/` and `%` truncate (`sdiv`, `x - (x / y)·y`); a divisor `<= 0` gives 0 instead of
//!   trapping (the IR only defines non-negative operands). Constant divisors are strength
//!   reduced by Cranelift.
//! - `round` is `nearest` (ties to even); `int()` is `fcvt_to_sint_sat` (truncating,
//!   saturating, NaN → 0); `f32()` is `fcvt_from_sint` (round to nearest).
//! - `select` evaluates both arms and picks (branch-free, in scalar and vector code), so a
//!   load in the untaken arm must be in bounds too — the contract the Kernel IR interpreter
//!   checks.
//! - `exp` and `tanh` are inline polynomials (`math`); `sin`/`cos` are inline polynomials
//!   in 4-lane code and the same operations in a Rust helper for scalar code (Rust's `f32`
//!   functions beyond |x| = 8192); `log` calls Rust's `f32::ln`. The scalar and 4-lane code
//!   of each are the same operations, so a vectorized loop gives bit-identical results to
//!   its serial form except for reassociated sums.
//!
//! **W^X.** cranelift-jit's default `SystemMemoryProvider` maps code pages read+write, copies
//! the code in, and `finalize_definitions` flips them to read+execute with `mprotect` (after
//! flushing the icache). Pages are never writable and executable at once. The memory is
//! freed when the `HostProgram` drops.

mod compile;
pub mod cross;
mod f16;
mod lower;
mod math;
/// The one f32 sin/cos every backend uses (the interpreter too): see [`bfly_ir::kernel::UnOp::Sin`].
pub(crate) use math::sin_cos_f32;
mod scan;
mod vectorize;

use crate::exec::SectionRunner;
use crate::exec::runner::call_section;
use bfly_ir::kernel::{BodyId, KernelProgram};
use cranelift_jit::JITModule;
use std::fmt;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// What the compiler keeps besides code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JitOptions {
    /// Make `clif_text` available (the functions are kept; the text is rendered on the
    /// first `clif_text` call).
    pub keep_clif: bool,
    /// Make `asm_text` available. The disassembly is produced lazily: the functions' CLIF
    /// is kept and compiled again with disassembly on the first `asm_text` call (the same
    /// ISA and flags give the same code), so compiling for execution does not pay for it.
    pub keep_asm: bool,
}

impl Default for JitOptions {
    fn default() -> JitOptions {
        JitOptions {
            keep_clif: true,
            keep_asm: true,
        }
    }
}

impl JitOptions {
    /// Code only: the fastest compile.
    pub fn code_only() -> JitOptions {
        JitOptions {
            keep_clif: false,
            keep_asm: false,
        }
    }
}

/// Why a program did not compile.
#[derive(Clone, Debug, PartialEq)]
pub enum JitError {
    /// Cranelift does not support this host.
    Host(String),
    /// The body is malformed (type mismatch, undefined local, bad param index, …).
    Body {
        body: BodyId,
        section: usize,
        message: String,
    },
    /// Cranelift rejected the function we built (a bug in this backend) or could not map
    /// memory for it.
    Codegen {
        body: BodyId,
        section: usize,
        message: String,
    },
    /// Making the code executable failed.
    Finalize(String),
    /// A JIT setting from the environment is malformed (e.g. `BFLY_JIT_THREADS=abc`).
    Setting(String),
}

impl fmt::Display for JitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JitError::Host(m) => write!(f, "cranelift: unsupported host: {m}"),
            JitError::Body {
                body,
                section,
                message,
            } => write!(f, "{body} section {section}: {message}"),
            JitError::Codegen {
                body,
                section,
                message,
            } => write!(f, "{body} section {section}: cranelift failed: {message}"),
            JitError::Finalize(m) => write!(f, "cranelift: finalizing code failed: {m}"),
            JitError::Setting(m) => write!(f, "cranelift: {m}"),
        }
    }
}

impl std::error::Error for JitError {}

/// One compiled function's texts, for `clif_text` / `asm_text`.
struct FuncText {
    header: String,
    /// The function as built (before Cranelift's optimizer), kept when `keep_clif` or
    /// `keep_asm` asks for texts: they are produced from it on demand.
    func: Option<cranelift_codegen::ir::Function>,
    keep_clif: bool,
    keep_asm: bool,
}

/// Every body of a program compiled for the host.
pub struct HostProgram {
    /// Entry address of `body b` section `s` at `entries[b][s]`. Kept as integers so the
    /// struct is `Send + Sync`; they stay valid while `_code` lives.
    /// `None` for a section compiled by another backend (`compile_except`).
    entries: Vec<Vec<Option<usize>>>,
    /// Param count per body: `run_section` refuses shorter `args`.
    params: Vec<usize>,
    notes: Vec<String>,
    texts: Vec<FuncText>,
    /// CLIF of each `texts` entry, rendered on the first `clif_text` call.
    clif: OnceLock<Vec<Option<String>>>,
    /// Disassembly of each `texts` entry, produced on the first `asm_text` call.
    asm: OnceLock<Vec<Option<String>>>,
    compile_time: Duration,
    code_bytes: usize,
    name: String,
    /// Owns the code pages (held for its `Drop`). Never locked: the `Mutex` only makes the
    /// (`Send`, not `Sync`) module shareable.
    _code: Mutex<CodeMemory>,
}

/// The JIT module that owns a program's code pages; frees them when dropped (cranelift-jit
/// itself leaks them for the life of the process). `None` only while dropping.
struct CodeMemory(Option<JITModule>);

impl Drop for CodeMemory {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if let Some(module) = self.0.take() {
            // SAFETY: function pointers into this module are handed out only as
            // `HostProgram::entries`, created after the last fallible step of `compile` and
            // dropped together with this guard (its owner's `&mut self` drop means no
            // section is running or can be called); on an error path none exist.
            unsafe { module.free_memory() };
        }
    }
}

impl HostProgram {
    /// Compiles every body of `program` (identical kernels share a body, so each body
    /// compiles once), keeping the CLIF and disassembly for inspection.
    pub fn compile(program: &KernelProgram) -> Result<HostProgram, JitError> {
        HostProgram::compile_with(program, JitOptions::default())
    }

    pub fn compile_with(
        program: &KernelProgram,
        options: JitOptions,
    ) -> Result<HostProgram, JitError> {
        compile::compile(program, options, &|_, _| false)
    }

    /// As [`HostProgram::compile_with`], but leaves out the sections `skip` names: the
    /// aarch64 backend runs its microkernels there, so compiling them too would only cost
    /// load time. Running a skipped section through this program runs nothing.
    pub fn compile_except(
        program: &KernelProgram,
        options: JitOptions,
        skip: &dyn Fn(BodyId, usize) -> bool,
    ) -> Result<HostProgram, JitError> {
        compile::compile(program, options, skip)
    }

    /// Why some `vector for` loops run serially (`body3 section 0: vector loop i4 runs
    /// serially: <reason>`), in compile order.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Each function's CLIF as built (before Cranelift's optimizer), after a
    /// `; body3 section 0` header. Empty when `keep_clif` was off.
    pub fn clif_text(&self) -> String {
        let clif = self.clif.get_or_init(|| {
            self.texts
                .iter()
                .map(|t| {
                    let f = t.func.as_ref().filter(|_| t.keep_clif)?;
                    Some(f.display().to_string())
                })
                .collect()
        });
        self.text(clif)
    }

    /// Cranelift's disassembly of each function (register-allocated machine code with
    /// block labels, no addresses), after a `; body3 section 0` header. Empty when
    /// `keep_asm` was off. The first call compiles the kept functions again with
    /// disassembly on (see [`JitOptions::keep_asm`]).
    pub fn asm_text(&self) -> String {
        let asm = self.asm.get_or_init(|| compile::disassemble(&self.texts));
        self.text(asm)
    }

    /// Each function's text (when it has one) after its header.
    fn text(&self, texts: &[Option<String>]) -> String {
        let mut out = String::new();
        for (t, s) in self.texts.iter().zip(texts) {
            push_text(&mut out, &t.header, s.as_deref());
        }
        out
    }

    /// Wall time of `compile` (ISA setup, translation, Cranelift, finalization).
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// Machine-code bytes of all functions.
    pub fn code_bytes(&self) -> usize {
        self.code_bytes
    }

    /// Number of compiled functions (sections over all bodies).
    pub fn num_functions(&self) -> usize {
        self.entries
            .iter()
            .flatten()
            .filter(|e| e.is_some())
            .count()
    }

    /// Params of `body` (how many buffer addresses its sections read); `usize::MAX` for
    /// an unknown body, so no `args` array passes the check.
    pub fn param_count(&self, body: BodyId) -> usize {
        self.params
            .get(body.0 as usize)
            .copied()
            .unwrap_or(usize::MAX)
    }

    fn entry(&self, body: BodyId, section: usize, nargs: usize) -> Option<usize> {
        let b = body.0 as usize;
        if nargs < *self.params.get(b)? {
            return None;
        }
        self.entries.get(b)?.get(section).copied().flatten()
    }
}

/// Appends `; header`, the text and a blank line (nothing when `text` is `None`).
fn push_text(out: &mut String, header: &str, text: Option<&str>) {
    if let Some(s) = text {
        out.push_str(&format!("; {header}\n"));
        out.push_str(s);
        if !s.ends_with('\n') {
            out.push('\n');
        }
        out.push('\n');
    }
}

impl SectionRunner for HostProgram {
    fn name(&self) -> String {
        self.name.clone()
    }

    // SAFETY (of the impl): the caller upholds the trait contract (live, large enough,
    // 16-byte aligned buffers; disjoint writes across threads; `lo..hi` inside the range).
    #[allow(unsafe_code)]
    unsafe fn run_section(
        &self,
        body: BodyId,
        section: usize,
        args: &[usize],
        syms: &[i64; 3],
        lo: i64,
        hi: i64,
    ) {
        let Some(addr) = self.entry(body, section, args.len()) else {
            // An unknown body/section or too few args is a caller bug; running nothing is
            // the only safe answer (the trait has no error channel).
            debug_assert!(
                false,
                "{body} section {section}: no function for these args"
            );
            return;
        };
        // SAFETY: `addr` is the finalized entry of a function Cranelift compiled with exactly
        // the `SectionFn` signature in the host's default (C) calling convention; its code
        // pages live as long as `self._code`, which outlives this call because we hold
        // `&self`. `args` has at least one address per param (checked in `entry`); the memory
        // those addresses point to is the caller's promise (see the trait).
        unsafe { call_section(addr, args, syms, lo, hi) };
    }
}
