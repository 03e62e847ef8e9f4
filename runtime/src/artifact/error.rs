//! Everything that can go wrong reading or writing an artifact. Each message names the file
//! (and the key or tensor), says what is wrong and what to do about it, because the person
//! reading it is usually holding a file someone else produced.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use bfly_grammar::{Diagnostic, SourceFile};

use super::check::{TensorProblem, problem_list};
use super::format::FORMAT_VERSION;

/// The advice for a file that bfly wrote but that no longer reads back.
const RECOMPILE: &str = "recompile it with `bfly compile`";

#[derive(Debug)]
pub enum ArtifactError {
    /// The file cannot be opened, inspected or mapped.
    Io { path: PathBuf, source: io::Error },
    /// The path is a directory or another non-regular file.
    NotAFile { path: PathBuf },
    /// safetensors rejected the file: too short, header length or JSON invalid, offsets that do
    /// not cover the file (a truncated download), non-UTF-8 header.
    Malformed { path: PathBuf, reason: String },
    /// A valid safetensors file without `bfly.format = "bfa"` (e.g. a plain weights file).
    NotBfly {
        path: PathBuf,
        /// The `bfly.format` value, if there is one.
        found: Option<String>,
    },
    /// `bfly.format_version` is not a decimal number.
    InvalidVersion { path: PathBuf, value: String },
    /// Written by a bfly with another format version.
    UnsupportedVersion { path: PathBuf, found: u32 },
    /// A required `__metadata__` key is absent.
    MissingKey { path: PathBuf, key: &'static str },
    /// A metadata value that does not decode (mode, checksums).
    InvalidMetadata {
        path: PathBuf,
        key: &'static str,
        reason: String,
    },
    /// The graph text does not parse or verify: `message` is the first diagnostic's one-line
    /// form, `more` the number of further diagnostics.
    BadGraph {
        path: PathBuf,
        message: String,
        more: usize,
    },
    /// `bfly.tokenizer` is not `{"kind":"byte","vocab":N}` with N ≥ 1.
    BadTokenizer { path: PathBuf, reason: String },
    /// The tensors do not match the graph's params; every problem is listed.
    TensorMismatch {
        path: PathBuf,
        problems: Vec<TensorProblem>,
    },
    /// A tensor's bytes differ from what was written. `others` counts further corrupt tensors.
    ChecksumMismatch {
        path: PathBuf,
        tensor: String,
        stored: u64,
        computed: u64,
        others: usize,
    },
    /// safetensors refused to serialize (writer side).
    Serialize { path: PathBuf, reason: String },
    /// The atomic write failed; the previous file, if any, is intact.
    Write { path: PathBuf, source: io::Error },
}

impl ArtifactError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ArtifactError::Io { path, .. }
            | ArtifactError::NotAFile { path }
            | ArtifactError::Malformed { path, .. }
            | ArtifactError::NotBfly { path, .. }
            | ArtifactError::InvalidVersion { path, .. }
            | ArtifactError::UnsupportedVersion { path, .. }
            | ArtifactError::MissingKey { path, .. }
            | ArtifactError::InvalidMetadata { path, .. }
            | ArtifactError::BadGraph { path, .. }
            | ArtifactError::BadTokenizer { path, .. }
            | ArtifactError::TensorMismatch { path, .. }
            | ArtifactError::ChecksumMismatch { path, .. }
            | ArtifactError::Serialize { path, .. }
            | ArtifactError::Write { path, .. } => path,
        }
    }

    /// A [`ArtifactError::BadGraph`] from the parser's diagnostics on `file`.
    pub(crate) fn bad_graph(path: &Path, file: &SourceFile, diagnostics: &[Diagnostic]) -> Self {
        ArtifactError::BadGraph {
            path: path.to_path_buf(),
            message: diagnostics
                .first()
                .map_or_else(|| "unknown error".to_string(), |d| d.short(file)),
            more: diagnostics.len().saturating_sub(1),
        }
    }
}

impl fmt::Display for ArtifactError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path().display();
        match self {
            ArtifactError::Io { source, .. } => {
                write!(f, "cannot read artifact {p}: {source}; check the path")
            }
            ArtifactError::NotAFile { .. } => write!(
                f,
                "{p} is not a file (a directory?); pass the path of a .bfa artifact"
            ),
            ArtifactError::Malformed { reason, .. } => write!(
                f,
                "{p}: truncated or not a safetensors file ({reason}); {RECOMPILE} or download it again"
            ),
            ArtifactError::NotBfly { found, .. } => {
                write!(f, "{p}: not a bfly artifact (")?;
                match found {
                    Some(v) => write!(f, "`bfly.format` is {v:?}, expected \"bfa\")")?,
                    None => f.write_str("no `bfly.format` metadata)")?,
                }
                write!(
                    f,
                    "; a plain safetensors weights file must be compiled into an artifact with `bfly compile`"
                )
            }
            ArtifactError::InvalidVersion { value, .. } => write!(
                f,
                "{p}: `bfly.format_version` is {value:?}, not a version number: the file is corrupt; {RECOMPILE}"
            ),
            ArtifactError::UnsupportedVersion { found, .. } => write!(
                f,
                "{p}: artifact format version {found}, this bfly reads version {FORMAT_VERSION}; recompile with `bfly compile`"
            ),
            ArtifactError::MissingKey { key, .. } => write!(
                f,
                "{p}: metadata key `{key}` is missing: the file is corrupt or was not written by bfly; {RECOMPILE}"
            ),
            ArtifactError::InvalidMetadata { key, reason, .. } => {
                write!(f, "{p}: metadata `{key}`: {reason}; {RECOMPILE}")
            }
            ArtifactError::BadGraph { message, more, .. } => {
                write!(f, "{p}: the graph in `bfly.graph` is invalid: {message}")?;
                if *more > 0 {
                    write!(f, " (and {more} more error(s))")?;
                }
                write!(
                    f,
                    "; the file is corrupt or from an incompatible bfly; {RECOMPILE}"
                )
            }
            ArtifactError::BadTokenizer { reason, .. } => write!(
                f,
                "{p}: `bfly.tokenizer` is invalid ({reason}), expected {{\"kind\":\"byte\",\"vocab\":N}}; {RECOMPILE}"
            ),
            ArtifactError::TensorMismatch { problems, .. } => write!(
                f,
                "{p}: the tensors do not match the graph's params ({} problem(s)):{}\n{RECOMPILE}",
                problems.len(),
                problem_list(problems)
            ),
            ArtifactError::ChecksumMismatch {
                tensor,
                stored,
                computed,
                others,
                ..
            } => {
                write!(
                    f,
                    "{p}: tensor `{tensor}`: checksum mismatch (stored {stored:016x}, computed {computed:016x})"
                )?;
                if *others > 0 {
                    write!(f, " and {others} more corrupt tensor(s)")?;
                }
                write!(f, ": the file is corrupt; recompile or re-download it")
            }
            ArtifactError::Serialize { reason, .. } => {
                write!(f, "cannot serialize artifact {p}: {reason}")
            }
            ArtifactError::Write { source, .. } => write!(
                f,
                "cannot write artifact {p}: {source}; any previous file there is unchanged"
            ),
        }
    }
}

impl std::error::Error for ArtifactError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ArtifactError::Io { source, .. } | ArtifactError::Write { source, .. } => Some(source),
            _ => None,
        }
    }
}
