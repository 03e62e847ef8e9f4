//! Cranelift's aarch64 code for a program, on any host (`bfly inspect --emit asm --target
//! aarch64…`): the same section functions the JIT builds, compiled for
//! `aarch64-unknown-linux-gnu` without a module, kept as text. Sections the aarch64 backend
//! gives to Cranelift run exactly this code on a phone.

use super::JitError;
use super::compile::isa_flags;
use super::lower;
use super::math::Helpers;
use crate::aarch64::CpuFeatures;
use bfly_ir::kernel::{BodyId, KernelProgram};
use cranelift_codegen::ir::{AbiParam, Function, Signature, UserFuncName, types};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{Context, isa};
use cranelift_frontend::FunctionBuilderContext;
use cranelift_module::FuncId;

/// One section's aarch64 listing (Cranelift's disassembly).
pub struct CrossText {
    pub body: BodyId,
    pub section: usize,
    pub asm: String,
}

/// Compiles the sections `wanted(body, section)` selects for aarch64 with `features`.
pub fn aarch64_asm(
    program: &KernelProgram,
    features: CpuFeatures,
    wanted: &dyn Fn(BodyId, usize) -> bool,
) -> Result<Vec<CrossText>, JitError> {
    let mut builder = isa::lookup_by_name("aarch64-unknown-linux-gnu")
        .map_err(|e| JitError::Host(e.to_string()))?;
    for (flag, on) in [
        ("has_fp16", features.fp16),
        ("has_dotprod", features.dotprod),
        ("has_i8mm", features.i8mm),
    ] {
        builder
            .set(flag, if on { "true" } else { "false" })
            .map_err(|e| JitError::Host(format!("{flag}: {e}")))?;
    }
    let isa = builder
        .finish(settings::Flags::new(isa_flags()?))
        .map_err(|e| JitError::Host(e.to_string()))?;
    let mut sig = Signature::new(isa.default_call_conv());
    for _ in 0..4 {
        sig.params.push(AbiParam::new(types::I64));
    }
    let mut helper_sig = Signature::new(isa.default_call_conv());
    helper_sig.params.push(AbiParam::new(types::F32));
    helper_sig.returns.push(AbiParam::new(types::F32));
    let helpers = Helpers {
        ids: [
            FuncId::from_u32(0),
            FuncId::from_u32(1),
            FuncId::from_u32(2),
        ],
        sig: helper_sig,
    };
    let mut fbc = FunctionBuilderContext::new();
    let mut out = Vec::new();
    for (bi, body) in program.bodies.iter().enumerate() {
        let body_id = BodyId(bi as u32);
        for section in 0..body.num_sections() {
            if !wanted(body_id, section) {
                continue;
            }
            let mut func =
                Function::with_name_signature(UserFuncName::user(0, out.len() as u32), sig.clone());
            lower::build_section(
                &mut func,
                &mut fbc,
                body,
                section,
                &helpers,
                format!("{body_id} section {section}"),
                isa.frontend_config(),
            )
            .map_err(|message| JitError::Body {
                body: body_id,
                section,
                message,
            })?;
            let mut ctx = Context::for_function(func);
            ctx.set_disasm(true);
            let codegen = |message: String| JitError::Codegen {
                body: body_id,
                section,
                message,
            };
            super::compile::codegen(&mut ctx, &*isa).map_err(codegen)?;
            let asm = ctx
                .compiled_code()
                .and_then(|c| c.vcode.clone())
                .ok_or_else(|| codegen("no disassembly".into()))?;
            out.push(CrossText {
                body: body_id,
                section,
                asm,
            });
        }
    }
    Ok(out)
}
