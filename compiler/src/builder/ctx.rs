//! The builder's state: the graph under construction plus the helpers every lowering uses
//! (parameters with their trainable flag, ops with spec locations, internal-error reports).

use bfly_grammar::{Diagnostic, SourceFile, Span};
use bfly_ir::{DType, Graph, Init, IrError, Loc, Op, Param, Type, Value};

use crate::spec::{ModelSpec, Site, SiteRole, Trainable};

pub struct Ctx<'a> {
    pub g: Graph,
    pub spec: &'a ModelSpec,
    file: &'a SourceFile,
    trainable: Trainable,
}

impl<'a> Ctx<'a> {
    pub fn new(spec: &'a ModelSpec, file: &'a SourceFile) -> Self {
        Ctx {
            g: Graph::new(spec.model.name.node.clone()),
            spec,
            file,
            trainable: spec.trainable(),
        }
    }

    /// Line and column of a spec span, as recorded on nodes.
    pub fn loc(&self, span: Span) -> Loc {
        let (line, col) = self.file.line_col(span.start);
        Loc {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col: u32::try_from(col).unwrap_or(u32::MAX),
        }
    }

    /// Adds an f32 parameter; whether it trains follows the spec's `trainable` setting.
    pub fn param(&mut self, name: String, init: Init, dims: &[u64], lora: bool) -> Value {
        let trainable = self.trainable.is_trainable(&name, lora);
        self.g.add_param(
            Param {
                name,
                init,
                trainable,
            },
            Type::fixed(DType::F32, dims),
        )
    }

    /// Adds a one-result op located at `span`. A shape error here means the spec checker let
    /// through something the builder cannot lower: reported, never a panic.
    pub fn op(&mut self, op: Op, operands: &[Value], span: Span) -> Result<Value, Diagnostic> {
        let loc = self.loc(span);
        self.g
            .add1(op, operands, Some(loc))
            .map_err(|e| internal(&e, span))
    }

    /// The site `role` of layer `layer` (or `head` for `None`).
    pub fn site(&self, layer: Option<u64>, role: SiteRole) -> Result<&'a Site, Diagnostic> {
        self.spec
            .sites
            .iter()
            .find(|s| s.layer == layer && s.role == role)
            .ok_or_else(|| {
                bug(
                    format!("the checked spec has no {role:?} site for layer {layer:?}"),
                    self.spec.model.keyword,
                )
            })
    }
}

/// A builder bug, reported at the spec entry being lowered.
pub fn bug(message: String, span: Span) -> Diagnostic {
    Diagnostic::error(
        format!("internal error while building the graph: {message}"),
        span,
    )
    .with_label("while lowering this entry")
    .with_hint("this is a bug in bfly, not in your spec; please report it together with the spec")
}

pub fn internal(e: &IrError, span: Span) -> Diagnostic {
    bug(e.to_string(), span)
}
