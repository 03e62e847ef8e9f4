//! The contract between the lowering driver and the per-op lowerings.
//!
//! The driver walks the optimized graph in schedule order and, for each node, builds an
//! [`OpSite`]; a per-op lowering returns an [`OpLowering`]: one or more kernels whose body
//! params are bound to [`ArgRef`]s (the node's operands and results, kernel-private scratch,
//! or named persistent state such as a KV cache). The driver turns those into buffers, fuses
//! regions, interns identical bodies and schedules everything.

use bfly_ir::kernel::{Body, Expr, KernelKind, RtSym};
use bfly_ir::{DType, Dim, Op, Type};

/// What the program is for: it decides KV caching and positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LowerMode {
    /// Inference: `T` new tokens after `pos` cached ones. Attention reads and extends a KV
    /// cache of `context` rows; rope positions start at `pos`.
    Inference { context: u64 },
    /// One training step over `[B, T]` sequences from position 0; no cache.
    Training,
}

/// One graph node, as a per-op lowering sees it.
#[derive(Clone, Debug)]
pub struct OpSite<'a> {
    pub op: &'a Op,
    /// Operand types, in operand order (symbolic dims are `T` and `B`).
    pub operands: Vec<Type>,
    /// Result types, in result order.
    pub results: Vec<Type>,
    pub mode: LowerMode,
    /// A readable name for the node (`%24`), used in kernel and state names.
    pub name: String,
    /// A butterfly's stage grouping from the graph (`Node::radix`, chosen by the fuse pass);
    /// empty when the node has none (the backend then chooses).
    pub radix: Vec<u32>,
}

/// What a body param is bound to.
#[derive(Clone, Debug, PartialEq)]
pub enum ArgRef {
    Operand(usize),
    Result(usize),
    /// Kernel-private scratch number `i` of [`OpLowering::scratch`] (arena, dead after the
    /// kernel). One buffer per lowering: kernels of the same lowering that name the same
    /// scratch share it (a packing kernel hands its result to the kernel after it), and it
    /// is dead after the last of them.
    Scratch(usize),
    /// Persistent storage owned by the program, named `{site name}.{role}` (e.g. the KV
    /// cache `%31.k_cache`). Survives across steps.
    State {
        role: String,
        dtype: DType,
        dims: Vec<Dim>,
    },
}

/// One kernel of an op's lowering.
#[derive(Clone, Debug)]
pub struct LoweredKernel {
    pub kind: KernelKind,
    pub body: Body,
    /// One per `body.params`, in order.
    pub args: Vec<ArgRef>,
}

/// An op's lowering: kernels run in order.
#[derive(Clone, Debug, Default)]
pub struct OpLowering {
    pub kernels: Vec<LoweredKernel>,
    /// Scratch buffers `(dtype, dims)` referenced by `ArgRef::Scratch(i)`.
    pub scratch: Vec<(DType, Vec<Dim>)>,
}

/// Why an op could not be lowered.
#[derive(Clone, Debug, PartialEq)]
pub struct LowerError {
    pub message: String,
}

impl LowerError {
    pub fn new(message: impl Into<String>) -> LowerError {
        LowerError {
            message: message.into(),
        }
    }
}

impl std::fmt::Display for LowerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A dim as an index expression (`T`, `B` become runtime symbols).
pub fn dim_expr(d: &Dim) -> Result<Expr, LowerError> {
    match d {
        Dim::Const(c) => Ok(Expr::Int(*c as i64)),
        Dim::Sym(s) => RtSym::from_dim(s)
            .map(Expr::Sym)
            .ok_or_else(|| LowerError::new(format!("unknown symbolic dim `{s}` (only T and B)"))),
    }
}

/// Product of dims as an index expression; constants are folded.
pub fn numel_expr(dims: &[Dim]) -> Result<Expr, LowerError> {
    let mut konst: i64 = 1;
    let mut syms: Vec<Expr> = Vec::new();
    for d in dims {
        match d {
            Dim::Const(c) => {
                konst = konst
                    .checked_mul(*c as i64)
                    .ok_or_else(|| LowerError::new("tensor size overflows i64"))?
            }
            sym => syms.push(dim_expr(sym)?),
        }
    }
    let mut acc: Option<Expr> = None;
    for s in syms {
        acc = Some(match acc {
            None => s,
            Some(a) => a * s,
        });
    }
    Ok(match acc {
        None => Expr::Int(konst),
        Some(a) if konst == 1 => a,
        Some(a) => a * konst,
    })
}

/// Splits a type into `(rows, cols)`: every leading dim times each other, and the last const
/// dim — the shape most kernels walk (`[B, T, D]` → `(B·T, D)`).
pub fn rows_cols(ty: &Type) -> Result<(Expr, u64), LowerError> {
    let cols = ty
        .last_const()
        .ok_or_else(|| LowerError::new(format!("last dim of {ty} must be a constant")))?;
    let rows = numel_expr(ty.leading())?;
    Ok((rows, cols))
}
