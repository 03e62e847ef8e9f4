//! Lowering never panics on a malformed site (wrong operand counts, types, dims): hand-written
//! IR reaches it, and an error names the node instead.

use bfly_ir::{DType, Dim, Op, StrideOrder, Type};
use bfly_targets::lower::{LowerMode, OpSite, lower_op};
use proptest::prelude::*;

fn ops() -> Vec<Op> {
    vec![
        Op::Embed,
        Op::Matmul,
        Op::Butterfly {
            n_in: 8,
            n_out: 12,
            stride: StrideOrder::Decreasing,
        },
        Op::Monarch { n_in: 8, n_out: 8 },
        Op::GivensTwiddles,
        Op::DibTwiddles {
            stride: StrideOrder::Increasing,
        },
        Op::HadamardTwiddles {
            groups: 1,
            stacks: 1,
            blocks: 1,
            n: 8,
        },
        Op::TernaryTwiddles { alpha: 0.5 },
        Op::Lora { scale: 2.0 },
        Op::Add,
        Op::Sub,
        Op::Mul,
        Op::Neg,
        Op::Exp,
        Op::Silu,
        Op::Gelu,
        Op::Sigmoid,
        Op::Scale { factor: 2.0 },
        Op::RmsNorm { eps: 1e-5 },
        Op::LayerNorm { eps: 1e-5 },
        Op::Softmax,
        Op::Rope {
            heads: 2,
            base: 10000.0,
        },
        Op::CausalAttention {
            heads: 2,
            kv_heads: 1,
        },
        Op::Reshape {
            dims: vec![Dim::sym("T"), Dim::Const(2), Dim::Const(4)],
        },
        Op::Transpose { perm: vec![1, 0] },
        Op::Split {
            axis: 1,
            sizes: vec![3, 5],
        },
        Op::Concat { axis: 1 },
        Op::Cast { to: DType::I8 },
        Op::Quantize,
        Op::Dequantize,
        Op::QMatmul,
        Op::CrossEntropy,
        Op::Fill {
            value: 1.0,
            dtype: DType::F32,
            dims: vec![Dim::sym("T"), Dim::Const(3)],
        },
    ]
}

fn types() -> Vec<Type> {
    let t = |dtype, dims: &[Dim]| Type::new(dtype, dims.iter().cloned());
    let (s, c) = (Dim::sym, Dim::Const);
    vec![
        t(DType::F32, &[]),
        t(DType::F32, &[s("T"), c(8)]),
        t(DType::F32, &[s("B"), s("T"), c(8)]),
        t(DType::F32, &[c(4), c(8)]),
        t(DType::F32, &[c(12)]),
        t(DType::I8, &[s("T"), c(8)]),
        t(DType::I32, &[s("T")]),
        t(DType::F32, &[s("T")]),
        t(DType::F32, &[c(1), c(2), c(1), c(3), c(4), c(2), c(2)]),
        t(DType::F32, &[c(u64::MAX), c(u64::MAX)]),
        t(DType::F32, &[s("Q"), c(8)]),
        t(DType::F16, &[c(0), c(8)]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn malformed_sites_give_errors_not_panics(
        op in 0usize..34,
        operands in prop::collection::vec(0usize..12, 0..6),
        results in prop::collection::vec(0usize..12, 0..3),
        train: bool,
    ) {
        let ops = ops();
        let pool = types();
        let site = OpSite {
            op: &ops[op % ops.len()],
            operands: operands.iter().map(|&i| pool[i].clone()).collect(),
            results: results.iter().map(|&i| pool[i].clone()).collect(),
            mode: if train { LowerMode::Training } else { LowerMode::Inference { context: 16 } },
            name: "%0".into(),
            radix: Vec::new(),
        };
        let _ = lower_op(&site);
    }
}
