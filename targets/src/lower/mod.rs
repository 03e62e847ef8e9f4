//! Graph IR → Kernel IR lowering (see `site` for the per-op contract).

pub mod site;

pub use site::{ArgRef, LowerError, LowerMode, LoweredKernel, OpLowering, OpSite};
