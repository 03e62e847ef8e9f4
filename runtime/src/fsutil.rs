//! Atomic file writes: artifacts, checkpoints and adapters are either fully replaced or left
//! untouched, never half-written, even if the process dies mid-write or the disk fills up.
//!
//! The method: write a temp file in the target's directory (same file system, so the rename is
//! atomic), `fsync` it, rename it over the target, then `fsync` the directory so the rename
//! itself survives a power loss (best effort: only on unix, where directories can be opened).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Replaces `path` with `bytes` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Replaces `path` with whatever `write` produces, atomically. If `write` (or any later step)
/// fails, the previous file at `path` is left intact and the temp file is removed.
pub fn write_atomic_with<F>(path: &Path, write: F) -> io::Result<()>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    let tmp = temp_path(path)?;
    let result = write_temp(&tmp, write).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = result {
        // Best effort: the error that matters is the one being returned.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(path);
    Ok(())
}

/// Writes and fsyncs the temp file; the handle is closed before the rename.
fn write_temp<F>(tmp: &Path, write: F) -> io::Result<()>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)?;
    let mut w = BufWriter::new(file);
    write(&mut w)?;
    let file = w.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()
}

/// `.NAME.tmp-PID-N` beside the target: hidden, unique per process and per call (two threads
/// writing the same checkpoint must not share a temp file), and on the same file system.
fn temp_path(path: &Path) -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{}` does not name a file", path.display()),
        )
    })?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}-{n}", std::process::id()));
    Ok(path.with_file_name(tmp_name))
}

/// Makes the rename durable by syncing the directory entry. Failures are ignored: the data is
/// already on disk and some file systems refuse to sync directories.
fn sync_dir(path: &Path) {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bfly-fsutil-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("read scratch dir")
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_the_target() {
        let dir = scratch_dir("replace");
        let path = dir.join("model.bfa");
        write_atomic(&path, b"old").expect("first write");
        write_atomic(&path, b"new contents").expect("second write");
        assert_eq!(fs::read(&path).expect("read back"), b"new contents");
        assert_eq!(entries(&dir), ["model.bfa"]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn streaming_writer_writes_everything() {
        let dir = scratch_dir("stream");
        let path = dir.join("ckpt.safetensors");
        write_atomic_with(&path, |w| {
            w.write_all(b"abc")?;
            w.write_all(b"def")
        })
        .expect("write");
        assert_eq!(fs::read(&path).expect("read back"), b"abcdef");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn failing_writer_keeps_old_file_and_leaves_no_temp() {
        let dir = scratch_dir("fail");
        let path = dir.join("model.bfa");
        write_atomic(&path, b"old").expect("first write");
        let err = write_atomic_with(&path, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("disk full"))
        })
        .expect_err("the closure failed");
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(fs::read(&path).expect("read back"), b"old");
        assert_eq!(entries(&dir), ["model.bfa"]);
        let _ = fs::remove_dir_all(&dir);
    }

    /// A crash after the temp file is written and synced but before the rename (the process
    /// killed, the power cut): the target still holds the complete old checkpoint, and the
    /// next save replaces it normally despite the orphaned temp file.
    #[test]
    fn crash_between_temp_write_and_rename_keeps_the_old_file() {
        let dir = scratch_dir("crash");
        let path = dir.join("checkpoint.safetensors");
        write_atomic(&path, b"old checkpoint").expect("first save");
        // The first half of write_atomic_with, then the "crash": no rename, no cleanup.
        let tmp = temp_path(&path).expect("temp name");
        write_temp(&tmp, |w| w.write_all(b"new checkpoint, never renamed")).expect("temp");
        assert_eq!(fs::read(&path).expect("read"), b"old checkpoint");
        assert_ne!(tmp, path);
        assert_eq!(
            tmp.parent(),
            path.parent(),
            "same folder, so the rename is atomic"
        );
        let orphan = tmp
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(
            orphan.starts_with(".checkpoint.safetensors.tmp-"),
            "{orphan}"
        );
        // The next save (a fresh temp name) works and leaves the orphan alone.
        write_atomic(&path, b"next checkpoint").expect("next save");
        assert_eq!(fs::read(&path).expect("read"), b"next checkpoint");
        assert_eq!(
            entries(&dir),
            [orphan, "checkpoint.safetensors".to_string()]
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn missing_directory_is_an_error() {
        let dir = scratch_dir("nodir");
        let path = dir.join("no/such/dir/model.bfa");
        assert!(write_atomic(&path, b"x").is_err());
        assert!(entries(&dir).is_empty());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn path_without_file_name_is_an_error() {
        let err = write_atomic(Path::new("/"), b"x").expect_err("no file name");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
