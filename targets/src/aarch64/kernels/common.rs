//! Scaffolding every family writes the same way, kept here so each kernel file holds only
//! what is particular to it:
//! - recognition: the section's parallel range, a row length in range, a one-section
//!   template, and the actual param of each template role with its dtype checked;
//! - emission: param addresses and runtime symbols from the section ABI, the `lo..hi`
//!   loop over the parallel index, counted inner loops, callee-saved registers, and the
//!   finished `Microkernel`;
//! - the `Selection` from a recognition and an emitter.
//!
//! Templates come from the lowering's own section builders where it exposes them
//! (`lower::norm`, `lower::quant`, `lower::attention`), so matcher and lowering cannot
//! disagree about the form; a lowering change then makes the microkernel match the new
//! form, which its differential tests (`targets/tests/aarch64_*.rs`) must confirm.

use super::section_match::match_section;
use super::{Microkernel, SectionCtx, Selection};
use crate::aarch64::emit::{ARGS, Asm, Cond, HI, LO, Label, SYMS, V, X};
use bfly_ir::DType;
use bfly_ir::kernel::{Access, BodyBuilder, Expr, RtSym, Stmt};

// ---------------------------------------------------------------------------------------
// Selection and recognition.

/// `Emitted` if the section was recognised and emits, else `Declined` with the reason,
/// prefixed by `what` (the family and variant, as `inspect` lists it).
pub(crate) fn select<P>(
    what: &str,
    recognised: Result<P, String>,
    emit: impl FnOnce(&P) -> Result<Microkernel, String>,
) -> Selection {
    let plan = match recognised {
        Ok(p) => p,
        Err(why) => return Selection::Declined(format!("{what}: {why}")),
    };
    match emit(&plan) {
        Ok(m) => Selection::Emitted(m),
        Err(e) => Selection::Declined(format!("{what}: emission: {e}")),
    }
}

/// `start..end` of the section's top-level `parallel for`.
pub(crate) fn parallel_range<'a>(ctx: &SectionCtx<'a>) -> Result<(&'a Expr, &'a Expr), String> {
    ctx.body
        .section_range(ctx.section)
        .ok_or_else(|| "the section is not a parallel loop".into())
}

/// A descriptor's row length, if in `1..=2^24` (keeps every row offset small).
pub(crate) fn row_len(cols: u64) -> Result<i64, String> {
    i64::try_from(cols)
        .ok()
        .filter(|c| (1..=1 << 24).contains(c))
        .ok_or(format!("cols = {cols} outside 1..2^24"))
}

/// The one section `build` makes over params `0..names.len()` (declared in that order;
/// matching looks at statements only, so their dtype and access do not matter).
pub(crate) fn template(names: &[&str], build: impl FnOnce(&mut BodyBuilder, &[u32])) -> Stmt {
    let mut b = BodyBuilder::new();
    let params: Vec<u32> = names
        .iter()
        .map(|n| b.param(n, DType::F32, Access::Read))
        .collect();
    build(&mut b, &params);
    b.finish().stmts.remove(0)
}

/// The `match_params` reason for the usual mismatch: a body the lowering built with
/// aliased params (an in-place form) or another form altogether.
pub(crate) const ALIASED: &str = "the section differs from the lowering's form (aliased params?)";

/// The actual param of each template role (`roles`: name and required dtype, in template
/// param order), if the section equals `template` up to renumbering; `mismatch` says why
/// it might not.
pub(crate) fn match_params(
    ctx: &SectionCtx,
    template: &Stmt,
    roles: &[(&str, DType)],
    mismatch: &str,
) -> Result<Vec<u32>, String> {
    let map = match_section(&ctx.body.stmts[ctx.section], template).ok_or(mismatch)?;
    let mut out = Vec::new();
    for (role, (name, dtype)) in roles.iter().enumerate() {
        let p = *map
            .get(&(role as u32))
            .ok_or(format!("param `{name}` unused"))?;
        match ctx.body.params.get(p as usize) {
            Some(q) if q.dtype == *dtype => out.push(p),
            _ => return Err(format!("param `{name}` is not {dtype}")),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Emission.

/// Loads the buffer address of each `(register, param)` from the `ARGS` array.
pub(crate) fn load_params(asm: &mut Asm, regs: &[(X, u32)]) {
    for &(reg, p) in regs {
        asm.ldr_x(reg, ARGS, 8 * p);
    }
}

/// Loads runtime symbol `sym` from the `SYMS` array.
pub(crate) fn load_sym(asm: &mut Asm, reg: X, sym: RtSym) {
    asm.ldr_x(reg, SYMS, 8 * sym.slot() as u32);
}

/// `for LO in lo..hi { body }`; `body` may branch to the label it is given to go on to
/// the next iteration.
pub(crate) fn parallel_loop(asm: &mut Asm, body: impl FnOnce(&mut Asm, Label)) {
    let (top, next, done) = (asm.new_label(), asm.new_label(), asm.new_label());
    asm.cmp(LO, HI);
    asm.b_cond(Cond::Ge, done);
    asm.bind(top);
    body(asm, next);
    asm.bind(next);
    asm.add_imm(LO, LO, 1);
    asm.cmp(LO, HI);
    asm.b_cond(Cond::Lt, top);
    asm.bind(done);
}

/// Emits `body` `count` times as a loop counted down in `counter` (nothing when 0);
/// `hot` marks it as the hot loop.
pub(crate) fn counted(
    asm: &mut Asm,
    counter: X,
    count: u64,
    hot: bool,
    body: impl FnOnce(&mut Asm),
) {
    if count == 0 {
        return;
    }
    let top = asm.new_label();
    asm.mov_imm(counter, count as i64);
    asm.bind(top);
    if hot {
        asm.mark("hot_loop");
    }
    body(asm);
    asm.subs_imm(counter, counter, 1);
    asm.b_cond(Cond::Ne, top);
    if hot {
        asm.mark("hot_loop_end");
    }
}

/// `body` between saving and restoring the callee-saved registers among `vregs`/`xregs`.
pub(crate) fn preserving(asm: &mut Asm, vregs: &[V], xregs: &[X], body: impl FnOnce(&mut Asm)) {
    asm.save_callee_saved(vregs, xregs);
    body(asm);
    asm.restore_callee_saved(vregs, xregs);
}

/// A row of f32s split into 16-float loop steps, then whole vectors, then single floats.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowSplit {
    pub by16: u64,
    pub by4: u64,
    pub by1: u64,
}

impl RowSplit {
    pub(crate) fn of(cols: i64) -> RowSplit {
        let c = cols as u64;
        RowSplit {
            by16: c / 16,
            by4: (c % 16) / 4,
            by1: c % 4,
        }
    }
}

/// Ends the function (`ret`) and packages it; `useful` counts only if the code has a hot
/// loop (`Microkernel::useful_per_iter`).
pub(crate) fn finish(
    mut asm: Asm,
    name: String,
    tile: &str,
    useful: u32,
) -> Result<Microkernel, String> {
    asm.ret();
    let code = asm.finish()?;
    let useful_per_iter = if code.mark("hot_loop").is_some() {
        useful
    } else {
        0
    };
    Ok(Microkernel {
        name,
        tile: tile.into(),
        code,
        useful_per_iter,
    })
}
