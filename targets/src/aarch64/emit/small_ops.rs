//! Instructions of the small per-token kernels (`kernels/quantize.rs`, `rope.rs`,
//! `copy.rs`): int8 quantization (FCVTAS, SMAX on bytes, the scalar `x == 0 ? a : b`
//! select), register-offset loads/stores with a byte offset, and the sign-extending load
//! of an `i32` token id.

use super::{Asm, Cond, V, Width, X};
use dynasmrt::{DynasmApi, dynasm};

impl Asm {
    /// f32 → i32 per lane, rounding to nearest with ties away from zero, saturating
    /// (NaN → 0).
    pub fn fcvtas_4s(&mut self, d: V, n: V) {
        dynasm!(self.ops ; .arch aarch64 ; fcvtas V(d.0).S4, V(n.0).S4);
    }

    /// Signed maximum of 16 i8 lanes.
    pub fn smax_16b(&mut self, d: V, n: V, m: V) {
        dynasm!(self.ops ; .arch aarch64 ; smax V(d.0).B16, V(n.0).B16, V(m.0).B16);
    }

    /// Every byte of `d` = `imm`.
    pub fn movi_16b(&mut self, d: V, imm: u8) {
        let i = u32::from(imm);
        dynasm!(self.ops ; .arch aarch64 ; movi V(d.0).B16, #i);
    }

    /// Sets the flags from `s(n)` compared with `+0.0` (unordered for NaN: `Eq` is false).
    pub fn fcmp_s_zero(&mut self, n: V) {
        dynasm!(self.ops ; .arch aarch64 ; fcmp S(n.0), 0.0);
    }

    /// `s(d) = cond ? s(n) : s(m)`.
    pub fn fcsel_s(&mut self, d: V, n: V, m: V, cond: Cond) {
        let (d, n, m) = (d.0, n.0, m.0);
        match cond {
            Cond::Eq => dynasm!(self.ops ; .arch aarch64 ; fcsel S(d), S(n), S(m), eq),
            Cond::Ne => dynasm!(self.ops ; .arch aarch64 ; fcsel S(d), S(n), S(m), ne),
            Cond::Lt => dynasm!(self.ops ; .arch aarch64 ; fcsel S(d), S(n), S(m), lt),
            Cond::Ge => dynasm!(self.ops ; .arch aarch64 ; fcsel S(d), S(n), S(m), ge),
            Cond::Gt => dynasm!(self.ops ; .arch aarch64 ; fcsel S(d), S(n), S(m), gt),
            Cond::Le => dynasm!(self.ops ; .arch aarch64 ; fcsel S(d), S(n), S(m), le),
            Cond::Lo => dynasm!(self.ops ; .arch aarch64 ; fcsel S(d), S(n), S(m), lo),
            Cond::Hs => dynasm!(self.ops ; .arch aarch64 ; fcsel S(d), S(n), S(m), hs),
            Cond::Hi => dynasm!(self.ops ; .arch aarch64 ; fcsel S(d), S(n), S(m), hi),
            Cond::Ls => dynasm!(self.ops ; .arch aarch64 ; fcsel S(d), S(n), S(m), ls),
        }
    }

    /// `t = [n + m]` with `m` a byte offset (no scaling).
    pub fn ldr_reg(&mut self, w: Width, t: V, n: X, m: X) {
        let (t, n, m) = (t.0, n.0, m.0);
        match w {
            Width::B => dynasm!(self.ops ; .arch aarch64 ; ldr B(t), [X(n), X(m)]),
            Width::H => dynasm!(self.ops ; .arch aarch64 ; ldr H(t), [X(n), X(m)]),
            Width::S => dynasm!(self.ops ; .arch aarch64 ; ldr S(t), [X(n), X(m)]),
            Width::D => dynasm!(self.ops ; .arch aarch64 ; ldr D(t), [X(n), X(m)]),
            Width::Q => dynasm!(self.ops ; .arch aarch64 ; ldr Q(t), [X(n), X(m)]),
        }
    }

    /// `[n + m] = t` with `m` a byte offset (no scaling).
    pub fn str_reg(&mut self, w: Width, t: V, n: X, m: X) {
        let (t, n, m) = (t.0, n.0, m.0);
        match w {
            Width::B => dynasm!(self.ops ; .arch aarch64 ; str B(t), [X(n), X(m)]),
            Width::H => dynasm!(self.ops ; .arch aarch64 ; str H(t), [X(n), X(m)]),
            Width::S => dynasm!(self.ops ; .arch aarch64 ; str S(t), [X(n), X(m)]),
            Width::D => dynasm!(self.ops ; .arch aarch64 ; str D(t), [X(n), X(m)]),
            Width::Q => dynasm!(self.ops ; .arch aarch64 ; str Q(t), [X(n), X(m)]),
        }
    }

    /// `d = sign_extend(i32 [n + 4·m])`: element `m` of an `i32` array.
    pub fn ldrsw_idx(&mut self, d: X, n: X, m: X) {
        dynasm!(self.ops ; .arch aarch64 ; ldrsw X(d.0), [X(n.0), X(m.0), lsl #2]);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::one;
    use super::super::{Cond, V, Width, X};

    #[test]
    fn quantization_ops_decode_as_written() {
        assert_eq!(one(|a| a.fcvtas_4s(V(4), V(29))), "fcvtas v4.4s, v29.4s");
        assert_eq!(
            one(|a| a.smax_16b(V(1), V(2), V(31))),
            "smax v1.16b, v2.16b, v31.16b"
        );
        let movi = one(|a| a.movi_16b(V(19), 0x81));
        assert!(movi.starts_with("movi v19.16b, #0x81"), "{movi}");
        let fcmp = one(|a| a.fcmp_s_zero(V(3)));
        assert!(fcmp.starts_with("fcmp s3, #0"), "{fcmp}");
        assert_eq!(
            one(|a| a.fcsel_s(V(1), V(18), V(21), Cond::Eq)),
            "fcsel s1, s18, s21, eq"
        );
    }

    #[test]
    fn register_offset_memory_ops_decode_as_written() {
        assert_eq!(
            one(|a| a.ldr_reg(Width::Q, V(5), X(0), X(7))),
            "ldr q5, [x0, x7]"
        );
        assert_eq!(
            one(|a| a.str_reg(Width::S, V(25), X(12), X(7))),
            "str s25, [x12, x7]"
        );
        assert_eq!(
            one(|a| a.ldrsw_idx(X(9), X(4), X(2))),
            "ldrsw x9, [x4, x2, lsl #2]"
        );
    }
}
