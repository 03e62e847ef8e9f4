//! The pass manager: graph-to-graph transformations, run in a fixed order per [`Mode`], with
//! the verifier after every pass.
//!
//! A pass rewrites the graph in place. It reports problems the user can act on as diagnostics;
//! a graph that no longer verifies afterwards is a compiler bug, which the runner reports
//! naming the pass (never a panic). The pipelines live in [`pipeline`], one line per pass:
//! adding a pass (fold, quantize, fusion) means writing its module and adding one line there.
//!
//! How the training passes hand values to each other: only through the graph, so that every
//! intermediate stage prints, parses back and can be evaluated on its own.
//! - `loss` adds `%targets` and makes `%loss: f32[]` the only output;
//! - `autodiff` appends one output `%grad_NAME` per trainable param (see [`grad_output_name`]),
//!   so the graph after it returns the loss and every parameter gradient — what the gradient
//!   checks evaluate;
//! - `optimizer` replaces those outputs by the updated params (and optimizer states).

mod autodiff;
mod compose_butterflies;
mod const_fold;
mod cse;
mod dce;
mod fold_lora;
mod fold_norm_gain;
mod fold_util;
mod fuse;
mod grad_names;
mod loss;
mod optimizer;
pub mod quantize;
mod runner;
#[cfg(test)]
mod test_graphs;
mod weight_time;

pub use crate::mode::Mode;
pub use autodiff::Autodiff;
pub use compose_butterflies::{ComposeButterflies, compose_butterflies};
pub use const_fold::{ConstFold, const_fold};
pub use cse::Cse;
pub use dce::Dce;
pub use fold_lora::{FoldLora, LoraFolds, fold_lora};
pub use fold_norm_gain::{FoldNormGain, fold_norm_gains};
pub use fuse::{Fuse, fuse_regions};
pub use grad_names::{grad_output_name, is_grad_output};
pub use loss::{LOSS_OUTPUT, Loss, TARGETS_INPUT};
pub use optimizer::{OptimizerPass, STEP_INPUT, decays};
pub use runner::{
    BUILD_STAGE, check_stop, describe_pipeline, run_passes, run_passes_observed, stage_names,
};
pub use weight_time::{WeightTime, is_weight_time};

use bfly_grammar::Diagnostic;
use bfly_ir::Graph;

use crate::spec::ModelSpec;

/// What every pass sees besides the graph.
pub struct PassContext<'a> {
    pub spec: &'a ModelSpec,
    pub mode: Mode,
}

impl<'a> PassContext<'a> {
    pub fn new(spec: &'a ModelSpec, mode: Mode) -> Self {
        PassContext { spec, mode }
    }

    /// An error reported by pass `pass`, located at the spec's `model` keyword (graph nodes
    /// carry their own `loc`; a pass error is about the model as a whole).
    pub fn error(&self, pass: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(
            format!("pass `{pass}`: {}", message.into()),
            self.spec.model.keyword,
        )
        .with_label("in this model")
    }

    /// A compiler bug found by (or after) pass `pass`.
    pub fn bug(&self, pass: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(
            format!("internal error in pass `{pass}`: {}", message.into()),
            self.spec.model.keyword,
        )
        .with_label("while compiling this model")
        .with_hint(
            "this is a bug in bfly, not in your spec; please report it together with the spec",
        )
    }
}

/// One graph transformation.
pub trait Pass {
    /// Short name, used by `--after NAME` and in snapshot names.
    fn name(&self) -> &'static str;
    /// One line for `bfly inspect --passes`.
    fn description(&self) -> &'static str;
    fn run(&self, g: &mut Graph, cx: &PassContext<'_>) -> Result<(), Vec<Diagnostic>>;
}

/// The passes of `mode`, in order. Keep every pipeline here, one line per pass.
pub fn pipeline(mode: Mode, spec: &ModelSpec) -> Vec<Box<dyn Pass>> {
    match mode {
        Mode::Infer => vec![
            Box::new(FoldLora),
            Box::new(FoldNormGain),
            Box::new(ComposeButterflies),
            Box::new(ConstFold),
            Box::new(quantize::Quantize),
            Box::new(Dce),
            Box::new(Cse),
            Box::new(Fuse),
        ],
        Mode::Train => vec![
            Box::new(Loss),
            Box::new(Autodiff),
            Box::new(OptimizerPass::from_spec(spec)),
            Box::new(Dce),
            Box::new(Cse),
            Box::new(Fuse),
        ],
    }
}
