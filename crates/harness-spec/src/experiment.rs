//! Experiment files: the matrix (targets × sources × n_train × options × seeds) and the model,
//! pre-training and fine-tuning settings shared by its cells.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::SpecError;

/// The source name that means "no pre-training": the same network from random initialisation.
pub const SCRATCH: &str = "scratch";

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
    /// Feed-forward activation: `"relu"` or `"gelu"`.
    pub activation: String,
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
            activation: "relu".into(),
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
}

impl Default for PretrainSpec {
    fn default() -> Self {
        PretrainSpec {
            epochs: 3,
            batch_size: 64,
            learning_rate: 1e-3,
            seed: 0,
            max_examples: 0,
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
    pub normalise: String,
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
            normalise: "letters".into(),
            corpus: None,
            tokenizer: None,
        }
    }
}

/// The grid of cells.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixSpec {
    pub targets: Vec<Spanned<String>>,
    pub sources: Vec<Spanned<String>>,
    pub n_train: Vec<Spanned<usize>>,
    pub options: Vec<Spanned<u8>>,
    pub seeds: Vec<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: String,
    matrix: MatrixSpec,
    #[serde(default)]
    model: ModelSpec,
    #[serde(default)]
    pretrain: PretrainSpec,
    #[serde(default)]
    finetune: FinetuneSpec,
    #[serde(default)]
    text: TextSpec,
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
    pub path: PathBuf,
    pub text: String,
}

impl Experiment {
    pub fn load(path: &Path) -> Result<Experiment, SpecError> {
        let text = fs::read_to_string(path)
            .map_err(|e| SpecError::new(path, format!("cannot read experiment file: {e}")))?;
        Experiment::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Experiment, SpecError> {
        let file: ExperimentFile =
            toml::from_str(text).map_err(|e| SpecError::from_toml(path, text, &e))?;
        let name = match file.name {
            Some(n) => n,
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let experiment = Experiment {
            name,
            description: file.description,
            matrix: file.matrix,
            model: file.model,
            pretrain: file.pretrain,
            finetune: file.finetune,
            text_spec: file.text,
            path: path.to_path_buf(),
            text: text.to_string(),
        };
        experiment.validate()?;
        Ok(experiment)
    }

    pub fn error_at(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> SpecError {
        SpecError::at(&self.path, &self.text, span, message)
    }

    /// An error pointing at the first line that mentions `key`, or at the file.
    pub fn error_near(&self, key: &str, message: impl Into<String>) -> SpecError {
        match self.text.find(key) {
            Some(at) => SpecError::at(&self.path, &self.text, at..at + key.len(), message),
            None => SpecError::new(&self.path, message),
        }
    }

    fn validate(&self) -> Result<(), SpecError> {
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
        let m = &self.matrix;
        for (what, empty) in [
            ("targets", m.targets.is_empty()),
            ("sources", m.sources.is_empty()),
            ("n_train", m.n_train.is_empty()),
            ("options", m.options.is_empty()),
            ("seeds", m.seeds.is_empty()),
        ] {
            if empty {
                return Err(self.error_near(what, format!("`matrix.{what}` must not be empty")));
            }
        }
        for option in &m.options {
            if !matches!(option.get_ref(), 1 | 2) {
                return Err(self.error_at(option.span(), format!(
                    "option must be 1 (freeze the transferred layers) or 2 (fine-tune all), found {}",
                    option.get_ref()
                )));
            }
        }
        let model = &self.model;
        if model.d_model == 0 || model.n_heads == 0 || model.d_model % model.n_heads != 0 {
            return Err(self.error_near(
                "d_model",
                format!(
                    "`model.d_model` ({}) must be a positive multiple of `model.n_heads` ({})",
                    model.d_model, model.n_heads
                ),
            ));
        }
        if model.patch == 0 || model.n_layers == 0 || model.d_ff == 0 {
            return Err(
                self.error_near("[model]", "`patch`, `n_layers` and `d_ff` must be positive")
            );
        }
        if !matches!(model.activation.as_str(), "relu" | "gelu") {
            return Err(self.error_near(
                "activation",
                format!(
                    "`model.activation` must be \"relu\" or \"gelu\", found {:?}",
                    model.activation
                ),
            ));
        }
        if !(0.0..1.0).contains(&model.dropout) {
            return Err(self.error_near("dropout", "`model.dropout` must be in [0, 1)"));
        }
        let text = &self.text_spec;
        if text.max_tokens == 0 {
            return Err(self.error_near("max_tokens", "`text.max_tokens` must be positive"));
        }
        if text.vocab_size < 3 {
            return Err(self.error_near(
                "vocab_size",
                "`text.vocab_size` must leave room beside the two special tokens (at least 3)",
            ));
        }
        if !matches!(text.normalise.as_str(), "letters" | "tokenizer") {
            return Err(self.error_near(
                "normalise",
                format!(
                    "`text.normalise` must be \"letters\" or \"tokenizer\", found {:?}",
                    text.normalise
                ),
            ));
        }
        let ft = &self.finetune;
        if !(ft.validation_fraction > 0.0 && ft.validation_fraction < 1.0) {
            return Err(self.error_near(
                "validation_fraction",
                "`finetune.validation_fraction` must be in (0, 1)",
            ));
        }
        if ft.batch_size == 0 || self.pretrain.batch_size == 0 {
            return Err(self.error_near("batch_size", "`batch_size` must be positive"));
        }
        if ft.evaluations == 0 || ft.patience == 0 {
            return Err(self.error_near(
                "evaluations",
                "`finetune.evaluations` and `patience` must be positive",
            ));
        }
        for lr in [
            ft.option1_learning_rate,
            ft.option2_learning_rate,
            self.pretrain.learning_rate,
        ] {
            if !(lr > 0.0 && lr.is_finite()) {
                return Err(self.error_near("learning_rate", "learning rates must be positive"));
            }
        }
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
    fn heads_must_divide_the_width() {
        let text = GOOD.replace("d_model = 32", "d_model = 30");
        assert!(Experiment::parse(Path::new("x.toml"), &text).is_err());
    }
}
