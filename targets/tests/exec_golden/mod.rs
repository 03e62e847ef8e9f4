//! Golden models lowered for the executor tests: programs, weights and inputs.

#![allow(dead_code)] // each test binary uses a different subset

use crate::lower_common::{golden_spec, graph_at, token_ids, weights};
use bfly_compiler::Mode;
use bfly_ir::DType;
use bfly_ir::kernel::KernelProgram;
use bfly_targets::exec::Syms;
use bfly_targets::lower::{LowerMode, lower_graph};
use bfly_targets::reference::{Tensor, Weights};

pub struct Golden {
    pub stem: String,
    pub program: KernelProgram,
    pub weights: Weights,
    pub vocab: u64,
    /// Shapes of the graph inputs: rank 0 (a scalar such as the step) or token ids.
    input_ranks: Vec<usize>,
}

/// `stem` lowered for inference (KV context from the spec) or one training step.
pub fn golden(stem: &str, mode: Mode) -> Golden {
    let (spec, file) = golden_spec(stem);
    let g = graph_at(&spec, &file, mode, None);
    let lower_mode = match mode {
        Mode::Infer => LowerMode::Inference {
            context: spec.model.context.node,
        },
        Mode::Train => LowerMode::Training,
    };
    let program = lower_graph(&g, lower_mode).unwrap_or_else(|e| panic!("{stem}: {e}"));
    Golden {
        stem: stem.into(),
        weights: weights(&g, 7),
        vocab: spec.model.vocab.node,
        input_ranks: g
            .inputs()
            .iter()
            .map(|&id| g.node(id).results[0].rank())
            .collect(),
        program,
    }
}

impl Golden {
    /// Token ids `i32[T]` for inference.
    pub fn tokens(&self, t: usize, seed: u64) -> Vec<Tensor> {
        vec![Tensor::int(
            DType::I32,
            vec![t],
            token_ids(t, self.vocab, seed),
        )]
    }

    /// A training batch: ids `i32[B, T]` for tokens and targets, `1.0` for scalars.
    pub fn batch(&self, b: usize, t: usize, seed: u64) -> (Vec<Tensor>, Syms) {
        let inputs = self
            .input_ranks
            .iter()
            .enumerate()
            .map(|(i, &rank)| match rank {
                0 => Tensor::f32(vec![], vec![1.0]),
                _ => Tensor::int(
                    DType::I32,
                    vec![b, t],
                    token_ids(b * t, self.vocab, seed + i as u64),
                ),
            })
            .collect();
        (inputs, Syms::batch(b, t))
    }

    /// Every param's name.
    pub fn params(&self) -> Vec<String> {
        self.weights.keys().cloned().collect()
    }
}
