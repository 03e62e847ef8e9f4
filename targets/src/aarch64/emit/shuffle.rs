//! Permutes and lane moves: TRN/ZIP/UZP on `.4s` and `.2d`, EXT, DUP, INS, register moves,
//! zeroing.

use super::{Asm, V, X};
use dynasmrt::{DynasmApi, dynasm};

macro_rules! perm {
    ($($name:ident => $op:ident . $arr:ident;)*) => {$(
        pub fn $name(&mut self, d: V, n: V, m: V) {
            dynasm!(self.ops ; .arch aarch64 ; $op V(d.0).$arr, V(n.0).$arr, V(m.0).$arr);
        }
    )*};
}

impl Asm {
    perm! {
        trn1_4s => trn1.S4;
        trn2_4s => trn2.S4;
        zip1_4s => zip1.S4;
        zip2_4s => zip2.S4;
        uzp1_4s => uzp1.S4;
        uzp2_4s => uzp2.S4;
        trn1_2d => trn1.D2;
        trn2_2d => trn2.D2;
        zip1_2d => zip1.D2;
        zip2_2d => zip2.D2;
        zip1_8h => zip1.H8;
        zip2_8h => zip2.H8;
        uzp1_8h => uzp1.H8;
        uzp2_8h => uzp2.H8;
        trn1_8h => trn1.H8;
        trn2_8h => trn2.H8;
    }

    /// `d = bytes imm..imm+16 of n:m` (imm 0..15).
    pub fn ext_16b(&mut self, d: V, n: V, m: V, imm: u32) {
        if self.check(imm < 16, || format!("ext #{imm}")) {
            dynasm!(self.ops ; .arch aarch64 ; ext V(d.0).B16, V(n.0).B16, V(m.0).B16, #imm);
        }
    }

    /// Every lane of `d` = `n.s[lane]`.
    pub fn dup_4s_lane(&mut self, d: V, n: V, lane: u8) {
        if self.check(lane < 4, || format!("dup lane {lane}")) {
            let l = u32::from(lane);
            dynasm!(self.ops ; .arch aarch64 ; dup V(d.0).S4, V(n.0).S[l]);
        }
    }

    /// Every lane of `d` = `w(n)`.
    pub fn dup_4s_w(&mut self, d: V, n: X) {
        dynasm!(self.ops ; .arch aarch64 ; dup V(d.0).S4, W(n.0));
    }

    /// `d.s[dl] = n.s[nl]`, other lanes kept.
    pub fn ins_s(&mut self, d: V, dl: u8, n: V, nl: u8) {
        if self.check(dl < 4 && nl < 4, || format!("ins s[{dl}] s[{nl}]")) {
            let (a, b) = (u32::from(dl), u32::from(nl));
            dynasm!(self.ops ; .arch aarch64 ; mov V(d.0).S[a], V(n.0).S[b]);
        }
    }

    /// `d = n` (whole register).
    pub fn mov_v(&mut self, d: V, n: V) {
        dynasm!(self.ops ; .arch aarch64 ; mov V(d.0).B16, V(n.0).B16);
    }

    /// `d = 0` (all 128 bits).
    pub fn zero(&mut self, d: V) {
        dynasm!(self.ops ; .arch aarch64 ; movi V(d.0).D2, #0);
    }

    /// Bitwise and / or / xor / bit-clear of whole registers.
    pub fn and_16b(&mut self, d: V, n: V, m: V) {
        dynasm!(self.ops ; .arch aarch64 ; and V(d.0).B16, V(n.0).B16, V(m.0).B16);
    }

    pub fn orr_16b(&mut self, d: V, n: V, m: V) {
        dynasm!(self.ops ; .arch aarch64 ; orr V(d.0).B16, V(n.0).B16, V(m.0).B16);
    }

    pub fn eor_16b(&mut self, d: V, n: V, m: V) {
        dynasm!(self.ops ; .arch aarch64 ; eor V(d.0).B16, V(n.0).B16, V(m.0).B16);
    }

    /// Bitwise select with the mask in `d`: `d = (d & n) | (!d & m)`.
    pub fn bsl_16b(&mut self, d: V, n: V, m: V) {
        dynasm!(self.ops ; .arch aarch64 ; bsl V(d.0).B16, V(n.0).B16, V(m.0).B16);
    }

    /// Lane mask `n > m` (f32): all ones where true.
    pub fn fcmgt_4s(&mut self, d: V, n: V, m: V) {
        dynasm!(self.ops ; .arch aarch64 ; fcmgt V(d.0).S4, V(n.0).S4, V(m.0).S4);
    }
}
