//! Integer lane shifts the NEON `exp` needs (`kernels/neon_math.rs`): splitting the power
//! of two `2^n` into `2^(n>>1) · 2^(n − (n>>1))` takes an arithmetic shift right of the
//! exponent lanes.

use super::{Asm, V};
use dynasmrt::{DynasmApi, dynasm};

impl Asm {
    /// `d.4s = n.4s >> shift` (arithmetic, i32 lanes; shift 1..=32).
    pub fn sshr_4s(&mut self, d: V, n: V, shift: u32) {
        if self.check((1..=32).contains(&shift), || format!("sshr .4s #{shift}")) {
            dynasm!(self.ops ; .arch aarch64 ; sshr V(d.0).S4, V(n.0).S4, #shift);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::one;
    use super::super::{Asm, V};

    #[test]
    fn arithmetic_shift_decodes_as_written() {
        assert_eq!(
            one(|a| a.sshr_4s(V(3), V(30), 1)),
            "sshr v3.4s, v30.4s, #0x1"
        );
        assert_eq!(
            one(|a| a.sshr_4s(V(0), V(1), 32)),
            "sshr v0.4s, v1.4s, #0x20"
        );
    }

    #[test]
    fn shift_out_of_range_is_an_error() {
        let mut a = Asm::new();
        a.sshr_4s(V(0), V(1), 0);
        assert!(a.finish().is_err());
    }
}
