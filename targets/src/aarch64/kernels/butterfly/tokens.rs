//! Tokens in lanes (prefill, training: 4 rows at a time): the 4 work rows are transposed
//! into a `[n][4]` stack buffer (4×4 blocks with TRN1/TRN2 `.4s` then `.2d`), so lane `t` of
//! vector `e` is element `e` of row `t`; then every stage is a plain 2×2 update of whole
//! vectors with each twiddle a by-element scalar (`FMUL`/`FMLA v.s[l]`): one q load of
//! twiddles serves four pairs of four tokens. Transposed back at the end.

use crate::aarch64::emit::{Asm, Cond, Label, V, Width, X};

use super::lanes::{StageRef, stage_bytes};
use super::twiddle::TwStore;

/// The arithmetic of the token passes: f32 lanes (4 tokens per vector; twiddles widened
/// on load when stored as f16), or f16 lanes (FEAT_FP16: 8 tokens per `.8h` vector,
/// `FMUL`/`FMLA .8h` by element on the stored f16 twiddles). The buffer has 16 bytes per
/// element either way, so the addressing is the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Math {
    F32(TwStore),
    F16,
}

impl Math {
    pub fn store(self) -> TwStore {
        match self {
            Math::F32(s) => s,
            Math::F16 => TwStore::F16,
        }
    }

    /// Twiddles of 4 consecutive pair indices from `at` into lanes 0..4 of `v`.
    fn load4(self, asm: &mut Asm, v: V, base: X, at: u32) {
        self.load(asm, v, base, at, 4);
    }

    /// Twiddles of `lanes` (1, 2 or 4) consecutive pair indices from `at` into lanes
    /// 0..lanes of `v` (never reads past the last of them).
    pub(super) fn load(self, asm: &mut Asm, v: V, base: X, at: u32, lanes: u32) {
        match self {
            Math::F32(s) => s.load_f32(asm, v, base, at, lanes),
            Math::F16 => TwStore::F16.load_f16(asm, v, base, at, lanes),
        }
    }

    /// `d = n·m[lane]`.
    pub(super) fn mul(self, asm: &mut Asm, d: V, n: V, m: V, lane: u8) {
        match self {
            Math::F32(_) => asm.fmul_4s_lane(d, n, m, lane),
            Math::F16 => asm.fmul_8h_lane(d, n, m, lane),
        }
    }

    /// `d += n·m[lane]`.
    pub(super) fn mla(self, asm: &mut Asm, d: V, n: V, m: V, lane: u8) {
        match self {
            Math::F32(_) => asm.fmla_4s_lane(d, n, m, lane),
            Math::F16 => asm.fmla_8h_lane(d, n, m, lane),
        }
    }
}

/// The stack buffer's bytes for rows of `n` floats.
pub fn buffer_bytes(n: u32) -> u64 {
    16 * u64::from(n)
}

pub(super) const BUF: X = X(13);
pub(super) const TW: X = X(14);
pub(super) const HI: X = X(15);
pub(super) const OUTER: X = X(23);
pub(super) const INNER: X = X(24);

/// Points `d` at the stack buffer (`sp`).
pub(super) fn buffer(asm: &mut Asm, d: X) {
    asm.add_imm(d, X(31), 0);
}

/// Transposes rows `rows[0..4]` (each `n` floats) into the buffer at byte `at` (`into ==
/// true`) or back. Clobbers x13, x15, x23..x26, v0..v7, v16..v19.
pub fn transpose(asm: &mut Asm, rows: [X; 4], n: u32, at: u64, into: bool) {
    asm.comment(if into {
        "4 work rows → [n][4] stack buffer (4×4 TRN transposes)"
    } else {
        "[n][4] stack buffer → 4 work rows"
    });
    let copies = [X(23), X(24), X(25), X(26)];
    for (c, r) in copies.iter().zip(rows) {
        asm.mov(*c, r);
    }
    asm.add_imm(BUF, X(31), at);
    asm.mov_imm(HI, i64::from(n / 4));
    let top = asm.new_label();
    asm.bind(top);
    if into {
        for (k, c) in copies.iter().enumerate() {
            asm.ldr_post(Width::Q, V(k as u32), *c, 16);
        }
    } else {
        asm.ld1_4s(V(0), 4, BUF, true);
    }
    let (t0, t1, t2, t3) = (V(16), V(17), V(18), V(19));
    asm.trn1_4s(t0, V(0), V(1));
    asm.trn2_4s(t1, V(0), V(1));
    asm.trn1_4s(t2, V(2), V(3));
    asm.trn2_4s(t3, V(2), V(3));
    asm.trn1_2d(V(4), t0, t2);
    asm.trn1_2d(V(5), t1, t3);
    asm.trn2_2d(V(6), t0, t2);
    asm.trn2_2d(V(7), t1, t3);
    if into {
        asm.st1_4s(V(4), 4, BUF, true);
    } else {
        for (k, c) in copies.iter().enumerate() {
            asm.str_post(Width::Q, V(4 + k as u32), *c, 16);
        }
    }
    asm.subs_imm(HI, HI, 1);
    asm.b_cond(Cond::Ne, top);
}

/// f16 tokens (8 rows): the two `[n][4]` f32 halves at byte 0 (tokens 0..4) and `16·n`
/// (tokens 4..8) → one `[n][8]` f16 buffer at byte 0 (FCVTN low / FCVTN2 high, round to
/// nearest even), `narrow == true`; or back (FCVTL / FCVTL2, exact). Element `e` of the
/// f16 buffer overwrites element `e` of the low half only after reading it, so in place is
/// safe both ways. Clobbers x13, x15, x24, v0..v7, v16..v23.
pub fn convert_halves(asm: &mut Asm, n: u32, narrow: bool) {
    asm.comment(if narrow {
        "f32 [n][4] × 2 → f16 [n][8] (FCVTN, FCVTN2)"
    } else {
        "f16 [n][8] → f32 [n][4] × 2 (FCVTL, FCVTL2)"
    });
    buffer(asm, BUF);
    asm.add_imm(HI, X(31), 16 * u64::from(n));
    asm.mov_imm(INNER, i64::from(n / 4));
    let top = asm.new_label();
    asm.bind(top);
    if narrow {
        asm.ld1_4s(V(0), 4, BUF, false);
        asm.ld1_4s(V(4), 4, HI, true);
        for k in 0..4 {
            asm.fcvtn_4h(V(16 + k), V(k));
            asm.fcvtn2_8h(V(16 + k), V(4 + k));
        }
        asm.st1_4s(V(16), 4, BUF, true);
    } else {
        asm.ld1_4s(V(0), 4, BUF, false);
        for k in 0..4 {
            asm.fcvtl_4s(V(16 + k), V(k));
            asm.fcvtl2_4s(V(20 + k), V(k));
        }
        asm.st1_4s(V(16), 4, BUF, true);
        asm.st1_4s(V(20), 4, HI, true);
    }
    asm.subs_imm(INNER, INNER, 1);
    asm.b_cond(Cond::Ne, top);
}

/// Emits one stage on the buffer; `tw` points at this (group, stack)'s packed twiddles.
/// Marks the inner loop `hot_loop` when `hot` (stride ≥ 4 only). Clobbers x13..x15, x23,
/// x24, v0..v3, v16..v31. Returns the arithmetic instructions per inner iteration.
pub fn stage(asm: &mut Asm, st: StageRef, n: u32, tw: X, math: Math, hot: bool) -> u32 {
    let s = st.stride;
    let half = n / 2;
    asm.comment(format!(
        "tokens stage: stride {s}, 4 pairs × 4 tokens per iteration (v16..v23 → v24..v31)"
    ));
    asm.add_imm(TW, tw, st.index * stage_bytes(n, math.store()));
    buffer(asm, BUF);
    // (lo, hi) positions of lane l's pair among the 8 vectors loaded per iteration.
    let pos: [(u32, u32); 4] = match s {
        1 => [(0, 1), (2, 3), (4, 5), (6, 7)],
        2 => [(0, 2), (1, 3), (4, 6), (5, 7)],
        _ => [(0, 4), (1, 5), (2, 6), (3, 7)],
    };
    // Second block of 4 vectors: the partners `s` vectors on (stride ≥ 4) or the next 4.
    let gap = if s >= 4 { 16 * s } else { 64 };
    asm.add_imm(HI, BUF, u64::from(gap));
    let (outer_n, inner_n) = if s >= 4 {
        (half / s, s / 4)
    } else {
        (1, n / 8)
    };
    let loops = PassLoops::open(asm, outer_n, inner_n, hot);
    asm.ld1_4s(V(16), 4, BUF, false);
    asm.ld1_4s(V(20), 4, HI, false);
    for k in 0..4u32 {
        math.load4(asm, V(k), TW, k * half);
    }
    asm.add_imm(TW, TW, u64::from(math.store().off(4)));
    let [a, b, c, d] = [V(0), V(1), V(2), V(3)];
    for (l, &(lo, hi)) in pos.iter().enumerate() {
        math.mul(asm, V(24 + lo), V(16 + lo), a, l as u8);
        math.mul(asm, V(24 + hi), V(16 + lo), c, l as u8);
    }
    for (l, &(lo, hi)) in pos.iter().enumerate() {
        math.mla(asm, V(24 + lo), V(16 + hi), b, l as u8);
        math.mla(asm, V(24 + hi), V(16 + hi), d, l as u8);
    }
    let step = if s >= 4 { 64 } else { 128 };
    asm.st1_4s(V(24), 4, BUF, false);
    asm.st1_4s(V(28), 4, HI, false);
    // The partners' pointer moves with the data; a block end skips the partners' block.
    loops.close_inner(asm, &[HI], step, step);
    loops.close_outer(asm, &[HI], u64::from(16 * s), u64::from(16 * s));
    16
}

/// Tokens-layout passes: three consecutive stages of strides {s, 2s, 4s} fuse into a
/// radix-8 pass (`tokens_radix8.rs`), two of strides {s, 2s} into a radix-4 pass, the
/// others run alone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TokenPass {
    Radix8([StageRef; 3]),
    Radix4(StageRef, StageRef),
    Radix2(StageRef),
}

/// Greedy grouping: radix-8 while ≥ 3 fusable stages remain, then radix-4, then radix-2.
/// Strides 1 and 2 fuse into radix-4 only when an iteration's 16 vectors fit in the row
/// (n ≥ 16).
pub fn plan(stages: &[StageRef], n: u32) -> Vec<TokenPass> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < stages.len() {
        if let [a, b, c, ..] = stages[i..]
            && super::tokens_radix8::fusable([a.stride, b.stride, c.stride], n)
        {
            out.push(TokenPass::Radix8([a, b, c]));
            i += 3;
            continue;
        }
        if let Some(p) = radix4_pass(stages, i, n) {
            out.push(p);
            i += 2;
            continue;
        }
        out.push(TokenPass::Radix2(stages[i]));
        i += 1;
    }
    out
}

/// The passes of a given grouping (`radix`: every block's groups in stage order, product
/// `n`, see `ButterflyDesc::radix`): a radix-8 group is one radix-8 pass when its strides
/// fuse (else it is planned greedily as radix-4 + radix-2), a radix-4 group one radix-4
/// pass (else two radix-2), a radix-2 group one radix-2 pass. An empty `radix` is the
/// kernel's own choice ([`plan`]); one that does not describe a block of `n` is an error.
pub fn plan_grouped(stages: &[StageRef], n: u32, radix: &[u32]) -> Result<Vec<TokenPass>, String> {
    if radix.is_empty() {
        return Ok(plan(stages, n));
    }
    let logs: Vec<usize> = radix
        .iter()
        .map(|&r| match r {
            2 => Ok(1),
            4 => Ok(2),
            8 => Ok(3),
            _ => Err(format!("radix {r} (the kernel has 2, 4 and 8)")),
        })
        .collect::<Result<_, _>>()?;
    let per_block = n.trailing_zeros() as usize;
    if logs.iter().sum::<usize>() != per_block {
        return Err(format!(
            "radix {radix:?} does not cover {per_block} stages per block"
        ));
    }
    let mut out = Vec::new();
    for block in stages.chunks(per_block) {
        let mut i = 0;
        for &len in &logs {
            let group = &block[i..i + len];
            i += len;
            match *group {
                [a, b, c] if super::tokens_radix8::fusable([a.stride, b.stride, c.stride], n) => {
                    out.push(TokenPass::Radix8([a, b, c]))
                }
                [_, _] => match radix4_pass(group, 0, n) {
                    Some(p) => out.push(p),
                    None => out.extend(group.iter().map(|&st| TokenPass::Radix2(st))),
                },
                _ => out.extend(plan_no_radix8(group, n)),
            }
        }
    }
    Ok(out)
}

/// Radix-4 then radix-2 passes, greedily.
fn plan_no_radix8(stages: &[StageRef], n: u32) -> Vec<TokenPass> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < stages.len() {
        if let Some(p) = radix4_pass(stages, i, n) {
            out.push(p);
            i += 2;
        } else {
            out.push(TokenPass::Radix2(stages[i]));
            i += 1;
        }
    }
    out
}

/// The radix-4 pass of stages `i, i+1` when they fuse.
fn radix4_pass(stages: &[StageRef], i: usize, n: u32) -> Option<TokenPass> {
    let (first, next) = (stages.get(i)?, stages.get(i + 1)?);
    let (a, b) = (first.stride, next.stride);
    ((a == 2 * b || b == 2 * a) && (a.min(b) >= 4 || n >= 16))
        .then_some(TokenPass::Radix4(*first, *next))
}

/// Free registers of the radix-4 pass (v8..v11: their low halves are saved by the caller).
pub const RADIX4_FREE: [V; 4] = [V(8), V(9), V(10), V(11)];

/// The data registers of a fused codelet: `map[i]` holds vector `i` of the iteration (it
/// starts in v16..v31), and each pair update writes into two free registers and frees the
/// two it read, so no stage needs a copy.
pub(super) struct CodeletRegs {
    pub map: Vec<V>,
    free: Vec<V>,
}

impl CodeletRegs {
    pub fn new() -> CodeletRegs {
        CodeletRegs {
            map: (0..16).map(|r| V(16 + r)).collect(),
            free: RADIX4_FREE.to_vec(),
        }
    }

    /// One radix-2 pair in place: `[map[lo], map[hi]] ← [[a, b], [c, d]] · [lo, hi]` with
    /// the coefficients `coef = [a, b, c, d]` as (register, lane), in the radix-2 stage's
    /// order (FMUL `lo·a`, `lo·c`, then FMLA `+ hi·b`, `+ hi·d`), so fused passes give the
    /// unfused bits. False (and an emitter error) if no register is free.
    pub fn pair(
        &mut self,
        asm: &mut Asm,
        math: Math,
        (lo_at, hi_at): (usize, usize),
        coef: [(V, u8); 4],
        what: &str,
    ) -> bool {
        let (lo, hi) = (self.map[lo_at], self.map[hi_at]);
        let (Some(nl), Some(nh)) = (self.free.pop(), self.free.pop()) else {
            asm.fail(format!("{what}: no free register"));
            return false;
        };
        let [(a, la), (b, lb), (c, lc), (d, ld)] = coef;
        math.mul(asm, nl, lo, a, la);
        math.mul(asm, nh, lo, c, lc);
        math.mla(asm, nl, hi, b, lb);
        math.mla(asm, nh, hi, d, ld);
        self.free.push(lo);
        self.free.push(hi);
        self.map[lo_at] = nl;
        self.map[hi_at] = nh;
        true
    }
}

/// The loop nest of a fused pass: `outer` blocks of `inner` iterations; the inner loop is
/// marked `hot_loop` when `hot`.
pub(super) struct PassLoops {
    outer: Label,
    inner: Label,
    outer_n: u32,
    hot: bool,
}

impl PassLoops {
    pub fn open(asm: &mut Asm, outer_n: u32, inner_n: u32, hot: bool) -> PassLoops {
        if outer_n > 1 {
            asm.mov_imm(OUTER, i64::from(outer_n));
        }
        let outer = asm.new_label();
        asm.bind(outer);
        asm.mov_imm(INNER, i64::from(inner_n));
        let inner = asm.new_label();
        if hot {
            asm.mark("hot_loop");
        }
        asm.bind(inner);
        PassLoops {
            outer,
            inner,
            outer_n,
            hot,
        }
    }

    /// Ends an iteration: the data pointer moves `data_step` bytes, each of the `others`
    /// (twiddle or partner pointers) `step`.
    pub fn close_inner(&self, asm: &mut Asm, others: &[X], data_step: u64, step: u64) {
        asm.add_imm(BUF, BUF, data_step);
        for &p in others {
            asm.add_imm(p, p, step);
        }
        asm.subs_imm(INNER, INNER, 1);
        asm.b_cond(Cond::Ne, self.inner);
        if self.hot {
            asm.mark("hot_loop_end");
        }
    }

    /// Ends a block (when there is more than one): the pointers skip what the block's
    /// iterations did not cover.
    pub fn close_outer(&self, asm: &mut Asm, others: &[X], data_skip: u64, skip: u64) {
        if self.outer_n > 1 {
            asm.add_imm(BUF, BUF, data_skip);
            for &p in others {
                asm.add_imm(p, p, skip);
            }
            asm.subs_imm(OUTER, OUTER, 1);
            asm.b_cond(Cond::Ne, self.outer);
        }
    }
}

/// Two stages of strides `s`, `2s` fused: per iteration 4 quartets `(p, p+s, p+2s, p+3s)`
/// of 4-token vectors (16 registers), each stage's twiddles one q load per coefficient and
/// pair kind (4 consecutive pair indices, one per quartet): 64 FMUL/FMLA by element per
/// 16 data loads, 16 data stores and 16 twiddle loads.
///
/// Quartet `l` of an iteration: stride ≥ 4: `p = m·4s + 4j + l` (the 4 quartets'
/// twiddles are consecutive); stride 1: `p = 4(m + l)`, the pair-0–1 and pair-2–3 twiddles
/// interleaved (pair index `2(m+l)` / `+1`); stride 2: `p = 8(m + l/2) + l%2`, interleaved
/// by pairs of floats: both read from two q loads by lane.
pub fn radix4(
    asm: &mut Asm,
    (first, second): (StageRef, StageRef),
    n: u32,
    tw: X,
    math: Math,
    hot: bool,
) -> u32 {
    let store = math.store();
    let s = first.stride.min(second.stride);
    let half = n / 2;
    let (small, big) = if first.stride == s {
        (first, second)
    } else {
        (second, first)
    };
    asm.comment(format!(
        "tokens radix-4: strides {} then {}, 4 quartets × 4 tokens in v16..v31, twiddles \
         v0..v7, free v8..v11",
        first.stride, second.stride
    ));
    let (ta, tb) = (TW, HI);
    asm.add_imm(ta, tw, small.index * stage_bytes(n, store));
    asm.add_imm(tb, tw, big.index * stage_bytes(n, store));
    buffer(asm, BUF);
    let off = |k: u32, l: u32| -> u32 {
        16 * match s {
            1 => 4 * l + k,
            2 => 8 * (l / 2) + l % 2 + 2 * k,
            _ => k * s + l,
        }
    };
    let (outer_n, inner_n, data_step, tw_step) = if s >= 4 {
        (n / (4 * s), s / 4, 64, store.off(4))
    } else {
        (1, n / 16, 256, store.off(8))
    };
    let loops = PassLoops::open(asm, outer_n, inner_n, hot);
    // regs.map[4k + l]: member k of quartet l.
    let mut regs = CodeletRegs::new();
    for k in 0..4 {
        for l in 0..4 {
            asm.ldr(Width::Q, regs.map[(4 * k + l) as usize], BUF, off(k, l));
        }
    }
    for st in [first, second] {
        let base = if st.stride == s { ta } else { tb };
        let kinds: [(usize, usize); 2] = if st.stride == s {
            [(0, 1), (2, 3)]
        } else {
            [(0, 2), (1, 3)]
        };
        if s < 4 {
            // The 8 floats of pair indices `i0 .. i0+8` of each coefficient in two q
            // registers; lanes are picked by the by-element form (no de-interleave).
            for c in 0..4u32 {
                for h in 0..2u32 {
                    math.load4(asm, V(2 * c + h), base, c * half + 4 * h);
                }
            }
        }
        for (q, (klo, khi)) in kinds.into_iter().enumerate() {
            if s >= 4 {
                for c in 0..4u32 {
                    math.load4(asm, V(c), base, c * half + q as u32 * s);
                }
            }
            for l in 0..4usize {
                // (register, lane) of coefficient c for pair kind q of quartet l.
                let (q32, l32) = (q as u32, l as u32);
                let at = |c: u32| -> (V, u8) {
                    match s {
                        1 => (V(2 * c + l32 / 2), (2 * (l32 % 2) + q32) as u8),
                        2 => (V(2 * c + l32 / 2), (2 * q32 + l32 % 2) as u8),
                        _ => (V(c), l32 as u8),
                    }
                };
                let coef = [at(0), at(1), at(2), at(3)];
                if !regs.pair(
                    asm,
                    math,
                    (4 * klo + l, 4 * khi + l),
                    coef,
                    "tokens radix-4",
                ) {
                    return 0;
                }
            }
        }
    }
    for k in 0..4 {
        for l in 0..4 {
            asm.str(Width::Q, regs.map[(4 * k + l) as usize], BUF, off(k, l));
        }
    }
    loops.close_inner(asm, &[ta, tb], data_step, u64::from(tw_step));
    loops.close_outer(
        asm,
        &[ta, tb],
        u64::from(16 * 3 * s),
        u64::from(store.off(s)),
    );
    64
}
