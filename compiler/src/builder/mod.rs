//! The model builder: a checked [`ModelSpec`] becomes the forward Graph IR. In inference mode
//! `graph @NAME(%tokens: i32[T]) -> (%logits: f32[T, vocab]) where T <= context`; in training
//! mode the same forward over a batch, `%tokens: i32[B, T]` with `where B <= batch, T <= seq`
//! (the `train` section's sizes, see [`train_bounds`]). Every op takes leading batch dims (rope
//! and attention read axis −2 as `T`), so the two modes differ only in the signature. The
//! training passes (`loss`, `autodiff`, `optimizer`) turn the batched forward into a step.
//!
//! Every node carries the spec location (`loc(line:col)`) of the entry that caused it: the
//! site's kind value for projections, `norm` for norms, `position` for rope, `attention`, `mlp`
//! for the activation, `layers` for residual adds, `vocab` for the embedding, the matching
//! `lora` target for adapters, and the `model` keyword for anything left at its default.
//!
//! Parameter initialization (`in`, `out` are per group: the full width divided by `heads` for
//! `per_head = true`, else the full width; `n = butterfly_width(in)`, `S = ⌈out / n⌉`,
//! `L = log2 n`, `G` = groups):
//!
//! | parameter | shape | init | why |
//! |---|---|---|---|
//! | `embed.weight` | `[vocab, d_model]` | normal(0.02) | small logits at start (also the tied head) |
//! | `*.gain` (norms) | `[d_model]` | ones | identity scale |
//! | `*.bias` (layernorm) | `[d_model]` | zeros | identity shift |
//! | dense `SITE.weight` | `[out, in]` or `[G, out, in]` | normal(1/√in) | unit output variance |
//! | butterfly `SITE.twiddles` | `[G, S, nblocks, L, n/2, 2, 2]` | normal(1/√2) | each 2×2 keeps the norm in expectation |
//! | dib `SITE.theta` | `[G, S, 1, L, n/2]` | uniform(−π, π) | random rotations … |
//! | dib `SITE.diag` | `[G, S, 1, L, n]` | ones | … so the layer starts orthogonal |
//! | givens `SITE.theta` | `[G, S, 1, L, n/2]` | uniform(−π, π) | random orthogonal start |
//! | monarch `SITE.w1` | `[G, b, out/b, in/b]` | normal(1/√(in/b)) | unit variance per block |
//! | monarch `SITE.w2` | `[G, b, out/b, out/b]` | normal(1/√(out/b)) | unit variance per block |
//! | hadamard | — | — | fixed twiddles, no parameters |
//! | ternary `SITE.w` | `[G, S, 1, L, n/2]` | uniform(−1.5α, 1.5α) | all three levels −α, 0, α reachable |
//! | `SITE.bias` (`bias = true`) | `[full out]` | zeros | no shift at start |
//! | `SITE.lora_a` | `[rank, full in]` | normal(1/√in) | random down-projection |
//! | `SITE.lora_b` | `[full out, rank]` | zeros | the adapter starts as a no-op |
//!
//! Trainable flags follow `train.trainable`: `all`, `lora` (only `lora_a`/`lora_b`), or globs
//! matching a parameter's name or its owner's (`layers.*.attn.q`).

mod block;
mod ctx;
mod linear;

use bfly_grammar::{Diagnostic, SourceFile};
use bfly_ir::{DType, Dim, Graph, Init, Op, Output, Type, verify};

use crate::mode::{Mode, train_bounds};
use crate::spec::{ModelSpec, SiteRole};
use ctx::Ctx;

/// Builds and verifies the inference graph of a checked spec.
pub fn build_graph(spec: &ModelSpec, file: &SourceFile) -> Result<Graph, Vec<Diagnostic>> {
    build_graph_for(spec, file, Mode::Infer)
}

/// Builds and verifies the forward graph for `mode`. Errors here are builder bugs (the checker
/// should have caught every user error), reported as diagnostics.
pub fn build_graph_for(
    spec: &ModelSpec,
    file: &SourceFile,
    mode: Mode,
) -> Result<Graph, Vec<Diagnostic>> {
    let g = build(spec, file, mode).map_err(|d| vec![d])?;
    verify(&g).map_err(|errors| {
        errors
            .iter()
            .map(|e| ctx::internal(e, spec.model.keyword))
            .collect::<Vec<_>>()
    })?;
    Ok(g)
}

fn build(spec: &ModelSpec, file: &SourceFile, mode: Mode) -> Result<Graph, Diagnostic> {
    let mut cx = Ctx::new(spec, file);
    let m = &spec.model;
    let token_dims = match mode {
        Mode::Infer => {
            cx.g.set_bound("T", m.context.node);
            vec![Dim::sym("T")]
        }
        Mode::Train => {
            let (batch, seq) = train_bounds(spec);
            cx.g.set_bound("B", batch);
            cx.g.set_bound("T", seq);
            vec![Dim::sym("B"), Dim::sym("T")]
        }
    };
    let tokens = cx.g.add_input("tokens", Type::new(DType::I32, token_dims));
    let dims = [m.vocab.node, m.d_model.node];
    let table = cx.param(
        "embed.weight".into(),
        Init::Normal { std: 0.02 },
        &dims,
        false,
    );
    let mut x = cx.op(Op::Embed, &[tokens, table], m.vocab.span)?;
    for i in 0..m.layers.node {
        x = block::layer(&mut cx, i, x)?;
    }
    let h = block::norm(&mut cx, x, "final_norm")?;
    let logits = if m.tie_embeddings.node {
        cx.op(Op::Matmul, &[h, table], m.tie_embeddings.span)?
    } else {
        let head = cx.site(None, SiteRole::Head)?;
        linear::lower_site(&mut cx, head, h)?
    };
    cx.g.set_outputs(vec![Output::value("logits", logits)]);
    Ok(cx.g)
}
