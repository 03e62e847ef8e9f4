//! The IR as built and after every pass, both modes, every golden spec: verified, printed
//! text that parses back to itself (`print(parse(print(g))) == print(g)`), and snapshotted in
//! `golden/snapshots/passes/` as `STEM.MODE.NN-STAGE` (`01-build`, then the passes, numbered
//! as `bfly inspect --passes` lists them). Write with
//! `INSTA_UPDATE=always cargo test -p bfly-compiler --test pass_snapshots`.

mod common;

use bfly_compiler::Mode;
use bfly_compiler::passes::pipeline;
use bfly_grammar::SourceFile;
use bfly_ir::parse::parse_graph;
use bfly_ir::{print_graph, verify};
use common::*;

#[test]
fn every_stage_of_every_golden_spec_round_trips_and_matches_its_snapshot() {
    let specs = golden_specs();
    assert!(specs.len() >= 7, "golden specs missing");
    let mut count = 0;
    for (stem, spec, file) in &specs {
        for mode in Mode::ALL {
            for (i, (pass, g)) in every_stage(spec, file, mode).iter().enumerate() {
                let name = format!("{stem}.{mode}.{:02}-{pass}", i + 1);
                assert_eq!(verify(g), Ok(()), "{name}");
                let text = print_graph(g);
                let again = parse_graph(&SourceFile::new(format!("{name}.bfir"), text.clone()))
                    .unwrap_or_else(|d| panic!("{name} does not parse back: {d:?}"));
                assert_eq!(print_graph(&again), text, "{name}: print(parse(print(g)))");
                insta::with_settings!({
                    snapshot_path => "../../golden/snapshots/passes",
                    prepend_module_to_snapshot => false,
                    description => format!("{} after `{pass}` ({mode})", file.name),
                    omit_expression => true,
                }, {
                    insta::assert_snapshot!(name.as_str(), text);
                });
                count += 1;
            }
        }
    }
    // `build` plus one stage per pass of each pipeline, for every spec.
    let per_spec: usize = Mode::ALL
        .iter()
        .map(|&mode| 1 + pipeline(mode, &specs[0].1).len())
        .sum();
    assert_eq!(count, specs.len() * per_spec);
}
