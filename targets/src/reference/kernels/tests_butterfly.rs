//! Known-answer tests of the canonical butterfly and its producers. Every oracle here is an
//! explicit dense matrix built from the definitions in DESIGN §4 with index formulas written
//! independently of `butterfly.rs` (no call to `butterfly`, `pair_index` or `stage_stride`).

use super::butterfly::{
    block_increasing, butterfly, butterfly_dims, dib_twiddles, givens_twiddles, hadamard_twiddles,
    pair_index, stage_stride, ternary_twiddles, twiddle_len,
};
use super::test_util::{Rng, assert_close, identity, mat_mul, transpose};

/// Smallest power of two ≥ m, by doubling (independent of `next_power_of_two`).
fn oracle_pow2(m: usize) -> usize {
    let mut n = 1;
    while n < m {
        n *= 2;
    }
    n
}

fn oracle_log2(n: usize) -> usize {
    let mut l = 0;
    while (1 << l) < n {
        l += 1;
    }
    l
}

/// Stage stride: increasing order walks bits 0, 1, …; decreasing walks n/2, n/4, … .
fn oracle_stride(stage: usize, n: usize, inc: bool) -> usize {
    if inc { 1 << stage } else { n >> (stage + 1) }
}

/// Block b's order flips on odd blocks.
fn oracle_block_inc(b: usize, increasing: bool) -> bool {
    if b & 1 == 0 { increasing } else { !increasing }
}

/// Pairs of a stage in twiddle order: pair i's `p` is i with a zero bit inserted at bit
/// log2(stride), `q` has that bit set.
fn oracle_pairs(n: usize, stride: usize) -> Vec<(usize, usize)> {
    let k = stride.trailing_zeros();
    (0..n / 2)
        .map(|i| {
            let p = ((i >> k) << (k + 1)) | (i & (stride - 1));
            (p, p | stride)
        })
        .collect()
}

/// The n×n sparse factor of one stage: each pair's 2×2 placed at rows/columns (p, q).
fn stage_matrix(t: &[f64], n: usize, stride: usize) -> Vec<f64> {
    let mut f = vec![0.0; n * n];
    for (i, (p, q)) in oracle_pairs(n, stride).into_iter().enumerate() {
        f[p * n + p] = t[4 * i];
        f[p * n + q] = t[4 * i + 1];
        f[q * n + p] = t[4 * i + 2];
        f[q * n + q] = t[4 * i + 3];
    }
    f
}

/// One stack's n×n matrix `F_last ··· F_first` from its slab `[B, L, n/2, 2, 2]`.
fn stack_matrix(slab: &[f64], n: usize, nblocks: usize, increasing: bool) -> Vec<f64> {
    let log_n = oracle_log2(n);
    let per_stage = (n / 2) * 4;
    let mut w = identity(n);
    for b in 0..nblocks {
        let inc = oracle_block_inc(b, increasing);
        for st in 0..log_n {
            let t = &slab[(b * log_n + st) * per_stage..][..per_stage];
            let f = stage_matrix(t, n, oracle_stride(st, n, inc));
            w = mat_mul(&f, n, n, &w, n);
        }
    }
    w
}

/// `n_out × n_in` matrix of one group given its stacks' n×n matrices:
/// `Trunc · diag(W_0, …, W_{S−1}) · Replicate · Pad`, each factor explicit.
fn layer_from_stacks(stacks: &[Vec<f64>], n: usize, n_in: usize, n_out: usize) -> Vec<f64> {
    let s = stacks.len();
    let sn = s * n;
    let mut pad = vec![0.0; n * n_in];
    for i in 0..n_in {
        pad[i * n_in + i] = 1.0;
    }
    let mut rep = vec![0.0; sn * n];
    for st in 0..s {
        for i in 0..n {
            rep[(st * n + i) * n + i] = 1.0;
        }
    }
    let mut diag = vec![0.0; sn * sn];
    for (st, w) in stacks.iter().enumerate() {
        for i in 0..n {
            for j in 0..n {
                diag[(st * n + i) * sn + st * n + j] = w[i * n + j];
            }
        }
    }
    let mut trunc = vec![0.0; n_out * sn];
    for i in 0..n_out {
        trunc[i * sn + i] = 1.0;
    }
    let m = mat_mul(&rep, sn, n, &pad, n_in);
    let m = mat_mul(&diag, sn, sn, &m, n_in);
    mat_mul(&trunc, n_out, sn, &m, n_in)
}

/// `n_out × n_in` matrix of one group of a butterfly layer with twiddles `tw_group`.
fn layer_matrix(
    tw_group: &[f64],
    n_in: usize,
    n_out: usize,
    nblocks: usize,
    increasing: bool,
) -> Vec<f64> {
    let n = oracle_pow2(n_in);
    let s = n_out.div_ceil(n);
    let slab = tw_group.len() / s;
    let stacks: Vec<Vec<f64>> = (0..s)
        .map(|st| stack_matrix(&tw_group[st * slab..][..slab], n, nblocks, increasing))
        .collect();
    layer_from_stacks(&stacks, n, n_in, n_out)
}

/// `rows × n_out` result of applying an `n_out × n_in` matrix to each row of `x`.
fn apply_rows(m: &[f64], n_out: usize, n_in: usize, x: &[f64], rows: usize) -> Vec<f64> {
    mat_mul(x, rows, n_in, &transpose(m, n_out, n_in), n_out)
}

/// Sylvester recursion: H_1 = [1], H_2k = [[H, H], [H, −H]].
fn sylvester(n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![1.0];
    }
    let k = n / 2;
    let h = sylvester(k);
    let mut out = vec![0.0; n * n];
    for i in 0..k {
        for j in 0..k {
            let v = h[i * k + j];
            out[i * n + j] = v;
            out[i * n + j + k] = v;
            out[(i + k) * n + j] = v;
            out[(i + k) * n + j + k] = -v;
        }
    }
    out
}

/// Unnormalized fast Walsh–Hadamard transform by the same recursion:
/// H_2k [a; b] = [H a + H b; H a − H b].
fn fwht(x: &[f64]) -> Vec<f64> {
    if x.len() == 1 {
        return x.to_vec();
    }
    let k = x.len() / 2;
    let a = fwht(&x[..k]);
    let b = fwht(&x[k..]);
    let mut out: Vec<f64> = a.iter().zip(&b).map(|(u, v)| u + v).collect();
    out.extend(a.iter().zip(&b).map(|(u, v)| u - v));
    out
}

#[test]
fn indexing_helpers_match_independent_formulas() {
    for log_n in 1..=10 {
        let n = 1 << log_n;
        for inc in [true, false] {
            for st in 0..log_n {
                let stride = stage_stride(st, log_n, inc);
                assert_eq!(stride, oracle_stride(st, n, inc));
                let got: Vec<_> = (0..n / 2).map(|i| pair_index(i, stride)).collect();
                assert_eq!(got, oracle_pairs(n, stride), "n={n} stride={stride}");
            }
        }
    }
    for b in 0..4 {
        for inc in [true, false] {
            assert_eq!(block_increasing(b, inc), oracle_block_inc(b, inc));
        }
    }
    assert_eq!(butterfly_dims(100, 300), (128, 7, 3));
    assert_eq!(butterfly_dims(128, 64), (128, 7, 1));
    assert_eq!(butterfly_dims(5, 3), (8, 3, 1));
    assert_eq!(butterfly_dims(1, 4), (1, 0, 4));
    // 2 n log2 n parameters per block per stack (DESIGN §4): n = 2048 → 45,056 f32 = 180,224 B.
    assert_eq!(twiddle_len(1, 2048, 2048, 1), 2 * 2048 * 11);
    assert_eq!(twiddle_len(2, 100, 300, 2), 2 * 3 * 2 * 7 * 64 * 4);
}

/// Hadamard twiddles reproduce H_n/√n for both stride orders, n = 2 … 1024.
///
/// Tolerance 1e-13: every output is one ±1/√n entry reached through L ≤ 10 stages, each adding
/// at most a couple of ulps (≈ 2.2e-16 relative), so the error is ≲ 10·4.4e-16 ≈ 5e-15; the
/// random-vector outputs are O(1) sums of n terms, still far below 1e-13 · scale.
#[test]
fn hadamard_is_sylvester_walsh_hadamard() {
    let mut rng = Rng::new(1);
    for log_n in 1..=10 {
        let n = 1usize << log_n;
        let norm = 1.0 / (n as f64).sqrt();
        let h: Vec<f64> = sylvester(n).iter().map(|v| v * norm).collect();
        for inc in [true, false] {
            let tw = hadamard_twiddles(1, 1, 1, n);
            // Row i of the identity maps to column i of H, i.e. the result is Hᵀ.
            let got = butterfly(&identity(n), n, &tw, 1, n, n, 1, inc);
            assert_close(
                &got,
                &transpose(&h, n, n),
                1e-13,
                &format!("H_{n} inc={inc}"),
            );

            let x = rng.vec(3 * n, -1.0, 1.0);
            let got = butterfly(&x, 3, &tw, 1, n, n, 1, inc);
            let want: Vec<f64> = x.chunks_exact(n).flat_map(fwht).map(|v| v * norm).collect();
            assert_close(&got, &want, 1e-13, &format!("fwht n={n} inc={inc}"));
        }
    }
}

/// Random twiddles: the butterfly equals the product of its explicit stage factors.
///
/// Tolerance 1e-12 relative to the oracle's largest entry: up to 3·5 = 15 stages of 2-term
/// sums with factors in [−1, 1] on the kernel side, and 15 dense n×n products (n ≤ 32 terms
/// each) on the oracle side, ≲ 15·32·2.2e-16 ≈ 1e-13 relative.
#[test]
fn random_twiddles_match_dense_factor_product() {
    let mut rng = Rng::new(2);
    for n in [1usize, 2, 4, 8, 16, 32] {
        for nblocks in 1..=3 {
            for inc in [true, false] {
                let tw = rng.vec(twiddle_len(1, n, n, nblocks), -1.0, 1.0);
                let m = layer_matrix(&tw, n, n, nblocks, inc);
                let what = format!("n={n} nblocks={nblocks} inc={inc}");
                let got = butterfly(&identity(n), n, &tw, 1, n, n, nblocks, inc);
                assert_close(&got, &transpose(&m, n, n), 1e-12, &what);
                let x = rng.vec(4 * n, -1.0, 1.0);
                let got = butterfly(&x, 4, &tw, 1, n, n, nblocks, inc);
                assert_close(&got, &apply_rows(&m, n, n, &x, 4), 1e-12, &what);
            }
        }
    }
}

/// Rectangular and non-power-of-two layers: pad, replicate per stack, concatenate, truncate.
///
/// Tolerance 1e-12 relative: as above with n ≤ 128, 2 blocks → 14 stages; the oracle's dense
/// products sum ≤ 384 terms, ≲ 384·14·2.2e-16 ≈ 1.2e-12 worst case, far less in practice
/// since errors of random sign add like a random walk.
#[test]
fn rectangular_layers_match_padded_stacked_oracle() {
    let mut rng = Rng::new(3);
    for (n_in, n_out) in [(100, 300), (128, 64), (5, 3), (3, 20), (8, 8), (1, 3)] {
        for nblocks in [1, 2] {
            for inc in [true, false] {
                let tw = rng.vec(twiddle_len(1, n_in, n_out, nblocks), -1.0, 1.0);
                let m = layer_matrix(&tw, n_in, n_out, nblocks, inc);
                let what = format!("in={n_in} out={n_out} nblocks={nblocks} inc={inc}");
                let got = butterfly(&identity(n_in), n_in, &tw, 1, n_in, n_out, nblocks, inc);
                assert_close(&got, &transpose(&m, n_out, n_in), 1e-12, &what);
                let x = rng.vec(2 * n_in, -1.0, 1.0);
                let got = butterfly(&x, 2, &tw, 1, n_in, n_out, nblocks, inc);
                assert_close(&got, &apply_rows(&m, n_out, n_in, &x, 2), 1e-12, &what);
            }
        }
    }
}

/// DIB producer: every stack equals `D_{L−1}B_{L−1}···D_0B_0` (repeated per block, with the
/// block's own stride order) from explicit rotation and diagonal matrices.
///
/// Tolerance 1e-12 relative: ≤ 2·4 = 8 stages of 2-term sums on either side, diagonals in
/// [0.5, 1.5], n = 16 term dense products: ≲ 8·16·2.2e-16 ≈ 3e-14.
#[test]
fn dib_is_rotation_then_diagonal_per_stage() {
    let mut rng = Rng::new(4);
    // (groups, n_in, n_out, nblocks): square, stacked and grouped, multi-block.
    for (groups, n_in, n_out, nblocks) in [
        (1, 16usize, 16usize, 1),
        (1, 16, 16, 2),
        (2, 8, 16, 2),
        (3, 5, 7, 3),
    ] {
        let n = oracle_pow2(n_in);
        let log_n = oracle_log2(n);
        let stacks = n_out.div_ceil(n);
        let slabs = groups * stacks * nblocks;
        for inc in [true, false] {
            let theta = rng.vec(slabs * log_n * n / 2, -3.0, 3.0);
            let diag = rng.vec(slabs * log_n * n, 0.5, 1.5);
            let tw = dib_twiddles(&theta, &diag, n, nblocks, inc);

            let mut want_mats = Vec::new();
            for gs in 0..groups * stacks {
                let mut w = identity(n);
                for b in 0..nblocks {
                    let slab = gs * nblocks + b;
                    let block_inc = oracle_block_inc(b, inc);
                    for st in 0..log_n {
                        let stage = slab * log_n + st;
                        let stride = oracle_stride(st, n, block_inc);
                        let mut rot = vec![0.0; n * n];
                        for (i, (p, q)) in oracle_pairs(n, stride).into_iter().enumerate() {
                            let th = theta[stage * n / 2 + i];
                            rot[p * n + p] = th.cos();
                            rot[p * n + q] = -th.sin();
                            rot[q * n + p] = th.sin();
                            rot[q * n + q] = th.cos();
                        }
                        let mut d = vec![0.0; n * n];
                        for j in 0..n {
                            d[j * n + j] = diag[stage * n + j];
                        }
                        w = mat_mul(&rot, n, n, &w, n);
                        w = mat_mul(&d, n, n, &w, n);
                    }
                }
                want_mats.push(w);
            }

            let x = rng.vec(3 * groups * n_in, -1.0, 1.0);
            let got = butterfly(&x, 3, &tw, groups, n_in, n_out, nblocks, inc);
            let mut want = vec![0.0; 3 * groups * n_out];
            for g in 0..groups {
                let m = layer_from_stacks(&want_mats[g * stacks..][..stacks], n, n_in, n_out);
                for r in 0..3 {
                    let xr = &x[(r * groups + g) * n_in..][..n_in];
                    let yr = apply_rows(&m, n_out, n_in, xr, 1);
                    want[(r * groups + g) * n_out..][..n_out].copy_from_slice(&yr);
                }
            }
            let what = format!("G={groups} in={n_in} out={n_out} B={nblocks} inc={inc}");
            assert_close(&got, &want, 1e-12, &what);
        }
    }
}

/// A grouped butterfly is exactly (bit for bit: same operations in the same order) each group
/// run on its own.
#[test]
fn grouped_butterfly_equals_separate_groups() {
    let mut rng = Rng::new(5);
    let (groups, n_in, n_out, nblocks, rows) = (3, 6, 10, 2, 4);
    for inc in [true, false] {
        let per_group = twiddle_len(1, n_in, n_out, nblocks);
        let tw = rng.vec(groups * per_group, -1.0, 1.0);
        let x = rng.vec(rows * groups * n_in, -1.0, 1.0);
        let got = butterfly(&x, rows, &tw, groups, n_in, n_out, nblocks, inc);
        for g in 0..groups {
            let xg: Vec<f64> = (0..rows)
                .flat_map(|r| x[(r * groups + g) * n_in..][..n_in].to_vec())
                .collect();
            let twg = &tw[g * per_group..][..per_group];
            let yg = butterfly(&xg, rows, twg, 1, n_in, n_out, nblocks, inc);
            for r in 0..rows {
                assert_eq!(
                    &got[(r * groups + g) * n_out..][..n_out],
                    &yg[r * n_out..][..n_out],
                    "group {g} row {r}"
                );
            }
        }
    }
}

#[test]
fn givens_and_ternary_producers_known_values() {
    let theta = [0.0, std::f64::consts::FRAC_PI_2, 0.3];
    let tw = givens_twiddles(&theta);
    let (s, c) = 0.3f64.sin_cos();
    let want = [1.0, 0.0, 0.0, 1.0, 0.0, -1.0, 1.0, 0.0, c, -s, s, c];
    // cos(π/2) in f64 is 6.1e-17, not 0.
    assert_close(&tw, &want, 1e-15, "givens");

    // α = 0.5: w/α = 1.2, −1.2, 0.4, 3, 0.5 (half rounds away from zero), −0.5, −0.98.
    let w = [0.6, -0.6, 0.2, 1.5, 0.25, -0.25, -0.49];
    let t: Vec<f64> = ternary_twiddles(&w, 0.5)
        .chunks_exact(4)
        .map(|c| {
            assert_eq!((c[0], c[2], c[3]), (1.0, 1.0, -c[1]));
            c[1]
        })
        .collect();
    assert_eq!(t, [0.5, -0.5, 0.0, 0.5, 0.5, -0.5, -0.5]);
    assert_eq!(
        ternary_twiddles(&[0.0, 1.0], 0.0),
        [1.0, 0.0, 1.0, -0.0, 1.0, 0.0, 1.0, -0.0]
    );
    assert_eq!(hadamard_twiddles(2, 3, 2, 1), Vec::<f64>::new());
    assert_eq!(hadamard_twiddles(1, 1, 1, 4).len(), 2 * 2 * 4);
}
