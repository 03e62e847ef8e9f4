//! Per-layer parameter summary: what each linear/norm/embedding site stores, in which dtype,
//! how many bytes, and how that compares with a dense f32 layer of the same in×out size.
//!
//! It is an analysis over any graph (built from a spec or hand-written IR): a row per layer op,
//! whose parameters are found by walking its operands back through twiddle producers and casts.

use crate::graph::{Graph, NodeId};
use crate::op::Op;
use crate::types::DType;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;

#[derive(Clone, Debug, PartialEq)]
pub struct SummaryRow {
    /// Site name: the common dotted prefix of the layer's parameter names.
    pub site: String,
    pub kind: String,
    pub n_in: u64,
    pub n_out: u64,
    pub params: u64,
    /// Bytes per dtype of the parameters this row owns (shared ones are counted once).
    pub bytes: BTreeMap<DType, u64>,
    /// Bytes of a dense f32 `in × out` matrix, for linear layers.
    pub dense_bytes: Option<u64>,
    pub note: String,
}

impl SummaryRow {
    pub fn total_bytes(&self) -> u64 {
        self.bytes.values().sum()
    }
}

fn common_site(names: &[String]) -> String {
    let split: Vec<Vec<&str>> = names.iter().map(|n| n.split('.').collect()).collect();
    let Some(first) = split.first() else {
        return "—".into();
    };
    let mut len = first
        .len()
        .saturating_sub(if split.len() == 1 { 1 } else { 0 });
    for s in &split[1..] {
        len = len.min(first.iter().zip(s).take_while(|(a, b)| a == b).count());
    }
    if len == 0 {
        names.join("+")
    } else {
        first[..len].join(".")
    }
}

/// Walks operands back through producers (twiddles, casts, dequantize) to the params.
fn collect_params(g: &Graph, id: NodeId, out: &mut Vec<NodeId>, kind: &mut Option<&'static str>) {
    for v in g.operands(id) {
        match &g.node(v.node).op {
            Op::Param(_) => out.push(v.node),
            op @ (Op::DibTwiddles { .. }
            | Op::GivensTwiddles
            | Op::TernaryTwiddles { .. }
            | Op::HadamardTwiddles { .. }) => {
                *kind = Some(match op {
                    Op::DibTwiddles { .. } => "dib",
                    Op::GivensTwiddles => "givens",
                    Op::TernaryTwiddles { .. } => "ternary",
                    _ => "hadamard",
                });
                collect_params(g, v.node, out, kind);
            }
            Op::Cast { .. } | Op::Dequantize => collect_params(g, v.node, out, kind),
            _ => {}
        }
    }
}

/// One row per layer op, in schedule order.
pub fn summarize(g: &Graph) -> Vec<SummaryRow> {
    let order = g.topo_order().unwrap_or_else(|| g.node_ids().collect());
    let mut owned: HashSet<NodeId> = HashSet::new();
    let mut rows = Vec::new();
    for id in order {
        let node = g.node(id);
        let operand_width = |slot: usize| {
            g.operands(id)
                .get(slot)
                .and_then(|v| g.value_type(*v).last_const())
                .unwrap_or(0)
        };
        let out_width = node
            .results
            .first()
            .and_then(|t| t.last_const())
            .unwrap_or(0);
        let (kind, n_in, n_out) = match &node.op {
            Op::Embed => ("embedding", 0, out_width),
            Op::Matmul | Op::QMatmul => ("dense", operand_width(0), out_width),
            Op::Butterfly { .. } => ("butterfly", operand_width(0), out_width),
            Op::Monarch { .. } => ("monarch", operand_width(0), out_width),
            Op::Lora { .. } => ("lora", operand_width(0), out_width),
            Op::RmsNorm { .. } => ("rmsnorm", operand_width(0), out_width),
            Op::LayerNorm { .. } => ("layernorm", operand_width(0), out_width),
            _ => continue,
        };
        let mut params = Vec::new();
        let mut producer = None;
        collect_params(g, id, &mut params, &mut producer);
        let kind = producer.unwrap_or(kind).to_string();
        let mut names = Vec::new();
        let mut bytes = BTreeMap::new();
        let mut count = 0;
        let mut shared = Vec::new();
        for p in params {
            let (Op::Param(param), ty) = (&g.node(p).op, &g.node(p).results[0]) else {
                continue;
            };
            names.push(param.name.clone());
            if !owned.insert(p) {
                shared.push(param.name.clone());
                continue;
            }
            let numel = ty.const_numel().unwrap_or(0) as u64;
            count += numel;
            *bytes.entry(ty.dtype).or_insert(0) +=
                numel.saturating_mul(ty.dtype.size_bytes() as u64);
        }
        let linear = !matches!(kind.as_str(), "embedding" | "rmsnorm" | "layernorm");
        let note = if shared.is_empty() {
            String::new()
        } else {
            format!("shares {}", shared.join(", "))
        };
        rows.push(SummaryRow {
            site: common_site(&names),
            kind,
            n_in,
            n_out,
            params: count,
            bytes,
            dense_bytes: linear.then_some(n_in.saturating_mul(n_out).saturating_mul(4)),
            note,
        });
    }
    rows
}

/// One line of the summary table; left-aligned text columns, right-aligned numbers.
fn table_row(cols: &[&str; 9]) -> String {
    let [site, kind, shape, params, dtype, bytes, dense, ratio, note] = cols;
    format!(
        "{site:<24} {kind:<10} {shape:>11} {params:>10} {dtype:<8} {bytes:>22} {dense:>22} {ratio:>8}  {note}\n"
    )
    .replace("  \n", "\n")
}

/// `180224 (0.172 MiB)`.
fn with_mib(b: u64) -> String {
    format!("{b} ({})", mib(b))
}

fn mib(b: u64) -> String {
    format!("{:.3} MiB", b as f64 / (1024.0 * 1024.0))
}

/// The table `bfly inspect --emit summary` prints.
pub fn render_summary(g: &Graph) -> String {
    let rows = summarize(g);
    let mut s = String::new();
    s.push_str(&table_row(&[
        "layer",
        "kind",
        "in→out",
        "params",
        "dtype",
        "bytes",
        "dense f32",
        "ratio",
        "note",
    ]));
    let mut total = 0u64;
    let mut total_params = 0u64;
    let mut by_kind: BTreeMap<(String, DType), (u64, u64)> = BTreeMap::new();
    for r in &rows {
        let dtypes: Vec<&str> = r.bytes.keys().map(|d| d.name()).collect();
        let bytes = r.total_bytes();
        total += bytes;
        total_params += r.params;
        for (d, b) in &r.bytes {
            let e = by_kind.entry((r.kind.clone(), *d)).or_insert((0, 0));
            e.0 += b / d.size_bytes() as u64;
            e.1 += b;
        }
        let (dense, ratio) = match r.dense_bytes {
            Some(d) if bytes > 0 => (with_mib(d), format!("{:.2}×", d as f64 / bytes as f64)),
            Some(d) => (with_mib(d), "—".into()),
            None => ("—".into(), "—".into()),
        };
        let shape = if r.n_in == 0 {
            format!("→{}", r.n_out)
        } else {
            format!("{}→{}", r.n_in, r.n_out)
        };
        let dtype = if dtypes.is_empty() {
            "—".to_string()
        } else {
            dtypes.join("+")
        };
        s.push_str(&table_row(&[
            &r.site,
            &r.kind,
            &shape,
            &r.params.to_string(),
            &dtype,
            &with_mib(bytes),
            &dense,
            &ratio,
            &r.note,
        ]));
    }
    let _ = writeln!(s, "\nby kind and dtype:");
    for ((kind, d), (params, bytes)) in &by_kind {
        let _ = writeln!(
            s,
            "  {kind:<10} {:<4} {params:>10} params {bytes:>12} bytes ({})",
            d.name(),
            mib(*bytes)
        );
    }
    let _ = writeln!(
        s,
        "total: {total_params} params, {total} bytes ({})",
        mib(total)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_is_the_common_prefix() {
        let n = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            common_site(&n(&["layers.0.attn.q.theta", "layers.0.attn.q.diag"])),
            "layers.0.attn.q"
        );
        assert_eq!(common_site(&n(&["embed.weight"])), "embed");
        assert_eq!(common_site(&[]), "—");
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use crate::op::{Init, Param};
    use crate::types::{Dim, Type};
    use crate::{Op, Output, StrideOrder};

    /// A single `n × n` butterfly layer over `T` tokens.
    fn butterfly_layer(n: u64) -> Graph {
        let mut g = Graph::new("wide");
        g.set_bound("T", 4);
        let x = g.add_input("x", Type::new(DType::F32, [Dim::sym("T"), Dim::Const(n)]));
        let l = u64::from(n.trailing_zeros());
        let tw = g.add_param(
            Param {
                name: "proj.twiddles".into(),
                init: Init::Normal { std: 0.7 },
                trainable: true,
            },
            Type::fixed(DType::F32, &[1, 1, 1, l, n / 2, 2, 2]),
        );
        let y = g
            .add1(
                Op::Butterfly {
                    n_in: n,
                    n_out: n,
                    stride: StrideOrder::Increasing,
                },
                &[x, tw],
                None,
            )
            .unwrap();
        g.set_outputs(vec![Output::value("y", y)]);
        g
    }

    #[test]
    fn butterfly_bytes_match_the_design_numbers() {
        // DESIGN §4: 2·n·log2(n) params; n = 2048 → 180,224 bytes (0.172 MiB) vs 16 MiB, 93×;
        // n = 8192 → 315×.
        let rows = summarize(&butterfly_layer(2048));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].total_bytes(), 180_224);
        assert_eq!(rows[0].dense_bytes, Some(16 * 1024 * 1024));
        let text = render_summary(&butterfly_layer(2048));
        assert!(
            text.contains("93.09×") && text.contains("0.172 MiB"),
            "{text}"
        );
        let text = render_summary(&butterfly_layer(8192));
        assert!(text.contains("315.08×"), "{text}");
    }
}
