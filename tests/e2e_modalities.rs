//! End-to-end tests of the `harness` binary on small audio and text datasets that each test
//! writes itself, fully offline: WAV folders fetched through `local` manifest sources (a source
//! laid out by class folder, a target laid out by speaker folder with whole speakers held out),
//! and Orange `.tab` text files.

use std::f32::consts::PI;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{Project, image_manifest, sha256_hex, stderr};

/// 16-bit mono PCM WAV bytes.
fn wav(samples: &[f32], rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes());
    }
    out
}

/// A tone of `hz` with a little deterministic wobble from `seed`, 0.25 s at 16 kHz.
fn tone(hz: f32, seed: u32) -> Vec<f32> {
    let detune = 1.0 + ((seed * 7919) % 13) as f32 / 100.0;
    let amplitude = 0.2 + ((seed * 104_729) % 7) as f32 / 20.0;
    (0..4000)
        .map(|i| {
            let t = i as f32 / 16000.0;
            let noise = (((i as u32 ^ seed).wrapping_mul(2_654_435_761) >> 16) % 200) as f32
                / 2000.0
                - 0.05;
            amplitude * (2.0 * PI * hz * detune * t).sin() + noise
        })
        .collect()
}

const CLASSES: [(&str, f32); 3] = [("low", 300.0), ("mid", 900.0), ("high", 2500.0)];
const SOURCE_CLASSES: [(&str, f32); 3] = [("hum", 200.0), ("whine", 1500.0), ("hiss", 3500.0)];

const AUDIO: &str = r#"
[audio]
sample_rate = 8000
seconds = 0.25
n_fft = 256
hop = 100
n_mels = 16
fmin = 0.0
fmax = 4000.0
top_db = 80.0
"#;

fn target_manifest(root_sha: Option<&str>) -> String {
    let pin = root_sha
        .map(|s| format!("[files.root]\nsha256 = \"{s}\"\n"))
        .unwrap_or_default();
    format!(
        r#"id = "speakers"
name = "speakers"
modality = "audio"
licence = "CC0"
citation = "made by the test"
format = "audio-folder"
classes = ["low", "mid", "high"]
{AUDIO}layout = "group/class"

{pin}
[split]
method = "groups"
test_groups = ["s10", "s11"]
train = 30
test = 6

[[source]]
kind = "local"
path = "speakers"
"#
    )
}

fn source_manifest() -> String {
    format!(
        r#"id = "sounds"
name = "sounds"
modality = "audio"
licence = "CC0"
citation = "made by the test"
format = "audio-folder"
classes = ["hum", "whine", "hiss"]
{AUDIO}layout = "class/clip"

[split]
method = "stratified"
test_per_class = 10
seed = 1
train = 90
test = 30

[[source]]
kind = "local"
path = "sounds"
"#
    )
}

const EXPERIMENT: &str = r#"
[matrix]
targets = ["speakers"]
sources = ["scratch", "sounds"]
n_train = [6, 30]
options = [1, 2]
seeds = [0]
floor = false

[model]
frames_per_token = 3
d_model = 16
n_layers = 1
n_heads = 2
d_ff = 32

[pretrain]
epochs = 2
batch_size = 16
learning_rate = 3e-3

[finetune]
batch_size = 8
epochs = 5
min_steps = 20
evaluations = 4
patience = 4
"#;

impl Project {
    fn new(pin_target: bool) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("data-manifests");
        for (speaker, seed) in (0..12).map(|s| (format!("s{s}"), s as u32)) {
            let folder = m.join("speakers").join(&speaker);
            fs::create_dir_all(&folder).unwrap();
            for (class, hz) in CLASSES {
                let samples = match (speaker.as_str(), class) {
                    // The documented rule: silence and a 10-sample clip are padded, not refused.
                    ("s3", "low") => vec![0.0; 4000],
                    ("s4", "mid") => tone(hz, seed)[..10].to_vec(),
                    _ => tone(hz, seed),
                };
                fs::write(folder.join(format!("{class}.wav")), wav(&samples, 16000)).unwrap();
            }
            fs::write(folder.join("notes.txt"), "not audio, skipped").unwrap();
        }
        for (class, hz) in SOURCE_CLASSES {
            let folder = m.join("sounds").join(class);
            fs::create_dir_all(&folder).unwrap();
            for k in 0..40 {
                fs::write(
                    folder.join(format!("{k:02}.wav")),
                    wav(&tone(hz, 100 + k), 16000),
                )
                .unwrap();
            }
        }
        let p = Project { dir };
        let sha = pin_target.then(|| p.tree_sha(&m.join("speakers")));
        fs::write(m.join("speakers.toml"), target_manifest(sha.as_deref())).unwrap();
        fs::write(m.join("sounds.toml"), source_manifest()).unwrap();
        fs::create_dir_all(p.path("experiments")).unwrap();
        fs::write(p.path("experiments/audio.toml"), EXPERIMENT).unwrap();
        p
    }

    /// The folder hash the way the manifest documents it, computed with `sha256sum`.
    fn tree_sha(&self, root: &Path) -> String {
        let mut files = Vec::new();
        collect(root, root, &mut files);
        files.sort();
        let mut listing = Vec::new();
        for (rel, path) in files {
            let out = Command::new("sha256sum").arg(&path).output().unwrap();
            let hex = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .next()
                .unwrap()
                .to_string();
            listing.extend_from_slice(rel.as_bytes());
            listing.push(0);
            listing.extend_from_slice(hex.as_bytes());
            listing.push(b'\n');
        }
        let tmp = self.path("listing");
        fs::write(&tmp, listing).unwrap();
        let out = Command::new("sha256sum").arg(&tmp).output().unwrap();
        fs::remove_file(tmp).unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(root, &path, out);
        } else {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push((rel, path));
        }
    }
}

#[test]
fn an_audio_matrix_runs_through_every_stage_and_resumes() {
    let p = Project::new(true);
    let out = p.harness(&["run", "experiments/audio.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("30 training-pool + 6 test examples"),
        "silent and 10-sample clips are kept by the length rule; the notes are skipped: {}",
        stderr(&out)
    );
    let rows = harness_results::ResultStore::open(&p.path("results"), "audio")
        .rows()
        .unwrap();
    assert_eq!(rows.len(), 2 * 2 * 2);
    assert!(rows.iter().all(|r| r.status == "ok"), "{rows:?}");
    assert!(
        rows.iter()
            .filter(|r| r.source == "sounds")
            .all(|r| r.relation == "matched" && r.checkpoint_sha256.is_some())
    );
    assert!(p.path("reports/audio/report.md").is_file());
    assert!(p.path("reports/audio/accuracy-speakers.svg").is_file());
    // The same source and option see the same subset: every arm of a seed pairs up.
    let again = p.harness(&["run", "experiments/audio.toml"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("8 finished, 0 to run"),
        "{}",
        stderr(&again)
    );
}

/// The small CREPE of harness-model's fixtures (torchcrepe's module with narrower layers, in
/// the published file's format) declared as an audio network in the user's folder.
fn small_crepe_manifest(sha: &str) -> String {
    format!(
        r#"kind = "network"
id = "small-crepe"
name = "Small CREPE"
modality = "audio"
licence = "MIT"
citation = "test"

[architecture]
family = "crepe"
channels = [8, 4, 4, 4, 4, 6]
classes = 360

[trained_on]
dataset = "random weights"
examples = 0
classes = 360
citation = "none"

[audio]
sample_rate = 16000
window = 1024

[weights]
format = "pytorch"
sha256 = "{sha}"

[[source]]
kind = "local"
path = "models"
files = {{ weights = "small.pth" }}
"#
    )
}

#[test]
fn an_audio_network_hears_waveforms_beside_its_scratch_twin() {
    let p = Project::new(false);
    let weights = fs::read(
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap())
            .join("../harness-model/tests/fixtures/crepe/small.pth"),
    )
    .unwrap();
    fs::create_dir_all(p.path("data-manifests/models")).unwrap();
    fs::write(p.path("data-manifests/models/small.pth"), &weights).unwrap();
    let sha = common::sha256_hex(&weights);
    fs::write(
        p.path("data-manifests/small-crepe.toml"),
        small_crepe_manifest(&sha),
    )
    .unwrap();
    // The target's clips (0.25 s, 4,000 samples at 16 kHz): two frames 1,600 samples apart.
    let experiment = EXPERIMENT
        .replace(
            r#"sources = ["scratch", "sounds"]"#,
            r#"sources = ["scratch", "small-crepe"]"#,
        )
        .replace("n_train = [6, 30]", "n_train = [30]")
        + "\n[networks]\nhop = 1600\n\n[networks.finetune]\nepochs = 2\nmin_steps = 4\n"
        + "\n[[hypothesis]]\nname = \"crepe-helps\"\nclaim = \"the small CREPE beats its twin\"\n"
        + "a = \"matched\"\nb = \"scratch\"\nexpect = \"greater\"\narchitectures = [\"crepe(custom)\"]\n";
    fs::write(p.path("experiments/crepe.toml"), experiment).unwrap();
    let out = p.harness(&["run", "experiments/crepe.toml", "--jobs", "1"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            "clips as 16000 Hz waveforms for crepe(custom) (frames of 1024 samples every 1600)"
        ),
        "{err}"
    );
    let rows = harness_results::ResultStore::open(&p.path("results"), "crepe")
        .rows()
        .unwrap();
    // 3 arms (Transformer scratch, small-crepe, its scratch twin) × 2 options.
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r.status == "ok"), "{rows:?}");
    let crepe: Vec<_> = rows
        .iter()
        .filter(|r| r.architecture.as_deref() == Some("crepe(custom)"))
        .collect();
    assert_eq!(crepe.len(), 4);
    for r in &crepe {
        assert_eq!(
            r.relation,
            if r.source == "scratch" {
                "none"
            } else {
                "matched"
            }
        );
        assert_eq!(
            r.checkpoint_sha256.as_deref() == Some(sha.as_str()),
            r.source == "small-crepe"
        );
        assert_eq!(r.epochs, 2, "[networks.finetune] applies");
    }
    let report = fs::read_to_string(p.path("reports/crepe/report.md")).unwrap();
    assert!(
        report.contains("small-crepe − scratch (crepe(custom))"),
        "{report}"
    );
}

#[test]
fn a_changed_clip_fails_the_folder_checksum() {
    let p = Project::new(true);
    let clip = p.path("data-manifests/speakers/s1/low.wav");
    let mut bytes = fs::read(&clip).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&clip, bytes).unwrap();
    let out = p.harness(&["fetch", "speakers"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("checksum mismatch for the `root` folder") && err.contains("speakers.toml:"),
        "{err}"
    );
}

#[test]
fn a_truncated_clip_is_an_error_naming_the_file() {
    let p = Project::new(false);
    let clip = p.path("data-manifests/speakers/s7/high.wav");
    let bytes = fs::read(&clip).unwrap();
    fs::write(&clip, &bytes[..30]).unwrap();
    let out = p.harness(&["fetch", "speakers"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("s7/high.wav"),
        "the error names the file: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn an_audio_experiment_without_frames_per_token_is_refused_with_help() {
    let p = Project::new(true);
    let text = EXPERIMENT.replace("frames_per_token = 3\n", "");
    fs::write(p.path("experiments/audio.toml"), text).unwrap();
    let out = p.harness(&["plan", "experiments/audio.toml"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("frames_per_token") && err.contains("audio.toml:"),
        "{err}"
    );
    let text = EXPERIMENT.replace("frames_per_token = 3", "frames_per_token = 4");
    fs::write(p.path("experiments/audio.toml"), text).unwrap();
    let err = stderr(&p.harness(&["plan", "experiments/audio.toml"]));
    assert!(
        err.contains("does not divide the 21 log-mel frames"),
        "{err}"
    );
}

/// A text dataset in Orange's tab format, fetched from a local folder.
fn text_project(train: &[u8]) -> (tempfile::TempDir, Output) {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("data-manifests");
    fs::create_dir_all(&m).unwrap();
    fs::write(m.join("train.tab"), train).unwrap();
    fs::write(
        m.join("test.tab"),
        "Category\tText\nd\tstring\nclass\t\n\nspam\tbuy now\nham\tsee you\n",
    )
    .unwrap();
    fs::write(
        m.join("posts.toml"),
        r#"id = "posts"
name = "posts"
modality = "text"
licence = "CC0"
citation = "made by the test"
format = "text-tab"
classes = ["ham", "spam"]

[split]
method = "official"
train = 4
test = 2

[[source]]
kind = "local"
path = "."
files = { train = "train.tab", test = "test.tab" }
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["fetch", "posts"])
        .current_dir(dir.path())
        .env("HARNESS_CACHE", dir.path().join("cache"))
        .env_remove("HARNESS_MANIFESTS")
        .output()
        .unwrap();
    (dir, out)
}

#[test]
fn a_text_tab_dataset_decodes_and_bad_lines_are_named() {
    let good = b"Category\tText\nd\tstring\nclass\t\n\nham\thello there\nspam\twin money\nham\tlunch\nspam\tfree prize\n";
    let (_dir, out) = text_project(good);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("4 training-pool + 2 test examples"),
        "{}",
        stderr(&out)
    );

    let mut not_utf8 = good.to_vec();
    let at = not_utf8.windows(5).position(|w| w == b"lunch").unwrap();
    not_utf8[at] = 0xff;
    let (_dir, out) = text_project(&not_utf8);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("train.tab (train):7"),
        "{}",
        stderr(&out)
    );

    let empty = b"Category\tText\nd\tstring\nclass\t\n\nham\thello there\nspam\t\n";
    let (_dir, out) = text_project(empty);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("train.tab (train):6"),
        "{}",
        stderr(&out)
    );

    let no_label = b"Text\nstring\n\n\nhello there\n";
    let (_dir, out) = text_project(no_label);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("train.tab (train)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_official_test_set_can_be_sampled_per_class_once_and_for_all() {
    let good = b"Category\tText\nd\tstring\nclass\t\n\nham\thello there\nspam\twin money\nham\tlunch\nspam\tfree prize\n";
    let (dir, _) = text_project(good);
    let m = dir.path().join("data-manifests");
    // Six official test posts, three a class; the manifest keeps one a class.
    fs::write(
        m.join("test.tab"),
        "Category\tText\nd\tstring\nclass\t\n\nspam\tbuy now\nham\tsee you\nspam\tcheap pills\nham\ttea later\nspam\tyou won\nham\tmeeting notes\n",
    )
    .unwrap();
    let manifest = fs::read_to_string(m.join("posts.toml")).unwrap();
    let fetch = || {
        Command::new(env!("CARGO_BIN_EXE_harness"))
            .args(["fetch", "posts"])
            .current_dir(dir.path())
            .env("HARNESS_CACHE", dir.path().join("cache"))
            .env_remove("HARNESS_MANIFESTS")
            .output()
            .unwrap()
    };
    fs::write(
        m.join("posts.toml"),
        manifest.replace(
            "method = \"official\"",
            "method = \"official\"\ntest_per_class = 1",
        ),
    )
    .unwrap();
    let out = fetch();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("needs the `seed`"),
        "{}",
        stderr(&out)
    );

    fs::write(
        m.join("posts.toml"),
        manifest.replace(
            "method = \"official\"",
            "method = \"official\"\ntest_per_class = 1\nseed = 3",
        ),
    )
    .unwrap();
    let out = fetch();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("4 training-pool + 2 test examples"),
        "{}",
        stderr(&out)
    );
}

/// The audio project with an image dataset beside it, `pics`: a source of another modality.
fn with_pictures() -> Project {
    let p = Project::new(true);
    let csv = common::csv(60, 7, 0);
    fs::write(p.path("data-manifests/pics.csv"), &csv).unwrap();
    fs::write(
        p.path("data-manifests/pics.toml"),
        image_manifest("pics", "pics.csv", &sha256_hex(csv.as_bytes()), 60),
    )
    .unwrap();
    p
}

#[test]
fn a_cross_modal_source_brings_its_trained_stem_control_and_every_target_its_floor() {
    let p = with_pictures();
    let experiment = EXPERIMENT
        .replace(
            "sources = [\"scratch\", \"sounds\"]",
            "sources = [\"scratch\", \"sounds\", \"pics\"]",
        )
        .replace("n_train = [6, 30]", "n_train = [30]")
        .replace("seeds = [0]\nfloor = false\n", "seeds = [0, 1]\n")
        .replace("[model]\n", "[model]\npatch = 4\n");
    p.write("experiments/cross.toml", &experiment);
    let out = p.harness(&["run", "experiments/cross.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = p.rows("cross");
    // Three sources × two options × two seeds, one control and one floor per seed.
    assert_eq!(rows.len(), 3 * 2 * 2 + 2 + 2, "{rows:#?}");
    assert!(rows.iter().all(|r| r.status == "ok"), "{rows:#?}");
    let controls: Vec<_> = rows.iter().filter(|r| r.control.is_some()).collect();
    assert_eq!(controls.len(), 2);
    for c in &controls {
        assert_eq!(
            (c.source.as_str(), c.relation.as_str(), c.option),
            ("scratch", "none", 1)
        );
        assert_eq!(c.control.as_deref(), Some("trained stem"));
    }
    let floors: Vec<_> = rows.iter().filter(|r| r.relation == "floor").collect();
    assert_eq!(floors.len(), 2);
    for f in &floors {
        assert_eq!(f.architecture.as_deref(), Some("logistic (mean log-mel)"));
        assert!(f.probe_c.is_some() && f.search.is_some(), "{f:?}");
        assert!(f.test_accuracy.is_finite());
        // The floor sees the same subset as the arms of its seed.
        let scratch = rows
            .iter()
            .find(|r| r.source == "scratch" && r.seed == f.seed && r.option == 2)
            .unwrap();
        assert_eq!(
            (f.n_fit, f.n_validation),
            (scratch.n_fit, scratch.n_validation)
        );
    }
    let report = fs::read_to_string(p.path("reports/cross/report.md")).unwrap();
    assert!(report.contains("## Between floor and ceiling"), "{report}");
    assert!(
        report.contains("speakers: logistic (mean log-mel)"),
        "{report}"
    );
    // The cross-modal Option 1 arm meets the control that trains its stem too, never the
    // scratch arm whose stem is frozen.
    assert!(
        report.contains("| pics, option 1 | scratch (trained stem), option 1 |"),
        "{report}"
    );
    assert!(
        !report.contains("| pics, option 1 | scratch, option 1 |"),
        "{report}"
    );
    let again = p.harness(&["run", "experiments/cross.toml"]);
    assert!(
        stderr(&again).contains("16 finished, 0 to run"),
        "{}",
        stderr(&again)
    );
}
