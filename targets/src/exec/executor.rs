//! The executor: runs a program's compiled sections over one planned allocation, splitting
//! parallel sections over a thread pool.
//!
//! Per step: check the symbols and inputs (`facts`), copy the inputs in, then for each step
//! kernel and each section of its body, in order: a parallel section's range is split into
//! contiguous chunks run on the pool (the calling thread included) and every chunk finishes
//! before the next section starts; any other section runs on the calling thread. Chunks only
//! split the parallel loop, and each iteration's arithmetic is the compiled code's alone, so
//! results are bit-identical for any thread count.

use super::chunks::chunk_count;
use super::error::{ExecError, fail};
use super::facts::{ProgramFacts, bound_syms, param_values, resolve, verified};
use super::host::HostBuf;
use super::memory::Memory;
use super::pool::{Job, Pool};
use super::runner::SectionRunner;
use super::syms::Syms;
use crate::plan::{MemoryPlan, plan_memory};
use crate::reference::{Tensor, Weights};
use bfly_ir::kernel::{BodyId, BufferId, BufferKind, KernelProgram, Phase};
use std::sync::Arc;
use std::time::Instant;

/// Calls the backend for iterations `lo..hi` of one section.
///
/// Every call in this module passes `args` built by [`Executor::args`] from the executor's
/// own allocation during a step (or the load phase) that outlives the call, and `syms` that
/// [`ProgramFacts::check_syms`] accepted.
#[allow(unsafe_code)]
pub(super) fn run_range(
    runner: &dyn SectionRunner,
    body: BodyId,
    section: usize,
    args: &[usize],
    syms: &[i64; 3],
    lo: i64,
    hi: i64,
) {
    // SAFETY: `args[i]` is the address of buffer `kernel.args[i]` inside `Executor::memory`:
    // one live allocation that is never resized, at an offset from the memory plan, which
    // sized each buffer for its dims at the symbols' bounds and aligned it to 64 bytes.
    // `verify_program` accepted the program (each param bound to a buffer of its dtype,
    // stores only through writable params, parallel ranges computed from the symbols), the
    // executor checked `syms` against the bounds and the KV cache length and int inputs
    // against the tables they index, so the body addresses only elements inside its
    // buffers. Buffers of overlapping live ranges do not overlap. The allocation outlives
    // the call: a step returns only after every chunk of every section has finished. Writes
    // are disjoint across threads: only chunks of one parallel section run concurrently,
    // they cover disjoint iterations `lo..hi` of it, and the `Parallel` contract says
    // iterations write disjoint elements and read none another one writes.
    unsafe { runner.run_section(body, section, args, syms, lo, hi) }
}

/// Per-kernel timing, when profiling is on.
#[derive(Clone, Copy, Debug, Default)]
struct KernelTime {
    ns: u64,
    calls: u64,
}

/// A loaded program, ready to step.
pub struct Executor {
    program: Arc<KernelProgram>,
    runner: Arc<dyn SectionRunner>,
    facts: ProgramFacts,
    plan: MemoryPlan,
    memory: Memory,
    /// Offset of each buffer in `memory`.
    offsets: Vec<u64>,
    threads: usize,
    pool: Option<Pool>,
    profiling: bool,
    times: Vec<KernelTime>,
}

impl Executor {
    /// Verifies and plans `program`, allocates its memory (params from `weights` converted
    /// to their dtypes, state zeroed) and runs the load phase. `threads == 0` means one per
    /// available core.
    ///
    /// `runner` must hold the compiled code of this very program (its bodies, by id).
    pub fn new(
        program: Arc<KernelProgram>,
        runner: Arc<dyn SectionRunner>,
        weights: &Weights,
        threads: usize,
    ) -> Result<Executor, ExecError> {
        verified(&program)?;
        let plan = plan_memory(&program).map_err(ExecError::new)?;
        let mut memory = Memory::new(plan.total_bytes())?;
        let mut offsets = Vec::with_capacity(program.buffers.len());
        for b in &program.buffers {
            let off = plan
                .absolute_offset(b.id)
                .ok_or_else(|| ExecError::new(format!("{} has no place in the plan", b.id)))?;
            offsets.push(off);
            if let BufferKind::Param { .. } = b.kind {
                let values = param_values(&program, b.id, weights)?;
                let dst = memory.slice_mut(off, values.byte_len());
                if !dst.is_some_and(|d| values.write_ne_bytes(d)) {
                    return fail(format!("param {} does not fit its planned bytes", b.name));
                }
            }
        }
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            threads
        };
        let pool = if threads > 1 {
            Some(Pool::new(threads).map_err(|e| {
                ExecError::new(format!("cannot start {threads} executor threads: {e}"))
            })?)
        } else {
            None
        };
        let mut ex = Executor {
            facts: ProgramFacts::new(&program),
            times: vec![KernelTime::default(); program.kernels.len()],
            program,
            runner,
            plan,
            memory,
            offsets,
            threads,
            pool,
            profiling: false,
        };
        ex.load_phase()?;
        Ok(ex)
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn program(&self) -> &Arc<KernelProgram> {
        &self.program
    }

    pub fn plan(&self) -> &MemoryPlan {
        &self.plan
    }

    /// The backend's name (`cranelift x86_64`).
    pub fn backend(&self) -> String {
        self.runner.name()
    }

    fn load_phase(&mut self) -> Result<(), ExecError> {
        let syms = bound_syms(&self.program).to_array();
        self.run_phase(Phase::Load, &syms)
    }

    /// Runs one step: checks `syms` and `inputs` (graph input order), runs the step
    /// kernels and returns the output buffers by output index, shaped at `syms`.
    pub fn step(&mut self, inputs: &[Tensor], syms: Syms) -> Result<Vec<Tensor>, ExecError> {
        let arr = self.facts.check_syms(&self.program, syms)?;
        let inputs = self.facts.convert_inputs(&self.program, inputs, syms)?;
        for (id, values) in &inputs {
            let off = self.offsets[id.0 as usize];
            let dst = self.memory.slice_mut(off, values.byte_len());
            if !dst.is_some_and(|d| values.write_ne_bytes(d)) {
                return fail(format!("input {id} does not fit its planned bytes"));
            }
        }
        self.run_phase(Phase::Step, &arr)?;
        let program = Arc::clone(&self.program);
        self.facts
            .outputs
            .iter()
            .map(|&(_, id)| {
                let b = program.buffer(id);
                let shape = resolve(&b.dims, syms)?;
                let n = shape.iter().product::<usize>() * b.dtype.size_bytes();
                let bytes = self
                    .memory
                    .slice(self.offsets[id.0 as usize], n)
                    .ok_or_else(|| ExecError::new(format!("output {id} exceeds its bytes")))?;
                Ok(HostBuf::from_ne_bytes(b.dtype, bytes).to_tensor(shape))
            })
            .collect()
    }

    /// The kernel args of every buffer, as addresses from the current base.
    fn args(&mut self, kernel: usize) -> Arc<[usize]> {
        let base = self.memory.base();
        self.program.kernels[kernel]
            .args
            .iter()
            .map(|id| base + self.offsets[id.0 as usize] as usize)
            .collect()
    }

    fn run_phase(&mut self, phase: Phase, syms: &[i64; 3]) -> Result<(), ExecError> {
        let program = Arc::clone(&self.program);
        for (ki, k) in program.kernels.iter().enumerate() {
            if k.phase != phase {
                continue;
            }
            let t0 = self.profiling.then(Instant::now);
            let args = self.args(ki);
            let body = program.body(k.body);
            for section in 0..body.num_sections() {
                let extent = program.section_extent(k, section, syms);
                let (start, end) = match (body.section_range(section), extent) {
                    (None, _) => (0, 0),
                    (Some(_), Some(e)) => e,
                    (Some(_), None) => {
                        return fail(format!(
                            "kernel `{}`: the range of parallel section {section} overflows at \
                             {syms:?}",
                            k.name
                        ));
                    }
                };
                if body.section_range(section).is_none() {
                    run_range(self.runner.as_ref(), k.body, section, &args, syms, 0, 0);
                    continue;
                }
                let chunks = chunk_count(end.saturating_sub(start), self.threads);
                match (&self.pool, chunks) {
                    (_, 0) => {}
                    (Some(pool), 2..) => {
                        let job = Job::new(
                            Arc::clone(&self.runner),
                            k.body,
                            section,
                            Arc::clone(&args),
                            *syms,
                            start,
                            end,
                            chunks,
                        );
                        if !pool.run(job) {
                            return fail(format!(
                                "kernel `{}`: the {} backend panicked in section {section}",
                                k.name,
                                self.runner.name()
                            ));
                        }
                    }
                    _ => run_range(
                        self.runner.as_ref(),
                        k.body,
                        section,
                        &args,
                        syms,
                        start,
                        end,
                    ),
                }
            }
            if let Some(t0) = t0 {
                let t = &mut self.times[ki];
                t.ns += u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
                t.calls += 1;
            }
        }
        Ok(())
    }

    fn param_id(&self, name: &str) -> Result<BufferId, ExecError> {
        self.facts.params.get(name).copied().ok_or_else(|| {
            ExecError::new(format!(
                "program @{} has no param @{name}",
                self.program.name
            ))
        })
    }

    /// A param's current values as f32 (after optimizer steps, the updated ones).
    pub fn param_f32(&self, name: &str) -> Option<Vec<f32>> {
        let id = self.param_id(name).ok()?;
        let b = self.program.buffer(id);
        let n = usize::try_from(self.plan.buffers[id.0 as usize].bytes).ok()?;
        let bytes = self.memory.slice(self.offsets[id.0 as usize], n)?;
        Some(HostBuf::from_ne_bytes(b.dtype, bytes).to_f32())
    }

    /// Replaces a param's values (converted to its dtype) and reruns the load phase, whose
    /// weight-time results may depend on it.
    pub fn set_param(&mut self, name: &str, values: &[f32]) -> Result<(), ExecError> {
        self.set_params([(name, values)])
    }

    /// Replaces several params, then reruns the load phase once (copying trained weights
    /// into an inference program touches every param; one load phase is enough).
    pub fn set_params<'a>(
        &mut self,
        params: impl IntoIterator<Item = (&'a str, &'a [f32])>,
    ) -> Result<(), ExecError> {
        for (name, values) in params {
            self.write_param(name, values)?;
        }
        self.load_phase()
    }

    fn write_param(&mut self, name: &str, values: &[f32]) -> Result<(), ExecError> {
        let id = self.param_id(name)?;
        let b = self.program.buffer(id);
        let bytes = self.plan.buffers[id.0 as usize].bytes;
        let n = bytes / b.dtype.size_bytes() as u64;
        if values.len() as u64 != n {
            return fail(format!(
                "param @{name} has {n} elements, got {}",
                values.len()
            ));
        }
        let v = HostBuf::from_f32(b.dtype, values, &format!("param @{name}"))?;
        let dst = self
            .memory
            .slice_mut(self.offsets[id.0 as usize], v.byte_len());
        if !dst.is_some_and(|d| v.write_ne_bytes(d)) {
            return fail(format!("param @{name} does not fit its planned bytes"));
        }
        Ok(())
    }

    /// Clears the state step kernels write (KV caches); weight-time state stays.
    pub fn reset_state(&mut self) {
        for &id in &self.facts.step_state {
            let off = self.offsets[id.0 as usize];
            let n = usize::try_from(self.plan.buffers[id.0 as usize].bytes).unwrap_or(0);
            if let Some(s) = self.memory.slice_mut(off, n) {
                s.fill(0);
            }
        }
    }

    /// Turns per-kernel timing on or off (timings accumulate while on).
    pub fn set_profiling(&mut self, on: bool) {
        self.profiling = on;
    }

    /// `(kernel name, family, total ns, calls)` for every kernel timed so far, in program
    /// order.
    pub fn profile(&self) -> Vec<(String, String, u64, u64)> {
        self.program
            .kernels
            .iter()
            .zip(&self.times)
            .filter(|(_, t)| t.calls > 0)
            .map(|(k, t)| (k.name.clone(), k.kind.family(), t.ns, t.calls))
            .collect()
    }

    pub fn reset_profile(&mut self) {
        self.times.fill(KernelTime::default());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_executor_can_move_to_another_thread() {
        fn send<T: Send>() {}
        send::<super::Executor>();
    }
}
