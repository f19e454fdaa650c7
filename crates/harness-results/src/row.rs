//! The results schema, declared once: the [`ResultRow`] struct, its Polars columns, and the
//! conversions both ways are all generated from the single list below.

use harness_spec::{CellStatus, Control, Relation, TransferOption};
use polars::prelude::*;

impl ResultRow {
    /// The architecture trained, `transformer` for rows written before the column existed.
    pub fn architecture(&self) -> &str {
        self.architecture.as_deref().unwrap_or("transformer")
    }

    /// The control this scratch row is, if it is one (see [`Control`]).
    pub fn control_arm(&self) -> Option<Control> {
        self.control.as_deref().and_then(Control::parse)
    }

    /// The scratch arm this row is compared with in reports: the one of its own architecture
    /// that trains the same parameters ([`harness_spec::partner_arm`]); a scratch row's own.
    pub fn scratch_partner(&self) -> String {
        let option = TransferOption::from_number(self.option).unwrap_or(TransferOption::FineTune);
        harness_spec::partner_arm(
            self.relation,
            option,
            self.architecture(),
            self.control_arm(),
        )
    }
}

/// The rows as reports compare them: each scratch row named after its architecture's scratch
/// arm (and its control, if it is one), so that every arm has one name and a pre-trained arm
/// meets the scratch arm of its own architecture that trains what it trains, never another's.
pub fn with_arm_names(rows: &[ResultRow]) -> Vec<ResultRow> {
    rows.iter()
        .map(|r| {
            let mut r = r.clone();
            if r.relation == Relation::None {
                r.source = r.scratch_partner();
            }
            r
        })
        .collect()
}

/// Makes a whole column from a vector of one Rust type: Polars' own types as they are, the
/// closed sets of choices ([`CellStatus`], [`Relation`]) as their text.
pub trait IntoColumn: Sized {
    fn into_column(name: &str, values: Vec<Self>) -> Column;
}

macro_rules! native_columns {
    ($($ty:ty),*) => {$(
        impl IntoColumn for $ty {
            fn into_column(name: &str, values: Vec<Self>) -> Column {
                Column::new(name.into(), values)
            }
        }
    )*};
}
native_columns!(
    String,
    Option<String>,
    i64,
    Option<i64>,
    f64,
    Option<f64>,
    bool,
    Option<bool>
);

impl IntoColumn for CellStatus {
    fn into_column(name: &str, values: Vec<Self>) -> Column {
        let text: Vec<&str> = values.iter().map(|v| v.as_str()).collect();
        Column::new(name.into(), text)
    }
}

impl IntoColumn for Relation {
    fn into_column(name: &str, values: Vec<Self>) -> Column {
        let text: Vec<&str> = values.iter().map(|v| v.as_str()).collect();
        Column::new(name.into(), text)
    }
}

/// Reads a column of text naming one of a closed set of choices; a value outside the set is an
/// error that names the column, the value and the values allowed.
fn choices<T: Copy>(
    c: &Column,
    all: &[T],
    parse: impl Fn(&str) -> Option<T>,
    text: impl Fn(T) -> &'static str,
) -> PolarsResult<Vec<T>> {
    c.str()?
        .iter()
        .map(|v| {
            let v = v.ok_or_else(|| missing(c.name()))?;
            parse(v).ok_or_else(|| {
                let allowed: Vec<&str> = all.iter().map(|a| text(*a)).collect();
                PolarsError::ComputeError(
                    format!(
                        "column `{}` holds `{v}`, which is none of {}",
                        c.name(),
                        allowed.join(", ")
                    )
                    .into(),
                )
            })
        })
        .collect()
}

impl FromColumn for CellStatus {
    fn read(c: &Column) -> PolarsResult<Vec<Self>> {
        choices(c, &CellStatus::ALL, CellStatus::parse, CellStatus::as_str)
    }
}

impl FromColumn for Relation {
    fn read(c: &Column) -> PolarsResult<Vec<Self>> {
        choices(c, &Relation::ALL, Relation::parse, Relation::as_str)
    }
}

/// Reads a whole column as a vector of one Rust type.
pub trait FromColumn: Sized {
    fn read(column: &Column) -> PolarsResult<Vec<Self>>;

    /// Values for a column the file does not have (written before the column existed):
    /// nulls for an optional column; none (an error) for a required one.
    fn absent(_len: usize) -> Option<Vec<Self>> {
        None
    }
}

fn missing(name: &str) -> PolarsError {
    PolarsError::ComputeError(
        format!("column `{name}` has a null where a value is required").into(),
    )
}

impl FromColumn for String {
    fn read(c: &Column) -> PolarsResult<Vec<Self>> {
        c.str()?
            .iter()
            .map(|v| v.map(str::to_string).ok_or_else(|| missing(c.name())))
            .collect()
    }
}
impl FromColumn for Option<String> {
    fn absent(len: usize) -> Option<Vec<Self>> {
        Some(vec![None; len])
    }
    fn read(c: &Column) -> PolarsResult<Vec<Self>> {
        Ok(c.str()?.iter().map(|v| v.map(str::to_string)).collect())
    }
}
impl FromColumn for i64 {
    fn read(c: &Column) -> PolarsResult<Vec<Self>> {
        c.i64()?
            .iter()
            .map(|v| v.ok_or_else(|| missing(c.name())))
            .collect()
    }
}
impl FromColumn for Option<i64> {
    fn absent(len: usize) -> Option<Vec<Self>> {
        Some(vec![None; len])
    }
    fn read(c: &Column) -> PolarsResult<Vec<Self>> {
        Ok(c.i64()?.iter().collect())
    }
}
impl FromColumn for f64 {
    fn read(c: &Column) -> PolarsResult<Vec<Self>> {
        // NaN marks a metric that a diverged cell could not produce; null is read the same.
        Ok(c.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    }
}
impl FromColumn for Option<f64> {
    fn absent(len: usize) -> Option<Vec<Self>> {
        Some(vec![None; len])
    }
    fn read(c: &Column) -> PolarsResult<Vec<Self>> {
        Ok(c.f64()?.iter().collect())
    }
}
impl FromColumn for bool {
    fn read(c: &Column) -> PolarsResult<Vec<Self>> {
        c.bool()?
            .iter()
            .map(|v| v.ok_or_else(|| missing(c.name())))
            .collect()
    }
}

macro_rules! result_schema {
    ($( $(#[doc = $doc:literal])* $name:ident : $ty:ty ),* $(,)?) => {
        /// One finished cell: its settings, metrics, cost, status and provenance.
        #[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
        pub struct ResultRow {
            $( $(#[doc = $doc])* pub $name: $ty, )*
        }

        /// Column names in schema order.
        pub const COLUMNS: &[&str] = &[$( stringify!($name) ),*];

        /// Column descriptions in schema order, for the README and `harness schema`.
        pub const COLUMN_DOCS: &[(&str, &str)] = &[$( (stringify!($name), concat!($($doc),*)) ),*];

        impl ResultRow {
            /// The rows as a Polars frame with one column per field.
            pub fn to_frame(rows: &[ResultRow]) -> PolarsResult<DataFrame> {
                DataFrame::new_infer_height(vec![
                    $( <$ty as IntoColumn>::into_column(
                        stringify!($name),
                        rows.iter().map(|r| r.$name.clone()).collect(),
                    ), )*
                ])
            }

            /// Rows back out of a frame written by [`ResultRow::to_frame`].
            pub fn from_frame(frame: &DataFrame) -> PolarsResult<Vec<ResultRow>> {
                $( let $name = match frame.column(stringify!($name)) {
                    Ok(column) => <$ty as FromColumn>::read(column)?,
                    Err(err) => <$ty as FromColumn>::absent(frame.height()).ok_or(err)?,
                }; )*
                Ok((0..frame.height())
                    .map(|i| ResultRow { $( $name: $name[i].clone(), )* })
                    .collect())
            }
        }
    };
}

result_schema! {
    /// Experiment name (the report folder).
    experiment: String,
    /// Target dataset id.
    target: String,
    /// `scratch` or the source dataset id.
    source: String,
    /// `none` (scratch), `matched` (same modality) or `mismatched`.
    relation: Relation,
    /// 1 = transferred layers frozen, only new layers train; 2 = everything fine-tuned.
    option: i64,
    /// Training examples of the cell (fitting + validation), stratified.
    n_train: i64,
    /// Seed of the subset, the initialisation and the batch order.
    seed: i64,
    /// The architecture trained: `transformer` (the experiment's `[model]`) or a network
    /// pre-trained elsewhere, e.g. `efficientnet-lite0` (null in rows written before it existed:
    /// the Transformer). Arms are compared only within one architecture.
    architecture: Option<String>,
    /// For a scratch arm that exists to match another arm's trained parameters, which one:
    /// `trained stem` (Option 1 with the random backbone frozen and the stem training, the
    /// partner of a cross-modal Option 1 arm); null otherwise.
    control: Option<String>,
    /// Side in pixels the target's images were resized to for a network pre-trained elsewhere.
    input_side: Option<i64>,
    /// Image patch side of the stem.
    patch: i64,
    /// Backbone width.
    d_model: i64,
    /// Transformer layers.
    n_layers: i64,
    /// Attention heads.
    n_heads: i64,
    /// Feed-forward width.
    d_ff: i64,
    /// Feed-forward activation.
    activation: String,
    /// Backbone dropout.
    dropout: f64,
    /// Audio stem: log-mel frames per token (audio targets only).
    frames_per_token: Option<i64>,
    /// Text: tokens per document after cutting or padding (text targets only).
    max_tokens: Option<i64>,
    /// Text: vocabulary size of the tokenizer actually used (text targets only).
    vocab_size: Option<i64>,
    /// Fine-tuning batch size.
    batch_size: i64,
    /// Adam learning rate used by this cell (depends on the option).
    learning_rate: f64,
    /// Fine-tuning epochs setting.
    epochs: i64,
    /// Minimum fine-tuning steps setting.
    min_steps: i64,
    /// Fraction of the subset the experiment asks to hold out for validation.
    validation_fraction: f64,
    /// Fraction actually held out (n_validation / n_train): each class keeps at least one
    /// example to fit and, with two or more, at least one to validate, so small subsets of
    /// many classes differ from the fraction asked (null in rows written before it existed).
    validation_fraction_applied: Option<f64>,
    /// Validation checks over the step budget.
    evaluations: i64,
    /// Early-stopping patience in checks.
    patience: i64,
    /// Pre-training epochs (null for scratch).
    pretrain_epochs: Option<i64>,
    /// Pre-training batch size (null for scratch).
    pretrain_batch_size: Option<i64>,
    /// Pre-training learning rate (null for scratch).
    pretrain_learning_rate: Option<f64>,
    /// Pre-training seed (null for scratch).
    pretrain_seed: Option<i64>,
    /// Pre-training example cap, 0 = all (null for scratch).
    pretrain_max_examples: Option<i64>,
    /// Accuracy of the pre-trained network on the source's test set (null for scratch).
    source_test_accuracy: Option<f64>,
    /// Accuracy on the fixed target test set.
    test_accuracy: f64,
    /// Macro-averaged F1 on the fixed target test set.
    test_macro_f1: f64,
    /// Mean cross-entropy on the fixed target test set.
    test_loss: f64,
    /// Accuracy on the validation split at the kept step.
    validation_accuracy: f64,
    /// Step whose weights were kept (best validation accuracy).
    best_step: i64,
    /// The kept step in epochs of the fitting split.
    best_epoch: f64,
    /// Optimisation steps run before stopping.
    steps_run: i64,
    /// Examples the model fitted.
    n_fit: i64,
    /// Examples in the validation split.
    n_validation: i64,
    /// Wall seconds of the cell (fine-tuning and evaluation).
    train_seconds: f64,
    /// Training examples processed per second.
    examples_per_second: f64,
    /// Peak resident memory of the process so far, MiB.
    peak_rss_mib: Option<f64>,
    /// `ok`, `diverged` or `failed`.
    status: CellStatus,
    /// Why a cell failed or diverged.
    message: Option<String>,
    /// Content hash of the cell's settings and data; the store's key.
    fingerprint: String,
    /// Key of the pre-training run (null for scratch).
    pretrain_key: Option<String>,
    /// SHA256 of the transferred weights (parameter paths and f32 values; the same whenever the
    /// same job is trained again). Checkpoints trained before it was recorded give their files'
    /// SHA256. Null for scratch.
    checkpoint_sha256: Option<String>,
    /// SHA256 of the `tokenizer.json` that encoded a text target and its text source.
    tokenizer_sha256: Option<String>,
    /// SHA256 of the decoded target dataset.
    target_sha256: String,
    /// SHA256 of the decoded source dataset (null for scratch).
    source_sha256: Option<String>,
    /// What a cell chose on its validation split, as JSON: one entry per candidate learning
    /// rate (`[finetune.search]`: `learning_rate`) or probe strength (`[finetune.probe]`: `c`),
    /// with the validation accuracy and loss of its run on the fitting split, its `best_step`
    /// (for the probe: solver iterations), its `status`, and whether it was `chosen` (null for
    /// a cell with one fixed learning rate).
    search: Option<String>,
    /// The probe's chosen `C` (Option 1 with `[finetune.probe]`; its `learning_rate` is NaN).
    probe_c: Option<f64>,
    /// Steps of the refit on fitting + validation with the chosen learning rate (null without a
    /// search). The row's `learning_rate` is the chosen one, `validation_accuracy` and
    /// `best_step` are the chosen candidate's, and the test metrics are the refit's.
    refit_steps: Option<i64>,
    /// Under `[finetune.search] pilot_seeds`, how the arm's learning rate is chosen, as JSON:
    /// its `fixed` rate, the `rates` its pilots train at, and the `pilot_seeds` whose mean
    /// validation accuracy chooses (null otherwise). Reports read from it which rows hold the
    /// fixed rate's verdicts and which the chosen rate's.
    rate_choice: Option<String>,
    /// Version of the harness.
    harness_version: String,
    /// Git commit the harness binary was built from, if known (rows written before builds
    /// recorded it: the commit of the directory the run started in).
    git_commit: Option<String>,
    /// Whether the harness's sources had uncommitted changes when it was built.
    git_dirty: Option<bool>,
    /// Compute backend.
    backend: String,
    /// Worker threads of the backend.
    threads: i64,
    /// Host name.
    host: String,
    /// CPU model with family, model and stepping (null in rows written before it existed).
    cpu: Option<String>,
    /// Widest SIMD level the CPU kernels could use, e.g. `x86-64-v4 (avx512)`.
    simd: Option<String>,
    /// When the cell started (UTC, RFC 3339).
    started_at: String,
    /// When the cell finished (UTC, RFC 3339).
    finished_at: String,
}

impl FromColumn for Option<bool> {
    fn read(c: &Column) -> PolarsResult<Vec<Self>> {
        Ok(c.bool()?.iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_relation_travel_through_parquet_columns_as_their_text() {
        let row = ResultRow {
            status: CellStatus::Diverged,
            relation: Relation::Mismatched,
            ..ResultRow::default()
        };
        let frame = ResultRow::to_frame(std::slice::from_ref(&row)).unwrap();
        let status: Vec<Option<&str>> = frame
            .column("status")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(status, [Some("diverged")]);
        let back = ResultRow::from_frame(&frame).unwrap();
        assert_eq!(back[0].status, CellStatus::Diverged);
        assert_eq!(back[0].relation, Relation::Mismatched);
    }

    #[test]
    fn an_unknown_status_is_an_error_naming_the_column_the_value_and_the_allowed_values() {
        let column = Column::new("status".into(), ["ok", "maybe"]);
        let err = CellStatus::read(&column).unwrap_err().to_string();
        assert!(
            err.contains("`status`")
                && err.contains("`maybe`")
                && err.contains("ok, diverged, failed"),
            "{err}"
        );
        let column = Column::new("relation".into(), ["same"]);
        let err = Relation::read(&column).unwrap_err().to_string();
        assert!(err.contains("none, matched, mismatched"), "{err}");
    }
}
