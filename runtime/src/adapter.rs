//! LoRA adapter files: the trained adapter tensors alone, as safetensors.
//!
//! LoRA-only training changes only the adapters, so that is all an adapter file stores. At
//! run time its tensors replace the params of the same name; the inference program folds
//! them into the base weights in its load phase (a dense `W + (α/r)·B·A` is a weight-time
//! subgraph), so swapping adapters re-runs that phase and never recompiles.

use std::collections::BTreeMap;
use std::path::Path;

use bfly_ir::Graph;
use bfly_targets::reference::{Tensor, Weights};

use crate::artifact::HostTensor;
use crate::artifact::container;
use crate::artifact::tensor::dtype_from_safetensors;
use crate::fsutil::write_atomic;

/// Metadata key naming the file's kind, so a checkpoint or artifact given as `--lora` gets a
/// clear error instead of a list of unexpected tensors.
const KIND_KEY: &str = "bfly.kind";
const KIND: &str = "lora-adapter";

/// Writes the `names` tensors of `weights` (the trainable adapters) atomically.
pub fn write_adapter(path: &Path, weights: &Weights, names: &[String]) -> Result<(), String> {
    let mut tensors = BTreeMap::new();
    for name in names {
        let t = weights
            .get(name)
            .ok_or_else(|| format!("no adapter tensor `{name}` to write"))?;
        let data = t
            .floats()
            .ok_or_else(|| format!("adapter tensor `{name}` is not float"))?;
        let host = HostTensor::from_f64(bfly_ir::DType::F32, t.shape.clone(), data)?;
        tensors.insert(name.clone(), host);
    }
    let meta = std::collections::HashMap::from([(KIND_KEY.to_string(), KIND.to_string())]);
    let bytes = safetensors::serialize(tensors.iter(), Some(meta))
        .map_err(|e| format!("cannot serialize the adapter: {e}"))?;
    write_atomic(path, &bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Replaces the params of `weights` named in the adapter file at `path`. Every tensor must
/// be a LoRA param of `graph` (`….lora_a` / `….lora_b`) with the same shape; returns how many
/// were applied.
pub fn apply_adapter(graph: &Graph, weights: &mut Weights, path: &Path) -> Result<usize, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read adapter {shown}: {e}"))?;
    let st = container::deserialize(&bytes).map_err(|e| {
        format!("{shown} is not a safetensors adapter file (truncated or corrupt): {e}")
    })?;
    let (_, header) =
        container::read_metadata(&bytes).map_err(|e| format!("{shown}: unreadable header: {e}"))?;
    let kind = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(KIND_KEY).cloned());
    if kind.as_deref() != Some(KIND) {
        return Err(format!(
            "{shown} is not a LoRA adapter file (written by `bfly train` with `trainable = lora`)"
        ));
    }
    let params: BTreeMap<&str, &bfly_ir::Type> = graph
        .params()
        .map(|(_, p, ty)| (p.name.as_str(), ty))
        .collect();
    let mut problems = Vec::new();
    let mut applied = 0;
    for (name, view) in st.tensors() {
        let Some(ty) = params.get(name.as_str()) else {
            problems.push(format!("`{name}`: the model has no such param"));
            continue;
        };
        if !name.contains("lora") {
            problems.push(format!(
                "`{name}`: not a LoRA param; an adapter only replaces adapters"
            ));
            continue;
        }
        if ty.const_dims().as_deref() != Some(view.shape()) {
            problems.push(format!(
                "`{name}`: shape {:?}, the model's param is {ty}",
                view.shape()
            ));
            continue;
        }
        if dtype_from_safetensors(view.dtype()) != Some(bfly_ir::DType::F32) {
            problems.push(format!(
                "`{name}`: dtype {:?}, adapters are F32",
                view.dtype()
            ));
            continue;
        }
        let data: Vec<f64> = view
            .data()
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        weights.insert(
            name.clone(),
            Tensor::float(ty.dtype, view.shape().to_vec(), data),
        );
        applied += 1;
    }
    if !problems.is_empty() {
        return Err(format!(
            "adapter {shown} does not fit this model:\n  - {}",
            problems.join("\n  - ")
        ));
    }
    Ok(applied)
}
