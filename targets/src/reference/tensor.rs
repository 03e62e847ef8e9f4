//! Host tensors of the reference interpreter. Every float is held as f64 (f16/f32 values are
//! exactly representable), every integer as i64; the dtype records what the graph declared.

use bfly_ir::DType;

#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F(Vec<f64>),
    I(Vec<i64>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Data,
}

impl Tensor {
    pub fn float(dtype: DType, shape: Vec<usize>, data: Vec<f64>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor {
            dtype,
            shape,
            data: Data::F(data),
        }
    }

    pub fn f32(shape: Vec<usize>, data: Vec<f64>) -> Tensor {
        Tensor::float(DType::F32, shape, data)
    }

    pub fn int(dtype: DType, shape: Vec<usize>, data: Vec<i64>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor {
            dtype,
            shape,
            data: Data::I(data),
        }
    }

    /// Token ids as an `i32[T]` tensor.
    pub fn tokens(ids: &[u32]) -> Tensor {
        Tensor::int(
            DType::I32,
            vec![ids.len()],
            ids.iter().map(|&t| i64::from(t)).collect(),
        )
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Rows and width when viewed as `[rows, last]`.
    pub fn rows_last(&self) -> (usize, usize) {
        let last = self.shape.last().copied().unwrap_or(1);
        (self.numel() / last.max(1), last)
    }

    pub fn floats(&self) -> Option<&[f64]> {
        match &self.data {
            Data::F(v) => Some(v),
            Data::I(_) => None,
        }
    }

    pub fn ints(&self) -> Option<&[i64]> {
        match &self.data {
            Data::I(v) => Some(v),
            Data::F(_) => None,
        }
    }
}
