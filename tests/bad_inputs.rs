//! The bad-input catalogue: each case breaks one thing in the tiny project (an experiment
//! key, a manifest field, a data file, a command-line argument) and states what `harness`
//! must answer: the exit status, the file and line the error points at, the words it must
//! contain, and that nothing was written (no row, report or checkpoint, and no cache entry of
//! the broken dataset).

use std::fs;

mod common;
use common::{Project, stderr};

const EXP: &str = "experiments/tiny.toml";
const TARGET: &str = "data-manifests/target.toml";

/// One bad input.
struct Case {
    name: &'static str,
    /// The file to change and the text replaced (`from` → `to`), if any.
    edit: Option<(&'static str, &'static str, &'static str)>,
    /// The arguments of `harness` (default: `run experiments/tiny.toml`).
    args: &'static [&'static str],
    /// Exit status: 2 for bad input, 1 for input that fails later (a file that cannot be
    /// fetched or verified).
    code: i32,
    /// The line the error must point at: the first line of the edited file that contains this
    /// text (`file:line` must appear), or none.
    at: Option<&'static str>,
    /// Words the error must contain.
    words: &'static [&'static str],
}

const RUN: &[&str] = &["run", EXP];

const fn exp(
    name: &'static str,
    from: &'static str,
    to: &'static str,
    at: &'static str,
    words: &'static [&'static str],
) -> Case {
    Case {
        name,
        edit: Some((EXP, from, to)),
        args: RUN,
        code: 2,
        at: Some(at),
        words,
    }
}

const fn manifest(
    name: &'static str,
    from: &'static str,
    to: &'static str,
    code: i32,
    at: Option<&'static str>,
    words: &'static [&'static str],
) -> Case {
    Case {
        name,
        edit: Some((TARGET, from, to)),
        args: RUN,
        code,
        at,
        words,
    }
}

// Long: a flat table, one entry per bad input and the error it must give; split, it would
// only be harder to scan for a missing case.
fn cases() -> Vec<Case> {
    vec![
        exp(
            "unknown key",
            "d_ff = 32",
            "d_ff = 32\nwidht = 4",
            "widht",
            &["widht"],
        ),
        exp("unknown table", "[model]", "[modle]", "[modle]", &["modle"]),
        exp(
            "wrong type",
            "epochs = 2",
            "epochs = \"two\"",
            "\"two\"",
            &["string"],
        ),
        exp(
            "missing comma",
            "n_train = [12, 30]",
            "n_train = [12 30]",
            "[12 30]",
            &["expected"],
        ),
        exp(
            "empty targets",
            "targets = [\"target\"]",
            "targets = []",
            "targets",
            &["`matrix.targets` must not be empty"],
        ),
        exp(
            "empty sources",
            "sources = [\"scratch\", \"source\"]",
            "sources = []",
            "sources",
            &["`matrix.sources` must not be empty"],
        ),
        exp(
            "empty sizes",
            "n_train = [12, 30]",
            "n_train = []",
            "n_train",
            &["`matrix.n_train` must not be empty"],
        ),
        exp(
            "empty options",
            "options = [1, 2]",
            "options = []",
            "options",
            &["`matrix.options` must not be empty"],
        ),
        exp(
            "empty seeds",
            "seeds = [0, 1]",
            "seeds = []",
            "seeds",
            &["`matrix.seeds` must not be empty"],
        ),
        exp(
            "option 3",
            "options = [1, 2]",
            "options = [1, 3]",
            "options",
            &["option must be 1", "found 3"],
        ),
        exp(
            "seed twice",
            "seeds = [0, 1]",
            "seeds = [0, 1, 0]",
            "seeds",
            &["`matrix.seeds` lists 0 twice"],
        ),
        exp(
            "source twice",
            "sources = [\"scratch\", \"source\"]",
            "sources = [\"scratch\", \"source\", \"source\"]",
            "sources",
            &["`matrix.sources` lists \"source\" twice"],
        ),
        exp(
            "size twice",
            "n_train = [12, 30]",
            "n_train = [12, 30, 12]",
            "n_train",
            &["`matrix.n_train` lists 12 twice"],
        ),
        exp(
            "option twice",
            "options = [1, 2]",
            "options = [2, 2]",
            "options",
            &["`matrix.options` lists 2 twice"],
        ),
        exp(
            "target twice",
            "targets = [\"target\"]",
            "targets = [\"target\", \"target\"]",
            "targets",
            &["`matrix.targets` lists \"target\" twice"],
        ),
        exp(
            "unknown target",
            "targets = [\"target\"]",
            "targets = [\"targte\"]",
            "targets",
            &["unknown target dataset id `targte`", "source, target"],
        ),
        exp(
            "unknown source",
            "sources = [\"scratch\", \"source\"]",
            "sources = [\"scratch\", \"sorce\"]",
            "sources",
            &["sorce"],
        ),
        exp(
            "size above the pool",
            "n_train = [12, 30]",
            "n_train = [12, 500]",
            "n_train",
            &["n_train = 500", "120 examples"],
        ),
        exp(
            "d_model not a multiple of n_heads",
            "d_model = 16",
            "d_model = 15",
            "d_model = 15",
            &["`model.d_model` (15)", "`model.n_heads` (2)"],
        ),
        exp(
            "no heads",
            "n_heads = 2",
            "n_heads = 0",
            "d_model = 16",
            &["`model.n_heads` (0)"],
        ),
        exp(
            "patch 0",
            "patch = 4",
            "patch = 0",
            "patch = 0",
            &["`model.patch` must be at least 1, found 0"],
        ),
        exp(
            "no layers",
            "n_layers = 1",
            "n_layers = 0",
            "n_layers = 0",
            &["`model.n_layers` must be at least 1"],
        ),
        exp(
            "no feed-forward",
            "d_ff = 32",
            "d_ff = 0",
            "d_ff = 0",
            &["`model.d_ff` must be at least 1"],
        ),
        exp(
            "patch that does not divide the image",
            "patch = 4",
            "patch = 3",
            "patch = 3",
            &["patch", "8"],
        ),
        exp(
            "unknown activation",
            "d_ff = 32",
            "d_ff = 32\nactivation = \"tanh\"",
            "activation",
            &["`model.activation`", "tanh"],
        ),
        exp(
            "dropout 1.5",
            "d_ff = 32",
            "d_ff = 32\ndropout = 1.5",
            "dropout",
            &["`model.dropout`", "1.5"],
        ),
        exp(
            "fine-tuning batch 0",
            "batch_size = 8",
            "batch_size = 0",
            "batch_size = 0",
            &["`finetune.batch_size` must be at least 1, found 0"],
        ),
        exp(
            "pre-training batch 0",
            "batch_size = 16",
            "batch_size = 0",
            "batch_size = 0",
            &["`pretrain.batch_size` must be at least 1"],
        ),
        exp(
            "pre-training for 0 epochs",
            "epochs = 2",
            "epochs = 0",
            "epochs = 0",
            &["`pretrain.epochs` must be at least 1"],
        ),
        exp(
            "a budget of no step",
            "epochs = 5\nmin_steps = 20",
            "epochs = 0\nmin_steps = 0",
            "epochs = 0",
            &["`finetune.epochs` and `finetune.min_steps` are both 0"],
        ),
        exp(
            "option 1 rate 0",
            "batch_size = 8",
            "batch_size = 8\noption1_learning_rate = 0",
            "option1_learning_rate",
            &["`finetune.option1_learning_rate` must be a positive number, found 0"],
        ),
        exp(
            "option 2 rate negative",
            "batch_size = 8",
            "batch_size = 8\noption2_learning_rate = -1e-3",
            "option2_learning_rate",
            &["`finetune.option2_learning_rate`", "-0.001"],
        ),
        exp(
            "pre-training rate 0",
            "learning_rate = 3e-3",
            "learning_rate = 0.0",
            "learning_rate = 0.0",
            &["`pretrain.learning_rate` must be a positive number, found 0"],
        ),
        exp(
            "pre-training rate NaN",
            "learning_rate = 3e-3",
            "learning_rate = nan",
            "learning_rate = nan",
            &["`pretrain.learning_rate`", "NaN"],
        ),
        exp(
            "validation fraction 1",
            "patience = 4",
            "patience = 4\nvalidation_fraction = 1.0",
            "validation_fraction",
            &["`finetune.validation_fraction` must be in (0, 1), found 1"],
        ),
        exp(
            "no evaluations",
            "evaluations = 4",
            "evaluations = 0",
            "evaluations = 0",
            &["`finetune.evaluations` must be at least 1"],
        ),
        exp(
            "no patience",
            "patience = 4",
            "patience = 0",
            "patience = 0",
            &["`finetune.patience` must be at least 1"],
        ),
        exp(
            "name with a space",
            "\n[matrix]",
            "name = \"my run\"\n\n[matrix]",
            "name =",
            &["experiment name", "my run"],
        ),
        exp(
            "modality table epochs 0",
            "learning_rate = 3e-3",
            "learning_rate = 3e-3\n\n[pretrain.image]\nepochs = 0",
            "epochs = 0",
            &["`pretrain.image.epochs` must be at least 1"],
        ),
        exp(
            "network batch 0",
            "patience = 4",
            "patience = 4\n\n[networks.finetune]\nbatch_size = 0",
            "batch_size = 0",
            &["`networks.finetune.batch_size` must be at least 1"],
        ),
        exp(
            "no tokens",
            "patience = 4",
            "patience = 4\n\n[text]\nmax_tokens = 0",
            "max_tokens",
            &["`text.max_tokens` must be at least 1"],
        ),
        exp(
            "vocabulary of 2",
            "patience = 4",
            "patience = 4\n\n[text]\nvocab_size = 2",
            "vocab_size",
            &["`text.vocab_size`"],
        ),
        exp(
            "unknown normalisation",
            "patience = 4",
            "patience = 4\n\n[text]\nnormalise = \"lower\"",
            "normalise",
            &["`text.normalise`", "lower"],
        ),
        exp(
            "hypothesis with an unknown arm",
            "patience = 4",
            UNKNOWN_ARM,
            "\"matchd\"",
            &["matchd"],
        ),
        exp(
            "hypothesis with an unknown expectation",
            "patience = 4",
            BAD_EXPECT,
            "\"bigger\"",
            &["bigger"],
        ),
        Case {
            name: "two hypotheses with one name",
            edit: Some((EXP, "patience = 4", TWO_HYPOTHESES)),
            args: RUN,
            code: 2,
            at: None,
            words: &["two hypotheses are named `h`"],
        },
        manifest(
            "manifest: unknown key",
            "licence = \"CC0\"",
            "licence = \"CC0\"\nlicense = \"CC0\"",
            2,
            Some("license"),
            &["license"],
        ),
        manifest(
            "manifest: unknown modality",
            "modality = \"image\"",
            "modality = \"video\"",
            2,
            Some("video"),
            &["video"],
        ),
        manifest(
            "manifest: unknown format",
            "format = \"csv-pixels\"",
            "format = \"csv-pixel\"",
            2,
            Some("csv-pixel"),
            &["csv-pixel"],
        ),
        manifest(
            "manifest: bad csv label column",
            "[image]",
            "[csv]\nlabel_column = \"middle\"\n\n[image]",
            2,
            Some("label_column"),
            &["`csv.label_column`", "middle"],
        ),
        manifest(
            "manifest: sha256 of zeros",
            "sha256 = \"",
            "sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n# was \"",
            1,
            Some("sha256 ="),
            &["checksum mismatch", "expects sha256 0000"],
        ),
        manifest(
            "manifest: missing file",
            "data = \"target.csv\"",
            "data = \"targett.csv\"",
            1,
            None,
            &["targett.csv", "could not obtain dataset `target`"],
        ),
        Case {
            name: "an experiment file that is not there",
            edit: None,
            args: &["run", "experiments/nosuch.toml"],
            code: 2,
            at: None,
            words: &["experiments/nosuch.toml"],
        },
        Case {
            name: "fetch of an unknown id",
            edit: None,
            args: &["fetch", "nosuch"],
            code: 2,
            at: None,
            words: &["unknown id `nosuch`", "source, target"],
        },
    ]
}

const TWO_HYPOTHESES: &str = "patience = 4\n\n[[hypothesis]]\nname = \"h\"\nclaim = \"c\"\na = \"matched\"\nb = \"scratch\"\nexpect = \"greater\"\n\n[[hypothesis]]\nname = \"h\"\nclaim = \"c\"\na = \"matched\"\nb = \"scratch\"\nexpect = \"greater\"\n";

const UNKNOWN_ARM: &str = "patience = 4\n\n[[hypothesis]]\nname = \"h\"\nclaim = \"c\"\na = \"matchd\"\nb = \"scratch\"\nexpect = \"greater\"\n";

const BAD_EXPECT: &str = "patience = 4\n\n[[hypothesis]]\nname = \"h\"\nclaim = \"c\"\na = \"matched\"\nb = \"scratch\"\nexpect = \"bigger\"\n";

/// Files under `dir` other than `.lock` files, recursively.
fn written(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let path = e.path();
        if path.is_dir() {
            out.extend(written(&path));
        } else if e.file_name() != ".lock" {
            out.push(path.display().to_string());
        }
    }
    out
}

#[test]
fn every_bad_input_of_the_catalogue_gets_its_error_and_writes_nothing() {
    let cases = cases();
    assert!(cases.len() >= 40, "the catalogue has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let p = Project::tiny();
        if let Some((file, from, to)) = case.edit {
            p.edit(file, from, to);
        }
        let out = p.harness(case.args);
        let err = stderr(&out);
        let mut wrong = Vec::new();
        if out.status.code() != Some(case.code) {
            wrong.push(format!("exit {:?}, not {}", out.status.code(), case.code));
        }
        if let (Some((file, _, _)), Some(marker)) = (case.edit, case.at) {
            let text = fs::read_to_string(p.path(file)).unwrap();
            let line = text
                .lines()
                .position(|l| l.contains(marker))
                .map(|i| i + 1)
                .unwrap_or_else(|| panic!("{}: no line has {marker:?}", case.name));
            let want = format!("{file}:{line}");
            let points = err.match_indices(&want).any(|(at, _)| {
                !err[at + want.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit())
            });
            if !points {
                wrong.push(format!("does not point at {want}"));
            }
        }
        for w in case.words {
            if !err.contains(w) {
                wrong.push(format!("lacks {w:?}"));
            }
        }
        if err.matches("error:").count() != 1 {
            wrong.push("not exactly one error".into());
        }
        let mut files = written(&p.path("results"));
        files.extend(written(&p.path("reports")));
        files.extend(written(&p.path("cache/checkpoints")));
        // A dataset that verified may be cached before another one fails; the broken
        // one must not be.
        files.extend(
            written(&p.path("cache/datasets"))
                .into_iter()
                .filter(|f| f.contains("/target-")),
        );
        if !files.is_empty() {
            wrong.push(format!("wrote {files:?}"));
        }
        if !wrong.is_empty() {
            failures.push(format!("{}: {}\n{err}", case.name, wrong.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
