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
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;

use anyhow::{Context, Result};
use harness_data::DataCache;
use harness_results::ResultStore;
use harness_spec::{Cell, Plan, Relation};
use harness_train::{TrainEvent, cached_pretrained};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use crate::Paths;
use crate::progress::Display;
use crate::run::{
    Parallelism, Ran, Todo, cell_line, cell_title, load, pretrained_line, show_pretrain_event,
};
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
        status: String,
        accuracy: Option<f64>,
        seconds: f64,
    },
    /// The task could not run (not a failed cell, which is a row): the run stops.
    Failed {
        message: String,
    },
}

/// The Option 1 cells that share frozen features: same target, tokenizer and frozen network.
/// Across modalities the fresh stem trains, so such cells cache no features.
fn affinity(cell: &Cell) -> Option<(String, Option<String>, String)> {
    (cell.option == 1 && cell.relation != Relation::Mismatched).then(|| {
        (
            cell.target.clone(),
            cell.tokenizer.clone(),
            match (&cell.pretrain_key, &cell.network) {
                (Some(key), _) => key.clone(),
                (None, Some(arm)) => match &arm.weights_sha256 {
                    Some(sha) => format!("{} {sha} {}", arm.architecture, arm.adapter_label()),
                    None => format!(
                        "{} scratch seed {} {}",
                        arm.architecture,
                        cell.seed,
                        arm.adapter_label()
                    ),
                },
                (None, None) => format!("scratch seed {}", cell.seed),
            },
        )
    })
}

/// One worker as the parent sees it.
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    bar: ProgressBar,
    busy: Option<Busy>,
    /// The features this worker holds (of the last Option 1 cell it ran).
    holds: Option<(String, Option<String>, String)>,
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
    let cache = paths.cache_dir();

    // Checkpoints already in the cache need no task.
    let mut ready: BTreeSet<String> = BTreeSet::new();
    let mut to_pretrain: VecDeque<String> = VecDeque::new();
    for key in keys {
        let job = all.job(key).context("job of a planned key")?;
        match cached_pretrained(&cache, key)? {
            Some(outcome) => {
                display.line(pretrained_line(job, &outcome));
                ready.insert(key.clone());
            }
            None => to_pretrain.push_back(key.clone()),
        }
    }
    let mut queue: Vec<(usize, Cell)> = todo
        .iter()
        .flat_map(|(i, cells)| cells.iter().map(move |c| (*i, c.clone())))
        .collect();
    let total = queue.len();
    let overall = display.bar(total as u64, "cells");

    // Start the workers.
    let n = parallelism.jobs.min(to_pretrain.len() + queue.len()).max(1);
    let exe = std::env::current_exe().context("finding the harness binary")?;
    let (tx, rx) = mpsc::channel::<(usize, Option<Report>)>();
    let mut workers: Vec<Worker> = Vec::new();
    for i in 0..n {
        let mut child = Command::new(&exe)
            .arg("run")
            .arg("--worker")
            .arg("--no-report")
            .args(["--threads", &parallelism.threads.to_string()])
            .args(["--backend", harness_train::backend().as_str()])
            .arg("--manifests")
            .arg(&paths.manifests)
            .arg("--results")
            .arg(&paths.results)
            .arg("--reports")
            .arg(&paths.reports)
            .arg("--cache")
            .arg(&cache)
            .arg("--")
            .args(files)
            .env("RAYON_NUM_THREADS", parallelism.threads.to_string())
            .env("OMP_NUM_THREADS", parallelism.threads.to_string())
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
        let bar = display.bar(0, format!("worker {}", i + 1));
        workers.push(Worker {
            stdin: child.stdin.take(),
            child,
            bar,
            busy: None,
            holds: None,
        });
    }
    drop(tx);

    // Gives worker `w` its next task, or closes it when nothing is left.
    let assign = |w: &mut Worker,
                  others: &[Option<(String, Option<String>, String)>],
                  to_pretrain: &mut VecDeque<String>,
                  queue: &mut Vec<(usize, Cell)>,
                  ready: &BTreeSet<String>|
     -> Result<()> {
        if let Some(key) = to_pretrain.pop_front() {
            let job = all.job(&key).context("job of a planned key")?;
            w.bar.reset();
            w.bar.set_message(format!("pre-train {}", job.source));
            w.send(&Task::Pretrain { key: key.clone() })?;
            w.busy = Some(Busy::Pretrain(key));
            return Ok(());
        }
        let runnable = |c: &Cell| c.pretrain_key.as_ref().is_none_or(|k| ready.contains(k));
        // Prefer the cells whose frozen features this worker holds, then work that does not
        // need features another worker holds, then anything that can run.
        let pick = queue
            .iter()
            .position(|(_, c)| runnable(c) && w.holds.is_some() && affinity(c) == w.holds)
            .or_else(|| {
                queue.iter().position(|(_, c)| {
                    runnable(c) && affinity(c).is_none_or(|a| !others.contains(&Some(a)))
                })
            })
            .or_else(|| queue.iter().position(|(_, c)| runnable(c)));
        match pick {
            Some(p) => {
                let (index, cell) = queue.remove(p);
                if let Some(a) = affinity(&cell) {
                    w.holds = Some(a);
                }
                w.bar.reset();
                w.bar.set_message(cell_title(&cell));
                w.send(&Task::Cell {
                    fingerprint: cell.fingerprint.clone(),
                })?;
                w.busy = Some(Busy::Cell(index, cell));
            }
            // Cells wait for a checkpoint another worker is training.
            None if !queue.is_empty() => {}
            None => {
                w.stdin = None;
                w.bar.finish_and_clear();
            }
        }
        Ok(())
    };
    let assign_idle = |workers: &mut Vec<Worker>,
                       to_pretrain: &mut VecDeque<String>,
                       queue: &mut Vec<(usize, Cell)>,
                       ready: &BTreeSet<String>|
     -> Result<()> {
        for i in 0..workers.len() {
            if workers[i].busy.is_none() && workers[i].stdin.is_some() {
                let others: Vec<_> = workers
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, w)| w.holds.clone())
                    .collect();
                assign(&mut workers[i], &others, to_pretrain, queue, ready)?;
            }
        }
        Ok(())
    };

    let outcome = (|| -> Result<()> {
        assign_idle(&mut workers, &mut to_pretrain, &mut queue, &ready)?;
        let mut open = workers.len();
        while open > 0 {
            let (i, report) = rx.recv().context("every worker stopped")?;
            let Some(report) = report else {
                open -= 1;
                if workers[i].busy.is_some() || !queue.is_empty() || !to_pretrain.is_empty() {
                    let status = workers[i].child.wait().ok();
                    anyhow::bail!(
                        "worker {} stopped in the middle of its work ({})",
                        i + 1,
                        status.map_or("no exit status".into(), |s| s.to_string())
                    );
                }
                continue;
            };
            let w = &mut workers[i];
            match report {
                Report::Failed { message } => anyhow::bail!(message),
                Report::Progress(TrainEvent::CellStep { step, total }) => {
                    w.bar.set_length(total as u64);
                    w.bar.set_position(step as u64);
                }
                Report::Progress(event) => {
                    if let Some(Busy::Pretrain(key)) = &w.busy {
                        let job = all.job(key).context("job of a planned key")?;
                        show_pretrain_event(&w.bar, display, job, event);
                    }
                }
                Report::Pretrained { trained_now, line } => {
                    display.line(line);
                    if let Some(Busy::Pretrain(key)) = w.busy.take() {
                        ready.insert(key);
                    }
                    if trained_now {
                        ran.pretrainings += 1;
                    }
                    assign_idle(&mut workers, &mut to_pretrain, &mut queue, &ready)?;
                }
                Report::CellDone {
                    status,
                    accuracy,
                    seconds,
                } => {
                    if let Some(Busy::Cell(index, cell)) = w.busy.take() {
                        ran.cell_finished(index, &status)?;
                        overall.inc(1);
                        display.line(cell_line(
                            overall.position() as usize,
                            total,
                            &cell,
                            &status,
                            accuracy.unwrap_or(f64::NAN),
                            seconds,
                        ));
                    }
                    assign_idle(&mut workers, &mut to_pretrain, &mut queue, &ready)?;
                }
            }
        }
        Ok(())
    })();
    overall.finish_and_clear();
    for w in &mut workers {
        w.stdin = None;
        w.bar.finish_and_clear();
        if outcome.is_err() {
            let _ = w.child.kill();
        }
        let _ = w.child.wait();
    }
    outcome
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
    let mut all = Plan::default();
    for l in &loaded {
        all.merge(l.plan.clone());
    }
    let cells: HashMap<&str, (usize, &Cell)> = loaded
        .iter()
        .enumerate()
        .flat_map(|(i, l)| {
            l.plan
                .cells
                .iter()
                .map(move |c| (c.fingerprint.as_str(), (i, c)))
        })
        .collect();
    let display = Display::quiet();
    let mut bench = Workbench::new(
        &manifests,
        &all,
        DataCache::new(paths.cache_dir()),
        &display,
    );
    let stdout = std::io::stdout();
    let send = |report: &Report| -> Result<()> {
        let mut out = stdout.lock();
        writeln!(out, "{}", serde_json::to_string(report)?)?;
        out.flush()?;
        Ok(())
    };
    let fail = |e: anyhow::Error| -> ! {
        let _ = send(&Report::Failed {
            message: format!("{e:#}"),
        });
        std::process::exit(1)
    };
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let task: Task = serde_json::from_str(&line).context("a task from the parent")?;
        match task {
            Task::Pretrain { key } => {
                let mut on_event = |event: TrainEvent| {
                    let _ = send(&Report::Progress(event));
                };
                let job = all.job(&key).context("job of a planned key")?;
                let outcome = match bench.checkpoint(&key, &mut on_event) {
                    Ok(p) => &p.0,
                    Err(e) => fail(e),
                };
                send(&Report::Pretrained {
                    trained_now: outcome.trained_now,
                    line: pretrained_line(job, outcome),
                })?;
            }
            Task::Cell { fingerprint } => {
                let (index, cell) = *cells
                    .get(fingerprint.as_str())
                    .with_context(|| format!("no planned cell {fingerprint}"))?;
                let store = ResultStore::open(&paths.results, &loaded[index].experiment.name);
                let mut on_event = |event: TrainEvent| {
                    let _ = send(&Report::Progress(event));
                };
                let row = match bench.run_cell(cell, &store, &mut on_event) {
                    Ok(row) => row,
                    Err(e) => fail(e),
                };
                send(&Report::CellDone {
                    status: row.status.clone(),
                    accuracy: row.test_accuracy.is_finite().then_some(row.test_accuracy),
                    seconds: row.train_seconds,
                })?;
            }
        }
    }
    Ok(())
}
