//! # harness-results
//!
//! Where results live and how they are read: the single results schema ([`ResultRow`]), the
//! Parquet result store (one row per finished cell, written atomically, keyed by the cell
//! fingerprint), statistics over seeds (means with 95% confidence intervals, paired differences),
//! and the report (`report.md`, SVG figures, results Parquet, reproduction block).
//!
//! It never trains anything and never reads datasets.
//!
//! ```no_run
//! use harness_results::{ResultStore, summarise};
//! let store = ResultStore::open(std::path::Path::new("results"), "image");
//! let rows = store.rows()?;
//! for arm in summarise(&rows)? {
//!     println!("{} option {} n={}: {:.3}", arm.source, arm.option, arm.n_train, arm.accuracy.mean);
//! }
//! # Ok::<(), anyhow::Error>(())
//! ```

mod analysis;
mod bounds;
mod plot;
mod precision;
mod report;
mod row;
mod selection;
mod stats;
mod store;
mod table;
mod verdict;

pub use bounds::{Ceiling, FloorComparison, against_floor, ceilings, position};
pub use plot::{GainCell, accuracy_figure, gain_figure};
pub use precision::{Imprecise, imprecise};
pub use report::{CONTEXT_FILE, ReportContext, mixed_provenance, rewrite_report, write_report};
pub use row::{COLUMN_DOCS, COLUMNS, FromColumn, ResultRow, with_arm_names};
pub use selection::{
    ArmSize, Choice, RateScore, RateViews, best_arm, best_on_validation, chosen_rates, rate_choice,
};
pub use stats::{
    ArmSummary, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, EXACT_BOOTSTRAP_MAX, MeanCi, PairedDifference,
    bootstrap_mean_ci, holm, quantile_sorted, summarise, t_cdf, t_quantile_975, t_test_greater,
    t_test_less, tost,
};
pub use store::{Problem, QUARANTINE, ResultStore, Scan, StoreLock, read_parquet, write_parquet};
pub use verdict::{ALPHA, HypothesisTest, Verdict, test_hypotheses};
