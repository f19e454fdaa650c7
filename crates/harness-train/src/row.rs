//! A cell's result row: the cell's settings, what training measured, and where it ran, in the
//! schema of `harness-results`.

use harness_data::{Dataset, Inputs};
use harness_results::ResultRow;
use harness_spec::{Cell, CellStatus, PretrainJob};

use crate::{Measured, PretrainOutcome, Search, Setting, VerifiedWeights};

/// What the running process records in every row: the build, the machine and the threads.
#[derive(Debug, Clone)]
pub struct RowContext {
    pub harness_version: String,
    pub git_commit: Option<String>,
    pub git_dirty: Option<bool>,
    pub host: String,
    pub cpu: String,
    pub simd: String,
    pub threads: usize,
}

/// What one cell started from and ran on, besides the cell itself.
pub struct CellInputs<'a> {
    pub cell: &'a Cell,
    /// The pre-training job of a source the harness pre-trained.
    pub job: Option<&'a PretrainJob>,
    /// The target as the cell read it (through a network's input adapter, or tokenised).
    pub target: &'a Dataset,
    /// That job's checkpoint and the SHA256 of its weights.
    pub pretrained: Option<&'a (PretrainOutcome, Option<String>)>,
    /// The verified weights of a network pre-trained elsewhere.
    pub weights: Option<&'a VerifiedWeights>,
    pub tokenizer_sha256: Option<String>,
}

/// When the cell started and finished (RFC 3339, seconds).
pub struct Timing {
    pub started_at: String,
    pub finished_at: String,
}

// Long: one line per column of the result schema, in the schema's order; splitting it would
// only scatter the schema.
/// The row of a cell that finished (`Ok`, with its status) or stopped with an error (`Err`,
/// recorded as [`CellStatus::Failed`] with the reason): accuracy and timing columns of a
/// failed cell are NaN or 0.
pub fn result_row(
    inputs: &CellInputs,
    outcome: Result<&Measured, String>,
    ctx: &RowContext,
    timing: Timing,
) -> ResultRow {
    let CellInputs {
        cell,
        job,
        target,
        pretrained,
        weights,
        ..
    } = *inputs;
    let m = &cell.model;
    let ft = &cell.finetune;
    let nan = f64::NAN;
    let (status, message) = match &outcome {
        Ok(o) => (
            o.status,
            (o.status != CellStatus::Ok)
                .then(|| "training loss became NaN or infinite".to_string()),
        ),
        Err(e) => (CellStatus::Failed, Some(e.clone())),
    };
    let o = outcome.as_ref().ok();
    ResultRow {
        experiment: cell.experiment.clone(),
        target: cell.target.clone(),
        source: cell.source.clone(),
        relation: cell.relation,
        option: cell.option.number().into(),
        n_train: cell.n_train as i64,
        seed: cell.seed as i64,
        architecture: Some(architecture(cell, target)),
        control: cell.control.map(|c| c.as_str().to_string()),
        input_side: cell
            .network
            .as_ref()
            .and_then(|n| n.image_input())
            .map(|i| i.side as i64),
        patch: m.patch as i64,
        d_model: m.d_model as i64,
        n_layers: m.n_layers as i64,
        n_heads: m.n_heads as i64,
        d_ff: m.d_ff as i64,
        activation: m.activation.to_string(),
        dropout: m.dropout,
        frames_per_token: matches!(target.train, Inputs::Spectrograms(_))
            .then(|| m.frames_per_token.map(|f| f as i64))
            .flatten(),
        max_tokens: match &target.train {
            Inputs::Tokens(t) => Some(t.tokens as i64),
            _ => None,
        },
        vocab_size: match &target.train {
            Inputs::Tokens(t) => Some(t.vocab_size as i64),
            _ => None,
        },
        batch_size: ft.batch_size as i64,
        learning_rate: match o.and_then(|o| o.search.as_ref()) {
            None => ft.learning_rate(cell.option),
            Some(s) if s.setting == Setting::LearningRate => s.chosen().value,
            // The probe's solver has no learning rate.
            Some(_) => f64::NAN,
        },
        epochs: ft.epochs as i64,
        min_steps: ft.min_steps as i64,
        validation_fraction: ft.validation_fraction,
        validation_fraction_applied: o
            .filter(|o| o.n_fit + o.n_validation > 0)
            .map(|o| o.n_validation as f64 / (o.n_fit + o.n_validation) as f64),
        evaluations: ft.evaluations as i64,
        patience: ft.patience as i64,
        pretrain_epochs: job.map(|j| j.pretrain.epochs as i64),
        pretrain_batch_size: job.map(|j| j.pretrain.batch_size as i64),
        pretrain_learning_rate: job.map(|j| j.pretrain.learning_rate),
        pretrain_seed: job.map(|j| j.pretrain.seed as i64),
        pretrain_max_examples: job.map(|j| j.pretrain.max_examples as i64),
        source_test_accuracy: pretrained.map(|p| p.0.meta.source_test_accuracy),
        test_accuracy: o.map_or(nan, |o| o.test.accuracy),
        test_macro_f1: o.map_or(nan, |o| o.test.macro_f1),
        test_loss: o.map_or(nan, |o| o.test.loss),
        validation_accuracy: o.map_or(nan, |o| o.validation_accuracy),
        best_step: o.map_or(0, |o| o.best_step as i64),
        best_epoch: o.map_or(nan, |o| o.best_epoch),
        steps_run: o.map_or(0, |o| o.steps_run as i64),
        n_fit: o.map_or(0, |o| o.n_fit as i64),
        n_validation: o.map_or(0, |o| o.n_validation as i64),
        train_seconds: o.map_or(0.0, |o| o.train_seconds),
        examples_per_second: o.map_or(nan, |o| o.examples_per_second),
        peak_rss_mib: crate::peak_rss_mib(),
        status,
        message,
        fingerprint: cell.fingerprint.clone(),
        pretrain_key: cell.pretrain_key.clone(),
        checkpoint_sha256: pretrained
            .and_then(|p| p.1.clone())
            .or_else(|| weights.map(|w| w.sha256.clone())),
        tokenizer_sha256: inputs.tokenizer_sha256.clone(),
        target_sha256: target.content_sha256.clone(),
        source_sha256: pretrained.map(|p| p.0.meta.source_sha256.clone()),
        search: o.and_then(|o| o.search.as_ref()).map(search_json),
        rate_choice: (cell.rate_choice.as_ref())
            .map(|c| serde_json::to_string(c).expect("a rate choice serialises")),
        probe_c: o
            .and_then(|o| o.search.as_ref())
            .filter(|s| s.setting == Setting::ProbeC)
            .map(|s| s.chosen().value),
        refit_steps: o
            .and_then(|o| o.search.as_ref())
            .map(|s| s.refit_steps as i64),
        harness_version: ctx.harness_version.clone(),
        git_commit: ctx.git_commit.clone(),
        git_dirty: ctx.git_dirty,
        backend: crate::backend().as_str().into(),
        threads: ctx.threads as i64,
        host: ctx.host.clone(),
        cpu: Some(ctx.cpu.clone()),
        simd: Some(ctx.simd.clone()),
        started_at: timing.started_at,
        finished_at: timing.finished_at,
    }
}

/// A search's candidates as the row's `search` column holds them.
fn search_json(search: &Search) -> String {
    let candidates: Vec<serde_json::Value> = search
        .candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            serde_json::json!({
                search.setting.as_str(): c.value,
                "validation_accuracy": c.validation.accuracy,
                "validation_loss": c.validation.loss,
                "best_step": c.best_step,
                "status": c.status.as_str(),
                "chosen": i == search.chosen,
            })
        })
        .collect();
    serde_json::Value::Array(candidates).to_string()
}

/// The architecture a row names: the cell's, and for the floor what it reads, e.g.
/// `logistic (raw pixels)`.
fn architecture(cell: &Cell, target: &Dataset) -> String {
    if !cell.is_floor() {
        return cell.architecture().to_string();
    }
    let input = crate::FloorInput::of(&target.train).map_or("raw input", |f| f.describe());
    format!("{} ({input})", cell.architecture())
}
