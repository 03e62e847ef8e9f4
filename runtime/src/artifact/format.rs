//! What an artifact stores and how: the `__metadata__` keys (all values are strings, as
//! safetensors requires), their encodings, and the writer.
//!
//! Tensors are the graph's params, one per `param @name`, under that exact name, dtype and
//! shape. Every tensor's bytes carry an FNV-1a 64 checksum in `bfly.checksums`: safetensors
//! checks the header's offsets, but a flipped bit inside the weights would otherwise load
//! silently and produce garbage text.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use bfly_grammar::SourceFile;
use bfly_ir::{Graph, print_graph};
use serde::{Deserialize, Serialize};

use super::check::{FoundTensor, check_tensors};
use super::error::ArtifactError;
use super::tensor::HostTensor;
use crate::fsutil::write_atomic;

/// The version this bfly writes and the only one it reads. Bump it on any change a reader of
/// the previous version would misread.
pub const FORMAT_VERSION: u32 = 1;

/// The value of [`keys::FORMAT`]: tells a `.bfa` from any other safetensors file.
pub const FORMAT_NAME: &str = "bfa";

/// Written into [`keys::COMPILER`], so a bad artifact can be traced to the bfly that wrote it.
pub const COMPILER_ID: &str = concat!("bfly ", env!("CARGO_PKG_VERSION"));

/// The `__metadata__` keys. All are required.
pub mod keys {
    /// Always `"bfa"`.
    pub const FORMAT: &str = "bfly.format";
    /// [`super::FORMAT_VERSION`] in decimal.
    pub const FORMAT_VERSION: &str = "bfly.format_version";
    /// `"infer"` or `"train"`: which pipeline produced the graph.
    pub const MODE: &str = "bfly.mode";
    /// The optimized Graph IR text (`bfly_ir::print_graph`).
    pub const GRAPH: &str = "bfly.graph";
    /// The spec source text; empty when the input was Graph IR.
    pub const SPEC: &str = "bfly.spec";
    /// The file name the spec (or IR) came from, for messages.
    pub const SPEC_NAME: &str = "bfly.spec_name";
    /// JSON `{"kind":"byte","vocab":N}`.
    pub const TOKENIZER: &str = "bfly.tokenizer";
    /// JSON object: tensor name → 16 hex digits of [`super::fnv1a64`] over its bytes.
    pub const CHECKSUMS: &str = "bfly.checksums";
    /// The writer, e.g. `"bfly 0.1.0"`.
    pub const COMPILER: &str = "bfly.compiler";

    /// Optional (train artifacts): the f32 inference graph over the same params, which the
    /// trainer runs for validation loss and samples. Its params must all be tensors of the
    /// artifact with the same dtype and shape.
    pub const EVAL_GRAPH: &str = "bfly.eval_graph";

    /// Checked in this order after the format and the version.
    pub const REQUIRED: [&str; 7] = [MODE, GRAPH, SPEC, SPEC_NAME, TOKENIZER, CHECKSUMS, COMPILER];
}

/// Which pipeline produced the artifact's graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArtifactMode {
    Infer,
    Train,
}

impl ArtifactMode {
    pub fn name(self) -> &'static str {
        match self {
            ArtifactMode::Infer => "infer",
            ArtifactMode::Train => "train",
        }
    }

    pub fn from_name(name: &str) -> Option<ArtifactMode> {
        match name {
            "infer" => Some(ArtifactMode::Infer),
            "train" => Some(ArtifactMode::Train),
            _ => None,
        }
    }
}

/// The tokenizer an artifact's model expects, stored as JSON in [`keys::TOKENIZER`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum TokenizerDesc {
    /// Token id = byte value ([`crate::ByteTokenizer`]).
    Byte { vocab: u32 },
}

impl TokenizerDesc {
    pub fn vocab(self) -> u32 {
        match self {
            TokenizerDesc::Byte { vocab } => vocab,
        }
    }
}

/// FNV-1a 64 of `bytes`: simple, dependency-free and plenty to catch corruption (it is not a
/// defence against deliberate tampering).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// The checksum text of [`keys::CHECKSUMS`]: exactly 16 lowercase hex digits.
pub fn checksum_text(sum: u64) -> String {
    format!("{sum:016x}")
}

/// Parses a checksum written by [`checksum_text`].
pub fn parse_checksum(text: &str) -> Option<u64> {
    if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// Everything an artifact is made of.
#[derive(Clone, Copy, Debug)]
pub struct ArtifactParts<'a> {
    /// The optimized graph; its params define the tensors.
    pub graph: &'a Graph,
    pub mode: ArtifactMode,
    /// Spec source text; empty when compiling from Graph IR.
    pub spec_source: &'a str,
    /// File name of the spec or IR, as given to the compiler.
    pub spec_name: &'a str,
    /// Byte tokenizer vocabulary size.
    pub vocab: u32,
    /// One tensor per param of `graph`, under the param's name.
    pub tensors: &'a BTreeMap<String, HostTensor>,
    /// Train artifacts: the inference graph over the same params ([`keys::EVAL_GRAPH`]).
    pub eval_graph: Option<&'a Graph>,
}

/// Writes an artifact to `path` atomically (the previous file, if any, survives a failure).
///
/// Checks first what the loader will check (the tensors match the params; the printed graph
/// parses back), so a bad artifact fails here, at compile time, rather than on a phone.
pub fn write_artifact(path: &Path, parts: &ArtifactParts) -> Result<(), ArtifactError> {
    let found = parts.tensors.iter().map(|(name, t)| FoundTensor {
        name,
        dtype: Ok(t.dtype),
        dims: &t.dims,
        byte_len: Some(t.bytes.len()),
    });
    let problems = check_tensors(parts.graph, found);
    if !problems.is_empty() {
        return Err(ArtifactError::TensorMismatch {
            path: path.to_path_buf(),
            problems,
        });
    }
    let graph_text = print_graph(parts.graph);
    let check_file = SourceFile::new(keys::GRAPH, &*graph_text);
    if let Err(diagnostics) = bfly_ir::parse::parse_graph(&check_file) {
        return Err(ArtifactError::bad_graph(path, &check_file, &diagnostics));
    }
    if let Some(eval) = parts.eval_graph {
        let problems = super::check::check_subset(
            eval,
            parts
                .tensors
                .iter()
                .map(|(n, t)| (n.as_str(), t.dtype, t.dims.as_slice())),
        );
        if !problems.is_empty() {
            return Err(ArtifactError::TensorMismatch {
                path: path.to_path_buf(),
                problems,
            });
        }
    }
    let metadata = metadata(parts, graph_text);
    let bytes = safetensors::serialize(parts.tensors.iter(), Some(metadata)).map_err(|e| {
        ArtifactError::Serialize {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    })?;
    write_atomic(path, &bytes).map_err(|source| ArtifactError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn metadata(parts: &ArtifactParts, graph_text: String) -> HashMap<String, String> {
    let checksums: BTreeMap<&str, String> = parts
        .tensors
        .iter()
        .map(|(name, t)| (name.as_str(), checksum_text(fnv1a64(&t.bytes))))
        .collect();
    let tokenizer = TokenizerDesc::Byte { vocab: parts.vocab };
    [
        (keys::FORMAT, FORMAT_NAME.to_string()),
        (keys::FORMAT_VERSION, FORMAT_VERSION.to_string()),
        (keys::MODE, parts.mode.name().to_string()),
        (keys::GRAPH, graph_text),
        (keys::SPEC, parts.spec_source.to_string()),
        (keys::SPEC_NAME, parts.spec_name.to_string()),
        (keys::TOKENIZER, to_json(&tokenizer)),
        (keys::CHECKSUMS, to_json(&checksums)),
        (keys::COMPILER, COMPILER_ID.to_string()),
    ]
    .into_iter()
    .chain(parts.eval_graph.map(|g| (keys::EVAL_GRAPH, print_graph(g))))
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// JSON of a map of strings or a plain enum: serde_json cannot fail on these.
fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn checksum_text_round_trips() {
        let s = checksum_text(0x0123_4567_89ab_cdef);
        assert_eq!(s, "0123456789abcdef");
        assert_eq!(parse_checksum(&s), Some(0x0123_4567_89ab_cdef));
        assert_eq!(parse_checksum("123"), None);
        assert_eq!(parse_checksum("+123456789abcdef"), None);
    }

    #[test]
    fn tokenizer_json() {
        let t = TokenizerDesc::Byte { vocab: 256 };
        assert_eq!(to_json(&t), r#"{"kind":"byte","vocab":256}"#);
        let back: TokenizerDesc =
            serde_json::from_str(r#"{"kind":"byte","vocab":256}"#).expect("valid tokenizer JSON");
        assert_eq!(back, t);
        assert!(serde_json::from_str::<TokenizerDesc>(r#"{"kind":"bpe","vocab":1}"#).is_err());
    }
}
