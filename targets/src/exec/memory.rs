//! The executor's memory: one zeroed allocation holding the plan's four regions, aligned to
//! the plan's [`ALIGN`](crate::plan::ALIGN).
//!
//! It is a plain `Vec<u8>` (so inputs, outputs and params are copied with safe slices) that
//! is never resized, so its address is stable; the first `pad` bytes bring the base to the
//! alignment. Kernels receive addresses as `usize`, derived from the vector's pointer after
//! the last slice access of a step's setup, so no reference is alive while compiled code
//! writes through them.

use super::error::{ExecError, fail};
use crate::plan::ALIGN;

pub struct Memory {
    bytes: Vec<u8>,
    pad: usize,
    len: usize,
}

impl Memory {
    /// `len` zeroed bytes at an `ALIGN`-aligned address; an error (not an abort) when the
    /// allocation fails.
    pub fn new(len: u64) -> Result<Memory, ExecError> {
        let align = ALIGN as usize;
        let Some(total) = usize::try_from(len).ok().and_then(|l| l.checked_add(align)) else {
            return fail(format!(
                "the program needs {len} bytes, more than this host addresses"
            ));
        };
        let mut bytes = Vec::new();
        if bytes.try_reserve_exact(total).is_err() {
            return fail(format!("cannot allocate the program's {len} bytes"));
        }
        bytes.resize(total, 0u8);
        let addr = bytes.as_ptr() as usize;
        let pad = (align - addr % align) % align;
        Ok(Memory {
            bytes,
            pad,
            len: total - align,
        })
    }

    /// The bytes `offset..offset + n` of the aligned region.
    pub fn slice(&self, offset: u64, n: usize) -> Option<&[u8]> {
        let start = self.pad.checked_add(usize::try_from(offset).ok()?)?;
        let end = start.checked_add(n)?;
        if end > self.pad + self.len {
            return None;
        }
        self.bytes.get(start..end)
    }

    pub fn slice_mut(&mut self, offset: u64, n: usize) -> Option<&mut [u8]> {
        let start = self.pad.checked_add(usize::try_from(offset).ok()?)?;
        let end = start.checked_add(n)?;
        if end > self.pad + self.len {
            return None;
        }
        self.bytes.get_mut(start..end)
    }

    /// The aligned base address, for kernels. Taking `&mut self` makes this the newest
    /// access to the allocation, so addresses derived from it stay valid until the next
    /// slice access.
    pub fn base(&mut self) -> usize {
        self.bytes.as_mut_ptr() as usize + self.pad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_bounded() {
        let mut m = Memory::new(100).unwrap();
        assert_eq!(m.base() % ALIGN as usize, 0);
        assert!(m.slice(0, 100).is_some_and(|s| s.iter().all(|&b| b == 0)));
        assert!(m.slice(1, 100).is_none());
        assert!(m.slice_mut(u64::MAX, 1).is_none());
        assert!(Memory::new(u64::MAX).is_err());
    }
}
