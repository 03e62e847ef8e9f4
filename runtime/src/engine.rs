//! A graph made runnable: lowered to a Kernel IR program, JIT-compiled for this CPU, and
//! bound to an executor with its weights. Load and JIT times are measured for reports.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bfly_ir::Graph;
use bfly_ir::kernel::KernelProgram;
use bfly_targets::cranelift::{HostProgram, JitOptions};
use bfly_targets::exec::{Executor, Syms};
use bfly_targets::lower::{LowerMode, lower_graph};
use bfly_targets::reference::{Tensor, Weights};

/// Which code runs a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// The f64 Graph-IR interpreter: slow, exact, the oracle.
    Reference,
    /// Kernels JIT-compiled by Cranelift for this CPU (any host).
    Host,
    /// The best backend this CPU has (aarch64 NEON once it lands; the host JIT today).
    Auto,
}

impl BackendChoice {
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Reference => "reference",
            BackendChoice::Host => "host",
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
    /// Lowers `graph`, JIT-compiles every body and runs the load phase (weight-time kernels)
    /// with `weights`. `threads` = 0 means one per available core.
    pub fn new(
        graph: &Graph,
        mode: LowerMode,
        weights: &Weights,
        threads: usize,
    ) -> Result<Engine, String> {
        let t0 = Instant::now();
        let program = lower_graph(graph, mode)
            .map_err(|e| format!("lowering @{} failed: {e}", graph.name))?;
        let lower_time = t0.elapsed();
        let t1 = Instant::now();
        // A session never shows CLIF or assembly (`bfly inspect` does): skip keeping them.
        let jit = HostProgram::compile_with(&program, JitOptions::code_only())
            .map_err(|e| format!("JIT compilation of @{} failed: {e}", graph.name))?;
        let jit_time = t1.elapsed();
        let report = LoadReport {
            backend: bfly_targets::exec::SectionRunner::name(&jit),
            lower_time,
            jit_time,
            kernels: program.kernels.len(),
            bodies: program.bodies.len(),
            code_bytes: jit.code_bytes(),
            notes: jit.notes().to_vec(),
        };
        let program = Arc::new(program);
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            threads
        };
        let executor = Executor::new(program.clone(), Arc::new(jit), weights, threads)
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
