//! Shared helpers of the CLI tests: run the `bfly` binary and read what it printed.
#![allow(dead_code, reason = "each test binary uses a different subset")]

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
