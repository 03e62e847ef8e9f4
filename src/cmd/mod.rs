pub mod bench;
pub mod bench_layer;
pub mod compile;
pub mod demo;
pub mod inspect;
pub mod run;
pub mod train;

/// Writes `text` to `path` atomically (temp file in the same folder, fsync, rename), or to
/// stdout when no path is given.
pub fn emit(text: &str, path: Option<&std::path::Path>) -> Result<(), String> {
    use std::io::Write;
    let Some(path) = path else {
        let mut out = std::io::stdout().lock();
        return out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| format!("error: cannot write to stdout: {e}"));
    };
    bfly_runtime::fsutil::write_atomic(path, text.as_bytes())
        .map_err(|e| format!("error: cannot write {}: {e}", path.display()))
}

/// Most worker threads a command accepts: far above any phone or workstation core count, low
/// enough that a typo (`--threads 10000`) is an error rather than thousands of threads.
pub const MAX_THREADS: usize = 256;

/// Parses `--threads`: 0 (one per core) up to [`MAX_THREADS`].
pub fn parse_threads(value: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(n) if n <= MAX_THREADS => Ok(n),
        Ok(n) => Err(format!(
            "{n} threads is more than the {MAX_THREADS} this accepts; use 0 for one per core"
        )),
        Err(_) => Err(format!(
            "`{value}` is not a thread count; use a whole number from 0 (one per core) to \
             {MAX_THREADS}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts() {
        assert_eq!(parse_threads("0"), Ok(0));
        assert_eq!(parse_threads("3"), Ok(3));
        assert_eq!(parse_threads("256"), Ok(256));
        for bad in ["257", "10000", "-1", "x", ""] {
            assert!(parse_threads(bad).is_err(), "{bad}");
        }
    }
}
