//! Training text: loading and checking a byte corpus, splitting it into train and validation
//! parts, and drawing batches of windows from it.
//!
//! Tokens are bytes (see `tokenizer`): token id = byte value. The corpus is checked up front
//! so a bad file fails before any compute with a message that says how to fix it.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::rng::SplitMix64;

/// Why a corpus or a sampler could not be built. Every message names the file.
#[derive(Debug)]
pub enum DataError {
    /// The file does not exist or cannot be read.
    Unreadable { file: String, source: io::Error },
    /// The file has no bytes.
    Empty { file: String },
    /// The file has a NUL byte: almost certainly binary, not text.
    NulByte { file: String, offset: usize },
    /// The file is not valid UTF-8 from `offset` on.
    NotUtf8 { file: String, offset: usize },
    /// A byte the model's vocabulary (< 256) cannot represent.
    OutOfVocab {
        file: String,
        offset: usize,
        byte: u8,
        vocab: u32,
    },
    /// Too few bytes for one window of `seq + 1` tokens in each of train and validation.
    TooShort {
        file: String,
        len: usize,
        seq: usize,
        min_len: usize,
    },
    /// A bad batch size, sequence length, validation fraction or resume state.
    Config { file: String, message: String },
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Unreadable { file, source } if source.kind() == io::ErrorKind::NotFound => {
                write!(f, "training text `{file}` does not exist; check the path")
            }
            DataError::Unreadable { file, source } => write!(
                f,
                "cannot read training text `{file}`: {source}; check that it is a readable file"
            ),
            DataError::Empty { file } => write!(
                f,
                "training text `{file}` is empty; give a file with some text in it"
            ),
            DataError::NulByte { file, offset } => write!(
                f,
                "training text `{file}` has a NUL byte at offset {offset}: it looks like a binary \
                 file; train on plain UTF-8 text"
            ),
            DataError::NotUtf8 { file, offset } => write!(
                f,
                "training text `{file}` is not valid UTF-8 at byte offset {offset}: it looks like \
                 a binary file or another encoding; convert it to UTF-8 (e.g. `iconv -t UTF-8`)"
            ),
            DataError::OutOfVocab {
                file,
                offset,
                byte,
                vocab,
            } => write!(
                f,
                "training text `{file}` has byte {byte:#04x} at offset {offset}, outside the \
                 model's vocabulary of {vocab} tokens; remove such bytes or use a model with \
                 `vocab` > {byte}"
            ),
            DataError::TooShort {
                file,
                len,
                seq,
                min_len,
            } => write!(
                f,
                "training text `{file}` has {len} bytes, too short for sequence length {seq}: \
                 training and validation each need {} bytes, so the file needs at least \
                 {min_len} bytes; use more text or a shorter sequence",
                seq + 1
            ),
            DataError::Config { file, message } => write!(f, "training text `{file}`: {message}"),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DataError::Unreadable { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A checked byte corpus with a contiguous train/validation split: the validation part is the
/// tail of the file, so no training window ever sees validation text.
#[derive(Clone, Debug)]
pub struct TextCorpus {
    name: String,
    bytes: Arc<[u8]>,
    val_fraction: f64,
}

impl TextCorpus {
    /// The share of the bytes (taken from the end) held out for validation by default.
    pub const DEFAULT_VAL_FRACTION: f64 = 0.1;

    /// Reads and checks a training text file (see `from_bytes` for the checks).
    pub fn from_file(path: impl AsRef<Path>, vocab: u32) -> Result<TextCorpus, DataError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        match std::fs::read(path) {
            Ok(bytes) => TextCorpus::from_bytes(name, bytes, vocab),
            Err(source) => Err(DataError::Unreadable { file: name, source }),
        }
    }

    /// Checks in-memory text: not empty, no NUL bytes, valid UTF-8, and (for `vocab < 256`)
    /// every byte inside the vocabulary. `name` appears in error messages.
    pub fn from_bytes(
        name: impl Into<String>,
        bytes: Vec<u8>,
        vocab: u32,
    ) -> Result<TextCorpus, DataError> {
        let file = name.into();
        if bytes.is_empty() {
            return Err(DataError::Empty { file });
        }
        if let Some(offset) = bytes.iter().position(|&b| b == 0) {
            return Err(DataError::NulByte { file, offset });
        }
        if let Err(e) = std::str::from_utf8(&bytes) {
            return Err(DataError::NotUtf8 {
                file,
                offset: e.valid_up_to(),
            });
        }
        if let Some((offset, &byte)) = bytes
            .iter()
            .enumerate()
            .find(|&(_, &b)| u32::from(b) >= vocab)
        {
            return Err(DataError::OutOfVocab {
                file,
                offset,
                byte,
                vocab,
            });
        }
        Ok(TextCorpus {
            name: file,
            bytes: bytes.into(),
            val_fraction: TextCorpus::DEFAULT_VAL_FRACTION,
        })
    }

    /// Sets the share of bytes held out for validation; must be strictly between 0 and 1
    /// because both parts must exist.
    pub fn with_val_fraction(mut self, val_fraction: f64) -> Result<TextCorpus, DataError> {
        if !(val_fraction > 0.0 && val_fraction < 1.0) {
            return Err(self.config_error(format!(
                "validation fraction must be strictly between 0 and 1, got {val_fraction}"
            )));
        }
        self.val_fraction = val_fraction;
        Ok(self)
    }

    /// The file name (or the name given to `from_bytes`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Total number of bytes (tokens), train and validation together.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: an empty corpus is rejected at load time.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn val_fraction(&self) -> f64 {
        self.val_fraction
    }

    /// The training part (the head of the file).
    pub fn train_bytes(&self) -> &[u8] {
        &self.bytes[..self.split_at()]
    }

    /// The validation part (the tail of the file).
    pub fn val_bytes(&self) -> &[u8] {
        &self.bytes[self.split_at()..]
    }

    /// Where validation starts: the last `floor(len * val_fraction)` bytes are validation.
    fn split_at(&self) -> usize {
        let len = self.bytes.len();
        len - val_len(len, self.val_fraction)
    }

    /// The fewest bytes a corpus needs so that both parts hold one window of `seq + 1`
    /// tokens under `val_fraction` (`usize::MAX` if the fraction is not in (0, 1)).
    pub fn min_len(seq: usize, val_fraction: f64) -> usize {
        let need = seq.saturating_add(1);
        let fits = |len: usize| {
            let v = val_len(len, val_fraction);
            v >= need && len - v >= need
        };
        if !(val_fraction > 0.0 && val_fraction < 1.0) {
            return usize::MAX;
        }
        // Lower bounds from each part (floor(len·f) ≤ len·f, and len − floor(len·f) <
        // len·(1−f) + 1), less a margin for float rounding; then a short walk to the answer.
        let bound = (need as f64 / val_fraction).max((need - 1) as f64 / (1.0 - val_fraction));
        let mut len = (bound.floor() as usize).saturating_sub(2);
        while !fits(len) && len < usize::MAX {
            len += 1;
        }
        len
    }

    /// Checks that both parts hold at least one window of `seq + 1` tokens.
    pub fn check_seq(&self, seq: usize) -> Result<(), DataError> {
        if seq == 0 {
            return Err(self.config_error("sequence length must be ≥ 1".to_string()));
        }
        let need = seq.saturating_add(1);
        if self.train_bytes().len() < need || self.val_bytes().len() < need {
            return Err(DataError::TooShort {
                file: self.name.clone(),
                len: self.len(),
                seq,
                min_len: TextCorpus::min_len(seq, self.val_fraction),
            });
        }
        Ok(())
    }

    /// A sampler of random training batches, `batch` windows of `seq + 1` tokens each.
    pub fn sampler(&self, batch: usize, seq: usize, seed: u64) -> Result<BatchSampler, DataError> {
        self.check_shape(batch, seq)?;
        let train_end = self.split_at();
        Ok(BatchSampler {
            bytes: Arc::clone(&self.bytes),
            train_end,
            batch,
            seq,
            rng: SplitMix64::new(seed),
            drawn: 0,
        })
    }

    /// A sampler that continues from a saved `SamplerState`: its next batch is the one the
    /// saved sampler would have drawn next. Fails if the state was saved with another batch
    /// shape, since the stream would silently differ.
    pub fn resume_sampler(&self, state: &SamplerState) -> Result<BatchSampler, DataError> {
        let mut s = self.sampler(state.batch, state.seq, 0)?;
        s.rng = SplitMix64::from_state(state.rng);
        s.drawn = state.drawn;
        Ok(s)
    }

    /// The fixed validation set: non-overlapping windows of `seq + 1` tokens taken in order
    /// from the start of the validation part, grouped `batch` per batch, at most
    /// `max_batches` batches. The same corpus always gives the same set, so validation losses
    /// are comparable across runs. The last batch has fewer rows when the windows run out
    /// (see `Batch::rows`); leftover bytes shorter than a window are unused.
    pub fn val_batches(
        &self,
        batch: usize,
        seq: usize,
        max_batches: usize,
    ) -> Result<Vec<Batch>, DataError> {
        self.check_shape(batch, seq)?;
        let window = seq + 1;
        let windows: Vec<&[u8]> = self
            .val_bytes()
            .chunks_exact(window)
            .take(max_batches.saturating_mul(batch))
            .collect();
        Ok(windows
            .chunks(batch)
            .map(|rows| Batch::from_windows(rows, seq))
            .collect())
    }

    fn check_shape(&self, batch: usize, seq: usize) -> Result<(), DataError> {
        if batch == 0 {
            return Err(self.config_error("batch size must be ≥ 1".to_string()));
        }
        self.check_seq(seq)
    }

    fn config_error(&self, message: String) -> DataError {
        DataError::Config {
            file: self.name.clone(),
            message,
        }
    }
}

fn val_len(len: usize, val_fraction: f64) -> usize {
    // `as` saturates; the min keeps rounding from claiming more than the whole corpus.
    ((len as f64 * val_fraction).floor() as usize).min(len)
}

/// `rows` token windows of length `seq` and their next-token targets, row-major (`rows × seq`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Input tokens: `rows * seq` ids.
    pub tokens: Vec<i32>,
    /// `targets[i]` is the token after `tokens[i]` (the inputs shifted left by one).
    pub targets: Vec<i32>,
    /// Number of windows; equals the batch size except maybe in the last validation batch.
    pub rows: usize,
    pub seq: usize,
}

impl Batch {
    fn from_windows(windows: &[&[u8]], seq: usize) -> Batch {
        let mut tokens = Vec::with_capacity(windows.len() * seq);
        let mut targets = Vec::with_capacity(windows.len() * seq);
        for w in windows {
            tokens.extend(w[..seq].iter().map(|&b| i32::from(b)));
            targets.extend(w[1..=seq].iter().map(|&b| i32::from(b)));
        }
        Batch {
            tokens,
            targets,
            rows: windows.len(),
            seq,
        }
    }
}

/// Everything needed to resume a `BatchSampler` bit-exactly; serialized into checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerState {
    pub rng: u64,
    pub drawn: u64,
    pub batch: usize,
    pub seq: usize,
}

/// Draws training batches: each row is a window of `seq + 1` tokens whose start is uniform
/// over the training part.
#[derive(Clone, Debug)]
pub struct BatchSampler {
    bytes: Arc<[u8]>,
    train_end: usize,
    batch: usize,
    seq: usize,
    rng: SplitMix64,
    drawn: u64,
}

impl BatchSampler {
    /// The next random batch of `batch` rows.
    pub fn next_batch(&mut self) -> Batch {
        let window = self.seq + 1;
        // `check_seq` guaranteed train_end ≥ window, so there is at least one start.
        let starts = (self.train_end - window + 1) as u64;
        let train = &self.bytes[..self.train_end];
        let windows: Vec<&[u8]> = (0..self.batch)
            .map(|_| {
                let start = self.rng.below(starts) as usize;
                &train[start..start + window]
            })
            .collect();
        self.drawn += 1;
        Batch::from_windows(&windows, self.seq)
    }

    /// How many batches this sampler (including before a resume) has drawn.
    pub fn drawn(&self) -> u64 {
        self.drawn
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn seq(&self) -> usize {
        self.seq
    }

    /// The state to store in a checkpoint; `TextCorpus::resume_sampler` restores it.
    pub fn state(&self) -> SamplerState {
        SamplerState {
            rng: self.rng.state(),
            drawn: self.drawn,
            batch: self.batch,
            seq: self.seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Vec<u8> {
        (0..n).map(|i| b"abcdefghij klmnop\n"[i % 18]).collect()
    }

    fn corpus(n: usize) -> TextCorpus {
        TextCorpus::from_bytes("mem.txt", text(n), 256).unwrap()
    }

    #[test]
    fn split_is_contiguous_tail() {
        let c = corpus(1000);
        assert_eq!(c.train_bytes().len(), 900);
        assert_eq!(c.val_bytes().len(), 100);
        assert_eq!([c.train_bytes(), c.val_bytes()].concat(), text(1000));
    }

    #[test]
    fn batches_are_shifted_windows_from_the_train_part() {
        let c = corpus(1000);
        let mut s = c.sampler(4, 16, 1).unwrap();
        let b = s.next_batch();
        assert_eq!((b.rows, b.seq), (4, 16));
        assert_eq!(b.tokens.len(), 64);
        assert_eq!(b.targets.len(), 64);
        for r in 0..4 {
            let row = &b.tokens[r * 16..(r + 1) * 16];
            let tgt = &b.targets[r * 16..(r + 1) * 16];
            assert_eq!(&row[1..], &tgt[..15]);
            let bytes: Vec<u8> = row.iter().map(|&t| t as u8).collect();
            let train = c.train_bytes();
            assert!(train.windows(16).any(|w| w == bytes.as_slice()));
        }
    }

    #[test]
    fn windows_never_reach_validation() {
        // Train part is all 'a', validation all 'b': any 'b' in a batch crossed the split.
        let mut bytes = vec![b'a'; 90];
        bytes.extend([b'b'; 10]);
        let c = TextCorpus::from_bytes("ab", bytes, 256).unwrap();
        let mut s = c.sampler(8, 9, 5).unwrap();
        for _ in 0..200 {
            let b = s.next_batch();
            assert!(b.tokens.iter().chain(&b.targets).all(|&t| t == 'a' as i32));
        }
    }

    #[test]
    fn sampling_is_deterministic() {
        let c = corpus(2000);
        let mut a = c.sampler(3, 8, 42).unwrap();
        let mut b = c.sampler(3, 8, 42).unwrap();
        let mut other = c.sampler(3, 8, 43).unwrap();
        let xs: Vec<Batch> = (0..5).map(|_| a.next_batch()).collect();
        let ys: Vec<Batch> = (0..5).map(|_| b.next_batch()).collect();
        let zs: Vec<Batch> = (0..5).map(|_| other.next_batch()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn resume_continues_the_stream() {
        let c = corpus(2000);
        let mut straight = c.sampler(2, 8, 9).unwrap();
        let ten: Vec<Batch> = (0..10).map(|_| straight.next_batch()).collect();

        let mut first = c.sampler(2, 8, 9).unwrap();
        let mut got: Vec<Batch> = (0..5).map(|_| first.next_batch()).collect();
        let state = first.state();
        let json = serde_json::to_string(&state).unwrap();
        let back: SamplerState = serde_json::from_str(&json).unwrap();
        let mut resumed = c.resume_sampler(&back).unwrap();
        assert_eq!(resumed.drawn(), 5);
        got.extend((0..5).map(|_| resumed.next_batch()));
        assert_eq!(got, ten);
        assert_eq!(resumed.drawn(), 10);
    }

    #[test]
    fn validation_set_is_fixed_and_ordered() {
        let c = corpus(1000); // 100 validation bytes
        let v = c.val_batches(2, 9, 100).unwrap();
        // 100 / 10 = 10 windows → 5 batches of 2.
        assert_eq!(v.len(), 5);
        let val = c.val_bytes();
        assert_eq!(
            v[0].tokens[..9],
            val[..9].iter().map(|&b| i32::from(b)).collect::<Vec<_>>()[..]
        );
        assert_eq!(v[0].tokens[9], i32::from(val[10]));
        assert_eq!(v, c.val_batches(2, 9, 100).unwrap());
        assert_eq!(c.val_batches(2, 9, 2).unwrap().len(), 2);
        let odd = c.val_batches(3, 9, 100).unwrap();
        assert_eq!(odd.len(), 4);
        assert_eq!(odd[3].rows, 1);
        assert_eq!(odd[3].tokens.len(), 9);
    }

    #[test]
    fn errors_name_the_file_and_the_fix() {
        let e = TextCorpus::from_file("/nonexistent/bfly/x.txt", 256).unwrap_err();
        assert!(matches!(e, DataError::Unreadable { .. }));
        let m = e.to_string();
        assert!(
            m.contains("/nonexistent/bfly/x.txt") && m.contains("does not exist"),
            "{m}"
        );

        let e = TextCorpus::from_bytes("e.txt", vec![], 256).unwrap_err();
        assert!(matches!(e, DataError::Empty { .. }));
        assert!(e.to_string().contains("e.txt"));

        let e = TextCorpus::from_bytes("bin", b"ab\0cd".to_vec(), 256).unwrap_err();
        assert!(matches!(e, DataError::NulByte { offset: 2, .. }));
        assert!(e.to_string().contains("offset 2"));

        let e = TextCorpus::from_bytes("latin1", b"caf\xe9 ok".to_vec(), 256).unwrap_err();
        assert!(matches!(e, DataError::NotUtf8 { offset: 3, .. }));
        assert!(e.to_string().contains("offset 3") && e.to_string().contains("UTF-8"));

        let e = TextCorpus::from_bytes("v", b"abz".to_vec(), 122).unwrap_err();
        assert!(matches!(
            e,
            DataError::OutOfVocab {
                offset: 2,
                byte: b'z',
                vocab: 122,
                ..
            }
        ));

        let c = corpus(50);
        let e = c.check_seq(16).unwrap_err();
        let DataError::TooShort { min_len, .. } = e else {
            panic!("{e}")
        };
        assert!(e.to_string().contains(&format!("at least {min_len} bytes")));
        // The minimum really is the minimum.
        assert!(corpus(min_len).check_seq(16).is_ok());
        assert!(corpus(min_len - 1).check_seq(16).is_err());

        assert!(c.sampler(0, 4, 0).is_err());
        assert!(c.sampler(1, 0, 0).is_err());
        assert!(corpus(100).with_val_fraction(0.0).is_err());
        assert!(corpus(100).with_val_fraction(f64::NAN).is_err());
    }

    #[test]
    fn min_len_is_exact_for_many_shapes() {
        for seq in [1, 2, 7, 64, 255] {
            for f in [0.05, 0.1, 0.3, 0.5, 0.9] {
                let min = TextCorpus::min_len(seq, f);
                let ok = |n: usize| {
                    TextCorpus::from_bytes("m", text(n), 256)
                        .unwrap()
                        .with_val_fraction(f)
                        .unwrap()
                        .check_seq(seq)
                        .is_ok()
                };
                assert!(ok(min), "seq {seq} f {f} min {min}");
                assert!(!ok(min - 1), "seq {seq} f {f} min {min}");
            }
        }
    }

    #[test]
    fn resume_with_another_shape_is_rejected() {
        let c = corpus(500);
        let mut s = c.sampler(2, 8, 1).unwrap();
        s.next_batch();
        let mut st = s.state();
        st.seq = 10_000;
        assert!(matches!(
            c.resume_sampler(&st),
            Err(DataError::TooShort { .. })
        ));
    }
}
