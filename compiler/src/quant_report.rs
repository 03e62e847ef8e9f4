//! `bfly inspect SPEC --emit quant-report`: what quantization costs in accuracy, per layer and
//! for the whole model, measured on the reference interpreter.
//!
//! The inference graph is compiled up to the stage before `quantize` (the f32 graph, after
//! any folds), then quantized by the same function the pass uses. Both are evaluated on a
//! fixed input, so the numbers are reproducible:
//!
//! - **tokens**: `S` sequences of `T = min(context, 64)` tokens, `S = max(4, ⌈256 / T⌉)` (so
//!   at least 256 positions), drawn uniformly from `0..vocab` by one SplitMix64 stream seeded
//!   with [`TOKEN_SEED`];
//! - **weights**: every parameter's init from the spec with the seed `bfly run` uses (the
//!   `train` section's `seed`, else 0).
//!
//! Per quantized site: the relative L2 error `‖y_q − y‖₂ / ‖y‖₂` of the site's output over all
//! positions, with only that site quantized (`alone`: the error the site itself adds) and with
//! every site quantized (`in model`: what reaches it through the layers before). For the whole
//! model: the logits' relative L2 error and top-1 agreement (how often the quantized model's
//! argmax equals the f32 one's).
//!
//! The compiler depends on `bfly-targets` for this (the targets crate depends only on the IR,
//! so there is no cycle); the runtime still never depends on the compiler.

use std::fmt::Write as _;

use bfly_grammar::SourceFile;
use bfly_ir::init::SplitMix64;
use bfly_ir::{DType, Graph, Output, Value};
use bfly_targets::reference::{Tensor, Weights, evaluate, init_weights};

use crate::compile::{compile_to_stage, render_diagnostics};
use crate::mode::Mode;
use crate::passes::quantize::{
    Applied, QuantPlan, QuantSite, Scheme, SiteKind, TIED_HEAD_REASON, find_sites, quantize_graph,
};
use crate::passes::{pipeline, stage_names};
use crate::spec::{DenseQuant, ModelSpec, TwiddleQuant};

/// Seed of the report's token stream (`"bfly"` in ASCII).
pub const TOKEN_SEED: u64 = 0x6266_6c79;
/// The report evaluates at least this many token positions.
pub const MIN_POSITIONS: usize = 256;

/// The fixed input of a report.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub sequences: usize,
    pub seq_len: usize,
    pub vocab: u64,
    /// Init seed of the weights.
    pub weight_seed: u64,
    /// Token ids, one row per sequence.
    pub tokens: Vec<Vec<u32>>,
}

impl Batch {
    /// The report's batch for `spec` (see the module doc).
    pub fn for_spec(spec: &ModelSpec) -> Batch {
        let m = &spec.model;
        let seq_len = m.context.node.clamp(1, 64) as usize;
        let sequences = MIN_POSITIONS.div_ceil(seq_len).max(4);
        let vocab = m.vocab.node.max(1);
        let mut rng = SplitMix64::new(TOKEN_SEED);
        let tokens = (0..sequences)
            .map(|_| {
                (0..seq_len)
                    .map(|_| (rng.next_u64() % vocab) as u32)
                    .collect()
            })
            .collect();
        Batch {
            sequences,
            seq_len,
            vocab,
            weight_seed: spec.train.as_ref().map_or(0, |t| t.seed.node),
            tokens,
        }
    }

    pub fn positions(&self) -> usize {
        self.sequences * self.seq_len
    }
}

/// The error of one quantized site.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteError {
    pub site: String,
    pub kind: String,
    pub scheme: Scheme,
    /// Relative L2 error of the site's output with only this site quantized (`None` when the
    /// report was made without per-site runs).
    pub alone: Option<f64>,
    /// Relative L2 error of the site's output with every site quantized.
    pub in_model: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct QuantReport {
    pub model: String,
    /// The settings applied, as a `quantize` section would spell them.
    pub settings: String,
    /// False when the spec has no `quantize` section and the report shows the defaults.
    pub from_spec: bool,
    pub batch: Batch,
    pub sites: Vec<SiteError>,
    /// Sites left in f32 (kept, or their setting is `none`), by name.
    pub kept: Vec<String>,
    /// The model has a tied head that `dense = int8` leaves f32 (see [`TIED_HEAD_REASON`]).
    pub tied_head: bool,
    pub logits_rel_l2: f64,
    pub top1: Top1,
}

/// Top-1 agreement: how often the quantized model's argmax equals the f32 one's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Top1 {
    /// Positions where the argmaxes agree.
    pub agree: usize,
    /// Decisive positions: the f32 top-1/top-2 logit gap exceeds [`DECISIVE_GAP`] times the
    /// RMS logit error, so quantization noise alone is unlikely to flip them. At a near-tie
    /// (common in random-init models, whose logits are nearly uniform) a flip says little
    /// about the quantization.
    pub decisive: usize,
    /// Decisive positions where the argmaxes agree.
    pub decisive_agree: usize,
}

/// The gap, in RMS logit errors, above which a position is decisive (a flip then needs a
/// difference of two logit errors beyond about 2.8 of its standard deviations).
pub const DECISIVE_GAP: f64 = 4.0;

impl QuantReport {
    pub fn positions(&self) -> usize {
        self.batch.positions()
    }

    /// Top-1 agreement as a fraction.
    pub fn top1(&self) -> f64 {
        self.top1.agree as f64 / self.positions().max(1) as f64
    }

    /// Top-1 agreement on decisive positions as a fraction (1 when there are none).
    pub fn decisive_top1(&self) -> f64 {
        if self.top1.decisive == 0 {
            1.0
        } else {
            self.top1.decisive_agree as f64 / self.top1.decisive as f64
        }
    }

    /// The report as `bfly inspect --emit quant-report` prints it.
    pub fn render(&self) -> String {
        let b = &self.batch;
        let mut s = String::new();
        let _ = writeln!(s, "quantization report: model {}", self.model);
        let origin = if self.from_spec {
            "the spec's quantize section"
        } else {
            "no quantize section in the spec: the defaults"
        };
        let _ = writeln!(s, "settings: {} ({origin})", self.settings);
        let _ = writeln!(
            s,
            "input: {} sequences x {} tokens = {} positions, tokens uniform in 0..{} from \
             SplitMix64({TOKEN_SEED:#x}); weights: the spec's init, seed {}",
            b.sequences,
            b.seq_len,
            b.positions(),
            b.vocab,
            b.weight_seed
        );
        let _ = writeln!(
            s,
            "error: relative L2 |y_q - y| / |y| of each site's output against f32; \
             `alone` quantizes only that site, `in model` every site"
        );
        s.push('\n');
        let w_site = self
            .sites
            .iter()
            .map(|e| e.site.len())
            .chain([4])
            .max()
            .unwrap_or(4);
        let w_kind = self
            .sites
            .iter()
            .map(|e| e.kind.len())
            .chain([4])
            .max()
            .unwrap_or(4);
        let _ = writeln!(
            s,
            "{:<w_site$}  {:<w_kind$}  {:<27}  {:>8}  {:>8}",
            "site", "kind", "scheme", "alone", "in model"
        );
        for e in &self.sites {
            let alone = e.alone.map_or("-".to_string(), percent);
            let _ = writeln!(
                s,
                "{:<w_site$}  {:<w_kind$}  {:<27}  {:>8}  {:>8}",
                e.site,
                e.kind,
                e.scheme.label(),
                alone,
                percent(e.in_model)
            );
        }
        if self.sites.is_empty() {
            s.push_str("(no site is quantized)\n");
        }
        s.push('\n');
        let mut kept = vec!["embed (the embedding table always stays f32)".to_string()];
        kept.extend(self.kept.iter().cloned());
        let _ = writeln!(s, "f32: {}", kept.join(", "));
        if self.tied_head {
            let _ = writeln!(s, "     head: {TIED_HEAD_REASON}");
        }
        let _ = writeln!(
            s,
            "model: logits relative L2 {}, top-1 agreement {:.2} % ({}/{})",
            percent(self.logits_rel_l2),
            100.0 * self.top1(),
            self.top1.agree,
            self.positions()
        );
        let _ = writeln!(
            s,
            "       top-1 agreement where the f32 top-2 gap exceeds {DECISIVE_GAP} x the RMS logit \
             error: {:.2} % ({}/{})",
            100.0 * self.decisive_top1(),
            self.top1.decisive_agree,
            self.top1.decisive
        );
        s
    }
}

fn percent(v: f64) -> String {
    format!("{:.3} %", 100.0 * v)
}

fn settings_text(plan: &QuantPlan) -> String {
    let dense = match plan.dense {
        DenseQuant::Int8 => "int8",
        DenseQuant::F16 => "f16",
        DenseQuant::None => "none",
    };
    let butterfly = match plan.butterfly {
        TwiddleQuant::F16 => "fp16",
        TwiddleQuant::None => "none",
    };
    let keep: Vec<String> = plan.keep.iter().map(|k| format!("{k:?}")).collect();
    format!(
        "dense = {dense}  butterfly = {butterfly}  keep = [{}]  rotate = {}",
        keep.join(", "),
        plan.rotate.text()
    )
}

/// The inference graph just before the `quantize` pass.
pub fn f32_graph(spec: &ModelSpec, file: &SourceFile) -> Result<Graph, String> {
    let passes = pipeline(Mode::Infer, spec);
    let stages = stage_names(&passes);
    let Some(at) = stages.iter().position(|s| *s == "quantize") else {
        return Err("the infer pipeline has no `quantize` pass".into());
    };
    let before = stages[at.saturating_sub(1)];
    compile_to_stage(spec, file, Mode::Infer, Some(before))
        .map_err(|d| render_diagnostics(file, &d, false))
}

/// Measures `spec` (see the module doc). With `per_site`, every site is also evaluated
/// quantized alone (one more model evaluation per site and sequence).
pub fn quant_report(
    spec: &ModelSpec,
    file: &SourceFile,
    per_site: bool,
) -> Result<QuantReport, String> {
    let g0 = f32_graph(spec, file)?;
    let from_spec = spec.quantize.is_some();
    let plan = QuantPlan::from_spec(spec).unwrap_or_else(QuantPlan::defaults);
    let batch = Batch::for_spec(spec);
    let m = measure(&g0, &plan, &batch, per_site)?;
    Ok(QuantReport {
        model: spec.model.name.node.clone(),
        settings: settings_text(&plan),
        from_spec,
        batch,
        sites: m.sites,
        kept: m.kept,
        tied_head: m.tied_head,
        logits_rel_l2: m.logits_rel_l2,
        top1: m.top1,
    })
}

/// What [`measure`] finds.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    pub sites: Vec<SiteError>,
    /// Sites left in f32, by name.
    pub kept: Vec<String>,
    /// The model has a tied head that `dense = int8` leaves f32 (see [`TIED_HEAD_REASON`]).
    pub tied_head: bool,
    pub logits_rel_l2: f64,
    pub top1: Top1,
}

/// Evaluates `g0` and its quantized form on `batch`, with the init weights of
/// `batch.weight_seed`.
pub fn measure(
    g0: &Graph,
    plan: &QuantPlan,
    batch: &Batch,
    per_site: bool,
) -> Result<Measured, String> {
    measure_with(g0, plan, batch, per_site, None)
}

/// [`measure`] with the init weights overridden by `trained` where it names a parameter (e.g.
/// the weights after a training run, which is what users quantize).
pub fn measure_with(
    g0: &Graph,
    plan: &QuantPlan,
    batch: &Batch,
    per_site: bool,
    trained: Option<&Weights>,
) -> Result<Measured, String> {
    let sites = find_sites(g0).ok_or("the graph has a cycle")?;
    let mut g1 = g0.clone();
    let applied = quantize_graph(&mut g1, plan, &|_, _| true).map_err(|e| e.to_string())?;
    let kept: Vec<String> = sites
        .iter()
        .filter(|s| plan.scheme(s).is_none())
        .map(QuantSite::display_name)
        .collect();
    let tied_head =
        plan.dense == DenseQuant::Int8 && sites.iter().any(|s| s.kind == SiteKind::TiedHead);
    let weights = init_weights(g0, batch.weight_seed)?;
    let weights = match trained {
        Some(t) => {
            let mut w = weights;
            for (name, tensor) in t {
                if let Some(slot) = w.get_mut(name) {
                    *slot = tensor.clone();
                }
            }
            w
        }
        None => weights,
    };

    let originals: Vec<Value> = applied.iter().map(|a| Value::first(a.site.node)).collect();
    let reference = run(&with_outputs(g0, &originals), &weights, batch)?;
    let quantized: Vec<Value> = applied.iter().map(|a| a.output).collect();
    let full = run(&with_outputs(&g1, &quantized), &weights, batch)?;

    let mut errors = Vec::with_capacity(applied.len());
    for (i, a) in applied.iter().enumerate() {
        let alone = if per_site {
            Some(alone_error(
                g0,
                plan,
                &sites,
                a,
                &weights,
                batch,
                &reference[i + 1],
            )?)
        } else {
            None
        };
        errors.push(SiteError {
            site: a.site.display_name(),
            kind: a.site.kind.label(),
            scheme: a.scheme,
            alone,
            in_model: rel_l2(&full[i + 1], &reference[i + 1]),
        });
    }
    let vocab = g0
        .outputs()
        .first()
        .and_then(|o| g0.value_type(o.value).last_const())
        .unwrap_or(1) as usize;
    Ok(Measured {
        sites: errors,
        kept,
        tied_head,
        logits_rel_l2: rel_l2(&full[0], &reference[0]),
        top1: top1(&full[0], &reference[0], vocab),
    })
}

/// Top-1 agreement of `quantized` logits with `reference` ones, rows of width `vocab`.
pub fn top1(quantized: &[f64], reference: &[f64], vocab: usize) -> Top1 {
    let n = reference.len().max(1) as f64;
    let rms_error = (quantized
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b) * (a - b))
        .sum::<f64>()
        / n)
        .sqrt();
    let width = vocab.max(1);
    let mut t = Top1 {
        agree: 0,
        decisive: 0,
        decisive_agree: 0,
    };
    for (q, r) in quantized.chunks(width).zip(reference.chunks(width)) {
        let agree = argmax(q) == argmax(r);
        let (first, second) =
            r.iter()
                .fold((f64::NEG_INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                    if x > a { (x, a) } else { (a, b.max(x)) }
                });
        let decisive = first - second > DECISIVE_GAP * rms_error;
        t.agree += usize::from(agree);
        t.decisive += usize::from(decisive);
        t.decisive_agree += usize::from(decisive && agree);
    }
    t
}

/// The error of site `a` quantized on its own.
fn alone_error(
    g0: &Graph,
    plan: &QuantPlan,
    sites: &[QuantSite],
    a: &Applied,
    weights: &Weights,
    batch: &Batch,
    reference: &[f64],
) -> Result<f64, String> {
    let index = sites.iter().position(|s| s.node == a.site.node);
    let mut g = g0.clone();
    let one = quantize_graph(&mut g, plan, &|i, _| Some(i) == index).map_err(|e| e.to_string())?;
    let Some(only) = one.first() else {
        return Err(format!(
            "site {} was not quantized alone",
            a.site.display_name()
        ));
    };
    let out = run(&with_outputs(&g, &[only.output]), weights, batch)?;
    Ok(rel_l2(&out[1], reference))
}

/// `g` with the values `extra` appended to its outputs (the first output stays first).
fn with_outputs(g: &Graph, extra: &[Value]) -> Graph {
    let mut g = g.clone();
    let mut outputs: Vec<Output> = g.outputs().iter().take(1).cloned().collect();
    for (i, v) in extra.iter().enumerate() {
        outputs.push(Output::value(format!("quant_report_{i}"), *v));
    }
    g.set_outputs(outputs);
    g
}

/// Evaluates `g` on every sequence; per output, the values of all sequences concatenated.
fn run(g: &Graph, weights: &Weights, batch: &Batch) -> Result<Vec<Vec<f64>>, String> {
    match g.inputs() {
        [id] if g.node(*id).results[0].dtype == DType::I32 => {}
        _ => return Err(format!("@{}: expected one input, `tokens: i32[T]`", g.name)),
    }
    let mut out: Vec<Vec<f64>> = vec![Vec::new(); g.outputs().len()];
    for ids in &batch.tokens {
        let results = evaluate(g, &[Tensor::tokens(ids)], weights)
            .map_err(|e| format!("@{}: {e}", g.name))?;
        for (acc, t) in out.iter_mut().zip(&results) {
            match t.floats() {
                Some(v) => acc.extend_from_slice(v),
                None => return Err(format!("@{}: an output is not a float tensor", g.name)),
            }
        }
    }
    Ok(out)
}

/// `‖a − b‖₂ / ‖b‖₂` (0 when both are zero).
pub fn rel_l2(a: &[f64], b: &[f64]) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        num += (x - y) * (x - y);
        den += y * y;
    }
    if den == 0.0 {
        if num == 0.0 { 0.0 } else { f64::INFINITY }
    } else {
        (num / den).sqrt()
    }
}

/// Index of the largest value (the first one on ties).
pub fn argmax(row: &[f64]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv { (i, x) } else { (bi, bv) }
        })
        .0
}
