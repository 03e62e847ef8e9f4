//! Loads and stores of SIMD&FP registers: `q` (128-bit), `d` (64), `s` (32), `h` (16), `b`
//! (8); unsigned scaled offsets, post-index, register offsets, and the structure loads
//! (`ld1`/`ld2`/`ld1r`, `st1`/`st2`).

use super::{Asm, V, X};
use dynasmrt::{DynasmApi, dynasm};

/// Which scalar/vector width a plain `ldr`/`str` moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    B,
    H,
    S,
    D,
    Q,
}

impl Width {
    pub fn bytes(self) -> u32 {
        match self {
            Width::B => 1,
            Width::H => 2,
            Width::S => 4,
            Width::D => 8,
            Width::Q => 16,
        }
    }
}

macro_rules! width_op {
    ($self:ident, $w:expr, $op:ident, $t:expr, [$($addr:tt)*]) => {
        match $w {
            Width::B => dynasm!($self.ops ; .arch aarch64 ; $op B($t), [$($addr)*]),
            Width::H => dynasm!($self.ops ; .arch aarch64 ; $op H($t), [$($addr)*]),
            Width::S => dynasm!($self.ops ; .arch aarch64 ; $op S($t), [$($addr)*]),
            Width::D => dynasm!($self.ops ; .arch aarch64 ; $op D($t), [$($addr)*]),
            Width::Q => dynasm!($self.ops ; .arch aarch64 ; $op Q($t), [$($addr)*]),
        }
    };
    ($self:ident, $w:expr, $op:ident, $t:expr, [$($addr:tt)*], $post:expr) => {
        match $w {
            Width::B => dynasm!($self.ops ; .arch aarch64 ; $op B($t), [$($addr)*], #$post),
            Width::H => dynasm!($self.ops ; .arch aarch64 ; $op H($t), [$($addr)*], #$post),
            Width::S => dynasm!($self.ops ; .arch aarch64 ; $op S($t), [$($addr)*], #$post),
            Width::D => dynasm!($self.ops ; .arch aarch64 ; $op D($t), [$($addr)*], #$post),
            Width::Q => dynasm!($self.ops ; .arch aarch64 ; $op Q($t), [$($addr)*], #$post),
        }
    };
}

impl Asm {
    fn scaled_ok(&mut self, w: Width, off: u32) -> bool {
        let b = w.bytes();
        self.check(off.is_multiple_of(b) && off / b < 4096, || {
            format!(
                "{w:?} offset #{off} is not a multiple of {b} below {}",
                4096 * b
            )
        })
    }

    fn post_ok(&mut self, imm: i32) -> bool {
        self.check((-256..256).contains(&imm), || {
            format!("post-index #{imm} outside -256..255")
        })
    }

    /// `t = [n + off]`, `off` a multiple of the width below 4096 widths.
    pub fn ldr(&mut self, w: Width, t: V, n: X, off: u32) {
        if self.scaled_ok(w, off) {
            width_op!(self, w, ldr, t.0, [X(n.0), #off]);
        }
    }

    /// `[n + off] = t`.
    pub fn str(&mut self, w: Width, t: V, n: X, off: u32) {
        if self.scaled_ok(w, off) {
            width_op!(self, w, str, t.0, [X(n.0), #off]);
        }
    }

    /// `t = [n]; n += imm` (imm in -256..255).
    pub fn ldr_post(&mut self, w: Width, t: V, n: X, imm: i32) {
        if self.post_ok(imm) {
            width_op!(self, w, ldr, t.0, [X(n.0)], imm);
        }
    }

    /// `[n] = t; n += imm`.
    pub fn str_post(&mut self, w: Width, t: V, n: X, imm: i32) {
        if self.post_ok(imm) {
            width_op!(self, w, str, t.0, [X(n.0)], imm);
        }
    }

    /// `t = [n + (m << log2(width))]` (an element index in `m`).
    pub fn ldr_idx(&mut self, w: Width, t: V, n: X, m: X) {
        let s = w.bytes().trailing_zeros();
        match w {
            Width::B => dynasm!(self.ops ; .arch aarch64 ; ldr B(t.0), [X(n.0), X(m.0)]),
            Width::H => dynasm!(self.ops ; .arch aarch64 ; ldr H(t.0), [X(n.0), X(m.0), lsl #s]),
            Width::S => dynasm!(self.ops ; .arch aarch64 ; ldr S(t.0), [X(n.0), X(m.0), lsl #s]),
            Width::D => dynasm!(self.ops ; .arch aarch64 ; ldr D(t.0), [X(n.0), X(m.0), lsl #s]),
            Width::Q => dynasm!(self.ops ; .arch aarch64 ; ldr Q(t.0), [X(n.0), X(m.0), lsl #s]),
        }
    }

    /// `[n + (m << log2(width))] = t`.
    pub fn str_idx(&mut self, w: Width, t: V, n: X, m: X) {
        let s = w.bytes().trailing_zeros();
        match w {
            Width::B => dynasm!(self.ops ; .arch aarch64 ; str B(t.0), [X(n.0), X(m.0)]),
            Width::H => dynasm!(self.ops ; .arch aarch64 ; str H(t.0), [X(n.0), X(m.0), lsl #s]),
            Width::S => dynasm!(self.ops ; .arch aarch64 ; str S(t.0), [X(n.0), X(m.0), lsl #s]),
            Width::D => dynasm!(self.ops ; .arch aarch64 ; str D(t.0), [X(n.0), X(m.0), lsl #s]),
            Width::Q => dynasm!(self.ops ; .arch aarch64 ; str Q(t.0), [X(n.0), X(m.0), lsl #s]),
        }
    }

    /// `ldp q(a), q(b), [n + off]` (`off` a multiple of 16 in -1024..1008).
    pub fn ldp_q(&mut self, a: V, b: V, n: X, off: i32) {
        if self.check(off % 16 == 0 && (-1024..1024).contains(&off), || {
            format!("ldp q offset #{off}")
        }) {
            dynasm!(self.ops ; .arch aarch64 ; ldp Q(a.0), Q(b.0), [X(n.0), #off]);
        }
    }

    /// `stp q(a), q(b), [n + off]`.
    pub fn stp_q(&mut self, a: V, b: V, n: X, off: i32) {
        if self.check(off % 16 == 0 && (-1024..1024).contains(&off), || {
            format!("stp q offset #{off}")
        }) {
            dynasm!(self.ops ; .arch aarch64 ; stp Q(a.0), Q(b.0), [X(n.0), #off]);
        }
    }

    /// `ld1 {first.4s .. first+count-1}, [n]` (count 1..=4, consecutive registers), then
    /// `n += 16·count` when `post`.
    pub fn ld1_4s(&mut self, first: V, count: u8, n: X, post: bool) {
        if !self.list_ok(first, count, 4) {
            return;
        }
        let f = first.0;
        match (count, post) {
            (1, false) => dynasm!(self.ops ; .arch aarch64 ; ld1 {V(f).S4 * 1}, [X(n.0)]),
            (2, false) => dynasm!(self.ops ; .arch aarch64 ; ld1 {V(f).S4 * 2}, [X(n.0)]),
            (3, false) => dynasm!(self.ops ; .arch aarch64 ; ld1 {V(f).S4 * 3}, [X(n.0)]),
            (4, false) => dynasm!(self.ops ; .arch aarch64 ; ld1 {V(f).S4 * 4}, [X(n.0)]),
            (1, true) => dynasm!(self.ops ; .arch aarch64 ; ld1 {V(f).S4 * 1}, [X(n.0)], #16),
            (2, true) => dynasm!(self.ops ; .arch aarch64 ; ld1 {V(f).S4 * 2}, [X(n.0)], #32),
            (3, true) => dynasm!(self.ops ; .arch aarch64 ; ld1 {V(f).S4 * 3}, [X(n.0)], #48),
            _ => dynasm!(self.ops ; .arch aarch64 ; ld1 {V(f).S4 * 4}, [X(n.0)], #64),
        }
    }

    /// `st1 {first.4s ..}, [n]` (count 1..=4), post-incrementing when `post`.
    pub fn st1_4s(&mut self, first: V, count: u8, n: X, post: bool) {
        if !self.list_ok(first, count, 4) {
            return;
        }
        let f = first.0;
        match (count, post) {
            (1, false) => dynasm!(self.ops ; .arch aarch64 ; st1 {V(f).S4 * 1}, [X(n.0)]),
            (2, false) => dynasm!(self.ops ; .arch aarch64 ; st1 {V(f).S4 * 2}, [X(n.0)]),
            (3, false) => dynasm!(self.ops ; .arch aarch64 ; st1 {V(f).S4 * 3}, [X(n.0)]),
            (4, false) => dynasm!(self.ops ; .arch aarch64 ; st1 {V(f).S4 * 4}, [X(n.0)]),
            (1, true) => dynasm!(self.ops ; .arch aarch64 ; st1 {V(f).S4 * 1}, [X(n.0)], #16),
            (2, true) => dynasm!(self.ops ; .arch aarch64 ; st1 {V(f).S4 * 2}, [X(n.0)], #32),
            (3, true) => dynasm!(self.ops ; .arch aarch64 ; st1 {V(f).S4 * 3}, [X(n.0)], #48),
            _ => dynasm!(self.ops ; .arch aarch64 ; st1 {V(f).S4 * 4}, [X(n.0)], #64),
        }
    }

    /// `ld1r {t.4s}, [n]`: one f32 broadcast to all lanes; `n += 4` when `post`.
    pub fn ld1r_4s(&mut self, t: V, n: X, post: bool) {
        if post {
            dynasm!(self.ops ; .arch aarch64 ; ld1r {V(t.0).S4 * 1}, [X(n.0)], #4);
        } else {
            dynasm!(self.ops ; .arch aarch64 ; ld1r {V(t.0).S4 * 1}, [X(n.0)]);
        }
    }

    /// `ld1r {t.8h}, [n]`: one f16 broadcast to all 8 lanes.
    pub fn ld1r_8h(&mut self, t: V, n: X) {
        dynasm!(self.ops ; .arch aarch64 ; ld1r {V(t.0).H8 * 1}, [X(n.0)]);
    }

    /// `ld2 {a.4s, a+1.4s}, [n]`: 8 floats de-interleaved (even elements in `a`, odd in
    /// `a+1`); `n += 32` when `post`.
    pub fn ld2_4s(&mut self, a: V, n: X, post: bool) {
        if !self.list_ok(a, 2, 2) {
            return;
        }
        if post {
            dynasm!(self.ops ; .arch aarch64 ; ld2 {V(a.0).S4 * 2}, [X(n.0)], #32);
        } else {
            dynasm!(self.ops ; .arch aarch64 ; ld2 {V(a.0).S4 * 2}, [X(n.0)]);
        }
    }

    /// `st2 {a.4s, a+1.4s}, [n]`: interleaves back.
    pub fn st2_4s(&mut self, a: V, n: X, post: bool) {
        if !self.list_ok(a, 2, 2) {
            return;
        }
        if post {
            dynasm!(self.ops ; .arch aarch64 ; st2 {V(a.0).S4 * 2}, [X(n.0)], #32);
        } else {
            dynasm!(self.ops ; .arch aarch64 ; st2 {V(a.0).S4 * 2}, [X(n.0)]);
        }
    }

    /// `ld2 {a.2d, a+1.2d}, [n]`: 8 floats as 64-bit pairs de-interleaved
    /// (`a = [x0 x1 x4 x5]`, `a+1 = [x2 x3 x6 x7]`).
    pub fn ld2_2d(&mut self, a: V, n: X, post: bool) {
        if !self.list_ok(a, 2, 2) {
            return;
        }
        if post {
            dynasm!(self.ops ; .arch aarch64 ; ld2 {V(a.0).D2 * 2}, [X(n.0)], #32);
        } else {
            dynasm!(self.ops ; .arch aarch64 ; ld2 {V(a.0).D2 * 2}, [X(n.0)]);
        }
    }

    pub fn st2_2d(&mut self, a: V, n: X, post: bool) {
        if !self.list_ok(a, 2, 2) {
            return;
        }
        if post {
            dynasm!(self.ops ; .arch aarch64 ; st2 {V(a.0).D2 * 2}, [X(n.0)], #32);
        } else {
            dynasm!(self.ops ; .arch aarch64 ; st2 {V(a.0).D2 * 2}, [X(n.0)]);
        }
    }

    /// `ld1 {t.s}[lane], [n]`: one f32 into a lane.
    pub fn ld1_lane_s(&mut self, t: V, lane: u8, n: X) {
        if self.check(lane < 4, || format!("lane {lane} of .s")) {
            dynasm!(self.ops ; .arch aarch64 ; ld1 {V(t.0).S * 1}[u32::from(lane)], [X(n.0)]);
        }
    }

    /// `st1 {t.s}[lane], [n]`.
    pub fn st1_lane_s(&mut self, t: V, lane: u8, n: X) {
        if self.check(lane < 4, || format!("lane {lane} of .s")) {
            dynasm!(self.ops ; .arch aarch64 ; st1 {V(t.0).S * 1}[u32::from(lane)], [X(n.0)]);
        }
    }

    fn list_ok(&mut self, first: V, count: u8, max: u8) -> bool {
        self.check(
            (1..=max).contains(&count) && first.0 + u32::from(count) <= 32,
            || format!("register list v{}×{count}", first.0),
        )
    }
}
