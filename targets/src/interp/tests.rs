//! The machine's scalar semantics, on a one-buffer memory.

use super::machine::{Machine, Memory};
use crate::exec::{ExecError, Val};
use bfly_ir::DType;
use bfly_ir::kernel::{Access, BodyBuilder, Expr};

/// One output buffer of `Val`s; arg 0 only.
struct Out(Vec<Val>);

impl Memory for Out {
    fn load(&mut self, _: u32, index: i64) -> Result<Val, ExecError> {
        Ok(self.0[index as usize])
    }

    fn store(&mut self, _: u32, index: i64, value: Val) -> Result<(), ExecError> {
        self.0[index as usize] = value;
        Ok(())
    }
}

/// Evaluates `e` by storing it into element 0.
fn eval(e: Expr, dtype: DType) -> Result<Val, ExecError> {
    let mut b = BodyBuilder::new();
    let y = b.param("y", dtype, Access::Write);
    b.store(y, 0, e);
    let body = b.finish();
    let mut mem = Out(vec![Val::I(0)]);
    Machine::new(&body, [5, 2, 7]).run_section(0, 0, 0, &mut mem)?;
    Ok(mem.0[0])
}

fn f(e: Expr) -> f32 {
    match eval(e, DType::F32) {
        Ok(Val::F(v)) => v,
        other => panic!("{other:?}"),
    }
}

fn i(e: Expr) -> Result<i64, String> {
    match eval(e, DType::I32) {
        Ok(Val::I(v)) => Ok(v),
        Ok(v) => Err(format!("{v:?}")),
        Err(e) => Err(e.message),
    }
}

#[test]
fn float_semantics_are_f32() {
    // 0.1 + 0.2 in f32 is not the f64 sum rounded.
    assert_eq!(f(Expr::f32(0.1) + Expr::f32(0.2)), 0.1f32 + 0.2f32);
    assert_eq!(f(Expr::f32(2.5).round()), 2.0);
    assert_eq!(f(Expr::f32(-3.5).round()), -4.0);
    assert_eq!(f(Expr::f32(1.0).exp()), 1f32.exp());
    assert_eq!(f(Expr::int(3).to_f32() / Expr::f32(2.0)), 1.5);
    assert_eq!(f(-Expr::f32(1.0).abs()), -1.0);
    assert_eq!(
        f(Expr::select(
            Expr::f32(1.0).lt(Expr::f32(2.0)),
            Expr::f32(7.0),
            Expr::f32(8.0)
        )),
        7.0
    );
}

#[test]
fn int_semantics() {
    assert_eq!(i(Expr::int(7) / Expr::int(2)), Ok(3));
    assert_eq!(i(Expr::int(7) % Expr::int(3)), Ok(1));
    assert_eq!(i(Expr::f32(-2.7).to_int()), Ok(-2));
    assert_eq!(i(Expr::f32(1e30).to_int()), Ok(i64::MAX));
    assert_eq!(i(Expr::f32(f32::NAN).to_int()), Ok(0));
    assert_eq!(i(Expr::int(3).min(Expr::int(-4))), Ok(-4));
    assert_eq!(i(Expr::sym(bfly_ir::kernel::RtSym::Pos) + 1), Ok(8));
    assert_eq!(i(Expr::int(2).le(Expr::int(2))), Ok(1));
    let e = i(Expr::int(-7) / Expr::int(2)).unwrap_err();
    assert!(e.contains("division of a negative operand"), "{e}");
    assert!(i(Expr::int(7) % Expr::int(0)).is_err());
    assert!(i(Expr::int(i64::MAX) + 1).is_err());
    assert!(i(-Expr::int(i64::MIN)).is_err());
}

#[test]
fn type_errors_are_errors_not_panics() {
    // The verifier rejects these; the machine still must not panic on them.
    assert!(eval(Expr::f32(1.0) + Expr::int(1), DType::F32).is_err());
    assert!(eval(Expr::f32(1.0) % Expr::f32(1.0), DType::F32).is_err());
    assert!(eval(Expr::int(1).exp(), DType::F32).is_err());
    assert!(eval(Expr::Var(bfly_ir::kernel::LoopVar(9)), DType::I32).is_err());
    let mut b = BodyBuilder::new();
    let _ = b.param("y", DType::F32, Access::Write);
    let body = b.finish();
    let mut mem = Out(vec![]);
    assert!(
        Machine::new(&body, [0; 3])
            .run_section(3, 0, 0, &mut mem)
            .is_err()
    );
}
