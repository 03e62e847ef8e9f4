//! The kernel kinds beyond the first six of `kernels.rs`, one module per group: forward
//! (monarch, rope, embed, concat), twiddles (the dib producer and the pack into the
//! butterfly's layout, weight-time kernels), backward (butterfly, attention, rmsnorm) and
//! the optimizer (adamw). Each `run_*` builds a one-op graph, times the JIT kernel of the
//! wanted family and the same nest in plain Rust, and returns a `Case` row.

pub mod backward;
pub mod forward;
pub mod optim;
pub mod twiddles;
