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
    /// Reading and checking the input: for an artifact, the mmap plus every validation
    /// (header, version, graph, shapes, checksums); for a spec, parsing and compiling.
    pub load_time: std::time::Duration,
}

impl Loaded {
    /// `m.bfa (artifact) in 2.1ms` — for the load line of `run` and `bench`.
    pub fn describe_load(&self) -> String {
        let kind = if self.artifact.is_some() {
            "artifact: mmap + validation"
        } else if self.spec.is_some() {
            "spec: parse + compile"
        } else {
            "graph IR: parse + verify"
        };
        format!("{} ({kind}) in {:.1?}", self.file.name, self.load_time)
    }
}

/// Is `path` a compiled artifact (by extension, or by its safetensors header naming bfly)?
fn is_artifact(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "bfa")
}

/// Opens a `.bfa`: the graph is the artifact's (for a train artifact, its training graph).
fn load_artifact(path: &Path) -> Result<Loaded, String> {
    let a = bfly_runtime::artifact::Artifact::open(path).map_err(|e| {
        let hint = if looks_like_text(path) {
            "\n  hint: the file is text; a model spec is named *.bfly (an artifact comes from `bfly compile SPEC -o M.bfa`)"
        } else {
            ""
        };
        format!("error: {e}{hint}")
    })?;
    let file = SourceFile::new(path.display().to_string(), a.spec_source().to_string());
    Ok(Loaded {
        file,
        ast: None,
        graph: a.graph().clone(),
        spec: None,
        spec_seed: None,
        artifact: Some(a),
        load_time: std::time::Duration::ZERO,
    })
}

/// Whether the first KiB of `path` is UTF-8 text without NUL bytes (a safetensors header
/// starts with a binary length).
fn looks_like_text(path: &Path) -> bool {
    use std::io::Read;
    let mut head = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(1024).read_to_end(&mut head));
    matches!(read, Ok(n) if n > 0)
        && !head.contains(&0)
        && match std::str::from_utf8(&head) {
            Ok(_) => true,
            // A multi-byte character cut at the 1 KiB boundary is still text.
            Err(e) => e.error_len().is_none(),
        }
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
    let started = std::time::Instant::now();
    let mut loaded = load_untimed(path)?;
    loaded.load_time = started.elapsed();
    Ok(loaded)
}

fn load_untimed(path: &Path) -> Result<Loaded, String> {
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
            load_time: std::time::Duration::ZERO,
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
        load_time: std::time::Duration::ZERO,
    })
}
