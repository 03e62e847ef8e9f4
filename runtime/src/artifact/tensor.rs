//! Weight tensors on the host: owned ([`HostTensor`]) for writing, borrowed ([`TensorView`],
//! a slice of the mmapped file) for reading. Bytes are little-endian and row-major, exactly as
//! safetensors stores them, so a view never copies.

use std::borrow::Cow;

use bfly_ir::DType;
use bfly_targets::reference::kernels::quant::{f16_bits, f16_from_bits};
use safetensors::Dtype;

/// An owned tensor in the artifact's byte layout.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub dtype: DType,
    pub dims: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// A borrowed tensor: dims and bytes point into the artifact (or a [`HostTensor`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorView<'a> {
    pub dtype: DType,
    pub dims: &'a [usize],
    pub bytes: &'a [u8],
}

/// Number of elements of `dims`, or `None` on overflow.
pub fn checked_numel(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Byte size of a tensor of `dtype` and `dims`, or `None` on overflow.
pub fn checked_byte_len(dtype: DType, dims: &[usize]) -> Option<usize> {
    checked_numel(dims)?.checked_mul(dtype.size_bytes())
}

impl HostTensor {
    /// An f32 tensor. Errors when `data` does not have `dims`' element count.
    pub fn from_f32(dims: Vec<usize>, data: &[f32]) -> Result<HostTensor, String> {
        check_len(&dims, data.len())?;
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok(HostTensor {
            dtype: DType::F32,
            dims,
            bytes,
        })
    }

    /// A float tensor of `dtype` (f32 or f16) from f64 values, rounded to nearest-even (f16 with
    /// the reference interpreter's rounding, so both sides agree bit for bit).
    pub fn from_f64(dtype: DType, dims: Vec<usize>, data: &[f64]) -> Result<HostTensor, String> {
        check_len(&dims, data.len())?;
        let bytes = match dtype {
            DType::F32 => data
                .iter()
                .flat_map(|&v| (v as f32).to_le_bytes())
                .collect(),
            DType::F16 => data
                .iter()
                .flat_map(|&v| f16_bits(v).to_le_bytes())
                .collect(),
            DType::I8 | DType::I32 => {
                return Err(format!("{dtype} is not a float dtype"));
            }
        };
        Ok(HostTensor { dtype, dims, bytes })
    }

    /// An integer tensor of `dtype` (i8 or i32). Errors on a value out of the dtype's range.
    pub fn from_ints(dtype: DType, dims: Vec<usize>, data: &[i64]) -> Result<HostTensor, String> {
        check_len(&dims, data.len())?;
        let out_of_range = |v: i64| format!("value {v} does not fit in {dtype}");
        let bytes = match dtype {
            DType::I8 => data
                .iter()
                .map(|&v| {
                    i8::try_from(v)
                        .map(|x| x.to_le_bytes()[0])
                        .map_err(|_| out_of_range(v))
                })
                .collect::<Result<Vec<u8>, _>>()?,
            DType::I32 => {
                let mut bytes = Vec::with_capacity(data.len().saturating_mul(4));
                for &v in data {
                    let x = i32::try_from(v).map_err(|_| out_of_range(v))?;
                    bytes.extend_from_slice(&x.to_le_bytes());
                }
                bytes
            }
            DType::F32 | DType::F16 => return Err(format!("{dtype} is not an integer dtype")),
        };
        Ok(HostTensor { dtype, dims, bytes })
    }

    pub fn view(&self) -> TensorView<'_> {
        TensorView {
            dtype: self.dtype,
            dims: &self.dims,
            bytes: &self.bytes,
        }
    }

    /// The values as f32 (f16 widened exactly, integers converted).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        self.view().to_f32_vec()
    }
}

fn check_len(dims: &[usize], len: usize) -> Result<(), String> {
    match checked_numel(dims) {
        Some(n) if n == len => Ok(()),
        Some(n) => Err(format!(
            "shape {dims:?} holds {n} elements but {len} values were given"
        )),
        None => Err(format!("shape {dims:?} overflows the address space")),
    }
}

impl TensorView<'_> {
    /// The values as f64 (exact for every dtype bfly stores). Trailing bytes that do not make
    /// a whole element are ignored; a validated artifact has none.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self.dtype {
            DType::F32 => self
                .bytes
                .chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
            DType::F16 => self
                .bytes
                .chunks_exact(2)
                .map(|c| f16_from_bits(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            DType::I8 | DType::I32 => self.to_i64_vec().into_iter().map(|v| v as f64).collect(),
        }
    }

    /// The values as f32 (f16 widened exactly, integers converted).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match self.dtype {
            DType::F32 => self
                .bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            _ => self.to_f64_vec().into_iter().map(|v| v as f32).collect(),
        }
    }

    /// The values as i64 for integer dtypes; floats are truncated toward zero.
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match self.dtype {
            DType::I8 => self
                .bytes
                .iter()
                .map(|&b| i64::from(i8::from_le_bytes([b])))
                .collect(),
            DType::I32 => self
                .bytes
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
            DType::F32 | DType::F16 => self.to_f64_vec().into_iter().map(|v| v as i64).collect(),
        }
    }
}

/// The bfly dtype of a safetensors dtype, for the four dtypes artifacts hold.
pub fn dtype_from_safetensors(d: Dtype) -> Option<DType> {
    match d {
        Dtype::F32 => Some(DType::F32),
        Dtype::F16 => Some(DType::F16),
        Dtype::I8 => Some(DType::I8),
        Dtype::I32 => Some(DType::I32),
        _ => None,
    }
}

pub fn dtype_to_safetensors(d: DType) -> Dtype {
    match d {
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::I8 => Dtype::I8,
        DType::I32 => Dtype::I32,
    }
}

/// Lets `safetensors::serialize` write a [`HostTensor`] without copying it into its own type
/// (whose constructor multiplies the shape unchecked).
impl safetensors::View for &HostTensor {
    fn dtype(&self) -> Dtype {
        dtype_to_safetensors(self.dtype)
    }

    fn shape(&self) -> &[usize] {
        &self.dims
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }

    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_round_trip() {
        let t = HostTensor::from_f32(vec![2, 2], &[1.0, -2.5, 3.25, 0.0]).expect("sizes match");
        assert_eq!(t.bytes.len(), 16);
        assert_eq!(t.to_f32_vec(), [1.0, -2.5, 3.25, 0.0]);
    }

    #[test]
    fn f16_rounds_like_the_reference() {
        let t = HostTensor::from_f64(DType::F16, vec![3], &[1.0, 1.0 / 3.0, -65504.0])
            .expect("sizes match");
        assert_eq!(t.bytes.len(), 6);
        let back = t.view().to_f64_vec();
        assert_eq!(back[0], 1.0);
        assert!((back[1] - 1.0 / 3.0).abs() < 1e-3);
        assert_eq!(back[2], -65504.0);
    }

    #[test]
    fn ints_are_range_checked() {
        let t = HostTensor::from_ints(DType::I8, vec![3], &[-128, 0, 127]).expect("in range");
        assert_eq!(t.view().to_i64_vec(), [-128, 0, 127]);
        let err = HostTensor::from_ints(DType::I8, vec![2], &[1, 300]).expect_err("too big");
        assert!(err.contains("300"), "{err}");
        let t = HostTensor::from_ints(DType::I32, vec![1], &[-70000]).expect("in range");
        assert_eq!(t.to_f32_vec(), [-70000.0]);
    }

    #[test]
    fn wrong_length_and_overflow_are_errors() {
        assert!(HostTensor::from_f32(vec![3], &[1.0]).is_err());
        assert!(HostTensor::from_f32(vec![usize::MAX, 2], &[]).is_err());
        assert_eq!(checked_byte_len(DType::F32, &[usize::MAX / 2, 1]), None);
    }
}
