//! What to do with each site: the spec's `quantize` section resolved against a site's kind
//! and name.

use std::fmt;

use super::sites::{QuantSite, SiteKind};
use crate::spec::{DenseQuant, ModelSpec, RotateSites, TwiddleQuant, glob};

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
    /// [`Scheme::Int8Dynamic`] after an online Hadamard rotation of the input (`H x`, the
    /// weight rotated to `W Hᵀ` at weight time; see [`super::rotate`]).
    Int8Rotated,
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
            Scheme::Int8Rotated => "int8 rotated w/ch, x/token",
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
    /// Which int8 dense sites rotate their input first (`rotate`).
    pub rotate: Rotate,
}

/// The `rotate` setting: which int8 dense sites get an online Hadamard rotation.
#[derive(Clone, Debug, PartialEq)]
pub enum Rotate {
    All,
    None,
    Globs(Vec<String>),
}

/// What `rotate` is when the section does not set it: the MLP down projections, whose input
/// (the SwiGLU/GELU product) is the heavy-tailed activation of a block. Measured at random
/// init, `layers.0.mlp.down` of tiny-dense alone: 1.46 % → 0.88 %; the logits of mixed:
/// 2.33 % → 1.61 %. The other dense sites read near-Gaussian activations (normalized residual
/// stream, attention output), where the per-token absmax floor (≈ 0.84 % per site) is the
/// same with or without a rotation: rotating them changes only which near-ties flip
/// (tiny-quant's top-1 fell 100 % → 98.4 % with `rotate = true`, its logits error
/// 1.81 % → 1.88 %), and costs a butterfly per input.
pub const DEFAULT_ROTATE: &[&str] = &["*.mlp.down"];

impl Rotate {
    /// The spec's setting, or [`DEFAULT_ROTATE`] when it has none.
    pub fn from_spec(r: Option<&RotateSites>) -> Rotate {
        match r {
            None => Rotate::Globs(DEFAULT_ROTATE.iter().map(|g| g.to_string()).collect()),
            Some(RotateSites::All) => Rotate::All,
            Some(RotateSites::None) => Rotate::None,
            Some(RotateSites::Globs(g)) => {
                Rotate::Globs(g.iter().map(|s| s.node.clone()).collect())
            }
        }
    }

    /// The setting as a `quantize` section spells it.
    pub fn text(&self) -> String {
        match self {
            Rotate::All => "true".into(),
            Rotate::None => "false".into(),
            Rotate::Globs(g) => {
                let g: Vec<String> = g.iter().map(|s| format!("{s:?}")).collect();
                format!("[{}]", g.join(", "))
            }
        }
    }
}

impl QuantPlan {
    /// The defaults of an empty `quantize { }` section: int8 dense, fp16 twiddles, keep none.
    pub fn defaults() -> QuantPlan {
        QuantPlan {
            dense: DenseQuant::Int8,
            butterfly: TwiddleQuant::F16,
            keep: Vec::new(),
            keep_unnamed: false,
            rotate: Rotate::from_spec(None),
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
            rotate: Rotate::from_spec(q.rotate.as_ref()),
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

    /// Does `rotate` select `site`? (Only int8 dense sites are rotated: [`Scheme::Int8Rotated`]
    /// is chosen by the rewrite, which also needs an input width with a power-of-two factor.)
    pub fn rotates(&self, site: &QuantSite) -> bool {
        match (&self.rotate, &site.name) {
            (Rotate::All, _) => true,
            (Rotate::Globs(globs), Some(name)) => globs.iter().any(|g| glob::matches(g, name)),
            _ => false,
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
