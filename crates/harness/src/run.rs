//! The commands: load and validate everything first, then fetch data, pre-train, run cells and
//! write rows and reports, in that order, so that bad input never writes a result.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use anyhow::{Context, Result};
use harness_data::DataCache;
use harness_results::{ReportContext, ResultStore, StoreLock, write_report};
use harness_spec::{Cell, CellStatus, ManifestSet, Plan};
use harness_train::{CachedCheckpoint, TrainEvent};

use crate::ledger::{Parallelism, Ran, Todo, command_line, recorded_time};
use crate::load::{Loaded, changed_file, grows_from_results, load, merged};
use crate::progress::Display;
use crate::progress::{cell_line, cell_title, pretrained_line, show_pretrain_event};
use crate::workbench::{Workbench, fetch_datasets, fetch_network};
use crate::{Paths, estimate, jobs, provenance};

/// What the inputs of rows hash to now, to tell finished rows from stale ones.
#[derive(Default)]
pub struct Current {
    /// Pre-training key → the hash of its verified checkpoint's weights, or None for a
    /// checkpoint that does not verify. Keys whose checkpoint is not in the cache are absent.
    pub checkpoints: HashMap<String, Option<String>>,
    /// Dataset id → the hash of its decoded content.
    pub targets: HashMap<String, String>,
}

impl Current {
    /// Verifies the cached checkpoint of every pre-training key in `all` (reading its files).
    pub fn checkpoints(all: &Plan, paths: &Paths, display: &Display) -> Current {
        let cache = paths.cache_dir();
        let mut current = Current::default();
        for job in &all.pretrain_jobs {
            match harness_train::check_pretrained(&cache, &job.key) {
                CachedCheckpoint::Verified(o) => {
                    current
                        .checkpoints
                        .insert(job.key.clone(), o.meta.weights_sha256.clone());
                }
                CachedCheckpoint::Damaged(why) => {
                    display.line(format!(
                        "checkpoint of {} does not verify ({why}); it is trained again before any cell uses it, and the cells made from it run again",
                        job.source
                    ));
                    current.checkpoints.insert(job.key.clone(), None);
                }
                CachedCheckpoint::Missing => {}
            }
        }
        current
    }

    /// Why `row` no longer stands for its cell, if it does not: its inputs hash differently now.
    fn stale(&self, row: &harness_results::ResultRow) -> Option<String> {
        if let Some(key) = &row.pretrain_key
            && let Some(now) = self.checkpoints.get(key)
        {
            match now {
                None => return Some("its checkpoint does not verify".into()),
                Some(sha) if row.checkpoint_sha256.as_ref() != Some(sha) => {
                    return Some(format!(
                        "it was made from the checkpoint {}, the cache now holds {}",
                        short(row.checkpoint_sha256.as_deref().unwrap_or("(none)")),
                        short(sha)
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(now) = self.targets.get(&row.target)
            && *now != row.target_sha256
        {
            return Some(format!(
                "it was made from {} with content {}, which now decodes to {}",
                row.target,
                short(&row.target_sha256),
                short(now)
            ));
        }
        None
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// The rows of `store` that need no rerun (every status but `failed`, made from the inputs
/// that are there now), and a reason for each row that is stale.
fn finished(
    store: &ResultStore,
    current: &Current,
) -> Result<(BTreeSet<String>, Vec<(String, String)>)> {
    if store.finished().is_empty() {
        return Ok(Default::default());
    }
    let mut done = BTreeSet::new();
    let mut stale = Vec::new();
    for r in store.rows()? {
        if r.status == CellStatus::Failed {
            continue;
        }
        match current.stale(&r) {
            Some(why) => stale.push((r.fingerprint, why)),
            None => {
                done.insert(r.fingerprint);
            }
        }
    }
    Ok((done, stale))
}

/// `harness run`.
pub fn run(
    files: &[PathBuf],
    paths: &Paths,
    parallelism: Parallelism,
    write_reports: bool,
) -> Result<()> {
    if parallelism.jobs == 1 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(parallelism.threads)
            .build_global()
            .context("setting the thread count")?;
    }
    let (manifests, mut loaded) = load(files, paths)?;
    let names: BTreeSet<String> = loaded.iter().map(|l| l.experiment.name.clone()).collect();
    crate::slurm::refuse_while_active(&paths.results, &names, "run again")?;
    let display = Display::new();
    let mut ran = Ran::new(&loaded, paths, parallelism);

    // One run at a time per store: the lock is released when this process ends.
    let locks = Run {
        loaded: &loaded,
        paths,
        display: &display,
    }
    .lock_stores(files)?;
    for dir in harness_train::clean_partial_checkpoints(&paths.cache_dir()) {
        display.line(format!(
            "removed {}: a pre-training stopped before it finished",
            dir.display()
        ));
    }

    // One round, or under `[finetune.search] pilot_seeds` two: the pilots, then the cells
    // at the rates they chose, which the plan holds once it is loaded again.
    let mut tried: BTreeSet<String> = BTreeSet::new();
    let mut total = 0;
    let todo = loop {
        let this = Run {
            loaded: &loaded,
            paths,
            display: &display,
        };
        let (todo, ran_now) = this.round(files, &manifests, parallelism, &mut tried, &mut ran)?;
        total += ran_now;
        if !(loaded.iter()).any(|l| grows_from_results(&l.experiment, &l.plan)) {
            break todo;
        }
        let Some((reloaded, joined)) = reload(files, paths, &loaded, &tried, total)? else {
            break todo;
        };
        display.line(joined);
        loaded = reloaded;
    };

    let this = Run {
        loaded: &loaded,
        paths,
        display: &display,
    };
    let wall = ran.elapsed_seconds();
    this.record_and_report(&mut ran, &todo, write_reports)?;
    drop(locks);
    this.finish(wall, total, ran.failures)
}

/// After a round: the files loaded again and a line on the cells that joined the plan, or None
/// when none did. Stops, naming the file, when one changed since `loaded` was read (`total`
/// cells ran until then).
fn reload(
    files: &[PathBuf],
    paths: &Paths,
    loaded: &[Loaded],
    tried: &BTreeSet<String>,
    total: usize,
) -> Result<Option<(Vec<Loaded>, String)>> {
    let (_, reloaded) = load(files, paths)?;
    if let Some(file) = changed_file(loaded, &reloaded) {
        anyhow::bail!(
            "{} changed while `harness run` was running: it reads its files again after each \
             round (pilots, ceiling, more seeds), and would have gone on with another plan. \
             The {total} cells it ran are kept; run `{}` again to go on with the files as they are now",
            file.display(),
            command_line(files)
        );
    }
    let planned: BTreeSet<&str> = (loaded.iter())
        .flat_map(|l| &l.plan.cells)
        .map(|c| c.fingerprint.as_str())
        .collect();
    let joined: Vec<&Cell> = (reloaded.iter())
        .flat_map(|l| &l.plan.cells)
        .filter(|c| !tried.contains(&c.fingerprint) && !planned.contains(c.fingerprint.as_str()))
        .collect();
    if joined.is_empty() {
        return Ok(None);
    }
    let line = joined_line(loaded, &joined);
    Ok(Some((reloaded, line)))
}

/// What a reload added to the plan: cells at the rates the pilots chose, ceilings, seeds that
/// intervals wider than their goal asked for.
fn joined_line(before: &[Loaded], joined: &[&Cell]) -> String {
    let own: BTreeSet<u64> = (before.iter())
        .flat_map(|l| l.experiment.matrix.seeds.iter().copied())
        .collect();
    let seeds = joined.iter().filter(|c| !own.contains(&c.seed)).count();
    // A ceiling cell is outside any rate choice; a cell at a chosen rate is inside one.
    let ceilings = (joined.iter())
        .filter(|c| own.contains(&c.seed) && c.rate_choice.is_none())
        .count();
    let rates = joined.len() - seeds - ceilings;
    let mut parts = Vec::new();
    if ceilings > 0 {
        parts.push(format!(
            "the best arm on validation trains on the ceiling's examples: {ceilings} cells (matrix.ceiling)"
        ));
    }
    if rates > 0 {
        parts.push(format!(
            "the pilots chose learning rates: {rates} cells of the other seeds now train at them"
        ));
    }
    if seeds > 0 {
        parts.push(format!(
            "intervals still wider than their goal: {seeds} cells of more seeds join (matrix.more_seeds)"
        ));
    }
    parts.join("; ")
}

/// What `harness run` of `loaded` would run now: the cells of each experiment without a
/// current row, and the pre-training keys they need; every dataset, tokenizer and network
/// weight file they read fetched and verified into the cache, and every training size
/// checked. `harness submit` calls it before it submits anything.
pub(crate) fn work_left(
    loaded: &[Loaded],
    manifests: &ManifestSet,
    paths: &Paths,
    display: &Display,
) -> Result<(Todo, BTreeSet<String>)> {
    let all = merged(loaded);
    let mut bench = Workbench::new(manifests, &all, DataCache::new(paths.cache_dir()), display);
    let run = Run {
        loaded,
        paths,
        display,
    };
    let Work { todo, keys } = run.what_to_run(&all, &mut bench)?;
    let pending: Vec<&Cell> = todo.iter().flat_map(|(_, cells)| cells.iter()).collect();
    bench.prepare_networks(&pending)?;
    Ok((todo, keys))
}

/// What is left to run: the cells of each experiment without a current row, and the
/// pre-training jobs they need.
struct Work {
    todo: Todo,
    keys: BTreeSet<String>,
}

/// One `harness run`: its experiments, where things are, and where it says what happens.
struct Run<'a> {
    loaded: &'a [Loaded],
    paths: &'a Paths,
    display: &'a Display,
}

impl Run<'_> {
    /// Locks the store of every experiment (one run at a time per store) and removes what
    /// an interrupted run left half-written in it.
    fn lock_stores(&self, files: &[PathBuf]) -> Result<Vec<StoreLock>> {
        let mut locks = Vec::new();
        for l in self.loaded {
            let store = ResultStore::open(&self.paths.results, &l.experiment.name);
            let lock = store.lock(&command_line(files))?;
            store.clean_partial_writes(&lock);
            locks.push(lock);
        }
        Ok(locks)
    }

    /// The targets of every experiment whose store has rows already (their content is hashed
    /// to tell stale rows).
    fn targets_with_rows(&self) -> BTreeSet<String> {
        let mut with_rows = BTreeSet::new();
        for l in self.loaded {
            let store = ResultStore::open(&self.paths.results, &l.experiment.name);
            if !store.finished().is_empty() {
                with_rows.extend(l.plan.cells.iter().map(|c| c.target.clone()));
            }
        }
        with_rows
    }

    /// The cells of each experiment without a current row, each experiment said in a line:
    /// its cells, how many are finished, how many to run and why stored ones run again.
    fn what_is_left(&self, current: &Current) -> Result<Todo> {
        let mut todo: Todo = Vec::new();
        for (i, l) in self.loaded.iter().enumerate() {
            let store = ResultStore::open(&self.paths.results, &l.experiment.name);
            let (done, stale) = finished(&store, current)?;
            let remaining: Vec<Cell> = l
                .plan
                .cells
                .iter()
                .filter(|c| !done.contains(&c.fingerprint))
                .cloned()
                .collect();
            let planned: BTreeSet<&String> = l.plan.cells.iter().map(|c| &c.fingerprint).collect();
            let stale: Vec<&(String, String)> =
                stale.iter().filter(|(f, _)| planned.contains(f)).collect();
            self.display.line(format!(
                "experiment {}: {} cells, {} finished, {} to run{}",
                l.experiment.name,
                l.plan.cells.len(),
                l.plan.cells.len() - remaining.len(),
                remaining.len(),
                if stale.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ({} of them stored, but made from other inputs than the current ones, e.g. {}: {})",
                        stale.len(),
                        short(&stale[0].0),
                        stale[0].1
                    )
                }
            ));
            todo.push((i, remaining));
        }
        Ok(todo)
    }

    /// Runs what is left of the loaded plans but the cells in `tried` (tried already by this
    /// `harness run`, which leaves a failed one to the next), adding those it runs to `tried`.
    /// Returns what was left and how many cells ran.
    fn round(
        &self,
        files: &[PathBuf],
        manifests: &ManifestSet,
        parallelism: Parallelism,
        tried: &mut BTreeSet<String>,
        ran: &mut Ran,
    ) -> Result<(Todo, usize)> {
        let all = merged(self.loaded);
        let mut bench = Workbench::new(
            manifests,
            &all,
            DataCache::new(self.paths.cache_dir()),
            self.display,
        );
        let Work { mut todo, keys } = self.what_to_run(&all, &mut bench)?;
        for (_, cells) in &mut todo {
            cells.retain(|c| !tried.contains(&c.fingerprint));
            tried.extend(cells.iter().map(|c| c.fingerprint.clone()));
        }
        let total: usize = todo.iter().map(|(_, cells)| cells.len()).sum();
        if parallelism.jobs == 1 || total == 0 {
            run_here(
                &mut bench,
                &all,
                &keys,
                &todo,
                self.loaded,
                self.paths,
                self.display,
                ran,
            )?;
        } else {
            // The workers load what they need themselves.
            bench.release_data();
            drop(bench);
            self.display.line(format!(
                "running on {} worker processes with {} thread{} each (--jobs, --threads)",
                parallelism.jobs,
                parallelism.threads,
                if parallelism.threads == 1 { "" } else { "s" }
            ));
            jobs::run_workers(
                files,
                self.paths,
                parallelism,
                &all,
                &keys,
                &todo,
                self.display,
                ran,
            )?;
        }
        Ok((todo, total))
    }

    /// What is left to run, with every dataset, tokenizer and training size it needs checked
    /// before anything trains.
    fn what_to_run(&self, all: &Plan, bench: &mut Workbench) -> Result<Work> {
        // The inputs of the rows stored so far, hashed now: a row made from other inputs than
        // these runs again.
        let mut current = Current::checkpoints(all, self.paths, self.display);
        current.targets = bench.content_hashes(&self.targets_with_rows())?;

        // What is left to do, experiment by experiment.
        let todo = self.what_is_left(&current)?;
        let pending: Vec<&Cell> = todo.iter().flat_map(|(_, cells)| cells.iter()).collect();
        let keys: BTreeSet<String> = pending
            .iter()
            .filter_map(|c| c.pretrain_key.clone())
            .collect();

        // Every dataset and tokenizer is checked before anything trains.
        bench.prepare(&pending, &keys)?;
        check_training_sizes(self.loaded, &todo, bench)?;
        Ok(Work { todo, keys })
    }

    /// Records the run in the ledger of each experiment that ran cells and, if asked, writes
    /// each experiment's report.
    fn record_and_report(&self, ran: &mut Ran, todo: &Todo, write_reports: bool) -> Result<()> {
        for (index, _) in todo {
            if ran.cells.get(index).copied().unwrap_or(0) > 0 {
                ran.record(*index, true)?;
            }
            if write_reports {
                let out = write_experiment_report(&self.loaded[*index], self.paths)?;
                self.display.line(format!("report: {}", out.display()));
            }
        }
        Ok(())
    }

    /// Says how long the run took and how many cells it ran; an error if any failed.
    fn finish(&self, wall: f64, total: usize, failures: usize) -> Result<()> {
        self.display.line(format!(
            "done in {:.0} s: {total} cells run, {} failed",
            wall, failures
        ));
        if failures > 0 {
            anyhow::bail!(
                "{} cells failed; their rows say why (status = failed), and the next run retries them",
                failures
            );
        }
        Ok(())
    }
}

/// Refuses, before anything trains, an `n_train` larger than a target's pool can give every
/// class its stratified share of, naming the experiment file's `n_train` line.
fn check_training_sizes(loaded: &[Loaded], todo: &Todo, bench: &Workbench) -> Result<()> {
    for (index, cells) in todo {
        let experiment = &loaded[*index].experiment;
        let mut largest: BTreeMap<&str, usize> = BTreeMap::new();
        for cell in cells {
            let n = largest.entry(cell.target.as_str()).or_default();
            *n = (*n).max(cell.n_train);
        }
        for (target, n) in largest {
            // The ceiling's size too, long before its cells join the plan.
            let ceiling = experiment.ceiling_n_train(target).filter(|&c| c >= n);
            let n = ceiling.unwrap_or(n);
            let (limit, class) = bench.stratified_limit(target);
            if n > limit.n_train {
                // The line that gave this target its sizes.
                let line = if ceiling.is_some() {
                    "matrix.ceiling.n_train".to_string()
                } else if experiment.matrix.n_train_by_target.contains_key(target) {
                    format!("matrix.n_train_by_target.{target}")
                } else {
                    "matrix.n_train".to_string()
                };
                anyhow::bail!(
                    harness_spec::SpecError::near(
                        &experiment.path,
                        &experiment.text,
                        &line,
                        format!(
                            "n_train = {n} is more than `{target}` can give: a stratified subset \
                             asks each class for up to ceil(n_train / classes) examples, and its \
                             smallest class ({class}) has {} in the training pool, so \
                             n_train can be at most {}",
                            limit.smallest_size, limit.n_train
                        ),
                    )
                    .with_help("use smaller sizes for this target")
                );
            }
        }
    }
    Ok(())
}

/// Pre-training jobs, then cells, one after the other in this process.
#[allow(clippy::too_many_arguments)]
fn run_here(
    bench: &mut Workbench,
    all: &Plan,
    keys: &BTreeSet<String>,
    todo: &Todo,
    loaded: &[Loaded],
    paths: &Paths,
    display: &Display,
    ran: &mut Ran,
) -> Result<()> {
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
            ran.cell_finished(*index, row.status)?;
            overall.inc(1);
            display.line(cell_line(
                overall.position() as usize,
                total,
                cell,
                row.status,
                row.test_accuracy,
                row.train_seconds,
            ));
        }
    }
    overall.finish_and_clear();
    Ok(())
}

/// One pre-training job of a `harness submit` (`harness slurm-task --pretrain`): trains the
/// checkpoint of `key` into the shared cache, or finds it there.
pub(crate) fn pretrain_one(files: &[PathBuf], paths: &Paths, key: &str) -> Result<()> {
    let (manifests, loaded) = load(files, paths)?;
    let all = merged(&loaded);
    let display = Display::quiet();
    let mut bench = Workbench::new(
        &manifests,
        &all,
        DataCache::new(paths.cache_dir()),
        &display,
    );
    let job = all
        .job(key)
        .context("no planned pre-training has this key")?;
    let mut on_event = |_: TrainEvent| {};
    let (outcome, _) = bench.checkpoint(key, &mut on_event)?;
    println!("{}", pretrained_line(job, outcome));
    Ok(())
}

/// The cells of one array task of a `harness submit` (`harness slurm-task --array`): each
/// listed cell of experiment `index` runs and writes its row, but one whose row was written
/// after `submitted` (by an earlier attempt of this task, which Slurm requeued).
pub(crate) fn run_listed(
    files: &[PathBuf],
    paths: &Paths,
    index: usize,
    fingerprints: &[String],
    submitted: std::time::SystemTime,
) -> Result<()> {
    let (manifests, loaded) = load(files, paths)?;
    let l = loaded.get(index).context("no such experiment")?;
    let display = Display::quiet();
    let mut bench = Workbench::new(
        &manifests,
        &l.plan,
        DataCache::new(paths.cache_dir()),
        &display,
    );
    let store = ResultStore::open(&paths.results, &l.experiment.name);
    for (i, fingerprint) in fingerprints.iter().enumerate() {
        let cell = (l.plan.cells.iter())
            .find(|c| &c.fingerprint == fingerprint)
            .with_context(|| {
                format!(
                    "cell {fingerprint} is not in the plan of {}",
                    l.experiment.name
                )
            })?;
        if store
            .row_written_at(fingerprint)
            .is_some_and(|t| t > submitted)
        {
            println!(
                "{}: its row was written since the submission",
                cell_title(cell)
            );
            continue;
        }
        let mut on_event = |_: TrainEvent| {};
        let row = bench.run_cell(cell, &store, &mut on_event)?;
        println!(
            "{}",
            cell_line(
                i + 1,
                fingerprints.len(),
                cell,
                row.status,
                row.test_accuracy,
                row.train_seconds
            )
        );
    }
    Ok(())
}

pub(crate) fn write_experiment_report(l: &Loaded, paths: &Paths) -> Result<PathBuf> {
    let store = ResultStore::open(&paths.results, &l.experiment.name);
    let mut rows = store.rows()?;
    // Report only the cells the experiment file asks for now.
    let wanted: BTreeSet<&String> = l.plan.cells.iter().map(|c| &c.fingerprint).collect();
    rows.retain(|r| wanted.contains(&r.fingerprint));
    let out = paths.reports.join(&l.experiment.name);
    let time = recorded_time(&store);
    let ctx = ReportContext {
        experiment: l.experiment.name.clone(),
        description: l.experiment.description.clone(),
        experiment_file: l.experiment.path.display().to_string(),
        experiment_text: l.experiment.text.clone(),
        command: command_line(&[l.experiment.path.clone()]),
        wall_seconds: time.as_ref().map(|t| t.wall_seconds),
        runs: time.as_ref().map(|t| t.runs),
        pretrainings_run: time.as_ref().map(|t| t.pretrainings_run),
        versions: provenance::versions(),
        generated_at: provenance::now(),
        hypotheses: l.experiment.hypotheses.clone(),
        included: (l.experiment.included.iter())
            .map(|f| (f.path.display().to_string(), f.text.clone()))
            .collect(),
        ceilings: ceiling_sizes(&l.experiment),
    };
    write_report(&rows, &ctx, &out)?;
    Ok(out)
}

/// Each target whose `[matrix.ceiling]` size is larger than its sizes, with that size: the
/// targets whose ceiling has cells of its own.
fn ceiling_sizes(experiment: &harness_spec::Experiment) -> BTreeMap<String, i64> {
    (experiment.matrix.targets.iter())
        .filter_map(|t| {
            Some((
                t.get_ref().clone(),
                experiment.ceiling_n_train(t.get_ref())? as i64,
            ))
        })
        .collect()
}

/// `harness plan`; `jobs`: the worker processes its estimate of `harness run` assumes.
pub fn plan(files: &[PathBuf], paths: &Paths, jobs: usize) -> Result<()> {
    let (_, loaded) = load(files, paths)?;
    let all = merged(&loaded);
    let current = Current::checkpoints(&all, paths, &Display::new());
    print_tokenizers(&all);
    print_pretrain_jobs(&all, &current);
    let mut unfinished: Vec<&Cell> = Vec::new();
    for l in &loaded {
        let store = ResultStore::open(&paths.results, &l.experiment.name);
        // Checkpoints are verified here; datasets are hashed only by `run`.
        let (done, _) = finished(&store, &current)?;
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
        print_cells(&l.plan.cells, &done);
        print_rate_choices(&l.plan.cells);
        print_more_seeds(&l.experiment, &l.plan.cells);
        print_ceilings(&l.experiment, &l.plan.cells);
        unfinished.extend(
            l.plan
                .cells
                .iter()
                .filter(|c| !done.contains(&c.fingerprint)),
        );
    }
    print_estimate(&all, &unfinished, &current, paths, jobs)
}

/// `harness plan`'s estimate of how long `harness run` of the same files would take here:
/// the unfinished cells from the rows of every store under the results folder, the
/// pre-trainings they need that the cache lacks from the cache's records.
fn print_estimate(
    all: &Plan,
    unfinished: &[&Cell],
    current: &Current,
    paths: &Paths,
    jobs: usize,
) -> Result<()> {
    let missing: BTreeSet<&str> = (unfinished.iter())
        .filter_map(|c| c.pretrain_key.as_deref())
        .filter(|key| !matches!(current.checkpoints.get(*key), Some(Some(_))))
        .collect();
    let to_pretrain: Vec<&harness_spec::PretrainJob> = (all.pretrain_jobs.iter())
        .filter(|j| missing.contains(j.key.as_str()))
        .collect();
    let mut rows = Vec::new();
    let mut left_out = 0;
    for store in ResultStore::all(&paths.results) {
        let (countable, problems) = store.countable_rows()?;
        rows.extend(countable);
        left_out += problems;
    }
    let here = estimate::Here {
        cpu: provenance::machine().0,
        backend: harness_train::backend().as_str().into(),
    };
    let recorded = harness_train::recorded_pretrainings(&paths.cache_dir());
    let estimate = estimate::estimate(unfinished, &to_pretrain, &rows, &recorded, &here);
    let from = estimate::Provenance {
        results: &paths.results,
        left_out,
        here: &here,
    };
    println!();
    for line in estimate.lines(jobs, &from) {
        println!("{line}");
    }
    // Under pilot seeds, the cells that may join once an arm's pilots have chosen.
    let undecided: BTreeSet<harness_results::ArmSize> = (unfinished.iter())
        .filter(|c| c.is_pilot())
        .map(|c| harness_results::ArmSize::of_cell(c))
        .collect();
    let waiting: Vec<&Cell> = (all.cells.iter())
        .filter(|c| {
            c.rate_choice.as_ref().is_some_and(|r| {
                !c.is_pilot()
                    && c.learning_rate() == Some(r.fixed)
                    && undecided.contains(&harness_results::ArmSize::of_cell(c))
            })
        })
        .collect();
    if !waiting.is_empty() {
        let joining = estimate::estimate(&waiting, &[], &rows, &recorded, &here);
        let measured = joining.cells.iter().filter(|c| c.seconds.is_some()).count();
        println!(
            "  and up to {} cells that join if the pilots choose a rate other than the fixed one: \
             about {} more at {jobs} job{}, each taken to cost what its fixed-rate twin does ({measured} of them estimated)",
            waiting.len(),
            estimate::duration(joining.cell_seconds() / jobs.max(1) as f64),
            if jobs == 1 { "" } else { "s" },
        );
    }
    Ok(())
}

/// Under `[finetune.search] pilot_seeds`: which arms choose their rate, and the cells that may
/// join the plan once their pilots finish.
fn print_rate_choices(cells: &[Cell]) {
    let choosing: Vec<&Cell> = cells.iter().filter(|c| c.rate_choice.is_some()).collect();
    let Some(first) = choosing.first() else {
        return;
    };
    let arms: BTreeSet<(&str, String, u8, usize)> = (choosing.iter())
        .map(|c| (c.target.as_str(), c.arm(), c.option.number(), c.n_train))
        .collect();
    let at_fixed = |c: &&&Cell| c.learning_rate() == c.rate_choice.as_ref().map(|r| r.fixed);
    let others = (choosing.iter()).filter(|c| !c.is_pilot());
    let waiting = (others.clone().filter(at_fixed).count())
        .saturating_sub(others.filter(|c| !at_fixed(c)).count());
    let pilots = first
        .rate_choice
        .as_ref()
        .map_or(0, |r| r.pilot_seeds.len());
    println!(
        "  {} arm sizes choose their learning rate on the validation accuracy of the first {pilots} seed{}; \
         up to {waiting} more cells (the other seeds at a chosen rate other than the fixed one) join the plan as their pilots finish",
        arms.len(),
        if pilots == 1 { "" } else { "s" }
    );
}

/// Under `[matrix.more_seeds]`: the rule, and the seeds it has added so far.
fn print_more_seeds(experiment: &harness_spec::Experiment, cells: &[Cell]) {
    let Some(more) = &experiment.matrix.more_seeds else {
        return;
    };
    let own: BTreeSet<u64> = experiment.matrix.seeds.iter().copied().collect();
    let mut added: BTreeMap<(&str, usize), (BTreeSet<u64>, usize)> = BTreeMap::new();
    for c in cells.iter().filter(|c| !own.contains(&c.seed)) {
        let (seeds, n_cells) = added.entry((c.target.as_str(), c.n_train)).or_default();
        seeds.insert(c.seed);
        *n_cells += 1;
    }
    let so_far = if added.is_empty() {
        "none yet".to_string()
    } else {
        (added.iter())
            .map(|((target, n), (seeds, n_cells))| {
                format!("{target} n={n}: {} ({n_cells} cells)", seeds.len())
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "  more seeds (matrix.more_seeds): once every cell has a row, each hypothesis whose 95% interval is wider than its goal \
         (its margin, else ±{:.1} points) adds {} seed{} at a time at the sizes it covers, up to {}; added so far: {so_far}",
        100.0 * more.half_width,
        more.step,
        if more.step == 1 { "" } else { "s" },
        more.up_to
    );
}

/// Under `[matrix.ceiling]`: each target's ceiling, planned or waiting for its arm.
fn print_ceilings(experiment: &harness_spec::Experiment, cells: &[Cell]) {
    let seeds = experiment.ceiling_seeds().len();
    for target in &experiment.matrix.targets {
        let target = target.get_ref();
        let Some(n) = experiment.ceiling_n_train(target) else {
            continue;
        };
        let mine: Vec<&Cell> = (cells.iter())
            .filter(|c| &c.target == target && c.n_train == n)
            .collect();
        let which = match mine.first() {
            Some(c) => format!(
                "{}, option {}: {} cells planned",
                c.arm(),
                c.option.number(),
                mine.len()
            ),
            None => "the arm best on validation at its largest n_train, once those cells have rows"
                .to_string(),
        };
        println!(
            "  ceiling of {target} (matrix.ceiling): {n} examples, {seeds} seed{}; {which}",
            if seeds == 1 { "" } else { "s" }
        );
    }
}

/// `harness plan`'s tokenizers: each one's key, where its vocabulary comes from, and how it
/// cuts documents.
fn print_tokenizers(all: &Plan) {
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
}

/// `harness plan`'s pre-training jobs: each one's key, source and settings, and whether its
/// checkpoint is cached.
fn print_pretrain_jobs(all: &Plan, current: &Current) {
    println!("pre-training jobs: {}", all.pretrain_jobs.len());
    for job in &all.pretrain_jobs {
        let cached = matches!(current.checkpoints.get(&job.key), Some(Some(_)));
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
}

/// `harness plan`'s table of an experiment's cells, with whether each is finished.
fn print_cells(cells: &[Cell], done: &BTreeSet<String>) {
    let tw = cells
        .iter()
        .map(|c| c.target.len())
        .chain([6])
        .max()
        .unwrap_or(6);
    let sw = cells
        .iter()
        .map(|c| c.arm().chars().count())
        .chain([6])
        .max()
        .unwrap_or(6);
    println!(
        "  {:<16} {:<tw$} {:<sw$} {:<10} {:>6} {:>7} {:>5}  {:<16} state",
        "fingerprint", "target", "source", "relation", "option", "n_train", "seed", "pre-training"
    );
    for c in cells {
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

/// A request the command line cannot carry out as written (exit status 2, like bad input
/// files).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// `harness doctor`: what in the result stores and the cache cannot be trusted, and with
/// `repair`, setting it aside (row files into `quarantine/`, nothing deleted) so that the next
/// run redoes those cells.
pub fn doctor(files: &[PathBuf], paths: &Paths, repair: bool) -> Result<()> {
    let (_, loaded) = load(files, paths)?;
    let all = merged(&loaded);
    let display = Display::new();
    let mut remaining = 0;
    for l in &loaded {
        let store = ResultStore::open(&paths.results, &l.experiment.name);
        let scan = store.scan()?;
        let rows = scan.frame.as_ref().map_or(0, |f| f.height());
        if scan.problems.is_empty() {
            println!(
                "experiment {}: {} rows in {}, every file counts once",
                l.experiment.name,
                rows,
                store.dir.display()
            );
            continue;
        }
        println!(
            "experiment {}: {} rows in {}; {} file{} cannot be counted:",
            l.experiment.name,
            rows,
            store.dir.display(),
            scan.problems.len(),
            if scan.problems.len() == 1 { "" } else { "s" }
        );
        for p in &scan.problems {
            println!("  {}: {}", p.path.display(), p.why);
        }
        if repair {
            let _lock = store.lock("harness doctor --repair")?;
            for to in store.quarantine(&scan.problems)? {
                println!("  moved to {}", to.display());
            }
        } else {
            remaining += scan.problems.len();
        }
    }
    // Checkpoints: verified against the hashes they record (damaged ones are trained again by
    // the next run that needs them).
    let current = Current::checkpoints(&all, paths, &display);
    let damaged = current.checkpoints.values().filter(|c| c.is_none()).count();
    println!(
        "checkpoints: {} verified, {damaged} do not verify, {} not in the cache",
        current.checkpoints.values().filter(|c| c.is_some()).count(),
        all.pretrain_jobs.len() - current.checkpoints.len()
    );
    if remaining > 0 {
        anyhow::bail!(
            "{remaining} file{} cannot be counted; `harness doctor --repair` with the same files moves them aside",
            if remaining == 1 { "" } else { "s" }
        );
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
                return Err(UsageError(format!(
                    "unknown id `{id}`; datasets: {}; networks: {}",
                    manifests.known_ids(),
                    manifests.known_networks()
                ))
                .into());
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
