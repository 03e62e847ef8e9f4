//! Canonical butterfly (HazyResearch convention, DESIGN §4), its backward, and the twiddle
//! producers that fold parameterizations (Givens, DIB, Hadamard, ternary) into canonical
//! twiddles.
//!
//! Twiddle layout, row-major: `[G, S, B, L, n/2, 2, 2]` with G = groups (block-diagonal across
//! heads), S = nstacks, B = nblocks, L = log2 n. Each 2×2 is row-major: `[T00, T01, T10, T11]`.
//! Parameters of the producers use the same leading dims: angles `[G, S, B, L, n/2]`,
//! diagonals `[G, S, B, L, n]`.

/// `(n, L, S)` of a butterfly layer: `n = next_pow2(n_in)`, `L = log2 n`, `S = ceil(n_out / n)`.
///
/// `n_in = 0` is treated as `n = 1` (no stages); callers never build such layers.
pub fn butterfly_dims(n_in: usize, n_out: usize) -> (usize, usize, usize) {
    let n = n_in.next_power_of_two();
    (n, n.trailing_zeros() as usize, n_out.div_ceil(n))
}

/// Number of twiddle values (`G·S·B·L·(n/2)·4`) of a butterfly layer.
pub fn twiddle_len(groups: usize, n_in: usize, n_out: usize, nblocks: usize) -> usize {
    let (n, log_n, stacks) = butterfly_dims(n_in, n_out);
    groups * stacks * nblocks * log_n * (n / 2) * 4
}

/// Positions `(p, q)` of pair `i` in a stage of the given stride:
/// `low = i mod stride; p = 2(i − low) + low; q = p + stride`.
///
/// `stride` is a power of two, `i < n/2`. The single definition every kernel and producer uses,
/// so a convention change cannot make them disagree.
pub fn pair_index(i: usize, stride: usize) -> (usize, usize) {
    let low = i % stride;
    let p = 2 * (i - low) + low;
    (p, p + stride)
}

/// Stride of stage `stage` (0-based) of a block with `log_n` stages: `2^stage` when the block's
/// stride order is increasing, `2^(log_n − 1 − stage)` otherwise.
pub fn stage_stride(stage: usize, log_n: usize, increasing: bool) -> usize {
    debug_assert!(stage < log_n);
    if increasing {
        1 << stage
    } else {
        1 << (log_n - 1 - stage)
    }
}

/// Stride order of block `b`: blocks alternate, `increasing XOR (b is odd)`, so that two
/// consecutive blocks compose a full butterfly and its transpose-ordered partner.
pub fn block_increasing(block: usize, increasing: bool) -> bool {
    increasing ^ (block % 2 == 1)
}

/// Runs all `nblocks · log_n` stages of one (group, stack) in place on `v` (length n).
///
/// `tw` is that stack's slab `[B, L, n/2, 2, 2]`. When `saved` is given (length `B·L·n`) the
/// input of every stage is stored there, in stage order, for the backward pass.
fn run_stages(
    v: &mut [f64],
    tw: &[f64],
    nblocks: usize,
    log_n: usize,
    increasing: bool,
    mut saved: Option<&mut [f64]>,
) {
    let n = v.len();
    let half = n / 2;
    for b in 0..nblocks {
        let inc = block_increasing(b, increasing);
        for st in 0..log_n {
            let stage = b * log_n + st;
            if let Some(saved) = saved.as_deref_mut() {
                saved[stage * n..][..n].copy_from_slice(v);
            }
            let stride = stage_stride(st, log_n, inc);
            let t_stage = &tw[stage * half * 4..][..half * 4];
            for i in 0..half {
                let (p, q) = pair_index(i, stride);
                let t = &t_stage[i * 4..][..4];
                let (vp, vq) = (v[p], v[q]);
                v[p] = t[0] * vp + t[1] * vq;
                v[q] = t[2] * vp + t[3] * vq;
            }
        }
    }
}

/// Canonical butterfly layer, block-diagonal over `groups`.
///
/// Shapes: `x: [rows, groups·n_in]`, `tw: [groups, S, nblocks, L, n/2, 2, 2]` with
/// `(n, L, S) = butterfly_dims(n_in, n_out)`; returns `[rows, groups·n_out]`.
///
/// For each row and group the group's `n_in` values are zero-padded to n, every stack runs the
/// `nblocks·L` stages on its own copy, and the stacks' outputs are concatenated (S·n values) and
/// truncated to `n_out`.
#[allow(
    clippy::too_many_arguments,
    reason = "mirrors the op's attributes one to one; a struct would tie the oracle to an IR type"
)]
pub fn butterfly(
    x: &[f64],
    rows: usize,
    tw: &[f64],
    groups: usize,
    n_in: usize,
    n_out: usize,
    nblocks: usize,
    increasing: bool,
) -> Vec<f64> {
    let (n, log_n, stacks) = butterfly_dims(n_in, n_out);
    let slab = nblocks * log_n * (n / 2) * 4;
    debug_assert_eq!(x.len(), rows * groups * n_in);
    debug_assert_eq!(tw.len(), groups * stacks * slab);
    let mut y = vec![0.0; rows * groups * n_out];
    let mut v = vec![0.0; n];
    for r in 0..rows {
        for g in 0..groups {
            let row = r * groups + g;
            let xg = &x[row * n_in..][..n_in];
            let yg = &mut y[row * n_out..][..n_out];
            for s in 0..stacks {
                v[..n_in].copy_from_slice(xg);
                v[n_in..].fill(0.0);
                let tw_s = &tw[(g * stacks + s) * slab..][..slab];
                run_stages(&mut v, tw_s, nblocks, log_n, increasing, None);
                let lo = s * n;
                let hi = n_out.min(lo + n);
                yg[lo..hi].copy_from_slice(&v[..hi - lo]);
            }
        }
    }
    y
}

/// Backward of [`butterfly`]: returns `(grad_x, grad_tw)` shaped like `x` and `tw`.
///
/// `grad_out: [rows, groups·n_out]`. Per stage in reverse, each pair's output gradient `g`
/// gives `dx = Tᵀ g` and `dT += g · xᵀ` (outer product with the stage-input pair). Stage inputs
/// are recomputed by one forward pass per (row, group, stack) and stored. `grad_tw` sums over
/// rows; the truncated and zero-padded positions get no gradient.
#[allow(
    clippy::too_many_arguments,
    reason = "mirrors the op's attributes one to one; a struct would tie the oracle to an IR type"
)]
pub fn butterfly_backward(
    x: &[f64],
    rows: usize,
    tw: &[f64],
    groups: usize,
    n_in: usize,
    n_out: usize,
    nblocks: usize,
    increasing: bool,
    grad_out: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let (n, log_n, stacks) = butterfly_dims(n_in, n_out);
    let half = n / 2;
    let slab = nblocks * log_n * half * 4;
    let stages = nblocks * log_n;
    debug_assert_eq!(x.len(), rows * groups * n_in);
    debug_assert_eq!(tw.len(), groups * stacks * slab);
    debug_assert_eq!(grad_out.len(), rows * groups * n_out);
    let mut grad_x = vec![0.0; x.len()];
    let mut grad_tw = vec![0.0; tw.len()];
    let mut v = vec![0.0; n];
    let mut gv = vec![0.0; n];
    let mut saved = vec![0.0; stages * n];
    for r in 0..rows {
        for g in 0..groups {
            let row = r * groups + g;
            let xg = &x[row * n_in..][..n_in];
            let go = &grad_out[row * n_out..][..n_out];
            for s in 0..stacks {
                let off = (g * stacks + s) * slab;
                let tw_s = &tw[off..][..slab];
                v[..n_in].copy_from_slice(xg);
                v[n_in..].fill(0.0);
                run_stages(&mut v, tw_s, nblocks, log_n, increasing, Some(&mut saved));

                // Positions past n_out were truncated away: their gradient is zero.
                let lo = s * n;
                let hi = n_out.min(lo + n);
                gv[..hi - lo].copy_from_slice(&go[lo..hi]);
                gv[hi - lo..].fill(0.0);

                let gtw_s = &mut grad_tw[off..][..slab];
                for stage in (0..stages).rev() {
                    let inc = block_increasing(stage / log_n, increasing);
                    let stride = stage_stride(stage % log_n, log_n, inc);
                    let input = &saved[stage * n..][..n];
                    for i in 0..half {
                        let (p, q) = pair_index(i, stride);
                        let k = (stage * half + i) * 4;
                        let t = &tw_s[k..][..4];
                        let (gp, gq) = (gv[p], gv[q]);
                        let (xp, xq) = (input[p], input[q]);
                        let dt = &mut gtw_s[k..][..4];
                        dt[0] += gp * xp;
                        dt[1] += gp * xq;
                        dt[2] += gq * xp;
                        dt[3] += gq * xq;
                        gv[p] = t[0] * gp + t[2] * gq;
                        gv[q] = t[1] * gp + t[3] * gq;
                    }
                }
                // Every stack read the same padded input, so their gradients add; the padding
                // positions are constants and drop out.
                let gx = &mut grad_x[row * n_in..][..n_in];
                for (a, b) in gx.iter_mut().zip(&gv[..n_in]) {
                    *a += b;
                }
            }
        }
    }
    (grad_x, grad_tw)
}

/// Givens producer: every angle θ becomes `T = [[cos θ, −sin θ], [sin θ, cos θ]]`.
///
/// `theta` has any shape `[..., n/2]` (canonically `[G, S, B, L, n/2]`); returns
/// `[..., n/2, 2, 2]`, i.e. `4·theta.len()` values.
pub fn givens_twiddles(theta: &[f64]) -> Vec<f64> {
    let mut tw = Vec::with_capacity(theta.len() * 4);
    for &th in theta {
        let (s, c) = th.sin_cos();
        tw.extend_from_slice(&[c, -s, s, c]);
    }
    tw
}

/// Backward of [`givens_twiddles`]: `grad_tw` shaped like its output, returns `dθ` shaped like
/// `theta`: `dθ = dT00(−s) + dT01(−c) + dT10(c) + dT11(−s)`.
pub fn givens_twiddles_backward(theta: &[f64], grad_tw: &[f64]) -> Vec<f64> {
    debug_assert_eq!(grad_tw.len(), theta.len() * 4);
    theta
        .iter()
        .zip(grad_tw.chunks_exact(4))
        .map(|(&th, dt)| {
            let (s, c) = th.sin_cos();
            -dt[0] * s - dt[1] * c + dt[2] * c - dt[3] * s
        })
        .collect()
}

/// Visits every pair of a `[slabs, B·…, L, n/2]` parameter layout with the pair's flat angle
/// index, flat twiddle index and the flat diagonal indices of its positions `p` and `q`.
///
/// The slab index is the flattened `(g, s, b)`, so `b = slab mod nblocks` decides the block's
/// stride order; this is why the DIB producer needs `nblocks`.
fn for_each_dib_pair(
    slabs: usize,
    n: usize,
    nblocks: usize,
    increasing: bool,
    mut f: impl FnMut(usize, usize, usize),
) {
    let log_n = n.trailing_zeros() as usize;
    let half = n / 2;
    for slab in 0..slabs {
        let inc = block_increasing(slab % nblocks, increasing);
        for st in 0..log_n {
            let stride = stage_stride(st, log_n, inc);
            let stage = slab * log_n + st;
            for i in 0..half {
                let (p, q) = pair_index(i, stride);
                f(stage * half + i, stage * n + p, stage * n + q);
            }
        }
    }
}

/// Number of `(g, s, b)` slabs of a DIB parameter set, from the angle count.
fn dib_slabs(theta_len: usize, n: usize) -> usize {
    let per_slab = (n.trailing_zeros() as usize) * (n / 2);
    // n = 1 has no stages, hence no angles and no slabs.
    theta_len.checked_div(per_slab).unwrap_or(0)
}

/// DIB producer (the seed's Diagonal-Interleaved Butterfly): each stage is a Givens rotation
/// followed by a diagonal, folded into `T = [[d_p c, −d_p s], [d_q s, d_q c]]`.
///
/// Shapes: `theta: [G, S, B, L, n/2]`, `diag: [G, S, B, L, n]` (n a power of two,
/// `B = nblocks`); returns `[G, S, B, L, n/2, 2, 2]`. `p, q` are the pair's positions in its
/// stage, which depend on block b's stride order `increasing XOR (b odd)`.
pub fn dib_twiddles(
    theta: &[f64],
    diag: &[f64],
    n: usize,
    nblocks: usize,
    increasing: bool,
) -> Vec<f64> {
    debug_assert!(n.is_power_of_two());
    let slabs = dib_slabs(theta.len(), n);
    debug_assert_eq!(diag.len(), slabs * (n.trailing_zeros() as usize) * n);
    debug_assert_eq!(slabs % nblocks.max(1), 0);
    let mut tw = vec![0.0; theta.len() * 4];
    for_each_dib_pair(slabs, n, nblocks, increasing, |a, ip, iq| {
        let (s, c) = theta[a].sin_cos();
        let (dp, dq) = (diag[ip], diag[iq]);
        tw[a * 4..][..4].copy_from_slice(&[dp * c, -dp * s, dq * s, dq * c]);
    });
    tw
}

/// Backward of [`dib_twiddles`]: returns `(grad_theta, grad_diag)` shaped like the inputs.
///
/// `dθ = dT00(−d_p s) + dT01(−d_p c) + dT10(d_q c) + dT11(−d_q s)`,
/// `dd_p += dT00 c − dT01 s`, `dd_q += dT10 s + dT11 c`.
pub fn dib_twiddles_backward(
    theta: &[f64],
    diag: &[f64],
    n: usize,
    nblocks: usize,
    increasing: bool,
    grad_tw: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    debug_assert_eq!(grad_tw.len(), theta.len() * 4);
    let slabs = dib_slabs(theta.len(), n);
    let mut grad_theta = vec![0.0; theta.len()];
    let mut grad_diag = vec![0.0; diag.len()];
    for_each_dib_pair(slabs, n, nblocks, increasing, |a, ip, iq| {
        let (s, c) = theta[a].sin_cos();
        let (dp, dq) = (diag[ip], diag[iq]);
        let dt = &grad_tw[a * 4..][..4];
        grad_theta[a] =
            dt[0] * (-dp * s) + dt[1] * (-dp * c) + dt[2] * (dq * c) + dt[3] * (-dq * s);
        // Each position occurs in exactly one pair per stage, but accumulate anyway so the
        // formula stays right if a layout ever shares diagonals.
        grad_diag[ip] += dt[0] * c - dt[1] * s;
        grad_diag[iq] += dt[2] * s + dt[3] * c;
    });
    (grad_theta, grad_diag)
}

/// Hadamard producer: `groups·stacks·nblocks·L·(n/2)` copies of `[[1, 1], [1, −1]]/√2`.
///
/// Returns `[groups, stacks, nblocks, L, n/2, 2, 2]`. With one block this is the Sylvester
/// Walsh–Hadamard matrix `H_n/√n` for either stride order (the stages commute).
pub fn hadamard_twiddles(groups: usize, stacks: usize, nblocks: usize, n: usize) -> Vec<f64> {
    debug_assert!(n.is_power_of_two());
    let h = std::f64::consts::FRAC_1_SQRT_2;
    let pairs = groups * stacks * nblocks * (n.trailing_zeros() as usize) * (n / 2);
    [h, h, h, -h].repeat(pairs)
}

/// Ternary producer (the seed's NSG factor): `T = [[1, t], [1, −t]]` with
/// `t = α · clamp(round(w/α), −1, 1) ∈ {−α, 0, α}` (round half away from zero).
///
/// `w` any shape `[..., n/2]`; returns `[..., n/2, 2, 2]`. `α = 0` gives `t = 0` rather than
/// the NaN of `0/0`, since a zero scale means the factor carries no weight.
pub fn ternary_twiddles(w: &[f64], alpha: f64) -> Vec<f64> {
    let mut tw = Vec::with_capacity(w.len() * 4);
    for &wi in w {
        let t = if alpha == 0.0 {
            0.0
        } else {
            alpha * (wi / alpha).round().clamp(-1.0, 1.0)
        };
        tw.extend_from_slice(&[1.0, t, 1.0, -t]);
    }
    tw
}
