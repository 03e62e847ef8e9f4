//! The `model NAME { … }` section: sizes, norm, position, attention, MLP, the default linear
//! kind and the overrides. Checks each value and the relations between them (heads divide
//! d_model, kv_heads divide heads, even head width under rope).

use bfly_grammar::{Diagnostic, Section, Span, Spanned, Value};

use super::config::{Attention, LinearKind, Mlp, MlpKind, ModelConfig, Norm, Override, Position};
use super::fields::{Entry, Fields, KeyDoc};
use super::glob;
use super::linear;
use super::read::{self, Kwargs};
use super::sink::Sink;
use bfly_grammar::suggest;

const fn doc(key: &'static str, example: &'static str) -> KeyDoc {
    KeyDoc { key, example }
}

const KEYS: &[KeyDoc] = &[
    doc("vocab", "256"),
    doc("d_model", "128"),
    doc("layers", "2"),
    doc("heads", "4"),
    doc("kv_heads", "4"),
    doc("context", "64"),
    doc("norm", "rmsnorm(eps = 1e-5)"),
    doc("position", "rope(base = 10000)"),
    doc("attention", "causal_softmax"),
    doc("linear", "dense"),
    doc("mlp", "swiglu(hidden = 256)"),
    doc("tie_embeddings", "true"),
];

const REQUIRED: &[KeyDoc] = &[
    doc("vocab", "256"),
    doc("d_model", "128"),
    doc("layers", "2"),
    doc("heads", "4"),
    doc("context", "64"),
    doc("mlp", "swiglu(hidden = 256)"),
];

// Upper limits keep every shape product far from u64 overflow and reject obvious typos.
pub const MAX_VOCAB: u64 = 1 << 24;
pub const MAX_WIDTH: u64 = 1 << 16;
pub const MAX_LAYERS: u64 = 1024;
pub const MAX_CONTEXT: u64 = 1 << 20;
pub const MAX_HIDDEN: u64 = 1 << 20;

/// The checked model section, and whether every override read cleanly (site checks that
/// depend on all overrides are skipped otherwise, to avoid follow-on errors).
pub struct ModelCheck {
    pub config: Option<ModelConfig>,
    pub overrides_clean: bool,
}

/// A value that was given, or the default located at the `model` keyword.
fn or_default<T>(
    entry: Option<Entry<'_>>,
    keyword: Span,
    default: T,
    read: impl FnOnce(&Value) -> Option<T>,
) -> Option<Spanned<T>> {
    match entry {
        Some(e) => read(e.value).map(|v| Spanned::new(v, e.value.span)),
        None => Some(Spanned::new(default, keyword)),
    }
}

fn required<T>(
    entry: Option<Entry<'_>>,
    read: impl FnOnce(&Value) -> Option<T>,
) -> Option<Spanned<T>> {
    let e = entry?;
    read(e.value).map(|v| Spanned::new(v, e.value.span))
}

pub fn check_model(sink: &mut Sink<'_>, section: &Section) -> ModelCheck {
    let kw = section.kind.span;
    let header = section.name.as_ref().map_or(kw, |n| kw.to(n.span));
    let f = Fields::collect(sink, "model", header, &section.items, KEYS, true);
    f.require(sink, REQUIRED);
    let name = match &section.name {
        Some(n) => Some(n.clone()),
        None => {
            sink.push(
                Diagnostic::error("the `model` section needs a name", kw)
                    .with_label("no name after `model`")
                    .with_hint("write `model my_model { … }`; the name becomes the graph's name"),
            );
            None
        }
    };
    let errors = sink.errors.len();
    let vocab = required(f.get("vocab"), |v| {
        read::size(sink, v, "vocab", 2, MAX_VOCAB)
    });
    let d_model = required(f.get("d_model"), |v| {
        read::size(sink, v, "d_model", 1, MAX_WIDTH)
    });
    let layers = required(f.get("layers"), |v| {
        read::size(sink, v, "layers", 1, MAX_LAYERS)
    });
    let heads = required(f.get("heads"), |v| {
        read::size(sink, v, "heads", 1, MAX_WIDTH)
    });
    let kv_heads = match f.get("kv_heads") {
        Some(e) => read::size(sink, e.value, "kv_heads", 1, MAX_WIDTH)
            .map(|v| Spanned::new(v, e.value.span)),
        None => heads.as_ref().map(|h| Spanned::new(h.node, kw)),
    };
    let context = required(f.get("context"), |v| {
        read::size(sink, v, "context", 1, MAX_CONTEXT)
    });
    let norm = or_default(f.get("norm"), kw, Norm::RmsNorm { eps: 1e-5 }, |v| {
        norm(sink, v)
    });
    let position = or_default(
        f.get("position"),
        kw,
        Position::Rope { base: 10000.0 },
        |v| position(sink, v),
    );
    let attention = or_default(f.get("attention"), kw, Attention::CausalSoftmax, |v| {
        read::choice(sink, v, "attention", &["causal_softmax"]).map(|_| Attention::CausalSoftmax)
    });
    let linear = or_default(f.get("linear"), kw, LinearKind::DENSE, |v| {
        linear::linear_kind(sink, v, "linear")
    });
    let mlp = required(f.get("mlp"), |v| {
        mlp(sink, v, d_model.as_ref().map(|d| d.node))
    });
    let tie = or_default(f.get("tie_embeddings"), kw, true, |v| {
        read::boolean(sink, v, "tie_embeddings")
    });

    if let (Some(d), Some(h)) = (&d_model, &heads) {
        check_heads(sink, d, h, kv_heads.as_ref(), position.as_ref());
    }

    let model_clean = sink.errors.len() == errors;
    let before_overrides = sink.errors.len();
    let mut overrides = Vec::new();
    for o in &f.overrides {
        let what = format!("override \"{}\"", o.pattern.node);
        let glob_ok = match glob::validate(&o.pattern.node) {
            Ok(()) => true,
            Err(m) => {
                sink.push(
                    Diagnostic::error(format!("invalid override glob: {m}"), o.pattern.span)
                        .with_label("invalid glob")
                        .with_hint(read::GLOB_SYNTAX),
                );
                false
            }
        };
        if let Some(kind) = linear::linear_kind(sink, o.value, &what)
            && glob_ok
        {
            overrides.push(Override {
                pattern: o.pattern.clone(),
                kind: Spanned::new(kind, o.value.span),
            });
        }
    }
    let overrides_clean = sink.errors.len() == before_overrides;

    let config = (|| {
        model_clean.then_some(())?;
        Some(ModelConfig {
            name: name?,
            keyword: kw,
            vocab: vocab?,
            d_model: d_model?,
            layers: layers?,
            heads: heads?,
            kv_heads: kv_heads?,
            context: context?,
            norm: norm?,
            position: position?,
            attention: attention?,
            linear: linear?,
            mlp: mlp?,
            tie_embeddings: tie?,
            overrides,
        })
    })();
    ModelCheck {
        config,
        overrides_clean,
    }
}

fn norm(sink: &mut Sink<'_>, v: &Value) -> Option<Norm> {
    let call = read::call(
        sink,
        v,
        "norm",
        &["rmsnorm", "layernorm"],
        "rmsnorm(eps = 1e-5)",
    )?;
    let kw = Kwargs::new(sink, &call, &["eps"]);
    let eps = kw.get("eps").map_or(Some(1e-5), |v| {
        read::number(sink, v, "eps", |e| e > 0.0, "greater than 0")
    })?;
    Some(match call.name {
        "rmsnorm" => Norm::RmsNorm { eps },
        _ => Norm::LayerNorm { eps },
    })
}

fn position(sink: &mut Sink<'_>, v: &Value) -> Option<Position> {
    let call = read::call(sink, v, "position", &["rope", "none"], "rope(base = 10000)")?;
    if call.name == "none" {
        let errors = sink.errors.len();
        Kwargs::new(sink, &call, &[]);
        return (sink.errors.len() == errors).then_some(Position::None);
    }
    let kw = Kwargs::new(sink, &call, &["base"]);
    let base = kw.get("base").map_or(Some(10000.0), |v| {
        read::number(sink, v, "base", |b| b > 1.0, "greater than 1")
    })?;
    Some(Position::Rope { base })
}

fn mlp(sink: &mut Sink<'_>, v: &Value, d_model: Option<u64>) -> Option<Mlp> {
    let call = read::call(sink, v, "mlp", &["gelu", "swiglu"], "swiglu(hidden = 256)")?;
    let kw = Kwargs::new(sink, &call, &["hidden"]);
    let kind = if call.name == "gelu" {
        MlpKind::Gelu
    } else {
        MlpKind::Swiglu
    };
    let Some(hidden) = kw.get("hidden") else {
        if kw.positional {
            return None;
        }
        let example = d_model.map_or(256, |d| 4 * d);
        sink.push(
            Diagnostic::error(format!("`{}` needs its hidden width", call.name), v.span)
                .with_label("missing `hidden`")
                .with_hint(format!("write `mlp = {}(hidden = {example})`", call.name)),
        );
        return None;
    };
    let hidden = read::size(sink, hidden, "hidden", 1, MAX_HIDDEN)?;
    Some(Mlp { kind, hidden })
}

/// `heads` divides `d_model`, `kv_heads` divides `heads`, and rope gets an even head width.
fn check_heads(
    sink: &mut Sink<'_>,
    d_model: &Spanned<u64>,
    heads: &Spanned<u64>,
    kv_heads: Option<&Spanned<u64>>,
    position: Option<&Spanned<Position>>,
) {
    let (d, h) = (d_model.node, heads.node);
    if d % h != 0 {
        sink.push(
            Diagnostic::error(
                format!("`heads` = {h} does not divide `d_model` = {d}"),
                heads.span,
            )
            .with_label(format!("{d} is not a multiple of {h}"))
            .with_hint(format!(
                "choose `heads` from the divisors of {d}: {}",
                divisors(d)
            )),
        );
        return;
    }
    if let Some(kv) = kv_heads
        && h % kv.node != 0
    {
        sink.push(
            Diagnostic::error(
                format!("`kv_heads` = {} does not divide `heads` = {h}", kv.node),
                kv.span,
            )
            .with_label("each key/value head must serve a whole number of query heads")
            .with_hint(format!(
                "choose `kv_heads` from the divisors of {h}: {}",
                divisors(h)
            )),
        );
    }
    let rope = matches!(position.map(|p| &p.node), Some(Position::Rope { .. }));
    if rope && (d / h) % 2 != 0 {
        let even: Vec<String> = (1..=h.saturating_mul(2).min(d))
            .filter(|c| d % c == 0 && (d / c) % 2 == 0)
            .take(8)
            .map(|c| c.to_string())
            .collect();
        let names: Vec<&str> = even.iter().map(String::as_str).collect();
        let suggestion = if even.is_empty() {
            "set `position = none`".to_string()
        } else {
            let or_list = suggest::list(&names).replace('`', "");
            format!("use `heads` = {or_list}, or set `position = none`")
        };
        sink.push(
            Diagnostic::error(
                format!(
                    "rope needs an even head width, but d_model / heads = {d} / {h} = {}",
                    d / h
                ),
                heads.span,
            )
            .with_label("gives an odd head width")
            .with_hint(suggestion)
            .with_note("rope rotates pairs of features within each head"),
        );
    }
}

/// The divisors of `n` as text (the first dozen, then "…").
fn divisors(n: u64) -> String {
    let mut ds: Vec<String> = Vec::new();
    let mut i = 1;
    while i <= n && ds.len() < 12 {
        if n.is_multiple_of(i) {
            ds.push(i.to_string());
        }
        i += 1;
    }
    if i <= n {
        ds.push("…".into());
        ds.push(n.to_string());
    }
    ds.join(", ")
}
