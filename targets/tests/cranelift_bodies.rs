//! Differential tests of the Cranelift backend on hand-built Kernel IR bodies: each body's
//! compiled result is compared with a direct Rust evaluation of the same computation, and
//! each `vector for` with the same body compiled as a serial loop.
//!
//! Tolerances: everything is bit-exact (NaN-equivalent) except reassociated sums, which
//! may differ from the f64 sum by at most n·ε·Σ|xᵢ| (the classic bound for any summation
//! order of n terms, ε = f32::EPSILON), and transcendentals, which are compared with Rust
//! mirrors of the backend's own algorithms (`cranelift_common`) and so are exact too.
#![allow(unsafe_code)]

mod cranelift_common;

use bfly_ir::DType;
use bfly_ir::kernel::*;
use cranelift_common::*;

const N: i64 = 37; // 9 vectors + a tail of 1

type FBin = (&'static str, fn(Expr, Expr) -> Expr, fn(f32, f32) -> f32);
type FUn = (&'static str, fn(Expr) -> Expr, fn(f32) -> f32);

fn float_bins() -> Vec<FBin> {
    vec![
        ("add", |a, b| a + b, |a, b| a + b),
        ("sub", |a, b| a - b, |a, b| a - b),
        ("mul", |a, b| a * b, |a, b| a * b),
        ("div", |a, b| a / b, |a, b| a / b),
        ("min", |a, b| a.min(b), fmin),
        ("max", |a, b| a.max(b), fmax),
        (
            "lt",
            |a, b| a.lt(b).to_f32(),
            |a, b| f32::from(u8::from(a < b)),
        ),
        (
            "le",
            |a, b| a.le(b).to_f32(),
            |a, b| f32::from(u8::from(a <= b)),
        ),
        (
            "eq",
            |a, b| a.eq_(b).to_f32(),
            |a, b| f32::from(u8::from(a == b)),
        ),
        (
            "select",
            |a, b| Expr::select(a.clone().lt(b.clone()), a * 2.0f32.into_expr(), b),
            |a, b| if a < b { a * 2.0 } else { b },
        ),
    ]
}

fn float_uns() -> Vec<FUn> {
    vec![
        ("neg", |a| -a, |a| -a),
        ("abs", |a| a.abs(), f32::abs),
        ("sqrt", |a| a.sqrt(), f32::sqrt),
        ("round", |a| a.round(), f32::round_ties_even),
        ("exp", |a| a.exp(), exp_mirror),
        ("tanh", |a| a.tanh(), tanh_mirror),
        ("log", |a| a.log(), f32::ln),
        ("sin", |a| a.sin(), |a| sin_cos_mirror(a, false)),
        ("cos", |a| a.cos(), |a| sin_cos_mirror(a, true)),
        (
            "int_roundtrip",
            |a| a.to_int().to_f32(),
            |a| a as i64 as f32,
        ),
    ]
}

trait IntoExpr {
    fn into_expr(self) -> Expr;
}

impl IntoExpr for f32 {
    fn into_expr(self) -> Expr {
        Expr::f32(self)
    }
}

/// `out_s[i] = f(x, y, i)` in a serial section and `out_v[i] = …` in a vector section.
fn serial_and_vector(n: i64, f: &dyn Fn(u32, u32, LoopVar) -> Expr) -> Body {
    let mut b = BodyBuilder::new();
    let x = b.param("x", DType::F32, Access::Read);
    let y = b.param("y", DType::F32, Access::Read);
    let os = b.param("out_s", DType::F32, Access::Write);
    let ov = b.param("out_v", DType::F32, Access::Write);
    b.serial(0, n, |b, i| b.store(os, i, f(x, y, i)));
    b.for_(LoopKind::Vector, 0, n, |b, i| b.store(ov, i, f(x, y, i)));
    b.finish()
}

/// Runs a `serial_and_vector` body; `serial_ok` allows the vector loop to fall back.
fn run_xy(body: &Body, xs: &[f32], ys: &[f32], serial_ok: bool) -> (Vec<f32>, Vec<f32>) {
    let n = xs.len();
    let host = compile(body);
    assert!(serial_ok || host.notes().is_empty(), "{:?}", host.notes());
    let mut bufs = vec![
        Buf::F32(xs.to_vec()),
        Buf::F32(ys.to_vec()),
        Buf::F32(vec![7.0; n]),
        Buf::F32(vec![7.0; n]),
    ];
    run(&host, body, &mut bufs, [0, 0, 0]);
    (bufs[2].f32().to_vec(), bufs[3].f32().to_vec())
}

#[test]
fn every_float_binop_scalar_and_vector() {
    let xs = special_f32(N as usize, 1);
    let mut ys = special_f32(N as usize, 2);
    ys.rotate_left(5); // pair specials with other specials
    for (name, op, want) in float_bins() {
        let body = serial_and_vector(N, &|x, y, i| {
            op(Expr::load(x, i.into()), Expr::load(y, i.into()))
        });
        let (s, v) = run_xy(&body, &xs, &ys, false);
        let expect: Vec<f32> = xs.iter().zip(&ys).map(|(a, b)| want(*a, *b)).collect();
        assert_same(&s, &expect, &format!("{name} serial"));
        assert_same(&v, &expect, &format!("{name} vector"));
    }
}

#[test]
fn every_float_unop_scalar_and_vector() {
    let xs = special_f32(N as usize, 3);
    for (name, op, want) in float_uns() {
        let body = serial_and_vector(N, &|x, _, i| op(Expr::load(x, i.into())));
        // f32 → int per lane is not vectorized (it runs serially, same results).
        let (s, v) = run_xy(&body, &xs, &xs, name == "int_roundtrip");
        let expect: Vec<f32> = xs.iter().map(|a| want(*a)).collect();
        assert_same(&s, &expect, &format!("{name} serial"));
        assert_same(&v, &expect, &format!("{name} vector"));
    }
}

/// Int ops on i32 params, stored (wrapping) into an i32 param; vector loops with int stores
/// fall back to serial with a note, and must give the same results.
#[test]
fn every_int_op() {
    type IOp = (&'static str, fn(Expr, Expr) -> Expr, fn(i64, i64) -> i64);
    let div = |a: i64, b: i64| if b > 0 { a / b } else { 0 };
    let rem = |a: i64, b: i64| if b > 0 { a % b } else { 0 };
    let ops: Vec<IOp> = vec![
        ("add", |a, b| a + b, |a, b| a.wrapping_add(b)),
        ("sub", |a, b| a - b, |a, b| a.wrapping_sub(b)),
        ("mul", |a, b| a * b, |a, b| a.wrapping_mul(b)),
        ("div", |a, b| a / b, div),
        ("rem", |a, b| a % b, rem),
        ("min", |a, b| a.min(b), |a, b| a.min(b)),
        ("max", |a, b| a.max(b), |a, b| a.max(b)),
        ("lt", |a, b| a.lt(b), |a, b| i64::from(a < b)),
        ("le", |a, b| a.le(b), |a, b| i64::from(a <= b)),
        ("eq", |a, b| a.eq_(b), |a, b| i64::from(a == b)),
        ("neg", |a, _| -a, |a, _| a.wrapping_neg()),
        ("abs", |a, _| a.abs(), |a, _| a.wrapping_abs()),
        (
            "select",
            |a, b| Expr::select(a.clone().lt(b.clone()), b, a),
            |a, b| a.max(b),
        ),
        ("div7", |a, _| a / 7, |a, _| a / 7),
        ("rem8", |a, _| a % 8, |a, _| a % 8),
        ("div0", |a, _| a / 0, |_, _| 0),
    ];
    let mut a: Vec<i32> = vec![0, 1, -1, 7, -7, 100, i32::MAX, i32::MIN, 12345, -9];
    let mut b: Vec<i32> = vec![3, 0, -2, 7, 5, -100, 2, i32::MAX, 1, 4];
    let mut r = Rng(9);
    while a.len() < N as usize {
        a.push((r.next_u64() % 2001) as i32 - 1000);
        b.push((r.next_u64() % 41) as i32 - 10);
    }
    for kind in [LoopKind::Serial, LoopKind::Vector] {
        for (name, op, want) in &ops {
            let mut bb = BodyBuilder::new();
            let pa = bb.param("a", DType::I32, Access::Read);
            let pb = bb.param("b", DType::I32, Access::Read);
            let out = bb.param("out", DType::I32, Access::Write);
            bb.for_(kind, 0, N, |bb, i| {
                bb.store(
                    out,
                    i,
                    op(Expr::load(pa, i.into()), Expr::load(pb, i.into())),
                )
            });
            let body = bb.finish();
            let host = compile(&body);
            if kind == LoopKind::Vector {
                assert_eq!(host.notes().len(), 1, "{name}: {:?}", host.notes());
            }
            let mut bufs = vec![
                Buf::I32(a.clone()),
                Buf::I32(b.clone()),
                Buf::I32(vec![0; N as usize]),
            ];
            run(&host, &body, &mut bufs, [0, 0, 0]);
            let expect: Vec<i32> = a
                .iter()
                .zip(&b)
                .map(|(x, y)| want(i64::from(*x), i64::from(*y)) as i32)
                .collect();
            assert_eq!(bufs[2].i32(), &expect[..], "{name} {kind:?}");
        }
    }
}

#[test]
fn conversions_and_int_widths() {
    // f32 → int saturates and truncates (NaN → 0); int → i8 wraps; i8 loads sign-extend.
    let xs = special_f32(N as usize, 4);
    let mut b = BodyBuilder::new();
    let x = b.param("x", DType::F32, Access::Read);
    let q = b.param("q", DType::I8, Access::Read);
    let oi = b.param("oi", DType::I32, Access::Write);
    let o8 = b.param("o8", DType::I8, Access::Write);
    let of = b.param("of", DType::F32, Access::Write);
    b.serial(0, N, |b, i| {
        b.store(oi, i, Expr::load(x, i.into()).to_int());
        b.store(o8, i, Expr::load(q, i.into()) * 3 + i);
    });
    b.for_(LoopKind::Vector, 0, N, |b, i| {
        // int loads fed to f32(), an affine int converted per lane, a broadcast int load.
        let v = Expr::load(q, i.into()).to_f32() * 0.5f32.into_expr()
            + (i * 3 - 5).to_f32()
            + Expr::load(q, Expr::int(0)).to_f32();
        b.store(of, i, v);
    });
    let body = b.finish();
    let qs: Vec<i8> = (0..N).map(|i| (i * 37 - 100) as i8).collect();
    let mut bufs = vec![
        Buf::F32(xs.clone()),
        Buf::I8(qs.clone()),
        Buf::I32(vec![0; N as usize]),
        Buf::I8(vec![0; N as usize]),
        Buf::F32(vec![0.0; N as usize]),
    ];
    let host = compile(&body);
    assert!(host.notes().is_empty(), "{:?}", host.notes());
    run(&host, &body, &mut bufs, [0, 0, 0]);
    let want_i: Vec<i32> = xs.iter().map(|v| *v as i64 as i32).collect();
    assert_eq!(bufs[2].i32(), &want_i[..]);
    let want_8: Vec<i8> = (0..N)
        .map(|i| (i64::from(qs[i as usize]) * 3 + i) as i8)
        .collect();
    assert_eq!(bufs[3].i8(), &want_8[..]);
    let want_f: Vec<f32> = (0..N)
        .map(|i| f32::from(qs[i as usize]) * 0.5 + (i * 3 - 5) as f32 + f32::from(qs[0]))
        .collect();
    assert_same(bufs[4].f32(), &want_f, "dequant");
}

#[test]
fn f16_and_i32_params_in_vector_loops() {
    let hs: Vec<u16> = (0..3 * N)
        .map(|i| (i as u16).wrapping_mul(1237) ^ 0x3c00)
        .collect();
    let is: Vec<i32> = (0..3 * N).map(|i| (i as i32 - 40) * 1_000_003).collect();
    let xs = special_f32(N as usize, 5);
    let mut b = BodyBuilder::new();
    let h = b.param("h", DType::F16, Access::Read);
    let w = b.param("w", DType::I32, Access::Read);
    let x = b.param("x", DType::F32, Access::Read);
    let oh = b.param("oh", DType::F16, Access::Write);
    let of = b.param("of", DType::F32, Access::Write);
    let og = b.param("og", DType::F32, Access::Write);
    for (kind, out) in [(LoopKind::Serial, of), (LoopKind::Vector, og)] {
        b.for_(kind, 0, N, |b, i| {
            // contiguous f16, strided f16 (gather), contiguous and strided i32.
            let v = Expr::load(h, i.into())
                + Expr::load(h, i * 3 + 2) * Expr::load(w, i.into()).to_f32()
                - Expr::load(w, i * 2 + 1).to_f32();
            b.store(out, i, v);
        });
    }
    b.for_(LoopKind::Vector, 0, N, |b, i| {
        b.store(oh, i, Expr::load(x, i.into()))
    });
    let body = b.finish();
    let host = compile(&body);
    assert!(host.notes().is_empty(), "{:?}", host.notes());
    let n = N as usize;
    let mut bufs = vec![
        Buf::F16(hs.clone()),
        Buf::I32(is.clone()),
        Buf::F32(xs.clone()),
        Buf::F16(vec![0; n]),
        Buf::F32(vec![0.0; n]),
        Buf::F32(vec![0.0; n]),
    ];
    run(&host, &body, &mut bufs, [0, 0, 0]);
    let f = |b: u16| half::f16::from_bits(b).to_f32();
    let want: Vec<f32> = (0..n)
        .map(|i| f(hs[i]) + f(hs[3 * i + 2]) * is[i] as f32 - is[2 * i + 1] as f32)
        .collect();
    assert_same(bufs[4].f32(), &want, "serial");
    assert_same(bufs[5].f32(), &want, "vector");
    let want_h: Vec<u16> = xs
        .iter()
        .map(|v| half::f16::from_f32(*v).to_bits())
        .collect();
    assert_eq!(bufs[3].f16(), &want_h[..]);
}

/// Selects in vector loops: a uniform condition (a runtime symbol) picks whole vectors, a
/// per-lane comparison picks lanes, and an int select on uniform values stays scalar.
#[test]
fn selects_with_uniform_and_per_lane_conditions() {
    let mut b = BodyBuilder::new();
    let x = b.param("x", DType::F32, Access::Read);
    let k = b.param("k", DType::I32, Access::Read);
    let o = b.param("o", DType::F32, Access::Write);
    b.for_(LoopKind::Vector, 0, N, |b, i| {
        let xi = Expr::load(x, i.into());
        let by_sym = Expr::select(
            Expr::sym(RtSym::T).lt(Expr::int(3)),
            xi.clone(),
            -xi.clone(),
        );
        let relu = Expr::select(xi.clone().lt(Expr::f32(0.0)), Expr::f32(0.0), xi.clone());
        let pick = Expr::select(
            Expr::load(k, Expr::int(0)).lt(Expr::load(k, Expr::int(1))),
            Expr::load(k, Expr::int(0)),
            Expr::load(k, Expr::int(1)),
        );
        b.store(o, i, by_sym * 2.0f32.into_expr() + relu + pick.to_f32());
    });
    let body = b.finish();
    let host = compile(&body);
    assert!(host.notes().is_empty(), "{:?}", host.notes());
    let xs = special_f32(N as usize, 12);
    for t in [1i64, 5] {
        let mut bufs = vec![
            Buf::F32(xs.clone()),
            Buf::I32(vec![9, 4]),
            Buf::F32(vec![0.0; N as usize]),
        ];
        run(&host, &body, &mut bufs, [t, 0, 0]);
        let want: Vec<f32> = xs
            .iter()
            .map(|&v| {
                let s = if t < 3 { v } else { -v };
                let relu = if v < 0.0 { 0.0 } else { v };
                s * 2.0 + relu + 4.0
            })
            .collect();
        assert_same(bufs[2].f32(), &want, &format!("T={t}"));
    }
}

/// Per-lane int comparisons of the vector var against runtime values (a one-hot, causal
/// masks, far-away values that need the 32-bit clamp), with strides of either sign.
#[test]
fn per_lane_int_comparisons() {
    let mut b = BodyBuilder::new();
    let k = b.param("k", DType::I32, Access::Read);
    let o = b.param("o", DType::F32, Access::Write);
    let far = 1i64 << 40;
    type Cmp = fn(Expr, Expr) -> Expr;
    let cases: Vec<(i64, Cmp, i64)> = vec![
        (1, |a, b| a.eq_(b), 0),
        (1, |a, b| a.lt(b), 0),
        (-3, |a, b| a.le(b), 0),
        (2, |a, b| a.le(b), far),
        (1, |a, b| a.lt(b), -far),
        (5, |a, b| a.eq_(b), far),
    ];
    for (n, (c, cmp, off)) in cases.iter().enumerate() {
        let (c, cmp, off) = (*c, *cmp, *off);
        b.for_(LoopKind::Vector, 0, RtSym::T, |b, i| {
            let lhs = Expr::Var(i) * c;
            let rhs = Expr::load(k, Expr::int(0)) + off;
            let v = Expr::select(cmp(lhs, rhs), Expr::f32(1.0), Expr::f32(0.0));
            b.store(
                o,
                i + (n as i64) * 64,
                v + cmp(Expr::Var(i), Expr::int(3)).to_f32(),
            );
        });
    }
    let body = b.finish();
    let host = compile(&body);
    assert!(host.notes().is_empty(), "{:?}", host.notes());
    let rust: Vec<fn(i64, i64) -> bool> = vec![
        |a, b| a == b,
        |a, b| a < b,
        |a, b| a <= b,
        |a, b| a <= b,
        |a, b| a < b,
        |a, b| a == b,
    ];
    for t in [0i64, 1, 7, 30, 61] {
        for target in [-5i64, 0, 3, 17, 40] {
            let mut bufs = vec![Buf::I32(vec![target as i32]), Buf::F32(vec![-1.0; 6 * 64])];
            run(&host, &body, &mut bufs, [t, 1, 0]);
            let mut want = vec![-1.0f32; 6 * 64];
            for (n, ((c, _, off), f)) in cases.iter().zip(&rust).enumerate() {
                for i in 0..t {
                    let hit = f(i * c, target + off);
                    want[n * 64 + i as usize] =
                        f32::from(u8::from(hit)) + f32::from(u8::from(f(i, 3)));
                }
            }
            assert_same(bufs[1].f32(), &want, &format!("T={t} target={target}"));
        }
    }
}

/// Butterfly stages written with `%` (`p = 2·i - i % s`, `q = p + s`), for the small strides
/// whose pairs share a vector: loads and stores follow lane patterns like `[0, 1, 4, 5]`
/// (gathers and lane-by-lane stores), strided twiddles are gathered, and the loop still
/// vectorizes when its constant start makes `i % s` known per lane.
#[test]
fn butterfly_pair_patterns_vectorize() {
    for s in [1i64, 2, 4, 8, 16] {
        for start in [0i64, 4, 1] {
            let n = 32i64;
            let mut b = BodyBuilder::new();
            let x = b.param("x", DType::F32, Access::Read);
            let tw = b.param("tw", DType::F32, Access::Read);
            let y = b.param("y", DType::F32, Access::Write);
            b.for_(LoopKind::Vector, start, n, |b, i| {
                let p = b.let_(Expr::Var(i) * 2 - Expr::Var(i) % s);
                let q = b.let_(Expr::Local(p) + s);
                let (xp, xq) = (Expr::load(x, p.into()), Expr::load(x, q.into()));
                let t = |k: i64| Expr::load(tw, Expr::Var(i) * 4 + k);
                b.store(y, Expr::Local(p), t(0) * xp.clone() + t(1) * xq.clone());
                b.store(y, Expr::Local(q), t(2) * xp + t(3) * xq);
            });
            let body = b.finish();
            let host = compile(&body);
            // From start 1, lane 0 ≡ 1 (mod 4) is all that is known: for s ≥ 8, `i % s`
            // wraps at different lanes in different iterations.
            if start == 1 && s >= 8 {
                assert_eq!(
                    host.notes().len(),
                    1,
                    "s={s} start={start}: {:?}",
                    host.notes()
                );
            } else {
                assert!(
                    host.notes().is_empty(),
                    "s={s} start={start}: {:?}",
                    host.notes()
                );
            }
            let mut r = Rng(s as u64);
            let xs = r.vec(2 * n as usize, -1.0, 1.0);
            let ts = r.vec(4 * n as usize, -1.0, 1.0);
            let mut bufs = vec![
                Buf::F32(xs.clone()),
                Buf::F32(ts.clone()),
                Buf::F32(vec![9.0; 2 * n as usize]),
            ];
            run(&host, &body, &mut bufs, [0, 0, 0]);
            let mut want = vec![9.0f32; 2 * n as usize];
            for i in start..n {
                let p = (2 * i - i % s) as usize;
                let q = p + s as usize;
                let t = |k: usize| ts[4 * i as usize + k];
                want[p] = t(0) * xs[p] + t(1) * xs[q];
                want[q] = t(2) * xs[p] + t(3) * xs[q];
            }
            assert_same(bufs[2].f32(), &want, &format!("s={s} start={start}"));
        }
    }
}

#[test]
fn if_nested_loops_and_locals() {
    // y[r, c] = Σ_k a[r, k] · b[k, c] over k where a[r, k] > 0, with an int local index.
    let (m, k, n) = (5i64, 6i64, 7i64);
    let mut b = BodyBuilder::new();
    let pa = b.param("a", DType::F32, Access::Read);
    let pb = b.param("b", DType::F32, Access::Read);
    let py = b.param("y", DType::F32, Access::Write);
    b.serial(0, m, |b, r| {
        b.serial(0, n, |b, c| {
            let acc = b.let_(Expr::f32(0.0));
            b.serial(0, k, |b, kk| {
                let row = b.let_(r * k);
                let av = Expr::load(pa, Expr::Local(row) + kk);
                b.if_(av.clone().lt(Expr::f32(0.0)).eq_(Expr::int(0)), |b| {
                    b.assign(acc, acc + av * Expr::load(pb, kk * n + c));
                });
            });
            b.store(py, r * n + c, acc);
        });
    });
    let body = b.finish();
    let mut rng = Rng(11);
    let av = rng.vec((m * k) as usize, -1.0, 1.0);
    let bv = rng.vec((k * n) as usize, -1.0, 1.0);
    let mut bufs = vec![
        Buf::F32(av.clone()),
        Buf::F32(bv.clone()),
        Buf::F32(vec![0.0; (m * n) as usize]),
    ];
    eval(&body, &mut bufs, [0, 0, 0]);
    let (m, k, n) = (m as usize, k as usize, n as usize);
    let mut want = vec![0.0f32; m * n];
    for r in 0..m {
        for c in 0..n {
            let mut acc = 0.0f32;
            for kk in 0..k {
                if av[r * k + kk] >= 0.0 {
                    acc += av[r * k + kk] * bv[kk * n + c];
                }
            }
            want[r * n + c] = acc;
        }
    }
    assert_same(bufs[2].f32(), &want, "masked matmul");
}

#[test]
fn parallel_sections_honor_lo_hi_and_run_in_order() {
    // Section 0 (parallel over T): row sums. Section 1 (serial): their total.
    // Section 2 (parallel over B·T): x / total + t.
    const D: i64 = 9;
    let mut b = BodyBuilder::new();
    let x = b.param("x", DType::F32, Access::Read);
    let sums = b.param("sums", DType::F32, Access::ReadWrite);
    let total = b.param("total", DType::F32, Access::ReadWrite);
    let y = b.param("y", DType::F32, Access::Write);
    let rows = Expr::sym(RtSym::B) * RtSym::T;
    b.for_(LoopKind::Parallel, 0, rows.clone(), |b, t| {
        let acc = b.let_(Expr::f32(0.0));
        b.serial(0, D, |b, j| b.assign(acc, acc + Expr::load(x, t * D + j)));
        b.store(sums, t, acc);
    });
    let rows2 = rows.clone();
    b.serial(0, 1, |b, _| {
        let acc = b.let_(Expr::f32(0.0));
        b.serial(0, rows2, |b, t| {
            b.assign(acc, acc + Expr::load(sums, t.into()))
        });
        b.store(total, 0, acc);
    });
    b.for_(LoopKind::Parallel, 0, rows, |b, t| {
        b.for_(LoopKind::Vector, 0, D, |b, j| {
            let v =
                Expr::load(x, t * D + j) / Expr::load(total, Expr::int(0)) + Expr::Var(t).to_f32();
            b.store(y, t * D + j, v);
        });
    });
    let body = b.finish();
    let host = compile(&body);
    for (bsz, t) in [(1i64, 1i64), (2, 5), (3, 7)] {
        let rows = (bsz * t) as usize;
        let d = D as usize;
        let xs = Rng(bsz as u64 * 100 + t as u64).vec(rows * d, 0.0, 1.0);
        let mut sums = vec![0.0f32; rows];
        for r in 0..rows {
            let mut acc = 0.0f32;
            for j in 0..d {
                acc += xs[r * d + j];
            }
            sums[r] = acc;
        }
        let mut tot = 0.0f32;
        for s in &sums {
            tot += s;
        }
        let want: Vec<f32> = (0..rows * d)
            .map(|i| xs[i] / tot + (i / d) as f32)
            .collect();
        for pieces in [1, 2, 3, 7] {
            let mut bufs = vec![
                Buf::F32(xs.clone()),
                Buf::F32(vec![f32::NAN; rows]),
                Buf::F32(vec![f32::NAN; 1]),
                Buf::F32(vec![f32::NAN; rows * d]),
            ];
            run_split(&host, &body, &mut bufs, [t, bsz, 0], pieces);
            assert_same(bufs[1].f32(), &sums, "sums");
            assert_same(
                bufs[3].f32(),
                &want,
                &format!("y B={bsz} T={t} pieces={pieces}"),
            );
        }
    }
}

#[test]
fn syms_are_runtime_values() {
    let mut b = BodyBuilder::new();
    let o = b.param("o", DType::I32, Access::Write);
    let f = b.param("f", DType::F32, Access::Write);
    b.serial(0, 1, |b, _| {
        b.store(
            o,
            0,
            Expr::sym(RtSym::T) * 100 + Expr::sym(RtSym::B) * 10 + RtSym::Pos,
        );
    });
    b.for_(
        LoopKind::Vector,
        RtSym::Pos,
        Expr::sym(RtSym::Pos) + RtSym::T,
        |b, i| {
            b.store(f, i, (i * RtSym::B).to_f32());
        },
    );
    let body = b.finish();
    let host = compile(&body);
    assert!(
        host.notes().iter().any(|n| n.contains("multiplies")),
        "{:?}",
        host.notes()
    );
    for (t, bb, pos) in [(3i64, 2i64, 4i64), (9, 5, 0), (0, 1, 2)] {
        let mut bufs = vec![Buf::I32(vec![0]), Buf::F32(vec![-1.0; 20])];
        run(&host, &body, &mut bufs, [t, bb, pos]);
        assert_eq!(bufs[0].i32()[0] as i64, t * 100 + bb * 10 + pos);
        let want: Vec<f32> = (0..20i64)
            .map(|i| {
                if i >= pos && i < pos + t {
                    (i * bb) as f32
                } else {
                    -1.0
                }
            })
            .collect();
        assert_same(bufs[1].f32(), &want, "sym loop");
    }
}

/// Contiguous, broadcast (index independent of the vector var) and strided loads, with
/// constant and runtime extents and start offsets so every tail length shows up.
#[test]
fn vector_loads_all_strides_and_tails() {
    for runtime in [false, true] {
        for start in 0..4i64 {
            for len in 0..24i64 {
                let mut b = BodyBuilder::new();
                let x = b.param("x", DType::F32, Access::Read);
                let s = b.param("s", DType::F32, Access::Read);
                let y = b.param("y", DType::F32, Access::Write);
                let end: Expr = if runtime {
                    Expr::sym(RtSym::T) + start
                } else {
                    Expr::int(start + len)
                };
                b.for_(LoopKind::Parallel, 0, 2, |b, r| {
                    b.for_(LoopKind::Vector, start, end, |b, i| {
                        let v = Expr::load(x, r * 100 + i) * Expr::load(s, r * 3)
                            + Expr::load(x, r * 100 + i * 3 + 1)
                            - Expr::load(x, r * 100 + i * (-2) + 60)
                            + Expr::load(x, r * 100 + i * 2 + 1) * Expr::f32(0.5);
                        b.store(y, r * 40 + i, v);
                    });
                });
                let body = b.finish();
                let host = compile(&body);
                assert!(host.notes().is_empty(), "{:?}", host.notes());
                let xs = Rng(len as u64).vec(200, -2.0, 2.0);
                let ss = vec![1.5, 0.0, 0.0, -0.25];
                let mut bufs = vec![
                    Buf::F32(xs.clone()),
                    Buf::F32(ss.clone()),
                    Buf::F32(vec![9.0; 80]),
                ];
                run(&host, &body, &mut bufs, [len, 1, 0]);
                let mut want = vec![9.0f32; 80];
                for r in 0..2usize {
                    for i in start as usize..(start + len) as usize {
                        want[r * 40 + i] = xs[r * 100 + i] * ss[r * 3] + xs[r * 100 + i * 3 + 1]
                            - xs[r * 100 + 60 - 2 * i]
                            + xs[r * 100 + 2 * i + 1] * 0.5;
                    }
                }
                assert_same(
                    bufs[2].f32(),
                    &want,
                    &format!("runtime={runtime} start={start} len={len}"),
                );
            }
        }
    }
}

/// Copy-like loops (a copy, an elementwise add) are unrolled 4× with a single-vector loop
/// and a scalar tail: every tail length, constant and runtime extents, start offsets.
#[test]
fn copy_loops_unrolled_all_tails() {
    for runtime in [false, true] {
        for start in 0..3i64 {
            for len in 0..=37i64 {
                let mut b = BodyBuilder::new();
                let x = b.param("x", DType::F32, Access::Read);
                let s = b.param("s", DType::F32, Access::Read);
                let y = b.param("y", DType::F32, Access::Write);
                let end: Expr = if runtime {
                    Expr::sym(RtSym::T) + start
                } else {
                    Expr::int(start + len)
                };
                b.for_(LoopKind::Vector, start, end.clone(), |b, i| {
                    b.store(y, i, Expr::load(x, i.into()));
                });
                b.for_(LoopKind::Vector, start, end, |b, i| {
                    b.store(y, i + 50, Expr::load(x, i + 1) + Expr::load(s, i.into()));
                });
                let body = b.finish();
                let host = compile(&body);
                assert!(host.notes().is_empty(), "{:?}", host.notes());
                let xs = Rng(len as u64 + 7).vec(100, -2.0, 2.0);
                let ss = Rng(len as u64 + 8).vec(100, -2.0, 2.0);
                let mut bufs = vec![
                    Buf::F32(xs.clone()),
                    Buf::F32(ss.clone()),
                    Buf::F32(vec![9.0; 100]),
                ];
                run(&host, &body, &mut bufs, [len, 1, 0]);
                let mut want = vec![9.0f32; 100];
                for i in start as usize..(start + len) as usize {
                    want[i] = xs[i];
                    want[i + 50] = xs[i + 1] + ss[i];
                }
                assert_same(
                    bufs[2].f32(),
                    &want,
                    &format!("runtime={runtime} start={start} len={len}"),
                );
            }
        }
    }
}

/// Sum, max and min reductions (plus a uniform count and a sum of squares in the same
/// loop), every tail length, constant and runtime extents.
#[test]
fn vector_reductions_all_tails() {
    for runtime in [false, true] {
        for len in 0..=41i64 {
            let mut b = BodyBuilder::new();
            let x = b.param("x", DType::F32, Access::Read);
            let y = b.param("y", DType::F32, Access::Write);
            let end: Expr = if runtime {
                Expr::sym(RtSym::T)
            } else {
                Expr::int(len)
            };
            b.serial(0, 1, |b, _| {
                let s = b.let_(Expr::f32(0.0));
                let q = b.let_(Expr::f32(0.0));
                let m = b.let_(Expr::f32(f32::NEG_INFINITY));
                let lo = b.let_(Expr::f32(f32::INFINITY));
                let c = b.let_(Expr::f32(0.0));
                b.for_(LoopKind::Vector, 0, end, |b, i| {
                    let v = b.let_(Expr::load(x, i.into()));
                    b.assign(s, s + v);
                    b.assign(q, Expr::Local(v) * v + q);
                    b.assign(m, Expr::Local(m).max(Expr::Local(v)));
                    b.assign(lo, Expr::Local(v).min(Expr::Local(lo)));
                    b.assign(c, c + 1.0f32.into_expr());
                });
                for (k, l) in [s, q, m, lo, c].into_iter().enumerate() {
                    b.store(y, k as i64, l);
                }
            });
            let body = b.finish();
            let host = compile(&body);
            assert!(host.notes().is_empty(), "{:?}", host.notes());
            let xs = Rng(len as u64 + 77).vec(len as usize, -3.0, 3.0);
            let mut bufs = vec![Buf::F32(xs.clone()), Buf::F32(vec![0.0; 5])];
            run(&host, &body, &mut bufs, [len, 1, 0]);
            let got = bufs[1].f32();
            let n = len as f64;
            let eps = f64::from(f32::EPSILON);
            let sum: f64 = xs.iter().map(|v| f64::from(*v)).sum();
            let abs: f64 = xs.iter().map(|v| f64::from(*v).abs()).sum();
            assert!(
                (f64::from(got[0]) - sum).abs() <= n * eps * abs,
                "sum len={len}: {} vs {sum}",
                got[0]
            );
            let sq: f64 = xs.iter().map(|v| f64::from(*v * *v)).sum();
            assert!(
                (f64::from(got[1]) - sq).abs() <= n * eps * sq * 1.01 + 1e-30,
                "sumsq len={len}"
            );
            let mx = xs.iter().copied().fold(f32::NEG_INFINITY, fmax);
            let mn = xs.iter().copied().fold(f32::INFINITY, fmin);
            assert!(same(got[2], mx), "max len={len}: {} vs {mx}", got[2]);
            assert!(same(got[3], mn), "min len={len}");
            assert_eq!(got[4], len as f32, "count len={len}");
        }
    }
}

#[test]
fn max_reduction_keeps_nan_and_negative_zero_sums_stay_exact() {
    let mut b = BodyBuilder::new();
    let x = b.param("x", DType::F32, Access::Read);
    let y = b.param("y", DType::F32, Access::Write);
    b.serial(0, 1, |b, _| {
        let s = b.let_(Expr::f32(-0.0));
        let m = b.let_(Expr::f32(f32::NEG_INFINITY));
        b.for_(LoopKind::Vector, 0, RtSym::T, |b, i| {
            b.assign(s, s + Expr::load(x, i.into()));
            b.assign(m, Expr::Local(m).max(Expr::load(x, i.into())));
        });
        b.store(y, 0, s);
        b.store(y, 1, m);
    });
    let body = b.finish();
    let host = compile(&body);
    let mut bufs = vec![Buf::F32(vec![-0.0; 23]), Buf::F32(vec![1.0; 2])];
    run(&host, &body, &mut bufs, [23, 1, 0]);
    assert_eq!(bufs[1].f32()[0].to_bits(), (-0.0f32).to_bits());
    let mut xs = vec![1.0f32; 23];
    xs[17] = f32::NAN;
    let mut bufs = vec![Buf::F32(xs), Buf::F32(vec![1.0; 2])];
    run(&host, &body, &mut bufs, [23, 1, 0]);
    assert!(bufs[1].f32()[1].is_nan());
}

#[test]
fn unvectorizable_loops_run_serially_with_a_note() {
    type Case = (&'static str, fn(&mut BodyBuilder, u32, u32, LoopVar));
    let cases: Vec<Case> = vec![
        ("contains an if", |b, x, y, i| {
            b.if_(Expr::load(x, i.into()).lt(Expr::f32(0.0)), |b| {
                b.store(y, i, Expr::f32(0.0))
            })
        }),
        ("contains a loop", |b, x, y, i| {
            b.serial(0, 2, |b, j| {
                b.store(y, i, Expr::load(x, i.into()) + Expr::Var(j).to_f32())
            })
        }),
        ("multiplies i0 by a runtime value", |b, x, y, i| {
            b.store(
                y,
                Expr::Var(i) * Expr::load(x, Expr::int(0)).to_int(),
                Expr::f32(1.0),
            )
        }),
        ("loop-invariant index", |b, x, y, _| {
            b.store(y, 0, Expr::load(x, Expr::int(0)))
        }),
        ("`%` of i0 that differs per lane", |b, x, y, i| {
            b.store(y, i, Expr::load(x, (i * 7) % 40))
        }),
        ("a0 holds a per-lane int", |b, x, y, i| {
            let m = b.let_(Expr::load(x, i.into()).lt(Expr::f32(0.0)));
            let k = b.let_(Expr::Local(m).to_f32());
            b.store(y, i, Expr::Local(k) + Expr::Local(m).to_f32());
        }),
        ("f32 to int per lane", |b, x, y, i| {
            b.store(
                y,
                i,
                Expr::load(
                    x,
                    Expr::load(x, i.into())
                        .to_int()
                        .max(Expr::int(0))
                        .min(Expr::int(39)),
                ),
            )
        }),
    ];
    for (want, f) in cases {
        let mut b = BodyBuilder::new();
        let x = b.param("x", DType::F32, Access::Read);
        let y = b.param("y", DType::F32, Access::Write);
        b.for_(LoopKind::Vector, 0, 40, |b, i| f(b, x, y, i));
        let body = b.finish();
        let host = compile(&body);
        assert_eq!(host.notes().len(), 1, "{want}: {:?}", host.notes());
        let note = &host.notes()[0];
        assert!(
            note.starts_with("body0 section 0: vector loop i0 runs serially: "),
            "{note}"
        );
        assert!(note.contains(want), "{want}: {note}");
    }
}

#[test]
fn short_constant_vector_loops_are_serial_without_a_note() {
    let mut b = BodyBuilder::new();
    let x = b.param("x", DType::F32, Access::Read);
    let y = b.param("y", DType::F32, Access::Write);
    b.for_(LoopKind::Vector, 0, 3, |b, i| {
        b.if_(Expr::int(1), |b| {
            b.store(y, i, Expr::load(x, i.into()) * 2.0f32.into_expr())
        })
    });
    let body = b.finish();
    let host = compile(&body);
    assert!(host.notes().is_empty(), "{:?}", host.notes());
    let mut bufs = vec![Buf::F32(vec![1.0, 2.0, 3.0]), Buf::F32(vec![0.0; 3])];
    run(&host, &body, &mut bufs, [0, 0, 0]);
    assert_eq!(bufs[1].f32(), &[2.0, 4.0, 6.0]);
}

#[test]
fn malformed_bodies_are_errors_not_panics() {
    let bad: Vec<Body> = vec![
        {
            let mut b = BodyBuilder::new();
            let y = b.param("y", DType::F32, Access::Write);
            b.serial(0, 4, |b, i| {
                b.store(y, i, Expr::load(y, i.into()) + Expr::int(1))
            });
            b.finish()
        },
        {
            let mut b = BodyBuilder::new();
            let y = b.param("y", DType::I32, Access::Write);
            b.serial(0, 4, |b, i| b.store(y, i, Expr::f32(1.0)));
            b.finish()
        },
        {
            let mut b = BodyBuilder::new();
            let y = b.param("y", DType::F32, Access::Write);
            b.serial(0, 4, |b, i| b.store(y + 3, i, Expr::f32(1.0)));
            b.finish()
        },
        {
            let mut b = BodyBuilder::new();
            let y = b.param("y", DType::F32, Access::Write);
            b.serial(0, 4, |b, i| b.store(y, i, Expr::Local(Local(5))));
            b.finish()
        },
        {
            let mut b = BodyBuilder::new();
            let y = b.param("y", DType::F32, Access::Write);
            b.serial(0, 4, |b, i| b.store(y, i, Expr::int(3).exp()));
            b.finish()
        },
        {
            let mut b = BodyBuilder::new();
            let y = b.param("y", DType::F32, Access::Write);
            b.for_(LoopKind::Vector, 0, 8, |b, i| {
                b.store(y, i, Expr::f32(2.0) % Expr::f32(1.0))
            });
            b.finish()
        },
    ];
    for body in bad {
        match try_compile(&body) {
            Err(bfly_targets::cranelift::JitError::Body { .. }) => {}
            Err(e) => panic!("wrong error kind: {e}"),
            Ok(_) => panic!("accepted a malformed body:\n{}", body.print("bad")),
        }
    }
}
