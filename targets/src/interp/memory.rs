//! The interpreter's memory: one `Vec` per buffer, bounds-checked against each buffer's
//! shape at the step's symbols, with an optional check of the `Parallel` contract.

use super::machine::Memory;
use crate::exec::{ExecError, HostBuf, Val};
use bfly_ir::kernel::{Access, Body, BufferId, Kernel, KernelProgram};

/// Per-element stamps of the current parallel section: which iteration wrote or read each
/// element. A stamp is `generation << 32 | iteration`; `MANY` marks several readers.
#[derive(Default)]
pub struct RaceCheck {
    generation: u64,
    writers: Vec<Vec<u64>>,
    readers: Vec<Vec<u64>>,
}

const MANY: u64 = 0xffff_ffff;

impl RaceCheck {
    pub fn new(buffers: usize) -> RaceCheck {
        RaceCheck {
            generation: 0,
            writers: vec![Vec::new(); buffers],
            readers: vec![Vec::new(); buffers],
        }
    }
}

/// The buffers one kernel sees, through its args.
pub struct KernelMemory<'a> {
    pub program: &'a KernelProgram,
    pub kernel: &'a Kernel,
    pub body: &'a Body,
    pub bufs: &'a mut [HostBuf],
    /// Elements of each buffer at the step's symbols (what an index must stay below).
    pub live: &'a [usize],
    /// Set to check the parallel contract; only buffers this kernel writes are tracked.
    pub race: Option<&'a mut RaceCheck>,
    /// Per param: whether the kernel writes the buffer bound to it (through any param).
    pub tracked: Vec<bool>,
    /// Stamp of the current iteration, when checking.
    stamp: Option<u64>,
}

impl<'a> KernelMemory<'a> {
    pub fn new(
        program: &'a KernelProgram,
        kernel: &'a Kernel,
        body: &'a Body,
        bufs: &'a mut [HostBuf],
        live: &'a [usize],
        race: Option<&'a mut RaceCheck>,
    ) -> KernelMemory<'a> {
        let written: Vec<BufferId> = body
            .params
            .iter()
            .zip(&kernel.args)
            .filter(|(p, _)| p.access != Access::Read)
            .map(|(_, &id)| id)
            .collect();
        let tracked = kernel.args.iter().map(|id| written.contains(id)).collect();
        KernelMemory {
            program,
            kernel,
            body,
            bufs,
            live,
            race,
            tracked,
            stamp: None,
        }
    }

    fn param_name(&self, arg: u32) -> &str {
        self.body
            .params
            .get(arg as usize)
            .map_or("?", |p| p.name.as_str())
    }

    /// The buffer slot and element of `arg[index]`, or an error naming both.
    fn locate(&self, arg: u32, index: i64) -> Result<(usize, usize), ExecError> {
        let Some(&id) = self.kernel.args.get(arg as usize) else {
            return Err(ExecError::new(format!(
                "kernel `{}`: arg{arg} is out of range",
                self.kernel.name
            )));
        };
        let b = id.0 as usize;
        let live = self.live.get(b).copied().unwrap_or(0);
        match usize::try_from(index) {
            Ok(i) if i < live => Ok((b, i)),
            _ => Err(ExecError::new(format!(
                "kernel `{}`: index {index} of param `{}` is out of bounds: it is bound to {}, \
                 which has {live} elements at this step",
                self.kernel.name,
                self.param_name(arg),
                crate::exec::facts::buffer_text(self.program, id),
            ))),
        }
    }

    fn race(&self, arg: u32, index: usize, what: &str, other: u64) -> ExecError {
        let other = if other & MANY == MANY {
            "several other iterations".to_string()
        } else {
            format!("iteration {}", (other & MANY) as i64 - 1)
        };
        let this = self.stamp.map_or(0, |s| (s & MANY) as i64 - 1);
        ExecError::new(format!(
            "kernel `{}` breaks the parallel contract: iteration {this} {what} element {index} of \
             `{}`, which {other} touches",
            self.kernel.name,
            self.param_name(arg),
        ))
    }
}

impl Memory for KernelMemory<'_> {
    fn load(&mut self, arg: u32, index: i64) -> Result<Val, ExecError> {
        let (b, i) = self.locate(arg, index)?;
        if let (Some(stamp), Some(race)) = (self.stamp, self.race.as_deref_mut())
            && self.tracked[arg as usize]
        {
            let g = stamp & !MANY;
            let w = race.writers[b].get(i).copied().unwrap_or(0);
            if w & !MANY == g && w != stamp {
                return Err(self.race(arg, i, "reads", w));
            }
            if let Some(r) = race.readers[b].get_mut(i) {
                *r = if *r & !MANY == g && *r != stamp {
                    g | MANY
                } else {
                    stamp
                };
            }
        }
        self.bufs[b].load(i).ok_or_else(|| {
            ExecError::new(format!("kernel `{}`: buffer too small", self.kernel.name))
        })
    }

    fn store(&mut self, arg: u32, index: i64, value: Val) -> Result<(), ExecError> {
        let (b, i) = self.locate(arg, index)?;
        if let (Some(stamp), Some(race)) = (self.stamp, self.race.as_deref_mut())
            && self.tracked[arg as usize]
        {
            let g = stamp & !MANY;
            let w = race.writers[b].get(i).copied().unwrap_or(0);
            let r = race.readers[b].get(i).copied().unwrap_or(0);
            if w & !MANY == g && w != stamp {
                return Err(self.race(arg, i, "writes", w));
            }
            if r & !MANY == g && r != stamp {
                return Err(self.race(arg, i, "writes", r));
            }
            if let Some(slot) = race.writers[b].get_mut(i) {
                *slot = stamp;
            }
        }
        if self.bufs[b].store(i, value) {
            Ok(())
        } else {
            Err(ExecError::new(format!(
                "kernel `{}`: store of {value:?} into `{}` ({}) failed",
                self.kernel.name,
                self.param_name(arg),
                self.bufs[b].dtype()
            )))
        }
    }

    fn begin_parallel(&mut self) {
        let Some(race) = self.race.as_deref_mut() else {
            return;
        };
        race.generation += 1;
        for (slot, &on) in self.kernel.args.iter().zip(&self.tracked) {
            let b = slot.0 as usize;
            if on && race.writers[b].len() < self.live[b] {
                race.writers[b] = vec![0; self.live[b]];
                race.readers[b] = vec![0; self.live[b]];
            }
        }
    }

    fn end_parallel(&mut self) {
        self.stamp = None;
    }

    fn iteration(&mut self, i: i64) {
        let Some(race) = self.race.as_deref() else {
            return;
        };
        // Iterations beyond 2^32 - 2 cannot be stamped; such a section goes unchecked.
        self.stamp = u64::try_from(i)
            .ok()
            .filter(|&i| i < MANY - 1)
            .map(|i| (race.generation << 32) | (i + 1));
    }
}
