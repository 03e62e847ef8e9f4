//! What the interpreter and the executor both need to know about a program before a step:
//! which buffers are the graph's inputs and outputs, which int inputs index a table (token
//! ids), the KV cache length, and the checks of a step's symbols and inputs against them.
//!
//! These checks are part of the executor's safety argument: compiled code does not bounds
//! check, so symbols beyond their bounds or token ids beyond the embedding table would make
//! it address memory outside its buffers.

use super::error::{ExecError, fail};
use super::host::HostBuf;
use super::syms::Syms;
use crate::reference::{Tensor, Weights};
use bfly_ir::Dim;
use bfly_ir::kernel::{Access, BufferId, BufferKind, KernelKind, KernelProgram, Phase, RtSym};
use std::collections::BTreeMap;

/// Facts about one program, computed once.
#[derive(Clone, Debug)]
pub struct ProgramFacts {
    /// `(graph input index, buffer)`, by index.
    pub inputs: Vec<(usize, BufferId)>,
    /// `(graph output index, buffer)`, by index.
    pub outputs: Vec<(usize, BufferId)>,
    pub params: BTreeMap<String, BufferId>,
    /// Int inputs whose values index a table: `(buffer, exclusive limit, why)`.
    pub index_limits: Vec<(BufferId, u64, String)>,
    /// Rows of the KV cache, if the program keeps one.
    pub kv_context: Option<u64>,
    /// State written by step kernels (KV caches): what `reset_state` clears. State written
    /// by load-phase kernels holds weight-time results and is kept.
    pub step_state: Vec<BufferId>,
}

impl ProgramFacts {
    pub fn new(program: &KernelProgram) -> ProgramFacts {
        let mut inputs = Vec::new();
        let mut outputs = Vec::new();
        let mut params = BTreeMap::new();
        for b in &program.buffers {
            match &b.kind {
                BufferKind::Input { index } => inputs.push((*index, b.id)),
                BufferKind::Output { index } => outputs.push((*index, b.id)),
                BufferKind::Param { name } => {
                    params.insert(name.clone(), b.id);
                }
                BufferKind::State | BufferKind::Temp => {}
            }
        }
        inputs.sort();
        outputs.sort();
        let loaded: Vec<BufferId> = written_by(program, Phase::Load);
        let step_state = program
            .buffers
            .iter()
            .filter(|b| b.kind == BufferKind::State && !loaded.contains(&b.id))
            .map(|b| b.id)
            .collect();
        ProgramFacts {
            index_limits: index_limits(program, &inputs),
            kv_context: kv_context(program),
            inputs,
            outputs,
            params,
            step_state,
        }
    }

    /// Checks `syms` against the program's bounds and the KV cache; returns the array
    /// kernels receive.
    pub fn check_syms(&self, program: &KernelProgram, syms: Syms) -> Result<[i64; 3], ExecError> {
        for s in [RtSym::T, RtSym::B] {
            let v = syms.get(s) as u64;
            if let Some(bound) = program.bound(s.name())
                && (v == 0 || v > bound)
            {
                return fail(format!(
                    "{} = {v} is outside 1..={bound}, the bound program @{} was compiled for",
                    s.name(),
                    program.name
                ));
            }
        }
        if let Some(context) = self.kv_context {
            let end = (syms.pos as u64).saturating_add(syms.t as u64);
            if end > context {
                return fail(format!(
                    "pos + T = {} + {} = {end} exceeds the KV cache of {context} rows",
                    syms.pos, syms.t
                ));
            }
        }
        let arr = syms.to_array();
        if arr.contains(&i64::MAX) {
            return fail(format!("symbols {syms:?} do not fit in i64"));
        }
        Ok(arr)
    }

    /// Converts the caller's inputs (graph input order) to their buffers' dtypes after
    /// checking count, shapes (dims resolved with `syms`) and table indices.
    pub fn convert_inputs(
        &self,
        program: &KernelProgram,
        inputs: &[Tensor],
        syms: Syms,
    ) -> Result<Vec<(BufferId, HostBuf)>, ExecError> {
        let needed = self.inputs.last().map_or(0, |&(i, _)| i + 1);
        if inputs.len() < needed {
            return fail(format!(
                "program @{} takes {needed} inputs, got {}",
                program.name,
                inputs.len()
            ));
        }
        let mut out = Vec::with_capacity(self.inputs.len());
        for &(index, id) in &self.inputs {
            let b = program.buffer(id);
            let t = &inputs[index];
            let what = format!("input {index} `{}`", b.name);
            let want = resolve(&b.dims, syms)?;
            if t.shape != want {
                return fail(format!(
                    "{what} has shape {:?}; the program expects {:?} ({}) at {syms:?}",
                    t.shape,
                    want,
                    dims_text(&b.dims)
                ));
            }
            if t.dtype != b.dtype && !(t.dtype.is_float() && b.dtype.is_float()) {
                return fail(format!(
                    "{what} is {}; the program expects {}",
                    t.dtype, b.dtype
                ));
            }
            if let Some(values) = t.ints() {
                for (buf, limit, why) in &self.index_limits {
                    if *buf != id {
                        continue;
                    }
                    if let Some((i, &v)) = values
                        .iter()
                        .enumerate()
                        .find(|&(_, &v)| v < 0 || v as u64 >= *limit)
                    {
                        return fail(format!(
                            "{what}[{i}] = {v} is out of range 0..{limit} ({why})"
                        ));
                    }
                }
            }
            out.push((id, HostBuf::from_tensor(b.dtype, t, &what)?));
        }
        Ok(out)
    }
}

/// Concrete dims with `T`, `B` taken from `syms`.
pub fn resolve(dims: &[Dim], syms: Syms) -> Result<Vec<usize>, ExecError> {
    dims.iter()
        .map(|d| match d {
            Dim::Const(c) => usize::try_from(*c)
                .map_err(|_| ExecError::new(format!("dim {c} does not fit in usize"))),
            Dim::Sym(s) => syms
                .dim(s)
                .ok_or_else(|| ExecError::new(format!("unknown dim symbol `{s}`"))),
        })
        .collect()
}

/// Elements of a buffer with its symbols at `syms`, saturating (only compared with sizes).
pub fn live_elements(dims: &[Dim], syms: Syms) -> usize {
    dims.iter().fold(1usize, |acc, d| {
        let v = match d {
            Dim::Const(c) => usize::try_from(*c).unwrap_or(usize::MAX),
            Dim::Sym(s) => syms.dim(s).unwrap_or(0),
        };
        acc.saturating_mul(v)
    })
}

pub fn dims_text(dims: &[Dim]) -> String {
    let d: Vec<String> = dims.iter().map(ToString::to_string).collect();
    format!("[{}]", d.join(", "))
}

/// Buffers that kernels of `phase` write.
fn written_by(program: &KernelProgram, phase: Phase) -> Vec<BufferId> {
    let mut out = Vec::new();
    for k in program.kernels.iter().filter(|k| k.phase == phase) {
        let Some(body) = program.bodies.get(k.body.0 as usize) else {
            continue;
        };
        for (p, &id) in body.params.iter().zip(&k.args) {
            if p.access != Access::Read && !out.contains(&id) {
                out.push(id);
            }
        }
    }
    out
}

/// The table size an int value indexes when a kernel of this kind reads it.
fn table_limit(kind: &KernelKind) -> Option<(u64, String)> {
    match kind {
        KernelKind::Embed { vocab, .. } => Some((*vocab, format!("the vocabulary of `{kind}`"))),
        KernelKind::RowOp { op, cols } if op.contains("cross_entropy") => {
            Some((*cols, format!("the classes of `{kind}`")))
        }
        KernelKind::Backward(inner) => table_limit(inner),
        _ => None,
    }
}

/// For every int input: the smallest table it indexes, directly or through layout kernels
/// (reshape, transpose, copies) that pass its values on.
fn index_limits(
    program: &KernelProgram,
    inputs: &[(usize, BufferId)],
) -> Vec<(BufferId, u64, String)> {
    let mut out = Vec::new();
    for &(_, input) in inputs {
        if program.buffer(input).dtype.is_float() {
            continue;
        }
        let mut reach = vec![input];
        let mut best: Option<(u64, String)> = None;
        let mut i = 0;
        while i < reach.len() {
            let buf = reach[i];
            i += 1;
            for k in &program.kernels {
                let Some(body) = program.bodies.get(k.body.0 as usize) else {
                    continue;
                };
                let reads = body
                    .params
                    .iter()
                    .zip(&k.args)
                    .any(|(p, &id)| id == buf && p.access != Access::Write);
                if !reads {
                    continue;
                }
                if let Some((limit, why)) = table_limit(&k.kind)
                    && best.as_ref().is_none_or(|(b, _)| limit < *b)
                {
                    best = Some((limit, why));
                }
                if matches!(k.kind, KernelKind::Layout { .. }) {
                    for (p, &id) in body.params.iter().zip(&k.args) {
                        let b = program.buffer(id);
                        if p.access != Access::Read && !b.dtype.is_float() && !reach.contains(&id) {
                            reach.push(id);
                        }
                    }
                }
            }
        }
        if let Some((limit, why)) = best {
            out.push((input, limit, why));
        }
    }
    out
}

/// Rows of the KV cache: the state a `KvAppend` kernel writes holds `rows × kv_dim`
/// elements. The smallest such cache bounds `pos + T`.
fn kv_context(program: &KernelProgram) -> Option<u64> {
    let mut best: Option<u64> = None;
    for k in &program.kernels {
        let KernelKind::KvAppend { kv_dim } = k.kind else {
            continue;
        };
        let Some(body) = program.bodies.get(k.body.0 as usize) else {
            continue;
        };
        for (p, &id) in body.params.iter().zip(&k.args) {
            let b = program.buffer(id);
            if p.access == Access::Read || b.kind != BufferKind::State || kv_dim == 0 {
                continue;
            }
            if let Some(n) = b.max_elements(&|s| program.bound(s)) {
                let rows = n / kv_dim;
                best = Some(best.map_or(rows, |r| r.min(rows)));
            }
        }
    }
    best
}

/// A buffer as `b3 `name` f32[T, 64]`, for errors.
pub fn buffer_text(program: &KernelProgram, id: BufferId) -> String {
    let b = program.buffer(id);
    format!("{} `{}` {}{}", b.id, b.name, b.dtype, dims_text(&b.dims))
}

/// A param buffer's initial contents: the reference weight of that name, converted to the
/// buffer's dtype after checking its shape.
pub fn param_values(
    program: &KernelProgram,
    id: BufferId,
    weights: &Weights,
) -> Result<HostBuf, ExecError> {
    let b = program.buffer(id);
    let name = match &b.kind {
        BufferKind::Param { name } => name,
        _ => return fail(format!("{} is not a param", buffer_text(program, id))),
    };
    let Some(t) = weights.get(name) else {
        return fail(format!("no value for param @{name}"));
    };
    let want = resolve(&b.dims, Syms::default())?;
    if t.shape != want {
        return fail(format!(
            "weight @{name} has shape {:?}; the program declares {}",
            t.shape,
            dims_text(&b.dims)
        ));
    }
    HostBuf::from_tensor(b.dtype, t, &format!("weight @{name}"))
}

/// The symbols at their bounds (1 where a symbol has none): the load phase runs with them,
/// since its kernels use no symbols and its buffers are sized at the bounds.
pub fn bound_syms(program: &KernelProgram) -> Syms {
    let at = |s: &str| {
        program
            .bound(s)
            .and_then(|v| usize::try_from(v).ok())
            .unwrap_or(1)
    };
    Syms {
        t: at("T"),
        b: at("B"),
        pos: 0,
    }
}

/// `verify_program` as an `ExecError`.
pub fn verified(program: &KernelProgram) -> Result<(), ExecError> {
    bfly_ir::kernel::verify_program(program).map_err(|errors| {
        ExecError::new(format!(
            "program @{} is not valid Kernel IR:\n  {}",
            program.name,
            errors.join("\n  ")
        ))
    })
}
