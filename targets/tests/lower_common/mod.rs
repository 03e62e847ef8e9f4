//! Shared helpers of the lowering tests: golden specs compiled to graphs, inputs and weights,
//! and running a lowered program on the Kernel IR interpreter next to the f64 reference.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};

use bfly_compiler::{Mode, ModelSpec, compile_spec_source, compile_to_stage, render_diagnostics};
use bfly_grammar::SourceFile;
use bfly_ir::{DType, Graph};
use bfly_targets::reference::{Tensor, Weights, evaluate, init_weights};

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../golden")
}

/// `(stem, spec, file)` of every `golden/specs/*.bfly`, sorted by stem.
pub fn golden_specs() -> Vec<(String, ModelSpec, SourceFile)> {
    let dir = golden_dir().join("specs");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).expect("golden/specs exists") {
        let path = e.expect("directory entry").path();
        if path.extension().and_then(|x| x.to_str()) != Some("bfly") {
            continue;
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let text = std::fs::read_to_string(&path).expect("readable spec");
        let file = SourceFile::new(format!("golden/specs/{stem}.bfly"), text);
        let spec = match compile_spec_source(&file) {
            Ok((spec, _)) => spec,
            Err(d) => panic!("{stem}: {}", render_diagnostics(&file, &d, false)),
        };
        out.push((stem, spec, file));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

pub fn golden_spec(stem: &str) -> (ModelSpec, SourceFile) {
    golden_specs()
        .into_iter()
        .find(|(s, _, _)| s == stem)
        .map(|(_, spec, file)| (spec, file))
        .unwrap_or_else(|| panic!("no golden spec {stem}"))
}

/// The `mode` graph after stage `stop` (`None`: every pass of the mode's pipeline).
pub fn graph_at(spec: &ModelSpec, file: &SourceFile, mode: Mode, stop: Option<&str>) -> Graph {
    compile_to_stage(spec, file, mode, stop)
        .unwrap_or_else(|d| panic!("{}", render_diagnostics(file, &d, false)))
}

/// Deterministic token ids in `0..vocab` (a small LCG).
pub fn token_ids(n: usize, vocab: u64, seed: u64) -> Vec<i64> {
    let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 33) % vocab) as i64
        })
        .collect()
}

pub fn tokens(ids: &[i64]) -> Tensor {
    Tensor::int(DType::I32, vec![ids.len()], ids.to_vec())
}

pub fn weights(g: &Graph, seed: u64) -> Weights {
    init_weights(g, seed).expect("weights materialize")
}

pub fn eval(g: &Graph, inputs: &[Tensor], w: &Weights) -> Vec<Tensor> {
    evaluate(g, inputs, w).unwrap_or_else(|e| panic!("@{}: {e}", g.name))
}

pub fn floats(t: &Tensor) -> &[f64] {
    t.floats().expect("a float tensor")
}

/// Largest |a − b| over two equally long slices.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

pub fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

// ---------------------------------------------------------------------------------------
// One-op (or few-op) graphs on random data, lowered and compared with the reference.

use bfly_ir::init::SplitMix64;
use bfly_ir::kernel::verify_program;
use bfly_ir::{Dim, Init, Op, Output, Param, Type, Value};
use bfly_targets::exec::Syms;
use bfly_targets::interp::{Interp, run_program};
use bfly_targets::lower::{LowerMode, lower_graph};

/// Bounds of the one-op graphs: `T ≤ 8` (also the KV context), `B ≤ 3`.
pub const T_MAX: u64 = 8;
pub const B_MAX: u64 = 3;

pub struct Case {
    pub g: Graph,
    pub inputs: Vec<Tensor>,
    pub weights: Weights,
    pub rng: SplitMix64,
    pub syms: Syms,
    pub mode: LowerMode,
    outputs: Vec<Value>,
    /// Largest |Δ| accepted on an int output (quantized values may round across a tie).
    pub int_tol: i64,
}

impl Case {
    /// Inference over `t` tokens (`batch = None`, KV context `T_MAX`) or a training step
    /// over `[batch, t]`.
    pub fn new(seed: u64, batch: Option<usize>, t: usize) -> Case {
        let mut g = Graph::new("case");
        g.set_bound("T", T_MAX);
        let (syms, mode) = match batch {
            Some(b) => {
                g.set_bound("B", B_MAX);
                (Syms::batch(b, t), LowerMode::Training)
            }
            None => (Syms::tokens(t), LowerMode::Inference { context: T_MAX }),
        };
        Case {
            g,
            inputs: Vec::new(),
            weights: Weights::new(),
            rng: SplitMix64::new(seed),
            syms,
            mode,
            outputs: Vec::new(),
            int_tol: 0,
        }
    }

    /// Leading dims of an activation (`[T]` or `[B, T]`) and their values.
    pub fn lead(&self) -> (Vec<Dim>, Vec<usize>) {
        match self.mode {
            LowerMode::Training => (
                vec![Dim::sym("B"), Dim::sym("T")],
                vec![self.syms.b, self.syms.t],
            ),
            LowerMode::Inference { .. } => (vec![Dim::sym("T")], vec![self.syms.t]),
        }
    }

    /// Uniform in [−1, 1), exactly representable in f32 (both sides see the same inputs).
    pub fn uniform(&mut self) -> f64 {
        f64::from((self.rng.next_f64() * 2.0 - 1.0) as f32)
    }

    fn random(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.uniform()).collect()
    }

    /// An f32 graph input of the given dims, evaluated at `shape`.
    pub fn input(&mut self, dims: Vec<Dim>, shape: Vec<usize>) -> Value {
        let name = format!("x{}", self.inputs.len());
        let data = self.random(shape.iter().product());
        self.inputs.push(Tensor::f32(shape, data));
        self.g.add_input(&name, Type::new(DType::F32, dims))
    }

    /// An activation `f32[lead.., width]`.
    pub fn act(&mut self, width: u64) -> Value {
        let (mut dims, mut shape) = self.lead();
        dims.push(Dim::Const(width));
        shape.push(width as usize);
        self.input(dims, shape)
    }

    /// Ids `i32[lead..]` in `0..vocab`.
    pub fn ids(&mut self, vocab: u64) -> Value {
        let (dims, shape) = self.lead();
        let name = format!("x{}", self.inputs.len());
        let n: usize = shape.iter().product();
        let ids = (0..n)
            .map(|_| (self.rng.next_u64() % vocab) as i64)
            .collect();
        self.inputs.push(Tensor::int(DType::I32, shape, ids));
        self.g.add_input(&name, Type::new(DType::I32, dims))
    }

    /// An f32 param of constant dims with random values.
    pub fn param(&mut self, dims: &[u64]) -> Value {
        let name = format!("p{}", self.weights.len());
        let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
        let data = self.random(shape.iter().product());
        self.weights.insert(name.clone(), Tensor::f32(shape, data));
        let param = Param {
            name,
            init: Init::External,
            trainable: true,
        };
        self.g.add_param(param, Type::fixed(DType::F32, dims))
    }

    pub fn op(&mut self, op: Op, args: &[Value]) -> Vec<Value> {
        self.g
            .add_op(op, args, None)
            .unwrap_or_else(|e| panic!("building the case: {e}"))
    }

    pub fn op1(&mut self, op: Op, args: &[Value]) -> Value {
        self.op(op, args)[0]
    }

    pub fn out(&mut self, v: Value) {
        self.outputs.push(v);
    }

    fn finish_graph(&mut self) {
        let outs = self
            .outputs
            .iter()
            .enumerate()
            .map(|(i, &v)| Output::value(format!("o{i}"), v))
            .collect();
        self.g.set_outputs(outs);
        assert_eq!(bfly_ir::verify(&self.g), Ok(()), "the case graph verifies");
    }

    fn lower(&self) -> bfly_ir::kernel::KernelProgram {
        let p = lower_graph(&self.g, self.mode).unwrap_or_else(|e| panic!("lowering: {e}"));
        if let Err(errors) = verify_program(&p) {
            panic!("{}\n\n{}", errors.join("\n"), p.print());
        }
        p
    }

    /// Lowers, runs one step on the interpreter and compares every output with the
    /// reference: floats within `tol · max(1, max |reference|)`, ints within `int_tol`.
    pub fn check(mut self, tol: f64) {
        self.finish_graph();
        let p = self.lower();
        let want = eval(&self.g, &self.inputs, &self.weights);
        let got = run_program(&p, &self.weights, &self.inputs, self.syms)
            .unwrap_or_else(|e| panic!("{e}\n\n{}", p.print()));
        compare(&want, &got, tol, self.int_tol, &p);
    }

    /// Inference only: runs the first `split` tokens, then the rest at `pos = split`
    /// through the KV cache, and compares the second step's outputs with the reference's
    /// last rows of the whole sequence. Every input must be `[T, ..]`.
    pub fn check_decode(mut self, split: usize, tol: f64) {
        self.finish_graph();
        let p = self.lower();
        let want = eval(&self.g, &self.inputs, &self.weights);
        let t = self.syms.t;
        let rows = |x: &Tensor, lo: usize, hi: usize| -> Tensor {
            let width = x.numel() / x.shape[0];
            let mut shape = x.shape.clone();
            shape[0] = hi - lo;
            match &x.data {
                bfly_targets::reference::Data::F(v) => {
                    Tensor::float(x.dtype, shape, v[lo * width..hi * width].to_vec())
                }
                bfly_targets::reference::Data::I(v) => {
                    Tensor::int(x.dtype, shape, v[lo * width..hi * width].to_vec())
                }
            }
        };
        let first: Vec<Tensor> = self.inputs.iter().map(|x| rows(x, 0, split)).collect();
        let rest: Vec<Tensor> = self.inputs.iter().map(|x| rows(x, split, t)).collect();
        let mut run = Interp::new(&p, &self.weights).unwrap_or_else(|e| panic!("{e}"));
        run.step(&first, Syms::tokens(split))
            .unwrap_or_else(|e| panic!("prefill: {e}"));
        let got = run
            .step(&rest, Syms::decode(t - split, split))
            .unwrap_or_else(|e| panic!("decode: {e}"));
        let want: Vec<Tensor> = want.iter().map(|x| rows(x, split, t)).collect();
        compare(&want, &got, tol, self.int_tol, &p);
    }
}

/// A case lowered and evaluated by the reference, ready to run on any backend.
pub struct Prepared {
    pub g: Graph,
    pub program: bfly_ir::kernel::KernelProgram,
    pub inputs: Vec<Tensor>,
    pub weights: Weights,
    pub syms: Syms,
    pub want: Vec<Tensor>,
    pub int_tol: i64,
}

impl Prepared {
    /// Compares `got` with the reference outputs (as `Case::check` does).
    pub fn compare(&self, got: &[Tensor], tol: f64) {
        compare(&self.want, got, tol, self.int_tol, &self.program);
    }
}

impl Case {
    /// Finishes the graph, lowers it (verified) and evaluates the reference.
    pub fn prepare(mut self) -> Prepared {
        self.finish_graph();
        let program = self.lower();
        let want = eval(&self.g, &self.inputs, &self.weights);
        Prepared {
            g: self.g,
            program,
            inputs: self.inputs,
            weights: self.weights,
            syms: self.syms,
            want,
            int_tol: self.int_tol,
        }
    }
}

fn compare(
    want: &[Tensor],
    got: &[Tensor],
    tol: f64,
    int_tol: i64,
    p: &bfly_ir::kernel::KernelProgram,
) {
    assert_eq!(want.len(), got.len(), "output count");
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        assert_eq!(w.shape, g.shape, "output {i} shape");
        match (w.floats(), g.floats(), w.ints(), g.ints()) {
            (Some(w), Some(g), _, _) => {
                let err = max_abs_diff(w, g);
                let bound = tol * max_abs(w).max(1.0);
                assert!(
                    err <= bound,
                    "output {i}: max |Δ| = {err:e} > {bound:e}\nwant {w:?}\ngot  {g:?}\n\n{}",
                    p.print()
                );
            }
            (_, _, Some(w), Some(g)) => {
                let err = w
                    .iter()
                    .zip(g)
                    .map(|(a, b)| (a - b).abs())
                    .max()
                    .unwrap_or(0);
                assert!(
                    err <= int_tol,
                    "output {i}: int |Δ| = {err}\nwant {w:?}\ngot  {g:?}"
                );
            }
            _ => panic!("output {i}: dtype kinds differ"),
        }
    }
}
