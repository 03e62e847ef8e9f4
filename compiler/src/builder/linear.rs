//! Lowering of one linear site by its kind, plus its bias and LoRA side path. Per-head kinds
//! are block-diagonal: `G = heads` groups of width `in/G → out/G`.

use std::f64::consts::PI;

use bfly_grammar::Diagnostic;
use bfly_ir::{Init, Op, StrideOrder, Value, butterfly_width};

use super::ctx::{Ctx, bug};
use crate::spec::{LinearOp, Site};

/// Butterfly geometry of one group: width `n`, stages `L = log2 n`, stacks `⌈out / n⌉`.
struct Geometry {
    n: u64,
    stages: u64,
    stacks: u64,
}

fn geometry(n_in: u64, n_out: u64) -> Geometry {
    let n = butterfly_width(n_in);
    Geometry {
        n,
        stages: u64::from(n.trailing_zeros()),
        stacks: n_out.div_ceil(n),
    }
}

fn normal(std: f64) -> Init {
    Init::Normal { std }
}

/// `y = site(x)`, including bias and LoRA.
pub fn lower_site(cx: &mut Ctx<'_>, site: &Site, x: Value) -> Result<Value, Diagnostic> {
    let span = site.kind_span;
    let g = site.groups(cx.spec.model.heads.node);
    let (inf, outf) = (site.in_features, site.out_features);
    if inf % g != 0 || outf % g != 0 {
        return Err(bug(
            format!(
                "{} ({inf} → {outf}) does not split into {g} groups",
                site.name
            ),
            span,
        ));
    }
    let (ig, og) = (inf / g, outf / g);
    let name = |suffix: &str| format!("{}.{suffix}", site.name);
    let geo = geometry(ig, og);
    // Producer parameters are shaped like one angle per pair per stage: [G, S, 1, L, n/2].
    let per_pair = [g, geo.stacks, 1, geo.stages, geo.n / 2];
    let mut operands = vec![x];
    let butterfly = |stride: StrideOrder| Op::Butterfly {
        n_in: ig,
        n_out: og,
        stride,
    };
    let op = match site.kind.op {
        LinearOp::Dense => {
            let dims: &[u64] = if g == 1 { &[og, ig] } else { &[g, og, ig] };
            let w = cx.param(
                name("weight"),
                normal(1.0 / (ig as f64).sqrt()),
                dims,
                false,
            );
            operands.push(w);
            Op::Matmul
        }
        LinearOp::Butterfly { nblocks, stride } => {
            let dims = [g, geo.stacks, nblocks, geo.stages, geo.n / 2, 2, 2];
            let t = cx.param(name("twiddles"), normal(1.0 / 2f64.sqrt()), &dims, false);
            operands.push(t);
            butterfly(stride)
        }
        LinearOp::Dib { stride } => {
            let theta = cx.param(
                name("theta"),
                Init::Uniform { lo: -PI, hi: PI },
                &per_pair,
                false,
            );
            let diag_dims = [g, geo.stacks, 1, geo.stages, geo.n];
            let diag = cx.param(name("diag"), Init::Ones, &diag_dims, false);
            operands.push(cx.op(Op::DibTwiddles { stride }, &[theta, diag], span)?);
            butterfly(stride)
        }
        LinearOp::Givens { stride } => {
            let theta = cx.param(
                name("theta"),
                Init::Uniform { lo: -PI, hi: PI },
                &per_pair,
                false,
            );
            operands.push(cx.op(Op::GivensTwiddles, &[theta], span)?);
            butterfly(stride)
        }
        LinearOp::Monarch { blocks: b } => {
            if ig % b != 0 || og % b != 0 {
                return Err(bug(
                    format!("monarch blocks {b} do not divide {ig} → {og}"),
                    span,
                ));
            }
            let (p, q) = (ig / b, og / b);
            let w1 = cx.param(
                name("w1"),
                normal(1.0 / (p as f64).sqrt()),
                &[g, b, q, p],
                false,
            );
            let w2 = cx.param(
                name("w2"),
                normal(1.0 / (q as f64).sqrt()),
                &[g, b, q, q],
                false,
            );
            operands.extend([w1, w2]);
            Op::Monarch {
                n_in: ig,
                n_out: og,
            }
        }
        LinearOp::Hadamard => {
            let op = Op::HadamardTwiddles {
                groups: g,
                stacks: geo.stacks,
                blocks: 1,
                n: geo.n,
            };
            operands.push(cx.op(op, &[], span)?);
            // Walsh–Hadamard is the same matrix for both stride orders.
            butterfly(StrideOrder::Increasing)
        }
        LinearOp::Ternary { alpha, stride } => {
            let init = Init::Uniform {
                lo: -1.5 * alpha,
                hi: 1.5 * alpha,
            };
            let w = cx.param(name("w"), init, &per_pair, false);
            operands.push(cx.op(Op::TernaryTwiddles { alpha }, &[w], span)?);
            butterfly(stride)
        }
    };
    if site.kind.bias {
        operands.push(cx.param(name("bias"), Init::Zeros, &[outf], false));
    }
    let y = cx.op(op, &operands, span)?;
    match (site.lora, &cx.spec.lora) {
        (Some(lspan), Some(lora)) => {
            let r = lora.rank.node;
            let a = cx.param(
                name("lora_a"),
                normal(1.0 / (inf as f64).sqrt()),
                &[r, inf],
                true,
            );
            let b = cx.param(name("lora_b"), Init::Zeros, &[outf, r], true);
            let d = cx.op(
                Op::Lora {
                    scale: lora.scale(),
                },
                &[x, a, b],
                lspan,
            )?;
            cx.op(Op::Add, &[y, d], lspan)
        }
        _ => Ok(y),
    }
}
