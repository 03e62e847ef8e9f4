//! What to do with each site: the spec's `quantize` section resolved against a site's kind
//! and name.

use std::fmt;

use super::sites::{QuantSite, SiteKind};
use crate::spec::{DenseQuant, ModelSpec, TwiddleQuant, glob};

/// Why `dense = int8` leaves the tied LM head f32 whatever the `keep` list says, as the
/// report prints it. (`dense = f16` still stores it as f16: that costs no accuracy worth
/// measuring.)
///
/// Its weight is the embedding table, which stays f32 for the `embed` gather, so an int8 head
/// saves no memory: it adds an int8 copy of the table (`vocab · d_model` bytes) next to it.
/// And it is the most sensitive site: its output is the logits, with no normalization after
/// it, and its input (the final norm's output) is the most heavy-tailed activation of a model
/// (max/rms ≈ 17 in wide-2048 at random init), which per-token int8 quantizes coarsely. Measured
/// at random init: 3.76 % → 0.11 % logits error on wide-2048, 1.34 % → 0.24 % on tiny-butterfly.
pub const TIED_HEAD_REASON: &str = "tied to the f32 embedding table: int8 would add a copy of the table, not save memory, and the logits layer is the most sensitive";

/// How one site is quantized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Dense: int8 weights per output channel and int8 activations per token, `qmatmul`.
    Int8Dynamic,
    /// Monarch: int8 weights per output channel of each block, dequantized to f32 for the
    /// float `monarch` op (weight-only; the SDOT activation path comes with the Kernel IR).
    Int8WeightOnly,
    /// Dense or monarch weights stored as f16 and widened to f32 for f32 arithmetic.
    F16Weights,
    /// Canonical butterfly twiddles stored as fp16.
    Fp16Twiddles,
}

impl Scheme {
    /// The scheme as a report shows it.
    pub fn label(&self) -> &'static str {
        match self {
            Scheme::Int8Dynamic => "int8 w/channel, x/token",
            Scheme::Int8WeightOnly => "int8 w/channel, weight-only",
            Scheme::F16Weights => "f16 weights",
            Scheme::Fp16Twiddles => "fp16 twiddles",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The `quantize` section in the form the pass applies.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantPlan {
    /// Dense and monarch weights.
    pub dense: DenseQuant,
    /// Butterfly twiddles (every butterfly-family kind).
    pub butterfly: TwiddleQuant,
    /// Globs of sites that stay f32 (`embed` and `head` exempt the tied head; with
    /// `dense = int8` it is exempt anyway).
    pub keep: Vec<String>,
    /// Keep the sites the graph cannot name (parameter-free Hadamard butterflies without a
    /// bias): set when a `keep` glob matches such a site of the spec, since the graph alone
    /// cannot tell which of them it meant.
    pub keep_unnamed: bool,
}

impl QuantPlan {
    /// The defaults of an empty `quantize { }` section: int8 dense, fp16 twiddles, keep none.
    pub fn defaults() -> QuantPlan {
        QuantPlan {
            dense: DenseQuant::Int8,
            butterfly: TwiddleQuant::F16,
            keep: Vec::new(),
            keep_unnamed: false,
        }
    }

    /// The spec's `quantize` section, or `None` when it has none (the pass is then a no-op).
    pub fn from_spec(spec: &ModelSpec) -> Option<QuantPlan> {
        let q = spec.quantize.as_ref()?;
        let keep: Vec<String> = q.keep.iter().map(|k| k.node.clone()).collect();
        let keep_unnamed = spec.sites.iter().any(|s| {
            s.kind.param_suffixes().is_empty() && keep.iter().any(|k| glob::matches(k, &s.name))
        });
        Some(QuantPlan {
            dense: q.dense.node,
            butterfly: q.butterfly.node,
            keep,
            keep_unnamed,
        })
    }

    /// Does a `keep` glob exempt `site`? The tied head is exempt by `head` or `embed` (it
    /// reads the embedding table).
    pub fn keeps(&self, site: &QuantSite) -> bool {
        let matches = |name: &str| self.keep.iter().any(|k| glob::matches(k, name));
        match (&site.kind, &site.name) {
            (SiteKind::TiedHead, _) => matches("head") || matches("embed"),
            (_, Some(name)) => matches(name),
            (_, None) => self.keep_unnamed,
        }
    }

    /// The scheme for `site`, or `None` when it stays f32 (kept, or its setting is `none`).
    pub fn scheme(&self, site: &QuantSite) -> Option<Scheme> {
        if self.keeps(site) {
            return None;
        }
        match (site.kind, self.dense, self.butterfly) {
            // Never int8, see `TIED_HEAD_REASON`.
            (SiteKind::TiedHead, DenseQuant::Int8, _) => None,
            (SiteKind::Dense, DenseQuant::Int8, _) => Some(Scheme::Int8Dynamic),
            (SiteKind::Monarch, DenseQuant::Int8, _) => Some(Scheme::Int8WeightOnly),
            (SiteKind::Dense | SiteKind::TiedHead | SiteKind::Monarch, DenseQuant::F16, _) => {
                Some(Scheme::F16Weights)
            }
            (SiteKind::Butterfly { .. }, _, TwiddleQuant::F16) => Some(Scheme::Fp16Twiddles),
            _ => None,
        }
    }
}
