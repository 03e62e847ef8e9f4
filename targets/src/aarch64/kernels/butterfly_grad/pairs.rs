//! Where a chunk of consecutive pairs of one butterfly stage lives in a row, and how to move
//! it between memory and four registers in the roles `(P0, Q0, P1, Q1)`: `Pk`/`Qk` hold the
//! `p`/`q` elements of pairs `4k..4k+4` of the chunk (lane `j` = pair `4k + j`), the order
//! the twiddles come in from `ld4`.
//!
//! Pair `i` of a stage with stride `s` has `p = 2(i − i mod s) + i mod s`, `q = p + s`:
//! - `s = 1`: `p, q` alternate — `ld2 .4s` de-interleaves 8 floats into `P` and `Q`;
//! - `s = 2`: they alternate in 64-bit halves — `ld2 .2d`;
//! - `s = 4`: 4 pairs are `[p p p p q q q q]` — plain `ld1`;
//! - `s ≥ 8`: 8 pairs are 8 consecutive `p`s and 8 consecutive `q`s `4s` bytes later.
//!
//! A chunk is 8 pairs when the stage has at least 8 (two sets of registers per step), else
//! the stage's 4 pairs.

use crate::aarch64::emit::{Asm, V, Width, X};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// Stride 1.
    Words,
    /// Stride 2.
    Doublewords,
    /// Stride 4.
    Quads,
    /// Stride ≥ 8: the `q` half starts `q_off` bytes after the `p` half.
    Halves { q_off: u32 },
}

/// One chunk of pairs of a stage.
#[derive(Clone, Copy, Debug)]
pub struct Chunk {
    /// 4 or 8.
    pub pairs: u32,
    layout: Layout,
}

impl Chunk {
    /// The chunk of a stage with `half` pairs (`half ≥ 4`) and stride `stride`.
    pub fn new(half: u64, stride: u64) -> Chunk {
        // `Halves` needs 8 pairs: a stride ≥ 8 implies half ≥ 8.
        let pairs = if half >= 8 { 8 } else { 4 };
        let layout = match stride {
            1 => Layout::Words,
            2 => Layout::Doublewords,
            4 => Layout::Quads,
            s => Layout::Halves {
                q_off: (4 * s) as u32,
            },
        };
        Chunk { pairs, layout }
    }

    /// Sets of four pairs per chunk (1 or 2).
    pub fn sets(&self) -> u32 {
        self.pairs / 4
    }

    /// The stage's stride when it is at least 8 (the pairs loop nests over blocks of
    /// `2·stride` positions), else `None` (one flat loop over the row).
    pub fn block_stride(&self) -> Option<u32> {
        match self.layout {
            Layout::Halves { q_off } => Some(q_off / 4),
            _ => None,
        }
    }

    /// Bytes a load or store advances its pointer: the whole chunk, or for `s ≥ 8` its
    /// `p` half (the `q` half is skipped once per block).
    pub fn step_bytes(&self) -> u32 {
        match self.layout {
            Layout::Halves { .. } => 4 * self.pairs,
            _ => 8 * self.pairs,
        }
    }

    /// Registers `(P0, Q0, P1, Q1)` of the group `first..first+4`.
    pub fn roles(&self, first: u32) -> [V; 4] {
        match self.layout {
            Layout::Halves { .. } => [V(first), V(first + 2), V(first + 1), V(first + 3)],
            _ => [V(first), V(first + 1), V(first + 2), V(first + 3)],
        }
    }

    /// Loads the chunk at `ptr` into `first..`, advancing `ptr` by [`Chunk::step_bytes`].
    pub fn load(&self, a: &mut Asm, first: u32, ptr: X) {
        let two = self.pairs == 8;
        match self.layout {
            Layout::Words => {
                a.ld2_4s(V(first), ptr, true);
                if two {
                    a.ld2_4s(V(first + 2), ptr, true);
                }
            }
            Layout::Doublewords => {
                a.ld2_2d(V(first), ptr, true);
                if two {
                    a.ld2_2d(V(first + 2), ptr, true);
                }
            }
            Layout::Quads => a.ld1_4s(V(first), if two { 4 } else { 2 }, ptr, true),
            Layout::Halves { q_off } => {
                a.ld1_4s(V(first), 2, ptr, true);
                a.ldr(Width::Q, V(first + 2), ptr, q_off - 32);
                a.ldr(Width::Q, V(first + 3), ptr, q_off - 16);
            }
        }
    }

    /// Stores `first..` as the chunk at `ptr`, advancing `ptr` like [`Chunk::load`].
    pub fn store(&self, a: &mut Asm, first: u32, ptr: X) {
        let two = self.pairs == 8;
        match self.layout {
            Layout::Words => {
                a.st2_4s(V(first), ptr, true);
                if two {
                    a.st2_4s(V(first + 2), ptr, true);
                }
            }
            Layout::Doublewords => {
                a.st2_2d(V(first), ptr, true);
                if two {
                    a.st2_2d(V(first + 2), ptr, true);
                }
            }
            Layout::Quads => a.st1_4s(V(first), if two { 4 } else { 2 }, ptr, true),
            Layout::Halves { q_off } => {
                a.st1_4s(V(first), 2, ptr, true);
                a.str(Width::Q, V(first + 2), ptr, q_off - 32);
                a.str(Width::Q, V(first + 3), ptr, q_off - 16);
            }
        }
    }

    /// What the layout is called in comments.
    pub fn describe(&self) -> String {
        let how = match self.layout {
            Layout::Words => "stride 1: ld2/st2 .4s".to_string(),
            Layout::Doublewords => "stride 2: ld2/st2 .2d".to_string(),
            Layout::Quads => "stride 4: ld1/st1 [p q p q]".to_string(),
            Layout::Halves { q_off } => format!("stride {}: p, q halves", q_off / 4),
        };
        format!("{} pairs per step, {how}", self.pairs)
    }
}
