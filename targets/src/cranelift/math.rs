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

// ---------------------------------------------------------------------------------------
// Helper calls.

extern "C" fn bfly_jit_logf(x: f32) -> f32 {
    x.ln()
}

extern "C" fn bfly_jit_sinf(x: f32) -> f32 {
    x.sin()
}

extern "C" fn bfly_jit_cosf(x: f32) -> f32 {
    x.cos()
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
