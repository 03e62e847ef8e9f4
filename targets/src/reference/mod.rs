//! The reference backend: a direct interpreter of the Graph IR in f64 — the oracle every JIT
//! backend is differential-tested against. It shares no lowering code with them.

pub mod interp;
mod interp_grad;
pub mod kernels;
pub mod tensor;
pub mod weights;

pub use interp::{EvalError, evaluate};
pub use tensor::{Data, Tensor};
pub use weights::{Weights, init_weights};
