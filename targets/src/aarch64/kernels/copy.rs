//! `copy`: the per-token row copies of inference —
//! - `kv_append` (`lower/attention.rs::kv_append`): row `t` of this step's k and v into
//!   row `pos + t` of the caches, only `if pos + t < context`;
//! - `embed` (`lower/layout.rs::embed`): row `r` of the result = row
//!   `min(max(tokens[r], 0), vocab − 1)` of the table (ids clamped exactly as the body does:
//!   the `i32` id sign-extended, then the signed max/min).
//!
//! Matching builds the section (`section_match`) for the descriptor's sizes and the
//! context read off the body's guard: kv_append with the lowering's own builder
//! (`lower::attention::kv_append_section`), embed with a copy of `lower::layout::embed`. The copies move bytes, which is exact for the dtypes
//! whose load/store round trip is the identity in the body's semantics — f32, i32, i8 —
//! and declined for f16 (the body widens to f32 and narrows back, which quiets a
//! signalling NaN; a byte copy would not).

use super::common::{
    ALIASED, counted, finish, load_params, load_sym, match_params, parallel_loop, parallel_range,
    select, template,
};
use super::{Microkernel, SectionCtx, Selection};
use crate::aarch64::emit::{Asm, Cond, IP0, LO, V, Width, X, XZR};
use crate::lower::attention::kv_append_section;
use bfly_ir::DType;
use bfly_ir::kernel::{BinOp, Expr, KernelKind, LoopKind, RtSym, Stmt};

/// A recognised copy section.
#[derive(Clone, Copy, Debug, PartialEq)]
enum CopyPlan {
    KvAppend {
        /// Bytes per row (`kv_dim · element size`).
        row_bytes: u64,
        context: i64,
        k: u32,
        v: u32,
        k_cache: u32,
        v_cache: u32,
    },
    Embed {
        row_bytes: u64,
        vocab: i64,
        tokens: u32,
        table: u32,
        y: u32,
    },
}

/// The family entry point.
pub fn try_emit(ctx: &SectionCtx) -> Selection {
    let recognised = match ctx.kernel.kind {
        KernelKind::KvAppend { kv_dim } => recognise_kv(ctx, kv_dim),
        KernelKind::Embed { vocab, dim } => recognise_embed(ctx, vocab, dim),
        _ => return Selection::NotMine,
    };
    let name = ctx.kernel.kind.family();
    select(&format!("copy.{name}"), recognised, emit)
}

/// Element size of a dtype a byte copy moves exactly.
fn copy_bytes(dtype: DType) -> Option<u64> {
    match dtype {
        DType::F32 | DType::I32 => Some(4),
        DType::I8 => Some(1),
        DType::F16 => None,
    }
}

/// Row bytes of `width` elements of `dtype`, if the copy is supported.
fn row_bytes(dtype: DType, width: u64) -> Result<u64, String> {
    let size = copy_bytes(dtype).ok_or(format!("{dtype} rows are not byte copies"))?;
    if !(1..=1 << 24).contains(&width) {
        return Err(format!("row width {width} outside 1..2^24"));
    }
    Ok(size * width)
}

fn recognise_kv(ctx: &SectionCtx, kv_dim: u64) -> Result<CopyPlan, String> {
    let (start, end) = parallel_range(ctx)?;
    let section = &ctx.body.stmts[ctx.section];
    let context = read_context(section).ok_or("no `if pos + t < context` guard")?;
    let dtype = ctx
        .body
        .params
        .first()
        .map(|p| p.dtype)
        .ok_or("no params")?;
    let row_bytes = row_bytes(dtype, kv_dim)?;
    let names = ["k", "v", "k_cache", "v_cache"];
    let template = template(&names, |b, p| {
        let (start, end) = (start.clone(), end.clone());
        kv_append_section(
            b,
            start,
            end,
            kv_dim as i64,
            context,
            (p[0], p[1], p[2], p[3]),
        );
    });
    let p = match_params(ctx, &template, &names.map(|n| (n, dtype)), ALIASED)?;
    Ok(CopyPlan::KvAppend {
        row_bytes,
        context,
        k: p[0],
        v: p[1],
        k_cache: p[2],
        v_cache: p[3],
    })
}

/// `context` of the row loop's `if dst < context`.
fn read_context(section: &Stmt) -> Option<i64> {
    let Stmt::For { body, .. } = section else {
        return None;
    };
    body.iter().find_map(|s| match s {
        Stmt::If {
            cond: Expr::Bin(BinOp::Lt, _, c),
            ..
        } => match **c {
            Expr::Int(c) => Some(c),
            _ => None,
        },
        _ => None,
    })
}

fn recognise_embed(ctx: &SectionCtx, vocab: u64, dim: u64) -> Result<CopyPlan, String> {
    let (start, end) = parallel_range(ctx)?;
    let vocab = i64::try_from(vocab)
        .ok()
        .filter(|v| (1..=1 << 31).contains(v))
        .ok_or(format!("vocab {vocab} outside 1..2^31"))?;
    let dtype = ctx
        .body
        .params
        .get(1)
        .map(|p| p.dtype)
        .ok_or("no table param")?;
    let row_bytes = row_bytes(dtype, dim)?;
    let template = rebuild_embed(vocab, dim as i64, start, end);
    let roles = [("tokens", DType::I32), ("table", dtype), ("y", dtype)];
    let p = match_params(ctx, &template, &roles, ALIASED)?;
    Ok(CopyPlan::Embed {
        row_bytes,
        vocab,
        tokens: p[0],
        table: p[1],
        y: p[2],
    })
}

/// The section `lower::layout::embed` builds (still a copy: `lower::layout` does not
/// expose a section builder yet). Params: tokens, table, y.
fn rebuild_embed(vocab: i64, d: i64, start: &Expr, end: &Expr) -> Stmt {
    template(&["tokens", "table", "y"], |b, p| {
        let (pt, pw, py) = (p[0], p[1], p[2]);
        b.for_(LoopKind::Parallel, start.clone(), end.clone(), |b, r| {
            let id = b.let_(
                Expr::load(pt, Expr::Var(r))
                    .max(Expr::Int(0))
                    .min(Expr::Int(vocab - 1)),
            );
            b.for_(LoopKind::Vector, 0, d, |b, c| {
                b.store(py, r * d + c, Expr::load(pw, id * d + c));
            });
        });
    })
}

// ---------------------------------------------------------------------------------------
// Emission.

// General registers.
const SRC_BASE: X = X(4);
const DST_BASE: X = X(5);
const SRC2_BASE: X = X(6);
const DST2_BASE: X = X(7);
const SYM: X = X(8);
const INDEX: X = X(9);
const SRC: X = X(10);
const DST: X = X(11);
const CNT: X = X(12);
const ROW: X = LO;

/// Four q registers of data in flight.
const DATA: V = V(0);

fn emit(plan: &CopyPlan) -> Result<Microkernel, String> {
    let mut asm = Asm::new();
    let (name, tile) = match *plan {
        CopyPlan::KvAppend {
            row_bytes,
            context,
            k,
            v,
            k_cache,
            v_cache,
        } => {
            asm.comment(format!(
                "kv_append: {row_bytes} bytes per row of k and of v, context {context}"
            ));
            let args = [
                (SRC_BASE, k),
                (SRC2_BASE, v),
                (DST_BASE, k_cache),
                (DST2_BASE, v_cache),
            ];
            load_params(&mut asm, &args);
            load_sym(&mut asm, SYM, RtSym::Pos);
            parallel_loop(&mut asm, |asm, next| {
                asm.comment("dst = pos + t; skip the row unless dst < context");
                asm.add(INDEX, SYM, ROW);
                asm.mov_imm(IP0, context);
                asm.cmp(INDEX, IP0);
                asm.b_cond(Cond::Ge, next);
                for (src, dst) in [(SRC_BASE, DST_BASE), (SRC2_BASE, DST2_BASE)] {
                    copy_row(asm, row_bytes, (src, ROW), (dst, INDEX));
                }
            });
            (
                "copy.kv_append 4q",
                "one row per parallel iteration: k row t → k_cache row pos + t, then v likewise
  v0..v3   64 bytes in flight (LD1/ST1 ×4 post-increment), then q / s / b tails",
            )
        }
        CopyPlan::Embed {
            row_bytes,
            vocab,
            tokens,
            table,
            y,
        } => {
            asm.comment(format!(
                "embed: {row_bytes} bytes per row, ids clamped to 0..={}",
                vocab - 1
            ));
            load_params(
                &mut asm,
                &[(SRC2_BASE, tokens), (SRC_BASE, table), (DST_BASE, y)],
            );
            parallel_loop(&mut asm, |asm, _| {
                asm.comment("id = min(max(tokens[r], 0), vocab − 1) (i32, sign-extended)");
                asm.ldrsw_idx(INDEX, SRC2_BASE, ROW);
                asm.cmp_imm(INDEX, 0);
                asm.csel(INDEX, INDEX, XZR, Cond::Gt);
                asm.mov_imm(IP0, vocab - 1);
                asm.cmp(INDEX, IP0);
                asm.csel(INDEX, INDEX, IP0, Cond::Lt);
                copy_row(asm, row_bytes, (SRC_BASE, INDEX), (DST_BASE, ROW));
            });
            (
                "copy.embed 4q",
                "one row per parallel iteration: y row r ← table row clamp(tokens[r])
  v0..v3   64 bytes in flight (LD1/ST1 ×4 post-increment), then q / s / b tails",
            )
        }
    };
    finish(asm, name.into(), tile, 0)
}

/// Copies row `src.1` of the rows at `src.0` to row `dst.1` of those at `dst.0` (`bytes`
/// each, through `SRC`/`DST`): 64-byte steps, then 16, 4 and 1.
fn copy_row(asm: &mut Asm, bytes: u64, src: (X, X), dst: (X, X)) {
    asm.mul_imm(SRC, src.1, bytes);
    asm.add(SRC, SRC, src.0);
    asm.mul_imm(DST, dst.1, bytes);
    asm.add(DST, DST, dst.0);
    counted(asm, CNT, bytes / 64, false, |asm| {
        asm.ld1_4s(DATA, 4, SRC, true);
        asm.st1_4s(DATA, 4, DST, true);
    });
    let mut rest = bytes % 64;
    for (w, size) in [(Width::Q, 16), (Width::S, 4), (Width::B, 1)] {
        while rest >= size {
            asm.ldr_post(w, DATA, SRC, size as i32);
            asm.str_post(w, DATA, DST, size as i32);
            rest -= size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_size_emits() {
        for row_bytes in [1, 3, 4, 20, 64, 100, 256, 1 << 20] {
            let kv = CopyPlan::KvAppend {
                row_bytes,
                context: 1 << 20,
                k: 0,
                v: 1,
                k_cache: 2,
                v_cache: 3,
            };
            let embed = CopyPlan::Embed {
                row_bytes,
                vocab: 1 << 17,
                tokens: 0,
                table: 1,
                y: 2,
            };
            for plan in [kv, embed] {
                emit(&plan).expect("emits");
            }
        }
    }
}
