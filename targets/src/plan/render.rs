//! The text form of a memory plan (`bfly inspect --emit memory --target host`).

use super::{ALIGN, MemoryPlan, Region};
use bfly_ir::kernel::KernelProgram;
use std::fmt::Write;

/// `12345 B (12.1 KiB)`.
fn human(bytes: u64) -> String {
    const KI: f64 = 1024.0;
    let b = bytes as f64;
    let h = if b >= KI * KI * KI {
        format!("{:.2} GiB", b / (KI * KI * KI))
    } else if b >= KI * KI {
        format!("{:.2} MiB", b / (KI * KI))
    } else if b >= KI {
        format!("{:.1} KiB", b / KI)
    } else {
        return format!("{bytes} B");
    };
    format!("{bytes} B ({h})")
}

pub(super) fn render(plan: &MemoryPlan, program: &KernelProgram) -> String {
    let mut out = String::new();
    let bounds: Vec<String> = program
        .bounds
        .iter()
        .map(|(s, v)| format!("{s} <= {v}"))
        .collect();
    let _ = writeln!(
        out,
        "memory plan @{} ({}), sizes at the bounds, offsets aligned to {ALIGN} bytes",
        program.name,
        if bounds.is_empty() {
            "no symbols".to_string()
        } else {
            bounds.join(", ")
        }
    );
    for region in [Region::Arena, Region::State, Region::Io, Region::Param] {
        let mut rows: Vec<_> = plan
            .buffers
            .iter()
            .filter(|b| b.region == region && (region != Region::Arena || b.live.is_some()))
            .collect();
        if rows.is_empty() {
            continue;
        }
        rows.sort_by_key(|b| (b.offset, b.live, b.id));
        let _ = writeln!(
            out,
            "\n{}{}:",
            region.name(),
            if region == Region::Arena {
                " (scratch, live over kernels first..last)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "  {:>10}  {:>10}  {:>9}  buffer",
            "offset", "bytes", "live"
        );
        for b in rows {
            let live = b
                .live
                .map_or_else(|| "-".to_string(), |(f, l)| format!("{f}..{l}"));
            let buf = program.buffer(b.id);
            let dims: Vec<String> = buf.dims.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                out,
                "  {:>10}  {:>10}  {:>9}  {} `{}` {}[{}]",
                b.offset,
                b.bytes,
                live,
                b.id,
                buf.name,
                buf.dtype,
                dims.join(", ")
            );
        }
    }
    let unused = plan
        .buffers
        .iter()
        .filter(|b| b.region == Region::Arena && b.live.is_none())
        .count();
    let _ = writeln!(out, "\ntotals:");
    let saved = plan.temp_bytes.saturating_sub(plan.arena_bytes());
    let _ = writeln!(
        out,
        "  arena (peak)    {}; without reuse {}, saved {}",
        human(plan.arena_bytes()),
        human(plan.temp_bytes),
        human(saved)
    );
    if unused > 0 {
        let _ = writeln!(out, "  ({unused} temps no kernel uses take no space)");
    }
    let _ = writeln!(out, "  state           {}", human(plan.state_bytes()));
    let _ = writeln!(out, "  inputs/outputs  {}", human(plan.io_bytes()));
    let _ = writeln!(out, "  params          {}", human(plan.param_bytes()));
    let _ = writeln!(out, "  total           {}", human(plan.total_bytes()));
    out
}
