//! `harness submit --slurm` and `harness status`: the matrix as Slurm jobs.
//!
//! Every cell is independent, seeded by itself and written as its own atomic row, so a cell's
//! row does not depend on where it ran: Slurm runs the cells, the result store gathers them.
//! A submission is one pre-training job per checkpoint the cache lacks, then job arrays over
//! the unfinished cells (each array task runs a bounded batch of them, after the pre-training
//! its cells need: `afterok`), then a final job, after every array (`afterany`), that writes
//! the reports and, when the plan grew (learning rates chosen by pilots, a ceiling, more
//! seeds), submits the next round the same way. Scripts, logs and the job ids live in
//! `RESULTS/.slurm/SUBMISSION/`; `submission.json` there is what `harness status` reads.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use harness_results::ResultStore;
use harness_spec::Cell;
use serde::{Deserialize, Serialize};

use crate::Paths;
use crate::load::{Loaded, load};
use crate::progress::Display;

/// Where a submission keeps its scripts, logs and record, under the results folder.
pub const SUBMISSIONS: &str = ".slurm";

/// What every job of a submission asks Slurm for (`harness submit --help`).
#[derive(clap::Args, Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SlurmOptions {
    /// Partition of every job (default: the cluster's default partition).
    #[arg(long)]
    pub partition: Option<String>,
    /// Time limit of each job, in Slurm's format (e.g. 30:00, 2:00:00, 1-00:00:00).
    #[arg(long, default_value = "2:00:00")]
    pub time: String,
    /// Memory of each job, in Slurm's format (e.g. 4G).
    #[arg(long, default_value = "4G")]
    pub mem: String,
    /// CPUs of each job; its cells compute with this many threads.
    #[arg(long, default_value_t = 1)]
    pub cpus_per_task: usize,
    /// At most this many tasks of one array run at once (`--array=…%N`; default: no limit).
    #[arg(long)]
    pub throttle: Option<usize>,
    /// Cells one array task runs, one after the other.
    #[arg(long, default_value_t = 8)]
    pub cells_per_task: usize,
    /// An extra `#SBATCH` line for every job, without the `#SBATCH ` (e.g. `--account=lab`
    /// or `--qos=short`); repeat for several.
    #[arg(long = "sbatch", value_name = "OPTION")]
    pub extra: Vec<String>,
}

/// One job of a submission, once `sbatch` has taken it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Job {
    /// The script, in the submission's folder.
    pub script: String,
    /// Slurm's job id (of the array, for an array); none in a dry run or before `sbatch`.
    pub id: Option<String>,
}

/// A pre-training job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PretrainJob {
    pub key: String,
    pub source: String,
    pub job: Job,
}

/// A job array: task `i` runs the cells of `batches[i]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ArrayJob {
    /// The experiment (its index among the submission's files) the cells belong to, and its
    /// name.
    pub experiment: usize,
    pub name: String,
    /// The pre-training keys (of this submission) whose jobs must end well first.
    pub after: Vec<String>,
    /// Cell fingerprints, a batch per task.
    pub batches: Vec<Vec<String>>,
    pub job: Job,
}

/// What `harness submit` submitted, as recorded in `submission.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Submission {
    /// The folder's name: when it was made (UTC), unique per submission.
    pub id: String,
    /// The experiment files, absolute.
    pub files: Vec<PathBuf>,
    pub options: SlurmOptions,
    pub pretrain: Vec<PretrainJob>,
    pub arrays: Vec<ArrayJob>,
    /// Writes the reports, and submits the next round when the plan grew.
    pub finish: Job,
    /// Every experiment file and every file it includes, (path, text), as `harness submit`
    /// read them: the final job stops if one has changed since (absent in older submissions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<(PathBuf, String)>,
}

/// The folders and binary every job uses, absolute: the nodes must see the same paths.
#[derive(Debug, Clone)]
pub struct Where {
    pub binary: PathBuf,
    pub workdir: PathBuf,
    pub manifests: PathBuf,
    pub results: PathBuf,
    pub reports: PathBuf,
    pub cache: PathBuf,
    /// This submission's folder.
    pub folder: PathBuf,
}

impl Where {
    fn of(paths: &Paths, folder: PathBuf) -> Result<Where> {
        let absolute =
            |p: &Path| std::path::absolute(p).with_context(|| format!("{}", p.display()));
        Ok(Where {
            binary: std::env::current_exe().context("finding the harness binary")?,
            workdir: std::env::current_dir().context("the working folder")?,
            manifests: absolute(&paths.manifests)?,
            results: absolute(&paths.results)?,
            reports: absolute(&paths.reports)?,
            cache: absolute(&paths.cache_dir())?,
            folder: absolute(&folder)?,
        })
    }
}

/// Quotes `s` for a POSIX shell.
fn quoted(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The batch script of one job: its `#SBATCH` lines, the folders every harness process of
/// the submission reads, and the harness command (`args` after the binary). `array` makes
/// its log name carry the task index. Dependencies and the array's range are given to `sbatch`
/// on its command line, so the same script serves any round.
pub fn script(
    name: &str,
    options: &SlurmOptions,
    at: &Where,
    array: bool,
    args: &[String],
) -> String {
    let mut s = String::from("#!/bin/bash\n");
    let log = if array { "%x-%A_%a.out" } else { "%x-%j.out" };
    let mut sbatch = vec![
        format!("--job-name={name}"),
        format!("--output={}", at.folder.join(log).display()),
        format!("--time={}", options.time),
        format!("--mem={}", options.mem),
        format!("--cpus-per-task={}", options.cpus_per_task),
        "--ntasks=1".to_string(),
    ];
    if let Some(p) = &options.partition {
        sbatch.push(format!("--partition={p}"));
    }
    sbatch.extend(options.extra.iter().cloned());
    for line in sbatch {
        let _ = writeln!(s, "#SBATCH {line}");
    }
    let _ = writeln!(
        s,
        "# Written by `harness submit --slurm`; `harness status` reads its jobs."
    );
    let _ = writeln!(s, "set -euo pipefail");
    let _ = writeln!(s, "cd {}", quoted(&at.workdir.display().to_string()));
    for (var, path) in [
        ("HARNESS_MANIFESTS", &at.manifests),
        ("HARNESS_RESULTS", &at.results),
        ("HARNESS_REPORTS", &at.reports),
        ("HARNESS_CACHE", &at.cache),
    ] {
        let _ = writeln!(s, "export {var}={}", quoted(&path.display().to_string()));
    }
    let command: Vec<String> = std::iter::once(at.binary.display().to_string())
        .chain(args.iter().cloned())
        .map(|a| quoted(&a))
        .collect();
    let _ = writeln!(s, "exec {}", command.join(" "));
    s
}

/// The unfinished cells of each experiment cut into array batches of at most `per_task`
/// cells: one array per (experiment, pre-training key of this submission its cells wait for,
/// if any), batches in the plan's order (small n_train first).
pub fn batches(
    todo: &[(usize, Vec<Cell>)],
    to_pretrain: &BTreeSet<String>,
    per_task: usize,
) -> Vec<(usize, Vec<String>, Vec<Vec<String>>)> {
    let mut groups: BTreeMap<(usize, Vec<String>), Vec<String>> = BTreeMap::new();
    for (experiment, cells) in todo {
        for cell in cells {
            let after: Vec<String> = (cell.pretrain_key.iter())
                .filter(|k| to_pretrain.contains(*k))
                .cloned()
                .collect();
            (groups.entry((*experiment, after)).or_default()).push(cell.fingerprint.clone());
        }
    }
    (groups.into_iter())
        .map(|((experiment, after), cells)| {
            let batches = cells
                .chunks(per_task.max(1))
                .map(<[String]>::to_vec)
                .collect();
            (experiment, after, batches)
        })
        .collect()
}

/// The `sbatch` arguments of a job: its array range and throttle, and its dependencies.
pub fn sbatch_args(
    array_len: Option<usize>,
    throttle: Option<usize>,
    dependency: Option<String>,
) -> Vec<String> {
    let mut args = vec!["--parsable".to_string()];
    if let Some(n) = array_len {
        let range = format!("0-{}", n.saturating_sub(1));
        args.push(match throttle {
            Some(t) => format!("--array={range}%{t}"),
            None => format!("--array={range}"),
        });
    }
    if let Some(d) = dependency {
        args.push(format!("--dependency={d}"));
    }
    args
}

/// Runs `sbatch ARGS SCRIPT` and returns the job id it prints.
fn sbatch(args: &[String], script: &Path) -> Result<String> {
    let out = Command::new("sbatch")
        .args(args)
        .arg(script)
        .output()
        .context("running sbatch (is Slurm's client installed and on PATH?)")?;
    anyhow::ensure!(
        out.status.success(),
        "sbatch {} {} failed: {}",
        args.join(" "),
        script.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // `--parsable` prints `ID` or `ID;CLUSTER`.
    let id = text.trim().split(';').next().unwrap_or("").to_string();
    anyhow::ensure!(
        !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
        "sbatch printed {text:?}, not a job id"
    );
    Ok(id)
}

/// The state of every job and array task `scontrol` still knows among `ids`: job or
/// `ARRAY_TASK` id → (state, log path). Jobs Slurm has forgotten (ended more than its
/// `MinJobAge` ago) are absent.
fn job_states(ids: &[&str]) -> BTreeMap<String, (String, String)> {
    let mut states = BTreeMap::new();
    for id in ids {
        let Ok(out) = Command::new("scontrol")
            .args(["-o", "show", "job", id])
            .output()
        else {
            continue;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                    .map(str::to_string)
            };
            let Some(state) = field("JobState") else {
                continue;
            };
            let log = field("StdOut").unwrap_or_default();
            match (field("ArrayJobId"), field("ArrayTaskId")) {
                // A pending array's tasks share one line, with a range of task ids.
                (Some(array), Some(tasks)) => {
                    for t in array_tasks(&tasks) {
                        let log = log.replace("%a", &t.to_string());
                        states.insert(format!("{array}_{t}"), (state.clone(), log));
                    }
                }
                _ => {
                    states.insert(field("JobId").unwrap_or_default(), (state, log));
                }
            }
        }
    }
    states
}

/// Whether a Slurm state is one a job or task ends in badly.
fn failed_state(state: &str) -> bool {
    matches!(
        state,
        "FAILED"
            | "TIMEOUT"
            | "CANCELLED"
            | "OUT_OF_MEMORY"
            | "NODE_FAIL"
            | "BOOT_FAIL"
            | "DEADLINE"
            | "PREEMPTED"
    )
}

/// Whether a Slurm state is one a job has yet to leave.
fn active_state(state: &str) -> bool {
    matches!(
        state,
        "PENDING"
            | "RUNNING"
            | "CONFIGURING"
            | "COMPLETING"
            | "SUSPENDED"
            | "REQUEUED"
            | "RESIZING"
    )
}

/// Every submission recorded under the results folder that covers one of `names`, oldest
/// first.
fn submissions(results: &Path, names: &BTreeSet<String>) -> Vec<(PathBuf, Submission)> {
    let Ok(entries) = std::fs::read_dir(results.join(SUBMISSIONS)) else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, Submission)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path().join("submission.json")).ok()?;
            Some((e.path(), serde_json::from_str::<Submission>(&text).ok()?))
        })
        // Every submission has an array (it submits nothing without a cell to run).
        .filter(|(_, s)| s.arrays.iter().any(|a| names.contains(&a.name)))
        .collect();
    found.sort_by(|a, b| a.1.id.cmp(&b.1.id));
    found
}

/// The ids of the jobs of `s` that Slurm has submitted.
fn job_ids(s: &Submission) -> Vec<&str> {
    (s.pretrain.iter().map(|p| &p.job))
        .chain(s.arrays.iter().map(|a| &a.job))
        .chain(std::iter::once(&s.finish))
        .filter_map(|j| j.id.as_deref())
        .collect()
}

/// Refuses to go on while a submission of the same experiments still has jobs queued or
/// running (but the job this runs in, when the final job submits the next round): both would
/// run the same cells, and `harness run` would clear the temporary row files of running
/// tasks. Without a submission folder (or without Slurm) there is nothing to ask.
pub fn refuse_while_active(results: &Path, names: &BTreeSet<String>, then: &str) -> Result<()> {
    let own = std::env::var("SLURM_JOB_ID").ok();
    for (folder, s) in submissions(results, names) {
        let ids: Vec<&str> = job_ids(&s)
            .into_iter()
            .filter(|id| Some(*id) != own.as_deref())
            .collect();
        let active: Vec<String> = (job_states(&ids).into_iter())
            .filter(|(_, (state, _))| active_state(state))
            .map(|(id, _)| id)
            .collect();
        if !active.is_empty() {
            anyhow::bail!(
                "submission {} ({}) still has jobs queued or running: {}; wait for them (harness status) or cancel them (scancel {}), then {then}",
                s.id,
                folder.display(),
                active.join(", "),
                ids.join(" ")
            );
        }
    }
    Ok(())
}

/// `harness submit --slurm`.
pub fn submit(
    files: &[PathBuf],
    paths: &Paths,
    options: &SlurmOptions,
    dry_run: bool,
) -> Result<()> {
    let display = Display::new();
    let (manifests, loaded) = load(files, paths)?;
    let names: BTreeSet<String> = loaded.iter().map(|l| l.experiment.name.clone()).collect();
    if !dry_run {
        refuse_while_active(&paths.results, &names, "submit again")?;
    }
    // Datasets, tokenizers and weights are fetched and verified here, before any job exists.
    let (todo, keys) = crate::run::work_left(&loaded, &manifests, paths, &display)?;
    let cache = paths.cache_dir();
    let to_pretrain: BTreeSet<String> = (keys.into_iter())
        .filter(|k| {
            !matches!(
                harness_train::check_pretrained(&cache, k),
                harness_train::CachedCheckpoint::Verified(_)
            )
        })
        .collect();
    let cells: usize = todo.iter().map(|(_, c)| c.len()).sum();
    if cells == 0 {
        display.line("nothing to submit: every cell has its row; writing the reports here");
        for l in &loaded {
            let out = crate::run::write_experiment_report(l, paths)?;
            display.line(format!("report: {}", out.display()));
        }
        return Ok(());
    }
    let id = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let at = Where::of(paths, paths.results.join(SUBMISSIONS).join(&id))?;
    let mut submission = plan_submission(&loaded, &todo, &to_pretrain, options, &id)?;
    if dry_run {
        print!("{}", dry_run_text(&submission, &at, files, options));
        return Ok(());
    }
    std::fs::create_dir_all(&at.folder)
        .with_context(|| format!("creating {}", at.folder.display()))?;
    send(&mut submission, files, options, &at)?;
    display.line(summary(&submission, &at, cells));
    Ok(())
}

/// The arguments of `harness slurm-task` for one job of the submission in `at.folder`.
fn task_args(files: &[PathBuf], at: &Where, what: &[&str]) -> Vec<String> {
    let mut args = vec!["slurm-task".to_string()];
    args.extend(files.iter().map(|f| {
        std::path::absolute(f)
            .unwrap_or_else(|_| f.clone())
            .display()
            .to_string()
    }));
    args.push("--submission".into());
    args.push(at.folder.display().to_string());
    args.extend(what.iter().map(|w| w.to_string()));
    args
}

/// The submission's jobs and their scripts' names, before anything is written or submitted.
fn plan_submission(
    loaded: &[Loaded],
    todo: &[(usize, Vec<Cell>)],
    to_pretrain: &BTreeSet<String>,
    options: &SlurmOptions,
    id: &str,
) -> Result<Submission> {
    let all = crate::load::merged(loaded);
    let pretrain = (to_pretrain.iter().enumerate())
        .map(|(i, key)| -> Result<PretrainJob> {
            let job = all.job(key).context("job of a planned key")?;
            Ok(PretrainJob {
                key: key.clone(),
                source: job.source.clone(),
                job: Job {
                    script: format!("pretrain-{i}.sh"),
                    id: None,
                },
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let arrays = (batches(todo, to_pretrain, options.cells_per_task)
        .into_iter()
        .enumerate())
    .map(|(i, (experiment, after, batches))| ArrayJob {
        experiment,
        name: loaded[experiment].experiment.name.clone(),
        after,
        batches,
        job: Job {
            script: format!("cells-{i}.sh"),
            id: None,
        },
    })
    .collect();
    let files = (loaded.iter())
        .map(|l| {
            std::path::absolute(&l.experiment.path).unwrap_or_else(|_| l.experiment.path.clone())
        })
        .collect();
    Ok(Submission {
        id: id.to_string(),
        files,
        options: options.clone(),
        pretrain,
        arrays,
        finish: Job {
            script: "finish.sh".into(),
            id: None,
        },
        read: crate::load::file_texts(loaded),
    })
}

/// Each job's script and `sbatch` arguments; dependencies name the jobs by `$VARIABLE`s in a
/// dry run, by id once submitted (`ids`: pre-training key or array index → job id).
struct Scripts {
    pretrain: Vec<(String, String)>,
    arrays: Vec<(String, String)>,
    finish: (String, String),
}

fn scripts(s: &Submission, files: &[PathBuf], options: &SlurmOptions, at: &Where) -> Scripts {
    let name = |what: &str| format!("harness-{what}");
    let pretrain = (s.pretrain.iter().enumerate())
        .map(|(i, p)| {
            let args = task_args(files, at, &["--pretrain", &i.to_string()]);
            (
                p.job.script.clone(),
                script(
                    &name(&format!("pretrain-{}", p.source)),
                    options,
                    at,
                    false,
                    &args,
                ),
            )
        })
        .collect();
    let arrays = (s.arrays.iter().enumerate())
        .map(|(i, _)| {
            let args = task_args(files, at, &["--array", &i.to_string()]);
            (
                s.arrays[i].job.script.clone(),
                script(&name(&format!("cells-{i}")), options, at, true, &args),
            )
        })
        .collect();
    let finish = (
        s.finish.script.clone(),
        script(
            &name("finish"),
            options,
            at,
            false,
            &task_args(files, at, &["--finish"]),
        ),
    );
    Scripts {
        pretrain,
        arrays,
        finish,
    }
}

/// What `--dry-run` prints: every script, then the `sbatch` commands in order.
fn dry_run_text(s: &Submission, at: &Where, files: &[PathBuf], options: &SlurmOptions) -> String {
    let scripts = scripts(s, files, options, at);
    let mut out = String::new();
    let all = (scripts.pretrain.iter())
        .chain(&scripts.arrays)
        .chain(std::iter::once(&scripts.finish));
    for (file, text) in all {
        let _ = writeln!(out, "# ---- {}\n{text}", at.folder.join(file).display());
    }
    let _ = writeln!(
        out,
        "# ---- submitted in this order (nothing was written or submitted):"
    );
    for (i, p) in s.pretrain.iter().enumerate() {
        let args = sbatch_args(None, None, None);
        let _ = writeln!(out, "P{i}=$(sbatch {} {})", args.join(" "), p.job.script);
    }
    for (i, a) in s.arrays.iter().enumerate() {
        let after: Vec<String> = (a.after.iter())
            .filter_map(|k| s.pretrain.iter().position(|p| &p.key == k))
            .map(|p| format!("$P{p}"))
            .collect();
        let dependency = (!after.is_empty()).then(|| format!("afterok:{}", after.join(":")));
        let args = sbatch_args(Some(a.batches.len()), options.throttle, dependency);
        let _ = writeln!(
            out,
            "A{i}=$(sbatch {} {})   # {} tasks",
            args.join(" "),
            a.job.script,
            a.batches.len()
        );
    }
    let all: Vec<String> = (0..s.pretrain.len())
        .map(|i| format!("$P{i}"))
        .chain((0..s.arrays.len()).map(|i| format!("$A{i}")))
        .collect();
    let args = sbatch_args(None, None, Some(format!("afterany:{}", all.join(":"))));
    let _ = writeln!(out, "sbatch {} {}", args.join(" "), s.finish.script);
    out
}

/// Writes the scripts and the record, then submits every job in order, recording each id as
/// soon as `sbatch` gives it (a failure part-way leaves the record of what was submitted).
fn send(s: &mut Submission, files: &[PathBuf], options: &SlurmOptions, at: &Where) -> Result<()> {
    let scripts = scripts(s, files, options, at);
    let all = (scripts.pretrain.iter())
        .chain(&scripts.arrays)
        .chain(std::iter::once(&scripts.finish));
    for (file, text) in all {
        std::fs::write(at.folder.join(file), text).with_context(|| format!("writing {file}"))?;
    }
    let record = |s: &Submission| -> Result<()> {
        let path = at.folder.join("submission.json");
        std::fs::write(&path, serde_json::to_string_pretty(s)? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    };
    record(s)?;
    for i in 0..s.pretrain.len() {
        let id = sbatch(
            &sbatch_args(None, None, None),
            &at.folder.join(&s.pretrain[i].job.script),
        )?;
        s.pretrain[i].job.id = Some(id);
        record(s)?;
    }
    for i in 0..s.arrays.len() {
        let after: Vec<&str> = (s.arrays[i].after.iter())
            .filter_map(|k| s.pretrain.iter().find(|p| &p.key == k)?.job.id.as_deref())
            .collect();
        let dependency = (!after.is_empty()).then(|| format!("afterok:{}", after.join(":")));
        let args = sbatch_args(
            Some(s.arrays[i].batches.len()),
            options.throttle,
            dependency,
        );
        let id = sbatch(&args, &at.folder.join(&s.arrays[i].job.script))?;
        s.arrays[i].job.id = Some(id);
        record(s)?;
    }
    let before: Vec<&str> = job_ids(s);
    let dependency = (!before.is_empty()).then(|| format!("afterany:{}", before.join(":")));
    let id = sbatch(
        &sbatch_args(None, None, dependency),
        &at.folder.join(&s.finish.script),
    )?;
    s.finish.id = Some(id);
    record(s)
}

/// What `harness submit` says once the jobs are in.
fn summary(s: &Submission, at: &Where, cells: usize) -> String {
    let mut parts = Vec::new();
    for p in &s.pretrain {
        parts.push(format!(
            "pre-training of {} (job {})",
            p.source,
            p.job.id.as_deref().unwrap_or("?")
        ));
    }
    for a in &s.arrays {
        parts.push(format!(
            "array {} of {} task{}{}",
            a.job.id.as_deref().unwrap_or("?"),
            a.batches.len(),
            if a.batches.len() == 1 { "" } else { "s" },
            if a.after.is_empty() {
                String::new()
            } else {
                " after its pre-training".into()
            }
        ));
    }
    parts.push(format!(
        "the reports (job {}) after them all",
        s.finish.id.as_deref().unwrap_or("?")
    ));
    format!(
        "submitted {cells} cells: {}; scripts and logs in {}; follow with `harness status`",
        parts.join(", "),
        at.folder.display()
    )
}

/// What `harness slurm-task` runs: one job of a submission.
#[derive(Debug, Clone, Copy)]
pub enum TaskKind {
    Pretrain(usize),
    /// An array's task, its index from `SLURM_ARRAY_TASK_ID`.
    Cells(usize),
    Finish,
}

/// `harness slurm-task`: runs one job of the submission recorded in `folder`.
pub fn task(
    files: &[PathBuf],
    paths: &Paths,
    folder: &Path,
    kind: TaskKind,
    threads: usize,
) -> Result<()> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build_global()
        .context("setting the thread count")?;
    let text = std::fs::read_to_string(folder.join("submission.json"))
        .with_context(|| format!("reading {}", folder.join("submission.json").display()))?;
    let submission: Submission = serde_json::from_str(&text)?;
    match kind {
        TaskKind::Pretrain(i) => {
            let job = submission
                .pretrain
                .get(i)
                .context("no such pre-training job")?;
            crate::run::pretrain_one(files, paths, &job.key)
        }
        TaskKind::Cells(array) => {
            let a = submission.arrays.get(array).context("no such array")?;
            let task: usize = std::env::var("SLURM_ARRAY_TASK_ID")
                .context(
                    "SLURM_ARRAY_TASK_ID is not set: this runs as a task of a Slurm job array",
                )?
                .parse()
                .context("SLURM_ARRAY_TASK_ID")?;
            let batch = a.batches.get(task).context("no such array task")?;
            let submitted = std::fs::metadata(folder.join("submission.json"))?.modified()?;
            crate::run::run_listed(files, paths, a.experiment, batch, submitted)
        }
        TaskKind::Finish => finish(files, paths, &submission),
    }
}

/// The final job: writes the reports and, when the plan now holds cells that no job of this
/// submission ran (the rates the pilots chose, a ceiling, more seeds), submits them the same
/// way. Cells of this submission still without a row (a task failed) are left to a
/// resubmission, which `harness status` points to. An experiment file or include edited since
/// the submission stops it first, as it stops `harness run` between rounds.
fn finish(files: &[PathBuf], paths: &Paths, s: &Submission) -> Result<()> {
    let (_, loaded) = load(files, paths)?;
    // A submission written before `read` existed has nothing to compare with.
    let changed = match s.read.is_empty() {
        true => None,
        false => crate::load::changed_text(&s.read, &crate::load::file_texts(&loaded)),
    };
    if let Some(file) = changed {
        anyhow::bail!(
            "{} changed since `harness submit` read it: the reports would quote another file \
             than the one these rows were planned from, and the next round would follow another \
             plan. No report was written and nothing was submitted; the rows are kept. Run \
             `{}` to go on with the files as they are now",
            file.display(),
            crate::ledger::harness_command("submit --slurm", files)
        );
    }
    let submitted: BTreeSet<&str> = (s.arrays.iter())
        .flat_map(|a| a.batches.iter().flatten())
        .map(String::as_str)
        .collect();
    let mut joined = 0;
    let mut missing = 0;
    for l in &loaded {
        let out = crate::run::write_experiment_report(l, paths)?;
        println!("report: {}", out.display());
        let store = ResultStore::open(&paths.results, &l.experiment.name);
        let done = store.finished();
        for c in l
            .plan
            .cells
            .iter()
            .filter(|c| !done.contains(&c.fingerprint))
        {
            if submitted.contains(c.fingerprint.as_str()) {
                missing += 1;
            } else {
                joined += 1;
            }
        }
    }
    if missing > 0 {
        println!(
            "{missing} cells of this submission have no row (see `harness status`); submit again to rerun them"
        );
    }
    if joined > 0 && missing == 0 {
        println!("{joined} cells joined the plan: submitting the next round");
        submit(files, paths, &s.options, false)?;
    }
    Ok(())
}

/// `harness status`: for each experiment, its cells finished, running, pending, failed and
/// not submitted, from the result store and Slurm; the logs of failed tasks.
pub fn status(files: &[PathBuf], paths: &Paths) -> Result<()> {
    let (_, loaded) = load(files, paths)?;
    let names: BTreeSet<String> = loaded.iter().map(|l| l.experiment.name.clone()).collect();
    let found = submissions(&paths.results, &names);
    let ids: Vec<&str> = found.iter().flat_map(|(_, s)| job_ids(s)).collect();
    let states = job_states(&ids);
    for l in &loaded {
        print_cells(l, &found, &states, paths);
    }
    for (folder, s) in &found {
        print_jobs(folder, s, &states);
    }
    Ok(())
}

/// One experiment's line of `harness status`: its cells by where they stand, then the log of
/// each failed task.
fn print_cells(
    l: &Loaded,
    found: &[(PathBuf, Submission)],
    states: &BTreeMap<String, (String, String)>,
    paths: &Paths,
) {
    let done = ResultStore::open(&paths.results, &l.experiment.name).finished();
    // Each cell's latest task (submissions come oldest first).
    let mut of_cell: BTreeMap<&str, &str> = BTreeMap::new();
    let mut failed_logs = Vec::new();
    for (_, s) in found {
        for a in s.arrays.iter().filter(|a| a.name == l.experiment.name) {
            for (t, batch) in a.batches.iter().enumerate() {
                let key = format!("{}_{t}", a.job.id.as_deref().unwrap_or("?"));
                let (state, log) = states.get(&key).map_or(("UNKNOWN", ""), |(s, l)| (s, l));
                if failed_state(state) {
                    failed_logs.push(format!("{key} {state}: {log}"));
                }
                for fp in batch {
                    of_cell.insert(fp, state);
                }
            }
        }
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &l.plan.cells {
        let what = if done.contains(&c.fingerprint) {
            "finished"
        } else {
            match of_cell.get(c.fingerprint.as_str()).copied() {
                Some("RUNNING" | "COMPLETING") => "running",
                Some("PENDING" | "CONFIGURING" | "REQUEUED") => "pending",
                Some(s) if failed_state(s) => "failed",
                Some(_) => "ended without a row",
                None => "not submitted",
            }
        };
        *counts.entry(what).or_default() += 1;
    }
    let counts: Vec<String> = counts.iter().map(|(w, n)| format!("{n} {w}")).collect();
    println!(
        "experiment {}: {} cells: {}",
        l.experiment.name,
        l.plan.cells.len(),
        counts.join(", ")
    );
    for log in failed_logs {
        println!("  failed task {log}");
    }
}

/// One submission's jobs in `harness status`, each with its state (arrays: how many tasks in
/// each state).
fn print_jobs(folder: &Path, s: &Submission, states: &BTreeMap<String, (String, String)>) {
    println!("submission {} ({}):", s.id, folder.display());
    let forgotten = "no longer known to Slurm";
    let state = |id: &Option<String>| match id.as_deref() {
        None => "not submitted".to_string(),
        Some(id) => match states.get(id) {
            Some((st, _)) => format!("{id} {st}"),
            None => format!("{id} ({forgotten})"),
        },
    };
    for p in &s.pretrain {
        println!("  pre-training of {}: job {}", p.source, state(&p.job.id));
    }
    for a in &s.arrays {
        let id = a.job.id.as_deref().unwrap_or("?");
        let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
        for t in 0..a.batches.len() {
            let st = states
                .get(&format!("{id}_{t}"))
                .map_or(forgotten, |(s, _)| s);
            *by_state.entry(st).or_default() += 1;
        }
        let by_state: Vec<String> = by_state.iter().map(|(s, n)| format!("{n} {s}")).collect();
        println!(
            "  array {id} ({} tasks): {}",
            a.batches.len(),
            by_state.join(", ")
        );
    }
    println!("  reports: job {}", state(&s.finish.id));
}

/// The task indices of an `ArrayTaskId` field: `3`, or a pending range such as `0-15%2` or
/// `1,4-6`.
fn array_tasks(field: &str) -> Vec<usize> {
    let field = field.split('%').next().unwrap_or("");
    let mut tasks = Vec::new();
    for part in field.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    tasks.extend(a..=b);
                }
            }
            None => tasks.extend(part.parse::<usize>().ok()),
        }
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> Where {
        Where {
            binary: "/opt/harness/bin/harness".into(),
            workdir: "/home/me/project".into(),
            manifests: "/home/me/project/data-manifests".into(),
            results: "/shared/results".into(),
            reports: "/home/me/project/reports".into(),
            cache: "/shared/cache dir".into(),
            folder: "/shared/results/.slurm/20261204T120000.000Z".into(),
        }
    }

    #[test]
    fn a_script_asks_for_what_the_options_say_and_runs_the_harness_with_the_shared_folders() {
        let options = SlurmOptions {
            partition: Some("short".into()),
            time: "30:00".into(),
            mem: "2G".into(),
            cpus_per_task: 2,
            throttle: Some(4),
            cells_per_task: 8,
            extra: vec!["--account=lab".into(), "--qos=low".into()],
        };
        let args = vec![
            "slurm-task".to_string(),
            "/home/me/project/experiments/smoke.toml".into(),
            "--array".into(),
            "0".into(),
        ];
        let s = script("harness-cells-0", &options, &at(), true, &args);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "#!/bin/bash");
        for expected in [
            "#SBATCH --job-name=harness-cells-0",
            "#SBATCH --output=/shared/results/.slurm/20261204T120000.000Z/%x-%A_%a.out",
            "#SBATCH --time=30:00",
            "#SBATCH --mem=2G",
            "#SBATCH --cpus-per-task=2",
            "#SBATCH --partition=short",
            "#SBATCH --account=lab",
            "#SBATCH --qos=low",
            "set -euo pipefail",
            "cd /home/me/project",
            "export HARNESS_RESULTS=/shared/results",
            "export HARNESS_CACHE='/shared/cache dir'",
            "exec /opt/harness/bin/harness slurm-task /home/me/project/experiments/smoke.toml --array 0",
        ] {
            assert!(lines.contains(&expected), "{expected:?} missing from\n{s}");
        }
        // Every #SBATCH line comes before the first command, as sbatch requires.
        let last_sbatch = lines
            .iter()
            .rposition(|l| l.starts_with("#SBATCH"))
            .unwrap();
        let first_command = lines.iter().position(|l| l.starts_with("set ")).unwrap();
        assert!(last_sbatch < first_command);
        // A single job's log carries its job id, not an array index; no partition by default.
        let single = script(
            "harness-finish",
            &SlurmOptions::default(),
            &at(),
            false,
            &args,
        );
        assert!(single.contains("%x-%j.out") && !single.contains("%A_%a"));
        assert!(!single.contains("--partition"));
    }

    #[test]
    fn a_pending_arrays_task_range_is_read_task_by_task() {
        assert_eq!(array_tasks("3"), [3]);
        assert_eq!(array_tasks("0-3%2"), [0, 1, 2, 3]);
        assert_eq!(array_tasks("1,4-6"), [1, 4, 5, 6]);
        assert!(array_tasks("").is_empty());
    }

    #[test]
    fn quoting_survives_spaces_and_quotes() {
        assert_eq!(quoted("/a/b-c_d.toml"), "/a/b-c_d.toml");
        assert_eq!(quoted("a b"), "'a b'");
        assert_eq!(quoted("it's"), r"'it'\''s'");
        assert_eq!(quoted(""), "''");
    }

    #[test]
    fn arrays_take_their_range_and_throttle_and_dependencies_on_the_command_line() {
        assert_eq!(
            sbatch_args(Some(5), Some(2), Some("afterok:12:13".into())),
            ["--parsable", "--array=0-4%2", "--dependency=afterok:12:13"]
        );
        assert_eq!(
            sbatch_args(Some(1), None, None),
            ["--parsable", "--array=0-0"]
        );
        assert_eq!(
            sbatch_args(None, None, Some("afterany:7".into())),
            ["--parsable", "--dependency=afterany:7"]
        );
    }

    fn cell(fp: &str, key: Option<&str>) -> Cell {
        Cell {
            experiment: "e".into(),
            target: "t".into(),
            source: "s".into(),
            relation: harness_spec::Relation::None,
            option: harness_spec::TransferOption::Freeze,
            n_train: 10,
            seed: 0,
            model: Default::default(),
            finetune: Default::default(),
            tokenizer: None,
            pretrain_key: key.map(str::to_string),
            network: None,
            control: None,
            rate_choice: None,
            target_content: String::new(),
            fingerprint: fp.into(),
        }
    }

    #[test]
    fn batches_are_bounded_and_cells_wait_only_for_a_pretraining_this_submission_runs() {
        let todo = vec![
            (
                0,
                vec![
                    cell("a", None),
                    cell("b", Some("k1")),
                    cell("c", Some("k2")),
                    cell("d", Some("k1")),
                    cell("e", None),
                    cell("f", None),
                ],
            ),
            (1, vec![cell("g", None)]),
        ];
        // k2's checkpoint is cached already: its cells need not wait.
        let to_pretrain: BTreeSet<String> = ["k1".to_string()].into();
        let got = batches(&todo, &to_pretrain, 2);
        let v = |x: &[&[&str]]| -> Vec<Vec<String>> {
            x.iter()
                .map(|b| b.iter().map(|s| s.to_string()).collect())
                .collect()
        };
        assert_eq!(
            got,
            vec![
                (0, vec![], v(&[&["a", "c"], &["e", "f"]])),
                (0, vec!["k1".to_string()], v(&[&["b", "d"]])),
                (1, vec![], v(&[&["g"]])),
            ]
        );
    }
}
