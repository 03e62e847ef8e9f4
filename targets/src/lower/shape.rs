//! Shape readers for the per-op lowerings: checked access to a site's operand and result
//! types (errors, never panics, on a malformed site), row views, and broadcast index plans.

use super::site::{LowerError, OpSite, dim_expr, numel_expr};
use bfly_ir::kernel::Expr;
use bfly_ir::{Dim, Type};

pub(crate) type R<T> = Result<T, LowerError>;

pub(crate) fn err<T>(site: &OpSite, msg: impl std::fmt::Display) -> R<T> {
    Err(LowerError::new(format!(
        "{} = {}: {msg}",
        site.name,
        site.op.name()
    )))
}

pub(crate) fn operand<'a>(site: &'a OpSite, i: usize) -> R<&'a Type> {
    match site.operands.get(i) {
        Some(t) => Ok(t),
        None => err(site, format!("missing operand {i}")),
    }
}

pub(crate) fn result<'a>(site: &'a OpSite, i: usize) -> R<&'a Type> {
    match site.results.get(i) {
        Some(t) => Ok(t),
        None => err(site, format!("missing result {i}")),
    }
}

/// Checks the number of (base) operands.
pub(crate) fn arity(site: &OpSite, count: usize, lo: usize, hi: usize) -> R<()> {
    if (lo..=hi).contains(&count) {
        Ok(())
    } else {
        err(site, format!("takes {lo} to {hi} operands, found {count}"))
    }
}

/// Every dim of `t` as a constant.
pub(crate) fn const_dims(site: &OpSite, t: &Type, what: &str) -> R<Vec<u64>> {
    match t
        .dims
        .iter()
        .map(Dim::as_const)
        .collect::<Option<Vec<u64>>>()
    {
        Some(d) => Ok(d),
        None => err(site, format!("{what} {t} must have constant dims")),
    }
}

/// A constant as an index; errors beyond `i64` (hand-written IR may declare any dims).
pub(crate) fn int(site: &OpSite, v: u64) -> R<i64> {
    match i64::try_from(v) {
        Ok(v) => Ok(v),
        Err(_) => err(site, format!("dim {v} does not fit an index")),
    }
}

/// Product of constants, checked.
pub(crate) fn cprod(site: &OpSite, vals: &[u64]) -> R<u64> {
    match vals.iter().try_fold(1u64, |a, &v| a.checked_mul(v)) {
        Some(p) if i64::try_from(p).is_ok() => Ok(p),
        _ => err(site, format!("sizes {vals:?} overflow an index")),
    }
}

/// `(rows, cols)`: leading dims flattened and a constant last dim; a symbolic last dim (or a
/// scalar) is viewed as `[numel, 1]`.
pub(crate) fn view(t: &Type) -> R<(Expr, u64)> {
    match t.last_const() {
        Some(c) => Ok((numel_expr(t.leading())?, c)),
        None => Ok((numel_expr(&t.dims)?, 1)),
    }
}

/// Rows as text for descriptors (`T`, `B·T`, `64`).
pub(crate) fn rows_text(dims: &[Dim]) -> String {
    let mut konst: u64 = 1;
    let mut parts: Vec<String> = Vec::new();
    for d in dims {
        match d {
            Dim::Const(c) => konst = konst.saturating_mul(*c),
            Dim::Sym(s) => parts.push(s.clone()),
        }
    }
    if konst != 1 || parts.is_empty() {
        parts.insert(0, konst.to_string());
    }
    parts.join("·")
}

/// One term of a broadcast index: `((o / div) % modulus) · stride`.
#[derive(Clone, Debug)]
struct Term {
    div: Option<Expr>,
    modulus: Option<Expr>,
    stride: Expr,
}

/// How an operand broadcast against a result is indexed from the result's row `o` and column
/// `c` (its `view`): numpy rules, aligned at the trailing axis.
#[derive(Clone, Debug)]
pub(crate) struct Bcast {
    terms: Vec<Term>,
    /// The operand varies along the column axis.
    inner: bool,
}

impl Bcast {
    pub fn index(&self, o: &Expr, c: &Expr) -> Expr {
        let mut acc = Expr::Int(0);
        for t in &self.terms {
            let mut v = o.clone();
            if let Some(d) = &t.div {
                v = v / d.clone();
            }
            if let Some(m) = &t.modulus {
                v = v % m.clone();
            }
            acc = acc + v * t.stride.clone();
        }
        if self.inner { acc + c.clone() } else { acc }
    }
}

/// The index plan of operand type `opnd` read at every element of result type `out`.
pub(crate) fn bcast(out: &Type, opnd: &Type) -> R<Bcast> {
    let r = out.rank();
    if opnd.rank() > r {
        return Err(LowerError::new(format!(
            "{opnd} does not broadcast to {out}"
        )));
    }
    let mut pd: Vec<Dim> = vec![Dim::Const(1); r - opnd.rank()];
    pd.extend(opnd.dims.iter().cloned());
    let od = &out.dims;
    for (a, b) in pd.iter().zip(od) {
        if a != b && *a != Dim::Const(1) {
            return Err(LowerError::new(format!(
                "{opnd} does not broadcast to {out}"
            )));
        }
    }
    // The column axis (a constant last dim) and the row axes flattened into `o`.
    let (outer_end, has_inner) = match out.last_const() {
        Some(_) => (r - 1, true),
        None => (r, false),
    };
    let inner = has_inner && pd[r - 1] != Dim::Const(1);
    // Operand strides (row-major over its padded dims).
    let stride = |a: usize| numel_expr(&pd[a + 1..]);
    // The longest run of trailing row axes where the operand matches the result exactly is
    // one contiguous block: its flat coordinate is `o % (its size)`.
    let mut a0 = outer_end;
    while a0 > 0 && pd[a0 - 1] == od[a0 - 1] {
        a0 -= 1;
    }
    let mut terms = Vec::new();
    if a0 < outer_end {
        terms.push(Term {
            div: None,
            modulus: (a0 > 0)
                .then(|| numel_expr(&od[a0..outer_end]))
                .transpose()?,
            stride: stride(outer_end - 1)?,
        });
    }
    for a in 0..a0 {
        if pd[a] == Dim::Const(1) {
            continue;
        }
        terms.push(Term {
            div: Some(numel_expr(&od[a + 1..outer_end])?),
            modulus: (a > 0).then(|| dim_expr(&od[a])).transpose()?,
            stride: stride(a)?,
        });
    }
    Ok(Bcast { terms, inner })
}

/// Coordinates of a flat index over `dims` (row-major), as index expressions.
pub(crate) struct Unflatten {
    /// Per axis: the divisor (elements per step of the axis) and the axis size (none for
    /// axis 0, which needs no remainder).
    axes: Vec<(Expr, Option<Expr>)>,
}

impl Unflatten {
    pub fn new(dims: &[Dim]) -> R<Unflatten> {
        let axes = (0..dims.len())
            .map(|a| {
                let size = (a > 0).then(|| dim_expr(&dims[a])).transpose()?;
                Ok((numel_expr(&dims[a + 1..])?, size))
            })
            .collect::<R<Vec<_>>>()?;
        Ok(Unflatten { axes })
    }

    pub fn coords(&self, o: &Expr) -> Vec<Expr> {
        self.axes
            .iter()
            .map(|(div, size)| {
                let v = o.clone() / div.clone();
                match size {
                    Some(s) => v % s.clone(),
                    None => v,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lower::emit::fold;
    use bfly_ir::DType;
    use bfly_ir::kernel::Expr;

    fn ty(dims: &[u64]) -> Type {
        Type::fixed(DType::F32, dims)
    }

    /// Evaluates a plan on concrete `(o, c)` (the plans use only ints and constants here).
    fn at(b: &Bcast, o: i64, c: i64) -> i64 {
        let mut e = b.index(&Expr::Int(o), &Expr::Int(c));
        fold(&mut e);
        e.eval_int(&[0, 0, 0]).expect("constant")
    }

    #[test]
    fn broadcast_plans_match_numpy() {
        // [2, 3, 4] ← [3, 1]: index = j (row within 3), ignores the column.
        let p = bcast(&ty(&[2, 3, 4]), &ty(&[3, 1])).expect("broadcasts");
        for o in 0..6 {
            for c in 0..4 {
                assert_eq!(at(&p, o, c), o % 3);
            }
        }
        // [2, 3, 4] ← [2, 1, 4]: index = i·4 + c.
        let p = bcast(&ty(&[2, 3, 4]), &ty(&[2, 1, 4])).expect("broadcasts");
        for o in 0..6 {
            for c in 0..4 {
                assert_eq!(at(&p, o, c), (o / 3) * 4 + c);
            }
        }
        // Same shape: flat.
        let p = bcast(&ty(&[2, 3, 4]), &ty(&[2, 3, 4])).expect("broadcasts");
        assert_eq!(at(&p, 5, 3), 23);
        assert!(bcast(&ty(&[2, 3]), &ty(&[2])).is_err());
    }
}
