//! The `quantize { dense, butterfly, keep, rotate }` section. Validated and stored here; the
//! quantization pass reads it later.

use bfly_grammar::{Diagnostic, Section, Spanned, Value, ValueKind};

use super::config::{DenseQuant, ModelConfig, QuantizeConfig, RotateSites, Site, TwiddleQuant};
use super::fields::{Fields, KeyDoc};
use super::read;
use super::sink::Sink;
use super::{glob, sites};

const KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "dense",
        example: "int8",
    },
    KeyDoc {
        key: "butterfly",
        example: "fp16",
    },
    KeyDoc {
        key: "keep",
        example: "[\"embed\"]",
    },
    KeyDoc {
        key: "rotate",
        example: "true",
    },
];

/// Reads the section; `dense` defaults to `int8`, `butterfly` to `fp16`, `keep` to none,
/// `rotate` to the pass's default (`None` here).
/// `f16` and `fp16` are both accepted, since both spellings are common.
pub fn check_quantize(sink: &mut Sink<'_>, section: &Section) -> Option<QuantizeConfig> {
    let kw = section.kind.span;
    let f = Fields::collect(sink, "quantize", kw, &section.items, KEYS, false);
    let dense = match f.get("dense") {
        Some(e) => {
            read::choice(sink, e.value, "dense", &["int8", "f16", "fp16", "none"]).map(|i| {
                let q = match i {
                    0 => DenseQuant::Int8,
                    1 | 2 => DenseQuant::F16,
                    _ => DenseQuant::None,
                };
                Spanned::new(q, e.value.span)
            })
        }
        None => Some(Spanned::new(DenseQuant::Int8, kw)),
    };
    let butterfly = match f.get("butterfly") {
        Some(e) => read::choice(sink, e.value, "butterfly", &["fp16", "f16", "none"]).map(|i| {
            let q = if i < 2 {
                TwiddleQuant::F16
            } else {
                TwiddleQuant::None
            };
            Spanned::new(q, e.value.span)
        }),
        None => Some(Spanned::new(TwiddleQuant::F16, kw)),
    };
    let keep = match f.get("keep") {
        Some(e) => read::glob_list(sink, e.value, "keep"),
        None => Some(Vec::new()),
    };
    let rotate = match f.get("rotate") {
        Some(e) => rotate_sites(sink, e.value).map(Some),
        None => Some(None),
    };
    Some(QuantizeConfig {
        keyword: kw,
        dense: dense?,
        butterfly: butterfly?,
        keep: keep?,
        rotate: rotate?,
    })
}

/// `rotate = true | false | ["glob", …]`.
fn rotate_sites(sink: &mut Sink<'_>, v: &Value) -> Option<RotateSites> {
    match &v.kind {
        ValueKind::Bool(true) => Some(RotateSites::All),
        ValueKind::Bool(false) => Some(RotateSites::None),
        ValueKind::List(_) => read::glob_list(sink, v, "rotate").map(RotateSites::Globs),
        ValueKind::Str(s) => {
            let msg = "`rotate` must be `true`, `false` or a list of glob strings";
            sink.push(
                Diagnostic::error(format!("{msg}, found a string"), v.span)
                    .with_label("expected `true`, `false` or a list")
                    .with_hint(format!("put it in brackets: `rotate = [\"{s}\"]`")),
            );
            None
        }
        _ => {
            let found = read::describe(sink, v);
            sink.push(
                Diagnostic::error(
                    format!("`rotate` must be `true`, `false` or a list of glob strings, found {found}"),
                    v.span,
                )
                .with_label("expected `true`, `false` or a list")
                .with_hint("for example `rotate = true` (every int8 dense site) or `rotate = [\"*.mlp.down\"]`"),
            );
            None
        }
    }
}

/// Every `keep` glob must name a site, `embed`, or `head`. With tied embeddings the LM head
/// is the embedding table, so `head` names it too (as in DESIGN §2's `keep = ["embed",
/// "head"]`, which must stay valid whichever way `tie_embeddings` is set).
pub fn check_keep(sink: &mut Sink<'_>, q: &QuantizeConfig, m: &ModelConfig, all: &[Site]) {
    if let Some(RotateSites::Globs(globs)) = &q.rotate {
        for r in globs {
            if !all.iter().any(|s| glob::matches(&r.node, &s.name)) {
                sink.push(sites::no_match(m, all, r, "rotate").with_note(
                    "`rotate` applies to the int8 dense sites; the others are left as they are",
                ));
            }
        }
    }
    for k in &q.keep {
        let hit = ["embed", "head"].iter().any(|n| glob::matches(&k.node, n))
            || all.iter().any(|s| glob::matches(&k.node, &s.name));
        if !hit {
            sink.push(sites::no_match(m, all, k, "keep").with_note(
                "`keep` also accepts `embed` (the embedding table) and `head` (the tied LM head)",
            ));
        }
    }
}
