//! Golden listings of every aarch64 microkernel variant, as reviewed text: for each variant
//! (`gemm.f32.dot`, `qgemm.i8.smull`, …) its smallest instance (a fixed shape) among the golden
//! models, a few quantized variants of them (`dense = f16`, `butterfly = fp16`: the fp16 kernels)
//! and one-op programs for variants no model uses (a softmax row, attention with a head too wide
//! to keep q in registers), found with every feature (`aarch64+dotprod+fp16`) or, for variants
//! that exist only without features, on the baseline CPU. Snapshots live in
//! `golden/snapshots/asm/VARIANT.snap`; write them with
//! `INSTA_UPDATE=always cargo test -p bfly-targets --test aarch64_asm_snapshots`.
//! Emission is host-independent, so these run (and must agree) on x86 and under QEMU.

mod exec_golden;
mod lower_common;

use bfly_compiler::{Mode, compile_spec_source, render_diagnostics};
use bfly_grammar::SourceFile;
use bfly_ir::Op;
use bfly_ir::kernel::KernelProgram;
use bfly_targets::aarch64::{Aarch64Plan, CpuFeatures, disasm};
use bfly_targets::lower::{LowerMode, lower_graph};
use exec_golden::golden;
use lower_common::{Case, golden_spec, graph_at};
use std::collections::BTreeMap;

/// The models, in the order variants are first looked for.
const STEMS: [&str; 7] = [
    "tiny-dib",
    "tiny-dense",
    "tiny-quant",
    "tiny-butterfly",
    "tiny-monarch",
    "mixed",
    "tiny-hadamard",
];

/// Golden models with their `quantize` section replaced: the fp16 storage variants.
const QUANTIZED: [(&str, &str); 2] = [
    ("tiny-dense", "quantize { dense = f16 }"),
    ("tiny-dib", "quantize { dense = none  butterfly = fp16 }"),
];

/// Every program the listings are taken from, with a label for the listing's header.
fn programs() -> Vec<(String, KernelProgram)> {
    let mut out = Vec::new();
    for stem in STEMS {
        for mode in [Mode::Infer, Mode::Train] {
            out.push((format!("{stem} {mode:?}"), golden(stem, mode).program));
        }
    }
    for (stem, section) in QUANTIZED {
        let (_, file) = golden_spec(stem);
        let text = file
            .text
            .lines()
            .filter(|l| !l.starts_with("quantize"))
            .collect::<Vec<_>>();
        let file = SourceFile::new(
            format!("golden/specs/{stem}.bfly + {section}"),
            format!("{}\n{section}\n", text.join("\n")),
        );
        let (spec, _) = compile_spec_source(&file)
            .unwrap_or_else(|d| panic!("{}", render_diagnostics(&file, &d, false)));
        let g = graph_at(&spec, &file, Mode::Infer, None);
        let context = spec.model.context.node;
        let program = lower_graph(&g, LowerMode::Inference { context })
            .unwrap_or_else(|e| panic!("{stem} + {section}: {e}"));
        out.push((format!("{stem} + `{section}` Infer"), program));
    }
    // A softmax row of 64 over 4 tokens (attention fuses its own softmax, so no model has one).
    let mut c = Case::new(1, None, 4);
    let x = c.act(64);
    let y = c.op1(Op::Softmax, &[x]);
    c.out(y);
    out.push(("softmax [4, 64]".into(), c.prepare().program));
    // Causal attention with head dim 72 (> 64: q streams from memory), 1 head, 4 tokens.
    let mut c = Case::new(2, None, 4);
    let (q, k, v) = (c.act(72), c.act(72), c.act(72));
    let heads = Op::CausalAttention {
        heads: 1,
        kv_heads: 1,
    };
    let y = c.op1(heads, &[q, k, v]);
    c.out(y);
    out.push(("attention hd 72, T 4".into(), c.prepare().program));
    out
}

#[test]
fn every_microkernel_variant_matches_its_listing() {
    // variant (name up to the shape, e.g. `gemm.f32.dot`) → (code size, listing): the
    // smallest instance found, so the reviewed text stays short.
    let mut smallest: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let programs = programs();
    for target in ["aarch64+dotprod+fp16", "aarch64"] {
        let features = CpuFeatures::parse_target(target).unwrap();
        for (label, program) in &programs {
            let plan = Aarch64Plan::emit(program, features);
            for m in &plan.micro {
                let variant = m.micro.name.split(' ').next().unwrap_or_default();
                let size = m.micro.code.bytes.len();
                if smallest.get(variant).is_some_and(|(s, _)| *s <= size) {
                    continue;
                }
                let mut text = format!(
                    "; {} — {target}, {label}, {} ({})\n",
                    m.micro.name, m.kernel, m.family
                );
                for line in m.micro.tile.lines() {
                    text.push_str(&format!("; {line}\n"));
                }
                text.push_str(&disasm::listing(&m.micro.code));
                smallest.insert(variant.to_string(), (size, text));
            }
        }
    }
    let mut expected = Vec::new();
    for (variant, (_, text)) in smallest {
        let name: String = variant
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        expected.push(format!("{name}.snap"));
        insta::with_settings!({
            snapshot_path => "../../golden/snapshots/asm",
            prepend_module_to_snapshot => false,
            description => format!("{variant}: its smallest instance"),
            omit_expression => true,
        }, {
            insta::assert_snapshot!(name.as_str(), text);
        });
    }
    // A listing whose variant no longer exists is stale reviewed text.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../golden/snapshots/asm");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                !name.ends_with(".snap") || expected.contains(&name),
                "golden/snapshots/asm/{name} belongs to no current variant: delete it"
            );
        }
    }
}
