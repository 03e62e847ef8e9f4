//! Four-way structure loads and stores (`ld4`/`st4` on `.4s`): a butterfly's twiddles are
//! stored `[pair][2][2]`, so one `ld4` of 16 floats gives the four entries `t00 t01 t10 t11`
//! of four consecutive pairs in four registers, and one `st4` writes four pairs' twiddle
//! gradients back in that layout.

use super::{Asm, V, X};
use dynasmrt::{DynasmApi, dynasm};

impl Asm {
    /// `ld4 {a.4s .. a+3.4s}, [n]`: 16 floats de-interleaved by 4 (element `4k + c` into
    /// lane `k` of `a + c`); `n += 64` when `post`.
    pub fn ld4_4s(&mut self, a: V, n: X, post: bool) {
        if !self.quad_list_ok(a) {
            return;
        }
        if post {
            dynasm!(self.ops ; .arch aarch64 ; ld4 {V(a.0).S4 * 4}, [X(n.0)], #64);
        } else {
            dynasm!(self.ops ; .arch aarch64 ; ld4 {V(a.0).S4 * 4}, [X(n.0)]);
        }
    }

    /// `st4 {a.4s .. a+3.4s}, [n]`: interleaves back; `n += 64` when `post`.
    pub fn st4_4s(&mut self, a: V, n: X, post: bool) {
        if !self.quad_list_ok(a) {
            return;
        }
        if post {
            dynasm!(self.ops ; .arch aarch64 ; st4 {V(a.0).S4 * 4}, [X(n.0)], #64);
        } else {
            dynasm!(self.ops ; .arch aarch64 ; st4 {V(a.0).S4 * 4}, [X(n.0)]);
        }
    }

    fn quad_list_ok(&mut self, a: V) -> bool {
        self.check(a.0 + 4 <= 32, || {
            format!("register list v{}×4 runs past v31", a.0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::one;
    use super::super::{Asm, V, X};

    #[test]
    fn four_way_structures_decode_as_written() {
        assert_eq!(
            one(|a| a.ld4_4s(V(4), X(5), true)),
            "ld4 {v4.4s, v5.4s, v6.4s, v7.4s}, [x5], #0x40"
        );
        assert_eq!(
            one(|a| a.ld4_4s(V(28), X(0), false)),
            "ld4 {v28.4s, v29.4s, v30.4s, v31.4s}, [x0]"
        );
        assert_eq!(
            one(|a| a.st4_4s(V(16), X(9), true)),
            "st4 {v16.4s, v17.4s, v18.4s, v19.4s}, [x9], #0x40"
        );
    }

    #[test]
    fn a_list_past_v31_is_an_error() {
        let mut a = Asm::new();
        a.st4_4s(V(30), X(1), false);
        assert!(a.finish().is_err());
    }
}
