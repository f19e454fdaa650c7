//! What the end-to-end tests share: a project folder in a temporary directory, the `harness`
//! binary run inside it with its own cache and one thread, and the rows it wrote. Each test
//! file adds its own constructor (`impl Project { fn new… }`) that writes its data.

#![allow(dead_code)]

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    /// An empty project folder.
    pub fn empty() -> Project {
        Project {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `harness ARGS` in the project folder, with the project's cache and no inherited paths.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("HARNESS_CACHE", self.path("cache"))
            .env_remove("HARNESS_MANIFESTS")
            .env_remove("HARNESS_RESULTS")
            .env_remove("HARNESS_REPORTS")
            .env("RAYON_NUM_THREADS", "1");
        cmd
    }

    pub fn harness(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// The rows of an experiment's result store.
    pub fn rows(&self, experiment: &str) -> Vec<harness_results::ResultRow> {
        harness_results::ResultStore::open(&self.path("results"), experiment)
            .rows()
            .unwrap()
    }

    pub fn write(&self, rel: &str, text: &str) {
        fs::write(self.path(rel), text).unwrap();
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Side of the images `csv` makes.
pub const SIDE: usize = 8;

fn pixel(seed: u64, i: usize, j: usize) -> u64 {
    // A small deterministic hash for noise.
    let mut z = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((i as u64) << 20) ^ j as u64;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z ^= z >> 27;
    z % 60
}

/// CSV of `per_class × 3` images: class c has a bright quadrant c.
pub fn csv(per_class: usize, seed: u64, shift: u64) -> String {
    let mut out = String::new();
    for i in 0..per_class * 3 {
        let class = i % 3;
        let (qy, qx) = [(0, 0), (0, 4), (4, 0)][class];
        let mut values = Vec::new();
        for y in 0..SIDE {
            for x in 0..SIDE {
                let inside = y >= qy && y < qy + 4 && x >= qx && x < qx + 4;
                let n = pixel(seed, i, y * SIDE + x);
                values.push(
                    (if inside {
                        150 + n + shift / 2
                    } else {
                        n + shift
                    })
                    .to_string(),
                );
            }
        }
        values.push(class.to_string());
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A `csv-pixels` manifest of a file `csv` made (10 test images per class), next to it.
pub fn image_manifest(id: &str, file: &str, sha: &str, per_class_total: usize) -> String {
    format!(
        r#"id = "{id}"
name = "{id}"
modality = "image"
licence = "CC0"
citation = "made by the test"
format = "csv-pixels"
classes = ["a", "b", "c"]

[image]
side = {SIDE}

[files.data]
sha256 = "{sha}"

[split]
method = "stratified"
test_per_class = 10
seed = 1
train = {}
test = 30

[[source]]
kind = "local"
path = "."
files = {{ data = "{file}" }}
"#,
        (per_class_total - 10) * 3
    )
}

/// `experiments/tiny.toml` of [`Project::tiny`].
pub const TINY_EXPERIMENT: &str = r#"
[matrix]
targets = ["target"]
sources = ["scratch", "source"]
n_train = [12, 30]
options = [1, 2]
seeds = [0, 1]
# The floor is checked on its own (e2e_modalities.rs); these tests count the arms' rows.
floor = false

[model]
patch = 4
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
    /// The tiny image project: targets `target` and source `source` (CSV pixels, local
    /// manifests) and `experiments/tiny.toml` (16 cells, one pre-training).
    pub fn tiny() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("data-manifests");
        fs::create_dir_all(&m).unwrap();
        fs::create_dir_all(dir.path().join("experiments")).unwrap();
        let target = csv(50, 1, 0);
        let source = csv(60, 2, 40);
        fs::write(m.join("target.csv"), &target).unwrap();
        fs::write(m.join("source.csv"), &source).unwrap();
        fs::write(
            m.join("target.toml"),
            image_manifest("target", "target.csv", &sha256_hex(target.as_bytes()), 50),
        )
        .unwrap();
        fs::write(
            m.join("source.toml"),
            image_manifest("source", "source.csv", &sha256_hex(source.as_bytes()), 60),
        )
        .unwrap();
        fs::write(dir.path().join("experiments/tiny.toml"), TINY_EXPERIMENT).unwrap();
        Project { dir }
    }

    /// The row files of an experiment's store, sorted.
    pub fn row_files(&self, experiment: &str) -> Vec<PathBuf> {
        let dir = self.path("results").join(experiment);
        let mut files: Vec<PathBuf> = match fs::read_dir(&dir) {
            Ok(e) => e
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
                .collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        files
    }

    /// Replaces the first `from` in the project file `rel` by `to`.
    pub fn edit(&self, rel: &str, from: &str, to: &str) {
        let path = self.path(rel);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{rel} has no {from:?}");
        fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }
}
