//! Training checkpoints: everything needed to resume a run bit-exactly (parameters, optimizer
//! moments such as `x.adam_m`, the batch sampler's state, the loss history) in one safetensors
//! file, tied to its model by a fingerprint so a run never resumes into the wrong model.
//!
//! Layout: f32 tensors by name, plus `__metadata__` with `bfly.checkpoint_version`,
//! `bfly.step`, `bfly.fingerprint`, `bfly.sampler` (JSON) and `bfly.loss_history` (JSON), and
//! any caller keys from `Checkpoint::meta`. Saves go through `fsutil::write_atomic`, so a
//! crash mid-save leaves the previous checkpoint intact.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::data::SamplerState;

/// The format version this build writes and reads. Bump it when the layout changes.
pub const CHECKPOINT_VERSION: u32 = 1;

pub const KEY_VERSION: &str = "bfly.checkpoint_version";
pub const KEY_STEP: &str = "bfly.step";
pub const KEY_FINGERPRINT: &str = "bfly.fingerprint";
pub const KEY_SAMPLER: &str = "bfly.sampler";
pub const KEY_LOSS_HISTORY: &str = "bfly.loss_history";

/// Metadata keys the checkpoint owns; `Checkpoint::meta` may not use them.
pub const RESERVED_KEYS: [&str; 5] = [
    KEY_VERSION,
    KEY_STEP,
    KEY_FINGERPRINT,
    KEY_SAMPLER,
    KEY_LOSS_HISTORY,
];

/// A row-major f32 tensor. Training state is f32 whatever the artifact's storage dtype, so
/// checkpoints keep one simple element type.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointTensor {
    pub dims: Vec<usize>,
    pub data: Vec<f32>,
}

impl CheckpointTensor {
    pub fn new(dims: Vec<usize>, data: Vec<f32>) -> CheckpointTensor {
        CheckpointTensor { dims, data }
    }

    /// Number of elements the dims describe, `None` on overflow.
    fn numel(&self) -> Option<usize> {
        self.dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
    }
}

/// One entry of the loss history. A non-finite training loss is stored as JSON `null` and
/// comes back as NaN (JSON has no NaN or infinity).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossPoint {
    pub step: u64,
    pub train: f32,
    pub val: Option<f32>,
}

/// The JSON form of a `LossPoint`: `null` stands for "missing or not finite".
#[derive(Serialize, Deserialize)]
struct LossRow {
    step: u64,
    train: Option<f32>,
    #[serde(default)]
    val: Option<f32>,
}

/// A training checkpoint; see the module docs for the file layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// Optimizer steps taken so far.
    pub step: u64,
    /// Identifies the model (spec/artifact) the state belongs to; checked on load.
    pub fingerprint: String,
    pub sampler: SamplerState,
    pub loss_history: Vec<LossPoint>,
    /// Parameters and optimizer states by name (e.g. `blocks.0.wq`, `blocks.0.wq.adam_m`).
    pub tensors: BTreeMap<String, CheckpointTensor>,
    /// Free-form extra metadata (e.g. learning-rate schedule); keys in `RESERVED_KEYS` are
    /// rejected on save.
    pub meta: BTreeMap<String, String>,
}

/// What went wrong saving or loading a checkpoint. Every message names the file.
#[derive(Debug)]
pub enum CheckpointError {
    Read {
        file: String,
        source: io::Error,
    },
    Write {
        file: String,
        source: io::Error,
    },
    /// The checkpoint itself is inconsistent (caught before anything is written).
    Invalid {
        file: String,
        detail: String,
    },
    /// The file ends before the data its header describes.
    Truncated {
        file: String,
        detail: String,
    },
    /// The bytes are not a safetensors file at all.
    NotSafetensors {
        file: String,
        detail: String,
    },
    /// A safetensors file without bfly checkpoint metadata (an artifact, or another tool's).
    MissingMetadata {
        file: String,
        key: &'static str,
    },
    BadMetadata {
        file: String,
        key: &'static str,
        detail: String,
    },
    UnsupportedVersion {
        file: String,
        found: u32,
    },
    /// The checkpoint was written for a different model.
    WrongModel {
        file: String,
        found: String,
        expected: String,
    },
    BadTensor {
        file: String,
        name: String,
        detail: String,
    },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CheckpointError::*;
        match self {
            Read { file, source } if source.kind() == io::ErrorKind::NotFound => {
                write!(f, "checkpoint `{file}` does not exist; check the path")
            }
            Read { file, source } => write!(f, "cannot read checkpoint `{file}`: {source}"),
            Write { file, source } => write!(
                f,
                "cannot save checkpoint `{file}`: {source}; any previous checkpoint there is \
                 unchanged (check free space and that the directory exists and is writable)"
            ),
            Invalid { file, detail } => {
                write!(f, "refusing to save checkpoint `{file}`: {detail}")
            }
            Truncated { file, detail } => write!(
                f,
                "checkpoint `{file}` is truncated or incomplete ({detail}); it was probably \
                 copied or written partially: resume from an earlier checkpoint"
            ),
            NotSafetensors { file, detail } => write!(
                f,
                "`{file}` is not a checkpoint: it is not a safetensors file ({detail})"
            ),
            MissingMetadata { file, key } => write!(
                f,
                "`{file}` is a safetensors file but not a bfly checkpoint: metadata `{key}` is \
                 missing (a model artifact or another tool's file?)"
            ),
            BadMetadata { file, key, detail } => write!(
                f,
                "checkpoint `{file}` has invalid metadata `{key}`: {detail}"
            ),
            UnsupportedVersion { file, found } if *found > CHECKPOINT_VERSION => write!(
                f,
                "checkpoint `{file}` has format version {found}, newer than this bfly \
                 understands ({CHECKPOINT_VERSION}); upgrade bfly"
            ),
            UnsupportedVersion { file, found } => write!(
                f,
                "checkpoint `{file}` has old format version {found}; this bfly reads version \
                 {CHECKPOINT_VERSION}: restart training or use the bfly that wrote it"
            ),
            WrongModel {
                file,
                found,
                expected,
            } => write!(
                f,
                "checkpoint `{file}` belongs to another model (fingerprint {found}, this model \
                 is {expected}); pass the spec it was trained with, or start without --resume"
            ),
            BadTensor { file, name, detail } => {
                write!(f, "checkpoint `{file}` has a bad tensor `{name}`: {detail}")
            }
        }
    }
}

impl std::error::Error for CheckpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CheckpointError::Read { source, .. } | CheckpointError::Write { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }
}

impl Checkpoint {
    /// Writes the checkpoint atomically: either the whole new file replaces `path`, or `path`
    /// keeps its previous contents.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        self.save_with(path, crate::fsutil::write_atomic)
    }

    /// `save` with the file write injected, so tests can make it fail halfway.
    fn save_with(
        &self,
        path: &Path,
        write: impl FnOnce(&Path, &[u8]) -> io::Result<()>,
    ) -> Result<(), CheckpointError> {
        let file = path.display().to_string();
        let bytes = self.to_bytes(&file)?;
        write(path, &bytes).map_err(|source| CheckpointError::Write { file, source })
    }

    /// The safetensors bytes; `file` only labels errors.
    fn to_bytes(&self, file: &str) -> Result<Vec<u8>, CheckpointError> {
        let invalid = |detail: String| CheckpointError::Invalid {
            file: file.to_string(),
            detail,
        };
        let mut raw: Vec<(&str, &[usize], Vec<u8>)> = Vec::with_capacity(self.tensors.len());
        for (name, t) in &self.tensors {
            if t.numel() != Some(t.data.len()) {
                return Err(invalid(format!(
                    "tensor `{name}` has dims {:?} but {} values",
                    t.dims,
                    t.data.len()
                )));
            }
            let bytes = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            raw.push((name, &t.dims, bytes));
        }
        let mut views = Vec::with_capacity(raw.len());
        for (name, dims, bytes) in &raw {
            let view = TensorView::new(Dtype::F32, dims.to_vec(), bytes)
                .map_err(|e| invalid(format!("tensor `{name}`: {e}")))?;
            views.push((*name, view));
        }
        let meta = self.metadata().map_err(invalid)?;
        safetensors::serialize(views, Some(meta)).map_err(|e| invalid(e.to_string()))
    }

    fn metadata(&self) -> Result<HashMap<String, String>, String> {
        let mut meta = HashMap::new();
        for (k, v) in &self.meta {
            if RESERVED_KEYS.contains(&k.as_str()) {
                return Err(format!(
                    "metadata key `{k}` is reserved; set the checkpoint field instead"
                ));
            }
            meta.insert(k.clone(), v.clone());
        }
        let rows: Vec<LossRow> = self
            .loss_history
            .iter()
            .map(|p| LossRow {
                step: p.step,
                train: Some(p.train).filter(|v| v.is_finite()),
                val: p.val.filter(|v| v.is_finite()),
            })
            .collect();
        let json = |r: serde_json::Result<String>| r.map_err(|e| e.to_string());
        meta.insert(KEY_VERSION.into(), CHECKPOINT_VERSION.to_string());
        meta.insert(KEY_STEP.into(), self.step.to_string());
        meta.insert(KEY_FINGERPRINT.into(), self.fingerprint.clone());
        meta.insert(
            KEY_SAMPLER.into(),
            json(serde_json::to_string(&self.sampler))?,
        );
        meta.insert(KEY_LOSS_HISTORY.into(), json(serde_json::to_string(&rows))?);
        Ok(meta)
    }

    /// Reads a checkpoint and checks it belongs to the model with `expected_fingerprint`.
    pub fn load(path: &Path, expected_fingerprint: &str) -> Result<Checkpoint, CheckpointError> {
        let ckpt = Checkpoint::load_any(path)?;
        if ckpt.fingerprint != expected_fingerprint {
            return Err(CheckpointError::WrongModel {
                file: path.display().to_string(),
                found: ckpt.fingerprint,
                expected: expected_fingerprint.to_string(),
            });
        }
        Ok(ckpt)
    }

    /// Reads a checkpoint of any model (for inspection tools); use `load` to resume.
    pub fn load_any(path: &Path) -> Result<Checkpoint, CheckpointError> {
        let file = path.display().to_string();
        match std::fs::read(path) {
            Ok(bytes) => Checkpoint::from_bytes(&file, &bytes),
            Err(source) => Err(CheckpointError::Read { file, source }),
        }
    }

    /// Parses checkpoint bytes; `file` labels errors.
    pub fn from_bytes(file: &str, bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| parse_error(file, e))?;
        // `deserialize` validated the header; reading it again only fetches the metadata.
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| parse_error(file, e))?;
        let empty = HashMap::new();
        let raw = header.metadata().as_ref().unwrap_or(&empty);
        let meta = MetaReader { file, raw };

        let version: u32 = meta.parse(KEY_VERSION)?;
        if version != CHECKPOINT_VERSION {
            return Err(CheckpointError::UnsupportedVersion {
                file: file.to_string(),
                found: version,
            });
        }
        let fingerprint = meta.get(KEY_FINGERPRINT)?.to_string();
        let step: u64 = meta.parse(KEY_STEP)?;
        let sampler: SamplerState = meta.json(KEY_SAMPLER)?;
        let rows: Vec<LossRow> = meta.json(KEY_LOSS_HISTORY)?;
        let loss_history = rows
            .into_iter()
            .map(|r| LossPoint {
                step: r.step,
                train: r.train.unwrap_or(f32::NAN),
                val: r.val,
            })
            .collect();

        let mut tensors = BTreeMap::new();
        for (name, view) in st.iter() {
            if view.dtype() != Dtype::F32 {
                return Err(CheckpointError::BadTensor {
                    file: file.to_string(),
                    name: name.to_string(),
                    detail: format!("dtype {:?}, checkpoints hold F32 only", view.dtype()),
                });
            }
            let data = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let t = CheckpointTensor::new(view.shape().to_vec(), data);
            tensors.insert(name.to_string(), t);
        }
        let extra = raw
            .iter()
            .filter(|(k, _)| !RESERVED_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Checkpoint {
            step,
            fingerprint,
            sampler,
            loss_history,
            tensors,
            meta: extra,
        })
    }
}

/// Sorts safetensors parse failures into "cut short" and "not this format at all".
fn parse_error(file: &str, e: SafeTensorError) -> CheckpointError {
    let file = file.to_string();
    match e {
        SafeTensorError::HeaderTooSmall => CheckpointError::Truncated {
            file,
            detail: "shorter than the 8-byte header length".into(),
        },
        SafeTensorError::InvalidHeaderLength => CheckpointError::Truncated {
            file,
            detail: "the file ends inside its header".into(),
        },
        SafeTensorError::MetadataIncompleteBuffer => CheckpointError::Truncated {
            file,
            detail: "the tensor data does not match the size its header declares".into(),
        },
        other => CheckpointError::NotSafetensors {
            file,
            detail: other.to_string(),
        },
    }
}

/// Typed access to `__metadata__` with errors that name the file and the key.
struct MetaReader<'a> {
    file: &'a str,
    raw: &'a HashMap<String, String>,
}

impl MetaReader<'_> {
    fn get(&self, key: &'static str) -> Result<&str, CheckpointError> {
        self.raw
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| CheckpointError::MissingMetadata {
                file: self.file.to_string(),
                key,
            })
    }

    fn bad(&self, key: &'static str, detail: String) -> CheckpointError {
        CheckpointError::BadMetadata {
            file: self.file.to_string(),
            key,
            detail,
        }
    }

    fn parse<T: std::str::FromStr>(&self, key: &'static str) -> Result<T, CheckpointError>
    where
        T::Err: fmt::Display,
    {
        let v = self.get(key)?;
        v.parse()
            .map_err(|e| self.bad(key, format!("`{v}` is not a number ({e})")))
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        key: &'static str,
    ) -> Result<T, CheckpointError> {
        serde_json::from_str(self.get(key)?).map_err(|e| self.bad(key, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;
    use std::path::PathBuf;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("bfly-checkpoint-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn sample_checkpoint(step: u64) -> Checkpoint {
        let mut rng = SplitMix64::new(step);
        let mut tensors = BTreeMap::new();
        let w: Vec<f32> = (0..24)
            .map(|_| f32::from_bits(rng.next_u64() as u32))
            .collect();
        tensors.insert("blocks.0.wq".into(), CheckpointTensor::new(vec![4, 6], w));
        let m: Vec<f32> = (0..24).map(|_| rng.next_f64() as f32).collect();
        tensors.insert(
            "blocks.0.wq.adam_m".into(),
            CheckpointTensor::new(vec![4, 6], m),
        );
        tensors.insert("scalar".into(), CheckpointTensor::new(vec![], vec![-0.0]));
        tensors.insert("empty".into(), CheckpointTensor::new(vec![0, 3], vec![]));
        let mut meta = BTreeMap::new();
        meta.insert("lr_schedule".into(), "cosine".into());
        Checkpoint {
            step,
            fingerprint: "spec:abc123".into(),
            sampler: SamplerState {
                rng: u64::MAX - 3,
                drawn: step,
                batch: 8,
                seq: 64,
            },
            loss_history: vec![
                LossPoint {
                    step: 1,
                    train: 5.5451775,
                    val: None,
                },
                LossPoint {
                    step: 2,
                    train: 2.314,
                    val: Some(2.401),
                },
            ],
            tensors,
            meta,
        }
    }

    fn bits(c: &Checkpoint) -> Vec<(String, Vec<usize>, Vec<u32>)> {
        c.tensors
            .iter()
            .map(|(k, t)| {
                (
                    k.clone(),
                    t.dims.clone(),
                    t.data.iter().map(|v| v.to_bits()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn round_trip_is_bit_exact() {
        let dir = scratch("roundtrip");
        let path = dir.join("ckpt.safetensors");
        let c = sample_checkpoint(7);
        c.save(&path).unwrap();
        let back = Checkpoint::load(&path, "spec:abc123").unwrap();
        assert_eq!(bits(&back), bits(&c));
        assert_eq!(back.step, 7);
        assert_eq!(back.sampler, c.sampler);
        assert_eq!(back.loss_history, c.loss_history);
        assert_eq!(back.meta, c.meta);
        assert_eq!(back.fingerprint, c.fingerprint);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn loss_history_floats_survive_json() {
        let mut rng = SplitMix64::new(11);
        let mut c = sample_checkpoint(1);
        c.loss_history = (0..20_000)
            .map(|i| {
                let v = f32::from_bits(rng.next_u64() as u32);
                LossPoint {
                    step: i,
                    train: if v.is_finite() { v } else { 1.0 },
                    val: Some(rng.next_f64() as f32 * 10.0),
                }
            })
            .collect();
        c.loss_history.push(LossPoint {
            step: 99,
            train: f32::NAN,
            val: Some(f32::INFINITY),
        });
        let back = Checkpoint::from_bytes("mem", &c.to_bytes("mem").unwrap()).unwrap();
        let n = c.loss_history.len() - 1;
        for (a, b) in c.loss_history[..n].iter().zip(&back.loss_history) {
            assert_eq!(a.train.to_bits(), b.train.to_bits(), "{a:?} {b:?}");
            assert_eq!(a.val.map(f32::to_bits), b.val.map(f32::to_bits));
        }
        let last = back.loss_history[n];
        assert!(last.train.is_nan() && last.val.is_none());
    }

    #[test]
    fn truncated_and_corrupt_files_are_reported() {
        let dir = scratch("corrupt");
        let path = dir.join("ckpt.safetensors");
        sample_checkpoint(3).save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();

        for cut in [0, 5, 20, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let e = Checkpoint::load(&path, "spec:abc123").unwrap_err();
            assert!(
                matches!(e, CheckpointError::Truncated { .. }),
                "cut {cut}: {e}"
            );
            assert!(e.to_string().contains("ckpt.safetensors"));
            assert!(e.to_string().contains("truncated"));
        }

        let mut garbage = bytes.clone();
        garbage[8] = b'#'; // breaks the JSON header
        std::fs::write(&path, &garbage).unwrap();
        let e = Checkpoint::load(&path, "spec:abc123").unwrap_err();
        assert!(matches!(e, CheckpointError::NotSafetensors { .. }), "{e}");

        let e = Checkpoint::load(&dir.join("nope.safetensors"), "x").unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn other_model_is_rejected() {
        let dir = scratch("fingerprint");
        let path = dir.join("ckpt.safetensors");
        sample_checkpoint(3).save(&path).unwrap();
        let e = Checkpoint::load(&path, "spec:other").unwrap_err();
        assert!(matches!(e, CheckpointError::WrongModel { .. }));
        let m = e.to_string();
        assert!(
            m.contains("another model") && m.contains("spec:abc123") && m.contains("spec:other")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn raw_file(meta: Option<HashMap<String, String>>) -> Vec<u8> {
        let data = 1.0f32.to_le_bytes();
        let view = TensorView::new(Dtype::F32, vec![1], &data).unwrap();
        safetensors::serialize([("w", view)], meta).unwrap()
    }

    #[test]
    fn metadata_problems_are_distinct() {
        let e = Checkpoint::from_bytes("a.bfa", &raw_file(None)).unwrap_err();
        assert!(
            matches!(
                e,
                CheckpointError::MissingMetadata {
                    key: KEY_VERSION,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("not a bfly checkpoint"));

        let good = sample_checkpoint(1).metadata().unwrap();
        let mut newer = good.clone();
        newer.insert(KEY_VERSION.into(), "99".into());
        let e = Checkpoint::from_bytes("n", &raw_file(Some(newer))).unwrap_err();
        assert!(matches!(
            e,
            CheckpointError::UnsupportedVersion { found: 99, .. }
        ));
        assert!(e.to_string().contains("upgrade bfly"));

        let mut no_step = good.clone();
        no_step.remove(KEY_STEP);
        let e = Checkpoint::from_bytes("s", &raw_file(Some(no_step))).unwrap_err();
        assert!(matches!(
            e,
            CheckpointError::MissingMetadata { key: KEY_STEP, .. }
        ));

        let mut bad_sampler = good.clone();
        bad_sampler.insert(KEY_SAMPLER.into(), "{".into());
        let e = Checkpoint::from_bytes("s", &raw_file(Some(bad_sampler))).unwrap_err();
        assert!(matches!(
            e,
            CheckpointError::BadMetadata {
                key: KEY_SAMPLER,
                ..
            }
        ));

        assert!(Checkpoint::from_bytes("ok", &raw_file(Some(good))).is_ok());
    }

    #[test]
    fn non_f32_tensor_is_rejected() {
        let meta = sample_checkpoint(1).metadata().unwrap();
        let data = [0u8; 2];
        let view = TensorView::new(Dtype::F16, vec![1], &data).unwrap();
        let bytes = safetensors::serialize([("h", view)], Some(meta)).unwrap();
        let e = Checkpoint::from_bytes("f16", &bytes).unwrap_err();
        assert!(matches!(e, CheckpointError::BadTensor { .. }), "{e}");
    }

    #[test]
    fn failed_save_leaves_the_previous_checkpoint() {
        let dir = scratch("failsave");
        let path = dir.join("ckpt.safetensors");
        let old = sample_checkpoint(1);
        old.save(&path).unwrap();
        let old_bytes = std::fs::read(&path).unwrap();

        // The disk fills halfway through writing the new one.
        let new = sample_checkpoint(2);
        let e = new
            .save_with(&path, |p, b| {
                crate::fsutil::write_atomic_with(p, |w| {
                    w.write_all(&b[..b.len() / 2])?;
                    Err(io::Error::other("no space left on device"))
                })
            })
            .unwrap_err();
        assert!(matches!(e, CheckpointError::Write { .. }));
        assert!(e.to_string().contains("unchanged"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), old_bytes);
        assert_eq!(Checkpoint::load(&path, "spec:abc123").unwrap().step, 1);

        // An inconsistent checkpoint is refused before touching the disk.
        let mut bad = sample_checkpoint(3);
        bad.tensors
            .insert("x".into(), CheckpointTensor::new(vec![2, 2], vec![1.0]));
        assert!(matches!(
            bad.save(&path),
            Err(CheckpointError::Invalid { .. })
        ));
        let mut reserved = sample_checkpoint(3);
        reserved.meta.insert(KEY_STEP.into(), "5".into());
        assert!(matches!(
            reserved.save(&path),
            Err(CheckpointError::Invalid { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), old_bytes);

        // Only the checkpoint is left: no temp files.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

        let e = old.save(&dir.join("missing/ckpt.safetensors")).unwrap_err();
        assert!(matches!(e, CheckpointError::Write { .. }));
        assert!(e.to_string().contains("missing/ckpt.safetensors"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
