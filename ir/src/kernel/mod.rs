//! Kernel IR: the program of kernels that lowering makes from an optimized graph and every
//! JIT backend compiles. `body` is the loop-nest language; `program` the buffers and kernels.

pub mod body;
pub mod program;
pub mod verify;

pub use body::{
    Access, BinOp, Body, BodyBuilder, BodyParam, Expr, Local, LoopKind, LoopVar, RtSym, Scalar,
    Stmt, UnOp,
};
pub use program::{
    AttentionDesc, BodyId, Buffer, BufferId, BufferKind, ButterflyDesc, GemmDesc, Kernel,
    KernelKind, KernelProgram, Phase,
};
pub use verify::{verify_body, verify_program};
