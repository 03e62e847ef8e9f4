//! The runtime symbols of one step.

use bfly_ir::kernel::RtSym;

/// Values of the runtime symbols for one step: `t` tokens in flight per sequence, `b`
/// sequences (training), `pos` tokens already in the KV cache (decode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Syms {
    pub t: usize,
    pub b: usize,
    pub pos: usize,
}

impl Syms {
    /// An inference step of `t` tokens at the start of the cache.
    pub fn tokens(t: usize) -> Syms {
        Syms { t, b: 1, pos: 0 }
    }

    /// An inference step of `t` tokens after `pos` cached ones.
    pub fn decode(t: usize, pos: usize) -> Syms {
        Syms { t, b: 1, pos }
    }

    /// A training step over `b` sequences of `t` tokens.
    pub fn batch(b: usize, t: usize) -> Syms {
        Syms { t, b, pos: 0 }
    }

    pub fn get(self, s: RtSym) -> usize {
        match s {
            RtSym::T => self.t,
            RtSym::B => self.b,
            RtSym::Pos => self.pos,
        }
    }

    /// The `syms` array compiled kernels receive, in `RtSym::slot` order. Values beyond
    /// `i64::MAX` saturate (the executor rejects them long before: they exceed every bound).
    pub fn to_array(self) -> [i64; 3] {
        let mut out = [0i64; 3];
        for s in RtSym::ALL {
            out[s.slot()] = i64::try_from(self.get(s)).unwrap_or(i64::MAX);
        }
        out
    }

    /// The value of a Graph-IR dim symbol (`T`, `B`).
    pub fn dim(self, name: &str) -> Option<usize> {
        RtSym::from_dim(name).map(|s| self.get(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_rtsym() {
        let s = Syms { t: 3, b: 2, pos: 9 };
        assert_eq!(s.to_array(), [3, 2, 9]);
        assert_eq!(s.dim("B"), Some(2));
        assert_eq!(s.dim("pos"), None);
        assert_eq!(Syms::decode(1, usize::MAX).to_array()[2], i64::MAX);
    }
}
