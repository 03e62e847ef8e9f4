//! In-register butterfly stages on a tile of the work row (pairs in lanes): logical vector
//! `k` of the tile holds elements `4k .. 4k+4` (tile-relative) in a physical register that
//! changes as results are written to free registers (a renaming map, so no `mov`s).
//!
//! One 2×2 pair of vectors `(lo, hi)` with twiddle vectors `a, b, c, d` (4 consecutive
//! pair indices each) costs 4 loads and `lo' = a·lo + b·hi` (FMUL + FMLA), `hi' = c·lo + d·hi`
//! (FMUL + FMLA). Strides ≥ 4 pair whole vectors; stride 2 and 1 first regroup two vectors
//! with TRN1/TRN2 `.2d` resp. UZP1/UZP2 `.4s` so that lane `l` of `lo` pairs with lane `l`
//! of `hi`, and undo it after (TRN `.2d` resp. ZIP `.4s`).

use super::twiddle::TwStore;
use crate::aarch64::emit::{Asm, V, X};

/// Twiddle registers (a, b, c, d).
pub const TW: [V; 4] = [V(0), V(1), V(2), V(3)];

/// A tile of `len` logical vectors in physical registers, plus free registers.
pub struct Tile {
    pub map: Vec<V>,
    free: Vec<V>,
}

impl Tile {
    /// Tile vectors in `v16..` (at most 16), free registers `v4..v7`.
    pub fn new(len: usize) -> Tile {
        Tile {
            map: (0..len as u32).map(|k| V(16 + k)).collect(),
            free: vec![V(7), V(6), V(5), V(4)],
        }
    }

    fn take(&mut self, asm: &mut Asm) -> V {
        match self.free.pop() {
            Some(v) => v,
            None => {
                asm.fail("butterfly tile: no free register".into());
                V(4)
            }
        }
    }
}

/// Where one stage's twiddles are: `base` points at coefficient `a` of pair index 0 of
/// this tile; coefficient `k` is `k·half` twiddles further. `lanes` is how many pair
/// indices one load covers (4, or 2 / 1 when the row has only 4 / 2 floats); `store` how
/// they are stored (f16 is widened on load).
#[derive(Clone, Copy, Debug)]
pub struct Twiddles {
    pub base: X,
    pub half: u32,
    pub lanes: u32,
    pub store: TwStore,
}

/// Loads the twiddles of pair indices `i .. i+4` into [`TW`].
pub fn load_twiddles(asm: &mut Asm, tw: Twiddles, i: u32) {
    for (k, v) in TW.iter().enumerate() {
        tw.store
            .load_f32(asm, *v, tw.base, k as u32 * tw.half + i, tw.lanes);
    }
}

/// `lo, hi = a·lo + b·hi, c·lo + d·hi` with [`TW`] loaded; results in free registers,
/// the inputs' registers freed. Returns the new (lo, hi).
pub fn pair(asm: &mut Asm, tile: &mut Tile, lo: V, hi: V) -> (V, V) {
    let (nl, nh) = (tile.take(asm), tile.take(asm));
    let [a, b, c, d] = TW;
    asm.fmul_4s(nl, lo, a);
    asm.fmul_4s(nh, lo, c);
    asm.fmla_4s(nl, hi, b);
    asm.fmla_4s(nh, hi, d);
    tile.free.push(lo);
    tile.free.push(hi);
    (nl, nh)
}

/// One stage of `stride` over the whole tile (`tile.map.len()` vectors; a 1-vector tile
/// pairs the vector with itself for strides 1 and 2).
pub fn stage(asm: &mut Asm, tile: &mut Tile, stride: u32, tw: Twiddles) {
    let len = tile.map.len() as u32;
    if stride >= 4 {
        let d = stride / 4;
        for k in 0..len {
            if (k / d) % 2 == 1 {
                continue;
            }
            let p = 4 * k;
            let i = (p / (2 * stride)) * stride + p % stride;
            load_twiddles(asm, tw, i);
            let (lo, hi) = (tile.map[k as usize], tile.map[(k + d) as usize]);
            let (nl, nh) = pair(asm, tile, lo, hi);
            tile.map[k as usize] = nl;
            tile.map[(k + d) as usize] = nh;
        }
        return;
    }
    let mut k = 0;
    while k < len {
        let r0 = tile.map[k as usize];
        let r1 = if len == 1 {
            r0
        } else {
            tile.map[k as usize + 1]
        };
        load_twiddles(asm, tw, 2 * k);
        let (lo, hi) = (tile.take(asm), tile.take(asm));
        if stride == 1 {
            asm.uzp1_4s(lo, r0, r1);
            asm.uzp2_4s(hi, r0, r1);
        } else {
            asm.trn1_2d(lo, r0, r1);
            asm.trn2_2d(hi, r0, r1);
        }
        tile.free.push(r0);
        if len > 1 {
            tile.free.push(r1);
        }
        let (nl, nh) = pair(asm, tile, lo, hi);
        let o0 = tile.take(asm);
        if stride == 1 {
            asm.zip1_4s(o0, nl, nh);
        } else {
            asm.trn1_2d(o0, nl, nh);
        }
        tile.map[k as usize] = o0;
        if len > 1 {
            let o1 = tile.take(asm);
            if stride == 1 {
                asm.zip2_4s(o1, nl, nh);
            } else {
                asm.trn2_2d(o1, nl, nh);
            }
            tile.map[k as usize + 1] = o1;
        }
        tile.free.push(nl);
        tile.free.push(nh);
        k += 2;
    }
}
