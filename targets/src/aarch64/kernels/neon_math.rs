//! `e^x` on four f32 lanes, shared by the attention and softmax microkernels.
//!
//! The instruction sequence is the Cranelift backend's inline `exp`
//! (`cranelift/math.rs`, Cephes `expf`) operation for operation, so both backends give the
//! same bits for every input:
//!
//! - clamp x to [-104, 89] (FMIN/FMAX; NaN propagates as it does through Cranelift's
//!   compare + select);
//! - k = nearest(x·log2 e) by adding and subtracting 1.5·2^23, which also leaves k as an
//!   integer in the sum's low mantissa bits;
//! - r = x − k·ln2_hi − k·ln2_lo (ln2_hi has 9 significant bits, so k·ln2_hi is exact),
//!   |r| ≤ ln2/2;
//! - e^r ≈ 1 + r + r²·P(r), P of degree 5 by Horner with separate FMUL/FADD (no FMA, like
//!   Cranelift);
//! - scale by 2^k as 2^(k>>1) · 2^(k − (k>>1)), each factor built in the exponent bits
//!   ((n << 23) + bits(1.0)), so both are normal floats: overflow to +inf above ~88.72,
//!   gradual underflow below ~−87.34, 0 below ~−103.9, one final rounding.
//!
//! Max relative error against f64 over [−87, 88]: 8.0e-8 (< 1 ulp; measured on 2M points by
//! the test below, on a scalar model of this exact sequence; the Cranelift `exp`, being the
//! same sequence, has the same ≈ 7.9e-8). Cost: 32 NEON instructions per 4 lanes, 13 constant
//! registers.

use crate::aarch64::emit::{Asm, V};

pub const EXP_HI: f32 = 89.0;
pub const EXP_LO: f32 = -104.0;
pub const LOG2E: f32 = std::f32::consts::LOG2_E;
/// 355/512, exact in 9 bits.
pub const LN2_HI: f32 = 0.693_359_4;
pub const LN2_LO: f32 = -2.121_944_4e-4;
pub const EXP_P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];
/// 1.5·2^23: `t + MAGIC` leaves round-to-nearest-even(t) in the low mantissa bits.
pub const ROUND_MAGIC: f32 = 12_582_912.0;

/// The 13 constant registers of [`exp_4s`] (each a broadcast f32).
#[derive(Clone, Copy, Debug)]
pub struct ExpConsts {
    pub hi: V,
    pub lo: V,
    pub log2e: V,
    /// 1.5·2^23; read as int lanes it is also the bias subtracted to get k.
    pub magic: V,
    pub ln2_hi: V,
    pub ln2_lo: V,
    pub p: [V; 6],
    /// 1.0; as int lanes, 127 << 23 (the exponent bias of 2^n).
    pub one: V,
}

/// Registers used by [`ExpConsts::load`]: 13 consecutive from `first`.
pub const EXP_CONST_REGS: u32 = 13;

impl ExpConsts {
    /// Materializes the constants into `first..first+13` (via `x17`).
    pub fn load(asm: &mut Asm, first: u32) -> ExpConsts {
        let r = |i: u32| V(first + i);
        let c = ExpConsts {
            hi: r(0),
            lo: r(1),
            log2e: r(2),
            magic: r(3),
            ln2_hi: r(4),
            ln2_lo: r(5),
            p: [r(6), r(7), r(8), r(9), r(10), r(11)],
            one: r(12),
        };
        asm.comment("exp constants (Cephes expf, as cranelift/math.rs)");
        asm.const_4s(c.hi, EXP_HI);
        asm.const_4s(c.lo, EXP_LO);
        asm.const_4s(c.log2e, LOG2E);
        asm.const_4s(c.magic, ROUND_MAGIC);
        asm.const_4s(c.ln2_hi, LN2_HI);
        asm.const_4s(c.ln2_lo, LN2_LO);
        for (reg, &v) in c.p.iter().zip(EXP_P.iter()) {
            asm.const_4s(*reg, v);
        }
        asm.const_4s(c.one, 1.0);
        c
    }
}

/// Vector instructions one [`exp_4s`] emits (all on the FP/ASIMD pipes).
pub const EXP_OPS: u32 = 32;

/// `x = e^x` on four lanes; clobbers `t[0..3]`.
pub fn exp_4s(asm: &mut Asm, c: &ExpConsts, x: V, t: [V; 3]) {
    let [p, km, s] = t;
    asm.fmin_4s(x, x, c.hi);
    asm.fmax_4s(x, x, c.lo);
    asm.fmul_4s(p, x, c.log2e);
    asm.fadd_4s(km, p, c.magic);
    // k = nearest(x·log2e), exactly; then r = x − k·ln2 in two steps.
    asm.fsub_4s(p, km, c.magic);
    asm.fmul_4s(s, p, c.ln2_hi);
    asm.fsub_4s(x, x, s);
    asm.fmul_4s(s, p, c.ln2_lo);
    asm.fsub_4s(x, x, s);
    // P(r) by Horner.
    asm.fmul_4s(p, c.p[0], x);
    asm.fadd_4s(p, p, c.p[1]);
    for &coef in &c.p[2..] {
        asm.fmul_4s(p, p, x);
        asm.fadd_4s(p, p, coef);
    }
    // 1 + r + r²·P.
    asm.fmul_4s(s, x, x);
    asm.fmul_4s(p, p, s);
    asm.fadd_4s(p, p, x);
    asm.fadd_4s(p, p, c.one);
    // n = bits(k + magic) − bits(magic); 2^n = 2^(n>>1) · 2^(n − (n>>1)).
    asm.sub_4s(km, km, c.magic);
    asm.sshr_4s(s, km, 1);
    asm.sub_4s(km, km, s);
    asm.shl_4s(s, s, 23);
    asm.add_4s(s, s, c.one);
    asm.shl_4s(km, km, 23);
    asm.add_4s(km, km, c.one);
    asm.fmul_4s(p, p, s);
    asm.fmul_4s(x, p, km);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sequence of [`exp_4s`] on one lane, operation for operation in f32.
    fn model(x: f32) -> f32 {
        // Compare + select, like FMIN/FMAX here: NaN passes through (`f32::min` drops it).
        let x = if x > EXP_HI { EXP_HI } else { x };
        let x = if x < EXP_LO { EXP_LO } else { x };
        let km = x * LOG2E + ROUND_MAGIC;
        let k = km - ROUND_MAGIC;
        let r = x - k * LN2_HI;
        let r = r - k * LN2_LO;
        let mut p = EXP_P[0] * r + EXP_P[1];
        for &c in &EXP_P[2..] {
            p = p * r + c;
        }
        let y = p * (r * r) + r + 1.0;
        let n = (km.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
        let n1 = n >> 1;
        let n2 = n - n1;
        let pow2 = |e: i32| f32::from_bits(((e << 23) + 1.0f32.to_bits() as i32) as u32);
        y * pow2(n1) * pow2(n2)
    }

    #[test]
    fn relative_error_is_below_one_ulp() {
        let mut worst = 0.0f64;
        let steps = 2_000_000;
        for i in 0..=steps {
            let x = -87.0 + 175.0 * f64::from(i) / f64::from(steps);
            let x = x as f32;
            let want = f64::from(x).exp();
            let got = f64::from(model(x));
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 1e-7, "max relative error {worst:e}");
    }

    #[test]
    fn edges_saturate_like_expf() {
        assert_eq!(model(0.0), 1.0);
        assert_eq!(model(100.0), f32::INFINITY);
        assert_eq!(model(-200.0), 0.0);
        assert_eq!(model(f32::NEG_INFINITY), 0.0);
        assert!(model(f32::NAN).is_nan());
        let sub = model(-100.0);
        assert!(sub > 0.0 && sub < f32::MIN_POSITIVE);
        // One final rounding: within a subnormal ulp (2^-149) of the true value.
        assert!((f64::from(sub) - (-100.0f64).exp()).abs() <= 2f64.powi(-149));
    }

    #[test]
    fn emits_the_counted_instructions() {
        let mut a = Asm::new();
        let c = ExpConsts::load(&mut a, 16);
        let before = a.offset();
        exp_4s(&mut a, &c, V(0), [V(1), V(2), V(3)]);
        assert_eq!((a.offset() - before) as u32, 4 * EXP_OPS);
        assert!(a.finish().is_ok());
    }
}
