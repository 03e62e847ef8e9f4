//! The `train { trainable, optimizer, batch, seq, seed, steps }` section. Validated and
//! stored here; the training program is built later.

use bfly_grammar::{Diagnostic, Section, Spanned, Value, ValueKind};

use super::config::{DEFAULT_OPTIMIZER, Optimizer, TrainConfig, Trainable, glob_matches_param};
use super::fields::{Fields, KeyDoc};
use super::params::ParamName;
use super::read::{self, Kwargs};
use super::sink::Sink;
use crate::mode::{DEFAULT_BATCH, DEFAULT_SEQ};

const KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "trainable",
        example: "all",
    },
    KeyDoc {
        key: "optimizer",
        example: "adamw(lr = 3e-4)",
    },
    KeyDoc {
        key: "batch",
        example: "8",
    },
    KeyDoc {
        key: "seq",
        example: "64",
    },
    KeyDoc {
        key: "seed",
        example: "1",
    },
    KeyDoc {
        key: "steps",
        example: "100",
    },
];

/// Reads the section. Defaults: `trainable` = `lora` when the spec has a lora section, else
/// `all`; `optimizer = adamw(lr = 3e-4)`; batch 8, seq 64 (or the context if shorter), seed
/// 1, steps 100. `context` is the model's, when the model section is valid.
pub fn check_train(
    sink: &mut Sink<'_>,
    section: &Section,
    has_lora: bool,
    context: Option<u64>,
) -> Option<TrainConfig> {
    let kw = section.kind.span;
    let f = Fields::collect(sink, "train", kw, &section.items, KEYS, false);
    let trainable = match f.get("trainable") {
        Some(e) => trainable(sink, e.value).map(|t| Spanned::new(t, e.value.span)),
        None if has_lora => Some(Spanned::new(Trainable::Lora, kw)),
        None => Some(Spanned::new(Trainable::All, kw)),
    };
    let optimizer = match f.get("optimizer") {
        Some(e) => optimizer(sink, e.value).map(|o| Spanned::new(o, e.value.span)),
        None => Some(Spanned::new(DEFAULT_OPTIMIZER, kw)),
    };
    let mut count = |key: &str, default: u64, min: u64, max: u64| match f.get(key) {
        Some(e) => read::size(sink, e.value, key, min, max).map(|v| Spanned::new(v, e.value.span)),
        None => Some(Spanned::new(default, kw)),
    };
    let batch = count("batch", DEFAULT_BATCH, 1, 1 << 16);
    let seq = count(
        "seq",
        context.map_or(DEFAULT_SEQ, |c| c.min(DEFAULT_SEQ)),
        1,
        super::model::MAX_CONTEXT,
    );
    let seed = count("seed", 1, 0, i64::MAX as u64);
    let steps = count("steps", 100, 1, 1 << 40);
    if let (Some(seq), Some(context)) = (&seq, context)
        && seq.node > context
    {
        sink.push(
            Diagnostic::error(
                format!(
                    "`seq` = {} is longer than the model's `context` = {context}",
                    seq.node
                ),
                seq.span,
            )
            .with_label("longer than the context")
            .with_hint(format!("use `seq` ≤ {context}, or raise `context`")),
        );
    }
    Some(TrainConfig {
        keyword: kw,
        trainable: trainable?,
        optimizer: optimizer?,
        batch: batch?,
        seq: seq?,
        seed: seed?,
        steps: steps?,
    })
}

fn trainable(sink: &mut Sink<'_>, v: &Value) -> Option<Trainable> {
    if let ValueKind::List(_) = v.kind {
        return read::glob_list(sink, v, "trainable").map(Trainable::Globs);
    }
    match read::choice(sink, v, "trainable", &["all", "lora"])? {
        0 => Some(Trainable::All),
        _ => Some(Trainable::Lora),
    }
}

fn optimizer(sink: &mut Sink<'_>, v: &Value) -> Option<Optimizer> {
    let call = read::call(sink, v, "optimizer", &["sgd", "adamw"], "adamw(lr = 3e-4)")?;
    let allowed: &[&str] = if call.name == "sgd" {
        &["lr"]
    } else {
        &["lr", "beta1", "beta2", "eps", "weight_decay"]
    };
    let kw = Kwargs::new(sink, &call, allowed);
    let Some(lr) = kw.get("lr") else {
        if kw.positional {
            return None;
        }
        sink.push(
            Diagnostic::error(format!("`{}` needs a learning rate", call.name), v.span)
                .with_label("missing `lr`")
                .with_hint(format!("write `optimizer = {}(lr = 3e-4)`", call.name)),
        );
        return None;
    };
    let lr = read::number(sink, lr, "lr", |x| x > 0.0, "greater than 0");
    if call.name == "sgd" {
        return Some(Optimizer::Sgd { lr: lr? });
    }
    let mut num = |key: &str, default: f64, ok: fn(f64) -> bool, expected: &str| match kw.get(key) {
        Some(v) => read::number(sink, v, key, ok, expected),
        None => Some(default),
    };
    let beta = "in [0, 1)";
    let beta1 = num("beta1", 0.9, |b| (0.0..1.0).contains(&b), beta);
    let beta2 = num("beta2", 0.999, |b| (0.0..1.0).contains(&b), beta);
    let eps = num("eps", 1e-8, |e| e > 0.0, "greater than 0");
    let weight_decay = num("weight_decay", 0.0, |w| w >= 0.0, "at least 0");
    Some(Optimizer::AdamW {
        lr: lr?,
        beta1: beta1?,
        beta2: beta2?,
        eps: eps?,
        weight_decay: weight_decay?,
    })
}

/// Checks that need the resolved model: `lora` has adapters to train, and every trainable
/// glob names some parameter.
pub fn check_against_model(
    sink: &mut Sink<'_>,
    t: &TrainConfig,
    has_lora: bool,
    params: &[ParamName],
) {
    match &t.trainable.node {
        Trainable::Lora if !has_lora => sink.push(
            Diagnostic::error("`trainable = lora` but the spec has no `lora` section", t.trainable.span)
                .with_label("nothing to train")
                .with_hint("add `lora { rank = 8  targets = [\"layers.*.attn.q\"] }`, or write `trainable = all`"),
        ),
        Trainable::Globs(globs) => {
            for g in globs {
                if !params.iter().any(|p| glob_matches_param(&g.node, &p.name)) {
                    let examples: Vec<&str> = params.iter().take(4).map(|p| p.name.as_str()).collect();
                    sink.push(
                        Diagnostic::error(format!("trainable glob \"{}\" matches no parameter", g.node), g.span)
                            .with_label("matches nothing")
                            .with_hint(read::GLOB_SYNTAX)
                            .with_note(format!(
                                "parameters are named like `{}`; a glob may also name their owner, e.g. `layers.*.attn.q`",
                                examples.join("`, `")
                            )),
                    );
                }
            }
        }
        _ => {}
    }
}
