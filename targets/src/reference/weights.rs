//! Parameter values for the reference interpreter: materialized from each param's seeded
//! init (bfly_ir::init) or supplied by the caller.

use super::kernels::quant::round_to_f16;
use super::tensor::Tensor;
use bfly_ir::{DType, Graph};
use std::collections::BTreeMap;

pub type Weights = BTreeMap<String, Tensor>;

/// Largest param the f64 interpreter materializes (8 GiB as f64): a bigger one in hand-written
/// IR gets an error instead of an allocation failure.
pub const MAX_PARAM_ELEMENTS: usize = 1 << 30;

/// Materializes every param of `g` with its init and `seed`. Params declared `external` have
/// no init: their name is returned in the error so the caller can say which weights to supply.
pub fn init_weights(g: &Graph, seed: u64) -> Result<Weights, String> {
    let mut w = Weights::new();
    let mut missing = Vec::new();
    for (_, p, ty) in g.params() {
        let Some(shape) = ty.const_dims() else {
            return Err(format!("param @{} has a symbolic shape {ty}", p.name));
        };
        let numel = match ty.const_numel() {
            Some(n) if n <= MAX_PARAM_ELEMENTS => n,
            _ => {
                return Err(format!(
                    "param @{} ({ty}) is larger than the reference backend's limit of {MAX_PARAM_ELEMENTS} elements",
                    p.name
                ));
            }
        };
        let Some(values) = bfly_ir::init::materialize(&p.init, numel, seed, &p.name) else {
            missing.push(p.name.clone());
            continue;
        };
        let data: Vec<f64> = values
            .into_iter()
            .map(|v| match ty.dtype {
                DType::F16 => round_to_f16(f64::from(v)),
                _ => f64::from(v),
            })
            .collect();
        let t = match ty.dtype {
            DType::F32 | DType::F16 => Tensor::float(ty.dtype, shape, data),
            DType::I8 | DType::I32 => Tensor::int(
                ty.dtype,
                shape,
                data.into_iter().map(|v| v.round() as i64).collect(),
            ),
        };
        w.insert(p.name.clone(), t);
    }
    if missing.is_empty() {
        Ok(w)
    } else {
        Err(format!(
            "no values for external params: {}; supply them in a weights file",
            missing.join(", ")
        ))
    }
}
