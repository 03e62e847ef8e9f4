//! Shared helpers of the CLI tests: run the `bfly` binary and read what it printed.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `bfly` binary, behind `BFLY_CLI_RUNNER` when set: the QEMU legs of
/// scripts/test-all.sh run the tests under qemu-aarch64, which does not follow `execve` into
/// the aarch64 child by itself.
pub fn bfly_command() -> Command {
    let exe = env!("CARGO_BIN_EXE_bfly");
    match std::env::var("BFLY_CLI_RUNNER") {
        Ok(runner) if !runner.trim().is_empty() => {
            let mut words = runner.split_whitespace();
            let mut c = Command::new(words.next().unwrap_or_default());
            c.args(words).arg(exe);
            c
        }
        _ => Command::new(exe),
    }
}

/// Runs `bfly ARGS` from the repository root with colors off.
pub fn bfly(args: &[&str]) -> Output {
    bfly_command()
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .expect("the bfly binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// stdout of a run that must succeed.
pub fn ok(args: &[&str]) -> String {
    let o = bfly(args);
    assert!(o.status.success(), "bfly {args:?} failed:\n{}", stderr(&o));
    stdout(&o)
}

/// stderr of a run that must fail.
pub fn fails(args: &[&str]) -> String {
    let o = bfly(args);
    assert!(!o.status.success(), "bfly {args:?} succeeded");
    stderr(&o)
}

/// A fresh, empty scratch folder for one test: `{prefix}-{test}-{pid}` under cargo's target
/// tmp dir. The process id keeps concurrent runs apart (scripts/test-all.sh runs the two QEMU
/// legs of the same test binaries at the same time).
pub fn scratch(prefix: &str, test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{prefix}-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A path as `&str`, for argument lists.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
