//! # harness-train
//!
//! The training loops of the harness on burn's Flex CPU backend: pre-training a source network
//! once per pre-training key (cached as a checkpoint under its content hash), and running one
//! cell — draw the paired subset, build the network (scratch or transferred, frozen or not),
//! fine-tune with early stopping on the validation split, and evaluate once on the fixed test set.
//! Beside the networks it fits each subset's floor ([`fit_floor`]): an ℓ2 logistic regression
//! on the raw input, chosen and tested as Option 1's probe is.
//!
//! It reads datasets, writes checkpoints and builds each cell's result row (in the schema of
//! `harness-results`); it never writes results or reports.
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
mod floor;
mod pretrain;
mod pretrained;
mod probe;
mod probe_head;
mod row;

pub use bench::{
    BENCH_CLIP_SECONDS, measure_features, measure_network_features, measure_network_train,
    measure_train,
};
pub use cell::{
    Candidate, CellArrays, CellOutcome, CellStatus, Measured, Search, Setting, Source, cell_arrays,
    fits_probe, initial_model, network_with_weights, run_cell, run_cell_cached, run_cell_uncached,
    run_floor, step_budget,
};
pub use eval::{Evaluation, evaluate, evaluate_head, macro_f1};
pub use features::{CHUNK, FeatureCache, FrozenFeatures, SPARSE_BLOCK, SplitFeatures};
pub use floor::{FloorFit, FloorInput, SparseRows, TfIdf, fit_floor};
pub use pretrain::{
    CachedCheckpoint, PretrainMeta, PretrainOutcome, cached_pretrained, check_pretrained,
    clean_partial_checkpoints, ensure_pretrained, recorded_pretrainings,
};
pub use pretrained::{VerifiedWeights, efficientnet_config, ensure_weights};
pub use probe::{
    FeatureRows, LabelledRows, LogisticFit, LogisticProbe, ProbeError, ProbeGridScore, ProbeScore,
    ProbeSelection, ProbeSolver, SolverReport, Standardisation, fit_logistic, select_c,
};
pub use row::{CellInputs, RowContext, Timing, result_row};

use anyhow::{Context, Result};
use burn::prelude::*;
use harness_data::{Dataset, Inputs};
use harness_model::{BackboneConfig, ClassifierConfig, StemConfig};
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
    let backbone = BackboneConfig {
        d_model: m.d_model,
        n_layers: m.n_layers,
        n_heads: m.n_heads,
        d_ff: m.d_ff,
        activation: m.activation,
        dropout: m.dropout,
    };
    let stem = match shape {
        InputShape::Image { side } => StemConfig::Image {
            side,
            patch: m.patch,
        },
        InputShape::Audio { mels, frames } => StemConfig::Audio {
            mels,
            frames,
            frames_per_token: m
                .frames_per_token
                .context("audio needs `model.frames_per_token`")?,
        },
        InputShape::Text { vocab_size, tokens } => StemConfig::Text { vocab_size, tokens },
    };
    Ok(ClassifierConfig::new(stem, backbone, classes))
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
        Inputs::Waveforms(_) => {
            anyhow::bail!(
                "`{}`: waveforms are an audio network's input, not the Transformer's",
                dataset.id
            )
        }
    };
    classifier_config(shape, m, dataset.classes.len())
}

/// What the training loops report while they run, for progress display (and, as JSON, from a
/// worker process to its parent).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
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

/// A compute backend the harness trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// burn's pure-Rust Flex CPU backend: the default, always built, bit-for-bit reproducible.
    Flex,
    /// LibTorch through burn-tch (cargo feature `tch`), on the CPU.
    Tch,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Tch => "tch",
        }
    }

    /// What tells this backend's fingerprints and keys from Flex's (see
    /// `harness_spec::Plan::for_backend`): none for Flex, whose fingerprints came first.
    pub fn fingerprint_tag(self) -> Option<&'static str> {
        (self != Backend::Flex).then(|| self.as_str())
    }

    /// `flex` or `tch`; `tch` only in a build with the `tch` feature.
    pub fn parse(name: &str) -> Result<Backend> {
        match name {
            "flex" => Ok(Backend::Flex),
            "tch" if cfg!(feature = "tch") => Ok(Backend::Tch),
            "tch" => anyhow::bail!(
                "this harness was built without the LibTorch backend; build it with `bench/build-tch.sh` (cargo feature `tch`)"
            ),
            other => anyhow::bail!("unknown backend `{other}` (known: flex, tch)"),
        }
    }
}

static BACKEND: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Chooses the backend of this process; call it before any training.
pub fn set_backend(backend: Backend) {
    BACKEND.store(backend as u8, std::sync::atomic::Ordering::SeqCst);
}

/// The backend of this process (Flex unless [`set_backend`] chose another).
pub fn backend() -> Backend {
    match BACKEND.load(std::sync::atomic::Ordering::SeqCst) {
        1 => Backend::Tch,
        _ => Backend::Flex,
    }
}

#[cfg(feature = "tch")]
#[allow(deprecated)]
fn tch_device() -> Device {
    Device::libtorch()
}

#[cfg(not(feature = "tch"))]
fn tch_device() -> Device {
    unreachable!("Backend::parse refuses tch in a build without the feature")
}

/// The device training runs on (with autodiff).
pub fn train_device() -> Device {
    eval_device().autodiff()
}

/// The device evaluation runs on (no autodiff).
pub fn eval_device() -> Device {
    match backend() {
        Backend::Flex => Device::flex(),
        Backend::Tch => tch_device(),
    }
}

/// The network of `config` with every parameter drawn from `seed`, on `device`. Parameters are
/// always drawn by Flex (burn seeds each backend its own way), so one seed gives the same
/// starting weights on every backend; on another backend they are then copied over.
pub fn init_network(
    config: &harness_model::ClassifierConfig,
    device: &Device,
    seed: u64,
) -> harness_model::Classifier {
    match backend() {
        Backend::Flex => config.init_seeded(device, seed),
        Backend::Tch => {
            // Drawn on Flex with the target's autodiff setting, then forked: moved and made
            // leaves of the target's graph (a plain move would record the move itself).
            let flex = Device::flex().with_autodiff_context_from(device);
            config.init_seeded(&flex, seed).fork(device)
        }
    }
}

/// BatchNorm momentum while fine-tuning a network (PyTorch's default). The published
/// EfficientNet-Lite was trained with 0.01 (TensorFlow's decay 0.99), which suits hundreds of
/// epochs; over a few hundred fine-tuning steps it would leave the running statistics mostly
/// those of the start, and evaluation, which uses them, far from what training saw (measured:
/// the scratch arm at chance on validation after 50 steps of Option 2).
pub const FINETUNE_BN_MOMENTUM: f64 = 0.1;

/// An EfficientNet of `shape` with a `classes`-way output layer for fine-tuning, every
/// parameter drawn from `seed` on Flex (then copied to another backend, as [`init_network`]
/// does), convolutions as the original implementation draws them when `original_init`;
/// BatchNorm momentum [`FINETUNE_BN_MOMENTUM`].
pub fn init_efficientnet(
    shape: &harness_spec::EfficientNetShape,
    classes: usize,
    device: &Device,
    seed: u64,
    original_init: bool,
) -> harness_model::efficientnet::EfficientNet {
    let config = pretrained::efficientnet_shape_config(shape, classes)
        .with_bn_momentum(FINETUNE_BN_MOMENTUM)
        .with_original_init(original_init);
    drawn_on_flex(device, |flex| config.init_seeded(flex, seed))
}

/// A BERT of `shape` with a `classes`-way output layer, every parameter drawn from `seed` as
/// the original draws them (normal(0, 0.02)), on Flex (then copied, as [`init_network`] does).
pub fn init_bert(
    shape: &harness_spec::BertShape,
    classes: usize,
    device: &Device,
    seed: u64,
) -> harness_model::bert::Bert {
    let config = pretrained::bert_shape_config(shape, classes);
    drawn_on_flex(device, |flex| config.init_seeded(flex, seed))
}

/// A CREPE with convolutions of `channels` and a `classes`-way output layer, every parameter
/// drawn from `seed` by burn's initialisers (PyTorch's defaults, which torchcrepe keeps), on
/// Flex (then copied, as [`init_network`] does).
pub fn init_crepe(
    channels: [usize; 6],
    classes: usize,
    device: &Device,
    seed: u64,
) -> harness_model::crepe::Crepe {
    let config = harness_model::crepe::CrepeConfig::new(channels).with_bins(classes);
    drawn_on_flex(device, |flex| config.init_seeded(flex, seed))
}

/// `build` run on Flex (burn seeds each backend its own way, so one seed gives the same
/// starting weights on every backend), the module then forked onto `device`.
pub(crate) fn drawn_on_flex<M: burn::module::Module>(
    device: &Device,
    build: impl FnOnce(&Device) -> M,
) -> M {
    match backend() {
        Backend::Flex => build(device),
        Backend::Tch => {
            let flex = Device::flex().with_autodiff_context_from(device);
            build(&flex).fork(device)
        }
    }
}

/// Peak resident memory of this process so far, in MiB (Linux `VmHWM`), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
