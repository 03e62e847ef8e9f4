//! The `.bfa` format end to end: a round trip, then one test per way a file can be damaged,
//! each asserting the specific error (variant and message) the user would see.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use bfly_grammar::SourceFile;
use bfly_ir::{DType, Graph, print_graph};
use bfly_runtime::artifact::format::keys;
use bfly_runtime::artifact::{
    Artifact, ArtifactError, ArtifactMode, ArtifactParts, HostTensor, TensorProblem,
    reference_weights_to_host, write_artifact,
};
use bfly_targets::reference::init_weights;
use serde_json::Value;

/// Params of every stored dtype; `q.weight`, `q.scale` and `ids` are unused by the body, which
/// the verifier allows.
const SMALL_IR: &str = "\
graph @small(%tokens: i32[T]) -> (%logits: f32[T, 8]) where T <= 4 {
  param @embed.weight: f32[8, 4] init normal(0.02) frozen
  param @norm.gain: f16[4] init ones frozen
  param @q.weight: i8[4, 4] init zeros frozen
  param @q.scale: f32[4] init ones frozen
  param @ids: i32[3] init zeros frozen
  %0 = embed %tokens, @embed.weight : f32[T, 4]
  %1 = cast @norm.gain {to = f32} : f32[4]
  %2 = rmsnorm %0, %1 {eps = 1e-5} : f32[T, 4]
  %3 = matmul %2, @embed.weight : f32[T, 8]
  return %3
}
";

fn small_graph() -> Graph {
    let file = SourceFile::new("small.bfir", SMALL_IR);
    match bfly_ir::parse::parse_graph(&file) {
        Ok(g) => g,
        Err(d) => panic!("{}", d[0].short(&file)),
    }
}

/// A fresh directory for one test (tests run in parallel; the process id keeps the two QEMU
/// legs of scripts/test-all.sh, which run the same binaries at once, apart).
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("artifact-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn small_tensors(g: &Graph) -> BTreeMap<String, HostTensor> {
    let w = init_weights(g, 7).expect("every param has an init");
    reference_weights_to_host(g, &w).expect("weights convert")
}

/// Writes the small artifact into a scratch dir and returns its path.
fn small_artifact(test: &str) -> PathBuf {
    let path = scratch(test).join("small.bfa");
    let g = small_graph();
    let tensors = small_tensors(&g);
    let parts = ArtifactParts {
        graph: &g,
        mode: ArtifactMode::Infer,
        spec_source: "",
        spec_name: "small.bfir",
        vocab: 8,
        tensors: &tensors,
        eval_graph: None,
    };
    write_artifact(&path, &parts).expect("write the artifact");
    path
}

fn open_err(path: &Path) -> ArtifactError {
    match Artifact::open(path) {
        Ok(_) => panic!("{} opened, but it is damaged", path.display()),
        Err(e) => e,
    }
}

/// Splits a safetensors file into its header JSON and its data section.
fn split(bytes: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + n]).expect("header JSON");
    (header, bytes[8 + n..].to_vec())
}

/// Reassembles a file from a header (padded to 8 bytes like safetensors) and data.
fn join(header: &Value, data: &[u8]) -> Vec<u8> {
    let mut h = serde_json::to_vec(header).expect("serialize header");
    h.resize(h.len().next_multiple_of(8), b' ');
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

/// Rewrites the artifact at `path` with its header edited by `edit`.
fn edit_header(path: &Path, edit: impl FnOnce(&mut Value)) {
    let (mut header, data) = split(&fs::read(path).expect("read artifact"));
    edit(&mut header);
    fs::write(path, join(&header, &data)).expect("write damaged artifact");
}

fn set_meta(path: &Path, key: &str, value: &str) {
    edit_header(path, |h| {
        h["__metadata__"][key] = Value::String(value.to_string());
    });
}

fn problems(e: ArtifactError) -> Vec<TensorProblem> {
    match e {
        ArtifactError::TensorMismatch { problems, .. } => problems,
        other => panic!("expected a tensor mismatch, got: {other}"),
    }
}

#[test]
fn round_trip_keeps_graph_weights_and_metadata() {
    let path = small_artifact("round-trip");
    let g = small_graph();
    let tensors = small_tensors(&g);
    let a = Artifact::open(&path).expect("open");
    assert_eq!(print_graph(a.graph()), print_graph(&g));
    assert_eq!(a.mode(), ArtifactMode::Infer);
    assert_eq!(a.vocab(), 8);
    assert_eq!(a.spec_source(), "");
    assert_eq!(a.spec_name(), "small.bfir");
    assert!(a.compiler().starts_with("bfly "), "{}", a.compiler());
    let names: Vec<&str> = a.tensor_names().collect();
    assert_eq!(
        names,
        ["embed.weight", "ids", "norm.gain", "q.scale", "q.weight"]
    );
    for (name, t) in &tensors {
        let v = a.tensor(name).expect("tensor present");
        assert_eq!(v, t.view(), "{name}");
    }
    assert_eq!(a.tensor("norm.gain").map(|v| v.dtype), Some(DType::F16));
    assert_eq!(a.tensor("nope"), None);
    assert_eq!(
        a.file_bytes().len() as u64,
        fs::metadata(&path).expect("stat").len()
    );
    // f32, f16 and the ints are exact in f64: the reference weights come back unchanged.
    assert_eq!(a.to_reference_weights(), init_weights(&g, 7).expect("init"));
}

#[test]
fn rewriting_an_open_artifact_leaves_the_open_one_intact() {
    let path = small_artifact("rewrite-open");
    let a = Artifact::open(&path).expect("open");
    let before = a.tensor("embed.weight").expect("present").bytes.to_vec();
    let g = small_graph();
    let mut tensors = small_tensors(&g);
    tensors.insert(
        "embed.weight".into(),
        HostTensor::from_f32(vec![8, 4], &[0.5; 32]).expect("sizes"),
    );
    let parts = ArtifactParts {
        graph: &g,
        mode: ArtifactMode::Train,
        spec_source: "model {}",
        spec_name: "x.bfly",
        vocab: 8,
        tensors: &tensors,
        eval_graph: None,
    };
    write_artifact(&path, &parts).expect("rewrite");
    assert_eq!(a.tensor("embed.weight").expect("present").bytes, before);
    let b = Artifact::open(&path).expect("open the new one");
    assert_eq!(b.mode(), ArtifactMode::Train);
    assert_eq!(b.spec_source(), "model {}");
    assert_eq!(
        b.tensor("embed.weight").expect("present").to_f32_vec(),
        [0.5; 32]
    );
}

#[test]
fn writer_refuses_tensors_that_do_not_match_the_graph() {
    let path = scratch("writer-refuses").join("bad.bfa");
    let g = small_graph();
    let mut tensors = small_tensors(&g);
    tensors.remove("ids");
    tensors.insert(
        "q.scale".into(),
        HostTensor {
            dtype: DType::F32,
            dims: vec![4],
            bytes: vec![0; 3],
        },
    );
    let parts = ArtifactParts {
        graph: &g,
        mode: ArtifactMode::Infer,
        spec_source: "",
        spec_name: "small.bfir",
        vocab: 8,
        tensors: &tensors,
        eval_graph: None,
    };
    let e = write_artifact(&path, &parts).expect_err("inconsistent tensors");
    let msg = e.to_string();
    let p = problems(e);
    assert_eq!(p.len(), 2, "{msg}");
    assert!(
        msg.contains("missing tensor `ids` (param @ids: i32[3])"),
        "{msg}"
    );
    assert!(
        msg.contains("tensor `q.scale`: 3 bytes, its dtype and shape need 16"),
        "{msg}"
    );
    assert!(!path.exists(), "nothing is written on error");
}

#[test]
fn missing_file() {
    let path = scratch("missing").join("nope.bfa");
    let e = open_err(&path);
    assert!(
        matches!(&e, ArtifactError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{e}"
    );
    let msg = e.to_string();
    assert!(msg.starts_with("cannot read artifact "), "{msg}");
    assert!(msg.contains("nope.bfa"), "{msg}");
}

#[test]
fn directory() {
    let dir = scratch("directory");
    let e = open_err(&dir);
    assert!(matches!(e, ArtifactError::NotAFile { .. }), "{e}");
    assert!(e.to_string().contains("is not a file"), "{e}");
}

#[test]
fn truncated_file_at_every_kind_of_boundary() {
    let path = small_artifact("truncated");
    let full = fs::read(&path).expect("read");
    let header_end = 8 + u64::from_le_bytes(full[..8].try_into().expect("8 bytes")) as usize;
    let cut = path.with_file_name("cut.bfa");
    for len in [
        0,
        4,
        8,
        12,
        header_end / 2,
        header_end - 1,
        header_end,
        header_end + 1,
        full.len() - 1,
    ] {
        fs::write(&cut, &full[..len]).expect("write cut file");
        let e = open_err(&cut);
        assert!(
            matches!(e, ArtifactError::Malformed { .. }),
            "cut at {len}: {e}"
        );
        assert!(
            e.to_string()
                .contains("truncated or not a safetensors file"),
            "cut at {len}: {e}"
        );
    }
}

#[test]
fn flipped_byte_in_tensor_data_fails_its_checksum() {
    let path = small_artifact("flip-data");
    let offset = {
        let a = Artifact::open(&path).expect("open");
        let v = a.tensor("q.scale").expect("present");
        v.bytes.as_ptr() as usize - a.file_bytes().as_ptr() as usize
    };
    let mut bytes = fs::read(&path).expect("read");
    bytes[offset + 1] ^= 0x10;
    fs::write(&path, bytes).expect("write");
    let e = open_err(&path);
    match &e {
        ArtifactError::ChecksumMismatch {
            tensor,
            stored,
            computed,
            others,
            ..
        } => {
            assert_eq!(tensor, "q.scale");
            assert_ne!(stored, computed);
            assert_eq!(*others, 0);
        }
        other => panic!("expected a checksum mismatch, got: {other}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("tensor `q.scale`: checksum mismatch (stored "),
        "{msg}"
    );
    assert!(
        msg.ends_with("the file is corrupt; recompile or re-download it"),
        "{msg}"
    );
}

#[test]
fn flipped_byte_in_header_json() {
    let path = small_artifact("flip-header");
    let mut bytes = fs::read(&path).expect("read");
    assert_eq!(bytes[8], b'{');
    bytes[8] = b'[';
    fs::write(&path, &bytes).expect("write");
    let e = open_err(&path);
    assert!(matches!(e, ArtifactError::Malformed { .. }), "{e}");
    assert!(e.to_string().contains("invalid JSON in header"), "{e}");
}

#[test]
fn non_utf8_header() {
    let path = small_artifact("non-utf8");
    let mut bytes = fs::read(&path).expect("read");
    // Inside the graph text: `graph @small` → `graph @\xffmall`.
    let at = bytes
        .windows(6)
        .position(|w| w == b"@small")
        .expect("graph name in header");
    bytes[at + 1] = 0xFF;
    fs::write(&path, &bytes).expect("write");
    let e = open_err(&path);
    assert!(matches!(e, ArtifactError::Malformed { .. }), "{e}");
    assert!(e.to_string().contains("invalid UTF-8 in header"), "{e}");
}

#[test]
fn wrong_version() {
    let path = small_artifact("version");
    set_meta(&path, keys::FORMAT_VERSION, "7");
    let e = open_err(&path);
    assert!(
        matches!(e, ArtifactError::UnsupportedVersion { found: 7, .. }),
        "{e}"
    );
    assert!(
        e.to_string().ends_with(
            "artifact format version 7, this bfly reads version 1; recompile with `bfly compile`"
        ),
        "{e}"
    );
}

#[test]
fn version_that_is_not_a_number() {
    let path = small_artifact("version-nan");
    set_meta(&path, keys::FORMAT_VERSION, "1.0");
    let e = open_err(&path);
    assert!(matches!(e, ArtifactError::InvalidVersion { .. }), "{e}");
    assert!(
        e.to_string().contains("\"1.0\", not a version number"),
        "{e}"
    );
}

#[test]
fn wrong_format_name() {
    let path = small_artifact("format");
    set_meta(&path, keys::FORMAT, "gguf");
    let e = open_err(&path);
    assert!(
        matches!(&e, ArtifactError::NotBfly { found: Some(f), .. } if f == "gguf"),
        "{e}"
    );
    assert!(e.to_string().contains("not a bfly artifact"), "{e}");
}

#[test]
fn plain_safetensors_file_is_not_an_artifact() {
    let path = scratch("plain").join("weights.safetensors");
    let t = HostTensor::from_f32(vec![2], &[1.0, 2.0]).expect("sizes");
    let bytes = safetensors::serialize([("w", &t)], None).expect("serialize");
    fs::write(&path, bytes).expect("write");
    let e = open_err(&path);
    assert!(
        matches!(e, ArtifactError::NotBfly { found: None, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("bfly compile"), "{e}");
}

#[test]
fn missing_key() {
    for key in [keys::FORMAT_VERSION, keys::TOKENIZER, keys::COMPILER] {
        let path = small_artifact("missing-key");
        edit_header(&path, |h| {
            h["__metadata__"]
                .as_object_mut()
                .expect("metadata object")
                .remove(key);
        });
        let e = open_err(&path);
        assert!(
            matches!(e, ArtifactError::MissingKey { key: k, .. } if k == key),
            "{key}: {e}"
        );
        assert!(
            e.to_string()
                .contains(&format!("metadata key `{key}` is missing")),
            "{e}"
        );
    }
}

#[test]
fn invalid_mode() {
    let path = small_artifact("mode");
    set_meta(&path, keys::MODE, "serve");
    let e = open_err(&path);
    assert!(
        matches!(
            e,
            ArtifactError::InvalidMetadata {
                key: keys::MODE,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("\"serve\" is neither"), "{e}");
}

#[test]
fn bad_graph_text() {
    let path = small_artifact("bad-ir");
    let bad = SMALL_IR.replace("rmsnorm", "rmsnrom");
    set_meta(&path, keys::GRAPH, &bad);
    let e = open_err(&path);
    let ArtifactError::BadGraph { message, .. } = &e else {
        panic!("expected a bad graph, got: {e}");
    };
    assert!(message.starts_with("bfly.graph:9:"), "{message}");
    assert!(message.contains("rmsnrom"), "{message}");
    assert!(
        e.to_string()
            .contains("the graph in `bfly.graph` is invalid"),
        "{e}"
    );
}

#[test]
fn graph_that_fails_verification() {
    let path = small_artifact("unverified");
    // Parses, but the declared result type is wrong.
    let bad = SMALL_IR.replace(
        "%3 = matmul %2, @embed.weight : f32[T, 8]",
        "%3 = matmul %2, @embed.weight : f32[T, 9]",
    );
    set_meta(&path, keys::GRAPH, &bad);
    let e = open_err(&path);
    assert!(matches!(e, ArtifactError::BadGraph { .. }), "{e}");
}

#[test]
fn bad_tokenizer() {
    for (json, needle) in [
        (r#"{"kind":"bpe","vocab":8}"#, "unknown variant `bpe`"),
        (r#"{"kind":"byte","vocab":0}"#, "the vocabulary is empty"),
        (
            r#"{"kind":"byte","vocab":9}"#,
            "vocab 9, but the graph's logits have 8 columns",
        ),
        ("not json", "expected"),
    ] {
        let path = small_artifact("tokenizer");
        set_meta(&path, keys::TOKENIZER, json);
        let e = open_err(&path);
        assert!(matches!(e, ArtifactError::BadTokenizer { .. }), "{e}");
        assert!(e.to_string().contains(needle), "{json}: {e}");
    }
}

#[test]
fn bad_checksum_metadata() {
    let path = small_artifact("checksums");
    set_meta(&path, keys::CHECKSUMS, r#"{"ids":"xyz"}"#);
    let e = open_err(&path);
    assert!(
        matches!(
            e,
            ArtifactError::InvalidMetadata {
                key: keys::CHECKSUMS,
                ..
            }
        ),
        "{e}"
    );
    set_meta(&path, keys::CHECKSUMS, "[1, 2]");
    let e = open_err(&path);
    assert!(
        e.to_string().contains("not a JSON object of strings"),
        "{e}"
    );
}

#[test]
fn tensor_with_wrong_shape() {
    let path = small_artifact("shape");
    // Same byte count, so safetensors accepts it; only the param check can tell.
    edit_header(&path, |h| {
        h["embed.weight"]["shape"] = serde_json::json!([4, 8])
    });
    let e = open_err(&path);
    let msg = e.to_string();
    assert_eq!(
        problems(e),
        [TensorProblem::WrongShape {
            name: "embed.weight".into(),
            expected: small_graph()
                .params()
                .find(|(_, p, _)| p.name == "embed.weight")
                .map(|(_, _, t)| t.clone())
                .expect("param"),
            found: vec![4, 8],
        }]
    );
    assert!(
        msg.contains("tensor `embed.weight`: shape [4, 8], but param @embed.weight is f32[8, 4]"),
        "{msg}"
    );
}

/// A shape whose byte size disagrees with the tensor's data offsets: the error names the
/// tensor and both sizes (safetensors alone would only say "invalid info").
#[test]
fn tensor_whose_size_disagrees_with_its_offsets() {
    let path = small_artifact("size");
    edit_header(&path, |h| {
        h["embed.weight"]["shape"] = serde_json::json!([8, 5])
    });
    let e = open_err(&path);
    assert!(matches!(e, ArtifactError::Malformed { .. }), "{e}");
    assert!(
        e.to_string().contains(
            "tensor `embed.weight`: size mismatch: shape [8, 5] of F32 needs 160 bytes, its data offsets span 128"
        ),
        "{e}"
    );
}

/// safetensors metadata values are strings: a number where the mode should be is refused as
/// a malformed file, not misread.
#[test]
fn metadata_that_is_not_a_string_map_is_malformed() {
    let path = small_artifact("meta-type");
    edit_header(&path, |h| {
        h["__metadata__"][keys::MODE] = serde_json::json!(3)
    });
    let e = open_err(&path);
    assert!(matches!(e, ArtifactError::Malformed { .. }), "{e}");
}

#[test]
fn missing_unexpected_and_mistyped_tensors_are_listed_together() {
    let path = small_artifact("listed");
    edit_header(&path, |h| {
        let obj = h.as_object_mut().expect("header object");
        let t = obj.remove("norm.gain").expect("tensor");
        obj.insert("norm.gian".into(), t);
        // i32[3] → f32[3]: same size, wrong dtype; u32 is a dtype bfly does not store.
        obj["ids"]["dtype"] = Value::String("F32".into());
        obj["q.scale"]["dtype"] = Value::String("U32".into());
    });
    let e = open_err(&path);
    let msg = e.to_string();
    let p = problems(e);
    assert_eq!(p.len(), 4, "{msg}");
    for needle in [
        "4 problem(s)",
        "missing tensor `norm.gain` (param @norm.gain: f16[4])",
        "unexpected tensor `norm.gian`: the graph has no such param (did you mean `norm.gain`?)",
        "tensor `ids`: dtype f32, but param @ids is i32[3]",
        "tensor `q.scale`: dtype U32 is not one bfly stores",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in:\n{msg}");
    }
}

/// Offsets near `usize::MAX` must be an error, not an arithmetic overflow.
#[test]
fn huge_offsets_are_an_error_not_a_panic() {
    let path = scratch("huge").join("huge.bfa");
    let step: u64 = 1 << 60;
    let mut header = serde_json::Map::new();
    for i in 0..16u64 {
        let end = if i == 15 { u64::MAX } else { (i + 1) * step };
        header.insert(
            format!("t{i}"),
            serde_json::json!({"dtype": "I8", "shape": [end - i * step], "data_offsets": [i * step, end]}),
        );
    }
    fs::write(&path, join(&Value::Object(header), &[])).expect("write");
    let e = open_err(&path);
    assert!(matches!(e, ArtifactError::Malformed { .. }), "{e}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Any single damaged byte or cut either opens or fails with an error; it never panics.
    #[test]
    fn damage_never_panics(at in 0.0f64..1.0, value in 0u8..=255, cut in proptest::bool::ANY) {
        let path = small_artifact("fuzz");
        let mut bytes = fs::read(&path).expect("read");
        let i = ((bytes.len() as f64) * at) as usize;
        if cut {
            bytes.truncate(i);
        } else if let Some(b) = bytes.get_mut(i) {
            *b = value;
        }
        fs::write(&path, &bytes).expect("write");
        let _ = Artifact::open(&path);
    }
}
