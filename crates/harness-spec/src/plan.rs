//! Matrix expansion: an experiment and the manifests it names become pre-training jobs and
//! cells, each with a content fingerprint that identifies its result.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::choices::{RandomInit, TransferOption};
use crate::error::SpecError;
use crate::experiment::{
    Arm, Experiment, FLOOR, FinetuneSpec, ModelSpec, PretrainSpec, SCRATCH, SearchSpec, TextSpec,
};
use crate::manifest::{Manifest, ManifestSet, Modality};
use crate::network::{BertShape, EfficientNetShape, Family, NetworkManifest};

/// Bumped whenever a change alters what a cell or a pre-training run computes, so that stale
/// results and checkpoints are not reused.
pub const FINGERPRINT_VERSION: u32 = 1;

/// The modality of the source relative to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Relation {
    /// Trained from scratch.
    #[default]
    None,
    /// Pre-trained on the same modality as the target.
    Matched,
    /// Pre-trained on another modality.
    Mismatched,
    /// No network at all: the floor, a logistic regression on the raw input ([`FLOOR`]).
    Floor,
}

impl Relation {
    pub const ALL: [Relation; 4] = [
        Relation::None,
        Relation::Matched,
        Relation::Mismatched,
        Relation::Floor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Relation::None => "none",
            Relation::Matched => "matched",
            Relation::Mismatched => "mismatched",
            Relation::Floor => "floor",
        }
    }

    /// Whether the arm starts from weights pre-trained somewhere (matched or mismatched).
    pub fn is_pretrained(self) -> bool {
        matches!(self, Relation::Matched | Relation::Mismatched)
    }

    /// The relation written as [`Relation::as_str`] does; None for any other text.
    pub fn parse(text: &str) -> Option<Relation> {
        Relation::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl std::fmt::Display for Relation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a cell ended, as its result row records it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum CellStatus {
    /// Trained and tested.
    #[default]
    Ok,
    /// The training loss became NaN or infinite; its metrics are NaN.
    Diverged,
    /// The cell stopped with an error (the row's message); the next `harness run` retries it.
    Failed,
}

impl CellStatus {
    pub const ALL: [CellStatus; 3] = [CellStatus::Ok, CellStatus::Diverged, CellStatus::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            CellStatus::Ok => "ok",
            CellStatus::Diverged => "diverged",
            CellStatus::Failed => "failed",
        }
    }

    /// The status written as [`CellStatus::as_str`] does; None for any other text.
    pub fn parse(text: &str) -> Option<CellStatus> {
        CellStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for CellStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status read as its text, as tests and logs write it (`row.status == "ok"`).
impl PartialEq<&str> for CellStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A relation read as its text, as tests write it (`row.relation == "matched"`).
impl PartialEq<&str> for Relation {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The tokenizer of an experiment's text datasets: trained on one dataset's training pool, or
/// the user's own file.
#[derive(Debug, Clone, Serialize)]
pub struct TokenizerPlan {
    pub text: TextSpec,
    /// Dataset whose training pool trains it (none when the user's file is given).
    pub corpus: Option<String>,
    /// Content of that dataset (its manifest's checksums).
    pub corpus_content: Option<String>,
    /// The user's `tokenizer.json`, resolved against the experiment file's folder.
    pub file: Option<PathBuf>,
    /// SHA256 of that file, read when the plan is made.
    pub file_sha256: Option<String>,
    /// Content hash of all the above.
    pub key: String,
}

/// One pre-training run: a source dataset, an architecture and pre-training settings.
#[derive(Debug, Clone, Serialize)]
pub struct PretrainJob {
    pub source: String,
    pub modality: Modality,
    pub model: ModelSpec,
    pub pretrain: PretrainSpec,
    /// Key of the tokenizer that turns this (text) source into token ids.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
    /// Content of the source dataset (its manifest's checksums).
    pub source_content: String,
    /// Content hash that names the checkpoint in the cache.
    pub key: String,
}

/// How a target's images reach a network pre-trained elsewhere, applied once per dataset:
/// resized to `side × side`, the grey channel copied to `channels`, pixel values `x` (0–255)
/// scaled as `(x − offset) / scale`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputAdapter {
    pub side: usize,
    pub channels: usize,
    pub offset: f64,
    pub scale: f64,
    /// An audio target seen as an image (the practice of AST and PANNs): each clip's log-mel
    /// spectrogram, its `top_db` decibels below the clip's maximum mapped linearly onto the
    /// grey values 0–255 (high bands at the top), then resized like an image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_mel: Option<LogMelImage>,
}

/// How a log-mel spectrogram becomes a grey image: the `top_db` decibels below each clip's
/// maximum span 0–255 (256 grey levels, steps of `top_db / 255` dB).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LogMelImage {
    pub top_db: f64,
}

/// A fresh input stem in front of a Transformer pre-trained on another modality (Lu et al.
/// 2021): the target's `rows × cols` grid (normalised pixels, or log-mel bands × frames) cut
/// into `patch_rows × patch_cols` patches, each projected to the network's width, plus a
/// learned position per patch. The stem is new and trains under both options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatchAdapter {
    pub rows: usize,
    pub cols: usize,
    pub patch_rows: usize,
    pub patch_cols: usize,
}

impl PatchAdapter {
    /// Tokens per example.
    pub fn tokens(&self) -> usize {
        (self.rows / self.patch_rows) * (self.cols / self.patch_cols)
    }
}

/// How a target's documents reach a text network: through the network's own tokenizer (the
/// file with this SHA256), cut to `max_tokens` tokens including `[CLS]` and `[SEP]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextAdapter {
    pub max_tokens: usize,
    pub tokenizer_sha256: String,
}

/// How a target's sound reaches an audio network: the clip as a waveform at `sample_rate`,
/// cut into frames of `window` samples every `hop` samples; the network's per-frame embeddings
/// are averaged over the clip's frames (mean pooling) before the output layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AudioAdapter {
    pub sample_rate: u32,
    pub window: usize,
    pub hop: usize,
}

/// The architecture a network arm trains and the adapter its target goes through: one per
/// modality, so an image network cannot be handed token ids.
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkBody {
    /// EfficientNet-Lite on resized images.
    Image {
        shape: EfficientNetShape,
        input: InputAdapter,
    },
    /// BERT on the network's own token ids, mean-pooled.
    Text {
        shape: BertShape,
        input: TextAdapter,
    },
    /// CREPE on frames of the waveform, its embeddings mean-pooled over the clip.
    Audio {
        channels: [usize; 6],
        input: AudioAdapter,
    },
    /// BERT's layers behind a fresh patch stem, on an image or audio target, mean-pooled.
    Patches {
        shape: BertShape,
        stem: PatchAdapter,
    },
}

/// The architecture a cell trains when it is not the experiment's Transformer: a network
/// pre-trained elsewhere, with its published weights, or the same architecture from random
/// weights (its scratch arm, so that pre-training is compared within one architecture).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkArm {
    /// Name of the architecture, e.g. `efficientnet-lite0`; cells are paired within one.
    pub architecture: String,
    pub body: NetworkBody,
    /// The network manifest whose weights start the cell (none: random weights).
    pub weights: Option<String>,
    /// SHA256 of that weight file.
    pub weights_sha256: Option<String>,
    /// How random weights are drawn when there are no published ones: `original` (as the
    /// original implementation draws them). Absent for a pre-trained arm.
    pub init: Option<RandomInit>,
}

impl NetworkArm {
    /// The image adapter of an image network.
    pub fn image_input(&self) -> Option<&InputAdapter> {
        match &self.body {
            NetworkBody::Image { input, .. } => Some(input),
            _ => None,
        }
    }

    /// Whether the arm starts with a fresh input stem that trains under Option 1 too (so
    /// Option 1's features change at every step and cannot be cached).
    pub fn has_fresh_stem(&self) -> bool {
        matches!(self.body, NetworkBody::Patches { .. })
    }

    /// A short description of the adapter, for progress lines and keys: `side 64`,
    /// `128 tokens`, `hop 1600`.
    pub fn adapter_label(&self) -> String {
        match &self.body {
            NetworkBody::Image {
                input:
                    InputAdapter {
                        side,
                        log_mel: Some(_),
                        ..
                    },
                ..
            } => format!("log-mel image, side {side}"),
            NetworkBody::Image { input, .. } => format!("side {}", input.side),
            NetworkBody::Patches { stem, .. } => format!(
                "fresh stem, {} patches of {}×{}",
                stem.tokens(),
                stem.patch_rows,
                stem.patch_cols
            ),
            NetworkBody::Text { input, .. } => format!("{} tokens", input.max_tokens),
            NetworkBody::Audio { input, .. } => {
                format!(
                    "{} Hz, window {}, hop {}",
                    input.sample_rate, input.window, input.hop
                )
            }
        }
    }
}

/// Cells' fingerprints hash this serialisation: its fields keep the order and names an image
/// arm had before text and audio networks came, so earlier image rows keep their fingerprints.
impl Serialize for NetworkArm {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            architecture: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            shape: Option<&'a EfficientNetShape>,
            #[serde(skip_serializing_if = "Option::is_none")]
            bert: Option<&'a BertShape>,
            #[serde(skip_serializing_if = "Option::is_none")]
            crepe_channels: Option<&'a [usize; 6]>,
            weights: &'a Option<String>,
            weights_sha256: &'a Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            init: &'a Option<RandomInit>,
            #[serde(skip_serializing_if = "Option::is_none")]
            input: Option<&'a InputAdapter>,
            #[serde(skip_serializing_if = "Option::is_none")]
            text: Option<&'a TextAdapter>,
            #[serde(skip_serializing_if = "Option::is_none")]
            audio: Option<&'a AudioAdapter>,
            #[serde(skip_serializing_if = "Option::is_none")]
            patch_stem: Option<&'a PatchAdapter>,
        }
        let mut wire = Wire {
            architecture: &self.architecture,
            shape: None,
            bert: None,
            crepe_channels: None,
            weights: &self.weights,
            weights_sha256: &self.weights_sha256,
            init: &self.init,
            input: None,
            text: None,
            audio: None,
            patch_stem: None,
        };
        match &self.body {
            NetworkBody::Image { shape, input } => {
                wire.shape = Some(shape);
                wire.input = Some(input);
            }
            NetworkBody::Text { shape, input } => {
                wire.bert = Some(shape);
                wire.text = Some(input);
            }
            NetworkBody::Audio { channels, input } => {
                wire.crepe_channels = Some(channels);
                wire.audio = Some(input);
            }
            NetworkBody::Patches { shape, stem } => {
                wire.bert = Some(shape);
                wire.patch_stem = Some(stem);
            }
        }
        wire.serialize(serializer)
    }
}

/// Architecture name of the cells that train the experiment's own Transformer.
pub const TRANSFORMER: &str = "transformer";

/// One cell of the matrix: everything needed to train and evaluate one result row.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub experiment: String,
    pub target: String,
    pub source: String,
    pub relation: Relation,
    pub option: TransferOption,
    pub n_train: usize,
    pub seed: u64,
    pub model: ModelSpec,
    pub finetune: FinetuneSpec,
    /// Key of the tokenizer of a text target (and of its text sources).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
    /// Key of the pre-training job whose checkpoint initialises this cell (none for scratch).
    pub pretrain_key: Option<String>,
    /// The network pre-trained elsewhere (or its architecture from scratch) that this cell
    /// trains instead of the experiment's Transformer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkArm>,
    /// Which control this scratch cell is, when it is one (see [`Control`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<Control>,
    /// How the arm's learning rate is chosen, under `[finetune.search] pilot_seeds`. Not part
    /// of the fingerprint: a cell at its arm's fixed rate is the cell an experiment without the
    /// choice plans, and shares its row.
    #[serde(skip)]
    pub rate_choice: Option<RateChoice>,
    /// Content of the target dataset (its manifest's checksums).
    pub target_content: String,
    /// Content hash of all the above but the experiment name: equal fingerprints, equal results.
    pub fingerprint: String,
}

/// How an arm's learning rate is chosen once for each n_train (`[finetune.search]
/// pilot_seeds`): on the pilot seeds it trains at every rate, and the rate with the best mean
/// validation accuracy over them is the one the other seeds train at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateChoice {
    /// The rate the arm trains at without a choice (its `[finetune]` rate).
    pub fixed: f64,
    /// Every rate the pilots train at, the fixed one included, ascending.
    pub rates: Vec<f64>,
    /// The seeds whose validation accuracy chooses.
    pub pilot_seeds: Vec<u64>,
}

/// Architecture name of the floor's cells: a logistic regression on the raw input.
pub const LOGISTIC: &str = "logistic";

/// A scratch arm that exists to match what another arm trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Control {
    /// Option 1 from scratch with the random backbone frozen but the stem training: the
    /// partner of a cross-modal Option 1 arm, whose fresh stem trains in front of the frozen
    /// pre-trained backbone (the plain scratch Option 1 arm freezes its stem too, so it trains
    /// fewer parameters).
    TrainedStem,
}

impl Control {
    pub const ALL: [Control; 1] = [Control::TrainedStem];

    /// The control as rows and arm names write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Control::TrainedStem => "trained stem",
        }
    }

    /// The control written as [`Control::as_str`] does; None for any other text.
    pub fn parse(text: &str) -> Option<Control> {
        Control::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// The control a `relation` arm of `architecture` needs under `option` to be compared
    /// with a scratch arm that trains the same parameters: the trained-stem control for the
    /// Transformer's cross-modal Option 1 (its stem cannot be copied, so it is fresh and
    /// trains); none otherwise (the plain scratch arm of its architecture matches it: a
    /// network's fresh patch stem trains in its scratch arm too).
    pub fn needed_by(
        relation: Relation,
        option: TransferOption,
        architecture: &str,
    ) -> Option<Control> {
        (relation == Relation::Mismatched && option.freezes() && architecture == TRANSFORMER)
            .then_some(Control::TrainedStem)
    }
}

/// The name of an arm in progress lines and reports: its source, except that the scratch arm
/// of a network's architecture is `scratch (ARCHITECTURE)`, and a control says which it is:
/// `scratch (trained stem)`.
pub fn arm_name(source: &str, architecture: &str, control: Option<Control>) -> String {
    match (source == SCRATCH, architecture != TRANSFORMER, control) {
        (true, true, Some(c)) => format!("{SCRATCH} ({architecture}, {})", c.as_str()),
        (true, false, Some(c)) => format!("{SCRATCH} ({})", c.as_str()),
        (true, true, None) => format!("{SCRATCH} ({architecture})"),
        _ => source.to_string(),
    }
}

/// The scratch arm a `relation` arm of `architecture` is compared with under `option`: the
/// one that trains the same parameters (see [`Control::needed_by`]). A scratch arm is its own
/// partner.
pub fn partner_arm(
    relation: Relation,
    option: TransferOption,
    architecture: &str,
    control: Option<Control>,
) -> String {
    let control = match relation {
        Relation::None => control,
        _ => Control::needed_by(relation, option, architecture),
    };
    arm_name(SCRATCH, architecture, control)
}

impl Cell {
    /// The cell's arm, named as [`arm_name`] does.
    pub fn arm(&self) -> String {
        arm_name(&self.source, self.architecture(), self.control)
    }

    /// The architecture the cell trains: [`TRANSFORMER`], a network's, or [`LOGISTIC`] for
    /// the floor.
    pub fn architecture(&self) -> &str {
        if self.relation == Relation::Floor {
            return LOGISTIC;
        }
        self.network
            .as_ref()
            .map_or(TRANSFORMER, |n| n.architecture.as_str())
    }

    /// Whether the cell is the floor (no network: a logistic regression on the raw input).
    pub fn is_floor(&self) -> bool {
        self.relation == Relation::Floor
    }

    /// Whether the cell's input stem is fresh and trains even under Option 1: the
    /// Transformer's across modalities and in its trained-stem control, a network's patch
    /// stem. The frozen layers' input then changes at every step, so no features are cached.
    pub fn stem_trains(&self) -> bool {
        match &self.network {
            Some(arm) => arm.has_fresh_stem(),
            None => {
                self.relation == Relation::Mismatched || self.control == Some(Control::TrainedStem)
            }
        }
    }

    /// Whether the cell trains its output layer as the logistic probe of `[finetune.probe]`:
    /// only a cell that trains its output layer alone on cached frozen features can
    /// ([`Cell::trains_head_on_frozen_features`]).
    pub fn fits_probe(&self) -> bool {
        !self.finetune.probe.is_empty() && self.trains_head_on_frozen_features()
    }

    /// The Adam learning rate the cell trains at; none for the floor and the probe, which
    /// solve for their weights.
    pub fn learning_rate(&self) -> Option<f64> {
        (!self.is_floor() && !self.fits_probe()).then(|| self.finetune.learning_rate(self.option))
    }

    /// The same cell trained at `rate`, with its own fingerprint.
    pub fn at_learning_rate(&self, rate: f64) -> Cell {
        let mut cell = self.clone();
        match self.option {
            TransferOption::Freeze => cell.finetune.option1_learning_rate = rate,
            TransferOption::FineTune => cell.finetune.option2_learning_rate = rate,
        }
        sealed(cell)
    }

    /// The same cell trained on `n_train` examples, with its own fingerprint and outside any
    /// learning-rate choice (it trains at the rate this cell trains at): a ceiling cell of
    /// `[matrix.ceiling]`.
    pub fn at_n_train(&self, n_train: usize) -> Cell {
        let mut cell = self.clone();
        cell.n_train = n_train;
        cell.rate_choice = None;
        sealed(cell)
    }

    /// Whether the cell's seed is one of the pilots that choose its arm's learning rate.
    pub fn is_pilot(&self) -> bool {
        (self.rate_choice.as_ref()).is_some_and(|c| c.pilot_seeds.contains(&self.seed))
    }

    /// Whether the cell trains its output layer alone on the features of frozen layers, which
    /// can then be computed once: Option 1 without a training stem, and for the Transformer
    /// without dropout (which would make the frozen layers random in training). Only these
    /// cells train their output layer as the probe of `[finetune.probe]`.
    pub fn trains_head_on_frozen_features(&self) -> bool {
        self.option.freezes()
            && !self.stem_trains()
            && !self.is_floor()
            && (self.network.is_some() || self.model.dropout == 0.0)
    }
}

/// Everything one or more experiment files ask for.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub tokenizers: Vec<TokenizerPlan>,
    pub pretrain_jobs: Vec<PretrainJob>,
    pub cells: Vec<Cell>,
}

impl Plan {
    /// Adds another experiment's jobs and cells; a pre-training job already present is shared.
    pub fn merge(&mut self, other: Plan) {
        for tokenizer in other.tokenizers {
            if !self.tokenizers.iter().any(|t| t.key == tokenizer.key) {
                self.tokenizers.push(tokenizer);
            }
        }
        for job in other.pretrain_jobs {
            if !self.pretrain_jobs.iter().any(|j| j.key == job.key) {
                self.pretrain_jobs.push(job);
            }
        }
        self.cells.extend(other.cells);
    }

    pub fn job(&self, key: &str) -> Option<&PretrainJob> {
        self.pretrain_jobs.iter().find(|j| j.key == key)
    }

    pub fn tokenizer(&self, key: &str) -> Option<&TokenizerPlan> {
        self.tokenizers.iter().find(|t| t.key == key)
    }

    /// The plan as it runs on a compute backend: the default (Flex, `tag` None) keeps every
    /// fingerprint and key; another backend, named by `tag`, gets its own cell fingerprints and
    /// pre-training keys, so its rows and checkpoints never stand in for Flex ones, or the
    /// reverse.
    pub fn for_backend(mut self, tag: Option<&str>) -> Plan {
        if tag.is_none() {
            return self;
        }
        for job in &mut self.pretrain_jobs {
            job.key = on_backend(&job.key, tag);
        }
        for cell in &mut self.cells {
            cell.fingerprint = on_backend(&cell.fingerprint, tag);
            cell.pretrain_key = (cell.pretrain_key.as_deref()).map(|k| on_backend(k, tag));
        }
        self
    }
}

/// A cell fingerprint or pre-training key as [`Plan::for_backend`] makes it for the backend
/// named by `tag` (unchanged for the default backend).
pub fn on_backend(key: &str, tag: Option<&str>) -> String {
    match tag {
        Some(backend) => fingerprint_of(&(key, "backend", backend)),
        None => key.to_string(),
    }
}

/// SHA256 of the canonical JSON of `value`, as hex.
pub fn fingerprint_of<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_vec(value).expect("plan values serialise");
    hex::encode(Sha256::digest(&json))
}

/// Expands an experiment into its pre-training jobs and cells, checking every dataset id, size
/// and option against the manifests. Cells come in the order they run: small `n_train` first.
pub fn expand(experiment: &Experiment, manifests: &ManifestSet) -> Result<Plan, SpecError> {
    expand_with_seeds(experiment, manifests, &BTreeMap::new())
}

/// [`expand`], with the cells of `extra` seeds at some (target, n_train) besides the matrix's
/// own (what `[matrix.more_seeds]` added), each after the matrix's seeds of its size.
pub fn expand_with_seeds(
    experiment: &Experiment,
    manifests: &ManifestSet,
    extra: &ExtraSeeds,
) -> Result<Plan, SpecError> {
    let mut plan = Plan::default();
    let tokenizer = tokenizer_plan(experiment, manifests)?;
    if let Some(t) = &tokenizer {
        plan.tokenizers.push(t.clone());
    }
    let expansion = Expansion {
        experiment,
        manifests,
        tokenizer,
        extra,
    };
    for target_id in &experiment.matrix.targets {
        let target = expansion.lookup(target_id, "target")?;
        check_model_fits(experiment, target, target_id.span())?;
        expansion.check_sizes(target, target_id.get_ref())?;
        let sources = expansion.sources(target, target_id.get_ref(), &mut plan)?;
        let arms: Vec<(Relation, &str)> = sources
            .iter()
            .map(|s| {
                (
                    s.relation,
                    s.network
                        .as_ref()
                        .map_or(TRANSFORMER, |n| n.architecture.as_str()),
                )
            })
            .collect();
        check_hypotheses_pair_within_architectures(experiment, &target.id, &arms)?;
        expansion.push_cells(target, target_id.get_ref(), &sources, &mut plan);
    }
    Ok(plan)
}

/// What [`expand`] reads while it goes through the targets.
struct Expansion<'a> {
    experiment: &'a Experiment,
    manifests: &'a ManifestSet,
    tokenizer: Option<TokenizerPlan>,
    extra: &'a ExtraSeeds,
}

/// Seeds added to the matrix's at some (target, n_train).
pub type ExtraSeeds = BTreeMap<(String, usize), Vec<u64>>;

impl<'a> Expansion<'a> {
    /// The manifest of dataset `id`, or an error at its line listing the known ones.
    fn lookup(&self, id: &toml::Spanned<String>, role: &str) -> Result<&'a Manifest, SpecError> {
        self.manifests.get(id.get_ref()).ok_or_else(|| {
            self.experiment
                .error_at(
                    id.span(),
                    format!("unknown {role} dataset id `{}`", id.get_ref()),
                )
                .with_help(format!(
                    "known datasets in {}: {}",
                    self.manifests.dir.display(),
                    self.manifests.known_ids()
                ))
        })
    }

    /// The experiment's tokenizer for a text dataset; none for the other modalities.
    fn tokenizer_of(&self, dataset: &Manifest) -> Option<String> {
        (dataset.modality == Modality::Text)
            .then(|| self.tokenizer.as_ref().map(|t| t.key.clone()))
            .flatten()
    }

    /// Every `n_train` of `target` fits its pool and leaves examples to validate.
    fn check_sizes(&self, target: &Manifest, target_id: &str) -> Result<(), SpecError> {
        let pool = target.train_pool_size();
        let classes = target.classes.len();
        let ceiling =
            (self.experiment.matrix.ceiling.as_ref()).and_then(|c| c.n_train.get(target_id));
        for n in self
            .experiment
            .matrix
            .n_train_of(target_id)
            .iter()
            .chain(ceiling)
        {
            let n_value = *n.get_ref();
            if n_value > pool {
                return Err(self.experiment
                    .error_at(n.span(), format!(
                        "n_train = {n_value} is larger than the training pool of `{}` ({pool} examples)",
                        target.id
                    ))
                    .with_help(format!("use at most {pool}")));
            }
            if n_value <= classes {
                return Err(self.experiment.error_at(n.span(), format!(
                    "n_train = {n_value} is too small for `{}`: it needs more than one example per class \
                     ({} in all) so that every class is fitted and some are left to validate",
                    target.id,
                    classes + 1
                )));
            }
        }
        Ok(())
    }

    /// The arms of `target`, in the order of its sources, each network's architecture from
    /// random weights last (when the matrix has `scratch`); the pre-training jobs they need
    /// join `plan`.
    fn sources(
        &self,
        target: &Manifest,
        target_id: &str,
        plan: &mut Plan,
    ) -> Result<Vec<CellStart>, SpecError> {
        let mut sources = Vec::new();
        // Each network's architecture from random weights: its scratch arm.
        let mut scratch_networks: Vec<NetworkArm> = Vec::new();
        for source_id in self.experiment.matrix.sources_of(target_id) {
            if source_id.get_ref() == SCRATCH {
                sources.push(CellStart::scratch(None));
            } else if let Some(network) = self.manifests.network(source_id.get_ref()) {
                let (arm, relation) =
                    network_arm(self.experiment, network, target, source_id.span())?;
                let scratch = NetworkArm {
                    weights: None,
                    weights_sha256: None,
                    init: Some(RandomInit::Original),
                    ..arm.clone()
                };
                if !scratch_networks.contains(&scratch) {
                    scratch_networks.push(scratch);
                }
                sources.push(CellStart {
                    source: network.id.clone(),
                    relation,
                    pretrain_key: None,
                    network: Some(arm),
                    control: None,
                });
            } else {
                sources.push(self.dataset_source(target, source_id, plan)?);
            }
        }
        if sources.iter().any(|s| s.source == SCRATCH) {
            sources.extend(
                scratch_networks
                    .into_iter()
                    .map(|arm| CellStart::scratch(Some(arm))),
            );
            // The Transformer's cross-modal Option 1 trains a fresh stem: its scratch partner
            // must train one too.
            let needs_control = sources.iter().any(|s| {
                s.network.is_none()
                    && self.experiment.matrix.options.iter().any(|o| {
                        Control::needed_by(s.relation, *o.get_ref(), TRANSFORMER).is_some()
                    })
            });
            if needs_control {
                sources.push(CellStart::control(Control::TrainedStem));
            }
        }
        if self.experiment.matrix.floor {
            sources.push(CellStart::floor());
        }
        Ok(sources)
    }

    /// The arm of a source dataset the harness pre-trains on; its job joins `plan` once.
    fn dataset_source(
        &self,
        target: &Manifest,
        source_id: &toml::Spanned<String>,
        plan: &mut Plan,
    ) -> Result<CellStart, SpecError> {
        let experiment = self.experiment;
        let source = self.lookup(source_id, "source")?;
        if source.id == target.id {
            return Err(experiment.error_at(
                source_id.span(),
                format!(
                    "`{}` is the target itself; a source must be another dataset",
                    source.id
                ),
            ));
        }
        check_model_fits(experiment, source, source_id.span())?;
        let relation = if source.modality == target.modality {
            if source.input_shape() != target.input_shape() {
                return Err(experiment.error_at(source_id.span(), format!(
                    "source `{}` and target `{}` give inputs of different shapes ({:?} and {:?}); the stem is copied, so they must match",
                    source.id, target.id, source.input_shape(), target.input_shape()
                )).with_help("give both manifests the same `[image]` or `[audio]` settings"));
            }
            Relation::Matched
        } else {
            Relation::Mismatched
        };
        let job = pretrain_job(experiment, source, self.tokenizer_of(source));
        let key = job.key.clone();
        if !plan
            .pretrain_jobs
            .iter()
            .any(|j: &PretrainJob| j.key == key)
        {
            plan.pretrain_jobs.push(job);
        }
        Ok(CellStart {
            source: source.id.clone(),
            relation,
            pretrain_key: Some(key),
            network: None,
            control: None,
        })
    }

    /// One cell per size, seed, arm and option of `target`, in that order of nesting.
    fn push_cells(
        &self,
        target: &Manifest,
        target_id: &str,
        sources: &[CellStart],
        plan: &mut Plan,
    ) {
        let m = &self.experiment.matrix;
        for n in m.n_train_of(target_id) {
            let extra = (self.extra.get(&(target_id.to_string(), *n.get_ref())))
                .map_or(&[][..], |s| &s[..]);
            for &seed in m.seeds.iter().chain(extra) {
                for start in sources {
                    // The floor trains its output layer alone: Option 1, whatever the matrix.
                    let options: Vec<TransferOption> = if start.relation == Relation::Floor {
                        vec![TransferOption::Freeze]
                    } else {
                        m.options.iter().map(|o| *o.get_ref()).collect()
                    };
                    for option in options.into_iter().filter(|o| start.runs_under(*o)) {
                        let made = cell(
                            self.experiment,
                            target,
                            start.clone(),
                            option,
                            *n.get_ref(),
                            seed,
                            // A network reads the target through its own tokenizer, the
                            // floor reads the raw documents.
                            self.tokenizer_of(target).filter(|_| {
                                start.network.is_none() && start.relation != Relation::Floor
                            }),
                        );
                        plan.cells.extend(with_pilots(made, &m.seeds));
                    }
                }
            }
        }
    }
}

/// `cell` as `[finetune.search] pilot_seeds` plans it: at its arm's fixed rate, and on a pilot
/// seed at every other rate of the grid too. A cell without pilot seeds comes back as it is;
/// one with them loses its search (each of its cells trains at one rate), so that its
/// fixed-rate cell is the one of an experiment without the choice.
fn with_pilots(cell: Cell, seeds: &[u64]) -> Vec<Cell> {
    let Some(pilots) = cell.finetune.search.pilot_seeds else {
        return vec![cell];
    };
    let mut grid = cell.finetune.search.learning_rates(cell.option).to_vec();
    let mut fixed = cell;
    fixed.finetune.search = SearchSpec::default();
    let Some(rate) = fixed.learning_rate().filter(|_| !grid.is_empty()) else {
        return vec![sealed(fixed)];
    };
    if !grid.contains(&rate) {
        grid.push(rate);
    }
    grid.sort_by(f64::total_cmp);
    fixed.rate_choice = Some(RateChoice {
        fixed: rate,
        rates: grid,
        pilot_seeds: seeds[..pilots.min(seeds.len())].to_vec(),
    });
    let fixed = sealed(fixed);
    let mut cells = vec![fixed.clone()];
    if fixed.is_pilot() {
        let choice = fixed.rate_choice.as_ref().expect("set above");
        cells.extend(
            (choice.rates.iter())
                .filter(|&&r| r != rate)
                .map(|&r| fixed.at_learning_rate(r)),
        );
    }
    cells
}

impl Plan {
    /// Adds, for every arm and n_train whose learning rate `chosen` knows (from the pilots'
    /// rows), the cells of the other seeds at the chosen rate; none where it is the fixed
    /// rate, whose cells are planned already. Returns how many cells it added.
    pub fn add_chosen_rates(&mut self, chosen: impl Fn(&Cell) -> Option<f64>) -> usize {
        let known: std::collections::BTreeSet<String> =
            self.cells.iter().map(|c| c.fingerprint.clone()).collect();
        let mut added = Vec::new();
        for cell in &self.cells {
            let Some(choice) = &cell.rate_choice else {
                continue;
            };
            if cell.is_pilot() || cell.learning_rate() != Some(choice.fixed) {
                continue;
            }
            if let Some(rate) = chosen(cell).filter(|r| *r != choice.fixed) {
                let at = cell.at_learning_rate(rate);
                if !known.contains(&at.fingerprint) {
                    added.push(at);
                }
            }
        }
        let n = added.len();
        self.cells.extend(added);
        n
    }
}

fn check_model_fits(
    experiment: &Experiment,
    dataset: &Manifest,
    span: std::ops::Range<usize>,
) -> Result<(), SpecError> {
    match dataset.modality {
        Modality::Image => {
            let side = dataset.image.as_ref().map_or(0, |i| i.side);
            if side % experiment.model.patch != 0 {
                return Err(experiment.error_near(
                    "model.patch",
                    format!(
                        "`model.patch` = {} does not divide the {side}-pixel side of `{}`",
                        experiment.model.patch, dataset.id
                    ),
                ));
            }
        }
        Modality::Audio => {
            let frames = dataset.audio.as_ref().map_or(0, |a| a.frames());
            let Some(per_token) = experiment.model.frames_per_token else {
                return Err(experiment
                    .error_at(
                        span,
                        format!(
                            "dataset `{}` is audio; the audio stem needs `model.frames_per_token`",
                            dataset.id
                        ),
                    )
                    .with_help(format!(
                        "add `frames_per_token = 4` to `[model]` (it must divide the {frames} frames of a clip)"
                    )));
            };
            if per_token == 0 || frames % per_token != 0 {
                return Err(experiment.error_near(
                    "model.frames_per_token",
                    format!(
                        "`model.frames_per_token` = {per_token} does not divide the {frames} log-mel frames of `{}`",
                        dataset.id
                    ),
                ));
            }
        }
        // Any text fits: the tokenizer cuts or pads every document to `text.max_tokens`.
        Modality::Text => {}
    }
    Ok(())
}

/// The experiment's tokenizer, when a text dataset is in its matrix.
fn tokenizer_plan(
    experiment: &Experiment,
    manifests: &ManifestSet,
) -> Result<Option<TokenizerPlan>, SpecError> {
    let m = &experiment.matrix;
    let text_ids = |ids: Vec<&toml::Spanned<String>>| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for d in ids.into_iter().filter_map(|id| manifests.get(id.get_ref())) {
            if d.modality == Modality::Text && !out.contains(&d.id) {
                out.push(d.id.clone());
            }
        }
        out
    };
    let sources = text_ids(m.all_sources().collect());
    let targets = text_ids(m.targets.iter().collect());
    if sources.is_empty() && targets.is_empty() {
        return Ok(None);
    }
    let text = experiment.text_spec.clone();
    let (mut corpus, mut corpus_content, mut file, mut file_sha256) = (None, None, None, None);
    if let Some(path) = &text.tokenizer {
        let (resolved, sha256) = users_tokenizer(experiment, path)?;
        file_sha256 = Some(sha256);
        file = Some(resolved);
    } else {
        let first = sources.into_iter().chain(targets).next();
        let dataset = tokenizer_corpus(experiment, manifests, first)?;
        corpus_content = Some(dataset.content_key());
        corpus = Some(dataset.id.clone());
    }
    let mut plan = TokenizerPlan {
        text,
        corpus,
        corpus_content,
        file: None,
        file_sha256,
        key: String::new(),
    };
    #[derive(Serialize)]
    struct Key<'a> {
        version: u32,
        plan: &'a TokenizerPlan,
    }
    // The file's path does not change what it holds; its hash does.
    plan.key = fingerprint_of(&Key {
        version: FINGERPRINT_VERSION,
        plan: &plan,
    });
    plan.file = file;
    Ok(Some(plan))
}

/// The user's `text.tokenizer` file, resolved against the file that names it (which may be an
/// included one), and its SHA256.
fn users_tokenizer(experiment: &Experiment, path: &str) -> Result<(PathBuf, String), SpecError> {
    let base = experiment
        .origin("text.tokenizer")
        .0
        .parent()
        .unwrap_or(Path::new("."));
    let resolved = base.join(path);
    let bytes = std::fs::read(&resolved).map_err(|e| {
        experiment.error_near(
            "text.tokenizer",
            format!("cannot read `text.tokenizer` {}: {e}", resolved.display()),
        )
    })?;
    Ok((resolved, hex::encode(Sha256::digest(&bytes))))
}

/// The text dataset the tokenizer learns from: `text.corpus`, or else `first` (the first text
/// source, or with none the first text target).
fn tokenizer_corpus<'a>(
    experiment: &Experiment,
    manifests: &'a ManifestSet,
    first: Option<String>,
) -> Result<&'a Manifest, SpecError> {
    let id = match &experiment.text_spec.corpus {
        Some(id) => id.clone(),
        None => first.expect("a text dataset"),
    };
    let Some(dataset) = manifests.get(&id) else {
        return Err(experiment
            .error_near(
                "text.corpus",
                format!("unknown `text.corpus` dataset id `{id}`"),
            )
            .with_help(format!("known datasets: {}", manifests.known_ids())));
    };
    if dataset.modality != Modality::Text {
        return Err(experiment.error_near(
            "text.corpus",
            format!(
                "`text.corpus` = `{id}` is {} data, not text",
                dataset.modality.as_str()
            ),
        ));
    }
    Ok(dataset)
}

fn pretrain_job(
    experiment: &Experiment,
    source: &Manifest,
    tokenizer: Option<String>,
) -> PretrainJob {
    #[derive(Serialize)]
    struct Key<'a> {
        version: u32,
        source: &'a str,
        content: String,
        model: &'a ModelSpec,
        pretrain: &'a PretrainSpec,
        #[serde(skip_serializing_if = "Option::is_none")]
        tokenizer: &'a Option<String>,
        /// How a capped pool is drawn (changed from equal per-class quotas to proportional).
        #[serde(skip_serializing_if = "Option::is_none")]
        subset: Option<&'static str>,
    }
    let content = source.content_key();
    // Only what shapes this source's network and its training enters the key.
    let model = experiment.model.for_modality(source.modality);
    let pretrain = experiment.pretrain.for_modality(source.modality);
    let key = fingerprint_of(&Key {
        version: FINGERPRINT_VERSION,
        source: &source.id,
        content: content.clone(),
        model: &model,
        pretrain: &pretrain,
        tokenizer: &tokenizer,
        subset: (pretrain.max_examples > 0).then_some("proportional"),
    });
    PretrainJob {
        source: source.id.clone(),
        modality: source.modality,
        model,
        pretrain,
        tokenizer,
        source_content: content,
        key,
    }
}

/// Every hypothesis that compares sources (matched, mismatched, scratch) must find, for each
/// arm of one side, an arm of the other side with the same architecture: the report compares
/// pre-training within one architecture, never architectures. Named architectures must exist.
fn check_hypotheses_pair_within_architectures(
    experiment: &Experiment,
    target: &str,
    arms: &[(Relation, &str)],
) -> Result<(), SpecError> {
    let present: Vec<&str> = arms.iter().map(|(_, a)| *a).collect();
    for h in &experiment.hypotheses {
        if !h.targets.is_empty() && !h.targets.iter().any(|t| t == target) {
            continue;
        }
        let at = |message: String| experiment.error_near(&format!("\"{}\"", h.name), message);
        for name in &h.architectures {
            if !present.contains(&name.as_str()) {
                return Err(at(format!(
                    "hypothesis `{}` names architecture `{name}`, which no arm on target `{target}` trains (present: {})",
                    h.name,
                    dedup(&present).join(", ")
                )));
            }
        }
        let (Some(ra), Some(rb)) = (h.a.relation(), h.b.relation()) else {
            continue;
        };
        let side = |relation: Relation| -> Vec<&str> {
            arms.iter()
                .filter(|(r, a)| {
                    *r == relation
                        && (h.architectures.is_empty() || h.architectures.iter().any(|n| n == a))
                })
                .map(|(_, a)| *a)
                .collect()
        };
        let (a_side, b_side) = (side(ra), side(rb));
        // Every architecture has a scratch arm, so a scratch arm without a partner is simply
        // not compared; a pre-trained arm without one would be compared with nothing of its own.
        let sides = [(&a_side, &b_side, h.a, h.b), (&b_side, &a_side, h.b, h.a)];
        for (mine, other, own, arm) in sides {
            if own == Arm::Scratch {
                continue;
            }
            if let Some(lonely) = mine.iter().find(|a| !other.contains(a))
                && !other.is_empty()
            {
                return Err(at(format!(
                    "hypothesis `{}` on target `{target}` would compare `{lonely}` arms with {} arms of another architecture only ({}); pre-training is compared within one architecture",
                    h.name,
                    arm.describe(),
                    dedup(other).join(", ")
                ))
                .with_help(format!(
                    "add `scratch` to the sources (every architecture gets its scratch arm), or limit the hypothesis with `architectures = [\"{}\"]`",
                    dedup(other).join("\", \"")
                )));
            }
        }
    }
    Ok(())
}

fn dedup<'a>(names: &[&'a str]) -> Vec<&'a str> {
    let mut out: Vec<&str> = names.to_vec();
    out.sort();
    out.dedup();
    out
}

/// A network source's arm on `target`: its architecture, weights and input adapter, and
/// whether the target is of the network's own modality (`Matched`) or not. Across modalities
/// only the established adapters exist: an image network reads an audio target's log-mel
/// spectrogram as an image (AST, PANNs); a Transformer network's layers read an image or audio
/// target behind a fresh patch stem (Lu et al. 2021). Every other pair is refused.
fn network_arm(
    experiment: &Experiment,
    network: &NetworkManifest,
    target: &Manifest,
    span: std::ops::Range<usize>,
) -> Result<(NetworkArm, Relation), SpecError> {
    let arch = &network.architecture;
    let relation = if target.modality == network.modality {
        Relation::Matched
    } else {
        Relation::Mismatched
    };
    let adapted = match (network.modality, target.modality) {
        (own, target) if own == target => true,
        (Modality::Image, Modality::Audio) => arch.family == Family::EfficientNetLite,
        (Modality::Text, Modality::Image | Modality::Audio) => arch.family == Family::Bert,
        _ => false,
    };
    if !adapted {
        return Err(experiment
            .error_at(
                span,
                format!(
                    "network `{}` takes {} input and target `{}` is {}: no established adapter joins them",
                    network.id,
                    network.modality.as_str(),
                    target.id,
                    target.modality.as_str()
                ),
            )
            .with_help(
                "across modalities the harness has two adapters: an image network on an audio target's log-mel spectrogram, and a Transformer network behind a fresh patch stem on image or audio targets",
            ));
    }
    let body = match arch.family {
        Family::EfficientNetLite => image_body(experiment, network, target)?,
        Family::Bert if target.modality != Modality::Text => NetworkBody::Patches {
            shape: arch.bert(),
            stem: patch_adapter(experiment, target),
        },
        Family::Bert => text_body(experiment, network)?,
        Family::Crepe => audio_body(experiment, network)?,
    };
    let architecture = match body {
        NetworkBody::Patches { .. } => format!("{} + patch stem", arch.name()),
        _ => arch.name(),
    };
    Ok((
        NetworkArm {
            architecture,
            body,
            weights: Some(network.id.clone()),
            weights_sha256: Some(network.weights_sha256().to_ascii_lowercase()),
            init: None,
        },
        relation,
    ))
}

/// An image network's input: the target's images (or log-mel spectrograms as images) at
/// `networks.side`, or the network's own side.
fn image_body(
    experiment: &Experiment,
    network: &NetworkManifest,
    target: &Manifest,
) -> Result<NetworkBody, SpecError> {
    let (arch, settings) = (&network.architecture, &experiment.networks);
    let input = network
        .image_input()
        .expect("image networks have [input] (validated)");
    let side = settings.side.unwrap_or(input.side);
    if side < 8 {
        return Err(experiment.error_near(
            "networks.side",
            format!("`networks.side` = {side} is too small; use at least 8 pixels (e.g. 64 or 96)"),
        ));
    }
    Ok(NetworkBody::Image {
        shape: arch.efficientnet(),
        input: InputAdapter {
            side,
            channels: input.channels,
            offset: input.offset,
            scale: input.scale,
            log_mel: target
                .audio
                .as_ref()
                .map(|a| LogMelImage { top_db: a.top_db }),
        },
    })
}

/// A text network's input: documents through its own tokenizer, cut to `networks.max_tokens`.
fn text_body(experiment: &Experiment, network: &NetworkManifest) -> Result<NetworkBody, SpecError> {
    let (arch, settings) = (&network.architecture, &experiment.networks);
    let text = network
        .text_input
        .as_ref()
        .expect("text networks have [text] (validated)");
    let shape = arch.bert();
    let max_tokens = settings.max_tokens.unwrap_or(text.max_tokens);
    if !(3..=shape.max_positions).contains(&max_tokens) {
        return Err(experiment.error_near(
            "networks.max_tokens",
            format!(
                "`networks.max_tokens` = {max_tokens} is outside what `{}` takes: 3 to {} tokens ([CLS] and [SEP] included)",
                network.id, shape.max_positions
            ),
        ));
    }
    Ok(NetworkBody::Text {
        shape,
        input: TextAdapter {
            max_tokens,
            tokenizer_sha256: text.tokenizer_sha256.get_ref().to_ascii_lowercase(),
        },
    })
}

/// An audio network's input: waveforms at its sample rate, framed every `networks.hop`.
fn audio_body(
    experiment: &Experiment,
    network: &NetworkManifest,
) -> Result<NetworkBody, SpecError> {
    let (arch, settings) = (&network.architecture, &experiment.networks);
    let audio = network
        .audio_input
        .as_ref()
        .expect("audio networks have [audio] (validated)");
    let hop = settings.hop.unwrap_or(audio.sample_rate as usize / 10);
    if hop == 0 {
        return Err(experiment.error_near(
            "networks.hop",
            "`networks.hop` must be at least one sample (e.g. 1600: 100 ms at 16 kHz)",
        ));
    }
    Ok(NetworkBody::Audio {
        channels: arch.crepe_channels(),
        input: AudioAdapter {
            sample_rate: audio.sample_rate,
            window: audio.window,
            hop,
        },
    })
}

/// The fresh stem of a Transformer network on an image or audio target: the patches of the
/// experiment's own Transformer (`[model] patch`, or every mel band × `frames_per_token`
/// frames), already checked to divide the target's grid by `check_model_fits`.
fn patch_adapter(experiment: &Experiment, target: &Manifest) -> PatchAdapter {
    match (&target.image, &target.audio) {
        (Some(image), _) => PatchAdapter {
            rows: image.side,
            cols: image.side,
            patch_rows: experiment.model.patch,
            patch_cols: experiment.model.patch,
        },
        (None, Some(audio)) => PatchAdapter {
            rows: audio.n_mels,
            cols: audio.frames(),
            patch_rows: audio.n_mels,
            patch_cols: experiment.model.frames_per_token.unwrap_or(1),
        },
        (None, None) => unreachable!("only image and audio targets reach a patch stem"),
    }
}

/// Where a cell's starting weights come from.
#[derive(Clone)]
struct CellStart {
    source: String,
    relation: Relation,
    pretrain_key: Option<String>,
    network: Option<NetworkArm>,
    control: Option<Control>,
}

impl CellStart {
    /// Random weights: the experiment's Transformer, or `network`'s architecture.
    fn scratch(network: Option<NetworkArm>) -> CellStart {
        CellStart {
            source: SCRATCH.to_string(),
            relation: Relation::None,
            pretrain_key: None,
            network,
            control: None,
        }
    }

    /// The Transformer from random weights as `control` says.
    fn control(control: Control) -> CellStart {
        CellStart {
            control: Some(control),
            ..CellStart::scratch(None)
        }
    }

    /// The floor: no network, the raw input.
    fn floor() -> CellStart {
        CellStart {
            source: FLOOR.to_string(),
            relation: Relation::Floor,
            ..CellStart::scratch(None)
        }
    }

    /// Whether the arm runs under `option`: a control and the floor only under Option 1
    /// (the floor trains its output layer alone; the control exists for Option 1 arms).
    fn runs_under(&self, option: TransferOption) -> bool {
        option.freezes() || (self.control.is_none() && self.relation != Relation::Floor)
    }
}

fn cell(
    experiment: &Experiment,
    target: &Manifest,
    arm: CellStart,
    option: TransferOption,
    n_train: usize,
    seed: u64,
    tokenizer: Option<String>,
) -> Cell {
    let cell = Cell {
        experiment: experiment.name.clone(),
        target: target.id.clone(),
        source: arm.source,
        relation: arm.relation,
        option,
        n_train,
        seed,
        model: experiment.model.clone(),
        finetune: match &arm.network {
            Some(network) => {
                let networks = &experiment.networks;
                let budget = networks.finetune.apply(&experiment.finetune);
                if option.freezes() && !network.has_fresh_stem() {
                    networks.frozen_features.apply(&budget)
                } else {
                    budget
                }
            }
            None => experiment.finetune.clone(),
        },
        tokenizer,
        pretrain_key: arm.pretrain_key,
        network: arm.network,
        control: arm.control,
        rate_choice: None,
        target_content: target.content_key(),
        fingerprint: String::new(),
    };
    sealed(cell)
}

/// Bumped for the cells that fine-tune a network with BatchNorm (EfficientNet-Lite, CREPE)
/// under Option 2, whose rows before it were wrong: the best validation check was tested with
/// the BatchNorm statistics of the last step. Their fingerprints change, so their old rows
/// are not reused; every other cell keeps its fingerprint.
pub const BATCH_NORM_VERSION: u32 = 2;

/// `cell` with its fingerprint: the hash of everything in it but the experiment's name.
fn sealed(mut cell: Cell) -> Cell {
    #[derive(Serialize)]
    struct Key<'a> {
        version: u32,
        cell: &'a Cell,
        #[serde(skip_serializing_if = "Option::is_none")]
        batch_norm: Option<u32>,
    }
    let mut keyed = cell.clone();
    keyed.experiment = String::new();
    keyed.fingerprint = String::new();
    cell.fingerprint = fingerprint_of(&Key {
        version: FINGERPRINT_VERSION,
        cell: &keyed,
        batch_norm: fine_tunes_batch_norm(&cell).then_some(BATCH_NORM_VERSION),
    });
    cell
}

/// Whether `cell` trains BatchNorm layers: Option 2 on an EfficientNet or a CREPE.
fn fine_tunes_batch_norm(cell: &Cell) -> bool {
    let batch_norm = (cell.network.as_ref()).is_some_and(|n| {
        matches!(
            n.body,
            NetworkBody::Image { .. } | NetworkBody::Audio { .. }
        )
    });
    batch_norm && cell.option == TransferOption::FineTune
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn manifest(id: &str, train: usize) -> Manifest {
        let text = format!(
            r#"
id = "{id}"
name = "{id}"
modality = "image"
licence = "CC0"
citation = "test"
format = "csv-pixels"
classes = ["a", "b"]
[image]
side = 28
[split]
method = "stratified"
test_per_class = 1
seed = 1
train = {train}
test = 2
[[source]]
kind = "local"
path = "."
files = {{ data = "x.csv" }}
"#
        );
        Manifest::parse(Path::new(&format!("{id}.toml")), &text).unwrap()
    }

    fn set() -> ManifestSet {
        let mut s = ManifestSet::default();
        for m in [manifest("tgt", 100), manifest("src", 1000)] {
            s.by_id.insert(m.id.clone(), m);
        }
        s
    }

    fn experiment(matrix: &str) -> Experiment {
        Experiment::parse(Path::new("e.toml"), matrix).unwrap()
    }

    const MATRIX: &str = r#"[matrix]
targets = ["tgt"]
sources = ["scratch", "src"]
n_train = [10, 40]
options = [1, 2]
seeds = [0, 1, 2]
"#;

    #[test]
    fn the_matrix_expands_to_every_combination_with_one_shared_pretraining() {
        let plan = expand(&experiment(MATRIX), &set()).unwrap();
        // Every (source, option) of every (n_train, seed), and one floor per (n_train, seed).
        assert_eq!(plan.cells.len(), 2 * 2 * 2 * 3 + 2 * 3);
        assert_eq!(plan.pretrain_jobs.len(), 1);
        let fps: std::collections::HashSet<_> = plan.cells.iter().map(|c| &c.fingerprint).collect();
        assert_eq!(
            fps.len(),
            plan.cells.len(),
            "fingerprints are unique per cell"
        );
        assert!(
            plan.cells
                .iter()
                .filter(|c| c.source == "src")
                .all(|c| c.relation == Relation::Matched)
        );
        assert!(
            plan.cells
                .iter()
                .filter(|c| c.source == "scratch")
                .all(|c| c.pretrain_key.is_none())
        );
    }

    #[test]
    fn every_size_and_seed_gets_one_floor_under_option_1_and_the_other_cells_keep_their_fingerprints()
     {
        let with = expand(&experiment(MATRIX), &set()).unwrap();
        let without = expand(
            &experiment(&MATRIX.replace("seeds = [0, 1, 2]", "seeds = [0, 1, 2]\nfloor = false")),
            &set(),
        )
        .unwrap();
        let floors: Vec<&Cell> = with.cells.iter().filter(|c| c.is_floor()).collect();
        let sizes_and_seeds: std::collections::BTreeSet<(usize, u64)> =
            floors.iter().map(|c| (c.n_train, c.seed)).collect();
        assert_eq!((floors.len(), sizes_and_seeds.len()), (6, 6));
        assert!(floors.iter().all(|c| c.source == FLOOR
            && c.option == TransferOption::Freeze
            && c.architecture() == LOGISTIC
            && c.pretrain_key.is_none()
            && c.tokenizer.is_none()));
        assert!(without.cells.iter().all(|c| !c.is_floor()));
        let others: Vec<&str> = with
            .cells
            .iter()
            .filter(|c| !c.is_floor())
            .map(|c| c.fingerprint.as_str())
            .collect();
        let before: Vec<&str> = without
            .cells
            .iter()
            .map(|c| c.fingerprint.as_str())
            .collect();
        assert_eq!(others, before);
    }

    #[test]
    fn pilot_seeds_train_every_rate_and_the_others_wait_for_the_choice() {
        let text = format!(
            "{MATRIX}\n[finetune.probe]\nc = [1.0]\n\n[finetune.search]\noption2_learning_rates = [1e-4, 1e-2]\npilot_seeds = 1\n"
        );
        let probed = expand(
            &experiment(&text.replace(
                "[finetune.search]\noption2_learning_rates = [1e-4, 1e-2]\npilot_seeds = 1\n",
                "",
            )),
            &set(),
        )
        .unwrap();
        let mut plan = expand(&experiment(&text), &set()).unwrap();
        let option2 = |c: &&Cell| c.option == TransferOption::FineTune;
        // Seed 0 trains each Option 2 arm at 1e-4, 1e-3 (fixed) and 1e-2; seeds 1 and 2 at 1e-3.
        let extra: Vec<&Cell> = (plan.cells.iter())
            .filter(|c| c.learning_rate() != Some(1e-3) && option2(c))
            .collect();
        assert_eq!(extra.len(), 2 * 2 * 2, "2 arms × 2 sizes × 2 other rates");
        assert!(extra.iter().all(|c| c.seed == 0 && c.is_pilot()));
        assert_eq!(plan.cells.len(), probed.cells.len() + extra.len());
        // Every other cell is the one of the experiment without the choice, fingerprint and all;
        // Option 1 (the probe here) and the floor choose nothing.
        let fixed: Vec<&String> = (plan.cells.iter())
            .filter(|c| !extra.iter().any(|e| e.fingerprint == c.fingerprint))
            .map(|c| &c.fingerprint)
            .collect();
        let before: Vec<&String> = probed.cells.iter().map(|c| &c.fingerprint).collect();
        assert_eq!(fixed, before);
        assert!(
            plan.cells
                .iter()
                .filter(|c| !option2(c))
                .all(|c| c.rate_choice.is_none())
        );
        let choice = plan
            .cells
            .iter()
            .find(|c| option2(c))
            .unwrap()
            .rate_choice
            .clone()
            .unwrap();
        assert_eq!(choice.rates, vec![1e-4, 1e-3, 1e-2]);
        assert_eq!((choice.fixed, choice.pilot_seeds), (1e-3, vec![0]));
        // The choice: scratch keeps its fixed rate, src moves to 1e-2 at n = 10 only.
        let added = plan.add_chosen_rates(|c| match (c.source.as_str(), c.n_train) {
            ("src", 10) => Some(1e-2),
            _ => Some(1e-3),
        });
        assert_eq!(added, 2, "seeds 1 and 2 of src at n = 10");
        let moved: Vec<(u64, Option<f64>)> = (plan.cells.iter().rev().take(2))
            .map(|c| (c.seed, c.learning_rate()))
            .collect();
        assert_eq!(moved, vec![(2, Some(1e-2)), (1, Some(1e-2))]);
        // Loading again adds nothing twice.
        assert_eq!(plan.add_chosen_rates(|_| Some(1e-2)), 2 * 2 * 2 - 2);
        let fps: std::collections::HashSet<_> = plan.cells.iter().map(|c| &c.fingerprint).collect();
        assert_eq!(fps.len(), plan.cells.len());
    }

    #[test]
    fn option1_heads_are_the_probe_unless_the_file_asks_for_adam() {
        let plan = |extra: &str| expand(&experiment(&format!("{MATRIX}{extra}")), &set()).unwrap();
        let heads = |p: &Plan| -> Vec<bool> {
            (p.cells.iter())
                .filter(|c| c.trains_head_on_frozen_features() && !c.is_floor())
                .map(|c| c.fits_probe())
                .collect()
        };
        let fingerprints =
            |p: &Plan| -> Vec<String> { p.cells.iter().map(|c| c.fingerprint.clone()).collect() };
        let default = plan("");
        let adam = plan("\n[finetune.probe]\nc = []\n");
        let listed = plan("\n[finetune.probe]\nc = [0.0001, 0.001, 0.01, 0.1, 1, 10, 100]\n");
        assert!(!heads(&default).is_empty());
        assert!(heads(&default).iter().all(|&probe| probe));
        assert!(heads(&adam).iter().all(|&probe| !probe));
        assert_eq!(heads(&adam).len(), heads(&default).len());
        // Writing out the default grid changes no cell; Adam's cells hash without a probe, as
        // they did when Adam was the default.
        assert_eq!(fingerprints(&default), fingerprints(&listed));
        assert_ne!(fingerprints(&default), fingerprints(&adam));
        for c in &adam.cells {
            let json = serde_json::to_string(&c.finetune).unwrap();
            assert!(!json.contains("probe"), "{json}");
        }
    }

    #[test]
    fn pilot_seeds_need_rates_and_at_most_the_matrix_seeds() {
        for (search, says) in [
            ("pilot_seeds = 1\n", "no learning rate is listed"),
            (
                "option2_learning_rates = [1e-2]\npilot_seeds = 4\n",
                "between 1 and the 3 seeds",
            ),
            (
                "option2_learning_rates = [1e-2]\npilot_seeds = 0\n",
                "between 1 and the 3 seeds",
            ),
        ] {
            let text = format!("{MATRIX}\n[finetune.search]\n{search}");
            let err = Experiment::parse(Path::new("e.toml"), &text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(says) && err.contains("pilot_seeds"), "{err}");
        }
    }

    #[test]
    fn a_cross_modal_transformer_source_brings_a_trained_stem_control_under_option_1_only() {
        let manifests = reference_manifests();
        let text = |sources: &str, options: &str| {
            experiment(&format!(
                "[matrix]\ntargets = [\"mnist\"]\nsources = [{sources}]\nn_train = [50]\noptions = [{options}]\nseeds = [0, 1]\nfloor = false\n\n[model]\npatch = 7\nframes_per_token = 4\n"
            ))
        };
        let plan = expand(&text("\"scratch\", \"espeak-words\"", "1, 2"), &manifests).unwrap();
        let controls: Vec<&Cell> = plan.cells.iter().filter(|c| c.control.is_some()).collect();
        assert_eq!(controls.len(), 2, "one per seed, Option 1 only");
        for c in &controls {
            assert_eq!(
                (c.source.as_str(), c.relation, c.option, c.arm()),
                (
                    SCRATCH,
                    Relation::None,
                    TransferOption::Freeze,
                    "scratch (trained stem)".to_string()
                )
            );
            assert!(c.stem_trains() && c.network.is_none());
        }
        let plain = plan
            .cells
            .iter()
            .find(|c| c.source == SCRATCH && c.control.is_none() && c.option.freezes())
            .unwrap();
        assert!(!plain.stem_trains());
        assert_ne!(plain.fingerprint, controls[0].fingerprint);
        let cross = plan
            .cells
            .iter()
            .find(|c| c.relation == Relation::Mismatched && c.option.freezes())
            .unwrap();
        assert_eq!(
            partner_arm(cross.relation, cross.option, cross.architecture(), None),
            controls[0].arm()
        );
        for (sources, options) in [
            ("\"scratch\", \"espeak-words\"", "2"),
            ("\"scratch\"", "1, 2"),
        ] {
            let plan = expand(&text(sources, options), &manifests).unwrap();
            assert!(
                plan.cells.iter().all(|c| c.control.is_none()),
                "{sources} under {options}: no control"
            );
        }
    }

    #[test]
    fn another_backend_gets_its_own_fingerprints_and_keys_and_flex_keeps_them() {
        let flex = expand(&experiment(MATRIX), &set()).unwrap();
        let same = flex.clone().for_backend(None);
        assert_eq!(
            flex.cells
                .iter()
                .map(|c| &c.fingerprint)
                .collect::<Vec<_>>(),
            same.cells
                .iter()
                .map(|c| &c.fingerprint)
                .collect::<Vec<_>>()
        );
        let tch = flex.clone().for_backend(Some("tch"));
        let tch_key = &tch.pretrain_jobs[0].key;
        assert_ne!(tch_key, &flex.pretrain_jobs[0].key);
        for (a, b) in flex.cells.iter().zip(&tch.cells) {
            assert_ne!(a.fingerprint, b.fingerprint);
            // Cells still point at their (renamed) pre-training job.
            assert_eq!(b.pretrain_key.is_some(), a.pretrain_key.is_some());
            if let Some(k) = &b.pretrain_key {
                assert_eq!(k, tch_key);
            }
        }
    }

    #[test]
    fn fingerprints_ignore_the_experiment_name_but_not_the_settings() {
        let a = expand(&experiment(MATRIX), &set()).unwrap();
        let named = format!("name = \"other\"\n{MATRIX}");
        let b = expand(&experiment(&named), &set()).unwrap();
        assert_eq!(a.cells[0].fingerprint, b.cells[0].fingerprint);
        let wider = format!("{MATRIX}[model]\nd_model = 32\n");
        let c = expand(&experiment(&wider), &set()).unwrap();
        assert_ne!(a.cells[0].fingerprint, c.cells[0].fingerprint);
        assert_ne!(a.pretrain_jobs[0].key, c.pretrain_jobs[0].key);
    }

    #[test]
    fn an_unknown_dataset_names_its_line_and_the_known_ids() {
        let text = MATRIX.replace("\"src\"", "\"srx\"");
        let err = expand(&experiment(&text), &set()).unwrap_err();
        assert!(err.message.contains("`srx`"), "{err}");
        assert_eq!(err.location.unwrap().line, 3);
        assert!(err.help.unwrap().contains("src, tgt"));
    }

    fn with_network() -> ManifestSet {
        let mut s = set();
        let net =
            NetworkManifest::parse(Path::new("net.toml"), crate::network::tests::GOOD).unwrap();
        s.networks.insert(net.id.clone(), net);
        s
    }

    #[test]
    fn a_network_source_brings_its_scratch_arm_and_leaves_the_other_cells_unchanged() {
        let text = MATRIX
            .replace("\"scratch\", \"src\"", "\"scratch\", \"src\", \"tiny-net\"")
            .replace("seeds = [0, 1, 2]", "seeds = [0, 1, 2]\nfloor = false");
        let text = format!("{text}[networks]\nside = 24\n\n[networks.finetune]\nepochs = 3\n");
        let plan = expand(&experiment(&text), &with_network()).unwrap();
        assert_eq!(plan.cells.len(), 4 * 2 * 2 * 3);
        let arms: std::collections::BTreeSet<(&str, &str, &str)> = plan
            .cells
            .iter()
            .map(|c| (c.source.as_str(), c.architecture(), c.relation.as_str()))
            .collect();
        let custom = "efficientnet-lite(custom)";
        assert_eq!(
            arms.into_iter().collect::<Vec<_>>(),
            vec![
                ("scratch", custom, "none"),
                ("scratch", TRANSFORMER, "none"),
                ("src", TRANSFORMER, "matched"),
                ("tiny-net", custom, "matched"),
            ]
        );
        for c in &plan.cells {
            let arm = c.network.as_ref();
            assert_eq!(
                arm.and_then(|a| a.image_input()).map(|i| i.side),
                arm.map(|_| 24)
            );
            assert_eq!(
                arm.is_some_and(|a| a.weights.is_some()),
                c.source == "tiny-net"
            );
            assert_eq!(c.finetune.epochs, if arm.is_some() { 3 } else { 30 });
            assert_eq!(c.finetune.min_steps, 200);
            assert!(c.pretrain_key.is_none() || arm.is_none());
        }
        // Option 1 on cached features can have its own budget; nothing else changes.
        let frozen = expand(
            &experiment(&format!(
                "{text}\n[networks.frozen_features]\nmin_steps = 500\n"
            )),
            &with_network(),
        )
        .unwrap();
        for (a, b) in plan.cells.iter().zip(&frozen.cells) {
            let own = b.network.is_some() && b.option == 1;
            assert_eq!(b.finetune.min_steps, if own { 500 } else { 200 });
            assert_eq!(a.fingerprint == b.fingerprint, !own);
        }
        // The Transformer's cells keep the fingerprints they have without the network.
        let without = expand(
            &experiment(&MATRIX.replace("seeds = [0, 1, 2]", "seeds = [0, 1, 2]\nfloor = false")),
            &set(),
        )
        .unwrap();
        let fps = |p: &Plan| -> std::collections::BTreeSet<String> {
            p.cells
                .iter()
                .filter(|c| c.network.is_none())
                .map(|c| c.fingerprint.clone())
                .collect()
        };
        assert_eq!(fps(&plan), fps(&without));
    }

    #[test]
    fn an_image_arm_serialises_as_before_text_and_audio_networks_came() {
        // Cells' fingerprints hash this text: rows recorded before keep matching their cells.
        let arm = NetworkArm {
            architecture: "efficientnet-lite0".into(),
            body: NetworkBody::Image {
                shape: EfficientNetShape {
                    stem: 32,
                    stages: vec![[1, 3, 1, 1, 16]],
                    head: 1280,
                    classes: 1000,
                },
                input: InputAdapter {
                    side: 64,
                    channels: 3,
                    offset: 127.0,
                    scale: 128.0,
                    log_mel: None,
                },
            },
            weights: None,
            weights_sha256: None,
            init: Some(RandomInit::Original),
        };
        assert_eq!(
            serde_json::to_string(&arm).unwrap(),
            r#"{"architecture":"efficientnet-lite0","shape":{"stem":32,"stages":[[1,3,1,1,16]],"head":1280,"classes":1000},"weights":null,"weights_sha256":null,"init":"original","input":{"side":64,"channels":3,"offset":127.0,"scale":128.0}}"#
        );
        let text = NetworkArm {
            architecture: "bert-minilm-l6".into(),
            body: NetworkBody::Text {
                shape: BertShape::MINILM_L6,
                input: TextAdapter {
                    max_tokens: 128,
                    tokenizer_sha256: "be50".into(),
                },
            },
            weights: Some("all-minilm-l6-v2".into()),
            weights_sha256: Some("53aa".into()),
            init: None,
        };
        let json = serde_json::to_string(&text).unwrap();
        assert!(
            json.contains(r#""bert":{"vocab_size":30522"#)
                && json.contains(r#""text":{"max_tokens":128,"tokenizer_sha256":"be50"}"#)
                && !json.contains("\"input\""),
            "{json}"
        );
    }

    #[test]
    fn a_network_on_a_target_of_another_modality_is_refused() {
        let mut s = with_network();
        let net = s.networks.get_mut("tiny-net").unwrap();
        net.modality = Modality::Audio;
        let text = MATRIX.replace("\"scratch\", \"src\"", "\"scratch\", \"tiny-net\"");
        let err = expand(&experiment(&text), &s).unwrap_err();
        assert!(err.message.contains("no established adapter"), "{err}");
        assert_eq!(err.location.unwrap().line, 3);
    }

    /// The manifests the project ships.
    fn reference_manifests() -> ManifestSet {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data-manifests");
        ManifestSet::load_dir(&root).unwrap()
    }

    /// A one-size, one-seed matrix of `targets` × `sources` (quoted TOML lists' contents).
    fn cross_modal_matrix(targets: &str, sources: &str) -> Experiment {
        experiment(&format!(
            "[matrix]\ntargets = [{targets}]\nsources = [{sources}]\nn_train = [50]\noptions = [1, 2]\nseeds = [0]\n\n[model]\npatch = 7\nframes_per_token = 4\n\n[networks]\nside = 64\n"
        ))
    }

    #[test]
    fn only_cells_that_fine_tune_batch_norm_layers_took_a_new_fingerprint() {
        let plan = expand(
            &cross_modal_matrix(
                "\"mnist\", \"hedgewars-speakers\"",
                "\"scratch\", \"efficientnet-lite0-imagenet\", \"all-minilm-l6-v2\"",
            ),
            &reference_manifests(),
        )
        .unwrap();
        let mut bumped = std::collections::BTreeSet::new();
        for cell in &plan.cells {
            // The fingerprint the cell had before the BatchNorm fix.
            #[derive(Serialize)]
            struct Before<'a> {
                version: u32,
                cell: &'a Cell,
            }
            let mut keyed = cell.clone();
            keyed.experiment = String::new();
            keyed.fingerprint = String::new();
            let before = fingerprint_of(&Before {
                version: FINGERPRINT_VERSION,
                cell: &keyed,
            });
            if before != cell.fingerprint {
                bumped.insert((cell.target.clone(), cell.arm(), cell.option.number()));
            }
        }
        // EfficientNet on the images and on the speakers' log-mel images, pre-trained and from
        // scratch, under Option 2; not MiniLM's layers behind a patch stem, nor the Transformer.
        let expected: std::collections::BTreeSet<(String, String, u8)> = [
            ("hedgewars-speakers", "efficientnet-lite0-imagenet"),
            ("hedgewars-speakers", "scratch (efficientnet-lite0)"),
            ("mnist", "efficientnet-lite0-imagenet"),
            ("mnist", "scratch (efficientnet-lite0)"),
        ]
        .iter()
        .map(|(t, a)| (t.to_string(), a.to_string(), 2))
        .collect();
        assert_eq!(bumped, expected);
    }

    #[test]
    fn across_modalities_only_the_established_adapters_are_planned() {
        let manifests = reference_manifests();
        let matrix = cross_modal_matrix;
        let plan = expand(
            &matrix(
                "\"mnist\", \"hedgewars-speakers\"",
                "\"scratch\", \"efficientnet-lite0-imagenet\", \"all-minilm-l6-v2\"",
            ),
            &manifests,
        )
        .unwrap();
        let arms: std::collections::BTreeSet<(&str, &str, &str, String)> = plan
            .cells
            .iter()
            .filter(|c| c.network.is_some())
            .map(|c| {
                let arm = c.network.as_ref().unwrap();
                (
                    c.target.as_str(),
                    c.source.as_str(),
                    c.relation.as_str(),
                    format!("{}: {}", arm.architecture, arm.adapter_label()),
                )
            })
            .collect();
        let expected: Vec<(&str, &str, &str, String)> = vec![
            (
                "hedgewars-speakers",
                "all-minilm-l6-v2",
                "mismatched",
                "bert-minilm-l6 + patch stem: fresh stem, 19 patches of 40×4".into(),
            ),
            (
                "hedgewars-speakers",
                "efficientnet-lite0-imagenet",
                "mismatched",
                "efficientnet-lite0: log-mel image, side 64".into(),
            ),
            (
                "hedgewars-speakers",
                "scratch",
                "none",
                "bert-minilm-l6 + patch stem: fresh stem, 19 patches of 40×4".into(),
            ),
            (
                "hedgewars-speakers",
                "scratch",
                "none",
                "efficientnet-lite0: log-mel image, side 64".into(),
            ),
            (
                "mnist",
                "all-minilm-l6-v2",
                "mismatched",
                "bert-minilm-l6 + patch stem: fresh stem, 16 patches of 7×7".into(),
            ),
            (
                "mnist",
                "efficientnet-lite0-imagenet",
                "matched",
                "efficientnet-lite0: side 64".into(),
            ),
            (
                "mnist",
                "scratch",
                "none",
                "bert-minilm-l6 + patch stem: fresh stem, 16 patches of 7×7".into(),
            ),
            (
                "mnist",
                "scratch",
                "none",
                "efficientnet-lite0: side 64".into(),
            ),
        ];
        assert_eq!(arms.into_iter().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn a_network_without_an_established_adapter_to_the_target_is_refused() {
        let (manifests, matrix) = (reference_manifests(), cross_modal_matrix);
        // No established adapter: an audio network on images, an image network on text.
        for (target, source) in [
            ("mnist", "crepe-tiny"),
            ("20newsgroups-2k", "efficientnet-lite0-imagenet"),
        ] {
            let err = expand(
                &matrix(
                    &format!("\"{target}\""),
                    &format!("\"scratch\", \"{source}\""),
                ),
                &manifests,
            )
            .unwrap_err();
            assert!(err.message.contains("no established adapter"), "{err}");
            assert_eq!(err.location.unwrap().line, 3, "{err}");
        }
    }

    #[test]
    fn a_target_can_have_its_own_sources_and_sizes() {
        let manifests = reference_manifests();
        // A target can have its own sources, so that one matrix holds every adapted pair.
        let own = experiment(
            "[matrix]\ntargets = [\"mnist\", \"20newsgroups-2k\"]\nsources = [\"scratch\", \"efficientnet-lite0-imagenet\"]\nn_train = [50]\noptions = [1]\nseeds = [0]\nfloor = false\n\n[matrix.sources_by_target]\n20newsgroups-2k = [\"scratch\", \"all-minilm-l6-v2\"]\n\n[model]\npatch = 7\n",
        );
        let plan = expand(&own, &manifests).unwrap();
        let pairs: std::collections::BTreeSet<(&str, &str)> = plan
            .cells
            .iter()
            .map(|c| (c.target.as_str(), c.architecture()))
            .collect();
        assert_eq!(
            pairs.into_iter().collect::<Vec<_>>(),
            vec![
                ("20newsgroups-2k", "bert-minilm-l6"),
                ("20newsgroups-2k", TRANSFORMER),
                ("mnist", "efficientnet-lite0"),
                ("mnist", TRANSFORMER),
            ]
        );
        let err = Experiment::parse(
            Path::new("e.toml"),
            "[matrix]\ntargets = [\"mnist\"]\nsources = [\"scratch\"]\nn_train = [50]\noptions = [1]\nseeds = [0]\n\n[matrix.sources_by_target]\nfashion-mnist = [\"scratch\"]\n",
        )
        .unwrap_err();
        assert!(err.message.contains("not in `matrix.targets`"), "{err}");
        assert_eq!(err.location.unwrap().line, 9, "{err}");

        // And its own training-set sizes, checked against its pool like `n_train`.
        let sized = |sizes: &str| {
            format!(
                "[matrix]\ntargets = [\"mnist\", \"20newsgroups-2k\"]\nsources = [\"scratch\"]\nn_train = [50, 500]\noptions = [1]\nseeds = [0]\n\n[matrix.n_train_by_target]\n20newsgroups-2k = {sizes}\n\n[model]\npatch = 7\n"
            )
        };
        let plan = expand(&experiment(&sized("[50, 100, 390]")), &manifests).unwrap();
        let sizes = |target: &str| {
            plan.cells
                .iter()
                .filter(|c| c.target == target)
                .map(|c| c.n_train)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(sizes("mnist"), vec![50, 500]);
        assert_eq!(sizes("20newsgroups-2k"), vec![50, 100, 390]);
        let too_many = expand(&experiment(&sized("[50, 100000]")), &manifests).unwrap_err();
        assert!(
            too_many.message.contains("larger than the training pool"),
            "{too_many}"
        );
        assert_eq!(too_many.location.unwrap().line, 9, "{too_many}");
        for (sizes, words) in [("[]", "must not be empty"), ("[50, 50]", "lists 50 twice")] {
            let err = Experiment::parse(Path::new("e.toml"), &sized(sizes)).unwrap_err();
            assert!(err.message.contains(words), "{err}");
            assert_eq!(err.location.unwrap().line, 9, "{err}");
        }
    }

    #[test]
    fn a_hypothesis_that_would_compare_architectures_is_refused() {
        // Matched arms of both architectures, but a scratch arm only for... none: `scratch`
        // is left out, and `src` (the Transformer) is the only other arm.
        let text = MATRIX.replace("\"scratch\", \"src\"", "\"src\", \"tiny-net\"");
        let ok = format!(
            "{text}[[hypothesis]]\nname = \"opts\"\na = \"option 1\"\nb = \"option 2\"\nexpect = \"greater\"\n"
        );
        assert!(expand(&experiment(&ok), &with_network()).is_ok());
        let mixed = MATRIX.replace("\"scratch\", \"src\"", "\"scratch\", \"tiny-net\"");
        let mixed = mixed.replace("[matrix]", "[matrix]");
        // tiny-net has its scratch arm: fine. Limiting to the Transformer leaves no matched arm.
        let h = |arch: &str| {
            format!(
                "{mixed}[[hypothesis]]\nname = \"m\"\na = \"matched\"\nb = \"scratch\"\nexpect = \"greater\"\narchitectures = [\"{arch}\"]\n"
            )
        };
        assert!(
            expand(
                &experiment(&h("efficientnet-lite(custom)")),
                &with_network()
            )
            .is_ok()
        );
        let err = expand(&experiment(&h("resnet")), &with_network()).unwrap_err();
        assert!(err.message.contains("names architecture `resnet`"), "{err}");
        assert_eq!(err.location.unwrap().line, 8);
    }

    #[test]
    fn matched_arms_without_a_partner_of_their_architecture_are_refused() {
        let mut s = with_network();
        let text_manifest = r#"id = "txt"
name = "txt"
modality = "text"
licence = "CC0"
citation = "t"
format = "text-csv"
classes = ["a", "b"]
[split]
method = "stratified"
test_per_class = 1
seed = 1
train = 100
test = 2
[[source]]
kind = "local"
path = "."
files = { data = "t.csv" }
"#;
        let txt = Manifest::parse(Path::new("txt.toml"), text_manifest).unwrap();
        s.by_id.insert(txt.id.clone(), txt);
        // Matched: only the network; mismatched: only the Transformer (from text).
        let text = MATRIX.replace("\"scratch\", \"src\"", "\"scratch\", \"tiny-net\", \"txt\"");
        let h = |a: &str, b: &str| {
            format!(
                "{text}[[hypothesis]]\nname = \"cross\"\na = \"{a}\"\nb = \"{b}\"\nexpect = \"greater\"\n"
            )
        };
        let err = expand(&experiment(&h("matched", "mismatched")), &s).unwrap_err();
        assert!(
            err.message
                .contains("would compare `efficientnet-lite(custom)` arms with mismatched arms of another architecture only"),
            "{err}"
        );
        assert_eq!(err.location.unwrap().line, 8);
        assert!(err.help.unwrap().contains("architectures"));
        // Each against scratch: every architecture has its scratch arm.
        assert!(expand(&experiment(&h("matched", "scratch")), &s).is_ok());
        assert!(expand(&experiment(&h("mismatched", "scratch")), &s).is_ok());
    }

    #[test]
    fn n_train_larger_than_the_pool_names_its_line() {
        let text = MATRIX.replace("[10, 40]", "[10, 400]");
        let err = expand(&experiment(&text), &set()).unwrap_err();
        assert!(
            err.message.contains("400") && err.message.contains("100 examples"),
            "{err}"
        );
        assert_eq!(err.location.unwrap().line, 4);
    }
}
