//! Tests of the non-butterfly kernels: matmul, embed, norms, softmax, rope, attention,
//! activations, cross entropy, int8 and fp16 quantization.

use super::attention::{causal_attention, rope};
use super::elementwise::{gelu, gelu_scalar, sigmoid, sigmoid_scalar, silu, silu_scalar};
use super::linear::{embed, matmul};
use super::loss::cross_entropy;
use super::norm::{layernorm, rmsnorm, softmax};
use super::quant::{
    dequantize_int8_rows, f16_bits, f16_from_bits, quantize_int8_rows, round_to_f16,
};
use super::test_util::{Rng, assert_close, dot};

/// Tolerance for O(1) results of a handful of f64 operations: a few ulps, with margin.
const TIGHT: f64 = 1e-14;

#[test]
fn matmul_known_answer_and_bias() {
    // x = [[1, 2]], w = [[3, 4], [5, 6], [7, 8]] (n = 3 outputs of k = 2).
    let y = matmul(
        &[1.0, 2.0],
        1,
        &[3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
        1,
        2,
        3,
        None,
    );
    assert_eq!(y, [11.0, 17.0, 23.0]);
    let y = matmul(
        &[1.0, 2.0],
        1,
        &[3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
        1,
        2,
        3,
        Some(&[1.0, 0.0, -1.0]),
    );
    assert_eq!(y, [12.0, 17.0, 22.0]);
}

/// A grouped matmul is exactly each group's matmul on its own (bias sliced per group).
#[test]
fn grouped_matmul_equals_separate_groups() {
    let mut rng = Rng::new(30);
    let (rows, groups, k, n) = (3, 4, 5, 2);
    let x = rng.vec(rows * groups * k, -1.0, 1.0);
    let w = rng.vec(groups * n * k, -1.0, 1.0);
    let bias = rng.vec(groups * n, -1.0, 1.0);
    let got = matmul(&x, rows, &w, groups, k, n, Some(&bias));
    for g in 0..groups {
        let xg: Vec<f64> = (0..rows)
            .flat_map(|r| x[(r * groups + g) * k..][..k].to_vec())
            .collect();
        let yg = matmul(
            &xg,
            rows,
            &w[g * n * k..][..n * k],
            1,
            k,
            n,
            Some(&bias[g * n..][..n]),
        );
        for r in 0..rows {
            assert_eq!(&got[(r * groups + g) * n..][..n], &yg[r * n..][..n]);
        }
    }
}

#[test]
fn embed_looks_up_rows_and_names_bad_tokens() {
    let table = [0.0, 1.0, 10.0, 11.0, 20.0, 21.0];
    assert_eq!(
        embed(&[2, 0, 2], &table, 3, 2),
        Ok(vec![20.0, 21.0, 0.0, 1.0, 20.0, 21.0])
    );
    let err = embed(&[0, 3], &table, 3, 2).unwrap_err();
    assert!(
        err.contains("token id 3") && err.contains("position 1"),
        "{err}"
    );
    let err = embed(&[-1], &table, 3, 2).unwrap_err();
    assert!(
        err.contains("token id -1") && err.contains("position 0"),
        "{err}"
    );
}

#[test]
fn rmsnorm_and_layernorm_known_answers() {
    // Row [3, 4]: mean(x²) = 12.5, so y = x / √12.5 · gain.
    let y = rmsnorm(&[3.0, 4.0], 1, 2, &[1.0, 2.0], 0.0);
    let r = 12.5f64.sqrt();
    assert_close(&y, &[3.0 / r, 8.0 / r], TIGHT, "rmsnorm");

    // Row [1, 2, 3, 6]: mean 3, var (4 + 1 + 0 + 9)/4 = 3.5.
    let x = [1.0, 2.0, 3.0, 6.0];
    let y = layernorm(&x, 1, 4, &[1.0; 4], &[0.5; 4], 0.0);
    let s = 3.5f64.sqrt();
    let want: Vec<f64> = x.iter().map(|v| (v - 3.0) / s + 0.5).collect();
    assert_close(&y, &want, TIGHT, "layernorm");

    // eps enters under the root.
    let y = rmsnorm(&[0.0, 0.0], 1, 2, &[1.0, 1.0], 1e-5);
    assert_eq!(y, [0.0, 0.0]);
}

#[test]
fn softmax_rows_sum_to_one_and_survive_large_logits() {
    let mut rng = Rng::new(31);
    let (rows, d) = (5, 7);
    let mut x = rng.vec(rows * d, -20.0, 20.0);
    // Without max subtraction exp(1000) would overflow to inf.
    x[0] = 1000.0;
    x[1] = 999.0;
    let y = softmax(&x, rows, d);
    for row in y.chunks_exact(d) {
        // 7 terms each within an ulp or two: sum within ~1e-15 of 1.
        assert!((row.iter().sum::<f64>() - 1.0).abs() < TIGHT);
        assert!(row.iter().all(|v| (0.0..=1.0).contains(v)));
    }
    let e = (-1.0f64).exp();
    assert!((y[0] - 1.0 / (1.0 + e)).abs() < TIGHT);
}

#[test]
fn rope_position_zero_is_identity_and_rotation_is_exact() {
    let mut rng = Rng::new(32);
    let (batch, t, heads, hd) = (2, 3, 2, 8);
    let x = rng.vec(batch * t * heads * hd, -1.0, 1.0);
    let y = rope(&x, batch, t, heads, hd, 10000.0, 0);
    for b in 0..batch {
        // Row 0 of each batch has position 0: cos 0 = 1, sin 0 = 0 exactly.
        let off = b * t * heads * hd;
        assert_eq!(&y[off..][..heads * hd], &x[off..][..heads * hd]);
    }

    // head_dim 2, base irrelevant (freq = base^0 = 1): position 5 rotates by 5 rad.
    let y = rope(&[1.0, 0.0], 1, 1, 1, 2, 10000.0, 5);
    assert_close(&y, &[5f64.cos(), 5f64.sin()], TIGHT, "rope pos 5");

    // head_dim 4, base 100: pairs (0, 2) at freq 1 and (1, 3) at freq 100^(−1/2) = 0.1.
    let y = rope(&[1.0, 1.0, 0.0, 0.0], 1, 1, 1, 4, 100.0, 2);
    let want = [2f64.cos(), 0.2f64.cos(), 2f64.sin(), 0.2f64.sin()];
    assert_close(&y, &want, TIGHT, "rope half split");
}

/// The point of rope: <rope(q, m), rope(k, n)> depends only on m − n.
///
/// Tolerance 1e-13: dot products of 16 O(1) terms after a rotation, ~16·2 ulps.
#[test]
fn rope_scores_depend_only_on_relative_position() {
    let mut rng = Rng::new(33);
    let hd = 16;
    let q = rng.vec(hd, -1.0, 1.0);
    let k = rng.vec(hd, -1.0, 1.0);
    let score = |m: usize, n: usize| {
        dot(
            &rope(&q, 1, 1, 1, hd, 10000.0, m),
            &rope(&k, 1, 1, 1, hd, 10000.0, n),
        )
    };
    let base = score(3, 1);
    for (m, n) in [(2, 0), (7, 5), (42, 40)] {
        assert!((score(m, n) - base).abs() < 1e-13, "({m}, {n})");
    }
    // Norm preserved.
    let y = rope(&q, 1, 1, 1, hd, 10000.0, 17);
    assert!((dot(&y, &y) - dot(&q, &q)).abs() < 1e-13);
}

#[test]
fn attention_known_answers() {
    // t = 1: the only key is itself, so out = v.
    let out = causal_attention(&[0.3, -0.2], &[1.0, 2.0], &[5.0, 6.0], 1, 1, 1, 1, 2);
    assert_eq!(out, [5.0, 6.0]);

    // t = 2, head_dim 1: row 1 weights keys 0 and 1 by softmax([q·k0, q·k1]).
    let q = [0.0, 2.0];
    let k = [1.0, 3.0];
    let v = [10.0, 20.0];
    let out = causal_attention(&q, &k, &v, 1, 2, 1, 1, 1);
    let (s0, s1) = (2.0f64, 6.0f64);
    let (e0, e1) = ((s0 - s1).exp(), 1.0);
    let want1 = (e0 * 10.0 + e1 * 20.0) / (e0 + e1);
    assert_close(&out, &[10.0, want1], TIGHT, "t=2");
}

/// Changing keys/values at rows > t never changes outputs at rows ≤ t.
#[test]
fn attention_is_causal() {
    let mut rng = Rng::new(34);
    let (batch, t, heads, kv_heads, hd) = (2, 6, 4, 2, 3);
    let q = rng.vec(batch * t * heads * hd, -1.0, 1.0);
    let k = rng.vec(batch * t * kv_heads * hd, -1.0, 1.0);
    let v = rng.vec(batch * t * kv_heads * hd, -1.0, 1.0);
    let base = causal_attention(&q, &k, &v, batch, t, heads, kv_heads, hd);
    let kv_row = kv_heads * hd;
    let q_row = heads * hd;
    for cut in 0..t {
        let (mut k2, mut v2) = (k.clone(), v.clone());
        for b in 0..batch {
            for row in cut + 1..t {
                for c in 0..kv_row {
                    k2[(b * t + row) * kv_row + c] += 5.0;
                    v2[(b * t + row) * kv_row + c] -= 3.0;
                }
            }
        }
        let out = causal_attention(&q, &k2, &v2, batch, t, heads, kv_heads, hd);
        for b in 0..batch {
            for row in 0..=cut {
                let r = (b * t + row) * q_row..(b * t + row + 1) * q_row;
                assert_eq!(&out[r.clone()], &base[r], "cut {cut} batch {b} row {row}");
            }
        }
    }
}

/// Grouped-query attention equals multi-head attention with each kv head repeated for its
/// query heads (exactly: the same products in the same order).
#[test]
fn grouped_query_attention_equals_repeated_kv() {
    let mut rng = Rng::new(35);
    let (batch, t, heads, kv_heads, hd) = (2, 4, 6, 2, 3);
    let q = rng.vec(batch * t * heads * hd, -1.0, 1.0);
    let k = rng.vec(batch * t * kv_heads * hd, -1.0, 1.0);
    let v = rng.vec(batch * t * kv_heads * hd, -1.0, 1.0);
    let repeat = |m: &[f64]| -> Vec<f64> {
        m.chunks_exact(kv_heads * hd)
            .flat_map(|row| (0..heads).flat_map(move |h| row[(h / 3) * hd..][..hd].to_vec()))
            .collect()
    };
    let gqa = causal_attention(&q, &k, &v, batch, t, heads, kv_heads, hd);
    let mha = causal_attention(&q, &repeat(&k), &repeat(&v), batch, t, heads, heads, hd);
    assert_eq!(gqa, mha);
}

#[test]
fn activations_known_values() {
    assert_eq!(sigmoid_scalar(0.0), 0.5);
    assert!((sigmoid_scalar(1.0) - 0.7310585786300049).abs() < TIGHT);
    // Large negative inputs must not produce NaN from exp overflow.
    assert_eq!(sigmoid_scalar(-1000.0), 0.0);
    assert_eq!(sigmoid_scalar(1000.0), 1.0);
    assert!((silu_scalar(1.0) - 0.7310585786300049).abs() < TIGHT);
    assert_eq!(silu_scalar(0.0), 0.0);
    // Reference values of the tanh approximation computed with Python's math module.
    assert!((gelu_scalar(1.0) - 0.8411919906082768).abs() < TIGHT);
    assert!((gelu_scalar(-2.0) - -0.04540230591222494).abs() < TIGHT);
    let x = [-1.0, 0.0, 2.0];
    assert_eq!(sigmoid(&x), x.map(sigmoid_scalar));
    assert_eq!(silu(&x), x.map(silu_scalar));
    assert_eq!(gelu(&x), x.map(gelu_scalar));
}

#[test]
fn cross_entropy_known_answers_and_bad_targets() {
    // Uniform logits: −log(1/V) = log V, whatever the target.
    let v = 7;
    let logits = vec![3.0; 2 * v];
    let ce = cross_entropy(&logits, 2, v, &[0, 6]).unwrap();
    assert!((ce - (v as f64).ln()).abs() < TIGHT);

    // Row [0, ln 3] with target 1: p = 3/4, loss = ln(4/3); large offset tests stability.
    let off = 1e4;
    let ce = cross_entropy(&[off, off + 3f64.ln()], 1, 2, &[1]).unwrap();
    // The offset costs ~1e4·ulp ≈ 2e-12 in the logits themselves.
    assert!((ce - (4.0f64 / 3.0).ln()).abs() < 1e-11, "{ce}");

    assert_eq!(cross_entropy(&[], 0, 3, &[]), Ok(0.0));
    let err = cross_entropy(&[0.0; 6], 2, 3, &[1, 3]).unwrap_err();
    assert!(err.contains("target 3") && err.contains("row 1"), "{err}");
}

#[test]
fn int8_rows_quantize_symmetrically() {
    // Row 0 has max 127 so scale = 1: 0.5 and −0.5 round away from zero, 1.5 → 2.
    let x = [
        127.0, 0.5, -0.5, 1.5, 0.0, 0.0, 0.0, 0.0, -2.54, 1.28, 0.0, 0.0,
    ];
    let (q, scales) = quantize_int8_rows(&x, 3, 4);
    assert_eq!(&q[..4], &[127, 1, -1, 2]);
    assert_eq!(&q[4..8], &[0; 4]);
    assert_eq!(&q[8..], &[-127, 64, 0, 0]);
    assert_eq!(scales[..2], [1.0, 1.0]);
    assert!((scales[2] - 0.02).abs() < 1e-16);

    let mut rng = Rng::new(36);
    let x = rng.vec(8 * 16, -3.0, 3.0);
    let (q, scales) = quantize_int8_rows(&x, 8, 16);
    let back = dequantize_int8_rows(&q, &scales, 8, 16);
    for (i, (a, b)) in x.iter().zip(&back).enumerate() {
        // Rounding to the nearest multiple of the scale errs by at most half a step (plus the
        // f64 round-off of x/scale and q·scale).
        assert!(
            (a - b).abs() <= scales[i / 16] * (0.5 + 1e-12),
            "{i}: {a} vs {b}"
        );
    }
}

/// IEEE binary16 bit patterns, from the format's definition (cross-checked with Python's
/// `struct.pack('<e', v)`, which rounds to nearest even).
#[test]
fn f16_rounding_bit_patterns() {
    let tiny = 2f64.powi(-24);
    let cases: [(f64, u16); 22] = [
        (1.0, 0x3C00),
        (-2.0, 0xC000),
        (0.0, 0x0000),
        (-0.0, 0x8000),
        (1.0 / 3.0, 0x3555),
        (0.1, 0x2E66),
        (std::f64::consts::PI, 0x4248),
        // Largest finite; just below the overflow tie; the tie itself rounds to even = ∞.
        (65504.0, 0x7BFF),
        (65519.99, 0x7BFF),
        (65520.0, 0x7C00),
        (1e5, 0x7C00),
        (-1e5, 0xFC00),
        (f64::INFINITY, 0x7C00),
        // Smallest normal, largest subnormal, smallest subnormal.
        (2f64.powi(-14), 0x0400),
        (1023.0 * tiny, 0x03FF),
        (tiny, 0x0001),
        // Subnormal ties to even: 0.5 ulp → 0, 1.5 ulp → 2; 0.75 ulp → 1; 6e-5 is subnormal.
        (0.5 * tiny, 0x0000),
        (1.5 * tiny, 0x0002),
        (0.75 * tiny, 0x0001),
        (6e-5, 0x03EF),
        // Normal ties to even at 1 + 2^−11 (→ 1.0) and 1 + 3·2^−11 (→ 1 + 2^−9).
        (1.0 + 2f64.powi(-11), 0x3C00),
        (1.0 + 3.0 * 2f64.powi(-11), 0x3C02),
    ];
    for (x, bits) in cases {
        assert_eq!(
            f16_bits(x),
            bits,
            "{x:e}: got {:#06x}, want {bits:#06x}",
            f16_bits(x)
        );
        // The rounded value is the pattern's value, decoded here from the definition:
        // sign · (exp = 0 ? m·2^−24 : (1 + m/1024)·2^(exp−15)).
        let (e, m) = (i32::from((bits >> 10) & 0x1f), f64::from(bits & 0x3ff));
        let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
        let want = match e {
            0 => sign * m * tiny,
            31 => sign * f64::INFINITY,
            _ => sign * (1.0 + m / 1024.0) * 2f64.powi(e - 15),
        };
        let got = round_to_f16(x);
        assert_eq!(got, want, "{x:e}");
        assert_eq!(got.is_sign_negative(), x.is_sign_negative(), "{x:e} sign");
    }
    assert!(round_to_f16(f64::NAN).is_nan());
    assert_eq!(f16_bits(f64::NAN), 0x7E00);
    // Below half the smallest subnormal flushes to a signed zero.
    assert_eq!(f16_bits(-1e-30), 0x8000);
}

/// Every finite binary16 value is a fixed point of the rounding, and encode ∘ decode is the
/// identity on all 63,488 finite patterns plus the infinities.
#[test]
fn f16_exhaustive_round_trip() {
    for bits in 0..=u16::MAX {
        let v = f16_from_bits(bits);
        if v.is_nan() {
            assert_eq!((bits >> 10) & 0x1f, 0x1f);
            continue;
        }
        assert_eq!(round_to_f16(v), v, "{bits:#06x}");
        assert_eq!(f16_bits(v), bits, "{bits:#06x}");
    }
    // Midpoints between consecutive positive values round to the even neighbour.
    for bits in 0x0000u16..0x7BFF {
        let (lo, hi) = (f16_from_bits(bits), f16_from_bits(bits + 1));
        let even = if bits % 2 == 0 { bits } else { bits + 1 };
        assert_eq!(
            f16_bits(0.5 * (lo + hi)),
            even,
            "midpoint after {bits:#06x}"
        );
    }
}
