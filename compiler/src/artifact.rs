//! Weights in and out of the compiler: importing a safetensors file (e.g. exported from
//! PyTorch) onto a graph's params, and turning weights into the tensors of a `.bfa` artifact
//! (the format itself belongs to `bfly_runtime::artifact`).
//!
//! Import is strict by default: every param must be in the file, under its exact name and
//! shape, and nothing else may be. A file made for another model or with a typo in one name
//! would otherwise load half its weights and run as noise. All problems are reported at once,
//! since one renamed layer usually means many.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use bfly_grammar::suggest::closest;
use bfly_ir::{DType, Graph, Type};
use bfly_runtime::artifact::{HostTensor, container, reference_weights_to_host};
use bfly_targets::reference::kernels::quant::{f16_from_bits, round_to_f16};
use bfly_targets::reference::{Tensor, Weights};
use safetensors::Dtype;

/// Why a weights file cannot be imported.
#[derive(Debug)]
pub enum ImportError {
    /// The file cannot be read.
    Io { path: PathBuf, source: io::Error },
    /// safetensors rejected the file (truncated, bad header, offsets that do not fit).
    Malformed { path: PathBuf, reason: String },
    /// The tensors do not fit the graph's params; every problem is listed.
    Mismatch {
        path: PathBuf,
        problems: Vec<ImportProblem>,
    },
}

/// One tensor that does not fit its param (or one param without a tensor).
#[derive(Clone, Debug, PartialEq)]
pub enum ImportProblem {
    /// A param has no tensor (and no fallback value).
    Missing { name: String, expected: Type },
    /// A tensor matches no param; `suggestion` is a param with a close name.
    Unexpected {
        name: String,
        suggestion: Option<String>,
    },
    WrongShape {
        name: String,
        expected: Type,
        found: Vec<usize>,
    },
    /// The file's dtype cannot hold the param's kind (float vs int), or is not one bfly
    /// reads (float params: F32, F16, BF16; int params: I8, I32).
    WrongDtype {
        name: String,
        expected: Type,
        found: String,
    },
    /// An I32 value that does not fit an i8 param.
    OutOfRange {
        name: String,
        expected: Type,
        value: i64,
    },
}

impl ImportProblem {
    fn name(&self) -> &str {
        match self {
            ImportProblem::Missing { name, .. }
            | ImportProblem::Unexpected { name, .. }
            | ImportProblem::WrongShape { name, .. }
            | ImportProblem::WrongDtype { name, .. }
            | ImportProblem::OutOfRange { name, .. } => name,
        }
    }
}

impl fmt::Display for ImportProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportProblem::Missing { name, expected } => {
                write!(f, "missing tensor `{name}` (param @{name}: {expected})")
            }
            ImportProblem::Unexpected { name, suggestion } => {
                write!(f, "unexpected tensor `{name}`: the graph has no such param")?;
                match suggestion {
                    Some(s) => write!(f, " (did you mean `{s}`?)"),
                    None => Ok(()),
                }
            }
            ImportProblem::WrongShape {
                name,
                expected,
                found,
            } => write!(
                f,
                "tensor `{name}`: shape {found:?}, but param @{name} is {expected}"
            ),
            ImportProblem::WrongDtype {
                name,
                expected,
                found,
            } => {
                let accepted = if expected.dtype.is_float() {
                    "F32, F16 or BF16"
                } else {
                    "I8 or I32"
                };
                write!(
                    f,
                    "tensor `{name}`: dtype {found} cannot hold param @{name}: {expected}; store it as {accepted}"
                )
            }
            ImportProblem::OutOfRange {
                name,
                expected,
                value,
            } => write!(
                f,
                "tensor `{name}`: value {value} does not fit param @{name}: {expected}"
            ),
        }
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Io { path, source } => write!(
                f,
                "cannot read weights {}: {source}; check the path",
                path.display()
            ),
            ImportError::Malformed { path, reason } => write!(
                f,
                "{}: truncated or not a safetensors file ({reason}); export the weights again",
                path.display()
            ),
            ImportError::Mismatch { path, problems } => {
                write!(
                    f,
                    "{}: the weights do not match the graph's params ({} problem(s)):",
                    path.display(),
                    problems.len()
                )?;
                for p in problems {
                    write!(f, "\n  - {p}")?;
                }
                write!(
                    f,
                    "\nname each tensor after its param (`bfly inspect SPEC --emit ir` lists them)"
                )?;
                if problems
                    .iter()
                    .any(|p| matches!(p, ImportProblem::Missing { .. }))
                {
                    write!(
                        f,
                        "; a partial import keeps the seeded init for params missing from the file"
                    )?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ImportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ImportError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Reads the safetensors file at `path` as values for `graph`'s params.
///
/// Each tensor must be named after its param and have its shape; float params accept F32, F16
/// and BF16 (rounded to the param's dtype), int params I8 and I32 (range-checked). With
/// `fallback`, params absent from the file take their value from it (typically the seeded
/// init, for a partial import such as a base model without its LoRA adapters); without it,
/// an absent param is an error. Unexpected tensors are always an error.
pub fn import_weights(
    graph: &Graph,
    path: &Path,
    fallback: Option<&Weights>,
) -> Result<Weights, ImportError> {
    let bytes = std::fs::read(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file = container::deserialize(&bytes).map_err(|reason| ImportError::Malformed {
        path: path.to_path_buf(),
        reason,
    })?;
    let mut weights = Weights::new();
    let mut problems = Vec::new();
    let mut absent: Vec<&str> = Vec::new();
    for (_, param, ty) in graph.params() {
        let name = param.name.as_str();
        match file.tensor(name) {
            Ok(view) => match convert(name, ty, view.dtype(), view.shape(), view.data()) {
                Ok(t) => {
                    weights.insert(name.to_string(), t);
                }
                Err(p) => problems.push(p),
            },
            Err(_) => {
                absent.push(name);
                match fallback.and_then(|w| w.get(name)) {
                    Some(t) => {
                        weights.insert(name.to_string(), t.clone());
                    }
                    None => problems.push(ImportProblem::Missing {
                        name: name.to_string(),
                        expected: ty.clone(),
                    }),
                }
            }
        }
    }
    let params: BTreeSet<&str> = graph.params().map(|(_, p, _)| p.name.as_str()).collect();
    for name in file.names().into_iter().filter(|n| !params.contains(n)) {
        problems.push(ImportProblem::Unexpected {
            name: name.to_string(),
            suggestion: closest(name, &absent).map(str::to_string),
        });
    }
    if problems.is_empty() {
        return Ok(weights);
    }
    problems.sort_by(|a, b| a.name().cmp(b.name()));
    Err(ImportError::Mismatch {
        path: path.to_path_buf(),
        problems,
    })
}

/// One file tensor as the reference value of param `name: ty`.
fn convert(
    name: &str,
    ty: &Type,
    dtype: Dtype,
    shape: &[usize],
    data: &[u8],
) -> Result<Tensor, ImportProblem> {
    let same_shape = shape.len() == ty.dims.len()
        && ty
            .dims
            .iter()
            .zip(shape)
            .all(|(e, &f)| e.as_const() == Some(f as u64));
    if !same_shape {
        return Err(ImportProblem::WrongShape {
            name: name.to_string(),
            expected: ty.clone(),
            found: shape.to_vec(),
        });
    }
    let wrong_dtype = || ImportProblem::WrongDtype {
        name: name.to_string(),
        expected: ty.clone(),
        found: format!("{dtype:?}"),
    };
    let shape = shape.to_vec();
    match ty.dtype {
        DType::F32 | DType::F16 => {
            let values = decode_floats(dtype, data).ok_or_else(wrong_dtype)?;
            let values = if ty.dtype == DType::F16 {
                values.into_iter().map(round_to_f16).collect()
            } else {
                values
            };
            Ok(Tensor::float(ty.dtype, shape, values))
        }
        DType::I8 | DType::I32 => {
            let values = decode_ints(dtype, data).ok_or_else(wrong_dtype)?;
            let (lo, hi) = match ty.dtype {
                DType::I8 => (i64::from(i8::MIN), i64::from(i8::MAX)),
                _ => (i64::from(i32::MIN), i64::from(i32::MAX)),
            };
            if let Some(&value) = values.iter().find(|v| !(lo..=hi).contains(*v)) {
                return Err(ImportProblem::OutOfRange {
                    name: name.to_string(),
                    expected: ty.clone(),
                    value,
                });
            }
            Ok(Tensor::int(ty.dtype, shape, values))
        }
    }
}

/// Little-endian F32 / F16 / BF16 as f64 (exact); `None` for any other dtype.
fn decode_floats(dtype: Dtype, data: &[u8]) -> Option<Vec<f64>> {
    let halves = || {
        data.chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
    };
    match dtype {
        Dtype::F32 => Some(
            data.chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        ),
        Dtype::F16 => Some(halves().map(f16_from_bits).collect()),
        // bf16 is the top half of an f32.
        Dtype::BF16 => Some(
            halves()
                .map(|h| f64::from(f32::from_bits(u32::from(h) << 16)))
                .collect(),
        ),
        _ => None,
    }
}

/// Little-endian I8 / I32 as i64; `None` for any other dtype.
fn decode_ints(dtype: Dtype, data: &[u8]) -> Option<Vec<i64>> {
    match dtype {
        Dtype::I8 => Some(
            data.iter()
                .map(|&b| i64::from(i8::from_le_bytes([b])))
                .collect(),
        ),
        Dtype::I32 => Some(
            data.chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        ),
        _ => None,
    }
}

/// The artifact tensors of `weights` for `graph`: each param in its declared dtype. Forwards
/// to the runtime, which owns the format.
pub fn artifact_tensors(
    graph: &Graph,
    weights: &Weights,
) -> Result<BTreeMap<String, HostTensor>, String> {
    reference_weights_to_host(graph, weights)
}
