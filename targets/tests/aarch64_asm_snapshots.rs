//! Golden listings of every aarch64 microkernel variant, as reviewed text: for each variant
//! (`gemm.f32.dot`, `qgemm.i8.smull`, …) its smallest instance in the golden models (a fixed
//! shape), found with every feature (`aarch64+dotprod+fp16`) or, for variants that exist
//! only without features, on the baseline CPU. Snapshots live in
//! `golden/snapshots/asm/VARIANT.snap`; write them with
//! `INSTA_UPDATE=always cargo test -p bfly-targets --test aarch64_asm_snapshots`.
//! Emission is host-independent, so these run (and must agree) on x86 and under QEMU.

mod exec_golden;
mod lower_common;

use bfly_compiler::Mode;
use bfly_targets::aarch64::{Aarch64Plan, CpuFeatures, disasm};
use exec_golden::golden;
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

#[test]
fn every_microkernel_variant_matches_its_listing() {
    // variant (name up to the shape, e.g. `gemm.f32.dot`) → (code size, listing): the
    // smallest instance found, so the reviewed text stays short.
    let mut smallest: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for target in ["aarch64+dotprod+fp16", "aarch64"] {
        let features = CpuFeatures::parse_target(target).unwrap();
        for stem in STEMS {
            for mode in [Mode::Infer, Mode::Train] {
                let g = golden(stem, mode);
                let plan = Aarch64Plan::emit(&g.program, features);
                for m in &plan.micro {
                    let variant = m.micro.name.split(' ').next().unwrap_or_default();
                    let size = m.micro.code.bytes.len();
                    if smallest.get(variant).is_some_and(|(s, _)| *s <= size) {
                        continue;
                    }
                    let mut text = format!(
                        "; {} — {target}, {stem} {mode:?}, {} ({})\n",
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
            description => format!("{variant}: its smallest instance in the golden models"),
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
