//! Differential tests of every forward op's lowering: small graphs on random shapes and data
//! (proptest), lowered in inference and training mode, run on the Kernel IR interpreter and
//! compared with the f64 reference interpreter.
//!
//! Tolerance: `max |Δ| ≤ 1e-5 · max(1, max |reference|)` per output. Each op does at most a
//! few dozen f32 roundings per value (dot products of ≤ 64 terms, a softmax, sin/cos of
//! angles below 10), i.e. errors around 1e-6 of the values' scale; 1e-5 keeps a margin
//! while any indexing or convention error is O(1). Quantized ints may differ by one step
//! (`int_tol = 1`): an f32 `x/scale` within an ulp of a rounding tie can land on the other
//! side than the f64 one.

mod lower_common;

use bfly_ir::{DType, Dim, Op, StrideOrder, butterfly_width};
use lower_common::*;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    }
}

const TOL: f64 = 1e-5;

fn mode() -> impl Strategy<Value = Option<usize>> {
    prop::option::of(1..=B_MAX as usize)
}

fn tokens() -> impl Strategy<Value = usize> {
    1..=T_MAX as usize
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn matmul(seed: u64, batch in mode(), t in tokens(), groups in 1u64..=3, n in 1u64..=9,
              k in 1u64..=9, bias: bool) {
        let mut c = Case::new(seed, batch, t);
        let x = c.act(groups * k);
        let w = if groups == 1 { c.param(&[n, k]) } else { c.param(&[groups, n, k]) };
        let mut args = vec![x, w];
        if bias {
            args.push(c.param(&[groups * n]));
        }
        let y = c.op1(Op::Matmul, &args);
        c.out(y);
        c.check(TOL);
    }

    #[test]
    fn lora(seed: u64, batch in mode(), t in tokens(), r in 1u64..=4, n in 1u64..=7,
            k in 1u64..=7) {
        let mut c = Case::new(seed, batch, t);
        let x = c.act(k);
        let (a, b) = (c.param(&[r, k]), c.param(&[n, r]));
        let y = c.op1(Op::Lora { scale: 0.75 }, &[x, a, b]);
        c.out(y);
        c.check(TOL);
    }

    /// `quantize` of activations and weights, `dequantize`, and `qmatmul` on them.
    #[test]
    fn quantized(seed: u64, batch in mode(), t in tokens(), n in 1u64..=9, k in 1u64..=12,
                 bias: bool) {
        let mut c = Case::new(seed, batch, t);
        c.int_tol = 1;
        let x = c.act(k);
        let w = c.param(&[n, k]);
        let xq = c.op(Op::Quantize, &[x]);
        let wq = c.op(Op::Quantize, &[w]);
        let mut args = vec![xq[0], xq[1], wq[0], wq[1]];
        if bias {
            args.push(c.param(&[n]));
        }
        let y = c.op1(Op::QMatmul, &args);
        let back = c.op1(Op::Dequantize, &[xq[0], xq[1]]);
        for v in [y, back, xq[0], xq[1], wq[0]] {
            c.out(v);
        }
        // One int8 step of x moves y by scale·w: allow that much.
        c.check(2e-2);
    }

    /// `n_in ≥ 2`: for `in = 1` the IR pads to width 2 (`butterfly_width`) while the
    /// reference kernel's `butterfly_dims` uses width 1, so the two disagree on the twiddles.
    #[test]
    fn butterfly(seed: u64, batch in mode(), t in tokens(), n_in in 2u64..=20,
                 n_out in 1u64..=40, groups in 1u64..=3, blocks in 1u64..=3, inc: bool,
                 bias: bool) {
        let mut c = Case::new(seed, batch, t);
        let n = butterfly_width(n_in);
        let stacks = n_out.div_ceil(n);
        let stages = u64::from(n.trailing_zeros());
        let x = c.act(groups * n_in);
        let tw = c.param(&[groups, stacks, blocks, stages, n / 2, 2, 2]);
        let mut args = vec![x, tw];
        if bias {
            args.push(c.param(&[groups * n_out]));
        }
        let stride = if inc { StrideOrder::Increasing } else { StrideOrder::Decreasing };
        let y = c.op1(Op::Butterfly { n_in, n_out, stride }, &args);
        c.out(y);
        c.check(TOL);
    }

    #[test]
    fn twiddle_producers(seed: u64, log_n in 1u32..=5, groups in 1u64..=2, stacks in 1u64..=2,
                         blocks in 1u64..=3, inc: bool, alpha in 0u32..=2) {
        let mut c = Case::new(seed, Some(1), 1);
        let n = 1u64 << log_n;
        let l = u64::from(log_n);
        let theta = c.param(&[groups, stacks, blocks, l, n / 2]);
        let diag = c.param(&[groups, stacks, blocks, l, n]);
        let stride = if inc { StrideOrder::Increasing } else { StrideOrder::Decreasing };
        let givens = c.op1(Op::GivensTwiddles, &[theta]);
        let dib = c.op1(Op::DibTwiddles { stride }, &[theta, diag]);
        let had = c.op1(Op::HadamardTwiddles { groups, stacks, blocks, n }, &[]);
        let ter = c.op1(Op::TernaryTwiddles { alpha: f64::from(alpha) * 0.5 }, &[theta]);
        for v in [givens, dib, had, ter] {
            c.out(v);
        }
        c.check(TOL);
    }

    #[test]
    fn monarch(seed: u64, batch in mode(), t in tokens(), groups in 1u64..=2, k in 1u64..=4,
               q in 1u64..=4, p in 1u64..=4, r_pick in 0usize..8, s in 1u64..=4,
               cut_in in 0u64..4, cut_out in 0u64..4, bias: bool) {
        // l·r = k·q: r is a divisor of k·q.
        let kq = k * q;
        let divisors: Vec<u64> = (1..=kq).filter(|d| kq % d == 0).collect();
        let r = divisors[r_pick % divisors.len()];
        let l = kq / r;
        let n_in = (k * p).saturating_sub(cut_in).max(1);
        let n_out = (l * s).saturating_sub(cut_out).max(1);
        let mut c = Case::new(seed, batch, t);
        let x = c.act(groups * n_in);
        let w1 = c.param(&[groups, k, q, p]);
        let w2 = c.param(&[groups, l, s, r]);
        let mut args = vec![x, w1, w2];
        if bias {
            args.push(c.param(&[groups * n_out]));
        }
        let y = c.op1(Op::Monarch { n_in, n_out }, &args);
        c.out(y);
        c.check(TOL);
    }

    /// Elementwise ops, with operands broadcast from `[d]`, `[T, 1]`-like and scalar shapes.
    #[test]
    fn elementwise(seed: u64, batch in mode(), t in tokens(), d in 1u64..=9, shape in 0usize..4) {
        let mut c = Case::new(seed, batch, t);
        let x = c.act(d);
        let (mut dims, mut vals) = c.lead();
        let other = match shape {
            0 => c.act(d),
            1 => c.param(&[d]),
            2 => {
                dims.push(Dim::Const(1));
                vals.push(1);
                c.input(dims, vals)
            }
            _ => c.param(&[]),
        };
        for op in [Op::Add, Op::Sub, Op::Mul] {
            let y = c.op1(op.clone(), &[x, other]);
            c.out(y);
            // And the other operand order.
            if shape == 0 {
                let y = c.op1(op, &[other, x]);
                c.out(y);
            }
        }
        for op in [Op::Neg, Op::Exp, Op::Silu, Op::Gelu, Op::Sigmoid, Op::Scale { factor: -1.5 }] {
            let y = c.op1(op, &[x]);
            c.out(y);
        }
        c.check(TOL);
    }

    #[test]
    fn rows(seed: u64, batch in mode(), t in tokens(), d in 1u64..=12, vocab in 1u64..=9) {
        let mut c = Case::new(seed, batch, t);
        let x = c.act(d);
        let g = c.param(&[d]);
        let b = c.param(&[d]);
        let rms = c.op1(Op::RmsNorm { eps: 1e-5 }, &[x, g]);
        // eps bounds layernorm's conditioning: an f32 rounding of ~3e-8 in a centred value
        // moves the output by ≤ 3e-8/√eps — 3e-6 at eps = 1e-4, inside TOL for any row
        // (at 1e-6 a row of nearly equal values could miss TOL by rounding alone).
        let ln = c.op1(Op::LayerNorm { eps: 1e-4 }, &[x, g, b]);
        let sm = c.op1(Op::Softmax, &[x]);
        let logits = c.act(vocab);
        let targets = c.ids(vocab);
        let ce = c.op1(Op::CrossEntropy, &[logits, targets]);
        for v in [rms, ln, sm, ce] {
            c.out(v);
        }
        c.check(TOL);
    }

    #[test]
    fn rope_and_attention(seed: u64, batch in mode(), t in tokens(), kv_heads in 1u64..=2,
                          per in 1u64..=3, half in 1u64..=4) {
        let heads = kv_heads * per;
        let hd = 2 * half;
        let mut c = Case::new(seed, batch, t);
        let q = c.act(heads * hd);
        let k = c.act(kv_heads * hd);
        let v = c.act(kv_heads * hd);
        let qr = c.op1(Op::Rope { heads, base: 100.0 }, &[q]);
        let kr = c.op1(Op::Rope { heads: kv_heads, base: 100.0 }, &[k]);
        let y = c.op1(Op::CausalAttention { heads, kv_heads }, &[qr, kr, v]);
        c.out(qr);
        c.out(y);
        c.check(TOL);
    }

    /// Inference: a prefill, then the remaining tokens from the KV cache at `pos > 0`.
    #[test]
    fn attention_decode(seed: u64, t in 2usize..=T_MAX as usize, split_pick: usize,
                        kv_heads in 1u64..=2, per in 1u64..=2) {
        let split = 1 + split_pick % (t - 1);
        let (heads, hd) = (kv_heads * per, 4);
        let mut c = Case::new(seed, None, t);
        let q = c.act(heads * hd);
        let k = c.act(kv_heads * hd);
        let v = c.act(kv_heads * hd);
        let qr = c.op1(Op::Rope { heads, base: 10000.0 }, &[q]);
        let kr = c.op1(Op::Rope { heads: kv_heads, base: 10000.0 }, &[k]);
        let y = c.op1(Op::CausalAttention { heads, kv_heads }, &[qr, kr, v]);
        c.out(y);
        c.check_decode(split, TOL);
    }

    #[test]
    fn layout(seed: u64, batch in mode(), t in tokens(), a in 1u64..=4, b in 1u64..=4,
              vocab in 1u64..=6) {
        let mut c = Case::new(seed, batch, t);
        let x = c.act(a * b);
        let (lead, _) = c.lead();
        let mut dims = lead.clone();
        dims.extend([Dim::Const(a), Dim::Const(b)]);
        let r = c.op1(Op::Reshape { dims }, &[x]);
        let rank = lead.len() as u64 + 2;
        let mut perm: Vec<u64> = (0..rank).collect();
        perm.swap(rank as usize - 1, rank as usize - 2);
        let tr = c.op1(Op::Transpose { perm }, &[r]);
        let w = c.param(&[a, b, 3]);
        let wt = c.op1(Op::Transpose { perm: vec![2, 0, 1] }, &[w]);
        let last = lead.len() as u64;
        let parts = if a * b > 1 {
            c.op(Op::Split { axis: last, sizes: vec![1, a * b - 1] }, &[x])
        } else {
            Vec::new()
        };
        let y = c.act(2);
        let cat = c.op1(Op::Concat { axis: last }, &[x, y, x]);
        let h = c.op1(Op::Cast { to: DType::F16 }, &[x]);
        let i = c.op1(Op::Cast { to: DType::I32 }, &[cat]);
        let back = c.op1(Op::Cast { to: DType::F32 }, &[i]);
        let i8v = c.op1(Op::Cast { to: DType::I8 }, &[x]);
        let (fdims, _) = c.lead();
        let fill = c.op1(Op::Fill { value: 2.5, dtype: DType::F32, dims: fdims }, &[]);
        let ifill = c.op1(Op::Fill { value: -3.5, dtype: DType::I32, dims: vec![Dim::Const(3)] }, &[]);
        let ids = c.ids(vocab);
        let table = c.param(&[vocab, 5]);
        let emb = c.op1(Op::Embed, &[ids, table]);
        for v in [r, tr, wt, cat, h, i, back, i8v, fill, ifill, emb].into_iter().chain(parts) {
            c.out(v);
        }
        c.check(TOL);
    }
}
