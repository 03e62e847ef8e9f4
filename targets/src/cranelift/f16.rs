//! f16 ⇄ f32 in-line, on one value or four lanes, bit-exact with the `half` crate (whose
//! software path and F16C/FP16 hardware agree): NaNs come out quiet with their payload
//! kept, f32 → f16 rounds to nearest even, overflows to ±inf, and handles subnormals.
//! Branch-free integer code (F. Giesen's `half_to_float` / `float_to_half_fast3_rtne`),
//! so it needs no CPU feature and vector loops convert four values at once.

use super::math::Lanes;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Value};
use cranelift_frontend::FunctionBuilder;

/// `cond(x, y) ? a : c` per lane with a signed int comparison.
fn iselect(
    b: &mut FunctionBuilder,
    l: Lanes,
    cc: IntCC,
    x: Value,
    y: Value,
    a: Value,
    c: Value,
) -> Value {
    let m = b.ins().icmp(cc, x, y);
    match l {
        Lanes::One => b.ins().select(m, a, c),
        Lanes::Four => b.ins().bitselect(m, a, c),
    }
}

fn and_const(b: &mut FunctionBuilder, l: Lanes, x: Value, mask: u32) -> Value {
    let m = l.iconst(b, mask as i32);
    b.ins().band(x, m)
}

fn add_const(b: &mut FunctionBuilder, l: Lanes, x: Value, c: u32) -> Value {
    let c = l.iconst(b, c as i32);
    b.ins().iadd(x, c)
}

/// f16 bits (zero-extended into I32 / I32X4 lanes) → F32 / F32X4.
pub(super) fn to_f32(b: &mut FunctionBuilder, l: Lanes, h: Value) -> Value {
    const EXP_F32: u32 = 0x7c00 << 13; // the f16 exponent field after the shift
    let em = and_const(b, l, h, 0x7fff);
    let o = b.ins().ishl_imm_s(em, 13);
    let exp = and_const(b, l, o, EXP_F32);
    let o = add_const(b, l, o, (127 - 15) << 23);
    // Inf/NaN: exponent all ones; quiet the NaN (set the top mantissa bit) as `half` does.
    let inf = add_const(b, l, o, (128 - 16) << 23);
    let quiet = l.iconst(b, 0x0040_0000);
    let nan = b.ins().bor(inf, quiet);
    let inf_lim = l.iconst(b, 0x7c00);
    let special = iselect(b, l, IntCC::SignedGreaterThan, em, inf_lim, nan, inf);
    // Zero/subnormal: renormalize through a float subtraction (exact).
    let magic = l.iconst(b, 113 << 23);
    let sub = add_const(b, l, o, 1 << 23);
    let sub_f = l.bits(b, sub, false);
    let magic_f = l.bits(b, magic, false);
    let sub_f = b.ins().fsub(sub_f, magic_f);
    let sub = l.bits(b, sub_f, true);
    let zero = l.iconst(b, 0);
    let exp_max = l.iconst(b, EXP_F32 as i32);
    let r = iselect(b, l, IntCC::Equal, exp, zero, sub, o);
    let r = iselect(b, l, IntCC::Equal, exp, exp_max, special, r);
    let sign = and_const(b, l, h, 0x8000);
    let sign = b.ins().ishl_imm_s(sign, 16);
    let r = b.ins().bor(r, sign);
    l.bits(b, r, false)
}

/// F32 / F32X4 → f16 bits in the low 16 bits of I32 / I32X4 lanes (upper bits zero).
pub(super) fn from_f32(b: &mut FunctionBuilder, l: Lanes, x: Value) -> Value {
    let u = l.bits(b, x, true);
    let sign = and_const(b, l, u, 0x8000_0000);
    let a = b.ins().bxor(u, sign); // |x| bits, so signed compares below are unsigned ones
    // ≥ 65536.0 (rounds to inf) or inf/NaN. NaN: 0x7e00 | top mantissa bits, like `half`.
    let man = and_const(b, l, a, 0x007f_ffff);
    let man = b.ins().ushr_imm_s(man, 13);
    let nan_base = l.iconst(b, 0x7e00);
    let nan = b.ins().bor(nan_base, man);
    let inf = l.iconst(b, 0x7c00);
    let f32_inf = l.iconst(b, 0x7f80_0000);
    let big = iselect(b, l, IntCC::SignedGreaterThan, a, f32_inf, nan, inf);
    // Below 2^-14: f16 subnormal or zero. Adding 0.5 lines the f16 subnormal ulp (2^-24) up
    // with the f32 ulp of 0.5, so the FPU's round-to-nearest-even does the rounding.
    let magic = l.iconst(b, 126 << 23);
    let af = l.bits(b, a, false);
    let magic_f = l.bits(b, magic, false);
    let s = b.ins().fadd(af, magic_f);
    let s = l.bits(b, s, true);
    let sub = b.ins().isub(s, magic);
    // Normal: rebias, add 0xfff plus the lowest kept bit (ties to even), shift.
    let odd = b.ins().ushr_imm_s(a, 13);
    let odd = and_const(b, l, odd, 1);
    let n = add_const(
        b,
        l,
        a,
        ((15u32.wrapping_sub(127)) << 23).wrapping_add(0xfff),
    );
    let n = b.ins().iadd(n, odd);
    let norm = b.ins().ushr_imm_s(n, 13);
    let min_normal = l.iconst(b, 113 << 23);
    let r = iselect(b, l, IntCC::SignedLessThan, a, min_normal, sub, norm);
    let f16_over = l.iconst(b, (127 + 16) << 23);
    let r = iselect(b, l, IntCC::SignedGreaterThanOrEqual, a, f16_over, big, r);
    let sign = b.ins().ushr_imm_s(sign, 16);
    b.ins().bor(r, sign)
}
