//! What the Cranelift backend reports besides code: CLIF and disassembly texts (stable
//! across compiles, one header per function), sizes and times, notes, and threading.
#![allow(unsafe_code)]

mod cranelift_common;

use bfly_ir::DType;
use bfly_ir::kernel::*;
use bfly_targets::cranelift::{HostProgram, JitOptions};
use bfly_targets::exec::SectionRunner;
use cranelift_common::*;

/// `y[t, n] = Σ_k x[t, k] · w[n, k]` over a parallel T and a vector k.
fn gemv_body(k: i64, n: i64) -> Body {
    let mut b = BodyBuilder::new();
    let x = b.param("x", DType::F32, Access::Read);
    let w = b.param("w", DType::F32, Access::Read);
    let y = b.param("y", DType::F32, Access::Write);
    b.for_(LoopKind::Parallel, 0, RtSym::T, |b, t| {
        b.serial(0, n, |b, j| {
            let acc = b.let_(Expr::f32(0.0));
            b.for_(LoopKind::Vector, 0, k, |b, kk| {
                b.assign(
                    acc,
                    acc + Expr::load(x, t * k + kk) * Expr::load(w, j * k + kk),
                );
            });
            b.store(y, t * n + j, acc);
        });
    });
    b.finish()
}

/// Two sections: softmax-like max then exp.
fn two_section_body() -> Body {
    let mut b = BodyBuilder::new();
    let x = b.param("x", DType::F32, Access::Read);
    let m = b.param("m", DType::F32, Access::ReadWrite);
    let y = b.param("y", DType::F16, Access::Write);
    b.serial(0, 1, |b, _| {
        let acc = b.let_(Expr::f32(f32::NEG_INFINITY));
        b.for_(LoopKind::Vector, 0, 64, |b, i| {
            b.assign(acc, Expr::Local(acc).max(Expr::load(x, i.into())))
        });
        b.store(m, 0, acc);
    });
    b.for_(LoopKind::Parallel, 0, 64, |b, i| {
        b.store(
            y,
            i,
            (Expr::load(x, i.into()) - Expr::load(m, Expr::int(0))).exp(),
        );
    });
    b.finish()
}

#[test]
fn texts_have_one_header_per_function_and_are_stable() {
    let prog = program(vec![gemv_body(32, 4), two_section_body()]);
    let a = HostProgram::compile(&prog).unwrap();
    let b = HostProgram::compile(&prog).unwrap();
    assert_eq!(a.num_functions(), 3);
    for text in [a.clif_text(), a.asm_text()] {
        let headers: Vec<&str> = text.lines().filter(|l| l.starts_with("; body")).collect();
        assert_eq!(
            headers,
            [
                "; body0 section 0",
                "; body1 section 0",
                "; body1 section 1"
            ],
            "{text}"
        );
    }
    assert!(a.clif_text().contains("load.f32x4"), "{}", a.clif_text());
    assert_eq!(a.clif_text(), b.clif_text());
    assert_eq!(a.asm_text(), b.asm_text());
    assert!(a.code_bytes() > 0 && a.code_bytes() == b.code_bytes());
    assert!(a.compile_time().as_nanos() > 0);
    assert!(a.name().starts_with("cranelift "), "{}", a.name());
    assert!(a.notes().is_empty(), "{:?}", a.notes());
}

#[test]
fn code_only_keeps_no_texts_and_same_code() {
    let prog = program(vec![gemv_body(32, 4)]);
    let full = HostProgram::compile(&prog).unwrap();
    let lean = HostProgram::compile_with(&prog, JitOptions::code_only()).unwrap();
    assert_eq!(lean.clif_text(), "");
    assert_eq!(lean.asm_text(), "");
    assert_eq!(lean.code_bytes(), full.code_bytes());
}

/// Sections another backend runs (the aarch64 microkernels) are not compiled at all.
#[test]
fn skipped_sections_are_not_compiled() {
    let prog = program(vec![gemv_body(32, 4), two_section_body()]);
    let all = HostProgram::compile(&prog).unwrap();
    let some =
        HostProgram::compile_except(&prog, JitOptions::default(), &|b, s| b.0 == 1 && s == 0)
            .unwrap();
    assert_eq!((all.num_functions(), some.num_functions()), (3, 2));
    assert!(some.code_bytes() < all.code_bytes());
    let text = some.asm_text();
    let headers: Vec<&str> = text.lines().filter(|l| l.starts_with("; body")).collect();
    assert_eq!(headers, ["; body0 section 0", "; body1 section 1"]);
}

#[test]
fn clif_snapshot_of_a_vectorized_dot_product() {
    let mut b = BodyBuilder::new();
    let x = b.param("x", DType::F32, Access::Read);
    let y = b.param("y", DType::F32, Access::Write);
    b.serial(0, 1, |b, _| {
        let acc = b.let_(Expr::f32(0.0));
        b.for_(LoopKind::Vector, 0, RtSym::T, |b, i| {
            b.assign(acc, acc + Expr::load(x, i.into()))
        });
        b.store(y, 0, acc);
    });
    let host = compile(&b.finish());
    insta::assert_snapshot!(host.clif_text());
}

#[test]
fn host_program_is_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<HostProgram>();
    let (k, n, t) = (48i64, 5i64, 64i64);
    let body = gemv_body(k, n);
    let host = compile(&body);
    let mut r = Rng(5);
    let xs = r.vec((t * k) as usize, -1.0, 1.0);
    let ws = r.vec((n * k) as usize, -1.0, 1.0);
    let mut ys = vec![0.0f32; (t * n) as usize];
    let args = [
        xs.as_ptr() as usize,
        ws.as_ptr() as usize,
        ys.as_mut_ptr() as usize,
    ];
    std::thread::scope(|s| {
        for part in 0..4 {
            let (host, args) = (&host, &args);
            s.spawn(move || {
                let (lo, hi) = (part * t / 4, (part + 1) * t / 4);
                // SAFETY: the buffers are sized for T = 64 and outlive the scope; each thread
                // writes only rows lo..hi of y, disjoint from the others; x and w are read.
                unsafe { host.run_section(BodyId(0), 0, args, &[t, 1, 0], lo, hi) };
            });
        }
    });
    for ti in 0..t as usize {
        for j in 0..n as usize {
            let k = k as usize;
            let dot: f64 = (0..k)
                .map(|q| f64::from(xs[ti * k + q]) * f64::from(ws[j * k + q]))
                .sum();
            let abs: f64 = (0..k)
                .map(|q| f64::from((xs[ti * k + q] * ws[j * k + q]).abs()))
                .sum();
            let got = f64::from(ys[ti * n as usize + j]);
            assert!(
                (got - dot).abs() <= k as f64 * f64::from(f32::EPSILON) * abs,
                "{ti} {j}"
            );
        }
    }
}

/// A program shaped like a small model's kernels compiles in well under a second (the goal
/// is < 100 ms in release; this runs under debug tests and QEMU, so the bound is loose and
/// the time is printed).
#[test]
fn compile_time_of_many_bodies() {
    let mut bodies = Vec::new();
    for (k, n) in [
        (64, 64),
        (64, 192),
        (64, 256),
        (256, 64),
        (32, 32),
        (128, 128),
    ] {
        bodies.push(gemv_body(k, n));
        bodies.push(two_section_body());
    }
    let prog = program(bodies);
    let lean = HostProgram::compile_with(&prog, JitOptions::code_only()).unwrap();
    let full = HostProgram::compile(&prog).unwrap();
    println!(
        "{} functions: {:?} code only, {:?} with texts, {} code bytes",
        lean.num_functions(),
        lean.compile_time(),
        full.compile_time(),
        lean.code_bytes()
    );
    assert!(lean.compile_time().as_secs_f64() < 5.0);
}
