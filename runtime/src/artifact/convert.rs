//! Between artifact tensors and the reference interpreter's f64 weights: the compiler seeds
//! and imports weights as reference [`Weights`], the artifact stores each param in its declared
//! dtype, and the reference backend runs from an opened artifact.

use std::collections::BTreeMap;

use bfly_ir::{DType, Graph};
use bfly_targets::reference::{Data, Tensor, Weights};

use super::tensor::{HostTensor, TensorView};

/// A view as a reference tensor (f64 floats, i64 ints; exact for every stored dtype).
pub fn view_to_reference(v: TensorView<'_>) -> Tensor {
    let shape = v.dims.to_vec();
    if v.dtype.is_float() {
        Tensor::float(v.dtype, shape, v.to_f64_vec())
    } else {
        Tensor::int(v.dtype, shape, v.to_i64_vec())
    }
}

/// Each param of `graph` from `w`, converted to the param's declared dtype (f32/f16 rounded to
/// nearest-even, ints range-checked). Every problem is reported, joined by `; `. Entries of
/// `w` that are not params are ignored: a pass may have removed a param since `w` was made.
pub fn reference_weights_to_host(
    graph: &Graph,
    w: &Weights,
) -> Result<BTreeMap<String, HostTensor>, String> {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for (_, param, ty) in graph.params() {
        let name = &param.name;
        let Some(t) = w.get(name) else {
            errors.push(format!("no value for param @{name} ({ty})"));
            continue;
        };
        let Some(dims) = ty.const_dims() else {
            errors.push(format!("param @{name} has a symbolic shape {ty}"));
            continue;
        };
        if t.shape != dims {
            errors.push(format!(
                "param @{name} is {ty} but its value has shape {:?}",
                t.shape
            ));
            continue;
        }
        let converted = match (&t.data, ty.dtype) {
            (Data::F(v), DType::F32 | DType::F16) => HostTensor::from_f64(ty.dtype, dims, v),
            (Data::I(v), DType::I8 | DType::I32) => HostTensor::from_ints(ty.dtype, dims, v),
            (Data::F(_), _) => Err("float values for an integer param".to_string()),
            (Data::I(_), _) => Err("integer values for a float param".to_string()),
        };
        match converted {
            Ok(h) => {
                out.insert(name.clone(), h);
            }
            Err(e) => errors.push(format!("param @{name} ({ty}): {e}")),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors.join("; "))
    }
}
