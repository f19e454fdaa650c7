//! A decoded dataset (training pool + fixed test set), its content hash, and the
//! content-addressed cache that lets a second run read tensors instead of archives.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use harness_spec::{CsvLabels, Format, LabelColumn, Manifest, SplitMethod};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audio::{Clip, fix_length, resample};
use crate::audioset::{decode_audio_tree, spectrograms};
use crate::decode::{ImageSet, decode_csv_pixels, decode_idx, decode_image_folder};
use crate::fetch::{FetchEvent, Fetched, fetch};
use crate::inputs::{Inputs, SpectrogramSet, TextSet, WaveformSet};
use crate::split::stratified_test_split;
use crate::text::{parse_orange_tab, parse_text_csv};

/// Bumped when decoding or splitting changes, so old cache entries are not read.
const DECODER_VERSION: u32 = 2;

/// A decoded dataset: the training pool that subsets are drawn from and the fixed test set.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub id: String,
    pub classes: Vec<String>,
    pub train: Inputs,
    pub test: Inputs,
    /// SHA256 of the decoded content (see [`content_sha256`]).
    pub content_sha256: String,
    /// Which manifest source delivered it (or `cache`).
    pub origin: String,
}

impl Dataset {
    /// `(rows, cols)` of one example.
    pub fn shape(&self) -> (usize, usize) {
        self.train.shape()
    }
}

/// SHA256 over the decoded dataset. Images: side (u32 LE), then for train and test in turn:
/// count (u64 LE), pixels, labels (u16 LE). Spectrograms: the bytes `spectrogram`, mels and
/// frames (u32 LE), then per split: count (u64 LE), values (f32 LE), labels (u16 LE). Equal
/// hashes mean equal examples in equal order.
pub fn content_sha256(train: &Inputs, test: &Inputs) -> String {
    let mut h = Sha256::new();
    match train {
        Inputs::Images(s) => h.update((s.side as u32).to_le_bytes()),
        Inputs::Spectrograms(s) => {
            h.update(b"spectrogram");
            h.update((s.mels as u32).to_le_bytes());
            h.update((s.frames as u32).to_le_bytes());
        }
        Inputs::Texts(_) => h.update(b"texts"),
        Inputs::Waveforms(s) => {
            h.update(b"waveforms");
            h.update(s.sample_rate.to_le_bytes());
            h.update((s.samples as u32).to_le_bytes());
        }
        Inputs::Tokens(s) => {
            h.update(b"tokens");
            h.update((s.tokens as u32).to_le_bytes());
            h.update((s.vocab_size as u32).to_le_bytes());
        }
    }
    for set in [train, test] {
        h.update((set.len() as u64).to_le_bytes());
        match set {
            Inputs::Images(s) => h.update(&s.pixels),
            Inputs::Spectrograms(s) => {
                for v in &s.values {
                    h.update(v.to_le_bytes());
                }
            }
            Inputs::Waveforms(s) => {
                for v in &s.values {
                    h.update(v.to_le_bytes());
                }
            }
            Inputs::Tokens(s) => {
                for id in &s.ids {
                    h.update(id.to_le_bytes());
                }
            }
            Inputs::Texts(s) => {
                for doc in &s.docs {
                    h.update((doc.len() as u64).to_le_bytes());
                    h.update(doc.as_bytes());
                }
            }
        }
        for l in set.labels() {
            h.update(l.to_le_bytes());
        }
    }
    hex::encode(h.finalize())
}

/// Where decoded datasets and downloads are kept.
#[derive(Debug, Clone)]
pub struct DataCache {
    pub root: PathBuf,
}

impl DataCache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataCache { root: root.into() }
    }

    pub fn downloads(&self) -> PathBuf {
        self.root.join("downloads")
    }

    /// The cache file of `manifest`'s decoded content; `local` is what the user's own files
    /// hash to now, when they are its first source ([`crate::fetch::local_content`]).
    fn entry(&self, manifest: &Manifest, local: Option<&str>) -> Option<PathBuf> {
        // Without checksums or the hash of local files, the content is not pinned and is
        // decoded afresh.
        if !manifest.is_pinned() && local.is_none() {
            return None;
        }
        #[derive(Serialize)]
        struct Key<'a> {
            version: u32,
            content: String,
            format: Format,
            split: &'a harness_spec::SplitSpec,
            side: Option<usize>,
            csv: Option<(&'a str, bool)>,
            classes: &'a [String],
            #[serde(skip_serializing_if = "Option::is_none")]
            audio: Option<&'a harness_spec::AudioSpec>,
        }
        let key = harness_spec::fingerprint_of(&Key {
            version: DECODER_VERSION,
            content: match local {
                Some(local) => format!("{} local {local}", manifest.content_key()),
                None => manifest.content_key(),
            },
            format: manifest.format,
            split: &manifest.split,
            side: manifest.image.as_ref().map(|i| i.side),
            csv: manifest
                .csv
                .as_ref()
                .map(|c| (c.label_column.as_str(), c.header)),
            classes: &manifest.classes,
            audio: manifest.audio.as_ref(),
        });
        Some(
            self.root
                .join("datasets")
                .join(format!("{}-{}.bin", manifest.id, &key[..16])),
        )
    }
}

/// Returns the decoded dataset of `manifest`, from the cache if present, else by fetching,
/// verifying, decoding and splitting it (and then caching it).
pub fn prepare(
    manifest: &Manifest,
    cache: &DataCache,
    events: &mut dyn FnMut(FetchEvent),
) -> Result<Dataset> {
    let local = crate::fetch::local_content(manifest).with_context(|| {
        format!(
            "checking the files of dataset `{}` ({})",
            manifest.id,
            manifest.path.display()
        )
    })?;
    let entry = cache.entry(manifest, local.as_deref());
    if let Some(path) = &entry
        && path.is_file()
    {
        match read_cached(path, manifest) {
            Ok(dataset) => return Ok(dataset),
            Err(err) => eprintln!(
                "warning: ignoring unreadable cache entry {}: {err:#}",
                path.display()
            ),
        }
    }
    let (origin, fetched) = fetch(manifest, &cache.downloads(), events)?;
    let (train, test) = decode_and_split(manifest, fetched, events).with_context(|| {
        format!(
            "decoding dataset `{}` ({})",
            manifest.id,
            manifest.path.display()
        )
    })?;
    let dataset = Dataset {
        id: manifest.id.clone(),
        classes: manifest.classes.clone(),
        content_sha256: content_sha256(&train, &test),
        train,
        test,
        origin,
    };
    if let Some(path) = &entry {
        write_cached(path, &dataset)
            .with_context(|| format!("writing cache entry {}", path.display()))?;
    }
    Ok(dataset)
}

/// The labelled clips of an audio dataset's training pool and test set, as decoded (each at
/// its own sample rate and length), split as the manifest says.
type ClipSplit = (Vec<(Clip, u16)>, Vec<(Clip, u16)>);

fn decode_clips(
    manifest: &Manifest,
    fetched: Fetched,
    events: &mut dyn FnMut(FetchEvent),
) -> Result<ClipSplit> {
    match fetched {
        Fetched::Tree { origin, files } => {
            let tree = decode_audio_tree(manifest, &files, &origin)?;
            if !tree.dropped.is_empty() {
                events(FetchEvent::Duplicates {
                    dataset: manifest.id.clone(),
                    groups: tree.dropped,
                });
            }
            Ok((tree.pool, tree.test))
        }
        Fetched::Clips(clips) => {
            let labels: Vec<u16> = clips.iter().map(|(_, l)| *l).collect();
            let (pool, test) = manifest_test_split(manifest, &labels, "rendered datasets")?;
            let mut clips: Vec<Option<(Clip, u16)>> = clips.into_iter().map(Some).collect();
            let mut take = |idx: &[usize]| -> Vec<(Clip, u16)> {
                idx.iter().filter_map(|&i| clips[i].take()).collect()
            };
            Ok((take(&pool), take(&test)))
        }
        _ => bail!("`{}` delivered no audio clips", manifest.id),
    }
}

/// The sound of audio dataset `manifest` as waveforms for an audio network: every clip of the
/// training pool and test set (in the dataset's order) resampled to `sample_rate` and brought
/// to the dataset's clip length (`[audio] seconds`) by the rule of [`crate::audio`]. Fetched
/// through the same download cache as [`prepare`]; the waveforms themselves are not cached.
/// The content hash is that of the decoded dataset (`dataset_sha256`): the adapter is recorded
/// in each cell's fingerprint.
pub fn prepare_waveforms(
    manifest: &Manifest,
    cache: &DataCache,
    sample_rate: u32,
    dataset_sha256: &str,
    events: &mut dyn FnMut(FetchEvent),
) -> Result<Dataset> {
    let audio = manifest
        .audio
        .as_ref()
        .with_context(|| format!("`{}` is not an audio dataset", manifest.id))?;
    let (origin, fetched) = fetch(manifest, &cache.downloads(), events)?;
    let (pool, test) = decode_clips(manifest, fetched, &mut |_| {}).with_context(|| {
        format!(
            "decoding dataset `{}` ({})",
            manifest.id,
            manifest.path.display()
        )
    })?;
    let length = (audio.seconds * sample_rate as f64).round() as usize;
    let waveforms = |clips: &[(Clip, u16)]| -> Result<Inputs> {
        let per_clip: Vec<Vec<f32>> = clips
            .par_iter()
            .map(|(clip, _)| Ok(fix_length(&resample(clip, sample_rate)?.samples, length)))
            .collect::<Result<_>>()?;
        Ok(Inputs::Waveforms(WaveformSet {
            sample_rate,
            samples: length,
            values: per_clip.concat(),
            labels: clips.iter().map(|(_, l)| *l).collect(),
        }))
    };
    Ok(Dataset {
        id: manifest.id.clone(),
        classes: manifest.classes.clone(),
        train: waveforms(&pool)?,
        test: waveforms(&test)?,
        content_sha256: dataset_sha256.to_string(),
        origin,
    })
}

/// The training pool and the test set of fetched data, decoded by format and split as the
/// manifest's `[split]` says, with the sizes it declares.
fn decode_and_split(
    manifest: &Manifest,
    fetched: Fetched,
    events: &mut dyn FnMut(FetchEvent),
) -> Result<(Inputs, Inputs)> {
    let (train, test) = match fetched {
        fetched @ (Fetched::Tree { .. } | Fetched::Clips(_)) => {
            let audio = manifest
                .audio
                .as_ref()
                .context("audio datasets need `[audio]`")?;
            let (pool, test) = decode_clips(manifest, fetched, events)?;
            (
                Inputs::Spectrograms(spectrograms(&pool, audio)?),
                Inputs::Spectrograms(spectrograms(&test, audio)?),
            )
        }
        Fetched::Files(files) if manifest.format == Format::TextTab => {
            decode_orange_tab(manifest, &files)?
        }
        Fetched::Files(files) if manifest.format == Format::TextCsv => {
            decode_text_csv(manifest, &files)?
        }
        fetched => {
            let (train, test) = decode_images(manifest, fetched)?;
            (Inputs::Images(train), Inputs::Images(test))
        }
    };
    let test = match (
        manifest.split.method,
        manifest.split.test_per_class,
        manifest.split.seed,
    ) {
        (SplitMethod::Official, Some(per_class), Some(seed)) => {
            let (_, keep) =
                stratified_test_split(test.labels(), manifest.classes.len(), per_class, seed)
                    .context("sampling the official test set (`[split] test_per_class`)")?;
            test.select(&keep)
        }
        _ => test,
    };
    let expected_train = manifest.train_pool_size();
    ensure!(
        train.len() == expected_train && test.len() == manifest.split.test,
        "decoded {} training-pool and {} test examples; the manifest's `[split]` says train = {expected_train}, test = {}",
        train.len(),
        test.len(),
        manifest.split.test
    );
    Ok((train, test))
}

/// The `train` and `test` files of an Orange `.tab` dataset, each with the manifest's classes.
fn decode_orange_tab(
    manifest: &Manifest,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<(Inputs, Inputs)> {
    let mut sets = Vec::new();
    for role in ["train", "test"] {
        let bytes = files
            .get(role)
            .with_context(|| format!("no `{role}` file"))?;
        let name = format!("{} ({role})", describe_role(manifest, role));
        let (classes, docs) = parse_orange_tab(bytes, &name, None, None)?;
        ensure!(
            classes == manifest.classes,
            "`{role}` has the classes {classes:?}; the manifest lists {:?}",
            manifest.classes
        );
        let (labels, docs) = docs.into_iter().unzip();
        sets.push(Inputs::Texts(TextSet { docs, labels }));
    }
    let test = sets.pop().context("no test set")?;
    let train = sets.pop().context("no training set")?;
    Ok((train, test))
}

/// The documents of a `text-csv` dataset: its official `train` and `test` files, or its one
/// `data` file split by the manifest.
fn decode_text_csv(
    manifest: &Manifest,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<(Inputs, Inputs)> {
    let csv = manifest.csv.clone().unwrap_or_default();
    let delimiter = csv.delimiter.chars().next().unwrap_or(',');
    let read = |role: &str| -> Result<Vec<(u16, String)>> {
        let bytes = files
            .get(role)
            .with_context(|| format!("no `{role}` file"))?;
        let name = format!("{} ({role})", describe_role(manifest, role));
        parse_text_csv(
            bytes,
            &name,
            delimiter,
            csv.header,
            csv.label_column == LabelColumn::First,
            csv.labels == CsvLabels::OneBased,
            &manifest.classes,
        )
    };
    let texts = |docs: Vec<(u16, String)>| {
        let (labels, docs) = docs.into_iter().unzip();
        Inputs::Texts(TextSet { docs, labels })
    };
    if manifest.split.method == SplitMethod::Official {
        Ok((texts(read("train")?), texts(read("test")?)))
    } else {
        let all = texts(read("data")?);
        let (pool, test) = manifest_test_split(manifest, all.labels(), "single `text-csv` files")?;
        Ok((all.select(&pool), all.select(&test)))
    }
}

/// (training pool, test set) indices by the manifest's stratified `[split]`; `what` names the
/// kind of data in the error when the manifest asks for another method.
fn manifest_test_split(
    manifest: &Manifest,
    labels: &[u16],
    what: &str,
) -> Result<(Vec<usize>, Vec<usize>)> {
    ensure!(
        manifest.split.method == SplitMethod::Stratified,
        "{what} are split with `method = \"stratified\"`"
    );
    stratified_test_split(
        labels,
        manifest.classes.len(),
        manifest
            .split
            .test_per_class
            .context("`test_per_class` missing")?,
        manifest.split.seed.context("`seed` missing")?,
    )
}

/// The member path or file a role names in the manifest's first source, for messages.
fn describe_role(manifest: &Manifest, role: &str) -> String {
    manifest
        .sources
        .iter()
        .find_map(|s| s.get_ref().files.get(role).cloned())
        .unwrap_or_else(|| role.to_string())
}

fn decode_images(manifest: &Manifest, fetched: Fetched) -> Result<(ImageSet, ImageSet)> {
    let side = manifest
        .image
        .as_ref()
        .map(|i| i.side)
        .context("image datasets need `[image] side`")?;
    let classes = manifest.classes.len();
    let (train, test) = match (manifest.format, fetched) {
        (Format::Idx, Fetched::Files(files)) => {
            let get = |role: &str| files.get(role).with_context(|| format!("no `{role}` file"));
            let train = decode_idx(get("train_images")?, get("train_labels")?, classes, side)
                .context("train_images / train_labels")?;
            let test = decode_idx(get("test_images")?, get("test_labels")?, classes, side)
                .context("test_images / test_labels")?;
            ensure!(
                manifest.split.method == SplitMethod::Official,
                "IDX datasets use `method = \"official\"`"
            );
            (train, test)
        }
        (Format::CsvPixels, Fetched::Files(files)) => {
            let csv = manifest.csv.clone().unwrap_or_default();
            let all = decode_csv_pixels(
                files.get("data").context("no `data` file")?,
                classes,
                side,
                csv.label_column == LabelColumn::First,
                csv.header,
            )?;
            split_all(manifest, all)?
        }
        (Format::ImageFolder, Fetched::Folder(dir)) => {
            let (train_dir, test_dir) = (dir.join("train"), dir.join("test"));
            if manifest.split.method == SplitMethod::Official {
                ensure!(
                    train_dir.is_dir() && test_dir.is_dir(),
                    "{}: an official split needs `train/` and `test/` folders",
                    dir.display()
                );
                (
                    decode_image_folder(&train_dir, &manifest.classes, side)?,
                    decode_image_folder(&test_dir, &manifest.classes, side)?,
                )
            } else {
                split_all(
                    manifest,
                    decode_image_folder(&dir, &manifest.classes, side)?,
                )?
            }
        }
        (format, _) => bail!("format {format:?} does not fit what the source delivered"),
    };
    Ok((train, test))
}

fn split_all(manifest: &Manifest, all: ImageSet) -> Result<(ImageSet, ImageSet)> {
    ensure!(
        manifest.split.method == SplitMethod::Stratified,
        "this format needs `method = \"stratified\"` in `[split]`"
    );
    let per_class = manifest
        .split
        .test_per_class
        .context("`test_per_class` missing")?;
    let seed = manifest.split.seed.context("`seed` missing")?;
    let (pool, test) = stratified_test_split(&all.labels, manifest.classes.len(), per_class, seed)?;
    Ok((all.select(&pool), all.select(&test)))
}

const MAGIC: &[u8; 8] = b"THDSET2\n";

#[derive(Serialize, Deserialize)]
struct Header {
    id: String,
    classes: Vec<String>,
    /// `image` (u8 values) or `spectrogram` (f32 LE values).
    kind: String,
    rows: usize,
    cols: usize,
    train: usize,
    test: usize,
    content_sha256: String,
}

fn write_cached(path: &Path, d: &Dataset) -> Result<()> {
    let dir = path.parent().context("cache path has no parent")?;
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    let (rows, cols) = d.shape();
    let kind = match d.train {
        Inputs::Images(_) => "image",
        Inputs::Spectrograms(_) => "spectrogram",
        Inputs::Texts(_) => "text",
        Inputs::Tokens(_) | Inputs::Waveforms(_) => {
            bail!("token and waveform sets are derived for a network and not cached here")
        }
    };
    let header = serde_json::to_string(&Header {
        id: d.id.clone(),
        classes: d.classes.clone(),
        kind: kind.into(),
        rows,
        cols,
        train: d.train.len(),
        test: d.test.len(),
        content_sha256: d.content_sha256.clone(),
    })?;
    let mut out = std::io::BufWriter::new(tmp.as_file_mut());
    out.write_all(MAGIC)?;
    out.write_all(header.as_bytes())?;
    out.write_all(b"\n")?;
    for set in [&d.train, &d.test] {
        match set {
            Inputs::Images(s) => out.write_all(&s.pixels)?,
            Inputs::Spectrograms(s) => {
                for v in &s.values {
                    out.write_all(&v.to_le_bytes())?;
                }
            }
            Inputs::Texts(s) => {
                for doc in &s.docs {
                    out.write_all(&(doc.len() as u64).to_le_bytes())?;
                    out.write_all(doc.as_bytes())?;
                }
            }
            Inputs::Tokens(_) | Inputs::Waveforms(_) => unreachable!("refused above"),
        }
        for l in set.labels() {
            out.write_all(&l.to_le_bytes())?;
        }
    }
    out.flush()?;
    drop(out);
    tmp.as_file().sync_all()?;
    tmp.persist(path)?;
    Ok(())
}

fn read_cached(path: &Path, manifest: &Manifest) -> Result<Dataset> {
    let bytes = fs::read(path)?;
    ensure!(bytes.starts_with(MAGIC), "not a dataset cache file");
    let rest = &bytes[MAGIC.len()..];
    let nl = rest.iter().position(|&b| b == b'\n').context("no header")?;
    let header: Header = serde_json::from_slice(&rest[..nl])?;
    ensure!(
        header.id == manifest.id && header.classes == manifest.classes,
        "cache entry is for another dataset"
    );
    let mut body = &rest[nl + 1..];
    let mut take = |n: usize| -> Result<&[u8]> {
        ensure!(body.len() >= n, "cache file is truncated");
        let (head, tail) = body.split_at(n);
        body = tail;
        Ok(head)
    };
    let width = header.rows * header.cols;
    let mut sets = Vec::new();
    for count in [header.train, header.test] {
        if header.kind == "text" {
            let mut docs = Vec::with_capacity(count);
            for _ in 0..count {
                let len = u64::from_le_bytes(take(8)?.try_into()?) as usize;
                docs.push(String::from_utf8(take(len)?.to_vec())?);
            }
            let labels: Vec<u16> = take(count * 2)?
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            sets.push(Inputs::Texts(TextSet { docs, labels }));
            continue;
        }
        let values = match header.kind.as_str() {
            "image" => take(count * width)?.to_vec(),
            "spectrogram" => take(count * width * 4)?.to_vec(),
            other => bail!("unknown example kind `{other}`"),
        };
        let labels: Vec<u16> = take(count * 2)?
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        sets.push(if header.kind == "image" {
            ensure!(header.rows == header.cols, "images are square");
            Inputs::Images(ImageSet {
                side: header.rows,
                pixels: values,
                labels,
            })
        } else {
            Inputs::Spectrograms(SpectrogramSet {
                mels: header.rows,
                frames: header.cols,
                values: values
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                labels,
            })
        });
    }
    let test = sets.pop().context("no test split")?;
    let train = sets.pop().context("no training split")?;
    let actual = content_sha256(&train, &test);
    ensure!(
        actual == header.content_sha256,
        "cache file content does not match its recorded hash"
    );
    Ok(Dataset {
        id: header.id,
        classes: header.classes,
        train,
        test,
        content_sha256: actual,
        origin: "cache".into(),
    })
}
