//! What a `harness run` did, as it goes: how it spreads its work, and its records in each
//! experiment's `runs.jsonl` (cells and pre-trainings run, wall time, peak memory).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use harness_results::ResultStore;
use harness_spec::{Cell, CellStatus};
use serde::{Deserialize, Serialize};

use crate::load::Loaded;
use crate::{Paths, provenance};

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
    /// One id per `harness run`: a run appends its record after every cell, so that a run
    /// killed on the way still counts up to its last cell; the last record of an id counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Whether the run got to its end (absent in older records, which were written only then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<bool>,
}

pub fn command_line(files: &[PathBuf]) -> String {
    harness_command("run", files)
}

/// `harness VERB FILE…`, as a user would type it again.
pub fn harness_command(verb: &str, files: &[PathBuf]) -> String {
    let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    format!("harness {verb} {}", files.join(" "))
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

/// What one `harness run` did, recorded in each experiment's `runs.jsonl` as it goes.
pub struct Ran {
    pub pretrainings: usize,
    /// Cells run, by experiment index.
    pub cells: HashMap<usize, usize>,
    pub failures: usize,
    log: RunLog,
}

/// What a run's records share.
struct RunLog {
    id: String,
    started: Instant,
    started_at: String,
    parallelism: Parallelism,
    /// Store and command line of each experiment, by index.
    experiments: Vec<(ResultStore, String)>,
}

impl Ran {
    pub fn new(loaded: &[Loaded], paths: &Paths, parallelism: Parallelism) -> Ran {
        let started_at = provenance::now();
        Ran {
            pretrainings: 0,
            cells: HashMap::new(),
            failures: 0,
            log: RunLog {
                id: format!("{started_at}-{}", std::process::id()),
                started: Instant::now(),
                started_at,
                parallelism,
                experiments: loaded
                    .iter()
                    .map(|l| {
                        (
                            ResultStore::open(&paths.results, &l.experiment.name),
                            command_line(&[l.experiment.path.clone()]),
                        )
                    })
                    .collect(),
            },
        }
    }

    /// Counts a finished cell of experiment `index` and records the run so far.
    pub fn cell_finished(&mut self, index: usize, status: CellStatus) -> Result<()> {
        if status == CellStatus::Failed {
            self.failures += 1;
        }
        *self.cells.entry(index).or_default() += 1;
        self.record(index, false)
    }

    /// Seconds since the run started.
    pub fn elapsed_seconds(&self) -> f64 {
        self.log.started.elapsed().as_secs_f64()
    }

    /// Appends this run's record, so far or complete, to experiment `index`'s `runs.jsonl`.
    pub fn record(&self, index: usize, complete: bool) -> Result<()> {
        let (store, command) = &self.log.experiments[index];
        append_run_record(
            store,
            &RunRecord {
                command: command.clone(),
                started_at: self.log.started_at.clone(),
                finished_at: provenance::now(),
                wall_seconds: self.log.started.elapsed().as_secs_f64(),
                cells_run: self.cells.get(&index).copied().unwrap_or(0),
                pretrainings_run: self.pretrainings,
                jobs: Some(self.log.parallelism.jobs),
                threads: Some(self.log.parallelism.threads),
                peak_rss_mib: harness_train::peak_rss_mib(),
                run_id: Some(self.log.id.clone()),
                complete: Some(complete),
            },
        )
    }
}

/// The cells of each experiment that are not in its store yet.
pub type Todo = Vec<(usize, Vec<Cell>)>;

fn append_run_record(store: &ResultStore, record: &RunRecord) -> Result<()> {
    std::fs::create_dir_all(&store.dir)?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(store.dir.join("runs.jsonl"))?;
    writeln!(file, "{}", serde_json::to_string(record)?)?;
    Ok(())
}

/// Total wall time of the runs that did work for this experiment, and the pre-trainings they
/// ran. Runs started by one command over several experiments are counted once per experiment.
pub fn recorded_time(store: &ResultStore) -> Option<RecordedTime> {
    let records = run_records(store);
    (!records.is_empty()).then(|| RecordedTime {
        wall_seconds: records.iter().map(|r| r.wall_seconds).sum(),
        runs: records.len(),
        pretrainings_run: records.iter().map(|r| r.pretrainings_run).sum(),
    })
}

/// What the runs recorded in an experiment's store add up to.
pub struct RecordedTime {
    pub wall_seconds: f64,
    pub runs: usize,
    pub pretrainings_run: usize,
}

/// The runs recorded in an experiment's store, oldest first: the last record of each run (a
/// run killed on the way counts up to its last finished cell). A line cut short by a kill is
/// skipped.
pub fn run_records(store: &ResultStore) -> Vec<RunRecord> {
    let records: Vec<RunRecord> = std::fs::read_to_string(store.dir.join("runs.jsonl"))
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default();
    let mut out: Vec<RunRecord> = Vec::new();
    for r in records {
        match out
            .iter_mut()
            .find(|o| o.run_id.is_some() && o.run_id == r.run_id)
        {
            Some(earlier) => *earlier = r,
            None => out.push(r),
        }
    }
    out
}
