//! Executable memory for emitted code (aarch64 only).
//!
//! W^X: the code is copied into a fresh read+write mapping, the instruction cache is
//! synchronized for it, and the mapping is flipped to read+execute with `mprotect`
//! (dynasmrt's `MutableBuffer::make_exec`) before any address is handed out. It is never
//! writable and executable at once, and is unmapped when dropped.

use dynasmrt::ExecutableBuffer;
use dynasmrt::mmap::MutableBuffer;

/// Executable copy of a code blob.
pub struct CodePages {
    buffer: ExecutableBuffer,
}

impl CodePages {
    /// Maps `bytes` executable. Fails off aarch64 (nothing could run it) or when the
    /// kernel refuses the mapping.
    pub fn map(bytes: &[u8]) -> Result<CodePages, String> {
        if !cfg!(target_arch = "aarch64") {
            return Err("aarch64 code can only be executed on an aarch64 CPU".into());
        }
        let mut buf = MutableBuffer::new(bytes.len().max(4))
            .map_err(|e| format!("mapping {} bytes of code memory: {e}", bytes.len()))?;
        buf.set_len(bytes.len());
        buf[..bytes.len()].copy_from_slice(bytes);
        dynasmrt::cache_control::synchronize_icache(&buf[..bytes.len()]);
        let buffer = buf
            .make_exec()
            .map_err(|e| format!("making code memory executable: {e}"))?;
        Ok(CodePages { buffer })
    }

    /// Address of byte `offset` of the code.
    pub fn addr(&self, offset: usize) -> usize {
        self.buffer.ptr(dynasmrt::AssemblyOffset(offset)) as usize
    }

    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }
}
