//! Fused regions: a producer's elementwise tail folds into its store (one kernel, epilogue
//! recorded in the descriptor); other regions are concatenated into one kernel of several
//! sections. Both compute what the unfused graph computes (same tolerance as `lower_ops`).

mod lower_common;

use bfly_ir::kernel::KernelKind;
use bfly_ir::{DType, Op, StrideOrder, Value};
use bfly_targets::lower::lower_graph;
use lower_common::*;

const TOL: f64 = 1e-5;

fn fuse(c: &mut Case, members: &[Value]) {
    let r = c.g.new_region();
    for v in members {
        c.g.set_region(v.node, Some(r));
    }
}

/// Step kernels of the case's program (load-phase packing and tables excluded).
fn step_kinds(c: &mut Case, outputs: &[Value]) -> Vec<KernelKind> {
    let mut g = c.g.clone();
    g.set_outputs(
        outputs
            .iter()
            .enumerate()
            .map(|(i, &v)| bfly_ir::Output::value(format!("o{i}"), v))
            .collect(),
    );
    let p = lower_graph(&g, c.mode).expect("lowers");
    p.kernels
        .iter()
        .filter(|k| k.phase == bfly_ir::kernel::Phase::Step)
        .filter(|k| !matches!(&k.kind, KernelKind::Layout { op } if op == "pack"))
        .map(|k| k.kind.clone())
        .collect()
}

#[test]
fn a_matmul_tail_folds_into_the_store() {
    for batch in [None, Some(2)] {
        let mut c = Case::new(1, batch, 5);
        let x = c.act(6);
        let w = c.param(&[4, 6]);
        let bias = c.param(&[4]);
        let res = c.param(&[4]);
        let h = c.op1(Op::Matmul, &[x, w, bias]);
        let a = c.op1(Op::Gelu, &[h]);
        let s = c.op1(Op::Add, &[res, a]);
        let m = c.op1(Op::Mul, &[s, s]);
        let y = c.op1(Op::Cast { to: DType::F16 }, &[m]);
        fuse(&mut c, &[h, a, s, m, y]);
        let kinds = step_kinds(&mut c, &[y]);
        match &kinds[..] {
            [KernelKind::Gemm(g)] => {
                assert_eq!(g.epilogue, ["bias", "gelu", "add", "mul", "cast.f16"])
            }
            other => panic!("expected one gemm, got {other:?}"),
        }
        c.out(y);
        // The f16 result: one rounding of a value near 1 is 2^-11.
        c.check(1e-3);
    }
}

#[test]
fn a_butterfly_chain_keeps_its_head_and_folds_its_tail() {
    let mut c = Case::new(2, None, 3);
    let x = c.act(8);
    let t1 = c.param(&[1, 1, 1, 3, 4, 2, 2]);
    let t2 = c.param(&[1, 2, 2, 3, 4, 2, 2]);
    let stride = StrideOrder::Increasing;
    let b1 = c.op1(
        Op::Butterfly {
            n_in: 8,
            n_out: 8,
            stride,
        },
        &[x, t1],
    );
    let b2 = c.op1(
        Op::Butterfly {
            n_in: 8,
            n_out: 13,
            stride,
        },
        &[b1, t2],
    );
    let s = c.op1(Op::Silu, &[b2]);
    fuse(&mut c, &[b1, b2, s]);
    let kinds = step_kinds(&mut c, &[s]);
    match &kinds[..] {
        [KernelKind::Butterfly(b)] => assert_eq!(b.epilogue, ["silu"]),
        other => panic!("expected one butterfly kernel, got {other:?}"),
    }
    c.out(s);
    c.check(TOL);
}

#[test]
fn other_regions_concatenate_their_sections() {
    let mut c = Case::new(3, Some(2), 4);
    let x = c.act(5);
    let w = c.param(&[7, 5]);
    let h = c.op1(Op::Matmul, &[x, w]);
    let sm = c.op1(Op::Softmax, &[h]);
    let y = c.op1(Op::Scale { factor: 3.0 }, &[sm]);
    fuse(&mut c, &[h, sm, y]);
    let kinds = step_kinds(&mut c, &[y]);
    assert!(matches!(&kinds[..], [KernelKind::Gemm(_)]), "{kinds:?}");
    c.out(y);
    c.check(TOL);
}

#[test]
fn a_value_read_outside_the_region_is_not_folded() {
    let mut c = Case::new(4, None, 3);
    let x = c.act(4);
    let w = c.param(&[4, 4]);
    let h = c.op1(Op::Matmul, &[x, w]);
    let a = c.op1(Op::Silu, &[h]);
    fuse(&mut c, &[h, a]);
    // `h` is also an output: it must reach memory, so the region is concatenated instead.
    let kinds = step_kinds(&mut c, &[a, h]);
    assert!(
        matches!(&kinds[..], [KernelKind::Gemm(g)] if g.epilogue.is_empty()),
        "{kinds:?}"
    );
    c.out(a);
    c.out(h);
    c.check(TOL);
}
