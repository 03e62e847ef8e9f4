//! Integer SIMD: SDOT (FEAT_DotProd), the widening multiplies that replace it on CPUs
//! without it, pairwise and across-lane adds, shifts.

use super::{Asm, V};
use dynasmrt::{DynasmApi, dynasm};

impl Asm {
    /// `d.4s[i] += Σ_{j<4} n.16b[4i+j] · m.16b[4i+j]` (signed; FEAT_DotProd).
    pub fn sdot_4s(&mut self, d: V, n: V, m: V) {
        dynasm!(self.ops ; .arch aarch64 ; sdot V(d.0).S4, V(n.0).B16, V(m.0).B16);
    }

    /// `d.4s[i] += Σ_j n.16b[4i+j] · m.4b[lane][j]` (by element; `m` in v0..v15? no: any
    /// v0..v31 for .4b lanes; lane 0..3).
    pub fn sdot_4s_lane(&mut self, d: V, n: V, m: V, lane: u8) {
        if self.check(lane < 4, || format!("sdot lane {lane}")) {
            let l = u32::from(lane);
            dynasm!(self.ops ; .arch aarch64 ; sdot V(d.0).S4, V(n.0).B16, V(m.0).B4[l]);
        }
    }

    /// `d.8h = n.8b (low) × m.8b (low)` widened to i16.
    pub fn smull_8h(&mut self, d: V, n: V, m: V) {
        dynasm!(self.ops ; .arch aarch64 ; smull V(d.0).H8, V(n.0).B8, V(m.0).B8);
    }

    /// `d.8h = n.16b (high) × m.16b (high)` widened to i16.
    pub fn smull2_8h(&mut self, d: V, n: V, m: V) {
        dynasm!(self.ops ; .arch aarch64 ; smull2 V(d.0).H8, V(n.0).B16, V(m.0).B16);
    }

    /// `d.8h += n.8b × m.8b` (low halves, widened). Each i16 lane holds at most two
    /// products of i8 (≤ 2·128² = 32768 — one over i16; the quantizer keeps −127..127 so
    /// two products fit).
    pub fn smlal_8h(&mut self, d: V, n: V, m: V) {
        dynasm!(self.ops ; .arch aarch64 ; smlal V(d.0).H8, V(n.0).B8, V(m.0).B8);
    }

    /// `d.8h += n.16b (high) × m.16b (high)`.
    pub fn smlal2_8h(&mut self, d: V, n: V, m: V) {
        dynasm!(self.ops ; .arch aarch64 ; smlal2 V(d.0).H8, V(n.0).B16, V(m.0).B16);
    }

    /// `d.4s += pairwise sums of n.8h` (widening).
    pub fn sadalp_4s(&mut self, d: V, n: V) {
        dynasm!(self.ops ; .arch aarch64 ; sadalp V(d.0).S4, V(n.0).H8);
    }

    /// `s(d) = Σ n.4s` (i32, wrapping).
    pub fn addv_s(&mut self, d: V, n: V) {
        dynasm!(self.ops ; .arch aarch64 ; addv S(d.0), V(n.0).S4);
    }

    /// Pairwise add of i32 lanes: `[n0+n1, n2+n3, m0+m1, m2+m3]`.
    pub fn addp_4s(&mut self, d: V, n: V, m: V) {
        dynasm!(self.ops ; .arch aarch64 ; addp V(d.0).S4, V(n.0).S4, V(m.0).S4);
    }

    pub fn add_4s(&mut self, d: V, n: V, m: V) {
        dynasm!(self.ops ; .arch aarch64 ; add V(d.0).S4, V(n.0).S4, V(m.0).S4);
    }

    pub fn sub_4s(&mut self, d: V, n: V, m: V) {
        dynasm!(self.ops ; .arch aarch64 ; sub V(d.0).S4, V(n.0).S4, V(m.0).S4);
    }

    pub fn mul_4s(&mut self, d: V, n: V, m: V) {
        dynasm!(self.ops ; .arch aarch64 ; mul V(d.0).S4, V(n.0).S4, V(m.0).S4);
    }

    /// `d.4s = n.4s << shift` (shift 0..31).
    pub fn shl_4s(&mut self, d: V, n: V, shift: u32) {
        if self.check(shift < 32, || format!("shl #{shift}")) {
            dynasm!(self.ops ; .arch aarch64 ; shl V(d.0).S4, V(n.0).S4, #shift);
        }
    }

    /// Saturating narrow i32 → i16 into the low half of `d`.
    pub fn sqxtn_4h(&mut self, d: V, n: V) {
        dynasm!(self.ops ; .arch aarch64 ; sqxtn V(d.0).H4, V(n.0).S4);
    }

    /// Saturating narrow i32 → i16 into the high half of `d`.
    pub fn sqxtn2_8h(&mut self, d: V, n: V) {
        dynasm!(self.ops ; .arch aarch64 ; sqxtn2 V(d.0).H8, V(n.0).S4);
    }

    /// Saturating narrow i16 → i8 into the low half of `d`.
    pub fn sqxtn_8b(&mut self, d: V, n: V) {
        dynasm!(self.ops ; .arch aarch64 ; sqxtn V(d.0).B8, V(n.0).H8);
    }

    /// Saturating narrow i16 → i8 into the high half of `d`.
    pub fn sqxtn2_16b(&mut self, d: V, n: V) {
        dynasm!(self.ops ; .arch aarch64 ; sqxtn2 V(d.0).B16, V(n.0).H8);
    }

    /// Sign-extends the low eight i8 lanes of `n` to i16.
    pub fn sxtl_8h(&mut self, d: V, n: V) {
        dynasm!(self.ops ; .arch aarch64 ; sxtl V(d.0).H8, V(n.0).B8);
    }

    /// Sign-extends the low four i16 lanes of `n` to i32.
    pub fn sxtl_4s(&mut self, d: V, n: V) {
        dynasm!(self.ops ; .arch aarch64 ; sxtl V(d.0).S4, V(n.0).H4);
    }

    /// Sign-extends the high four i16 lanes of `n` to i32.
    pub fn sxtl2_4s(&mut self, d: V, n: V) {
        dynasm!(self.ops ; .arch aarch64 ; sxtl2 V(d.0).S4, V(n.0).H8);
    }
}
