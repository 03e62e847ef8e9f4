//! What a compilation produces: an inference program or a training step. The builder shapes
//! the forward graph by mode and the pass manager picks the pipeline by it.

use std::fmt;

use crate::spec::ModelSpec;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `tokens: i32[T] → logits`, `T ≤ context`.
    Infer,
    /// One optimizer step on a batch `tokens, targets: i32[B, T]`, `B ≤ batch`, `T ≤ seq`.
    Train,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Infer, Mode::Train];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Infer => "infer",
            Mode::Train => "train",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Default batch when the spec has no `train` section (the same as the section's default).
pub const DEFAULT_BATCH: u64 = 8;
/// Default sequence length without a `train` section, capped by the context.
pub const DEFAULT_SEQ: u64 = 64;

/// Upper bounds `(B, T)` of a training batch: the `train` section's `batch` and `seq`, or
/// `8` and `min(64, context)` when the spec has none.
pub fn train_bounds(spec: &ModelSpec) -> (u64, u64) {
    match &spec.train {
        Some(t) => (t.batch.node, t.seq.node),
        None => (DEFAULT_BATCH, DEFAULT_SEQ.min(spec.model.context.node)),
    }
}
