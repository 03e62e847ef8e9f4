//! Kernel IR → plain Rust source: the LLVM baseline of `scripts/insn-count.sh`.
//!
//! Every section of every body a kernel runs becomes a Rust function with the section ABI
//! (`args`, `syms`, `lo`, `hi`; see `exec::runner`) whose loops are the body's loops, over
//! slices of the buffers, with the body's f32/int arithmetic and `f32::exp` & co. from std.
//! The file is a `cdylib` exporting `bfly_llvm_section(body, section, args, syms, lo, hi)`
//! and `bfly_llvm_fingerprint()`; compiled by rustc (`-C opt-level=3 -C
//! target-cpu=cortex-a78`), LLVM vectorizes the very loop nests the JIT compiles, so the
//! instruction counts compare code generators on one computation, not two algorithms.
//!
//! What the generated code may assume, and why it is still the same computation:
//! - slices are built at the planned sizes (the smallest over the kernels sharing the body)
//!   and indexed with `get_unchecked`: the executor and `verify_program` guarantee the
//!   bounds, as they do for the JIT, which checks nothing either. Writable params get
//!   `&mut` slices (no aliasing: `generate` rejects a kernel whose writable buffer overlaps
//!   another of its buffers), so LLVM needs no runtime alias checks.
//! - `vector for` reductions into an f32 local (`acc = acc + e`, `acc = max(acc, e)`) are
//!   reassociated into [`REDUCTION_LANES`] partial results, the freedom the IR grants
//!   (`LoopKind::Vector`) and the JIT takes; LLVM cannot reorder a float sum on its own.
//!   Int reductions are associative and left to LLVM.
//! - with `contract`, `a * b + c` inside one expression becomes `a.mul_add(b, c)` (also
//!   `c + a * b`, `a * b - c`, `c - a * b`): what clang does for C by default on aarch64
//!   (`-ffp-contract=on`), and what the microkernels' FMLA does. Without it every product
//!   is rounded, like Cranelift's code.
//! - int division and remainder are unsigned (the IR promises non-negative operands).
//! - f16 buffers hold `u16` bits, converted by [`F16_HELPERS`] (round to nearest even).

use crate::plan::{MemoryPlan, plan_memory};
use bfly_ir::DType;
use bfly_ir::kernel::{
    Access, BinOp, Body, BodyId, Expr, KernelProgram, Local, LoopKind, Scalar, Stmt, UnOp,
};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Partial results of a reassociated f32 reduction: 4 vectors of 4 lanes, what LLVM's own
/// vectorizer does (VF 4 × interleave 4) when a reduction may be reordered.
pub const REDUCTION_LANES: usize = 16;

/// Generation options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RustgenOptions {
    /// Fuse `a * b ± c` into `mul_add` (see the module doc).
    pub contract: bool,
}

impl Default for RustgenOptions {
    fn default() -> RustgenOptions {
        RustgenOptions { contract: true }
    }
}

/// A digest of the program and its memory plan; the generated library returns it so the
/// driver can refuse a library generated from another program.
pub fn fingerprint(program: &KernelProgram) -> Result<u64, String> {
    let plan = plan_memory(program)?;
    Ok(fnv1a(format!("{program:?}\n{plan:?}").as_bytes()))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Conversions between f16 bits and f32 (round to nearest even), as plain integer code.
pub const F16_HELPERS: &str = r#"
#[inline(always)]
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = if exp == 0x1f {
        sign | 0x7f80_0000 | (man << 13)
    } else if exp != 0 {
        sign | ((exp + 112) << 23) | (man << 13)
    } else if man == 0 {
        sign
    } else {
        // Subnormal: value = man · 2^-24, exact in f32.
        let v = (man as f32) * (1.0 / 16_777_216.0);
        return if sign != 0 { -v } else { v };
    };
    f32::from_bits(bits)
}

#[inline(always)]
fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x007f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x0080_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rest = m & ((1u32 << shift) - 1);
        let mut r = m >> shift;
        if rest > half || (rest == half && (r & 1) == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && (r & 1) == 1) {
        r += 1;
    }
    sign | r as u16
}
"#;

/// The Rust source of the baseline library for `program`.
pub fn generate(program: &KernelProgram, options: RustgenOptions) -> Result<String, String> {
    let plan = plan_memory(program)?;
    let fp = fingerprint(program)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "//! Generated by bfly_targets::rustgen from program @{} (fingerprint {fp:#018x}).\n\
         //! Plain Rust for every body section, compiled by LLVM: the baseline of\n\
         //! scripts/insn-count.sh. Do not edit.\n\
         #![allow(unused_mut, unused_variables, unused_parens, unused_assignments)]\n\
         #![allow(non_snake_case, clippy::all, dead_code)]\n",
        program.name
    );
    let _ = writeln!(
        out,
        "#[unsafe(no_mangle)]\npub extern \"C\" fn bfly_llvm_fingerprint() -> u64 {{\n    {fp:#018x}\n}}\n"
    );
    let mut dispatch = String::new();
    let mut functions = String::new();
    for (b, body) in program.bodies.iter().enumerate() {
        let id = BodyId(b as u32);
        let Some(lens) = param_lengths(program, &plan, id, body)? else {
            continue;
        };
        let users: Vec<&str> = program
            .kernels
            .iter()
            .filter(|k| k.body == id)
            .map(|k| k.name.as_str())
            .collect();
        let kind = program
            .kernels
            .iter()
            .find(|k| k.body == id)
            .map(|k| k.kind.to_string())
            .unwrap_or_default();
        for section in 0..body.num_sections() {
            let name = format!("b{b}_s{section}");
            let _ = writeln!(
                dispatch,
                "        ({b}, {section}) => {name}(args, syms, lo, hi),"
            );
            let f = SectionGen::new(body, options).function(&name, section, &lens)?;
            let _ = writeln!(
                functions,
                "/// body{b} section {section}: {kind} (kernels {})\n{f}",
                users.join(", ")
            );
        }
    }
    let _ = writeln!(
        out,
        "/// Runs section `section` of body `body` (0 = done, 1 = no such section).\n\
         ///\n\
         /// # Safety\n\
         /// The `SectionRunner::run_section` contract.\n\
         #[unsafe(no_mangle)]\n\
         pub unsafe extern \"C\" fn bfly_llvm_section(\n    body: u32,\n    section: u32,\n    \
         args: *const usize,\n    syms: *const i64,\n    lo: i64,\n    hi: i64,\n) -> i32 {{\n    \
         unsafe {{\n        match (body, section) {{\n{dispatch}            _ => return 1,\n        \
         }}\n    }}\n    0\n}}\n"
    );
    out.push_str(F16_HELPERS);
    out.push('\n');
    out.push_str(&functions);
    Ok(out)
}

/// Element counts of `body`'s params: the smallest planned size over the kernels running
/// it (`None` when none does). Fails when a kernel binds a writable param to memory that
/// overlaps another of its params (the `&mut` slices would alias).
fn param_lengths(
    program: &KernelProgram,
    plan: &MemoryPlan,
    id: BodyId,
    body: &Body,
) -> Result<Option<Vec<u64>>, String> {
    let mut lens: Option<Vec<u64>> = None;
    for k in program.kernels.iter().filter(|k| k.body == id) {
        if k.args.len() != body.params.len() {
            return Err(format!(
                "kernel `{}`: args do not match {id}'s params",
                k.name
            ));
        }
        let spans: Vec<(u64, u64)> = k
            .args
            .iter()
            .map(|&a| {
                let off = plan.absolute_offset(a).unwrap_or(0);
                let bytes = plan.buffers.get(a.0 as usize).map_or(0, |p| p.bytes);
                (off, off + bytes)
            })
            .collect();
        for (i, p) in body.params.iter().enumerate() {
            if p.access == Access::Read {
                continue;
            }
            for (j, q) in spans.iter().enumerate() {
                let overlap = j != i && q.0 < spans[i].1 && spans[i].0 < q.1;
                if overlap {
                    return Err(format!(
                        "kernel `{}`: writable param `{}` overlaps param `{}`; the baseline's \
                         &mut slices cannot express that",
                        k.name, p.name, body.params[j].name
                    ));
                }
            }
        }
        let these: Vec<u64> = spans
            .iter()
            .zip(&body.params)
            .map(|(s, p)| (s.1 - s.0) / p.dtype.size_bytes() as u64)
            .collect();
        lens = Some(match lens {
            None => these,
            Some(prev) => prev.iter().zip(&these).map(|(a, b)| *a.min(b)).collect(),
        });
    }
    Ok(lens)
}

fn elem_type(d: DType) -> &'static str {
    match d {
        DType::F32 => "f32",
        DType::F16 => "u16",
        DType::I8 => "i8",
        DType::I32 => "i32",
    }
}

fn f32_literal(v: f32) -> String {
    if v.is_nan() {
        "f32::NAN".into()
    } else if v == f32::INFINITY {
        "f32::INFINITY".into()
    } else if v == f32::NEG_INFINITY {
        "f32::NEG_INFINITY".into()
    } else {
        // `{:?}` prints the shortest text that reads back as the same f32.
        format!("({v:?}f32)")
    }
}

fn int_literal(v: i64) -> String {
    if v == i64::MIN {
        "i64::MIN".into()
    } else {
        format!("({v}i64)")
    }
}

/// A reassociated reduction: its local, whether it is a max (else a sum).
struct Reduction {
    local: Local,
    is_max: bool,
}

/// Generates one section function of one body.
struct SectionGen<'a> {
    body: &'a Body,
    options: RustgenOptions,
    /// Type of each local, from its `Let`.
    types: Vec<Option<Scalar>>,
    /// Locals currently redirected to a lane of their partials array (`a3` → `a3_p[r_l]`).
    redirect: BTreeMap<u32, String>,
    /// Counter for fresh names of reduction loops.
    fresh: u32,
}

impl<'a> SectionGen<'a> {
    fn new(body: &'a Body, options: RustgenOptions) -> SectionGen<'a> {
        SectionGen {
            body,
            options,
            types: vec![None; body.num_locals as usize],
            redirect: BTreeMap::new(),
            fresh: 0,
        }
    }

    fn function(&mut self, name: &str, section: usize, lens: &[u64]) -> Result<String, String> {
        let mut s = format!(
            "unsafe fn {name}(args: *const usize, syms: *const i64, lo: i64, hi: i64) {{\n    unsafe {{\n"
        );
        s.push_str(
            "        let sym_T = *syms.add(0);\n        let sym_B = *syms.add(1);\n        let sym_pos = *syms.add(2);\n",
        );
        for (i, (p, len)) in self.body.params.iter().zip(lens).enumerate() {
            let ty = elem_type(p.dtype);
            let (mk, mt) = if p.access == Access::Read {
                ("from_raw_parts", "const")
            } else {
                ("from_raw_parts_mut", "mut")
            };
            let r = if p.access == Access::Read {
                "&"
            } else {
                "&mut "
            };
            let _ = writeln!(
                s,
                "        let p{i}: {r}[{ty}] = std::slice::{mk}(*args.add({i}) as *{mt} {ty}, {len}); // {} {}",
                p.access.name(),
                p.name
            );
        }
        let Some(stmt) = self.body.stmts.get(section) else {
            return Err(format!("section {section} does not exist"));
        };
        match stmt {
            Stmt::For {
                var,
                start,
                end,
                kind: LoopKind::Parallel,
                body,
            } => {
                let (st, en) = (self.int(start)?, self.int(end)?);
                let _ = writeln!(s, "        for i{} in lo.max({st})..hi.min({en}) {{", var.0);
                self.block(&mut s, body, 3)?;
                s.push_str("        }\n");
            }
            other => self.stmt(&mut s, other, 2)?,
        }
        s.push_str("    }\n}\n");
        Ok(s)
    }

    fn block(&mut self, s: &mut String, stmts: &[Stmt], depth: usize) -> Result<(), String> {
        for st in stmts {
            self.stmt(s, st, depth)?;
        }
        Ok(())
    }

    fn stmt(&mut self, s: &mut String, st: &Stmt, depth: usize) -> Result<(), String> {
        let pad = "    ".repeat(depth);
        match st {
            Stmt::For {
                var,
                start,
                end,
                kind,
                body,
            } => {
                let (st, en) = (self.int(start)?, self.int(end)?);
                let reductions = if *kind == LoopKind::Vector {
                    self.reductions(body)
                } else {
                    Vec::new()
                };
                if reductions.is_empty() {
                    let _ = writeln!(s, "{pad}for i{} in {st}..{en} {{", var.0);
                    self.block(s, body, depth + 1)?;
                    let _ = writeln!(s, "{pad}}}");
                } else {
                    self.reduction_loop(s, var.0, &st, &en, body, &reductions, depth)?;
                }
            }
            Stmt::Let { local, value } => {
                let (v, t) = self.expr(value)?;
                if let Some(slot) = self.types.get_mut(local.0 as usize) {
                    *slot = Some(t);
                }
                let ty = if t == Scalar::F32 { "f32" } else { "i64" };
                let _ = writeln!(s, "{pad}let mut a{}: {ty} = {v};", local.0);
            }
            Stmt::Assign { local, value } => {
                let (v, _) = self.expr(value)?;
                let target = self
                    .redirect
                    .get(&local.0)
                    .cloned()
                    .unwrap_or_else(|| format!("a{}", local.0));
                let _ = writeln!(s, "{pad}{target} = {v};");
            }
            Stmt::Store { arg, index, value } => {
                let p = self.param(*arg)?;
                let idx = self.int(index)?;
                let (v, _) = self.expr(value)?;
                let v = match p.dtype {
                    DType::F32 => v,
                    DType::F16 => format!("f32_to_f16({v})"),
                    DType::I8 => format!("({v} as i8)"),
                    DType::I32 => format!("({v} as i32)"),
                };
                let _ = writeln!(s, "{pad}*p{arg}.get_unchecked_mut({idx} as usize) = {v};");
            }
            Stmt::If { cond, then } => {
                let c = self.int(cond)?;
                let _ = writeln!(s, "{pad}if {c} != 0 {{");
                self.block(s, then, depth + 1)?;
                let _ = writeln!(s, "{pad}}}");
            }
        }
        Ok(())
    }

    /// The f32 reductions of a `vector for` body that can be reassociated: a top-level
    /// `acc = acc + e` / `acc = max(acc, e)` (either operand order) into a local defined
    /// outside the loop, which the loop mentions nowhere else.
    fn reductions(&self, stmts: &[Stmt]) -> Vec<Reduction> {
        let mut found = Vec::new();
        for st in stmts {
            let Stmt::Assign { local, value } = st else {
                continue;
            };
            if self.types.get(local.0 as usize).copied().flatten() != Some(Scalar::F32) {
                continue;
            }
            let Expr::Bin(op @ (BinOp::Add | BinOp::Max), a, b) = value else {
                continue;
            };
            let me = Expr::Local(*local);
            let other = if **a == me {
                b
            } else if **b == me {
                a
            } else {
                continue;
            };
            let mentions: usize = stmts.iter().map(|s| stmt_mentions(s, *local)).sum();
            // The statement itself mentions it twice (target and operand); `other` never.
            if mentions == 2 && expr_mentions(other, *local) == 0 {
                found.push(Reduction {
                    local: *local,
                    is_max: *op == BinOp::Max,
                });
            }
        }
        found
    }

    /// A `vector for` with reductions: blocks of `REDUCTION_LANES` iterations, each
    /// iteration into its own partial, then the remaining iterations into the local itself,
    /// then the partials combined pairwise into it.
    #[allow(clippy::too_many_arguments)]
    fn reduction_loop(
        &mut self,
        s: &mut String,
        var: u32,
        start: &str,
        end: &str,
        body: &[Stmt],
        reductions: &[Reduction],
        depth: usize,
    ) -> Result<(), String> {
        let pad = "    ".repeat(depth);
        let pad1 = "    ".repeat(depth + 1);
        let n = self.fresh;
        self.fresh += 1;
        let lanes = REDUCTION_LANES;
        let _ = writeln!(s, "{pad}{{");
        let _ = writeln!(s, "{pad1}let r{n}_e: i64 = {end};");
        let _ = writeln!(s, "{pad1}let mut r{n}_i: i64 = {start};");
        for r in reductions {
            let id = if r.is_max {
                "f32::NEG_INFINITY"
            } else {
                "0.0f32"
            };
            let _ = writeln!(s, "{pad1}let mut a{}_p = [{id}; {lanes}];", r.local.0);
        }
        let _ = writeln!(s, "{pad1}while r{n}_e - r{n}_i >= {lanes} {{");
        let _ = writeln!(s, "{pad1}    for r{n}_l in 0..{lanes}usize {{");
        let _ = writeln!(s, "{pad1}        let i{var}: i64 = r{n}_i + r{n}_l as i64;");
        for r in reductions {
            self.redirect
                .insert(r.local.0, format!("a{}_p[r{n}_l]", r.local.0));
        }
        let lane_body = self.block(s, body, depth + 3);
        for r in reductions {
            self.redirect.remove(&r.local.0);
        }
        lane_body?;
        let _ = writeln!(s, "{pad1}    }}");
        let _ = writeln!(s, "{pad1}    r{n}_i += {lanes};");
        let _ = writeln!(s, "{pad1}}}");
        let _ = writeln!(s, "{pad1}for i{var} in r{n}_i..r{n}_e {{");
        self.block(s, body, depth + 2)?;
        let _ = writeln!(s, "{pad1}}}");
        for r in reductions {
            let a = format!("a{}", r.local.0);
            let comb = |x: &str, y: &str| {
                if r.is_max {
                    format!("{x}.max({y})")
                } else {
                    format!("({x} + {y})")
                }
            };
            // Lane-wise halving (vector-friendly), down to one value.
            let mut width = lanes;
            while width > 1 {
                width /= 2;
                let _ = writeln!(s, "{pad1}for j in 0..{width} {{");
                let _ = writeln!(
                    s,
                    "{pad1}    {a}_p[j] = {};",
                    comb(&format!("{a}_p[j]"), &format!("{a}_p[j + {width}]"))
                );
                let _ = writeln!(s, "{pad1}}}");
            }
            let redirected = self.redirect.get(&r.local.0).cloned().unwrap_or(a.clone());
            let _ = writeln!(
                s,
                "{pad1}{redirected} = {};",
                comb(&redirected, &format!("{a}_p[0]"))
            );
        }
        let _ = writeln!(s, "{pad}}}");
        Ok(())
    }

    fn param(&self, arg: u32) -> Result<&bfly_ir::kernel::BodyParam, String> {
        self.body
            .params
            .get(arg as usize)
            .ok_or_else(|| format!("param {arg} does not exist"))
    }

    fn int(&self, e: &Expr) -> Result<String, String> {
        match self.expr(e)? {
            (v, Scalar::Int) => Ok(v),
            (v, Scalar::F32) => Err(format!("expected an int, got f32 `{v}`")),
        }
    }

    fn expr(&self, e: &Expr) -> Result<(String, Scalar), String> {
        Ok(match e {
            Expr::F32(v) => (f32_literal(*v), Scalar::F32),
            Expr::Int(v) => (int_literal(*v), Scalar::Int),
            Expr::Var(v) => (format!("i{}", v.0), Scalar::Int),
            Expr::Sym(s) => (format!("sym_{}", s.name()), Scalar::Int),
            Expr::Local(l) => {
                let t = self
                    .types
                    .get(l.0 as usize)
                    .copied()
                    .flatten()
                    .ok_or_else(|| format!("local a{} used before its let", l.0))?;
                let name = self
                    .redirect
                    .get(&l.0)
                    .cloned()
                    .unwrap_or_else(|| format!("a{}", l.0));
                (name, t)
            }
            Expr::Load { arg, index } => {
                let p = self.param(*arg)?;
                let idx = self.int(index)?;
                let raw = format!("(*p{arg}.get_unchecked({idx} as usize))");
                match p.dtype {
                    DType::F32 => (raw, Scalar::F32),
                    DType::F16 => (format!("f16_to_f32{raw}"), Scalar::F32),
                    DType::I8 | DType::I32 => (format!("({raw} as i64)"), Scalar::Int),
                }
            }
            Expr::Bin(op, a, b) => self.bin(*op, a, b)?,
            Expr::Un(op, a) => {
                let (x, t) = self.expr(a)?;
                match (op, t) {
                    (UnOp::Neg, _) => (format!("(-{x})"), t),
                    (UnOp::Abs, Scalar::F32) => (format!("{x}.abs()"), t),
                    (UnOp::Abs, Scalar::Int) => (format!("{x}.wrapping_abs()"), t),
                    (UnOp::Exp, Scalar::F32) => (format!("{x}.exp()"), t),
                    (UnOp::Log, Scalar::F32) => (format!("{x}.ln()"), t),
                    (UnOp::Sqrt, Scalar::F32) => (format!("{x}.sqrt()"), t),
                    (UnOp::Tanh, Scalar::F32) => (format!("{x}.tanh()"), t),
                    (UnOp::Sin, Scalar::F32) => (format!("{x}.sin()"), t),
                    (UnOp::Cos, Scalar::F32) => (format!("{x}.cos()"), t),
                    (UnOp::Round, Scalar::F32) => (format!("{x}.round_ties_even()"), t),
                    (UnOp::ToF32, Scalar::Int) => (format!("({x} as f32)"), Scalar::F32),
                    // Rust's `as` saturates and maps NaN to 0, the IR's semantics.
                    (UnOp::ToInt, Scalar::F32) => (format!("({x} as i64)"), Scalar::Int),
                    _ => return Err(format!("{} of {t:?}", op.name())),
                }
            }
            Expr::Select { cond, then, els } => {
                let c = self.int(cond)?;
                let (t, tt) = self.expr(then)?;
                let (f, _) = self.expr(els)?;
                (format!("(if {c} != 0 {{ {t} }} else {{ {f} }})"), tt)
            }
        })
    }

    /// A product operand for contraction: `(a, b)` if `e` is an f32 `a * b`.
    fn product(&self, e: &Expr) -> Result<Option<(String, String)>, String> {
        if !self.options.contract {
            return Ok(None);
        }
        if let Expr::Bin(BinOp::Mul, a, b) = e {
            let (x, t) = self.expr(a)?;
            if t == Scalar::F32 {
                let (y, _) = self.expr(b)?;
                return Ok(Some((x, y)));
            }
        }
        Ok(None)
    }

    fn bin(&self, op: BinOp, a: &Expr, b: &Expr) -> Result<(String, Scalar), String> {
        let (x, t) = self.expr(a)?;
        let (y, u) = self.expr(b)?;
        if t != u {
            return Err(format!("{} mixes {t:?} and {u:?}", op.name()));
        }
        if t == Scalar::F32 {
            let fused = match op {
                BinOp::Add => match (self.product(a)?, self.product(b)?) {
                    (Some((p, q)), _) => Some(format!("{p}.mul_add({q}, {y})")),
                    (None, Some((p, q))) => Some(format!("{p}.mul_add({q}, {x})")),
                    _ => None,
                },
                BinOp::Sub => match (self.product(a)?, self.product(b)?) {
                    (Some((p, q)), _) => Some(format!("{p}.mul_add({q}, -{y})")),
                    (None, Some((p, q))) => Some(format!("(-{p}).mul_add({q}, {x})")),
                    _ => None,
                },
                _ => None,
            };
            if let Some(f) = fused {
                return Ok((f, t));
            }
        }
        let v = match (op, t) {
            (BinOp::Add, _) => format!("({x} + {y})"),
            (BinOp::Sub, _) => format!("({x} - {y})"),
            (BinOp::Mul, _) => format!("({x} * {y})"),
            (BinOp::Div, Scalar::F32) => format!("({x} / {y})"),
            (BinOp::Div, Scalar::Int) => format!("((({x}) as u64 / ({y}) as u64) as i64)"),
            (BinOp::Rem, Scalar::Int) => format!("((({x}) as u64 % ({y}) as u64) as i64)"),
            (BinOp::Rem, Scalar::F32) => return Err("% of f32".into()),
            (BinOp::Min, _) => format!("{x}.min({y})"),
            (BinOp::Max, _) => format!("{x}.max({y})"),
            (BinOp::Lt, _) => return Ok((format!("(({x} < {y}) as i64)"), Scalar::Int)),
            (BinOp::Le, _) => return Ok((format!("(({x} <= {y}) as i64)"), Scalar::Int)),
            (BinOp::Eq, _) => return Ok((format!("(({x} == {y}) as i64)"), Scalar::Int)),
        };
        Ok((v, t))
    }
}

fn expr_mentions(e: &Expr, l: Local) -> usize {
    match e {
        Expr::Local(x) => usize::from(*x == l),
        Expr::Load { index, .. } => expr_mentions(index, l),
        Expr::Bin(_, a, b) => expr_mentions(a, l) + expr_mentions(b, l),
        Expr::Un(_, a) => expr_mentions(a, l),
        Expr::Select { cond, then, els } => {
            expr_mentions(cond, l) + expr_mentions(then, l) + expr_mentions(els, l)
        }
        Expr::F32(_) | Expr::Int(_) | Expr::Var(_) | Expr::Sym(_) => 0,
    }
}

/// Mentions of `l` in a statement: reads, assignment targets and (re)definitions.
fn stmt_mentions(s: &Stmt, l: Local) -> usize {
    match s {
        Stmt::For {
            start, end, body, ..
        } => {
            expr_mentions(start, l)
                + expr_mentions(end, l)
                + body.iter().map(|s| stmt_mentions(s, l)).sum::<usize>()
        }
        Stmt::Let { local, value } | Stmt::Assign { local, value } => {
            usize::from(*local == l) + expr_mentions(value, l)
        }
        Stmt::Store { index, value, .. } => expr_mentions(index, l) + expr_mentions(value, l),
        Stmt::If { cond, then } => {
            expr_mentions(cond, l) + then.iter().map(|s| stmt_mentions(s, l)).sum::<usize>()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bfly_ir::kernel::{BodyBuilder, RtSym};

    fn dot_body() -> Body {
        let mut b = BodyBuilder::new();
        let x = b.param("x", DType::F32, Access::Read);
        let w = b.param("w", DType::F32, Access::Read);
        let y = b.param("y", DType::F32, Access::Write);
        b.for_(LoopKind::Parallel, 0, RtSym::T, |b, t| {
            let acc = b.let_(Expr::f32(0.0));
            b.for_(LoopKind::Vector, 0, 64, |b, k| {
                b.assign(
                    acc,
                    acc + Expr::load(x, t * 64 + k) * Expr::load(w, Expr::from(k)),
                );
            });
            b.store(y, t, acc);
        });
        b.finish()
    }

    #[test]
    fn a_vector_sum_is_reassociated_and_contracted() {
        let body = dot_body();
        let f = SectionGen::new(&body, RustgenOptions::default())
            .function("f", 0, &[64, 64, 1])
            .unwrap();
        assert!(f.contains("for i0 in lo.max((0i64))..hi.min(sym_T)"), "{f}");
        assert!(f.contains("let mut a0_p = [0.0f32; 16];"), "{f}");
        assert!(f.contains("a0_p[r0_l] = "), "{f}");
        assert!(f.contains(".mul_add("), "{f}");
        // The tail runs on the local itself, then the partials fold in.
        assert!(f.contains("a0 = (a0 + a0_p[0]);"), "{f}");
    }

    #[test]
    fn without_contraction_products_round() {
        let body = dot_body();
        let f = SectionGen::new(&body, RustgenOptions { contract: false })
            .function("f", 0, &[64, 64, 1])
            .unwrap();
        assert!(!f.contains("mul_add"), "{f}");
    }

    #[test]
    fn int_division_is_unsigned_and_f32_literals_read_back() {
        let mut b = BodyBuilder::new();
        let y = b.param("y", DType::F16, Access::Write);
        b.for_(LoopKind::Parallel, 0, 8, |b, i| {
            let q = b.let_((i / 4).to_f32() * Expr::f32(0.1) + Expr::f32(f32::NEG_INFINITY));
            b.store(y, i, q);
        });
        let body = b.finish();
        let f = SectionGen::new(&body, RustgenOptions::default())
            .function("f", 0, &[8])
            .unwrap();
        assert!(f.contains("as u64 / ((4i64)) as u64"), "{f}");
        assert!(
            f.contains("(0.1f32)") && f.contains("f32::NEG_INFINITY"),
            "{f}"
        );
        assert!(f.contains("f32_to_f16("), "{f}");
    }
}
