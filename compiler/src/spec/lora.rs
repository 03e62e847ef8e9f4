//! The `lora { rank, alpha, targets }` section: adapter size and the sites it attaches to.

use bfly_grammar::{Diagnostic, Section, Spanned};

use super::config::{LoraConfig, ModelConfig, Site};
use super::fields::{Fields, KeyDoc};
use super::read;
use super::sink::Sink;
use super::{glob, sites};

const KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "rank",
        example: "8",
    },
    KeyDoc {
        key: "alpha",
        example: "16",
    },
    KeyDoc {
        key: "targets",
        example: "[\"layers.*.attn.q\", \"layers.*.attn.v\"]",
    },
];

const REQUIRED: &[KeyDoc] = &[
    KeyDoc {
        key: "rank",
        example: "8",
    },
    KeyDoc {
        key: "targets",
        example: "[\"layers.*.attn.q\", \"layers.*.attn.v\"]",
    },
];

/// Reads the section's values. `alpha` defaults to `rank` (scale 1).
pub fn check_lora(sink: &mut Sink<'_>, section: &Section) -> Option<LoraConfig> {
    let f = Fields::collect(sink, "lora", section.kind.span, &section.items, KEYS, false);
    f.require(sink, REQUIRED);
    let rank = f.get("rank").and_then(|e| {
        read::size(sink, e.value, "rank", 1, 1 << 16).map(|r| Spanned::new(r, e.value.span))
    });
    let alpha = match f.get("alpha") {
        Some(e) => read::number(sink, e.value, "alpha", |a| a > 0.0, "greater than 0")
            .map(|a| Spanned::new(a, e.value.span)),
        None => rank
            .as_ref()
            .map(|r| Spanned::new(r.node as f64, section.kind.span)),
    };
    let targets = f.get("targets").and_then(|e| {
        let globs = read::glob_list(sink, e.value, "targets")?;
        if globs.is_empty() {
            sink.push(
                Diagnostic::error("`targets` is empty: the adapter would attach nowhere", e.value.span)
                    .with_label("no targets")
                    .with_hint("list the sites to adapt, e.g. `targets = [\"layers.*.attn.q\", \"layers.*.attn.v\"]`, or remove the `lora` section"),
            );
            return None;
        }
        Some(globs)
    });
    Some(LoraConfig {
        keyword: section.kind.span,
        rank: rank?,
        alpha: alpha?,
        targets: targets?,
    })
}

/// Marks the targeted sites, reporting targets that match nothing and sites too narrow for
/// the rank (a rank above `min(in, out)` adds parameters without adding expressiveness).
pub fn attach(sink: &mut Sink<'_>, lora: &LoraConfig, m: &ModelConfig, sites: &mut [Site]) {
    for t in &lora.targets {
        let mut hit = false;
        for s in sites.iter_mut().filter(|s| glob::matches(&t.node, &s.name)) {
            s.lora = Some(t.span);
            hit = true;
        }
        if !hit {
            sink.push(sites::no_match(m, sites, t, "lora target"));
        }
    }
    let r = lora.rank.node;
    let narrowest = sites
        .iter()
        .filter(|s| s.lora.is_some())
        .min_by_key(|s| s.in_features.min(s.out_features));
    if let Some(s) = narrowest {
        let width = s.in_features.min(s.out_features);
        if r > width {
            sink.push(
                Diagnostic::error(
                    format!(
                        "lora `rank` = {r} exceeds the narrowest targeted site, `{}` ({} → {})",
                        s.name, s.in_features, s.out_features
                    ),
                    lora.rank.span,
                )
                .with_label(format!("larger than {width}"))
                .with_hint(format!(
                    "use `rank` ≤ {width}, or leave that site out of `targets`"
                )),
            );
        }
    }
}
