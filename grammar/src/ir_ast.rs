//! AST of the textual Graph IR. Names are stored without their `%`/`@` sigil;
//! name spans include the sigil.

use crate::span::{Span, Spanned};

/// `graph @name(inputs) -> (outputs) where bounds { params stmts return }`
#[derive(Clone, Debug, PartialEq)]
pub struct IrGraph {
    pub name: Spanned<String>,
    pub inputs: Vec<ValueDecl>,
    pub outputs: Vec<ValueDecl>,
    pub bounds: Vec<SymBound>,
    pub params: Vec<ParamDecl>,
    /// Every statement in source order, those inside `fused` regions included (a region is a
    /// grouping, not a scope, so name resolution sees one flat list).
    pub stmts: Vec<Stmt>,
    /// The `fused @name { ... }` blocks, in source order.
    pub regions: Vec<RegionAst>,
    pub ret: Vec<Spanned<String>>,
    pub span: Span,
}

/// `fused @name { stmts }`: the statements `stmts` (indices into [`IrGraph::stmts`]) form one
/// fused region. Regions never nest and are never empty (the parser rejects both).
#[derive(Clone, Debug, PartialEq)]
pub struct RegionAst {
    pub name: Spanned<String>,
    pub stmts: std::ops::Range<usize>,
    /// From `fused` to the closing `}`.
    pub span: Span,
}

/// `SYM <= MAX` in the `where` clause.
#[derive(Clone, Debug, PartialEq)]
pub struct SymBound {
    pub name: Spanned<String>,
    pub max: Spanned<u64>,
}

/// `%name: TYPE` (graph input or output), or `@param: TYPE` (an output that is the new value
/// of a parameter).
#[derive(Clone, Debug, PartialEq)]
pub struct ValueDecl {
    pub name: Spanned<String>,
    pub ty: TypeAst,
    /// Declared with `@`: names a parameter (outputs only).
    pub param: bool,
}

/// `dtype[dims]`; `f32[]` is a scalar.
#[derive(Clone, Debug, PartialEq)]
pub struct TypeAst {
    pub dtype: Spanned<String>,
    pub dims: Vec<Spanned<DimAst>>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DimAst {
    Const(u64),
    Sym(String),
}

/// `param @name: TYPE (init INIT | external) (trainable | frozen)`
#[derive(Clone, Debug, PartialEq)]
pub struct ParamDecl {
    pub name: Spanned<String>,
    pub ty: TypeAst,
    /// `None` means `external`.
    pub init: Option<InitAst>,
    pub trainable: bool,
    pub span: Span,
}

/// `name` or `name(args)`, e.g. `normal(0.02)`; span excludes the `init` keyword.
#[derive(Clone, Debug, PartialEq)]
pub struct InitAst {
    pub name: Spanned<String>,
    pub args: Vec<Spanned<f64>>,
    pub span: Span,
}

/// `%a, %b = op operands {attrs} : TYPES loc(line:col)`
#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    pub results: Vec<Spanned<String>>,
    pub op: Spanned<String>,
    pub operands: Vec<Operand>,
    pub attrs: Vec<Attr>,
    pub types: Vec<TypeAst>,
    pub loc: Option<(u32, u32)>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// `%value`
    Value(Spanned<String>),
    /// `@param`
    Param(Spanned<String>),
}

impl Operand {
    pub fn name(&self) -> &Spanned<String> {
        match self {
            Operand::Value(n) | Operand::Param(n) => n,
        }
    }
}

/// `key = value` inside `{ ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Attr {
    pub key: Spanned<String>,
    pub value: AttrValue,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Ident(String),
    /// Decoded string contents (escapes resolved).
    Str(String),
    List(Vec<AttrValue>),
}
