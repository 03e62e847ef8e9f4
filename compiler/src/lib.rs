//! bfly-compiler: from a model spec to the Graph IR (checking, building) and, later, the
//! passes over it.
//!
//! - [`spec`]: the parsed spec AST becomes a typed, checked [`ModelSpec`];
//! - [`builder`]: a [`ModelSpec`] becomes the inference graph;
//! - [`compile_spec_source`]: both in one call, from source text.

pub mod builder;
mod compile;
pub mod spec;

pub use builder::build_graph;
pub use compile::{compile_spec_source, render_diagnostics};
pub use spec::{ModelSpec, check_spec};
