//! End to end through the CLI: compile → artifact → run; train → checkpoint → resume
//! (bit-exact); LoRA-only training → adapter file → run with `--lora`; bad data and bad
//! artifacts fail with their own messages.

mod common;

use common::{bfly, fails, ok, s, stderr, stdout};
use std::path::{Path, PathBuf};

fn scratch(test: &str) -> PathBuf {
    common::scratch("cli-runtime", test)
}

/// A small training text: repetitive enough that a few steps visibly lower the loss.
fn corpus(dir: &Path) -> PathBuf {
    let path = dir.join("data.txt");
    let text = "the butterfly folds the weights; the compiler emits the kernels.\n".repeat(60);
    std::fs::write(&path, text).expect("write corpus");
    path
}

#[test]
fn compiled_artifact_runs_like_its_spec() {
    let dir = scratch("compile-run");
    let model = dir.join("m.bfa");
    let o = bfly(&[
        "compile",
        "golden/specs/tiny-dense.bfly",
        "--seed",
        "3",
        "-o",
        s(&model),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = |m: &str| {
        ok(&[
            "run",
            m,
            "--prompt",
            "Hi",
            "-n",
            "5",
            "--seed",
            "3",
            "--backend",
            "host",
        ])
    };
    assert_eq!(run(s(&model)), run("golden/specs/tiny-dense.bfly"));
    // The artifact is inspectable like a spec.
    let kernels = ok(&[
        "inspect",
        s(&model),
        "--emit",
        "kernels",
        "--target",
        "host",
    ]);
    assert!(kernels.contains("gemm"), "{kernels}");
}

#[test]
fn sampling_options_are_validated_and_context_is_enforced() {
    let e = fails(&[
        "run",
        "golden/specs/tiny-dense.bfly",
        "--prompt",
        "x",
        "--top-p",
        "1.5",
    ]);
    assert!(e.contains("top-p"), "{e}");
    let e = fails(&[
        "run",
        "golden/specs/tiny-dense.bfly",
        "--prompt",
        "x",
        "-n",
        "1000",
    ]);
    assert!(e.contains("context"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
    // Temperature sampling is deterministic for a seed.
    let args = [
        "run",
        "golden/specs/tiny-dense.bfly",
        "--prompt",
        "ab",
        "-n",
        "8",
        "--temperature",
        "1.0",
        "--top-k",
        "20",
        "--seed",
        "9",
    ];
    assert_eq!(ok(&args), ok(&args));
}

fn checkpoint_tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).expect("read checkpoint");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("checkpoint parses");
    let mut out: Vec<(String, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.data().to_vec()))
        .collect();
    out.sort();
    out
}

#[test]
fn training_resumes_bit_exactly_and_writes_its_outputs() {
    let dir = scratch("resume");
    let data = corpus(&dir);
    let train = |out: &Path, steps: &str, resume: Option<&Path>| {
        let mut args = vec![
            "train",
            "golden/specs/tiny-dense.bfly",
            "--data",
            s(&data),
            "--steps",
            steps,
            "--val-every",
            "2",
            "--val-batches",
            "1",
            "-o",
            s(out),
        ];
        if let Some(r) = resume {
            args.extend(["--resume", s(r)]);
        }
        let o = bfly(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        stderr(&o)
    };
    let straight = dir.join("straight");
    let log = train(&straight, "6", None);
    assert!(log.contains("step 6"), "{log}");
    // stderr is not a terminal here: whole progress lines, no carriage returns, all of one
    // width (the bar does not jump).
    assert!(!log.contains('\r'), "{log:?}");
    let widths: Vec<usize> = log
        .lines()
        .filter(|l| l.starts_with("step ") && l.contains(" ["))
        .map(|l| l.chars().count())
        .collect();
    assert!(!widths.is_empty(), "{log}");
    let bar = log
        .lines()
        .find(|l| l.starts_with("step "))
        .expect("progress");
    for field in ["loss ", "val ", " tok/s", "ETA "] {
        assert!(bar.contains(field), "{field:?} missing: {bar}");
    }
    assert!(log.contains(", validation "), "{log}");
    assert!(widths.iter().all(|&w| w == widths[0]), "{log}");
    // Training again into the same folder would replace its checkpoint: refused, file intact.
    let ckpt_bytes = std::fs::read(straight.join("checkpoint.safetensors")).expect("read");
    let e = fails(&[
        "train",
        "golden/specs/tiny-dense.bfly",
        "--data",
        s(&data),
        "--steps",
        "1",
        "-o",
        s(&straight),
    ]);
    assert!(e.contains("holds the checkpoint of an earlier run"), "{e}");
    assert_eq!(
        std::fs::read(straight.join("checkpoint.safetensors")).expect("read"),
        ckpt_bytes
    );
    for f in ["checkpoint.safetensors", "loss.svg", "model.bfa"] {
        assert!(straight.join(f).exists(), "{f} missing");
    }
    let svg = std::fs::read_to_string(straight.join("loss.svg")).expect("plot");
    assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");

    let first = dir.join("first");
    train(&first, "3", None);
    let resumed = dir.join("resumed");
    std::fs::create_dir_all(&resumed).expect("dir");
    let log = train(&resumed, "6", Some(&first.join("checkpoint.safetensors")));
    assert!(log.contains("resumed from"), "{log}");
    // Same data order, same RNG, same params and moments: identical bytes.
    assert_eq!(
        checkpoint_tensors(&straight.join("checkpoint.safetensors")),
        checkpoint_tensors(&resumed.join("checkpoint.safetensors"))
    );
    // The trained model runs.
    let out = ok(&[
        "run",
        s(&straight.join("model.bfa")),
        "--prompt",
        "the ",
        "-n",
        "4",
    ]);
    assert!(out.starts_with("the "), "{out}");
    // A checkpoint of another model is refused with a reason.
    let e = fails(&[
        "train",
        "golden/specs/tiny-dib.bfly",
        "--data",
        s(&data),
        "--steps",
        "1",
        "-o",
        s(&dir.join("other")),
        "--resume",
        s(&first.join("checkpoint.safetensors")),
    ]);
    // … naming what differs: params of one model that the other lacks.
    assert!(e.contains("belongs to another model"), "{e}");
    assert!(
        e.contains("difference(s)")
            && e.contains("`embed.weight`: checkpoint shape [")
            && e.contains("is not in the checkpoint"),
        "{e}"
    );
}

#[test]
fn lora_training_writes_an_adapter_that_run_applies() {
    let dir = scratch("lora");
    let data = corpus(&dir);
    let out = dir.join("out");
    let o = bfly(&[
        "train",
        "golden/specs/tiny-lora-dense.bfly",
        "--data",
        s(&data),
        "--steps",
        "4",
        "--val-every",
        "4",
        "-o",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let adapter = out.join("adapter.safetensors");
    assert!(adapter.exists(), "{}", stderr(&o));
    let base = dir.join("base.bfa");
    ok(&[
        "compile",
        "golden/specs/tiny-lora-dense.bfly",
        "-o",
        s(&base),
    ]);
    let plain = ok(&["run", s(&base), "--prompt", "the ", "-n", "6"]);
    let with = bfly(&[
        "run",
        s(&base),
        "--prompt",
        "the ",
        "-n",
        "6",
        "--lora",
        s(&adapter),
    ]);
    assert!(with.status.success(), "{}", stderr(&with));
    assert!(
        stderr(&with).contains("adapter tensors"),
        "{}",
        stderr(&with)
    );
    // The trained adapters (B starts at zero) change what the model says.
    assert_ne!(plain, stdout(&with));
    // A file that is not an adapter is refused.
    let e = fails(&[
        "run",
        s(&base),
        "--prompt",
        "x",
        "--lora",
        s(&out.join("checkpoint.safetensors")),
    ]);
    assert!(e.contains("not a LoRA adapter"), "{e}");
}

#[test]
fn bad_training_data_is_reported() {
    let dir = scratch("bad-data");
    let train = |data: &Path| {
        fails(&[
            "train",
            "golden/specs/tiny-dense.bfly",
            "--data",
            s(data),
            "--steps",
            "1",
            "-o",
            s(&dir.join("out")),
        ])
    };
    let mut errors = Vec::new();
    let e = train(&dir.join("missing.txt"));
    assert!(e.contains("missing.txt"), "{e}");
    errors.push(e);
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "").expect("write");
    let e = train(&empty);
    assert!(e.contains("empty"), "{e}");
    errors.push(e);
    let binary = dir.join("binary.bin");
    std::fs::write(&binary, [0u8, 1, 2, 255, 0, 7].repeat(100)).expect("write");
    let e = train(&binary);
    assert!(
        e.contains("binary") || e.contains("NUL") || e.contains("UTF-8"),
        "{e}"
    );
    errors.push(e);
    let short = dir.join("short.txt");
    std::fs::write(&short, "tiny").expect("write");
    let e = train(&short);
    assert!(e.contains("short") || e.contains("at least"), "{e}");
    errors.push(e);
    for e in &errors {
        assert!(!e.contains("panicked"), "{e}");
    }
}

#[test]
fn corrupt_artifacts_fail_with_their_own_error() {
    let dir = scratch("corrupt");
    let model = dir.join("m.bfa");
    ok(&["compile", "golden/specs/tiny-dense.bfly", "-o", s(&model)]);
    let bytes = std::fs::read(&model).expect("read");
    let truncated = dir.join("truncated.bfa");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let e = fails(&["run", s(&truncated), "--prompt", "x"]);
    assert!(e.contains("truncated"), "{e}");
    let flipped = dir.join("flipped.bfa");
    let mut b = bytes.clone();
    let last = b.len() - 3;
    b[last] ^= 0x40;
    std::fs::write(&flipped, &b).expect("write");
    let e = fails(&["run", s(&flipped), "--prompt", "x"]);
    assert!(e.contains("checksum"), "{e}");
    // Wrong version and wrong shapes, by same-length edits of the header text (offsets stay).
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header = String::from_utf8(bytes[8..8 + header_len].to_vec()).expect("utf-8 header");
    let with_header = |name: &str, from: &str, to: &str| {
        assert_eq!(from.len(), to.len());
        assert!(header.contains(from), "{from} not in {header}");
        let mut out = bytes.clone();
        let edited = header.replacen(from, to, 1);
        out[8..8 + header_len].copy_from_slice(edited.as_bytes());
        let path = dir.join(name);
        std::fs::write(&path, out).expect("write");
        path
    };
    let old = with_header(
        "version.bfa",
        r#""bfly.format_version":"1""#,
        r#""bfly.format_version":"9""#,
    );
    let e = fails(&["run", s(&old), "--prompt", "x"]);
    assert!(e.contains("artifact format version 9"), "{e}");
    // The first 2-d shape with unequal dims, transposed: same bytes, wrong shape.
    let (from, to) = header
        .match_indices("\"shape\":[")
        .find_map(|(i, m)| {
            let rest = &header[i + m.len()..];
            let dims = &rest[..rest.find(']')?];
            let (a, b) = dims.split_once(',')?;
            (a != b && !b.contains(',')).then(|| (format!("{m}{a},{b}]"), format!("{m}{b},{a}]")))
        })
        .expect("a non-square matrix");
    let reshaped = with_header("shape.bfa", &from, &to);
    let e = fails(&["run", s(&reshaped), "--prompt", "x"]);
    assert!(e.contains("shape [") && e.contains("but param @"), "{e}");
    // A spec renamed to .bfa is not an artifact; the message says it is text.
    let spec = dir.join("spec.bfa");
    std::fs::copy("golden/specs/tiny-dense.bfly", &spec).expect("copy");
    let e = fails(&["run", s(&spec), "--prompt", "x"]);
    assert!(e.contains("the file is text"), "{e}");
}

#[test]
fn ctrl_c_saves_a_checkpoint_that_resumes() {
    use std::io::{BufRead, BufReader};
    let dir = scratch("ctrl-c");
    let data = corpus(&dir);
    let out = dir.join("out");
    let mut child = common::bfly_command()
        .args([
            "train",
            "golden/specs/tiny-dense.bfly",
            "--data",
            s(&data),
            "--steps",
            "1000000",
            "--val-every",
            "1000000",
            "-o",
            s(&out),
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("bfly starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr piped")).lines();
    // Wait until the training loop runs (the first progress line), then interrupt.
    let mut log = String::new();
    for line in lines.by_ref() {
        let line = line.expect("utf-8 stderr");
        log.push_str(&line);
        log.push('\n');
        if line.starts_with("step") {
            break;
        }
    }
    let pid = i32::try_from(child.id()).expect("pid fits i32");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT delivered");
    for line in lines {
        log.push_str(&line.expect("utf-8 stderr"));
        log.push('\n');
    }
    let exit = child.wait().expect("bfly exits");
    assert!(!exit.success(), "{log}");
    assert!(log.contains("interrupted at step"), "{log}");
    let ckpt = out.join("checkpoint.safetensors");
    assert!(ckpt.exists(), "{log}");
    // The saved state resumes.
    let o = bfly(&[
        "train",
        "golden/specs/tiny-dense.bfly",
        "--data",
        s(&data),
        "--steps",
        "1",
        "-o",
        s(&dir.join("again")),
        "--resume",
        s(&ckpt),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resumed from"), "{}", stderr(&o));
}
