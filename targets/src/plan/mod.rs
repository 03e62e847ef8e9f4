//! The memory plan: where every buffer of a Kernel IR program lives.
//!
//! Buffers are sized at the symbols' bounds (`T ≤ 64`), so one plan serves every step.
//! Scratch (`Temp`) buffers share one arena: each is live from the first to the last kernel
//! that touches it, in program order (load phase, then step), so a kernel's private scratch
//! lives for that kernel only, and buffers whose live ranges are disjoint may overlap in
//! memory. Placement is greedy by size (largest first) into the best-fitting gap, the
//! method of TFLite's arena planner, which is within a few percent of optimal on
//! transformer schedules and O(n²) in buffers. State (KV caches, weight-time results),
//! params and the caller's inputs and outputs persist across steps and get regions of
//! their own. Every offset is a multiple of [`ALIGN`].

mod render;
#[cfg(test)]
mod tests;

use bfly_ir::kernel::{BufferId, BufferKind, KernelProgram};

/// Alignment of every buffer (a cache line; also what SIMD loads want).
pub const ALIGN: u64 = 64;

/// The regions of a program's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Region {
    Param,
    State,
    /// Graph inputs and outputs, written and read by the caller between steps.
    Io,
    /// Scratch shared by liveness.
    Arena,
}

impl Region {
    pub const ALL: [Region; 4] = [Region::Param, Region::State, Region::Io, Region::Arena];

    pub fn name(self) -> &'static str {
        match self {
            Region::Param => "params",
            Region::State => "state",
            Region::Io => "inputs/outputs",
            Region::Arena => "arena",
        }
    }
}

/// Where one buffer lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferPlan {
    pub id: BufferId,
    pub region: Region,
    /// Offset within the region.
    pub offset: u64,
    /// Size at the symbols' bounds.
    pub bytes: u64,
    /// First and last kernel (program index) using the buffer; `None` if none does.
    pub live: Option<(usize, usize)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// One per program buffer, by id.
    pub buffers: Vec<BufferPlan>,
    /// Size of each region, in `Region::ALL` order; the arena's is its peak.
    sizes: [u64; 4],
    /// The arena without reuse: every temp's size, aligned, summed.
    pub temp_bytes: u64,
}

fn align_up(v: u64) -> Option<u64> {
    v.checked_add(ALIGN - 1).map(|x| x / ALIGN * ALIGN)
}

fn overflow(what: &str) -> String {
    format!("the memory plan overflows u64 at {what}")
}

impl MemoryPlan {
    pub fn region_bytes(&self, r: Region) -> u64 {
        self.sizes[r as usize]
    }

    /// Peak bytes of the scratch arena.
    pub fn arena_bytes(&self) -> u64 {
        self.region_bytes(Region::Arena)
    }

    pub fn state_bytes(&self) -> u64 {
        self.region_bytes(Region::State)
    }

    pub fn param_bytes(&self) -> u64 {
        self.region_bytes(Region::Param)
    }

    pub fn io_bytes(&self) -> u64 {
        self.region_bytes(Region::Io)
    }

    /// Where a region starts when all four are laid out in `Region::ALL` order in one
    /// allocation, each at a multiple of [`ALIGN`].
    pub fn region_start(&self, r: Region) -> u64 {
        Region::ALL[..r as usize]
            .iter()
            .map(|&q| self.region_bytes(q))
            .sum()
    }

    /// Bytes of one allocation holding every region.
    pub fn total_bytes(&self) -> u64 {
        self.sizes.iter().sum()
    }

    /// A buffer's offset in that single allocation.
    pub fn absolute_offset(&self, id: BufferId) -> Option<u64> {
        let b = self.buffers.get(id.0 as usize)?;
        Some(self.region_start(b.region) + b.offset)
    }

    pub fn render(&self, program: &KernelProgram) -> String {
        render::render(self, program)
    }
}

/// Sizes and places every buffer of `program` (whose buffer ids must equal their positions,
/// as `verify_program` checks). Fails if a dim's symbol has no bound or a size overflows.
pub fn plan_memory(program: &KernelProgram) -> Result<MemoryPlan, String> {
    let mut buffers = Vec::with_capacity(program.buffers.len());
    let mut live: Vec<Option<(usize, usize)>> = vec![None; program.buffers.len()];
    for (ki, k) in program.kernels.iter().enumerate() {
        for id in &k.args {
            let Some(slot) = live.get_mut(id.0 as usize) else {
                return Err(format!(
                    "kernel `{}` uses {id}, which does not exist",
                    k.name
                ));
            };
            *slot = Some(slot.map_or((ki, ki), |(a, _)| (a, ki)));
        }
    }
    let mut sizes = [0u64; 4];
    let mut temps = Vec::new();
    for (i, b) in program.buffers.iter().enumerate() {
        if b.id.0 as usize != i {
            return Err(format!("buffer #{i} `{}` has id {}", b.name, b.id));
        }
        let bytes = b.max_bytes(&|s| program.bound(s)).ok_or_else(|| {
            format!(
                "buffer {} `{}` has a dim without a bound or overflows u64",
                b.id, b.name
            )
        })?;
        let region = match b.kind {
            BufferKind::Param { .. } => Region::Param,
            BufferKind::State => Region::State,
            BufferKind::Input { .. } | BufferKind::Output { .. } => Region::Io,
            BufferKind::Temp => Region::Arena,
        };
        let mut offset = 0;
        if region == Region::Arena {
            if live[i].is_some() {
                temps.push(i);
            }
        } else {
            let r = &mut sizes[region as usize];
            offset = *r;
            *r = align_up(bytes)
                .and_then(|s| r.checked_add(s))
                .ok_or_else(|| overflow(&b.name))?;
        }
        buffers.push(BufferPlan {
            id: b.id,
            region,
            offset,
            bytes,
            live: live[i],
        });
    }
    let (arena, temp_bytes) = place_temps(&mut buffers, &temps)?;
    sizes[Region::Arena as usize] = arena;
    // One allocation must hold all regions (and stay addressable).
    sizes
        .iter()
        .try_fold(0u64, |a, &s| a.checked_add(s))
        .filter(|&t| t <= isize::MAX as u64)
        .ok_or_else(|| overflow("the total"))?;
    Ok(MemoryPlan {
        buffers,
        sizes,
        temp_bytes,
    })
}

/// Greedy by size into the best-fitting gap among the buffers live at the same time.
/// Returns the arena's peak and its size without reuse.
fn place_temps(buffers: &mut [BufferPlan], temps: &[usize]) -> Result<(u64, u64), String> {
    let mut order = temps.to_vec();
    order.sort_by_key(|&i| (std::cmp::Reverse(buffers[i].bytes), buffers[i].live, i));
    let mut placed: Vec<usize> = Vec::with_capacity(order.len());
    let mut peak = 0u64;
    let mut total = 0u64;
    for i in order {
        let size = align_up(buffers[i].bytes).ok_or_else(|| overflow("a temp"))?;
        total = total
            .checked_add(size)
            .ok_or_else(|| overflow("the temps"))?;
        let Some((first, last)) = buffers[i].live else {
            continue;
        };
        // Occupied intervals among buffers live at the same time, by offset.
        let mut busy: Vec<(u64, u64)> = placed
            .iter()
            .filter_map(|&j| {
                let (f, l) = buffers[j].live?;
                (f <= last && first <= l).then(|| {
                    let end = buffers[j].offset + align_up(buffers[j].bytes).unwrap_or(u64::MAX);
                    (buffers[j].offset, end)
                })
            })
            .collect();
        busy.sort_unstable();
        let mut best: Option<(u64, u64)> = None; // (gap size, offset)
        let mut cursor = 0u64;
        for &(start, end) in &busy {
            if start >= cursor {
                let gap = start - cursor;
                if gap >= size && best.is_none_or(|(g, _)| gap < g) {
                    best = Some((gap, cursor));
                }
            }
            cursor = cursor.max(end);
        }
        let offset = best.map_or(cursor, |(_, o)| o);
        let end = offset
            .checked_add(size)
            .ok_or_else(|| overflow("the arena"))?;
        peak = peak.max(end);
        buffers[i].offset = offset;
        placed.push(i);
    }
    Ok((peak, total))
}
