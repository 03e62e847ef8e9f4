//! Linear kinds: `dense`, `butterfly(nblocks, stride)`, `dib(stride)`, `givens(stride)`,
//! `monarch(blocks)`, `hadamard`, `ternary(alpha, stride)`, each with `per_head` and `bias`.
//! A bare name means every argument takes its default.

use bfly_grammar::Value;
use bfly_ir::StrideOrder;

use super::config::{LinearKind, LinearOp};
use super::read::{self, Kwargs};
use super::sink::Sink;

pub const KINDS: &[&str] = &[
    "dense",
    "butterfly",
    "dib",
    "givens",
    "monarch",
    "hadamard",
    "ternary",
];

const STRIDES: &[&str] = &["increasing", "decreasing"];

/// Most butterfly blocks in one projection: more than a few is already a dense-sized layer.
pub const MAX_NBLOCKS: u64 = 64;

/// Arguments each kind accepts besides `per_head` and `bias`.
fn kind_args(kind: &str) -> &'static [&'static str] {
    match kind {
        "butterfly" => &["nblocks", "stride", "per_head", "bias"],
        "dib" | "givens" => &["stride", "per_head", "bias"],
        "monarch" => &["blocks", "per_head", "bias"],
        "ternary" => &["alpha", "stride", "per_head", "bias"],
        _ => &["per_head", "bias"],
    }
}

/// Reads a linear kind; `what` names the entry (`linear`, `override "…"`) in messages.
pub fn linear_kind(sink: &mut Sink<'_>, v: &Value, what: &str) -> Option<LinearKind> {
    let call = read::call(sink, v, what, KINDS, "butterfly(nblocks = 2)")?;
    let errors = sink.errors.len();
    let kw = Kwargs::new(sink, &call, kind_args(call.name));
    let stride = match kw.get("stride") {
        Some(v) => read::choice(sink, v, "stride", STRIDES).map(|i| {
            if i == 0 {
                StrideOrder::Increasing
            } else {
                StrideOrder::Decreasing
            }
        }),
        None => Some(StrideOrder::Increasing),
    };
    let per_head = kw
        .get("per_head")
        .map_or(Some(false), |v| read::boolean(sink, v, "per_head"));
    let bias = kw
        .get("bias")
        .map_or(Some(false), |v| read::boolean(sink, v, "bias"));
    let op = match call.name {
        "dense" => Some(LinearOp::Dense),
        "butterfly" => {
            let nblocks = kw
                .get("nblocks")
                .map_or(Some(1), |v| read::size(sink, v, "nblocks", 1, MAX_NBLOCKS));
            nblocks
                .zip(stride)
                .map(|(nblocks, stride)| LinearOp::Butterfly { nblocks, stride })
        }
        "dib" => stride.map(|stride| LinearOp::Dib { stride }),
        "givens" => stride.map(|stride| LinearOp::Givens { stride }),
        "monarch" => kw
            .get("blocks")
            .map_or(Some(4), |v| read::size(sink, v, "blocks", 1, 1 << 16))
            .map(|blocks| LinearOp::Monarch { blocks }),
        "hadamard" => Some(LinearOp::Hadamard),
        _ => {
            let alpha = kw.get("alpha").map_or(Some(1.0), |v| {
                read::number(sink, v, "alpha", |a| a > 0.0, "greater than 0")
            });
            alpha
                .zip(stride)
                .map(|(alpha, stride)| LinearOp::Ternary { alpha, stride })
        }
    };
    // Unknown, repeated or positional arguments make the kind unusable too, so that no
    // half-read kind reaches the site checks (which would report follow-on errors).
    let clean = sink.errors.len() == errors;
    let kind = LinearKind {
        op: op?,
        per_head: per_head?,
        bias: bias?,
    };
    clean.then_some(kind)
}
