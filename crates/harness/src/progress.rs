//! Progress display: bars on a terminal, plain lines otherwise (CI logs).

use std::io::IsTerminal;
use std::time::Duration;

use harness_spec::{Cell, CellStatus, PretrainJob};
use harness_train::{PretrainOutcome, TrainEvent};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bars of one `harness run`.
pub struct Display {
    multi: MultiProgress,
    interactive: bool,
    quiet: bool,
}

impl Display {
    pub fn new() -> Display {
        let interactive = std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if interactive {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Display {
            multi,
            interactive,
            quiet: false,
        }
    }

    /// Shows nothing: for worker processes, whose parent shows their progress.
    pub fn quiet() -> Display {
        Display {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
            interactive: false,
            quiet: true,
        }
    }

    /// Prints a line above the bars (or to stderr when there are none).
    pub fn line(&self, text: impl AsRef<str>) {
        if self.quiet {
        } else if self.interactive {
            let _ = self.multi.println(text.as_ref());
        } else {
            eprintln!("{}", text.as_ref());
        }
    }

    pub fn spinner(&self, message: impl Into<String>) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("valid template"),
        );
        bar.set_message(message.into());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    pub fn bar(&self, total: u64, prefix: impl Into<String>) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>12} [{bar:40}] {pos}/{len} {msg} ({elapsed} elapsed, eta {eta})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(prefix.into());
        bar
    }
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
    status: CellStatus,
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
