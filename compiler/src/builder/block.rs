//! Norms and the transformer block: pre-norm attention and MLP, each added back into the
//! residual stream.

use bfly_grammar::Diagnostic;
use bfly_ir::{Init, Op, Value};

use super::ctx::Ctx;
use super::linear::lower_site;
use crate::spec::{MlpKind, Norm, Position, SiteRole};

/// `norm(x)` with parameters `PREFIX.gain` (ones) and, for layernorm, `PREFIX.bias` (zeros).
pub fn norm(cx: &mut Ctx<'_>, x: Value, prefix: &str) -> Result<Value, Diagnostic> {
    let m = &cx.spec.model;
    let (norm, span, d) = (m.norm.node, m.norm.span, m.d_model.node);
    let gain = cx.param(format!("{prefix}.gain"), Init::Ones, &[d], false);
    match norm {
        Norm::RmsNorm { eps } => cx.op(Op::RmsNorm { eps }, &[x, gain], span),
        Norm::LayerNorm { eps } => {
            let bias = cx.param(format!("{prefix}.bias"), Init::Zeros, &[d], false);
            cx.op(Op::LayerNorm { eps }, &[x, gain, bias], span)
        }
    }
}

/// Layer `i`: `x + o(attn(rope(q(h)), rope(k(h)), v(h)))` with `h = norm(x)`, then
/// `x + mlp(norm(x))`.
pub fn layer(cx: &mut Ctx<'_>, i: u64, x: Value) -> Result<Value, Diagnostic> {
    let spec = cx.spec;
    let m = &spec.model;
    let (heads, kv_heads) = (m.heads.node, m.kv_heads.node);
    let at = Some(i);

    let h = norm(cx, x, &format!("layers.{i}.attn_norm"))?;
    let mut q = lower_site(cx, cx.site(at, SiteRole::Q)?, h)?;
    let mut k = lower_site(cx, cx.site(at, SiteRole::K)?, h)?;
    let v = lower_site(cx, cx.site(at, SiteRole::V)?, h)?;
    if let Position::Rope { base } = m.position.node {
        q = cx.op(Op::Rope { heads, base }, &[q], m.position.span)?;
        let rope_k = Op::Rope {
            heads: kv_heads,
            base,
        };
        k = cx.op(rope_k, &[k], m.position.span)?;
    }
    let attn = Op::CausalAttention { heads, kv_heads };
    let a = cx.op(attn, &[q, k, v], m.attention.span)?;
    let o = lower_site(cx, cx.site(at, SiteRole::O)?, a)?;
    let x = cx.op(Op::Add, &[x, o], m.layers.span)?;

    let h = norm(cx, x, &format!("layers.{i}.mlp_norm"))?;
    let mlp_span = m.mlp.span;
    let hidden = match m.mlp.node.kind {
        MlpKind::Gelu => {
            let u = lower_site(cx, cx.site(at, SiteRole::Up)?, h)?;
            cx.op(Op::Gelu, &[u], mlp_span)?
        }
        MlpKind::Swiglu => {
            let gate = lower_site(cx, cx.site(at, SiteRole::Gate)?, h)?;
            let s = cx.op(Op::Silu, &[gate], mlp_span)?;
            let u = lower_site(cx, cx.site(at, SiteRole::Up)?, h)?;
            cx.op(Op::Mul, &[s, u], mlp_span)?
        }
    };
    let y = lower_site(cx, cx.site(at, SiteRole::Down)?, hidden)?;
    cx.op(Op::Add, &[x, y], m.layers.span)
}
