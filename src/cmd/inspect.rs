use crate::load::load;
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

#[derive(Args)]
pub struct InspectArgs {
    /// Model spec (*.bfly) or graph IR text (*.bfir).
    pub model: PathBuf,
    /// What to print.
    #[arg(long, value_enum, default_value = "ir")]
    pub emit: Emit,
    /// Write to this file (atomically) instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

pub fn run(args: &InspectArgs) -> Result<(), String> {
    let loaded = load(&args.model)?;
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
        Emit::Ir => bfly_ir::print_graph(&loaded.graph),
        Emit::Summary => bfly_ir::summary::render_summary(&loaded.graph),
        Emit::Dot => bfly_ir::dot::to_dot(&loaded.graph),
    };
    super::emit(&text, args.output.as_deref())
}
