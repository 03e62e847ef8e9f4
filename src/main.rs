//! `bfly`: the command-line driver. Argument parsing and calls into the libraries, nothing
//! more; every subcommand lives in `cmd/`.

mod cmd;
mod load;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "bfly",
    version,
    about = "Compiler for butterfly-factorized transformers on phones",
    long_about = "bfly compiles a model spec (*.bfly) or hand-written Graph IR (*.bfir) into \
                  a graph IR, inspects every stage, and runs it.\n\nStart with \
                  `bfly inspect golden/specs/tiny-dib.bfly --emit summary`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what the compiler made of a spec: its AST, the graph IR, a parameter summary or a
    /// Graphviz drawing.
    Inspect(cmd::inspect::InspectArgs),
    /// Compile a spec into a `.bfa` artifact: the optimized graph, its weights (seeded init or
    /// imported) and the spec, in one safetensors file.
    Compile(cmd::compile::CompileArgs),
    /// Generate tokens from a model (random-init weights from the spec's init and --seed).
    Run(cmd::run::RunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => cmd::inspect::run(&args),
        Command::Run(args) => cmd::run::run(&args),
        Command::Compile(args) => cmd::compile::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprint!("{e}");
            if !e.ends_with('\n') {
                eprintln!();
            }
            ExitCode::FAILURE
        }
    }
}
