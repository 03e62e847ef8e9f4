//! End-to-end tests of the `bfly` binary: every subcommand, its help, and bad input.

mod common;
use common::*;

#[test]
fn help_on_every_subcommand() {
    for sub in [&["--help"][..], &["inspect", "--help"], &["run", "--help"]] {
        let o = bfly(sub);
        assert!(o.status.success(), "{sub:?}: {}", stderr(&o));
        assert!(stdout(&o).contains("Usage"), "{sub:?}");
    }
}

#[test]
fn inspect_summary_reports_butterfly_savings() {
    let o = bfly(&[
        "inspect",
        "golden/specs/wide-2048.bfly",
        "--emit",
        "summary",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("180224") && s.contains("93.09×"), "{s}");
}

#[test]
fn inspect_emits_ir_that_parses_back_and_dot_and_ast() {
    let dir = std::env::temp_dir().join(format!("bfly-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ir = dir.join("tiny-dib.bfir");
    let o = bfly(&[
        "inspect",
        "golden/specs/tiny-dib.bfly",
        "--emit",
        "ir",
        "-o",
        ir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let first = std::fs::read_to_string(&ir).unwrap();
    assert!(first.starts_with("graph @tiny_dib"), "{first}");
    let again = bfly(&["inspect", ir.to_str().unwrap(), "--emit", "ir"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(
        stdout(&again),
        first,
        "IR text must round-trip through the CLI"
    );
    let dot = bfly(&["inspect", "golden/specs/tiny-dib.bfly", "--emit", "dot"]);
    assert!(stdout(&dot).starts_with("digraph"));
    let ast = bfly(&["inspect", "golden/specs/tiny-dib.bfly", "--emit", "ast"]);
    assert!(
        ast.status.success() && stdout(&ast).contains("model"),
        "{}",
        stderr(&ast)
    );
    let no_ast = bfly(&["inspect", ir.to_str().unwrap(), "--emit", "ast"]);
    assert!(!no_ast.status.success() && stderr(&no_ast).contains("has no spec AST"));
    std::fs::remove_dir_all(&dir).ok();
}

/// The id list `bfly run` prints on stderr (`…: [1, 2, 3]`).
fn token_ids(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.rsplit_once(": [").map(|(_, ids)| ids.to_string()))
        .unwrap_or_default()
}

#[test]
fn run_generates_greedy_tokens_deterministically_on_every_backend() {
    let run = |backend: &str| {
        bfly(&[
            "run",
            "golden/specs/tiny-dense.bfly",
            "--prompt",
            "Hi",
            "-n",
            "6",
            "--seed",
            "3",
            "--backend",
            backend,
        ])
    };
    let host = run("host");
    assert!(host.status.success(), "{}", stderr(&host));
    assert!(stderr(&host).contains("seed 3"), "{}", stderr(&host));
    let again = run("host");
    assert_eq!(stdout(&host), stdout(&again));
    // The JIT with its KV cache picks the same greedy tokens as the f64 oracle, which
    // recomputes the whole prefix for every token.
    let reference = run("reference");
    assert!(reference.status.success(), "{}", stderr(&reference));
    assert_eq!(stdout(&host), stdout(&reference));
    assert_eq!(token_ids(&stderr(&host)), token_ids(&stderr(&reference)));
    assert!(!token_ids(&stderr(&host)).is_empty());
}

#[test]
fn bad_input_fails_cleanly_with_a_location() {
    let o = bfly(&["inspect", "golden/errors/typo-key.bfly"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("golden/errors/typo-key.bfly:"), "{e}");
    assert!(!e.contains("panicked"), "{e}");

    let o = bfly(&["inspect", "no/such/file.bfly"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read no/such/file.bfly"));

    let o = bfly(&[
        "run",
        "golden/specs/tiny-dense.bfly",
        "--prompt",
        "x",
        "-n",
        "100000",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("exceed the model's context"),
        "{}",
        stderr(&o)
    );

    let o = bfly(&["inspect", "golden/specs/tiny-dense.bfly", "--emit", "bogus"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "clap reports usage errors with exit code 2"
    );
}
