//! # harness-train
//!
//! The training loops of the harness on burn's Flex CPU backend: pre-training a source network
//! once per pre-training key (cached as a checkpoint under its content hash), and running one
//! cell — draw the paired subset, build the network (scratch or transferred, frozen or not),
//! fine-tune with early stopping on the validation split, and evaluate once on the fixed test set.
//!
//! It reads datasets and writes checkpoints; it never writes results or reports.
//!
//! ```no_run
//! # fn demo(cell: &harness_spec::Cell, target: &harness_data::Dataset) -> anyhow::Result<()> {
//! let outcome = harness_train::run_cell(cell, target, None, &mut |_| {})?;
//! println!("test accuracy {:.3}", outcome.test_accuracy);
//! # Ok(()) }
//! ```

mod batches;
mod bench;
mod cell;
mod eval;
mod features;
mod pretrain;

pub use bench::{Throughput, measure};
pub use cell::{
    CellOutcome, CellStatus, initial_model, run_cell, run_cell_cached, run_cell_uncached,
};
pub use eval::{Evaluation, evaluate, evaluate_head, macro_f1};
pub use features::{CHUNK, FeatureCache, FrozenFeatures, SplitFeatures};
pub use pretrain::{PretrainMeta, PretrainOutcome, ensure_pretrained};

use anyhow::{Context, Result};
use burn::prelude::*;
use harness_data::{Dataset, Inputs};
use harness_model::ClassifierConfig;
use harness_spec::ModelSpec;

/// The network shape for `dataset`'s inputs: a square-patch stem for images, a
/// frames-per-token stem for spectrograms.
pub fn model_config(dataset: &Dataset, m: &ModelSpec) -> Result<ClassifierConfig> {
    let classes = dataset.classes.len();
    let (rows, cols) = dataset.shape();
    Ok(match &dataset.train {
        Inputs::Images(_) => ClassifierConfig::image(
            rows,
            m.patch,
            m.d_model,
            m.n_layers,
            m.n_heads,
            m.d_ff,
            &m.activation,
            m.dropout,
            classes,
        ),
        Inputs::Texts(_) => {
            anyhow::bail!("`{}`: text must be tokenised before training", dataset.id)
        }
        Inputs::Tokens(t) => ClassifierConfig::text(
            t.vocab_size,
            cols,
            m.d_model,
            m.n_layers,
            m.n_heads,
            m.d_ff,
            &m.activation,
            m.dropout,
            classes,
        ),
        Inputs::Spectrograms(_) => ClassifierConfig::audio(
            rows,
            cols,
            m.frames_per_token
                .context("audio needs `model.frames_per_token`")?,
            m.d_model,
            m.n_layers,
            m.n_heads,
            m.d_ff,
            &m.activation,
            m.dropout,
            classes,
        ),
    })
}

/// What the training loops report while they run, for progress display.
#[derive(Debug, Clone)]
pub enum TrainEvent {
    /// Pre-training finished a step (`step` of `total`).
    PretrainStep {
        step: usize,
        total: usize,
        loss: f32,
    },
    /// Pre-training finished an epoch.
    PretrainEpoch {
        epoch: usize,
        epochs: usize,
        loss: f32,
    },
    /// A cell finished a step (`step` of at most `total`).
    CellStep { step: usize, total: usize },
}

/// The compute backend of the harness: burn's pure-Rust Flex CPU backend.
pub const BACKEND: &str = "flex";

/// The device training runs on (with autodiff).
pub fn train_device() -> Device {
    Device::flex().autodiff()
}

/// The device evaluation runs on (no autodiff).
pub fn eval_device() -> Device {
    Device::flex()
}

/// Peak resident memory of this process so far, in MiB (Linux `VmHWM`), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
