//! Golden tests: every spec in `golden/specs/` builds, verifies and prints as snapshotted in
//! `golden/snapshots/ir/`; every malformed spec in `golden/errors/` fails with the diagnostics
//! snapshotted in `golden/snapshots/errors/`. Snapshots are written with
//! `INSTA_UPDATE=always cargo test -p bfly-compiler`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bfly_compiler::spec::param_names;
use bfly_compiler::{compile_spec_source, render_diagnostics};
use bfly_grammar::SourceFile;
use bfly_ir::{Graph, Op, print_graph, verify};

fn golden(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../golden")
        .join(dir)
}

/// `(stem, file)` for every `.bfly` in `golden/DIR`, named by its repo-relative path so that
/// rendered diagnostics do not depend on where the repository is checked out.
fn specs(dir: &str) -> Vec<(String, SourceFile)> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(golden(dir)).expect("golden directory exists");
    for e in entries {
        let path = e.expect("readable directory entry").path();
        if path.extension().and_then(|x| x.to_str()) != Some("bfly") {
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let stem = path
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path).expect("readable spec");
        out.push((
            stem.to_string(),
            SourceFile::new(format!("golden/{dir}/{name}"), text),
        ));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn build(file: &SourceFile) -> (bfly_compiler::ModelSpec, Graph) {
    match compile_spec_source(file) {
        Ok(r) => r,
        Err(ds) => panic!(
            "{} failed:\n{}",
            file.name,
            render_diagnostics(file, &ds, false)
        ),
    }
}

#[test]
fn golden_specs_build_verify_and_match_snapshots() {
    let all = specs("specs");
    assert!(all.len() >= 7, "golden specs missing: {}", all.len());
    for (stem, file) in all {
        let (_, g) = build(&file);
        assert_eq!(verify(&g), Ok(()), "{stem}");
        insta::with_settings!({
            snapshot_path => "../../golden/snapshots/ir",
            prepend_module_to_snapshot => false,
            description => file.name.clone(),
            omit_expression => true,
        }, {
            insta::assert_snapshot!(stem.as_str(), print_graph(&g));
        });
    }
}

#[test]
fn malformed_specs_match_error_snapshots() {
    let all = specs("errors");
    assert!(all.len() >= 20, "error specs missing: {}", all.len());
    for (stem, file) in all {
        let ds = match compile_spec_source(&file) {
            Ok(_) => panic!("{} should not compile", file.name),
            Err(ds) => ds,
        };
        // Every semantic error says how to fix it (syntax errors are the parser's business).
        if bfly_grammar::parse_spec(&file).is_ok() {
            for d in &ds {
                let hinted = d.hint.as_deref().is_some_and(|h| !h.is_empty());
                assert!(hinted, "{stem}: no hint in {d:?}");
            }
        }
        insta::with_settings!({
            snapshot_path => "../../golden/snapshots/errors",
            prepend_module_to_snapshot => false,
            description => file.name.clone(),
            omit_expression => true,
        }, {
            insta::assert_snapshot!(stem.as_str(), render_diagnostics(&file, &ds, false));
        });
    }
}

/// The checker's parameter list (used for `trainable` globs) is exactly what the builder makes.
#[test]
fn checker_predicts_every_parameter_name() {
    for (stem, file) in specs("specs") {
        let (spec, g) = build(&file);
        let predicted: BTreeSet<String> = param_names(&spec.model, &spec.sites)
            .into_iter()
            .map(|p| p.name)
            .collect();
        let built: BTreeSet<String> = g.params().map(|(_, p, _)| p.name.clone()).collect();
        assert_eq!(predicted, built, "{stem}");
    }
}

fn load(stem: &str) -> (bfly_compiler::ModelSpec, Graph) {
    let all = specs("specs");
    let (_, file) = all
        .iter()
        .find(|(s, _)| s == stem)
        .unwrap_or_else(|| panic!("no golden spec {stem}"));
    build(file)
}

fn param_dims(g: &Graph, name: &str) -> Vec<usize> {
    let v = g
        .find_param(name)
        .unwrap_or_else(|| panic!("no param {name}"));
    g.value_type(v)
        .const_dims()
        .expect("params have constant shapes")
}

#[test]
fn tiny_dib_projections_are_per_head_dib() {
    let (spec, g) = load("tiny-dib");
    let heads = spec.model.heads.node as usize;
    for layer in 0..2 {
        for p in ["q", "k", "v", "o"] {
            let site = format!("layers.{layer}.attn.{p}");
            // 128 / 4 heads = 32 per head: n = 32, L = 5.
            assert_eq!(
                param_dims(&g, &format!("{site}.theta")),
                [heads, 1, 1, 5, 16],
                "{site}"
            );
            assert_eq!(
                param_dims(&g, &format!("{site}.diag")),
                [heads, 1, 1, 5, 32],
                "{site}"
            );
        }
        // The MLP is full width: 128 → 256 has n = 128, two stacks.
        let up = format!("layers.{layer}.mlp.up.theta");
        assert_eq!(param_dims(&g, &up), [1, 2, 1, 7, 64]);
    }
    let producers = g
        .node_ids()
        .filter(|&id| matches!(g.node(id).op, Op::DibTwiddles { .. }))
        .filter(|&id| g.node(id).results[0].dims[0].as_const() == Some(heads as u64))
        .count();
    assert_eq!(
        producers,
        2 * 4,
        "per-head dib_twiddles for q, k, v, o of both layers"
    );
}

#[test]
fn wide_2048_butterfly_twiddles_are_n_log_n() {
    let (_, g) = load("wide-2048");
    let dims = param_dims(&g, "layers.0.attn.q.twiddles");
    assert_eq!(dims, [1, 1, 1, 11, 1024, 2, 2]);
    let bytes: usize = dims.iter().product::<usize>() * 4;
    assert_eq!(bytes, 180_224);
    // 16 MiB dense versus 0.172 MiB butterfly.
    assert_eq!(2048 * 2048 * 4 / bytes, 93);
}

#[test]
fn mixed_resolves_overrides_in_order_and_trains_only_lora() {
    let (spec, g) = load("mixed");
    let kind = |s: &str| spec.site(s).map(|s| s.kind.to_string()).unwrap_or_default();
    assert_eq!(
        kind("layers.0.attn.q"),
        "butterfly(nblocks = 1, stride = decreasing)"
    );
    assert_eq!(
        kind("layers.0.attn.o"),
        "givens(stride = decreasing, bias = true)"
    );
    assert_eq!(kind("layers.1.mlp.up"), "monarch(blocks = 4, bias = true)");
    assert_eq!(kind("layers.1.mlp.down"), "dense(bias = true)");
    assert_eq!(kind("head"), "butterfly(nblocks = 2, stride = increasing)");
    for (_, p, _) in g.params() {
        assert_eq!(p.trainable, p.name.contains(".lora_"), "{}", p.name);
    }
    // k and v project to kv_heads · head_dim = 2 · 16.
    assert_eq!(
        spec.site("layers.0.attn.k").map(|s| s.out_features),
        Some(32)
    );
}
