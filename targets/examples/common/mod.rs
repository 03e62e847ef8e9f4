//! Shared by the efficiency-evidence examples: a golden model spec → its inference Kernel IR
//! program and seeded weights.

#![allow(dead_code)] // each example uses a different subset

use bfly_compiler::{Mode, compile_spec_source, compile_to_stage, render_diagnostics};
use bfly_grammar::SourceFile;
use bfly_ir::Graph;
use bfly_ir::kernel::KernelProgram;
use bfly_targets::lower::{LowerMode, lower_graph};
use bfly_targets::reference::{Weights, init_weights};
use std::path::Path;

/// An inference program (KV context of the spec) and its weights (seed 7, as the benches).
pub struct Model {
    /// File stem (`tiny-dib`).
    pub stem: String,
    pub program: KernelProgram,
    pub weights: Weights,
}

pub fn load(path: &Path) -> Result<Model, String> {
    let (stem, g, program) = lower(path, Mode::Infer)?;
    let weights = init_weights(&g, 7)?;
    Ok(Model {
        stem,
        program,
        weights,
    })
}

/// A spec's file stem, graph and Kernel IR program for `mode` (inference: with the spec's KV
/// context; training: forward, backward and optimizer).
pub fn lower(path: &Path, mode: Mode) -> Result<(String, Graph, KernelProgram), String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("model")
        .to_string();
    let file = SourceFile::new(path.display().to_string(), text);
    let (spec, _) = compile_spec_source(&file).map_err(|d| render_diagnostics(&file, &d, false))?;
    let g = compile_to_stage(&spec, &file, mode, None)
        .map_err(|d| render_diagnostics(&file, &d, false))?;
    let lower_mode = match mode {
        Mode::Infer => LowerMode::Inference {
            context: spec.model.context.node,
        },
        Mode::Train => LowerMode::Training,
    };
    let program = lower_graph(&g, lower_mode).map_err(|e| format!("lowering {stem}: {e}"))?;
    Ok((stem, g, program))
}

/// The golden specs (`golden/specs/*.bfly`), sorted.
pub fn golden_specs() -> Result<Vec<std::path::PathBuf>, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../golden/specs");
    let mut specs: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "bfly"))
        .collect();
    specs.sort();
    Ok(specs)
}
