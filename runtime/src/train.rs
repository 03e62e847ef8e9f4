//! Training sessions: the compiled training program run on batches of a text corpus, with
//! validation on the inference program, checkpoints and bit-exact resume.
//!
//! A training step is one call of the JIT-compiled training program: forward, backward and
//! the optimizer update, which writes params and optimizer moments in place. Everything a
//! step depends on is in the checkpoint — params, moments, the step count (AdamW's bias
//! correction) and the batch sampler's RNG state — and kernels give identical results for any
//! thread count, so a resumed run continues bit-exactly.

use std::collections::BTreeMap;

use bfly_ir::{DType, Graph, print_graph};
use bfly_targets::exec::Syms;
use bfly_targets::lower::LowerMode;
use bfly_targets::reference::{Tensor, Weights};

use crate::artifact::fnv1a64;
use crate::checkpoint::{Checkpoint, CheckpointTensor, LossPoint};
use crate::data::{Batch, BatchSampler, TextCorpus};
use crate::engine::{BackendChoice, Engine, LoadReport};
use crate::session::InferenceSession;

/// The fingerprint a checkpoint must match: the training graph's text (param names, shapes,
/// optimizer settings).
pub fn fingerprint(train_graph: &Graph) -> String {
    format!("{:016x}", fnv1a64(print_graph(train_graph).as_bytes()))
}

/// What differs between a checkpoint's tensors and a training graph's params, one line per
/// param or tensor, sorted by name. Empty when every param is there with its shape: then the
/// fingerprints differ only in settings (optimizer, loss, trainable set).
pub fn checkpoint_differences(train_graph: &Graph, ck: &Checkpoint) -> Vec<String> {
    let mut lines = BTreeMap::new();
    for (_, p, ty) in train_graph.params() {
        match ck.tensors.get(&p.name) {
            None => {
                lines.insert(
                    p.name.clone(),
                    format!("`{}` ({ty}) is not in the checkpoint", p.name),
                );
            }
            Some(t) if ty.const_dims().as_deref() != Some(t.dims.as_slice()) => {
                lines.insert(
                    p.name.clone(),
                    format!(
                        "`{}`: checkpoint shape {:?}, this model {ty}",
                        p.name, t.dims
                    ),
                );
            }
            Some(_) => {}
        }
    }
    for name in ck.tensors.keys() {
        if !train_graph.params().any(|(_, p, _)| &p.name == name) {
            lines.insert(
                name.clone(),
                format!("`{name}` is in the checkpoint, not in this model"),
            );
        }
    }
    lines.into_values().collect()
}

/// A training run in progress.
pub struct Trainer {
    train_graph: Graph,
    eval_graph: Option<Graph>,
    engine: Engine,
    /// The inference program over the same params, for validation and samples; its weights
    /// are refreshed from the training engine when needed.
    eval: Option<Engine>,
    eval_stale: bool,
    batch: usize,
    seq: usize,
    step: u64,
    sampler: BatchSampler,
    history: Vec<LossPoint>,
    fingerprint: String,
    threads: usize,
    slots: Slots,
}

/// Input slots of a training graph, by name.
struct Slots {
    tokens: usize,
    targets: usize,
    step: usize,
}

fn slots(g: &Graph) -> Result<Slots, String> {
    let names: Vec<String> = g
        .inputs()
        .iter()
        .map(|&id| match &g.node(id).op {
            bfly_ir::Op::Input { name } => name.clone(),
            _ => String::new(),
        })
        .collect();
    let find = |n: &str| {
        names.iter().position(|x| x == n).ok_or_else(|| {
            format!(
                "graph @{} is not a training program: it has no input `%{n}` (inputs: {})",
                g.name,
                names.join(", ")
            )
        })
    };
    Ok(Slots {
        tokens: find("tokens")?,
        targets: find("targets")?,
        step: find("step")?,
    })
}

impl Trainer {
    /// Loads the training program (and the eval program, if given) with `weights` (every
    /// param of the training graph, optimizer moments included) and starts a sampler over
    /// `corpus` at `seed`. Batch and sequence length are the training graph's bounds on `B`
    /// and `T`.
    pub fn new(
        train_graph: Graph,
        eval_graph: Option<Graph>,
        weights: &Weights,
        corpus: &TextCorpus,
        seed: u64,
        threads: usize,
    ) -> Result<Trainer, String> {
        let slots = slots(&train_graph)?;
        let (Some(batch), Some(seq)) = (train_graph.bound("B"), train_graph.bound("T")) else {
            return Err(format!(
                "graph @{} has no bounds on B and T (`where B <= 8, T <= 64`)",
                train_graph.name
            ));
        };
        let (batch, seq) = (batch as usize, seq as usize);
        let sampler = corpus
            .sampler(batch, seq, seed)
            .map_err(|e| e.to_string())?;
        let engine = Engine::new(&train_graph, LowerMode::Training, weights, threads)?;
        let eval = match &eval_graph {
            Some(g) => {
                let context = g
                    .bound("T")
                    .ok_or_else(|| format!("eval graph @{} has no bound on T", g.name))?;
                Some(Engine::new(
                    g,
                    LowerMode::Inference { context },
                    weights,
                    threads,
                )?)
            }
            None => None,
        };
        Ok(Trainer {
            fingerprint: fingerprint(&train_graph),
            train_graph,
            eval_graph,
            engine,
            eval,
            eval_stale: false,
            batch,
            seq,
            step: 0,
            sampler,
            history: Vec::new(),
            threads,
            slots,
        })
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn seq(&self) -> usize {
        self.seq
    }

    /// Optimizer steps taken.
    pub fn steps_done(&self) -> u64 {
        self.step
    }

    pub fn history(&self) -> &[LossPoint] {
        &self.history
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The training program's engine (profiling, benchmarks).
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    pub fn load_report(&self) -> &LoadReport {
        self.engine.report()
    }

    pub fn eval_load_report(&self) -> Option<&LoadReport> {
        self.eval.as_ref().map(Engine::report)
    }

    /// Draws the next batch and runs one training step; returns the batch's loss.
    pub fn step(&mut self) -> Result<f32, String> {
        let batch = self.sampler.next_batch();
        let loss = self.run_batch(&batch)?;
        self.history.push(LossPoint {
            step: self.step,
            train: loss,
            val: None,
        });
        Ok(loss)
    }

    fn run_batch(&mut self, batch: &Batch) -> Result<f32, String> {
        let s = &self.slots;
        let dims = vec![batch.rows, batch.seq];
        let mut inputs = vec![Tensor::f32(vec![], vec![0.0]); 3];
        inputs[s.tokens] = Tensor::int(
            DType::I32,
            dims.clone(),
            batch.tokens.iter().map(|&t| i64::from(t)).collect(),
        );
        inputs[s.targets] = Tensor::int(
            DType::I32,
            dims,
            batch.targets.iter().map(|&t| i64::from(t)).collect(),
        );
        // AdamW's bias correction counts steps from 1.
        inputs[s.step] = Tensor::f32(vec![], vec![(self.step + 1) as f64]);
        let out = self
            .engine
            .step(&inputs, Syms::batch(batch.rows, batch.seq))?;
        self.step += 1;
        self.eval_stale = true;
        let loss = out
            .first()
            .and_then(Tensor::floats)
            .and_then(|v| v.first().copied())
            .ok_or("the training program produced no loss")?;
        Ok(loss as f32)
    }

    /// Copies the current params into the eval program and re-runs its load phase once
    /// (folded weights, packed twiddles).
    fn refresh_eval(&mut self) -> Result<(), String> {
        let (Some(eval), Some(g)) = (&mut self.eval, &self.eval_graph) else {
            return Err("this training run has no inference program (train artifacts made by `bfly compile --mode train` carry one)".into());
        };
        if !self.eval_stale {
            return Ok(());
        }
        let mut values = Vec::new();
        for (_, p, _) in g.params() {
            let v = self
                .engine
                .executor()
                .param_f32(&p.name)
                .ok_or_else(|| format!("the training program has no param @{}", p.name))?;
            values.push((p.name.as_str(), v));
        }
        eval.executor_mut()
            .set_params(values.iter().map(|(n, v)| (*n, v.as_slice())))
            .map_err(|e| e.to_string())?;
        self.eval_stale = false;
        Ok(())
    }

    /// Mean next-token loss over up to `max_batches` fixed validation batches, computed with
    /// the inference program; recorded in the history at the current step.
    pub fn validate(&mut self, corpus: &TextCorpus, max_batches: usize) -> Result<f32, String> {
        self.refresh_eval()?;
        let batches = corpus
            .val_batches(self.batch, self.seq, max_batches)
            .map_err(|e| e.to_string())?;
        let eval = self.eval.as_mut().ok_or("no inference program")?;
        let (mut total, mut count) = (0.0f64, 0usize);
        for b in &batches {
            for r in 0..b.rows {
                let row = &b.tokens[r * b.seq..(r + 1) * b.seq];
                let tokens: Vec<u32> = row.iter().map(|&t| t as u32).collect();
                eval.executor_mut().reset_state();
                let out = eval.step(&[Tensor::tokens(&tokens)], Syms::tokens(tokens.len()))?;
                let logits = out
                    .first()
                    .and_then(Tensor::floats)
                    .ok_or("the inference program produced no logits")?;
                let vocab = logits.len() / b.seq.max(1);
                for t in 0..b.seq {
                    let target = b.targets[r * b.seq + t] as usize;
                    let l = &logits[t * vocab..(t + 1) * vocab];
                    let max = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let lse = max + l.iter().map(|&x| (x - max).exp()).sum::<f64>().ln();
                    total += lse - l.get(target).copied().unwrap_or(f64::NAN);
                    count += 1;
                }
            }
        }
        eval.executor_mut().reset_state();
        let val = (total / count.max(1) as f64) as f32;
        if let Some(last) = self.history.last_mut() {
            last.val = Some(val);
        }
        Ok(val)
    }

    /// The current value of every param of the training graph (moments included).
    pub fn weights(&self) -> Result<Weights, String> {
        let mut w = Weights::new();
        for (_, p, ty) in self.train_graph.params() {
            let v = self
                .engine
                .executor()
                .param_f32(&p.name)
                .ok_or_else(|| format!("no param @{}", p.name))?;
            let dims = ty
                .const_dims()
                .ok_or_else(|| format!("param @{} has a symbolic shape", p.name))?;
            w.insert(
                p.name.clone(),
                Tensor::float(ty.dtype, dims, v.into_iter().map(f64::from).collect()),
            );
        }
        Ok(w)
    }

    /// The params of the inference graph (what an artifact or adapter file stores).
    pub fn eval_weights(&self) -> Result<Weights, String> {
        let g = self.eval_graph.as_ref().ok_or("no inference program")?;
        let all = self.weights()?;
        Ok(g.params()
            .filter_map(|(_, p, _)| all.get(&p.name).map(|t| (p.name.clone(), t.clone())))
            .collect())
    }

    /// An inference session over the current weights.
    pub fn inference_session(&self, backend: BackendChoice) -> Result<InferenceSession, String> {
        let g = self.eval_graph.clone().ok_or("no inference program")?;
        InferenceSession::new(g, self.eval_weights()?, backend, self.threads)
    }

    /// Everything needed to resume.
    pub fn checkpoint(&self) -> Result<Checkpoint, String> {
        let mut tensors = BTreeMap::new();
        for (name, t) in self.weights()? {
            let data = t
                .floats()
                .ok_or_else(|| format!("param @{name} is not float"))?
                .iter()
                .map(|&v| v as f32)
                .collect();
            tensors.insert(name, CheckpointTensor::new(t.shape.clone(), data));
        }
        Ok(Checkpoint {
            step: self.step,
            fingerprint: self.fingerprint.clone(),
            sampler: self.sampler.state(),
            loss_history: self.history.clone(),
            tensors,
            meta: BTreeMap::new(),
        })
    }

    /// Continues from `ck` (which must belong to this model: the caller loads it with
    /// [`Checkpoint::load`] and this trainer's fingerprint).
    pub fn restore(&mut self, ck: &Checkpoint, corpus: &TextCorpus) -> Result<(), String> {
        if ck.fingerprint != self.fingerprint {
            return Err(format!(
                "the checkpoint belongs to another model (fingerprint {}, this model {})",
                ck.fingerprint, self.fingerprint
            ));
        }
        let mut values = Vec::new();
        for (_, p, ty) in self.train_graph.params() {
            let t = ck
                .tensors
                .get(&p.name)
                .ok_or_else(|| format!("the checkpoint has no tensor `{}`", p.name))?;
            if ty.const_dims().as_deref() != Some(t.dims.as_slice()) {
                return Err(format!(
                    "checkpoint tensor `{}` has shape {:?}, the model's param is {ty}",
                    p.name, t.dims
                ));
            }
            values.push((p.name.as_str(), t.data.as_slice()));
        }
        self.engine
            .executor_mut()
            .set_params(values)
            .map_err(|e| e.to_string())?;
        self.sampler = corpus
            .resume_sampler(&ck.sampler)
            .map_err(|e| e.to_string())?;
        self.step = ck.step;
        self.history = ck.loss_history.clone();
        self.eval_stale = true;
        Ok(())
    }
}
