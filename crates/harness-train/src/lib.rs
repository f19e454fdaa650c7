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
pub use pretrain::{PretrainMeta, PretrainOutcome, cached_pretrained, ensure_pretrained};

use anyhow::{Context, Result};
use burn::prelude::*;
use harness_data::{Dataset, Inputs};
use harness_model::ClassifierConfig;
use harness_spec::ModelSpec;

/// What a stem takes in, which fixes the network's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputShape {
    /// `side × side` grayscale images.
    Image { side: usize },
    /// `mels × frames` log-mel spectrograms.
    Audio { mels: usize, frames: usize },
    /// `tokens` ids from a vocabulary of `vocab_size`.
    Text { vocab_size: usize, tokens: usize },
}

/// The network for inputs of `shape` and `classes` classes, with `m`'s settings: square
/// patches for images, `frames_per_token` frames for spectrograms, an embedding for text.
pub fn classifier_config(
    shape: InputShape,
    m: &ModelSpec,
    classes: usize,
) -> Result<ClassifierConfig> {
    let (d, l, h, ff, act, drop) = (
        m.d_model,
        m.n_layers,
        m.n_heads,
        m.d_ff,
        m.activation.as_str(),
        m.dropout,
    );
    Ok(match shape {
        InputShape::Image { side } => {
            ClassifierConfig::image(side, m.patch, d, l, h, ff, act, drop, classes)
        }
        InputShape::Audio { mels, frames } => ClassifierConfig::audio(
            mels,
            frames,
            m.frames_per_token
                .context("audio needs `model.frames_per_token`")?,
            d,
            l,
            h,
            ff,
            act,
            drop,
            classes,
        ),
        InputShape::Text { vocab_size, tokens } => {
            ClassifierConfig::text(vocab_size, tokens, d, l, h, ff, act, drop, classes)
        }
    })
}

/// The network shape for `dataset`'s inputs (see [`classifier_config`]).
pub fn model_config(dataset: &Dataset, m: &ModelSpec) -> Result<ClassifierConfig> {
    let (rows, cols) = dataset.shape();
    let shape = match &dataset.train {
        Inputs::Images(_) => InputShape::Image { side: rows },
        Inputs::Spectrograms(_) => InputShape::Audio {
            mels: rows,
            frames: cols,
        },
        Inputs::Tokens(t) => InputShape::Text {
            vocab_size: t.vocab_size,
            tokens: cols,
        },
        Inputs::Texts(_) => {
            anyhow::bail!("`{}`: text must be tokenised before training", dataset.id)
        }
    };
    classifier_config(shape, m, dataset.classes.len())
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
