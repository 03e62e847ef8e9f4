//! Writes the hot loop of every aarch64 microkernel the golden models select, for
//! `scripts/mca.sh` (llvm-mca per hot kernel).
//!
//! For each golden spec (inference and training programs) the plan is emitted for the
//! target (`aarch64+dotprod+fp16` by default) on any host; each microkernel's bytes between
//! its `hot_loop` and `hot_loop_end` marks go to `DIR/NNN.bin`, once per distinct
//! (kind, useful count, instructions with immediates masked), and `DIR/manifest.tsv` lists them:
//!
//! ```text
//! file  variant  useful_per_iter  instructions  kernel  where (model/mode/body/section, …)  alike
//! ```
//!
//! Microkernels without marks (or with `useful_per_iter = 0`) are listed in
//! `DIR/skipped.tsv` with the reason. New families show up here without any change: the
//! list comes from `Aarch64Plan::emit(..).micro`.
//!
//! Run: `cargo run -q -p bfly-targets --example aarch64_hot_loops -- DIR [TARGET] [SPEC…]`.

mod common;

use bfly_compiler::Mode;
use bfly_targets::aarch64::{Aarch64Plan, CpuFeatures, disasm};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One distinct hot loop.
struct HotLoop {
    variant: String,
    /// Other variant names with the same loop.
    alike: Vec<String>,
    bytes: Vec<u8>,
    useful: u32,
    kernel: String,
    sites: Vec<String>,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("aarch64_hot_loops: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first().map(PathBuf::from) else {
        return Err("usage: aarch64_hot_loops DIR [aarch64+dotprod+fp16] [SPEC…]".into());
    };
    let target = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "aarch64+dotprod+fp16".into());
    let features = CpuFeatures::parse_target(&target)?;
    let specs: Vec<PathBuf> = if args.len() > 2 {
        args[2..].iter().map(PathBuf::from).collect()
    } else {
        common::golden_specs()?
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut loops: Vec<HotLoop> = Vec::new();
    let mut index: BTreeMap<(String, u32, Vec<String>), usize> = BTreeMap::new();
    let mut skipped = String::from("variant\tkernel\twhere\treason\n");
    for spec in &specs {
        for mode in [Mode::Infer, Mode::Train] {
            let (stem, _, program) = common::lower(spec, mode)?;
            let plan = Aarch64Plan::emit(&program, features);
            eprintln!(
                "{stem} ({mode}): {} microkernel sections, {} Cranelift sections",
                plan.micro.len(),
                plan.fallbacks.len()
            );
            for m in &plan.micro {
                let site = format!("{stem}/{mode}/{}/s{}", m.body, m.section);
                let code = &m.micro.code;
                let span = match (code.mark("hot_loop"), code.mark("hot_loop_end")) {
                    (Some(a), Some(b)) if a < b && b <= code.bytes.len() => Some((a, b)),
                    _ => None,
                };
                let reason = match span {
                    None => Some("no hot_loop..hot_loop_end marks"),
                    Some(_) if m.micro.useful_per_iter == 0 => Some("useful_per_iter = 0"),
                    Some(_) => None,
                };
                let (Some((a, b)), None) = (span, reason) else {
                    let _ = writeln!(
                        skipped,
                        "{}\t{}\t{site}\t{}",
                        m.micro.name,
                        m.kernel,
                        reason.unwrap_or_default()
                    );
                    continue;
                };
                // Variants of one kind (`butterfly.f32.tokens+pairs`) whose loops are alike
                // (sizes and epilogues live outside the loop) share a row.
                let kind = m
                    .micro
                    .name
                    .split(' ')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let key = (kind, m.micro.useful_per_iter, shape_of(&code.bytes[a..b]));
                let i = *index.entry(key).or_insert_with(|| {
                    loops.push(HotLoop {
                        variant: m.micro.name.clone(),
                        alike: Vec::new(),
                        bytes: code.bytes[a..b].to_vec(),
                        useful: m.micro.useful_per_iter,
                        kernel: m.kernel.clone(),
                        sites: Vec::new(),
                    });
                    loops.len() - 1
                });
                let l = &mut loops[i];
                if l.variant != m.micro.name && !l.alike.contains(&m.micro.name) {
                    l.alike.push(m.micro.name.clone());
                }
                l.sites.push(site);
            }
        }
    }
    loops.sort_by(|a, b| a.variant.cmp(&b.variant));
    write_all(&dir, &loops, &skipped)?;
    eprintln!(
        "{} distinct hot loops written to {}",
        loops.len(),
        dir.display()
    );
    Ok(())
}

/// The instructions with immediates masked: loops that differ only in strides, offsets or
/// trip counts schedule alike, so one row per variant and shape is enough.
fn shape_of(bytes: &[u8]) -> Vec<String> {
    disasm::instructions(bytes)
        .into_iter()
        .map(|text| {
            let mut out = String::new();
            let mut in_imm = false;
            for c in text.chars() {
                if c == '#' {
                    in_imm = true;
                    out.push_str("#imm");
                } else if in_imm && (c.is_ascii_alphanumeric() || c == '-') {
                    continue;
                } else {
                    in_imm = false;
                    out.push(c);
                }
            }
            out
        })
        .collect()
}

fn write_all(dir: &Path, loops: &[HotLoop], skipped: &str) -> Result<(), String> {
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes).map_err(|e| format!("writing {name}: {e}"))
    };
    let mut manifest = String::from(
        "file\tvariant\tuseful_per_iter\tinstructions\tkernel\twhere\talike variants\n",
    );
    for (i, l) in loops.iter().enumerate() {
        let file = format!("{i:03}.bin");
        write(&file, &l.bytes)?;
        let _ = writeln!(
            manifest,
            "{file}\t{}\t{}\t{}\t{}\t{}\t{}",
            if l.alike.is_empty() {
                l.variant.clone()
            } else {
                format!("{} (+{} alike)", l.variant, l.alike.len())
            },
            l.useful,
            l.bytes.len() / 4,
            l.kernel,
            l.sites.join(","),
            l.alike.join(",")
        );
    }
    write("manifest.tsv", manifest.as_bytes())?;
    write("skipped.tsv", skipped.as_bytes())
}
