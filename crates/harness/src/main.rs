//! # harness
//!
//! The command line of transfer-harness: parses commands (clap), loads experiments and
//! manifests, schedules pre-training and cells, shows progress, and hands rows to the result
//! store and reports. It is glue only: every stage lives in its own crate.

mod bench;
mod estimate;
mod jobs;
mod ledger;
mod load;
mod progress;
mod provenance;
mod run;
mod scheduler;
mod slurm;
mod workbench;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Run matrices of transfer-learning experiments and report, with confidence intervals,
/// whether pre-training helps.
///
/// An experiment file (experiments/*.toml) names a target dataset, the sources to pre-train on
/// (or `scratch`), training-set sizes, options (1 = freeze transferred layers, 2 = fine-tune
/// all) and seeds. Datasets come only through manifests (data-manifests/*.toml).
#[derive(Parser, Debug)]
#[command(name = "harness", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run every cell of the given experiment files that is not already in the result store,
    /// then write their reports.
    ///
    /// Datasets are fetched and verified first, then each pre-training job runs once (or is
    /// read from the cache), then the cells. Running the same command again skips finished
    /// cells, so an interrupted run resumes where it stopped.
    Run {
        /// Experiment files, e.g. experiments/image.toml (several may be given).
        #[arg(required = true)]
        experiments: Vec<PathBuf>,
        #[command(flatten)]
        paths: Paths,
        /// Cells (and pre-training jobs) run at the same time, each in its own worker
        /// process (default: one per core). The rows are the same whatever the number.
        #[arg(long, short = 'j')]
        jobs: Option<usize>,
        /// Compute threads of each job (default: 1 when several jobs run, else every core).
        #[arg(long)]
        threads: Option<usize>,
        /// Compute backend: `flex` (burn's pure-Rust CPU backend, the default) or `tch`
        /// (LibTorch; only in a build made with bench/build-tch.sh). Another backend gets its
        /// own fingerprints, so its rows and checkpoints never mix with Flex ones.
        #[arg(long, default_value = "flex")]
        backend: String,
        /// Internal: run tasks sent by a parent `harness run` on stdin.
        #[arg(long, hide = true)]
        worker: bool,
        /// Do not write reports at the end.
        #[arg(long)]
        no_report: bool,
    },
    /// List the cells and pre-training jobs of the given experiment files without running
    /// anything; say which are already finished or cached.
    ///
    /// Last, it estimates how long `harness run` of the same files would take here: each cell
    /// to run from the `train_seconds` of the most similar finished rows in every store under
    /// `--results`, each pre-training the cache lacks from the seconds the cache records for
    /// the same source. Fetching and decoding data is not counted.
    Plan {
        #[arg(required = true)]
        experiments: Vec<PathBuf>,
        #[command(flatten)]
        paths: Paths,
        /// Worker processes the estimate's wall-clock time assumes, as `harness run --jobs`
        /// (default: one per core).
        #[arg(long, short = 'j')]
        jobs: Option<usize>,
    },
    /// Submit the unfinished cells of the given experiment files to Slurm as job arrays.
    ///
    /// First, as `harness run` does, every dataset, tokenizer and network weight file the
    /// cells read is fetched and verified into the cache (`--cache`, which every node must
    /// see, as it must see `--results`); a missing one stops the submission before any job
    /// exists. Then: one job per pre-training the cache lacks; job arrays over the unfinished
    /// cells, each task running up to `--cells-per-task` of them, after the pre-training they
    /// need (`afterok`); last, a job after every array (`afterany`) that writes the reports and,
    /// if the plan grew (rates chosen by pilot seeds, a ceiling, more seeds), submits the next
    /// round. Every task writes its rows straight into the result store. Submitting again
    /// submits only the cells without a row; it is refused while an earlier submission of the
    /// same experiments still has jobs queued or running. Scripts, logs and job ids are in
    /// RESULTS/.slurm/SUBMISSION/; `harness status` reads them.
    Submit {
        /// Experiment files, e.g. experiments/transfer-matrix.toml (several may be given).
        #[arg(required = true)]
        experiments: Vec<PathBuf>,
        #[command(flatten)]
        paths: Paths,
        /// Submit to Slurm (the scheduler the harness submits to; required, so that a command
        /// line says where its jobs go).
        #[arg(long, required = true)]
        slurm: bool,
        #[command(flatten)]
        options: slurm::SlurmOptions,
        /// Print the scripts and the sbatch commands, in order, without writing or submitting
        /// anything (datasets are still fetched and verified).
        #[arg(long)]
        dry_run: bool,
    },
    /// Show, from the result store and Slurm, how many cells of each experiment are finished,
    /// running, pending, failed or not submitted, the state of each job of every submission,
    /// and the log of every failed task.
    Status {
        /// Experiment files, as given to `harness submit`.
        #[arg(required = true)]
        experiments: Vec<PathBuf>,
        #[command(flatten)]
        paths: Paths,
    },
    /// Internal: one job of a `harness submit` (its script runs this).
    #[command(hide = true)]
    SlurmTask {
        experiments: Vec<PathBuf>,
        #[command(flatten)]
        paths: Paths,
        /// The submission's folder.
        #[arg(long)]
        submission: PathBuf,
        #[arg(long)]
        pretrain: Option<usize>,
        #[arg(long)]
        array: Option<usize>,
        #[arg(long)]
        finish: bool,
    },
    /// Write reports/NAME/ (report.md, SVG figures, results.parquet) from the result store.
    Report {
        /// Experiment files whose results to report.
        #[arg(required = true)]
        experiments: Vec<PathBuf>,
        #[command(flatten)]
        paths: Paths,
    },
    /// Fetch, verify, decode and cache datasets, and the weight files of networks pre-trained
    /// elsewhere, without training anything. A network's file must have its manifest's SHA256
    /// and fit its declared architecture (every tensor, every shape) before it is cached.
    Fetch {
        /// Dataset or network ids (default: every manifest).
        ids: Vec<String>,
        #[command(flatten)]
        paths: Paths,
    },
    /// Measure the harness's training step and frozen-feature extraction on each experiment's
    /// model (synthetic inputs of its shape), beside the PyTorch reference (bench/reference.py,
    /// installed with bench/setup.sh) in the same run, and print examples/s and their ratio.
    Bench {
        /// Experiment files whose models to measure (the first target of each sets the shape).
        #[arg(default_values = ["experiments/image.toml", "experiments/audio.toml", "experiments/text.toml"])]
        experiments: Vec<PathBuf>,
        #[command(flatten)]
        paths: Paths,
        /// Python of the environment that has PyTorch.
        #[arg(long, env = "HARNESS_BENCH_PYTHON")]
        python: Option<PathBuf>,
        /// Training batch size.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Timed training steps per round, at least (features: this many batches' examples).
        #[arg(long, default_value_t = 30)]
        steps: usize,
        /// Seconds per round, at least: a round goes on past `--steps` until this much time has
        /// passed, so fast models are timed over as long a stretch as slow ones.
        #[arg(long, default_value_t = 2.0)]
        min_seconds: f64,
        /// Rounds, the harness's and the reference's alternating; the median is reported.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Compute threads, for the harness and the reference alike; repeat to measure several
        /// (default: 1, as each job of `harness run` computes, then every core).
        #[arg(long)]
        threads: Vec<usize>,
        /// Also run a reduced matrix of real fine-tuning cells (scratch, first seed, smallest
        /// and largest n_train, both options) in the harness and in the reference loop.
        #[arg(long)]
        cells: bool,
        /// Also measure each model with one setting changed (activation, width, batch size,
        /// tokens per example), at one thread, beside the reference.
        #[arg(long)]
        variants: bool,
        /// Measure only the networks pre-trained elsewhere among the experiments' sources; with
        /// `--write`, put their section into the file in place of the old one, leaving the
        /// rest of the file as its own command generated it.
        #[arg(long)]
        networks_only: bool,
        /// Compute backend of the harness side: `flex` or `tch` (see `harness run --help`).
        #[arg(long, default_value = "flex")]
        backend: String,
        /// Also write the figures, machine and command to this file (e.g. BENCHMARKS.md).
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// Checks the result stores and the cache of the experiments: row files that cannot be
    /// counted (unreadable, a second copy of a row, a row under another name) and checkpoints
    /// whose files no longer match their recorded hashes. With `--repair`, moves such row files
    /// into `RESULTS/EXPERIMENT/quarantine/` (nothing is deleted); the next `harness run` then
    /// reruns those cells and retrains damaged checkpoints.
    Doctor {
        #[arg(required = true)]
        experiments: Vec<PathBuf>,
        #[command(flatten)]
        paths: Paths,
        /// Move the files that cannot be counted into `quarantine/`.
        #[arg(long)]
        repair: bool,
    },
    /// Describe every column of the results table.
    Schema,
}

/// Where things are read and written.
#[derive(Args, Debug, Clone)]
struct Paths {
    /// Folder of dataset manifests.
    #[arg(long, env = "HARNESS_MANIFESTS", default_value = "data-manifests")]
    manifests: PathBuf,
    /// Folder of result stores (one sub-folder per experiment).
    #[arg(long, env = "HARNESS_RESULTS", default_value = "results")]
    results: PathBuf,
    /// Folder of reports (one sub-folder per experiment).
    #[arg(long, env = "HARNESS_REPORTS", default_value = "reports")]
    reports: PathBuf,
    /// Cache of downloads, decoded datasets and pre-trained checkpoints
    /// (default: $XDG_CACHE_HOME/transfer-harness or ~/.cache/transfer-harness).
    #[arg(long, env = "HARNESS_CACHE")]
    cache: Option<PathBuf>,
}

impl Paths {
    fn cache_dir(&self) -> PathBuf {
        if let Some(c) = &self.cache {
            return c.clone();
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"));
        base.join("transfer-harness")
    }
}

/// Sets the compute backend of this process. LibTorch reads its thread count from
/// `OMP_NUM_THREADS` when it starts, so that is set first (Flex uses rayon's).
/// A backend that does not exist or is not built is bad input: exit 2.
fn choose_backend(name: &str, threads: usize) -> Result<(), ExitCode> {
    let backend = harness_train::Backend::parse(name).map_err(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    })?;
    if backend == harness_train::Backend::Tch && std::env::var_os("OMP_NUM_THREADS").is_none() {
        // SAFETY: called from `main` before any other thread exists.
        unsafe { std::env::set_var("OMP_NUM_THREADS", threads.to_string()) };
    }
    harness_train::set_backend(backend);
    Ok(())
}

/// Tensors of a training step are freed and allocated again at every step. glibc's malloc
/// would hand blocks above its (sliding) mmap threshold back to the kernel each time and fault
/// them in again, which made the Flex training step up to 2× slower and its speed erratic (see
/// BENCHMARKS.md). Serve them from the heap instead and keep freed memory for the next step;
/// the process's peak memory is what it was, and it no longer shrinks between steps.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called at start-up, before any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

fn main() -> ExitCode {
    // `harness plan … | head` must end quietly when the reader stops, as other command-line
    // tools do, rather than panic on a closed pipe (Rust ignores SIGPIPE by default).
    // SAFETY: setting a signal's disposition to the default at start-up, before any thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    keep_freed_memory();
    let cli = Cli::parse();
    match execute(cli.command) {
        Ok(result) => exit_code(result),
        Err(code) => code,
    }
}

/// Runs one command. The outer error is the exit code of a backend that cannot be chosen
/// (said, and nothing run); the inner result is the command's own.
// Long: one arm per command, each only unpacking its arguments for the module that runs it.
fn execute(command: Command) -> Result<anyhow::Result<()>, ExitCode> {
    let result = match command {
        Command::Run {
            experiments,
            paths,
            jobs: n_jobs,
            threads,
            backend,
            worker,
            no_report,
        } => {
            let parallelism = ledger::Parallelism::resolve(n_jobs, threads);
            choose_backend(&backend, parallelism.threads)?;
            if worker {
                jobs::worker(&experiments, &paths, parallelism.threads)
            } else {
                run::run(&experiments, &paths, parallelism, !no_report)
            }
        }
        Command::Plan {
            experiments,
            paths,
            jobs,
        } => run::plan(
            &experiments,
            &paths,
            ledger::Parallelism::resolve(jobs, None).jobs,
        ),
        Command::Submit {
            experiments,
            paths,
            slurm: _,
            options,
            dry_run,
        } => slurm::submit(&experiments, &paths, &options, dry_run),
        Command::Status { experiments, paths } => slurm::status(&experiments, &paths),
        Command::SlurmTask {
            experiments,
            paths,
            submission,
            pretrain,
            array,
            finish,
        } => {
            let kind = slurm_task_kind(pretrain, array, finish)?;
            let threads = std::env::var("SLURM_CPUS_PER_TASK")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            slurm::task(&experiments, &paths, &submission, kind, threads)
        }
        Command::Report { experiments, paths } => run::report(&experiments, &paths),
        Command::Fetch { ids, paths } => run::fetch(&ids, &paths),
        Command::Bench {
            experiments,
            paths,
            python,
            batch,
            steps,
            rounds,
            min_seconds,
            threads,
            cells,
            variants,
            networks_only,
            backend,
            write,
        } => {
            choose_backend(&backend, 1)?;
            let args = bench::BenchArgs {
                files: experiments,
                python,
                batch,
                steps,
                rounds,
                min_seconds,
                threads: bench_threads(threads),
                cells,
                variants,
                networks_only,
                write,
            };
            bench::bench(&args, &paths)
        }
        Command::Doctor {
            experiments,
            paths,
            repair,
        } => run::doctor(&experiments, &paths, repair),
        Command::Schema => {
            for (name, doc) in harness_results::COLUMN_DOCS {
                println!("{name:24} {doc}");
            }
            Ok(())
        }
    };
    Ok(result)
}

/// Which job of a submission `harness slurm-task` runs: exactly one of its three flags.
fn slurm_task_kind(
    pretrain: Option<usize>,
    array: Option<usize>,
    finish: bool,
) -> Result<slurm::TaskKind, ExitCode> {
    match (pretrain, array, finish) {
        (Some(i), None, false) => Ok(slurm::TaskKind::Pretrain(i)),
        (None, Some(i), false) => Ok(slurm::TaskKind::Cells(i)),
        (None, None, true) => Ok(slurm::TaskKind::Finish),
        _ => {
            eprintln!("error: give one of --pretrain, --array, --finish");
            Err(ExitCode::from(2))
        }
    }
}

/// The thread counts `harness bench` measures at: those given, or else 1 and every core.
fn bench_threads(threads: Vec<usize>) -> Vec<usize> {
    if threads.is_empty() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cores > 1 { vec![1, cores] } else { vec![1] }
    } else {
        threads
    }
}

/// Says a command's error, if any, and gives its exit code: 2 for bad input (an experiment
/// or manifest error, a misused command), 1 for any other failure.
fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            match err.downcast_ref::<harness_spec::SpecError>() {
                Some(spec) => eprintln!("error: {spec}"),
                None => eprintln!("error: {err:#}"),
            }
            let usage = err.downcast_ref::<harness_spec::SpecError>().is_some()
                || err.downcast_ref::<run::UsageError>().is_some();
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}
