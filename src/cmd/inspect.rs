use crate::load::{color, load};
use bfly_compiler::Mode;
use bfly_compiler::passes::{check_stop, describe_pipeline, pipeline};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Emit {
    /// The spec's syntax tree (specs only).
    Ast,
    /// The graph IR text (parses back with `bfly inspect FILE.bfir`).
    Ir,
    /// Per-layer parameters and bytes by kind and dtype, against dense f32.
    Summary,
    /// Graphviz drawing of the graph (`dot -Tsvg`).
    Dot,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    /// The inference program: tokens i32[T] → logits.
    Infer,
    /// One training step on a batch: tokens, targets i32[B, T] → loss and updated params.
    Train,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Model spec (*.bfly) or graph IR text (*.bfir).
    pub model: PathBuf,
    /// What to print.
    #[arg(long, value_enum, default_value = "ir")]
    pub emit: Emit,
    /// Which program to compile (specs only).
    #[arg(long, value_enum, default_value = "infer")]
    pub mode: ModeArg,
    /// List the mode's passes in order, with what each does, instead of printing a graph.
    #[arg(long)]
    pub passes: bool,
    /// Show the graph after this pass (default: after the last one; `build`: before any).
    #[arg(long, value_name = "PASS")]
    pub after: Option<String>,
    /// Write to this file (atomically) instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

pub fn run(args: &InspectArgs) -> Result<(), String> {
    let loaded = load(&args.model)?;
    let mode = match args.mode {
        ModeArg::Infer => Mode::Infer,
        ModeArg::Train => Mode::Train,
    };
    let graph = match &loaded.spec {
        Some(spec) => {
            let passes = pipeline(mode, spec);
            if args.passes {
                return super::emit(&describe_pipeline(mode, &passes), args.output.as_deref());
            }
            if let Some(after) = &args.after {
                check_stop(&passes, after).map_err(|m| format!("error: {m}"))?;
            }
            bfly_compiler::compile_to_stage(spec, &loaded.file, mode, args.after.as_deref())
                .map_err(|d| bfly_compiler::render_diagnostics(&loaded.file, &d, color()))?
        }
        None if args.passes || args.after.is_some() || matches!(mode, Mode::Train) => {
            return Err(format!(
                "error: {} is graph IR; --mode, --passes and --after compile a model spec (*.bfly)\n  hint: IR text is shown as written",
                loaded.file.name
            ));
        }
        None => loaded.graph,
    };
    let text = match args.emit {
        Emit::Ast => match &loaded.ast {
            Some(ast) => bfly_grammar::dump_spec_ast(ast),
            None => {
                return Err(format!(
                    "error: {} is graph IR, it has no spec AST\n  hint: use --emit ir, summary or dot",
                    loaded.file.name
                ));
            }
        },
        Emit::Ir => bfly_ir::print_graph(&graph),
        Emit::Summary => bfly_ir::summary::render_summary(&graph),
        Emit::Dot => bfly_ir::dot::to_dot(&graph),
    };
    super::emit(&text, args.output.as_deref())
}
