//! bfly-compiler: from a model spec to the Graph IR (checking, building) and the passes over
//! it.
//!
//! - [`spec`]: the parsed spec AST becomes a typed, checked [`ModelSpec`];
//! - [`builder`]: a [`ModelSpec`] becomes the forward graph (inference, or batched training);
//! - [`passes`]: the pass manager and the passes, one pipeline per [`Mode`];
//! - [`quant_report`]: quantization error against f32, measured on the reference interpreter;
//! - [`compile_spec_source`]: parse, check and build in one call, from source text;
//!   [`compile_to_stage`] runs a mode's pipeline on top, up to a chosen pass.

pub mod artifact;
pub mod builder;
mod compile;
pub mod liveness;
mod mode;
pub mod passes;
pub mod quant_report;
pub mod spec;

pub use builder::{build_graph, build_graph_for};
pub use compile::{compile_spec_source, compile_to_stage, render_diagnostics};
pub use mode::{DEFAULT_BATCH, DEFAULT_SEQ, Mode, train_bounds};
pub use spec::{ModelSpec, check_spec};
