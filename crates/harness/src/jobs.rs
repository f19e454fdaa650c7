//! `harness run --jobs N`: pre-training jobs and cells spread over N worker processes.
//!
//! burn seeds its random numbers per process, so two cells cannot share one process without
//! their draws interleaving; each worker is therefore its own process (`harness run --worker`,
//! the same binary). The parent hands out one task at a time over the worker's stdin and reads
//! what happens from its stdout as JSON lines; the worker writes each row into the result store
//! itself (one file per cell, renamed into place, so workers never collide). A cell's numbers
//! depend only on the cell: every cell seeds its own network and data order, and Flex computes
//! the same bits with any number of threads, so the rows are the same whatever N is.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;

use anyhow::{Context, Result};
use harness_data::DataCache;
use harness_results::ResultStore;
use harness_spec::{Cell, CellStatus, Plan};
use harness_train::{TrainEvent, cached_pretrained};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use crate::Paths;
use crate::ledger::{Parallelism, Ran, Todo};
use crate::load::{Loaded, load, merged};
use crate::progress::Display;
use crate::progress::{cell_line, cell_title, pretrained_line, show_pretrain_event};
use crate::scheduler::{self, FeatureKey, Waiting};
use crate::workbench::Workbench;

/// What the parent asks a worker to do.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "kebab-case")]
enum Task {
    Pretrain { key: String },
    Cell { fingerprint: String },
}

/// What a worker tells the parent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
enum Report {
    /// A step or an epoch of the running task.
    Progress(TrainEvent),
    Pretrained {
        trained_now: bool,
        line: String,
    },
    CellDone {
        status: CellStatus,
        accuracy: Option<f64>,
        seconds: f64,
    },
    /// The task could not run (not a failed cell, which is a row): the run stops.
    Failed {
        message: String,
    },
}

/// One worker as the parent sees it.
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    bar: ProgressBar,
    busy: Option<Busy>,
    /// The frozen features this worker holds (of the last Option 1 cell it ran).
    holds: Option<FeatureKey>,
}

enum Busy {
    Pretrain(String),
    Cell(usize, Cell),
}

impl Worker {
    fn send(&mut self, task: &Task) -> Result<()> {
        let stdin = self.stdin.as_mut().context("worker already closed")?;
        writeln!(stdin, "{}", serde_json::to_string(task)?)?;
        stdin.flush()?;
        Ok(())
    }
}

/// The workers and the work still to hand out.
struct Pool<'a> {
    all: &'a Plan,
    workers: Vec<Worker>,
    /// Pre-trainings not started yet, in order.
    to_pretrain: VecDeque<String>,
    /// Cells not started yet, with their experiment's index.
    queue: Vec<(usize, Cell)>,
    /// Checkpoints in the cache.
    ready: BTreeSet<String>,
}

impl Pool<'_> {
    /// Gives worker `i` its next task: a pre-training first, else the cell [`scheduler::pick`]
    /// chooses; closes the worker when nothing is left. With cells left that all wait for a
    /// checkpoint being trained, the worker waits.
    fn assign(&mut self, i: usize) -> Result<()> {
        if let Some(key) = self.to_pretrain.pop_front() {
            let job = self.all.job(&key).context("job of a planned key")?;
            let w = &mut self.workers[i];
            w.bar.reset();
            w.bar.set_message(format!("pre-train {}", job.source));
            w.send(&Task::Pretrain { key: key.clone() })?;
            w.busy = Some(Busy::Pretrain(key));
            return Ok(());
        }
        let others: Vec<Option<FeatureKey>> = (self.workers.iter().enumerate())
            .filter(|(j, _)| *j != i)
            .map(|(_, w)| w.holds.clone())
            .collect();
        let waiting: Vec<Waiting> = self.queue.iter().map(|(_, c)| Waiting::of(c)).collect();
        let w = &mut self.workers[i];
        match scheduler::pick(&waiting, w.holds.as_ref(), &others, &self.ready) {
            Some(p) => {
                let (index, cell) = self.queue.remove(p);
                if let Some(features) = waiting[p].features.clone() {
                    w.holds = Some(features);
                }
                w.bar.reset();
                w.bar.set_message(cell_title(&cell));
                w.send(&Task::Cell {
                    fingerprint: cell.fingerprint.clone(),
                })?;
                w.busy = Some(Busy::Cell(index, cell));
            }
            None if !self.queue.is_empty() => {}
            None => {
                w.stdin = None;
                w.bar.finish_and_clear();
            }
        }
        Ok(())
    }

    /// Gives every idle, open worker its next task.
    fn assign_idle(&mut self) -> Result<()> {
        for i in 0..self.workers.len() {
            if self.workers[i].busy.is_none() && self.workers[i].stdin.is_some() {
                self.assign(i)?;
            }
        }
        Ok(())
    }

    fn work_left(&self) -> bool {
        !self.queue.is_empty() || !self.to_pretrain.is_empty()
    }
}

/// Starts `n` worker processes of this binary (`harness run --worker`), each reading tasks on
/// stdin; a thread per worker forwards its reports to `tx` (None when it closes stdout).
fn spawn_workers(
    n: usize,
    files: &[PathBuf],
    paths: &Paths,
    parallelism: Parallelism,
    display: &Display,
    tx: &mpsc::Sender<(usize, Option<Report>)>,
) -> Result<Vec<Worker>> {
    let exe = std::env::current_exe().context("finding the harness binary")?;
    let threads = parallelism.threads.to_string();
    let mut workers = Vec::new();
    for i in 0..n {
        let mut child = Command::new(&exe)
            .arg("run")
            .arg("--worker")
            .arg("--no-report")
            .args(["--threads", &threads])
            .args(["--backend", harness_train::backend().as_str()])
            .arg("--manifests")
            .arg(&paths.manifests)
            .arg("--results")
            .arg(&paths.results)
            .arg("--reports")
            .arg(&paths.reports)
            .arg("--cache")
            .arg(paths.cache_dir())
            .arg("--")
            .args(files)
            .env("RAYON_NUM_THREADS", &threads)
            .env("OMP_NUM_THREADS", &threads)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a worker process")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Report>(&line) {
                    Ok(report) => {
                        if tx.send((i, Some(report))).is_err() {
                            return;
                        }
                    }
                    Err(_) => eprintln!("worker {}: {line}", i + 1),
                }
            }
            let _ = tx.send((i, None));
        });
        workers.push(Worker {
            stdin: child.stdin.take(),
            child,
            bar: display.bar(0, format!("worker {}", i + 1)),
            busy: None,
            holds: None,
        });
    }
    Ok(workers)
}

/// The pre-training keys among `keys` whose checkpoint is already cached (each announced on
/// `display`), and the others, to train, in order.
fn cached_or_not(
    all: &Plan,
    keys: &BTreeSet<String>,
    paths: &Paths,
    display: &Display,
) -> Result<(BTreeSet<String>, VecDeque<String>)> {
    let mut ready = BTreeSet::new();
    let mut to_pretrain = VecDeque::new();
    for key in keys {
        let job = all.job(key).context("job of a planned key")?;
        match cached_pretrained(&paths.cache_dir(), key)? {
            Some(outcome) => {
                display.line(pretrained_line(job, &outcome));
                ready.insert(key.clone());
            }
            None => to_pretrain.push_back(key.clone()),
        }
    }
    Ok((ready, to_pretrain))
}

/// Runs the pre-training jobs `keys` and the cells of `todo` on `parallelism.jobs` worker
/// processes.
#[allow(clippy::too_many_arguments)]
pub fn run_workers(
    files: &[PathBuf],
    paths: &Paths,
    parallelism: Parallelism,
    all: &Plan,
    keys: &BTreeSet<String>,
    todo: &Todo,
    display: &Display,
    ran: &mut Ran,
) -> Result<()> {
    let (ready, to_pretrain) = cached_or_not(all, keys, paths, display)?;
    let queue: Vec<(usize, Cell)> = todo
        .iter()
        .flat_map(|(i, cells)| cells.iter().map(move |c| (*i, c.clone())))
        .collect();
    let n = parallelism.jobs.min(to_pretrain.len() + queue.len()).max(1);
    let (tx, rx) = mpsc::channel::<(usize, Option<Report>)>();
    let workers = spawn_workers(n, files, paths, parallelism, display, &tx)?;
    drop(tx);
    let mut pool = Pool {
        all,
        workers,
        to_pretrain,
        queue,
        ready,
    };
    let mut progress = Progress {
        total: pool.queue.len(),
        overall: display.bar(pool.queue.len() as u64, "cells"),
        display,
    };
    let outcome = drive(&mut pool, &rx, &mut progress, ran);
    progress.overall.finish_and_clear();
    for w in &mut pool.workers {
        w.stdin = None;
        w.bar.finish_and_clear();
        if outcome.is_err() {
            let _ = w.child.kill();
        }
        let _ = w.child.wait();
    }
    outcome
}

/// The parent's display of a run: the overall bar and the lines.
struct Progress<'a> {
    total: usize,
    overall: ProgressBar,
    display: &'a Display,
}

/// Hands out tasks and handles the workers' reports until every worker has closed.
fn drive(
    pool: &mut Pool,
    rx: &mpsc::Receiver<(usize, Option<Report>)>,
    progress: &mut Progress,
    ran: &mut Ran,
) -> Result<()> {
    pool.assign_idle()?;
    let mut open = pool.workers.len();
    while open > 0 {
        let (i, report) = rx.recv().context("every worker stopped")?;
        let Some(report) = report else {
            open -= 1;
            if pool.workers[i].busy.is_some() || pool.work_left() {
                let status = pool.workers[i].child.wait().ok();
                anyhow::bail!(
                    "worker {} stopped in the middle of its work ({})",
                    i + 1,
                    status.map_or("no exit status".into(), |s| s.to_string())
                );
            }
            continue;
        };
        if handle(pool, i, report, progress, ran)? {
            pool.assign_idle()?;
        }
    }
    Ok(())
}

/// Handles one report of worker `i`; true when the worker finished its task.
fn handle(
    pool: &mut Pool,
    i: usize,
    report: Report,
    progress: &mut Progress,
    ran: &mut Ran,
) -> Result<bool> {
    let all = pool.all;
    let w = &mut pool.workers[i];
    match report {
        Report::Failed { message } => anyhow::bail!(message),
        Report::Progress(TrainEvent::CellStep { step, total }) => {
            w.bar.set_length(total as u64);
            w.bar.set_position(step as u64);
            Ok(false)
        }
        Report::Progress(event) => {
            if let Some(Busy::Pretrain(key)) = &w.busy {
                let job = all.job(key).context("job of a planned key")?;
                show_pretrain_event(&w.bar, progress.display, job, event);
            }
            Ok(false)
        }
        Report::Pretrained { trained_now, line } => {
            progress.display.line(line);
            if let Some(Busy::Pretrain(key)) = w.busy.take() {
                pool.ready.insert(key);
            }
            if trained_now {
                ran.pretrainings += 1;
            }
            Ok(true)
        }
        Report::CellDone {
            status,
            accuracy,
            seconds,
        } => {
            if let Some(Busy::Cell(index, cell)) = w.busy.take() {
                ran.cell_finished(index, status)?;
                progress.overall.inc(1);
                progress.display.line(cell_line(
                    progress.overall.position() as usize,
                    progress.total,
                    &cell,
                    status,
                    accuracy.unwrap_or(f64::NAN),
                    seconds,
                ));
            }
            Ok(true)
        }
    }
}

/// `harness run --worker`: runs the tasks read from stdin, one JSON line each, and reports on
/// stdout; ends when stdin closes. Ends too when the parent dies.
pub fn worker(files: &[PathBuf], paths: &Paths, threads: usize) -> Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG only sets a signal for this process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .context("setting the thread count")?;
    let (manifests, loaded) = load(files, paths)?;
    let all = merged(&loaded);
    let cells = cells_by_fingerprint(&loaded);
    let display = Display::quiet();
    let mut tasks = WorkerTasks {
        bench: Workbench::new(
            &manifests,
            &all,
            DataCache::new(paths.cache_dir()),
            &display,
        ),
        all: &all,
        cells,
        loaded: &loaded,
        results: &paths.results,
    };
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let task: Task = serde_json::from_str(&line).context("a task from the parent")?;
        match task {
            Task::Pretrain { key } => tasks.pretrain(&key)?,
            Task::Cell { fingerprint } => tasks.cell(&fingerprint)?,
        }
    }
    Ok(())
}

/// Every planned cell by fingerprint, with the index of its experiment in `loaded`.
fn cells_by_fingerprint(loaded: &[Loaded]) -> HashMap<&str, (usize, &Cell)> {
    loaded
        .iter()
        .enumerate()
        .flat_map(|(i, l)| {
            l.plan
                .cells
                .iter()
                .map(move |c| (c.fingerprint.as_str(), (i, c)))
        })
        .collect()
}

/// What a worker runs its tasks with.
struct WorkerTasks<'a> {
    bench: Workbench<'a>,
    all: &'a Plan,
    /// The planned cells by fingerprint, with the index of their experiment in `loaded`.
    cells: HashMap<&'a str, (usize, &'a Cell)>,
    loaded: &'a [Loaded],
    /// The folder of result stores.
    results: &'a Path,
}

impl WorkerTasks<'_> {
    /// Trains the pre-training job `key` or reads it from the cache, and says which.
    fn pretrain(&mut self, key: &str) -> Result<()> {
        let mut on_event = |event: TrainEvent| {
            let _ = send_report(&Report::Progress(event));
        };
        let job = self.all.job(key).context("job of a planned key")?;
        let outcome = match self.bench.checkpoint(key, &mut on_event) {
            Ok(p) => &p.0,
            Err(e) => fail_task(e),
        };
        send_report(&Report::Pretrained {
            trained_now: outcome.trained_now,
            line: pretrained_line(job, outcome),
        })
    }

    /// Runs the cell of `fingerprint`, which writes its row into its store, and reports it.
    fn cell(&mut self, fingerprint: &str) -> Result<()> {
        let (index, cell) = *self
            .cells
            .get(fingerprint)
            .with_context(|| format!("no planned cell {fingerprint}"))?;
        let store = ResultStore::open(self.results, &self.loaded[index].experiment.name);
        let mut on_event = |event: TrainEvent| {
            let _ = send_report(&Report::Progress(event));
        };
        let row = match self.bench.run_cell(cell, &store, &mut on_event) {
            Ok(row) => row,
            Err(e) => fail_task(e),
        };
        send_report(&Report::CellDone {
            status: row.status,
            accuracy: row.test_accuracy.is_finite().then_some(row.test_accuracy),
            seconds: row.train_seconds,
        })
    }
}

/// Writes one report to the parent, as a JSON line.
fn send_report(report: &Report) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(report)?)?;
    out.flush()?;
    Ok(())
}

/// Tells the parent the task could not run, and ends the worker.
fn fail_task(e: anyhow::Error) -> ! {
    let _ = send_report(&Report::Failed {
        message: format!("{e:#}"),
    });
    std::process::exit(1)
}
