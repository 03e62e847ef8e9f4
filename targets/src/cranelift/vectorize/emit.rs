//! 4-lane code for a vectorizable `vector for`: the unrolled main loop with vector
//! accumulators, the single-vector loop, the horizontal reductions and the scalar tail.

use super::analyze::reduction_of;
use super::{Plan, Shape};
use crate::cranelift::f16;
use crate::cranelift::lower::{LResult, Lower, data_flags, float_cc};
use crate::cranelift::math::{self, Helper, Lanes};
use bfly_ir::DType;
use bfly_ir::kernel::{BinOp, Expr, LoopVar, Stmt, UnOp};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, MemFlagsData, Type, Value, types};
use cranelift_frontend::Variable;

/// A value during vector emission.
enum VV {
    /// A scalar: uniform f32/int, or lane 0 of an affine int.
    Uni(Value),
    Vec(Value),
    Mask(Value),
    Lanes(Value),
}

fn bug(e: impl std::fmt::Display) -> String {
    format!("vectorizer: unexpected shape ({e})")
}

fn vector_flags() -> MemFlagsData {
    // Not `aligned`: vectors start at any element, and an aligned flag would let the
    // backend fold the load into an instruction that faults on unaligned addresses.
    MemFlagsData::new().with_notrap()
}

fn identity(op: BinOp) -> f32 {
    match op {
        BinOp::Max => f32::NEG_INFINITY,
        BinOp::Min => f32::INFINITY,
        _ => -0.0,
    }
}

fn reduce_op(lw: &mut Lower, op: BinOp, a: Value, b: Value) -> Value {
    match op {
        BinOp::Max => lw.b.ins().fmax(a, b),
        BinOp::Min => lw.b.ins().fmin(a, b),
        _ => lw.b.ins().fadd(a, b),
    }
}

pub(super) fn emit(
    lw: &mut Lower,
    plan: &Plan,
    start: Value,
    end: Value,
    trips: Option<i64>,
    body: &[Stmt],
) -> LResult<()> {
    let unroll: i64 = match (plan.reductions.is_empty(), trips) {
        (true, Some(t)) if t < 16 => 1,
        (true, _) if is_small_copy(body) => 4,
        (true, _) => 1,
        (false, Some(t)) if t < 8 => 1,
        (false, Some(t)) if t < 16 => 2,
        (false, _) => 4,
    };
    // Vector-mode variables for the loop's own locals and the loop var (lane 0).
    let mut saved = Vec::new();
    for (&l, &sh) in &plan.inner {
        saved.push((l, lw.local(l)));
        let ty = match sh {
            Shape::VecF => types::F32X4,
            Shape::UniF => types::F32,
            _ => types::I64,
        };
        let v = lw.b.declare_var(ty);
        lw.set_local(l, Some((v, ty)));
    }
    let lane0 = lw.b.declare_var(types::I64);
    let saved_var = lw.vars.get(plan.var.0 as usize).copied().flatten();
    set_var(lw, plan.var, Some(lane0));
    let mut partials: Vec<Vec<Variable>> = Vec::new();
    for r in &plan.reductions {
        let id = lw.b.ins().f32const(identity(r.op));
        let id = lw.b.ins().splat(types::F32X4, id);
        let vars = (0..unroll)
            .map(|_| {
                let v = lw.b.declare_var(types::F32X4);
                lw.b.def_var(v, id);
                v
            })
            .collect();
        partials.push(vars);
    }

    let iv = lw.b.declare_var(types::I64);
    lw.b.def_var(iv, start);
    let n = lw.b.ins().isub(end, start);
    let step = 4 * unroll;
    let main_n = lw.b.ins().band_imm_s(n, -step);
    let main_end = lw.b.ins().iadd(start, main_n);
    let main_trips = trips.map(|t| t / step);
    lw.counted_loop(iv, main_end, step, main_trips, &mut |lw, v| {
        for k in 0..unroll {
            let lane = lw.b.ins().iadd_imm_s(v, 4 * k);
            lw.b.def_var(lane0, lane);
            emit_body(lw, plan, body, &partials, k as usize)?;
        }
        Ok(())
    })?;
    if unroll > 1 {
        let vec_n = lw.b.ins().band_imm_s(n, -4);
        let vec_end = lw.b.ins().iadd(start, vec_n);
        let vec_trips = trips.map(|t| (t % step) / 4);
        lw.counted_loop(iv, vec_end, 4, vec_trips, &mut |lw, v| {
            lw.b.def_var(lane0, v);
            emit_body(lw, plan, body, &partials, 0)
        })?;
    }
    for (r, parts) in plan.reductions.iter().zip(&partials) {
        // Pairwise: (p0 op p1) op (p2 op p3).
        let mut vals: Vec<Value> = parts.iter().map(|&p| lw.b.use_var(p)).collect();
        while vals.len() > 1 {
            let mut next = Vec::with_capacity(vals.len().div_ceil(2));
            let mut it = vals.into_iter();
            while let Some(a) = it.next() {
                next.push(match it.next() {
                    Some(b) => reduce_op(lw, r.op, a, b),
                    None => a,
                });
            }
            vals = next;
        }
        let v = *vals.first().ok_or_else(|| bug("no accumulators"))?;
        let lanes: Vec<Value> = (0..4u8).map(|i| lw.b.ins().extractlane(v, i)).collect();
        let lo = reduce_op(lw, r.op, lanes[0], lanes[1]);
        let hi = reduce_op(lw, r.op, lanes[2], lanes[3]);
        let total = reduce_op(lw, r.op, lo, hi);
        let (acc, _) = lw.local(r.local).ok_or_else(|| bug("accumulator"))?;
        let cur = lw.b.use_var(acc);
        let new = reduce_op(lw, r.op, cur, total);
        lw.b.def_var(acc, new);
    }
    // Back to scalar variables for the tail.
    for (l, slot) in saved {
        lw.set_local(l, slot);
    }
    set_var(lw, plan.var, saved_var);
    let scalar_var = lw.var_variable(plan.var);
    let at = lw.b.use_var(iv);
    lw.b.def_var(scalar_var, at);
    let tail_trips = trips.map(|t| t % 4);
    lw.counted_loop(scalar_var, end, 1, tail_trips, &mut |lw, _| lw.stmts(body))
}

/// Float operations a body may do per element and still count as a copy loop.
const COPY_OPS: usize = 3;

/// A body of stores only, each of a few float operations (a copy, a concat, an elementwise
/// add or scale): one 16-byte vector per iteration leaves such loops bound by the loop
/// overhead, so they are unrolled 4× (64 bytes per iteration, like `memcpy`). Bigger bodies
/// are bound by their arithmetic and only grow.
fn is_small_copy(body: &[Stmt]) -> bool {
    /// Float operations of `e`, `None` past the limit or for anything but loads,
    /// arithmetic and sign operations.
    fn ops(e: &Expr, budget: usize) -> Option<usize> {
        let used = match e {
            Expr::Load { .. } | Expr::Local(_) | Expr::F32(_) => 1,
            Expr::Bin(_, a, b) => {
                let x = ops(a, budget.checked_sub(1)?)?;
                1 + x + ops(b, budget.checked_sub(1 + x)?)?
            }
            Expr::Un(UnOp::Neg | UnOp::Abs, a) => 1 + ops(a, budget.checked_sub(1)?)?,
            _ => return None,
        };
        (used <= budget).then_some(used)
    }
    let mut budget = 2 * COPY_OPS;
    body.len() <= 2
        && body.iter().all(|s| match s {
            Stmt::Store { value, .. } => ops(value, budget).is_some_and(|n| {
                budget -= n;
                true
            }),
            _ => false,
        })
}

fn set_var(lw: &mut Lower, v: LoopVar, var: Option<Variable>) {
    let i = v.0 as usize;
    if lw.vars.len() <= i {
        lw.vars.resize(i + 1, None);
    }
    lw.vars[i] = var;
}

/// One vector iteration (copy `k` of the unrolled body) at the lane-0 index in the loop
/// var's variable.
fn emit_body(
    lw: &mut Lower,
    plan: &Plan,
    body: &[Stmt],
    partials: &[Vec<Variable>],
    k: usize,
) -> LResult<()> {
    for s in body {
        match s {
            Stmt::Let { local, value } | Stmt::Assign { local, value }
                if plan.inner.contains_key(local) =>
            {
                let (var, ty) = lw.local(*local).ok_or_else(|| bug(local))?;
                let v = match vexpr(lw, plan, value)? {
                    VV::Uni(v) if ty == types::F32X4 => lw.b.ins().splat(types::F32X4, v),
                    VV::Uni(v) | VV::Vec(v) => v,
                    _ => return Err(bug("local value")),
                };
                lw.b.def_var(var, v);
            }
            Stmt::Assign { local, value } => {
                let i = plan
                    .reductions
                    .iter()
                    .position(|r| r.local == *local)
                    .ok_or_else(|| bug(local))?;
                let (op, e) = reduction_of(*local, value).ok_or_else(|| bug("reduction"))?;
                let x = vec_of(lw, plan, e)?;
                let p = partials[i][k];
                let cur = lw.b.use_var(p);
                let new = reduce_op(lw, op, cur, x);
                lw.b.def_var(p, new);
            }
            Stmt::Store { arg, index, value } => {
                let rel = lane_offsets(plan, index)?;
                let idx = lw.int_expr(index)?;
                let v = vec_of(lw, plan, value)?;
                store(lw, *arg, idx, rel, v)?;
            }
            Stmt::For { .. } | Stmt::If { .. } | Stmt::Let { .. } => {
                return Err(bug("statement"));
            }
        }
    }
    Ok(())
}

/// An f32 value as a vector (splatting a uniform one).
fn vec_of(lw: &mut Lower, plan: &Plan, e: &Expr) -> LResult<Value> {
    match vexpr(lw, plan, e)? {
        VV::Vec(v) => Ok(v),
        VV::Uni(v) if lw.ty(v) == types::F32 => Ok(lw.b.ins().splat(types::F32X4, v)),
        _ => Err(bug("f32 operand")),
    }
}

fn vexpr(lw: &mut Lower, plan: &Plan, e: &Expr) -> LResult<VV> {
    if matches!(plan.shape(e).map_err(bug)?, Shape::UniF | Shape::Int(_)) {
        return Ok(VV::Uni(lw.expr(e)?));
    }
    Ok(match e {
        Expr::Local(l) => {
            let (var, _) = lw.local(*l).ok_or_else(|| bug(l))?;
            VV::Vec(lw.b.use_var(var))
        }
        Expr::Load { arg, index } => {
            let rel = lane_offsets(plan, index)?;
            let idx = lw.int_expr(index)?;
            load(lw, *arg, idx, rel)?
        }
        Expr::Bin(op @ (BinOp::Lt | BinOp::Le | BinOp::Eq), a, b)
            if matches!(plan.shape(a).map_err(bug)?, Shape::Int(_)) =>
        {
            VV::Mask(int_compare(lw, plan, *op, a, b)?)
        }
        Expr::Bin(op, a, b) => {
            let x = vec_of(lw, plan, a)?;
            let y = vec_of(lw, plan, b)?;
            let ins = lw.b.ins();
            match op {
                BinOp::Add => VV::Vec(ins.fadd(x, y)),
                BinOp::Sub => VV::Vec(ins.fsub(x, y)),
                BinOp::Mul => VV::Vec(ins.fmul(x, y)),
                BinOp::Div => VV::Vec(ins.fdiv(x, y)),
                BinOp::Min => VV::Vec(ins.fmin(x, y)),
                BinOp::Max => VV::Vec(ins.fmax(x, y)),
                BinOp::Lt | BinOp::Le | BinOp::Eq => VV::Mask(ins.fcmp(float_cc(*op), x, y)),
                BinOp::Rem => return Err(bug("%")),
            }
        }
        Expr::Un(UnOp::ToF32, a) => VV::Vec(to_f32(lw, plan, a)?),
        Expr::Un(op, a) => {
            let x = vec_of(lw, plan, a)?;
            VV::Vec(match op {
                UnOp::Neg => lw.b.ins().fneg(x),
                UnOp::Abs => lw.b.ins().fabs(x),
                UnOp::Sqrt => lw.b.ins().sqrt(x),
                UnOp::Round => lw.b.ins().nearest(x),
                UnOp::Exp => math::exp(&mut lw.b, Lanes::Four, x),
                UnOp::Tanh => math::tanh(&mut lw.b, Lanes::Four, x),
                UnOp::Sin | UnOp::Cos => lw.sin_cos4(*op, x)?,
                UnOp::Log => per_lane_call(lw, Helper::Log, x),
                UnOp::ToF32 | UnOp::ToInt => return Err(bug("conversion")),
            })
        }
        Expr::Select { cond, then, els } => {
            let t = vec_of(lw, plan, then)?;
            let f = vec_of(lw, plan, els)?;
            match vexpr(lw, plan, cond)? {
                VV::Uni(c) => VV::Vec(lw.b.ins().select(c, t, f)),
                VV::Mask(m) => {
                    let m = lw.b.ins().bitcast(types::F32X4, MemFlagsData::new(), m);
                    VV::Vec(lw.b.ins().bitselect(m, t, f))
                }
                _ => return Err(bug("select condition")),
            }
        }
        Expr::F32(_) | Expr::Int(_) | Expr::Var(_) | Expr::Sym(_) => return Err(bug("leaf")),
    })
}

/// Lane l's offset from lane 0 of an int expression (an index).
fn lane_offsets(plan: &Plan, e: &Expr) -> LResult<[i64; 4]> {
    match plan.shape(e).map_err(bug)? {
        Shape::Int(x) => Ok(x.rel),
        _ => Err(bug("index")),
    }
}

/// A constant `I32X4`.
fn i32x4(lw: &mut Lower, v: [i64; 4]) -> Value {
    let z = lw.b.ins().iconst(types::I32, v[0]);
    let mut r = lw.b.ins().splat(types::I32X4, z);
    for (l, &x) in v.iter().enumerate().skip(1) {
        let k = lw.b.ins().iconst(types::I32, x);
        r = lw.b.ins().insertlane(r, k, l as u8);
    }
    r
}

/// `a op b` per lane for ints known per lane (e.g. a one-hot `i == target`), as an `I32X4`
/// mask.
///
/// With d = a - b, lane l compares d₀ + step[l] with 0 (|step| ≤ 2^26, checked by the
/// analysis). d₀ is clamped to ±2^30 first so the lanes fit in i32: when |d₀| > 2^30 every
/// lane has d₀'s sign and is nonzero before and after the clamp, so no comparison changes.
fn int_compare(lw: &mut Lower, plan: &Plan, op: BinOp, a: &Expr, b: &Expr) -> LResult<Value> {
    let (ra, rb) = (lane_offsets(plan, a)?, lane_offsets(plan, b)?);
    let x = lw.expr(a)?;
    let y = lw.expr(b)?;
    let d = lw.b.ins().isub(x, y);
    let lim = lw.b.ins().iconst(types::I64, 1 << 30);
    let neg = lw.b.ins().iconst(types::I64, -(1 << 30));
    let d = lw.b.ins().smin(d, lim);
    let d = lw.b.ins().smax(d, neg);
    let d = lw.b.ins().ireduce(types::I32, d);
    let lanes = lw.b.ins().splat(types::I32X4, d);
    let steps = i32x4(lw, [0, ra[1] - rb[1], ra[2] - rb[2], ra[3] - rb[3]]);
    let lanes = lw.b.ins().iadd(lanes, steps);
    let zero = i32x4(lw, [0; 4]);
    let cc = match op {
        BinOp::Lt => IntCC::SignedLessThan,
        BinOp::Le => IntCC::SignedLessThanOrEqual,
        _ => IntCC::Equal,
    };
    Ok(lw.b.ins().icmp(cc, lanes, zero))
}

/// `f32()` of per-lane ints, a mask, or an int known per lane.
fn to_f32(lw: &mut Lower, plan: &Plan, a: &Expr) -> LResult<Value> {
    Ok(match vexpr(lw, plan, a)? {
        VV::Lanes(v) => lw.b.ins().fcvt_from_sint(types::F32X4, v),
        VV::Mask(m) => {
            let one = lw.b.ins().f32const(1.0);
            let one = lw.b.ins().splat(types::F32X4, one);
            let one = lw.b.ins().bitcast(types::I32X4, MemFlagsData::new(), one);
            let r = lw.b.ins().band(m, one);
            lw.b.ins().bitcast(types::F32X4, MemFlagsData::new(), r)
        }
        VV::Uni(base) => {
            // Lane l holds base + rel[l]: convert each (rounds like the scalar code).
            let rel = lane_offsets(plan, a)?;
            let f0 = lw.b.ins().fcvt_from_sint(types::F32, base);
            let mut v = lw.b.ins().splat(types::F32X4, f0);
            for (l, &r) in rel.iter().enumerate().skip(1) {
                let x = lw.b.ins().iadd_imm_s(base, r);
                let f = lw.b.ins().fcvt_from_sint(types::F32, x);
                v = lw.b.ins().insertlane(v, f, l as u8);
            }
            v
        }
        VV::Vec(_) => return Err(bug("f32() of f32")),
    })
}

fn per_lane_call(lw: &mut Lower, h: Helper, x: Value) -> Value {
    let mut r = x;
    for l in 0..4u8 {
        let xi = lw.b.ins().extractlane(x, l);
        let yi = lw.call_helper(h, xi);
        r = lw.b.ins().insertlane(r, yi, l);
    }
    r
}

/// Byte offsets of the 4 lanes from lane 0's element.
fn byte_offsets(rel: [i64; 4], size: usize) -> [i64; 4] {
    rel.map(|r| r.wrapping_mul(size as i64))
}

/// Four scalar loads at byte offsets `off` from `addr`, as one vector of `vty` (`load` turns
/// each scalar into the lane type).
fn gather(
    lw: &mut Lower,
    addr: Value,
    off: [i64; 4],
    vty: Type,
    load: &dyn Fn(&mut Lower, Value, i32) -> Value,
) -> Value {
    let x0 = at_offset(lw, addr, off[0], load);
    let mut v = lw.b.ins().splat(vty, x0);
    for (l, &o) in off.iter().enumerate().skip(1) {
        let x = at_offset(lw, addr, o, load);
        v = lw.b.ins().insertlane(v, x, l as u8);
    }
    v
}

/// `access(addr, o)` with `o` as the instruction's offset when it fits, else added first.
fn at_offset<T>(
    lw: &mut Lower,
    addr: Value,
    o: i64,
    access: &dyn Fn(&mut Lower, Value, i32) -> T,
) -> T {
    match i32::try_from(o) {
        Ok(o) => access(lw, addr, o),
        Err(_) => {
            let a = lw.b.ins().iadd_imm_s(addr, o);
            access(lw, a, 0)
        }
    }
}

/// Loads the 4 lanes' elements: lane l at lane-0 index `idx` + `rel[l]` (not all equal).
fn load(lw: &mut Lower, arg: u32, idx: Value, rel: [i64; 4]) -> LResult<VV> {
    let dtype = lw.param_dtype(arg)?;
    let addr = lw.addr(arg, idx)?;
    let off = byte_offsets(rel, dtype.size_bytes());
    let contiguous = rel == [0, 1, 2, 3];
    let (vf, sf) = (vector_flags(), data_flags());
    Ok(match dtype {
        DType::F32 if contiguous => VV::Vec(lw.b.ins().load(types::F32X4, vf, addr, 0)),
        DType::F32 if rel == [0, 2, 4, 6] => VV::Vec(load_stride2(lw, addr)),
        DType::F32 => VV::Vec(gather(lw, addr, off, types::F32X4, &|lw, a, o| {
            lw.b.ins().load(types::F32, sf, a, o)
        })),
        DType::F16 => {
            let bits = if contiguous {
                lw.b.ins().uload16x4(vf, addr, 0)
            } else {
                gather(lw, addr, off, types::I32X4, &|lw, a, o| {
                    lw.b.ins().uload16(types::I32, sf, a, o)
                })
            };
            VV::Vec(f16::to_f32(&mut lw.b, Lanes::Four, bits))
        }
        DType::I32 if contiguous => VV::Lanes(lw.b.ins().load(types::I32X4, vf, addr, 0)),
        DType::I32 => VV::Lanes(gather(lw, addr, off, types::I32X4, &|lw, a, o| {
            lw.b.ins().load(types::I32, sf, a, o)
        })),
        DType::I8 => VV::Lanes(gather(lw, addr, off, types::I32X4, &|lw, a, o| {
            lw.b.ins().sload8(types::I32, sf, a, o)
        })),
    })
}

/// Flags for a bitcast between vector types of different lane counts (Cranelift requires
/// an explicit byte order there).
fn lane_cast() -> MemFlagsData {
    MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little)
}

/// Lanes `addr[0], addr[2], addr[4], addr[6]` (f32) de-interleaved from two vector loads,
/// `addr[0..4]` and `addr[3..7]`, by one shuffle (`shufps` on x86, `uzp1`-like on aarch64)
/// instead of four scalar loads and inserts: e.g. rope's interleaved cos/sin table. The
/// second load starts at element 3, not 4, so no byte past lane 3's element is read.
fn load_stride2(lw: &mut Lower, addr: Value) -> Value {
    let vf = vector_flags();
    let a = lw.b.ins().load(types::F32X4, vf, addr, 0);
    let b = lw.b.ins().load(types::F32X4, vf, addr, 12);
    let a = lw.b.ins().bitcast(types::I8X16, lane_cast(), a);
    let b = lw.b.ins().bitcast(types::I8X16, lane_cast(), b);
    // Bytes of a's lanes 0, 2 then b's lanes 1, 3 (b's bytes are numbered 16..31).
    let mut mask = [0u8; 16];
    for (l, src) in [0u8, 2, 5, 7].iter().enumerate() {
        for k in 0..4 {
            mask[4 * l + k as usize] = 4 * src + k;
        }
    }
    let mask = lw.b.func.dfg.immediates.push(mask.to_vec().into());
    let v = lw.b.ins().shuffle(a, b, mask);
    lw.b.ins().bitcast(types::F32X4, lane_cast(), v)
}

/// Stores 4 f32 lanes: lane l at lane-0 index `idx` + `rel[l]`. Contiguous lanes are one
/// vector store; other patterns (butterfly pairs, strides) store lane by lane, in lane order.
fn store(lw: &mut Lower, arg: u32, idx: Value, rel: [i64; 4], v: Value) -> LResult<()> {
    let dtype = lw.param_dtype(arg)?;
    let addr = lw.addr(arg, idx)?;
    let off = byte_offsets(rel, dtype.size_bytes());
    let contiguous = rel == [0, 1, 2, 3];
    let sf = data_flags();
    match dtype {
        DType::F32 if contiguous => {
            lw.b.ins().store(vector_flags(), v, addr, 0);
        }
        DType::F32 => {
            for (l, &o) in off.iter().enumerate() {
                let x = lw.b.ins().extractlane(v, l as u8);
                at_offset(lw, addr, o, &|lw, a, o| {
                    lw.b.ins().store(sf, x, a, o);
                });
            }
        }
        DType::F16 => {
            let bits = f16::from_f32(&mut lw.b, Lanes::Four, v);
            for (l, &o) in off.iter().enumerate() {
                let h = lw.b.ins().extractlane(bits, l as u8);
                at_offset(lw, addr, o, &|lw, a, o| {
                    lw.b.ins().istore16(sf, h, a, o);
                });
            }
        }
        DType::I8 | DType::I32 => return Err(bug("int store")),
    }
    Ok(())
}
