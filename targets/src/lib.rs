//! bfly-targets: Graph IR → Kernel IR lowering, the memory plan, the executor and the
//! backends (`reference` oracle, `cranelift` host JIT).

pub mod aarch64;
pub mod cranelift;
pub mod exec;
pub mod interp;
pub mod lower;
pub mod plan;
pub mod reference;
pub mod rustgen;
