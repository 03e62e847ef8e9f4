//! NEON translation of a store [`Template`]: one row of four (or 1..3) consecutive columns
//! per call, the value computed on whole vectors, constants kept in registers.
//!
//! `exp` is the shared `neon_math::exp_4s` (Cephes `expf`, the operations of Cranelift's
//! inline `exp`, ≈1 ulp); `tanh(x) = sign(x)·(1 − e)/(1 + e)` with `e = exp(−2|x|)`
//! (absolute error ≈1e-7 near 0, exactly ±1 in the tails, NaN propagates).

use super::intexpr::{IntEnv, emit_int};
use super::template::{FBin, FUn, Index, Node, Template};
use crate::aarch64::emit::{ARGS, Asm, V, Width, X};
use crate::aarch64::kernels::neon_math::{EXP_CONST_REGS, ExpConsts, exp_4s};
use bfly_ir::kernel::LoopVar;

/// Free vector registers.
pub struct VPool {
    free: Vec<V>,
    taken: usize,
    high: usize,
}

impl VPool {
    pub fn new(regs: impl IntoIterator<Item = V>) -> VPool {
        let mut free: Vec<V> = regs.into_iter().collect();
        free.reverse();
        VPool {
            free,
            taken: 0,
            high: 0,
        }
    }

    pub fn take(&mut self) -> Result<V, String> {
        let v = self
            .free
            .pop()
            .ok_or_else(|| "the epilogue needs more vector registers".to_string())?;
        self.taken += 1;
        self.high = self.high.max(self.taken);
        Ok(v)
    }

    pub fn put(&mut self, v: V) {
        self.taken -= 1;
        self.free.push(v);
    }

    /// Most registers taken at once.
    pub fn high_water(&self) -> usize {
        self.high
    }
}

/// f32 constants held in registers for a whole epilogue: `exp`'s block (when the value
/// uses `exp` or `tanh`) in `v19..v31`, the others below it. A collecting instance (for a
/// dry run) records what is asked for and hands out stand-in registers (nothing is emitted).
pub struct Consts {
    regs: Vec<(u32, V)>,
    collected: Option<Vec<u32>>,
    exp_first: Option<u32>,
    exp: Option<ExpConsts>,
}

impl Consts {
    pub fn collector(uses_exp: bool) -> Consts {
        Consts {
            regs: Vec::new(),
            collected: Some(Vec::new()),
            exp_first: uses_exp.then_some(32 - EXP_CONST_REGS),
            exp: None,
        }
    }

    /// The constants a dry run collected, in the registers below `exp`'s block.
    pub fn assigned(dry: &Consts) -> Consts {
        let top = dry.exp_first.unwrap_or(32);
        Consts {
            regs: dry
                .collected()
                .iter()
                .enumerate()
                .map(|(i, &b)| (b, V(top - 1 - i as u32)))
                .collect(),
            collected: None,
            exp_first: dry.exp_first,
            exp: None,
        }
    }

    pub fn collected(&self) -> Vec<u32> {
        self.collected.clone().unwrap_or_default()
    }

    /// Registers the constants occupy (`v(32 − count)..v31`).
    pub fn count(&self) -> usize {
        let exp = if self.exp_first.is_some() {
            EXP_CONST_REGS as usize
        } else {
            0
        };
        exp + self
            .regs
            .len()
            .max(self.collected.as_ref().map_or(0, Vec::len))
    }

    pub fn get(&mut self, value: f32) -> Result<V, String> {
        let bits = value.to_bits();
        if let Some(c) = &mut self.collected {
            if !c.contains(&bits) {
                c.push(bits);
            }
            return Ok(V(31));
        }
        self.regs
            .iter()
            .find(|(b, _)| *b == bits)
            .map(|&(_, v)| v)
            .ok_or_else(|| format!("constant {value:?} was not collected"))
    }

    fn exp_consts(&self) -> Result<ExpConsts, String> {
        self.exp
            .ok_or_else(|| "exp constants are not loaded".to_string())
    }

    /// Materializes every constant (uses `x17`).
    pub fn load(&mut self, a: &mut Asm) {
        for &(bits, v) in &self.regs {
            a.const_4s(v, f32::from_bits(bits));
        }
        if let Some(first) = self.exp_first {
            self.exp = Some(ExpConsts::load(a, first));
        }
    }
}

/// Where one row's epilogue runs: the row var and its register, the first column, integer
/// temporaries (at least 4) and how many columns are stored.
pub struct RowCtx<'a> {
    pub row_var: LoopVar,
    pub row: X,
    pub col: X,
    pub xt: &'a [X],
    pub lanes: u8,
}

/// `addr = &param[index(row, col)]` in `cx.xt[0]`.
fn address(a: &mut Asm, param: u32, at: &Index, cx: &RowCtx) -> Result<X, String> {
    let [addr, base, rest @ ..] = cx.xt else {
        return Err("too few integer temporaries".into());
    };
    let env = IntEnv {
        var: Some((cx.row_var, cx.row)),
    };
    emit_int(a, &at.row, *addr, env, rest)?;
    if at.along_col {
        a.add(*addr, *addr, cx.col);
    }
    if at.off > 0 {
        a.add_imm(*addr, *addr, at.off as u64);
    } else if at.off < 0 {
        a.sub_imm(*addr, *addr, at.off.unsigned_abs());
    }
    a.ldr_x(*base, ARGS, 8 * param);
    a.add_lsl(*addr, *base, *addr, 2);
    Ok(*addr)
}

fn load(a: &mut Asm, d: V, param: u32, at: &Index, cx: &RowCtx) -> Result<(), String> {
    let addr = address(a, param, at, cx)?;
    if !at.along_col {
        a.ld1r_4s(d, addr, false);
    } else if cx.lanes == 4 {
        a.ldr(Width::Q, d, addr, 0);
    } else {
        a.zero(d);
        for l in 0..cx.lanes {
            if l > 0 {
                a.add_imm(addr, addr, 4);
            }
            a.ld1_lane_s(d, l, addr);
        }
    }
    Ok(())
}

fn store(a: &mut Asm, v: V, param: u32, at: &Index, cx: &RowCtx) -> Result<(), String> {
    let addr = address(a, param, at, cx)?;
    if cx.lanes == 4 {
        a.str(Width::Q, v, addr, 0);
    } else {
        for l in 0..cx.lanes {
            if l > 0 {
                a.add_imm(addr, addr, 4);
            }
            a.st1_lane_s(v, l, addr);
        }
    }
    Ok(())
}

/// `e^x` into a fresh register (`x` is kept): the shared sequence of `neon_math`, the same
/// operations as Cranelift's inline `exp`.
fn exp(a: &mut Asm, k: &mut Consts, pool: &mut VPool, x: V) -> Result<V, String> {
    let c = k.exp_consts()?;
    let d = pool.take()?;
    let t = [pool.take()?, pool.take()?, pool.take()?];
    a.mov_v(d, x);
    exp_4s(a, &c, d, t);
    for r in t {
        pool.put(r);
    }
    Ok(d)
}

/// `tanh x` into a fresh register (`x` is kept).
fn tanh(a: &mut Asm, k: &mut Consts, pool: &mut VPool, x: V) -> Result<V, String> {
    let t = pool.take()?;
    a.fabs_4s(t, x);
    a.fmul_4s(t, t, k.get(-2.0)?);
    let e = exp(a, k, pool, t)?;
    pool.put(t);
    let num = pool.take()?;
    let one = k.get(1.0)?;
    a.fsub_4s(num, one, e);
    a.fadd_4s(e, one, e);
    a.fdiv_4s(num, num, e);
    a.and_16b(e, x, k.get(-0.0)?);
    a.orr_16b(num, num, e);
    pool.put(e);
    Ok(num)
}

/// Emits one row: `acc` (a register taken from `pool`) holds the dot products of columns
/// `col..col + 4`; computes the template's value and stores `cx.lanes` of them. Every
/// register taken (and `acc`) is back in `pool` afterwards.
pub fn emit_row(
    a: &mut Asm,
    t: &Template,
    acc: V,
    pool: &mut VPool,
    k: &mut Consts,
    cx: &RowCtx,
) -> Result<(), String> {
    let n = t.nodes.len();
    let mut last = vec![usize::MAX; n];
    for (i, node) in t.nodes.iter().enumerate() {
        match node {
            Node::Bin(_, l, r) => {
                last[*l] = i;
                last[*r] = i;
            }
            Node::Un(_, c) => last[*c] = i,
            _ => {}
        }
    }
    last[t.value] = n;
    let mut regs: Vec<Option<V>> = vec![None; n];
    let is_const = |i: usize| matches!(t.nodes[i], Node::Const(_));
    let mut acc_used = false;
    // Frees the children of node `i` whose last use it is.
    let release = |pool: &mut VPool, regs: &mut [Option<V>], i: usize, kids: &[usize]| {
        for (j, &c) in kids.iter().enumerate() {
            if last[c] == i
                && !is_const(c)
                && !kids[..j].contains(&c)
                && let Some(v) = regs[c].take()
            {
                pool.put(v);
            }
        }
    };
    for i in 0..n {
        let v = match &t.nodes[i] {
            Node::Acc => {
                acc_used = true;
                acc
            }
            Node::Const(b) => k.get(f32::from_bits(*b))?,
            Node::Load { param, at } => {
                let d = pool.take()?;
                load(a, d, *param, at, cx)?;
                d
            }
            Node::Bin(op, l, r) => {
                let (vl, vr) = (reg(&regs, *l)?, reg(&regs, *r)?);
                release(pool, &mut regs, i, &[*l, *r]);
                let d = pool.take()?;
                match op {
                    FBin::Add => a.fadd_4s(d, vl, vr),
                    FBin::Sub => a.fsub_4s(d, vl, vr),
                    FBin::Mul => a.fmul_4s(d, vl, vr),
                    FBin::Div => a.fdiv_4s(d, vl, vr),
                }
                d
            }
            Node::Un(op, c) => {
                let x = reg(&regs, *c)?;
                let d = match op {
                    FUn::Exp => exp(a, k, pool, x)?,
                    FUn::Tanh => tanh(a, k, pool, x)?,
                    FUn::Neg | FUn::Abs | FUn::Sqrt => {
                        let d = pool.take()?;
                        match op {
                            FUn::Neg => a.fneg_4s(d, x),
                            FUn::Abs => a.fabs_4s(d, x),
                            _ => a.fsqrt_4s(d, x),
                        }
                        d
                    }
                };
                release(pool, &mut regs, i, &[*c]);
                d
            }
        };
        regs[i] = Some(v);
    }
    let value = reg(&regs, t.value)?;
    store(a, value, t.out, &t.out_at, cx)?;
    for (i, r) in regs.iter_mut().enumerate() {
        if let Some(v) = r.take()
            && !is_const(i)
        {
            pool.put(v);
        }
    }
    if !acc_used {
        pool.put(acc);
    }
    Ok(())
}

fn reg(regs: &[Option<V>], i: usize) -> Result<V, String> {
    regs.get(i)
        .copied()
        .flatten()
        .ok_or_else(|| format!("epilogue node {i} has no register"))
}
