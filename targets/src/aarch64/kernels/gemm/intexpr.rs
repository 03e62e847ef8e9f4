//! Integer index expressions of the Kernel IR (row counts, per-row offsets of epilogue
//! operands) evaluated into general registers at run time.

use crate::aarch64::emit::{Asm, Cond, SYMS, X};
use bfly_ir::kernel::{BinOp, Expr, LoopVar};

/// What the expression may read besides constants and `syms`: the value of one loop var,
/// held in a register.
#[derive(Clone, Copy)]
pub struct IntEnv {
    pub var: Option<(LoopVar, X)>,
}

/// Can `e` be evaluated by [`emit_int`] in `env`?
pub fn supported(e: &Expr, var: Option<LoopVar>) -> bool {
    match e {
        Expr::Int(_) | Expr::Sym(_) => true,
        Expr::Var(v) => Some(*v) == var,
        Expr::Bin(op, a, b) => {
            matches!(
                op,
                BinOp::Add
                    | BinOp::Sub
                    | BinOp::Mul
                    | BinOp::Div
                    | BinOp::Rem
                    | BinOp::Min
                    | BinOp::Max
            ) && supported(a, var)
                && supported(b, var)
        }
        _ => false,
    }
}

/// Emits `dst = e` (64-bit). `temps` are registers it may clobber (one per nesting level of
/// the right operands); `x17` is the emitter's. Int division and remainder are of
/// non-negative operands (the IR's rule), so `udiv` is exact.
pub fn emit_int(a: &mut Asm, e: &Expr, dst: X, env: IntEnv, temps: &[X]) -> Result<(), String> {
    match e {
        Expr::Int(v) => {
            a.mov_imm(dst, *v);
            Ok(())
        }
        Expr::Sym(s) => {
            a.ldr_x(dst, SYMS, 8 * s.slot() as u32);
            Ok(())
        }
        Expr::Var(v) => match env.var {
            Some((var, reg)) if var == *v => {
                a.mov(dst, reg);
                Ok(())
            }
            _ => Err(format!("index uses loop var {v}")),
        },
        Expr::Bin(op, l, r) => {
            emit_int(a, l, dst, env, temps)?;
            // Constant right operands fold into immediates.
            if let Expr::Int(c) = **r
                && c >= 0
            {
                let c = c as u64;
                match op {
                    BinOp::Add => a.add_imm(dst, dst, c),
                    BinOp::Sub => a.sub_imm(dst, dst, c),
                    BinOp::Mul => a.mul_imm(dst, dst, c),
                    _ => return emit_bin(a, *op, r, dst, env, temps),
                }
                return Ok(());
            }
            emit_bin(a, *op, r, dst, env, temps)
        }
        other => Err(format!("index expression {other:?}")),
    }
}

/// `dst = dst op r`.
fn emit_bin(
    a: &mut Asm,
    op: BinOp,
    r: &Expr,
    dst: X,
    env: IntEnv,
    temps: &[X],
) -> Result<(), String> {
    let (&t, rest) = temps
        .split_first()
        .ok_or_else(|| "index expression too deep".to_string())?;
    emit_int(a, r, t, env, rest)?;
    match op {
        BinOp::Add => a.add(dst, dst, t),
        BinOp::Sub => a.sub(dst, dst, t),
        BinOp::Mul => a.mul(dst, dst, t),
        BinOp::Div => a.udiv(dst, dst, t),
        BinOp::Rem => {
            let (&q, _) = rest
                .split_first()
                .ok_or_else(|| "index expression too deep".to_string())?;
            a.udiv(q, dst, t);
            a.mul(q, q, t);
            a.sub(dst, dst, q);
        }
        BinOp::Min => {
            a.cmp(dst, t);
            a.csel(dst, t, dst, Cond::Gt);
        }
        BinOp::Max => {
            a.cmp(dst, t);
            a.csel(dst, t, dst, Cond::Lt);
        }
        other => return Err(format!("index operator {}", other.name())),
    }
    Ok(())
}
