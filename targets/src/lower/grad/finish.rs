//! Closing a backward kernel: binding body params to `ArgRef`s, folding constant integer
//! arithmetic, and deriving each param's access from what the body does with it (the
//! program verifier checks access against the buffers it is bound to).

use crate::lower::site::{ArgRef, LoweredKernel};
use bfly_ir::DType;
use bfly_ir::kernel::{Access, BodyBuilder, KernelKind};

/// Params of the body under construction and what each is bound to.
#[derive(Default)]
pub struct Args {
    refs: Vec<ArgRef>,
}

impl Args {
    /// Declares a param bound to `r`. Its access is derived from the body in [`finish`].
    pub fn bind(&mut self, b: &mut BodyBuilder, name: &str, dtype: DType, r: ArgRef) -> u32 {
        self.refs.push(r);
        b.param(name, dtype, Access::Read)
    }
}

/// Closes a kernel: folds constant integer arithmetic and sets every param's access from the
/// loads and stores of the body (the program verifier checks access against the buffers).
pub fn finish(b: BodyBuilder, args: Args, kind: KernelKind) -> LoweredKernel {
    let mut body = b.finish();
    // The forward lowerings' finishing step: one folding and access rule for every body.
    crate::lower::emit::tidy(&mut body);
    LoweredKernel {
        kind,
        body,
        args: args.refs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bfly_ir::kernel::{Expr, LoopKind};

    #[test]
    fn folds_int_arithmetic_and_derives_access() {
        let mut b = BodyBuilder::new();
        let mut a = Args::default();
        let x = a.bind(&mut b, "x", DType::F32, ArgRef::Operand(0));
        let acc = a.bind(&mut b, "acc", DType::F32, ArgRef::Result(0));
        let y = a.bind(&mut b, "y", DType::F32, ArgRef::Result(1));
        b.for_(LoopKind::Parallel, 0, Expr::Int(2) * 3, |b, i| {
            let at = Expr::Var(i) * 1 + Expr::Int(0) * 7;
            b.store(
                acc,
                at.clone(),
                Expr::load(acc, at.clone()) + Expr::load(x, at.clone()),
            );
            // `x * 0.0` is float arithmetic: it must stay (NaN · 0 is NaN).
            b.store(y, at.clone(), Expr::load(x, at) * Expr::f32(0.0));
        });
        let k = finish(b, a, KernelKind::Other { op: "t".into() });
        let text = k.body.print("t");
        assert!(text.contains("parallel for i0 in 0..6"), "{text}");
        assert!(text.contains("acc[i0] = acc[i0] + x[i0]"), "{text}");
        assert!(text.contains("y[i0] = x[i0] * 0.0"), "{text}");
        let access: Vec<Access> = k.body.params.iter().map(|p| p.access).collect();
        assert_eq!(access, [Access::Read, Access::ReadWrite, Access::Write]);
        assert_eq!(
            k.args,
            [ArgRef::Operand(0), ArgRef::Result(0), ArgRef::Result(1)]
        );
    }
}
