//! Transcendentals: `exp` and `tanh` as inline code that is the same sequence of operations
//! for one f32 and for four lanes (so vector and serial loops agree bit for bit), and
//! `log`/`sin`/`cos` as calls to Rust helpers registered with the JIT.
//!
//! **exp** (Cephes `expf`): clamp x to [-104, 89] (NaN passes through), split x = k·ln2 + r
//! with k = nearest(x·log2 e) (by the 1.5·2^23 magic-add, which also yields k as an int) and a
//! two-constant ln2 (the high part has 9 significant bits, so k·C1 is exact), approximate e^r on |r| ≤ ln2/2 by
//! 1 + r + r²·P(r) (degree-5 minimax P), then scale by 2^k as 2^(k>>1) · 2^(k-(k>>1)) so both
//! factors are normal floats: results overflow to +inf above ~88.72, go subnormal below
//! ~-87.34 and round to 0 below ~-103.9, all with one final rounding. Measured max relative
//! error against f64 over [-87, 88]: see `targets/tests/cranelift_math.rs` (≤ 2 ulp).
//!
//! **tanh** (Cephes `tanhf`): |x| < 0.625 uses x + x³·Q(x²); otherwise
//! 1 − 2/(e^(2|x|) + 1), which reaches exactly 1 once e^(2|x|) overflows; the sign is copied
//! from x last, so tanh(−0) = −0 and NaN stays NaN.
//!
//! **sin / cos** (Cephes `sinf`/`cosf` polynomials): for |x| ≤ [`TRIG_MAX`] inline. With
//! q = nearest(|x|·2/π) (magic add, as exp), r = |x| − q·π/2 by a three-constant π/2 whose
//! first two parts have 8 and 11 significant bits, so q·C1 and q·C2 are exact for q < 2^13
//! (|x| ≤ 8192 gives q ≤ 5216) and |x| − q·C1 is exact (Sterbenz); |r| ≤ π/4. sin r and cos r
//! are degree-7 / degree-6 minimax polynomials; q mod 4 picks which one and the sign. The
//! error of r is ≲ 1 ulp of r plus q·1.8e-15 (the three-constant π/2 is off by 8.9e-16·2),
//! so the result's absolute error stays below 1.2e-7 over [-8192, 8192] (measured 9.1e-8
//! in `targets/tests/cranelift_math.rs`; relative error where |result| ≥ 2^-10 below
//! 1.5 × 2^-23, measured 1.08 × 2^-23 — Rust's `f32::sin`/`cos` are correctly rounded-ish,
//! ≤ 0.5 × 2^-23 plus their own rounding).
//! 4-lane code runs it inline; scalar code calls the helper [`sin_cos_f32`], the same
//! operations in Rust (Rust never fuses a multiply-add), so serial and vector loops stay
//! bit-identical while scalar kernels that unroll many sin/cos (the rope table) keep small
//! code. |x| > 8192, ±inf and NaN: the helper returns Rust's `f32::sin`/`cos`; 4-lane code
//! calls the helper for every lane on a branch taken only when some lane needs it.

use bfly_ir::kernel::UnOp;
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::{AbiParam, InstBuilder, MemFlagsData, Signature, Type, Value, types};
use cranelift_frontend::FunctionBuilder;
use cranelift_jit::JITBuilder;
use cranelift_module::{FuncId, Linkage, Module};

/// Scalar f32 or 4×f32: the types and constants one piece of math code needs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Lanes {
    One,
    Four,
}

impl Lanes {
    pub fn float(self) -> Type {
        match self {
            Lanes::One => types::F32,
            Lanes::Four => types::F32X4,
        }
    }

    pub fn int(self) -> Type {
        match self {
            Lanes::One => types::I32,
            Lanes::Four => types::I32X4,
        }
    }

    pub fn fconst(self, b: &mut FunctionBuilder, v: f32) -> Value {
        let s = b.ins().f32const(v);
        match self {
            Lanes::One => s,
            Lanes::Four => b.ins().splat(types::F32X4, s),
        }
    }

    pub fn iconst(self, b: &mut FunctionBuilder, v: i32) -> Value {
        let s = b.ins().iconst(types::I32, i64::from(v));
        match self {
            Lanes::One => s,
            Lanes::Four => b.ins().splat(types::I32X4, s),
        }
    }

    /// Reinterprets float bits as int lanes or back.
    pub fn bits(self, b: &mut FunctionBuilder, v: Value, to_int: bool) -> Value {
        let ty = if to_int { self.int() } else { self.float() };
        b.ins().bitcast(ty, MemFlagsData::new(), v)
    }

    /// `cond(x, y) ? a : c` per lane, with a float comparison.
    pub fn fselect(
        self,
        b: &mut FunctionBuilder,
        cc: FloatCC,
        x: Value,
        y: Value,
        a: Value,
        c: Value,
    ) -> Value {
        let m = b.ins().fcmp(cc, x, y);
        match self {
            Lanes::One => b.ins().select(m, a, c),
            Lanes::Four => {
                let m = b.ins().bitcast(types::F32X4, MemFlagsData::new(), m);
                b.ins().bitselect(m, a, c)
            }
        }
    }
}

/// `a·x + c` with separate multiply and add (no FMA: it is a libcall where the host lacks
/// it, and keeping one rounding pattern keeps every host's results equal).
fn mul_add(b: &mut FunctionBuilder, l: Lanes, a: Value, x: Value, c: f32) -> Value {
    let p = b.ins().fmul(a, x);
    let c = l.fconst(b, c);
    b.ins().fadd(p, c)
}

/// Horner evaluation of `coeffs[0]·x^(n-1) + … + coeffs[n-1]`.
fn horner(b: &mut FunctionBuilder, l: Lanes, x: Value, coeffs: &[f32]) -> Value {
    let mut p = l.fconst(b, coeffs[0]);
    for &c in &coeffs[1..] {
        p = mul_add(b, l, p, x, c);
    }
    p
}

const EXP_HI: f32 = 89.0;
const EXP_LO: f32 = -104.0;
const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4; // 0.693359375 = 355/512, exact
const LN2_LO: f32 = -2.121_944_4e-4;
const EXP_P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// 1.5·2^23: adding it to |t| < 2^22 leaves round-to-nearest-even(t) in the low mantissa
/// bits, so one add replaces both `nearest` and a float → int conversion.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// e^x on F32 or F32X4 (see the module doc).
pub(super) fn exp(b: &mut FunctionBuilder, l: Lanes, x: Value) -> Value {
    // Clamp with compare + select: NaN fails both tests and passes through (and this is a
    // single min/max instruction where `fmin`/`fmax` need a NaN-fixing sequence).
    let hi = l.fconst(b, EXP_HI);
    let lo = l.fconst(b, EXP_LO);
    let x = l.fselect(b, FloatCC::GreaterThan, x, hi, hi, x);
    let x = l.fselect(b, FloatCC::LessThan, x, lo, lo, x);
    let log2e = l.fconst(b, LOG2E);
    let t = b.ins().fmul(x, log2e);
    let magic = l.fconst(b, ROUND_MAGIC);
    let km = b.ins().fadd(t, magic);
    let k = b.ins().fsub(km, magic); // nearest(t), exactly
    let c1 = l.fconst(b, LN2_HI);
    let c2 = l.fconst(b, LN2_LO);
    let kc1 = b.ins().fmul(k, c1);
    let r = b.ins().fsub(x, kc1);
    let kc2 = b.ins().fmul(k, c2);
    let r = b.ins().fsub(r, kc2);
    let p = horner(b, l, r, &EXP_P);
    let rr = b.ins().fmul(r, r);
    let y = b.ins().fmul(p, rr);
    let y = b.ins().fadd(y, r);
    let one = l.fconst(b, 1.0);
    let y = b.ins().fadd(y, one);
    // 2^k as two normal factors: k ∈ [-150, 129] after the clamp. The int k is the magic
    // sum's bits minus the magic's bits (garbage for NaN, where y is NaN anyway).
    let kb = l.bits(b, km, true);
    let mb = l.iconst(b, ROUND_MAGIC.to_bits() as i32);
    let n = b.ins().isub(kb, mb);
    let n1 = b.ins().sshr_imm_s(n, 1);
    let n2 = b.ins().isub(n, n1);
    let s1 = pow2(b, l, n1);
    let s2 = pow2(b, l, n2);
    let y = b.ins().fmul(y, s1);
    b.ins().fmul(y, s2)
}

/// 2^n for int lanes n ∈ [-126, 127].
fn pow2(b: &mut FunctionBuilder, l: Lanes, n: Value) -> Value {
    let bias = l.iconst(b, 127);
    let e = b.ins().iadd(n, bias);
    let e = b.ins().ishl_imm_s(e, 23);
    l.bits(b, e, false)
}

const TANH_Q: [f32; 5] = [
    -5.704_988_7e-3,
    2.063_909e-2,
    -5.373_971_6e-2,
    1.333_144_2e-1,
    -3.333_328e-1,
];

/// tanh(x) on F32 or F32X4 (see the module doc).
pub(super) fn tanh(b: &mut FunctionBuilder, l: Lanes, x: Value) -> Value {
    let ax = b.ins().fabs(x);
    // Small |x|: ax + ax·z·Q(z), z = ax².
    let z = b.ins().fmul(ax, ax);
    let q = horner(b, l, z, &TANH_Q);
    let zq = b.ins().fmul(z, q);
    let t = b.ins().fmul(ax, zq);
    let small = b.ins().fadd(ax, t);
    // Large |x|: 1 - 2 / (e^(2|x|) + 1).
    let two_ax = b.ins().fadd(ax, ax);
    let e = exp(b, l, two_ax);
    let one = l.fconst(b, 1.0);
    let two = l.fconst(b, 2.0);
    let d = b.ins().fadd(e, one);
    let q = b.ins().fdiv(two, d);
    let large = b.ins().fsub(one, q);
    let cut = l.fconst(b, 0.625);
    let r = l.fselect(b, FloatCC::LessThan, ax, cut, small, large);
    // r ≥ 0 (or NaN): OR in x's sign bit (`fcopysign` has no x64 vector lowering).
    let xi = l.bits(b, x, true);
    let sign = l.iconst(b, i32::MIN);
    let sign = b.ins().band(xi, sign);
    let ri = l.bits(b, r, true);
    let ri = b.ins().bor(ri, sign);
    l.bits(b, ri, false)
}

/// Largest |x| the inline sin/cos handle (see the module doc); larger, ±inf and NaN lanes
/// call the helper.
pub(super) const TRIG_MAX: f32 = 8192.0;

const TWO_OVER_PI: f32 = std::f32::consts::FRAC_2_PI;
const PIO2_1: f32 = 1.570_312_5; // 201/128, 8 significant bits
const PIO2_2: f32 = 4.837_513e-4; // 0x39fda000, 11 significant bits
const PIO2_3: f32 = 7.549_79e-8;
const SIN_P: [f32; 3] = [-1.951_529_6e-4, 8.332_161e-3, -1.666_665_5e-1];
const COS_P: [f32; 3] = [2.443_315_7e-5, -1.388_731_6e-3, 4.166_664_6e-2];

/// sin(x) or cos(x) (`cos`) on F32 or F32X4, valid for |x| ≤ [`TRIG_MAX`] (other lanes hold
/// garbage: the caller replaces them with the helper's result). See the module doc.
pub(super) fn sin_cos(b: &mut FunctionBuilder, l: Lanes, x: Value, cos: bool) -> Value {
    let ax = b.ins().fabs(x);
    let k = l.fconst(b, TWO_OVER_PI);
    let t = b.ins().fmul(ax, k);
    let magic = l.fconst(b, ROUND_MAGIC);
    let qm = b.ins().fadd(t, magic);
    let q = b.ins().fsub(qm, magic); // nearest(|x|·2/π), exactly
    let c1 = l.fconst(b, PIO2_1);
    let c2 = l.fconst(b, PIO2_2);
    let c3 = l.fconst(b, PIO2_3);
    let qc1 = b.ins().fmul(q, c1);
    let r = b.ins().fsub(ax, qc1);
    let qc2 = b.ins().fmul(q, c2);
    let r = b.ins().fsub(r, qc2);
    let qc3 = b.ins().fmul(q, c3);
    let r = b.ins().fsub(r, qc3);
    let z = b.ins().fmul(r, r);
    // sin r = r + r·z·P(z)
    let ps = horner(b, l, z, &SIN_P);
    let rz = b.ins().fmul(r, z);
    let ps = b.ins().fmul(rz, ps);
    let ps = b.ins().fadd(r, ps);
    // cos r = 1 − z/2 + z²·Q(z)
    let pc = horner(b, l, z, &COS_P);
    let zz = b.ins().fmul(z, z);
    let pc = b.ins().fmul(zz, pc);
    let half = l.fconst(b, 0.5);
    let hz = b.ins().fmul(z, half);
    let one = l.fconst(b, 1.0);
    let c = b.ins().fsub(one, hz);
    let pc = b.ins().fadd(c, pc);
    // q as an int: the magic sum's bits minus the magic's bits.
    let qb = l.bits(b, qm, true);
    let mb = l.iconst(b, ROUND_MAGIC.to_bits() as i32);
    let qi = b.ins().isub(qb, mb);
    // Odd q swaps the polynomials.
    let one_i = l.iconst(b, 1);
    let odd = b.ins().band(qi, one_i);
    let zero_i = l.iconst(b, 0);
    let even = b
        .ins()
        .icmp(cranelift_codegen::ir::condcodes::IntCC::Equal, odd, zero_i);
    let (on_even, on_odd) = if cos { (pc, ps) } else { (ps, pc) };
    let v = match l {
        Lanes::One => b.ins().select(even, on_even, on_odd),
        Lanes::Four => {
            let m = l.bits(b, even, false);
            b.ins().bitselect(m, on_even, on_odd)
        }
    };
    // Sign: sin is negative for q mod 4 ∈ {2, 3} (times x's sign), cos for {1, 2}.
    let two_i = l.iconst(b, 2);
    let qs = if cos { b.ins().iadd(qi, one_i) } else { qi };
    let neg = b.ins().band(qs, two_i);
    let mut sign = b.ins().ishl_imm_s(neg, 30);
    if !cos {
        let xi = l.bits(b, x, true);
        let sb = l.iconst(b, i32::MIN);
        let xs = b.ins().band(xi, sb);
        sign = b.ins().bxor(sign, xs);
    }
    let vi = l.bits(b, v, true);
    let vi = b.ins().bxor(vi, sign);
    l.bits(b, vi, false)
}

// ---------------------------------------------------------------------------------------
// Helper calls.

extern "C" fn bfly_jit_logf(x: f32) -> f32 {
    x.ln()
}

extern "C" fn bfly_jit_sinf(x: f32) -> f32 {
    sin_cos_f32(x, false)
}

extern "C" fn bfly_jit_cosf(x: f32) -> f32 {
    sin_cos_f32(x, true)
}

/// [`sin_cos`] in Rust, operation for operation (same constants, same order, no fused
/// multiply-add), for |x| ≤ [`TRIG_MAX`]; Rust's `f32::sin`/`cos` beyond and for ±inf, NaN.
pub(crate) fn sin_cos_f32(x: f32, cos: bool) -> f32 {
    let ax = x.abs();
    if ax.is_nan() || ax > TRIG_MAX {
        return if cos { x.cos() } else { x.sin() };
    }
    let qm = ax * TWO_OVER_PI + ROUND_MAGIC;
    let q = qm - ROUND_MAGIC;
    let r = ax - q * PIO2_1;
    let r = r - q * PIO2_2;
    let r = r - q * PIO2_3;
    let z = r * r;
    let horner = |c: &[f32; 3]| (c[0] * z + c[1]) * z + c[2];
    let ps = r + (r * z) * horner(&SIN_P);
    let pc = (1.0 - z * 0.5) + (z * z) * horner(&COS_P);
    let qi = (qm.to_bits() as i32).wrapping_sub(ROUND_MAGIC.to_bits() as i32);
    let even = qi & 1 == 0;
    let v = if even == cos { pc } else { ps };
    let mut sign = ((if cos { qi.wrapping_add(1) } else { qi }) & 2) << 30;
    if !cos {
        sign ^= (x.to_bits() & 0x8000_0000) as i32;
    }
    f32::from_bits(v.to_bits() ^ sign as u32)
}

/// A scalar `f32 → f32` Rust function the generated code calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Helper {
    Log,
    Sin,
    Cos,
}

impl Helper {
    pub const ALL: [Helper; 3] = [Helper::Log, Helper::Sin, Helper::Cos];

    pub fn of(op: UnOp) -> Option<Helper> {
        match op {
            UnOp::Log => Some(Helper::Log),
            UnOp::Sin => Some(Helper::Sin),
            UnOp::Cos => Some(Helper::Cos),
            _ => None,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Helper::Log => "bfly_jit_logf",
            Helper::Sin => "bfly_jit_sinf",
            Helper::Cos => "bfly_jit_cosf",
        }
    }

    fn address(self) -> *const u8 {
        let f: extern "C" fn(f32) -> f32 = match self {
            Helper::Log => bfly_jit_logf,
            Helper::Sin => bfly_jit_sinf,
            Helper::Cos => bfly_jit_cosf,
        };
        f as *const u8
    }
}

/// The helpers' module declarations, imported into a function on first use.
pub(super) struct Helpers {
    pub ids: [FuncId; 3],
    pub sig: Signature,
}

/// Makes the helpers resolvable by the JIT's linker (before the module exists).
pub(super) fn register(jb: &mut JITBuilder) {
    for h in Helper::ALL {
        jb.symbol(h.symbol(), h.address());
    }
}

pub(super) fn declare(module: &mut impl Module) -> Result<Helpers, String> {
    let mut sig = module.make_signature();
    sig.params.push(AbiParam::new(types::F32));
    sig.returns.push(AbiParam::new(types::F32));
    let mut ids = Vec::with_capacity(3);
    for h in Helper::ALL {
        let id = module
            .declare_function(h.symbol(), Linkage::Import, &sig)
            .map_err(|e| e.to_string())?;
        ids.push(id);
    }
    Ok(Helpers {
        ids: [ids[0], ids[1], ids[2]],
        sig,
    })
}
