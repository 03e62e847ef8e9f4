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
    /// The whole pipeline in one command: compile a built-in spec, train it for a minute on
    /// built-in text, show the loss falling, generate a sample.
    Demo(cmd::demo::DemoArgs),
    /// Measure a model on the JIT: prefill and decode tokens/s, time per kernel family,
    /// memory (`--train`: training steps).
    Bench(cmd::bench::BenchArgs),
    /// Compile a spec into a `.bfa` artifact: the optimized graph, its weights (seeded init or
    /// imported) and the spec, in one safetensors file.
    Compile(cmd::compile::CompileArgs),
    /// Train a model on a text file: progress, validation, loss plot, checkpoints, resume.
    Train(cmd::train::TrainArgs),
    /// Generate tokens from a model (random-init weights from the spec's init and --seed).
    Run(cmd::run::RunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => cmd::inspect::run(&args),
        Command::Run(args) => cmd::run::run(&args),
        Command::Compile(args) => cmd::compile::run(&args),
        Command::Bench(args) => cmd::bench::run(&args),
        Command::Demo(args) => cmd::demo::run(&args),
        Command::Train(args) => cmd::train::run(&args),
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
