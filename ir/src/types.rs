//! Value types: a dtype and a shape whose dims are constants or bounded symbols (`T`, `B`).

use std::fmt;

/// Element type of a value. Floats are IEEE; `i8` holds quantized weights/activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F32,
    F16,
    I8,
    I32,
}

impl DType {
    pub const ALL: [DType; 4] = [DType::F32, DType::F16, DType::I8, DType::I32];

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I8 => "i8",
            DType::I32 => "i32",
        }
    }

    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 => 2,
            DType::I8 => 1,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One dimension: a compile-time constant or a symbol bound at run time (`T` tokens in
/// flight, `B` batch). Symbols carry an upper bound declared on the graph.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Const(u64),
    Sym(String),
}

impl Dim {
    pub fn sym(name: &str) -> Dim {
        Dim::Sym(name.to_string())
    }

    pub fn as_const(&self) -> Option<u64> {
        match self {
            Dim::Const(c) => Some(*c),
            Dim::Sym(_) => None,
        }
    }
}

impl From<u64> for Dim {
    fn from(c: u64) -> Dim {
        Dim::Const(c)
    }
}

impl From<usize> for Dim {
    fn from(c: usize) -> Dim {
        Dim::Const(c as u64)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Const(c) => write!(f, "{c}"),
            Dim::Sym(s) => f.write_str(s),
        }
    }
}

/// A value's type, printed `f32[T, 128]` (`f32[]` for a scalar).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Type {
    pub dtype: DType,
    pub dims: Vec<Dim>,
}

impl Type {
    pub fn new(dtype: DType, dims: impl IntoIterator<Item = Dim>) -> Type {
        Type {
            dtype,
            dims: dims.into_iter().collect(),
        }
    }

    /// A type whose dims are all constants.
    pub fn fixed(dtype: DType, dims: &[u64]) -> Type {
        Type::new(dtype, dims.iter().map(|&d| Dim::Const(d)))
    }

    pub fn scalar(dtype: DType) -> Type {
        Type::new(dtype, [])
    }

    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    /// The last dim, if it is a constant (the feature axis every row op works on).
    pub fn last_const(&self) -> Option<u64> {
        self.dims.last().and_then(Dim::as_const)
    }

    /// Constant dims, or `None` when any dim is symbolic.
    pub fn const_dims(&self) -> Option<Vec<usize>> {
        self.dims
            .iter()
            .map(|d| d.as_const().map(|c| c as usize))
            .collect()
    }

    /// Number of elements when every dim is constant (and the product fits in `usize`).
    pub fn const_numel(&self) -> Option<usize> {
        self.const_dims()?
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
    }

    /// Concrete dims with symbols substituted from `bind` (e.g. `T = 7`).
    pub fn resolve(&self, bind: &dyn Fn(&str) -> Option<usize>) -> Option<Vec<usize>> {
        self.dims
            .iter()
            .map(|d| match d {
                Dim::Const(c) => Some(*c as usize),
                Dim::Sym(s) => bind(s),
            })
            .collect()
    }

    pub fn with_dtype(&self, dtype: DType) -> Type {
        Type {
            dtype,
            dims: self.dims.clone(),
        }
    }

    /// Same leading dims, last dim replaced.
    pub fn with_last(&self, last: u64) -> Type {
        let mut dims = self.dims.clone();
        if let Some(d) = dims.last_mut() {
            *d = Dim::Const(last);
        }
        Type {
            dtype: self.dtype,
            dims,
        }
    }

    /// Leading dims (all but the last).
    pub fn leading(&self) -> &[Dim] {
        &self.dims[..self.dims.len().saturating_sub(1)]
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype)?;
        for (i, d) in self.dims.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_types() {
        let t = Type::new(DType::F32, [Dim::sym("T"), Dim::Const(128)]);
        assert_eq!(t.to_string(), "f32[T, 128]");
        assert_eq!(Type::scalar(DType::F32).to_string(), "f32[]");
        assert_eq!(t.with_last(64).to_string(), "f32[T, 64]");
        assert_eq!(t.resolve(&|s| (s == "T").then_some(3)), Some(vec![3, 128]));
    }
}
