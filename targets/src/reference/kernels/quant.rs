//! Quantization numerics: int8 symmetric per-row (DESIGN §5) and IEEE binary16 rounding.
//!
//! fp16 is implemented by hand rather than through a crate so the oracle's rounding rule is
//! visible and tested bit by bit, independent of what the JIT backends use.

/// Symmetric per-row int8 quantization.
///
/// Shapes: `x: [rows, d]`; returns `(q: [rows, d], scales: [rows])` with
/// `scale = max|x_row| / 127` and `q = clamp(round(x/scale), −127, 127)`, rounding half away
/// from zero. An all-zero row gets scale 1 and zeros, so dequantization never divides by zero
/// and the row round-trips exactly.
pub fn quantize_int8_rows(x: &[f64], rows: usize, d: usize) -> (Vec<i8>, Vec<f64>) {
    debug_assert_eq!(x.len(), rows * d);
    let mut q = Vec::with_capacity(x.len());
    let mut scales = Vec::with_capacity(rows);
    for row in x.chunks_exact(d.max(1)).take(rows) {
        let max = row.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let scale = if max == 0.0 { 1.0 } else { max / 127.0 };
        // The clamp only guards the last ulp: max/scale can round to 127.000…01.
        q.extend(
            row.iter()
                .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8),
        );
        scales.push(scale);
    }
    // d = 0 makes chunks_exact see no rows; keep one scale per row anyway.
    scales.resize(rows, 1.0);
    (q, scales)
}

/// Inverse of [`quantize_int8_rows`]: `x[r, j] = q[r, j] · scales[r]`.
///
/// Shapes: `q: [rows, d]`, `scales: [rows]`; returns `[rows, d]`.
pub fn dequantize_int8_rows(q: &[i8], scales: &[f64], rows: usize, d: usize) -> Vec<f64> {
    debug_assert_eq!(q.len(), rows * d);
    debug_assert_eq!(scales.len(), rows);
    q.iter()
        .enumerate()
        .map(|(i, &v)| f64::from(v) * scales[i / d])
        .collect()
}

/// Largest finite binary16 value.
const F16_MAX: f64 = 65504.0;

/// `2^e` built from its bit pattern, exact for `−1022 ≤ e ≤ 1023`.
fn pow2(e: i32) -> f64 {
    debug_assert!((-1022..=1023).contains(&e));
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// `floor(log2 a)` for finite `a > 0`, read from the exponent field. f64 subnormals report
/// −1023, which is far below anything binary16 can represent, so they round to zero anyway.
fn floor_log2(a: f64) -> i32 {
    let biased = ((a.to_bits() >> 52) & 0x7ff) as i32;
    if biased == 0 { -1023 } else { biased - 1023 }
}

/// Rounds `x` to the nearest IEEE binary16 value (round to nearest, ties to even), returned as
/// `f64`.
///
/// Normal binary16 numbers have 11 significant bits, so in binade `[2^e, 2^(e+1))` the spacing
/// is `2^(e−10)`; below `2^−14` the format is subnormal with fixed spacing `2^−24`. Dividing by
/// the spacing is exact (a power of two), so rounding the quotient to an integer with ties to
/// even is exactly IEEE rounding; a carry into the next binade lands on its first value, which
/// is representable. Results above 65504 (i.e. inputs ≥ 65520) overflow to ±∞. Signs of zero
/// are kept; NaN stays NaN.
pub fn round_to_f16(x: f64) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    let a = x.abs();
    let spacing = pow2(floor_log2(a).max(-14) - 10);
    let r = (a / spacing).round_ties_even() * spacing;
    let r = if r > F16_MAX { f64::INFINITY } else { r };
    r.copysign(x)
}

/// IEEE binary16 bit pattern of `round_to_f16(x)`. NaN encodes as the quiet NaN `0x7E00`
/// (with x's sign), since payloads are not modeled.
pub fn f16_bits(x: f64) -> u16 {
    let sign: u16 = if x.is_sign_negative() { 0x8000 } else { 0 };
    if x.is_nan() {
        return sign | 0x7E00;
    }
    let a = round_to_f16(x).abs();
    let magnitude = if a == f64::INFINITY {
        0x7C00
    } else if a < pow2(-14) {
        // Subnormal (or zero): the value is an exact multiple of 2^−24 below 1024·2^−24.
        (a / pow2(-24)) as u16
    } else {
        let e = floor_log2(a);
        let mantissa = ((a / pow2(e) - 1.0) * 1024.0) as u16;
        (((e + 15) as u16) << 10) | mantissa
    };
    sign | magnitude
}

/// Value of an IEEE binary16 bit pattern (exact in `f64`).
pub fn f16_from_bits(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let mantissa = f64::from(bits & 0x3ff);
    let magnitude = match exp {
        0 => mantissa * pow2(-24),
        31 if mantissa == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + mantissa / 1024.0) * pow2(exp - 15),
    };
    sign * magnitude
}
