//! General-purpose integer instructions, branches, constants and stack saves.

use super::{Asm, IP1, Label, V, X};
use dynasmrt::{DynasmApi, DynasmLabelApi, dynasm};

/// Branch conditions (after `cmp a, b`: signed `Lt/Ge/Gt/Le`, unsigned `Lo/Hs/Hi/Ls`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    Eq,
    Ne,
    Lt,
    Ge,
    Gt,
    Le,
    Lo,
    Hs,
    Hi,
    Ls,
}

impl Asm {
    pub fn mov(&mut self, d: X, n: X) {
        dynasm!(self.ops ; .arch aarch64 ; mov X(d.0), X(n.0));
    }

    /// Loads any 64-bit constant (MOVZ/MOVN plus MOVKs for the other halfwords).
    pub fn mov_imm(&mut self, d: X, value: i64) {
        let v = value as u64;
        let halves: Vec<u32> = (0..4).map(|i| ((v >> (16 * i)) & 0xffff) as u32).collect();
        if (-0x1_0000..0).contains(&value) {
            let inv = (!v & 0xffff) as u32;
            dynasm!(self.ops ; .arch aarch64 ; movn X(d.0), #inv);
            return;
        }
        let mut first = true;
        for (i, &h) in halves.iter().enumerate() {
            if h == 0 && !(first && i == 3) {
                continue;
            }
            let shift = (16 * i) as u32;
            if first {
                dynasm!(self.ops ; .arch aarch64 ; movz X(d.0), #h, lsl #shift);
                first = false;
            } else {
                dynasm!(self.ops ; .arch aarch64 ; movk X(d.0), #h, lsl #shift);
            }
        }
    }

    pub fn add(&mut self, d: X, n: X, m: X) {
        dynasm!(self.ops ; .arch aarch64 ; add X(d.0), X(n.0), X(m.0));
    }

    /// `d = n + (m << shift)`.
    pub fn add_lsl(&mut self, d: X, n: X, m: X, shift: u32) {
        if self.check(shift < 64, || format!("add lsl #{shift}")) {
            dynasm!(self.ops ; .arch aarch64 ; add X(d.0), X(n.0), X(m.0), lsl #shift);
        }
    }

    pub fn sub(&mut self, d: X, n: X, m: X) {
        dynasm!(self.ops ; .arch aarch64 ; sub X(d.0), X(n.0), X(m.0));
    }

    /// `d = n + imm` for any non-negative imm (one or two ADDs, or via `x17`).
    pub fn add_imm(&mut self, d: X, n: X, imm: u64) {
        if imm < 4096 {
            let i = imm as u32;
            dynasm!(self.ops ; .arch aarch64 ; add XSP(d.0), XSP(n.0), #i);
        } else if imm < (1 << 24) {
            let hi = (imm >> 12) as u32;
            let lo = (imm & 0xfff) as u32;
            dynasm!(self.ops ; .arch aarch64 ; add XSP(d.0), XSP(n.0), #hi, lsl #12);
            if lo != 0 {
                dynasm!(self.ops ; .arch aarch64 ; add XSP(d.0), XSP(d.0), #lo);
            }
        } else {
            self.mov_imm(IP1, imm as i64);
            self.add(d, n, IP1);
        }
    }

    /// `d = n - imm` for any non-negative imm.
    pub fn sub_imm(&mut self, d: X, n: X, imm: u64) {
        if imm < 4096 {
            let i = imm as u32;
            dynasm!(self.ops ; .arch aarch64 ; sub XSP(d.0), XSP(n.0), #i);
        } else if imm < (1 << 24) {
            let hi = (imm >> 12) as u32;
            let lo = (imm & 0xfff) as u32;
            dynasm!(self.ops ; .arch aarch64 ; sub XSP(d.0), XSP(n.0), #hi, lsl #12);
            if lo != 0 {
                dynasm!(self.ops ; .arch aarch64 ; sub XSP(d.0), XSP(d.0), #lo);
            }
        } else {
            self.mov_imm(IP1, imm as i64);
            self.sub(d, n, IP1);
        }
    }

    /// `d = n - imm`, setting flags (loop counters); imm < 4096.
    pub fn subs_imm(&mut self, d: X, n: X, imm: u32) {
        if self.check(imm < 4096, || format!("subs #{imm}")) {
            dynasm!(self.ops ; .arch aarch64 ; subs X(d.0), XSP(n.0), #imm);
        }
    }

    pub fn cmp(&mut self, n: X, m: X) {
        dynasm!(self.ops ; .arch aarch64 ; cmp X(n.0), X(m.0));
    }

    /// Compares with any non-negative immediate (via `x17` past 4095).
    pub fn cmp_imm(&mut self, n: X, imm: u64) {
        if imm < 4096 {
            let i = imm as u32;
            dynasm!(self.ops ; .arch aarch64 ; cmp XSP(n.0), #i);
        } else {
            self.mov_imm(IP1, imm as i64);
            self.cmp(n, IP1);
        }
    }

    pub fn mul(&mut self, d: X, n: X, m: X) {
        dynasm!(self.ops ; .arch aarch64 ; mul X(d.0), X(n.0), X(m.0));
    }

    /// `d = a + n·m`.
    pub fn madd(&mut self, d: X, n: X, m: X, a: X) {
        dynasm!(self.ops ; .arch aarch64 ; madd X(d.0), X(n.0), X(m.0), X(a.0));
    }

    /// `d = n · imm` for a constant (shift when a power of two, else via `x17`).
    pub fn mul_imm(&mut self, d: X, n: X, imm: u64) {
        if imm.is_power_of_two() {
            self.lsl_imm(d, n, imm.trailing_zeros());
        } else {
            self.mov_imm(IP1, imm as i64);
            self.mul(d, n, IP1);
        }
    }

    pub fn lsl_imm(&mut self, d: X, n: X, shift: u32) {
        if self.check(shift < 64, || format!("lsl #{shift}")) {
            dynasm!(self.ops ; .arch aarch64 ; lsl X(d.0), X(n.0), #shift);
        }
    }

    pub fn lsr_imm(&mut self, d: X, n: X, shift: u32) {
        if self.check(shift < 64, || format!("lsr #{shift}")) {
            dynasm!(self.ops ; .arch aarch64 ; lsr X(d.0), X(n.0), #shift);
        }
    }

    pub fn asr_imm(&mut self, d: X, n: X, shift: u32) {
        if self.check(shift < 64, || format!("asr #{shift}")) {
            dynasm!(self.ops ; .arch aarch64 ; asr X(d.0), X(n.0), #shift);
        }
    }

    pub fn udiv(&mut self, d: X, n: X, m: X) {
        dynasm!(self.ops ; .arch aarch64 ; udiv X(d.0), X(n.0), X(m.0));
    }

    /// `d = cond ? n : m`.
    pub fn csel(&mut self, d: X, n: X, m: X, cond: Cond) {
        match cond {
            Cond::Eq => dynasm!(self.ops ; .arch aarch64 ; csel X(d.0), X(n.0), X(m.0), eq),
            Cond::Ne => dynasm!(self.ops ; .arch aarch64 ; csel X(d.0), X(n.0), X(m.0), ne),
            Cond::Lt => dynasm!(self.ops ; .arch aarch64 ; csel X(d.0), X(n.0), X(m.0), lt),
            Cond::Ge => dynasm!(self.ops ; .arch aarch64 ; csel X(d.0), X(n.0), X(m.0), ge),
            Cond::Gt => dynasm!(self.ops ; .arch aarch64 ; csel X(d.0), X(n.0), X(m.0), gt),
            Cond::Le => dynasm!(self.ops ; .arch aarch64 ; csel X(d.0), X(n.0), X(m.0), le),
            Cond::Lo => dynasm!(self.ops ; .arch aarch64 ; csel X(d.0), X(n.0), X(m.0), lo),
            Cond::Hs => dynasm!(self.ops ; .arch aarch64 ; csel X(d.0), X(n.0), X(m.0), hs),
            Cond::Hi => dynasm!(self.ops ; .arch aarch64 ; csel X(d.0), X(n.0), X(m.0), hi),
            Cond::Ls => dynasm!(self.ops ; .arch aarch64 ; csel X(d.0), X(n.0), X(m.0), ls),
        }
    }

    /// `d = [n + off]` (64-bit); `off` a multiple of 8 below 32768.
    pub fn ldr_x(&mut self, d: X, n: X, off: u32) {
        if self.check(off.is_multiple_of(8) && off < 32768, || {
            format!("ldr x, #{off}")
        }) {
            dynasm!(self.ops ; .arch aarch64 ; ldr X(d.0), [X(n.0), #off]);
        }
    }

    pub fn str_x(&mut self, t: X, n: X, off: u32) {
        if self.check(off.is_multiple_of(8) && off < 32768, || {
            format!("str x, #{off}")
        }) {
            dynasm!(self.ops ; .arch aarch64 ; str X(t.0), [X(n.0), #off]);
        }
    }

    pub fn b(&mut self, l: Label) {
        dynasm!(self.ops ; .arch aarch64 ; b =>l.0);
    }

    pub fn b_cond(&mut self, cond: Cond, l: Label) {
        let l = l.0;
        match cond {
            Cond::Eq => dynasm!(self.ops ; .arch aarch64 ; b.eq =>l),
            Cond::Ne => dynasm!(self.ops ; .arch aarch64 ; b.ne =>l),
            Cond::Lt => dynasm!(self.ops ; .arch aarch64 ; b.lt =>l),
            Cond::Ge => dynasm!(self.ops ; .arch aarch64 ; b.ge =>l),
            Cond::Gt => dynasm!(self.ops ; .arch aarch64 ; b.gt =>l),
            Cond::Le => dynasm!(self.ops ; .arch aarch64 ; b.le =>l),
            Cond::Lo => dynasm!(self.ops ; .arch aarch64 ; b.lo =>l),
            Cond::Hs => dynasm!(self.ops ; .arch aarch64 ; b.hs =>l),
            Cond::Hi => dynasm!(self.ops ; .arch aarch64 ; b.hi =>l),
            Cond::Ls => dynasm!(self.ops ; .arch aarch64 ; b.ls =>l),
        }
    }

    pub fn cbz(&mut self, r: X, l: Label) {
        dynasm!(self.ops ; .arch aarch64 ; cbz X(r.0), =>l.0);
    }

    pub fn cbnz(&mut self, r: X, l: Label) {
        dynasm!(self.ops ; .arch aarch64 ; cbnz X(r.0), =>l.0);
    }

    pub fn ret(&mut self) {
        dynasm!(self.ops ; .arch aarch64 ; ret);
    }

    /// Pushes callee-saved registers a kernel clobbers: the low halves of `v8..v15` it uses
    /// (AAPCS64) and `x19..x28`. Pair with [`Asm::restore_callee_saved`] (same lists) before
    /// every `ret`.
    pub fn save_callee_saved(&mut self, vregs: &[V], xregs: &[X]) {
        let vs = callee_v(vregs);
        let xs = callee_x(xregs);
        for pair in vs.chunks(2) {
            let (a, b) = (pair[0], *pair.get(1).unwrap_or(&pair[0]));
            dynasm!(self.ops ; .arch aarch64 ; stp D(a), D(b), [sp, #-16]!);
        }
        for pair in xs.chunks(2) {
            let (a, b) = (pair[0], *pair.get(1).unwrap_or(&pair[0]));
            dynasm!(self.ops ; .arch aarch64 ; stp X(a), X(b), [sp, #-16]!);
        }
    }

    pub fn restore_callee_saved(&mut self, vregs: &[V], xregs: &[X]) {
        let vs = callee_v(vregs);
        let xs = callee_x(xregs);
        for pair in xs.chunks(2).rev() {
            let (a, b) = (pair[0], *pair.get(1).unwrap_or(&pair[0]));
            dynasm!(self.ops ; .arch aarch64 ; ldp X(a), X(b), [sp], #16);
        }
        for pair in vs.chunks(2).rev() {
            let (a, b) = (pair[0], *pair.get(1).unwrap_or(&pair[0]));
            dynasm!(self.ops ; .arch aarch64 ; ldp D(a), D(b), [sp], #16);
        }
    }
}

/// The callee-saved SIMD registers among `regs` (v8..v15), sorted and deduplicated.
fn callee_v(regs: &[V]) -> Vec<u32> {
    let mut v: Vec<u32> = regs
        .iter()
        .map(|r| r.0)
        .filter(|r| (8..=15).contains(r))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The callee-saved general registers among `regs` (x19..x28), sorted and deduplicated.
fn callee_x(regs: &[X]) -> Vec<u32> {
    let mut v: Vec<u32> = regs
        .iter()
        .map(|r| r.0)
        .filter(|r| (19..=28).contains(r))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}
