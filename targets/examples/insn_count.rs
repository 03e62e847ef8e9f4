//! Exact dynamic instruction counts of one prefill and one decode step of a model on the
//! aarch64 JIT, against the same Kernel IR compiled by LLVM (`bfly_targets::rustgen`).
//! Driven by `scripts/insn-count.sh`, which runs `run` under `qemu-aarch64` with the
//! counting plugin of `tools/qemu-insn-plugin`.
//!
//! ```text
//! insn_count gen SPEC OUT.rs            any host: the LLVM baseline's Rust source
//! insn_count run SPEC LIB.so [PROMPT]   aarch64: runs every backend, marks regions
//! insn_count report MAP PLUGIN_OUT      any host: the tables
//! ```
//!
//! `run` builds one executor (1 thread, the same weights and tokens) per backend:
//! `jit` (`Aarch64Program`: microkernels + Cranelift for the other sections), `cranelift`
//! (`HostProgram` alone), `llvm` (the rustgen library, loaded with `dlopen`) and `none`
//! (sections do nothing: the executor's own cost per step, subtracted to give
//! "kernels only"). Each runs one warm-up prefill + decode (first-call effects: lazy symbol
//! binding, page faults), then `reset_state` and the measured prefill of PROMPT tokens and
//! decode step at `pos = PROMPT`, each inside a marker region; then the same two steps
//! again with a region around every section call, for the per-family breakdown. Markers
//! are `lseek(/dev/null, MAGIC | id << 1 | end)`, which the plugin turns into counter
//! snapshots; the cost of the marker itself is measured with empty regions and subtracted.
//! The region map goes to stdout; the logits of every backend are compared with the JIT's.

#![allow(unsafe_code)] // dlopen of the LLVM baseline and calls through its section ABI

mod common;

use bfly_ir::Dim;
use bfly_ir::kernel::{BodyId, BufferKind, KernelProgram, Phase};
use bfly_targets::aarch64::{Aarch64Program, CpuFeatures};
use bfly_targets::cranelift::{HostProgram, JitOptions};
use bfly_targets::exec::{Executor, SectionRunner, Syms};
use bfly_targets::reference::Tensor;
use bfly_targets::rustgen::{self, RustgenOptions};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// Marker offsets: `MAGIC | id << 1 | end` (the plugin's `MAGIC`).
const MAGIC: u64 = 0x0B1F_0000_0000_0000;
/// Region of the marker calibration (empty regions).
const CALIBRATION: u32 = 1;
/// How many empty regions calibrate the marker cost.
const CALIBRATION_RUNS: usize = 16;
const DEFAULT_PROMPT: usize = 32;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match argv.as_slice() {
        ["gen", spec, out] => generate(Path::new(spec), Path::new(out)),
        ["run", spec, lib] => run(Path::new(spec), Path::new(lib), DEFAULT_PROMPT),
        ["run", spec, lib, prompt] => prompt
            .parse()
            .map_err(|e| format!("prompt `{prompt}`: {e}"))
            .and_then(|p| run(Path::new(spec), Path::new(lib), p)),
        ["report", map, plugin] => report(Path::new(map), Path::new(plugin)),
        _ => Err(
            "usage: insn_count gen SPEC OUT.rs | run SPEC LIB.so [PROMPT] | \
                  report MAP PLUGIN_OUT"
                .into(),
        ),
    };
    if let Err(e) = result {
        eprintln!("insn_count: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------
// gen

fn generate(spec: &Path, out: &Path) -> Result<(), String> {
    let model = common::load(spec)?;
    let contract = std::env::var("BFLY_RUSTGEN_CONTRACT").map_or(true, |v| v != "0");
    let src = rustgen::generate(&model.program, RustgenOptions { contract })?;
    std::fs::write(out, src).map_err(|e| format!("writing {}: {e}", out.display()))
}

// ---------------------------------------------------------------------------------------
// run

/// Region markers through `lseek` on `/dev/null` (see the plugin).
struct Marker {
    file: File,
}

impl Marker {
    fn open() -> Result<Marker, String> {
        File::open("/dev/null")
            .map(|file| Marker { file })
            .map_err(|e| format!("opening /dev/null for markers: {e}"))
    }

    fn mark(&self, id: u32, end: bool) {
        // The result is irrelevant: the plugin sees the syscall's arguments.
        let _ = (&self.file).seek(SeekFrom::Start(
            MAGIC | (u64::from(id) << 1) | u64::from(end),
        ));
    }

    fn region<T>(&self, id: u32, f: impl FnOnce() -> T) -> T {
        self.mark(id, false);
        let r = f();
        self.mark(id, true);
        r
    }
}

/// The rustgen library's section entry (`bfly_llvm_section`).
type LlvmSectionFn = unsafe extern "C" fn(u32, u32, *const usize, *const i64, i64, i64) -> i32;
type LlvmFingerprintFn = extern "C" fn() -> u64;

mod dl {
    use std::ffi::{CStr, CString, c_char, c_int, c_void};

    unsafe extern "C" {
        fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
        fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
        fn dlerror() -> *mut c_char;
    }

    const RTLD_NOW: c_int = 2;

    fn last_error() -> String {
        // SAFETY: dlerror returns null or a NUL-terminated string valid until the next dl
        // call on this thread; it is copied at once.
        let e = unsafe { dlerror() };
        if e.is_null() {
            "unknown error".into()
        } else {
            // SAFETY: non-null, NUL-terminated (above).
            unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
        }
    }

    /// Opens a shared library (never closed: it lives as long as the process) and returns
    /// the addresses of `symbols`.
    pub fn open(path: &str, symbols: &[&str]) -> Result<Vec<usize>, String> {
        let p = CString::new(path).map_err(|e| e.to_string())?;
        // SAFETY: a valid C string; loading runs the library's initializers, which for a
        // Rust cdylib are std's.
        let handle = unsafe { dlopen(p.as_ptr(), RTLD_NOW) };
        if handle.is_null() {
            return Err(format!("dlopen {path}: {}", last_error()));
        }
        symbols
            .iter()
            .map(|s| {
                let c = CString::new(*s).map_err(|e| e.to_string())?;
                // SAFETY: a live handle and a valid C string.
                let a = unsafe { dlsym(handle, c.as_ptr()) };
                if a.is_null() {
                    Err(format!("{path} has no symbol `{s}`: {}", last_error()))
                } else {
                    Ok(a as usize)
                }
            })
            .collect()
    }
}

/// The LLVM baseline as a section runner.
struct LlvmRunner {
    section: LlvmSectionFn,
}

impl LlvmRunner {
    fn load(path: &Path, program: &KernelProgram) -> Result<LlvmRunner, String> {
        let addrs = dl::open(
            &path.display().to_string(),
            &["bfly_llvm_section", "bfly_llvm_fingerprint"],
        )?;
        // SAFETY: the symbols are the generated library's functions with exactly these
        // signatures (`rustgen::generate` writes them).
        let (section, fingerprint) = unsafe {
            (
                std::mem::transmute::<usize, LlvmSectionFn>(addrs[0]),
                std::mem::transmute::<usize, LlvmFingerprintFn>(addrs[1]),
            )
        };
        let want = rustgen::fingerprint(program)?;
        let got = fingerprint();
        if got != want {
            return Err(format!(
                "{} was generated from another program (fingerprint {got:#x}, this one is \
                 {want:#x}): regenerate it with `insn_count gen`",
                path.display()
            ));
        }
        Ok(LlvmRunner { section })
    }
}

impl SectionRunner for LlvmRunner {
    fn name(&self) -> String {
        "llvm (rustgen, rustc -O3 cortex-a78)".into()
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
        let s = u32::try_from(section).unwrap_or(u32::MAX);
        // SAFETY: the generated function for this section reads `args`/`syms` as the
        // executor lays them out and touches exactly the elements the body does; the
        // caller upholds the trait contract for them.
        let rc = unsafe { (self.section)(body.0, s, args.as_ptr(), syms.as_ptr(), lo, hi) };
        if rc != 0 {
            eprintln!("insn_count: the LLVM library has no {body} section {section}");
            std::process::abort();
        }
    }
}

/// Runs nothing: what is left of a step is the executor's own work.
struct NullRunner;

impl SectionRunner for NullRunner {
    fn name(&self) -> String {
        "none".into()
    }

    unsafe fn run_section(&self, _: BodyId, _: usize, _: &[usize], _: &[i64; 3], _: i64, _: i64) {}
}

/// Phases of the per-section breakdown (`Probe::phase`).
const OFF: u8 = 0;
const PREFILL: u8 = 1;
const DECODE: u8 = 2;

/// Wraps a runner; while `phase` is on, every section call is a marker region.
struct Probe {
    inner: Arc<dyn SectionRunner>,
    marker: Arc<Marker>,
    ids: HashMap<(u8, u32, usize), u32>,
    phase: AtomicU8,
}

impl SectionRunner for Probe {
    fn name(&self) -> String {
        self.inner.name()
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
        let phase = self.phase.load(Ordering::Relaxed);
        let id = (phase != OFF)
            .then(|| self.ids.get(&(phase, body.0, section)).copied())
            .flatten();
        if let Some(id) = id {
            self.marker.mark(id, false);
        }
        // SAFETY: forwarded unchanged under the caller's contract.
        unsafe { self.inner.run_section(body, section, args, syms, lo, hi) };
        if let Some(id) = id {
            self.marker.mark(id, true);
        }
    }
}

/// The step inputs: tokens for int inputs, small values for float ones.
fn inputs(program: &KernelProgram, syms: Syms, vocab: i64) -> Result<Vec<Tensor>, String> {
    let mut ins: Vec<(usize, Tensor)> = Vec::new();
    for b in &program.buffers {
        let BufferKind::Input { index } = b.kind else {
            continue;
        };
        let shape = b
            .dims
            .iter()
            .map(|d| match d {
                Dim::Const(c) => usize::try_from(*c).map_err(|e| e.to_string()),
                Dim::Sym(s) => syms
                    .dim(s)
                    .ok_or_else(|| format!("input {} has a dim `{s}`", b.name)),
            })
            .collect::<Result<Vec<usize>, String>>()?;
        let n: usize = shape.iter().product();
        let t = if b.dtype.is_float() {
            Tensor::float(
                b.dtype,
                shape,
                (0..n).map(|i| ((i % 7) as f64 - 3.0) * 0.1).collect(),
            )
        } else {
            Tensor::int(
                b.dtype,
                shape,
                (0..n as i64).map(|i| (i * 37 + 11) % vocab).collect(),
            )
        };
        ins.push((index, t));
    }
    ins.sort_by_key(|(i, _)| *i);
    Ok(ins.into_iter().map(|(_, t)| t).collect())
}

fn first_output(out: Vec<Tensor>) -> Vec<f64> {
    out.into_iter()
        .next()
        .and_then(|t| t.floats().map(<[f64]>::to_vec))
        .unwrap_or_default()
}

fn run(spec: &Path, lib: &Path, prompt: usize) -> Result<(), String> {
    let model = common::load(spec)?;
    let program = Arc::new(model.program);
    let bound = program.bound("T").unwrap_or(1) as usize;
    // The decode step after the prompt needs one more KV row (the cache holds `bound`).
    if prompt == 0 || bound < 2 {
        return Err(format!(
            "prompt {prompt}: need 1 ≤ prompt < T bound ({bound})"
        ));
    }
    let prompt = prompt.min(bound - 1);
    let vocab = program
        .kernels
        .iter()
        .find_map(|k| match k.kind {
            bfly_ir::kernel::KernelKind::Embed { vocab, .. } => i64::try_from(vocab).ok(),
            _ => None,
        })
        .unwrap_or(256);
    let features = CpuFeatures::from_env()?;
    let marker = Arc::new(Marker::open()?);
    let jit = Aarch64Program::compile(&program, features, JitOptions::code_only())
        .map_err(|e| format!("aarch64 JIT: {e}"))?;
    let micro = jit.plan().micro.len();
    let micro_names: Vec<String> = jit
        .plan()
        .micro
        .iter()
        .map(|m| {
            format!(
                "{}.s{}={}",
                m.body,
                m.section,
                m.micro.name.replace(' ', "_")
            )
        })
        .collect();
    let cranelift = HostProgram::compile_with(&program, JitOptions::code_only())
        .map_err(|e| format!("cranelift: {e}"))?;
    let llvm = LlvmRunner::load(lib, &program)?;
    let backends: Vec<(&str, Arc<dyn SectionRunner>)> = vec![
        ("jit", Arc::new(jit)),
        ("cranelift", Arc::new(cranelift)),
        ("llvm", Arc::new(llvm)),
        ("none", Arc::new(NullRunner)),
    ];

    let mut map = String::new();
    let _ = writeln!(
        map,
        "model\t{}\t{prompt}\t{features}\t{micro}\t{}",
        model.stem,
        if micro_names.is_empty() {
            "-".to_string()
        } else {
            micro_names.join(",")
        }
    );
    // Family of each step section, by body (its first step kernel's).
    let mut sections: BTreeMap<(u32, usize), String> = BTreeMap::new();
    for k in program.kernels.iter().filter(|k| k.phase == Phase::Step) {
        for s in 0..program.body(k.body).num_sections() {
            sections
                .entry((k.body.0, s))
                .or_insert_with(|| k.kind.family());
        }
    }
    for _ in 0..CALIBRATION_RUNS {
        marker.region(CALIBRATION, || ());
    }
    let _ = writeln!(map, "calibration\t{CALIBRATION}");

    let prefill = Syms::tokens(prompt);
    let decode = Syms::decode(1, prompt);
    let prefill_in = inputs(&program, prefill, vocab)?;
    let decode_in = inputs(&program, decode, vocab)?;
    let mut next_id = CALIBRATION + 1;
    let mut id = || {
        next_id += 1;
        next_id - 1
    };
    let mut logits: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
    for (name, runner) in backends {
        let mut ids = HashMap::new();
        for (phase, pname) in [(PREFILL, "prefill"), (DECODE, "decode")] {
            for ((b, s), family) in &sections {
                let i = id();
                ids.insert((phase, *b, *s), i);
                let _ = writeln!(map, "section\t{i}\t{name}\t{pname}\tbody{b}.s{s}\t{family}");
            }
        }
        let probe = Arc::new(Probe {
            inner: runner,
            marker: Arc::clone(&marker),
            ids,
            phase: AtomicU8::new(OFF),
        });
        let dyn_probe: Arc<dyn SectionRunner> = probe.clone();
        let mut ex = Executor::new(Arc::clone(&program), dyn_probe, &model.weights, 1)
            .map_err(|e| format!("{name}: {e}"))?;
        let step = |ex: &mut Executor, ins: &[Tensor], syms: Syms| {
            ex.step(ins, syms).map_err(|e| format!("{name}: {e}"))
        };
        // Warm-up: lazy binding of libm symbols, first touches of every page.
        step(&mut ex, &prefill_in, prefill)?;
        step(&mut ex, &decode_in, decode)?;
        ex.reset_state();
        let (p_id, d_id) = (id(), id());
        let _ = writeln!(map, "step\t{p_id}\t{name}\tprefill");
        let _ = writeln!(map, "step\t{d_id}\t{name}\tdecode");
        let p_out = marker.region(p_id, || step(&mut ex, &prefill_in, prefill))?;
        let d_out = marker.region(d_id, || step(&mut ex, &decode_in, decode))?;
        logits.push((name.to_string(), first_output(p_out), first_output(d_out)));
        // Breakdown: the same two steps with a region around every section call.
        ex.reset_state();
        probe.phase.store(PREFILL, Ordering::Relaxed);
        step(&mut ex, &prefill_in, prefill)?;
        probe.phase.store(DECODE, Ordering::Relaxed);
        step(&mut ex, &decode_in, decode)?;
        probe.phase.store(OFF, Ordering::Relaxed);
    }
    // Each backend against the JIT, and the baseline against Cranelift (both compile the
    // Kernel IR as written, so they should agree closely even where a microkernel rounds
    // differently).
    let find = |n: &str| logits.iter().find(|(name, ..)| name == n);
    let pairs = [("cranelift", "jit"), ("llvm", "jit"), ("llvm", "cranelift")];
    for (a, b) in pairs {
        if let (Some((_, ap, ad)), Some((_, bp, bd))) = (find(a), find(b)) {
            let _ = writeln!(
                map,
                "check\t{a} vs {b}\t{}\t{}",
                rel_diff(bp, ap),
                rel_diff(bd, ad)
            );
        }
    }
    print!("{map}");
    Ok(())
}

/// `max |a − b| / max(1, max |a|)` (`a` the reference); infinite when the lengths differ.
fn rel_diff(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return f64::INFINITY;
    }
    let scale = a.iter().fold(1f64, |m, x| m.max(x.abs()));
    let diff = a.iter().zip(b).fold(0f64, |m, (x, y)| {
        if (x - y).is_nan() {
            f64::INFINITY
        } else {
            m.max((x - y).abs())
        }
    });
    diff / scale
}

// ---------------------------------------------------------------------------------------
// report

/// One region's count (marker cost subtracted) and how often it ran.
#[derive(Clone, Copy, Default)]
struct Count {
    insns: f64,
    calls: u64,
}

fn report(map: &Path, plugin: &Path) -> Result<(), String> {
    let read =
        |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()));
    let (map, plugin) = (read(map)?, read(plugin)?);
    let mut raw: HashMap<u32, (u64, u64)> = HashMap::new();
    let mut total = 0u64;
    for line in plugin.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["bfly-insn", "region", id, calls, insns] => {
                let p = |s: &str| s.parse::<u64>().map_err(|e| format!("`{line}`: {e}"));
                raw.insert(p(id)? as u32, (p(calls)?, p(insns)?));
            }
            ["bfly-insn", "total", n] => total = n.parse().unwrap_or(0),
            ["bfly-insn", "unbalanced", ..] => return Err(format!("plugin: {line}")),
            _ => {}
        }
    }
    let cal = raw
        .get(&CALIBRATION)
        .map_or(0.0, |&(c, n)| n as f64 / c.max(1) as f64);
    let count = |id: u32| -> Count {
        raw.get(&id).map_or(Count::default(), |&(calls, n)| Count {
            insns: n as f64 - cal * calls as f64,
            calls,
        })
    };
    let mut out = String::new();
    let mut steps: BTreeMap<(String, String), Count> = BTreeMap::new();
    // (phase, family) → backend → count
    let mut families: BTreeMap<(String, String), BTreeMap<String, Count>> = BTreeMap::new();
    let mut checks = Vec::new();
    let mut header = Vec::new();
    for line in map.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["model", stem, prompt, features, micro, names] => {
                header = vec![
                    stem.to_string(),
                    prompt.to_string(),
                    features.to_string(),
                    micro.to_string(),
                    names.to_string(),
                ]
            }
            ["step", id, backend, phase] => {
                let id = id.parse().map_err(|e| format!("`{line}`: {e}"))?;
                steps.insert((backend.to_string(), phase.to_string()), count(id));
            }
            ["section", id, backend, phase, _, family] => {
                let id = id.parse().map_err(|e| format!("`{line}`: {e}"))?;
                let c = count(id);
                let e = families
                    .entry((phase.to_string(), family.to_string()))
                    .or_default()
                    .entry(backend.to_string())
                    .or_default();
                e.insns += c.insns;
                e.calls += c.calls;
            }
            ["check", backend, p, d] => {
                let f = |v: &str| {
                    v.parse::<f64>()
                        .map_or(v.to_string(), |x| format!("{x:.1e}"))
                };
                checks.push(format!("{backend} {} / {}", f(p), f(d)));
            }
            _ => {}
        }
    }
    let [stem, prompt, features, micro, names] = header.as_slice() else {
        return Err("the map has no `model` line".into());
    };
    let _ = writeln!(
        out,
        "== {stem}: prefill {prompt} tokens, decode 1 token at pos {prompt}; JIT features \
         {features}; {micro} microkernel sections"
    );
    if names != "-" {
        let _ = writeln!(out, "   microkernels: {}", names.replace(',', ", "));
    }
    let _ = writeln!(
        out,
        "   (whole run {total} instructions; marker cost {cal:.0} per region, subtracted)"
    );
    let get = |b: &str, p: &str| steps.get(&(b.to_string(), p.to_string())).copied();
    let _ = writeln!(
        out,
        "{:<8} {:>11} {:>11} {:>11} {:>9} | {:>11} {:>11} {:>11} | {:>8} {:>8} {:>8}",
        "step",
        "jit",
        "cranelift",
        "llvm",
        "executor",
        "jit kern",
        "cl kern",
        "llvm kern",
        "jit/llvm",
        "cl/llvm",
        "step j/l"
    );
    for phase in ["prefill", "decode"] {
        let c = |b: &str| get(b, phase).map_or(f64::NAN, |c| c.insns);
        let (j, cl, l, n) = (c("jit"), c("cranelift"), c("llvm"), c("none"));
        let _ = writeln!(
            out,
            "{phase:<8} {j:>11.0} {cl:>11.0} {l:>11.0} {n:>9.0} | {:>11.0} {:>11.0} {:>11.0} | \
             {:>8.3} {:>8.3} {:>8.3}",
            j - n,
            cl - n,
            l - n,
            (j - n) / (l - n),
            (cl - n) / (l - n),
            j / l
        );
    }
    let _ = writeln!(
        out,
        "   executor = the step with empty sections (`none`); kern = step − executor; \
         j/l = jit/llvm"
    );
    for phase in ["prefill", "decode"] {
        let _ = writeln!(
            out,
            "-- {phase}, per kernel family (sum over its section calls):\n{:<24} {:>6} {:>12} {:>12} {:>12} {:>9} {:>9}",
            "family", "calls", "jit", "cranelift", "llvm", "jit/llvm", "cl/llvm"
        );
        let mut rows: Vec<(&String, &BTreeMap<String, Count>)> = families
            .iter()
            .filter(|((p, _), _)| p == phase)
            .map(|((_, f), m)| (f, m))
            .collect();
        rows.sort_by(|a, b| {
            let l = |m: &BTreeMap<String, Count>| m.get("llvm").map_or(0.0, |c| c.insns);
            l(b.1).total_cmp(&l(a.1))
        });
        for (family, m) in rows {
            let c = |b: &str| m.get(b).map_or(f64::NAN, |c| c.insns);
            let calls = m.get("jit").map_or(0, |c| c.calls);
            let (j, cl, l) = (c("jit"), c("cranelift"), c("llvm"));
            let _ = writeln!(
                out,
                "{family:<24} {calls:>6} {j:>12.0} {cl:>12.0} {l:>12.0} {:>9.3} {:>9.3}",
                j / l,
                cl / l
            );
        }
    }
    let _ = writeln!(
        out,
        "   logits max|Δ|/max(1,max|ref|), prefill / decode: {}",
        checks.join("; ")
    );
    print!("{out}");
    Ok(())
}
