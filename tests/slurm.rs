//! `harness submit --slurm` against a real Slurm: ignored by default, run by `.ci/run` once
//! `.ci/slurm/start.sh` has started a one-node cluster (slurmctld, slurmd, munge). The tests
//! submit the tiny image experiment and wait for Slurm to run it; they expect to be the only
//! users of the cluster.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Project, stderr};
use harness_results::ResultStore;

/// Runs `harness ARGS` in the project and returns its standard error, which must say nothing
/// went wrong.
fn harness_ok(p: &Project, args: &[&str]) -> String {
    let out = p.harness(args);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(out.status.success(), "harness {args:?}: {said}");
    said
}

/// The tests share one cluster and wait for it to be idle: one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Job ids Slurm has queued or running.
fn queued() -> Vec<String> {
    let out = Command::new("squeue")
        .args(["-h", "-o", "%A"])
        .output()
        .expect("squeue runs (is the cluster up? .ci/slurm/start.sh)");
    assert!(out.status.success(), "squeue: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Waits until Slurm has nothing queued or running.
fn wait_for_slurm(limit: Duration) {
    let deadline = Instant::now() + limit;
    while !queued().is_empty() {
        assert!(
            Instant::now() < deadline,
            "Slurm still has jobs: {:?}",
            queued()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The rows of a store as two runs of one cell must agree on: every column but the timing
/// and the host (when, how fast, where, with how much memory), by fingerprint; each row as
/// its debug text, so that NaN (the probe's learning rate) equals NaN.
fn comparable(results: &std::path::Path) -> Vec<String> {
    let mut rows = ResultStore::open(results, "tiny").rows().unwrap();
    for r in &mut rows {
        r.train_seconds = 0.0;
        r.examples_per_second = 0.0;
        r.peak_rss_mib = None;
        r.host = String::new();
        r.cpu = None;
        r.simd = None;
        r.started_at = String::new();
        r.finished_at = String::new();
    }
    rows.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
    rows.iter().map(|r| format!("{r:?}")).collect()
}

/// Fails naming the first row that differs.
fn assert_same_rows(got: &[String], expected: &[String]) {
    assert_eq!(got.len(), expected.len(), "row counts");
    for (g, e) in got.iter().zip(expected) {
        assert_eq!(g, e, "a row differs");
    }
}

#[test]
#[ignore = "needs a running Slurm: .ci/slurm/start.sh, then cargo test --test slurm -- --ignored"]
fn a_slurm_run_writes_the_rows_harness_run_writes_and_a_cancelled_one_resumes_cleanly() {
    let _serial = serial();
    let p = Project::tiny();
    harness_ok(&p, &["run", "experiments/tiny.toml"]);
    let reference = comparable(&p.path("results"));
    assert_eq!(reference.len(), 16);

    // The same file through Slurm, into its own store (the cache, and so the checkpoint, is
    // the project's: the pre-training is not submitted again).
    let said = harness_ok(
        &p,
        &[
            "submit",
            "--slurm",
            "experiments/tiny.toml",
            "--results",
            "results-slurm",
            "--cells-per-task",
            "3",
        ],
    );
    assert!(said.contains("submitted 16 cells"), "{said}");
    wait_for_slurm(Duration::from_secs(300));
    assert_same_rows(&comparable(&p.path("results-slurm")), &reference);
    let status = harness_ok(
        &p,
        &[
            "status",
            "experiments/tiny.toml",
            "--results",
            "results-slurm",
        ],
    );
    assert!(status.contains("16 cells: 16 finished"), "{status}");
    assert!(p.path("reports/tiny/report.md").is_file());

    cancel_part_way_then_resubmit(&p, &reference);
}

/// A submission cancelled part-way leaves whole rows only; submitting again submits only the
/// cells without one and ends with `reference`'s rows.
fn cancel_part_way_then_resubmit(p: &Project, reference: &[String]) {
    // One cell per task, one task at a time.
    let args = [
        "--results",
        "results-cancel",
        "--cells-per-task",
        "1",
        "--throttle",
        "1",
    ];
    let said = harness_ok(
        p,
        &[&["submit", "--slurm", "experiments/tiny.toml"][..], &args].concat(),
    );
    assert!(said.contains("submitted 16 cells"), "{said}");
    let store = ResultStore::open(&p.path("results-cancel"), "tiny");
    let deadline = Instant::now() + Duration::from_secs(300);
    while store.finished().is_empty() {
        assert!(Instant::now() < deadline, "no row appeared");
        std::thread::sleep(Duration::from_millis(200));
    }
    let jobs = queued();
    assert!(!jobs.is_empty(), "every task ended before the cancel");
    let out = Command::new("scancel").args(&jobs).output().unwrap();
    assert!(out.status.success(), "scancel: {}", stderr(&out));
    wait_for_slurm(Duration::from_secs(120));
    // What the cancel left: whole rows only, each once, fewer than the plan's.
    let left = store.rows().expect("every row file reads");
    assert!(!left.is_empty() && left.len() < 16, "{} rows", left.len());
    let status = harness_ok(
        p,
        &[
            "status",
            "experiments/tiny.toml",
            "--results",
            "results-cancel",
        ],
    );
    assert!(status.contains("CANCELLED"), "{status}");

    // Submitting again submits only the cells without a row, and ends with the same rows.
    let said = harness_ok(
        p,
        &[&["submit", "--slurm", "experiments/tiny.toml"][..], &args].concat(),
    );
    assert!(
        said.contains(&format!("submitted {} cells", 16 - left.len())),
        "{said}"
    );
    wait_for_slurm(Duration::from_secs(300));
    assert_same_rows(&comparable(&p.path("results-cancel")), reference);
    let said = harness_ok(
        p,
        &[&["submit", "--slurm", "experiments/tiny.toml"][..], &args].concat(),
    );
    assert!(said.contains("nothing to submit"), "{said}");
}

#[test]
#[ignore = "needs a running Slurm: .ci/slurm/start.sh, then cargo test --test slurm -- --ignored"]
fn a_second_submission_or_a_run_is_refused_while_the_first_has_jobs_queued() {
    let _serial = serial();
    let p = Project::tiny();
    let args = [
        "--results",
        "results-twice",
        "--cells-per-task",
        "1",
        "--throttle",
        "1",
    ];
    harness_ok(
        &p,
        &[&["submit", "--slurm", "experiments/tiny.toml"][..], &args].concat(),
    );
    let out = p.harness(&[&["submit", "--slurm", "experiments/tiny.toml"][..], &args].concat());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("still has jobs queued or running"),
        "{}",
        stderr(&out)
    );
    // So is `harness run` of the same experiment into the same store.
    let out = p.harness(&["run", "experiments/tiny.toml", "--results", "results-twice"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("then run again"), "{}", stderr(&out));
    let out = Command::new("scancel").args(queued()).output().unwrap();
    assert!(out.status.success(), "scancel: {}", stderr(&out));
    wait_for_slurm(Duration::from_secs(120));
}
