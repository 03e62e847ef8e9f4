//! Module and JIT setup, then one Cranelift function per body section.
//!
//! One `JITModule` and one `FunctionBuilderContext` serve the whole program. The CLIF of
//! every section is built first (serially: it declares functions in the module); then
//! Cranelift compiles the functions on up to 4 threads (each compilation is independent);
//! then the code is defined in the module in section order and finalized, so the result
//! does not depend on the thread count.
//!
//! Flags (all chosen for the speed of the generated code, then of compilation):
//! - `opt_level=speed`: the e-graph optimizer (GVN, constant folding, loop-invariant code
//!   motion — which hoists index arithmetic out of inner loops — and strength reduction of
//!   division by constants).
//! - `enable_alias_analysis=true`: redundant-load elimination across the loop body.
//! - `regalloc_algorithm=backtracking`: the better of the two allocators (range splitting).
//! - `enable_verifier` only in debug builds: it catches lowering bugs in tests and costs
//!   compile time in release.
//! - `unwind_info=false`: the generated code never unwinds (the helpers it calls cannot
//!   panic), so no unwind tables are built.
//! - `enable_probestack=false`: frames hold only spill slots, far below a guard page.
//! - `is_pic=false`, `use_colocated_libcalls=false`: what cranelift-jit requires (helper calls
//!   use absolute addresses, reachable from anywhere in the address space).
//!
//! The ISA flags (SSE4.1/AVX/FMA…, NEON/FP16…) are what `cranelift_native` detects.

use super::lower;
use super::math;
use super::{CodeMemory, FuncText, HostProgram, JitError, JitOptions};
use bfly_ir::kernel::{BodyId, KernelProgram};
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::{AbiParam, Function, UserFuncName, types};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{Context, isa};
use cranelift_frontend::FunctionBuilderContext;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module, ModuleReloc, default_libcall_names};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The shared (ISA-independent) flags every build uses, described above.
pub(super) fn isa_flags() -> Result<settings::Builder, JitError> {
    let mut flags = settings::builder();
    let verifier = if cfg!(debug_assertions) {
        "true"
    } else {
        "false"
    };
    for (name, value) in [
        ("opt_level", "speed"),
        ("enable_alias_analysis", "true"),
        ("regalloc_algorithm", "backtracking"),
        ("enable_verifier", verifier),
        ("unwind_info", "false"),
        ("enable_probestack", "false"),
        ("is_pic", "false"),
        ("use_colocated_libcalls", "false"),
    ] {
        flags
            .set(name, value)
            .map_err(|e| JitError::Host(format!("flag {name}={value}: {e}")))?;
    }
    Ok(flags)
}

fn host_isa() -> Result<isa::OwnedTargetIsa, JitError> {
    let flags = isa_flags()?;
    let builder = cranelift_native::builder().map_err(|e| JitError::Host(e.to_string()))?;
    let isa = builder
        .finish(settings::Flags::new(flags))
        .map_err(|e| JitError::Host(e.to_string()))?;
    if isa.pointer_type() != types::I64 {
        return Err(JitError::Host("only 64-bit hosts are supported".into()));
    }
    Ok(isa)
}

/// `cranelift x86_64 (avx2, fma)`: the architecture and the enabled ISA flags that matter
/// for these kernels' code (vector width, fused multiply-add, fp16/dotprod on aarch64), so
/// a report says which path ran without listing every flag.
fn backend_name(isa: &dyn isa::TargetIsa) -> String {
    const SHOWN: [&str; 8] = [
        "has_avx",
        "has_avx2",
        "has_fma",
        "has_avx512f",
        "has_sse41",
        "has_fp16",
        "has_lse",
        "has_pauth",
    ];
    let feats: Vec<String> = isa
        .isa_flags()
        .iter()
        .filter(|f| f.as_bool() == Some(true) && SHOWN.contains(&f.name))
        .map(|f| f.name.trim_start_matches("has_").to_string())
        .collect();
    let arch = isa.triple().architecture;
    if feats.is_empty() {
        format!("cranelift {arch}")
    } else {
        format!("cranelift {arch} ({})", feats.join(", "))
    }
}

/// The disassembly of each kept function, compiled again for the host with disassembly on
/// (same ISA and flags as the JIT, so the same code). A function that fails to compile
/// again shows the error in place of its listing.
pub(super) fn disassemble(texts: &[FuncText]) -> Vec<Option<String>> {
    let isa = match host_isa() {
        Ok(isa) => isa,
        Err(e) => {
            return texts
                .iter()
                .map(|t| t.keep_asm.then(|| format!("; {e}")))
                .collect();
        }
    };
    texts
        .iter()
        .map(|t| {
            let func = t.func.as_ref().filter(|_| t.keep_asm)?;
            let mut ctx = Context::for_function(func.clone());
            ctx.set_disasm(true);
            Some(match ctx.compile(&*isa, &mut ControlPlane::default()) {
                Ok(code) => code.vcode.clone().unwrap_or_default(),
                Err(e) => format!("; cranelift failed: {:?}", e.inner),
            })
        })
        .collect()
}

/// What compiling the bodies produced, besides the code itself.
struct Compiled {
    entries: Vec<Vec<Option<usize>>>,
    notes: Vec<String>,
    texts: Vec<FuncText>,
    code_bytes: usize,
}

pub(super) fn compile(
    program: &KernelProgram,
    options: JitOptions,
    skip: &dyn Fn(BodyId, usize) -> bool,
) -> Result<HostProgram, JitError> {
    let t0 = Instant::now();
    let isa = host_isa()?;
    let name = backend_name(&*isa);
    let mut jb = JITBuilder::with_isa(isa, default_libcall_names());
    math::register(&mut jb);
    // From here on the guard frees the code pages on every path, errors included.
    let mut code = CodeMemory(Some(JITModule::new(jb)));
    let Some(module) = code.0.as_mut() else {
        return Err(JitError::Host("no module".into()));
    };
    let out = define_all(module, program, options, skip)?;
    Ok(HostProgram {
        entries: out.entries,
        params: program.bodies.iter().map(|b| b.params.len()).collect(),
        notes: out.notes,
        texts: out.texts,
        clif: std::sync::OnceLock::new(),
        asm: std::sync::OnceLock::new(),
        compile_time: t0.elapsed(),
        code_bytes: out.code_bytes,
        name,
        _code: Mutex::new(code),
    })
}

/// Builds, compiles and finalizes one function per section of every body, except the
/// sections `skip` names (another backend runs those). Building the CLIF and defining the
/// code in the module are serial (they need the module); Cranelift's compilation of each
/// function is independent and runs on [`compile_threads`] threads.
fn define_all(
    module: &mut JITModule,
    program: &KernelProgram,
    options: JitOptions,
    skip: &dyn Fn(BodyId, usize) -> bool,
) -> Result<Compiled, JitError> {
    let helpers = math::declare(module).map_err(JitError::Host)?;
    let config = module.target_config();
    let mut sig = module.make_signature();
    for _ in 0..4 {
        sig.params.push(AbiParam::new(types::I64));
    }
    let mut fbc = FunctionBuilderContext::new();
    let mut ids = Vec::with_capacity(program.bodies.len());
    let mut notes = Vec::new();
    let mut built = Vec::new();

    for (bi, body) in program.bodies.iter().enumerate() {
        let body_id = BodyId(bi as u32);
        let mut body_ids = Vec::with_capacity(body.num_sections());
        for section in 0..body.num_sections() {
            if skip(body_id, section) {
                body_ids.push(None);
                continue;
            }
            let id = module
                .declare_function(&format!("{body_id}_s{section}"), Linkage::Local, &sig)
                .map_err(|e| JitError::Codegen {
                    body: body_id,
                    section,
                    message: e.to_string(),
                })?;
            let mut func =
                Function::with_name_signature(UserFuncName::user(0, id.as_u32()), sig.clone());
            let label = format!("{body_id} section {section}");
            let section_notes = lower::build_section(
                &mut func,
                &mut fbc,
                body,
                section,
                &helpers,
                label.clone(),
                config,
            )
            .map_err(|message| JitError::Body {
                body: body_id,
                section,
                message,
            })?;
            notes.extend(section_notes);
            built.push(Built {
                body: body_id,
                section,
                id,
                text: FuncText {
                    header: label,
                    func: (options.keep_clif || options.keep_asm).then(|| func.clone()),
                    keep_clif: options.keep_clif,
                    keep_asm: options.keep_asm,
                },
                func: Mutex::new(Some(func)),
            });
            body_ids.push(Some(id));
        }
        ids.push(body_ids);
    }

    let threads = compile_threads(built.len()).map_err(JitError::Setting)?;
    let codes = compile_parallel(module.isa(), &built, threads);
    let mut code_bytes = 0;
    let mut texts = Vec::with_capacity(built.len());
    for (b, code) in built.into_iter().zip(codes) {
        let code = code.map_err(|message| JitError::Codegen {
            body: b.body,
            section: b.section,
            message,
        })?;
        code_bytes += code.bytes.len();
        module
            .define_function_bytes(b.id, code.alignment, &code.bytes, &code.relocs)
            .map_err(|e| JitError::Codegen {
                body: b.body,
                section: b.section,
                message: format!("{e:?}"),
            })?;
        texts.push(b.text);
    }
    module
        .finalize_definitions()
        .map_err(|e| JitError::Finalize(e.to_string()))?;
    let entries = ids
        .iter()
        .map(|b| {
            b.iter()
                .map(|id| id.map(|id| module.get_finalized_function(id) as usize))
                .collect()
        })
        .collect();
    Ok(Compiled {
        entries,
        notes,
        texts,
        code_bytes,
    })
}

/// One section's function, built and waiting for Cranelift (a worker takes `func`).
struct Built {
    body: BodyId,
    section: usize,
    id: FuncId,
    text: FuncText,
    func: Mutex<Option<Function>>,
}

/// A function's machine code, ready for `define_function_bytes` (what
/// `JITModule::define_function` does after compiling).
struct Code {
    bytes: Vec<u8>,
    alignment: u64,
    relocs: Vec<ModuleReloc>,
}

/// The environment knob for [`compile_threads`].
pub const JIT_THREADS_ENV: &str = "BFLY_JIT_THREADS";

/// Threads for Cranelift: `BFLY_JIT_THREADS` if set (1 = compile on the calling thread),
/// else the machine's parallelism, at most 4 (programs have tens of functions, so more
/// threads mostly wait on each other's start-up). A malformed value is an error rather than
/// silently ignored, so a benchmark that sets it measures what it claims.
fn compile_threads(functions: usize) -> Result<usize, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let wanted = match std::env::var(JIT_THREADS_ENV) {
        Err(_) => cores.min(4),
        Ok(v) => parse_jit_threads(&v)?,
    };
    Ok(wanted.min(functions).max(1))
}

/// Parses a `BFLY_JIT_THREADS` value: a whole number from 1 to 256.
fn parse_jit_threads(value: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(n @ 1..=256) => Ok(n),
        _ => Err(format!(
            "{JIT_THREADS_ENV}={value:?}: expected a whole number of compile threads from 1 to \
             256 (or unset it for up to 4)"
        )),
    }
}

/// Compiles every `built` function on `threads` threads ([`compile_threads`]), each taking the next
/// unclaimed function; results in `built`'s order.
fn compile_parallel(
    isa: &dyn isa::TargetIsa,
    built: &[Built],
    threads: usize,
) -> Vec<Result<Code, String>> {
    let next = AtomicUsize::new(0);
    let worker = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(b) = built.get(i) else { break };
            done.push((i, compile_one(isa, b)));
        }
        done
    };
    let mut results: Vec<Option<Result<Code, String>>> = (0..built.len()).map(|_| None).collect();
    let parts: Vec<Vec<(usize, Result<Code, String>)>> = if threads == 1 {
        vec![worker()]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (1..threads).map(|_| s.spawn(worker)).collect();
            let mut parts = vec![worker()];
            for h in handles {
                // A panicking worker leaves its claimed functions without a result (an
                // error below), never a wrong one.
                parts.push(h.join().unwrap_or_default());
            }
            parts
        })
    };
    for (i, r) in parts.into_iter().flatten() {
        results[i] = Some(r);
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("compile thread failed".into())))
        .collect()
}

/// Runs Cranelift's code generation on `ctx`. An internal panic of Cranelift (an unmatched
/// lowering rule: seen once for a vector float compare its aarch64 backend lacks) becomes this
/// function's error, so loading fails with the section named instead of aborting the process.
pub(super) fn codegen(ctx: &mut Context, isa: &dyn isa::TargetIsa) -> Result<(), String> {
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ctx.compile(isa, &mut ControlPlane::default())
            .map(|_| ())
            .map_err(|e| format!("{:?}", e.inner))
    }));
    run.unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(format!("Cranelift failed internally: {what}"))
    })
}

fn compile_one(isa: &dyn isa::TargetIsa, b: &Built) -> Result<Code, String> {
    let func = b
        .func
        .lock()
        .map_err(|_| "poisoned".to_string())?
        .take()
        .ok_or("function compiled twice")?;
    let mut ctx = Context::for_function(func);
    codegen(&mut ctx, isa)?;
    let code = ctx.compiled_code().ok_or("no code")?;
    let relocs = code
        .buffer
        .relocs()
        .iter()
        .map(|r| ModuleReloc::from_mach_reloc(r, &ctx.func, b.id))
        .collect();
    Ok(Code {
        bytes: code.code_buffer().to_vec(),
        alignment: u64::from(code.buffer.alignment),
        relocs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cranelift_codegen::ir::InstBuilder;
    use cranelift_codegen::ir::condcodes::FloatCC;
    use cranelift_frontend::FunctionBuilder;

    /// A vector `fcmp ugt` has no aarch64 lowering rule in Cranelift 0.135, whose code generator
    /// then panics: `codegen` must turn that into an error. (If a later Cranelift gains the
    /// rule, this test says so and needs another unsupported construct.)
    #[test]
    fn cranelift_internal_panics_become_errors() {
        let isa = isa::lookup_by_name("aarch64-unknown-linux-gnu")
            .expect("aarch64 backend built in")
            .finish(settings::Flags::new(settings::builder()))
            .expect("aarch64 isa");
        let mut sig = cranelift_codegen::ir::Signature::new(isa.default_call_conv());
        sig.params.push(AbiParam::new(types::F32X4));
        sig.returns.push(AbiParam::new(types::I32X4));
        let mut func = Function::with_name_signature(UserFuncName::user(0, 0), sig);
        let mut fbc = FunctionBuilderContext::new();
        let mut b = FunctionBuilder::new(&mut func, &mut fbc);
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let x = b.block_params(entry)[0];
        let m = b.ins().fcmp(FloatCC::UnorderedOrGreaterThan, x, x);
        b.ins().return_(&[m]);
        b.seal_all_blocks();
        b.finalize(isa.frontend_config());
        let mut ctx = Context::for_function(func);
        let err = codegen(&mut ctx, &*isa).expect_err("no aarch64 rule for a vector fcmp ugt");
        assert!(err.contains("Cranelift failed internally"), "{err}");
    }

    /// `BFLY_JIT_THREADS` takes 1..=256; anything else is reported with the value and the
    /// accepted range (the parser is tested directly: the environment is process-global).
    #[test]
    fn jit_threads_values() {
        assert_eq!(parse_jit_threads("1"), Ok(1));
        assert_eq!(parse_jit_threads(" 3 "), Ok(3));
        for bad in ["0", "-1", "abc", "", "1.5", "257"] {
            let err = parse_jit_threads(bad).expect_err(bad);
            assert!(
                err.contains("BFLY_JIT_THREADS") && err.contains("1 to"),
                "{err}"
            );
        }
    }
}
