//! Running a compiled Kernel IR program: the memory it needs and the threads that split it.
//!
//! - [`runner`]: the call boundary to a JIT backend ([`SectionRunner`]);
//! - [`Syms`]: a step's runtime symbols; [`ExecError`]: why a step could not run;
//! - `facts`: checks of symbols and inputs shared with the interpreter (`crate::interp`);
//! - `host`: typed host copies of buffers and their conversions;
//! - [`Executor`]: runs a program's compiled sections over its planned memory, splitting
//!   parallel sections over a small persistent pool (`pool` says why not rayon).

mod chunks;
mod error;
mod executor;
pub(crate) mod facts;
mod host;
mod memory;
mod pool;
pub mod runner;
mod syms;

pub use error::ExecError;
pub use executor::Executor;
pub use host::{HostBuf, Val};
pub use runner::SectionRunner;
pub use syms::Syms;
