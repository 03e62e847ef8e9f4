//! f16 weights stay f16 in inference programs (DESIGN §5): the quantize pass's
//! `cast w16 {to = f32}` feeding a butterfly's twiddles, a matmul's weight or a monarch's
//! blocks is not lowered; the packed twiddles and the weights are f16 buffers and the
//! consumers' body params for them are `F16` (their loads widen exactly).
//!
//! The check against the old lowering: the same graph with a same-shape `reshape` after each
//! widening cast (a reshape aliases its operand's buffer, but is no weight consumer, so the
//! cast is lowered as before: f32 state computed at load). f16 → f32 widening is exact, so
//! the two programs feed the same f32 values to the same arithmetic: their logits must be
//! bit-identical, on the Kernel IR interpreter and on compiled code (1 and 3 threads), for a
//! prefill and a decode step. Load-only intermediates must leave the state region, so the
//! f16 programs keep strictly fewer state bytes.

mod lower_common;

use bfly_compiler::{Mode, ModelSpec, compile_spec_source, render_diagnostics};
use bfly_grammar::SourceFile;
use bfly_ir::kernel::{BufferKind, KernelKind, KernelProgram, verify_program};
use bfly_ir::{DType, Graph, NodeId, Op, Value};
use bfly_targets::cranelift::HostProgram;
use bfly_targets::exec::{Executor, Syms};
use bfly_targets::interp::Interp;
use bfly_targets::lower::{LowerMode, lower_graph};
use bfly_targets::plan::plan_memory;
use bfly_targets::reference::{Tensor, Weights};
use lower_common::*;
use std::sync::Arc;

/// A spec with `dense = f16`: f16 attention, MLP and (tied) head weights, and a monarch up
/// projection whose blocks are f16 too.
const DENSE_F16: &str = r#"
model dense_f16 {
    vocab = 64
    d_model = 32
    layers = 2
    heads = 2
    context = 16
    mlp = swiglu(hidden = 64)
    override "layers.1.mlp.up" = monarch(blocks = 4)
}

quantize { dense = f16 }
"#;

fn spec_graph(name: &str, text: &str) -> (ModelSpec, Graph) {
    let file = SourceFile::new(format!("{name}.bfly"), text.to_string());
    let spec = match compile_spec_source(&file) {
        Ok((spec, _)) => spec,
        Err(d) => panic!("{name}: {}", render_diagnostics(&file, &d, false)),
    };
    let g = graph_at(&spec, &file, Mode::Infer, None);
    (spec, g)
}

fn golden_graph(stem: &str) -> (ModelSpec, Graph) {
    let (spec, file) = golden_spec(stem);
    let g = graph_at(&spec, &file, Mode::Infer, None);
    (spec, g)
}

/// `cast x {to = f32}` of an f16 value.
fn is_widening(g: &Graph, id: NodeId) -> bool {
    matches!(g.node(id).op, Op::Cast { to: DType::F32 })
        && g.operands(id)
            .first()
            .is_some_and(|&v| g.value_type(v).dtype == DType::F16)
}

/// Consumers (`op` name, operand slot) reading a widened weight.
fn widened_weights(g: &Graph) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for id in g.node_ids() {
        for (slot, v) in g.operands(id).iter().enumerate() {
            if is_widening(g, v.node) {
                out.push((g.node(id).op.name().to_string(), slot));
            }
        }
    }
    out.sort();
    out
}

/// The graph lowered the old way: a same-shape reshape after every widening cast.
fn widened_at_load(g: &Graph) -> Graph {
    let mut g = g.clone();
    let casts: Vec<NodeId> = g.node_ids().filter(|&id| is_widening(&g, id)).collect();
    for id in casts {
        let src = g.operands(id)[0];
        let dims = g.node(id).results[0].dims.clone();
        let cast = g.add1(Op::Cast { to: DType::F32 }, &[src], None).unwrap();
        let same = g.add1(Op::Reshape { dims }, &[cast], None).unwrap();
        g.replace_uses(Value::first(id), same);
        g.remove_node(id);
    }
    g
}

fn lower(spec: &ModelSpec, g: &Graph) -> KernelProgram {
    let mode = LowerMode::Inference {
        context: spec.model.context.node,
    };
    let p = lower_graph(g, mode).unwrap_or_else(|e| panic!("@{}: {e}", g.name));
    if let Err(errors) = verify_program(&p) {
        panic!("@{}:\n{}\n\n{}", g.name, errors.join("\n"), p.print());
    }
    p
}

/// The dtype of the buffer bound to body param `name` of every kernel of kind `kind`.
fn param_dtypes(p: &KernelProgram, kind: &str, name: &str) -> Vec<DType> {
    p.kernels
        .iter()
        .filter(|k| k.kind.family() == kind)
        .filter_map(|k| {
            let body = p.body(k.body);
            let i = body.params.iter().position(|q| q.name == name)?;
            let b = p.buffer(k.args[i]);
            assert_eq!(body.params[i].dtype, b.dtype, "{}: `{name}`", k.name);
            Some(b.dtype)
        })
        .collect()
}

fn count(ds: &[DType], d: DType) -> usize {
    ds.iter().filter(|&&x| x == d).count()
}

/// Widening casts left as kernels (`layout{cast}` reading f16).
fn widening_kernels(p: &KernelProgram) -> usize {
    p.kernels
        .iter()
        .filter(|k| matches!(&k.kind, KernelKind::Layout { op } if op == "cast"))
        .filter(|k| p.body(k.body).params[0].dtype == DType::F16)
        .count()
}

fn bits(ts: &[Tensor]) -> Vec<Vec<u64>> {
    ts.iter()
        .map(|t| floats(t).iter().map(|x| x.to_bits()).collect())
        .collect()
}

/// Logits bits of a prefill of 5 tokens then a decode step: interpreter, then compiled code
/// on 1 and 3 threads (each compared with the same runner on the other program: compiled
/// code and the interpreter need not agree bit for bit, e.g. on `exp`).
fn runs(p: &KernelProgram, w: &Weights, vocab: u64) -> Vec<Vec<Vec<u64>>> {
    let prompt = [tokens(&token_ids(5, vocab, 3))];
    let next = [tokens(&token_ids(1, vocab, 4))];
    let mut out = Vec::new();
    let mut interp = Interp::new(p, w).unwrap();
    out.push(bits(&interp.step(&prompt, Syms::tokens(5)).unwrap()));
    out.push(bits(&interp.step(&next, Syms::decode(1, 5)).unwrap()));
    let program = Arc::new(p.clone());
    let jit = Arc::new(HostProgram::compile(&program).unwrap());
    for threads in [1, 3] {
        let mut ex = Executor::new(Arc::clone(&program), jit.clone(), w, threads).unwrap();
        out.push(bits(&ex.step(&prompt, Syms::tokens(5)).unwrap()));
        out.push(bits(&ex.step(&next, Syms::decode(1, 5)).unwrap()));
    }
    out
}

/// Lowers `g` both ways and checks the f16 program: no widening kernel left, `expect`
/// f16-bound `(kind, param)` counts, fewer state bytes, bit-identical logits.
fn check(spec: &ModelSpec, g: &Graph, expect: &[(&str, &str, usize)]) {
    let name = &g.name;
    let old_g = widened_at_load(g);
    let (new, old) = (lower(spec, g), lower(spec, &old_g));
    assert_eq!(widening_kernels(&new), 0, "@{name}:\n{}", new.print());
    assert!(
        widening_kernels(&old) > 0,
        "@{name}: the old form widens at load"
    );
    for &(kind, param, n) in expect {
        let (got, before) = (
            param_dtypes(&new, kind, param),
            param_dtypes(&old, kind, param),
        );
        assert_eq!(
            count(&got, DType::F16),
            n,
            "@{name}: f16 `{param}` of {kind}"
        );
        assert_eq!(
            count(&before, DType::F16),
            0,
            "@{name}: old {kind} `{param}`"
        );
        assert_eq!(got.len(), before.len(), "@{name}: {kind} kernels");
    }
    // Butterfly twiddles: the packed state itself is f16.
    let f16_packed = new
        .buffers
        .iter()
        .filter(|b| b.name.ends_with(".twiddles.packed") && b.dtype == DType::F16)
        .inspect(|b| assert_eq!(b.kind, BufferKind::State, "{}", b.name))
        .count();
    let butterflies = expect
        .iter()
        .find(|e| e.0 == "butterfly")
        .map_or(0, |e| e.2);
    assert_eq!(f16_packed, butterflies, "@{name}: f16 packed twiddles");
    // No f32 copy of an f16 weight, and load-only intermediates are not state.
    let (pn, po) = (plan_memory(&new).unwrap(), plan_memory(&old).unwrap());
    assert!(
        pn.state_bytes() < po.state_bytes(),
        "@{name}: state {} B, before {} B",
        pn.state_bytes(),
        po.state_bytes()
    );
    assert!(pn.total_bytes() < po.total_bytes(), "@{name}: total bytes");
    let w = weights(g, 7);
    let vocab = spec.model.vocab.node;
    let (got, want) = (runs(&new, &w, vocab), runs(&old, &w, vocab));
    assert_eq!(got, want, "@{name}: logits differ from widening at load");
}

#[test]
fn quantized_twiddles_stay_f16() {
    for stem in ["tiny-quant", "mixed"] {
        let (spec, g) = golden_graph(stem);
        let widened = widened_weights(&g);
        assert!(
            widened
                .iter()
                .all(|(op, slot)| op == "butterfly" && *slot == 1),
            "{stem}: {widened:?}"
        );
        check(&spec, &g, &[("butterfly", "tw", widened.len())]);
    }
}

#[test]
fn f16_dense_and_monarch_weights_stay_f16() {
    let (spec, g) = spec_graph("dense_f16", DENSE_F16);
    let widened = widened_weights(&g);
    let n = |op: &str, slot: usize| {
        widened
            .iter()
            .filter(|(o, s)| o == op && *s == slot)
            .count()
    };
    assert!(n("matmul", 1) > 0 && n("monarch", 1) == 1 && n("monarch", 2) == 1);
    assert_eq!(widened.len(), n("matmul", 1) + 2, "{widened:?}");
    check(
        &spec,
        &g,
        &[
            ("gemm", "w", n("matmul", 1)),
            ("monarch", "w1", 1),
            ("monarch", "w2", 1),
        ],
    );
}

/// Quantization is inference-only; training programs keep f32 everywhere.
#[test]
fn training_programs_have_no_f16() {
    for stem in ["tiny-quant", "mixed"] {
        let (spec, file) = golden_spec(stem);
        let g = graph_at(&spec, &file, Mode::Train, None);
        let p = lower_graph(&g, LowerMode::Training).unwrap();
        assert!(
            p.buffers.iter().all(|b| b.dtype != DType::F16),
            "{stem}: training buffers"
        );
    }
}
