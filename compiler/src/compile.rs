//! The front end in one call: parse, check and build, with diagnostics rendered for people.

use bfly_grammar::{Diagnostic, SourceFile, parse_spec};
use bfly_ir::Graph;

use crate::builder::{build_graph, build_graph_for};
use crate::mode::Mode;
use crate::passes::{PassContext, pipeline, run_passes};
use crate::spec::{ModelSpec, check_spec};

/// Parses, checks and builds a spec source. A syntax error stops at the parse; otherwise every
/// semantic error is reported at once.
pub fn compile_spec_source(file: &SourceFile) -> Result<(ModelSpec, Graph), Vec<Diagnostic>> {
    let ast = parse_spec(file).map_err(|d| vec![d])?;
    let spec = check_spec(file, &ast)?;
    let graph = build_graph(&spec, file)?;
    Ok((spec, graph))
}

/// Builds the `mode` graph of a checked spec and runs the mode's pipeline up to and including
/// the stage `stop` (every pass for `None`, none for `build`).
pub fn compile_to_stage(
    spec: &ModelSpec,
    file: &SourceFile,
    mode: Mode,
    stop: Option<&str>,
) -> Result<Graph, Vec<Diagnostic>> {
    let mut g = build_graph_for(spec, file, mode)?;
    let passes = pipeline(mode, spec);
    run_passes(&mut g, &passes, &PassContext::new(spec, mode), stop)?;
    Ok(g)
}

/// Renders diagnostics one after another (each ends with a newline), then a count line when
/// there is more than one, so a long report ends with its size.
pub fn render_diagnostics(file: &SourceFile, diagnostics: &[Diagnostic], color: bool) -> String {
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&d.render(file, color));
    }
    if diagnostics.len() > 1 {
        out.push_str(&format!("{} errors\n", diagnostics.len()));
    }
    out
}
