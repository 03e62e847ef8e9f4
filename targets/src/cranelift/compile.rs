//! Module and JIT setup, then one Cranelift function per body section.
//!
//! One `JITModule`, one `Context` (cleared per function) and one `FunctionBuilderContext`
//! serve the whole program, so allocations are reused across functions.
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
use cranelift_codegen::ir::{AbiParam, UserFuncName, types};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{Context, isa};
use cranelift_frontend::FunctionBuilderContext;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module, default_libcall_names};
use std::sync::Mutex;
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
        compile_time: t0.elapsed(),
        code_bytes: out.code_bytes,
        name,
        _code: Mutex::new(code),
    })
}

/// Builds, compiles and finalizes one function per section of every body, except the
/// sections `skip` names (another backend runs those).
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
    let mut ctx: Context = module.make_context();
    let mut fbc = FunctionBuilderContext::new();
    let mut ids = Vec::with_capacity(program.bodies.len());
    let mut notes = Vec::new();
    let mut texts = Vec::new();
    let mut code_bytes = 0;

    for (bi, body) in program.bodies.iter().enumerate() {
        let body_id = BodyId(bi as u32);
        let mut body_ids = Vec::with_capacity(body.num_sections());
        for section in 0..body.num_sections() {
            if skip(body_id, section) {
                body_ids.push(None);
                continue;
            }
            let codegen = |message: String| JitError::Codegen {
                body: body_id,
                section,
                message,
            };
            let label = format!("{body_id} section {section}");
            let id = module
                .declare_function(&format!("{body_id}_s{section}"), Linkage::Local, &sig)
                .map_err(|e| codegen(e.to_string()))?;
            ctx.clear();
            ctx.set_disasm(options.keep_asm);
            ctx.func.signature = sig.clone();
            ctx.func.name = UserFuncName::user(0, id.as_u32());
            let section_notes = lower::build_section(
                &mut ctx.func,
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
            let clif = options.keep_clif.then(|| ctx.func.display().to_string());
            module
                .define_function(id, &mut ctx)
                .map_err(|e| codegen(format!("{e:?}")))?;
            let compiled = ctx
                .compiled_code()
                .ok_or_else(|| codegen("no code".into()))?;
            code_bytes += compiled.code_buffer().len();
            let asm = if options.keep_asm {
                compiled.vcode.clone()
            } else {
                None
            };
            texts.push(FuncText {
                header: label,
                clif,
                asm,
            });
            body_ids.push(Some(id));
        }
        ids.push(body_ids);
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
