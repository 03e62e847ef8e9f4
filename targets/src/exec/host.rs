//! Typed host copies of buffers, and conversions between reference tensors (f64 / i64) and
//! the dtypes kernels store (f32, f16, i8, i32).

use super::error::{ExecError, fail};
use crate::reference::{Data, Tensor};
use bfly_ir::DType;
use half::f16;

/// A scalar as the Kernel IR computes with it: `f32` or 64-bit `int`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Val {
    F(f32),
    I(i64),
}

/// One buffer's elements in its storage dtype.
#[derive(Clone, Debug, PartialEq)]
pub enum HostBuf {
    F32(Vec<f32>),
    F16(Vec<f16>),
    I8(Vec<i8>),
    I32(Vec<i32>),
}

impl HostBuf {
    pub fn zeros(dtype: DType, n: usize) -> HostBuf {
        match dtype {
            DType::F32 => HostBuf::F32(vec![0.0; n]),
            DType::F16 => HostBuf::F16(vec![f16::ZERO; n]),
            DType::I8 => HostBuf::I8(vec![0; n]),
            DType::I32 => HostBuf::I32(vec![0; n]),
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            HostBuf::F32(_) => DType::F32,
            HostBuf::F16(_) => DType::F16,
            HostBuf::I8(_) => DType::I8,
            HostBuf::I32(_) => DType::I32,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            HostBuf::F32(v) => v.len(),
            HostBuf::F16(v) => v.len(),
            HostBuf::I8(v) => v.len(),
            HostBuf::I32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i`, widened (`f16 → f32`, ints → i64).
    pub fn load(&self, i: usize) -> Option<Val> {
        Some(match self {
            HostBuf::F32(v) => Val::F(*v.get(i)?),
            HostBuf::F16(v) => Val::F(v.get(i)?.to_f32()),
            HostBuf::I8(v) => Val::I(i64::from(*v.get(i)?)),
            HostBuf::I32(v) => Val::I(i64::from(*v.get(i)?)),
        })
    }

    /// Stores element `i`, narrowed as compiled code does: `f32 → f16` rounds to nearest
    /// even, `int → i8/i32` wraps. `false` if `i` is out of range or the scalar type is wrong.
    pub fn store(&mut self, i: usize, v: Val) -> bool {
        match (self, v) {
            (HostBuf::F32(b), Val::F(x)) => b.get_mut(i).map(|e| *e = x).is_some(),
            (HostBuf::F16(b), Val::F(x)) => b.get_mut(i).map(|e| *e = f16::from_f32(x)).is_some(),
            (HostBuf::I8(b), Val::I(x)) => b.get_mut(i).map(|e| *e = x as i8).is_some(),
            (HostBuf::I32(b), Val::I(x)) => b.get_mut(i).map(|e| *e = x as i32).is_some(),
            _ => false,
        }
    }

    /// Fills every element with a value no correct kernel reads: NaN for floats, a
    /// recognizable pattern for ints. Run on scratch before each interpreted step, so a
    /// kernel that reads a temp before writing it shows up as NaN instead of a stale value.
    pub fn poison(&mut self) {
        match self {
            HostBuf::F32(v) => v.fill(f32::NAN),
            HostBuf::F16(v) => v.fill(f16::NAN),
            HostBuf::I8(v) => v.fill(0x5a),
            HostBuf::I32(v) => v.fill(0x5a5a_5a5a),
        }
    }

    /// Converts a reference tensor to `dtype`: floats round to nearest even (f64 → f32 or
    /// directly to f16), ints must fit. `what` names the tensor in errors.
    pub fn from_tensor(dtype: DType, t: &Tensor, what: &str) -> Result<HostBuf, ExecError> {
        match (&t.data, dtype) {
            (Data::F(v), DType::F32) => Ok(HostBuf::F32(v.iter().map(|&x| x as f32).collect())),
            (Data::F(v), DType::F16) => {
                Ok(HostBuf::F16(v.iter().map(|&x| f16::from_f64(x)).collect()))
            }
            (Data::I(v), DType::I8) => ints(v, what, dtype).map(HostBuf::I8),
            (Data::I(v), DType::I32) => ints(v, what, dtype).map(HostBuf::I32),
            (Data::F(_), _) => fail(format!("{what} holds floats; {dtype} takes integers")),
            (Data::I(_), _) => fail(format!("{what} holds integers; {dtype} takes floats")),
        }
    }

    /// Converts f32 values (a caller's new param values) to `dtype`; integer dtypes take
    /// only integral values in range.
    pub fn from_f32(dtype: DType, v: &[f32], what: &str) -> Result<HostBuf, ExecError> {
        match dtype {
            DType::F32 => Ok(HostBuf::F32(v.to_vec())),
            DType::F16 => Ok(HostBuf::F16(v.iter().map(|&x| f16::from_f32(x)).collect())),
            DType::I8 | DType::I32 => {
                let mut out = Vec::with_capacity(v.len());
                for (i, &x) in v.iter().enumerate() {
                    if x.fract() != 0.0 || !x.is_finite() {
                        return fail(format!("{what}[{i}] = {x} is not an integer ({dtype})"));
                    }
                    out.push(x as i64);
                }
                match dtype {
                    DType::I8 => ints(&out, what, dtype).map(HostBuf::I8),
                    _ => ints(&out, what, dtype).map(HostBuf::I32),
                }
            }
        }
    }

    /// The first `numel(shape)` elements as a reference tensor (floats widened to f64).
    pub fn to_tensor(&self, shape: Vec<usize>) -> Tensor {
        let n = shape.iter().product::<usize>().min(self.len());
        let dtype = self.dtype();
        match self {
            HostBuf::F32(v) => Tensor {
                dtype,
                shape,
                data: Data::F(v[..n].iter().map(|&x| f64::from(x)).collect()),
            },
            HostBuf::F16(v) => Tensor {
                dtype,
                shape,
                data: Data::F(v[..n].iter().map(|x| x.to_f64()).collect()),
            },
            HostBuf::I8(v) => Tensor {
                dtype,
                shape,
                data: Data::I(v[..n].iter().map(|&x| i64::from(x)).collect()),
            },
            HostBuf::I32(v) => Tensor {
                dtype,
                shape,
                data: Data::I(v[..n].iter().map(|&x| i64::from(x)).collect()),
            },
        }
    }

    /// Overwrites the first `src.len()` elements with `src` (same dtype); `false` if `src`
    /// is longer or of another dtype.
    pub fn copy_prefix(&mut self, src: &HostBuf) -> bool {
        fn put<T: Copy>(dst: &mut [T], src: &[T]) -> bool {
            match dst.get_mut(..src.len()) {
                Some(d) => {
                    d.copy_from_slice(src);
                    true
                }
                None => false,
            }
        }
        match (self, src) {
            (HostBuf::F32(d), HostBuf::F32(s)) => put(d, s),
            (HostBuf::F16(d), HostBuf::F16(s)) => put(d, s),
            (HostBuf::I8(d), HostBuf::I8(s)) => put(d, s),
            (HostBuf::I32(d), HostBuf::I32(s)) => put(d, s),
            _ => false,
        }
    }

    /// Every element as f32 (ints converted).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            HostBuf::F32(v) => v.clone(),
            HostBuf::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            HostBuf::I8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            HostBuf::I32(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    pub fn byte_len(&self) -> usize {
        self.len() * self.dtype().size_bytes()
    }

    /// Writes the elements in native byte order to the start of `out`; `false` if it is
    /// too short.
    pub fn write_ne_bytes(&self, out: &mut [u8]) -> bool {
        let Some(out) = out.get_mut(..self.byte_len()) else {
            return false;
        };
        macro_rules! put {
            ($v:expr, $n:expr) => {
                for (chunk, x) in out.chunks_exact_mut($n).zip($v) {
                    chunk.copy_from_slice(&x.to_ne_bytes());
                }
            };
        }
        match self {
            HostBuf::F32(v) => put!(v, 4),
            HostBuf::F16(v) => put!(v, 2),
            HostBuf::I8(v) => put!(v, 1),
            HostBuf::I32(v) => put!(v, 4),
        }
        true
    }

    /// Reads `bytes.len() / size` elements of `dtype` in native byte order.
    pub fn from_ne_bytes(dtype: DType, bytes: &[u8]) -> HostBuf {
        macro_rules! get {
            ($t:ty, $n:expr) => {
                bytes
                    .chunks_exact($n)
                    .map(|c| <$t>::from_ne_bytes(c.try_into().unwrap_or([0; $n])))
                    .collect()
            };
        }
        match dtype {
            DType::F32 => HostBuf::F32(get!(f32, 4)),
            DType::F16 => HostBuf::F16(get!(f16, 2)),
            DType::I8 => HostBuf::I8(get!(i8, 1)),
            DType::I32 => HostBuf::I32(get!(i32, 4)),
        }
    }
}

fn ints<T: TryFrom<i64>>(v: &[i64], what: &str, dtype: DType) -> Result<Vec<T>, ExecError> {
    v.iter()
        .enumerate()
        .map(|(i, &x)| {
            T::try_from(x)
                .map_err(|_| ExecError::new(format!("{what}[{i}] = {x} does not fit in {dtype}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrows_like_compiled_code() {
        let mut b = HostBuf::zeros(DType::F16, 2);
        // 1 + 2^-11 is halfway between two f16 values: ties go to even (1.0).
        assert!(b.store(0, Val::F(1.0 + 2f32.powi(-11))));
        assert_eq!(b.load(0), Some(Val::F(1.0)));
        let mut i = HostBuf::zeros(DType::I8, 1);
        assert!(i.store(0, Val::I(200)));
        assert_eq!(i.load(0), Some(Val::I(-56)));
        assert!(!i.store(1, Val::I(0)));
        assert!(!i.store(0, Val::F(0.0)));
    }

    #[test]
    fn converts_tensors_with_checks() {
        let t = Tensor::int(DType::I32, vec![2], vec![3, 300]);
        assert!(HostBuf::from_tensor(DType::I32, &t, "x").is_ok());
        let e = HostBuf::from_tensor(DType::I8, &t, "x").unwrap_err();
        assert_eq!(e.message, "x[1] = 300 does not fit in i8");
        let f = Tensor::f32(vec![2], vec![0.1, 1e-8]);
        let h = HostBuf::from_tensor(DType::F16, &f, "w").unwrap();
        assert_eq!(
            h.to_tensor(vec![2]).floats().unwrap()[0],
            f16::from_f64(0.1).to_f64()
        );
        assert!(HostBuf::from_tensor(DType::I32, &f, "w").is_err());
        assert!(HostBuf::from_f32(DType::I8, &[1.5], "p").is_err());
    }

    #[test]
    fn round_trips_bytes() {
        for b in [
            HostBuf::F32(vec![1.5, -2.0]),
            HostBuf::F16(vec![f16::from_f32(0.25)]),
            HostBuf::I8(vec![-3, 4, 5]),
            HostBuf::I32(vec![i32::MIN, 7]),
        ] {
            let mut bytes = vec![0u8; b.byte_len() + 3];
            assert!(b.write_ne_bytes(&mut bytes));
            assert_eq!(HostBuf::from_ne_bytes(b.dtype(), &bytes[..b.byte_len()]), b);
            assert!(!b.write_ne_bytes(&mut bytes[..1]) || b.byte_len() <= 1);
        }
    }
}
