//! Small hand-written Kernel IR programs for the interpreter and executor tests: each
//! exercises one part of the contract (sections, KV state across steps, in-place optimizer
//! updates, load-phase results, f16 / i8 storage).

#![allow(dead_code)] // each test binary uses a different subset

pub mod raw;

use bfly_ir::kernel::{
    Access, AttentionDesc, Body, BodyBuilder, Buffer, BufferId, BufferKind, Expr, GemmDesc, Kernel,
    KernelKind, KernelProgram, LoopKind, Phase, RtSym,
};
use bfly_ir::{DType, Dim};
use bfly_targets::reference::{Tensor, Weights};

pub fn ld(arg: u32, index: impl Into<Expr>) -> Expr {
    Expr::load(arg, index.into())
}

pub fn t() -> Expr {
    Expr::sym(RtSym::T)
}

pub fn b() -> Expr {
    Expr::sym(RtSym::B)
}

pub fn pos() -> Expr {
    Expr::sym(RtSym::Pos)
}

/// Dims from text: `"T"`, `"B"` or a number.
pub fn dims(ds: &[&str]) -> Vec<Dim> {
    ds.iter()
        .map(|d| d.parse::<u64>().map_or_else(|_| Dim::sym(d), Dim::Const))
        .collect()
}

pub struct Builder {
    pub program: KernelProgram,
}

impl Builder {
    pub fn new(name: &str, bounds: &[(&str, u64)]) -> Builder {
        Builder {
            program: KernelProgram {
                name: name.into(),
                bounds: bounds.iter().map(|&(s, v)| (s.to_string(), v)).collect(),
                buffers: vec![],
                bodies: vec![],
                kernels: vec![],
            },
        }
    }

    pub fn buf(&mut self, name: &str, dtype: DType, ds: &[&str], kind: BufferKind) -> BufferId {
        let id = BufferId(self.program.buffers.len() as u32);
        self.program.buffers.push(Buffer {
            id,
            name: name.into(),
            dtype,
            dims: dims(ds),
            kind,
        });
        id
    }

    pub fn param(&mut self, name: &str, dtype: DType, ds: &[&str]) -> BufferId {
        self.buf(name, dtype, ds, BufferKind::Param { name: name.into() })
    }

    pub fn temp(&mut self, name: &str, dtype: DType, ds: &[&str]) -> BufferId {
        self.buf(name, dtype, ds, BufferKind::Temp)
    }

    pub fn kernel(&mut self, kind: KernelKind, phase: Phase, body: Body, args: &[BufferId]) {
        let body = self.program.intern_body(body);
        let name = format!("k{}", self.program.kernels.len());
        self.program.kernels.push(Kernel {
            name,
            kind,
            body,
            args: args.to_vec(),
            phase,
            computes: vec![],
        });
    }

    pub fn step(&mut self, kind: KernelKind, body: Body, args: &[BufferId]) {
        self.kernel(kind, Phase::Step, body, args)
    }

    pub fn finish(self) -> KernelProgram {
        self.program
    }
}

pub fn map(expr: &str) -> KernelKind {
    KernelKind::Map { expr: expr.into() }
}

fn gemm(m: &str, n: u64, k: u64) -> KernelKind {
    KernelKind::Gemm(GemmDesc {
        m: m.into(),
        n,
        k,
        groups: 1,
        dtype: DType::F32,
        epilogue: vec![],
    })
}

/// `y = exp(2·x) · w + 1` through a temp, with `x, y: f32[T, 4]` and `w: f16[4]`; the second
/// kernel has a parallel section and then a serial one writing `s = Σ y`.
pub fn map_program() -> KernelProgram {
    let mut p = Builder::new("map", &[("T", 16)]);
    let x = p.buf("x", DType::F32, &["T", "4"], BufferKind::Input { index: 0 });
    let w = p.param("w", DType::F16, &["4"]);
    let tmp = p.temp("t", DType::F32, &["T", "4"]);
    let y = p.buf(
        "y",
        DType::F32,
        &["T", "4"],
        BufferKind::Output { index: 0 },
    );
    let s = p.buf("s", DType::F32, &[], BufferKind::Output { index: 1 });

    let mut bb = BodyBuilder::new();
    let (bx, bt) = (
        bb.param("x", DType::F32, Access::Read),
        bb.param("t", DType::F32, Access::Write),
    );
    bb.for_(LoopKind::Parallel, 0, t() * 4, |bb, i| {
        bb.store(bt, i, ld(bx, i) * Expr::f32(2.0))
    });
    p.step(map("2 * x"), bb.finish(), &[x, tmp]);

    let mut bb = BodyBuilder::new();
    let bt = bb.param("t", DType::F32, Access::Read);
    let bw = bb.param("w", DType::F16, Access::Read);
    let by = bb.param("y", DType::F32, Access::ReadWrite);
    let bs = bb.param("s", DType::F32, Access::Write);
    bb.for_(LoopKind::Parallel, 0, t(), |bb, r| {
        bb.for_(LoopKind::Vector, 0, 4, |bb, j| {
            let e = ld(bt, r * 4 + j).exp() * ld(bw, j) + Expr::f32(1.0);
            bb.store(by, r * 4 + j, e);
        });
    });
    bb.serial(0, 1, |bb, _| {
        let acc = bb.let_(Expr::f32(0.0));
        bb.serial(0, t() * 4, |bb, i| bb.assign(acc, acc + ld(by, i)));
        bb.store(bs, 0, acc);
    });
    p.step(map("exp(t) * w + 1"), bb.finish(), &[tmp, w, y, s]);
    p.finish()
}

pub fn map_weights() -> Weights {
    let mut w = Weights::new();
    w.insert(
        "w".into(),
        Tensor::float(DType::F16, vec![4], vec![0.5, -1.0, 0.25, 2.0]),
    );
    w
}

pub fn map_input(t: usize) -> Tensor {
    let v = (0..t * 4).map(|i| (i as f64 * 0.37).sin()).collect();
    Tensor::f32(vec![t, 4], v)
}

pub const VOCAB: u64 = 11;
pub const DIM: u64 = 3;

/// Token embedding, a KV cache of `context` rows appended at `pos`, and a causal mean over
/// the cache: `out[t] = mean(cache[0..=pos+t])`.
pub fn kv_program(context: u64) -> KernelProgram {
    let d = DIM;
    let mut p = Builder::new("kv", &[("T", context)]);
    let tokens = p.buf("tokens", DType::I32, &["T"], BufferKind::Input { index: 0 });
    let table = p.param("embed", DType::F32, &[&VOCAB.to_string(), &d.to_string()]);
    let h = p.temp("h", DType::F32, &["T", &d.to_string()]);
    let cache = p.buf(
        "kv.0",
        DType::F32,
        &[&context.to_string(), &d.to_string()],
        BufferKind::State,
    );
    let out = p.buf(
        "out",
        DType::F32,
        &["T", &d.to_string()],
        BufferKind::Output { index: 0 },
    );

    let mut bb = BodyBuilder::new();
    let (bt, bw, bh) = (
        bb.param("tokens", DType::I32, Access::Read),
        bb.param("table", DType::F32, Access::Read),
        bb.param("h", DType::F32, Access::Write),
    );
    bb.for_(LoopKind::Parallel, 0, t(), |bb, r| {
        bb.for_(LoopKind::Vector, 0, d, |bb, j| {
            bb.store(bh, r * d + j, ld(bw, ld(bt, r) * d + j));
        });
    });
    p.step(
        KernelKind::Embed {
            vocab: VOCAB,
            dim: d,
        },
        bb.finish(),
        &[tokens, table, h],
    );

    let mut bb = BodyBuilder::new();
    let (bh, bc) = (
        bb.param("h", DType::F32, Access::Read),
        bb.param("cache", DType::F32, Access::Write),
    );
    bb.for_(LoopKind::Parallel, 0, t(), |bb, r| {
        bb.for_(LoopKind::Vector, 0, d, |bb, j| {
            bb.store(bc, (pos() + r) * d + j, ld(bh, r * d + j));
        });
    });
    p.step(KernelKind::KvAppend { kv_dim: d }, bb.finish(), &[h, cache]);

    let mut bb = BodyBuilder::new();
    let (bc, bo) = (
        bb.param("cache", DType::F32, Access::Read),
        bb.param("out", DType::F32, Access::Write),
    );
    bb.for_(LoopKind::Parallel, 0, t(), |bb, r| {
        bb.serial(0, d, |bb, j| {
            let acc = bb.let_(Expr::f32(0.0));
            bb.for_(LoopKind::Vector, 0, pos() + r + 1, |bb, s| {
                bb.assign(acc, acc + ld(bc, s * d + j));
            });
            bb.store(bo, r * d + j, acc / (pos() + r + 1).to_f32());
        });
    });
    let attn = KernelKind::Attention(AttentionDesc {
        heads: 1,
        kv_heads: 1,
        head_dim: d,
        cached: true,
    });
    p.step(attn, bb.finish(), &[cache, out]);
    p.finish()
}

pub fn kv_weights() -> Weights {
    let v = (0..VOCAB * DIM)
        .map(|i| f64::from((i as f32 * 0.7).cos()))
        .collect();
    let mut w = Weights::new();
    w.insert(
        "embed".into(),
        Tensor::f32(vec![VOCAB as usize, DIM as usize], v),
    );
    w
}

pub const FEATURES: u64 = 4;
pub const LR: f32 = 0.1;

/// One SGD step of least squares: `pred = x·w`, `loss = mean((pred - y)²)`, `grad = ∂loss/∂w`,
/// `w -= lr·grad` in place. `x: f32[B, T, 4]`, `y: f32[B, T]`; loss and grad share a kernel
/// with a serial section and a parallel one.
pub fn train_program() -> KernelProgram {
    let f = FEATURES;
    let fs = f.to_string();
    let mut p = Builder::new("train", &[("B", 4), ("T", 8)]);
    let x = p.buf(
        "x",
        DType::F32,
        &["B", "T", &fs],
        BufferKind::Input { index: 0 },
    );
    let y = p.buf("y", DType::F32, &["B", "T"], BufferKind::Input { index: 1 });
    let w = p.param("w", DType::F32, &[&fs]);
    let pred = p.temp("pred", DType::F32, &["B", "T"]);
    let grad = p.temp("grad", DType::F32, &[&fs]);
    let loss = p.buf("loss", DType::F32, &[], BufferKind::Output { index: 0 });

    let mut bb = BodyBuilder::new();
    let (bx, bw, bp) = (
        bb.param("x", DType::F32, Access::Read),
        bb.param("w", DType::F32, Access::Read),
        bb.param("pred", DType::F32, Access::Write),
    );
    bb.for_(LoopKind::Parallel, 0, b() * t(), |bb, r| {
        let acc = bb.let_(Expr::f32(0.0));
        bb.for_(LoopKind::Vector, 0, f, |bb, j| {
            bb.assign(acc, acc + ld(bx, r * f + j) * ld(bw, j));
        });
        bb.store(bp, r, acc);
    });
    p.step(gemm("B·T", 1, f), bb.finish(), &[x, w, pred]);

    let mut bb = BodyBuilder::new();
    let (bx, by, bp, bl, bg) = (
        bb.param("x", DType::F32, Access::Read),
        bb.param("y", DType::F32, Access::Read),
        bb.param("pred", DType::F32, Access::Read),
        bb.param("loss", DType::F32, Access::Write),
        bb.param("grad", DType::F32, Access::Write),
    );
    let n = || (b() * t()).to_f32();
    bb.serial(0, 1, |bb, _| {
        let acc = bb.let_(Expr::f32(0.0));
        bb.serial(0, b() * t(), |bb, r| {
            let e = bb.let_(ld(bp, r) - ld(by, r));
            bb.assign(acc, acc + Expr::from(e) * e);
        });
        bb.store(bl, 0, acc / n());
    });
    bb.for_(LoopKind::Parallel, 0, f, |bb, j| {
        let acc = bb.let_(Expr::f32(0.0));
        bb.serial(0, b() * t(), |bb, r| {
            let e = (ld(bp, r) - ld(by, r)) * ld(bx, r * f + j);
            bb.assign(acc, acc + e);
        });
        bb.store(bg, j, acc * Expr::f32(2.0) / n());
    });
    p.step(
        KernelKind::Backward(Box::new(gemm("B·T", 1, f))),
        bb.finish(),
        &[x, y, pred, loss, grad],
    );

    let mut bb = BodyBuilder::new();
    let (bg, bw) = (
        bb.param("grad", DType::F32, Access::Read),
        bb.param("w", DType::F32, Access::ReadWrite),
    );
    bb.for_(LoopKind::Parallel, 0, f, |bb, j| {
        bb.store(bw, j, ld(bw, j) - Expr::f32(LR) * ld(bg, j));
    });
    p.step(
        KernelKind::Optimizer { rule: "sgd".into() },
        bb.finish(),
        &[grad, w],
    );
    p.finish()
}

pub fn train_weights() -> Weights {
    let mut w = Weights::new();
    w.insert(
        "w".into(),
        Tensor::f32(vec![FEATURES as usize], vec![0.1, -0.2, 0.3, 0.0]),
    );
    w
}

/// A batch whose targets come from `w* = [1, -1, 0.5, 2]`.
pub fn train_batch(b: usize, t: usize) -> Vec<Tensor> {
    let f = FEATURES as usize;
    let x: Vec<f64> = (0..b * t * f)
        .map(|i| ((i * 7 % 13) as f64 - 6.0) / 6.0)
        .collect();
    let w_star = [1.0, -1.0, 0.5, 2.0];
    let y: Vec<f64> = (0..b * t)
        .map(|r| (0..f).map(|j| x[r * f + j] * w_star[j]).sum())
        .collect();
    vec![Tensor::f32(vec![b, t, f], x), Tensor::f32(vec![b, t], y)]
}

/// int8 quantization: a load-phase kernel quantizes `w: f32[4, 8]` to `wq: i8` (state) with
/// a per-row scale; each step quantizes `x: f32[T, 8]` per row, multiplies in ints and
/// dequantizes into `y: f32[T, 4]`.
pub fn quant_program() -> KernelProgram {
    let (n, k) = (4u64, 8u64);
    let mut p = Builder::new("quant", &[("T", 8)]);
    let x = p.buf("x", DType::F32, &["T", "8"], BufferKind::Input { index: 0 });
    let w = p.param("w", DType::F32, &["4", "8"]);
    let wq = p.buf("wq", DType::I8, &["4", "8"], BufferKind::State);
    let ws = p.buf("ws", DType::F32, &["4"], BufferKind::State);
    let xq = p.temp("xq", DType::I8, &["T", "8"]);
    let xs = p.temp("xs", DType::F32, &["T"]);
    let y = p.buf(
        "y",
        DType::F32,
        &["T", "4"],
        BufferKind::Output { index: 0 },
    );

    // Quantize rows of `src` (rows × k) into `q` and `scale`.
    let quantize = |rows: Expr| {
        let mut bb = BodyBuilder::new();
        let (bs, bq, bsc) = (
            bb.param("src", DType::F32, Access::Read),
            bb.param("q", DType::I8, Access::Write),
            bb.param("scale", DType::F32, Access::Write),
        );
        bb.for_(LoopKind::Parallel, 0, rows, |bb, r| {
            let m = bb.let_(Expr::f32(1e-12));
            bb.for_(LoopKind::Vector, 0, k, |bb, j| {
                bb.assign(m, Expr::from(m).max(ld(bs, r * k + j).abs()));
            });
            let s = bb.let_(Expr::from(m) / Expr::f32(127.0));
            bb.for_(LoopKind::Vector, 0, k, |bb, j| {
                let q = (ld(bs, r * k + j) / s).round().to_int();
                let q = q.max(Expr::int(-127)).min(Expr::int(127));
                bb.store(bq, r * k + j, q);
            });
            bb.store(bsc, r, s);
        });
        bb.finish()
    };
    let qkind = || KernelKind::RowOp {
        op: "quantize".into(),
        cols: k,
    };
    p.kernel(
        qkind(),
        Phase::Load,
        quantize(Expr::int(n as i64)),
        &[w, wq, ws],
    );
    p.step(qkind(), quantize(t()), &[x, xq, xs]);

    let mut bb = BodyBuilder::new();
    let (bxq, bxs, bwq, bws, by) = (
        bb.param("xq", DType::I8, Access::Read),
        bb.param("xs", DType::F32, Access::Read),
        bb.param("wq", DType::I8, Access::Read),
        bb.param("ws", DType::F32, Access::Read),
        bb.param("y", DType::F32, Access::Write),
    );
    bb.for_(LoopKind::Parallel, 0, t(), |bb, r| {
        bb.serial(0, n, |bb, c| {
            let acc = bb.let_(Expr::int(0));
            bb.for_(LoopKind::Vector, 0, k, |bb, j| {
                bb.assign(acc, acc + ld(bxq, r * k + j) * ld(bwq, c * k + j));
            });
            let v = Expr::from(acc).to_f32() * ld(bxs, r) * ld(bws, c);
            bb.store(by, r * n + c, v);
        });
    });
    let qg = KernelKind::QGemm(GemmDesc {
        m: "T".into(),
        n,
        k,
        groups: 1,
        dtype: DType::I8,
        epilogue: vec!["dequantize".into()],
    });
    p.step(qg, bb.finish(), &[xq, xs, wq, ws, y]);
    p.finish()
}

pub fn quant_weights() -> Weights {
    let v = (0..32).map(|i| ((i * 5 % 17) as f64 - 8.0) / 3.0).collect();
    let mut w = Weights::new();
    w.insert("w".into(), Tensor::f32(vec![4, 8], v));
    w
}

pub fn quant_input(t: usize) -> Tensor {
    Tensor::f32(
        vec![t, 8],
        (0..t * 8).map(|i| (i as f64 * 0.9).sin() * 3.0).collect(),
    )
}
