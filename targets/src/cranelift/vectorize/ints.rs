//! What the vectorizer knows about an int across the 4 lanes of a vector iteration: each
//! lane's offset from lane 0 (compile-time constants), and lane 0's residue modulo some `m`.
//!
//! `i` itself is `[0, 1, 2, 3]` with lane 0 ≡ start (mod 4) when the loop starts at a
//! constant (vector iterations start every 4). That residue is what makes `i % 4`
//! (`[0, 1, 2, 3]` again), `i / 4` (uniform) or `2·i - i % 2` (`[0, 1, 4, 5]`, the pairs of a
//! butterfly stage) exact per lane: lane l of `(x₀ + rel[l]) / d` is `x₀ / d + ⌊(r + rel[l]) /
//! d⌋` whenever x₀ ≡ r (mod d), for the non-negative operands the IR allows.

/// Lane l holds lane 0's value + `rel[l]` (`rel[0] = 0`); lane 0 ≡ `r` (mod `m`) in every
/// vector iteration. `m = 0` means lane 0 equals `r`; `m = 1` means nothing is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Ints {
    pub rel: [i64; 4],
    m: i64,
    r: i64,
}

fn gcd(a: i64, b: i64) -> i64 {
    let (mut a, mut b) = (a.unsigned_abs(), b.unsigned_abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    i64::try_from(a).unwrap_or(1)
}

/// Most lane-0 residues `div` tries (a divisor up to 4096 with nothing known).
const MAX_CANDIDATES: i64 = 4096;

fn lanes(f: impl Fn(usize) -> Option<i64>) -> Option<[i64; 4]> {
    Some([f(0)?, f(1)?, f(2)?, f(3)?])
}

impl Ints {
    /// A uniform int with nothing known (a runtime symbol, an outer loop var, a load).
    pub const UNKNOWN: Ints = Ints {
        rel: [0; 4],
        m: 1,
        r: 0,
    };

    pub fn exact(k: i64) -> Ints {
        Ints {
            rel: [0; 4],
            m: 0,
            r: k,
        }
    }

    /// The vector loop's own variable; `start` if the loop starts at a constant.
    pub fn loop_var(start: Option<i64>) -> Ints {
        let (m, r) = start.map_or((1, 0), |s| (4, s.rem_euclid(4)));
        Ints {
            rel: [0, 1, 2, 3],
            m,
            r,
        }
    }

    fn new(rel: [i64; 4], m: i64, r: i64) -> Option<Ints> {
        let m = m.checked_abs()?;
        let r = if m == 0 { r } else { r.rem_euclid(m) };
        Some(Ints { rel, m, r })
    }

    pub fn is_uniform(self) -> bool {
        self.rel == [0; 4]
    }

    /// The constant value, if lane 0 is known exactly and all lanes are equal.
    pub fn constant(self) -> Option<i64> {
        (self.m == 0 && self.is_uniform()).then_some(self.r)
    }

    pub fn add(self, o: Ints) -> Option<Ints> {
        let rel = lanes(|l| self.rel[l].checked_add(o.rel[l]))?;
        Ints::new(rel, gcd(self.m, o.m), self.r.checked_add(o.r)?)
    }

    pub fn neg(self) -> Option<Ints> {
        let rel = lanes(|l| self.rel[l].checked_neg())?;
        Ints::new(rel, self.m, self.r.checked_neg()?)
    }

    pub fn scale(self, k: i64) -> Option<Ints> {
        let rel = lanes(|l| self.rel[l].checked_mul(k))?;
        Ints::new(rel, self.m.checked_mul(k)?, self.r.checked_mul(k)?)
    }

    /// `self / d` (`rem = false`) or `self % d` for a constant `d > 0`; `None` when the
    /// lanes cannot be known at compile time: lane 0's residue mod d is only known to be one
    /// of `r mod g + k·g` (g = gcd(m, d)), and every candidate must give the same lanes.
    pub fn div(self, d: i64, rem: bool) -> Option<Ints> {
        if d <= 0 {
            return None;
        }
        if self.is_uniform() {
            return Some(match self.constant() {
                Some(k) if rem => Ints::exact(k.checked_rem(d)?),
                Some(k) => Ints::exact(k.checked_div(d)?),
                None => Ints::UNKNOWN,
            });
        }
        let g = gcd(self.m, d);
        let candidates = d / g;
        if candidates > MAX_CANDIDATES {
            return None;
        }
        let base = self.r.rem_euclid(g);
        // Lane l relative to lane 0 when lane 0 ≡ c (mod d), 0 ≤ c < d.
        let pattern = |c: i64| {
            lanes(|l| {
                let v = c.checked_add(self.rel[l])?;
                Some(if rem {
                    v.rem_euclid(d) - c
                } else {
                    v.div_euclid(d)
                })
            })
        };
        let rel = pattern(base)?;
        for k in 1..candidates {
            if pattern(base + k * g)? != rel {
                return None;
            }
        }
        match (rem, candidates) {
            // Lane 0 is exactly `base`, or known mod g.
            (true, 1) => Ints::new(rel, 0, base),
            (true, _) => Ints::new(rel, g, base),
            // x₀ = q·d + base with d | m: q ≡ (r - base) / d (mod m / d).
            (false, 1) => Ints::new(rel, self.m / d, (self.r - base) / d),
            (false, _) => Ints::new(rel, 1, 0),
        }
    }

    /// What two assignments of one local have in common (`None` if the lanes differ).
    pub fn join(self, o: Ints) -> Option<Ints> {
        if self.rel != o.rel {
            return None;
        }
        let m = gcd(gcd(self.m, o.m), self.r.checked_sub(o.r)?);
        Ints::new(self.rel, m, self.r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks `f` of the shape against `g` on every lane for lane-0 values with the residue.
    fn check(x: Ints, f: impl Fn(Ints) -> Option<Ints>, g: impl Fn(i64) -> i64) {
        let y = f(x).expect("known lanes");
        for base in 0..64 {
            let x0 = if x.m == 0 { x.r } else { x.r + x.m * base };
            let y0 = g(x0);
            for l in 0..4 {
                assert_eq!(g(x0 + x.rel[l]), y0 + y.rel[l], "x0 = {x0}, lane {l}");
            }
            if y.m == 0 {
                assert_eq!(y0, y.r);
            } else {
                assert_eq!(y0.rem_euclid(y.m), y.r, "residue of {y0}");
            }
        }
    }

    #[test]
    fn butterfly_pair_indices_are_known_per_lane() {
        let i = Ints::loop_var(Some(0));
        for s in [1, 2, 4] {
            // p = 2·i - i % s
            let p = |x: Ints| x.scale(2)?.add(x.div(s, true)?.neg()?);
            check(i, p, |v| 2 * v - v % s);
        }
        check(i, |x| x.div(4, false), |v| v / 4);
        check(i, |x| x.div(2, false), |v| v / 2);
        check(i, |x| x.scale(3)?.div(2, true), |v| 3 * v % 2);
        // Lane 0 is only known mod 4, but no lane wraps at 8 or 16 either way.
        check(i, |x| x.div(8, true), |v| v % 8);
        check(i, |x| x.div(16, false), |v| v / 16);
        check(
            i,
            |x| x.scale(2)?.add(x.div(16, true)?.neg()?),
            |v| 2 * v - v % 16,
        );
        assert_eq!(
            i.scale(3).and_then(|x| x.div(8, true)),
            None,
            "3·i wraps at 8"
        );
        assert_eq!(Ints::loop_var(None).div(2, true), None);
        assert_eq!(Ints::loop_var(None).div(8, true), None);
        let odd = Ints::loop_var(Some(1));
        check(odd, |x| x.div(2, true), |v| v % 2);
    }
}
