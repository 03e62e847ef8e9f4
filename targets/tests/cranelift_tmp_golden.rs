mod exec_golden;
mod lower_common;
use bfly_compiler::Mode;
use bfly_targets::cranelift::{HostProgram, JitOptions};
use exec_golden::golden;

#[test]
fn golden_notes_and_times() {
    for stem in ["tiny-dib", "tiny-dense", "tiny-butterfly", "tiny-monarch", "tiny-quant", "mixed", "tiny-hadamard", "tiny-lora-dense"] {
        for mode in [Mode::Infer, Mode::Train] {
            let g = golden(stem, mode);
            let lean = HostProgram::compile_with(&g.program, JitOptions::code_only()).unwrap();
            let full = HostProgram::compile(&g.program).unwrap();
            println!("== {stem} {mode:?}: {} bodies, {} fns, {:?} lean, {:?} full, {} bytes, {} notes",
                g.program.bodies.len(), lean.num_functions(), lean.compile_time(), full.compile_time(), lean.code_bytes(), lean.notes().len());
            let mut reasons = std::collections::BTreeMap::new();
            for n in lean.notes() {
                let r = n.split("serially: ").nth(1).unwrap_or(n).to_string();
                *reasons.entry(r).or_insert(0) += 1;
            }
            for (r, c) in reasons { println!("   {c} × {r}"); }
        }
    }
}
