//! How the packed twiddles are stored and read (DESIGN §5: butterfly twiddles may be
//! quantized to fp16 storage).
//!
//! - `F32`: plain loads.
//! - `F16`: half-width loads; for f32 arithmetic each load is widened in place with FCVTL
//!   (exact: every f16 is an f32), so the arithmetic — and every result bit — is the f32
//!   kernel's on the widened values; for f16 arithmetic (`FMLA .8h` by element) the raw
//!   halves are used as they are.

use crate::aarch64::emit::{Asm, V, Width, X};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TwStore {
    F32,
    F16,
}

impl TwStore {
    /// Bytes of one stored twiddle.
    pub fn bytes(self) -> u32 {
        match self {
            TwStore::F32 => 4,
            TwStore::F16 => 2,
        }
    }

    /// Byte offset of `elems` twiddles.
    pub fn off(self, elems: u32) -> u32 {
        self.bytes() * elems
    }

    /// The load width moving `lanes` (1, 2 or 4) stored twiddles.
    fn width(self, lanes: u32) -> Width {
        match (self, lanes) {
            (TwStore::F32, 4) => Width::Q,
            (TwStore::F32, 2) | (TwStore::F16, 4) => Width::D,
            (TwStore::F32, _) | (TwStore::F16, 2) => Width::S,
            (TwStore::F16, _) => Width::H,
        }
    }

    /// `v[0..lanes] = tw[at .. at + lanes]` as f32 (`at` in twiddles from `base`); f16
    /// loads are widened with FCVTL (lanes beyond `lanes` are then zero or don't-care,
    /// exactly as the f32 kernel's narrower loads leave them).
    pub fn load_f32(self, asm: &mut Asm, v: V, base: X, at: u32, lanes: u32) {
        asm.ldr(self.width(lanes), v, base, self.off(at));
        if self == TwStore::F16 {
            asm.fcvtl_4s(v, v);
        }
    }

    /// `v.h[0..lanes] = tw[at .. at + lanes]` as stored f16 (for by-element `.8h`
    /// arithmetic); `lanes` is 1, 2 or 4.
    pub fn load_f16(self, asm: &mut Asm, v: V, base: X, at: u32, lanes: u32) {
        if self != TwStore::F16 {
            asm.fail("f16 arithmetic needs f16 twiddles".into());
            return;
        }
        asm.ldr(self.width(lanes), v, base, self.off(at));
    }
}
