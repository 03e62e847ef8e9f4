//! The Kernel IR interpreter: runs a [`KernelProgram`] on one thread with the compiled code's
//! f32 semantics (see [`machine`]), each buffer in its own `Vec`.
//!
//! It is the oracle for lowering and for the executor: lowered programs are checked against
//! the f64 reference interpreter of the Graph IR through it, and compiled programs (which run
//! in one arena laid out by the memory plan) against it. On top of the compiled code's
//! semantics it checks what compiled code cannot: every index against its buffer's shape at
//! the step's symbols, int overflow, and (unless turned off) the `Parallel` contract —
//! no two iterations of a parallel section touch an element one of them writes. Scratch and
//! output buffers are filled with NaN before each step, so a read of an unwritten element
//! shows.

pub mod machine;
mod memory;

pub use machine::{Machine, Memory};

use crate::exec::facts::{
    ProgramFacts, bound_syms, live_elements, param_values, resolve, verified,
};
use crate::exec::{ExecError, HostBuf, Syms};
use crate::reference::{Tensor, Weights};
use bfly_ir::kernel::{BufferId, BufferKind, KernelProgram, Phase};
use memory::{KernelMemory, RaceCheck};

/// Largest buffer the interpreter allocates, in elements.
pub const MAX_ELEMENTS: u64 = 1 << 30;

/// A program loaded for interpretation: its buffers persist across steps (KV caches,
/// params updated in place by optimizer kernels).
pub struct Interp<'p> {
    program: &'p KernelProgram,
    facts: ProgramFacts,
    bufs: Vec<HostBuf>,
    race: Option<RaceCheck>,
}

/// Runs the load phase and one step of `program`; returns its outputs by output index.
pub fn run_program(
    program: &KernelProgram,
    weights: &Weights,
    inputs: &[Tensor],
    syms: Syms,
) -> Result<Vec<Tensor>, ExecError> {
    Interp::new(program, weights)?.step(inputs, syms)
}

impl<'p> Interp<'p> {
    /// Verifies `program`, allocates every buffer at the symbols' bounds (params from
    /// `weights`, everything else zero) and runs the load phase.
    pub fn new(program: &'p KernelProgram, weights: &Weights) -> Result<Interp<'p>, ExecError> {
        verified(program)?;
        let mut bufs = Vec::with_capacity(program.buffers.len());
        for b in &program.buffers {
            if let BufferKind::Param { .. } = b.kind {
                bufs.push(param_values(program, b.id, weights)?);
                continue;
            }
            let n = b
                .max_elements(&|s| program.bound(s))
                .filter(|&n| n <= MAX_ELEMENTS)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    ExecError::new(format!(
                        "buffer {} `{}` is larger than the interpreter's limit of {MAX_ELEMENTS} \
                         elements",
                        b.id, b.name
                    ))
                })?;
            bufs.push(HostBuf::zeros(b.dtype, n));
        }
        let mut interp = Interp {
            program,
            facts: ProgramFacts::new(program),
            race: Some(RaceCheck::new(bufs.len())),
            bufs,
        };
        interp.load_phase()?;
        Ok(interp)
    }

    /// Turns the `Parallel` contract check on or off (on by default; it costs two stamps
    /// per element of the buffers parallel sections write).
    pub fn set_race_check(&mut self, on: bool) {
        self.race = on.then(|| RaceCheck::new(self.bufs.len()));
    }

    fn load_phase(&mut self) -> Result<(), ExecError> {
        let syms = bound_syms(self.program);
        self.run_phase(Phase::Load, syms, syms.to_array())
    }

    /// Runs one step: checks `syms` and `inputs` (graph input order), runs the step
    /// kernels and returns the output buffers by output index, shaped at `syms`.
    pub fn step(&mut self, inputs: &[Tensor], syms: Syms) -> Result<Vec<Tensor>, ExecError> {
        let program = self.program;
        let arr = self.facts.check_syms(program, syms)?;
        let inputs = self.facts.convert_inputs(program, inputs, syms)?;
        for (b, buf) in program.buffers.iter().zip(&mut self.bufs) {
            if matches!(b.kind, BufferKind::Temp | BufferKind::Output { .. }) {
                buf.poison();
            }
        }
        for (id, values) in &inputs {
            if !self.bufs[id.0 as usize].copy_prefix(values) {
                return Err(ExecError::new(format!(
                    "input buffer {id} is smaller than its input"
                )));
            }
        }
        self.run_phase(Phase::Step, syms, arr)?;
        self.facts
            .outputs
            .iter()
            .map(|&(_, id)| {
                let shape = resolve(&program.buffer(id).dims, syms)?;
                Ok(self.bufs[id.0 as usize].to_tensor(shape))
            })
            .collect()
    }

    fn run_phase(&mut self, phase: Phase, syms: Syms, arr: [i64; 3]) -> Result<(), ExecError> {
        let program = self.program;
        let live: Vec<usize> = program
            .buffers
            .iter()
            .map(|b| live_elements(&b.dims, syms))
            .collect();
        for (ki, k) in program.kernels.iter().enumerate() {
            if k.phase != phase {
                continue;
            }
            let body = program.body(k.body);
            let mut machine = Machine::new(body, arr);
            let mut mem =
                KernelMemory::new(program, k, body, &mut self.bufs, &live, self.race.as_mut());
            for section in 0..body.num_sections() {
                machine
                    .run_section(section, i64::MIN, i64::MAX, &mut mem)
                    .map_err(|e| {
                        ExecError::new(format!(
                            "kernel #{ki} `{}` ({}), {} section {section}: {}",
                            k.name, k.kind, k.body, e.message
                        ))
                    })?;
            }
        }
        Ok(())
    }

    /// A param's current values as f32 (after optimizer steps, the updated ones).
    pub fn param(&self, name: &str) -> Option<Vec<f32>> {
        let id = self.facts.params.get(name)?;
        Some(self.bufs[id.0 as usize].to_f32())
    }

    /// Replaces a param's values (converted to its dtype) and reruns the load phase, whose
    /// weight-time results may depend on it.
    pub fn set_param(&mut self, name: &str, values: &[f32]) -> Result<(), ExecError> {
        let Some(&id) = self.facts.params.get(name) else {
            return Err(ExecError::new(format!(
                "program @{} has no param @{name}",
                self.program.name
            )));
        };
        let slot = &mut self.bufs[id.0 as usize];
        if values.len() != slot.len() {
            return Err(ExecError::new(format!(
                "param @{name} has {} elements, got {}",
                slot.len(),
                values.len()
            )));
        }
        *slot = HostBuf::from_f32(slot.dtype(), values, &format!("param @{name}"))?;
        self.load_phase()
    }

    /// Every element of a buffer (allocated at the bounds) as f32, for debugging lowerings.
    pub fn buffer_f32(&self, id: BufferId) -> Option<Vec<f32>> {
        self.bufs.get(id.0 as usize).map(HostBuf::to_f32)
    }

    /// Clears the state step kernels write (KV caches); weight-time state stays.
    pub fn reset_state(&mut self) {
        for &id in &self.facts.step_state {
            let b = &mut self.bufs[id.0 as usize];
            *b = HostBuf::zeros(b.dtype(), b.len());
        }
    }
}

#[cfg(test)]
mod tests;
