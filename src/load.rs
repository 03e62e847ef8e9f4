//! Loads a model for the CLI: a spec (`*.bfly`) through the compiler front end, or Graph IR
//! text (`*.bfir`, or any file starting with `graph @`) through the IR parser. Errors come
//! back rendered, with file:line:col and a caret under the span.

use bfly_grammar::{SourceFile, SpecFile};
use bfly_ir::Graph;
use std::io::IsTerminal;
use std::path::Path;

pub struct Loaded {
    pub file: SourceFile,
    /// The spec's AST (absent for IR text input).
    pub ast: Option<SpecFile>,
    /// The inference graph as built (or as parsed, for IR text).
    pub graph: Graph,
    /// The checked spec (absent for IR text input).
    pub spec: Option<bfly_compiler::ModelSpec>,
    /// The init seed the spec's `train` section asks for, if any.
    pub spec_seed: Option<u64>,
    /// The artifact, when the input was a `.bfa` (its graph is `graph`).
    pub artifact: Option<bfly_runtime::artifact::Artifact>,
}

/// Is `path` a compiled artifact (by extension, or by its safetensors header naming bfly)?
fn is_artifact(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "bfa")
}

/// Opens a `.bfa`: the graph is the artifact's (for a train artifact, its training graph).
fn load_artifact(path: &Path) -> Result<Loaded, String> {
    let a = bfly_runtime::artifact::Artifact::open(path).map_err(|e| format!("error: {e}"))?;
    let file = SourceFile::new(path.display().to_string(), a.spec_source().to_string());
    Ok(Loaded {
        file,
        ast: None,
        graph: a.graph().clone(),
        spec: None,
        spec_seed: None,
        artifact: Some(a),
    })
}

pub fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn is_ir_text(path: &Path, text: &str) -> bool {
    path.extension().is_some_and(|e| e == "bfir")
        || text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("//"))
            .is_some_and(|l| l.starts_with("graph @"))
}

pub fn load(path: &Path) -> Result<Loaded, String> {
    if is_artifact(path) {
        return load_artifact(path);
    }
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "error: cannot read {}: {e}\n  hint: give the path of a model spec (*.bfly), graph IR (*.bfir) or artifact (*.bfa)",
            path.display()
        )
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        format!(
            "error: {} is not UTF-8 text (invalid byte at offset {}); specs and IR are text files",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    let file = SourceFile::new(path.display().to_string(), text);
    if is_ir_text(path, &file.text) {
        let graph = bfly_ir::parse::parse_graph(&file)
            .map_err(|d| bfly_compiler::render_diagnostics(&file, &d, color()))?;
        return Ok(Loaded {
            file,
            ast: None,
            graph,
            spec: None,
            spec_seed: None,
            artifact: None,
        });
    }
    let (spec, graph) = bfly_compiler::compile_spec_source(&file)
        .map_err(|d| bfly_compiler::render_diagnostics(&file, &d, color()))?;
    let ast = bfly_grammar::parse_spec(&file).ok();
    Ok(Loaded {
        file,
        ast,
        graph,
        spec_seed: spec.train.as_ref().map(|t| t.seed.node),
        spec: Some(spec),
        artifact: None,
    })
}
