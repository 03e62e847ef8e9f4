//! Tokens-in-lanes radix-8 codelet: three consecutive stages of strides {s, 2s, 4s} (in
//! the block's order) fused in registers on two octets `(p, p+s, …, p+7s)` of 4-token (f32)
//! or 8-token (f16) vectors per iteration: 16 data loads, 3 stages × 4 pair kinds × 2
//! octets × (2 FMUL + 2 FMLA by element) = 96 arithmetic instructions, 16 data stores.
//!
//! Why radix-8: every q store costs one vector-pipe slot in LLVM's Neoverse-V2 and
//! Cortex-A710 models (STR/STP/ST1 alike), so a radix-4 pass (16 FMUL/FMLA per 4 stores)
//! is capped at 16/20 = 80 % of the vector pipes; three stages per load/store raise the
//! cap to 48/56 ≈ 86 %.
//!
//! The two octets of an iteration: stride ≥ 2: `p = m·8s + 2j + l` (l = 0, 1: the twiddles
//! of one pair kind and coefficient are two consecutive pair indices, one D load, lane l);
//! stride 1: `p = 16j + 8l` (one coefficient's four pair kinds are four consecutive pair
//! indices, one q load per octet, lane = kind). In general every (stage, coefficient) reads
//! the smallest set of 1/2/4-lane windows covering the pair indices it needs, and never
//! reads past the last of them. Each stage is the radix-2 stage's arithmetic (`lo·a` by
//! FMUL, `+ hi·b` by FMLA), so results are bit-identical to the unfused passes.

use crate::aarch64::emit::{Asm, V, Width, X};

use super::lanes::{StageRef, stage_bytes};
use super::tokens::{BUF, CodeletRegs, HI, Math, PassLoops, TW, buffer};

/// The third twiddle pointer (x25 is free between transposes).
const TW3: X = X(25);

/// True when `strides` are {s, 2s, 4s} in increasing or decreasing order and an iteration's
/// two octets fit the row (stride 1 needs 16 vectors: n ≥ 16).
pub fn fusable(strides: [u32; 3], n: u32) -> bool {
    let [a, b, c] = strides;
    let chain = (b == 2 * a && c == 2 * b) || (a == 2 * b && b == 2 * c);
    let s = a.min(c);
    chain && 8 * s <= n && (s >= 2 || n >= 16)
}

/// Pair index (twiddle offset) of the pair whose lo element is `x`, stage stride `t`.
fn pair_index(x: u32, t: u32) -> u32 {
    (x / (2 * t)) * t + x % t
}

/// Twiddle windows of one stage: `(coefficient, first pair index, lanes)` per register,
/// and the (register, lane) of each (coefficient, pair index).
struct Windows {
    loads: Vec<(u32, u32, u32)>,
}

impl Windows {
    /// Covers the sorted, distinct `offsets` of each coefficient with 1/2/4-lane windows.
    fn cover(offsets: &[u32]) -> Vec<(u32, u32, u32)> {
        let mut sorted = offsets.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut windows = Vec::new();
        let mut i = 0;
        while i < sorted.len() {
            let start = sorted[i];
            let span = sorted[i..]
                .iter()
                .take_while(|&&o| o < start + 4)
                .last()
                .map_or(0, |&o| o - start);
            // A 3-wide span would need a 4-lane load reading one twiddle too many.
            let lanes = match span {
                0 => 1,
                1 | 2 => 2,
                _ => 4,
            };
            windows.push((start, lanes));
            while i < sorted.len() && sorted[i] < start + lanes {
                i += 1;
            }
        }
        (0..4)
            .flat_map(|c| windows.iter().map(move |&(start, lanes)| (c, start, lanes)))
            .collect()
    }

    /// (window index, lane) of coefficient `c` at pair index `o`.
    fn find(&self, c: u32, o: u32) -> Option<(usize, u8)> {
        self.loads
            .iter()
            .position(|&(wc, start, lanes)| wc == c && o >= start && o < start + lanes)
            .map(|w| (w, (o - self.loads[w].1) as u8))
    }
}

/// Emits the radix-8 pass of `stages` (in order; see [`fusable`]). `tw` points at this
/// (group, stack)'s packed twiddles. Marks the inner loop `hot_loop` when `hot`. Clobbers
/// x13..x15, x23..x25, v0..v11, v16..v31. Returns the arithmetic instructions per inner
/// iteration (96).
pub fn radix8(asm: &mut Asm, stages: [StageRef; 3], n: u32, tw: X, math: Math, hot: bool) -> u32 {
    let store = math.store();
    let s = stages.iter().map(|st| st.stride).min().unwrap_or(1);
    // Element (relative to the iteration's first) of member k of octet l.
    let octet = if s == 1 { 8 } else { 1 };
    let x = |l: u32, k: u32| l * octet + k * s;
    asm.comment(format!(
        "tokens radix-8: strides {} → {} → {}, 2 octets × {} tokens in v16..v31, twiddles \
         v0..v7, free v8..v11",
        stages[0].stride,
        stages[1].stride,
        stages[2].stride,
        if math == Math::F16 { 8 } else { 4 }
    ));
    let ptrs = [TW, HI, TW3];
    for (p, st) in ptrs.iter().zip(stages) {
        asm.add_imm(*p, tw, st.index * stage_bytes(n, store));
    }
    buffer(asm, BUF);
    let (outer_n, inner_n, data_step, tw_step) = if s >= 2 {
        (n / (8 * s), s / 2, 32, store.off(2))
    } else {
        (1, n / 16, 256, store.off(8))
    };
    let loops = PassLoops::open(asm, outer_n, inner_n, hot);
    // regs.map[8l + k]: member k of octet l.
    let mut regs = CodeletRegs::new();
    for l in 0..2 {
        for k in 0..8 {
            asm.ldr(Width::Q, regs.map[(8 * l + k) as usize], BUF, 16 * x(l, k));
        }
    }
    for (st, base) in stages.iter().zip(ptrs) {
        let t = st.stride;
        let rel = t / s;
        let kinds: Vec<u32> = (0..8).filter(|k| k & rel == 0).collect();
        let offsets = |ks: &[u32]| -> Vec<u32> {
            ks.iter()
                .flat_map(|&k| (0..2).map(move |l| pair_index(x(l, k), t)))
                .collect()
        };
        let whole = Windows {
            loads: Windows::cover(&offsets(&kinds)),
        };
        // All of the stage's twiddles in v0..v7 when they fit, else per pair kind in
        // alternating banks v0..v3 / v4..v7.
        let units: Vec<Vec<u32>> = if whole.loads.len() <= 8 {
            vec![kinds.clone()]
        } else {
            kinds.iter().map(|&k| vec![k]).collect()
        };
        for (u, unit) in units.iter().enumerate() {
            let win = Windows {
                loads: Windows::cover(&offsets(unit)),
            };
            let bank = if units.len() == 1 {
                0
            } else {
                4 * (u as u32 % 2)
            };
            if bank + win.loads.len() as u32 > 8 || (units.len() > 1 && win.loads.len() > 4) {
                asm.fail("tokens radix-8: twiddles exceed v0..v7".into());
                return 0;
            }
            for (w, &(c, start, lanes)) in win.loads.iter().enumerate() {
                math.load(asm, V(bank + w as u32), base, c * (n / 2) + start, lanes);
            }
            for &k in unit {
                for l in 0..2u32 {
                    let o = pair_index(x(l, k), t);
                    let mut coef = [(V(0), 0u8); 4];
                    for (c, slot) in coef.iter_mut().enumerate() {
                        match win.find(c as u32, o) {
                            Some((w, lane)) => *slot = (V(bank + w as u32), lane),
                            None => {
                                asm.fail("tokens radix-8: twiddle window missing".into());
                                return 0;
                            }
                        }
                    }
                    let at = ((8 * l + k) as usize, (8 * l + k + rel) as usize);
                    if !regs.pair(asm, math, at, coef, "tokens radix-8") {
                        return 0;
                    }
                }
            }
        }
    }
    for l in 0..2 {
        for k in 0..8 {
            asm.str(Width::Q, regs.map[(8 * l + k) as usize], BUF, 16 * x(l, k));
        }
    }
    loops.close_inner(asm, &ptrs, data_step, u64::from(tw_step));
    // Skip the other 7·s elements of the m block (the inner loop covered p .. p+s).
    loops.close_outer(
        asm,
        &ptrs,
        u64::from(16 * 7 * s),
        u64::from(store.off(3 * s)),
    );
    96
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_and_sizes() {
        assert!(fusable([1, 2, 4], 16));
        assert!(!fusable([1, 2, 4], 8));
        assert!(fusable([16, 8, 4], 32));
        assert!(!fusable([1, 2, 2], 64));
        assert!(!fusable([2, 4, 2], 64));
    }

    #[test]
    fn windows_cover_without_overreach() {
        // stride ≥ 4: two lanes per kind and coefficient.
        let w = Windows::cover(&[0, 1, 8, 9]);
        assert_eq!(w.iter().filter(|l| l.0 == 0).count(), 2);
        assert!(w.iter().all(|l| l.2 == 2));
        let w = Windows::cover(&[0, 1, 2, 3, 4, 5, 6, 7]);
        assert!(w.iter().all(|l| l.2 == 4));
        assert_eq!(w.len(), 8);
        let w = Windows::cover(&[5, 6, 7]);
        assert_eq!(w.iter().filter(|l| l.0 == 0).count(), 2);
    }
}
