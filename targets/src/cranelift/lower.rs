//! Body → CLIF for one section: loops as rotated blocks, locals and loop variables as
//! cranelift-frontend `Variable`s (SSA built for us), scalar expressions, and loads/stores
//! that widen and narrow per the param dtype. `vector for` loops go to `vectorize`, which
//! reuses the scalar pieces here for loop-invariant parts and the tail.

use super::f16;
use super::math::{self, Helper, Helpers, Lanes};
use super::scan;
use super::vectorize;
use bfly_ir::DType;
use bfly_ir::kernel::{BinOp, Body, Expr, Local, LoopKind, LoopVar, Stmt, UnOp};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    ExtFuncData, ExternalName, FuncRef, Function, InstBuilder, MemFlagsData, Type,
    UserExternalName, Value, types,
};
use cranelift_codegen::isa::TargetFrontendConfig;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use std::collections::HashMap;

/// Lowering errors are messages about the body; `compile` adds body and section.
pub(super) type LResult<T> = Result<T, String>;

/// Flags for reading the `args` / `syms` arrays: never trap, never written, hoistable.
fn table_flags() -> MemFlagsData {
    MemFlagsData::trusted().with_readonly().with_can_move()
}

/// Flags for scalar buffer accesses: elements are naturally aligned (buffers are 16-byte
/// aligned) and in bounds (the executor sizes them).
pub(super) fn data_flags() -> MemFlagsData {
    MemFlagsData::trusted()
}

/// Translation state of one section function.
pub(super) struct Lower<'a> {
    pub b: FunctionBuilder<'a>,
    pub body: &'a Body,
    helpers: &'a Helpers,
    imported: [Option<FuncRef>; 3],
    /// Base address of each param the section uses (loaded in the entry block).
    bases: Vec<Option<Value>>,
    syms: [Option<Value>; 3],
    /// Loop variables and locals by id, with the local's type.
    pub vars: Vec<Option<Variable>>,
    pub locals: Vec<Option<(Variable, Type)>>,
    /// How often each local is read anywhere in the section.
    pub reads: HashMap<Local, usize>,
    pub notes: Vec<String>,
    label: String,
}

/// Builds section `section` of `body` into `func` (whose signature is the section ABI).
/// Returns the vectorizer's notes.
pub(super) fn build_section(
    func: &mut Function,
    fbc: &mut FunctionBuilderContext,
    body: &Body,
    section: usize,
    helpers: &Helpers,
    label: String,
    config: TargetFrontendConfig,
) -> LResult<Vec<String>> {
    let stmt = body
        .stmts
        .get(section)
        .ok_or_else(|| format!("no section {section}"))?;
    let mut b = FunctionBuilder::new(func, fbc);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let p = b.block_params(entry).to_vec();
    let (args_ptr, syms_ptr, lo, hi) = (p[0], p[1], p[2], p[3]);

    let uses = scan::uses(std::slice::from_ref(stmt));
    let mut bases = vec![None; body.params.len()];
    for &arg in &uses.args {
        let slot = bases
            .get_mut(arg as usize)
            .ok_or_else(|| format!("param {arg} does not exist"))?;
        let off = i32::try_from(arg as usize * 8).map_err(|_| "too many params".to_string())?;
        *slot = Some(b.ins().load(types::I64, table_flags(), args_ptr, off));
    }
    let mut syms = [None; 3];
    for &s in &uses.syms {
        let off = (s.slot() * 8) as i32;
        syms[s.slot()] = Some(b.ins().load(types::I64, table_flags(), syms_ptr, off));
    }

    let mut lw = Lower {
        b,
        body,
        helpers,
        imported: [None; 3],
        bases,
        syms,
        vars: Vec::new(),
        locals: Vec::new(),
        reads: scan::local_reads(std::slice::from_ref(stmt)),
        notes: Vec::new(),
        label,
    };
    match stmt {
        Stmt::For {
            var,
            kind: LoopKind::Parallel,
            body,
            ..
        } => lw.serial_loop(*var, lo, hi, None, body)?,
        s => lw.stmt(s)?,
    }
    lw.b.ins().return_(&[]);
    let notes = std::mem::take(&mut lw.notes);
    lw.b.finalize(config);
    Ok(notes)
}

impl<'a> Lower<'a> {
    pub fn ty(&self, v: Value) -> Type {
        self.b.func.dfg.value_type(v)
    }

    pub fn note(&mut self, var: LoopVar, reason: &str) {
        self.notes.push(format!(
            "{}: vector loop {var} runs serially: {reason}",
            self.label
        ));
    }

    /// The variable of loop var `v`, created on first use.
    pub fn var_variable(&mut self, v: LoopVar) -> Variable {
        let i = v.0 as usize;
        if self.vars.len() <= i {
            self.vars.resize(i + 1, None);
        }
        match self.vars[i] {
            Some(var) => var,
            None => {
                let var = self.b.declare_var(types::I64);
                self.vars[i] = Some(var);
                var
            }
        }
    }

    pub fn local(&self, l: Local) -> Option<(Variable, Type)> {
        self.locals.get(l.0 as usize).copied().flatten()
    }

    pub fn set_local(&mut self, l: Local, slot: Option<(Variable, Type)>) {
        let i = l.0 as usize;
        if self.locals.len() <= i {
            self.locals.resize(i + 1, None);
        }
        self.locals[i] = slot;
    }

    pub fn param_dtype(&self, arg: u32) -> LResult<DType> {
        self.body
            .params
            .get(arg as usize)
            .map(|p| p.dtype)
            .ok_or_else(|| format!("param {arg} does not exist"))
    }

    // -----------------------------------------------------------------------------------
    // Statements.

    pub fn stmts(&mut self, ss: &[Stmt]) -> LResult<()> {
        for s in ss {
            self.stmt(s)?;
        }
        Ok(())
    }

    fn stmt(&mut self, s: &Stmt) -> LResult<()> {
        match s {
            Stmt::For {
                var,
                start,
                end,
                kind,
                body,
            } => {
                let sv = self.int_expr(start)?;
                let ev = self.int_expr(end)?;
                let trips = match (scan::const_int(start), scan::const_int(end)) {
                    (Some(a), Some(b)) => Some(b.saturating_sub(a).max(0)),
                    _ => None,
                };
                if *kind == LoopKind::Vector {
                    let start_const = scan::const_int(start);
                    vectorize::vector_loop(self, *var, start_const, sv, ev, trips, body)
                } else {
                    // A nested `Parallel` is not allowed by the IR; running it serially is
                    // always correct.
                    self.serial_loop(*var, sv, ev, trips, body)
                }
            }
            Stmt::Let { local, value } => {
                let v = self.expr(value)?;
                let ty = self.ty(v);
                let var = match self.local(*local) {
                    Some((var, t)) if t == ty => var,
                    Some((_, t)) => {
                        return Err(format!("{local} redefined as {ty} (was {t})"));
                    }
                    None => {
                        let var = self.b.declare_var(ty);
                        self.set_local(*local, Some((var, ty)));
                        var
                    }
                };
                self.b.def_var(var, v);
                Ok(())
            }
            Stmt::Assign { local, value } => {
                let v = self.expr(value)?;
                let ty = self.ty(v);
                match self.local(*local) {
                    Some((var, t)) if t == ty => {
                        self.b.def_var(var, v);
                        Ok(())
                    }
                    Some((_, t)) => Err(format!("{local} is {t}, assigned {ty}")),
                    None => Err(format!("{local} assigned before its let")),
                }
            }
            Stmt::Store { arg, index, value } => {
                let idx = self.int_expr(index)?;
                let v = self.expr(value)?;
                self.store(*arg, idx, v)
            }
            Stmt::If { cond, then } => {
                let c = self.int_expr(cond)?;
                let then_blk = self.b.create_block();
                let merge = self.b.create_block();
                self.b.ins().brif(c, then_blk, &[], merge, &[]);
                self.b.switch_to_block(then_blk);
                self.b.seal_block(then_blk);
                self.stmts(then)?;
                self.b.ins().jump(merge, &[]);
                self.b.switch_to_block(merge);
                self.b.seal_block(merge);
                Ok(())
            }
        }
    }

    /// `for var in from..to { body }` one iteration at a time.
    pub fn serial_loop(
        &mut self,
        var: LoopVar,
        from: Value,
        to: Value,
        trips: Option<i64>,
        body: &[Stmt],
    ) -> LResult<()> {
        let iv = self.var_variable(var);
        self.b.def_var(iv, from);
        self.counted_loop(iv, to, 1, trips, &mut |lw, _| lw.stmts(body))
    }

    /// Runs `body` for `iv = iv, iv+step, …` while `iv < to`, leaving `iv` at the first
    /// value not run. With a known trip count, 0 emits nothing, 1 emits straight-line code
    /// and more skips the entry test; otherwise a rotated loop (test at entry and latch).
    pub fn counted_loop(
        &mut self,
        iv: Variable,
        to: Value,
        step: i64,
        trips: Option<i64>,
        body: &mut dyn FnMut(&mut Self, Value) -> LResult<()>,
    ) -> LResult<()> {
        match trips {
            Some(t) if t <= 0 => return Ok(()),
            Some(1) => {
                let v = self.b.use_var(iv);
                body(self, v)?;
                let next = self.b.ins().iadd_imm_s(v, step);
                self.b.def_var(iv, next);
                return Ok(());
            }
            _ => {}
        }
        let blk = self.b.create_block();
        let exit = self.b.create_block();
        if trips.is_some() {
            self.b.ins().jump(blk, &[]);
        } else {
            let v = self.b.use_var(iv);
            let go = self.b.ins().icmp(IntCC::SignedLessThan, v, to);
            self.b.ins().brif(go, blk, &[], exit, &[]);
        }
        self.b.switch_to_block(blk);
        let v = self.b.use_var(iv);
        body(self, v)?;
        let next = self.b.ins().iadd_imm_s(v, step);
        self.b.def_var(iv, next);
        let more = self.b.ins().icmp(IntCC::SignedLessThan, next, to);
        self.b.ins().brif(more, blk, &[], exit, &[]);
        self.b.seal_block(blk);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Memory.

    /// Byte address of element `idx` of param `arg`.
    pub fn addr(&mut self, arg: u32, idx: Value) -> LResult<Value> {
        let size = self.param_dtype(arg)?.size_bytes();
        let base = self
            .bases
            .get(arg as usize)
            .copied()
            .flatten()
            .ok_or_else(|| format!("param {arg} has no address"))?;
        let off = match size {
            1 => idx,
            2 => self.b.ins().ishl_imm_s(idx, 1),
            4 => self.b.ins().ishl_imm_s(idx, 2),
            n => self.b.ins().imul_imm_s(idx, n as i64),
        };
        Ok(self.b.ins().iadd(base, off))
    }

    /// Loads element `idx` of `arg`, widened (f16 → F32, i8/i32 → I64).
    pub fn load(&mut self, arg: u32, idx: Value) -> LResult<Value> {
        let dtype = self.param_dtype(arg)?;
        let a = self.addr(arg, idx)?;
        let f = data_flags();
        Ok(match dtype {
            DType::F32 => self.b.ins().load(types::F32, f, a, 0),
            DType::F16 => {
                let h = self.b.ins().uload16(types::I32, f, a, 0);
                f16::to_f32(&mut self.b, Lanes::One, h)
            }
            DType::I8 => self.b.ins().sload8(types::I64, f, a, 0),
            DType::I32 => self.b.ins().sload32(f, a, 0),
        })
    }

    /// Stores `v` narrowed to the dtype of `arg` (f16 rounds to nearest even, ints wrap).
    pub fn store(&mut self, arg: u32, idx: Value, v: Value) -> LResult<()> {
        let dtype = self.param_dtype(arg)?;
        let ty = self.ty(v);
        let want = if dtype.is_float() {
            types::F32
        } else {
            types::I64
        };
        if ty != want {
            return Err(format!("stores {ty} into {dtype} param {arg}"));
        }
        let a = self.addr(arg, idx)?;
        let f = data_flags();
        match dtype {
            DType::F32 => self.b.ins().store(f, v, a, 0),
            DType::F16 => {
                let h = f16::from_f32(&mut self.b, Lanes::One, v);
                self.b.ins().istore16(f, h, a, 0)
            }
            DType::I8 => self.b.ins().istore8(f, v, a, 0),
            DType::I32 => self.b.ins().istore32(f, v, a, 0),
        };
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Expressions.

    pub fn int_expr(&mut self, e: &Expr) -> LResult<Value> {
        let v = self.expr(e)?;
        if self.ty(v) != types::I64 {
            return Err(format!("expected an int, got f32: {e:?}"));
        }
        Ok(v)
    }

    /// Evaluates `e` as a scalar: F32 or I64.
    pub fn expr(&mut self, e: &Expr) -> LResult<Value> {
        Ok(match e {
            Expr::F32(v) => self.b.ins().f32const(*v),
            Expr::Int(v) => self.b.ins().iconst(types::I64, *v),
            Expr::Var(v) => {
                let var = self
                    .vars
                    .get(v.0 as usize)
                    .copied()
                    .flatten()
                    .ok_or_else(|| format!("{v} used outside its loop"))?;
                self.b.use_var(var)
            }
            Expr::Sym(s) => self.syms[s.slot()].ok_or("symbol not loaded")?,
            Expr::Local(l) => {
                let (var, _) = self
                    .local(*l)
                    .ok_or_else(|| format!("{l} used before its let"))?;
                self.b.use_var(var)
            }
            Expr::Load { arg, index } => {
                let idx = self.int_expr(index)?;
                self.load(*arg, idx)?
            }
            Expr::Bin(op, a, b) => {
                let x = self.expr(a)?;
                let y = self.expr(b)?;
                self.bin(*op, x, y, b)?
            }
            Expr::Un(op, a) => {
                let x = self.expr(a)?;
                self.un(*op, x)?
            }
            Expr::Select { cond, then, els } => {
                let c = self.int_expr(cond)?;
                let t = self.expr(then)?;
                let f = self.expr(els)?;
                if self.ty(t) != self.ty(f) {
                    return Err("select arms have different types".into());
                }
                self.b.ins().select(c, t, f)
            }
        })
    }

    /// A binary op on two scalars of one type; `rhs` is the right operand's expression (a
    /// constant divisor is lowered without the zero guard).
    pub fn bin(&mut self, op: BinOp, x: Value, y: Value, rhs: &Expr) -> LResult<Value> {
        let (tx, ty) = (self.ty(x), self.ty(y));
        if tx != ty {
            return Err(format!("operands of `{}` are {tx} and {ty}", op.name()));
        }
        let ins = self.b.ins();
        Ok(if tx == types::F32 {
            match op {
                BinOp::Add => ins.fadd(x, y),
                BinOp::Sub => ins.fsub(x, y),
                BinOp::Mul => ins.fmul(x, y),
                BinOp::Div => ins.fdiv(x, y),
                BinOp::Min => ins.fmin(x, y),
                BinOp::Max => ins.fmax(x, y),
                BinOp::Rem => return Err("`%` needs int operands".into()),
                BinOp::Lt | BinOp::Le | BinOp::Eq => {
                    let c = ins.fcmp(float_cc(op), x, y);
                    self.b.ins().uextend(types::I64, c)
                }
            }
        } else {
            match op {
                BinOp::Add => ins.iadd(x, y),
                BinOp::Sub => ins.isub(x, y),
                BinOp::Mul => ins.imul(x, y),
                BinOp::Min => ins.smin(x, y),
                BinOp::Max => ins.smax(x, y),
                BinOp::Div | BinOp::Rem => self.int_div(op == BinOp::Rem, x, y, rhs),
                BinOp::Lt | BinOp::Le | BinOp::Eq => {
                    let c = ins.icmp(int_cc(op), x, y);
                    self.b.ins().uextend(types::I64, c)
                }
            }
        })
    }

    /// Truncating `x / y` or `x % y`; a divisor `<= 0` gives 0 (never traps).
    fn int_div(&mut self, rem: bool, x: Value, y: Value, rhs: &Expr) -> Value {
        let quot_rem = |b: &mut FunctionBuilder, d: Value| {
            let q = b.ins().sdiv(x, d);
            if rem {
                let qd = b.ins().imul(q, d);
                b.ins().isub(x, qd)
            } else {
                q
            }
        };
        match scan::const_int(rhs) {
            Some(c) if c > 0 => quot_rem(&mut self.b, y),
            Some(_) => self.b.ins().iconst(types::I64, 0),
            None => {
                let pos = self.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, y, 0);
                let one = self.b.ins().iconst(types::I64, 1);
                let d = self.b.ins().select(pos, y, one);
                let r = quot_rem(&mut self.b, d);
                let zero = self.b.ins().iconst(types::I64, 0);
                self.b.ins().select(pos, r, zero)
            }
        }
    }

    pub fn un(&mut self, op: UnOp, x: Value) -> LResult<Value> {
        let tx = self.ty(x);
        if tx == types::I64 {
            return Ok(match op {
                UnOp::Neg => self.b.ins().ineg(x),
                UnOp::Abs => self.b.ins().iabs(x),
                UnOp::ToF32 => self.b.ins().fcvt_from_sint(types::F32, x),
                _ => return Err(format!("{}() needs an f32 operand", op.name())),
            });
        }
        Ok(match op {
            UnOp::Neg => self.b.ins().fneg(x),
            UnOp::Abs => self.b.ins().fabs(x),
            UnOp::Sqrt => self.b.ins().sqrt(x),
            UnOp::Round => self.b.ins().nearest(x),
            UnOp::Exp => math::exp(&mut self.b, Lanes::One, x),
            UnOp::Tanh => math::tanh(&mut self.b, Lanes::One, x),
            UnOp::Log | UnOp::Sin | UnOp::Cos => {
                let h = Helper::of(op).ok_or("no helper")?;
                self.call_helper(h, x)
            }
            UnOp::ToInt => self.b.ins().fcvt_to_sint_sat(types::I64, x),
            UnOp::ToF32 => return Err("f32() needs an int operand".into()),
        })
    }

    /// sin or cos (`op`) of an F32X4: inline (`math::sin_cos`); when some lane is beyond
    /// `math::TRIG_MAX` (or ±inf, NaN), a branch calls the scalar helper for every lane (it
    /// gives the inline result for the others, so nothing differs from serial code).
    pub fn sin_cos4(&mut self, op: UnOp, x: Value) -> LResult<Value> {
        let l = Lanes::Four;
        let h = Helper::of(op).ok_or("no helper")?;
        let fast = math::sin_cos(&mut self.b, l, x, op == UnOp::Cos);
        let ax = self.b.ins().fabs(x);
        let lim = l.fconst(&mut self.b, math::TRIG_MAX);
        // `ax <= lim` is false for NaN too; an ordered compare, as aarch64 has no vector
        // `UnorderedOrGreaterThan`.
        let small = self.b.ins().fcmp(FloatCC::LessThanOrEqual, ax, lim);
        let all_small = self.b.ins().vall_true(small);
        let slow = self.b.create_block();
        let join = self.b.create_block();
        let res = self.b.append_block_param(join, l.float());
        self.b.set_cold_block(slow);
        self.b
            .ins()
            .brif(all_small, join, &[fast.into()], slow, &[]);
        self.b.switch_to_block(slow);
        self.b.seal_block(slow);
        let mut called = x;
        for i in 0..4u8 {
            let xi = self.b.ins().extractlane(x, i);
            let yi = self.call_helper(h, xi);
            called = self.b.ins().insertlane(called, yi, i);
        }
        self.b.ins().jump(join, &[called.into()]);
        self.b.switch_to_block(join);
        self.b.seal_block(join);
        Ok(res)
    }

    /// Calls a scalar `f32 → f32` helper.
    pub fn call_helper(&mut self, h: Helper, x: Value) -> Value {
        let i = h as usize;
        let f = match self.imported[i] {
            Some(f) => f,
            None => {
                let sig = self.b.import_signature(self.helpers.sig.clone());
                let name = self
                    .b
                    .func
                    .declare_imported_user_function(UserExternalName {
                        namespace: 0,
                        index: self.helpers.ids[i].as_u32(),
                    });
                let f = self.b.import_function(ExtFuncData {
                    name: ExternalName::user(name),
                    signature: sig,
                    colocated: false,
                    patchable: false,
                });
                self.imported[i] = Some(f);
                f
            }
        };
        let call = self.b.ins().call(f, &[x]);
        self.b.inst_results(call)[0]
    }
}

pub(super) fn float_cc(op: BinOp) -> FloatCC {
    match op {
        BinOp::Lt => FloatCC::LessThan,
        BinOp::Le => FloatCC::LessThanOrEqual,
        _ => FloatCC::Equal,
    }
}

fn int_cc(op: BinOp) -> IntCC {
    match op {
        BinOp::Lt => IntCC::SignedLessThan,
        BinOp::Le => IntCC::SignedLessThanOrEqual,
        _ => IntCC::Equal,
    }
}
