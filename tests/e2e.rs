//! End-to-end tests of the `harness` binary on small image datasets that each test writes
//! itself (CSV of pixels, fetched through `local` manifest sources), fully offline.

use std::fs;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;
use common::{Project, stderr};

#[test]
fn a_run_writes_one_row_per_cell_and_a_report_and_a_second_run_skips_them() {
    let p = Project::tiny();
    let out = p.harness(&["run", "experiments/tiny.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = p.rows("tiny");
    assert_eq!(rows.len(), 2 * 2 * 2 * 2);
    assert!(rows.iter().all(|r| r.status == "ok"), "{rows:?}");
    assert!(rows.iter().all(|r| (0.0..=1.0).contains(&r.test_accuracy)));
    let relations: std::collections::BTreeSet<_> = rows
        .iter()
        .map(|r| (r.source.as_str(), r.relation.as_str()))
        .collect();
    assert!(relations.contains(&("scratch", "none")) && relations.contains(&("source", "matched")));
    // Provenance is filled in.
    assert!(
        rows.iter()
            .all(|r| r.target_sha256.len() == 64 && !r.fingerprint.is_empty())
    );
    assert!(
        rows.iter()
            .filter(|r| r.source == "source")
            .all(|r| r.checkpoint_sha256.is_some() && r.source_sha256.is_some())
    );
    for f in [
        "reports/tiny/report.md",
        "reports/tiny/accuracy-target.svg",
        "reports/tiny/results.parquet",
    ] {
        assert!(p.path(f).is_file(), "{f} missing");
    }
    let report = fs::read_to_string(p.path("reports/tiny/report.md")).unwrap();
    assert!(
        report.contains("95% CI") && report.contains("harness run experiments/tiny.toml"),
        "{report}"
    );

    let before: Vec<(PathBuf, Vec<u8>)> = p
        .row_files("tiny")
        .into_iter()
        .map(|f| (f.clone(), fs::read(&f).unwrap()))
        .collect();
    let again = p.harness(&["run", "experiments/tiny.toml"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("16 finished, 0 to run"),
        "{}",
        stderr(&again)
    );
    let after: Vec<(PathBuf, Vec<u8>)> = p
        .row_files("tiny")
        .into_iter()
        .map(|f| (f.clone(), fs::read(&f).unwrap()))
        .collect();
    assert_eq!(before, after, "finished rows were not rewritten");
}

#[test]
fn the_same_command_gives_the_same_numbers() {
    let a = Project::tiny();
    let b = Project::tiny();
    for p in [&a, &b] {
        let out = p.harness(&["run", "--no-report", "experiments/tiny.toml"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let key = |r: &harness_results::ResultRow| {
        (
            r.fingerprint.clone(),
            r.test_accuracy.to_bits(),
            r.test_loss.to_bits(),
            r.best_step,
        )
    };
    let mut ra: Vec<_> = a.rows("tiny").iter().map(key).collect();
    let mut rb: Vec<_> = b.rows("tiny").iter().map(key).collect();
    ra.sort();
    rb.sort();
    assert_eq!(ra, rb);
}

/// Cells spread over worker processes give exactly the rows of one process: every number,
/// bit for bit, whatever the number of jobs.
#[test]
fn jobs_do_not_change_the_numbers() {
    let one = Project::tiny();
    let three = Project::tiny();
    let out = one.harness(&["run", "--no-report", "--jobs", "1", "experiments/tiny.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("worker processes"),
        "--jobs 1 runs in process"
    );
    let out = three.harness(&["run", "--no-report", "--jobs", "3", "experiments/tiny.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("running on 3 worker processes with 1 thread each"),
        "{}",
        stderr(&out)
    );
    let key = |r: &harness_results::ResultRow| {
        (
            r.fingerprint.clone(),
            r.status.clone(),
            r.test_accuracy.to_bits(),
            r.test_loss.to_bits(),
            r.test_macro_f1.to_bits(),
            r.validation_accuracy.to_bits(),
            r.best_step,
            r.steps_run,
            r.checkpoint_sha256.clone(),
            r.source_sha256.clone(),
            r.source_test_accuracy.map(f64::to_bits),
        )
    };
    let mut a: Vec<_> = one.rows("tiny").iter().map(key).collect();
    let mut b: Vec<_> = three.rows("tiny").iter().map(key).collect();
    a.sort();
    b.sort();
    assert_eq!(a.len(), 16);
    assert_eq!(a, b);
    // And a second run with jobs finds nothing left to do.
    let again = three.harness(&["run", "--no-report", "--jobs", "3", "experiments/tiny.toml"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("16 finished, 0 to run"),
        "{}",
        stderr(&again)
    );
}

/// The LibTorch backend is optional: a default build says how to get it and runs nothing.
#[test]
fn backend_tch_in_a_default_build_says_how_to_build_it() {
    let p = Project::tiny();
    let out = p.harness(&["run", "--backend", "tch", "experiments/tiny.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("bench/build-tch.sh"),
        "{}",
        stderr(&out)
    );
    assert!(!p.path("results").exists(), "nothing ran");
    let out = p.harness(&["run", "--backend", "cuda", "experiments/tiny.toml"]);
    assert!(
        stderr(&out).contains("unknown backend `cuda`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn kill_9_in_the_middle_then_the_same_command_finishes_without_duplicates() {
    let p = Project::tiny();
    let mut child = p
        .command(&["run", "experiments/tiny.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while p.row_files("tiny").len() < 3 {
        assert!(Instant::now() < deadline, "no rows appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let survivors: Vec<(PathBuf, Vec<u8>)> = p
        .row_files("tiny")
        .into_iter()
        .map(|f| (f.clone(), fs::read(&f).unwrap()))
        .collect();
    assert!(
        survivors.len() >= 3 && survivors.len() < 16,
        "killed after {} rows",
        survivors.len()
    );

    let out = p.harness(&["run", "experiments/tiny.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = p.rows("tiny");
    assert_eq!(rows.len(), 16);
    let unique: std::collections::BTreeSet<_> = rows.iter().map(|r| &r.fingerprint).collect();
    assert_eq!(unique.len(), 16, "no duplicate rows");
    for (file, bytes) in survivors {
        assert_eq!(
            fs::read(&file).unwrap(),
            bytes,
            "{} was rerun",
            file.display()
        );
    }
    let leftovers: Vec<_> = fs::read_dir(p.path("results/tiny"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with('.') && name != ".lock"
        })
        .collect();
    assert!(leftovers.is_empty(), "partial writes were cleaned");
}

#[test]
fn plan_lists_cells_and_pretraining_without_running_anything() {
    let p = Project::tiny();
    let out = p.harness(&["plan", "experiments/tiny.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pre-training jobs: 1"), "{text}");
    assert!(text.contains("16 cells, 0 finished"), "{text}");
    assert_eq!(text.matches("to run").count(), 16, "{text}");
    assert!(
        !p.path("results").exists() && !p.path("cache").exists(),
        "plan wrote nothing"
    );
}

/// `harness plan` ends with an estimate of `harness run` from the cell times measured in every
/// result store: unknown before anything ran; then, from the rows of another experiment of the
/// same settings, their seconds for cells of the same kind and scaled by the step budget for a
/// size they did not measure.
#[test]
fn plan_estimates_the_run_from_the_cell_times_measured_in_every_store() {
    let p = Project::tiny();
    // New seeds and one larger size, the settings of tiny.toml otherwise.
    p.write(
        "experiments/more.toml",
        &common::TINY_EXPERIMENT
            .replace("seeds = [0, 1]", "seeds = [2, 3]")
            .replace("n_train = [12, 30]", "n_train = [12, 30, 60]"),
    );
    let estimate = |p: &Project| {
        let out = p.harness(&["plan", "--jobs", "2", "experiments/more.toml"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let at = text.find("estimated time").expect("an estimate");
        text[at..].to_string()
    };
    let before = estimate(&p);
    assert!(
        before.starts_with(
            "estimated time of `harness run`: unknown for 24 unfinished cells and 1 pre-training, none like them measured"
        ),
        "{before}"
    );

    let out = p.harness(&["run", "--no-report", "experiments/tiny.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Every measured cell took a minute, as far as the estimate can tell.
    let store = harness_results::ResultStore::open(&p.path("results"), "tiny");
    for mut row in p.rows("tiny") {
        row.train_seconds = 60.0;
        store.write(&row).unwrap();
    }
    // Option 1 cells train on cached features: a minute each, at any size. Option 2 at
    // n_train = 60: 30 steps (48 to fit, batches of 8, 5 epochs) against the 20 (min_steps)
    // measured at 12 and 30: 90 s. 20 × 60 s + 4 × 90 s = 26 min; the checkpoint is cached.
    let after = estimate(&p);
    let lines: Vec<&str> = after.lines().collect();
    assert_eq!(
        lines[..2],
        [
            "estimated time of `harness run`: 26 min of training for 24 unfinished cells, about 13 min at 2 jobs if they share it evenly (--jobs)",
            "  cells: 26 min; 20 from measured cells of the same kind, 4 scaled from their arm at another n_train or learning-rate grid",
        ],
        "{after}"
    );
    assert!(
        lines[2].starts_with("  measured: train_seconds of 16 finished rows in results/*/; every one used measured on this machine's CPU"),
        "{after}"
    );
}

/// Runs `harness run` on a broken project and checks the one clear error and that nothing was written.
fn assert_refused(p: &Project, expect_in_message: &[&str]) -> String {
    let out = p.harness(&["run", "experiments/tiny.toml"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "a broken input was accepted");
    for e in expect_in_message {
        assert!(err.contains(e), "error lacks {e:?}:\n{err}");
    }
    assert!(
        err.matches("error:").count() == 1,
        "one error, not a cascade:\n{err}"
    );
    assert!(p.row_files("tiny").is_empty(), "rows were written");
    err
}

#[test]
fn malformed_toml_names_the_file_and_line() {
    let p = Project::tiny();
    p.edit("experiments/tiny.toml", "seeds = [0, 1]", "seeds = [0, 1");
    assert_refused(&p, &["missing comma", "experiments/tiny.toml:9:"]);
}

#[test]
fn an_unknown_key_names_the_key_file_and_line() {
    let p = Project::tiny();
    p.edit("experiments/tiny.toml", "d_ff = 32", "d_ff = 32\nwidht = 4");
    assert_refused(&p, &["widht", "experiments/tiny.toml:17:"]);
}

#[test]
fn an_unknown_dataset_id_names_the_line_and_the_known_ids() {
    let p = Project::tiny();
    p.edit(
        "experiments/tiny.toml",
        "targets = [\"target\"]",
        "targets = [\"targte\"]",
    );
    assert_refused(
        &p,
        &[
            "unknown target dataset id `targte`",
            "experiments/tiny.toml:3:",
            "source, target",
        ],
    );
}

#[test]
fn n_train_larger_than_the_pool_is_refused_with_the_pool_size() {
    let p = Project::tiny();
    p.edit(
        "experiments/tiny.toml",
        "n_train = [12, 30]",
        "n_train = [12, 500]",
    );
    assert_refused(
        &p,
        &["n_train = 500", "120 examples", "experiments/tiny.toml:5:"],
    );
}

#[test]
fn a_local_file_that_no_longer_matches_its_checksum_names_the_manifest_line() {
    let p = Project::tiny();
    // Change the data, not the manifest: the user's own file is checked on every run.
    let path = p.path("data-manifests/target.csv");
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replacen("0,", "1,", 1)).unwrap();
    assert_refused(
        &p,
        &[
            "checksum mismatch for `data`",
            "data-manifests/target.toml:13 expects sha256",
            "dataset `target`",
        ],
    );
}

#[test]
fn a_bad_manifest_names_its_line() {
    let p = Project::tiny();
    p.edit(
        "data-manifests/source.toml",
        "format = \"csv-pixels\"",
        "format = \"csv-pixel\"",
    );
    assert_refused(&p, &["data-manifests/source.toml:6:"]);
}

#[test]
fn every_command_has_help() {
    let p = Project::tiny();
    for cmd in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["plan", "--help"],
        vec!["report", "--help"],
        vec!["fetch", "--help"],
        vec!["schema", "--help"],
    ] {
        let out = p.harness(&cmd);
        assert!(out.status.success(), "{cmd:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{cmd:?}"
        );
    }
}

#[test]
fn report_rewrites_the_report_from_the_store() {
    let p = Project::tiny();
    let out = p.harness(&["run", "--no-report", "experiments/tiny.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!p.path("reports/tiny/report.md").exists());
    let out = p.harness(&["report", "experiments/tiny.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let svg = fs::read_to_string(p.path("reports/tiny/accuracy-target.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("Option 1") && svg.contains("Option 2"));
}

#[test]
fn a_ceiling_trains_the_arm_best_on_validation_on_more_examples_and_only_the_bounds_read_it() {
    let p = Project::tiny();
    p.edit(
        "experiments/tiny.toml",
        "floor = false\n",
        "floor = true\n\n[matrix.ceiling]\nseeds = 1\nn_train = { target = 60 }\n",
    );
    let plan = p.harness(&["plan", "experiments/tiny.toml"]);
    let said = String::from_utf8_lossy(&plan.stdout).to_string();
    assert!(
        said.contains(
            "ceiling of target (matrix.ceiling): 60 examples, 1 seed; the arm best on validation"
        ),
        "{said}"
    );
    let out = p.harness(&["run", "experiments/tiny.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("(matrix.ceiling)"),
        "{}",
        stderr(&out)
    );
    let rows = p.rows("tiny");
    // 16 arms' cells, 4 floors, and the ceiling: one cell, seed 0, on 60 examples.
    assert_eq!(rows.len(), 21);
    let ceiling: Vec<&harness_results::ResultRow> =
        rows.iter().filter(|r| r.n_train == 60).collect();
    assert_eq!(ceiling.len(), 1);
    assert_eq!(ceiling[0].seed, 0);
    // Its arm has the best mean validation accuracy at n = 30 over the matrix's seeds.
    let at_30: Vec<harness_results::ResultRow> =
        rows.iter().filter(|r| r.n_train == 30).cloned().collect();
    let best = harness_results::best_arm(&at_30, "target", 30).unwrap();
    assert_eq!(
        (
            harness_results::ArmSize::of_row(ceiling[0]).arm,
            ceiling[0].option
        ),
        (best.arm.clone(), best.option)
    );
    // The bounds name it; no other table has a column or row at n = 60.
    let report = fs::read_to_string(p.path("reports/tiny/report.md")).unwrap();
    assert!(report.contains("(target: n = 60, 1 seed)"), "{report}");
    let level = (report.lines())
        .find(|l| l.starts_with("| target") && l.contains("(n = 60)"))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        level.contains(&format!("{}, option {}", best.arm, best.option)),
        "{level}"
    );
    assert!(
        !report.contains("n = 60 |") && !report.contains("| 60 |"),
        "{report}"
    );
    let plan = p.harness(&["plan", "experiments/tiny.toml"]);
    let said = String::from_utf8_lossy(&plan.stdout).to_string();
    assert!(said.contains("21 cells, 21 finished"), "{said}");
}

#[test]
fn more_seeds_join_where_an_interval_is_wider_than_its_goal_and_only_there() {
    let p = Project::tiny();
    p.edit(
        "experiments/tiny.toml",
        "floor = false\n",
        "floor = false\n\n[matrix.more_seeds]\nup_to = 4\nstep = 1\nhalf_width = 0.9\n",
    );
    p.edit(
        "experiments/tiny.toml",
        "patience = 4\n",
        "patience = 4\n\n[[hypothesis]]\nname = \"helps\"\nclaim = \"c\"\na = \"matched\"\nb = \"scratch\"\nexpect = \"greater\"\nn_train = \"smallest\"\n",
    );
    // Every interval is within ±90 points: the matrix's 16 cells and no more.
    let out = p.harness(&["run", "experiments/tiny.toml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(p.rows("tiny").len(), 16);
    let before: Vec<String> = p
        .rows("tiny")
        .iter()
        .map(|r| r.fingerprint.clone())
        .collect();

    // A goal no interval of two seeds meets: seeds 2, then 3 (up_to = 4) join at n = 12, the
    // size the hypothesis covers, with every arm and option; none at n = 30.
    p.edit(
        "experiments/tiny.toml",
        "half_width = 0.9",
        "half_width = 0.0001",
    );
    let out = p.harness(&["run", "experiments/tiny.toml", "--jobs", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cells of more seeds join (matrix.more_seeds)"),
        "{}",
        stderr(&out)
    );
    let rows = p.rows("tiny");
    let added: Vec<&harness_results::ResultRow> = rows
        .iter()
        .filter(|r| !before.contains(&r.fingerprint))
        .collect();
    assert_eq!(added.len(), 2 * 4, "{added:?}");
    assert!(
        added
            .iter()
            .all(|r| r.n_train == 12 && (r.seed == 2 || r.seed == 3))
    );
    let report = fs::read_to_string(p.path("reports/tiny/report.md")).unwrap();
    // The verdict's row: hypothesis, expects, where, target, seeds, …
    let verdict = (report.lines())
        .find(|l| l.starts_with("| helps"))
        .unwrap_or_else(|| panic!("{report}"));
    let cells: Vec<&str> = verdict.split('|').map(str::trim).collect();
    assert_eq!(cells[5], "4", "{verdict}");

    let plan = p.harness(&["plan", "experiments/tiny.toml"]);
    let said = String::from_utf8_lossy(&plan.stdout).to_string();
    assert!(
        said.contains("added so far: target n=12: 2 (8 cells)"),
        "{said}"
    );
    let again = p.harness(&["run", "experiments/tiny.toml"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("24 cells, 24 finished, 0 to run"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn pilot_seeds_choose_each_arms_rate_on_validation_and_the_other_seeds_train_at_it() {
    let p = Project::tiny();
    // A fixed Option 2 rate too small to learn in a few steps, and one that learns: the
    // pilots' validation accuracy moves at least one arm away from the fixed rate.
    p.edit(
        "experiments/tiny.toml",
        "patience = 4\n",
        "patience = 4\noption2_learning_rate = 1e-7\n\n[finetune.search]\noption2_learning_rates = [3e-3]\npilot_seeds = 1\n",
    );
    let plan = p.harness(&["plan", "experiments/tiny.toml"]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    let said = String::from_utf8_lossy(&plan.stdout).to_string();
    assert!(
        said.contains("4 arm sizes choose their learning rate"),
        "{said}"
    );
    // Seed 1 of each of the 4 arm sizes may train again at a chosen rate.
    assert!(
        said.contains("and up to 4 cells that join if the pilots choose"),
        "{said}"
    );

    let out = p.harness(&["run", "experiments/tiny.toml", "--jobs", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = p.rows("tiny");
    let fingerprints: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.fingerprint.as_str()).collect();
    assert_eq!(fingerprints.len(), rows.len(), "no cell ran twice");
    // 16 cells at the fixed rates, 4 pilots (seed 0, Option 2, the other rate), and seed 1
    // again for each arm size whose choice moved.
    let choices = harness_results::chosen_rates(&rows);
    assert_eq!(choices.len(), 4, "{choices:?}");
    let moved: Vec<_> = choices.iter().filter(|(_, c)| c.rate != c.fixed).collect();
    assert!(!moved.is_empty(), "{choices:?}");
    assert_eq!(rows.len(), 16 + 4 + moved.len());
    for (arm, choice) in &moved {
        assert!(
            rows.iter().any(|r| r.seed == 1
                && harness_results::ArmSize::of_row(r) == **arm
                && r.learning_rate == choice.rate),
            "seed 1 of {arm:?} at {}",
            choice.rate
        );
        assert!(
            stderr(&out).contains("the pilots chose learning rates"),
            "{}",
            stderr(&out)
        );
    }
    let report = fs::read_to_string(p.path("reports/tiny/report.md")).unwrap();
    assert!(
        report.contains("## Fixed learning rate against one chosen on validation")
            && report.contains(&format!(
                "moved away from the fixed rate for {} of 4 arm sizes",
                moved.len()
            )),
        "{report}"
    );

    let again = p.harness(&["run", "experiments/tiny.toml"]);
    assert!(again.status.success(), "{}", stderr(&again));
    let n = rows.len();
    assert!(
        stderr(&again).contains(&format!("{n} cells, {n} finished, 0 to run")),
        "{}",
        stderr(&again)
    );
}
