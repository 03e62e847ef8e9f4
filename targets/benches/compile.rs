//! JIT compile time of every golden model (`golden/specs/*.bfly`), inference and training
//! programs: lowering, then Cranelift for all bodies, code only (what the runtime asks for)
//! and with the functions kept for a later `clif_text` / `asm_text` (`inspect`:
//! `HostProgram::compile`; both texts are produced lazily, on the first call).
//! Cranelift runs on up to 4 threads; `BFLY_JIT_THREADS=1` measures one.
//!
//! Run: `cargo bench -p bfly-targets --bench compile`.

use bfly_compiler::{Mode, compile_spec_source, compile_to_stage, render_diagnostics};
use bfly_grammar::SourceFile;
use bfly_targets::cranelift::{HostProgram, JitOptions};
use bfly_targets::lower::{LowerMode, lower_graph};
use std::path::Path;
use std::time::{Duration, Instant};

/// Compiles repeated this many times; the median is reported.
const REPS: usize = 3;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn row(stem: &str, file: &SourceFile, mode: Mode) -> Result<String, String> {
    let (spec, _) = compile_spec_source(file).map_err(|d| render_diagnostics(file, &d, false))?;
    let g = compile_to_stage(&spec, file, mode, None)
        .map_err(|d| render_diagnostics(file, &d, false))?;
    let lower_mode = match mode {
        Mode::Infer => LowerMode::Inference {
            context: spec.model.context.node,
        },
        Mode::Train => LowerMode::Training,
    };
    let (mut lower, mut full, mut code) = (Vec::new(), Vec::new(), Vec::new());
    let mut shape = (0, 0, 0);
    for _ in 0..REPS {
        let t = Instant::now();
        let p = lower_graph(&g, lower_mode).map_err(|e| e.to_string())?;
        lower.push(t.elapsed());
        let h = HostProgram::compile(&p).map_err(|e| e.to_string())?;
        full.push(h.compile_time());
        let h2 =
            HostProgram::compile_with(&p, JitOptions::code_only()).map_err(|e| e.to_string())?;
        code.push(h2.compile_time());
        shape = (p.kernels.len(), p.bodies.len(), h2.code_bytes());
    }
    let full = median(full);
    Ok(format!(
        "| {stem} | {} | {} | {} | {} | {} | {} | {} | {} |",
        mode.name(),
        shape.0,
        shape.1,
        shape.2 / 1024,
        ms(median(lower)),
        ms(median(code)),
        ms(full),
        if full < Duration::from_millis(100) {
            "yes"
        } else {
            "NO"
        }
    ))
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../golden/specs");
    let mut specs: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "bfly"))
            .collect(),
        Err(e) => {
            println!("cannot read {}: {e}", dir.display());
            return;
        }
    };
    specs.sort();
    println!("compile: golden models, median of {REPS}; JIT = Cranelift for every body");
    println!();
    println!(
        "| model | mode | kernels | bodies | code KiB | lower ms | JIT ms (code only) | JIT ms (texts kept for inspect) | < 100 ms |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---|");
    for path in specs {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("?")
            .to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                println!("| {stem} | - | error: {e} |");
                continue;
            }
        };
        let file = SourceFile::new(format!("golden/specs/{stem}.bfly"), text);
        for mode in Mode::ALL {
            match row(&stem, &file, mode) {
                Ok(r) => println!("{r}"),
                Err(e) => println!(
                    "| {stem} | {} | error: {} |",
                    mode.name(),
                    e.lines().next().unwrap_or("")
                ),
            }
        }
    }
}
