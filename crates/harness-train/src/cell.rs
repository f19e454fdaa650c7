//! One cell: the paired subset, the network as the transfer option says, fine-tuning with
//! early stopping on the validation split, and one evaluation on the fixed test set.

use std::time::Instant;

use anyhow::Result;
use burn::module::Module;
use burn::nn::Linear;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use std::path::Path;

use harness_data::{Dataset, Inputs, Normalisation, Rng, training_subset};
use harness_model::efficientnet::EfficientNet;
use harness_model::{
    Checkpoint, FramedCrepe, GreyImageNet, Network, PatchBert, PatchStem, Transfer, load_pretrained,
};
use harness_spec::{Cell, Control, FinetuneSpec, NetworkArm, NetworkBody, Relation};

use crate::batches::{batch, label_tensor};
use crate::eval::{Evaluation, evaluate, evaluate_head};
use crate::features::{FeatureCache, FrozenFeatures};
use crate::{TrainEvent, train_device};

/// How a cell ended: [`CellStatus::Ok`] or [`CellStatus::Diverged`] here; the caller records
/// [`CellStatus::Failed`] for a cell that stopped with an error.
pub use harness_spec::CellStatus;

/// A cell's trained network and what was measured of it (read through `Deref`:
/// `outcome.test_accuracy`).
#[derive(Debug, Clone)]
pub struct CellOutcome {
    pub measured: Measured,
    /// The network that was evaluated.
    pub model: Network,
}

impl std::ops::Deref for CellOutcome {
    type Target = Measured;

    fn deref(&self) -> &Measured {
        &self.measured
    }
}

/// What one cell measured: its scores, its choices and its cost. The floor, which has no
/// network, gives this alone.
#[derive(Debug, Clone)]
pub struct Measured {
    pub status: CellStatus,
    pub test: Evaluation,
    pub test_accuracy: f64,
    pub validation_accuracy: f64,
    /// Step whose weights were kept (best validation accuracy), and the same in epochs.
    pub best_step: usize,
    pub best_epoch: f64,
    pub steps_run: usize,
    pub n_fit: usize,
    pub n_validation: usize,
    pub train_seconds: f64,
    pub examples_per_second: f64,
    /// Indices (into the target's training pool) of the subset, for paired-design checks.
    pub subset: Vec<usize>,
    /// What the cell chose on validation, when it searched (`[finetune.search]`, the probe of
    /// `[finetune.probe]`, the floor).
    pub search: Option<Search>,
}

/// What a cell's transferred layers are copied from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// Nothing: random weights (the cell's `source` is `scratch`).
    Scratch,
    /// A checkpoint the harness pre-trained.
    Checkpoint(&'a Checkpoint),
    /// The verified weight file of a network pre-trained elsewhere.
    Network(&'a Path),
}

impl<'a> From<Option<&'a Checkpoint>> for Source<'a> {
    fn from(checkpoint: Option<&'a Checkpoint>) -> Self {
        checkpoint.map_or(Source::Scratch, Source::Checkpoint)
    }
}

/// Builds the cell's starting network: seeded fresh weights, then the transfer applied.
pub fn initial_model<'a>(
    cell: &Cell,
    target: &Dataset,
    source: impl Into<Source<'a>>,
) -> Result<Network> {
    let source = source.into();
    let freeze = cell.option.freezes();
    if let Some(arm) = &cell.network {
        return initial_network(cell, arm, target, source, freeze);
    }
    let config = crate::model_config(target, &cell.model)?;
    // Every arm of one seed draws the same fresh weights, so the new head starts identical
    // whether the rest is copied or not.
    let model = crate::init_network(&config, &train_device(), cell.seed);
    let transfer = match source {
        Source::Checkpoint(c) => Transfer::Pretrained {
            checkpoint: c.clone(),
            copy_stem: cell.relation != Relation::Mismatched,
            freeze,
        },
        Source::Scratch => Transfer::Scratch {
            freeze,
            train_stem: cell.control == Some(Control::TrainedStem),
        },
        Source::Network(_) => anyhow::bail!(
            "cell {} trains the Transformer but was given a network's weights",
            cell.fingerprint
        ),
    };
    Ok(Network::Transformer(load_pretrained(model, &transfer)?))
}

/// A network pre-trained elsewhere with a new output layer for the target's classes, or its
/// architecture from random weights; Option 1 freezes everything but the output layer. The
/// new output layer is drawn from the cell's seed, the same for both arms.
fn initial_network(
    cell: &Cell,
    arm: &NetworkArm,
    target: &Dataset,
    source: Source,
    freeze: bool,
) -> Result<Network> {
    check_adapted(cell, arm, target)?;
    let weights = match (source, &arm.weights) {
        (Source::Scratch, None) => None,
        (Source::Network(path), Some(_)) => Some(path),
        _ => anyhow::bail!(
            "cell {}: the network arm and its weights do not agree",
            cell.fingerprint
        ),
    };
    network_with_weights(arm, target.classes.len(), cell.seed, weights, freeze)
}

/// That `target` went through `arm`'s input adapter: images of its side, ids of its length,
/// waveforms at its sample rate.
fn check_adapted(cell: &Cell, arm: &NetworkArm, target: &Dataset) -> Result<()> {
    let fits = match (&arm.body, &target.train) {
        (NetworkBody::Image { input, .. }, Inputs::Images(set)) => set.side == input.side,
        (NetworkBody::Text { input, shape }, Inputs::Tokens(set)) => {
            set.tokens == input.max_tokens && set.vocab_size <= shape.vocab_size
        }
        (NetworkBody::Audio { input, .. }, Inputs::Waveforms(set)) => {
            set.sample_rate == input.sample_rate && set.samples >= input.window
        }
        (NetworkBody::Patches { stem, .. }, Inputs::Images(_) | Inputs::Spectrograms(_)) => {
            target.shape() == (stem.rows, stem.cols)
        }
        _ => false,
    };
    anyhow::ensure!(
        fits,
        "cell {}: the target's examples ({:?} per example) did not come through the input adapter of {} ({})",
        cell.fingerprint,
        target.shape(),
        arm.architecture,
        arm.adapter_label()
    );
    Ok(())
}

/// The network of `arm` for `classes` classes on the training device: the published weights of
/// `weights` (or random ones) with a new output layer drawn from `seed`, everything but that
/// layer frozen when `freeze`.
pub fn network_with_weights(
    arm: &NetworkArm,
    classes: usize,
    seed: u64,
    weights: Option<&Path>,
    freeze: bool,
) -> Result<Network> {
    let start = Start {
        classes,
        seed,
        weights,
        freeze,
        device: train_device(),
    };
    match &arm.body {
        NetworkBody::Image { shape, input } => image_network(
            &start,
            shape,
            arm.init == Some(harness_spec::RandomInit::Original),
            input.side,
        ),
        NetworkBody::Text { shape, .. } => Ok(Network::Bert(bert_network(&start, shape)?)),
        NetworkBody::Audio { channels, input } => crepe_network(&start, *channels, input.hop),
        NetworkBody::Patches { shape, stem } => {
            // BERT drawn and loaded as for text; the stem drawn from the seed on its own
            // stream, so both arms of a seed start from the same stem and output layer.
            let bert = bert_network(&start, shape)?;
            let stem = crate::drawn_on_flex(&start.device, |flex| {
                flex.seed(seed ^ PATCH_STEM_STREAM);
                let position = PatchStem::draw_position(stem.tokens(), shape.hidden, flex);
                let drawn = PatchStem::new(
                    (stem.rows, stem.cols),
                    (stem.patch_rows, stem.patch_cols),
                    position,
                    flex,
                );
                harness_model::materialise(&drawn);
                drawn
            });
            Ok(Network::PatchBert(PatchBert { stem, bert }))
        }
    }
}

/// How [`network_with_weights`] starts a network: classes of the new output layer, the seed
/// it is drawn from, the published weights (none: random), and whether the body is frozen.
struct Start<'a> {
    classes: usize,
    seed: u64,
    weights: Option<&'a Path>,
    freeze: bool,
    device: Device,
}

fn loading(path: &Path, e: harness_model::efficientnet::WeightMismatch) -> anyhow::Error {
    anyhow::anyhow!("loading {}: {e}", path.display())
}

/// EfficientNet: the published body (or a random one, drawn as the original draws it when
/// `original_init`) behind an output layer drawn from the seed.
fn image_network(
    start: &Start,
    shape: &harness_spec::EfficientNetShape,
    original_init: bool,
    side: usize,
) -> Result<Network> {
    let (device, seed) = (&start.device, start.seed);
    let fresh = crate::init_efficientnet(shape, start.classes, device, seed, false);
    let mut net: EfficientNet = match start.weights {
        // The body drawn as the original draws it, the output layer as the pre-trained arm's.
        None if original_init => {
            let mut body = crate::init_efficientnet(shape, start.classes, device, seed, true);
            body.fc = fresh.fc;
            body
        }
        None => fresh,
        Some(path) => {
            let published = crate::init_efficientnet(shape, shape.classes, device, seed, false);
            let mut loaded = published.load_pytorch(path).map_err(|e| loading(path, e))?;
            loaded.fc = fresh.fc;
            loaded
        }
    };
    if start.freeze {
        net = net.freeze_body();
    }
    Ok(Network::EfficientNet(GreyImageNet { net, side }))
}

/// BERT drawn as the original draws it; the published body then replaces the drawn one, so
/// both arms of a seed start from the same output layer.
fn bert_network(
    start: &Start,
    shape: &harness_spec::BertShape,
) -> Result<harness_model::bert::Bert> {
    let mut net = crate::init_bert(shape, start.classes, &start.device, start.seed);
    if let Some(path) = start.weights {
        net = net.load_safetensors(path).map_err(|e| loading(path, e))?;
    }
    if start.freeze {
        net = net.freeze_body();
    }
    Ok(net)
}

/// CREPE: the published body (or a random one) behind a classifier drawn from the seed.
fn crepe_network(start: &Start, channels: [usize; 6], hop: usize) -> Result<Network> {
    let (device, seed) = (&start.device, start.seed);
    let fresh = crate::init_crepe(channels, start.classes, device, seed);
    let mut net = match start.weights {
        None => fresh,
        Some(path) => {
            let published = crate::init_crepe(channels, CREPE_BINS, device, seed);
            let mut loaded = published.load_pytorch(path).map_err(|e| loading(path, e))?;
            loaded.classifier = fresh.classifier;
            loaded
        }
    };
    if start.freeze {
        net = net.freeze_body();
    }
    Ok(Network::Crepe(FramedCrepe { net, hop }))
}

/// Mixed into a cell's seed to draw a fresh patch stem apart from the network it feeds.
const PATCH_STEM_STREAM: u64 = 0x5354_454d;

/// Outputs of the published CREPE networks' classifier (pitch bins), which transfer replaces.
const CREPE_BINS: usize = 360;

/// The input scaling of a cell: an image network's own (`(x − offset) / scale` on 0–255
/// pixels); none for token ids and waveforms (CREPE normalises each frame itself); or the
/// target pool's mean and standard deviation.
fn normalisation(cell: &Cell, target: &Dataset) -> Normalisation {
    match cell.network.as_ref().map(|arm| &arm.body) {
        Some(NetworkBody::Image { input, .. }) => Normalisation {
            mean: (input.offset / 255.0) as f32,
            std: (input.scale / 255.0) as f32,
        },
        // A fresh stem reads the target as the harness's own Transformer does.
        Some(NetworkBody::Patches { .. }) => Normalisation::of_pool(&target.train),
        Some(_) => Normalisation {
            mean: 0.0,
            std: 1.0,
        },
        None => Normalisation::of_pool(&target.train),
    }
}

/// Runs one cell to completion. Option 1 cells (frozen stem and backbone, no dropout) train
/// their output layer on features computed once (see [`FeatureCache`]); this call keeps them
/// for itself only. [`run_cell_cached`] shares them across cells.
pub fn run_cell<'a>(
    cell: &Cell,
    target: &Dataset,
    source: impl Into<Source<'a>>,
    events: &mut dyn FnMut(TrainEvent),
) -> Result<CellOutcome> {
    run_cell_cached(cell, target, source, &mut FeatureCache::default(), events)
}

/// [`run_cell`], with the frozen features of Option 1 cells kept in `cache` for later cells.
pub fn run_cell_cached<'a>(
    cell: &Cell,
    target: &Dataset,
    source: impl Into<Source<'a>>,
    cache: &mut FeatureCache,
    events: &mut dyn FnMut(TrainEvent),
) -> Result<CellOutcome> {
    run(cell, target, source.into(), Some(cache), events)
}

/// Runs one cell through the whole network at every step, Option 1 included: the reference
/// the cached path is checked against.
pub fn run_cell_uncached<'a>(
    cell: &Cell,
    target: &Dataset,
    source: impl Into<Source<'a>>,
    events: &mut dyn FnMut(TrainEvent),
) -> Result<CellOutcome> {
    run(cell, target, source.into(), None, events)
}

/// Runs the floor's cell: a logistic regression on the raw input of the cell's subset (see
/// [`crate::floor`]), its `C` chosen on validation from `[finetune.probe]`'s grid (or
/// [`harness_spec::DEFAULT_PROBE_C`]), refitted on fitting + validation and tested once.
pub fn run_floor(cell: &Cell, target: &Dataset) -> Result<Measured> {
    anyhow::ensure!(
        cell.is_floor(),
        "cell {} (source `{}`) is not the floor",
        cell.fingerprint,
        cell.source
    );
    let started = Instant::now();
    let subset = cell_subset(cell, target)?;
    let floor = crate::floor::fit_floor(target, &subset, &cell.finetune.probe.floor_grid())?;
    let seconds = started.elapsed().as_secs_f64();
    let chosen = floor.search.chosen();
    Ok(Measured {
        status: CellStatus::Ok,
        test: floor.test,
        test_accuracy: floor.test.accuracy,
        validation_accuracy: chosen.validation.accuracy,
        best_step: chosen.best_step,
        best_epoch: f64::NAN,
        steps_run: floor.search.refit_steps,
        n_fit: subset.fit.len(),
        n_validation: subset.validation.len(),
        train_seconds: seconds,
        examples_per_second: (subset.fit.len() + subset.validation.len()) as f64
            / seconds.max(1e-9),
        subset: subset.all(),
        search: Some(floor.search),
    })
}

fn run(
    cell: &Cell,
    target: &Dataset,
    source: Source,
    mut cache: Option<&mut FeatureCache>,
    events: &mut dyn FnMut(TrainEvent),
) -> Result<CellOutcome> {
    anyhow::ensure!(
        !cell.is_floor(),
        "cell {} is the floor, which trains no network: run it with run_floor",
        cell.fingerprint
    );
    check_source(cell, source)?;
    let started = Instant::now();
    let subset = cell_subset(cell, target)?;
    let setup = Setup {
        cell,
        target,
        norm: normalisation(cell, target),
        subset: &subset,
    };
    let plan = Schedule::new(cell, subset.fit.len());
    let grid = cell.finetune.search.learning_rates(cell.option);
    let probe = &cell.finetune.probe.c;
    let probe_cache = cache.as_deref_mut().filter(|_| fits_probe(cell));
    // Built (and its weights read) once; each run of a search starts from its own copy
    // (`snapshot`: a BatchNorm's running statistics are not shared with the other runs).
    let start = initial_model(cell, target, source)?;
    let (fitted, search, examples_seen) = if let Some(cache) = probe_cache {
        let (fitted, search) = fit_probe(&setup, start, cache, probe)?;
        let seen = fitted.examples_seen;
        (fitted, Some(search), seen)
    } else {
        let mut fit = |pass: &Pass| -> Result<Fitted> {
            let model = snapshot(&start);
            Ok(match cache.as_deref_mut() {
                Some(cache) if cell.trains_head_on_frozen_features() => {
                    fit_on_features(&setup, pass, model, cache, events)
                }
                _ => fit_through_network(&setup, pass, model, events),
            })
        };
        if grid.is_empty() {
            let fitted = fit(&Pass::validated(plan.clone(), &subset.fit))?;
            let seen = fitted.examples_seen;
            (fitted, None, seen)
        } else {
            search_and_refit(&plan, grid, &subset, &mut fit)?
        }
    };
    let fit_seconds = started.elapsed().as_secs_f64();
    let measured = Measured {
        status: fitted.status,
        test: fitted.test,
        test_accuracy: fitted.test.accuracy,
        validation_accuracy: search.as_ref().map_or(fitted.validation.accuracy, |s| {
            s.chosen().validation.accuracy
        }),
        best_step: search
            .as_ref()
            .map_or(fitted.best_step, |s| s.chosen().best_step),
        best_epoch: search
            .as_ref()
            .map_or(fitted.best_step, |s| s.chosen().best_step) as f64
            / plan.steps_per_epoch as f64,
        steps_run: fitted.steps_run,
        n_fit: subset.fit.len(),
        n_validation: subset.validation.len(),
        train_seconds: started.elapsed().as_secs_f64(),
        examples_per_second: examples_seen as f64 / fit_seconds.max(1e-9),
        subset: subset.all(),
        search,
    };
    Ok(CellOutcome {
        measured,
        model: fitted.model,
    })
}

/// Trains one candidate per learning rate of `grid` on the fitting split, validated as a cell
/// without a search is; chooses one by [`Search::choose`]; then refits that rate on fitting +
/// validation for as many epochs as the chosen candidate's best check took, with no
/// validation, and keeps the last weights. Returns the refit, the search and the examples
/// every pass saw.
fn search_and_refit(
    plan: &Schedule,
    grid: &[f64],
    subset: &harness_data::Subset,
    fit: &mut dyn FnMut(&Pass) -> Result<Fitted>,
) -> Result<(Fitted, Option<Search>, usize)> {
    let mut candidates = Vec::new();
    let mut seen = 0;
    for &learning_rate in grid {
        let pass = Pass::validated(plan.with_learning_rate(learning_rate), &subset.fit);
        let fitted = fit(&pass)?;
        seen += fitted.examples_seen;
        candidates.push(Candidate {
            value: learning_rate,
            validation: fitted.validation,
            best_step: fitted.best_step,
            status: fitted.status,
        });
    }
    let chosen = Search::choose(&candidates);
    let refit_data: Vec<usize> = subset
        .fit
        .iter()
        .chain(&subset.validation)
        .copied()
        .collect();
    let epochs = candidates[chosen].best_step as f64 / plan.steps_per_epoch as f64;
    let refit_plan = plan
        .with_learning_rate(candidates[chosen].value)
        .refit(refit_data.len(), epochs);
    let refit_steps = refit_plan.total;
    let fitted = fit(&Pass::refit(refit_plan, &refit_data))?;
    seen += fitted.examples_seen;
    let search = Search {
        setting: Setting::LearningRate,
        candidates,
        chosen,
        refit_steps,
    };
    Ok((fitted, Some(search), seen))
}

/// What a cell's search chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// Adam's learning rate (`[finetune.search]`).
    LearningRate,
    /// The inverse regularisation strength `C` of Option 1's logistic probe
    /// (`[finetune.probe]`).
    ProbeC,
}

impl Setting {
    /// Its name in the row's `search` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Setting::LearningRate => "learning_rate",
            Setting::ProbeC => "c",
        }
    }
}

/// One candidate value of a cell's search, as its validation split judged it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The learning rate or `C` tried.
    pub value: f64,
    /// The best validation check of its run on the fitting split.
    pub validation: Evaluation,
    /// The step of that check (for the probe: the solver's iterations).
    pub best_step: usize,
    pub status: CellStatus,
}

/// A cell's choice of learning rate on its validation split.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    pub setting: Setting,
    /// Every candidate, in the order of the grid.
    pub candidates: Vec<Candidate>,
    /// Index of the chosen one.
    pub chosen: usize,
    /// Steps of the refit on fitting + validation (for the probe: the solver's iterations).
    pub refit_steps: usize,
}

impl Search {
    /// The rule: among the candidates that did not diverge (all of them if every one did), the
    /// highest validation accuracy; ties go to the lower validation loss, then to the smaller
    /// learning rate. The test set plays no part.
    pub fn choose(candidates: &[Candidate]) -> usize {
        let usable = |c: &Candidate| c.status == CellStatus::Ok;
        let pool: Vec<usize> = if candidates.iter().any(usable) {
            (0..candidates.len())
                .filter(|&i| usable(&candidates[i]))
                .collect()
        } else {
            (0..candidates.len()).collect()
        };
        let better = |a: &Candidate, b: &Candidate| {
            let key = |c: &Candidate| (c.validation.accuracy, -c.validation.loss, -c.value);
            key(a).partial_cmp(&key(b)) == Some(std::cmp::Ordering::Greater)
        };
        let mut best = pool[0];
        for &i in &pool[1..] {
            if better(&candidates[i], &candidates[best]) {
                best = i;
            }
        }
        best
    }

    /// The chosen candidate.
    pub fn chosen(&self) -> &Candidate {
        &self.candidates[self.chosen]
    }
}

/// An error unless `source` is what the cell asks for: a checkpoint for a pre-trained source,
/// published weights for a network arm that has them, nothing for scratch.
fn check_source(cell: &Cell, source: Source) -> Result<()> {
    let needs_checkpoint = cell.pretrain_key.is_some();
    let needs_weights = cell.network.as_ref().is_some_and(|n| n.weights.is_some());
    let agrees = match source {
        Source::Scratch => !needs_checkpoint && !needs_weights,
        Source::Checkpoint(_) => needs_checkpoint,
        Source::Network(_) => needs_weights,
    };
    anyhow::ensure!(
        agrees,
        "cell {} (source `{}`) was given the wrong starting weights: {source:?}",
        cell.fingerprint,
        cell.source
    );
    Ok(())
}

/// Whether the cell trains its output layer as the logistic probe (`[finetune.probe]`): only
/// a cell that trains its output layer alone on cached frozen features can
/// ([`Cell::trains_head_on_frozen_features`]).
pub fn fits_probe(cell: &Cell) -> bool {
    cell.fits_probe()
}

/// The optimisation steps a validated run of a cell may take on `n_fit` examples: its epochs
/// over the fitting split, at least `min_steps`.
pub fn step_budget(finetune: &FinetuneSpec, n_fit: usize) -> usize {
    (n_fit.div_ceil(finetune.batch_size) * finetune.epochs).max(finetune.min_steps)
}

/// What one cell trains on: its target, input scaling and subset.
struct Setup<'a> {
    cell: &'a Cell,
    target: &'a Dataset,
    norm: Normalisation,
    subset: &'a harness_data::Subset,
}

/// One training run of a cell: its schedule and the examples it fits (validation, when the
/// schedule validates, is always the cell's validation split).
struct Pass<'a> {
    plan: Schedule,
    train: &'a [usize],
}

impl<'a> Pass<'a> {
    fn validated(plan: Schedule, train: &'a [usize]) -> Pass<'a> {
        Pass { plan, train }
    }

    fn refit(plan: Schedule, train: &'a [usize]) -> Pass<'a> {
        debug_assert!(!plan.validated);
        Pass { plan, train }
    }
}

impl Setup<'_> {
    fn test_indices(&self) -> Vec<usize> {
        (0..self.target.test.len()).collect()
    }

    /// The frozen network's features of the subset (fitting and validation) and of the test
    /// set, computed the first time and kept in `cache`.
    fn frozen_features<'c>(
        &self,
        model: &Network,
        cache: &'c mut FeatureCache,
    ) -> &'c FrozenFeatures {
        let used: Vec<usize> = self
            .subset
            .fit
            .iter()
            .chain(&self.subset.validation)
            .copied()
            .collect();
        cache.get_or_compute(
            self.cell,
            model,
            (&self.target.train, &self.target.test),
            &used,
            &self.norm,
        )
    }
}

/// A cell's trained network with its validation and test evaluations.
struct Fitted {
    status: CellStatus,
    best_step: usize,
    steps_run: usize,
    examples_seen: usize,
    validation: Evaluation,
    test: Evaluation,
    model: Network,
}

/// Trains the output layer alone on the frozen network's features of the subset and the test
/// set, computed once and kept in `cache`.
fn fit_on_features(
    setup: &Setup,
    pass: &Pass,
    model: Network,
    cache: &mut FeatureCache,
    events: &mut dyn FnMut(TrainEvent),
) -> Fitted {
    let (target, subset) = (setup.target, setup.subset);
    let (classes, device) = (target.classes.len(), train_device());
    let frozen = setup.frozen_features(&model, cache);
    let labels = target.train.labels();
    let trained = fine_tune(
        model.head().clone(),
        &pass.plan,
        pass.train,
        |head: &Linear, chunk: &[usize]| {
            let y = label_tensor(labels, chunk, &device);
            (head.forward(frozen.pool.batch(chunk, &device)), y)
        },
        |head: &Linear| evaluate_head(head, &frozen.pool, labels, &subset.validation, classes),
        events,
    );
    let test = evaluate_head(
        &trained.best,
        &frozen.test,
        target.test.labels(),
        &setup.test_indices(),
        classes,
    );
    Fitted {
        status: trained.status,
        best_step: trained.best_step,
        steps_run: trained.steps_run,
        examples_seen: trained.examples_seen,
        validation: trained.best_eval,
        test,
        model: model.with_head(trained.best),
    }
}

/// Trains the output layer as a logistic probe on the frozen network's features (see
/// `probe_head`), computed once and kept in `cache`.
fn fit_probe(
    setup: &Setup,
    model: Network,
    cache: &mut FeatureCache,
    grid: &[f64],
) -> Result<(Fitted, Search)> {
    let (target, subset) = (setup.target, setup.subset);
    let classes = target.classes.len();
    let frozen = setup.frozen_features(&model, cache);
    let (head, search) = crate::probe_head::probe_head(
        &frozen.pool,
        target.train.labels(),
        (&subset.fit, &subset.validation),
        classes,
        grid,
    )?;
    let test = evaluate_head(
        &head,
        &frozen.test,
        target.test.labels(),
        &setup.test_indices(),
        classes,
    );
    let fitted = Fitted {
        status: CellStatus::Ok,
        best_step: search.chosen().best_step,
        steps_run: search.refit_steps,
        examples_seen: subset.fit.len() + subset.validation.len(),
        validation: search.chosen().validation,
        test,
        model: model.with_head(head),
    };
    Ok((fitted, search))
}

/// Trains the network as the option says, every batch through all of it.
fn fit_through_network(
    setup: &Setup,
    pass: &Pass,
    model: Network,
    events: &mut dyn FnMut(TrainEvent),
) -> Fitted {
    let (target, subset, norm) = (setup.target, setup.subset, &setup.norm);
    let (classes, device) = (target.classes.len(), train_device());
    let trained = fine_tune(
        model,
        &pass.plan,
        pass.train,
        |model: &Network, chunk: &[usize]| {
            let (x, y) = batch(&target.train, norm, chunk, &device);
            (model.forward(x), y)
        },
        |model: &Network| evaluate(model, &target.train, norm, &subset.validation, classes),
        events,
    );
    let test = evaluate(
        &trained.best,
        &target.test,
        norm,
        &setup.test_indices(),
        classes,
    );
    Fitted {
        status: trained.status,
        best_step: trained.best_step,
        steps_run: trained.steps_run,
        examples_seen: trained.examples_seen,
        validation: trained.best_eval,
        test,
        model: trained.best,
    }
}

/// The cell's stratified subset of the target's pool, split into fit and validation: the same
/// for every source and option of one (n_train, seed), and nested across n_train.
fn cell_subset(cell: &Cell, target: &Dataset) -> Result<harness_data::Subset> {
    let pool: Vec<usize> = (0..target.train.len()).collect();
    training_subset(
        &pool,
        target.train.labels(),
        target.classes.len(),
        cell.n_train,
        cell.seed,
        cell.finetune.validation_fraction,
    )
}

/// One cell's data and step budget as plain arrays: what the PyTorch reference of
/// `harness bench` needs to run the same cell (same subset, same normalisation, same budget).
#[derive(Debug, Clone)]
pub struct CellArrays {
    /// Values per example (`rows·cols`; token ids for text).
    pub width: usize,
    /// Normalised inputs `[n, width]` row-major, and labels, of each split.
    pub fit: (Vec<f32>, Vec<u16>),
    pub validation: (Vec<f32>, Vec<u16>),
    pub test: (Vec<f32>, Vec<u16>),
    pub total_steps: usize,
    pub eval_every: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub patience: usize,
}

/// The arrays of `cell` on `target`, drawn exactly as [`run_cell`] draws them.
pub fn cell_arrays(cell: &Cell, target: &Dataset) -> Result<CellArrays> {
    let subset = cell_subset(cell, target)?;
    let norm = normalisation(cell, target);
    let plan = Schedule::new(cell, subset.fit.len());
    let take = |set: &Inputs, indices: &[usize]| {
        let labels = set.labels();
        (
            norm.features(set, indices),
            indices.iter().map(|&i| labels[i]).collect(),
        )
    };
    let test: Vec<usize> = (0..target.test.len()).collect();
    Ok(CellArrays {
        width: target.train.width(),
        fit: take(&target.train, &subset.fit),
        validation: take(&target.train, &subset.validation),
        test: take(&target.test, &test),
        total_steps: plan.total,
        eval_every: plan.eval_every,
        batch_size: plan.batch_size,
        learning_rate: plan.learning_rate,
        patience: plan.patience,
    })
}

/// The step budget of a cell and how often it is validated.
#[derive(Debug, Clone)]
struct Schedule {
    steps_per_epoch: usize,
    total: usize,
    eval_every: usize,
    batch_size: usize,
    learning_rate: f64,
    patience: usize,
    seed: u64,
    /// Whether the run is validated (early stopping, the best check kept); a refit is not,
    /// and keeps its last weights.
    validated: bool,
}

impl Schedule {
    fn new(cell: &Cell, n_fit: usize) -> Schedule {
        let ft = &cell.finetune;
        let steps_per_epoch = n_fit.div_ceil(ft.batch_size);
        let total = step_budget(ft, n_fit);
        Schedule {
            steps_per_epoch,
            total,
            eval_every: total.div_ceil(ft.evaluations).max(1),
            batch_size: ft.batch_size,
            learning_rate: ft.learning_rate(cell.option),
            patience: ft.patience,
            seed: cell.seed,
            validated: true,
        }
    }

    /// The same schedule at another learning rate.
    fn with_learning_rate(&self, learning_rate: f64) -> Schedule {
        Schedule {
            learning_rate,
            ..self.clone()
        }
    }

    /// A refit on `n` examples for `epochs` passes (rounded to whole steps), not validated.
    fn refit(&self, n: usize, epochs: f64) -> Schedule {
        let steps_per_epoch = n.div_ceil(self.batch_size);
        let total = (epochs * steps_per_epoch as f64).round() as usize;
        Schedule {
            steps_per_epoch,
            total,
            eval_every: total.max(1),
            validated: false,
            ..self.clone()
        }
    }
}

/// What [`fine_tune`] kept: the module of the best validation check.
struct Trained<M> {
    status: CellStatus,
    best: M,
    best_eval: Evaluation,
    best_step: usize,
    steps_run: usize,
    examples_seen: usize,
}

/// A copy of `module` that later training leaves alone. `clone` is not one: a cloned
/// BatchNorm shares its running mean and variance with the original (burn's `RunningState`
/// keeps them behind an `Arc`), so the best check of an EfficientNet or CREPE would be tested
/// with the statistics of the last step. `valid` copies them out; `train` gives the copy back its
/// autodiff tensors and each parameter's frozen or trainable state.
fn snapshot<M: Module>(module: &M) -> M {
    module.valid().train()
}

/// Adam on `module` over shuffled batches of `fit` (the order fixed by the seed), validated
/// `evaluations` times over the budget, stopping after `patience` checks without a better
/// validation accuracy (ties: lower loss); the best checked module is kept. The same loop
/// trains a whole network or, on cached features, only its output layer.
fn fine_tune<M: Module>(
    mut module: M,
    plan: &Schedule,
    fit: &[usize],
    forward: impl Fn(&M, &[usize]) -> (Tensor<2>, Tensor<1, Int>),
    validate: impl Fn(&M) -> Evaluation,
    events: &mut dyn FnMut(TrainEvent),
) -> Trained<M> {
    let loss_fn = CrossEntropyLossConfig::new().init(&train_device());
    let mut optim = AdamConfig::new().init();
    let mut order = fit.to_vec();
    let mut rng = Rng::new(plan.seed, "finetune-order");
    let mut cursor = order.len();
    let score = |e: &Evaluation| (e.accuracy, -e.loss);
    let first = if plan.validated {
        validate(&module)
    } else {
        Evaluation::not_measured()
    };
    let mut best = (first, 0usize, snapshot(&module));
    let mut since_best = 0;
    let mut status = CellStatus::Ok;
    let mut step = 0;
    let mut examples_seen = 0usize;
    while step < plan.total {
        if cursor >= order.len() {
            rng.shuffle(&mut order);
            cursor = 0;
        }
        let end = (cursor + plan.batch_size).min(order.len());
        let (logits, y) = forward(&module, &order[cursor..end]);
        examples_seen += end - cursor;
        cursor = end;
        let loss = loss_fn.forward(logits, y);
        let value: f32 = loss.clone().into_scalar::<f32>();
        if !value.is_finite() {
            status = CellStatus::Diverged;
            break;
        }
        let grads = GradientsParams::from_grads(loss.backward(), &module);
        module = optim.step(plan.learning_rate, module, grads);
        step += 1;
        events(TrainEvent::CellStep {
            step,
            total: plan.total,
        });
        if plan.validated && (step % plan.eval_every == 0 || step == plan.total) {
            let eval = validate(&module);
            if score(&eval) > score(&best.0) {
                best = (eval, step, snapshot(&module));
                since_best = 0;
            } else {
                since_best += 1;
                if since_best >= plan.patience {
                    break;
                }
            }
        }
    }
    if !plan.validated {
        best = (Evaluation::not_measured(), step, module);
    }
    let (best_eval, best_step, best) = best;
    Trained {
        status,
        best,
        best_eval,
        best_step,
        steps_run: step,
        examples_seen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{BatchNorm, BatchNormConfig, LinearConfig};
    use std::cell::RefCell;

    /// A BatchNorm in front of an output layer: its running statistics are state that
    /// training changes besides the parameters.
    #[derive(Module, Debug)]
    struct Normed {
        norm: BatchNorm,
        head: Linear,
    }

    impl Normed {
        fn forward(&self, x: Tensor<2>) -> Tensor<2> {
            let x: Tensor<3> = x.unsqueeze_dim(2);
            self.head.forward(self.norm.forward(x).squeeze_dim(2))
        }
    }

    #[test]
    fn the_best_check_keeps_its_own_batch_norm_statistics() {
        let device = train_device();
        device.seed(7);
        let module = Normed {
            norm: BatchNormConfig::new(4).init(&device),
            head: LinearConfig::new(4, 2).init(&device),
        };
        // Inputs far from the initial running mean (0) and variance (1), so that the statistics
        // move with every step.
        let n = 64;
        let values: Vec<f32> = (0..n * 4).map(|i| 5.0 + ((i * 37) % 11) as f32).collect();
        let labels: Vec<i64> = (0..n).map(|i| (i % 2) as i64).collect();
        let inputs = |chunk: &[usize], device: &Device| {
            let rows: Vec<f32> = (chunk.iter())
                .flat_map(|&i| values[4 * i..4 * i + 4].to_vec())
                .collect();
            Tensor::<2>::from_data(TensorData::new(rows, [chunk.len(), 4]), device)
        };
        let probe: Vec<usize> = (0..8).collect();
        let seen = RefCell::new(Vec::new());
        let plan = Schedule {
            steps_per_epoch: 4,
            total: 12,
            eval_every: 4,
            batch_size: 16,
            learning_rate: 1e-2,
            patience: 10,
            seed: 1,
            validated: true,
        };
        let fit: Vec<usize> = (0..n).collect();
        let trained = fine_tune(
            module,
            &plan,
            &fit,
            |m: &Normed, chunk: &[usize]| {
                let y = Tensor::<1, Int>::from_data(
                    TensorData::new(chunk.iter().map(|&i| labels[i]).collect(), [chunk.len()]),
                    &device,
                );
                (m.forward(inputs(chunk, &device)), y)
            },
            |m: &Normed| {
                let out = m.valid().forward(inputs(&probe, &crate::eval_device()));
                let mut seen = seen.borrow_mut();
                seen.push(out.into_data().try_to_vec::<f32>().unwrap());
                // The check after the first 4 steps is the best; the later ones are worse.
                let accuracy = if seen.len() == 2 { 1.0 } else { 0.5 };
                Evaluation {
                    accuracy,
                    macro_f1: accuracy,
                    loss: 1.0,
                }
            },
            &mut |_| {},
        );
        assert_eq!((trained.best_step, trained.steps_run), (4, 12));
        let seen = seen.into_inner();
        let (at_best, last) = (&seen[1], &seen[seen.len() - 1]);
        assert_ne!(
            at_best, last,
            "training after the best check changed nothing"
        );
        let kept = (trained.best.valid())
            .forward(inputs(&probe, &crate::eval_device()))
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(
            &kept, at_best,
            "the kept network is not the one its check scored"
        );
    }
}
