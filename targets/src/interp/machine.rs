//! Evaluates one section of a body with f32 semantics, over any [`Memory`].
//!
//! The arithmetic is the compiled code's: f32 operations rounded to f32 after each step
//! (`f32::exp` and friends from std), 64-bit ints, f16 widened on load and rounded to nearest
//! even on store. Where compiled code would silently misbehave (int overflow, division of
//! negative operands or by zero, an index out of bounds), the machine returns an error.
//! `Select` evaluates both arms, as a branch-free select in compiled code does, so a load in
//! the untaken arm must be in bounds too.

use crate::exec::{ExecError, Val};
use bfly_ir::kernel::{BinOp, Body, Expr, LoopKind, Stmt, UnOp};

/// Element access for the machine: `arg` is a body param, `index` an element index.
pub trait Memory {
    fn load(&mut self, arg: u32, index: i64) -> Result<Val, ExecError>;
    fn store(&mut self, arg: u32, index: i64, value: Val) -> Result<(), ExecError>;
    /// A parallel section starts (iterations `lo..hi` follow).
    fn begin_parallel(&mut self) {}
    /// Iteration `i` of the current parallel section starts.
    fn iteration(&mut self, _i: i64) {}
    /// The parallel section is over.
    fn end_parallel(&mut self) {}
}

/// Loop variables and locals of one body.
pub struct Machine<'b> {
    body: &'b Body,
    syms: [i64; 3],
    vars: Vec<i64>,
    locals: Vec<Val>,
}

fn fail<T>(message: String) -> Result<T, ExecError> {
    Err(ExecError::new(message))
}

impl<'b> Machine<'b> {
    pub fn new(body: &'b Body, syms: [i64; 3]) -> Machine<'b> {
        Machine {
            body,
            syms,
            vars: vec![0; body.num_vars as usize],
            locals: vec![Val::I(0); body.num_locals as usize],
        }
    }

    /// Runs section `section`: iterations `lo..hi` of it if it is a parallel loop (clamped
    /// to its extent), else the whole statement.
    pub fn run_section<M: Memory>(
        &mut self,
        section: usize,
        lo: i64,
        hi: i64,
        mem: &mut M,
    ) -> Result<(), ExecError> {
        let Some(stmt) = self.body.stmts.get(section) else {
            return fail(format!("section {section} does not exist"));
        };
        match stmt {
            Stmt::For {
                var,
                start,
                end,
                kind: LoopKind::Parallel,
                body,
            } => {
                let (start, end) = (self.int(start, mem)?, self.int(end, mem)?);
                mem.begin_parallel();
                for i in lo.max(start)..hi.min(end) {
                    mem.iteration(i);
                    self.set_var(var.0, i)?;
                    self.block(body, mem)?;
                }
                mem.end_parallel();
                Ok(())
            }
            s => self.stmt(s, mem),
        }
    }

    fn set_var(&mut self, v: u32, value: i64) -> Result<(), ExecError> {
        match self.vars.get_mut(v as usize) {
            Some(slot) => {
                *slot = value;
                Ok(())
            }
            None => fail(format!("loop var i{v} is beyond num_vars")),
        }
    }

    fn block<M: Memory>(&mut self, stmts: &[Stmt], mem: &mut M) -> Result<(), ExecError> {
        for s in stmts {
            self.stmt(s, mem)?;
        }
        Ok(())
    }

    fn stmt<M: Memory>(&mut self, s: &Stmt, mem: &mut M) -> Result<(), ExecError> {
        match s {
            Stmt::For {
                var,
                start,
                end,
                body,
                ..
            } => {
                let (start, end) = (self.int(start, mem)?, self.int(end, mem)?);
                for i in start..end {
                    self.set_var(var.0, i)?;
                    self.block(body, mem)?;
                }
                Ok(())
            }
            Stmt::Let { local, value } | Stmt::Assign { local, value } => {
                let v = self.expr(value, mem)?;
                match self.locals.get_mut(local.0 as usize) {
                    Some(slot) => {
                        *slot = v;
                        Ok(())
                    }
                    None => fail(format!("local {local} is beyond num_locals")),
                }
            }
            Stmt::Store { arg, index, value } => {
                let i = self.int(index, mem)?;
                let v = self.expr(value, mem)?;
                mem.store(*arg, i, v)
            }
            Stmt::If { cond, then } => {
                if self.int(cond, mem)? != 0 {
                    self.block(then, mem)?;
                }
                Ok(())
            }
        }
    }

    fn int<M: Memory>(&mut self, e: &Expr, mem: &mut M) -> Result<i64, ExecError> {
        match self.expr(e, mem)? {
            Val::I(v) => Ok(v),
            Val::F(_) => fail(format!("expected an int, got f32 from `{}`", self.show(e))),
        }
    }

    fn show(&self, e: &Expr) -> String {
        bfly_ir::kernel::body::ExprDisplay {
            expr: e,
            params: &self.body.params,
        }
        .to_string()
    }

    fn expr<M: Memory>(&mut self, e: &Expr, mem: &mut M) -> Result<Val, ExecError> {
        Ok(match e {
            Expr::F32(v) => Val::F(*v),
            Expr::Int(v) => Val::I(*v),
            Expr::Var(v) => match self.vars.get(v.0 as usize) {
                Some(&x) => Val::I(x),
                None => return fail(format!("loop var {v} is beyond num_vars")),
            },
            Expr::Sym(s) => Val::I(self.syms[s.slot()]),
            Expr::Local(l) => match self.locals.get(l.0 as usize) {
                Some(&x) => x,
                None => return fail(format!("local {l} is beyond num_locals")),
            },
            Expr::Load { arg, index } => {
                let i = self.int(index, mem)?;
                mem.load(*arg, i)?
            }
            Expr::Bin(op, a, b) => {
                let (x, y) = (self.expr(a, mem)?, self.expr(b, mem)?);
                match (x, y) {
                    (Val::F(x), Val::F(y)) => float_bin(*op, x, y).ok_or_else(|| {
                        ExecError::new(format!("`{}`: {} takes ints", self.show(e), op.name()))
                    })?,
                    (Val::I(x), Val::I(y)) => match int_bin(*op, x, y) {
                        Some(v) => Val::I(v),
                        None => {
                            return fail(format!(
                                "`{}` with {x} {} {y}: int overflow, or division of a negative \
                                 operand or by zero",
                                self.show(e),
                                op.name()
                            ));
                        }
                    },
                    _ => return fail(format!("`{}` mixes f32 and int", self.show(e))),
                }
            }
            Expr::Un(op, a) => {
                let x = self.expr(a, mem)?;
                match un(*op, x) {
                    Some(v) => v,
                    None => {
                        return fail(format!(
                            "`{}`: wrong operand type or overflow",
                            self.show(e)
                        ));
                    }
                }
            }
            Expr::Select { cond, then, els } => {
                let c = self.int(cond, mem)?;
                let (t, f) = (self.expr(then, mem)?, self.expr(els, mem)?);
                if c != 0 { t } else { f }
            }
        })
    }
}

fn float_bin(op: BinOp, x: f32, y: f32) -> Option<Val> {
    Some(match op {
        BinOp::Add => Val::F(x + y),
        BinOp::Sub => Val::F(x - y),
        BinOp::Mul => Val::F(x * y),
        BinOp::Div => Val::F(x / y),
        BinOp::Min => Val::F(x.min(y)),
        BinOp::Max => Val::F(x.max(y)),
        BinOp::Lt => Val::I(i64::from(x < y)),
        BinOp::Le => Val::I(i64::from(x <= y)),
        BinOp::Eq => Val::I(i64::from(x == y)),
        BinOp::Rem => return None,
    })
}

fn int_bin(op: BinOp, x: i64, y: i64) -> Option<i64> {
    match op {
        BinOp::Add => x.checked_add(y),
        BinOp::Sub => x.checked_sub(y),
        BinOp::Mul => x.checked_mul(y),
        BinOp::Div if x >= 0 && y > 0 => Some(x / y),
        BinOp::Rem if x >= 0 && y > 0 => Some(x % y),
        BinOp::Div | BinOp::Rem => None,
        BinOp::Min => Some(x.min(y)),
        BinOp::Max => Some(x.max(y)),
        BinOp::Lt => Some(i64::from(x < y)),
        BinOp::Le => Some(i64::from(x <= y)),
        BinOp::Eq => Some(i64::from(x == y)),
    }
}

fn un(op: UnOp, x: Val) -> Option<Val> {
    Some(match (op, x) {
        (UnOp::Neg, Val::F(v)) => Val::F(-v),
        (UnOp::Neg, Val::I(v)) => Val::I(v.checked_neg()?),
        (UnOp::Abs, Val::F(v)) => Val::F(v.abs()),
        (UnOp::Abs, Val::I(v)) => Val::I(v.checked_abs()?),
        (UnOp::Exp, Val::F(v)) => Val::F(v.exp()),
        (UnOp::Log, Val::F(v)) => Val::F(v.ln()),
        (UnOp::Sqrt, Val::F(v)) => Val::F(v.sqrt()),
        (UnOp::Tanh, Val::F(v)) => Val::F(v.tanh()),
        // The Kernel IR's sin/cos (the JITs' own, bit for bit; see `UnOp::Sin`).
        (UnOp::Sin, Val::F(v)) => Val::F(crate::cranelift::sin_cos_f32(v, false)),
        (UnOp::Cos, Val::F(v)) => Val::F(crate::cranelift::sin_cos_f32(v, true)),
        (UnOp::Round, Val::F(v)) => Val::F(v.round_ties_even()),
        (UnOp::ToF32, Val::I(v)) => Val::F(v as f32),
        // Truncates toward zero, saturating; NaN → 0 (Rust's `as`, Cranelift's fcvt_sat).
        (UnOp::ToInt, Val::F(v)) => Val::I(v as i64),
        _ => return None,
    })
}
