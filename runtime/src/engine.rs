//! A graph made runnable: lowered to a Kernel IR program, JIT-compiled for this CPU, and
//! bound to an executor with its weights. Load and JIT times are measured for reports.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bfly_ir::Graph;
use bfly_ir::kernel::KernelProgram;
use bfly_targets::aarch64::{Aarch64Program, CpuFeatures};
use bfly_targets::cranelift::{HostProgram, JitError, JitOptions};
use bfly_targets::exec::{Executor, SectionRunner, Syms};
use bfly_targets::lower::{LowerMode, lower_graph};
use bfly_targets::reference::{Tensor, Weights};

/// Which code runs a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// The f64 Graph-IR interpreter: slow, exact, the oracle.
    Reference,
    /// Kernels JIT-compiled by Cranelift for this CPU (any host).
    Host,
    /// NEON / dotprod / fp16 microkernels emitted with dynasm for the hot kernels, Cranelift's
    /// aarch64 code for the rest (aarch64 CPUs only).
    Aarch64,
    /// The best backend this CPU has: `aarch64` on aarch64, `host` elsewhere; the
    /// `BFLY_BACKEND` environment variable (`host` or `aarch64`) overrides the choice.
    Auto,
}

/// The environment knob that forces `auto`'s choice (`host` or `aarch64`).
pub const BACKEND_ENV: &str = "BFLY_BACKEND";

/// A JIT backend, after `auto` is resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jit {
    Host,
    Aarch64,
}

impl Jit {
    /// Resolves a choice of JIT; `Reference` is not one.
    pub fn resolve(choice: BackendChoice) -> Result<Jit, String> {
        let jit = match choice {
            BackendChoice::Reference => {
                return Err("the reference backend is an interpreter, not a JIT".into());
            }
            BackendChoice::Host => Jit::Host,
            BackendChoice::Aarch64 => Jit::Aarch64,
            BackendChoice::Auto => match std::env::var(BACKEND_ENV).as_deref() {
                Ok("host") => Jit::Host,
                Ok("aarch64") => Jit::Aarch64,
                Ok(other) => {
                    return Err(format!(
                        "{BACKEND_ENV}={other}: expected `host` or `aarch64` (or unset for the \
                         best backend of this CPU)"
                    ));
                }
                Err(_) if cfg!(target_arch = "aarch64") => Jit::Aarch64,
                Err(_) => Jit::Host,
            },
        };
        if jit == Jit::Aarch64 && !cfg!(target_arch = "aarch64") {
            return Err(
                "the aarch64 backend runs only on aarch64 CPUs\n  hint: use the host \
                        backend here; `bfly inspect SPEC --emit asm --target aarch64+dotprod+fp16` \
                        shows its code on any machine"
                    .into(),
            );
        }
        Ok(jit)
    }
}

impl BackendChoice {
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Reference => "reference",
            BackendChoice::Host => "host",
            BackendChoice::Aarch64 => "aarch64",
            BackendChoice::Auto => "auto",
        }
    }
}

/// What loading cost and produced.
#[derive(Clone, Debug)]
pub struct LoadReport {
    pub backend: String,
    pub lower_time: Duration,
    pub jit_time: Duration,
    pub kernels: usize,
    pub bodies: usize,
    pub code_bytes: usize,
    /// Vector loops the JIT ran serially, with why.
    pub notes: Vec<String>,
}

impl LoadReport {
    pub fn summary(&self) -> String {
        format!(
            "{}: {} kernels ({} distinct bodies, {:.1} KiB of code), lowered in {:.1?}, JIT in {:.1?}",
            self.backend,
            self.kernels,
            self.bodies,
            self.code_bytes as f64 / 1024.0,
            self.lower_time,
            self.jit_time
        )
    }
}

/// A lowered, compiled program bound to its weights.
pub struct Engine {
    program: Arc<KernelProgram>,
    executor: Executor,
    report: LoadReport,
}

impl Engine {
    /// Lowers `graph`, JIT-compiles every body with the best backend of this CPU
    /// (`BackendChoice::Auto`) and runs the load phase (weight-time kernels) with `weights`.
    /// `threads` = 0 means one per available core.
    pub fn new(
        graph: &Graph,
        mode: LowerMode,
        weights: &Weights,
        threads: usize,
    ) -> Result<Engine, String> {
        Engine::with_backend(graph, mode, weights, threads, BackendChoice::Auto)
    }

    /// As [`Engine::new`], on the given JIT backend (`Host`, `Aarch64` or `Auto`).
    pub fn with_backend(
        graph: &Graph,
        mode: LowerMode,
        weights: &Weights,
        threads: usize,
        backend: BackendChoice,
    ) -> Result<Engine, String> {
        let jit_kind = Jit::resolve(backend)?;
        let t0 = Instant::now();
        let program = lower_graph(graph, mode)
            .map_err(|e| format!("lowering @{} failed: {e}", graph.name))?;
        let lower_time = t0.elapsed();
        let t1 = Instant::now();
        let failed = |e: JitError| format!("JIT compilation of @{} failed: {e}", graph.name);
        // A session never shows CLIF or assembly (`bfly inspect` does): skip keeping them.
        let (jit, code_bytes, notes): (Arc<dyn SectionRunner>, usize, Vec<String>) = match jit_kind
        {
            Jit::Host => {
                let jit =
                    HostProgram::compile_with(&program, JitOptions::code_only()).map_err(failed)?;
                let (bytes, notes) = (jit.code_bytes(), jit.notes().to_vec());
                (Arc::new(jit), bytes, notes)
            }
            Jit::Aarch64 => {
                let features = CpuFeatures::from_env()?;
                let jit = Aarch64Program::compile(&program, features, JitOptions::code_only())
                    .map_err(failed)?;
                let mut notes = jit.host().notes().to_vec();
                notes.extend(jit.plan().fallbacks.iter().filter_map(|f| {
                    let reason = f.reason.as_ref()?;
                    Some(format!(
                        "{} section {} ({}) runs Cranelift code: {reason}",
                        f.body, f.section, f.kernel
                    ))
                }));
                let bytes = jit.code_bytes();
                (Arc::new(jit), bytes, notes)
            }
        };
        let jit_time = t1.elapsed();
        let report = LoadReport {
            backend: jit.name(),
            lower_time,
            jit_time,
            kernels: program.kernels.len(),
            bodies: program.bodies.len(),
            code_bytes,
            notes,
        };
        let program = Arc::new(program);
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            threads
        };
        let executor = Executor::new(program.clone(), jit, weights, threads)
            .map_err(|e| format!("loading @{} failed: {e}", graph.name))?;
        Ok(Engine {
            program,
            executor,
            report,
        })
    }

    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    pub fn program(&self) -> &KernelProgram {
        &self.program
    }

    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    pub fn executor_mut(&mut self) -> &mut Executor {
        &mut self.executor
    }

    /// Runs one step; returns the graph outputs (param updates happen in place).
    pub fn step(&mut self, inputs: &[Tensor], syms: Syms) -> Result<Vec<Tensor>, String> {
        self.executor.step(inputs, syms).map_err(|e| e.to_string())
    }
}
