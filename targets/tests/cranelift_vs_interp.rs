//! The Cranelift backend against the Kernel IR interpreter (`interp::Machine`) on random
//! bodies: a parallel section of elementwise maps and reductions run in sub-ranges, then a
//! serial section. Both use f32 arithmetic rounded per op, so results agree exactly (sums:
//! within the reassociation bound) for ops both compute the same way: `exp`/`tanh` (inline
//! polynomials here, libm there) and float `min`/`max` (NaN-propagating here, NaN-ignoring
//! there) are left out of the expressions, cases whose values hit NaN are skipped (the row
//! max would differ), and zeros compare equal regardless of sign.
#![allow(unsafe_code)]

mod cranelift_common;

use bfly_ir::DType;
use bfly_ir::kernel::*;
use bfly_targets::exec::{ExecError, Val};
use bfly_targets::interp::{Machine, Memory};
use cranelift_common::exprs::*;
use cranelift_common::*;
use proptest::prelude::*;

/// The interpreter's view of the test buffers.
struct Mem<'a>(&'a mut [Buf]);

impl Memory for Mem<'_> {
    fn load(&mut self, arg: u32, index: i64) -> Result<Val, ExecError> {
        let i = usize::try_from(index).map_err(|_| ExecError::new("negative index"))?;
        let oob = || ExecError::new(format!("arg {arg} index {i} out of bounds"));
        Ok(match self.0.get(arg as usize).ok_or_else(oob)? {
            Buf::F32(v) => Val::F(*v.get(i).ok_or_else(oob)?),
            Buf::F16(v) => Val::F(half::f16::from_bits(*v.get(i).ok_or_else(oob)?).to_f32()),
            Buf::I8(v) => Val::I(i64::from(*v.get(i).ok_or_else(oob)?)),
            Buf::I32(v) => Val::I(i64::from(*v.get(i).ok_or_else(oob)?)),
        })
    }

    fn store(&mut self, arg: u32, index: i64, value: Val) -> Result<(), ExecError> {
        let i = usize::try_from(index).map_err(|_| ExecError::new("negative index"))?;
        let oob = || ExecError::new(format!("arg {arg} index {i} out of bounds"));
        match (self.0.get_mut(arg as usize).ok_or_else(oob)?, value) {
            (Buf::F32(v), Val::F(x)) => *v.get_mut(i).ok_or_else(oob)? = x,
            (Buf::F16(v), Val::F(x)) => {
                *v.get_mut(i).ok_or_else(oob)? = half::f16::from_f32(x).to_bits()
            }
            (Buf::I8(v), Val::I(x)) => *v.get_mut(i).ok_or_else(oob)? = x as i8,
            (Buf::I32(v), Val::I(x)) => *v.get_mut(i).ok_or_else(oob)? = x as i32,
            _ => return Err(ExecError::new("store type mismatch")),
        }
        Ok(())
    }
}

fn close(a: f32, b: f32) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

const ROWS: i64 = 6;
const COLS: i64 = 36;

/// Section 0, parallel over T rows: `y[r, c] = e(c) + r` (vector), row sum and max of
/// `e` (vector reductions) into `stats`. Section 1: the total of the row sums.
fn body(e: &E, rows: Expr) -> Body {
    let mut b = BodyBuilder::new();
    let p = inputs(&mut b);
    let y = b.param("y", DType::F32, Access::Write);
    let stats = b.param("stats", DType::F32, Access::ReadWrite);
    let total = b.param("total", DType::F32, Access::Write);
    b.for_(LoopKind::Parallel, 0, rows.clone(), |b, r| {
        let s = b.let_(Expr::f32(0.0));
        let m = b.let_(Expr::f32(f32::NEG_INFINITY));
        b.for_(LoopKind::Vector, 0, COLS, |b, c| {
            let v = b.let_(build(e, &p, c));
            b.store(y, r * COLS + c, Expr::Local(v) + Expr::Var(r).to_f32());
            b.assign(s, s + v);
            b.assign(m, Expr::Local(m).max(Expr::Local(v)));
        });
        b.store(stats, r * 2, s);
        b.store(stats, r * 2 + 1, m);
    });
    b.serial(0, 1, |b, _| {
        let t = b.let_(Expr::f32(0.0));
        b.serial(0, rows, |b, r| b.assign(t, t + Expr::load(stats, r * 2)));
        b.store(total, 0, t);
    });
    b.finish()
}

fn buffers(d: &Data) -> Vec<Buf> {
    let mut bufs = d.bufs(0);
    bufs.push(Buf::F32(vec![0.0; (ROWS * COLS) as usize]));
    bufs.push(Buf::F32(vec![0.0; (ROWS * 2) as usize]));
    bufs.push(Buf::F32(vec![0.0]));
    bufs
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn backend_matches_interpreter(e in expr_with(true), rows in 0i64..=ROWS, pieces in 1i64..4, seed in 0u64..1000) {
        let body = body(&e, Expr::sym(RtSym::T));
        let d = Data::new(seed, false);
        let syms = [rows, 1, 0];
        // NaN from inf - inf or 0 / 0 would meet `max`, where the two differ by design.
        let vals: Vec<f32> = (0..COLS).map(|c| mirror(&e, &d, c)).collect();
        prop_assume!(vals.iter().all(|v| !v.is_nan()));

        let mut want = buffers(&d);
        let mut machine = Machine::new(&body, syms);
        for s in 0..body.num_sections() {
            machine
                .run_section(s, 0, rows, &mut Mem(&mut want))
                .map_err(|e| TestCaseError::fail(e.message))?;
        }

        let host = compile(&body);
        prop_assert!(host.notes().is_empty(), "{:?}", host.notes());
        let mut got = buffers(&d);
        run_split(&host, &body, &mut got, syms, pieces);

        let n = (rows * COLS) as usize;
        let (gy, wy) = (got[4].f32(), want[4].f32());
        for i in 0..n {
            prop_assert!(close(gy[i], wy[i]), "y[{}]: {} vs {}", i, gy[i], wy[i]);
        }
        let (gs, ws) = (got[5].f32(), want[5].f32());
        for r in 0..rows as usize {
            prop_assert!(close(gs[2 * r + 1], ws[2 * r + 1]), "max row {}", r);
            let abs: f64 = vals.iter().map(|v| f64::from(*v).abs()).sum();
            if abs.is_finite() && abs < 1e30 {
                let tol = COLS as f64 * f64::from(f32::EPSILON) * abs * 2.0;
                prop_assert!((f64::from(gs[2 * r]) - f64::from(ws[2 * r])).abs() <= tol, "sum row {}", r);
            }
        }
    }
}
