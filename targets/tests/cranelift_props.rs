//! Property tests: random elementwise expressions (contiguous, strided and broadcast f32
//! loads, f16 and i8 loads, per-lane int → f32, comparisons, selects, every float op) over
//! random extents, as a map and as sum/max reductions. The vector loop must equal the
//! serial loop bit for bit (sums: within the reassociation bound), and the serial loop must
//! equal a Rust evaluation that mirrors the backend's semantics exactly.
#![allow(unsafe_code)]

mod cranelift_common;

use bfly_ir::DType;
use bfly_ir::kernel::*;
use cranelift_common::exprs::*;
use cranelift_common::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_maps(e in expr_with(false), start in 0i64..4, len in 0i64..50, runtime: bool, seed in 0u64..1000) {
        let mut b = BodyBuilder::new();
        let p = inputs(&mut b);
        let ys = b.param("ys", DType::F32, Access::Write);
        let yv = b.param("yv", DType::F32, Access::Write);
        b.serial(start, end_expr(start, len, runtime), |b, i| b.store(ys, i, build(&e, &p, i)));
        b.for_(LoopKind::Vector, start, end_expr(start, len, runtime), |b, i| {
            b.store(yv, i, build(&e, &p, i))
        });
        let body = b.finish();
        let host = compile(&body);
        let serial_ok = e.needs_aligned_start() && start % 4 != 0;
        prop_assert!(serial_ok || host.notes().is_empty(), "{:?}", host.notes());
        let d = Data::new(seed, true);
        let mut bufs = d.bufs(2);
        run(&host, &body, &mut bufs, [len, 1, 0]);
        let mut want = vec![-7.0f32; LEN];
        for i in start..start + len {
            want[i as usize] = mirror(&e, &d, i);
        }
        assert_same(bufs[4].f32(), &want, "serial vs mirror");
        assert_same(bufs[5].f32(), &want, "vector vs mirror");
    }

    /// Butterfly-pair stores (`y[2·i - i % s]`, `y[2·i - i % s + s]`): lane-by-lane stores
    /// in the vector loop.
    #[test]
    fn random_pair_stores(e in expr_with(false), s in prop_oneof![Just(1i64), Just(2), Just(4)], len in 0i64..40, seed in 0u64..1000) {
        let mut b = BodyBuilder::new();
        let p = inputs(&mut b);
        let ys = b.param("ys", DType::F32, Access::Write);
        let yv = b.param("yv", DType::F32, Access::Write);
        for (kind, y) in [(LoopKind::Serial, ys), (LoopKind::Vector, yv)] {
            b.for_(kind, 0, len, |b, i| {
                let lo = b.let_(Expr::Var(i) * 2 - Expr::Var(i) % s);
                let v = b.let_(build(&e, &p, i));
                b.store(y, Expr::Local(lo), Expr::Local(v));
                b.store(y, Expr::Local(lo) + s, Expr::Local(v) * Expr::f32(2.0));
            });
        }
        let body = b.finish();
        let host = compile(&body);
        prop_assert!(host.notes().is_empty(), "{:?}", host.notes());
        let d = Data::new(seed, true);
        let mut bufs = d.bufs(2);
        run(&host, &body, &mut bufs, [len, 1, 0]);
        let mut want = vec![-7.0f32; LEN];
        for i in 0..len {
            let lo = (2 * i - i % s) as usize;
            let v = mirror(&e, &d, i);
            want[lo] = v;
            want[lo + s as usize] = v * 2.0;
        }
        assert_same(bufs[4].f32(), &want, "serial vs mirror");
        assert_same(bufs[5].f32(), &want, "vector vs mirror");
    }

    #[test]
    fn random_reductions(e in expr_with(false), len in 0i64..70, runtime: bool, seed in 0u64..1000) {
        let mut b = BodyBuilder::new();
        let p = inputs(&mut b);
        let y = b.param("y", DType::F32, Access::Write);
        b.serial(0, 1, |b, _| {
            let s = b.let_(Expr::f32(0.0));
            let m = b.let_(Expr::f32(f32::NEG_INFINITY));
            b.for_(LoopKind::Vector, 0, end_expr(0, len, runtime), |b, i| {
                let v = b.let_(build(&e, &p, i));
                b.assign(s, s + v);
                b.assign(m, Expr::Local(m).max(Expr::Local(v)));
            });
            b.store(y, 0, s);
            b.store(y, 1, m);
        });
        let body = b.finish();
        let host = compile(&body);
        prop_assert!(host.notes().is_empty(), "{:?}", host.notes());
        let d = Data::new(seed, true);
        let mut bufs = d.bufs(1);
        run(&host, &body, &mut bufs, [len, 1, 0]);
        let vals: Vec<f32> = (0..len).map(|i| mirror(&e, &d, i)).collect();
        let got = bufs[4].f32();
        let mx = vals.iter().copied().fold(f32::NEG_INFINITY, fmax);
        prop_assert!(same(got[1], mx), "max {} vs {}", got[1], mx);
        let abs: f64 = vals.iter().map(|v| f64::from(*v).abs()).sum();
        if abs.is_finite() && abs < 1e30 {
            let sum: f64 = vals.iter().map(|v| f64::from(*v)).sum();
            let tol = len as f64 * f64::from(f32::EPSILON) * abs;
            prop_assert!((f64::from(got[0]) - sum).abs() <= tol, "sum {} vs {} (tol {})", got[0], sum, tol);
        } else if vals.iter().any(|v| v.is_nan()) {
            prop_assert!(got[0].is_nan());
        }
    }
}
