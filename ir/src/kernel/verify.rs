//! The Kernel IR verifier: the facts every backend and the executor rely on, checked once.
//!
//! [`verify_body`] type-checks a loop nest (two scalar types, see `body`'s module doc) and its
//! scoping; [`verify_program`] checks how kernels bind buffers to bodies and the phase rules.
//! The executor runs compiled code on raw addresses, so these checks are part of its safety
//! argument (together with the memory plan, which sizes buffers at the symbol bounds): a
//! body that passed them never stores through a read-only param, never indexes with a
//! float, and every parallel section's range is computable from the runtime symbols alone.

use super::body::{
    Access, BinOp, Body, BodyParam, Expr, ExprDisplay, LoopKind, RtSym, Scalar, Stmt, UnOp,
};
use super::program::{BufferKind, KernelKind, KernelProgram, Phase};
use crate::types::Dim;
use std::collections::{BTreeMap, BTreeSet};

/// Checks one body: expression types, loop-variable and local scoping, param access, loop
/// kinds. The error names the offending statement as printed.
pub fn verify_body(body: &Body) -> Result<(), String> {
    let mut cx = BodyCx::new(body);
    for stmt in &body.stmts {
        // Sections compile to separate functions: nothing a section defines survives it.
        cx.block(std::slice::from_ref(stmt), true)?;
    }
    Ok(())
}

/// Checks a whole program: every body, every kernel's binding of buffers to body params,
/// buffer ids and kinds, and the phase rules. Returns every problem found.
pub fn verify_program(program: &KernelProgram) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    check_buffers(program, &mut errors);
    check_bodies(program, &mut errors);
    check_kernels(program, &mut errors);
    check_lifetimes(program, &mut errors);
    check_param_updates(program, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

// ---------------------------------------------------------------------------------------
// Bodies.

/// One statement on one line (loops and ifs by their header), for error messages.
fn stmt_line(stmt: &Stmt, params: &[BodyParam]) -> String {
    let ex = |e: &Expr| ExprDisplay { expr: e, params }.to_string();
    let name = |arg: u32| {
        params
            .get(arg as usize)
            .map_or_else(|| format!("arg{arg}"), |p| p.name.clone())
    };
    match stmt {
        Stmt::For {
            var,
            start,
            end,
            kind,
            ..
        } => format!(
            "{} {var} in {}..{} {{ … }}",
            kind.keyword(),
            ex(start),
            ex(end)
        ),
        Stmt::Let { local, value } => format!("let {local} = {}", ex(value)),
        Stmt::Assign { local, value } => format!("{local} = {}", ex(value)),
        Stmt::Store { arg, index, value } => {
            format!("{}[{}] = {}", name(*arg), ex(index), ex(value))
        }
        Stmt::If { cond, .. } => format!("if {} {{ … }}", ex(cond)),
    }
}

fn ty_name(t: Scalar) -> &'static str {
    match t {
        Scalar::F32 => "f32",
        Scalar::Int => "int",
    }
}

struct BodyCx<'a> {
    body: &'a Body,
    /// Loop vars bound by an enclosing `For`.
    var_in_scope: Vec<bool>,
    /// Loop vars bound anywhere so far (each var is bound by exactly one loop).
    var_bound: Vec<bool>,
    /// Type and block depth of each local currently in scope.
    local: Vec<Option<(Scalar, usize)>>,
    local_defined: Vec<bool>,
    /// Block depth (0 = a section).
    depth: usize,
    /// Enclosing vector loops: the depth of their body and their reduction locals.
    vectors: Vec<(usize, BTreeSet<u32>)>,
}

impl<'a> BodyCx<'a> {
    fn new(body: &'a Body) -> BodyCx<'a> {
        BodyCx {
            body,
            var_in_scope: vec![false; body.num_vars as usize],
            var_bound: vec![false; body.num_vars as usize],
            local: vec![None; body.num_locals as usize],
            local_defined: vec![false; body.num_locals as usize],
            depth: 0,
            vectors: Vec::new(),
        }
    }

    fn fail<T>(&self, stmt: &Stmt, msg: impl Into<String>) -> Result<T, String> {
        Err(format!(
            "in `{}`: {}",
            stmt_line(stmt, &self.body.params),
            msg.into()
        ))
    }

    fn block(&mut self, stmts: &[Stmt], section: bool) -> Result<(), String> {
        let mut defined = Vec::new();
        for s in stmts {
            self.stmt(s, section)?;
            if let Stmt::Let { local, .. } = s {
                defined.push(local.0 as usize);
            }
        }
        for l in defined {
            self.local[l] = None;
        }
        Ok(())
    }

    fn stmt(&mut self, s: &Stmt, section: bool) -> Result<(), String> {
        match s {
            Stmt::For {
                var,
                start,
                end,
                kind,
                body,
            } => {
                let v = var.0 as usize;
                if v >= self.var_in_scope.len() {
                    return self.fail(
                        s,
                        format!("loop var {var} is beyond num_vars = {}", self.body.num_vars),
                    );
                }
                if self.var_bound[v] {
                    return self.fail(s, format!("loop var {var} is bound by two loops"));
                }
                for (what, e) in [("start", start), ("end", end)] {
                    let t = self.expr(s, e)?;
                    if t != Scalar::Int {
                        return self.fail(s, format!("loop {what} is {}, not int", ty_name(t)));
                    }
                }
                if *kind == LoopKind::Parallel {
                    if !section {
                        return self.fail(
                            s,
                            "a parallel loop must be a top-level statement (a section)",
                        );
                    }
                    if !closed(start) || !closed(end) {
                        return self.fail(
                            s,
                            "a parallel range may use only constants, runtime symbols and arithmetic",
                        );
                    }
                }
                self.var_bound[v] = true;
                self.var_in_scope[v] = true;
                self.depth += 1;
                if *kind == LoopKind::Vector {
                    let reductions = self.outer_assigns(body);
                    self.vectors.push((self.depth, reductions));
                }
                let r = self.block(body, false);
                if *kind == LoopKind::Vector {
                    self.vectors.pop();
                }
                self.depth -= 1;
                self.var_in_scope[v] = false;
                r
            }
            Stmt::Let { local, value } => {
                let l = local.0 as usize;
                if l >= self.local.len() {
                    return self.fail(
                        s,
                        format!(
                            "local {local} is beyond num_locals = {}",
                            self.body.num_locals
                        ),
                    );
                }
                if self.local_defined[l] {
                    return self.fail(s, format!("local {local} is defined twice"));
                }
                let t = self.expr(s, value)?;
                self.local_defined[l] = true;
                self.local[l] = Some((t, self.depth));
                Ok(())
            }
            Stmt::Assign { local, value } => {
                let (t, level) = self.local_in_scope(s, local.0)?;
                let reduction = self
                    .vectors
                    .last()
                    .is_some_and(|(vdepth, _)| level < *vdepth);
                let vt = if reduction {
                    self.reduction(s, local.0, value)?
                } else {
                    self.expr(s, value)?
                };
                if vt != t {
                    return self.fail(
                        s,
                        format!(
                            "{local} is {} (from its let) but is assigned {}",
                            ty_name(t),
                            ty_name(vt)
                        ),
                    );
                }
                Ok(())
            }
            Stmt::Store { arg, index, value } => {
                let p = self.param(s, *arg)?;
                if p.access == Access::Read {
                    return self.fail(s, format!("store to `{}`, which is declared `in`", p.name));
                }
                let it = self.expr(s, index)?;
                if it != Scalar::Int {
                    return self.fail(s, format!("index is {}, not int", ty_name(it)));
                }
                let want = Scalar::of(p.dtype);
                let vt = self.expr(s, value)?;
                if vt != want {
                    return self.fail(
                        s,
                        format!(
                            "stores {} into `{}: {}`, which takes {}",
                            ty_name(vt),
                            p.name,
                            p.dtype,
                            ty_name(want)
                        ),
                    );
                }
                Ok(())
            }
            Stmt::If { cond, then } => {
                let t = self.expr(s, cond)?;
                if t != Scalar::Int {
                    return self.fail(s, format!("condition is {}, not int", ty_name(t)));
                }
                self.depth += 1;
                let r = self.block(then, false);
                self.depth -= 1;
                r
            }
        }
    }

    /// Locals in scope that a vector loop's body assigns: its reductions.
    fn outer_assigns(&self, stmts: &[Stmt]) -> BTreeSet<u32> {
        let mut out = BTreeSet::new();
        walk_assigns(stmts, &mut |l| {
            if self.local.get(l as usize).is_some_and(Option::is_some) {
                out.insert(l);
            }
        });
        out
    }

    /// `acc = acc + e` or `acc = max(acc, e)` inside a vector loop, `acc` defined outside.
    fn reduction(&self, s: &Stmt, acc: u32, value: &Expr) -> Result<Scalar, String> {
        match value {
            Expr::Bin(BinOp::Add | BinOp::Max, a, e)
                if **a == Expr::Local(super::body::Local(acc)) =>
            {
                let et = self.expr(s, e)?;
                let (t, _) = self.local_in_scope(s, acc)?;
                if et != t {
                    return self.fail(
                        s,
                        format!("mismatched types {} and {}", ty_name(t), ty_name(et)),
                    );
                }
                Ok(t)
            }
            _ => self.fail(
                s,
                format!(
                    "a vector loop may update a{acc}, defined outside it, only as a reduction \
                     `a{acc} = a{acc} + e` or `a{acc} = max(a{acc}, e)`"
                ),
            ),
        }
    }

    fn local_in_scope(&self, s: &Stmt, l: u32) -> Result<(Scalar, usize), String> {
        match self.local.get(l as usize) {
            None => self.fail(
                s,
                format!("local a{l} is beyond num_locals = {}", self.body.num_locals),
            ),
            Some(Some(v)) => Ok(*v),
            Some(None) if self.local_defined[l as usize] => self.fail(
                s,
                format!("local a{l} is used outside the block (or section) that defines it"),
            ),
            Some(None) => self.fail(s, format!("local a{l} is used before its let")),
        }
    }

    fn param(&self, s: &Stmt, arg: u32) -> Result<&'a BodyParam, String> {
        match self.body.params.get(arg as usize) {
            Some(p) => Ok(p),
            None => self.fail(
                s,
                format!(
                    "arg{arg} is out of range (the body has {} params)",
                    self.body.params.len()
                ),
            ),
        }
    }

    fn expr(&self, s: &Stmt, e: &Expr) -> Result<Scalar, String> {
        let body: &Body = self.body;
        let show = |e: &Expr| {
            ExprDisplay {
                expr: e,
                params: &body.params,
            }
            .to_string()
        };
        match e {
            Expr::F32(_) => Ok(Scalar::F32),
            Expr::Int(_) | Expr::Sym(_) => Ok(Scalar::Int),
            Expr::Var(v) => match self.var_in_scope.get(v.0 as usize) {
                Some(true) => Ok(Scalar::Int),
                Some(false) => self.fail(s, format!("loop var {v} is used outside its loop")),
                None => self.fail(
                    s,
                    format!("loop var {v} is beyond num_vars = {}", self.body.num_vars),
                ),
            },
            Expr::Local(l) => {
                if self.vectors.iter().any(|(_, r)| r.contains(&l.0)) {
                    return self.fail(
                        s,
                        format!(
                            "{l} is a reduction of an enclosing vector loop and may be read \
                             only by its own update"
                        ),
                    );
                }
                Ok(self.local_in_scope(s, l.0)?.0)
            }
            Expr::Load { arg, index } => {
                let p = self.param(s, *arg)?;
                if p.access == Access::Write {
                    return self.fail(
                        s,
                        format!("load from `{}`, which is declared `out`", p.name),
                    );
                }
                let it = self.expr(s, index)?;
                if it != Scalar::Int {
                    return self.fail(
                        s,
                        format!("index of `{}` is {}, not int", show(e), ty_name(it)),
                    );
                }
                Ok(Scalar::of(p.dtype))
            }
            Expr::Bin(op, a, b) => {
                let (ta, tb) = (self.expr(s, a)?, self.expr(s, b)?);
                if ta != tb {
                    return self.fail(
                        s,
                        format!(
                            "`{}` mixes {} and {} (convert with f32(…) or int(…))",
                            show(e),
                            ty_name(ta),
                            ty_name(tb)
                        ),
                    );
                }
                if *op == BinOp::Rem && ta != Scalar::Int {
                    return self.fail(s, format!("`{}`: % takes ints", show(e)));
                }
                Ok(if op.is_comparison() { Scalar::Int } else { ta })
            }
            Expr::Un(op, a) => {
                let t = self.expr(s, a)?;
                let want = match op {
                    UnOp::Neg | UnOp::Abs => return Ok(t),
                    UnOp::ToF32 => Scalar::Int,
                    _ => Scalar::F32,
                };
                if t != want {
                    return self.fail(
                        s,
                        format!(
                            "`{}`: {} takes {}, not {}",
                            show(e),
                            op.name(),
                            ty_name(want),
                            ty_name(t)
                        ),
                    );
                }
                Ok(match op {
                    UnOp::ToInt => Scalar::Int,
                    _ => Scalar::F32,
                })
            }
            Expr::Select { cond, then, els } => {
                let ct = self.expr(s, cond)?;
                if ct != Scalar::Int {
                    return self.fail(
                        s,
                        format!("`{}`: the condition is {}, not int", show(e), ty_name(ct)),
                    );
                }
                let (tt, te) = (self.expr(s, then)?, self.expr(s, els)?);
                if tt != te {
                    return self.fail(
                        s,
                        format!(
                            "`{}`: the arms are {} and {}",
                            show(e),
                            ty_name(tt),
                            ty_name(te)
                        ),
                    );
                }
                Ok(tt)
            }
        }
    }
}

fn walk_assigns(stmts: &[Stmt], f: &mut dyn FnMut(u32)) {
    for s in stmts {
        match s {
            Stmt::Assign { local, .. } => f(local.0),
            Stmt::For { body, .. } => walk_assigns(body, f),
            Stmt::If { then, .. } => walk_assigns(then, f),
            Stmt::Let { .. } | Stmt::Store { .. } => {}
        }
    }
}

/// Whether `e` can be evaluated by `Expr::eval_int` (constants, symbols, arithmetic).
fn closed(e: &Expr) -> bool {
    match e {
        Expr::Int(_) | Expr::Sym(_) => true,
        Expr::Bin(_, a, b) => closed(a) && closed(b),
        _ => false,
    }
}

/// Every runtime symbol `stmts` mention.
fn body_syms(stmts: &[Stmt], out: &mut BTreeSet<RtSym>) {
    fn expr(e: &Expr, out: &mut BTreeSet<RtSym>) {
        match e {
            Expr::Sym(s) => {
                out.insert(*s);
            }
            Expr::Load { index, .. } => expr(index, out),
            Expr::Bin(_, a, b) => {
                expr(a, out);
                expr(b, out);
            }
            Expr::Un(_, a) => expr(a, out),
            Expr::Select { cond, then, els } => {
                expr(cond, out);
                expr(then, out);
                expr(els, out);
            }
            Expr::F32(_) | Expr::Int(_) | Expr::Var(_) | Expr::Local(_) => {}
        }
    }
    for s in stmts {
        match s {
            Stmt::For {
                start, end, body, ..
            } => {
                expr(start, out);
                expr(end, out);
                body_syms(body, out);
            }
            Stmt::Let { value, .. } | Stmt::Assign { value, .. } => expr(value, out),
            Stmt::Store { index, value, .. } => {
                expr(index, out);
                expr(value, out);
            }
            Stmt::If { cond, then } => {
                expr(cond, out);
                body_syms(then, out);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Programs.

fn kernel_label(program: &KernelProgram, k: usize) -> String {
    format!("kernel #{k} `{}`", program.kernels[k].name)
}

fn check_buffers(program: &KernelProgram, errors: &mut Vec<String>) {
    let mut inputs = BTreeMap::new();
    let mut outputs = BTreeMap::new();
    let mut params = BTreeMap::new();
    for (i, b) in program.buffers.iter().enumerate() {
        if b.id.0 as usize != i {
            errors.push(format!(
                "buffer #{i} `{}` has id {}; ids must equal positions",
                b.name, b.id
            ));
        }
        for d in &b.dims {
            if let Dim::Sym(s) = d
                && program.bound(s).is_none()
            {
                errors.push(format!(
                    "buffer {} `{}` has dim `{s}`, which has no bound in the program",
                    b.id, b.name
                ));
            }
        }
        let dup = match &b.kind {
            BufferKind::Input { index } => inputs.insert(*index, b.id),
            BufferKind::Output { index } => outputs.insert(*index, b.id),
            BufferKind::Param { name } => params.insert(name.clone(), b.id),
            BufferKind::State | BufferKind::Temp => None,
        };
        if let Some(other) = dup {
            errors.push(format!(
                "buffers {other} and {} `{}` are the same {:?}",
                b.id, b.name, b.kind
            ));
        }
    }
}

fn check_bodies(program: &KernelProgram, errors: &mut Vec<String>) {
    for (i, body) in program.bodies.iter().enumerate() {
        let users: Vec<String> = program
            .kernels
            .iter()
            .filter(|k| k.body.0 as usize == i)
            .map(|k| format!("`{}`", k.name))
            .collect();
        let used_by = if users.is_empty() {
            String::from("unused")
        } else {
            format!("used by {}", users.join(", "))
        };
        if let Err(e) = verify_body(body) {
            errors.push(format!("body{i} ({used_by}): {e}"));
        }
        let mut syms = BTreeSet::new();
        body_syms(&body.stmts, &mut syms);
        for s in syms {
            if s != RtSym::Pos && program.bound(s.name()).is_none() {
                errors.push(format!(
                    "body{i} ({used_by}) uses `{}`, which has no bound in the program",
                    s.name()
                ));
            }
        }
    }
}

fn check_kernels(program: &KernelProgram, errors: &mut Vec<String>) {
    let mut seen_step = false;
    for (ki, k) in program.kernels.iter().enumerate() {
        let label = || kernel_label(program, ki);
        match k.phase {
            Phase::Step => seen_step = true,
            Phase::Load if seen_step => errors.push(format!(
                "{}: a load-phase kernel after a step kernel",
                label()
            )),
            Phase::Load => {}
        }
        let Some(body) = program.bodies.get(k.body.0 as usize) else {
            errors.push(format!(
                "{}: {} does not exist ({} bodies)",
                label(),
                k.body,
                program.bodies.len()
            ));
            continue;
        };
        if k.phase == Phase::Load {
            let mut syms = BTreeSet::new();
            body_syms(&body.stmts, &mut syms);
            if let Some(s) = syms.first() {
                errors.push(format!(
                    "{}: a load-phase kernel runs once and may not use `{}`",
                    label(),
                    s.name()
                ));
            }
        }
        if k.args.len() != body.params.len() {
            errors.push(format!(
                "{}: {} args for {}, which has {} params",
                label(),
                k.args.len(),
                k.body,
                body.params.len()
            ));
            continue;
        }
        for (p, &id) in body.params.iter().zip(&k.args) {
            let Some(buf) = program.buffers.get(id.0 as usize) else {
                errors.push(format!(
                    "{}: param `{}` is bound to {id}, which does not exist",
                    label(),
                    p.name
                ));
                continue;
            };
            if buf.dtype != p.dtype {
                errors.push(format!(
                    "{}: param `{}: {}` is bound to {id} `{}` of dtype {}",
                    label(),
                    p.name,
                    p.dtype,
                    buf.name,
                    buf.dtype
                ));
            }
            let writes = p.access != Access::Read;
            let wrong = match (&buf.kind, k.phase) {
                (BufferKind::Param { .. }, _) if writes => {
                    (!matches!(k.kind, KernelKind::Optimizer { .. }) || k.phase == Phase::Load)
                        .then_some("a param is written only by step-phase optimizer kernels")
                }
                (BufferKind::Input { .. }, Phase::Step) if writes => {
                    Some("an input is written only by the caller")
                }
                (BufferKind::Input { .. } | BufferKind::Output { .. }, Phase::Load) => {
                    Some("a load-phase kernel may use only params, state and temps")
                }
                _ => None,
            };
            if let Some(why) = wrong {
                errors.push(format!(
                    "{}: param `{}` ({}) is bound to {id} `{}`: {why}",
                    label(),
                    p.name,
                    p.access.name(),
                    buf.name
                ));
            }
        }
    }
}

/// Temps live within one phase and are written before they are read; outputs are written.
fn check_lifetimes(program: &KernelProgram, errors: &mut Vec<String>) {
    // (first phase, first access, phases seen, written at all)
    let mut uses: BTreeMap<u32, (Phase, Access, BTreeSet<u8>, bool)> = BTreeMap::new();
    for k in &program.kernels {
        let Some(body) = program.bodies.get(k.body.0 as usize) else {
            continue;
        };
        // A kernel binding one buffer to several params: writing through any counts.
        let mut per_kernel: BTreeMap<u32, Access> = BTreeMap::new();
        for (p, &id) in body.params.iter().zip(&k.args) {
            per_kernel
                .entry(id.0)
                .and_modify(|a| {
                    if *a != p.access {
                        *a = Access::ReadWrite
                    }
                })
                .or_insert(p.access);
        }
        for (id, access) in per_kernel {
            let e = uses
                .entry(id)
                .or_insert((k.phase, access, BTreeSet::new(), false));
            e.2.insert(k.phase as u8);
            e.3 |= access != Access::Read;
        }
    }
    for b in &program.buffers {
        let u = uses.get(&b.id.0);
        match (&b.kind, u) {
            (BufferKind::Temp, Some((_, first, phases, _))) => {
                if phases.len() > 1 {
                    errors.push(format!(
                        "temp {} `{}` is used in both phases; a load-phase result that steps \
                         read must be a state buffer",
                        b.id, b.name
                    ));
                }
                if *first == Access::Read {
                    errors.push(format!(
                        "temp {} `{}` is read before any kernel writes it",
                        b.id, b.name
                    ));
                }
            }
            (BufferKind::Output { .. }, None | Some((_, _, _, false))) => errors.push(format!(
                "output {} `{}` is never written by a kernel",
                b.id, b.name
            )),
            _ => {}
        }
    }
}

/// Optimizer kernels update params in place after every other kernel reads them: the step's
/// forward and backward must see the old values. (Optimizer kernels may read what earlier
/// optimizer kernels wrote, e.g. an Adam moment.)
fn check_param_updates(program: &KernelProgram, errors: &mut Vec<String>) {
    let mut updated: BTreeMap<u32, usize> = BTreeMap::new();
    for (ki, k) in program.kernels.iter().enumerate() {
        let Some(body) = program.bodies.get(k.body.0 as usize) else {
            continue;
        };
        let optimizer = matches!(k.kind, KernelKind::Optimizer { .. });
        for (p, &id) in body.params.iter().zip(&k.args) {
            let is_param = program
                .buffers
                .get(id.0 as usize)
                .is_some_and(|b| matches!(b.kind, BufferKind::Param { .. }));
            if !is_param {
                continue;
            }
            if let Some(&by) = updated.get(&id.0)
                && !optimizer
            {
                errors.push(format!(
                    "{}: param `{}` reads {id} after {} updated it in place",
                    kernel_label(program, ki),
                    p.name,
                    kernel_label(program, by)
                ));
            }
            if optimizer && p.access != Access::Read {
                updated.entry(id.0).or_insert(ki);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::body::{BodyBuilder, Local, LoopVar};
    use crate::kernel::program::{BodyId, Buffer, BufferId, Kernel};
    use crate::types::DType;

    fn ld(arg: u32, index: impl Into<Expr>) -> Expr {
        Expr::load(arg, index.into())
    }

    fn unary_map() -> Body {
        let mut b = BodyBuilder::new();
        let x = b.param("x", DType::F32, Access::Read);
        let y = b.param("y", DType::F32, Access::Write);
        b.for_(LoopKind::Parallel, 0, Expr::sym(RtSym::T) * 4, |b, i| {
            b.store(y, i, ld(x, i).exp());
        });
        b.finish()
    }

    fn err(body: &Body) -> String {
        verify_body(body).expect_err("the body should be rejected")
    }

    #[test]
    fn accepts_a_gemm_with_a_vector_reduction() {
        let mut b = BodyBuilder::new();
        let x = b.param("x", DType::F16, Access::Read);
        let w = b.param("w", DType::I8, Access::Read);
        let y = b.param("y", DType::F32, Access::Write);
        b.for_(LoopKind::Parallel, 0, RtSym::T, |b, t| {
            b.serial(0, 8, |b, n| {
                let acc = b.let_(Expr::f32(0.0));
                let peak = b.let_(Expr::f32(f32::NEG_INFINITY));
                b.for_(LoopKind::Vector, 0, 16, |b, k| {
                    let p = ld(x, t * 16 + k) * ld(w, n * 16 + k).to_f32();
                    b.assign(acc, acc + p.clone());
                    b.assign(peak, Expr::from(peak).max(p));
                });
                b.store(y, t * 8 + n, acc + peak);
            });
        });
        assert_eq!(verify_body(&b.finish()), Ok(()));
        assert_eq!(verify_body(&unary_map()), Ok(()));
    }

    #[test]
    fn rejects_mixed_types_and_shows_the_statement() {
        let mut b = BodyBuilder::new();
        let x = b.param("x", DType::F32, Access::Read);
        let y = b.param("y", DType::F32, Access::Write);
        b.for_(LoopKind::Parallel, 0, RtSym::T, |b, i| {
            b.store(y, i, ld(x, i) * 2);
        });
        let e = err(&b.finish());
        assert!(e.contains("in `y[i0] = x[i0] * 2`"), "{e}");
        assert!(e.contains("mixes f32 and int"), "{e}");
    }

    #[test]
    fn rejects_wrong_operand_types() {
        let cases: Vec<(Expr, &str)> = vec![
            (Expr::f32(1.0) % Expr::f32(2.0), "% takes ints"),
            (Expr::f32(1.0).to_f32(), "f32 takes int"),
            (Expr::int(1).to_int(), "int takes f32"),
            (Expr::int(1).exp(), "exp takes f32"),
            (
                Expr::select(Expr::f32(1.0), Expr::f32(1.0), Expr::f32(0.0)),
                "the condition is f32",
            ),
            (
                Expr::select(Expr::int(1), Expr::f32(1.0), Expr::int(0)),
                "the arms are f32 and int",
            ),
            (Expr::f32(1.0).lt(Expr::f32(2.0)), "stores int into"),
        ];
        for (value, want) in cases {
            let mut b = BodyBuilder::new();
            let y = b.param("y", DType::F32, Access::Write);
            b.store(y, 0, value);
            let e = err(&b.finish());
            assert!(e.contains(want), "{e} (wanted {want})");
        }
        let mut b = BodyBuilder::new();
        let x = b.param("x", DType::F32, Access::Read);
        let y = b.param("y", DType::I32, Access::Write);
        b.store(y, ld(x, 0), 1);
        assert!(err(&b.finish()).contains("index is f32"));
    }

    #[test]
    fn checks_param_access_and_range() {
        let mut b = BodyBuilder::new();
        let x = b.param("x", DType::F32, Access::Read);
        b.store(x, 0, Expr::f32(1.0));
        assert!(err(&b.finish()).contains("store to `x`, which is declared `in`"));

        let mut b = BodyBuilder::new();
        let y = b.param("y", DType::F32, Access::Write);
        b.store(y, 0, ld(y, 1));
        assert!(err(&b.finish()).contains("load from `y`, which is declared `out`"));

        let mut b = BodyBuilder::new();
        let y = b.param("y", DType::F32, Access::ReadWrite);
        b.store(y, 0, ld(y, 1) + ld(3, 0));
        assert!(err(&b.finish()).contains("arg3 is out of range"));
    }

    #[test]
    fn checks_scopes() {
        // A loop var after its loop.
        let mut body = unary_map();
        body.stmts.push(Stmt::Store {
            arg: 1,
            index: Expr::Var(LoopVar(0)),
            value: Expr::f32(0.0),
        });
        assert!(err(&body).contains("i0 is used outside its loop"));

        // A local before its let, and a local of an earlier section.
        let mut b = BodyBuilder::new();
        let y = b.param("y", DType::F32, Access::Write);
        b.store(y, 0, Expr::Local(Local(0)));
        let _ = b.let_(Expr::f32(1.0));
        let e = err(&b.finish());
        assert!(e.contains("a0 is used before its let"), "{e}");

        let mut b = BodyBuilder::new();
        let y = b.param("y", DType::F32, Access::Write);
        let a = b.let_(Expr::f32(1.0));
        b.store(y, 0, a);
        let e = err(&b.finish());
        assert!(e.contains("outside the block (or section)"), "{e}");

        // Assigning another type.
        let mut b = BodyBuilder::new();
        let y = b.param("y", DType::F32, Access::Write);
        b.serial(0, 1, |b, _| {
            let a = b.let_(Expr::f32(1.0));
            b.assign(a, 3);
            b.store(y, 0, a);
        });
        let e = err(&b.finish());
        assert!(
            e.contains("a0 is f32 (from its let) but is assigned int"),
            "{e}"
        );
    }

    #[test]
    fn checks_loop_kinds() {
        let mut b = BodyBuilder::new();
        let y = b.param("y", DType::F32, Access::Write);
        b.serial(0, 4, |b, i| {
            b.for_(LoopKind::Parallel, 0, 4, |b, j| {
                b.store(y, i * 4 + j, Expr::f32(0.0))
            });
        });
        assert!(err(&b.finish()).contains("must be a top-level statement"));

        let mut b = BodyBuilder::new();
        let n = b.param("n", DType::I32, Access::Read);
        let y = b.param("y", DType::F32, Access::Write);
        b.for_(LoopKind::Parallel, 0, ld(n, 0), |b, i| {
            b.store(y, i, Expr::f32(0.0))
        });
        assert!(err(&b.finish()).contains("a parallel range may use only"));

        let mut b = BodyBuilder::new();
        let y = b.param("y", DType::F32, Access::Write);
        b.for_(LoopKind::Serial, Expr::f32(0.0), 4, |b, i| {
            b.store(y, i, Expr::f32(0.0))
        });
        assert!(err(&b.finish()).contains("loop start is f32"));
    }

    #[test]
    fn vector_loops_update_outer_locals_only_by_reductions() {
        let build = |f: &dyn Fn(&mut BodyBuilder, Local, LoopVar)| {
            let mut b = BodyBuilder::new();
            let x = b.param("x", DType::F32, Access::Read);
            let y = b.param("y", DType::F32, Access::Write);
            b.serial(0, 1, |b, _| {
                let acc = b.let_(Expr::f32(0.0));
                b.for_(LoopKind::Vector, 0, 8, |b, k| {
                    let _ = x;
                    f(b, acc, k)
                });
                b.store(y, 0, acc);
            });
            b.finish()
        };
        let ok = build(&|b, acc, k| b.assign(acc, acc + ld(0, k)));
        assert_eq!(verify_body(&ok), Ok(()));
        let e = err(&build(&|b, acc, k| b.assign(acc, ld(0, k))));
        assert!(e.contains("only as a reduction"), "{e}");
        let e = err(&build(&|b, acc, k| b.assign(acc, ld(0, k) * acc)));
        assert!(e.contains("only as a reduction"), "{e}");
        let e = err(&build(&|b, acc, k| {
            b.assign(acc, acc + ld(0, k));
            b.store(1, k, acc);
        }));
        assert!(e.contains("may be read only by its own update"), "{e}");
        // A local of the iteration itself is free.
        let inner = build(&|b, acc, k| {
            let t = b.let_(ld(0, k));
            b.assign(t, t * t);
            b.assign(acc, acc + t);
        });
        assert_eq!(verify_body(&inner), Ok(()));
    }

    fn buffer(id: u32, name: &str, dtype: DType, dims: Vec<Dim>, kind: BufferKind) -> Buffer {
        Buffer {
            id: BufferId(id),
            name: name.into(),
            dtype,
            dims,
            kind,
        }
    }

    fn kernel(name: &str, kind: KernelKind, body: u32, args: &[u32], phase: Phase) -> Kernel {
        Kernel {
            name: name.into(),
            kind,
            body: BodyId(body),
            args: args.iter().map(|&a| BufferId(a)).collect(),
            phase,
            computes: vec![],
        }
    }

    fn map(expr: &str) -> KernelKind {
        KernelKind::Map { expr: expr.into() }
    }

    /// `x → exp → t → exp → y` plus an optimizer-free param read.
    fn program() -> KernelProgram {
        let t = || vec![Dim::sym("T"), Dim::Const(4)];
        KernelProgram {
            name: "p".into(),
            bounds: vec![("T".into(), 8)],
            buffers: vec![
                buffer(0, "x", DType::F32, t(), BufferKind::Input { index: 0 }),
                buffer(1, "t", DType::F32, t(), BufferKind::Temp),
                buffer(2, "y", DType::F32, t(), BufferKind::Output { index: 0 }),
                buffer(
                    3,
                    "w",
                    DType::F32,
                    vec![Dim::Const(4)],
                    BufferKind::Param { name: "w".into() },
                ),
            ],
            bodies: vec![unary_map()],
            kernels: vec![
                kernel("k0", map("exp"), 0, &[0, 1], Phase::Step),
                kernel("k1", map("exp"), 0, &[1, 2], Phase::Step),
            ],
        }
    }

    fn program_errors(p: &KernelProgram) -> String {
        verify_program(p)
            .expect_err("the program should be rejected")
            .join("\n")
    }

    #[test]
    fn accepts_a_chain() {
        assert_eq!(verify_program(&program()), Ok(()));
    }

    #[test]
    fn checks_kernel_bindings() {
        let mut p = program();
        p.kernels[0].args.pop();
        assert!(program_errors(&p).contains("1 args for body0, which has 2 params"));

        let mut p = program();
        p.buffers[1].dtype = DType::F16;
        let e = program_errors(&p);
        assert!(
            e.contains("param `x: f32` is bound to b1 `t` of dtype f16"),
            "{e}"
        );

        let mut p = program();
        p.kernels[1].args[1] = BufferId(3);
        let e = program_errors(&p);
        assert!(
            e.contains("written only by step-phase optimizer kernels"),
            "{e}"
        );
        p.kernels[1].kind = KernelKind::Optimizer { rule: "sgd".into() };
        assert!(!program_errors(&p).contains("optimizer kernels"));

        let mut p = program();
        p.kernels[1].args[1] = BufferId(0);
        assert!(program_errors(&p).contains("an input is written only by the caller"));

        // An optimizer update, then a read of the updated param.
        let mut p = program();
        p.kernels[0].args = vec![BufferId(0), BufferId(3)];
        p.kernels[0].kind = KernelKind::Optimizer { rule: "sgd".into() };
        p.kernels
            .push(kernel("k2", map("exp"), 0, &[3, 1], Phase::Step));
        let e = program_errors(&p);
        assert!(
            e.contains("kernel #2 `k2`: param `x` reads b3 after kernel #0 `k0` updated it"),
            "{e}"
        );

        let mut p = program();
        p.kernels[1].args[1] = BufferId(9);
        assert!(program_errors(&p).contains("bound to b9, which does not exist"));

        let mut p = program();
        p.kernels[1].body = BodyId(4);
        assert!(program_errors(&p).contains("body4 does not exist"));
    }

    #[test]
    fn checks_phases_and_lifetimes() {
        let mut p = program();
        p.kernels
            .push(kernel("late", map("exp"), 0, &[3, 1], Phase::Load));
        let e = program_errors(&p);
        assert!(e.contains("a load-phase kernel after a step kernel"), "{e}");
        assert!(e.contains("may not use `T`"), "{e}");
        assert!(e.contains("used in both phases"), "{e}");

        let mut p = program();
        p.kernels.swap(0, 1);
        let e = program_errors(&p);
        assert!(
            e.contains("temp b1 `t` is read before any kernel writes it"),
            "{e}"
        );
        p.kernels.remove(0);
        assert!(program_errors(&p).contains("output b2 `y` is never written"));
    }

    #[test]
    fn checks_buffers_and_body_symbols() {
        let mut p = program();
        p.buffers[2].id = BufferId(7);
        p.buffers[1].dims[0] = Dim::sym("B");
        p.bounds.clear();
        let e = program_errors(&p);
        assert!(e.contains("buffer #2 `y` has id b7"), "{e}");
        assert!(e.contains("has dim `B`, which has no bound"), "{e}");
        assert!(
            e.contains("body0 (used by `k0`, `k1`) uses `T`, which has no bound"),
            "{e}"
        );

        let mut p = program();
        p.buffers[2].kind = BufferKind::Input { index: 0 };
        assert!(program_errors(&p).contains("are the same Input"));

        let mut p = program();
        p.bodies[0].stmts.push(Stmt::Store {
            arg: 0,
            index: Expr::Int(0),
            value: Expr::F32(0.0),
        });
        let e = program_errors(&p);
        assert!(
            e.contains("body0 (used by `k0`, `k1`): in `x[0] = 0.0`: store to `x`"),
            "{e}"
        );
    }
}
