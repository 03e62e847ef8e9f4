//! Quantization (DESIGN §5): the spec's `quantize { dense, butterfly, keep, rotate }` section
//! applied to the inference graph. Without the section the pass does nothing (the graph is left
//! bit-identical).
//!
//! Weights are quantized by a *weight-time* subgraph: nodes that depend on parameters only,
//! evaluated once when the weights are known (today by the reference interpreter like any
//! node; at artifact/load time later). The parameters themselves stay f32 in the IR, so a
//! checkpoint still loads; what a backend stores is the result of that subgraph.
//!
//! | site | setting | rewrite |
//! |---|---|---|
//! | dense `matmul x, W [, b]` | `dense = int8` | `%wq, %ws = quantize W` (symmetric int8 per output channel = per row of `W[N, K]`), `%xq, %xs = quantize x` (per token, at run time), `qmatmul %xq, %xs, %wq, %ws [, b]` (i32 accumulation, dequant epilogue) |
//! | dense `matmul x, W [, b]` selected by `rotate` | `dense = int8` | the row above on `H x` and `W Hᵀ`: `butterfly x, hadamard_twiddles` (run time) and `butterfly W, hadamard_twiddles` (weight time) before the two `quantize`s; see [`rotate`] |
//! | per-head dense `W[G, N, K]` | `dense = int8` | the same per group: `x` split into `G` slices, each quantized per token, `G` `qmatmul`s, `concat` |
//! | dense | `dense = f16` | `cast W to f16`, `cast` back to f32, `matmul`: f16 *storage*; the arithmetic stays f32 in this IR |
//! | monarch `w1`, `w2` | `dense = int8` | `dequantize (quantize w)` per output channel of each block: weight-only int8, activations stay float because `monarch` takes float factors; the int8 SDOT path for the block GEMMs (activations per token) comes with the Kernel IR |
//! | monarch | `dense = f16` | `cast` to f16 and back, like dense |
//! | butterfly twiddles (a param or any producer: dib, givens, hadamard, ternary) | `butterfly = fp16` | `cast T to f16`, `cast` back to f32, `butterfly`: the IR records fp16 *storage*; fp16 *arithmetic* (`FMLA .8h` where the CPU has FEAT_FP16, f32 otherwise) is the backend's choice |
//!
//! `rotate = true | false | ["glob", …]` (default [`DEFAULT_ROTATE`], `["*.mlp.down"]`: the
//! heavy-tailed inputs) chooses the int8 dense sites whose input is rotated by an orthonormal
//! Walsh–Hadamard matrix before the per-token quantization (QuaRot-style, [`rotate`]); the
//! report labels them [`Scheme::Int8Rotated`].
//!
//! Sites are found in the graph (see [`sites`]): the pass runs after the folds, whatever they
//! made of the weights. `keep` globs exempt sites by name. The embedding table (the `embed`
//! gather) always stays f32, and with `dense = int8` so does the tied head (the `matmul` that
//! reuses `embed.weight`): int8 would add an int8 copy of the table (`vocab · d_model` bytes)
//! rather than save memory, and it is the most sensitive site (see [`TIED_HEAD_REASON`]; the
//! report prints the reason). `embed` or `head` in `keep` also exempts it from `dense = f16`. A parameter-free Hadamard butterfly without a
//! bias has no name in the graph: it stays f32 when a `keep` glob names any such site of the
//! spec. Activation quantization is shared between sites reading the same value (q, k and v
//! quantize their common input once), and already-quantized sites are skipped, so running the
//! pass twice changes nothing.

mod plan;
mod rewrite;
pub mod rotate;
pub mod sites;

pub use plan::{DEFAULT_ROTATE, QuantPlan, Rotate, Scheme, TIED_HEAD_REASON};
pub use rewrite::{Applied, quantize_graph, rotate_graph};
pub use sites::{QuantSite, SiteKind, find_sites};

use bfly_grammar::Diagnostic;
use bfly_ir::Graph;

use super::{Pass, PassContext};

pub struct Quantize;

impl Pass for Quantize {
    fn name(&self) -> &'static str {
        "quantize"
    }

    fn description(&self) -> &'static str {
        "int8/f16 weights and fp16 twiddles per the spec's `quantize` section, int8 dense inputs Hadamard-rotated first (`rotate`, default mlp.down) (none: no-op)"
    }

    fn run(&self, g: &mut Graph, cx: &PassContext<'_>) -> Result<(), Vec<Diagnostic>> {
        let Some(plan) = QuantPlan::from_spec(cx.spec) else {
            return Ok(());
        };
        quantize_graph(g, &plan, &|_, _| true)
            .map(|_| ())
            .map_err(|e| vec![cx.bug(self.name(), e.to_string())])
    }
}

#[cfg(test)]
mod tests;
