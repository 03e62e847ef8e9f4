//! Vector–Jacobian product of the monarch layer, in the index conventions of
//! [`monarch`](super::monarch): `z[b·k + a] = Σ_j w1[a, b, j]·x[a·p + j]` (BlockDiag(w1), then
//! P₁) and `out[f·l + e] = Σ_j w2[e, f, j]·z[e·r + j]` (BlockDiag(w2), then P₂).

/// Backward of [`monarch`](super::monarch::monarch): returns `(grad_x, grad_w1, grad_w2)`.
///
/// Shapes: `x: [rows, groups·n_in]`, `w1: [groups, k, q, p]`, `w2: [groups, l, s, r]`,
/// `grad_out: [rows, groups·n_out]`, with `k·q = l·r`, `n_in ≤ k·p`, `n_out ≤ l·s`; returns
/// gradients shaped like `x`, `w1` and `w2`.
///
/// Per (row, group) the intermediate `z` is recomputed, then, with `gz` the gradient of `z`:
/// `dw2[e, f, j] += dout[f·l + e]·z[e·r + j]`, `gz[e·r + j] += w2[e, f, j]·dout[f·l + e]`,
/// `dw1[a, b, j] += gz[b·k + a]·x[a·p + j]`, `dx[a·p + j] += w1[a, b, j]·gz[b·k + a]`.
/// Outputs truncated away (index ≥ n_out) carry zero gradient and the zero-padded inputs
/// (index ≥ n_in) are constants, so their gradient is dropped. Weight gradients sum over rows.
#[allow(
    clippy::too_many_arguments,
    reason = "mirrors the op's attributes one to one; a struct would tie the oracle to an IR type"
)]
pub fn monarch_backward(
    x: &[f64],
    rows: usize,
    w1: &[f64],
    w2: &[f64],
    groups: usize,
    k: usize,
    q: usize,
    p: usize,
    l: usize,
    s: usize,
    r: usize,
    n_in: usize,
    n_out: usize,
    grad_out: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let n = k * p;
    let (m1, m2) = (k * q, l * s);
    debug_assert_eq!(m1, l * r);
    debug_assert!(n_in <= n && n_out <= m2);
    debug_assert_eq!(x.len(), rows * groups * n_in);
    debug_assert_eq!(w1.len(), groups * k * q * p);
    debug_assert_eq!(w2.len(), groups * l * s * r);
    debug_assert_eq!(grad_out.len(), rows * groups * n_out);
    let (slab1, slab2) = (k * q * p, l * s * r);
    let mut grad_x = vec![0.0; x.len()];
    let mut grad_w1 = vec![0.0; w1.len()];
    let mut grad_w2 = vec![0.0; w2.len()];
    let mut xp = vec![0.0; n];
    let mut z = vec![0.0; m1];
    let mut gout = vec![0.0; m2];
    let mut gz = vec![0.0; m1];
    let mut gx = vec![0.0; n];
    for row in 0..rows * groups {
        let g = row % groups;
        let w1g = &w1[g * slab1..][..slab1];
        let w2g = &w2[g * slab2..][..slab2];
        let gw1 = &mut grad_w1[g * slab1..][..slab1];
        let gw2 = &mut grad_w2[g * slab2..][..slab2];

        xp[..n_in].copy_from_slice(&x[row * n_in..][..n_in]);
        xp[n_in..].fill(0.0);
        for a in 0..k {
            let x1 = &xp[a * p..][..p];
            for b in 0..q {
                let w = &w1g[(a * q + b) * p..][..p];
                z[b * k + a] = w.iter().zip(x1).map(|(w, x)| w * x).sum();
            }
        }

        gout[..n_out].copy_from_slice(&grad_out[row * n_out..][..n_out]);
        gout[n_out..].fill(0.0);
        gz.fill(0.0);
        for e in 0..l {
            let z2 = &z[e * r..][..r];
            for f in 0..s {
                let go = gout[f * l + e];
                let base = (e * s + f) * r;
                for j in 0..r {
                    gw2[base + j] += go * z2[j];
                    gz[e * r + j] += w2g[base + j] * go;
                }
            }
        }

        gx.fill(0.0);
        for a in 0..k {
            for b in 0..q {
                let gzv = gz[b * k + a];
                let base = (a * q + b) * p;
                for j in 0..p {
                    gw1[base + j] += gzv * xp[a * p + j];
                    gx[a * p + j] += w1g[base + j] * gzv;
                }
            }
        }
        grad_x[row * n_in..][..n_in].copy_from_slice(&gx[..n_in]);
    }
    (grad_x, grad_w1, grad_w2)
}
