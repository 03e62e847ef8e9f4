//! The rewrites, one per [`Scheme`]. Weight-side nodes (`quantize @W`, casts of twiddles)
//! depend on parameters only; activation-side `quantize %x` runs per token. Both are shared:
//! q, k and v reading the same `%h` quantize it once, and a weight used twice is quantized
//! once.

use std::collections::HashMap;

use bfly_ir::{DType, Dim, Graph, IrError, Loc, NodeId, Op, Value};

use super::plan::{QuantPlan, Scheme};
use super::rotate::{Rotator, site_block};
use super::sites::{QuantSite, find_sites};

/// One site the pass rewrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    pub site: QuantSite,
    pub scheme: Scheme,
    /// The value that now stands for the site's output (it replaced the f32 op's result).
    pub output: Value,
}

/// Quantizes every site that `plan` gives a scheme and `select(index, site)` accepts (`index`
/// counts all sites [`find_sites`] lists, quantized or not). Returns what was rewritten, in
/// schedule order. The rewritten f32 ops are removed; everything else stays.
pub fn quantize_graph(
    g: &mut Graph,
    plan: &QuantPlan,
    select: &dyn Fn(usize, &QuantSite) -> bool,
) -> Result<Vec<Applied>, IrError> {
    let sites = find_sites(g).ok_or_else(|| IrError::new("the graph has a cycle"))?;
    let mut rw = Rewriter {
        g,
        activations: HashMap::new(),
        int8: HashMap::new(),
        dequantized: HashMap::new(),
        f16: HashMap::new(),
        rotator: Rotator::default(),
        replaced: Vec::new(),
    };
    let mut applied = Vec::new();
    for (i, site) in sites.into_iter().enumerate() {
        let Some(mut scheme) = plan.scheme(&site) else {
            continue;
        };
        if !select(i, &site) {
            continue;
        }
        if scheme == Scheme::Int8Dynamic && plan.rotates(&site) && rw.rotatable(&site) {
            scheme = Scheme::Int8Rotated;
        }
        let output = rw.apply(&site, scheme)?;
        applied.push(Applied {
            site,
            scheme,
            output,
        });
    }
    // Removed only now, so that no new node reuses a removed node's index while the caches
    // above still hold values.
    for id in rw.replaced {
        rw.g.remove_node(id);
    }
    Ok(applied)
}

struct Rewriter<'g> {
    g: &'g mut Graph,
    /// `(x, groups)` → per-group `(xq, xs)`.
    activations: HashMap<(Value, u64), Vec<(Value, Value)>>,
    /// `w` → `(wq, ws)`.
    int8: HashMap<Value, (Value, Value)>,
    /// `w` → `dequantize(quantize(w))`.
    dequantized: HashMap<Value, Value>,
    /// `w` → `cast(cast(w, f16), f32)`.
    f16: HashMap<Value, Value>,
    rotator: Rotator,
    replaced: Vec<NodeId>,
}

/// Rotates the input of every int8 dense site that `plan.rotate` selects, *without*
/// quantizing: `matmul x, W [, b]` → `matmul (H x), (W Hᵀ) [, b]`. The f32 function is
/// unchanged up to rounding; this is the rotation half of [`Scheme::Int8Rotated`], for
/// checking exactly that. Returns how many sites were rotated.
pub fn rotate_graph(g: &mut Graph, plan: &QuantPlan) -> Result<usize, IrError> {
    let sites = find_sites(g).ok_or_else(|| IrError::new("the graph has a cycle"))?;
    let mut rotator = Rotator::default();
    let mut replaced = Vec::new();
    for site in sites {
        if plan.scheme(&site) != Some(Scheme::Int8Dynamic) || !plan.rotates(&site) {
            continue;
        }
        let ops = g.operands(site.node).to_vec();
        let Some(n) = ops.get(1).and_then(|&w| site_block(g, w)) else {
            continue;
        };
        let mut new_ops = ops.clone();
        new_ops[0] = rotator.rotate(g, ops[0], n, site.loc)?;
        new_ops[1] = rotator.rotate(g, ops[1], n, site.loc)?;
        let y = g.add1(Op::Matmul, &new_ops, site.loc)?;
        g.replace_uses(Value::first(site.node), y);
        replaced.push(site.node);
    }
    let count = replaced.len();
    for id in replaced {
        g.remove_node(id);
    }
    Ok(count)
}

impl Rewriter<'_> {
    fn op(&mut self, op: Op, operands: &[Value], loc: Option<Loc>) -> Result<Value, IrError> {
        self.g.add1(op, operands, loc)
    }

    /// Can `site` (a dense site) be rotated: does its input width have a power-of-two factor?
    fn rotatable(&self, site: &QuantSite) -> bool {
        let ops = self.g.operands(site.node);
        ops.get(1).and_then(|&w| site_block(self.g, w)).is_some()
    }

    fn apply(&mut self, site: &QuantSite, scheme: Scheme) -> Result<Value, IrError> {
        let id = site.node;
        let loc = site.loc;
        let ops = self.g.operands(id);
        let (x, rest) = ops
            .split_first()
            .ok_or_else(|| IrError::new(format!("site {id} has no operands")))?;
        let output = match scheme {
            Scheme::Int8Dynamic | Scheme::Int8Rotated => {
                let (mut x, mut w, bias) = match rest {
                    [w] => (*x, *w, None),
                    [w, b] => (*x, *w, Some(*b)),
                    _ => return Err(IrError::new(format!("matmul {id} has a wrong arity"))),
                };
                if scheme == Scheme::Int8Rotated {
                    let n = site_block(self.g, w)
                        .ok_or_else(|| IrError::new(format!("site {id} cannot be rotated")))?;
                    x = self.rotator.rotate(self.g, x, n, loc)?;
                    w = self.rotator.rotate(self.g, w, n, loc)?;
                }
                self.dense_int8(x, w, bias, loc)?
            }
            Scheme::Int8WeightOnly | Scheme::F16Weights | Scheme::Fp16Twiddles => {
                // Which operands are weights: matmul/butterfly slot 1, monarch slots 1 and 2.
                let n_weights = match self.g.node(id).op {
                    Op::Monarch { .. } => 2,
                    _ => 1,
                };
                let mut new_ops = vec![*x];
                for (slot, &w) in rest.iter().enumerate() {
                    new_ops.push(match (slot < n_weights, scheme) {
                        (false, _) => w,
                        (true, Scheme::Int8WeightOnly) => self.int8_round_trip(w, loc)?,
                        (true, _) => self.f16_round_trip(w, loc)?,
                    });
                }
                let op = self.g.node(id).op.clone();
                self.op(op, &new_ops, loc)?
            }
        };
        self.g.replace_uses(Value::first(id), output);
        self.replaced.push(id);
        Ok(output)
    }

    /// `quantize w` (per row: per output channel), shared per weight.
    fn int8_weight(&mut self, w: Value, loc: Option<Loc>) -> Result<(Value, Value), IrError> {
        if let Some(&q) = self.int8.get(&w) {
            return Ok(q);
        }
        let r = self.g.add_op(Op::Quantize, &[w], loc)?;
        let q = pair(&r)?;
        self.int8.insert(w, q);
        Ok(q)
    }

    fn int8_round_trip(&mut self, w: Value, loc: Option<Loc>) -> Result<Value, IrError> {
        if let Some(&v) = self.dequantized.get(&w) {
            return Ok(v);
        }
        let (q, s) = self.int8_weight(w, loc)?;
        let v = self.op(Op::Dequantize, &[q, s], loc)?;
        self.dequantized.insert(w, v);
        Ok(v)
    }

    fn f16_round_trip(&mut self, w: Value, loc: Option<Loc>) -> Result<Value, IrError> {
        if let Some(&v) = self.f16.get(&w) {
            return Ok(v);
        }
        let half = self.op(Op::Cast { to: DType::F16 }, &[w], loc)?;
        let v = self.op(Op::Cast { to: DType::F32 }, &[half], loc)?;
        self.f16.insert(w, v);
        Ok(v)
    }

    /// Per-token `quantize` of `x`, or of each of its `groups` equal slices of the last axis.
    fn activations(
        &mut self,
        x: Value,
        groups: u64,
        loc: Option<Loc>,
    ) -> Result<Vec<(Value, Value)>, IrError> {
        if let Some(q) = self.activations.get(&(x, groups)) {
            return Ok(q.clone());
        }
        let parts = if groups == 1 {
            vec![x]
        } else {
            let ty = self.g.value_type(x);
            let width = ty.last_const().unwrap_or(0);
            let axis = ty.rank().saturating_sub(1) as u64;
            let sizes = vec![width / groups.max(1); groups as usize];
            self.g.add_op(Op::Split { axis, sizes }, &[x], loc)?
        };
        let mut q = Vec::with_capacity(parts.len());
        for part in parts {
            let r = self.g.add_op(Op::Quantize, &[part], loc)?;
            q.push(pair(&r)?);
        }
        self.activations.insert((x, groups), q.clone());
        Ok(q)
    }

    /// `qmatmul (quantize x), (quantize w) [, bias]`. A block-diagonal weight `[G, N, K]` is
    /// split into `G` weights `[N, K]`, each group of `x` quantized per token on its own, and
    /// the `G` results concatenated.
    fn dense_int8(
        &mut self,
        x: Value,
        w: Value,
        bias: Option<Value>,
        loc: Option<Loc>,
    ) -> Result<Value, IrError> {
        let dims: Vec<u64> = self
            .g
            .value_type(w)
            .dims
            .iter()
            .map(Dim::as_const)
            .collect::<Option<_>>()
            .unwrap_or_default();
        let (wq, ws) = self.int8_weight(w, loc)?;
        match dims[..] {
            [_, _] => {
                let xq = self.activations(x, 1, loc)?;
                let (xq, xs) = xq
                    .first()
                    .copied()
                    .ok_or_else(|| IrError::new("no activation quantization"))?;
                let mut ops = vec![xq, xs, wq, ws];
                ops.extend(bias);
                self.op(Op::QMatmul, &ops, loc)
            }
            [groups, n, k] => {
                let g = groups as usize;
                let xq = self.activations(x, groups, loc)?;
                let wqs = self.split_rows(wq, groups, &[n, k], loc)?;
                let wss = self.split_rows(ws, groups, &[n], loc)?;
                let biases = match bias {
                    Some(b) => {
                        let split = Op::Split {
                            axis: 0,
                            sizes: vec![n; g],
                        };
                        self.g
                            .add_op(split, &[b], loc)?
                            .into_iter()
                            .map(Some)
                            .collect()
                    }
                    None => vec![None; g],
                };
                let mut ys = Vec::with_capacity(g);
                for i in 0..g {
                    let (xq, xs) = xq[i];
                    let mut ops = vec![xq, xs, wqs[i], wss[i]];
                    ops.extend(biases[i]);
                    ys.push(self.op(Op::QMatmul, &ops, loc)?);
                }
                let axis = self.g.value_type(x).rank().saturating_sub(1) as u64;
                self.op(Op::Concat { axis }, &ys, loc)
            }
            _ => Err(IrError::new(format!(
                "dense weight {} must be [N, K] or [G, N, K]",
                self.g.value_type(w)
            ))),
        }
    }

    /// Splits `t: [G, …]` into `G` tensors shaped `dims`.
    fn split_rows(
        &mut self,
        t: Value,
        groups: u64,
        dims: &[u64],
        loc: Option<Loc>,
    ) -> Result<Vec<Value>, IrError> {
        let split = Op::Split {
            axis: 0,
            sizes: vec![1; groups as usize],
        };
        let parts = self.g.add_op(split, &[t], loc)?;
        let reshape = Op::Reshape {
            dims: dims.iter().map(|&d| Dim::Const(d)).collect(),
        };
        parts
            .into_iter()
            .map(|p| self.op(reshape.clone(), &[p], loc))
            .collect()
    }
}

fn pair(r: &[Value]) -> Result<(Value, Value), IrError> {
    match r {
        [a, b] => Ok((*a, *b)),
        _ => Err(IrError::new("quantize must give values and scales")),
    }
}
