//! End to end on text the test writes: two `text-csv` datasets from local folders, a tokenizer
//! trained on the source's training pool, pre-training, Option 1 and 2 cells, resume, and the
//! user's own `tokenizer.json`.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

mod common;
use common::{Project, stderr};

/// Words of each source class (4 classes) and target class (3 classes); the target's classes
/// reuse source words, so the two share a vocabulary.
const SOURCE_WORDS: [&[&str]; 4] = [
    &["network", "server", "socket", "protocol", "client"],
    &["sound", "audio", "music", "player", "volume"],
    &["python", "module", "library", "binding", "package"],
    &["game", "puzzle", "board", "player", "level"],
];
const TARGET_WORDS: [&[&str]; 3] = [
    &["server", "protocol", "client", "socket"],
    &["music", "audio", "volume", "sound"],
    &["puzzle", "board", "level", "game"],
];

/// A document of `len` words of class `words`, with a filler word, picked by `seed`.
fn document(words: &[&str], seed: usize, len: usize) -> String {
    (0..len)
        .map(|j| {
            let k = (seed * 31 + j * 7 + seed / 3) % (words.len() + 1);
            words.get(k).copied().unwrap_or("the")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn csv_field(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

const SOURCE_MANIFEST: &str = r#"id = "notes"
name = "notes"
modality = "text"
licence = "CC0"
citation = "made by the test"
format = "text-csv"
classes = ["net", "sound", "python", "games"]

[csv]
label_column = "first"

[split]
method = "stratified"
test_per_class = 5
seed = 0
train = 140
test = 20

[[source]]
kind = "local"
path = "notes"
files = { data = "notes.csv" }
"#;

const TARGET_MANIFEST: &str = r#"id = "posts"
name = "posts"
modality = "text"
licence = "CC0"
citation = "made by the test"
format = "text-csv"
classes = ["networking", "audio", "games"]

[csv]
label_column = "last"
labels = "one-based"
delimiter = "\t"

[split]
method = "official"
train = 60
test = 30

[[source]]
kind = "local"
path = "posts"
files = { train = "train.tsv", test = "test.tsv" }
"#;

const EXPERIMENT: &str = r#"
[matrix]
targets = ["posts"]
sources = ["scratch", "notes"]
n_train = [12]
options = [1, 2]
seeds = [0, 1]
floor = false

[model]
d_model = 16
n_layers = 1
n_heads = 2
d_ff = 32

[text]
max_tokens = 12
vocab_size = 60

[pretrain]
epochs = 3
batch_size = 16

[finetune]
batch_size = 8
epochs = 5
min_steps = 20
evaluations = 4
patience = 4
"#;

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("data-manifests");
        fs::create_dir_all(m.join("notes")).unwrap();
        fs::create_dir_all(m.join("posts")).unwrap();
        let mut notes = String::new();
        for i in 0..160 {
            let class = i % 4;
            let name = ["net", "sound", "python", "games"][class];
            // Punctuation, digits and capitals: the "letters" normalisation removes them.
            let text = format!(
                "{}, v{i}: {}!",
                name.to_uppercase(),
                document(SOURCE_WORDS[class], i, 8)
            );
            notes.push_str(&format!("{name},{}\n", csv_field(&text)));
        }
        fs::write(m.join("notes/notes.csv"), notes).unwrap();
        for (file, count, offset) in [("train.tsv", 60, 0), ("test.tsv", 30, 1000)] {
            let mut rows = String::new();
            for i in 0..count {
                let class = i % 3;
                rows.push_str(&format!(
                    "{}\t{}\n",
                    document(TARGET_WORDS[class], i + offset, 6),
                    class + 1
                ));
            }
            fs::write(m.join("posts").join(file), rows).unwrap();
        }
        fs::write(m.join("notes.toml"), SOURCE_MANIFEST).unwrap();
        fs::write(m.join("posts.toml"), TARGET_MANIFEST).unwrap();
        fs::create_dir_all(dir.path().join("experiments")).unwrap();
        fs::write(dir.path().join("experiments/text.toml"), EXPERIMENT).unwrap();
        Project { dir }
    }
}

/// An experiment's rows in a fixed order: by source, option and seed.
fn sorted_rows(p: &Project, experiment: &str) -> Vec<harness_results::ResultRow> {
    let mut rows = p.rows(experiment);
    rows.sort_by(|a, b| (&a.source, a.option, a.seed).cmp(&(&b.source, b.option, b.seed)));
    rows
}

fn tokenizer_files(cache: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(dirs) = fs::read_dir(cache.join("tokenizers")) {
        for dir in dirs {
            let file = dir.unwrap().path().join("tokenizer.json");
            if file.is_file() {
                found.push(file);
            }
        }
    }
    found
}

fn sha256(path: &Path) -> String {
    hex::encode(Sha256::digest(fs::read(path).unwrap()))
}

#[test]
fn a_text_matrix_shares_one_tokenizer_trains_and_resumes() {
    let p = Project::new();
    let out = p.harness(&["run", "experiments/text.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.contains("trained on the 140 training-pool documents of notes"),
        "{log}"
    );

    // One tokenizer, trained once and saved in the cache; every row names it.
    let files = tokenizer_files(&p.path("cache"));
    assert_eq!(files.len(), 1, "{files:?}");
    let sha = sha256(&files[0]);
    let rows = sorted_rows(&p, "text");
    assert_eq!(rows.len(), 8);
    for row in &rows {
        assert_eq!(row.status, "ok", "{row:?}");
        assert_eq!(row.tokenizer_sha256.as_deref(), Some(sha.as_str()));
        assert_eq!(row.max_tokens, Some(12));
        assert!(row.vocab_size.unwrap() <= 60);
        assert!(row.test_accuracy.is_finite());
    }
    // The pre-trained source learned its four classes (chance is 25%).
    let source_accuracy = rows.iter().find_map(|r| r.source_test_accuracy).unwrap();
    assert!(
        source_accuracy > 0.5,
        "source test accuracy {source_accuracy}"
    );

    // Resume: nothing left to run, and the tokenizer is read from the cache, not retrained.
    let again = p.harness(&["run", "experiments/text.toml"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("8 finished, 0 to run"),
        "{}",
        stderr(&again)
    );
    assert_eq!(sorted_rows(&p, "text").len(), 8);

    // The same tokenizer given as the user's own file gives the same token ids, so the same
    // results, cell for cell; the rows name the file's hash.
    fs::copy(&files[0], p.path("experiments/my-tokenizer.json")).unwrap();
    p.write(
        "experiments/own.toml",
        &EXPERIMENT.replace("vocab_size = 60", "tokenizer = \"my-tokenizer.json\""),
    );
    let own = p.harness(&["run", "experiments/own.toml"]);
    assert!(own.status.success(), "{}", stderr(&own));
    assert!(
        stderr(&own).contains("(the experiment's own)"),
        "{}",
        stderr(&own)
    );
    let own_rows = sorted_rows(&p, "own");
    assert_eq!(own_rows.len(), 8);
    for (a, b) in rows.iter().zip(&own_rows) {
        assert_eq!((&a.source, a.option, a.seed), (&b.source, b.option, b.seed));
        assert_eq!(
            a.test_accuracy, b.test_accuracy,
            "{} option {} seed {}",
            a.source, a.option, a.seed
        );
        assert_eq!(b.tokenizer_sha256.as_deref(), Some(sha.as_str()));
    }
    assert_eq!(
        tokenizer_files(&p.path("cache")).len(),
        1,
        "no second tokenizer trained"
    );
}

#[test]
fn tokenizer_settings_are_part_of_every_text_cell() {
    let p = Project::new();
    let plan = |p: &Project| {
        let out = p.harness(&["plan", "experiments/text.toml"]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let fingerprints = |listing: &str| -> Vec<String> {
        listing
            .lines()
            .filter(|l| l.contains(" posts "))
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect()
    };
    let before = fingerprints(&plan(&p));
    assert_eq!(before.len(), 8);
    p.write(
        "experiments/text.toml",
        &EXPERIMENT.replace("max_tokens = 12", "max_tokens = 10"),
    );
    let after = fingerprints(&plan(&p));
    assert_eq!(after.len(), 8);
    assert!(
        before.iter().all(|f| !after.contains(f)),
        "every cell changes with max_tokens"
    );

    p.write(
        "experiments/text.toml",
        &EXPERIMENT.replace("[text]", "[text]\ncorpus = \"nowhere\""),
    );
    let out = p.harness(&["plan", "experiments/text.toml"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown `text.corpus` dataset id `nowhere`"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("text.toml:17"), "{}", stderr(&out));

    p.write(
        "experiments/text.toml",
        &EXPERIMENT.replace("vocab_size = 60", "tokenizer = \"missing.json\""),
    );
    let out = p.harness(&["plan", "experiments/text.toml"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot read `text.tokenizer`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_bad_text_csv_line_is_named() {
    let p = Project::new();
    let rows = fs::read_to_string(p.path("data-manifests/posts/train.tsv")).unwrap();
    let mut lines: Vec<String> = rows.lines().map(str::to_string).collect();
    lines[6] = "\"an open quote\t2".into();
    p.write("data-manifests/posts/train.tsv", &(lines.join("\n") + "\n"));
    let out = p.harness(&["fetch", "posts"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("train.tsv (train):7: a quoted field is never closed"),
        "{}",
        stderr(&out)
    );

    lines[6] = "\t2".into();
    p.write("data-manifests/posts/train.tsv", &(lines.join("\n") + "\n"));
    let out = p.harness(&["fetch", "posts"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("train.tsv (train):7: empty document"),
        "{}",
        stderr(&out)
    );

    lines[6] = "some words\t9".into();
    p.write("data-manifests/posts/train.tsv", &(lines.join("\n") + "\n"));
    let out = p.harness(&["fetch", "posts"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("train.tsv (train):7: label \"9\" is not a class number from 1 to 3"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bench_measures_the_experiment_model_and_says_when_the_reference_is_missing() {
    let p = Project::new();
    // A finished run gives bench the end-to-end figures.
    let run = p.harness(&["run", "--no-report", "--jobs", "2", "experiments/text.toml"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let out = p.harness(&[
        "bench",
        "experiments/text.toml",
        "--steps",
        "2",
        "--rounds",
        "1",
        "--threads",
        "1",
        "--cells",
        "--python",
        "/nonexistent/python",
        "--write",
        "BENCH.md",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let row = table
        .lines()
        .find(|l| l.starts_with("| text | text | 12 | 1 |"))
        .unwrap_or_else(|| panic!("no row for the text model: {table}"));
    // Harness figures are positive numbers; the reference's are absent.
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert!(cells[5].parse::<f64>().unwrap() > 0.0, "{row}");
    assert_eq!(cells[6], "–", "{row}");
    assert!(
        stderr(&out).contains("no reference figures"),
        "{}",
        stderr(&out)
    );
    // The reduced matrix ran in the harness: scratch, first seed, both options, smallest and
    // largest n_train (here one), each with its steps and seconds.
    let cell_rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("| text | posts |"))
        .collect();
    assert_eq!(cell_rows.len(), 2, "one size, two options: {table}");
    for r in &cell_rows {
        let c: Vec<&str> = r.split('|').map(str::trim).collect();
        assert!(c[5].parse::<usize>().unwrap() > 0, "{r}");
        assert!(c[6].parse::<f64>().unwrap() >= 0.0, "{r}");
        assert_eq!(c[7], "–", "{r}");
    }
    // The recorded run, and the estimate built from its cells.
    assert!(table.contains("| text | "), "{table}");
    assert!(table.contains("2 × 1"), "{table}");
    assert!(
        table.contains("Estimate for the cross-modal matrix"),
        "{table}"
    );
    let doc = fs::read_to_string(p.path("BENCH.md")).unwrap();
    assert!(
        doc.contains(
            "Generated by `harness bench experiments/text.toml --threads 1 --cells --write BENCH.md`"
        ),
        "{doc}"
    );
    assert!(doc.contains(row), "{doc}");
    assert!(doc.contains("## End to end"), "{doc}");
}
