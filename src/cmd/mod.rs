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
