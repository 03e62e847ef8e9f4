//! Opening an artifact: map the file, then validate everything before anything runs, from the
//! outside in (file, container, format, version, keys, graph, tokenizer, tensors, checksums),
//! so the first error reported is the most fundamental one.
//!
//! Weights stay in the mapping: [`Artifact::tensor`] is a slice of it, so opening a model costs
//! its page-ins, not a copy. The checksum pass reads every byte once at open; a corrupt file is
//! refused up front instead of producing garbage mid-generation.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use bfly_grammar::SourceFile;
use bfly_ir::{DType, Graph};
use bfly_targets::reference::Weights;
use memmap2::{Mmap, MmapOptions};
use safetensors::tensor::Metadata;

use super::check::{FoundTensor, check_tensors};
use super::container;
use super::convert::view_to_reference;
use super::error::ArtifactError;
use super::format::{
    ArtifactMode, FORMAT_NAME, FORMAT_VERSION, TokenizerDesc, fnv1a64, keys, parse_checksum,
};
use super::tensor::{TensorView, dtype_from_safetensors};

/// A validated, memory-mapped artifact.
#[derive(Debug)]
pub struct Artifact {
    path: PathBuf,
    map: Mmap,
    tensors: BTreeMap<String, Entry>,
    graph: Graph,
    eval_graph: Option<Graph>,
    mode: ArtifactMode,
    spec_source: String,
    spec_name: String,
    tokenizer: TokenizerDesc,
    compiler: String,
}

/// Where a tensor lives in the mapping. Dtypes are validated at open, so always one bfly has.
#[derive(Debug)]
struct Entry {
    dtype: DType,
    dims: Vec<usize>,
    range: Range<usize>,
}

/// Maps `file` read-only.
///
/// SAFETY: the file was opened read-only and this process never writes it; the mapping is
/// private and read-only, so nothing in this process can change the bytes behind the `&[u8]`.
/// The documented caveat of every file mapping remains: another process truncating or rewriting
/// the file while it is mapped can change the bytes or raise SIGBUS. bfly's own writers never
/// do that (they write a temp file and rename it over the target, which leaves the mapped
/// inode untouched).
#[allow(unsafe_code)]
fn map_read_only(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: see the function's documentation.
    unsafe { MmapOptions::new().map_copy_read_only(file) }
}

impl Artifact {
    /// Opens and validates the artifact at `path`. Errors say which check failed and how to fix
    /// it; nothing in the file can make this panic.
    pub fn open(path: impl AsRef<Path>) -> Result<Artifact, ArtifactError> {
        let path = path.as_ref();
        let io = |source| ArtifactError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        if !file.metadata().map_err(io)?.is_file() {
            return Err(ArtifactError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        let map = map_read_only(&file).map_err(io)?;
        Self::validate(path, map)
    }

    fn validate(path: &Path, map: Mmap) -> Result<Artifact, ArtifactError> {
        let (header_len, header) =
            container::read_metadata(&map).map_err(|reason| ArtifactError::Malformed {
                path: path.to_path_buf(),
                reason,
            })?;
        let empty = HashMap::new();
        let meta = Meta {
            path,
            map: header.metadata().as_ref().unwrap_or(&empty),
        };
        meta.check_format()?;
        meta.check_version()?;
        for key in keys::REQUIRED {
            meta.get(key)?;
        }
        let mode = meta.mode()?;
        let graph = meta.graph()?;
        let tokenizer = meta.tokenizer()?;
        let tensors = meta.tensors(&graph, &header, header_len, &map)?;
        let eval_graph = meta.eval_graph(&tensors)?;
        let logits_graph = match mode {
            ArtifactMode::Infer => Some(&graph),
            ArtifactMode::Train => eval_graph.as_ref(),
        };
        if let Some(g) = logits_graph {
            meta.check_vocab(g, tokenizer)?;
        }
        meta.check_checksums(&map, &tensors)?;
        Ok(Artifact {
            path: path.to_path_buf(),
            mode,
            spec_source: meta.get(keys::SPEC)?.to_string(),
            spec_name: meta.get(keys::SPEC_NAME)?.to_string(),
            compiler: meta.get(keys::COMPILER)?.to_string(),
            tokenizer,
            graph,
            eval_graph,
            tensors,
            map,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Train artifacts: the f32 inference graph over the same params, if stored.
    pub fn eval_graph(&self) -> Option<&Graph> {
        self.eval_graph.as_ref()
    }

    /// The optimized graph, parsed and verified.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The spec source text (empty when the artifact was compiled from Graph IR).
    pub fn spec_source(&self) -> &str {
        &self.spec_source
    }

    /// The file name the spec or IR came from.
    pub fn spec_name(&self) -> &str {
        &self.spec_name
    }

    pub fn mode(&self) -> ArtifactMode {
        self.mode
    }

    pub fn tokenizer(&self) -> TokenizerDesc {
        self.tokenizer
    }

    /// The byte tokenizer's vocabulary size.
    pub fn vocab(&self) -> u32 {
        self.tokenizer.vocab()
    }

    /// Who wrote the artifact, e.g. `bfly 0.1.0`.
    pub fn compiler(&self) -> &str {
        &self.compiler
    }

    /// A tensor's bytes, straight from the mapping.
    pub fn tensor(&self, name: &str) -> Option<TensorView<'_>> {
        let e = self.tensors.get(name)?;
        Some(TensorView {
            dtype: e.dtype,
            dims: &e.dims,
            bytes: self.map.get(e.range.clone())?,
        })
    }

    /// Tensor names, sorted.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.tensors.keys().map(String::as_str)
    }

    /// The whole file, as mapped.
    pub fn file_bytes(&self) -> &[u8] {
        &self.map
    }

    /// Every tensor as the reference interpreter's f64 weights (exact: f32, f16 and the ints
    /// all fit in f64).
    pub fn to_reference_weights(&self) -> Weights {
        self.tensors
            .keys()
            .filter_map(|name| Some((name.clone(), view_to_reference(self.tensor(name)?))))
            .collect()
    }
}

/// The `__metadata__` map with the file path, for lookups that fail with a located error.
struct Meta<'a> {
    path: &'a Path,
    map: &'a HashMap<String, String>,
}

impl<'a> Meta<'a> {
    fn get(&self, key: &'static str) -> Result<&'a str, ArtifactError> {
        self.map
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| ArtifactError::MissingKey {
                path: self.path.to_path_buf(),
                key,
            })
    }

    fn invalid(&self, key: &'static str, reason: String) -> ArtifactError {
        ArtifactError::InvalidMetadata {
            path: self.path.to_path_buf(),
            key,
            reason,
        }
    }

    fn malformed(&self, reason: String) -> ArtifactError {
        ArtifactError::Malformed {
            path: self.path.to_path_buf(),
            reason,
        }
    }

    fn check_format(&self) -> Result<(), ArtifactError> {
        match self.map.get(keys::FORMAT) {
            Some(v) if v == FORMAT_NAME => Ok(()),
            found => Err(ArtifactError::NotBfly {
                path: self.path.to_path_buf(),
                found: found.cloned(),
            }),
        }
    }

    fn check_version(&self) -> Result<(), ArtifactError> {
        let text = self.get(keys::FORMAT_VERSION)?;
        let version: u32 = text.parse().map_err(|_| ArtifactError::InvalidVersion {
            path: self.path.to_path_buf(),
            value: text.to_string(),
        })?;
        if version == FORMAT_VERSION {
            Ok(())
        } else {
            Err(ArtifactError::UnsupportedVersion {
                path: self.path.to_path_buf(),
                found: version,
            })
        }
    }

    fn mode(&self) -> Result<ArtifactMode, ArtifactError> {
        let text = self.get(keys::MODE)?;
        ArtifactMode::from_name(text).ok_or_else(|| {
            self.invalid(
                keys::MODE,
                format!("{text:?} is neither \"infer\" nor \"train\""),
            )
        })
    }

    /// Parses (and so verifies: `parse_graph` runs the verifier) the graph text.
    fn graph(&self) -> Result<Graph, ArtifactError> {
        let file = SourceFile::new(keys::GRAPH, self.get(keys::GRAPH)?);
        bfly_ir::parse::parse_graph(&file)
            .map_err(|d| ArtifactError::bad_graph(self.path, &file, &d))
    }

    /// The optional eval graph, parsed, verified and checked against the tensors.
    fn eval_graph(
        &self,
        tensors: &BTreeMap<String, Entry>,
    ) -> Result<Option<Graph>, ArtifactError> {
        let Some(text) = self.map.get(keys::EVAL_GRAPH) else {
            return Ok(None);
        };
        let file = SourceFile::new(keys::EVAL_GRAPH, text.as_str());
        let graph = bfly_ir::parse::parse_graph(&file)
            .map_err(|d| ArtifactError::bad_graph(self.path, &file, &d))?;
        let problems = super::check::check_subset(
            &graph,
            tensors
                .iter()
                .map(|(n, e)| (n.as_str(), e.dtype, e.dims.as_slice())),
        );
        if !problems.is_empty() {
            return Err(ArtifactError::TensorMismatch {
                path: self.path.to_path_buf(),
                problems,
            });
        }
        Ok(Some(graph))
    }

    fn tokenizer(&self) -> Result<TokenizerDesc, ArtifactError> {
        let bad = |reason: String| ArtifactError::BadTokenizer {
            path: self.path.to_path_buf(),
            reason,
        };
        let desc: TokenizerDesc =
            serde_json::from_str(self.get(keys::TOKENIZER)?).map_err(|e| bad(e.to_string()))?;
        if desc.vocab() == 0 {
            return Err(bad("the vocabulary is empty".to_string()));
        }
        Ok(desc)
    }

    /// The tokenizer's vocabulary is the width of the graph's logits (its first output), so
    /// every token id it produces has a row and every logit a token.
    fn check_vocab(&self, graph: &Graph, tokenizer: TokenizerDesc) -> Result<(), ArtifactError> {
        let logits = graph
            .outputs()
            .first()
            .and_then(|o| graph.value_type(o.value).last_const());
        match logits {
            Some(v) if v != u64::from(tokenizer.vocab()) => Err(ArtifactError::BadTokenizer {
                path: self.path.to_path_buf(),
                reason: format!(
                    "vocab {}, but the graph's logits have {v} columns",
                    tokenizer.vocab()
                ),
            }),
            _ => Ok(()),
        }
    }

    /// The tensors, checked against the graph's params, with their byte ranges in the file.
    fn tensors(
        &self,
        graph: &Graph,
        header: &Metadata,
        header_len: usize,
        map: &[u8],
    ) -> Result<BTreeMap<String, Entry>, ArtifactError> {
        let infos = header.tensors();
        let found = infos.iter().map(|(name, info)| FoundTensor {
            name,
            dtype: dtype_from_safetensors(info.dtype).ok_or_else(|| format!("{:?}", info.dtype)),
            dims: &info.shape,
            byte_len: None,
        });
        let problems = check_tensors(graph, found);
        if !problems.is_empty() {
            return Err(ArtifactError::TensorMismatch {
                path: self.path.to_path_buf(),
                problems,
            });
        }
        // Data starts after the 8-byte length and the header. The container check and
        // safetensors already bound every offset by the file length; checking again keeps the
        // slicing below panic-free on its own terms.
        let mut tensors = BTreeMap::new();
        for (name, info) in &infos {
            let (s, e) = info.data_offsets;
            let start = header_len.checked_add(8).and_then(|d| d.checked_add(s));
            let end = header_len.checked_add(8).and_then(|d| d.checked_add(e));
            let (Some(start), Some(end), Some(dtype)) =
                (start, end, dtype_from_safetensors(info.dtype))
            else {
                return Err(self.malformed(format!("tensor `{name}` has invalid offsets")));
            };
            if map.get(start..end).is_none() {
                return Err(self.malformed(format!("tensor `{name}` lies outside the file")));
            }
            let entry = Entry {
                dtype,
                dims: info.shape.clone(),
                range: start..end,
            };
            tensors.insert(name.clone(), entry);
        }
        Ok(tensors)
    }

    /// Every tensor has a well-formed checksum that matches its bytes, and no checksum names a
    /// tensor that does not exist.
    fn check_checksums(
        &self,
        map: &[u8],
        tensors: &BTreeMap<String, Entry>,
    ) -> Result<(), ArtifactError> {
        let stored: BTreeMap<String, String> = serde_json::from_str(self.get(keys::CHECKSUMS)?)
            .map_err(|e| {
                self.invalid(
                    keys::CHECKSUMS,
                    format!("not a JSON object of strings ({e})"),
                )
            })?;
        if let Some(extra) = stored.keys().find(|n| !tensors.contains_key(*n)) {
            return Err(self.invalid(
                keys::CHECKSUMS,
                format!("checksum for `{extra}`, which is not a tensor of the file"),
            ));
        }
        let mut bad = Vec::new();
        for (name, e) in tensors {
            let Some(text) = stored.get(name) else {
                return Err(
                    self.invalid(keys::CHECKSUMS, format!("no checksum for tensor `{name}`"))
                );
            };
            let Some(want) = parse_checksum(text) else {
                return Err(self.invalid(
                    keys::CHECKSUMS,
                    format!("checksum {text:?} of tensor `{name}` is not 16 hex digits"),
                ));
            };
            let got = fnv1a64(map.get(e.range.clone()).unwrap_or_default());
            if got != want {
                bad.push((name, want, got));
            }
        }
        match bad.first() {
            None => Ok(()),
            Some(&(name, stored, computed)) => Err(ArtifactError::ChecksumMismatch {
                path: self.path.to_path_buf(),
                tensor: name.clone(),
                stored,
                computed,
                others: bad.len() - 1,
            }),
        }
    }
}
