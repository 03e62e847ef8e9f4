//! A test backend: runs each section with the interpreter's `Machine` directly on the
//! executor's memory, through the raw addresses compiled code would get. With it the
//! executor (memory plan, addresses, chunking, barriers) is checked against the
//! interpreter, whose buffers are separate `Vec`s, without a JIT.

#![allow(unsafe_code)] // the test backend reads and writes through raw addresses

use bfly_ir::DType;
use bfly_ir::kernel::{BodyId, KernelProgram};
use bfly_targets::exec::{ExecError, SectionRunner, Val};
use bfly_targets::interp::{Machine, Memory};
use bfly_targets::reference::Tensor;
use half::f16;
use std::sync::{Arc, Mutex};

/// Element access through the addresses the executor passes.
struct RawMemory<'a> {
    args: &'a [usize],
    dtypes: Vec<DType>,
}

impl RawMemory<'_> {
    fn addr(&self, arg: u32, index: i64) -> Result<(usize, DType), ExecError> {
        let dtype = self.dtypes[arg as usize];
        let off = usize::try_from(index).map_err(|_| ExecError::new("negative index"))?;
        Ok((self.args[arg as usize] + off * dtype.size_bytes(), dtype))
    }
}

impl Memory for RawMemory<'_> {
    fn load(&mut self, arg: u32, index: i64) -> Result<Val, ExecError> {
        let (a, dtype) = self.addr(arg, index)?;
        // SAFETY: the executor passes addresses of buffers sized for every index the
        // program uses; each test program first runs on the bounds-checked interpreter.
        Ok(unsafe {
            match dtype {
                DType::F32 => Val::F((a as *const f32).read_unaligned()),
                DType::F16 => Val::F((a as *const f16).read_unaligned().to_f32()),
                DType::I8 => Val::I(i64::from((a as *const i8).read_unaligned())),
                DType::I32 => Val::I(i64::from((a as *const i32).read_unaligned())),
            }
        })
    }

    fn store(&mut self, arg: u32, index: i64, value: Val) -> Result<(), ExecError> {
        let (a, dtype) = self.addr(arg, index)?;
        // SAFETY: as for `load`.
        unsafe {
            match (dtype, value) {
                (DType::F32, Val::F(v)) => (a as *mut f32).write_unaligned(v),
                (DType::F16, Val::F(v)) => (a as *mut f16).write_unaligned(f16::from_f32(v)),
                (DType::I8, Val::I(v)) => (a as *mut i8).write_unaligned(v as i8),
                (DType::I32, Val::I(v)) => (a as *mut i32).write_unaligned(v as i32),
                _ => return Err(ExecError::new("store of the wrong type")),
            }
        }
        Ok(())
    }
}

/// Runs sections with the interpreter's machine over raw memory; records every call.
pub struct RawRunner {
    pub program: Arc<KernelProgram>,
    pub calls: Mutex<Vec<(BodyId, usize, i64, i64)>>,
    /// Panic in calls with `lo > 0` (a backend bug on a worker thread).
    pub panic_on_worker_chunk: bool,
}

impl RawRunner {
    pub fn new(program: &Arc<KernelProgram>) -> Arc<RawRunner> {
        Arc::new(RawRunner {
            program: Arc::clone(program),
            calls: Mutex::new(Vec::new()),
            panic_on_worker_chunk: false,
        })
    }
}

impl SectionRunner for RawRunner {
    fn name(&self) -> String {
        "raw interpreter".into()
    }

    unsafe fn run_section(
        &self,
        body: BodyId,
        section: usize,
        args: &[usize],
        syms: &[i64; 3],
        lo: i64,
        hi: i64,
    ) {
        if self.panic_on_worker_chunk && lo > 0 {
            panic!("test backend failure");
        }
        self.calls.lock().unwrap().push((body, section, lo, hi));
        let b = self.program.body(body);
        let mut mem = RawMemory {
            args,
            dtypes: b.params.iter().map(|p| p.dtype).collect(),
        };
        let mut m = Machine::new(b, *syms);
        if let Err(e) = m.run_section(section, lo, hi, &mut mem) {
            panic!("section {section} of {body}: {e}");
        }
    }
}

/// Every output's elements as bits, for bit-exact comparisons.
pub fn bits(ts: &[Tensor]) -> Vec<Vec<u64>> {
    ts.iter()
        .map(|t| match (t.floats(), t.ints()) {
            (Some(f), _) => f.iter().map(|x| x.to_bits()).collect(),
            (_, Some(i)) => i.iter().map(|&x| x as u64).collect(),
            _ => vec![],
        })
        .collect()
}
