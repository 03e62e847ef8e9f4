//! The lowered inference programs of tiny-dense and tiny-dib, as text: the readable contract
//! of lowering (buffers, load/step kernels with descriptors, shared bodies), snapshotted in
//! `golden/snapshots/kernels/STEM.infer.snap`. Write with
//! `INSTA_UPDATE=always cargo test -p bfly-targets --test lower_snapshots`.

mod lower_common;

use bfly_compiler::Mode;
use bfly_targets::lower::{LowerMode, lower_graph};
use lower_common::*;

#[test]
fn inference_programs_match_their_snapshots() {
    for stem in ["tiny-dense", "tiny-dib"] {
        let (spec, file) = golden_spec(stem);
        let g = graph_at(&spec, &file, Mode::Infer, None);
        let mode = LowerMode::Inference {
            context: spec.model.context.node,
        };
        let program = lower_graph(&g, mode).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let name = format!("{stem}.infer");
        insta::with_settings!({
            snapshot_path => "../../golden/snapshots/kernels",
            prepend_module_to_snapshot => false,
            description => format!("{} lowered for inference", file.name),
            omit_expression => true,
        }, {
            insta::assert_snapshot!(name.as_str(), program.print());
        });
    }
}
