//! The store of a GEMM section as a template over one row and four consecutive columns.
//!
//! `gemm_section` stores each of a tile's `nt` accumulators with the same expression (bias,
//! epilogue links) instantiated at column `col0 + t`. This module inlines the `let`s of that
//! store block, rewrites each instance relative to its own column (loads become
//! `param[row_part(row) + col + off]` or the per-row broadcast `param[row_part(row) + off]`)
//! and requires all instances to be the same template — so one vectorized translation over
//! four columns is exactly the body's store for every column. Anything else (a load of the
//! output, an op without a NEON translation, a column index that is not affine) is an error
//! the caller reports as its decline reason.

use bfly_ir::DType;
use bfly_ir::kernel::{BinOp, BodyParam, Expr, Local, LoopVar, Stmt, UnOp};
use std::collections::HashMap;

use super::intexpr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FBin {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FUn {
    Neg,
    Abs,
    Sqrt,
    Exp,
    Tanh,
}

/// `param[row + (col if along_col) + off]`; `row` is an int expression of the row var and
/// the run-time symbols.
#[derive(Clone, Debug, PartialEq)]
pub struct Index {
    pub row: Expr,
    pub along_col: bool,
    pub off: i64,
}

/// A node of the store's value, evaluated on four columns at once. Children precede their
/// parents, and equal subtrees are one node (loads are of inputs only, so sharing is exact).
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// The tile's dot product.
    Acc,
    /// An f32 constant (bits).
    Const(u32),
    Load {
        param: u32,
        at: Index,
    },
    Bin(FBin, usize, usize),
    Un(FUn, usize),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    pub nodes: Vec<Node>,
    pub value: usize,
    /// The output param and where a column's value goes (`along_col` always).
    pub out: u32,
    pub out_at: Index,
}

impl Template {
    /// Does the value apply `f` anywhere?
    pub fn uses(&self, f: FUn) -> bool {
        self.nodes
            .iter()
            .any(|n| matches!(n, Node::Un(g, _) if *g == f))
    }

    /// A short description for names and comments (`acc + ld(p2) → p3`).
    pub fn describe(&self) -> String {
        fn node(t: &Template, i: usize) -> String {
            match &t.nodes[i] {
                Node::Acc => "acc".into(),
                Node::Const(b) => format!("{:?}", f32::from_bits(*b)),
                Node::Load { param, at } => {
                    format!(
                        "p{param}[{}]",
                        if at.along_col { "row, col" } else { "row" }
                    )
                }
                Node::Bin(op, l, r) => {
                    let o = match op {
                        FBin::Add => "+",
                        FBin::Sub => "-",
                        FBin::Mul => "*",
                        FBin::Div => "/",
                    };
                    format!("({} {o} {})", node(t, *l), node(t, *r))
                }
                Node::Un(op, a) => format!("{op:?}({})", node(t, *a)).to_lowercase(),
            }
        }
        format!("p{}[row, col] = {}", self.out, node(self, self.value))
    }
}

/// `index = row_terms + col_coef · col0 + konst`.
struct Affine {
    row: Option<Expr>,
    col: i64,
    konst: i64,
}

fn add_row(a: Option<Expr>, b: Option<Expr>, negate_b: bool) -> Option<Expr> {
    match (a, b) {
        (a, None) => a,
        (None, Some(b)) if !negate_b => Some(b),
        (None, Some(b)) => Some(Expr::Int(0) - b),
        (Some(a), Some(b)) => Some(if negate_b { a - b } else { a + b }),
    }
}

fn affine(e: &Expr, col0: &Expr, row: LoopVar) -> Option<Affine> {
    if e == col0 {
        return Some(Affine {
            row: None,
            col: 1,
            konst: 0,
        });
    }
    match e {
        Expr::Int(v) => Some(Affine {
            row: None,
            col: 0,
            konst: *v,
        }),
        Expr::Bin(op @ (BinOp::Add | BinOp::Sub), a, b) => {
            let (a, b) = (affine(a, col0, row)?, affine(b, col0, row)?);
            let neg = *op == BinOp::Sub;
            let s = if neg { -1 } else { 1 };
            Some(Affine {
                row: add_row(a.row, b.row, neg),
                col: a.col + s * b.col,
                konst: a.konst.checked_add(s.checked_mul(b.konst)?)?,
            })
        }
        e if intexpr::supported(e, Some(row)) => Some(Affine {
            row: Some(e.clone()),
            col: 0,
            konst: 0,
        }),
        _ => None,
    }
}

/// The index of column `col0 + t`, relative to its column.
pub fn column_index(e: &Expr, col0: &Expr, row: LoopVar, t: i64) -> Result<Index, String> {
    let a = affine(e, col0, row).ok_or_else(|| format!("index {e:?} is not row part + column"))?;
    if !(0..=1).contains(&a.col) {
        return Err(format!("index {e:?} steps {} elements per column", a.col));
    }
    Ok(Index {
        row: a.row.unwrap_or(Expr::Int(0)),
        along_col: a.col == 1,
        off: a.konst - a.col * t,
    })
}

struct Builder<'a> {
    nodes: Vec<Node>,
    acc: Local,
    col0: &'a Expr,
    row: LoopVar,
    t: i64,
    out: u32,
    params: &'a [BodyParam],
}

impl Builder<'_> {
    fn add(&mut self, n: Node) -> usize {
        if let Some(i) = self.nodes.iter().position(|m| *m == n) {
            return i;
        }
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    fn node(&mut self, e: &Expr) -> Result<usize, String> {
        let n = match e {
            Expr::Local(l) if *l == self.acc => Node::Acc,
            Expr::Local(l) => return Err(format!("the store reads local {l} of the dot product")),
            Expr::F32(v) => Node::Const(v.to_bits()),
            Expr::Load { arg, index: at } => {
                if *arg == self.out {
                    return Err("the store reads the output".into());
                }
                match self.params.get(*arg as usize) {
                    Some(p) if p.dtype == DType::F32 => {}
                    Some(p) => return Err(format!("epilogue operand {} is {}", p.name, p.dtype)),
                    None => return Err(format!("no param {arg}")),
                }
                Node::Load {
                    param: *arg,
                    at: column_index(at, self.col0, self.row, self.t)?,
                }
            }
            Expr::Bin(op, l, r) => {
                let op = match op {
                    BinOp::Add => FBin::Add,
                    BinOp::Sub => FBin::Sub,
                    BinOp::Mul => FBin::Mul,
                    BinOp::Div => FBin::Div,
                    other => return Err(format!("epilogue op `{}`", other.name())),
                };
                let (l, r) = (self.node(l)?, self.node(r)?);
                Node::Bin(op, l, r)
            }
            Expr::Un(op, a) => {
                let op = match op {
                    UnOp::Neg => FUn::Neg,
                    UnOp::Abs => FUn::Abs,
                    UnOp::Sqrt => FUn::Sqrt,
                    UnOp::Exp => FUn::Exp,
                    UnOp::Tanh => FUn::Tanh,
                    other => return Err(format!("epilogue op `{}`", other.name())),
                };
                let a = self.node(a)?;
                Node::Un(op, a)
            }
            other => return Err(format!("epilogue expression {other:?}")),
        };
        Ok(self.add(n))
    }
}

fn inline(e: &Expr, lets: &HashMap<Local, Expr>) -> Expr {
    match e {
        Expr::Local(l) => lets.get(l).cloned().unwrap_or_else(|| e.clone()),
        Expr::Load { arg, index } => Expr::load(*arg, inline(index, lets)),
        Expr::Bin(op, a, b) => Expr::bin(*op, inline(a, lets), inline(b, lets)),
        Expr::Un(op, a) => Expr::un(*op, inline(a, lets)),
        Expr::Select { cond, then, els } => {
            Expr::select(inline(cond, lets), inline(then, lets), inline(els, lets))
        }
        _ => e.clone(),
    }
}

/// The template of the store block `tail` of a tile with accumulators `accs` (column
/// `col0 + t` for `accs[t]`), rows indexed by `row`.
pub fn template(
    tail: &[Stmt],
    accs: &[Local],
    col0: &Expr,
    row: LoopVar,
    params: &[BodyParam],
) -> Result<Template, String> {
    let mut lets: HashMap<Local, Expr> = HashMap::new();
    let mut stores = Vec::new();
    for s in tail {
        match s {
            Stmt::Let { local, value } => {
                let v = inline(value, &lets);
                lets.insert(*local, v);
            }
            Stmt::Store { arg, index, value } => {
                stores.push((*arg, inline(index, &lets), inline(value, &lets)));
            }
            _ => return Err("the store block has loops, ifs or assignments".into()),
        }
    }
    if stores.len() != accs.len() || stores.is_empty() {
        return Err(format!(
            "{} stores for {} accumulators",
            stores.len(),
            accs.len()
        ));
    }
    let out = stores[0].0;
    match params.get(out as usize) {
        Some(p) if p.dtype == DType::F32 => {}
        _ => return Err("the output is not f32".into()),
    }
    let mut first: Option<Template> = None;
    for (t, ((arg, at, value), &acc)) in stores.iter().zip(accs).enumerate() {
        if *arg != out {
            return Err("the tile stores to two outputs".into());
        }
        let out_at = column_index(at, col0, row, t as i64)?;
        if !out_at.along_col {
            return Err("the output index does not follow the column".into());
        }
        let mut b = Builder {
            nodes: Vec::new(),
            acc,
            col0,
            row,
            t: t as i64,
            out,
            params,
        };
        let value = b.node(value)?;
        let tm = Template {
            nodes: b.nodes,
            value,
            out,
            out_at,
        };
        match &first {
            None => first = Some(tm),
            Some(f) if *f == tm => {}
            Some(_) => {
                return Err(format!(
                    "column {t} of the tile stores a different expression"
                ));
            }
        }
    }
    first.ok_or_else(|| "no store".to_string())
}
