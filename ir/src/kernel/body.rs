//! The generic loop-nest body of a kernel: a tiny typed language every backend compiles.
//!
//! A body reads and writes its *params* (buffers, addressed by element index) through
//! `Load`/`Store`, iterates with `For` loops and keeps scalars in mutable *locals*. Two scalar
//! types exist: `f32` and `int` (64-bit, for indices, tokens and int8 arithmetic). Loads
//! widen (`f16 → f32`, `i8/i32 → int`); stores narrow (`f32 → f16` rounds to nearest even,
//! `int → i8/i32` wraps, so lowering clamps first).
//!
//! Loop kinds carry the facts a backend needs and may not prove itself:
//! - `Parallel`: iterations write disjoint elements and read nothing another iteration
//!   writes. Only top-level statements (sections, see `Body::section_range`) may be
//!   parallel; the executor splits their range over threads, so per-element arithmetic
//!   never depends on the thread count.
//! - `Vector`: iterations are independent except for reductions `acc = acc + e` /
//!   `acc = max(acc, e)` into locals defined outside the loop, which the backend may
//!   reassociate (4 partial sums). A backend that cannot vectorize runs it serially.
//! - `Serial`: no promise.

use crate::types::DType;
use std::fmt;
use std::ops;

/// Integer values every kernel receives at run time. Everything else is baked into the code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RtSym {
    /// Tokens in flight (per sequence).
    T,
    /// Sequences in the batch (training).
    B,
    /// Tokens already in the KV cache before this step (decode position).
    Pos,
}

impl RtSym {
    pub const ALL: [RtSym; 3] = [RtSym::T, RtSym::B, RtSym::Pos];

    /// Slot in the `syms` array passed to compiled kernels.
    pub fn slot(self) -> usize {
        match self {
            RtSym::T => 0,
            RtSym::B => 1,
            RtSym::Pos => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RtSym::T => "T",
            RtSym::B => "B",
            RtSym::Pos => "pos",
        }
    }

    /// The symbol of a Graph-IR dim name (`T`, `B`).
    pub fn from_dim(name: &str) -> Option<RtSym> {
        match name {
            "T" => Some(RtSym::T),
            "B" => Some(RtSym::B),
            _ => None,
        }
    }
}

/// A loop induction variable (`i3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LoopVar(pub u32);

/// A mutable scalar local (`a3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Local(pub u32);

/// Scalar type of an expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scalar {
    F32,
    Int,
}

impl Scalar {
    /// The scalar a load from a buffer of `dtype` produces (and a store into it expects).
    pub fn of(dtype: DType) -> Scalar {
        if dtype.is_float() {
            Scalar::F32
        } else {
            Scalar::Int
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    /// Float division; for ints, division of non-negative operands (floor).
    Div,
    /// Int remainder of non-negative operands.
    Rem,
    Min,
    Max,
    /// Comparisons give an int 0/1.
    Lt,
    Le,
    Eq,
}

impl BinOp {
    pub fn name(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Min => "min",
            BinOp::Max => "max",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Eq => "==",
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Lt | BinOp::Le | BinOp::Eq)
    }

    fn is_call_form(self) -> bool {
        matches!(self, BinOp::Min | BinOp::Max)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnOp {
    Neg,
    Abs,
    Exp,
    Log,
    Sqrt,
    Tanh,
    /// f32 sine and cosine as every backend computes them (`bfly_targets`' Cephes polynomials
    /// after a three-part π/2 reduction for |x| ≤ 8192, ≤ 1.08·2⁻²³ relative error; libm
    /// beyond), so the interpreter, Cranelift and the aarch64 backend agree bit for bit.
    Sin,
    Cos,
    /// Round half to even (f32 → f32), as int8 quantization needs.
    Round,
    /// int → f32.
    ToF32,
    /// f32 → int, truncating toward zero (saturating at the int range).
    ToInt,
}

impl UnOp {
    pub fn name(self) -> &'static str {
        match self {
            UnOp::Neg => "neg",
            UnOp::Abs => "abs",
            UnOp::Exp => "exp",
            UnOp::Log => "log",
            UnOp::Sqrt => "sqrt",
            UnOp::Tanh => "tanh",
            UnOp::Sin => "sin",
            UnOp::Cos => "cos",
            UnOp::Round => "round",
            UnOp::ToF32 => "f32",
            UnOp::ToInt => "int",
        }
    }
}

/// A scalar expression. Build with the helpers and operators below (`a + b`, `x.exp()`).
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    F32(f32),
    Int(i64),
    Var(LoopVar),
    Sym(RtSym),
    Local(Local),
    /// Element `index` of param `arg` (widened, see the module doc).
    Load {
        arg: u32,
        index: Box<Expr>,
    },
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Un(UnOp, Box<Expr>),
    /// `cond != 0 ? then : els` (cond is int; both arms have one type).
    Select {
        cond: Box<Expr>,
        then: Box<Expr>,
        els: Box<Expr>,
    },
}

impl Expr {
    pub fn f32(v: f32) -> Expr {
        Expr::F32(v)
    }

    pub fn int(v: i64) -> Expr {
        Expr::Int(v)
    }

    pub fn sym(s: RtSym) -> Expr {
        Expr::Sym(s)
    }

    pub fn load(arg: u32, index: Expr) -> Expr {
        Expr::Load {
            arg,
            index: Box::new(index),
        }
    }

    pub fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
        Expr::Bin(op, Box::new(a), Box::new(b))
    }

    pub fn un(op: UnOp, a: Expr) -> Expr {
        Expr::Un(op, Box::new(a))
    }

    pub fn select(cond: Expr, then: Expr, els: Expr) -> Expr {
        Expr::Select {
            cond: Box::new(cond),
            then: Box::new(then),
            els: Box::new(els),
        }
    }

    pub fn min(self, o: Expr) -> Expr {
        Expr::bin(BinOp::Min, self, o)
    }
    pub fn max(self, o: Expr) -> Expr {
        Expr::bin(BinOp::Max, self, o)
    }
    pub fn lt(self, o: Expr) -> Expr {
        Expr::bin(BinOp::Lt, self, o)
    }
    pub fn le(self, o: Expr) -> Expr {
        Expr::bin(BinOp::Le, self, o)
    }
    pub fn eq_(self, o: Expr) -> Expr {
        Expr::bin(BinOp::Eq, self, o)
    }
    pub fn exp(self) -> Expr {
        Expr::un(UnOp::Exp, self)
    }
    pub fn log(self) -> Expr {
        Expr::un(UnOp::Log, self)
    }
    pub fn sqrt(self) -> Expr {
        Expr::un(UnOp::Sqrt, self)
    }
    pub fn tanh(self) -> Expr {
        Expr::un(UnOp::Tanh, self)
    }
    pub fn sin(self) -> Expr {
        Expr::un(UnOp::Sin, self)
    }
    pub fn cos(self) -> Expr {
        Expr::un(UnOp::Cos, self)
    }
    pub fn abs(self) -> Expr {
        Expr::un(UnOp::Abs, self)
    }
    pub fn round(self) -> Expr {
        Expr::un(UnOp::Round, self)
    }
    pub fn to_f32(self) -> Expr {
        Expr::un(UnOp::ToF32, self)
    }
    pub fn to_int(self) -> Expr {
        Expr::un(UnOp::ToInt, self)
    }

    /// Evaluates an int expression made only of constants, runtime symbols and arithmetic
    /// (loop extents of parallel loops). `None` for anything else or on overflow.
    pub fn eval_int(&self, syms: &[i64; 3]) -> Option<i64> {
        match self {
            Expr::Int(v) => Some(*v),
            Expr::Sym(s) => Some(syms[s.slot()]),
            Expr::Bin(op, a, b) => {
                let (a, b) = (a.eval_int(syms)?, b.eval_int(syms)?);
                match op {
                    BinOp::Add => a.checked_add(b),
                    BinOp::Sub => a.checked_sub(b),
                    BinOp::Mul => a.checked_mul(b),
                    BinOp::Div => a.checked_div(b),
                    BinOp::Rem => a.checked_rem(b),
                    BinOp::Min => Some(a.min(b)),
                    BinOp::Max => Some(a.max(b)),
                    BinOp::Lt => Some(i64::from(a < b)),
                    BinOp::Le => Some(i64::from(a <= b)),
                    BinOp::Eq => Some(i64::from(a == b)),
                }
            }
            _ => None,
        }
    }
}

impl From<i64> for Expr {
    fn from(v: i64) -> Expr {
        Expr::Int(v)
    }
}

/// Plain integer literals (`0`, `64`) default to `i32` in Rust; accept them directly.
impl From<i32> for Expr {
    fn from(v: i32) -> Expr {
        Expr::Int(i64::from(v))
    }
}

impl From<u64> for Expr {
    fn from(v: u64) -> Expr {
        Expr::Int(v as i64)
    }
}

impl From<usize> for Expr {
    fn from(v: usize) -> Expr {
        Expr::Int(v as i64)
    }
}

impl From<LoopVar> for Expr {
    fn from(v: LoopVar) -> Expr {
        Expr::Var(v)
    }
}

impl From<Local> for Expr {
    fn from(l: Local) -> Expr {
        Expr::Local(l)
    }
}

impl From<RtSym> for Expr {
    fn from(s: RtSym) -> Expr {
        Expr::Sym(s)
    }
}

macro_rules! arith {
    ($tr:ident, $method:ident, $op:expr) => {
        impl<R: Into<Expr>> ops::$tr<R> for Expr {
            type Output = Expr;
            fn $method(self, rhs: R) -> Expr {
                Expr::bin($op, self, rhs.into())
            }
        }
        impl<R: Into<Expr>> ops::$tr<R> for LoopVar {
            type Output = Expr;
            fn $method(self, rhs: R) -> Expr {
                Expr::bin($op, Expr::Var(self), rhs.into())
            }
        }
        impl<R: Into<Expr>> ops::$tr<R> for Local {
            type Output = Expr;
            fn $method(self, rhs: R) -> Expr {
                Expr::bin($op, Expr::Local(self), rhs.into())
            }
        }
    };
}

arith!(Add, add, BinOp::Add);
arith!(Sub, sub, BinOp::Sub);
arith!(Mul, mul, BinOp::Mul);
arith!(Div, div, BinOp::Div);
arith!(Rem, rem, BinOp::Rem);

impl ops::Neg for Expr {
    type Output = Expr;
    fn neg(self) -> Expr {
        Expr::un(UnOp::Neg, self)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoopKind {
    Serial,
    Parallel,
    Vector,
}

impl LoopKind {
    pub fn keyword(self) -> &'static str {
        match self {
            LoopKind::Serial => "for",
            LoopKind::Parallel => "parallel for",
            LoopKind::Vector => "vector for",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `for var in start..end` (int bounds, step 1; empty when `end <= start`).
    For {
        var: LoopVar,
        start: Expr,
        end: Expr,
        kind: LoopKind,
        body: Vec<Stmt>,
    },
    /// Defines `local` (its type is the value's); later `Assign`s keep that type.
    Let {
        local: Local,
        value: Expr,
    },
    Assign {
        local: Local,
        value: Expr,
    },
    Store {
        arg: u32,
        index: Expr,
        value: Expr,
    },
    If {
        cond: Expr,
        then: Vec<Stmt>,
    },
}

/// How a body uses one of its params.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

impl Access {
    pub fn name(self) -> &'static str {
        match self {
            Access::Read => "in",
            Access::Write => "out",
            Access::ReadWrite => "inout",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BodyParam {
    pub name: String,
    pub dtype: DType,
    pub access: Access,
}

/// A compiled unit: params (buffers by position) and statements.
#[derive(Clone, Debug, PartialEq)]
pub struct Body {
    pub params: Vec<BodyParam>,
    pub stmts: Vec<Stmt>,
    /// Number of loop vars / locals used (ids are dense from 0).
    pub num_vars: u32,
    pub num_locals: u32,
}

impl Body {
    /// The `(start, end)` of top-level statement `section` if it is a parallel loop.
    ///
    /// A body's top-level statements are *sections*: the executor runs them in order with a
    /// barrier between, splitting each parallel section's range over threads and running any
    /// other section on one thread. A fused region whose ops need different parallel axes
    /// (a VJP's `dx` over tokens, then its `dW` over weights) is one kernel with two sections.
    pub fn section_range(&self, section: usize) -> Option<(&Expr, &Expr)> {
        match self.stmts.get(section)? {
            Stmt::For {
                kind: LoopKind::Parallel,
                start,
                end,
                ..
            } => Some((start, end)),
            _ => None,
        }
    }

    pub fn num_sections(&self) -> usize {
        self.stmts.len()
    }
}

/// Builds a body with nested closures:
///
/// ```
/// use bfly_ir::kernel::body::*;
/// use bfly_ir::DType;
/// let mut b = BodyBuilder::new();
/// let x = b.param("x", DType::F32, Access::Read);
/// let y = b.param("y", DType::F32, Access::Write);
/// b.for_(LoopKind::Parallel, 0, RtSym::T, |b, t| {
///     b.for_(LoopKind::Vector, 0, 64, |b, j| {
///         let v = Expr::load(x, t * 64 + j);
///         b.store(y, t * 64 + j, v.exp());
///     });
/// });
/// let body = b.finish();
/// assert!(body.section_range(0).is_some());
/// ```
#[derive(Default)]
pub struct BodyBuilder {
    params: Vec<BodyParam>,
    stack: Vec<Vec<Stmt>>,
    num_vars: u32,
    num_locals: u32,
}

impl BodyBuilder {
    pub fn new() -> BodyBuilder {
        BodyBuilder {
            stack: vec![Vec::new()],
            ..BodyBuilder::default()
        }
    }

    /// Declares the next param; returns its index for `Expr::load` / `store`.
    pub fn param(&mut self, name: &str, dtype: DType, access: Access) -> u32 {
        self.params.push(BodyParam {
            name: name.to_string(),
            dtype,
            access,
        });
        (self.params.len() - 1) as u32
    }

    fn push(&mut self, s: Stmt) {
        if let Some(top) = self.stack.last_mut() {
            top.push(s);
        }
    }

    pub fn for_(
        &mut self,
        kind: LoopKind,
        start: impl Into<Expr>,
        end: impl Into<Expr>,
        f: impl FnOnce(&mut BodyBuilder, LoopVar),
    ) {
        let var = LoopVar(self.num_vars);
        self.num_vars += 1;
        self.stack.push(Vec::new());
        f(self, var);
        let body = self.stack.pop().unwrap_or_default();
        self.push(Stmt::For {
            var,
            start: start.into(),
            end: end.into(),
            kind,
            body,
        });
    }

    /// Serial loop shorthand.
    pub fn serial(
        &mut self,
        start: impl Into<Expr>,
        end: impl Into<Expr>,
        f: impl FnOnce(&mut BodyBuilder, LoopVar),
    ) {
        self.for_(LoopKind::Serial, start, end, f)
    }

    pub fn if_(&mut self, cond: Expr, f: impl FnOnce(&mut BodyBuilder)) {
        self.stack.push(Vec::new());
        f(self);
        let then = self.stack.pop().unwrap_or_default();
        self.push(Stmt::If { cond, then });
    }

    pub fn let_(&mut self, value: impl Into<Expr>) -> Local {
        let local = Local(self.num_locals);
        self.num_locals += 1;
        self.push(Stmt::Let {
            local,
            value: value.into(),
        });
        local
    }

    pub fn assign(&mut self, local: Local, value: impl Into<Expr>) {
        self.push(Stmt::Assign {
            local,
            value: value.into(),
        });
    }

    pub fn store(&mut self, arg: u32, index: impl Into<Expr>, value: impl Into<Expr>) {
        self.push(Stmt::Store {
            arg,
            index: index.into(),
            value: value.into(),
        });
    }

    pub fn finish(mut self) -> Body {
        Body {
            params: self.params,
            stmts: self.stack.pop().unwrap_or_default(),
            num_vars: self.num_vars,
            num_locals: self.num_locals,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Text form.

impl fmt::Display for LoopVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "i{}", self.0)
    }
}

impl fmt::Display for Local {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a{}", self.0)
    }
}

/// Expression printer that names params by their body names.
pub struct ExprDisplay<'a> {
    pub expr: &'a Expr,
    pub params: &'a [BodyParam],
}

impl fmt::Display for ExprDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_expr(f, self.expr, self.params, 0)
    }
}

fn precedence(e: &Expr) -> u8 {
    match e {
        Expr::Bin(op, ..) if op.is_comparison() => 1,
        Expr::Bin(BinOp::Add | BinOp::Sub, ..) => 2,
        Expr::Bin(BinOp::Mul | BinOp::Div | BinOp::Rem, ..) => 3,
        Expr::Select { .. } => 0,
        _ => 4,
    }
}

fn write_expr(f: &mut fmt::Formatter<'_>, e: &Expr, params: &[BodyParam], ctx: u8) -> fmt::Result {
    let prec = precedence(e);
    let paren = prec < ctx;
    if paren {
        f.write_str("(")?;
    }
    match e {
        Expr::F32(v) => {
            if v.fract() == 0.0 && v.abs() < 1e15 {
                write!(f, "{v:.1}")?
            } else {
                write!(f, "{v:?}")?
            }
        }
        Expr::Int(v) => write!(f, "{v}")?,
        Expr::Var(v) => write!(f, "{v}")?,
        Expr::Sym(s) => f.write_str(s.name())?,
        Expr::Local(l) => write!(f, "{l}")?,
        Expr::Load { arg, index } => {
            match params.get(*arg as usize) {
                Some(p) => f.write_str(&p.name)?,
                None => write!(f, "arg{arg}")?,
            }
            f.write_str("[")?;
            write_expr(f, index, params, 0)?;
            f.write_str("]")?;
        }
        Expr::Bin(op, a, b) if op.is_call_form() => {
            write!(f, "{}(", op.name())?;
            write_expr(f, a, params, 0)?;
            f.write_str(", ")?;
            write_expr(f, b, params, 0)?;
            f.write_str(")")?;
        }
        Expr::Bin(op, a, b) => {
            write_expr(f, a, params, prec)?;
            write!(f, " {} ", op.name())?;
            // Left-associative: the right operand needs parentheses at equal precedence.
            write_expr(f, b, params, prec + 1)?;
        }
        Expr::Un(UnOp::Neg, a) => {
            f.write_str("-")?;
            write_expr(f, a, params, 4)?;
        }
        Expr::Un(op, a) => {
            write!(f, "{}(", op.name())?;
            write_expr(f, a, params, 0)?;
            f.write_str(")")?;
        }
        Expr::Select { cond, then, els } => {
            f.write_str("select(")?;
            write_expr(f, cond, params, 0)?;
            f.write_str(", ")?;
            write_expr(f, then, params, 0)?;
            f.write_str(", ")?;
            write_expr(f, els, params, 0)?;
            f.write_str(")")?;
        }
    }
    if paren {
        f.write_str(")")?;
    }
    Ok(())
}

impl Body {
    /// Prints the body as `body NAME(params) { ... }` with two-space indentation.
    pub fn print(&self, name: &str) -> String {
        let mut out = String::new();
        let params: Vec<String> = self
            .params
            .iter()
            .map(|p| format!("{} {}: {}", p.access.name(), p.name, p.dtype))
            .collect();
        out.push_str(&format!("body {name}({}) {{\n", params.join(", ")));
        print_stmts(&mut out, &self.stmts, &self.params, 1);
        out.push_str("}\n");
        out
    }
}

fn print_stmts(out: &mut String, stmts: &[Stmt], params: &[BodyParam], depth: usize) {
    let pad = "  ".repeat(depth);
    let ex = |e: &Expr| ExprDisplay { expr: e, params }.to_string();
    for s in stmts {
        match s {
            Stmt::For {
                var,
                start,
                end,
                kind,
                body,
            } => {
                out.push_str(&format!(
                    "{pad}{} {var} in {}..{} {{\n",
                    kind.keyword(),
                    ex(start),
                    ex(end)
                ));
                print_stmts(out, body, params, depth + 1);
                out.push_str(&format!("{pad}}}\n"));
            }
            Stmt::Let { local, value } => {
                out.push_str(&format!("{pad}let {local} = {}\n", ex(value)));
            }
            Stmt::Assign { local, value } => {
                out.push_str(&format!("{pad}{local} = {}\n", ex(value)));
            }
            Stmt::Store { arg, index, value } => {
                let name = params
                    .get(*arg as usize)
                    .map_or_else(|| format!("arg{arg}"), |p| p.name.clone());
                out.push_str(&format!("{pad}{name}[{}] = {}\n", ex(index), ex(value)));
            }
            Stmt::If { cond, then } => {
                out.push_str(&format!("{pad}if {} {{\n", ex(cond)));
                print_stmts(out, then, params, depth + 1);
                out.push_str(&format!("{pad}}}\n"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_a_reduction() {
        let mut b = BodyBuilder::new();
        let x = b.param("x", DType::F32, Access::Read);
        let w = b.param("w", DType::F32, Access::Read);
        let y = b.param("y", DType::F32, Access::Write);
        b.for_(LoopKind::Parallel, 0, RtSym::T, |b, t| {
            b.serial(0, 8, |b, n| {
                let acc = b.let_(Expr::f32(0.0));
                b.for_(LoopKind::Vector, 0, 16, |b, k| {
                    let prod = Expr::load(x, t * 16 + k) * Expr::load(w, n * 16 + k);
                    b.assign(acc, acc + prod);
                });
                b.store(y, t * 8 + n, acc);
            });
        });
        let text = b.finish().print("gemm");
        let want = "body gemm(in x: f32, in w: f32, out y: f32) {
  parallel for i0 in 0..T {
    for i1 in 0..8 {
      let a0 = 0.0
      vector for i2 in 0..16 {
        a0 = a0 + x[i0 * 16 + i2] * w[i1 * 16 + i2]
      }
      y[i0 * 8 + i1] = a0
    }
  }
}
";
        assert_eq!(text, want);
    }

    #[test]
    fn right_operands_keep_their_parentheses() {
        let e = Expr::int(10) - (Expr::int(3) - Expr::int(2));
        let shown = ExprDisplay {
            expr: &e,
            params: &[],
        }
        .to_string();
        assert_eq!(shown, "10 - (3 - 2)");
        assert_eq!(e.eval_int(&[0, 0, 0]), Some(9));
    }
}
