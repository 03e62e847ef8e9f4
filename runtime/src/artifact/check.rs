//! Tensors against the graph's params: the one check the writer and the loader share, so a
//! file the writer accepts is a file the loader accepts.
//!
//! Every problem is collected, not just the first: a renamed layer shows up as a missing and an
//! unexpected tensor side by side, which is what tells the user what happened.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bfly_grammar::suggest::closest;
use bfly_ir::{DType, Graph, Type};

use super::tensor::checked_byte_len;

/// One tensor as found in a file or handed to the writer.
#[derive(Clone, Debug)]
pub struct FoundTensor<'a> {
    pub name: &'a str,
    /// The bfly dtype, or the file's dtype name when bfly cannot hold it.
    pub dtype: Result<DType, String>,
    pub dims: &'a [usize],
    /// The byte length to check against dtype × dims (`None` when the reader already did).
    pub byte_len: Option<usize>,
}

/// One mismatch between the tensors and the params.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorProblem {
    /// A param has no tensor.
    Missing { name: String, expected: Type },
    /// A tensor matches no param; `suggestion` is a missing param with a close name.
    Unexpected {
        name: String,
        suggestion: Option<String>,
    },
    /// A dtype bfly does not store (e.g. `BF16`, `F64`).
    UnsupportedDtype { name: String, found: String },
    WrongDtype {
        name: String,
        expected: Type,
        found: DType,
    },
    WrongShape {
        name: String,
        expected: Type,
        found: Vec<usize>,
    },
    /// The bytes do not hold dtype × dims (writer side: an inconsistent [`super::HostTensor`]).
    WrongByteLength {
        name: String,
        expected: Option<usize>,
        found: usize,
    },
    /// A param whose shape has a symbol (`T`) cannot be stored.
    SymbolicParam { name: String, ty: Type },
}

impl TensorProblem {
    pub fn name(&self) -> &str {
        match self {
            TensorProblem::Missing { name, .. }
            | TensorProblem::Unexpected { name, .. }
            | TensorProblem::UnsupportedDtype { name, .. }
            | TensorProblem::WrongDtype { name, .. }
            | TensorProblem::WrongShape { name, .. }
            | TensorProblem::WrongByteLength { name, .. }
            | TensorProblem::SymbolicParam { name, .. } => name,
        }
    }
}

impl fmt::Display for TensorProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorProblem::Missing { name, expected } => {
                write!(f, "missing tensor `{name}` (param @{name}: {expected})")
            }
            TensorProblem::Unexpected { name, suggestion } => {
                write!(f, "unexpected tensor `{name}`: the graph has no such param")?;
                match suggestion {
                    Some(s) => write!(f, " (did you mean `{s}`?)"),
                    None => Ok(()),
                }
            }
            TensorProblem::UnsupportedDtype { name, found } => write!(
                f,
                "tensor `{name}`: dtype {found} is not one bfly stores (F32, F16, I8 or I32)"
            ),
            TensorProblem::WrongDtype {
                name,
                expected,
                found,
            } => write!(
                f,
                "tensor `{name}`: dtype {found}, but param @{name} is {expected}"
            ),
            TensorProblem::WrongShape {
                name,
                expected,
                found,
            } => write!(
                f,
                "tensor `{name}`: shape {found:?}, but param @{name} is {expected}"
            ),
            TensorProblem::WrongByteLength {
                name,
                expected,
                found,
            } => match expected {
                Some(e) => write!(
                    f,
                    "tensor `{name}`: {found} bytes, its dtype and shape need {e}"
                ),
                None => write!(f, "tensor `{name}`: its shape overflows the address space"),
            },
            TensorProblem::SymbolicParam { name, ty } => write!(
                f,
                "param @{name} has a symbolic shape {ty}: only constant shapes can be stored"
            ),
        }
    }
}

/// Every mismatch between `found` and `graph`'s params, sorted by tensor name.
pub fn check_tensors<'a>(
    graph: &Graph,
    found: impl IntoIterator<Item = FoundTensor<'a>>,
) -> Vec<TensorProblem> {
    let found: BTreeMap<&str, FoundTensor<'a>> = found.into_iter().map(|t| (t.name, t)).collect();
    let mut problems = Vec::new();
    let mut missing: Vec<&str> = Vec::new();
    for (_, param, ty) in graph.params() {
        let name = param.name.as_str();
        let Some(t) = found.get(name) else {
            missing.push(name);
            problems.push(TensorProblem::Missing {
                name: name.to_string(),
                expected: ty.clone(),
            });
            continue;
        };
        problems.extend(check_one(name, ty, t));
    }
    let params: BTreeSet<&str> = graph.params().map(|(_, p, _)| p.name.as_str()).collect();
    for name in found.keys().filter(|n| !params.contains(**n)) {
        problems.push(TensorProblem::Unexpected {
            name: name.to_string(),
            suggestion: closest(name, &missing).map(str::to_string),
        });
    }
    problems.sort_by(|a, b| a.name().cmp(b.name()));
    problems
}

/// The problems of one tensor against its param: dtype, shape, then byte length (only
/// meaningful once dtype and shape agree).
fn check_one(name: &str, ty: &Type, t: &FoundTensor) -> Vec<TensorProblem> {
    let mut problems = Vec::new();
    if ty.const_dims().is_none() {
        return vec![TensorProblem::SymbolicParam {
            name: name.to_string(),
            ty: ty.clone(),
        }];
    }
    match &t.dtype {
        Err(found) => problems.push(TensorProblem::UnsupportedDtype {
            name: name.to_string(),
            found: found.clone(),
        }),
        Ok(d) if *d != ty.dtype => problems.push(TensorProblem::WrongDtype {
            name: name.to_string(),
            expected: ty.clone(),
            found: *d,
        }),
        Ok(_) => {}
    }
    // Compare as u64 so a dim that does not fit in usize (32-bit hosts) is a mismatch, not a
    // silent truncation.
    let same_shape = t.dims.len() == ty.dims.len()
        && ty
            .dims
            .iter()
            .zip(t.dims)
            .all(|(e, &f)| e.as_const() == Some(f as u64));
    if !same_shape {
        problems.push(TensorProblem::WrongShape {
            name: name.to_string(),
            expected: ty.clone(),
            found: t.dims.to_vec(),
        });
    }
    if let (true, Some(found)) = (problems.is_empty(), t.byte_len) {
        let expected = checked_byte_len(ty.dtype, t.dims);
        if expected != Some(found) {
            problems.push(TensorProblem::WrongByteLength {
                name: name.to_string(),
                expected,
                found,
            });
        }
    }
    problems
}

/// The problems as an indented list, one per line.
pub fn problem_list(problems: &[TensorProblem]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}

/// The params of `graph` against tensors that may hold more (a train artifact's tensors
/// include optimizer moments the eval graph does not read): only missing, mistyped and
/// mis-shaped params are problems.
pub fn check_subset<'a>(
    graph: &Graph,
    tensors: impl Iterator<Item = (&'a str, DType, &'a [usize])>,
) -> Vec<TensorProblem> {
    let found: BTreeMap<&str, (DType, &[usize])> =
        tensors.map(|(n, d, dims)| (n, (d, dims))).collect();
    let mut problems = Vec::new();
    for (_, p, ty) in graph.params() {
        match found.get(p.name.as_str()) {
            None => problems.push(TensorProblem::Missing {
                name: p.name.clone(),
                expected: ty.clone(),
            }),
            Some(&(dtype, _)) if dtype != ty.dtype => problems.push(TensorProblem::WrongDtype {
                name: p.name.clone(),
                expected: ty.clone(),
                found: dtype,
            }),
            Some(&(_, dims)) if ty.const_dims().as_deref() != Some(dims) => {
                problems.push(TensorProblem::WrongShape {
                    name: p.name.clone(),
                    expected: ty.clone(),
                    found: dims.to_vec(),
                })
            }
            Some(_) => {}
        }
    }
    problems
}
