//! Networks pre-trained elsewhere: their weight files fetched through the manifest's sources,
//! checked against the recorded SHA256 and against the architecture (every tensor present with
//! its shape, nothing left over), and only then kept in the cache. A cached file is checked
//! against its SHA256 again whenever it is used.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use harness_data::FetchEvent;
use harness_model::bert::BertConfig;
use harness_model::crepe::CrepeConfig;
use harness_model::efficientnet::{
    EfficientNet, EfficientNetConfig, MbStageConfig, WeightMismatch,
};
use harness_spec::{ArchitectureSpec, BertShape, EfficientNetShape, Family, NetworkManifest};
use sha2::{Digest, Sha256};

/// A weight file in the cache that fits its manifest: hash and architecture checked.
#[derive(Debug, Clone)]
pub struct VerifiedWeights {
    pub path: PathBuf,
    pub sha256: String,
    /// How it was obtained: `cache`, or the source that delivered it.
    pub origin: String,
    /// A text network's own `tokenizer.json`, its SHA256 checked, beside the weights.
    pub tokenizer: Option<PathBuf>,
}

/// The burn config of a manifest's EfficientNet-Lite architecture.
pub fn efficientnet_config(arch: &ArchitectureSpec) -> EfficientNetConfig {
    efficientnet_shape_config(&arch.efficientnet(), arch.classes)
}

/// The burn config of a manifest's BERT architecture; an encoder published without an output
/// layer gets a 2-way one, which no file fills and transfer replaces.
pub fn bert_config(arch: &ArchitectureSpec) -> BertConfig {
    bert_shape_config(&arch.bert(), arch.classes.max(2))
}

/// The burn config of a BERT shape with a `classes`-way output layer.
pub fn bert_shape_config(s: &BertShape, classes: usize) -> BertConfig {
    BertConfig::new(s.clone(), classes)
}

/// Whether the weight file at `path` fits `manifest`'s architecture: every tensor there with
/// its shape, nothing left over; or the first tensor that does not fit.
fn check_weight_file(manifest: &NetworkManifest, path: &Path) -> Result<(), WeightMismatch> {
    let arch = &manifest.architecture;
    match arch.family {
        Family::EfficientNetLite => load_weight_file(manifest, path).map(drop),
        Family::Bert => bert_config(arch)
            .init_seeded(&Device::flex(), 0)
            .load_safetensors(path)
            .map(drop),
        Family::Crepe => CrepeConfig::new(arch.crepe_channels())
            .with_bins(arch.classes)
            .init_seeded(&Device::flex(), 0)
            .load_pytorch(path)
            .map(drop),
    }
}

/// The burn config of an EfficientNet-Lite shape with a `classes`-way output layer.
pub fn efficientnet_shape_config(shape: &EfficientNetShape, classes: usize) -> EfficientNetConfig {
    let stages = shape
        .stages
        .iter()
        .map(|&[repeats, kernel, stride, expand, out]| {
            MbStageConfig::new(repeats, kernel, stride, expand, out)
        })
        .collect();
    EfficientNetConfig::new(shape.stem, stages, shape.head, classes)
}

/// The network of `manifest` with the weight file at `path`, or the first tensor that does not fit.
fn load_weight_file(
    manifest: &NetworkManifest,
    path: &Path,
) -> Result<EfficientNet, WeightMismatch> {
    efficientnet_config(&manifest.architecture)
        .init_seeded(&Device::flex(), 0)
        .load_pytorch(path)
}

/// Where the verified weight file of `manifest` is kept under the cache root.
fn weights_path(cache_root: &Path, manifest: &NetworkManifest) -> PathBuf {
    cache_root
        .join("networks")
        .join(format!(
            "{}-{}",
            manifest.id,
            &manifest.weights_sha256()[..16]
        ))
        .join(format!("weights.{}", manifest.weights.format.extension()))
}

/// The verified weight file of `manifest`: from the cache when it is there and its SHA256 is
/// still the recorded one, otherwise fetched through the manifest's sources, checked against
/// the architecture and moved into the cache. On any failure nothing enters the cache.
pub fn ensure_weights(
    manifest: &NetworkManifest,
    cache_root: &Path,
    events: &mut dyn FnMut(FetchEvent),
) -> Result<VerifiedWeights> {
    let target = weights_path(cache_root, manifest);
    let recorded = manifest.weights_sha256().to_ascii_lowercase();
    let tokenizer_target = manifest.text_input.as_ref().map(|t| {
        (
            target.with_file_name("tokenizer.json"),
            t.tokenizer_sha256.get_ref().to_ascii_lowercase(),
        )
    });
    let sha_of = |path: &Path| -> Result<String> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(hex::encode(Sha256::digest(&bytes)))
    };
    if target.is_file() {
        let tokenizer_ok = match &tokenizer_target {
            Some((path, sha)) => path.is_file() && sha_of(path)? == *sha,
            None => true,
        };
        if sha_of(&target)? == recorded && tokenizer_ok {
            return Ok(VerifiedWeights {
                path: target,
                sha256: recorded,
                origin: "cache".into(),
                tokenizer: tokenizer_target.map(|(path, _)| path),
            });
        }
        // Damaged in the cache: fetched again below, never used.
        std::fs::remove_file(&target)
            .with_context(|| format!("removing the damaged {}", target.display()))?;
    }
    let fetched = harness_data::fetch_weights(manifest, &cache_root.join("downloads"), events)?;
    let staging_dir = cache_root.join("networks");
    std::fs::create_dir_all(&staging_dir)?;
    let mut staged = tempfile::Builder::new()
        .prefix(".weights-")
        .tempfile_in(&staging_dir)?;
    std::io::Write::write_all(&mut staged, &fetched.bytes)?;
    if let Err(mismatch) = check_weight_file(manifest, staged.path()) {
        // `staged` is removed when dropped: nothing enters the cache.
        bail!(
            "{}: the weight file `{}` from {} has the recorded sha256 but does not fit the declared architecture {}: {mismatch}; nothing was cached",
            manifest.path.display(),
            fetched.member,
            fetched.source,
            manifest.architecture.name()
        );
    }
    std::fs::create_dir_all(target.parent().context("weights path has a folder")?)?;
    std::fs::set_permissions(
        staged.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )?;
    // The tokenizer first: the weights file's presence is what marks the entry complete.
    if let (Some((path, _)), Some(bytes)) = (&tokenizer_target, &fetched.tokenizer) {
        let mut tmp = tempfile::Builder::new()
            .prefix(".tokenizer-")
            .tempfile_in(&staging_dir)?;
        std::io::Write::write_all(&mut tmp, bytes)?;
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )?;
        tmp.persist(path)
            .with_context(|| format!("moving the tokenizer into {}", path.display()))?;
    }
    staged
        .persist(&target)
        .with_context(|| format!("moving the weights into {}", target.display()))?;
    Ok(VerifiedWeights {
        path: target,
        sha256: recorded,
        origin: fetched.source,
        tokenizer: tokenizer_target.map(|(path, _)| path),
    })
}
