//! Names of every parameter a checked model will have, without building it: `train.trainable`
//! globs are checked against these. The builder creates exactly this set (tested).

use super::config::{ModelConfig, Norm, Site};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ParamName {
    pub name: String,
    /// A LoRA adapter tensor (`lora_a`, `lora_b`).
    pub lora: bool,
}

/// Parameter suffixes of a norm: its gain, and its bias for layernorm.
fn norm_param_suffixes(norm: &Norm) -> &'static [&'static str] {
    match norm {
        Norm::RmsNorm { .. } => &["gain"],
        Norm::LayerNorm { .. } => &["gain", "bias"],
    }
}

pub fn param_names(m: &ModelConfig, sites: &[Site]) -> Vec<ParamName> {
    let plain = |name: String| ParamName { name, lora: false };
    let mut out = vec![plain("embed.weight".into())];
    let norm = |out: &mut Vec<ParamName>, prefix: &str| {
        for s in norm_param_suffixes(&m.norm.node) {
            out.push(plain(format!("{prefix}.{s}")));
        }
    };
    for i in 0..m.layers.node {
        norm(&mut out, &format!("layers.{i}.attn_norm"));
        norm(&mut out, &format!("layers.{i}.mlp_norm"));
    }
    norm(&mut out, "final_norm");
    for s in sites {
        for suffix in s.kind.param_suffixes() {
            out.push(plain(format!("{}.{suffix}", s.name)));
        }
        if s.lora.is_some() {
            for suffix in ["lora_a", "lora_b"] {
                out.push(ParamName {
                    name: format!("{}.{suffix}", s.name),
                    lora: true,
                });
            }
        }
    }
    out
}
