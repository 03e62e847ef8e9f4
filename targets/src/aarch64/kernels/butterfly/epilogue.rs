//! The tail loop `vector for j in 0..count { .. y[..] = f(work[wb + j], bias[col], e[..]) }`
//! translated as written: every load and the store must walk memory contiguously in `j`
//! (their indices are affine in row, group, stack and `j` with unit `j` coefficient), and
//! every operation must be one this translator has a vector form of; anything else declines.
//!
//! `exp` (SiLU, and `tanh` for GELU as `1 − 2/(e^{2x} + 1)`) is a Cephes-style polynomial:
//! `x = k·ln2 + r` (`|r| ≤ ln2/2`, `ln2` split in two for an exact `k·ln2_hi`), `e^r` by a
//! degree-6 polynomial, `2^k` added to the exponent bits. Relative error ≈ 1–2 ulp on the
//! clamp range `[−87.3, 88.7]` (Cephes' bound for these coefficients; not measured here);
//! outside it the result saturates near `1e−38` and `+inf`. `tanh` this way loses relative
//! accuracy near 0 (absolute error ≈ 2e−7), harmless in GELU where it is scaled by `x/2`.

use crate::aarch64::emit::{ARGS, Asm, V, Width, X};
use bfly_ir::DType;
use bfly_ir::kernel::{BinOp, BodyParam, Expr, Local, LoopVar, Stmt, UnOp};
use std::collections::HashMap;

/// An integer index as `c + r·row + g·group + s·stack + j·tail`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Affine {
    pub c: i64,
    pub row: i64,
    pub group: i64,
    pub stack: i64,
    pub j: i64,
}

impl Affine {
    fn add(self, o: Affine, sign: i64) -> Option<Affine> {
        Some(Affine {
            c: self.c.checked_add(o.c.checked_mul(sign)?)?,
            row: self.row.checked_add(o.row.checked_mul(sign)?)?,
            group: self.group.checked_add(o.group.checked_mul(sign)?)?,
            stack: self.stack.checked_add(o.stack.checked_mul(sign)?)?,
            j: self.j.checked_add(o.j.checked_mul(sign)?)?,
        })
    }

    fn scale(self, k: i64) -> Option<Affine> {
        Some(Affine {
            c: self.c.checked_mul(k)?,
            row: self.row.checked_mul(k)?,
            group: self.group.checked_mul(k)?,
            stack: self.stack.checked_mul(k)?,
            j: self.j.checked_mul(k)?,
        })
    }

    fn konst(&self) -> Option<i64> {
        (self.row == 0 && self.group == 0 && self.stack == 0 && self.j == 0).then_some(self.c)
    }
}

/// Which loop var is which.
#[derive(Clone, Copy, Debug)]
pub struct Vars {
    pub row: LoopVar,
    pub group: Option<LoopVar>,
    pub stack: Option<LoopVar>,
    pub j: LoopVar,
}

/// Evaluates an integer index expression as an [`Affine`] form (`None` if it is not one).
pub fn affine(e: &Expr, vars: &Vars, env: &HashMap<Local, Affine>) -> Option<Affine> {
    let unit = |f: fn(&mut Affine)| {
        let mut a = Affine::default();
        f(&mut a);
        Some(a)
    };
    match e {
        Expr::Int(v) => Some(Affine {
            c: *v,
            ..Affine::default()
        }),
        Expr::Var(v) if *v == vars.row => unit(|a| a.row = 1),
        Expr::Var(v) if Some(*v) == vars.group => unit(|a| a.group = 1),
        Expr::Var(v) if Some(*v) == vars.stack => unit(|a| a.stack = 1),
        Expr::Var(v) if *v == vars.j => unit(|a| a.j = 1),
        Expr::Local(l) => env.get(l).copied(),
        Expr::Bin(BinOp::Add, a, b) => affine(a, vars, env)?.add(affine(b, vars, env)?, 1),
        Expr::Bin(BinOp::Sub, a, b) => affine(a, vars, env)?.add(affine(b, vars, env)?, -1),
        Expr::Bin(BinOp::Mul, a, b) => {
            let (a, b) = (affine(a, vars, env)?, affine(b, vars, env)?);
            match (a.konst(), b.konst()) {
                (Some(k), _) => b.scale(k),
                (_, Some(k)) => a.scale(k),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A contiguous walk over one param: element `index(row, group, stack) + j`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stream {
    pub arg: u32,
    pub at: Affine,
}

/// A vector expression over the streams and the tail's float locals.
#[derive(Clone, Debug, PartialEq)]
pub enum VExpr {
    Const(f32),
    Stream(usize),
    Local(usize),
    Bin(BinOp, Box<VExpr>, Box<VExpr>),
    Un(UnOp, Box<VExpr>),
}

/// The translated tail: loads, per-element locals and one store.
#[derive(Clone, Debug)]
pub struct TailPlan {
    pub loads: Vec<Stream>,
    pub locals: Vec<VExpr>,
    pub store: Stream,
    pub value: VExpr,
}

impl TailPlan {
    /// Does the tail evaluate `exp` (directly or inside `tanh`)? For the tile comment.
    pub fn uses_exp(&self) -> bool {
        fn has(e: &VExpr) -> bool {
            match e {
                VExpr::Un(UnOp::Exp | UnOp::Tanh, _) => true,
                VExpr::Un(_, a) => has(a),
                VExpr::Bin(_, a, b) => has(a) || has(b),
                _ => false,
            }
        }
        self.locals.iter().any(has) || has(&self.value)
    }
}

/// Translates the tail body; `Err` is the reason to decline.
pub fn translate(
    body: &[Stmt],
    vars: &Vars,
    path_lets: &[(Local, Expr)],
    store_arg: u32,
    params: &[BodyParam],
) -> Result<TailPlan, String> {
    let mut env: HashMap<Local, Affine> = HashMap::new();
    let no_j = Vars {
        j: LoopVar(u32::MAX),
        ..*vars
    };
    for (l, e) in path_lets {
        if let Some(a) = affine(e, &no_j, &env) {
            env.insert(*l, a);
        }
    }
    let mut t = Translator {
        vars,
        env,
        floats: HashMap::new(),
        loads: Vec::new(),
        locals: Vec::new(),
    };
    let Some((last, lets)) = body.split_last() else {
        return Err("empty tail loop".into());
    };
    for s in lets {
        let Stmt::Let { local, value } = s else {
            return Err("tail statement other than `let` before the store".into());
        };
        if let Some(a) = affine(value, vars, &t.env) {
            t.env.insert(*local, a);
            continue;
        }
        let v = t.expr(value)?;
        t.locals.push(v);
        t.floats.insert(*local, t.locals.len() - 1);
    }
    let Stmt::Store { arg, index, value } = last else {
        return Err("the tail does not end with a store".into());
    };
    if *arg != store_arg {
        return Err("the tail stores into another param than y".into());
    }
    let store = t.stream(*arg, index)?;
    let value = t.expr(value)?;
    for s in t.loads.iter().chain(std::iter::once(&store)) {
        match params.get(s.arg as usize) {
            Some(p) if p.dtype == DType::F32 => {}
            Some(p) => return Err(format!("`{}` is {} (f32 only)", p.name, p.dtype)),
            None => return Err("param index".into()),
        }
    }
    Ok(TailPlan {
        loads: t.loads,
        locals: t.locals,
        store,
        value,
    })
}

struct Translator<'a> {
    vars: &'a Vars,
    env: HashMap<Local, Affine>,
    floats: HashMap<Local, usize>,
    loads: Vec<Stream>,
    locals: Vec<VExpr>,
}

impl Translator<'_> {
    fn stream(&self, arg: u32, index: &Expr) -> Result<Stream, String> {
        let at = affine(index, self.vars, &self.env).ok_or("a tail index is not affine")?;
        if at.j != 1 {
            return Err("a tail access is not contiguous in j".into());
        }
        if at.c < 0 || at.row < 0 || at.group < 0 || at.stack < 0 {
            return Err("a tail index has a negative coefficient".into());
        }
        Ok(Stream { arg, at })
    }

    fn expr(&mut self, e: &Expr) -> Result<VExpr, String> {
        Ok(match e {
            Expr::F32(v) => VExpr::Const(*v),
            Expr::Local(l) => VExpr::Local(
                *self
                    .floats
                    .get(l)
                    .ok_or("a tail value reads a local from outside the tail")?,
            ),
            Expr::Load { arg, index } => {
                let s = self.stream(*arg, index)?;
                let k = match self.loads.iter().position(|x| *x == s) {
                    Some(k) => k,
                    None => {
                        self.loads.push(s);
                        self.loads.len() - 1
                    }
                };
                VExpr::Stream(k)
            }
            Expr::Bin(
                op @ (BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Min | BinOp::Max),
                a,
                b,
            ) => VExpr::Bin(*op, Box::new(self.expr(a)?), Box::new(self.expr(b)?)),
            Expr::Un(op @ (UnOp::Neg | UnOp::Abs | UnOp::Sqrt | UnOp::Exp | UnOp::Tanh), a) => {
                VExpr::Un(*op, Box::new(self.expr(a)?))
            }
            other => return Err(format!("tail operation {other:?} has no vector form here")),
        })
    }
}

/// Vector registers the tail may use (v8..v15 are callee-saved and left alone).
pub struct VPool {
    free: Vec<V>,
}

impl VPool {
    pub fn new() -> VPool {
        let mut free: Vec<V> = (16..32).rev().map(V).collect();
        free.extend((0..8).rev().map(V));
        VPool { free }
    }

    fn take(&mut self, asm: &mut Asm) -> V {
        match self.free.pop() {
            Some(v) => v,
            None => {
                asm.fail("butterfly tail: out of vector registers".into());
                V(0)
            }
        }
    }

    fn give(&mut self, v: V) {
        self.free.push(v);
    }
}

/// General registers the tail's stream pointers live in.
pub const STREAM_REGS: [X; 9] = [
    X(13),
    X(19),
    X(20),
    X(21),
    X(22),
    X(23),
    X(24),
    X(25),
    X(26),
];

/// Where the row, group and stack indices are (group/stack are `None` when elided).
#[derive(Clone, Copy, Debug)]
pub struct IndexRegs {
    pub row: X,
    pub group: X,
    pub stack: X,
}

/// The register holding the tail's element count on entry to [`emit`] (clobbered).
pub const COUNT: X = X(14);

/// Emits the tail for the current (row, group, stack): [`COUNT`] elements with `.4s`
/// vectors, then single lanes. Clobbers x13..x16, x19..x26, v0..v7, v16..v31.
pub fn emit(asm: &mut Asm, plan: &TailPlan, idx: IndexRegs) -> Result<(), String> {
    let streams: Vec<Stream> = plan
        .loads
        .iter()
        .copied()
        .chain(std::iter::once(plan.store))
        .collect();
    if streams.len() > STREAM_REGS.len() {
        return Err(format!("{} tail streams", streams.len()));
    }
    asm.comment("tail: bias / epilogue, work row → y (4 lanes, then single lanes)");
    for (k, s) in streams.iter().enumerate() {
        let p = STREAM_REGS[k];
        asm.ldr_x(p, ARGS, 8 * s.arg);
        let c = u64::try_from(s.at.c * 4).map_err(|_| "negative tail offset")?;
        asm.add_imm(p, p, c);
        for (reg, coef) in [
            (idx.row, s.at.row),
            (idx.group, s.at.group),
            (idx.stack, s.at.stack),
        ] {
            if coef != 0 {
                asm.mov_imm(X(16), coef * 4);
                asm.madd(p, reg, X(16), p);
            }
        }
    }
    let (quads, rest) = (X(15), COUNT);
    asm.lsr_imm(quads, COUNT, 2);
    asm.lsl_imm(X(16), quads, 2);
    asm.sub(rest, COUNT, X(16));
    for (w, counter) in [(Width::Q, quads), (Width::S, rest)] {
        let (top, done) = (asm.new_label(), asm.new_label());
        asm.cbz(counter, done);
        asm.bind(top);
        let mut pool = VPool::new();
        let mut loaded = Vec::new();
        for (k, _) in plan.loads.iter().enumerate() {
            let v = pool.take(asm);
            asm.ldr_post(w, v, STREAM_REGS[k], w.bytes() as i32);
            loaded.push(v);
        }
        let mut locals = Vec::new();
        for e in &plan.locals {
            let v = value(asm, e, &loaded, &locals, &mut pool);
            locals.push(v);
        }
        let v = value(asm, &plan.value, &loaded, &locals, &mut pool);
        asm.str_post(w, v, STREAM_REGS[streams.len() - 1], w.bytes() as i32);
        asm.subs_imm(counter, counter, 1);
        asm.b_cond(crate::aarch64::emit::Cond::Ne, top);
        asm.bind(done);
    }
    Ok(())
}

/// Computes `e` into a fresh register (streams and locals are read, never clobbered).
fn value(asm: &mut Asm, e: &VExpr, loads: &[V], locals: &[V], pool: &mut VPool) -> V {
    match e {
        VExpr::Const(c) => {
            let d = pool.take(asm);
            asm.const_4s(d, *c);
            d
        }
        VExpr::Stream(k) => {
            let d = pool.take(asm);
            asm.mov_v(d, loads[*k]);
            d
        }
        VExpr::Local(k) => {
            let d = pool.take(asm);
            asm.mov_v(d, locals[*k]);
            d
        }
        VExpr::Bin(op, a, b) => {
            let a = value(asm, a, loads, locals, pool);
            let b = value(asm, b, loads, locals, pool);
            match op {
                BinOp::Add => asm.fadd_4s(a, a, b),
                BinOp::Sub => asm.fsub_4s(a, a, b),
                BinOp::Mul => asm.fmul_4s(a, a, b),
                BinOp::Div => asm.fdiv_4s(a, a, b),
                BinOp::Min => asm.fmin_4s(a, a, b),
                _ => asm.fmax_4s(a, a, b),
            }
            pool.give(b);
            a
        }
        VExpr::Un(op, a) => {
            let a = value(asm, a, loads, locals, pool);
            match op {
                UnOp::Neg => asm.fneg_4s(a, a),
                UnOp::Abs => asm.fabs_4s(a, a),
                UnOp::Sqrt => asm.fsqrt_4s(a, a),
                UnOp::Exp => exp(asm, a, pool),
                _ => tanh(asm, a, pool),
            }
            a
        }
    }
}

/// `x = e^x` in place (see the module doc for the method and error).
fn exp(asm: &mut Asm, x: V, pool: &mut VPool) {
    let (k, t, c) = (pool.take(asm), pool.take(asm), pool.take(asm));
    asm.const_4s(c, 88.722_83);
    asm.fmin_4s(x, x, c);
    asm.const_4s(c, -87.336_55);
    asm.fmax_4s(x, x, c);
    // k = round(x·log2 e); r = x − k·ln2_hi − k·ln2_lo.
    asm.const_4s(c, std::f32::consts::LOG2_E);
    asm.fmul_4s(k, x, c);
    asm.frintn_4s(k, k);
    asm.const_4s(c, 0.693_359_4);
    asm.fmls_4s(x, k, c);
    asm.const_4s(c, -2.121_944_4e-4);
    asm.fmls_4s(x, k, c);
    // p(r) = ((((c0·r + c1)·r + c2)·r + c3)·r + c4)·r + c5, e^r ≈ p·r² + r + 1.
    let coefs = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ];
    asm.const_4s(t, coefs[0]);
    for &cf in &coefs[1..] {
        asm.const_4s(c, cf);
        asm.fmla_4s(c, t, x);
        asm.mov_v(t, c);
    }
    asm.fmul_4s(c, x, x);
    asm.fmul_4s(t, t, c);
    asm.fadd_4s(t, t, x);
    asm.const_4s(c, 1.0);
    asm.fadd_4s(t, t, c);
    // 2^k: k (an integer-valued float) into the exponent field.
    asm.fcvtzs_4s(k, k);
    asm.shl_4s(k, k, 23);
    asm.add_4s(x, t, k);
    pool.give(c);
    pool.give(t);
    pool.give(k);
}

/// `x = tanh x = 1 − 2/(e^{2x} + 1)` in place.
fn tanh(asm: &mut Asm, x: V, pool: &mut VPool) {
    asm.fadd_4s(x, x, x);
    exp(asm, x, pool);
    let one = pool.take(asm);
    asm.const_4s(one, 1.0);
    asm.fadd_4s(x, x, one);
    let two = pool.take(asm);
    asm.const_4s(two, 2.0);
    asm.fdiv_4s(x, two, x);
    asm.fsub_4s(x, one, x);
    pool.give(two);
    pool.give(one);
}
