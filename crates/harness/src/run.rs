//! The commands: load and validate everything first, then fetch data, pre-train, run cells and
//! write rows and reports, in that order, so that bad input never writes a result.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use harness_data::DataCache;
use harness_results::{ReportContext, ResultStore, write_report};
use harness_spec::{Cell, Experiment, ManifestSet, Plan, PretrainJob, expand};
use harness_train::{PretrainOutcome, TrainEvent};
use serde::{Deserialize, Serialize};

use crate::progress::Display;
use crate::workbench::{Workbench, fetch_datasets, fetch_network};
use crate::{Paths, jobs, provenance};

/// An experiment file with its expanded plan.
pub struct Loaded {
    pub experiment: Experiment,
    pub plan: Plan,
}

/// Reads the manifests and every experiment file, and expands them; any error stops here.
pub fn load(files: &[PathBuf], paths: &Paths) -> Result<(ManifestSet, Vec<Loaded>)> {
    let manifests = ManifestSet::load_dir(&paths.manifests)?;
    let mut loaded = Vec::new();
    let mut names = BTreeMap::new();
    for file in files {
        let experiment = Experiment::load(file)?;
        if let Some(other) = names.insert(experiment.name.clone(), file.clone()) {
            anyhow::bail!(harness_spec::SpecError::new(
                file,
                format!(
                    "experiment name `{}` is also used by {}; names pick the results folder, so they must differ",
                    experiment.name,
                    other.display()
                )
            ));
        }
        let plan = expand(&experiment, &manifests)?.for_backend(harness_train::backend().as_str());
        loaded.push(Loaded { experiment, plan });
    }
    Ok((manifests, loaded))
}

/// Fingerprints of rows that need no rerun (every status but `failed`).
fn finished(store: &ResultStore) -> Result<BTreeSet<String>> {
    if store.finished().is_empty() {
        return Ok(BTreeSet::new());
    }
    Ok(store
        .rows()?
        .into_iter()
        .filter(|r| r.status != "failed")
        .map(|r| r.fingerprint)
        .collect())
}

/// One line of `RESULTS/EXPERIMENT/runs.jsonl`: a `harness run` that did work.
#[derive(Serialize, Deserialize)]
pub struct RunRecord {
    pub command: String,
    pub started_at: String,
    pub finished_at: String,
    pub wall_seconds: f64,
    pub cells_run: usize,
    pub pretrainings_run: usize,
    /// Worker processes and threads per job (absent in records written before `--jobs`).
    #[serde(default)]
    pub jobs: Option<usize>,
    #[serde(default)]
    pub threads: Option<usize>,
    /// Peak resident memory of the `harness run` process itself (workers: see the rows).
    #[serde(default)]
    pub peak_rss_mib: Option<f64>,
}

fn command_line(files: &[PathBuf]) -> String {
    let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    format!("harness run {}", files.join(" "))
}

/// How `harness run` spreads its work: `jobs` worker processes (1: everything in this
/// process), each computing with `threads` threads.
#[derive(Debug, Clone, Copy)]
pub struct Parallelism {
    pub jobs: usize,
    pub threads: usize,
}

impl Parallelism {
    /// The defaults, measured on 2 cores (BENCHMARKS.md): one job per core with one thread
    /// each ran cells about twice as fast as one job with every core.
    pub fn resolve(jobs: Option<usize>, threads: Option<usize>) -> Parallelism {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let jobs = jobs.unwrap_or(cores).max(1);
        let threads = threads.unwrap_or(if jobs > 1 { 1 } else { cores }).max(1);
        Parallelism { jobs, threads }
    }
}

/// What one `harness run` did.
#[derive(Default)]
pub struct Ran {
    pub pretrainings: usize,
    /// Cells run, by experiment index.
    pub cells: HashMap<usize, usize>,
    pub failures: usize,
}

/// The cells of each experiment that are not in its store yet.
pub type Todo = Vec<(usize, Vec<Cell>)>;

/// `harness run`.
pub fn run(
    files: &[PathBuf],
    paths: &Paths,
    parallelism: Parallelism,
    write_reports: bool,
) -> Result<()> {
    let started = Instant::now();
    let started_at = provenance::now();
    if parallelism.jobs == 1 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(parallelism.threads)
            .build_global()
            .context("setting the thread count")?;
    }
    let (manifests, loaded) = load(files, paths)?;
    let display = Display::new();

    // What is left to do, experiment by experiment.
    let mut todo: Todo = Vec::new();
    for (i, l) in loaded.iter().enumerate() {
        let store = ResultStore::open(&paths.results, &l.experiment.name);
        store.clean_partial_writes();
        let done = finished(&store)?;
        let remaining: Vec<Cell> = l
            .plan
            .cells
            .iter()
            .filter(|c| !done.contains(&c.fingerprint))
            .cloned()
            .collect();
        display.line(format!(
            "experiment {}: {} cells, {} finished, {} to run",
            l.experiment.name,
            l.plan.cells.len(),
            l.plan.cells.len() - remaining.len(),
            remaining.len()
        ));
        todo.push((i, remaining));
    }
    let mut all = Plan::default();
    for l in &loaded {
        all.merge(l.plan.clone());
    }
    let pending: Vec<&Cell> = todo.iter().flat_map(|(_, cells)| cells.iter()).collect();
    let keys: BTreeSet<String> = pending
        .iter()
        .filter_map(|c| c.pretrain_key.clone())
        .collect();

    // Every dataset and tokenizer is checked before anything trains.
    let mut bench = Workbench::new(
        &manifests,
        &all,
        DataCache::new(paths.cache_dir()),
        &display,
    );
    bench.prepare(&pending, &keys)?;

    let ran = if parallelism.jobs == 1 || pending.is_empty() {
        run_here(&mut bench, &all, &keys, &todo, &loaded, paths, &display)?
    } else {
        // The workers load what they need themselves.
        bench.release_data();
        drop(bench);
        display.line(format!(
            "running on {} worker processes with {} thread{} each (--jobs, --threads)",
            parallelism.jobs,
            parallelism.threads,
            if parallelism.threads == 1 { "" } else { "s" }
        ));
        jobs::run_workers(files, paths, parallelism, &all, &keys, &todo, &display)?
    };

    let finished_at = provenance::now();
    let wall = started.elapsed().as_secs_f64();
    for (index, _) in &todo {
        let l = &loaded[*index];
        let store = ResultStore::open(&paths.results, &l.experiment.name);
        let cells_run = ran.cells.get(index).copied().unwrap_or(0);
        if cells_run > 0 {
            append_run_record(
                &store,
                &RunRecord {
                    command: command_line(&[l.experiment.path.clone()]),
                    started_at: started_at.clone(),
                    finished_at: finished_at.clone(),
                    wall_seconds: wall,
                    cells_run,
                    pretrainings_run: ran.pretrainings,
                    jobs: Some(parallelism.jobs),
                    threads: Some(parallelism.threads),
                    peak_rss_mib: harness_train::peak_rss_mib(),
                },
            )?;
        }
        if write_reports {
            let out = write_experiment_report(l, paths)?;
            display.line(format!("report: {}", out.display()));
        }
    }
    let total = pending.len();
    display.line(format!(
        "done in {:.0} s: {total} cells run, {} failed",
        wall, ran.failures
    ));
    if ran.failures > 0 {
        anyhow::bail!(
            "{} cells failed; their rows say why (status = failed), and the next run retries them",
            ran.failures
        );
    }
    Ok(())
}

/// Pre-training jobs, then cells, one after the other in this process.
fn run_here(
    bench: &mut Workbench,
    all: &Plan,
    keys: &BTreeSet<String>,
    todo: &Todo,
    loaded: &[Loaded],
    paths: &Paths,
    display: &Display,
) -> Result<Ran> {
    let mut ran = Ran::default();
    for key in keys {
        let job = all.job(key).context("job of a planned key")?;
        let bar = display.bar(0, format!("pre-train {}", job.source));
        let mut on_event = |event: TrainEvent| show_pretrain_event(&bar, display, job, event);
        let (outcome, _) = bench.checkpoint(key, &mut on_event)?;
        bar.finish_and_clear();
        if outcome.trained_now {
            ran.pretrainings += 1;
        }
        display.line(pretrained_line(job, outcome));
    }

    let total: usize = todo.iter().map(|(_, cells)| cells.len()).sum();
    let overall = display.bar(total as u64, "cells");
    for (index, cells) in todo {
        let store = ResultStore::open(&paths.results, &loaded[*index].experiment.name);
        for cell in cells {
            let step_bar = display.bar(0, "steps");
            step_bar.set_message(cell_title(cell));
            let mut on_event = |event: TrainEvent| {
                if let TrainEvent::CellStep { step, total } = event {
                    step_bar.set_length(total as u64);
                    step_bar.set_position(step as u64);
                }
            };
            let row = bench.run_cell(cell, &store, &mut on_event)?;
            step_bar.finish_and_clear();
            if row.status == "failed" {
                ran.failures += 1;
            }
            *ran.cells.entry(*index).or_default() += 1;
            overall.inc(1);
            display.line(cell_line(
                overall.position() as usize,
                total,
                cell,
                &row.status,
                row.test_accuracy,
                row.train_seconds,
            ));
        }
    }
    overall.finish_and_clear();
    Ok(ran)
}

/// Shows a pre-training event on `bar` (steps) and as a line (epochs).
pub fn show_pretrain_event(
    bar: &indicatif::ProgressBar,
    display: &Display,
    job: &PretrainJob,
    event: TrainEvent,
) {
    match event {
        TrainEvent::PretrainStep { step, total, loss } => {
            bar.set_length(total as u64);
            bar.set_position(step as u64);
            if step % 20 == 0 {
                bar.set_message(format!("loss {loss:.3}"));
            }
        }
        TrainEvent::PretrainEpoch {
            epoch,
            epochs,
            loss,
        } => display.line(format!(
            "  pre-training {}: epoch {epoch}/{epochs}, mean loss {loss:.4}",
            job.source
        )),
        TrainEvent::CellStep { .. } => {}
    }
}

/// The line that says a checkpoint is ready.
pub fn pretrained_line(job: &PretrainJob, outcome: &PretrainOutcome) -> String {
    format!(
        "pre-trained {} ({}): {} examples × {} epochs, {:.1}% on its own test set, {:.0} s{}",
        job.source,
        &job.key[..16],
        outcome.meta.examples,
        outcome.meta.epochs,
        outcome.meta.source_test_accuracy * 100.0,
        outcome.meta.seconds,
        if outcome.trained_now { "" } else { " (cached)" }
    )
}

/// What a cell is, in a few words.
pub fn cell_title(cell: &Cell) -> String {
    format!(
        "{} ← {} option {} n={} seed {}",
        cell.target,
        cell.arm(),
        cell.option,
        cell.n_train,
        cell.seed
    )
}

/// The line that says a cell finished.
pub fn cell_line(
    position: usize,
    total: usize,
    cell: &Cell,
    status: &str,
    accuracy: f64,
    seconds: f64,
) -> String {
    format!(
        "[{position}/{total}] {} ← {:<14} option {} n={:<5} seed {}: {status} test accuracy {accuracy:.3} ({seconds:.1} s)",
        cell.target,
        cell.arm(),
        cell.option,
        cell.n_train,
        cell.seed,
    )
}

fn append_run_record(store: &ResultStore, record: &RunRecord) -> Result<()> {
    std::fs::create_dir_all(&store.dir)?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(store.dir.join("runs.jsonl"))?;
    writeln!(file, "{}", serde_json::to_string(record)?)?;
    Ok(())
}

/// Total wall time of the runs that did work for this experiment. Runs started by one command
/// over several experiments are counted once per experiment.
fn recorded_wall_seconds(store: &ResultStore) -> Option<f64> {
    let records = run_records(store);
    (!records.is_empty()).then(|| records.iter().map(|r| r.wall_seconds).sum())
}

/// The runs recorded in an experiment's store, oldest first.
pub fn run_records(store: &ResultStore) -> Vec<RunRecord> {
    std::fs::read_to_string(store.dir.join("runs.jsonl"))
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn write_experiment_report(l: &Loaded, paths: &Paths) -> Result<PathBuf> {
    let store = ResultStore::open(&paths.results, &l.experiment.name);
    let mut rows = store.rows()?;
    // Report only the cells the experiment file asks for now.
    let wanted: BTreeSet<&String> = l.plan.cells.iter().map(|c| &c.fingerprint).collect();
    rows.retain(|r| wanted.contains(&r.fingerprint));
    let out = paths.reports.join(&l.experiment.name);
    let ctx = ReportContext {
        experiment: l.experiment.name.clone(),
        description: l.experiment.description.clone(),
        experiment_file: l.experiment.path.display().to_string(),
        experiment_text: l.experiment.text.clone(),
        command: command_line(&[l.experiment.path.clone()]),
        wall_seconds: recorded_wall_seconds(&store),
        versions: provenance::versions(),
        generated_at: provenance::now(),
        hypotheses: l.experiment.hypotheses.clone(),
    };
    write_report(&rows, &ctx, &out)?;
    Ok(out)
}

/// `harness plan`.
pub fn plan(files: &[PathBuf], paths: &Paths) -> Result<()> {
    let (_, loaded) = load(files, paths)?;
    let cache = paths.cache_dir();
    let mut all = Plan::default();
    for l in &loaded {
        all.merge(l.plan.clone());
    }
    if !all.tokenizers.is_empty() {
        println!("tokenizers: {}", all.tokenizers.len());
    }
    for t in &all.tokenizers {
        let origin = match (&t.file, &t.corpus) {
            (Some(file), _) => format!("the file {}", file.display()),
            (None, Some(corpus)) => format!(
                "learned from the training pool of {corpus}: {} pieces, min frequency {}",
                t.text.vocab_size, t.text.min_frequency
            ),
            (None, None) => "?".into(),
        };
        println!(
            "  {}  {origin}; normalise {}, {} tokens per document",
            &t.key[..16],
            t.text.normalise,
            t.text.max_tokens
        );
    }
    println!("pre-training jobs: {}", all.pretrain_jobs.len());
    for job in &all.pretrain_jobs {
        let cached =
            harness_model::Checkpoint::new(cache.join("checkpoints").join(&job.key)).exists();
        println!(
            "  {}  source {:<16} {} epochs, batch {}, lr {}, seed {}{}",
            &job.key[..16],
            job.source,
            job.pretrain.epochs,
            job.pretrain.batch_size,
            job.pretrain.learning_rate,
            job.pretrain.seed,
            if cached { "  [cached]" } else { "" }
        );
    }
    for l in &loaded {
        let store = ResultStore::open(&paths.results, &l.experiment.name);
        let done = finished(&store)?;
        let n_done = l
            .plan
            .cells
            .iter()
            .filter(|c| done.contains(&c.fingerprint))
            .count();
        println!(
            "\nexperiment {} ({}): {} cells, {} finished",
            l.experiment.name,
            l.experiment.path.display(),
            l.plan.cells.len(),
            n_done
        );
        let tw = l
            .plan
            .cells
            .iter()
            .map(|c| c.target.len())
            .chain([6])
            .max()
            .unwrap_or(6);
        let sw = l
            .plan
            .cells
            .iter()
            .map(|c| c.arm().chars().count())
            .chain([6])
            .max()
            .unwrap_or(6);
        println!(
            "  {:<16} {:<tw$} {:<sw$} {:<10} {:>6} {:>7} {:>5}  {:<16} state",
            "fingerprint",
            "target",
            "source",
            "relation",
            "option",
            "n_train",
            "seed",
            "pre-training"
        );
        for c in &l.plan.cells {
            // A network's published weights are named by their file's hash.
            let weights = c.network.as_ref().and_then(|n| n.weights_sha256.as_deref());
            println!(
                "  {:<16} {:<tw$} {:<sw$} {:<10} {:>6} {:>7} {:>5}  {:<16} {}",
                &c.fingerprint[..16],
                c.target,
                c.arm(),
                c.relation.as_str(),
                c.option,
                c.n_train,
                c.seed,
                c.pretrain_key
                    .as_deref()
                    .map(|k| k[..16].to_string())
                    .or_else(|| weights.map(|w| format!("weights {}", &w[..8])))
                    .unwrap_or_else(|| "-".into()),
                if done.contains(&c.fingerprint) {
                    "finished"
                } else {
                    "to run"
                }
            );
        }
    }
    Ok(())
}

/// `harness report`.
pub fn report(files: &[PathBuf], paths: &Paths) -> Result<()> {
    let (_, loaded) = load(files, paths)?;
    for l in &loaded {
        let out = write_experiment_report(l, paths)?;
        println!("report: {}", out.join("report.md").display());
    }
    Ok(())
}

/// `harness fetch`: datasets, and the weight files of networks.
pub fn fetch(ids: &[String], paths: &Paths) -> Result<()> {
    let manifests = ManifestSet::load_dir(&paths.manifests)?;
    let (datasets, networks): (BTreeSet<String>, BTreeSet<String>) = if ids.is_empty() {
        (
            manifests.by_id.keys().cloned().collect(),
            manifests.networks.keys().cloned().collect(),
        )
    } else {
        for id in ids {
            if manifests.get(id).is_none() && manifests.network(id).is_none() {
                anyhow::bail!(
                    "unknown id `{id}`; datasets: {}; networks: {}",
                    manifests.known_ids(),
                    manifests.known_networks()
                );
            }
        }
        ids.iter()
            .cloned()
            .partition(|id| manifests.get(id).is_some())
    };
    let display = Display::new();
    let cache = DataCache::new(paths.cache_dir());
    fetch_datasets(&datasets, &manifests, &cache, &display)?;
    for id in &networks {
        let manifest = manifests.network(id).context("network id checked above")?;
        let weights = fetch_network(manifest, &cache, &display)?;
        display.line(format!(
            "network {id}: {} weights from {} (sha256 {}) fit {}: {}",
            manifest.trained_on.dataset,
            weights.origin,
            &weights.sha256[..16],
            manifest.architecture.name(),
            weights.path.display()
        ));
    }
    Ok(())
}
