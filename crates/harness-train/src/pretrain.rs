//! Pre-training a source network on its whole training pool, once per pre-training key: the
//! checkpoint lives in the cache under the key and is reused by every cell and every experiment
//! that asks for the same source, architecture and settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use harness_data::{Dataset, Normalisation, Rng, proportional_subset};
use harness_model::{Checkpoint, save_pretrained};
use harness_spec::PretrainJob;
use serde::{Deserialize, Serialize};

use crate::batches::batch;
use crate::eval::evaluate;
use crate::{TrainEvent, train_device};

/// What is recorded beside a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PretrainMeta {
    pub key: String,
    pub source: String,
    pub source_sha256: String,
    pub examples: usize,
    pub epochs: usize,
    /// Accuracy of the pre-trained network on the source's own test set.
    pub source_test_accuracy: f64,
    pub seconds: f64,
    pub harness_version: String,
    /// SHA256 of the saved stem and backbone weights (parameter paths and their f32 values).
    /// Unlike the files' own hash it is the same whenever the same job is trained again: the
    /// files also carry burn's random parameter ids. Absent in checkpoints trained before it was
    /// recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
    /// SHA256 of each weight file as written (`stem.bpk`, `backbone.bpk`): checked whenever the
    /// checkpoint is used, so a damaged or replaced file is never trusted. Checkpoints written
    /// before it was recorded cannot be verified and are trained again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_sha256: Option<BTreeMap<String, String>>,
}

/// SHA256 over every float parameter of the transferred parts (stem, then backbone), each as
/// its dotted path and its values in little-endian f32.
pub fn weights_sha256(model: &harness_model::Classifier) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (part, params) in [
        ("stem", harness_model::snapshot(&model.stem)),
        ("backbone", harness_model::snapshot(&model.backbone)),
    ] {
        for (path, values) in params {
            h.update(format!("{part}.{path}:{}\n", values.len()).as_bytes());
            for v in values {
                h.update(v.to_le_bytes());
            }
        }
    }
    hex::encode(h.finalize())
}

/// A checkpoint ready for use, and whether this call trained it.
#[derive(Debug, Clone)]
pub struct PretrainOutcome {
    pub checkpoint: Checkpoint,
    pub meta: PretrainMeta,
    pub trained_now: bool,
}

/// The checkpoint folder of `key` under `cache`.
pub fn checkpoint_dir(cache: &Path, key: &str) -> PathBuf {
    cache.join("checkpoints").join(key)
}

/// What the cache holds for a pre-training key.
#[derive(Debug, Clone)]
pub enum CachedCheckpoint {
    /// No checkpoint folder.
    Missing,
    /// A checkpoint whose files match the hashes its `meta.json` records.
    Verified(PretrainOutcome),
    /// A folder that cannot be trusted, and why (the path is in the reason).
    Damaged(String),
}

/// The SHA256 of each weight file of `checkpoint`, by file name.
fn files_sha256(checkpoint: &Checkpoint) -> Result<BTreeMap<String, String>> {
    use sha2::{Digest, Sha256};
    let mut out = BTreeMap::new();
    for path in [checkpoint.stem_file(), checkpoint.backbone_file()] {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let name = path
            .file_name()
            .context("a weight file without a name")?
            .to_string_lossy()
            .into_owned();
        out.insert(name, hex::encode(Sha256::digest(&bytes)));
    }
    Ok(out)
}

/// Looks at the checkpoint of `key` under `cache` and verifies its weight files against the
/// hashes its `meta.json` records (reading them: a few MiB).
pub fn check_pretrained(cache: &Path, key: &str) -> CachedCheckpoint {
    let dir = checkpoint_dir(cache, key);
    if !dir.exists() {
        return CachedCheckpoint::Missing;
    }
    let damaged = |why: String| CachedCheckpoint::Damaged(format!("{}: {why}", dir.display()));
    let checkpoint = Checkpoint::new(&dir);
    let meta_path = dir.join("meta.json");
    let meta: PretrainMeta = match std::fs::read(&meta_path)
        .map_err(anyhow::Error::from)
        .and_then(|b| serde_json::from_slice(&b).map_err(anyhow::Error::from))
    {
        Ok(meta) => meta,
        Err(e) => return damaged(format!("meta.json cannot be read ({e})")),
    };
    if meta.key != key {
        return damaged(format!("meta.json is for the key {}", meta.key));
    }
    let Some(recorded) = &meta.files_sha256 else {
        return damaged(
            "meta.json records no hashes of the weight files (written by an older harness), so the files cannot be verified"
                .into(),
        );
    };
    let actual = match files_sha256(&checkpoint) {
        Ok(actual) => actual,
        Err(e) => return damaged(format!("{e:#}")),
    };
    for (name, expected) in recorded {
        match actual.get(name) {
            Some(sha) if sha == expected => {}
            Some(sha) => {
                return damaged(format!(
                    "{name} has sha256 {sha}, meta.json records {expected}"
                ));
            }
            None => return damaged(format!("{name} is missing")),
        }
    }
    if recorded.len() != actual.len() || meta.weights_sha256.is_none() {
        return damaged("meta.json does not cover every weight file".into());
    }
    CachedCheckpoint::Verified(PretrainOutcome {
        checkpoint,
        meta,
        trained_now: false,
    })
}

/// The checkpoint of `key` if the cache has one that verifies.
pub fn cached_pretrained(cache: &Path, key: &str) -> Result<Option<PretrainOutcome>> {
    Ok(match check_pretrained(cache, key) {
        CachedCheckpoint::Verified(outcome) => Some(outcome),
        CachedCheckpoint::Missing | CachedCheckpoint::Damaged(_) => None,
    })
}

/// Returns the checkpoint of `job`, training it first if the cache has none that verifies (a
/// damaged one is replaced).
pub fn ensure_pretrained(
    job: &PretrainJob,
    source: &Dataset,
    cache: &Path,
    events: &mut dyn FnMut(TrainEvent),
) -> Result<PretrainOutcome> {
    if let Some(outcome) = cached_pretrained(cache, &job.key)? {
        return Ok(outcome);
    }
    let dir = checkpoint_dir(cache, &job.key);
    let checkpoint = Checkpoint::new(&dir);

    // Train into a temporary folder beside the final one, then rename: a crash leaves no
    // half-written checkpoint that a later run would trust. The folder's name carries this
    // process's id, so a later run can remove it once this process is gone.
    let parent = dir.parent().context("checkpoint folder has no parent")?;
    std::fs::create_dir_all(parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{}{}-", PARTIAL_PREFIX, std::process::id()))
        .tempdir_in(parent)?;
    let mut meta = train(job, source, tmp.path(), events)?;
    meta.files_sha256 = Some(files_sha256(&Checkpoint::new(tmp.path()))?);
    std::fs::write(
        tmp.path().join("meta.json"),
        serde_json::to_vec_pretty(&meta)?,
    )?;
    let tmp_path = tmp.keep();
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::rename(&tmp_path, &dir)?;
    Ok(PretrainOutcome {
        checkpoint,
        meta,
        trained_now: true,
    })
}

/// Name prefix of a checkpoint being trained (`.pretrain-PID-…`).
const PARTIAL_PREFIX: &str = ".pretrain-";

/// Removes the folders of pre-trainings whose process is gone (killed before it could rename
/// its folder into place); returns them.
pub fn clean_partial_checkpoints(cache: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(cache.join("checkpoints")) else {
        return removed;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PARTIAL_PREFIX) else {
            continue;
        };
        // Folders from before the id was in the name have none: nothing can own them now
        // that pre-training names its folder by its process.
        let owner = rest
            .split('-')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok());
        let alive = owner.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

/// What the cache records of every pre-training it holds (each checkpoint's `meta.json`,
/// its seconds included), whether or not its weight files still verify; unreadable records
/// and unfinished pre-trainings are left out.
pub fn recorded_pretrainings(cache: &Path) -> Vec<PretrainMeta> {
    let Ok(entries) = std::fs::read_dir(cache.join("checkpoints")) else {
        return Vec::new();
    };
    let mut recorded: Vec<PretrainMeta> = entries
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with(PARTIAL_PREFIX))
        .filter_map(|e| std::fs::read(e.path().join("meta.json")).ok())
        .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
        .collect();
    recorded.sort_by(|a: &PretrainMeta, b| a.key.cmp(&b.key));
    recorded
}

fn train(
    job: &PretrainJob,
    source: &Dataset,
    out: &Path,
    events: &mut dyn FnMut(TrainEvent),
) -> Result<PretrainMeta> {
    let started = Instant::now();
    let spec = &job.pretrain;
    let model_spec = &job.model;
    let classes = source.classes.len();
    let pool: Vec<usize> = (0..source.train.len()).collect();
    let mut examples = if spec.max_examples > 0 && spec.max_examples < pool.len() {
        proportional_subset(source.train.labels(), classes, spec.max_examples, spec.seed)
    } else {
        pool
    };
    let norm = Normalisation::of_pool(&source.train);
    let device = train_device();
    let config = crate::model_config(source, model_spec)?;
    let mut model = crate::init_network(&config, &device, spec.seed);
    let mut optim = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut rng = Rng::new(spec.seed, "pretrain-order");
    let steps_per_epoch = examples.len().div_ceil(spec.batch_size);
    let total = steps_per_epoch * spec.epochs;
    let mut step = 0;
    for epoch in 0..spec.epochs {
        rng.shuffle(&mut examples);
        let mut loss_sum = 0.0f64;
        for chunk in examples.chunks(spec.batch_size) {
            let (x, y) = batch(&source.train, &norm, chunk, &device);
            let loss = loss_fn.forward(model.forward(x), y);
            let value: f32 = loss.clone().into_scalar::<f32>();
            if !value.is_finite() {
                bail!(
                    "pre-training on `{}` diverged at step {step} (loss {value}); lower `pretrain.learning_rate`",
                    job.source
                );
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            // Cosine decay to zero over the run.
            let lr = spec.learning_rate
                * 0.5
                * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos());
            model = optim.step(lr, model, grads);
            loss_sum += value as f64;
            step += 1;
            harness_spec::fault::point("pretrain-step");
            events(TrainEvent::PretrainStep {
                step,
                total,
                loss: value,
            });
        }
        events(TrainEvent::PretrainEpoch {
            epoch: epoch + 1,
            epochs: spec.epochs,
            loss: (loss_sum / steps_per_epoch as f64) as f32,
        });
    }
    let test: Vec<usize> = (0..source.test.len()).collect();
    save_pretrained(&model, out)?;
    let weights_sha256 = Some(weights_sha256(&model));
    let model = harness_model::Network::Transformer(model);
    let test_eval = evaluate(&model, &source.test, &norm, &test, classes);
    Ok(PretrainMeta {
        weights_sha256,
        key: job.key.clone(),
        source: job.source.clone(),
        source_sha256: source.content_sha256.clone(),
        examples: examples.len(),
        epochs: spec.epochs,
        source_test_accuracy: test_eval.accuracy,
        seconds: started.elapsed().as_secs_f64(),
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        files_sha256: None,
    })
}
