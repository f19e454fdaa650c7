//! Integrity of every number: a damaged or replaced checkpoint, a changed local folder, a copy
//! of a row file, two runs on one store, provenance from the build, and `kill -9` at chosen
//! moments. After each fault the same command must give the rows of an uninterrupted run.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;
use common::{Project, stderr};

/// What must not change when a run is interrupted and resumed: every column but timing,
/// memory and host facts, by fingerprint.
fn numbers(p: &Project) -> BTreeMap<String, String> {
    p.rows("tiny")
        .into_iter()
        .map(|r| {
            (
                r.fingerprint.clone(),
                format!(
                    "{} {} {:?} {:?} {:?} {} {} {} {:?} {} {:?}",
                    r.status,
                    r.source,
                    r.test_accuracy.to_bits(),
                    r.test_loss.to_bits(),
                    r.validation_accuracy.to_bits(),
                    r.best_step,
                    r.steps_run,
                    r.n_validation,
                    r.checkpoint_sha256,
                    r.target_sha256,
                    r.source_test_accuracy.map(f64::to_bits),
                ),
            )
        })
        .collect()
}

/// The checkpoint folder of the tiny project's one pre-training.
fn checkpoint(p: &Project) -> PathBuf {
    let dir = p.path("cache/checkpoints");
    let found: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|d| !d.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

fn run_ok(p: &Project, args: &[&str]) -> String {
    let out = p.harness(args);
    assert!(out.status.success(), "{}", stderr(&out));
    stderr(&out)
}

/// The reference: the tiny experiment run once, uninterrupted.
fn reference() -> (Project, BTreeMap<String, String>) {
    let p = Project::tiny();
    run_ok(&p, &["run", "experiments/tiny.toml"]);
    let rows = numbers(&p);
    assert_eq!(rows.len(), 16);
    (p, rows)
}

/// Changes `count` bytes in the middle of `file` (as a weight multiplied by −3 would).
fn damage(file: &Path, count: usize) {
    let mut bytes = fs::read(file).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + count] {
        *b ^= 0x5a;
    }
    fs::write(file, bytes).unwrap();
}

#[test]
fn kill_9_at_every_moment_then_the_same_command_gives_the_uninterrupted_rows() {
    let (_reference, expected) = reference();
    for fault in ["pretrain-step:3", "row-write:5", "between-cells:9"] {
        let p = Project::tiny();
        let out = p
            .command(&["run", "--jobs", "1", "experiments/tiny.toml"])
            .env("HARNESS_FAULT", fault)
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{fault}: the run was not killed: {}",
            stderr(&out)
        );
        let again = run_ok(&p, &["run", "experiments/tiny.toml"]);
        assert_eq!(numbers(&p), expected, "{fault}: rows differ after resuming");
        if fault.starts_with("pretrain") {
            assert!(
                again.contains("a pre-training stopped before it finished"),
                "{again}"
            );
        }
        let leftovers: Vec<String> = fs::read_dir(p.path("results/tiny"))
            .unwrap()
            .chain(fs::read_dir(p.path("cache/checkpoints")).unwrap())
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.') && n != ".lock")
            .collect();
        assert!(leftovers.is_empty(), "{fault}: {leftovers:?}");
    }
}

#[test]
fn a_damaged_checkpoint_is_noticed_trained_again_and_its_cells_rerun() {
    let (p, expected) = reference();
    let dir = checkpoint(&p);
    damage(&dir.join("backbone.bpk"), 100);
    let out = run_ok(&p, &["run", "experiments/tiny.toml"]);
    assert!(
        out.contains("does not verify") && out.contains(&dir.display().to_string()),
        "{out}"
    );
    assert!(out.contains("backbone.bpk has sha256"), "{out}");
    assert!(out.contains("8 finished, 8 to run"), "{out}");
    assert_eq!(numbers(&p), expected);

    // A truncated file too, and the next run finds everything in order.
    let file = dir.join("stem.bpk");
    let bytes = fs::read(&file).unwrap();
    fs::write(&file, &bytes[..bytes.len() / 3]).unwrap();
    let out = run_ok(&p, &["run", "experiments/tiny.toml"]);
    assert!(out.contains("does not verify"), "{out}");
    assert_eq!(numbers(&p), expected);
    let out = run_ok(&p, &["run", "experiments/tiny.toml"]);
    assert!(out.contains("16 finished, 0 to run"), "{out}");
}

#[test]
fn rows_made_from_another_checkpoint_than_the_cached_one_run_again() {
    let (p, expected) = reference();
    let dir = checkpoint(&p);
    let key = dir.file_name().unwrap().to_string_lossy().into_owned();
    // Another pre-training (another seed), put in place of the first with a consistent meta.json.
    p.edit(
        "experiments/tiny.toml",
        "learning_rate = 3e-3",
        "learning_rate = 3e-3\nseed = 7",
    );
    run_ok(&p, &["run", "--no-report", "experiments/tiny.toml"]);
    let other = fs::read_dir(p.path("cache/checkpoints"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|d| d.file_name().unwrap().to_string_lossy() != key)
        .unwrap();
    fs::remove_dir_all(&dir).unwrap();
    fs::create_dir(&dir).unwrap();
    for name in ["stem.bpk", "backbone.bpk"] {
        fs::copy(other.join(name), dir.join(name)).unwrap();
    }
    let meta = fs::read_to_string(other.join("meta.json")).unwrap();
    let other_key = other.file_name().unwrap().to_string_lossy().into_owned();
    fs::write(dir.join("meta.json"), meta.replace(&other_key, &key)).unwrap();
    p.edit("experiments/tiny.toml", "\nseed = 7", "");

    let out = run_ok(&p, &["run", "experiments/tiny.toml"]);
    assert!(
        out.contains("8 to run") && out.contains("made from other inputs"),
        "{out}"
    );
    let now = numbers(&p);
    let changed = expected.iter().filter(|(f, v)| now[*f] != **v).count();
    assert!(changed > 0 && changed <= 8, "{changed} rows changed");
    let weights: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    for r in p.rows("tiny").iter().filter(|r| r.source == "source") {
        assert_eq!(
            r.checkpoint_sha256.as_deref(),
            weights["weights_sha256"].as_str(),
            "rows record the checkpoint they were made from"
        );
    }
}

#[test]
fn a_copy_or_a_truncated_row_file_is_refused_until_doctor_moves_it_aside() {
    let (p, expected) = reference();
    let files = p.row_files("tiny");
    let copy = p.path("results/tiny/backup copy.parquet");
    fs::copy(&files[0], &copy).unwrap();
    for cmd in ["run", "report", "plan"] {
        let out = p.harness(&[cmd, "experiments/tiny.toml"]);
        assert!(!out.status.success(), "{cmd} counted a copy");
        let err = stderr(&out);
        assert!(
            err.contains("backup copy.parquet") && err.contains("harness doctor --repair"),
            "{cmd}: {err}"
        );
    }
    let truncated = &files[1];
    let bytes = fs::read(truncated).unwrap();
    fs::write(truncated, &bytes[..bytes.len() / 2]).unwrap();
    let out = p.harness(&["doctor", "experiments/tiny.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("cannot be read") && text.contains("not named by"),
        "{text}"
    );

    run_ok(&p, &["doctor", "--repair", "experiments/tiny.toml"]);
    assert!(
        p.path("results/tiny/quarantine/backup copy.parquet")
            .is_file()
    );
    assert!(!copy.exists() && !truncated.exists());
    let out = run_ok(&p, &["run", "experiments/tiny.toml"]);
    assert!(out.contains("15 finished, 1 to run"), "{out}");
    assert_eq!(numbers(&p), expected);
    let report = fs::read_to_string(p.path("reports/tiny/report.md")).unwrap();
    assert!(report.contains("16 cells"), "{report}");
}

#[test]
fn a_second_run_on_the_same_store_is_refused_while_the_first_runs() {
    let p = Project::tiny();
    let mut first = p
        .command(&["run", "--jobs", "1", "experiments/tiny.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while p.row_files("tiny").is_empty() {
        assert!(Instant::now() < deadline, "no rows appeared");
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended too soon"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = p.harness(&["run", "experiments/tiny.toml"]);
    let still_running = first.try_wait().unwrap().is_none();
    assert!(!second.status.success(), "two runs wrote into one store");
    let err = stderr(&second);
    assert!(
        err.contains("another harness run is writing into")
            && err.contains(&format!("process {}", first.id())),
        "{err}"
    );
    assert!(still_running, "the test did not overlap the runs");
    assert!(
        first.wait().unwrap().success(),
        "the first run was disturbed"
    );
    assert_eq!(p.rows("tiny").len(), 16);
}

#[test]
fn rows_record_the_build_and_the_machine_not_the_directory_the_run_starts_in() {
    let p = Project::tiny();
    let git = |args: &[&str], dir: &Path| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // The project is another repository, with uncommitted changes.
    let dir = p.dir.path();
    git(&["init", "-q"], dir);
    git(
        &[
            "-c",
            "user.email=t@t",
            "-c",
            "user.name=t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        dir,
    );
    fs::write(p.path("tracked"), "1").unwrap();
    git(&["add", "tracked"], dir);
    let theirs = git(&["rev-parse", "HEAD"], dir);
    let ours = git(
        &["rev-parse", "HEAD"],
        Path::new(env!("CARGO_MANIFEST_DIR")),
    );
    run_ok(&p, &["run", "experiments/tiny.toml"]);
    for r in p.rows("tiny") {
        assert_eq!(r.git_commit.as_deref(), Some(ours.as_str()), "{theirs}");
        assert!(r.cpu.as_deref().is_some_and(|c| !c.is_empty()));
        assert!(r.simd.is_some());
    }
    let report = fs::read_to_string(p.path("reports/tiny/report.md")).unwrap();
    assert!(
        !report.contains(&theirs) && report.contains(&ours),
        "{report}"
    );
}

#[test]
fn a_report_warns_when_an_arm_mixes_builds_or_machines() {
    let (p, _) = reference();
    let store = harness_results::ResultStore::open(&p.path("results"), "tiny");
    let mut row = p
        .rows("tiny")
        .into_iter()
        .find(|r| r.source == "scratch")
        .unwrap();
    row.cpu = Some("Another CPU".into());
    row.git_commit = Some("0123456789abcdef".into());
    store.write(&row).unwrap();
    run_ok(&p, &["report", "experiments/tiny.toml"]);
    let report = fs::read_to_string(p.path("reports/tiny/report.md")).unwrap();
    assert!(
        report.contains("come from 2 builds") && report.contains("come from 2 kinds of machine"),
        "{report}"
    );
}

#[test]
fn a_killed_run_is_in_runs_jsonl_up_to_its_last_cell() {
    let p = Project::tiny();
    let out = p
        .command(&["run", "--jobs", "1", "experiments/tiny.toml"])
        .env("HARNESS_FAULT", "between-cells:6")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9));
    run_ok(&p, &["run", "experiments/tiny.toml"]);
    let text = fs::read_to_string(p.path("results/tiny/runs.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let killed: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["run_id"] == records[0]["run_id"])
        .collect();
    let last = killed.last().unwrap();
    assert_eq!(last["complete"], false);
    assert_eq!(last["cells_run"], 5, "{text}");
    assert_eq!(records.last().unwrap()["complete"], true);
    // The report's wall time covers both runs, the killed one and the one that finished.
    let report = fs::read_to_string(p.path("reports/tiny/report.md")).unwrap();
    assert!(report.contains("**Wall time of its 2 runs**"), "{report}");
}

#[test]
fn row_files_follow_the_umask_and_stale_pretraining_folders_are_removed() {
    let p = Project::tiny();
    let stale = p.path("cache/checkpoints/.pretrain-4194000-abcdef");
    fs::create_dir_all(&stale).unwrap();
    let harness = env!("CARGO_BIN_EXE_harness");
    let mut shell = std::process::Command::new("sh");
    shell
        .args([
            "-c",
            &format!("umask 027; exec {harness} run experiments/tiny.toml"),
        ])
        .current_dir(p.dir.path())
        .env("HARNESS_CACHE", p.path("cache"))
        .env("RAYON_NUM_THREADS", "1");
    let out = shell.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stale.exists(),
        "the folder of a dead pre-training was left"
    );
    for f in p.row_files("tiny") {
        let mode = fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "{}", f.display());
    }
}

#[test]
fn fetch_of_an_unknown_id_is_bad_input() {
    let p = Project::tiny();
    let out = p.harness(&["fetch", "nosuch"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("unknown id `nosuch`"));
}

#[test]
fn rows_record_the_validation_fraction_actually_held_out() {
    let (p, _) = reference();
    for r in p.rows("tiny") {
        let applied = r.validation_fraction_applied.unwrap();
        assert!((applied - r.n_validation as f64 / r.n_train as f64).abs() < 1e-12);
    }
}

#[test]
fn rows_written_before_a_column_existed_still_count() {
    use polars::prelude::*;
    let (p, expected) = reference();
    // Rewrite one row file without the columns added since (as an older harness wrote it).
    let file = p.row_files("tiny")[0].clone();
    let mut frame = ParquetReader::new(fs::File::open(&file).unwrap())
        .finish()
        .unwrap();
    for column in ["cpu", "simd", "validation_fraction_applied"] {
        frame = frame.drop(column).unwrap();
    }
    ParquetWriter::new(fs::File::create(&file).unwrap())
        .finish(&mut frame)
        .unwrap();
    let out = run_ok(&p, &["run", "experiments/tiny.toml"]);
    assert!(out.contains("16 finished, 0 to run"), "{out}");
    assert_eq!(numbers(&p), expected);
    assert_eq!(p.rows("tiny").iter().filter(|r| r.cpu.is_none()).count(), 1);
}

/// The final job of a Slurm submission reads the experiment files again to write the reports
/// and plan the next round; a file edited since `harness submit` read it stops that job before
/// it writes or submits anything. The job runs here without Slurm, from a submission folder
/// shaped as `harness submit` writes it, with every cell finished (so no next round).
#[test]
fn the_final_slurm_job_stops_when_an_experiment_file_changed_since_the_submission() {
    let p = Project::tiny();
    run_ok(&p, &["run", "experiments/tiny.toml"]);
    fs::remove_dir_all(p.path("reports/tiny")).unwrap();
    let file = p.path("experiments/tiny.toml");
    let text = fs::read_to_string(&file).unwrap();
    let folder = p.path("results/.slurm/20261205T000000.000Z");
    fs::create_dir_all(&folder).unwrap();
    let submission = serde_json::json!({
        "id": "20261205T000000.000Z",
        "files": [file],
        "options": {
            "partition": null, "time": "2:00:00", "mem": "4G", "cpus_per_task": 1,
            "throttle": null, "cells_per_task": 8, "extra": []
        },
        "pretrain": [],
        "arrays": [],
        "finish": { "script": "finish.sh", "id": null },
        "read": [[file, text]],
    });
    fs::write(folder.join("submission.json"), submission.to_string()).unwrap();
    let (file_arg, folder_arg) = (file.to_str().unwrap(), folder.to_str().unwrap());
    let finish = || {
        p.harness(&[
            "slurm-task",
            file_arg,
            "--submission",
            folder_arg,
            "--finish",
        ])
    };

    // As submitted: the job writes the report.
    let out = finish();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(p.path("reports/tiny/report.md").exists());
    fs::remove_dir_all(p.path("reports/tiny")).unwrap();

    // A comment added since is an edit too: the job stops, names the file, writes nothing.
    fs::write(&file, format!("# one more seed later\n{text}")).unwrap();
    let out = finish();
    assert!(!out.status.success(), "the final job went on");
    let said = stderr(&out);
    assert!(
        said.contains(&format!(
            "{} changed since `harness submit`",
            file.display()
        )),
        "{said}"
    );
    assert!(!p.path("reports/tiny").exists(), "a report was written");
}
