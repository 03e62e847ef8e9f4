//! Encodings checked by decoding them back with yaxpeax-arm (an independent decoder).

use super::*;
use crate::aarch64::disasm::instructions;

/// Emits what `f` writes into a fresh `Asm` and disassembles it: the instructions joined by
/// `"; "`. Shared by the decode tests of every `emit/*_ops.rs` module.
pub(super) fn one(f: impl FnOnce(&mut Asm)) -> String {
    let mut a = Asm::new();
    f(&mut a);
    let code = a.finish().expect("emits");
    instructions(&code.bytes).join("; ")
}

#[test]
fn vector_float_ops_decode_as_written() {
    assert_eq!(
        one(|a| a.fmla_4s(V(0), V(1), V(2))),
        "fmla v0.4s, v1.4s, v2.4s"
    );
    assert_eq!(
        one(|a| a.fmla_4s_lane(V(3), V(4), V(5), 2)),
        "fmla v3.4s, v4.4s, v5.s[2]"
    );
    assert_eq!(
        one(|a| a.fmla_8h(V(0), V(1), V(2))),
        "fmla v0.8h, v1.8h, v2.8h"
    );
    assert_eq!(one(|a| a.fcvtl2_4s(V(0), V(1))), "fcvtl2 v0.4s, v1.8h");
}

#[test]
fn integer_and_memory_ops_decode_as_written() {
    assert_eq!(
        one(|a| a.sdot_4s(V(0), V(1), V(2))),
        "sdot v0.4s, v1.16b, v2.16b"
    );
    assert_eq!(
        one(|a| a.ldr(mem::Width::Q, V(1), X(4), 32)),
        "ldr q1, [x4, #0x20]"
    );
    assert_eq!(
        one(|a| a.ldr_post(mem::Width::Q, V(1), X(4), 16)),
        "ldr q1, [x4], #0x10"
    );
    assert_eq!(
        one(|a| a.ld2_4s(V(6), X(5), false)),
        "ld2 {v6.4s, v7.4s}, [x5]"
    );
    assert_eq!(one(|a| a.add_imm(X(1), X(2), 5)), "add x1, x2, #0x5");
}

#[test]
fn out_of_range_immediates_are_errors_not_panics() {
    let mut a = Asm::new();
    a.ldr(mem::Width::Q, V(0), X(1), 8);
    assert!(a.finish().unwrap_err().contains("not a multiple of 16"));
    let mut a = Asm::new();
    a.ldr_post(mem::Width::Q, V(0), X(1), 4096);
    assert!(a.finish().is_err());
}

#[test]
fn branches_resolve_to_labels() {
    let mut a = Asm::new();
    let top = a.new_label();
    a.bind(top);
    a.subs_imm(X(4), X(4), 1);
    a.b_cond(Cond::Ne, top);
    a.ret();
    let code = a.finish().unwrap();
    let text = instructions(&code.bytes);
    assert_eq!(text.len(), 3);
    assert!(text[1].starts_with("b.ne"), "{text:?}");
}
