//! Typed checking of a parsed spec: the generic AST (`bfly_grammar::SpecFile`) becomes a
//! [`ModelSpec`] or a list of every error found, each pointing at the exact span with a hint.
//!
//! Sections: `model NAME { … }` (required, once), `lora { … }`, `quantize { … }`,
//! `train { … }` (each optional, at most once). Checking runs in two steps: each section's
//! values on their own, then what needs the resolved model (sites, globs, parameter names).

mod config;
mod fields;
pub mod glob;
mod linear;
mod lora;
mod model;
mod params;
mod quantize;
mod read;
mod sink;
mod sites;
use bfly_grammar::suggest;
mod train;

pub use config::*;
pub use params::{ParamName, param_names};

use bfly_grammar::{Diagnostic, Section, SourceFile, Span, SpecFile};

use sink::Sink;

const SECTIONS: &[&str] = &["model", "lora", "quantize", "train"];

/// Checks a parsed spec. On failure returns every error, ordered by position in the file.
pub fn check_spec(file: &SourceFile, ast: &SpecFile) -> Result<ModelSpec, Vec<Diagnostic>> {
    let mut sink = Sink::new(file);
    let sections = classify(&mut sink, ast);

    let checked = sections[0].map(|s| model::check_model(&mut sink, s));
    let model = checked.as_ref().and_then(|c| c.config.clone());
    let lora = sections[1].and_then(|s| lora::check_lora(&mut sink, s));
    let quantize = sections[2].and_then(|s| quantize::check_quantize(&mut sink, s));
    let context = model.as_ref().map(|m| m.context.node);
    let train =
        sections[3].and_then(|s| train::check_train(&mut sink, s, sections[1].is_some(), context));

    let mut sites = Vec::new();
    if let (Some(m), Some(c)) = (&model, &checked) {
        sites = sites::resolve(&mut sink, m, c.overrides_clean);
        if let Some(l) = &lora {
            lora::attach(&mut sink, l, m, &mut sites);
        }
        if let Some(q) = &quantize {
            quantize::check_keep(&mut sink, q, m, &sites);
        }
        if let Some(t) = &train {
            let names = params::param_names(m, &sites);
            train::check_against_model(&mut sink, t, sections[1].is_some(), &names);
        }
    }

    let mut errors = sink.errors;
    match model {
        Some(model) if errors.is_empty() => Ok(ModelSpec {
            model,
            lora,
            quantize,
            train,
            sites,
        }),
        _ => {
            if errors.is_empty() {
                // Unreachable in practice: every path that drops the model reports why.
                errors.push(Diagnostic::error("the spec could not be checked", ast.span));
            }
            errors.sort_by_key(|d| (d.span.start, d.span.end));
            Err(errors)
        }
    }
}

/// Finds each known section (by index in `SECTIONS`), reporting unknown, repeated and
/// misnamed sections and a missing `model`.
fn classify<'a>(sink: &mut Sink<'_>, ast: &'a SpecFile) -> [Option<&'a Section>; 4] {
    let mut found: [Option<&Section>; 4] = [None; 4];
    for s in &ast.sections {
        let kind = s.kind.node.as_str();
        let Some(i) = SECTIONS.iter().position(|k| *k == kind) else {
            sink.push(
                Diagnostic::error(format!("unknown section `{kind}`"), s.kind.span)
                    .with_label("unknown section")
                    .with_hint(suggest::hint(kind, SECTIONS))
                    .with_note("a spec has one `model` section and optional `lora`, `quantize` and `train` sections"),
            );
            continue;
        };
        if let Some(first) = found[i] {
            let at = sink.at(first.kind.span);
            sink.push(
                Diagnostic::error(format!("a second `{kind}` section"), s.kind.span)
                    .with_label("repeated section")
                    .with_hint(format!("merge it into the first `{kind}` section"))
                    .with_note(format!("the first `{kind}` section starts at {at}")),
            );
            continue;
        }
        if kind != "model"
            && let Some(name) = &s.name
        {
            sink.push(
                Diagnostic::error(format!("the `{kind}` section takes no name"), name.span)
                    .with_label("unexpected name")
                    .with_hint(format!("write `{kind} {{ … }}`")),
            );
        }
        found[i] = Some(s);
    }
    if found[0].is_none() {
        let (message, span) = match ast.sections.first() {
            None => (
                "the spec is empty: it has no `model` section",
                Span::point(0),
            ),
            Some(s) => ("the spec has no `model` section", s.kind.span),
        };
        sink.push(
            Diagnostic::error(message, span)
                .with_label("expected a `model` section")
                .with_hint("start with `model my_model { vocab = 256  d_model = 128  layers = 2  heads = 4  context = 64  mlp = swiglu(hidden = 256) }`"),
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "model m { vocab = 256 d_model = 64 layers = 2 heads = 4 context = 32 mlp = gelu(hidden = 128) ";

    fn check(extra: &str) -> Result<ModelSpec, Vec<Diagnostic>> {
        let file = SourceFile::new("t.bfly", format!("{BASE}{extra}"));
        let ast = bfly_grammar::parse_spec(&file).map_err(|d| vec![d])?;
        check_spec(&file, &ast)
    }

    fn kind(spec: &ModelSpec, site: &str) -> String {
        spec.site(site)
            .map(|s| s.kind.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn later_overrides_win_and_linear_skips_the_head() {
        let spec = check(
            "linear = dib tie_embeddings = false \
             override \"layers.*.mlp.*\" = monarch(blocks = 2) \
             override \"layers.1.mlp.up\" = dense(bias = true) }",
        )
        .expect("valid");
        assert_eq!(kind(&spec, "layers.0.attn.q"), "dib(stride = increasing)");
        assert_eq!(kind(&spec, "layers.0.mlp.up"), "monarch(blocks = 2)");
        assert_eq!(kind(&spec, "layers.1.mlp.up"), "dense(bias = true)");
        assert_eq!(kind(&spec, "head"), "dense");
        assert_eq!(spec.sites.len(), 2 * 6 + 1);
    }

    #[test]
    fn lora_defaults_to_training_only_adapters() {
        let spec = check("} lora { rank = 4 targets = [\"**.attn.q\"] }").expect("valid");
        assert_eq!(spec.trainable(), Trainable::Lora);
        assert_eq!(spec.lora.as_ref().map(LoraConfig::scale), Some(1.0));
        let q = spec.site("layers.1.attn.q").expect("site");
        assert!(q.lora.is_some());
        assert!(
            spec.site("layers.1.attn.k")
                .is_some_and(|s| s.lora.is_none())
        );
    }

    #[test]
    fn trainable_globs_match_params_or_their_owner() {
        let spec =
            check("} train { trainable = [\"layers.*.attn.q\", \"**.gain\"] }").expect("valid");
        let t = spec.trainable();
        assert!(t.is_trainable("layers.0.attn.q.weight", false));
        assert!(t.is_trainable("final_norm.gain", false));
        assert!(!t.is_trainable("layers.0.attn.k.weight", false));
        assert!(check("} train { trainable = [\"**.nothing\"] }").is_err());
    }

    #[test]
    fn collects_every_error_in_order() {
        let errs = check("heads = 4 norm = rmsnorm(eps = 0) } quantize { dense = int4 }")
            .expect_err("invalid");
        let messages: Vec<&str> = errs.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages[0].contains("`heads` is set twice"), "{messages:?}");
        assert!(
            messages[1].contains("`eps` must be greater than 0"),
            "{messages:?}"
        );
        assert!(
            messages[2].contains("unknown `dense` value `int4`"),
            "{messages:?}"
        );
    }
}
