//! Strict recognition of a `qmatmul` section (`lower::linear::qmatmul` through
//! `gemm_section(int: true)`): the epilogue is read off column 0's statements, then the
//! whole section is rebuilt from that reading and compared statement by statement, so any
//! difference in loop bounds, index arithmetic, operand order or constants declines.

use bfly_ir::DType;
use bfly_ir::kernel::{
    BinOp, Body, BodyBuilder, Expr, GemmDesc, Local, LoopKind, LoopVar, Stmt, UnOp,
};

/// Largest K whose i32 accumulators cannot overflow: `K · 128 · 128 < 2³¹`. (The body
/// accumulates in 64 bits; wrapping i32 partial sums are exact whenever the total fits.)
const MAX_K: i64 = (1 << 31) / (128 * 128) - 1;

/// Where an epilogue link's other operand is read, per output element `(row, col)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Operand {
    /// `e[row · N + col]` (a residual of the output's shape).
    Full(u32),
    /// `e[col]` (broadcast over rows).
    Col(u32),
    /// `e[row]` (broadcast over columns).
    Row(u32),
    /// `e[0]` (one value broadcast to every element).
    Scalar(u32),
    /// The chain value itself (`mul v, v`).
    Chain,
}

/// One fused elementwise link, in the body's operand order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Link {
    /// `chain op other` when `chain_lhs`, else `other op chain`.
    Bin {
        op: BinOp,
        other: Operand,
        chain_lhs: bool,
    },
    Neg,
    /// `chain · factor`.
    Scale(f32),
}

/// A recognised quantized GEMM section.
#[derive(Clone, Debug, PartialEq)]
pub struct QGemmPlan {
    /// Columns per parallel iteration (the body's accumulator tile: 4, 2 or 1).
    pub nt: usize,
    pub n: i64,
    pub k: i64,
    /// Rows `M` (`T`, `B·T`, a constant): evaluated from `SYMS` at run time.
    pub rows: Expr,
    pub xq: u32,
    pub xs: u32,
    pub wq: u32,
    pub ws: u32,
    pub bias: Option<u32>,
    pub y: u32,
    pub links: Vec<Link>,
}

impl QGemmPlan {
    /// Params read at one broadcast per column tile (loaded once per block).
    pub fn col_operands(&self) -> Vec<u32> {
        let mut v = Vec::new();
        for l in &self.links {
            if let Link::Bin {
                other: Operand::Col(p),
                ..
            } = l
                && !v.contains(p)
            {
                v.push(*p);
            }
        }
        v
    }
}

/// Columns per accumulator tile, as `lower::linear::tile` chooses them.
fn tile(n: i64) -> usize {
    match n {
        n if n % 4 == 0 => 4,
        n if n % 2 == 0 => 2,
        _ => 1,
    }
}

/// Recognises section `section` of `body` as the quantized GEMM `desc` describes.
pub fn recognise(desc: &GemmDesc, body: &Body, section: usize) -> Result<QGemmPlan, String> {
    if desc.groups != 1 || desc.dtype != DType::I8 {
        return Err(format!(
            "groups = {}, dtype {} (only ungrouped int8)",
            desc.groups, desc.dtype
        ));
    }
    if section != 0 || body.num_sections() != 1 {
        return Err("the GEMM is not the body's only section".into());
    }
    let (n, k) = (
        i64::try_from(desc.n).map_err(|_| "N too large")?,
        i64::try_from(desc.k).map_err(|_| "K too large")?,
    );
    if k < 16 {
        return Err(format!("K = {k} < 16 (one 16-byte step at least)"));
    }
    if k > MAX_K {
        return Err(format!("K = {k} could overflow i32 accumulators"));
    }
    check_params(body, desc)?;
    let has_bias = desc.epilogue.get(1).is_some_and(|s| s == "bias");
    let np = body.params.len() as u32;
    let nt = tile(n);
    let Some(Stmt::For {
        kind: LoopKind::Parallel,
        body: tile_body,
        ..
    }) = body.stmts.first()
    else {
        return Err("section 0 is not a parallel loop".into());
    };
    let Some(Stmt::For {
        var: row_var,
        end: rows,
        body: row_body,
        ..
    }) = tile_body.last()
    else {
        return Err("no row loop".into());
    };
    check_rows(rows)?;
    let col0 = match tile_body.first() {
        Some(Stmt::Let { local, .. }) if nt > 1 => Expr::Local(*local),
        _ => Expr::Var(LoopVar(0)),
    };
    let mut plan = QGemmPlan {
        nt,
        n,
        k,
        rows: rows.clone(),
        xq: 0,
        xs: 1,
        wq: 2,
        ws: 3,
        bias: has_bias.then_some(4),
        y: np - 1,
        links: Vec::new(),
    };
    plan.links = read_links(row_body, &plan, *row_var, &col0)?;
    let names = link_names(&plan.links);
    let want_names: Vec<String> = desc
        .epilogue
        .iter()
        .skip(1 + usize::from(has_bias))
        .cloned()
        .collect();
    if names != want_names {
        return Err(format!("epilogue {:?} read as {names:?}", desc.epilogue));
    }
    let rebuilt = rebuild(&plan, np);
    if rebuilt.first() != body.stmts.first() {
        return Err("the section differs from the qmatmul form this kernel implements".into());
    }
    Ok(plan)
}

fn check_params(body: &Body, desc: &GemmDesc) -> Result<(), String> {
    let p = &body.params;
    let Some(first) = desc.epilogue.first() else {
        return Err("no dequant in the epilogue".into());
    };
    if first != "dequant" || p.len() < 5 {
        return Err("not a dequantizing GEMM".into());
    }
    let want = |i: usize, d: DType| p.get(i).is_some_and(|q| q.dtype == d);
    if !(want(0, DType::I8) && want(1, DType::F32) && want(2, DType::I8) && want(3, DType::F32)) {
        return Err("params are not xq: i8, xs: f32, wq: i8, ws: f32".into());
    }
    if p[4..].iter().any(|q| q.dtype != DType::F32) {
        return Err("an epilogue operand or the output is not f32".into());
    }
    Ok(())
}

/// Rows must be an int expression of constants and `T`/`B`/`pos` with + and ·, at most
/// two levels deep (what the kernel evaluates from `SYMS`).
fn check_rows(e: &Expr) -> Result<(), String> {
    fn depth(e: &Expr) -> Option<u32> {
        match e {
            Expr::Int(v) if *v >= 0 => Some(0),
            Expr::Sym(_) => Some(0),
            Expr::Bin(BinOp::Add | BinOp::Mul, a, b) => Some(1 + depth(a)?.max(depth(b)?)),
            _ => None,
        }
    }
    match depth(e) {
        Some(d) if d <= 2 => Ok(()),
        _ => Err("row count is not a simple expression of T/B".into()),
    }
}

/// Descriptor names of the links (`add`, `mul`, `neg`, `scale`).
fn link_names(links: &[Link]) -> Vec<String> {
    links
        .iter()
        .map(|l| match l {
            Link::Bin { op: BinOp::Add, .. } => "add".to_string(),
            Link::Bin { op: BinOp::Sub, .. } => "sub".to_string(),
            Link::Bin { .. } => "mul".to_string(),
            Link::Neg => "neg".to_string(),
            Link::Scale(_) => "scale".to_string(),
        })
        .collect()
}

/// Reads the links from column 0's statements (those after the k loop, up to the first
/// store). Shapes not listed here decline; the rebuild checks everything else.
fn read_links(
    row_body: &[Stmt],
    plan: &QGemmPlan,
    row: LoopVar,
    col0: &Expr,
) -> Result<Vec<Link>, String> {
    let after = row_body
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
        .ok_or("no k loop")?;
    let stmts = &row_body[after + 1..];
    let mut links = Vec::new();
    let mut cur: Option<Local> = None;
    let mut i = 0;
    while let Some(s) = stmts.get(i) {
        i += 1;
        match s {
            Stmt::Store { arg, .. } if *arg == plan.y => return Ok(links),
            // The dequantized value (its form is checked by the rebuild).
            Stmt::Let { local, .. } if cur.is_none() => cur = Some(*local),
            Stmt::Let {
                local: l,
                value: Expr::Load { arg, index },
            } => {
                let other = classify(*arg, index, plan, row, col0)?;
                let Some(Stmt::Let {
                    local: next,
                    value: Expr::Bin(op, a, b),
                }) = stmts.get(i)
                else {
                    return Err("an epilogue operand is not used by the next link".into());
                };
                i += 1;
                let c = cur.ok_or("no chain value")?;
                let chain_lhs = match (&**a, &**b) {
                    (Expr::Local(x), Expr::Local(y)) if *x == c && *y == *l => true,
                    (Expr::Local(x), Expr::Local(y)) if *x == *l && *y == c => false,
                    _ => return Err("unrecognised epilogue link".into()),
                };
                links.push(bin_link(*op, other, chain_lhs)?);
                cur = Some(*next);
            }
            Stmt::Let { local: next, value } => {
                let c = Expr::Local(cur.ok_or("no chain value")?);
                let link = match value {
                    Expr::Bin(op, a, b) if **a == c && **b == c => {
                        bin_link(*op, Operand::Chain, true)?
                    }
                    Expr::Un(UnOp::Neg, a) if **a == c => Link::Neg,
                    Expr::Bin(BinOp::Mul, a, b) if **a == c => match **b {
                        Expr::F32(f) => Link::Scale(f),
                        _ => return Err("unrecognised epilogue link".into()),
                    },
                    _ => return Err("epilogue function without a NEON form here".into()),
                };
                links.push(link);
                cur = Some(*next);
            }
            _ => return Err("unrecognised epilogue statement".into()),
        }
    }
    Err("no store of the output".into())
}

fn bin_link(op: BinOp, other: Operand, chain_lhs: bool) -> Result<Link, String> {
    match op {
        BinOp::Add | BinOp::Sub | BinOp::Mul => Ok(Link::Bin {
            op,
            other,
            chain_lhs,
        }),
        _ => Err(format!("epilogue op `{}`", op.name())),
    }
}

fn classify(
    arg: u32,
    index: &Expr,
    plan: &QGemmPlan,
    row: LoopVar,
    col0: &Expr,
) -> Result<Operand, String> {
    if arg <= plan.ws || Some(arg) == plan.bias || arg >= plan.y {
        return Err("an epilogue link reads a GEMM operand".into());
    }
    if *index == out_index(plan.n, row, col0.clone()) {
        Ok(Operand::Full(arg))
    } else if index == col0 {
        Ok(Operand::Col(arg))
    } else if *index == Expr::Var(row) {
        Ok(Operand::Row(arg))
    } else if *index == Expr::Int(0) {
        Ok(Operand::Scalar(arg))
    } else {
        Err("an epilogue operand broadcasts in a way this kernel does not load".into())
    }
}

/// `row · n + col`, folded as lowering folds it.
fn out_index(n: i64, row: LoopVar, col: Expr) -> Expr {
    let r = if n == 1 {
        Expr::Var(row)
    } else {
        Expr::Var(row) * n
    };
    r + col
}

/// The section `qmatmul` would build for `plan` (constants folded as `lower::emit::tidy`
/// folds them), in a body of `np` params.
fn rebuild(plan: &QGemmPlan, np: u32) -> Vec<Stmt> {
    let mut b = BodyBuilder::new();
    for _ in 0..np {
        b.param("p", DType::F32, bfly_ir::kernel::Access::Read);
    }
    let (nt, n, k) = (plan.nt, plan.n, plan.k);
    let tiles = n / nt as i64;
    b.for_(LoopKind::Parallel, 0, tiles, |b, j| {
        let col0 = if nt == 1 {
            Expr::Var(j)
        } else {
            Expr::Local(b.let_(Expr::Var(j) * nt as i64))
        };
        let wrow = Expr::Local(b.let_(col0.clone() * k));
        b.serial(0, plan.rows.clone(), |b, m| {
            let xrow = Expr::Local(b.let_(Expr::Var(m) * k));
            let accs: Vec<Local> = (0..nt).map(|_| b.let_(Expr::Int(0))).collect();
            b.for_(LoopKind::Vector, 0, k, |b, kk| {
                let xv = b.let_(Expr::load(plan.xq, xrow.clone() + kk));
                for (t, &acc) in accs.iter().enumerate() {
                    let base = if t == 0 {
                        wrow.clone()
                    } else {
                        wrow.clone() + t as i64 * k
                    };
                    let wv = Expr::load(plan.wq, base + kk);
                    b.assign(acc, acc + Expr::Local(xv) * wv);
                }
            });
            for (t, &acc) in accs.iter().enumerate() {
                let col = if t == 0 {
                    col0.clone()
                } else {
                    col0.clone() + t as i64
                };
                store(b, plan, m, col, Expr::Local(acc));
            }
        });
    });
    b.finish().stmts
}

fn store(b: &mut BodyBuilder, plan: &QGemmPlan, m: LoopVar, col: Expr, acc: Expr) {
    let mut v = acc.to_f32() * Expr::load(plan.xs, Expr::Var(m)) * Expr::load(plan.ws, col.clone());
    if let Some(p) = plan.bias {
        v = v + Expr::load(p, col.clone());
    }
    if !plan.links.is_empty() {
        let mut cur = Expr::Local(b.let_(v));
        for link in &plan.links {
            let next = match *link {
                Link::Bin {
                    op,
                    other,
                    chain_lhs,
                } => {
                    let x = match other {
                        Operand::Chain => cur.clone(),
                        Operand::Full(p) => {
                            Expr::Local(b.let_(Expr::load(p, out_index(plan.n, m, col.clone()))))
                        }
                        Operand::Col(p) => Expr::Local(b.let_(Expr::load(p, col.clone()))),
                        Operand::Row(p) => Expr::Local(b.let_(Expr::load(p, Expr::Var(m)))),
                        Operand::Scalar(p) => Expr::Local(b.let_(Expr::load(p, Expr::Int(0)))),
                    };
                    if chain_lhs {
                        Expr::bin(op, cur.clone(), x)
                    } else {
                        Expr::bin(op, x, cur.clone())
                    }
                }
                Link::Neg => -cur.clone(),
                Link::Scale(f) => cur.clone() * Expr::F32(f),
            };
            cur = Expr::Local(b.let_(next));
        }
        v = cur;
    }
    b.store(plan.y, out_index(plan.n, m, col), v);
}
