//! # harness-spec
//!
//! The schemas of the two kinds of file a user writes — experiment matrices (`experiments/*.toml`)
//! and dataset manifests (`data-manifests/*.toml`) — their validation with `file:line` errors,
//! and the expansion of an experiment into pre-training jobs and cells with content fingerprints.
//!
//! This crate owns no I/O beyond reading those files and never touches data, models or results.
//!
//! ```no_run
//! use std::path::Path;
//! use harness_spec::{Experiment, ManifestSet, expand};
//!
//! let manifests = ManifestSet::load_dir(Path::new("data-manifests"))?;
//! let experiment = Experiment::load(Path::new("experiments/image.toml"))?;
//! let plan = expand(&experiment, &manifests)?;
//! println!("{} cells, {} pre-training jobs", plan.cells.len(), plan.pretrain_jobs.len());
//! # Ok::<(), harness_spec::SpecError>(())
//! ```

mod choices;
mod error;
mod experiment;
pub mod fault;
mod include;
mod manifest;
mod network;
mod plan;

pub use choices::{
    Activation, CsvLabels, DbReference, LabelColumn, RandomInit, SourceChoice, TextNormalisation,
    TransferOption,
};
pub use error::{Location, SpecError};
pub use experiment::{
    Arm, CeilingSpec, DEFAULT_PROBE_C, Expect, Experiment, FLOOR, FinetuneOverride, FinetuneSpec,
    Hypothesis, MatrixSpec, ModelSpec, MoreSeeds, NetworksSpec, PretrainOverride, PretrainSpec,
    ProbeSpec, SCRATCH, SearchSpec, SizeScope, TextSpec,
};
pub use include::{INHERITED_TABLES, SourceFile};
pub use manifest::{
    AudioSpec, ClipLayout, CsvSpec, Duplicates, FileSpec, Format, GM_FAMILIES, ImageSpec, Manifest,
    ManifestSet, Modality, NotesSpec, RenderSpec, SourceKind, SourceSpec, SplitMethod, SplitSpec,
};
pub use network::{
    ArchitectureSpec, BertShape, EfficientNetShape, Family, InputContract, LITE0_STAGES,
    NetworkManifest, NetworkSet, StageSpec, TrainedOn, WeightFormat, WeightsSpec, declares_network,
};
pub use plan::{
    AudioAdapter, Cell, CellStatus, Control, ExtraSeeds, FINGERPRINT_VERSION, InputAdapter,
    LOGISTIC, LogMelImage, NetworkArm, NetworkBody, PatchAdapter, Plan, PretrainJob, RateChoice,
    Relation, TRANSFORMER, TextAdapter, TokenizerPlan, arm_name, expand, expand_with_seeds,
    fingerprint_of, on_backend, partner_arm,
};
