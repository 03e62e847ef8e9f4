//! Elementwise ops (`add sub mul neg exp silu gelu sigmoid scale`, and the arithmetic of
//! `cast`): one map kernel each, with numpy broadcasting. The same scalar formulas are what
//! epilogue fusion folds into a producer's store, so a fused and an unfused graph compute
//! the same f32 values.

use super::emit::{Kb, chunked, f32c, round_half_away};
use super::shape::{R, bcast, err, int, operand, result, view};
use super::site::{ArgRef, LoweredKernel, OpLowering, OpSite, numel_expr};
use bfly_ir::kernel::{BodyBuilder, Expr, KernelKind, LoopKind};
use bfly_ir::{DType, Op};

/// Elements per parallel iteration of a flat map: enough to amortize a vector loop's setup,
/// few enough that a few thousand elements still spread over threads.
const CHUNK: i64 = 256;

/// One elementwise function, as a scalar formula.
#[derive(Clone, Debug, PartialEq)]
pub enum Ew {
    Add,
    Sub,
    Mul,
    Neg,
    Exp,
    Silu,
    Gelu,
    Sigmoid,
    Scale(f64),
    Cast { from: DType, to: DType },
}

impl Ew {
    /// The function of an elementwise graph op whose first operand has dtype `input`.
    pub fn of(op: &Op, input: DType) -> Option<Ew> {
        Some(match op {
            Op::Add => Ew::Add,
            Op::Sub => Ew::Sub,
            Op::Mul => Ew::Mul,
            Op::Neg => Ew::Neg,
            Op::Exp => Ew::Exp,
            Op::Silu => Ew::Silu,
            Op::Gelu => Ew::Gelu,
            Op::Sigmoid => Ew::Sigmoid,
            Op::Scale { factor } => Ew::Scale(*factor),
            Op::Cast { to } => Ew::Cast {
                from: input,
                to: *to,
            },
            _ => return None,
        })
    }

    pub fn arity(&self) -> usize {
        match self {
            Ew::Add | Ew::Sub | Ew::Mul => 2,
            _ => 1,
        }
    }

    /// Short name for descriptors (`silu`, `scale`, `cast.f16`).
    pub fn name(&self) -> String {
        match self {
            Ew::Add => "add".into(),
            Ew::Sub => "sub".into(),
            Ew::Mul => "mul".into(),
            Ew::Neg => "neg".into(),
            Ew::Exp => "exp".into(),
            Ew::Silu => "silu".into(),
            Ew::Gelu => "gelu".into(),
            Ew::Sigmoid => "sigmoid".into(),
            Ew::Scale(_) => "scale".into(),
            Ew::Cast { to, .. } => format!("cast.{to}"),
        }
    }

    /// The formula over named arguments (`x0 + x1`, `silu(x0)`), for `Map` descriptors.
    pub fn text(&self, a: &[String]) -> String {
        let arg = |i: usize| a.get(i).cloned().unwrap_or_else(|| "?".into());
        match self {
            Ew::Add => format!("{} + {}", arg(0), arg(1)),
            Ew::Sub => format!("{} - {}", arg(0), arg(1)),
            Ew::Mul => format!("{} * {}", arg(0), arg(1)),
            Ew::Neg => format!("-{}", arg(0)),
            Ew::Scale(f) => format!("{} * {}", arg(0), bfly_ir::op::fmt_float(*f)),
            Ew::Cast { to, .. } => format!("{to}({})", arg(0)),
            other => format!("{}({})", other.name(), arg(0)),
        }
    }

    /// The scalar formula. `args` should be locals or constants: some are read twice.
    pub fn emit(&self, b: &mut BodyBuilder, args: &[Expr]) -> Expr {
        let x = args.first().cloned().unwrap_or(Expr::F32(0.0));
        let y = args.get(1).cloned().unwrap_or(Expr::F32(0.0));
        match self {
            Ew::Add => x + y,
            Ew::Sub => x - y,
            Ew::Mul => x * y,
            Ew::Neg => -x,
            Ew::Exp => x.exp(),
            // 1/(1 + e^−x) is safe at both ends in IEEE arithmetic: e^−x overflows to +inf
            // for very negative x and the quotient is 0, as it should be.
            Ew::Sigmoid => Expr::f32(1.0) / (Expr::f32(1.0) + (-x).exp()),
            Ew::Silu => x.clone() / (Expr::f32(1.0) + (-x).exp()),
            // The tanh form, as the reference (and GPT-2) define GELU.
            Ew::Gelu => {
                let c = f32c((2.0 / std::f64::consts::PI).sqrt());
                let cube = x.clone() * x.clone() * x.clone();
                let inner = c * (x.clone() + Expr::f32(0.044715) * cube);
                Expr::f32(0.5) * x * (Expr::f32(1.0) + inner.tanh())
            }
            Ew::Scale(f) => x * f32c(*f),
            Ew::Cast { from, to } => cast(b, x, *from, *to),
        }
    }
}

/// `cast` between any two dtypes, as the reference defines it: floats narrow when stored
/// (f16 rounds to nearest even), floats become ints by rounding half away from zero and
/// saturating to the target's range, ints become floats exactly. The reference keeps an int
/// that overflows an int target unchanged; no such value fits the storage, so it saturates.
pub(crate) fn cast(b: &mut BodyBuilder, x: Expr, from: DType, to: DType) -> Expr {
    let (lo, hi) = match to {
        DType::I8 => (i64::from(i8::MIN), i64::from(i8::MAX)),
        _ => (i64::from(i32::MIN), i64::from(i32::MAX)),
    };
    match (from.is_float(), to.is_float()) {
        (true, true) => x,
        (false, true) => x.to_f32(),
        (true, false) => {
            let r = round_half_away(b, x);
            r.to_int().min(Expr::Int(hi)).max(Expr::Int(lo))
        }
        (false, false) => x.min(Expr::Int(hi)).max(Expr::Int(lo)),
    }
}

pub fn lower(site: &OpSite) -> R<OpLowering> {
    let Some(ew) = Ew::of(site.op, operand(site, 0)?.dtype) else {
        return err(site, "not an elementwise op");
    };
    if site.operands.len() != ew.arity() {
        return err(
            site,
            format!(
                "takes {} operands, found {}",
                ew.arity(),
                site.operands.len()
            ),
        );
    }
    let names: Vec<String> = (0..ew.arity()).map(|i| format!("x{i}")).collect();
    let kind = KernelKind::Map {
        expr: ew.text(&names),
    };
    Ok(OpLowering {
        kernels: vec![map_kernel(site, &ew, kind)?],
        scratch: Vec::new(),
    })
}

/// `y = f(x0, x1, …)` over the result's elements: a flat chunked loop when no operand
/// broadcasts, else parallel over the result's rows and vector over its columns.
pub(crate) fn map_kernel(site: &OpSite, ew: &Ew, kind: KernelKind) -> R<LoweredKernel> {
    let out = result(site, 0)?;
    let mut kb = Kb::new();
    let ins: Vec<u32> = site
        .operands
        .iter()
        .enumerate()
        .map(|(i, t)| kb.arg(&format!("x{i}"), t.dtype, ArgRef::Operand(i)))
        .collect();
    let y = kb.arg("y", out.dtype, ArgRef::Result(0));
    if site.operands.iter().all(|t| t.dims == out.dims) {
        chunked(&mut kb.b, numel_expr(&out.dims)?, CHUNK, |b, e| {
            let args: Vec<Expr> = ins
                .iter()
                .map(|&x| Expr::Local(b.let_(Expr::load(x, e.clone()))))
                .collect();
            let v = ew.emit(b, &args);
            b.store(y, e, v);
        });
    } else {
        let plans = site
            .operands
            .iter()
            .map(|t| bcast(out, t))
            .collect::<R<Vec<_>>>()?;
        let (rows, cols) = view(out)?;
        let cols = int(site, cols)?;
        kb.b.for_(LoopKind::Parallel, 0, rows, |b, o| {
            b.for_(LoopKind::Vector, 0, cols, |b, c| {
                let (o, c) = (Expr::Var(o), Expr::Var(c));
                let args: Vec<Expr> = ins
                    .iter()
                    .zip(&plans)
                    .map(|(&x, p)| Expr::Local(b.let_(Expr::load(x, p.index(&o, &c)))))
                    .collect();
                let v = ew.emit(b, &args);
                b.store(y, o * cols + c, v);
            });
        });
    }
    Ok(kb.finish(kind))
}
