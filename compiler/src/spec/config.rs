//! The checked, typed form of a spec. Every setting keeps the span of the spec entry that set
//! it (or of the `model` keyword when it is a default), so later stages can point at the line
//! that caused a node, a parameter or an error.

use std::fmt;

use bfly_grammar::{Span, Spanned};
use bfly_ir::StrideOrder;

/// A fully checked spec: the model, its optional sections, and every linear site resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub model: ModelConfig,
    pub lora: Option<LoraConfig>,
    pub quantize: Option<QuantizeConfig>,
    pub train: Option<TrainConfig>,
    /// Every projection of the model, in graph order (layer by layer, then `head`).
    pub sites: Vec<Site>,
}

impl ModelSpec {
    pub fn site(&self, name: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.name == name)
    }

    /// Which parameters train. Without a `train` section (or its `trainable` key) everything
    /// trains, except that a spec with a `lora` section trains only the adapters: that is the
    /// point of adding one.
    pub fn trainable(&self) -> Trainable {
        match &self.train {
            Some(t) => t.trainable.node.clone(),
            None if self.lora.is_some() => Trainable::Lora,
            None => Trainable::All,
        }
    }

    /// The optimizer of a training step: the `train` section's, else [`DEFAULT_OPTIMIZER`].
    pub fn optimizer(&self) -> Optimizer {
        self.train
            .as_ref()
            .map_or(DEFAULT_OPTIMIZER, |t| t.optimizer.node)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub name: Spanned<String>,
    /// The `model` keyword: the location of every default.
    pub keyword: Span,
    pub vocab: Spanned<u64>,
    pub d_model: Spanned<u64>,
    pub layers: Spanned<u64>,
    pub heads: Spanned<u64>,
    pub kv_heads: Spanned<u64>,
    /// Longest sequence: the bound of the token dim `T`.
    pub context: Spanned<u64>,
    pub norm: Spanned<Norm>,
    pub position: Spanned<Position>,
    pub attention: Spanned<Attention>,
    /// Default kind of every projection except `head`.
    pub linear: Spanned<LinearKind>,
    pub mlp: Spanned<Mlp>,
    pub tie_embeddings: Spanned<bool>,
    pub overrides: Vec<Override>,
}

impl ModelConfig {
    /// Width of one attention head (`d_model / heads`; checked to divide).
    pub fn head_dim(&self) -> u64 {
        self.d_model.node / self.heads.node.max(1)
    }

    /// Width of the K and V projections.
    pub fn kv_width(&self) -> u64 {
        self.kv_heads.node * self.head_dim()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Norm {
    RmsNorm { eps: f64 },
    LayerNorm { eps: f64 },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Position {
    Rope { base: f64 },
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attention {
    CausalSoftmax,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MlpKind {
    /// `down(gelu(up(h)))`
    Gelu,
    /// `down(silu(gate(h)) * up(h))`
    Swiglu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mlp {
    pub kind: MlpKind,
    pub hidden: u64,
}

/// `override "GLOB" = KIND`.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    pub pattern: Spanned<String>,
    pub kind: Spanned<LinearKind>,
}

/// How one projection is factorized.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearKind {
    pub op: LinearOp,
    /// Block-diagonal across heads: `heads` independent maps of width `in/heads → out/heads`.
    pub per_head: bool,
    pub bias: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LinearOp {
    Dense,
    Butterfly { nblocks: u64, stride: StrideOrder },
    Dib { stride: StrideOrder },
    Givens { stride: StrideOrder },
    Monarch { blocks: u64 },
    Hadamard,
    Ternary { alpha: f64, stride: StrideOrder },
}

impl LinearOp {
    pub fn name(&self) -> &'static str {
        match self {
            LinearOp::Dense => "dense",
            LinearOp::Butterfly { .. } => "butterfly",
            LinearOp::Dib { .. } => "dib",
            LinearOp::Givens { .. } => "givens",
            LinearOp::Monarch { .. } => "monarch",
            LinearOp::Hadamard => "hadamard",
            LinearOp::Ternary { .. } => "ternary",
        }
    }
}

impl LinearKind {
    pub const DENSE: LinearKind = LinearKind {
        op: LinearOp::Dense,
        per_head: false,
        bias: false,
    };

    /// Parameter name suffixes this kind creates on its site, in creation order
    /// (`layers.0.attn.q.theta`, …). The builder creates exactly these.
    pub fn param_suffixes(&self) -> Vec<&'static str> {
        let mut s = match self.op {
            LinearOp::Dense => vec!["weight"],
            LinearOp::Butterfly { .. } => vec!["twiddles"],
            LinearOp::Dib { .. } => vec!["theta", "diag"],
            LinearOp::Givens { .. } => vec!["theta"],
            LinearOp::Monarch { .. } => vec!["w1", "w2"],
            LinearOp::Hadamard => vec![],
            LinearOp::Ternary { .. } => vec!["w"],
        };
        if self.bias {
            s.push("bias");
        }
        s
    }
}

/// Prints the kind as it would be written in a spec, with every argument spelled out.
impl fmt::Display for LinearKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut args: Vec<String> = match self.op {
            LinearOp::Dense | LinearOp::Hadamard => vec![],
            LinearOp::Butterfly { nblocks, stride } => {
                vec![
                    format!("nblocks = {nblocks}"),
                    format!("stride = {}", stride.name()),
                ]
            }
            LinearOp::Dib { stride } | LinearOp::Givens { stride } => {
                vec![format!("stride = {}", stride.name())]
            }
            LinearOp::Monarch { blocks } => vec![format!("blocks = {blocks}")],
            LinearOp::Ternary { alpha, stride } => vec![
                format!("alpha = {}", bfly_ir::op::fmt_float(alpha)),
                format!("stride = {}", stride.name()),
            ],
        };
        if self.per_head {
            args.push("per_head = true".into());
        }
        if self.bias {
            args.push("bias = true".into());
        }
        f.write_str(self.op.name())?;
        if !args.is_empty() {
            write!(f, "({})", args.join(", "))?;
        }
        Ok(())
    }
}

/// Which projection of a layer (or the output head) a site is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteRole {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
    Head,
}

/// One linear projection of the model and what it resolved to.
#[derive(Clone, Debug, PartialEq)]
pub struct Site {
    /// Dotted name: `layers.0.attn.q`, `layers.1.mlp.down`, `head`.
    pub name: String,
    pub role: SiteRole,
    pub layer: Option<u64>,
    pub in_features: u64,
    pub out_features: u64,
    pub kind: LinearKind,
    /// The spec entry that chose the kind: the `linear` value, the last matching override's
    /// value, or the `model` keyword for the built-in default.
    pub kind_span: Span,
    /// Set when the `lora` section targets this site: the span of the matching target.
    pub lora: Option<Span>,
}

impl Site {
    /// Block-diagonal groups: `heads` when per-head, else 1.
    pub fn groups(&self, heads: u64) -> u64 {
        if self.kind.per_head { heads } else { 1 }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    /// The `lora` keyword.
    pub keyword: Span,
    pub rank: Spanned<u64>,
    pub alpha: Spanned<f64>,
    pub targets: Vec<Spanned<String>>,
}

impl LoraConfig {
    /// The side path's scale `alpha / rank`.
    pub fn scale(&self) -> f64 {
        self.alpha.node / self.rank.node.max(1) as f64
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenseQuant {
    Int8,
    F16,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TwiddleQuant {
    F16,
    None,
}

#[derive(Clone, Debug, PartialEq)]
pub struct QuantizeConfig {
    pub keyword: Span,
    /// Dense and monarch weights.
    pub dense: Spanned<DenseQuant>,
    /// Butterfly twiddles (every butterfly-family kind).
    pub butterfly: Spanned<TwiddleQuant>,
    /// Tensors left in f32: globs over the sites and `embed`.
    pub keep: Vec<Spanned<String>>,
    /// Int8 dense sites whose input gets an online Hadamard rotation (`rotate`); `None`
    /// when the section does not say (the pass's default, `DEFAULT_ROTATE`).
    pub rotate: Option<RotateSites>,
}

/// `rotate = true | false | [globs]`: which int8 dense sites rotate their input by a
/// Walsh–Hadamard transform before the per-token quantization (the weight is rotated to
/// match at weight time, so the f32 product is unchanged).
#[derive(Clone, Debug, PartialEq)]
pub enum RotateSites {
    /// Every int8 dense site (`true`).
    All,
    /// None (`false`).
    None,
    /// The sites matching one of the globs.
    Globs(Vec<Spanned<String>>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Trainable {
    All,
    /// Only the LoRA adapters.
    Lora,
    /// Parameters whose name, or whose owner's name (the name without its last component,
    /// e.g. the site), matches one of the globs.
    Globs(Vec<Spanned<String>>),
}

impl Trainable {
    pub fn is_trainable(&self, param: &str, is_lora: bool) -> bool {
        match self {
            Trainable::All => true,
            Trainable::Lora => is_lora,
            Trainable::Globs(globs) => globs.iter().any(|g| glob_matches_param(&g.node, param)),
        }
    }
}

/// A trainable glob matches a parameter by its full name or by its owner's name.
pub fn glob_matches_param(glob: &str, param: &str) -> bool {
    let owner = param.rsplit_once('.').map(|(o, _)| o);
    super::glob::matches(glob, param) || owner.is_some_and(|o| super::glob::matches(glob, o))
}

/// `adamw(lr = 3e-4)` with its defaults: what a spec gets without `optimizer` (or `train`).
pub const DEFAULT_OPTIMIZER: Optimizer = Optimizer::AdamW {
    lr: 3e-4,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weight_decay: 0.0,
};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    Sgd {
        lr: f64,
    },
    AdamW {
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub keyword: Span,
    pub trainable: Spanned<Trainable>,
    pub optimizer: Spanned<Optimizer>,
    pub batch: Spanned<u64>,
    pub seq: Spanned<u64>,
    pub seed: Spanned<u64>,
    pub steps: Spanned<u64>,
}
