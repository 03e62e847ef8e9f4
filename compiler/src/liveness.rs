//! Schedule liveness and peak memory: how many bytes of values one run of a graph holds at
//! once, executed in its schedule ([`Graph::topo_order`], the order `print` shows, fused
//! regions contiguous).
//!
//! A pure function of a graph and a binding of its symbols (`T`, `B`); for a compiled
//! program, [`bound_bindings`] takes every symbol at its bound: `T = context` for inference,
//! `B = batch, T = seq` for a training step.
//!
//! The model (what the numbers mean):
//! - Steps are the computed nodes in schedule order (params and inputs are not steps).
//! - A value is live from the step that defines it to its last use, both included: while a
//!   node runs its operands and its results are all held (no in-place reuse is assumed).
//!   Graph inputs are live from step 0; graph outputs stay live to the last step; a value
//!   nobody reads is live at its own step only.
//! - Values are classified so that the activation peak is about what scales with tokens:
//!   - **params** are weights;
//!   - **weight-time** values depend on params and constants only (`hadamard_twiddles`,
//!     `fill` with constant dims, and anything computed from those and params alone, such as
//!     `dib_twiddles` of params): computed once per weight load (per step when training), they
//!     are reported with the weights, not as activations;
//!   - **updates** are outputs that overwrite a param (`@w`, optimizer states): the step writes
//!     them over the param's own buffer, so they are weights too;
//!   - everything else (inputs included) is an **activation**, and the peak is over these.
//! - A value defined inside a fused region and read only inside it (not an output) is
//!   **fused-internal**: a kernel built from the region need not write it to memory. The
//!   main peak counts every value as materialized (what an unfused run holds); a second peak
//!   leaves fused-internal values out (what an arena plan for the fused kernels needs).
//! - In a training graph (one with `OP.grad` ops), the forward values **kept for backward**
//!   are forward activations whose last use is a `.grad` op: what the step must hold from the
//!   forward pass until backward reads it. A forward node is one no `.grad` op reaches.
//!
//! Dims are exact products (checked: an overflow is an error, not a wrap).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;

use bfly_ir::print::{RegionNames, ValueNames};
use bfly_ir::{Dim, Graph, NodeId, Op, Type, Value};

/// A value for each symbol of the graph's types.
pub type Bindings = BTreeMap<String, u64>;

/// Every symbol bound on the graph at its upper bound (`T = context`, `B = batch`).
pub fn bound_bindings(g: &Graph) -> Bindings {
    g.bounds.iter().cloned().collect()
}

/// What a value is, for the report (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueClass {
    Activation,
    WeightTime,
    Update,
}

/// One non-param value with its size and live range.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueInfo {
    pub value: Value,
    /// As printed: `%12`, `%tokens`.
    pub name: String,
    /// The defining op (`matmul`, `rmsnorm.grad`, `input`).
    pub op: String,
    pub ty: Type,
    pub bytes: u64,
    pub class: ValueClass,
    /// First and last step at which the value is live.
    pub def: usize,
    pub last_use: usize,
    /// Defined by a forward node (no `.grad` op reaches it).
    pub forward: bool,
    /// Defined and read only inside one fused region, and not a graph output.
    pub fused_internal: bool,
    /// A graph input (live from the start) or output (live to the end).
    pub input: bool,
    pub output: bool,
}

impl ValueInfo {
    pub fn live_at(&self, step: usize) -> bool {
        self.def <= step && step <= self.last_use
    }
}

/// One computed node of the schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub node: NodeId,
    /// Its first result as printed (`%12`) and its op (`gelu`).
    pub name: String,
    pub op: String,
    /// `@r3` when the node is in a fused region.
    pub region: Option<String>,
    /// Activation bytes live while it runs.
    pub live_bytes: u64,
    /// The same without fused-internal values.
    pub live_fused_bytes: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MemoryReport {
    pub graph: String,
    pub bindings: Bindings,
    pub steps: Vec<Step>,
    pub params: usize,
    pub param_bytes: u64,
    /// Every non-param value, in schedule order (inputs first).
    pub values: Vec<ValueInfo>,
    /// Peak activation bytes over the steps and the first step reaching it (`None` for a
    /// graph without computed nodes).
    pub peak_bytes: u64,
    pub peak_step: Option<usize>,
    /// The peak without fused-internal values, and its first step.
    pub fused_peak_bytes: u64,
    pub fused_peak_step: Option<usize>,
    /// Whether the graph is a training step (has `.grad` ops).
    pub training: bool,
}

impl MemoryReport {
    fn class(&self, class: ValueClass) -> impl Iterator<Item = &ValueInfo> {
        self.values.iter().filter(move |v| v.class == class)
    }

    /// Activations live at the peak step, largest first (then in schedule order).
    pub fn live_at_peak(&self) -> Vec<&ValueInfo> {
        let Some(step) = self.peak_step else {
            return Vec::new();
        };
        let mut live: Vec<&ValueInfo> = self
            .class(ValueClass::Activation)
            .filter(|v| v.live_at(step))
            .collect();
        live.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.def.cmp(&b.def)));
        live
    }

    /// Forward activations whose last use is a `.grad` op, in schedule order (empty for
    /// inference graphs).
    pub fn kept_for_backward(&self) -> Vec<&ValueInfo> {
        self.class(ValueClass::Activation)
            .filter(|v| {
                v.forward
                    && self
                        .steps
                        .get(v.last_use)
                        .is_some_and(|s| s.op.ends_with(".grad"))
                    && v.last_use > v.def
            })
            .collect()
    }

    pub fn weight_time_bytes(&self) -> u64 {
        self.class(ValueClass::WeightTime).map(|v| v.bytes).sum()
    }

    pub fn update_bytes(&self) -> u64 {
        self.class(ValueClass::Update).map(|v| v.bytes).sum()
    }
}

/// Bytes of a value of type `ty` under `bindings`.
pub fn type_bytes(ty: &Type, bindings: &Bindings) -> Result<u64, String> {
    let mut n = ty.dtype.size_bytes() as u64;
    for d in &ty.dims {
        let v = match d {
            Dim::Const(c) => *c,
            Dim::Sym(s) => *bindings
                .get(s)
                .ok_or_else(|| format!("symbol `{s}` (in {ty}) has no value"))?,
        };
        n = n
            .checked_mul(v)
            .ok_or_else(|| format!("{ty} does not fit in 2^64 bytes"))?;
    }
    Ok(n)
}

/// Analyses `g` run in its schedule with `bindings` (see the module doc).
pub fn analyze_memory(g: &Graph, bindings: &Bindings) -> Result<MemoryReport, String> {
    let order = g.topo_order().ok_or_else(|| {
        "the graph cannot be scheduled (a cycle, or fused regions that feed each other)".to_string()
    })?;
    let names = ValueNames::new(g, &order);
    let region_names = RegionNames::new(g, &order);
    let computed: Vec<NodeId> = order
        .iter()
        .copied()
        .filter(|&n| !g.node(n).op.is_source())
        .collect();
    let step_of: HashMap<NodeId, usize> =
        computed.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let last_step = computed.len().saturating_sub(1);

    // Weight-time nodes, in schedule order (operands come first).
    let mut weight_time: HashSet<NodeId> = HashSet::new();
    for &n in &order {
        let wt = match &g.node(n).op {
            Op::Input { .. } => false,
            Op::Param(_) | Op::HadamardTwiddles { .. } => true,
            Op::Fill { dims, .. } => dims.iter().all(|d| matches!(d, Dim::Const(_))),
            _ => g.operands(n).iter().all(|v| weight_time.contains(&v.node)),
        };
        if wt {
            weight_time.insert(n);
        }
    }
    // Backward nodes: `.grad` ops and everything they reach, then the constants (no operands)
    // read only by backward nodes, such as the `fill` that seeds the loss gradient.
    let mut backward: HashSet<NodeId> = HashSet::new();
    for &n in &order {
        if matches!(g.node(n).op, Op::Grad(_))
            || g.operands(n).iter().any(|v| backward.contains(&v.node))
        {
            backward.insert(n);
        }
    }
    for &n in &computed {
        let users = g.users(n);
        if g.operands(n).is_empty()
            && !users.is_empty()
            && users.iter().all(|u| backward.contains(u))
        {
            backward.insert(n);
        }
    }
    let updates: HashSet<Value> = g
        .outputs()
        .iter()
        .filter(|o| o.param)
        .map(|o| o.value)
        .collect();
    let outputs: HashSet<Value> = g.outputs().iter().map(|o| o.value).collect();
    // Last reader of each value.
    let mut last_read: HashMap<Value, usize> = HashMap::new();
    for (i, &n) in computed.iter().enumerate() {
        for v in g.operands(n) {
            let e = last_read.entry(v).or_insert(i);
            *e = (*e).max(i);
        }
    }

    let (mut params, mut param_bytes) = (0usize, 0u64);
    let mut values = Vec::new();
    for &n in &order {
        let node = g.node(n);
        if let Op::Param(_) = node.op {
            params += 1;
            param_bytes = param_bytes
                .checked_add(type_bytes(&node.results[0], bindings)?)
                .ok_or("the params do not fit in 2^64 bytes")?;
            continue;
        }
        let def = step_of.get(&n).copied().unwrap_or(0);
        for (r, ty) in node.results.iter().enumerate() {
            let value = Value {
                node: n,
                result: r as u32,
            };
            let class = if updates.contains(&value) {
                ValueClass::Update
            } else if weight_time.contains(&n) {
                ValueClass::WeightTime
            } else {
                ValueClass::Activation
            };
            let mut readers = g
                .users(n)
                .into_iter()
                .filter(|&u| g.operands(u).contains(&value))
                .peekable();
            let fused_internal = node.region.is_some()
                && !outputs.contains(&value)
                && readers.peek().is_some()
                && readers.all(|u| g.node(u).region == node.region);
            let mut last_use = last_read.get(&value).copied().unwrap_or(def).max(def);
            if outputs.contains(&value) {
                last_use = last_step.max(def);
            }
            values.push(ValueInfo {
                value,
                name: names.get(value).to_string(),
                op: node.op.name().into_owned(),
                ty: ty.clone(),
                bytes: type_bytes(ty, bindings)?,
                class,
                def,
                last_use,
                forward: !backward.contains(&n),
                fused_internal,
                input: matches!(node.op, Op::Input { .. }),
                output: outputs.contains(&value),
            });
        }
    }

    let live = live_per_step(&values, computed.len(), |_| true);
    let live_fused = live_per_step(&values, computed.len(), |v| !v.fused_internal);
    let steps: Vec<Step> = computed
        .iter()
        .enumerate()
        .map(|(i, &n)| Step {
            node: n,
            name: names.get(Value::first(n)).to_string(),
            op: g.node(n).op.name().into_owned(),
            region: g.node(n).region.map(|r| region_names.get(r).to_string()),
            live_bytes: live[i],
            live_fused_bytes: live_fused[i],
        })
        .collect();
    let (peak_step, peak_bytes) = peak(&live);
    let (fused_peak_step, fused_peak_bytes) = peak(&live_fused);
    Ok(MemoryReport {
        graph: g.name.clone(),
        bindings: bindings.clone(),
        steps,
        params,
        param_bytes,
        values,
        peak_bytes,
        peak_step,
        fused_peak_bytes,
        fused_peak_step,
        training: !backward.is_empty(),
    })
}

/// Activation bytes live at each of `steps` steps, counting the values `counted` accepts.
fn live_per_step(
    values: &[ValueInfo],
    steps: usize,
    counted: impl Fn(&ValueInfo) -> bool,
) -> Vec<u64> {
    // Add at `def`, subtract after `last_use`; i128 so the running sum cannot overflow.
    let mut delta = vec![0i128; steps + 2];
    for v in values
        .iter()
        .filter(|v| v.class == ValueClass::Activation && counted(v))
    {
        delta[v.def] += i128::from(v.bytes);
        delta[v.last_use + 1] -= i128::from(v.bytes);
    }
    let mut live = 0i128;
    delta[..steps]
        .iter()
        .map(|d| {
            live += d;
            u64::try_from(live).unwrap_or(u64::MAX)
        })
        .collect()
}

/// The first step with the most live bytes, and that many bytes.
fn peak(live: &[u64]) -> (Option<usize>, u64) {
    let mut best: (Option<usize>, u64) = (None, 0);
    for (i, &b) in live.iter().enumerate() {
        if best.0.is_none() || b > best.1 {
            best = (Some(i), b);
        }
    }
    best
}

fn mib(bytes: u64) -> String {
    format!("{bytes} B ({:.3} MiB)", bytes as f64 / (1024.0 * 1024.0))
}

fn value_rows(out: &mut String, values: &[&ValueInfo], steps: &[Step]) {
    let step_name = |i: usize| steps.get(i).map_or("—", |s| s.name.as_str());
    for v in values {
        let from = if v.input { "start" } else { step_name(v.def) };
        let to = if v.output {
            "end"
        } else {
            step_name(v.last_use)
        };
        let _ = writeln!(
            out,
            "  {:<9} {:<18} {:>10} B  {:<22} live {}..{}",
            v.name,
            v.ty.to_string(),
            v.bytes,
            v.op,
            from,
            to,
        );
    }
}

/// The report as text: weights, the activation peak and what is live there, for training the
/// values kept for backward, and with `per_step` the live bytes at every step.
pub fn render_memory(r: &MemoryReport, per_step: bool) -> String {
    let mut out = String::new();
    let binds: Vec<String> = r
        .bindings
        .iter()
        .map(|(s, v)| format!("{s} = {v}"))
        .collect();
    let _ = writeln!(
        out,
        "memory of @{} ({}) at {}",
        r.graph,
        if r.training {
            "one training step"
        } else {
            "inference"
        },
        if binds.is_empty() {
            "fixed shapes".to_string()
        } else {
            binds.join(", ")
        }
    );
    let regions: HashSet<&str> = r.steps.iter().filter_map(|s| s.region.as_deref()).collect();
    let _ = writeln!(
        out,
        "schedule: {} steps, {} fused regions",
        r.steps.len(),
        regions.len()
    );
    let _ = writeln!(out, "\nweights:");
    let _ = writeln!(
        out,
        "  params                {:>4}  {}",
        r.params,
        mib(r.param_bytes)
    );
    let count = |c| r.values.iter().filter(|v| v.class == c).count();
    let _ = writeln!(
        out,
        "  weight-time values    {:>4}  {}",
        count(ValueClass::WeightTime),
        mib(r.weight_time_bytes())
    );
    if count(ValueClass::Update) > 0 {
        let _ = writeln!(
            out,
            "  param updates         {:>4}  {}  (written over their params)",
            count(ValueClass::Update),
            mib(r.update_bytes())
        );
    }
    let _ = writeln!(out, "\nactivations:");
    match r.peak_step.and_then(|i| r.steps.get(i).map(|s| (i, s))) {
        None => {
            let _ = writeln!(out, "  no computed nodes");
        }
        Some((i, s)) => {
            let region = s
                .region
                .as_ref()
                .map(|r| format!(", in fused {r}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  peak {} at step {} of {} ({} = {}{region})",
                mib(r.peak_bytes),
                i + 1,
                r.steps.len(),
                s.name,
                s.op
            );
            if let Some(f) = r
                .fused_peak_step
                .and_then(|i| r.steps.get(i).map(|s| (i, s)))
                && r.steps.iter().any(|s| s.region.is_some())
            {
                let _ = writeln!(
                    out,
                    "  peak {} at step {} ({} = {}) when fused regions keep their intermediates out of memory",
                    mib(r.fused_peak_bytes),
                    f.0 + 1,
                    f.1.name,
                    f.1.op
                );
            }
            let live = r.live_at_peak();
            let _ = writeln!(out, "\nlive at the peak ({} values):", live.len());
            value_rows(&mut out, &live, &r.steps);
        }
    }
    if r.training {
        let kept = r.kept_for_backward();
        let total: u64 = kept.iter().map(|v| v.bytes).sum();
        let _ = writeln!(
            out,
            "\nkept for backward ({} forward values, {}):",
            kept.len(),
            mib(total)
        );
        value_rows(&mut out, &kept, &r.steps);
    }
    if per_step {
        let _ = writeln!(
            out,
            "\nlive bytes per step (all values, and without fused-region intermediates):"
        );
        for (i, s) in r.steps.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {:>4}  {:<9} {:<24} {:<6} {:>10} {:>10}",
                i + 1,
                s.name,
                s.op,
                s.region.as_deref().unwrap_or(""),
                s.live_bytes,
                s.live_fused_bytes
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bfly_ir::{DType, Init, Output, Param};

    fn bind(pairs: &[(&str, u64)]) -> Bindings {
        pairs.iter().map(|(s, v)| (s.to_string(), *v)).collect()
    }

    /// `x: f32[T, 4]` → `a = matmul x, w (4→8)` → `b = gelu a` → `c = matmul b, w2 (8→4)`
    /// → `y = add c, x`, plus a weight-time `scale @w2` feeding the second matmul.
    ///
    /// By hand at T = 10 (f32): x = 160 B, a = b = 320 B, c = y = 160 B.
    /// steps: 1 `w2s = scale @w2` (weight-time, not counted): x live → 160
    ///        2 `a = matmul x`: x, a → 480
    ///        3 `b = gelu a`: x, a, b → 800  ← peak
    ///        4 `c = matmul b`: x, b, c → 640
    ///        5 `y = add c, x`: x, c, y → 480
    fn mlp() -> Graph {
        let mut g = Graph::new("mlp");
        g.set_bound("T", 64);
        let x = g.add_input("x", Type::new(DType::F32, [Dim::sym("T"), Dim::Const(4)]));
        let p = |name: &str| Param {
            name: name.into(),
            init: Init::Normal { std: 0.1 },
            trainable: true,
        };
        let w = g.add_param(p("w"), Type::fixed(DType::F32, &[8, 4]));
        let w2 = g.add_param(p("w2"), Type::fixed(DType::F32, &[4, 8]));
        let w2s = g.add1(Op::Scale { factor: 0.5 }, &[w2], None).unwrap();
        let a = g.add1(Op::Matmul, &[x, w], None).unwrap();
        let b = g.add1(Op::Gelu, &[a], None).unwrap();
        let c = g.add1(Op::Matmul, &[b, w2s], None).unwrap();
        let y = g.add1(Op::Add, &[c, x], None).unwrap();
        g.set_outputs(vec![Output::value("y", y)]);
        g
    }

    #[test]
    fn the_peak_of_a_hand_built_graph_is_what_hand_counting_gives() {
        let g = mlp();
        let r = analyze_memory(&g, &bind(&[("T", 10)])).expect("analyzes");
        let live: Vec<u64> = r.steps.iter().map(|s| s.live_bytes).collect();
        assert_eq!(live, [160, 480, 800, 640, 480]);
        assert_eq!(r.peak_bytes, 800);
        assert_eq!(r.peak_step, Some(2));
        let at_peak: Vec<&str> = r.live_at_peak().iter().map(|v| v.name.as_str()).collect();
        assert_eq!(at_peak, ["%1", "%2", "%x"]);
        assert_eq!(r.params, 2);
        assert_eq!(r.param_bytes, 2 * 32 * 4);
        assert_eq!(r.weight_time_bytes(), 32 * 4);
        assert!(!r.training);
        assert!(r.kept_for_backward().is_empty());
        // At the graph's bound: T = 64 scales every activation by 6.4.
        let r = analyze_memory(&g, &bound_bindings(&g)).expect("analyzes");
        assert_eq!(r.peak_bytes, 800 * 64 / 10);
    }

    #[test]
    fn fused_regions_change_the_schedule_not_the_values() {
        let mut g = mlp();
        crate::passes::fuse_regions(&mut g).expect("acyclic");
        let r = analyze_memory(&g, &bind(&[("T", 10)])).expect("analyzes");
        // matmul + gelu and matmul + add become regions; the schedule is the same here.
        assert_eq!(r.steps.iter().filter(|s| s.region.is_some()).count(), 4);
        assert_eq!(r.peak_bytes, 800);
        // `a` (read only by the gelu) and `c` (only by the add) never leave their regions:
        // steps hold x | x | x, b | x, b | x, y.
        let internal: Vec<&str> = r
            .values
            .iter()
            .filter(|v| v.fused_internal)
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(internal, ["%1", "%3"]);
        let fused: Vec<u64> = r.steps.iter().map(|s| s.live_fused_bytes).collect();
        assert_eq!(fused, [160, 160, 480, 480, 320]);
        assert_eq!((r.fused_peak_step, r.fused_peak_bytes), (Some(2), 480));
        let text = render_memory(&r, false);
        assert!(
            text.contains("peak 480 B (0.000 MiB) at step 3 (%2 = gelu) when fused regions"),
            "{text}"
        );
    }

    #[test]
    fn a_training_graph_reports_what_backward_keeps() {
        // y = exp(x · w); loss-like seed; grads: exp.grad reads y (kept) and matmul.grad
        // reads x (an input, kept) and w.
        let mut g = Graph::new("train");
        g.set_bound("T", 4);
        let x = g.add_input("x", Type::new(DType::F32, [Dim::sym("T"), Dim::Const(2)]));
        let w = g.add_param(
            Param {
                name: "w".into(),
                init: Init::Normal { std: 0.1 },
                trainable: true,
            },
            Type::fixed(DType::F32, &[2, 2]),
        );
        let h = g.add1(Op::Matmul, &[x, w], None).unwrap();
        let y = g.add1(Op::Exp, &[h], None).unwrap();
        let seed = g
            .add1(
                Op::Fill {
                    value: 1.0,
                    dtype: DType::F32,
                    dims: vec![Dim::sym("T"), Dim::Const(2)],
                },
                &[],
                None,
            )
            .unwrap();
        let gh = g
            .add1(Op::Grad(Box::new(Op::Exp)), &[h, seed], None)
            .unwrap();
        let grads = g
            .add_op(Op::Grad(Box::new(Op::Matmul)), &[x, w, gh], None)
            .unwrap();
        let w_new = g.add1(Op::Sgd { lr: 0.1 }, &[w, grads[1]], None).unwrap();
        g.set_outputs(vec![
            Output::value("y", y),
            Output::param_update("w", w_new),
        ]);
        let r = analyze_memory(&g, &bind(&[("T", 4)])).expect("analyzes");
        assert!(r.training);
        // T·2·4 = 32 B per activation, 16 B for the [2, 2] gradient.
        // steps: h | y | seed | gh | (gx, gw) | sgd (the update is not counted); `y` is an
        // output (live to the end), `gx` is never read (live at its own step).
        let live: Vec<u64> = r.steps.iter().map(|s| s.live_bytes).collect();
        assert_eq!(live, [64, 96, 128, 160, 144, 48]);
        assert_eq!(r.peak_bytes, 160);
        let kept: Vec<(&str, u64)> = r
            .kept_for_backward()
            .iter()
            .map(|v| (v.name.as_str(), v.bytes))
            .collect();
        // `%0` (h) is read last by exp.grad, `%x` by matmul.grad; `y` is an output, and the
        // seed, read only by backward, is a backward value.
        assert_eq!(kept, [("%x", 32), ("%0", 32)]);
        assert_eq!(r.update_bytes(), 16);
        let text = render_memory(&r, true);
        assert!(
            text.contains("kept for backward (2 forward values, 64 B"),
            "{text}"
        );
        assert!(text.contains("param updates            1  16 B"), "{text}");
    }

    #[test]
    fn unbound_symbols_and_overflow_are_errors() {
        let g = mlp();
        let err = analyze_memory(&g, &Bindings::new()).expect_err("no T");
        assert_eq!(err, "symbol `T` (in f32[T, 4]) has no value");
        let err = analyze_memory(&g, &bind(&[("T", u64::MAX / 2)])).expect_err("overflow");
        assert!(err.contains("does not fit"), "{err}");
    }

    #[test]
    fn renders_the_peak_and_the_live_set() {
        let g = mlp();
        let text = render_memory(&analyze_memory(&g, &bind(&[("T", 10)])).unwrap(), true);
        assert!(
            text.starts_with("memory of @mlp (inference) at T = 10\n"),
            "{text}"
        );
        assert!(
            text.contains("peak 800 B (0.001 MiB) at step 3 of 5 (%2 = gelu)"),
            "{text}"
        );
        assert!(text.contains("live at the peak (3 values):"), "{text}");
        assert!(text.contains("live bytes per step"), "{text}");
        assert!(
            text.contains("  %x        f32[T, 4]                 160 B  input                  live start..%4\n"),
            "{text}"
        );
        assert!(!text.contains("kept for backward"), "{text}");
    }
}
