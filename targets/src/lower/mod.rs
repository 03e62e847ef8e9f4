//! Graph IR → Kernel IR lowering.
//!
//! - [`site`]: the per-op contract (`OpSite` → `OpLowering`);
//! - [`ops`]: dispatch to the per-family lowerings (`linear`, `butterfly`, `twiddles`,
//!   `monarch`, `elementwise`, `norm`, `attention`, `layout`, `quant`; backward and optimizer
//!   ops in `grad`);
//! - [`driver`]: the whole graph: buffers, weight-time (load-phase) kernels, fused regions
//!   (epilogues folded into producers, other regions concatenated), optimizer scheduling,
//!   shared bodies.

pub(crate) mod attention;
pub(crate) mod butterfly;
pub mod driver;
mod elementwise;
pub(crate) mod emit;
pub mod epilogue;
pub mod grad;
mod layout;
mod linear;
pub(crate) mod merge;
mod monarch;
pub(crate) mod norm;
pub mod ops;
pub(crate) mod quant;
mod region;
mod shape;
pub mod site;
mod twiddles;
mod weight_time;

pub use driver::lower_graph;
pub use elementwise::Ew;
pub use epilogue::{Epilogue, Link, Other};
pub use ops::{lower_fused, lower_op};
pub use site::{ArgRef, LowerError, LowerMode, LoweredKernel, OpLowering, OpSite};
