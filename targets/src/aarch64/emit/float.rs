//! Floating-point SIMD: f32 in `.4s` vectors and scalars, f16 in `.8h` vectors (FEAT_FP16),
//! and the conversions between them.

use super::{Asm, IP1, V, X};
use dynasmrt::{DynasmApi, dynasm};

/// `d = op(n, m)` on whole vectors.
macro_rules! vec3 {
    ($($(#[$doc:meta])* $name:ident => $op:ident . $arr:ident;)*) => {$(
        $(#[$doc])*
        pub fn $name(&mut self, d: V, n: V, m: V) {
            dynasm!(self.ops ; .arch aarch64 ; $op V(d.0).$arr, V(n.0).$arr, V(m.0).$arr);
        }
    )*};
}

/// `d = op(n)` on whole vectors.
macro_rules! vec2 {
    ($($(#[$doc:meta])* $name:ident => $op:ident . $arr:ident;)*) => {$(
        $(#[$doc])*
        pub fn $name(&mut self, d: V, n: V) {
            dynasm!(self.ops ; .arch aarch64 ; $op V(d.0).$arr, V(n.0).$arr);
        }
    )*};
}

/// `d = op(n, m)` on scalars `s` (f32).
macro_rules! scalar3 {
    ($($(#[$doc:meta])* $name:ident => $op:ident;)*) => {$(
        $(#[$doc])*
        pub fn $name(&mut self, d: V, n: V, m: V) {
            dynasm!(self.ops ; .arch aarch64 ; $op S(d.0), S(n.0), S(m.0));
        }
    )*};
}

impl Asm {
    vec3! {
        /// `d += n·m` (fused).
        fmla_4s => fmla.S4;
        /// `d -= n·m` (fused).
        fmls_4s => fmls.S4;
        fmul_4s => fmul.S4;
        fadd_4s => fadd.S4;
        fsub_4s => fsub.S4;
        fdiv_4s => fdiv.S4;
        /// NaN-propagating maximum.
        fmax_4s => fmax.S4;
        fmin_4s => fmin.S4;
        /// Pairwise add: `[n0+n1, n2+n3, m0+m1, m2+m3]`.
        faddp_4s => faddp.S4;
        /// `d += n·m` on 8 f16 lanes (FEAT_FP16).
        fmla_8h => fmla.H8;
        fmul_8h => fmul.H8;
        fadd_8h => fadd.H8;
        fsub_8h => fsub.H8;
    }

    vec2! {
        fneg_4s => fneg.S4;
        fabs_4s => fabs.S4;
        fsqrt_4s => fsqrt.S4;
        /// Round to nearest, ties to even (as floats).
        frintn_4s => frintn.S4;
        /// f32 → i32, round to nearest even, saturating.
        fcvtns_4s => fcvtns.S4;
        /// f32 → i32, toward zero, saturating.
        fcvtzs_4s => fcvtzs.S4;
        /// i32 → f32.
        scvtf_4s => scvtf.S4;
        /// Reciprocal estimate (≈8 bits), refined with `frecps_4s`.
        frecpe_4s => frecpe.S4;
    }

    vec3! {
        /// Newton step for reciprocals: `2 − n·m`.
        frecps_4s => frecps.S4;
    }

    scalar3! {
        fadd_s => fadd;
        fsub_s => fsub;
        fmul_s => fmul;
        fdiv_s => fdiv;
        fmax_s => fmax;
        fmin_s => fmin;
    }

    /// `d += n·m[lane]` (f32, by element; lane 0..3).
    pub fn fmla_4s_lane(&mut self, d: V, n: V, m: V, lane: u8) {
        if self.check(lane < 4, || format!("fmla lane {lane}")) {
            let l = u32::from(lane);
            dynasm!(self.ops ; .arch aarch64 ; fmla V(d.0).S4, V(n.0).S4, V(m.0).S[l]);
        }
    }

    /// `d -= n·m[lane]`.
    pub fn fmls_4s_lane(&mut self, d: V, n: V, m: V, lane: u8) {
        if self.check(lane < 4, || format!("fmls lane {lane}")) {
            let l = u32::from(lane);
            dynasm!(self.ops ; .arch aarch64 ; fmls V(d.0).S4, V(n.0).S4, V(m.0).S[l]);
        }
    }

    /// `d = n·m[lane]`.
    pub fn fmul_4s_lane(&mut self, d: V, n: V, m: V, lane: u8) {
        if self.check(lane < 4, || format!("fmul lane {lane}")) {
            let l = u32::from(lane);
            dynasm!(self.ops ; .arch aarch64 ; fmul V(d.0).S4, V(n.0).S4, V(m.0).S[l]);
        }
    }

    /// `d += n·m[lane]` on f16 (lane 0..7; `m` must be v0..v15).
    pub fn fmla_8h_lane(&mut self, d: V, n: V, m: V, lane: u8) {
        if self.check(lane < 8 && m.0 < 16, || {
            format!("fmla .h[{lane}] with v{}", m.0)
        }) {
            let l = u32::from(lane);
            dynasm!(self.ops ; .arch aarch64 ; fmla V(d.0).H8, V(n.0).H8, V(m.0).H[l]);
        }
    }

    /// `d = n·m[lane]` on f16 (lane 0..7; `m` in v0..v15).
    pub fn fmul_8h_lane(&mut self, d: V, n: V, m: V, lane: u8) {
        if self.check(lane < 8 && m.0 < 16, || {
            format!("fmul .h[{lane}] with v{}", m.0)
        }) {
            let l = u32::from(lane);
            dynasm!(self.ops ; .arch aarch64 ; fmul V(d.0).H8, V(n.0).H8, V(m.0).H[l]);
        }
    }

    /// `s(d) = s(n)·s(m) + s(a)` (fused).
    pub fn fmadd_s(&mut self, d: V, n: V, m: V, a: V) {
        dynasm!(self.ops ; .arch aarch64 ; fmadd S(d.0), S(n.0), S(m.0), S(a.0));
    }

    pub fn fsqrt_s(&mut self, d: V, n: V) {
        dynasm!(self.ops ; .arch aarch64 ; fsqrt S(d.0), S(n.0));
    }

    /// `s(d) = n[0] + n[1]` (pairwise add of the low two lanes).
    pub fn faddp_s(&mut self, d: V, n: V) {
        dynasm!(self.ops ; .arch aarch64 ; faddp S(d.0), V(n.0).S2);
    }

    /// `s(d) = max of n`'s four lanes (NaN-propagating).
    pub fn fmaxv_s(&mut self, d: V, n: V) {
        dynasm!(self.ops ; .arch aarch64 ; fmaxv S(d.0), V(n.0).S4);
    }

    /// Sum of all four lanes into `s(d)` (two pairwise adds; `n` is clobbered).
    pub fn fsum_4s(&mut self, d: V, n: V) {
        self.faddp_4s(n, n, n);
        self.faddp_s(d, n);
    }

    /// `s(d) = w(n)` bit pattern.
    pub fn fmov_s_from_w(&mut self, d: V, n: X) {
        dynasm!(self.ops ; .arch aarch64 ; fmov S(d.0), W(n.0));
    }

    /// `w(d) = s(n)` bit pattern.
    pub fn fmov_w_from_s(&mut self, d: X, n: V) {
        dynasm!(self.ops ; .arch aarch64 ; fmov W(d.0), S(n.0));
    }

    /// Every lane of `d` (and `s(d)`) = `value` (built in `x17`).
    pub fn const_4s(&mut self, d: V, value: f32) {
        self.mov_imm(IP1, i64::from(value.to_bits()));
        dynasm!(self.ops ; .arch aarch64 ; dup V(d.0).S4, W(IP1.0));
    }

    /// Every f16 lane of `d` = `value` (rounded to nearest f16).
    pub fn const_8h(&mut self, d: V, value: f32) {
        let bits = half::f16::from_f32(value).to_bits();
        self.mov_imm(IP1, i64::from(bits));
        dynasm!(self.ops ; .arch aarch64 ; dup V(d.0).H8, W(IP1.0));
    }

    /// Widens the low four f16 lanes of `n` to f32.
    pub fn fcvtl_4s(&mut self, d: V, n: V) {
        dynasm!(self.ops ; .arch aarch64 ; fcvtl V(d.0).S4, V(n.0).H4);
    }

    /// Widens the high four f16 lanes of `n` to f32.
    pub fn fcvtl2_4s(&mut self, d: V, n: V) {
        dynasm!(self.ops ; .arch aarch64 ; fcvtl2 V(d.0).S4, V(n.0).H8);
    }

    /// Narrows four f32 lanes to the low four f16 lanes of `d` (round to nearest even);
    /// clears the high half.
    pub fn fcvtn_4h(&mut self, d: V, n: V) {
        // dynasm's table has only the f64 → f32 form of FCVTN; this is the sz = 0 encoding.
        self.inst(0x0e21_6800 | (n.0 << 5) | d.0);
    }

    /// Narrows four f32 lanes into the high four f16 lanes of `d`, keeping the low half.
    pub fn fcvtn2_8h(&mut self, d: V, n: V) {
        self.inst(0x4e21_6800 | (n.0 << 5) | d.0);
    }
}
