//! Progress display: bars on a terminal, plain lines otherwise (CI logs).

use std::io::IsTerminal;
use std::time::Duration;

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
