//! Experiment files: the matrix (targets × sources × n_train × options × seeds) and the model,
//! pre-training and fine-tuning settings shared by its cells.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::choices::{Activation, SourceChoice, TextNormalisation, TransferOption};
use crate::error::SpecError;
use crate::include::{self, SourceFile};
use crate::manifest::Modality;

/// The source name that means "no pre-training": the same network from random initialisation.
pub const SCRATCH: &str = "scratch";

/// The source name of the floor: a logistic regression on the target's raw input (pixels,
/// mean log-mel, TF-IDF of words), run beside the arms of every target unless `[matrix]
/// floor = false`.
pub const FLOOR: &str = "floor";

/// Architecture of the network: a modality stem, a pre-LN Transformer backbone, a linear head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSpec {
    /// Image stem: side of the square, non-overlapping patches (must divide the image side).
    pub patch: usize,
    /// Width of every token in the backbone.
    pub d_model: usize,
    /// Transformer encoder layers.
    pub n_layers: usize,
    /// Attention heads (must divide `d_model`).
    pub n_heads: usize,
    /// Hidden width of each layer's feed-forward block.
    pub d_ff: usize,
    /// Feed-forward activation.
    pub activation: Activation,
    /// Dropout inside the backbone during training.
    pub dropout: f64,
    /// Audio stem: consecutive log-mel frames (every mel band) in one token; must divide the
    /// spectrogram's frame count. Needed only when an audio dataset is in the matrix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_per_token: Option<usize>,
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec {
            patch: 7,
            d_model: 64,
            n_layers: 2,
            n_heads: 4,
            d_ff: 128,
            activation: Activation::Relu,
            dropout: 0.0,
            frames_per_token: None,
        }
    }
}

/// How a source network is pre-trained on its whole training pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainSpec {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Seed of the initialisation and batch order.
    pub seed: u64,
    /// Use at most this many training examples (0 = all), each class keeping its share.
    pub max_examples: usize,
    /// Settings that differ for image sources (`[pretrain.image]`), and so on: a matrix with
    /// sources of several modalities can pre-train each as its own experiment does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<PretrainOverride>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<PretrainOverride>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<PretrainOverride>,
}

/// Pre-training settings of one source modality that replace those of `[pretrain]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainOverride {
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub learning_rate: Option<f64>,
    pub seed: Option<u64>,
    pub max_examples: Option<usize>,
}

impl PretrainSpec {
    /// The settings a source of `modality` pre-trains with: `[pretrain]` with that modality's
    /// table applied, and no per-modality tables left (so that the same settings give the same
    /// pre-training key whichever experiment asks for them).
    pub fn for_modality(&self, modality: Modality) -> PretrainSpec {
        let o = match modality {
            Modality::Image => &self.image,
            Modality::Audio => &self.audio,
            Modality::Text => &self.text,
        }
        .clone()
        .unwrap_or_default();
        PretrainSpec {
            epochs: o.epochs.unwrap_or(self.epochs),
            batch_size: o.batch_size.unwrap_or(self.batch_size),
            learning_rate: o.learning_rate.unwrap_or(self.learning_rate),
            seed: o.seed.unwrap_or(self.seed),
            max_examples: o.max_examples.unwrap_or(self.max_examples),
            image: None,
            audio: None,
            text: None,
        }
    }
}

impl ModelSpec {
    /// The settings that shape a network for `modality`: the other modalities' stem settings
    /// back at their defaults, so that a source pre-trains under the same key in a
    /// single-modality experiment and in a cross-modal matrix.
    pub fn for_modality(&self, modality: Modality) -> ModelSpec {
        let defaults = ModelSpec::default();
        ModelSpec {
            patch: if modality == Modality::Image {
                self.patch
            } else {
                defaults.patch
            },
            frames_per_token: if modality == Modality::Audio {
                self.frames_per_token
            } else {
                defaults.frames_per_token
            },
            ..self.clone()
        }
    }
}

impl Default for PretrainSpec {
    fn default() -> Self {
        PretrainSpec {
            epochs: 3,
            batch_size: 64,
            learning_rate: 1e-3,
            seed: 0,
            max_examples: 0,
            image: None,
            audio: None,
            text: None,
        }
    }
}

/// How each cell trains on its small target subset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinetuneSpec {
    pub batch_size: usize,
    /// Adam learning rate under Option 1 (only the new layers train).
    pub option1_learning_rate: f64,
    /// Adam learning rate under Option 2 (every layer trains).
    pub option2_learning_rate: f64,
    /// Passes over the fitting split; the step budget is the larger of this and `min_steps`.
    pub epochs: usize,
    /// Lower bound on optimisation steps, so that tiny subsets still train.
    pub min_steps: usize,
    /// Fraction of the training subset held out (stratified) for early stopping.
    pub validation_fraction: f64,
    /// Validation checks spread evenly over the step budget.
    pub evaluations: usize,
    /// Stop after this many checks without a better validation accuracy.
    pub patience: usize,
    /// `[finetune.search]`: learning rates each cell chooses from on its validation split, then
    /// refits with on fitting + validation (empty: the fixed rates above, early stopping on
    /// validation, no refit). Absent from fingerprints when empty, so cells without a search
    /// keep theirs.
    #[serde(skip_serializing_if = "SearchSpec::is_empty")]
    pub search: SearchSpec,
    /// `[finetune.probe]`: Option 1 cells that train only the output layer on cached frozen
    /// features train it as a logistic probe, `C` chosen from [`DEFAULT_PROBE_C`] unless the
    /// file lists its own; `c = []` trains it with Adam instead. Absent from fingerprints when
    /// empty, so Adam cells keep the fingerprints they had when Adam was the default.
    #[serde(skip_serializing_if = "ProbeSpec::is_empty")]
    pub probe: ProbeSpec,
}

/// Option 1's output layer as an ℓ2-regularised logistic regression on standardised frozen
/// features, its inverse strength `C` chosen on validation among `c`, then refitted on
/// fitting + validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeSpec {
    pub c: Vec<f64>,
}

/// The probe is Option 1's default head: on the committed experiments it beat Adam's
/// fixed-budget head in 37 of 40 (arm, n_train) pairs (issue 17).
impl Default for ProbeSpec {
    fn default() -> Self {
        ProbeSpec {
            c: DEFAULT_PROBE_C.to_vec(),
        }
    }
}

/// The probe strengths Option 1's probe and the floor choose from unless `[finetune.probe]`
/// lists others: a decade apart, as scikit-learn's `LogisticRegressionCV` spaces its default
/// grid.
pub const DEFAULT_PROBE_C: [f64; 7] = [1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0];

impl ProbeSpec {
    /// Option 1's head trained with Adam (`[finetune.probe] c = []`).
    pub fn adam() -> Self {
        ProbeSpec { c: Vec::new() }
    }

    /// Whether Option 1's head trains with Adam (no probe).
    pub fn is_empty(&self) -> bool {
        self.c.is_empty()
    }

    /// The grid of `C` the floor chooses from: the experiment's, or [`DEFAULT_PROBE_C`].
    pub fn floor_grid(&self) -> Vec<f64> {
        if self.c.is_empty() {
            DEFAULT_PROBE_C.to_vec()
        } else {
            self.c.clone()
        }
    }
}

/// Candidate learning rates of each option, chosen per cell on validation accuracy (ties:
/// lower validation loss, then the smaller rate) as VTAB-1k and Kornblith et al. (2019) do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchSpec {
    pub option1_learning_rates: Vec<f64>,
    pub option2_learning_rates: Vec<f64>,
    /// Choose once per arm and size instead of in every cell: the first `pilot_seeds` seeds of
    /// `[matrix] seeds` train the arm at every listed rate (and at its fixed rate); the rate
    /// with the highest validation accuracy averaged over those seeds is chosen, and every
    /// other seed trains at it alone, early-stopped on its own validation split, without a
    /// refit. The fixed-rate cells of every seed run too, so that reports set the verdicts of
    /// the fixed rates beside those of the chosen ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pilot_seeds: Option<usize>,
}

impl SearchSpec {
    /// Whether no option searches.
    pub fn is_empty(&self) -> bool {
        self.option1_learning_rates.is_empty() && self.option2_learning_rates.is_empty()
    }

    /// The candidate learning rates of `option`'s cells (empty: no search).
    pub fn learning_rates(&self, option: TransferOption) -> &[f64] {
        match option {
            TransferOption::Freeze => &self.option1_learning_rates,
            TransferOption::FineTune => &self.option2_learning_rates,
        }
    }
}

impl Default for FinetuneSpec {
    fn default() -> Self {
        FinetuneSpec {
            batch_size: 32,
            option1_learning_rate: 1e-2,
            option2_learning_rate: 1e-3,
            epochs: 30,
            min_steps: 200,
            validation_fraction: 0.2,
            evaluations: 20,
            patience: 20,
            search: SearchSpec::default(),
            probe: ProbeSpec::default(),
        }
    }
}

/// How text becomes token ids: one tokenizer per experiment, shared by every text dataset in it
/// (source and target alike), so that every cell of a text target is paired whatever its source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextSpec {
    /// Tokens per document: longer documents are cut (the start is kept), shorter ones padded.
    pub max_tokens: usize,
    /// Vocabulary of the trained WordPiece tokenizer, the two special tokens included.
    pub vocab_size: usize,
    /// Pieces seen fewer times than this in the corpus are not learned.
    pub min_frequency: u64,
    /// Normalisation applied to every text before tokenising: `"letters"` (lower-case letters
    /// a–z and single spaces; accents stripped, everything else a space: what the 20 Newsgroups
    /// reference package already is) or `"tokenizer"` (only the tokenizer's own lower-casing
    /// and accent stripping).
    pub normalise: TextNormalisation,
    /// Dataset whose training pool trains the tokenizer; by default the first text source in
    /// `matrix.sources`, or, with none, the first text target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corpus: Option<String>,
    /// The user's own `tokenizer.json` (path relative to the experiment file) instead of
    /// training one. `[PAD]` must be id 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
}

impl Default for TextSpec {
    fn default() -> Self {
        TextSpec {
            max_tokens: 128,
            vocab_size: 8000,
            min_frequency: 2,
            normalise: TextNormalisation::Letters,
            corpus: None,
            tokenizer: None,
        }
    }
}

/// One side of a hypothesis's comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arm {
    /// Sources of the target's modality.
    Matched,
    /// Sources of another modality.
    Mismatched,
    /// The same network from random initialisation.
    Scratch,
    /// Option 1 or 2, for each source in the hypothesis's `sources`.
    Option(TransferOption),
}

impl Arm {
    fn parse(text: &str) -> Option<Arm> {
        Some(match text {
            "matched" => Arm::Matched,
            "mismatched" => Arm::Mismatched,
            "scratch" => Arm::Scratch,
            "option 1" => Arm::Option(TransferOption::Freeze),
            "option 2" => Arm::Option(TransferOption::FineTune),
            _ => return None,
        })
    }

    /// The relation (`none`, `matched`, `mismatched`) of the sources on this side.
    pub fn relation(self) -> Option<crate::plan::Relation> {
        use crate::plan::Relation;
        match self {
            Arm::Matched => Some(Relation::Matched),
            Arm::Mismatched => Some(Relation::Mismatched),
            Arm::Scratch => Some(Relation::None),
            Arm::Option(_) => None,
        }
    }

    pub fn describe(self) -> String {
        match self {
            Arm::Matched => "matched".into(),
            Arm::Mismatched => "mismatched".into(),
            Arm::Scratch => "scratch".into(),
            Arm::Option(o) => format!("option {o}"),
        }
    }
}

/// What a hypothesis expects of A − B (test accuracy, paired by seed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expect {
    /// A − B > margin (superiority; margin usually 0).
    Greater,
    /// A − B > −margin (non-inferiority).
    NotWorse,
    /// −margin < A − B < margin (equivalence, tested with TOST).
    Equivalent,
}

impl Expect {
    pub fn as_str(self) -> &'static str {
        match self {
            Expect::Greater => "greater",
            Expect::NotWorse => "not-worse",
            Expect::Equivalent => "equivalent",
        }
    }
}

/// Which training-set sizes a hypothesis covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SizeScope {
    Smallest,
    Largest,
    All,
    Values(Vec<usize>),
}

impl SizeScope {
    /// The sizes of `available` (the matrix's `n_train`) it covers.
    pub fn select(&self, available: &[usize]) -> Vec<usize> {
        let mut sorted = available.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        match self {
            SizeScope::Smallest => sorted.first().copied().into_iter().collect(),
            SizeScope::Largest => sorted.last().copied().into_iter().collect(),
            SizeScope::All => sorted,
            SizeScope::Values(v) => sorted.into_iter().filter(|n| v.contains(n)).collect(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            SizeScope::Smallest => "smallest n_train".into(),
            SizeScope::Largest => "largest n_train".into(),
            SizeScope::All => "every n_train".into(),
            SizeScope::Values(v) => format!(
                "n_train {}",
                v.iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum SizeScopeFile {
    Named(String),
    Values(Vec<usize>),
}

/// A `[[hypothesis]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct HypothesisFile {
    name: Spanned<String>,
    #[serde(default)]
    claim: String,
    a: Spanned<String>,
    b: Spanned<String>,
    expect: Spanned<String>,
    #[serde(default)]
    margin: Option<Spanned<f64>>,
    #[serde(default)]
    n_train: Option<Spanned<SizeScopeFile>>,
    #[serde(default)]
    options: Vec<Spanned<TransferOption>>,
    #[serde(default)]
    sources: Vec<Spanned<String>>,
    #[serde(default)]
    targets: Vec<Spanned<String>>,
    #[serde(default)]
    architectures: Vec<Spanned<String>>,
}

/// A claim the report tests, declared before the run: arm A against arm B on test accuracy,
/// paired by seed, one verdict per target it applies to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hypothesis {
    pub name: String,
    /// The claim in words.
    pub claim: String,
    pub a: Arm,
    pub b: Arm,
    pub expect: Expect,
    /// In accuracy (0.02 = 2 points).
    pub margin: f64,
    pub n_train: SizeScope,
    /// Options compared (relation arms; empty = every option of the matrix).
    pub options: Vec<TransferOption>,
    /// Sources compared (option arms): relations `matched`, `mismatched`, `scratch`, or
    /// dataset ids; empty = every source.
    pub sources: Vec<SourceChoice>,
    /// Targets it applies to; empty = every target.
    pub targets: Vec<String>,
    /// Architectures whose arms it compares (`transformer`, or a network's, e.g.
    /// `efficientnet-lite0`); empty = each architecture, every arm paired within its own.
    pub architectures: Vec<String>,
}

/// The grid of cells.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixSpec {
    pub targets: Vec<Spanned<String>>,
    pub sources: Vec<Spanned<String>>,
    pub n_train: Vec<Spanned<usize>>,
    pub options: Vec<Spanned<TransferOption>>,
    pub seeds: Vec<u64>,
    /// `[matrix.sources_by_target]`: a target's own list of sources, in place of `sources`
    /// (e.g. when a network has no adapter to one of the targets).
    #[serde(default)]
    pub sources_by_target: std::collections::BTreeMap<String, Vec<Spanned<String>>>,
    /// `[matrix.n_train_by_target]`: a target's own training-set sizes, in place of `n_train`
    /// (e.g. when its smallest class cannot fill a larger stratified subset).
    #[serde(default)]
    pub n_train_by_target: std::collections::BTreeMap<String, Vec<Spanned<usize>>>,
    /// Whether every target gets its floor (a logistic regression on the raw input, see
    /// [`FLOOR`]) at every n_train and seed: true unless the file says `floor = false`.
    #[serde(default = "floor_by_default")]
    pub floor: bool,
    /// `[matrix.more_seeds]`: seeds added, after the matrix has run, where a hypothesis's
    /// interval is still wider than its goal (none when absent).
    #[serde(default)]
    pub more_seeds: Option<MoreSeeds>,
    /// `[matrix.ceiling]`: the best arm trained on (nearly) the whole training pool, as the
    /// report's ceiling (none when absent: the best arm at the largest n_train stands in).
    #[serde(default)]
    pub ceiling: Option<CeilingSpec>,
}

/// `[matrix.ceiling]`: once every cell of a target has a row, the arm with the best mean
/// validation accuracy at the target's largest n_train (the floor left out; each arm at its
/// chosen learning rate) trains again on `n_train` examples of the target, on the first `seeds`
/// seeds of the matrix. Its rows are the report's ceiling, apart from the matrix's sizes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeilingSpec {
    /// How many of `matrix.seeds` (the first ones) the ceiling trains on (default: 3, or
    /// every seed of a matrix with fewer).
    #[serde(default)]
    pub seeds: Option<usize>,
    /// Each target's ceiling size: at least its largest n_train, at most what a stratified
    /// subset of its pool can give (`harness run` names the limit). A target left out has no
    /// full-pool ceiling.
    pub n_train: std::collections::BTreeMap<String, Spanned<usize>>,
}

fn floor_by_default() -> bool {
    true
}

/// `[matrix.more_seeds]`: a precision rule for the number of seeds. Once every cell of the
/// matrix has a row, each (hypothesis, target) whose 95% interval of A − B has a half-width
/// above its goal (the hypothesis's `margin` where it declares one, else `half_width`) gets
/// `step` more seeds at the training-set sizes it covers (every arm and option, and the floor,
/// so the design stays paired), until it is within its goal or has `up_to` seeds. The rule
/// looks at the interval's width only, never at its position, so it cannot steer a verdict
/// towards either side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoreSeeds {
    /// The most seeds any (target, n_train) may reach, the matrix's own included.
    pub up_to: usize,
    /// Seeds added at a time.
    #[serde(default = "more_seeds_step")]
    pub step: usize,
    /// The goal, in accuracy, of a hypothesis without a margin (0.02 = 2 points).
    #[serde(default = "more_seeds_half_width")]
    pub half_width: f64,
}

fn more_seeds_step() -> usize {
    2
}

fn more_seeds_half_width() -> f64 {
    0.02
}

impl MoreSeeds {
    /// The half-width a hypothesis of `margin` aims for.
    pub fn goal(&self, margin: f64) -> f64 {
        if margin > 0.0 {
            margin
        } else {
            self.half_width
        }
    }
}

impl MatrixSpec {
    /// The sources `target` is trained from.
    pub fn sources_of(&self, target: &str) -> &[Spanned<String>] {
        self.sources_by_target
            .get(target)
            .map_or(&self.sources[..], |s| &s[..])
    }

    /// The training-set sizes of `target`.
    pub fn n_train_of(&self, target: &str) -> &[Spanned<usize>] {
        self.n_train_by_target
            .get(target)
            .map_or(&self.n_train[..], |n| &n[..])
    }

    /// Every training-set size named anywhere in the matrix.
    pub fn all_n_train(&self) -> impl Iterator<Item = &Spanned<usize>> {
        self.n_train
            .iter()
            .chain(self.n_train_by_target.values().flatten())
    }

    /// Every source named anywhere in the matrix.
    pub fn all_sources(&self) -> impl Iterator<Item = &Spanned<String>> {
        self.sources
            .iter()
            .chain(self.sources_by_target.values().flatten())
    }
}

/// An experiment file as written. An included file is read with the same schema (and may lack
/// `[matrix]`); only its settings tables are used.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentFile {
    /// Files whose settings tables this one takes, paths relative to its folder.
    #[serde(default)]
    include: Vec<Spanned<String>>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    matrix: Option<MatrixSpec>,
    #[serde(default)]
    model: ModelSpec,
    #[serde(default)]
    pretrain: PretrainSpec,
    #[serde(default)]
    finetune: FinetuneSpec,
    #[serde(default)]
    text: TextSpec,
    #[serde(default)]
    networks: NetworksSpec,
    #[serde(default)]
    hypothesis: Vec<HypothesisFile>,
}

/// The `[networks]` table: how a target reaches the networks pre-trained elsewhere that the
/// matrix names as sources.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworksSpec {
    /// Side in pixels the target's images are resized to (default: the side the network was
    /// trained at, from its manifest's `[input]`).
    #[serde(default)]
    pub side: Option<usize>,
    /// Tokens per document a text network reads, `[CLS]` and `[SEP]` included (default: the
    /// length it was trained at, from its manifest's `[text]`); longer documents are cut.
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// Samples between the frames an audio network reads (default: a tenth of a second at the
    /// network's sample rate, from its manifest's `[audio]`).
    #[serde(default)]
    pub hop: Option<usize>,
    /// `[networks.finetune]`: the fine-tuning budget of the networks' cells (pre-trained and
    /// scratch alike), where it differs from `[finetune]`. The validation split cannot differ:
    /// every arm of one seed sees the same subset.
    #[serde(default)]
    pub finetune: FinetuneOverride,
    /// `[networks.frozen_features]`: the budget of the networks' Option 1 cells that train only
    /// the output layer on cached frozen features (seconds each, where a cell that trains
    /// through the network costs minutes), where it differs from `[networks.finetune]`'s.
    /// Cells behind a fresh stem train through the network under Option 1 too and keep
    /// `[networks.finetune]`.
    #[serde(default, skip_serializing_if = "FinetuneOverride::is_empty")]
    pub frozen_features: FinetuneOverride,
}

/// Fine-tuning settings that replace those of `[finetune]` for some cells.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FinetuneOverride {
    pub batch_size: Option<usize>,
    pub option1_learning_rate: Option<f64>,
    pub option2_learning_rate: Option<f64>,
    pub epochs: Option<usize>,
    pub min_steps: Option<usize>,
    pub evaluations: Option<usize>,
    pub patience: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeSpec>,
}

impl FinetuneOverride {
    /// Whether it replaces nothing.
    pub fn is_empty(&self) -> bool {
        *self == FinetuneOverride::default()
    }

    /// `base` with these settings in place of its own.
    pub fn apply(&self, base: &FinetuneSpec) -> FinetuneSpec {
        FinetuneSpec {
            batch_size: self.batch_size.unwrap_or(base.batch_size),
            option1_learning_rate: self
                .option1_learning_rate
                .unwrap_or(base.option1_learning_rate),
            option2_learning_rate: self
                .option2_learning_rate
                .unwrap_or(base.option2_learning_rate),
            epochs: self.epochs.unwrap_or(base.epochs),
            min_steps: self.min_steps.unwrap_or(base.min_steps),
            validation_fraction: base.validation_fraction,
            evaluations: self.evaluations.unwrap_or(base.evaluations),
            patience: self.patience.unwrap_or(base.patience),
            search: self.search.clone().unwrap_or_else(|| base.search.clone()),
            probe: self.probe.clone().unwrap_or_else(|| base.probe.clone()),
        }
    }
}

impl FinetuneSpec {
    /// The learning rate of `option`'s cells.
    pub fn learning_rate(&self, option: TransferOption) -> f64 {
        match option {
            TransferOption::Freeze => self.option1_learning_rate,
            TransferOption::FineTune => self.option2_learning_rate,
        }
    }
}

/// A parsed experiment file.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// Name of the report folder and results store; the file stem unless `name` is given.
    pub name: String,
    pub description: String,
    pub matrix: MatrixSpec,
    pub model: ModelSpec,
    pub pretrain: PretrainSpec,
    pub finetune: FinetuneSpec,
    /// The `[text]` table.
    pub text_spec: TextSpec,
    /// The `[networks]` table.
    pub networks: NetworksSpec,
    /// The `[[hypothesis]]` tables, in order.
    pub hypotheses: Vec<Hypothesis>,
    pub path: PathBuf,
    pub text: String,
    /// The files `include` brought in (theirs too, in the order read); empty without `include`.
    pub included: Vec<SourceFile>,
    /// `table.key` → the file whose value the setting holds: 0 this one, i the (i − 1)-th of
    /// `included`; a key set by no file is absent.
    origins: BTreeMap<String, usize>,
}

impl ExperimentFile {
    /// The text of `path` against the schema; an error names `path` and the line.
    fn read(path: &Path, text: &str) -> Result<ExperimentFile, SpecError> {
        toml::from_str(text).map_err(|e| SpecError::from_toml(path, text, &e))
    }

    /// Replaces the settings tables with `settings`, the merge of this file and its includes
    /// (each file was checked against the schema on its own, so these fit it too).
    fn take_settings(&mut self, settings: &toml::Table, path: &Path) -> Result<(), SpecError> {
        fn table<T: serde::de::DeserializeOwned + Default>(
            settings: &toml::Table,
            name: &str,
            path: &Path,
        ) -> Result<T, SpecError> {
            settings.get(name).map_or(Ok(T::default()), |value| {
                value.clone().try_into().map_err(|e| {
                    SpecError::new(path, format!("`[{name}]` with its included settings: {e}"))
                })
            })
        }
        self.model = table(settings, "model", path)?;
        self.pretrain = table(settings, "pretrain", path)?;
        self.finetune = table(settings, "finetune", path)?;
        self.text = table(settings, "text", path)?;
        self.networks = table(settings, "networks", path)?;
        Ok(())
    }
}

impl Experiment {
    pub fn load(path: &Path) -> Result<Experiment, SpecError> {
        let text = fs::read_to_string(path)
            .map_err(|e| SpecError::new(path, format!("cannot read experiment file: {e}")))?;
        Experiment::parse(path, &text)
    }

    /// Parses the experiment file `path` whose text is `text`, reading the files it includes
    /// from disk (relative to `path`'s folder).
    pub fn parse(path: &Path, text: &str) -> Result<Experiment, SpecError> {
        let mut file = ExperimentFile::read(path, text)?;
        let Some(matrix) = file.matrix.take() else {
            return Err(SpecError::new(path, "the experiment has no `[matrix]` table")
                .with_help("add [matrix] with targets, sources, n_train, options and seeds (README, \"Experiment files\")"));
        };
        let (included, origins) = if file.include.is_empty() {
            (Vec::new(), BTreeMap::new())
        } else {
            let check = |p: &Path, t: &str| Ok(ExperimentFile::read(p, t)?.include);
            let mut resolved = include::resolve(path, text, &file.include, &check)?;
            file.take_settings(&resolved.settings, path)?;
            resolved.files.remove(0);
            (resolved.files, resolved.origins)
        };
        let name = match file.name {
            Some(n) => n,
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let mut experiment = Experiment {
            name,
            description: file.description,
            matrix,
            model: file.model,
            pretrain: file.pretrain,
            finetune: file.finetune,
            text_spec: file.text,
            networks: file.networks,
            hypotheses: Vec::new(),
            path: path.to_path_buf(),
            text: text.to_string(),
            included,
            origins,
        };
        experiment.validate()?;
        for h in file.hypothesis {
            let h = experiment.hypothesis(h)?;
            if experiment.hypotheses.iter().any(|o| o.name == h.name) {
                return Err(experiment.error_near(
                    &format!("\"{}\"", h.name),
                    format!("two hypotheses are named `{}`", h.name),
                ));
            }
            experiment.hypotheses.push(h);
        }
        Ok(experiment)
    }

    /// The file (path and text) that set the setting `key` (`table.key`, e.g.
    /// `pretrain.audio.epochs`): an included file's when the value came from it, else this one.
    pub fn origin(&self, key: &str) -> (&Path, &str) {
        match self.origins.get(key) {
            Some(&i) if i > 0 => {
                let file = &self.included[i - 1];
                (&file.path, &file.text)
            }
            _ => (&self.path, &self.text),
        }
    }

    pub fn error_at(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> SpecError {
        SpecError::at(&self.path, &self.text, span, message)
    }

    /// Checks a `[matrix.*_by_target]` table: each key is one of `matrix.targets`, and its
    /// list is not empty and names nothing twice (`show` writes a value in the error).
    fn check_per_target<T: Ord>(
        &self,
        table: &str,
        lists: &std::collections::BTreeMap<String, Vec<Spanned<T>>>,
        show: impl Fn(&T) -> String,
    ) -> Result<(), SpecError> {
        for (target, values) in lists {
            let near = format!("matrix.{table}.{target}");
            if !self.matrix.targets.iter().any(|t| t.get_ref() == target) {
                return Err(self.error_near(
                    &near,
                    format!("`matrix.{table}` names {target:?}, which is not in `matrix.targets`"),
                ));
            }
            if values.is_empty() {
                return Err(self.error_near(
                    &near,
                    format!("`matrix.{table}.{target}` must not be empty"),
                ));
            }
            let mut seen = std::collections::BTreeSet::new();
            for value in values {
                if !seen.insert(value.get_ref()) {
                    return Err(self.error_at(
                        value.span(),
                        format!(
                            "`matrix.{table}.{target}` lists {} twice",
                            show(value.get_ref())
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// An error at the line that sets `key` (`table.key`) in the file it came from (see
    /// [`Experiment::origin`]), or at the first line that mentions `key`, or at the file.
    pub fn error_near(&self, key: &str, message: impl Into<String>) -> SpecError {
        let (path, text) = self.origin(key);
        SpecError::near(path, text, key, message)
    }

    /// Checks one `[[hypothesis]]` table against the matrix.
    fn hypothesis(&self, h: HypothesisFile) -> Result<Hypothesis, SpecError> {
        let (a, b) = self.hypothesis_arms(&h)?;
        let expect = self.hypothesis_expect(&h.expect)?;
        let margin = self.hypothesis_margin(&h, expect)?;
        let n_train = self.hypothesis_sizes(&h.n_train)?;
        let options = self.hypothesis_options(&h, (a, b))?;
        let sources = self.hypothesis_sources(&h, matches!(a, Arm::Option(_)))?;
        for t in &h.targets {
            if !self
                .matrix
                .targets
                .iter()
                .any(|m| m.get_ref() == t.get_ref())
            {
                return Err(self.error_at(
                    t.span(),
                    format!("target {:?} is not in `matrix.targets`", t.get_ref()),
                ));
            }
        }
        Ok(Hypothesis {
            name: h.name.get_ref().clone(),
            claim: h.claim,
            a,
            b,
            expect,
            margin,
            n_train,
            options,
            sources,
            targets: h.targets.iter().map(|t| t.get_ref().clone()).collect(),
            architectures: h
                .architectures
                .iter()
                .map(|a| a.get_ref().clone())
                .collect(),
        })
    }

    /// The two sides of a hypothesis: two kinds of source, or the two options.
    fn hypothesis_arms(&self, h: &HypothesisFile) -> Result<(Arm, Arm), SpecError> {
        let arm = |side: &Spanned<String>| {
            Arm::parse(side.get_ref()).ok_or_else(|| {
                self.error_at(
                    side.span(),
                    format!(
                        "unknown arm {:?}: expected \"matched\", \"mismatched\", \"scratch\", \"option 1\" or \"option 2\"",
                        side.get_ref()
                    ),
                )
            })
        };
        let (a, b) = (arm(&h.a)?, arm(&h.b)?);
        if matches!(a, Arm::Option(_)) != matches!(b, Arm::Option(_)) || a == b {
            return Err(self.error_at(
                h.b.span(),
                format!(
                    "`a` = {:?} and `b` = {:?} cannot be compared: compare two kinds of source (matched, mismatched, scratch) or option 1 with option 2",
                    h.a.get_ref(),
                    h.b.get_ref()
                ),
            ));
        }
        Ok((a, b))
    }

    /// The hypothesis's `expect`.
    fn hypothesis_expect(&self, expect: &Spanned<String>) -> Result<Expect, SpecError> {
        Ok(match expect.get_ref().as_str() {
            "greater" => Expect::Greater,
            "not-worse" => Expect::NotWorse,
            "equivalent" => Expect::Equivalent,
            other => {
                return Err(self.error_at(
                    expect.span(),
                    format!(
                        "unknown `expect` {other:?}: expected \"greater\" (A − B > margin), \"not-worse\" (A − B > −margin) or \"equivalent\" (|A − B| < margin)"
                    ),
                ));
            }
        })
    }

    /// The hypothesis's margin: required by an equivalence, 0 by default otherwise.
    fn hypothesis_margin(&self, h: &HypothesisFile, expect: Expect) -> Result<f64, SpecError> {
        match &h.margin {
            Some(m) if !(*m.get_ref() >= 0.0 && *m.get_ref() < 1.0) => Err(self.error_at(
                m.span(),
                "`margin` is a difference in accuracy: at least 0 and below 1 (0.02 = 2 points)",
            )),
            Some(m) => Ok(*m.get_ref()),
            None if expect == Expect::Equivalent => Err(self.error_at(
                h.expect.span(),
                "an equivalence needs its `margin`, declared before the run (e.g. margin = 0.02)",
            )),
            None => Ok(0.0),
        }
    }

    /// The training-set sizes a hypothesis covers (every size by default); listed sizes must
    /// be in the matrix.
    fn hypothesis_sizes(
        &self,
        scope: &Option<Spanned<SizeScopeFile>>,
    ) -> Result<SizeScope, SpecError> {
        let Some(scope) = scope else {
            return Ok(SizeScope::All);
        };
        let parsed = match scope.get_ref() {
            SizeScopeFile::Named(n) => match n.as_str() {
                "smallest" => SizeScope::Smallest,
                "largest" => SizeScope::Largest,
                "all" => SizeScope::All,
                _ => {
                    return Err(self.error_at(
                        scope.span(),
                        format!("`n_train` = {n:?}: expected \"smallest\", \"largest\", \"all\" or a list of sizes"),
                    ));
                }
            },
            SizeScopeFile::Values(v) => SizeScope::Values(v.clone()),
        };
        if let SizeScope::Values(v) = &parsed {
            let sizes: Vec<usize> = self.matrix.all_n_train().map(|n| *n.get_ref()).collect();
            if let Some(n) = v.iter().find(|n| !sizes.contains(n)) {
                return Err(self.error_at(
                    scope.span(),
                    format!("n_train {n} is not in `matrix.n_train`"),
                ));
            }
        }
        Ok(parsed)
    }

    /// The options a comparison of sources covers; every option a hypothesis names (in
    /// `options` or as a side) must be in the matrix.
    fn hypothesis_options(
        &self,
        h: &HypothesisFile,
        (a, b): (Arm, Arm),
    ) -> Result<Vec<TransferOption>, SpecError> {
        let in_matrix = |o: TransferOption| self.matrix.options.iter().any(|m| *m.get_ref() == o);
        for o in &h.options {
            if !in_matrix(*o.get_ref()) {
                return Err(self.error_at(
                    o.span(),
                    format!("option {} is not in `matrix.options`", o.get_ref()),
                ));
            }
        }
        if matches!(a, Arm::Option(_)) && !h.options.is_empty() {
            return Err(self.error_near("options", "`options` applies to comparisons of sources; this hypothesis compares the options themselves"));
        }
        for (arm, side) in [(a, &h.a), (b, &h.b)] {
            if let Arm::Option(o) = arm {
                if !in_matrix(o) {
                    return Err(self.error_at(
                        side.span(),
                        format!("option {o} is not in `matrix.options`"),
                    ));
                }
            }
        }
        Ok(h.options.iter().map(|o| *o.get_ref()).collect())
    }

    /// The sources a comparison of options covers: relations or sources of the matrix.
    fn hypothesis_sources(
        &self,
        h: &HypothesisFile,
        by_option: bool,
    ) -> Result<Vec<SourceChoice>, SpecError> {
        let mut sources = Vec::new();
        for s in &h.sources {
            let choice = SourceChoice::parse(s.get_ref());
            let known = match &choice {
                SourceChoice::Relation(_) => true,
                SourceChoice::Source(id) => self.matrix.all_sources().any(|m| m.get_ref() == id),
            };
            if !known {
                return Err(self.error_at(
                    s.span(),
                    format!("`sources` entry {:?} is neither matched, mismatched, scratch nor a source of the matrix", s.get_ref()),
                ));
            }
            sources.push(choice);
        }
        if !by_option && !sources.is_empty() {
            return Err(self.error_near(
                "sources",
                "`sources` applies to comparisons of options; this hypothesis compares sources",
            ));
        }
        Ok(sources)
    }

    /// Checks the settings against each other, table by table (the hypotheses come after).
    fn validate(&self) -> Result<(), SpecError> {
        self.validate_name()?;
        self.validate_matrix()?;
        self.validate_model()?;
        self.validate_text()?;
        self.validate_training()
    }

    /// The name is a folder name: letters, digits, `-` or `_`.
    fn validate_name(&self) -> Result<(), SpecError> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(self.error_near(
                "name",
                format!(
                    "the experiment name must be letters, digits, `-` or `_`, found {:?}",
                    self.name
                ),
            ));
        }
        Ok(())
    }

    /// Every list of the matrix is non-empty and names nothing twice.
    fn validate_matrix(&self) -> Result<(), SpecError> {
        let m = &self.matrix;
        for (what, empty) in [
            ("targets", m.targets.is_empty()),
            ("sources", m.sources.is_empty()),
            ("n_train", m.n_train.is_empty()),
            ("options", m.options.is_empty()),
            ("seeds", m.seeds.is_empty()),
        ] {
            if empty {
                return Err(self.error_near(
                    &format!("matrix.{what}"),
                    format!("`matrix.{what}` must not be empty"),
                ));
            }
        }
        self.check_per_target("sources_by_target", &m.sources_by_target, |s| {
            format!("{s:?}")
        })?;
        self.check_per_target("n_train_by_target", &m.n_train_by_target, |n| n.to_string())?;
        // A value listed twice would train the same cells twice.
        let twice = |what: &str, values: Vec<(String, Option<std::ops::Range<usize>>)>| {
            let mut seen = std::collections::BTreeSet::new();
            for (value, span) in values {
                if !seen.insert(value.clone()) {
                    let message = format!("`matrix.{what}` lists {value} twice");
                    return Err(match span {
                        Some(span) => self.error_at(span, message),
                        None => self.error_near(&format!("matrix.{what}"), message),
                    });
                }
            }
            Ok(())
        };
        twice(
            "targets",
            m.targets
                .iter()
                .map(|t| (format!("{:?}", t.get_ref()), Some(t.span())))
                .collect(),
        )?;
        twice(
            "sources",
            m.sources
                .iter()
                .map(|t| (format!("{:?}", t.get_ref()), Some(t.span())))
                .collect(),
        )?;
        twice(
            "n_train",
            m.n_train
                .iter()
                .map(|t| (t.get_ref().to_string(), Some(t.span())))
                .collect(),
        )?;
        twice(
            "options",
            m.options
                .iter()
                .map(|t| (t.get_ref().to_string(), Some(t.span())))
                .collect(),
        )?;
        twice(
            "seeds",
            m.seeds.iter().map(|s| (s.to_string(), None)).collect(),
        )?;
        self.validate_more_seeds()?;
        self.validate_ceiling()
    }

    /// `[matrix.ceiling]` names targets of the matrix, each at no fewer examples than its
    /// largest n_train, on between one and all of the matrix's seeds.
    fn validate_ceiling(&self) -> Result<(), SpecError> {
        let m = &self.matrix;
        let Some(ceiling) = &m.ceiling else {
            return Ok(());
        };
        if let Some(seeds) = ceiling.seeds.filter(|&s| s == 0 || s > m.seeds.len()) {
            return Err(self.error_near(
                "matrix.ceiling.seeds",
                format!(
                    "`matrix.ceiling.seeds` = {seeds}: it must be between 1 and the {} seeds of `matrix.seeds`",
                    m.seeds.len()
                ),
            ));
        }
        for (target, n) in &ceiling.n_train {
            if !m.targets.iter().any(|t| t.get_ref() == target) {
                return Err(self.error_at(
                    n.span(),
                    format!("`matrix.ceiling.n_train` names {target:?}, which is not in `matrix.targets`"),
                ));
            }
            let largest = (m.n_train_of(target).iter()).map(|n| *n.get_ref()).max();
            if let Some(largest) = largest.filter(|l| n.get_ref() < l) {
                return Err(self.error_at(
                    n.span(),
                    format!(
                        "the ceiling of {target:?} trains on {} examples, fewer than its largest n_train ({largest}); a ceiling trains on at least as many",
                        n.get_ref()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The ceiling's size for `target` under `[matrix.ceiling]`, where it is larger than the
    /// target's largest n_train (at that size, the matrix's own cells are the ceiling's).
    pub fn ceiling_n_train(&self, target: &str) -> Option<usize> {
        let ceiling = self.matrix.ceiling.as_ref()?;
        let largest = (self.matrix.n_train_of(target).iter())
            .map(|n| *n.get_ref())
            .max()?;
        let n = *ceiling.n_train.get(target)?.get_ref();
        (n > largest).then_some(n)
    }

    /// The seeds the ceiling trains on: the first of `matrix.seeds` (none without a ceiling).
    pub fn ceiling_seeds(&self) -> &[u64] {
        let seeds = &self.matrix.seeds;
        match &self.matrix.ceiling {
            Some(c) => &seeds[..c.seeds.unwrap_or(3).min(seeds.len())],
            None => &[],
        }
    }

    /// `[matrix.more_seeds]` adds at least one seed at a time, up to more than the matrix has,
    /// towards a half-width that is a difference in accuracy.
    fn validate_more_seeds(&self) -> Result<(), SpecError> {
        let Some(more) = &self.matrix.more_seeds else {
            return Ok(());
        };
        let seeds = self.matrix.seeds.len();
        if more.up_to <= seeds {
            return Err(self.error_near(
                "matrix.more_seeds.up_to",
                format!(
                    "`matrix.more_seeds.up_to` = {}: it must be more than the {seeds} seeds of `matrix.seeds`",
                    more.up_to
                ),
            ));
        }
        if more.step == 0 {
            return Err(self.error_near(
                "matrix.more_seeds.step",
                "`matrix.more_seeds.step` must be at least 1",
            ));
        }
        if !(more.half_width > 0.0 && more.half_width < 1.0) {
            return Err(self.error_near(
                "matrix.more_seeds.half_width",
                "`matrix.more_seeds.half_width` is a difference in accuracy: above 0 and below 1 (0.02 = 2 points)",
            ));
        }
        Ok(())
    }

    /// The seeds `[matrix.more_seeds]` may add, in the order it adds them: the integers after
    /// the largest of `matrix.seeds`, up to `up_to` seeds in all (none without the table).
    pub fn extra_seeds(&self) -> Vec<u64> {
        let m = &self.matrix;
        let Some(more) = &m.more_seeds else {
            return Vec::new();
        };
        let after = m.seeds.iter().max().map_or(0, |s| s + 1);
        (after..)
            .take(more.up_to.saturating_sub(m.seeds.len()))
            .collect()
    }

    /// The Transformer's shape fits together.
    fn validate_model(&self) -> Result<(), SpecError> {
        let model = &self.model;
        if model.d_model == 0 || model.n_heads == 0 || model.d_model % model.n_heads != 0 {
            return Err(self.error_near(
                "model.d_model",
                format!(
                    "`model.d_model` ({}) must be a positive multiple of `model.n_heads` ({})",
                    model.d_model, model.n_heads
                ),
            ));
        }
        self.at_least_one("model.patch", model.patch)?;
        self.at_least_one("model.n_layers", model.n_layers)?;
        self.at_least_one("model.d_ff", model.d_ff)?;
        if !(0.0..1.0).contains(&model.dropout) {
            return Err(self.error_near(
                "model.dropout",
                format!("`model.dropout` must be in [0, 1), found {}", model.dropout),
            ));
        }
        Ok(())
    }

    /// The tokenizer's sizes leave room for documents and words.
    fn validate_text(&self) -> Result<(), SpecError> {
        let text = &self.text_spec;
        if text.max_tokens == 0 {
            return Err(self.error_near(
                "text.max_tokens",
                "`text.max_tokens` must be at least 1, found 0",
            ));
        }
        if text.vocab_size < 3 {
            return Err(self.error_near(
                "text.vocab_size",
                "`text.vocab_size` must leave room beside the two special tokens (at least 3)",
            ));
        }
        Ok(())
    }

    /// The fine-tuning and pre-training settings, each override merged over its defaults.
    fn validate_training(&self) -> Result<(), SpecError> {
        let ft = &self.finetune;
        if !(ft.validation_fraction > 0.0 && ft.validation_fraction < 1.0) {
            return Err(self.error_near(
                "finetune.validation_fraction",
                format!(
                    "`finetune.validation_fraction` must be in (0, 1), found {}",
                    ft.validation_fraction
                ),
            ));
        }
        self.check_finetune("finetune", ft)?;
        let networks = self.networks.finetune.apply(ft);
        if networks != *ft {
            self.check_finetune("networks.finetune", &networks)?;
        }
        self.check_pretrain("pretrain", &self.pretrain)?;
        for (modality, table) in [
            ("image", &self.pretrain.image),
            ("audio", &self.pretrain.audio),
            ("text", &self.pretrain.text),
        ] {
            if table.is_some() {
                let merged = self.pretrain.for_modality(match modality {
                    "image" => Modality::Image,
                    "audio" => Modality::Audio,
                    _ => Modality::Text,
                });
                self.check_pretrain(&format!("pretrain.{modality}"), &merged)?;
            }
        }
        Ok(())
    }

    /// An error unless `value` is a positive, finite number; `path` names the key.
    fn positive(&self, path: &str, value: f64) -> Result<(), SpecError> {
        if value > 0.0 && value.is_finite() {
            Ok(())
        } else {
            Err(self.error_near(
                path,
                format!("`{path}` must be a positive number, found {value}"),
            ))
        }
    }

    /// An error unless the count `value` is at least 1.
    fn at_least_one(&self, path: &str, value: usize) -> Result<(), SpecError> {
        if value >= 1 {
            Ok(())
        } else {
            Err(self.error_near(path, format!("`{path}` must be at least 1, found 0")))
        }
    }

    /// The fine-tuning settings of table `table` (`finetune` or `networks.finetune`).
    fn check_finetune(&self, table: &str, ft: &FinetuneSpec) -> Result<(), SpecError> {
        let key = |k: &str| format!("{table}.{k}");
        self.at_least_one(&key("batch_size"), ft.batch_size)?;
        self.at_least_one(&key("evaluations"), ft.evaluations)?;
        self.at_least_one(&key("patience"), ft.patience)?;
        self.positive(&key("option1_learning_rate"), ft.option1_learning_rate)?;
        self.positive(&key("option2_learning_rate"), ft.option2_learning_rate)?;
        for &c in &ft.probe.c {
            self.positive(&key("probe.c"), c)?;
        }
        for option in TransferOption::ALL {
            let name = format!("search.option{}_learning_rates", option.number());
            let rates = ft.search.learning_rates(option);
            for &rate in rates {
                self.positive(&key(&name), rate)?;
            }
            if (1..rates.len()).any(|i| rates[..i].contains(&rates[i])) {
                return Err(self.error_near(
                    &key(&name),
                    format!("`{table}.{name}` lists a learning rate twice"),
                ));
            }
        }
        if let Some(pilots) = ft.search.pilot_seeds {
            let seeds = self.matrix.seeds.len();
            let name = key("search.pilot_seeds");
            if ft.search.is_empty() {
                return Err(self.error_near(&name, format!(
                    "`{name}` is set but no learning rate is listed to choose from; add `option1_learning_rates` or `option2_learning_rates` to `[{table}.search]`"
                )));
            }
            if pilots == 0 || pilots > seeds {
                return Err(self.error_near(&name, format!(
                    "`{name}` = {pilots}: it must be between 1 and the {seeds} seeds of `matrix.seeds`"
                )));
            }
        }
        if ft.epochs == 0 && ft.min_steps == 0 {
            return Err(self.error_near(
                &key("epochs"),
                format!(
                    "`{table}.epochs` and `{table}.min_steps` are both 0: the cells would train no step; set at least one of them"
                ),
            ));
        }
        Ok(())
    }

    /// The pre-training settings of table `table` (`pretrain` or `pretrain.MODALITY`).
    fn check_pretrain(&self, table: &str, p: &PretrainSpec) -> Result<(), SpecError> {
        let key = |k: &str| format!("{table}.{k}");
        self.at_least_one(&key("epochs"), p.epochs)?;
        self.at_least_one(&key("batch_size"), p.batch_size)?;
        self.positive(&key("learning_rate"), p.learning_rate)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[matrix]
targets = ["mnist"]
sources = ["scratch", "fashion-mnist"]
n_train = [50, 200]
options = [1, 2]
seeds = [0, 1]

[model]
d_model = 32
"#;

    #[test]
    fn defaults_fill_missing_settings_and_name_comes_from_the_file() {
        let e = Experiment::parse(Path::new("experiments/image.toml"), GOOD).unwrap();
        assert_eq!(e.name, "image");
        assert_eq!(e.model.d_model, 32);
        assert_eq!(e.model.n_layers, ModelSpec::default().n_layers);
        assert_eq!(e.finetune, FinetuneSpec::default());
    }

    #[test]
    fn malformed_toml_names_the_line() {
        let text = GOOD.replace("seeds = [0, 1]", "seeds = [0, 1");
        let err = Experiment::parse(Path::new("x.toml"), &text).unwrap_err();
        assert!(err.location.is_some(), "{err}");
        assert_eq!(err.file, Path::new("x.toml"));
    }

    #[test]
    fn an_unknown_key_names_key_and_line() {
        let text = GOOD.replace("d_model = 32", "d_model = 32\nwidth = 3");
        let err = Experiment::parse(Path::new("x.toml"), &text).unwrap_err();
        assert!(err.message.contains("width"), "{err}");
        assert_eq!(err.location.unwrap().line, 11);
    }

    #[test]
    fn an_option_other_than_one_or_two_is_refused_at_its_line() {
        let text = GOOD.replace("options = [1, 2]", "options = [1, 3]");
        let err = Experiment::parse(Path::new("x.toml"), &text).unwrap_err();
        assert!(err.message.contains("found 3"), "{err}");
        assert_eq!(err.location.unwrap().line, 6);
    }

    #[test]
    fn a_search_lists_positive_learning_rates_once_each_at_their_line() {
        let search =
            |rates: &str| format!("{GOOD}\n[finetune.search]\noption2_learning_rates = {rates}\n");
        let e = Experiment::parse(Path::new("x.toml"), &search("[1e-4, 1e-3]")).unwrap();
        assert_eq!(
            e.finetune.search.learning_rates(TransferOption::FineTune),
            &[1e-4, 1e-3]
        );
        assert!(
            e.finetune
                .search
                .learning_rates(TransferOption::Freeze)
                .is_empty()
        );
        for (rates, words) in [
            ("[1e-3, 0.0]", "must be a positive number"),
            ("[1e-3, 1e-3]", "lists a learning rate twice"),
        ] {
            let err = Experiment::parse(Path::new("x.toml"), &search(rates)).unwrap_err();
            assert!(err.message.contains(words), "{err}");
            assert_eq!(err.location.unwrap().line, 13, "{err}");
        }
    }

    #[test]
    fn more_seeds_add_at_least_one_seed_beyond_the_matrix_and_errors_name_the_line() {
        let more = |body: &str| format!("{GOOD}\n[matrix.more_seeds]\n{body}\n");
        let e = Experiment::parse(Path::new("x.toml"), &more("up_to = 5")).unwrap();
        let m = e.matrix.more_seeds.clone().unwrap();
        assert_eq!((m.up_to, m.step, m.half_width), (5, 2, 0.02));
        assert_eq!((m.goal(0.0), m.goal(0.05)), (0.02, 0.05));
        // After seeds [0, 1]: 2, 3 and 4 make five.
        assert_eq!(e.extra_seeds(), vec![2, 3, 4]);
        assert!(
            Experiment::parse(Path::new("x.toml"), GOOD)
                .unwrap()
                .extra_seeds()
                .is_empty()
        );
        for (body, line, words) in [
            ("up_to = 2", 13, "must be more than the 2 seeds"),
            ("up_to = 5\nstep = 0", 14, "must be at least 1"),
            ("up_to = 5\nhalf_width = 2.0", 14, "above 0 and below 1"),
            ("up_to = 5\nsteps = 1", 14, "unknown field"),
        ] {
            let err = Experiment::parse(Path::new("x.toml"), &more(body)).unwrap_err();
            assert!(err.message.contains(words), "{err}");
            assert_eq!(err.location.unwrap().line, line, "{err}");
        }
    }

    #[test]
    fn a_ceiling_names_targets_of_the_matrix_at_no_fewer_examples_than_their_largest_size() {
        let ceiling = |body: &str| format!("{GOOD}\n[matrix.ceiling]\n{body}\n");
        let e =
            Experiment::parse(Path::new("x.toml"), &ceiling("n_train = { mnist = 1000 }")).unwrap();
        assert_eq!(
            e.ceiling_seeds(),
            &[0, 1],
            "3 by default, at most the matrix's"
        );
        assert_eq!(e.ceiling_n_train("mnist"), Some(1000));
        assert_eq!(e.ceiling_n_train("other"), None);
        let at_largest =
            Experiment::parse(Path::new("x.toml"), &ceiling("n_train = { mnist = 200 }"));
        assert_eq!(
            at_largest.unwrap().ceiling_n_train("mnist"),
            None,
            "the matrix's cells are it"
        );
        for (body, line, words) in [
            (
                "n_train = { mnist = 100 }",
                13,
                "fewer than its largest n_train (200)",
            ),
            ("n_train = { cifar = 1000 }", 13, "not in `matrix.targets`"),
            (
                "seeds = 3\nn_train = { mnist = 1000 }",
                13,
                "between 1 and the 2 seeds",
            ),
        ] {
            let err = Experiment::parse(Path::new("x.toml"), &ceiling(body)).unwrap_err();
            assert!(err.message.contains(words), "{err}");
            assert_eq!(err.location.unwrap().line, line, "{err}");
        }
    }

    #[test]
    fn heads_must_divide_the_width() {
        let text = GOOD.replace("d_model = 32", "d_model = 30");
        assert!(Experiment::parse(Path::new("x.toml"), &text).is_err());
    }

    const HYPOTHESES: &str = r#"
[[hypothesis]]
name = "matched-helps"
claim = "same modality beats scratch"
a = "matched"
b = "scratch"
expect = "greater"
n_train = "smallest"

[[hypothesis]]
name = "options"
a = "option 1"
b = "option 2"
sources = ["matched"]
expect = "equivalent"
margin = 0.03
n_train = [200]
"#;

    #[test]
    fn hypotheses_are_read_with_their_scope() {
        let text = format!("{GOOD}{HYPOTHESES}");
        let e = Experiment::parse(Path::new("x.toml"), &text).unwrap();
        assert_eq!(e.hypotheses.len(), 2);
        let h = &e.hypotheses[0];
        assert_eq!(
            (h.a, h.b, h.expect),
            (Arm::Matched, Arm::Scratch, Expect::Greater)
        );
        assert_eq!(h.n_train.select(&[200, 50]), vec![50]);
        assert_eq!(h.margin, 0.0);
        let h = &e.hypotheses[1];
        assert_eq!(
            (h.a, h.b),
            (
                Arm::Option(TransferOption::Freeze),
                Arm::Option(TransferOption::FineTune)
            )
        );
        assert_eq!(h.margin, 0.03);
        assert_eq!(h.sources, vec!["matched".to_string()]);
        assert_eq!(h.n_train.select(&[50, 200]), vec![200]);
    }

    #[test]
    fn a_bad_hypothesis_names_its_line() {
        let base = format!("{GOOD}{HYPOTHESES}");
        let line_of = |needle: &str| base[..base.find(needle).unwrap()].lines().count() + 1;
        for (from, to, says) in [
            ("a = \"matched\"", "a = \"same\"", "unknown arm"),
            (
                "expect = \"greater\"",
                "expect = \"better\"",
                "unknown `expect`",
            ),
            ("b = \"option 2\"", "b = \"scratch\"", "cannot be compared"),
            (
                "n_train = [200]",
                "n_train = [300]",
                "not in `matrix.n_train`",
            ),
            ("margin = 0.03", "margin = 3", "at least 0 and below 1"),
        ] {
            let text = base.replacen(from, to, 1);
            let err = Experiment::parse(Path::new("x.toml"), &text).unwrap_err();
            assert!(err.message.contains(says), "{from} → {to}: {err}");
            let line = err.location.unwrap().line;
            assert_eq!(line, line_of(from), "{from} → {to}: {err}");
        }
        // An equivalence must declare its margin before the run.
        let text = base.replace("margin = 0.03\n", "");
        let err = Experiment::parse(Path::new("x.toml"), &text).unwrap_err();
        assert!(err.message.contains("needs its `margin`"), "{err}");
    }

    #[test]
    fn per_modality_pretraining_settings_replace_the_shared_ones() {
        let text = format!("{GOOD}\n[pretrain]\nepochs = 3\n\n[pretrain.audio]\nepochs = 15\n");
        let e = Experiment::parse(Path::new("x.toml"), &text).unwrap();
        assert_eq!(e.pretrain.for_modality(Modality::Audio).epochs, 15);
        assert_eq!(e.pretrain.for_modality(Modality::Image).epochs, 3);
        assert_eq!(
            e.pretrain.for_modality(Modality::Audio).audio,
            None,
            "resolved settings carry no per-modality tables"
        );
        assert_eq!(
            e.pretrain.for_modality(Modality::Text),
            PretrainSpec::default()
        );
    }
}
