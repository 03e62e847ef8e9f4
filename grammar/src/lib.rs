//! bfly-grammar: the model spec language and the textual Graph IR.
//!
//! Both are parsed with pest into spanned ASTs; every failure is a
//! [`Diagnostic`] that renders with file:line:col, the source line, an
//! underline and a hint. No input can make the parsers or the renderer panic.

mod diagnostic;
pub mod ir_ast;
mod ir_parser;
mod lexscan;
mod literal;
mod span;
mod spec_ast;
mod spec_parser;
pub mod suggest;
mod syntax_error;
mod tree;

pub use diagnostic::Diagnostic;
pub use ir_ast::{
    Attr, AttrValue, DimAst, InitAst, IrGraph, Operand, ParamDecl, RegionAst, Stmt, SymBound,
    TypeAst, ValueDecl,
};
pub use ir_parser::parse_ir;
pub use span::{SourceFile, Span, Spanned};
pub use spec_ast::{Arg, Item, Section, SpecFile, Value, ValueKind, dump_spec_ast};
pub use spec_parser::parse_spec;
