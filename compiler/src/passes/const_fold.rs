//! `const-fold`: algebraic identities and constant arithmetic.
//!
//! | pattern | becomes | exactness |
//! |---|---|---|
//! | `scale(scale(x, a), b)` | `scale(x, a·b)` (or `x` when `a·b = 1`) | exact when `a` or `b` is a power of two; otherwise one rounding instead of two (within an ulp). Only when `a·b` is a normal number, or 0 because a factor is 0, so no overflow or underflow the original would not have had |
//! | `scale(x, 1)` | `x` | exact |
//! | `mul(x, fill 1)`, `mul(fill 1, x)` | `x` | exact |
//! | `add(x, fill ±0)`, `add(fill ±0, x)`, `sub(x, fill ±0)` | `x` | exact, except that `−0 + 0` and `−0 − (−0)` are `+0`: equal values, sign of zero aside |
//! | `neg(neg(x))` | `x` | exact |
//! | `reshape(reshape(x))` | one `reshape` (or `x` if it restores `x`'s type) | exact |
//! | `reshape(x)` to `x`'s own type | `x` | exact |
//! | `transpose(x, identity)` | `x` | exact |
//! | `transpose(transpose(x, p), q)` | `transpose(x, p∘q)`, `c[a] = p[q[a]]` (or `x`) | exact |
//! | `cast(x)` to `x`'s dtype | `x` | exact |
//! | `add/sub/mul(fill a, fill b)`, `neg(fill a)`, `scale(fill a, f)` | `fill` of the result | only for f32 when `a`, `b` (or `f`) and the result are exactly representable in f32: then an f32 backend, which rounds the fills first, and the f64 reference agree bit for bit |
//!
//! Identities that replace an op by its operand apply only when the result type equals the
//! operand's type (a `mul` by a broadcast `fill` of 1 that widens `x` stays). Rewrites repeat
//! until none applies, so chains collapse (`neg⁴ x → x`).

use bfly_grammar::Diagnostic;
use bfly_ir::{DType, Graph, NodeId, Op, Value};

use super::fold_util::{add1, forward};
use super::{Pass, PassContext};

pub struct ConstFold;

impl Pass for ConstFold {
    fn name(&self) -> &'static str {
        "const-fold"
    }

    fn description(&self) -> &'static str {
        "fold identities (x·1, x+0, neg∘neg, reshape∘reshape, …) and constant arithmetic"
    }

    fn run(&self, g: &mut Graph, cx: &PassContext<'_>) -> Result<(), Vec<Diagnostic>> {
        const_fold(g)
            .map(|_| ())
            .map_err(|m| vec![cx.bug(self.name(), m)])
    }
}

/// What a node folds to.
enum Fold {
    /// An existing value of the same type.
    To(Value),
    /// A new op on the given operands (same result type).
    New(Op, Vec<Value>),
}

/// Applies the table's rewrites until none applies; returns how many it made.
pub fn const_fold(g: &mut Graph) -> Result<usize, String> {
    let mut count = 0;
    // Every rewrite removes the node it folds (after redirecting its uses), and a new node
    // only ever replaces a chain of two by one; the bound is a guard against a rule
    // interaction this reasoning missed, not a limit that is ever reached.
    let limit = 4 * g.node_count() + 16;
    loop {
        let mut changed = false;
        for id in g.topo_order().unwrap_or_default() {
            if !g.contains(id) {
                continue;
            }
            let Some(fold) = fold_node(g, id) else {
                continue;
            };
            let to = match fold {
                Fold::To(v) => v,
                Fold::New(op, operands) => add1(g, op, &operands, id)?,
            };
            let old = Value::first(id);
            if g.value_type(to) != g.value_type(old) {
                return Err(format!(
                    "folding {} changed its type from {} to {}",
                    g.node(id).op.name(),
                    g.value_type(old),
                    g.value_type(to)
                ));
            }
            forward(g, old, to);
            count += 1;
            changed = true;
            if count > limit {
                return Err("const-fold did not reach a fixed point".into());
            }
        }
        if !changed {
            return Ok(count);
        }
    }
}

fn fill_of(g: &Graph, v: Value) -> Option<(f64, DType)> {
    match g.node(v.node).op {
        Op::Fill { value, dtype, .. } => Some((value, dtype)),
        _ => None,
    }
}

/// `v` is exactly an f32 value (so f32 and f64 arithmetic on it start from the same number).
fn is_f32(v: f64) -> bool {
    v.is_finite() && f64::from(v as f32) == v
}

/// `value` as a fill of `id`'s result type, when the arithmetic was exact in f32.
fn constant(g: &Graph, id: NodeId, inputs: &[f64], value: f64) -> Option<Fold> {
    let ty = &g.node(id).results[0];
    let exact = ty.dtype == DType::F32 && inputs.iter().all(|&a| is_f32(a)) && is_f32(value);
    exact.then(|| {
        Fold::New(
            Op::Fill {
                value,
                dtype: ty.dtype,
                dims: ty.dims.clone(),
            },
            Vec::new(),
        )
    })
}

fn fold_node(g: &Graph, id: NodeId) -> Option<Fold> {
    let node = g.node(id);
    if node.results.len() != 1 {
        return None;
    }
    let ty = &node.results[0];
    let ops = g.operands(id);
    // `x` itself may replace the node only if nothing about the type changes.
    let same = |v: Value| (g.value_type(v) == ty).then_some(Fold::To(v));
    let inner = |v: Value| &g.node(v.node).op;
    match (&node.op, &ops[..]) {
        (Op::Scale { factor }, &[x]) => {
            if *factor == 1.0 {
                return same(x);
            }
            if let Some((a, _)) = fill_of(g, x) {
                return constant(g, id, &[a, *factor], a * factor);
            }
            let Op::Scale { factor: a } = *inner(x) else {
                return None;
            };
            let p = a * factor;
            let safe = p.is_normal() || (p == 0.0 && (a == 0.0 || *factor == 0.0));
            let y = g.operands(x.node)[0];
            if !safe {
                None
            } else if p == 1.0 {
                same(y)
            } else {
                Some(Fold::New(Op::Scale { factor: p }, vec![y]))
            }
        }
        (Op::Mul | Op::Add | Op::Sub, &[x, y]) => {
            if let (Some((a, _)), Some((b, _))) = (fill_of(g, x), fill_of(g, y)) {
                let r = match node.op {
                    Op::Mul => a * b,
                    Op::Add => a + b,
                    _ => a - b,
                };
                return constant(g, id, &[a, b], r);
            }
            let unit = |v: Value| fill_of(g, v).map(|(c, _)| c);
            let identity = match node.op {
                Op::Mul => 1.0,
                _ => 0.0,
            };
            // `==` treats −0 and +0 alike: both are additive identities up to the sign of 0.
            if unit(y) == Some(identity) {
                return same(x);
            }
            if node.op != Op::Sub && unit(x) == Some(identity) {
                return same(y);
            }
            None
        }
        (Op::Neg, &[x]) => {
            if let Some((a, _)) = fill_of(g, x) {
                return constant(g, id, &[a], -a);
            }
            match inner(x) {
                Op::Neg => same(g.operands(x.node)[0]),
                _ => None,
            }
        }
        (Op::Reshape { dims }, &[x]) => {
            if let Some(f) = same(x) {
                return Some(f);
            }
            match inner(x) {
                Op::Reshape { .. } => {
                    let y = g.operands(x.node)[0];
                    same(y).or_else(|| Some(Fold::New(Op::Reshape { dims: dims.clone() }, vec![y])))
                }
                _ => None,
            }
        }
        (Op::Transpose { perm }, &[x]) => {
            if perm.iter().enumerate().all(|(i, &p)| i as u64 == p) {
                return same(x);
            }
            match inner(x) {
                Op::Transpose { perm: p } if p.len() == perm.len() => {
                    let y = g.operands(x.node)[0];
                    let composed: Option<Vec<u64>> =
                        perm.iter().map(|&q| p.get(q as usize).copied()).collect();
                    let composed = composed?;
                    if composed.iter().enumerate().all(|(i, &c)| i as u64 == c) {
                        same(y)
                    } else {
                        Some(Fold::New(Op::Transpose { perm: composed }, vec![y]))
                    }
                }
                _ => None,
            }
        }
        (Op::Cast { to }, &[x]) if g.value_type(x).dtype == *to => same(x),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::fold_util::testing::{count_ops, eval, param};
    use bfly_ir::{Dim, Output, Type, print_graph, verify};

    fn fill(g: &mut Graph, value: f64, dims: &[u64]) -> Value {
        let op = Op::Fill {
            value,
            dtype: DType::F32,
            dims: dims.iter().map(|&d| Dim::Const(d)).collect(),
        };
        g.add1(op, &[], None).expect("fill")
    }

    fn graph() -> (Graph, Value) {
        let mut g = Graph::new("t");
        g.set_bound("T", 3);
        let x = g.add_input("x", Type::new(DType::F32, [Dim::sym("T"), Dim::Const(4)]));
        (g, x)
    }

    /// Folds, checks the outputs are bit-identical, returns the rewrite count and the graph
    /// without dead nodes.
    fn folded(mut g: Graph, outs: &[Value]) -> (usize, Graph) {
        g.set_outputs(
            outs.iter()
                .enumerate()
                .map(|(i, v)| Output::value(format!("y{i}"), *v))
                .collect(),
        );
        let before = eval(&g);
        let n = const_fold(&mut g).expect("folds");
        assert_eq!(verify(&g), Ok(()));
        assert_eq!(eval(&g), before, "{}", print_graph(&g));
        assert_eq!(const_fold(&mut g), Ok(0), "fixed point");
        // Folded-away operands are left for `dce`.
        crate::passes::dce::eliminate_dead_code(&mut g);
        (n, g)
    }

    fn op(g: &mut Graph, op: Op, args: &[Value]) -> Value {
        g.add1(op, args, None).expect("valid op")
    }

    #[test]
    fn identities_reduce_to_the_operand() {
        let (mut g, x) = graph();
        let one = fill(&mut g, 1.0, &[4]);
        let zero = fill(&mut g, 0.0, &[4]);
        let neg_zero = fill(&mut g, -0.0, &[4]);
        let a = op(&mut g, Op::Mul, &[x, one]);
        let b = op(&mut g, Op::Mul, &[one, a]);
        let c = op(&mut g, Op::Add, &[zero, b]);
        let d = op(&mut g, Op::Sub, &[c, neg_zero]);
        let e = op(&mut g, Op::Scale { factor: 1.0 }, &[d]);
        let f = op(&mut g, Op::Neg, &[e]);
        let h = op(&mut g, Op::Neg, &[f]);
        let i = op(&mut g, Op::Cast { to: DType::F32 }, &[h]);
        let j = op(&mut g, Op::Transpose { perm: vec![0, 1] }, &[i]);
        let dims = vec![Dim::sym("T"), Dim::Const(4)];
        let k = op(&mut g, Op::Reshape { dims }, &[j]);
        let (n, g) = folded(g, &[k]);
        assert_eq!(n, 9, "{}", print_graph(&g));
        assert_eq!(g.outputs()[0].value, x);
    }

    #[test]
    fn chains_compose_and_broadcasts_stay() {
        let (mut g, x) = graph();
        let s = op(&mut g, Op::Scale { factor: 3.0 }, &[x]);
        let s = op(&mut g, Op::Scale { factor: 0.5 }, &[s]);
        let s = op(&mut g, Op::Scale { factor: 0.25 }, &[s]);
        let r = op(
            &mut g,
            Op::Reshape {
                dims: vec![Dim::sym("T"), Dim::Const(2), Dim::Const(2)],
            },
            &[x],
        );
        let r = op(
            &mut g,
            Op::Reshape {
                dims: vec![Dim::sym("T"), Dim::Const(1), Dim::Const(4)],
            },
            &[r],
        );
        let t = op(
            &mut g,
            Op::Transpose {
                perm: vec![1, 2, 0],
            },
            &[r],
        );
        let t = op(
            &mut g,
            Op::Transpose {
                perm: vec![2, 0, 1],
            },
            &[t],
        );
        // `x[T, 4] · ones[2, T, 4]` widens x: it must stay.
        let wide = op(
            &mut g,
            Op::Fill {
                value: 1.0,
                dtype: DType::F32,
                dims: vec![Dim::Const(2), Dim::sym("T"), Dim::Const(4)],
            },
            &[],
        );
        let m = op(&mut g, Op::Mul, &[x, wide]);
        let (n, g) = folded(g, &[s, t, m]);
        let text = print_graph(&g);
        // Two scale merges, one reshape merge, the transposes cancel.
        assert_eq!(n, 4, "{text}");
        assert!(text.contains("scale %x {factor = 0.375}"), "{text}");
        assert_eq!(count_ops(&g, "reshape"), 1, "{text}");
        assert_eq!(count_ops(&g, "transpose"), 0, "{text}");
        assert_eq!(count_ops(&g, "mul"), 1, "{text}");
    }

    #[test]
    fn fill_arithmetic_folds_only_when_exact_in_f32() {
        let (mut g, x) = graph();
        let a = fill(&mut g, 1.5, &[4]);
        let b = fill(&mut g, 0.25, &[4]);
        let c = op(&mut g, Op::Mul, &[a, b]);
        let c = op(&mut g, Op::Add, &[c, a]);
        let c = op(&mut g, Op::Neg, &[c]);
        let c = op(&mut g, Op::Scale { factor: 2.0 }, &[c]);
        let y = op(&mut g, Op::Mul, &[x, c]);
        // 0.1 is not an f32 value: `0.1 + 0.1` stays.
        let tenth = fill(&mut g, 0.1, &[4]);
        let z = op(&mut g, Op::Add, &[tenth, tenth]);
        let (n, g) = folded(g, &[y, z]);
        let text = print_graph(&g);
        assert_eq!(n, 4, "{text}");
        assert!(text.contains("fill {value = -3.75"), "{text}");
        assert_eq!(count_ops(&g, "add"), 1, "{text}");
    }

    #[test]
    fn scale_chains_that_could_overflow_or_underflow_stay() {
        let (mut g, x) = graph();
        let s = op(&mut g, Op::Scale { factor: 1e300 }, &[x]);
        let big = op(&mut g, Op::Scale { factor: 1e300 }, &[s]);
        let s = op(&mut g, Op::Scale { factor: 1e-300 }, &[x]);
        let tiny = op(&mut g, Op::Scale { factor: 1e-300 }, &[s]);
        let w = param(&mut g, "w", &[4]);
        let k = op(&mut g, Op::Mul, &[x, w]);
        let (n, _) = folded(g, &[big, tiny, k]);
        assert_eq!(n, 0);
    }
}
