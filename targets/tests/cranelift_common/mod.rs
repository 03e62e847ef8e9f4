//! Test-only runner for the Cranelift backend: compiles hand-built bodies and runs their
//! sections on Rust-owned buffers (parallel sections optionally split into sub-ranges, the
//! way the executor hands them to threads).
#![allow(unsafe_code, dead_code)]

pub mod exprs;

use bfly_ir::kernel::{Body, BodyId, KernelProgram};
use bfly_targets::cranelift::{HostProgram, JitError};
use bfly_targets::exec::SectionRunner;

/// A buffer of one param, in its storage type (`F16` holds raw bits).
#[derive(Clone, Debug, PartialEq)]
pub enum Buf {
    F32(Vec<f32>),
    F16(Vec<u16>),
    I8(Vec<i8>),
    I32(Vec<i32>),
}

impl Buf {
    fn addr(&mut self) -> usize {
        match self {
            Buf::F32(v) => v.as_mut_ptr() as usize,
            Buf::F16(v) => v.as_mut_ptr() as usize,
            Buf::I8(v) => v.as_mut_ptr() as usize,
            Buf::I32(v) => v.as_mut_ptr() as usize,
        }
    }

    pub fn f32(&self) -> &[f32] {
        match self {
            Buf::F32(v) => v,
            _ => panic!("not an f32 buffer"),
        }
    }

    pub fn f16(&self) -> &[u16] {
        match self {
            Buf::F16(v) => v,
            _ => panic!("not an f16 buffer"),
        }
    }

    pub fn i32(&self) -> &[i32] {
        match self {
            Buf::I32(v) => v,
            _ => panic!("not an i32 buffer"),
        }
    }

    pub fn i8(&self) -> &[i8] {
        match self {
            Buf::I8(v) => v,
            _ => panic!("not an i8 buffer"),
        }
    }
}

/// A program holding just these bodies (no kernels are needed to compile bodies).
pub fn program(bodies: Vec<Body>) -> KernelProgram {
    KernelProgram {
        name: "test".into(),
        bounds: vec![],
        buffers: vec![],
        bodies,
        kernels: vec![],
    }
}

pub fn compile(body: &Body) -> HostProgram {
    try_compile(body).unwrap_or_else(|e| panic!("compile failed: {e}"))
}

pub fn try_compile(body: &Body) -> Result<HostProgram, JitError> {
    HostProgram::compile(&program(vec![body.clone()]))
}

/// Runs every section of body 0 in order. A parallel section's range (evaluated with
/// `syms`) is cut into `pieces` sub-ranges, run last piece first so an implementation that
/// ignored `lo`/`hi` or leaked state between calls would show.
///
/// The caller must size `bufs` for every element the body touches with these `syms`.
pub fn run_split(host: &HostProgram, body: &Body, bufs: &mut [Buf], syms: [i64; 3], pieces: i64) {
    assert_eq!(bufs.len(), body.params.len(), "one buffer per param");
    let args: Vec<usize> = bufs.iter_mut().map(Buf::addr).collect();
    for s in 0..body.num_sections() {
        match body.section_range(s) {
            Some((start, end)) => {
                let lo = start.eval_int(&syms).expect("static start");
                let hi = end.eval_int(&syms).expect("static end");
                let n = (hi - lo).max(0);
                let pieces = pieces.max(1);
                let mut cuts: Vec<(i64, i64)> = (0..pieces)
                    .map(|p| (lo + n * p / pieces, lo + n * (p + 1) / pieces))
                    .collect();
                cuts.reverse();
                for (a, b) in cuts {
                    // SAFETY: the test sized every buffer for the body's accesses at `syms`,
                    // the buffers outlive the call, nothing else touches them, and `a..b`
                    // lies inside the section's range.
                    unsafe { host.run_section(BodyId(0), s, &args, &syms, a, b) };
                }
            }
            None => {
                // SAFETY: as above; non-parallel sections ignore lo/hi.
                unsafe { host.run_section(BodyId(0), s, &args, &syms, 0, 0) };
            }
        }
    }
}

pub fn run(host: &HostProgram, body: &Body, bufs: &mut [Buf], syms: [i64; 3]) {
    run_split(host, body, bufs, syms, 1)
}

/// Compiles and runs in one go.
pub fn eval(body: &Body, bufs: &mut [Buf], syms: [i64; 3]) {
    let host = compile(body);
    run(&host, body, bufs, syms);
}

// ---------------------------------------------------------------------------------------
// Rust mirrors of the backend's scalar semantics (bit-exact, so tests can compare exactly).

/// Cranelift `fmin`: NaN if either is NaN, `-0.0 < +0.0`.
pub fn fmin(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if a == b {
        if a.is_sign_negative() { a } else { b }
    } else {
        a.min(b)
    }
}

/// Cranelift `fmax`: NaN if either is NaN, `-0.0 < +0.0`.
pub fn fmax(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if a == b {
        if a.is_sign_negative() { b } else { a }
    } else {
        a.max(b)
    }
}

/// The backend's `exp`, operation for operation (see `cranelift/math.rs`).
pub fn exp_mirror(x: f32) -> f32 {
    const P: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ];
    let x = fmax(fmin(x, 89.0), -104.0);
    let k = (x * std::f32::consts::LOG2_E).round_ties_even();
    let r = x - k * 0.693_359_4;
    let r = r - k * -2.121_944_4e-4;
    let mut p = P[0];
    for c in &P[1..] {
        p = p * r + c;
    }
    let y = p * (r * r) + r + 1.0;
    let n = k as i32;
    let n1 = n >> 1;
    let n2 = n - n1;
    let pow2 = |e: i32| f32::from_bits(((e + 127) << 23) as u32);
    y * pow2(n1) * pow2(n2)
}

/// The backend's `tanh`, operation for operation.
pub fn tanh_mirror(x: f32) -> f32 {
    const Q: [f32; 5] = [
        -5.704_988_7e-3,
        2.063_909e-2,
        -5.373_971_6e-2,
        1.333_144_2e-1,
        -3.333_328e-1,
    ];
    let ax = x.abs();
    let z = ax * ax;
    let mut q = Q[0];
    for c in &Q[1..] {
        q = q * z + c;
    }
    let small = ax + ax * (z * q);
    let e = exp_mirror(ax + ax);
    let large = 1.0 - 2.0 / (e + 1.0);
    let r = if ax < 0.625 { small } else { large };
    r.copysign(x)
}

/// The backend's `sin` (`cos = false`) or `cos`, operation for operation (see
/// `cranelift/math.rs`): inline for |x| ≤ 8192, Rust's `f32` functions beyond and for ±inf,
/// NaN.
pub fn sin_cos_mirror(x: f32, cos: bool) -> f32 {
    let ax = x.abs();
    if ax.is_nan() || ax > 8192.0 {
        return if cos { x.cos() } else { x.sin() };
    }
    const MAGIC: f32 = 12_582_912.0;
    let qm = ax * std::f32::consts::FRAC_2_PI + MAGIC;
    let q = qm - MAGIC;
    let r = ax - q * 1.570_312_5;
    let r = r - q * 4.837_513e-4;
    let r = r - q * 7.549_79e-8;
    let z = r * r;
    let ps = r + (r * z) * ((-1.951_529_6e-4 * z + 8.332_161e-3) * z + -1.666_665_5e-1);
    let pc = ((2.443_315_7e-5 * z + -1.388_731_6e-3) * z + 4.166_664_6e-2) * (z * z);
    let pc = (1.0 - z * 0.5) + pc;
    let qi = (qm.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let even = qi & 1 == 0;
    let v = match (cos, even) {
        (false, true) | (true, false) => ps,
        _ => pc,
    };
    let mut sign = ((if cos { qi + 1 } else { qi }) & 2) << 30;
    if !cos {
        sign ^= (x.to_bits() & 0x8000_0000) as i32;
    }
    f32::from_bits(v.to_bits() ^ sign as u32)
}

/// Equal bits, or both NaN.
pub fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

pub fn assert_same(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            same(*g, *w),
            "{what}[{i}]: got {g:e} ({:#x}), want {w:e} ({:#x})",
            g.to_bits(),
            w.to_bits()
        );
    }
}

/// A deterministic PRNG for test data (SplitMix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub fn f32(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }

    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32(lo, hi)).collect()
    }
}

/// Values that stress float ops: signed zeros, infinities, NaN, subnormals, huge and tiny,
/// ties for rounding, then random ones.
pub fn special_f32(n: usize, seed: u64) -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        -0.5,
        1.5,
        2.5,
        -2.5,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        1e-40,
        -1e-40,
        f32::MIN_POSITIVE,
        f32::MAX,
        f32::MIN,
        3e38,
        1e-30,
        88.0,
        -88.0,
        100.0,
        -100.0,
        20.0,
        -9.0,
        0.3,
        -0.7,
        1e20,
        -1e20,
    ];
    let mut r = Rng(seed);
    while v.len() < n {
        let x = r.f32(-12.0, 12.0);
        v.push(x);
    }
    v.truncate(n);
    v
}
