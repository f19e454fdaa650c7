//! A decoded dataset (training pool + fixed test set), its content hash, and the
//! content-addressed cache that lets a second run read tensors instead of archives.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use harness_spec::{Format, Manifest, SplitMethod};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::decode::{ImageSet, decode_csv_pixels, decode_idx, decode_image_folder};
use crate::fetch::{FetchEvent, Fetched, fetch};
use crate::split::stratified_test_split;

/// Bumped when decoding or splitting changes, so old cache entries are not read.
const DECODER_VERSION: u32 = 1;

/// A decoded image dataset: the training pool that subsets are drawn from and the fixed test set.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub id: String,
    pub classes: Vec<String>,
    pub train: ImageSet,
    pub test: ImageSet,
    /// SHA256 of the decoded content (see [`content_sha256`]).
    pub content_sha256: String,
    /// Which manifest source delivered it (or `cache`).
    pub origin: String,
}

impl Dataset {
    pub fn side(&self) -> usize {
        self.train.side
    }
}

/// SHA256 over the decoded dataset: side (u32 LE), then for train and test in turn: count
/// (u64 LE), pixels, labels (u16 LE). Equal hashes mean equal examples in equal order.
pub fn content_sha256(train: &ImageSet, test: &ImageSet) -> String {
    let mut h = Sha256::new();
    h.update((train.side as u32).to_le_bytes());
    for set in [train, test] {
        h.update((set.len() as u64).to_le_bytes());
        h.update(&set.pixels);
        for l in &set.labels {
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

    fn entry(&self, manifest: &Manifest) -> Option<PathBuf> {
        // Without a checksum for every file, the content is not pinned and is decoded afresh.
        let pinned = manifest
            .format
            .roles()
            .iter()
            .all(|r| manifest.files.get(*r).is_some_and(|f| f.sha256.is_some()));
        if !pinned {
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
        }
        let key = harness_spec::fingerprint_of(&Key {
            version: DECODER_VERSION,
            content: manifest.content_key(),
            format: manifest.format,
            split: &manifest.split,
            side: manifest.image.as_ref().map(|i| i.side),
            csv: manifest
                .csv
                .as_ref()
                .map(|c| (c.label_column.as_str(), c.header)),
            classes: &manifest.classes,
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
    let entry = cache.entry(manifest);
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
    let (train, test) = decode_and_split(manifest, fetched).with_context(|| {
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

fn decode_and_split(manifest: &Manifest, fetched: Fetched) -> Result<(ImageSet, ImageSet)> {
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
            let csv = manifest.csv.clone().unwrap_or(harness_spec::CsvSpec {
                label_column: "last".into(),
                header: false,
            });
            let all = decode_csv_pixels(
                files.get("data").context("no `data` file")?,
                classes,
                side,
                csv.label_column == "first",
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

const MAGIC: &[u8; 8] = b"THDSET1\n";

#[derive(Serialize, Deserialize)]
struct Header {
    id: String,
    classes: Vec<String>,
    side: usize,
    train: usize,
    test: usize,
    content_sha256: String,
}

fn write_cached(path: &Path, d: &Dataset) -> Result<()> {
    let dir = path.parent().context("cache path has no parent")?;
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    let header = serde_json::to_string(&Header {
        id: d.id.clone(),
        classes: d.classes.clone(),
        side: d.side(),
        train: d.train.len(),
        test: d.test.len(),
        content_sha256: d.content_sha256.clone(),
    })?;
    tmp.write_all(MAGIC)?;
    tmp.write_all(header.as_bytes())?;
    tmp.write_all(b"\n")?;
    for set in [&d.train, &d.test] {
        tmp.write_all(&set.pixels)?;
        for l in &set.labels {
            tmp.write_all(&l.to_le_bytes())?;
        }
    }
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
    let mut sets = Vec::new();
    for count in [header.train, header.test] {
        let pixels = take(count * header.side * header.side)?.to_vec();
        let labels = take(count * 2)?
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        sets.push(ImageSet {
            side: header.side,
            pixels,
            labels,
        });
    }
    let test = sets.pop().unwrap_or_default();
    let train = sets.pop().unwrap_or_default();
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

/// Per-dataset pixel normalisation, computed on the training pool only.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalisation {
    pub mean: f32,
    pub std: f32,
}

impl Normalisation {
    /// Mean and standard deviation of the pool's pixels scaled to [0, 1].
    pub fn of_pool(pool: &ImageSet) -> Normalisation {
        let n = pool.pixels.len().max(1) as f64;
        let sum: f64 = pool.pixels.iter().map(|&p| p as f64 / 255.0).sum();
        let mean = sum / n;
        let var: f64 = pool
            .pixels
            .iter()
            .map(|&p| (p as f64 / 255.0 - mean).powi(2))
            .sum::<f64>()
            / n;
        Normalisation {
            mean: mean as f32,
            std: (var.sqrt() as f32).max(1e-6),
        }
    }

    /// The normalised pixels of `indices`, flattened example after example.
    pub fn features(&self, set: &ImageSet, indices: &[usize]) -> Vec<f32> {
        let mut out = Vec::with_capacity(indices.len() * set.side * set.side);
        for &i in indices {
            out.extend(
                set.image(i)
                    .iter()
                    .map(|&p| (p as f32 / 255.0 - self.mean) / self.std),
            );
        }
        out
    }
}
