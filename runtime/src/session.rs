//! Inference sessions: feed tokens, get next-token logits, generate.
//!
//! On the host backend a session keeps a KV cache: the prompt runs as one prefill step
//! (`T` = prompt length at `pos` 0), then each new token is one decode step (`T` = 1 at
//! `pos` = tokens so far). The reference backend has no cache and recomputes the prefix,
//! which is what makes it a good oracle for the cache.

use bfly_ir::{Graph, Op};
use bfly_targets::exec::Syms;
use bfly_targets::lower::LowerMode;
use bfly_targets::reference::{self, Tensor, Weights};

use crate::engine::{BackendChoice, Engine, LoadReport};
use crate::sample::Sampler;

enum Backend {
    Reference(Box<Weights>),
    Host(Box<Engine>),
}

pub struct InferenceSession {
    graph: Graph,
    backend: Backend,
    vocab: usize,
    context: usize,
    /// Tokens consumed so far (in the KV cache on the host backend).
    history: Vec<u32>,
}

impl InferenceSession {
    /// Checks that the graph is a language model (one `i32[T]` input, logits `[T, vocab]`
    /// as its first output, a bound on `T`), then loads it on `backend`. `threads` = 0: one
    /// per core.
    pub fn new(
        graph: Graph,
        weights: Weights,
        backend: BackendChoice,
        threads: usize,
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
        let backend = match backend {
            BackendChoice::Reference => Backend::Reference(Box::new(weights)),
            jit => Backend::Host(Box::new(Engine::with_backend(
                &graph,
                LowerMode::Inference { context },
                &weights,
                threads,
                jit,
            )?)),
        };
        Ok(InferenceSession {
            graph,
            backend,
            vocab: vocab as usize,
            context: context as usize,
            history: Vec::new(),
        })
    }

    pub fn vocab(&self) -> usize {
        self.vocab
    }

    pub fn context(&self) -> usize {
        self.context
    }

    pub fn backend_name(&self) -> String {
        match &self.backend {
            Backend::Reference(_) => "reference".into(),
            Backend::Host(e) => e.report().backend.clone(),
        }
    }

    /// The host backend's load report (`None` on the reference backend).
    pub fn load_report(&self) -> Option<&LoadReport> {
        match &self.backend {
            Backend::Host(e) => Some(e.report()),
            Backend::Reference(_) => None,
        }
    }

    pub fn engine_mut(&mut self) -> Option<&mut Engine> {
        match &mut self.backend {
            Backend::Host(e) => Some(e),
            Backend::Reference(_) => None,
        }
    }

    /// Tokens consumed so far.
    pub fn position(&self) -> usize {
        self.history.len()
    }

    /// Forgets the context (empties the KV cache).
    pub fn reset(&mut self) {
        self.history.clear();
        if let Backend::Host(e) = &mut self.backend {
            e.executor_mut().reset_state();
        }
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<(), String> {
        if tokens.is_empty() {
            return Err("no tokens to feed: give at least one".into());
        }
        let total = self.history.len() + tokens.len();
        if total > self.context {
            return Err(format!(
                "{} tokens so far + {} new exceed the model's context of {}: shorten the prompt or generate fewer tokens (at most {} more fit)",
                self.history.len(),
                tokens.len(),
                self.context,
                self.context - self.history.len()
            ));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= self.vocab) {
            return Err(format!(
                "token {bad} is outside the vocabulary of {}",
                self.vocab
            ));
        }
        Ok(())
    }

    /// Appends `tokens` to the context and returns the logits after the last one
    /// (`vocab` values).
    pub fn feed(&mut self, tokens: &[u32]) -> Result<Vec<f32>, String> {
        self.check_tokens(tokens)?;
        let vocab = self.vocab;
        let logits = match &mut self.backend {
            Backend::Reference(w) => {
                let mut all = self.history.clone();
                all.extend_from_slice(tokens);
                let out = reference::evaluate(&self.graph, &[Tensor::tokens(&all)], w)
                    .map_err(|e| e.to_string())?;
                last_row(&out, all.len(), vocab)?
            }
            Backend::Host(engine) => {
                let syms = Syms::decode(tokens.len(), self.history.len());
                let out = engine.step(&[Tensor::tokens(tokens)], syms)?;
                last_row(&out, tokens.len(), vocab)?
            }
        };
        self.history.extend_from_slice(tokens);
        Ok(logits)
    }

    /// Logits for every position of `tokens` from an empty context (row-major
    /// `[len, vocab]`); leaves the session reset.
    pub fn logits(&mut self, tokens: &[u32]) -> Result<Vec<f64>, String> {
        self.reset();
        self.check_tokens(tokens)?;
        let out = match &mut self.backend {
            Backend::Reference(w) => reference::evaluate(&self.graph, &[Tensor::tokens(tokens)], w)
                .map_err(|e| e.to_string())?,
            Backend::Host(engine) => {
                let out = engine.step(&[Tensor::tokens(tokens)], Syms::tokens(tokens.len()));
                engine.executor_mut().reset_state();
                out?
            }
        };
        out.into_iter()
            .next()
            .and_then(|t| t.floats().map(<[f64]>::to_vec))
            .ok_or_else(|| "the graph produced no float logits".to_string())
    }

    /// Generates `n` tokens after `prompt` (from an empty context), calling `on_token` as
    /// each appears.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        n: usize,
        sampler: &mut Sampler,
        mut on_token: impl FnMut(u32),
    ) -> Result<Vec<u32>, String> {
        if prompt
            .len()
            .checked_add(n)
            .is_none_or(|total| total > self.context)
        {
            return Err(format!(
                "prompt ({} tokens) + {n} new tokens exceed the model's context of {}; shorten the prompt or lower -n to at most {}",
                prompt.len(),
                self.context,
                self.context.saturating_sub(prompt.len())
            ));
        }
        self.reset();
        let mut out = Vec::with_capacity(n);
        if n == 0 {
            return Ok(out);
        }
        let mut logits = self.feed(prompt)?;
        for i in 0..n {
            let next = sampler.sample(&logits);
            out.push(next);
            on_token(next);
            if i + 1 < n {
                logits = self.feed(&[next])?;
            }
        }
        Ok(out)
    }
}

/// The last row of the first output (`[len, vocab]` logits).
fn last_row(out: &[Tensor], len: usize, vocab: usize) -> Result<Vec<f32>, String> {
    let v = out
        .first()
        .and_then(Tensor::floats)
        .ok_or("the graph produced no float logits")?;
    let row = v
        .get((len - 1) * vocab..len * vocab)
        .ok_or("the logits have fewer rows than tokens fed")?;
    Ok(row.iter().map(|&x| x as f32).collect())
}
