//! Pairs in lanes (decode, any number of rows): one work row at a time, in passes.
//!
//! - chunk pass: every run of consecutive stages with stride ≤ C/2 (C = min(n, 64) floats)
//!   is applied to C-float chunks held in 16 q registers (the whole row when n ≤ 64: a
//!   radix-n codelet), one load and one store of the data per run;
//! - radix-4 pass: two consecutive stages of strides {s, 2s} (s ≥ C) on quartets of vectors
//!   `p, p+s, p+2s, p+3s`, both stages in registers, one load and store per quartet;
//! - radix-2 pass: a lone large-stride stage.
//!
//! Twiddles stream from memory (four q loads per vector pair and stage).

use super::codelets::{self, Tile, Twiddles};
use super::twiddle::TwStore;
use crate::aarch64::emit::{Asm, Cond, V, Width, X};

/// A stage of the flattened block×stage list: its packed-twiddle index and stride.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StageRef {
    pub index: u64,
    pub stride: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Pass {
    Chunk(Vec<StageRef>),
    Radix4(StageRef, StageRef),
    Radix2(StageRef),
}

/// Floats per chunk: 16 q registers, or the whole row.
pub fn chunk_len(n: u32) -> u32 {
    n.min(64)
}

/// Groups the stages into passes (see the module doc).
pub fn plan(stages: &[StageRef], n: u32) -> Vec<Pass> {
    let small = chunk_len(n) / 2;
    let mut passes = Vec::new();
    let mut i = 0;
    while i < stages.len() {
        if stages[i].stride <= small {
            let mut run = Vec::new();
            while i < stages.len() && stages[i].stride <= small {
                run.push(stages[i]);
                i += 1;
            }
            passes.push(Pass::Chunk(run));
            continue;
        }
        if let Some(&next) = stages.get(i + 1) {
            let (a, b) = (stages[i].stride, next.stride);
            if next.stride > small && (a == 2 * b || b == 2 * a) {
                passes.push(Pass::Radix4(stages[i], next));
                i += 2;
                continue;
            }
        }
        passes.push(Pass::Radix2(stages[i]));
        i += 1;
    }
    passes
}

/// Registers of the row being transformed.
#[derive(Clone, Copy, Debug)]
pub struct RowRegs {
    /// The work row (`n` floats).
    pub work: X,
    /// Packed twiddles of this (group, stack).
    pub tw: X,
    pub store: TwStore,
}

/// Scratch general registers of the passes.
const P: X = X(13);
const T0: X = X(14);
const T1: X = X(15);
const OUTER: X = X(19);
const INNER: X = X(20);

/// Bytes of one stage's packed twiddles (`4 · n/2` twiddles).
pub fn stage_bytes(n: u32, store: TwStore) -> u64 {
    u64::from(store.off(2 * n))
}

/// Emits every pass on the row; marks the first radix-4 inner loop `hot_loop` when `hot`.
/// Returns the arithmetic instructions per iteration of the marked loop (0 if none).
pub fn emit_passes(asm: &mut Asm, passes: &[Pass], n: u32, row: RowRegs, hot: bool) -> u32 {
    let mut useful = 0;
    for pass in passes {
        match pass {
            Pass::Chunk(stages) => chunk_pass(asm, stages, n, row),
            Pass::Radix4(first, second) => {
                let mark = hot && useful == 0;
                radix4_pass(asm, *first, *second, n, row, mark);
                if mark {
                    useful = 16;
                }
            }
            Pass::Radix2(stage) => radix2_pass(asm, *stage, n, row),
        }
    }
    useful
}

fn chunk_pass(asm: &mut Asm, stages: &[StageRef], n: u32, row: RowRegs) {
    let c = chunk_len(n);
    let chunks = n / c;
    let strides: Vec<String> = stages.iter().map(|s| s.stride.to_string()).collect();
    asm.comment(format!(
        "chunk pass: strides [{}] on {chunks} chunk(s) of {c} floats in v16..",
        strides.join(", ")
    ));
    let vecs = c.div_ceil(4) as usize;
    let (data_w, tw_lanes) = match n {
        2 => (Width::D, 1),
        4 => (Width::Q, 2),
        _ => (Width::Q, 4),
    };
    asm.mov(P, row.work);
    asm.mov_imm(T0, 0);
    if chunks > 1 {
        asm.mov_imm(OUTER, i64::from(chunks));
    }
    let top = asm.new_label();
    asm.bind(top);
    let mut tile = Tile::new(vecs);
    for (k, v) in tile.map.clone().iter().enumerate() {
        asm.ldr(data_w, *v, P, 16 * k as u32);
    }
    for s in stages {
        asm.add_imm(T1, row.tw, s.index * stage_bytes(n, row.store));
        asm.add(T1, T1, T0);
        let tw = Twiddles {
            base: T1,
            half: n / 2,
            lanes: tw_lanes,
            store: row.store,
        };
        codelets::stage(asm, &mut tile, s.stride, tw);
    }
    for (k, v) in tile.map.iter().enumerate() {
        asm.str(data_w, *v, P, 16 * k as u32);
    }
    if chunks > 1 {
        asm.add_imm(P, P, u64::from(4 * c));
        asm.add_imm(T0, T0, u64::from(row.store.off(c / 2)));
        asm.subs_imm(OUTER, OUTER, 1);
        asm.b_cond(Cond::Ne, top);
    }
}

/// Stages of strides `s` and `2s` (in the given order) on quartets `p, p+s, p+2s, p+3s`,
/// `p = m·4s + 4j`. The stride-`s` stage's twiddles for the quartet are at pair index
/// `2ms + 4j` (pair 0–1) and `+ s` (pair 2–3); the stride-`2s` stage's at `2ms + 4j` (pair
/// 0–2) and `+ s` (pair 1–3): both advance 4 per `j` and `2s` per `m`.
fn radix4_pass(asm: &mut Asm, first: StageRef, second: StageRef, n: u32, row: RowRegs, hot: bool) {
    let s = first.stride.min(second.stride);
    let (small, big) = if first.stride == s {
        (first, second)
    } else {
        (second, first)
    };
    asm.comment(format!(
        "radix-4 pass: strides {} then {} on quartets (v16..v19), twiddles from x14 / x15",
        first.stride, second.stride
    ));
    let (ta, tb) = (T0, T1);
    asm.mov(P, row.work);
    asm.add_imm(ta, row.tw, small.index * stage_bytes(n, row.store));
    asm.add_imm(tb, row.tw, big.index * stage_bytes(n, row.store));
    asm.mov_imm(OUTER, i64::from(n / (4 * s)));
    let outer = asm.new_label();
    asm.bind(outer);
    asm.mov_imm(INNER, i64::from(s / 4));
    let inner = asm.new_label();
    if hot {
        asm.mark("hot_loop");
    }
    asm.bind(inner);
    let mut tile = Tile::new(4);
    for k in 0..4u32 {
        asm.ldr(Width::Q, tile.map[k as usize], P, 4 * s * k);
    }
    for st in [first, second] {
        let (base, pairs) = if st.stride == s {
            (ta, [(0usize, 1usize), (2, 3)])
        } else {
            (tb, [(0, 2), (1, 3)])
        };
        for (q, (lo, hi)) in pairs.into_iter().enumerate() {
            let tw = Twiddles {
                base,
                half: n / 2,
                lanes: 4,
                store: row.store,
            };
            codelets::load_twiddles(asm, tw, q as u32 * s);
            let (l, h) = (tile.map[lo], tile.map[hi]);
            let (nl, nh) = codelets::pair(asm, &mut tile, l, h);
            tile.map[lo] = nl;
            tile.map[hi] = nh;
        }
    }
    for k in (1..4u32).rev() {
        asm.str(Width::Q, tile.map[k as usize], P, 4 * s * k);
    }
    asm.str_post(Width::Q, tile.map[0], P, 16);
    asm.add_imm(ta, ta, u64::from(row.store.off(4)));
    asm.add_imm(tb, tb, u64::from(row.store.off(4)));
    asm.subs_imm(INNER, INNER, 1);
    asm.b_cond(Cond::Ne, inner);
    if hot {
        asm.mark("hot_loop_end");
    }
    asm.add_imm(P, P, u64::from(12 * s));
    asm.add_imm(ta, ta, u64::from(row.store.off(s)));
    asm.add_imm(tb, tb, u64::from(row.store.off(s)));
    asm.subs_imm(OUTER, OUTER, 1);
    asm.b_cond(Cond::Ne, outer);
}

/// One stage of stride `s ≥ 4` on pairs `p, p+s`, `p = m·2s + 4j`; its twiddles (pair index
/// `ms + 4j`) are contiguous over the whole pass.
fn radix2_pass(asm: &mut Asm, stage: StageRef, n: u32, row: RowRegs) {
    let s = stage.stride;
    asm.comment(format!("radix-2 pass: stride {s} on pairs (v16, v17)"));
    asm.mov(P, row.work);
    asm.add_imm(T0, row.tw, stage.index * stage_bytes(n, row.store));
    asm.mov_imm(OUTER, i64::from(n / (2 * s)));
    let outer = asm.new_label();
    asm.bind(outer);
    asm.mov_imm(INNER, i64::from(s / 4));
    let inner = asm.new_label();
    asm.bind(inner);
    let mut tile = Tile::new(2);
    asm.ldr(Width::Q, tile.map[0], P, 0);
    asm.ldr(Width::Q, tile.map[1], P, 4 * s);
    let tw = Twiddles {
        base: T0,
        half: n / 2,
        lanes: 4,
        store: row.store,
    };
    codelets::load_twiddles(asm, tw, 0);
    let (l, h) = (tile.map[0], tile.map[1]);
    let (nl, nh) = codelets::pair(asm, &mut tile, l, h);
    asm.str(Width::Q, nh, P, 4 * s);
    asm.str_post(Width::Q, nl, P, 16);
    asm.add_imm(T0, T0, u64::from(row.store.off(4)));
    asm.subs_imm(INNER, INNER, 1);
    asm.b_cond(Cond::Ne, inner);
    asm.add_imm(P, P, u64::from(4 * s));
    asm.subs_imm(OUTER, OUTER, 1);
    asm.b_cond(Cond::Ne, outer);
}

/// Copies `n_in` floats from `src` to the work row `dst` and zero-fills it to `n`.
/// Clobbers x13..x15, v0..v3.
pub fn copy_row(asm: &mut Asm, dst: X, src: X, n_in: u32, n: u32) {
    asm.comment(format!("work row ← x ({n_in} floats), zero-padded to {n}"));
    let (s, d, cnt) = (X(13), X(14), X(15));
    asm.mov(s, src);
    asm.mov(d, dst);
    let blocks = n_in / 16;
    if blocks > 0 {
        asm.mov_imm(cnt, i64::from(blocks));
        let top = asm.new_label();
        asm.bind(top);
        asm.ld1_4s(V(0), 4, s, true);
        asm.st1_4s(V(0), 4, d, true);
        asm.subs_imm(cnt, cnt, 1);
        asm.b_cond(Cond::Ne, top);
    }
    for _ in 0..(n_in % 16) / 4 {
        asm.ldr_post(Width::Q, V(0), s, 16);
        asm.str_post(Width::Q, V(0), d, 16);
    }
    for _ in 0..n_in % 4 {
        asm.ldr_post(Width::S, V(0), s, 4);
        asm.str_post(Width::S, V(0), d, 4);
    }
    if n_in == n {
        return;
    }
    asm.zero(V(0));
    let mut at = n_in;
    while at < n && !at.is_multiple_of(4) {
        asm.str_post(Width::S, V(0), d, 4);
        at += 1;
    }
    let quads = (n - at) / 4;
    if quads > 8 {
        asm.mov_imm(cnt, i64::from(quads));
        let top = asm.new_label();
        asm.bind(top);
        asm.str_post(Width::Q, V(0), d, 16);
        asm.subs_imm(cnt, cnt, 1);
        asm.b_cond(Cond::Ne, top);
    } else {
        for _ in 0..quads {
            asm.str_post(Width::Q, V(0), d, 16);
        }
    }
}
