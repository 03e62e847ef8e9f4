//! Inference sessions: feed tokens, get next-token logits, generate.
//!
//! For now every step re-runs the whole prefix through the graph (no KV cache yet), on the
//! reference backend. The context length is the graph's bound on `T`.

use bfly_ir::{Graph, Op};
use bfly_targets::reference::{self, Tensor, Weights};

/// Which backend executes the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The f64 Graph-IR interpreter (the oracle).
    Reference,
}

pub struct InferenceSession {
    graph: Graph,
    weights: Weights,
    backend: Backend,
    vocab: usize,
    context: usize,
}

impl InferenceSession {
    /// Checks that the graph is a language model: one `i32[T]` input, logits `[T, vocab]` as
    /// its first output, and a bound on `T`.
    pub fn new(
        graph: Graph,
        weights: Weights,
        backend: Backend,
    ) -> Result<InferenceSession, String> {
        let bad = || {
            format!(
                "graph @{} is not a language model: it needs one input `i32[T]` and logits `f32[T, vocab]` as its first output",
                graph.name
            )
        };
        let [input] = graph.inputs() else {
            return Err(bad());
        };
        if !matches!(graph.node(*input).op, Op::Input { .. }) {
            return Err(bad());
        }
        let Some(out) = graph.outputs().first() else {
            return Err(bad());
        };
        let Some(vocab) = graph.value_type(out.value).last_const() else {
            return Err(bad());
        };
        let Some(context) = graph.bound("T") else {
            return Err(format!(
                "graph @{} has no bound on T (`where T <= N`)",
                graph.name
            ));
        };
        Ok(InferenceSession {
            graph,
            weights,
            backend,
            vocab: vocab as usize,
            context: context as usize,
        })
    }

    pub fn vocab(&self) -> usize {
        self.vocab
    }

    pub fn context(&self) -> usize {
        self.context
    }

    /// Logits for every position of `tokens` (row-major `[len, vocab]`).
    pub fn logits(&self, tokens: &[u32]) -> Result<Vec<f64>, String> {
        if tokens.is_empty() {
            return Err("the prompt is empty: give at least one token".into());
        }
        if tokens.len() > self.context {
            return Err(format!(
                "{} tokens exceed the model's context of {}",
                tokens.len(),
                self.context
            ));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= self.vocab) {
            return Err(format!(
                "token {bad} is outside the vocabulary of {}",
                self.vocab
            ));
        }
        match self.backend {
            Backend::Reference => {
                let out =
                    reference::evaluate(&self.graph, &[Tensor::tokens(tokens)], &self.weights)
                        .map_err(|e| e.to_string())?;
                out.into_iter()
                    .next()
                    .and_then(|t| t.floats().map(<[f64]>::to_vec))
                    .ok_or_else(|| "the graph produced no float logits".to_string())
            }
        }
    }

    /// Greedy decoding of `n` new tokens after `prompt`, calling `on_token` as each appears.
    /// Ties go to the lowest id, so the result is deterministic.
    pub fn generate_greedy(
        &self,
        prompt: &[u32],
        n: usize,
        mut on_token: impl FnMut(u32),
    ) -> Result<Vec<u32>, String> {
        if prompt.len() + n > self.context {
            return Err(format!(
                "prompt ({} tokens) + {n} new tokens exceed the model's context of {}; shorten the prompt or lower -n to at most {}",
                prompt.len(),
                self.context,
                self.context.saturating_sub(prompt.len())
            ));
        }
        let mut tokens = prompt.to_vec();
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let logits = self.logits(&tokens)?;
            let last = &logits[(tokens.len() - 1) * self.vocab..tokens.len() * self.vocab];
            let next = argmax(last);
            tokens.push(next);
            out.push(next);
            on_token(next);
        }
        Ok(out)
    }
}

/// Index of the largest value; the first one on ties; NaN never wins.
pub fn argmax(v: &[f64]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] || v[best].is_nan() {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::argmax;

    #[test]
    fn argmax_prefers_first_and_skips_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(argmax(&[f64::NAN, 0.5, 0.2]), 1);
    }
}
