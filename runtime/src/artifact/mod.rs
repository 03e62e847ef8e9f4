//! The `.bfa` artifact: one safetensors file holding a compiled model's weights and, in its
//! `__metadata__`, everything needed to run it without the compiler (the optimized Graph IR
//! text, the spec it came from, the tokenizer).
//!
//! The runtime owns the format (the compiler and the checkpoint code write through
//! [`write_artifact`]), so there is exactly one reader and one writer to keep in step.
//!
//! - [`tensor`]: host tensors, zero-copy views and dtype/byte conversions;
//! - [`format`]: the metadata keys, their encodings and the writer;
//! - [`check`]: the tensors-against-params check shared by writer and loader;
//! - [`container`]: reading the safetensors container without trusting its offsets;
//! - [`load`]: opening (mmap) and validating an artifact;
//! - [`convert`]: to and from the reference interpreter's f64 weights;
//! - [`error`]: what can go wrong, each with where, what and how to fix it.

pub mod check;
pub mod container;
pub mod convert;
pub mod error;
pub mod format;
pub mod load;
pub mod tensor;

pub use check::TensorProblem;
pub use convert::reference_weights_to_host;
pub use error::ArtifactError;
pub use format::{
    ArtifactMode, ArtifactParts, FORMAT_VERSION, TokenizerDesc, fnv1a64, write_artifact,
};
pub use load::Artifact;
pub use tensor::{HostTensor, TensorView};
