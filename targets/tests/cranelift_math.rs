//! Accuracy of the backend's inline `exp`/`tanh`/`sin`/`cos` against f64, and bit-exactness of its
//! inline f16 conversions against the `half` crate (every f16 for loads; a large random set
//! plus every rounding boundary for stores), in both serial and 4-lane code.
#![allow(unsafe_code)]

mod cranelift_common;

use bfly_ir::DType;
use bfly_ir::kernel::*;
use cranelift_common::*;

/// `ys[i] = f(xs[i])` for `i < T` with a serial loop (section 0) and a vector loop
/// (section 1), both over the same buffers: returns (serial, vector) results.
fn apply(xs: &[f32], f: fn(Expr) -> Expr) -> (Vec<f32>, Vec<f32>) {
    let mut b = BodyBuilder::new();
    let x = b.param("x", DType::F32, Access::Read);
    let ys = b.param("ys", DType::F32, Access::Write);
    let yv = b.param("yv", DType::F32, Access::Write);
    b.serial(0, RtSym::T, |b, i| {
        b.store(ys, i, f(Expr::load(x, i.into())))
    });
    b.for_(LoopKind::Vector, 0, RtSym::T, |b, i| {
        b.store(yv, i, f(Expr::load(x, i.into())))
    });
    let body = b.finish();
    let n = xs.len();
    let mut bufs = vec![
        Buf::F32(xs.to_vec()),
        Buf::F32(vec![0.0; n]),
        Buf::F32(vec![0.0; n]),
    ];
    eval(&body, &mut bufs, [n as i64, 1, 0]);
    (bufs[1].f32().to_vec(), bufs[2].f32().to_vec())
}

/// `n` points evenly over [lo, hi] plus random ones.
fn grid(lo: f32, hi: f32, n: usize, seed: u64) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n)
        .map(|i| lo + (hi - lo) * (i as f32 / (n - 1) as f32))
        .collect();
    v.extend(Rng(seed).vec(n / 4, lo, hi));
    v
}

fn max_rel_err(xs: &[f32], ys: &[f32], f: fn(f64) -> f64) -> (f64, f32) {
    let mut worst = (0.0f64, 0.0f32);
    for (&x, &y) in xs.iter().zip(ys) {
        let want = f(f64::from(x));
        let err = ((f64::from(y) - want) / want).abs();
        if err > worst.0 {
            worst = (err, x);
        }
    }
    worst
}

#[test]
fn exp_max_relative_error_is_below_one_ulp() {
    let xs = grid(-87.0, 88.0, 1 << 20, 1);
    let (s, v) = apply(&xs, Expr::exp);
    assert_same(&v, &s, "vector vs serial");
    let (err, at) = max_rel_err(&xs, &s, f64::exp);
    // 2^-23 = 1.19e-7 is one ulp at the bottom of a binade.
    println!(
        "exp: max relative error {err:.3e} ({:.2} × 2^-23) at x = {at}",
        err / 2f64.powi(-23)
    );
    assert!(err < 1.2e-7, "exp max relative error {err:e} at {at}");
    // Near zero, where most softmax inputs land after max subtraction.
    let xs = grid(-1.0, 1.0, 1 << 16, 2);
    let (s, _) = apply(&xs, Expr::exp);
    let (err, at) = max_rel_err(&xs, &s, f64::exp);
    assert!(err < 1.2e-7, "exp near 0: {err:e} at {at}");
}

#[test]
fn exp_edges() {
    let xs = [
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        88.72,
        88.73,
        89.5,
        1e30,
        -87.3,
        -95.0,
        -103.0,
        -104.5,
        -1e30,
    ];
    let (s, v) = apply(&xs, Expr::exp);
    assert_same(&v, &s, "vector vs serial");
    assert_eq!(s[0], 1.0);
    assert_eq!(s[1], 1.0);
    assert_eq!(s[2], f32::INFINITY);
    assert_eq!(s[3], 0.0);
    assert!(s[4].is_nan());
    assert!(s[5].is_finite() && s[5] > 3.3e38, "exp(88.72) = {}", s[5]);
    assert_eq!(s[6], f32::INFINITY, "exp(88.73) overflows");
    assert_eq!(s[7], f32::INFINITY);
    assert_eq!(s[8], f32::INFINITY);
    // Subnormal results: within a few subnormal ulps of the truth.
    for (i, &x) in xs.iter().enumerate().skip(9).take(3) {
        let want = f64::from(x).exp();
        let ulp = f64::from(f32::from_bits(1));
        assert!(
            (f64::from(s[i]) - want).abs() <= want * 3e-7 + 2.0 * ulp,
            "exp({x}) = {:e}, want {want:e}",
            s[i]
        );
    }
    assert_eq!(s[12], 0.0);
    assert_eq!(s[13], 0.0);
}

#[test]
fn tanh_error_and_edges() {
    let xs = grid(-12.0, 12.0, 1 << 18, 3);
    let (s, v) = apply(&xs, Expr::tanh);
    assert_same(&v, &s, "vector vs serial");
    let mut worst_abs = 0.0f64;
    let mut worst_rel = (0.0f64, 0.0f32);
    for (&x, &y) in xs.iter().zip(&s) {
        let want = f64::from(x).tanh();
        let abs = (f64::from(y) - want).abs();
        worst_abs = worst_abs.max(abs);
        if want != 0.0 && abs / want.abs() > worst_rel.0 {
            worst_rel = (abs / want.abs(), x);
        }
    }
    println!(
        "tanh: max abs error {worst_abs:.3e}, max relative error {:.3e} at {}",
        worst_rel.0, worst_rel.1
    );
    assert!(worst_abs < 2.5e-7, "tanh abs error {worst_abs:e}");
    assert!(
        worst_rel.0 < 5e-7,
        "tanh rel error {:e} at {}",
        worst_rel.0,
        worst_rel.1
    );
    let edges = [
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        50.0,
        -50.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ];
    let (s, v) = apply(&edges, Expr::tanh);
    assert_same(&v, &s, "edges vector vs serial");
    assert_eq!(s[0].to_bits(), 0.0f32.to_bits());
    assert_eq!(s[1].to_bits(), (-0.0f32).to_bits());
    assert_eq!(s[2], 1e-30);
    assert_eq!(s[3], -1e-30);
    assert_eq!(s[4], 1.0);
    assert_eq!(s[5], -1.0);
    assert_eq!(s[6], 1.0);
    assert_eq!(s[7], -1.0);
    assert!(s[8].is_nan());
}

/// Max absolute error and max relative error (where |f| ≥ 2^-10, away from the zeros) of
/// `ys` against f64.
fn abs_rel_err(xs: &[f32], ys: &[f32], f: fn(f64) -> f64) -> (f64, f64, f32) {
    let (mut abs_w, mut rel_w, mut at) = (0.0f64, 0.0f64, 0.0f32);
    for (&x, &y) in xs.iter().zip(ys) {
        let want = f(f64::from(x));
        let abs = (f64::from(y) - want).abs();
        abs_w = abs_w.max(abs);
        if want.abs() >= 2f64.powi(-10) && abs / want.abs() > rel_w {
            rel_w = abs / want.abs();
            at = x;
        }
    }
    (abs_w, rel_w, at)
}

/// Inline sin/cos: bit-identical in serial and 4-lane code, absolute error ≤ 1.2e-7 over
/// [-8192, 8192] (|f| ≤ 1, so ~1 ulp of 1; measured 9.1e-8), relative error ≤ 1.5 × 2^-23
/// where |f| ≥ 2^-10 (measured 1.08 × 2^-23)
/// (the bounds stated in `cranelift/math.rs`); beyond 8192, ±inf and NaN call Rust's `f32`
/// functions (mixed with inline lanes in one vector).
#[test]
fn sin_cos_error_and_edges() {
    for (lo, hi, seed) in [
        (-4.0f32, 4.0f32, 5u64),
        (-100.0, 100.0, 6),
        (-8192.0, 8192.0, 7),
    ] {
        let xs = grid(lo, hi, 1 << 18, seed);
        for (name, e, f) in [
            (
                "sin",
                Expr::sin as fn(Expr) -> Expr,
                f64::sin as fn(f64) -> f64,
            ),
            ("cos", Expr::cos, f64::cos),
        ] {
            let (s, v) = apply(&xs, e);
            assert_same(&v, &s, &format!("{name} vector vs serial"));
            let (abs, rel, at) = abs_rel_err(&xs, &s, f);
            println!(
                "{name} on [{lo}, {hi}]: max abs error {abs:.3e}, max relative {rel:.3e} \
                 ({:.2} × 2^-23) at {at}",
                rel / 2f64.powi(-23)
            );
            assert!(abs <= 1.2e-7, "{name} abs error {abs:e} on [{lo}, {hi}]");
            assert!(
                rel <= 1.5 * 2f64.powi(-23),
                "{name} rel error {rel:e} at {at}"
            );
        }
    }
    let edges = [
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        8192.0,
        -8192.0,
        8192.001,
        1e6,
        -3e7,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ];
    for cos in [false, true] {
        let e = if cos { Expr::cos } else { Expr::sin };
        let (s, v) = apply(&edges, e);
        assert_same(&v, &s, "edges vector vs serial");
        for (&x, &y) in edges.iter().zip(&s) {
            let want = if cos { x.cos() } else { x.sin() };
            if x.abs() > 8192.0 || x.is_nan() {
                assert!(
                    same(y, want),
                    "beyond the inline range: {x} → {y}, want {want}"
                );
            } else {
                let w = if cos {
                    f64::from(x).cos()
                } else {
                    f64::from(x).sin()
                };
                assert!((f64::from(y) - w).abs() <= 1.2e-7, "{x} → {y}, want {w}");
            }
        }
        if !cos {
            assert_eq!(s[1].to_bits(), (-0.0f32).to_bits(), "sin(-0) = -0");
        }
    }
}

/// Loads every f16 bit pattern (contiguous vector loads, stride-3 gathers and serial
/// loads) and stores it as f32.
#[test]
fn f16_loads_match_half_for_all_65536_values() {
    let n = 1usize << 16;
    let hs: Vec<u16> = (0..=u16::MAX).collect();
    // The same values at 3·i + 1 of a 3× longer buffer, for the gather path.
    let mut h3 = vec![0x7e00u16; 3 * n];
    for (i, &h) in hs.iter().enumerate() {
        h3[3 * i + 1] = h;
    }
    let mut b = BodyBuilder::new();
    let h = b.param("h", DType::F16, Access::Read);
    let hg = b.param("h3", DType::F16, Access::Read);
    let ys = b.param("ys", DType::F32, Access::Write);
    let yv = b.param("yv", DType::F32, Access::Write);
    let yg = b.param("yg", DType::F32, Access::Write);
    b.serial(0, n as i64, |b, i| b.store(ys, i, Expr::load(h, i.into())));
    b.for_(LoopKind::Vector, 0, n as i64, |b, i| {
        b.store(yv, i, Expr::load(h, i.into()))
    });
    b.for_(LoopKind::Vector, 0, n as i64, |b, i| {
        b.store(yg, i, Expr::load(hg, i * 3 + 1))
    });
    let body = b.finish();
    let host = compile(&body);
    assert!(host.notes().is_empty(), "{:?}", host.notes());
    let mut bufs = vec![
        Buf::F16(hs.clone()),
        Buf::F16(h3),
        Buf::F32(vec![0.0; n]),
        Buf::F32(vec![0.0; n]),
        Buf::F32(vec![0.0; n]),
    ];
    run(&host, &body, &mut bufs, [0, 0, 0]);
    for (k, buf) in bufs[2..].iter().enumerate() {
        for (i, &got) in buf.f32().iter().enumerate() {
            let want = half::f16::from_bits(hs[i]).to_f32();
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "output {k}, f16 {:#06x}",
                hs[i]
            );
        }
    }
}

/// Every rounding boundary between adjacent f16 values (the exact midpoint and one f32 ulp
/// either side), the overflow and underflow thresholds, specials, and random bit patterns.
#[test]
fn f16_stores_match_half() {
    let mut xs: Vec<f32> = Vec::new();
    for h in 0..0x7c00u16 {
        let a = f64::from(half::f16::from_bits(h).to_f32());
        let b = f64::from(half::f16::from_bits(h + 1).to_f32());
        let mid = ((a + b) / 2.0) as f32;
        for x in [
            mid,
            f32::from_bits(mid.to_bits() + 1),
            f32::from_bits(mid.to_bits().saturating_sub(1)),
        ] {
            xs.push(x);
            xs.push(-x);
        }
    }
    xs.extend([
        65504.0,
        65519.99,
        65520.0,
        65536.0,
        1e10,
        f32::INFINITY,
        f32::NAN,
        -f32::NAN,
    ]);
    xs.extend([
        f32::from_bits(0x7f80_0001),
        f32::from_bits(0xffc1_2345),
        2.98e-8,
        2.99e-8,
        5.96e-8,
    ]);
    let mut r = Rng(4);
    for _ in 0..(1 << 20) {
        xs.push(f32::from_bits(r.next_u64() as u32));
    }
    let n = xs.len();
    let mut b = BodyBuilder::new();
    let x = b.param("x", DType::F32, Access::Read);
    let hs = b.param("hs", DType::F16, Access::Write);
    let hv = b.param("hv", DType::F16, Access::Write);
    b.serial(0, RtSym::T, |b, i| b.store(hs, i, Expr::load(x, i.into())));
    b.for_(LoopKind::Vector, 0, RtSym::T, |b, i| {
        b.store(hv, i, Expr::load(x, i.into()))
    });
    let body = b.finish();
    let mut bufs = vec![
        Buf::F32(xs.clone()),
        Buf::F16(vec![0; n]),
        Buf::F16(vec![0; n]),
    ];
    eval(&body, &mut bufs, [n as i64, 0, 0]);
    for (k, buf) in bufs[1..].iter().enumerate() {
        for (i, &got) in buf.f16().iter().enumerate() {
            let want = half::f16::from_f32(xs[i]).to_bits();
            assert_eq!(
                got,
                want,
                "output {k}: f32 {:e} ({:#010x})",
                xs[i],
                xs[i].to_bits()
            );
        }
    }
}
