//! A whole program for aarch64: microkernels where a family matches, Cranelift's aarch64
//! code for every other section.
//!
//! [`Aarch64Plan`] is pure emission (any host): which sections get which microkernel, the
//! code, and why the others fall back. [`Aarch64Program`] maps that code executable next to
//! a Cranelift build of the whole program and implements the executor's `SectionRunner`.

use super::code::CodePages;
use super::disasm;
use super::features::CpuFeatures;
use super::kernels::{self, Microkernel, SectionCtx, Selection};
use crate::cranelift::{HostProgram, JitError, JitOptions};
use crate::exec::SectionRunner;
use crate::exec::runner::call_section;
use bfly_ir::kernel::{BodyId, KernelProgram};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A section that runs a microkernel.
#[derive(Clone, Debug)]
pub struct MicroSection {
    pub body: BodyId,
    pub section: usize,
    /// The first kernel running this body (`k77.embed`) and its family (`gemm`).
    pub kernel: String,
    pub family: String,
    pub micro: Microkernel,
}

/// A section that runs Cranelift's code, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Fallback {
    pub body: BodyId,
    pub section: usize,
    pub kernel: String,
    pub family: String,
    /// `None`: no microkernel family covers this kind. `Some(reason)`: a family does but
    /// declined this body (shape, epilogue, missing CPU feature, emission error).
    pub reason: Option<String>,
}

/// The emitted microkernels of a program for one feature set.
#[derive(Clone, Debug)]
pub struct Aarch64Plan {
    pub features: CpuFeatures,
    pub micro: Vec<MicroSection>,
    pub fallbacks: Vec<Fallback>,
    pub emit_time: Duration,
}

impl Aarch64Plan {
    /// Offers every section of every body (once per body, via the first kernel that runs
    /// it) to the microkernel families.
    pub fn emit(program: &KernelProgram, features: CpuFeatures) -> Aarch64Plan {
        let t0 = Instant::now();
        let mut micro = Vec::new();
        let mut fallbacks = Vec::new();
        for (b, body) in program.bodies.iter().enumerate() {
            let id = BodyId(b as u32);
            let Some(kernel) = program.kernels.iter().find(|k| k.body == id) else {
                continue;
            };
            let family = kernel.kind.family();
            for section in 0..body.num_sections() {
                let ctx = SectionCtx {
                    program,
                    kernel,
                    body,
                    section,
                    features,
                };
                let fallback = |reason| Fallback {
                    body: id,
                    section,
                    kernel: kernel.name.clone(),
                    family: family.clone(),
                    reason,
                };
                match kernels::select(&ctx) {
                    Selection::Emitted(m) => micro.push(MicroSection {
                        body: id,
                        section,
                        kernel: kernel.name.clone(),
                        family: family.clone(),
                        micro: m,
                    }),
                    Selection::Declined(reason) => fallbacks.push(fallback(Some(reason))),
                    Selection::NotMine => fallbacks.push(fallback(None)),
                }
            }
        }
        Aarch64Plan {
            features,
            micro,
            fallbacks,
            emit_time: t0.elapsed(),
        }
    }

    /// `bfly inspect --emit asm --target aarch64…`: each microkernel's header (body,
    /// section, kernel, variant), register-tile comment and disassembly, then the sections
    /// that run Cranelift's code.
    pub fn listing(&self) -> String {
        let mut out = format!(
            "; aarch64 {}: {} microkernel sections, {} Cranelift sections\n\n",
            self.features,
            self.micro.len(),
            self.fallbacks.len()
        );
        for m in &self.micro {
            out.push_str(&format!(
                "; {} section {} — {} ({}, {})\n",
                m.body, m.section, m.micro.name, m.kernel, m.family
            ));
            for line in m.micro.tile.lines() {
                out.push_str(&format!("; {line}\n"));
            }
            out.push_str(&disasm::listing(&m.micro.code));
            out.push('\n');
        }
        out.push_str(&self.fallback_report());
        out
    }

    /// The sections without a microkernel: declined ones with their reasons, then a count
    /// per family of the kinds no family covers.
    pub fn fallback_report(&self) -> String {
        let mut out = String::from("; sections compiled by Cranelift (aarch64):\n");
        for f in self.fallbacks.iter().filter(|f| f.reason.is_some()) {
            out.push_str(&format!(
                ";   {} section {} ({}, {}): {}\n",
                f.body,
                f.section,
                f.kernel,
                f.family,
                f.reason.as_deref().unwrap_or_default()
            ));
        }
        let mut uncovered: BTreeMap<&str, usize> = BTreeMap::new();
        for f in self.fallbacks.iter().filter(|f| f.reason.is_none()) {
            *uncovered.entry(f.family.as_str()).or_default() += 1;
        }
        if !uncovered.is_empty() {
            let list: Vec<String> = uncovered
                .iter()
                .map(|(fam, n)| format!("{fam} ×{n}"))
                .collect();
            out.push_str(&format!(
                ";   no microkernel for the kind: {}\n",
                list.join(", ")
            ));
        }
        out
    }

    /// `--emit asm-raw DIR`: writes each microkernel's bytes to
    /// `DIR/body3.s0.gemm.f32.dot_4x5.bin`; returns the paths.
    pub fn write_raw(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let mut paths = Vec::new();
        for m in &self.micro {
            let variant: String = m
                .micro
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let path = dir.join(format!("{}.s{}.{variant}.bin", m.body, m.section));
            std::fs::write(&path, &m.micro.code.bytes)?;
            paths.push(path);
        }
        Ok(paths)
    }

    pub fn code_bytes(&self) -> usize {
        self.micro.iter().map(|m| m.micro.code.bytes.len()).sum()
    }
}

/// A program ready to run on this aarch64 CPU.
pub struct Aarch64Program {
    plan: Aarch64Plan,
    host: HostProgram,
    /// `entries[body][section]`: the microkernel's address, if it has one.
    entries: Vec<Vec<Option<usize>>>,
    /// Owns the microkernels' code pages (the addresses above point into them).
    _pages: Option<CodePages>,
    compile_time: Duration,
}

impl Aarch64Program {
    /// Emits the microkernels for `features`, compiles every other section with Cranelift
    /// and maps the microkernels executable.
    /// Fails off aarch64.
    pub fn compile(
        program: &KernelProgram,
        features: CpuFeatures,
        options: JitOptions,
    ) -> Result<Aarch64Program, JitError> {
        let t0 = Instant::now();
        let plan = Aarch64Plan::emit(program, features);
        let micro: std::collections::HashSet<(BodyId, usize)> =
            plan.micro.iter().map(|m| (m.body, m.section)).collect();
        let host = HostProgram::compile_except(program, options, &|b, s| micro.contains(&(b, s)))?;
        let mut entries: Vec<Vec<Option<usize>>> = program
            .bodies
            .iter()
            .map(|b| vec![None; b.num_sections()])
            .collect();
        let mut blob = Vec::new();
        let mut offsets = Vec::new();
        for m in &plan.micro {
            // Each function starts on a 64-byte line (keeps hot loops from straddling
            // fetch blocks across functions).
            while blob.len() % 64 != 0 {
                blob.extend_from_slice(&0xd503_201fu32.to_le_bytes()); // nop
            }
            offsets.push(blob.len());
            blob.extend_from_slice(&m.micro.code.bytes);
        }
        let pages = if blob.is_empty() {
            None
        } else {
            let pages = CodePages::map(&blob).map_err(JitError::Finalize)?;
            for (m, &off) in plan.micro.iter().zip(&offsets) {
                entries[m.body.0 as usize][m.section] = Some(pages.addr(off));
            }
            Some(pages)
        };
        Ok(Aarch64Program {
            plan,
            host,
            entries,
            _pages: pages,
            compile_time: t0.elapsed(),
        })
    }

    pub fn plan(&self) -> &Aarch64Plan {
        &self.plan
    }

    pub fn host(&self) -> &HostProgram {
        &self.host
    }

    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    pub fn code_bytes(&self) -> usize {
        self.plan.code_bytes() + self.host.code_bytes()
    }

    /// Whether `body` section `section` runs a microkernel.
    pub fn is_micro(&self, body: BodyId, section: usize) -> bool {
        self.micro_entry(body, section).is_some()
    }

    fn micro_entry(&self, body: BodyId, section: usize) -> Option<usize> {
        *self.entries.get(body.0 as usize)?.get(section)?
    }
}

impl SectionRunner for Aarch64Program {
    fn name(&self) -> String {
        format!(
            "aarch64 {} ({} microkernel sections; cranelift for {})",
            self.plan.features,
            self.plan.micro.len(),
            self.plan.fallbacks.len()
        )
    }

    // SAFETY (of the impl): the caller upholds the trait contract.
    #[allow(unsafe_code)]
    unsafe fn run_section(
        &self,
        body: BodyId,
        section: usize,
        args: &[usize],
        syms: &[i64; 3],
        lo: i64,
        hi: i64,
    ) {
        let Some(addr) = self.micro_entry(body, section) else {
            // SAFETY: forwarded unchanged under the same contract.
            unsafe { self.host.run_section(body, section, args, syms, lo, hi) };
            return;
        };
        if args.len() < self.host.param_count(body) {
            debug_assert!(false, "{body} section {section}: too few args");
            return;
        }
        // SAFETY: `addr` is the start of a microkernel emitted for exactly this section with
        // the `SectionFn` signature (AAPCS64: args in x0..x3, callee-saved registers
        // preserved — each kernel saves what it clobbers); its pages live in `self._pages`,
        // which outlives this call (`&self`), and were made executable (never writable at
        // the same time) after the icache was synchronized. `args` holds one address per
        // body param (checked above); the buffers behind the addresses are the caller's
        // promise (trait contract), and the microkernel touches exactly the elements the
        // body's section does.
        unsafe { call_section(addr, args, syms, lo, hi) };
    }
}
