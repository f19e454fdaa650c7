//! A report folder holds everything needed to write it again: its rows, and a context that
//! keeps the declared hypotheses and the text of every file the experiment includes.

use harness_results::{CONTEXT_FILE, ReportContext, ResultRow, rewrite_report, write_report};
use harness_spec::{CellStatus, Experiment, Relation};

const EXPERIMENT: &str = r#"
include = ["base.toml"]

[matrix]
targets = ["digits"]
sources = ["scratch", "shapes"]
n_train = [20]
options = [1]
seeds = [0, 1, 2, 3]

[[hypothesis]]
name = "shapes-help"
claim = "Pre-training on shapes beats scratch"
a = "matched"
b = "scratch"
expect = "greater"
n_train = "smallest"
"#;

const BASE: &str = "[model]\npatch = 7\nd_model = 16\n";

fn rows() -> Vec<ResultRow> {
    let mut rows = Vec::new();
    for seed in 0..4 {
        for (source, relation, accuracy) in [("scratch", "none", 0.50), ("shapes", "matched", 0.60)]
        {
            rows.push(ResultRow {
                experiment: "ctx".into(),
                target: "digits".into(),
                source: source.into(),
                relation: Relation::parse(relation).unwrap(),
                option: 1,
                n_train: 20,
                seed,
                status: CellStatus::Ok,
                fingerprint: format!("{source}-{seed}"),
                test_accuracy: accuracy + 0.01 * seed as f64,
                test_macro_f1: accuracy,
                ..ResultRow::default()
            });
        }
    }
    rows
}

#[test]
fn a_report_is_written_again_from_its_folder_with_hypotheses_and_included_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.toml"), BASE).unwrap();
    let path = dir.path().join("ctx.toml");
    std::fs::write(&path, EXPERIMENT).unwrap();
    let experiment = Experiment::load(&path).unwrap();
    assert_eq!(experiment.hypotheses.len(), 1);
    let ctx = ReportContext {
        experiment: "ctx".into(),
        experiment_file: "ctx.toml".into(),
        experiment_text: EXPERIMENT.into(),
        command: "harness run ctx.toml".into(),
        hypotheses: experiment.hypotheses.clone(),
        included: vec![("base.toml".into(), BASE.into())],
        ..ReportContext::default()
    };
    let first = dir.path().join("report");
    write_report(&rows(), &ctx, &first).unwrap();
    let md = std::fs::read_to_string(first.join("report.md")).unwrap();
    assert!(md.contains("### Included file `base.toml`\n\n```toml\n[model]\npatch = 7"));
    assert!(
        md.contains("| shapes-help |"),
        "the verdict of the hypothesis"
    );

    // The included file is gone from disk: the folder alone must be enough.
    std::fs::remove_file(dir.path().join("base.toml")).unwrap();
    let stored = ReportContext::read(&first).unwrap();
    assert_eq!(stored.hypotheses, experiment.hypotheses);
    assert_eq!(stored.included, ctx.included);
    let second = dir.path().join("again");
    rewrite_report(&first, &second).unwrap();
    for file in ["report.md", CONTEXT_FILE] {
        assert_eq!(
            std::fs::read_to_string(first.join(file)).unwrap(),
            std::fs::read_to_string(second.join(file)).unwrap(),
            "{file} differs"
        );
    }
}

#[test]
fn the_wall_time_says_how_many_runs_it_adds_up_and_whether_they_pre_trained() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            Some(2),
            Some(0),
            "**Wall time of its 2 runs** (no pre-training: every source checkpoint came from the cache): 0h 20m 00s",
        ),
        (
            Some(1),
            Some(1),
            "**Wall time of the run** (1 pre-training included): 0h 20m 00s",
        ),
        (
            Some(1),
            Some(3),
            "**Wall time of the run** (3 pre-trainings included): 0h 20m 00s",
        ),
        (
            None,
            None,
            "**Wall time of the run** (pre-training, if any, included): 0h 20m 00s",
        ),
    ];
    for (i, (runs, pretrainings_run, expected)) in cases.into_iter().enumerate() {
        let ctx = ReportContext {
            experiment: "ctx".into(),
            wall_seconds: Some(1200.0),
            runs,
            pretrainings_run,
            ..ReportContext::default()
        };
        let out = dir.path().join(i.to_string());
        write_report(&rows(), &ctx, &out).unwrap();
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(md.contains(expected), "{expected}\nnot in\n{md}");
        let stored = ReportContext::read(&out).unwrap();
        assert_eq!(
            (stored.runs, stored.pretrainings_run),
            (runs, pretrainings_run)
        );
    }
}
