//! The f32 GEMM backward family: the two sections of `matmul.grad`
//! (`lower::grad::matmul`) — `dx = dy·w` over rows and `dW = dyᵀ·x` (with `dbias`) over
//! weight rows — run the axpy-form kernels of `gemm::axpy`.
//!
//! Matching is by rebuilding: the lowering itself (`lower_grad`) builds the `matmul.grad`
//! body for the descriptor's geometry (rows, G, N, K, bias) and the real section must equal
//! the rebuilt one up to the numbering of vars, locals and params (`section_match`), which
//! also yields which real param plays x, w, dy, dx, dw, dbias. Declined: f16 operands,
//! `K % 4 != 0` (the kernels store whole 4-lane vectors of a k-contiguous row), any other
//! section or body.

use super::gemm::{DwForm, DxForm, emit_dw, emit_dx};
use super::section_match::match_section;
use super::{SectionCtx, Selection};
use crate::lower::{LowerMode, OpSite, lower_op};
use bfly_ir::kernel::{Expr, GemmDesc, KernelKind};
use bfly_ir::{DType, Dim, Op, Type};

/// Template params of `matmul.grad`'s body, in the lowering's bind order.
const X: u32 = 0;
const W: u32 = 1;
const DY: u32 = 2;
const DX: u32 = 3;
const DW: u32 = 4;
const DBIAS: u32 = 5;

pub fn try_emit(ctx: &SectionCtx) -> Selection {
    let KernelKind::Backward(inner) = &ctx.kernel.kind else {
        return Selection::NotMine;
    };
    let KernelKind::Gemm(desc) = &**inner else {
        return Selection::NotMine;
    };
    match select(ctx, desc) {
        Ok(s) => s,
        Err(why) => Selection::Declined(format!("gemm_grad.f32: {why}")),
    }
}

/// Leading dims from the descriptor's row text (`B·T`, `T`, `64`).
fn lead_dims(m: &str) -> Result<Vec<Dim>, String> {
    m.split('·')
        .map(|p| match p.parse::<u64>() {
            Ok(c) => Ok(Dim::Const(c)),
            Err(_) if p == "T" || p == "B" => Ok(Dim::sym(p)),
            Err(_) => Err(format!("row count `{m}`")),
        })
        .collect()
}

fn numel(dims: &[Dim]) -> Expr {
    crate::lower::site::numel_expr(dims).unwrap_or(Expr::Int(0))
}

fn select(ctx: &SectionCtx, desc: &GemmDesc) -> Result<Selection, String> {
    if desc.dtype != DType::F32 {
        return Err(format!("{} operands", desc.dtype));
    }
    let (g, n, k) = (desc.groups, desc.n, desc.k);
    if g == 0 || n == 0 || k == 0 {
        return Err("empty GEMM".into());
    }
    if k % 4 != 0 {
        return Err(format!("K = {k} is not a multiple of 4"));
    }
    let bias = match &desc.epilogue[..] {
        [] => false,
        [b] if b == "bias" => true,
        other => return Err(format!("epilogue {other:?}")),
    };
    let lead = lead_dims(&desc.m)?;
    let f32_ty = |dims: Vec<Dim>| Type::new(DType::F32, dims);
    let with = |last: u64| {
        let mut d = lead.clone();
        d.push(Dim::Const(last));
        f32_ty(d)
    };
    let w_ty = if g == 1 {
        f32_ty(vec![Dim::Const(n), Dim::Const(k)])
    } else {
        f32_ty(vec![Dim::Const(g), Dim::Const(n), Dim::Const(k)])
    };
    let b_ty = f32_ty(vec![Dim::Const(g * n)]);
    let mut operands = vec![with(g * k), w_ty.clone()];
    let mut results = vec![with(g * k), w_ty];
    if bias {
        operands.push(b_ty.clone());
        results.push(b_ty);
    }
    operands.push(with(g * n));
    let op = Op::Grad(Box::new(Op::Matmul));
    let site = OpSite {
        op: &op,
        operands,
        results,
        mode: LowerMode::Training,
        name: "%gemm_grad".into(),
        radix: Vec::new(),
    };
    let lowered = lower_op(&site).map_err(|e| format!("rebuilding: {}", e.message))?;
    let [kernel] = &lowered.kernels[..] else {
        return Err("the rebuilt matmul.grad is not one kernel".into());
    };
    let template = kernel
        .body
        .stmts
        .get(ctx.section)
        .ok_or_else(|| format!("matmul.grad has no section {}", ctx.section))?;
    let actual = ctx.body.stmts.get(ctx.section).ok_or("no such section")?;
    let map = match_section(actual, template)
        .ok_or("the section is not matmul.grad's loop nest for this geometry")?;
    let param = |t: u32| -> Result<u32, String> {
        let p = *map.get(&t).ok_or("a param of the rebuilt body is unused")?;
        match ctx.body.params.get(p as usize) {
            Some(bp) if bp.dtype == DType::F32 => Ok(p),
            Some(bp) => Err(format!("{} is {}", bp.name, bp.dtype)),
            None => Err(format!("no param {p}")),
        }
    };
    let (g, n, k) = (g as i64, n as i64, k as i64);
    let micro = match ctx.section {
        0 => emit_dx(&DxForm {
            w: param(W)?,
            dy: param(DY)?,
            dx: param(DX)?,
            n,
            k,
            groups: g,
        }),
        1 => {
            // Weight rows per parallel iteration, from the (compared) loop extent.
            let rb = match template {
                bfly_ir::kernel::Stmt::For {
                    end: Expr::Int(blocks),
                    ..
                } if *blocks > 0 && (g * n) % blocks == 0 => (g * n) / blocks,
                _ => return Err("the dW section's extent is not constant".into()),
            };
            emit_dw(&DwForm {
                x: param(X)?,
                dy: param(DY)?,
                dw: param(DW)?,
                dbias: if bias { Some(param(DBIAS)?) } else { None },
                rows: numel(&lead),
                n,
                k,
                groups: g,
                rb,
            })
        }
        s => return Err(format!("section {s}")),
    };
    micro
        .map(Selection::Emitted)
        .map_err(|e| format!("emission: {e}"))
}
