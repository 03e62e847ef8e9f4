//! Matching a forward `Gemm` section: the lowering rebuilds the section for the geometry
//! read off the body (plain `matmul`, no bias or epilogue), and the real section must equal
//! it up to the tile's store block, which becomes a [`Template`].

use super::canon::{canonical, rows_to_dims};
use super::template::{self, Template, template};
use crate::aarch64::kernels::SectionCtx;
use crate::lower::{LowerMode, OpSite, lower_op};
use bfly_ir::kernel::{Expr, GemmDesc, Local, LoopKind, LoopVar, Stmt};
use bfly_ir::{DType, Dim, Op, Type};

/// What the section computes: `y[row, c] = store(Σ_k x[row, g·K + k] · w[c, k])` for rows
/// `0..rows` and columns `c` of column tiles `lo..hi` (`g = c / n`).
#[derive(Clone, Debug)]
pub struct FwdForm {
    pub x: u32,
    pub w: u32,
    pub rows: Expr,
    pub n: i64,
    pub k: i64,
    pub groups: i64,
    /// Columns per iteration of the section's parallel loop.
    pub nt: i64,
    /// The row loop's var (the template's row parts are in terms of it).
    pub row_var: LoopVar,
    pub store: Template,
    /// The weight's element type: `F32`, or `F16` (stored half precision, every load
    /// widened exactly to f32 — the `quantize { dense = f16 }` form).
    pub w_dtype: DType,
    /// The row count's upper bound (from the program's symbol bounds), when known.
    pub max_rows: Option<u64>,
}

/// The parts of a canonical gemm section: the column-tile loop's body and the row loop.
struct RowLoop<'a> {
    par: &'a [Stmt],
    var: LoopVar,
    rows: &'a Expr,
    body: &'a [Stmt],
}

fn row_loop(section: &[Stmt]) -> Result<RowLoop<'_>, String> {
    let [
        Stmt::For {
            kind: LoopKind::Parallel,
            body,
            ..
        },
    ] = section
    else {
        return Err("the section is not one parallel loop".into());
    };
    match body.last() {
        Some(Stmt::For {
            var,
            end,
            kind: LoopKind::Serial,
            body: rows_body,
            ..
        }) => Ok(RowLoop {
            par: body,
            var: *var,
            rows: end,
            body: rows_body,
        }),
        _ => Err("no row loop inside the column-tile loop".into()),
    }
}

/// The section with the row loop's body cut to its first `keep` statements.
fn truncated(section: &[Stmt], keep: usize) -> Vec<Stmt> {
    let mut v = section.to_vec();
    if let Some(Stmt::For { body: par, .. }) = v.first_mut()
        && let Some(Stmt::For { body, .. }) = par.last_mut()
    {
        body.truncate(keep);
    }
    v
}

pub fn match_forward(ctx: &SectionCtx, desc: &GemmDesc) -> Result<FwdForm, String> {
    let stmt = ctx.body.stmts.get(ctx.section).ok_or("no such section")?;
    let actual = canonical(std::slice::from_ref(stmt)).ok_or("section is not self-contained")?;
    let RowLoop {
        par,
        var: row_var,
        rows,
        body: rbody,
    } = row_loop(&actual)?;
    let (g, n, k) = (desc.groups, desc.n, desc.k);
    if g == 0 || n == 0 || k == 0 {
        return Err("empty GEMM".into());
    }
    let lead = rows_to_dims(rows).ok_or_else(|| format!("row count {rows:?}"))?;
    // The rebuilt section loads w with the real weight's dtype (loads widen, so the loop
    // nest is the same; the dtype is checked again below with x's).
    let w_dtype = match ctx.body.params.get(1).map(|p| p.dtype) {
        Some(d @ (DType::F32 | DType::F16)) => d,
        other => return Err(format!("w must be f32 or f16, not {other:?}")),
    };
    let max_rows = lead.iter().try_fold(1u64, |acc, d| {
        let v = match d {
            Dim::Const(c) => Some(*c),
            Dim::Sym(s) => ctx.program.bound(s),
        }?;
        acc.checked_mul(v)
    });
    let with = |last: u64| {
        let mut d = lead.clone();
        d.push(Dim::Const(last));
        Type::new(DType::F32, d)
    };
    let w_ty = if g == 1 {
        Type::new(w_dtype, [Dim::Const(n), Dim::Const(k)])
    } else {
        Type::new(w_dtype, [Dim::Const(g), Dim::Const(n), Dim::Const(k)])
    };
    let op = Op::Matmul;
    let site = OpSite {
        op: &op,
        operands: vec![with(g * k), w_ty],
        results: vec![with(g * n)],
        mode: LowerMode::Training,
        name: "%gemm".into(),
        radix: Vec::new(),
    };
    let lowered = lower_op(&site).map_err(|e| format!("rebuilding: {}", e.message))?;
    let [kernel] = &lowered.kernels[..] else {
        return Err("the rebuilt matmul is not one kernel".into());
    };
    let expected =
        canonical(&kernel.body.stmts).ok_or("the rebuilt section is not self-contained")?;
    let erbody = row_loop(&expected)?.body;
    let vec_at = erbody
        .iter()
        .position(|s| {
            matches!(
                s,
                Stmt::For {
                    kind: LoopKind::Vector,
                    ..
                }
            )
        })
        .ok_or("the rebuilt row loop has no k loop")?;
    let keep = vec_at + 1;
    // The rebuilt store block is `y[..] = acc_t`: it names the accumulators.
    let accs: Vec<Local> = erbody[keep..]
        .iter()
        .map(|s| match s {
            Stmt::Store {
                value: Expr::Local(l),
                ..
            } => Ok(*l),
            _ => Err("unexpected rebuilt store".to_string()),
        })
        .collect::<Result<_, _>>()?;
    let nt = accs.len() as i64;
    if nt == 0 || (n as i64) % nt != 0 {
        return Err("unexpected column tile".into());
    }
    if rbody.len() < keep || truncated(&actual, keep) != truncated(&expected, keep) {
        return Err("the section is not `gemm_section`'s loop nest for this geometry".into());
    }
    // The tile's first column: the loop var or the parallel body's first `let`, whichever
    // makes every rebuilt store index `row part + col0 + t` (`template` then checks the
    // real store block against the same col0).
    let mut candidates = vec![Expr::Var(LoopVar(0))];
    if let Some(Stmt::Let { local, .. }) = par.first() {
        candidates.push(Expr::Local(*local));
    }
    let col0 = candidates
        .into_iter()
        .find(|c| {
            erbody[keep..].iter().enumerate().all(|(t, s)| match s {
                Stmt::Store { index, .. } => template::column_index(index, c, row_var, t as i64)
                    .is_ok_and(|i| i.along_col && i.off == 0),
                _ => false,
            })
        })
        .ok_or("cannot find the tile's first column")?;
    let store = template(&rbody[keep..], &accs, &col0, row_var, &ctx.body.params)?;
    if ctx.body.params.first().map(|p| p.dtype) != Some(DType::F32) {
        return Err("x must be f32".into());
    }
    if kernel.body.params.get(1).map(|p| p.dtype) != Some(w_dtype) {
        return Err("the rebuilt section's w is not the section's dtype".into());
    }
    Ok(FwdForm {
        x: 0,
        w: 1,
        rows: rows.clone(),
        n: n as i64,
        k: k as i64,
        groups: g as i64,
        nt,
        row_var,
        store,
        w_dtype,
        max_rows,
    })
}
