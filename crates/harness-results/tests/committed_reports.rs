//! Every committed report (`reports/NAME/`) is written again from its own rows
//! (`results.parquet`) and context (`context.json`) and must come out byte for byte the same:
//! a change to the statistics, the tables or the figures that alters a committed report fails
//! here, with the first line that differs.
//!
//! A change that alters reports on purpose rewrites them with
//! `HARNESS_REWRITE_REPORTS=1 cargo test --release --workspace --test committed_reports`;
//! the diff of `reports/` then shows, in review, exactly what changed.

use std::path::{Path, PathBuf};

use harness_results::{read_parquet, rewrite_report};

fn committed_reports() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../reports");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("reading {}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("report.md").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// The files of a report folder, by name, without the rows (compared as rows below).
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "results.parquet")
        .collect();
    names.sort();
    names
}

fn first_difference(committed: &str, written: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (committed.lines().collect(), written.lines().collect());
    let i = (0..a.len().max(b.len()))
        .find(|&i| a.get(i) != b.get(i))
        .unwrap_or(0);
    format!(
        "line {}:\n  committed: {}\n  written:   {}",
        i + 1,
        a.get(i).unwrap_or(&"<end>"),
        b.get(i).unwrap_or(&"<end>")
    )
}

#[test]
fn every_committed_report_is_written_again_identical_from_its_rows() {
    let dirs = committed_reports();
    assert!(
        dirs.len() >= 6,
        "expected the committed reports, found {dirs:?}"
    );
    let rewrite = std::env::var_os("HARNESS_REWRITE_REPORTS").is_some();
    let mut failures = Vec::new();
    for dir in &dirs {
        let out = tempfile::tempdir().unwrap();
        rewrite_report(dir, out.path())
            .unwrap_or_else(|e| panic!("rewriting {}: {e:#}", dir.display()));
        if rewrite {
            rewrite_report(dir, dir).unwrap();
            continue;
        }
        let name = dir.display();
        if files(dir) != files(out.path()) {
            failures.push(format!(
                "{name}: files {:?}, written {:?}",
                files(dir),
                files(out.path())
            ));
            continue;
        }
        for file in files(dir) {
            let committed = std::fs::read_to_string(dir.join(&file)).unwrap();
            let written = std::fs::read_to_string(out.path().join(&file)).unwrap();
            if committed != written {
                failures.push(format!(
                    "{name}/{file} differs at {}",
                    first_difference(&committed, &written)
                ));
            }
        }
        let rows = read_parquet(&dir.join("results.parquet")).unwrap();
        let again = read_parquet(&out.path().join("results.parquet")).unwrap();
        if format!("{rows:?}") != format!("{again:?}") {
            failures.push(format!("{name}/results.parquet: the rows changed"));
        }
    }
    assert!(
        failures.is_empty(),
        "committed reports no longer come out the same (if on purpose, rewrite them with \
         HARNESS_REWRITE_REPORTS=1 and say why in the commit):\n{}",
        failures.join("\n")
    );
}
