//! Networks pre-trained elsewhere: their weight files fetched through the manifest's sources,
//! checked against the recorded SHA256 and against the architecture (every tensor present with
//! its shape, nothing left over), and only then kept in the cache. A cached file is checked
//! against its SHA256 again whenever it is used.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use harness_data::FetchEvent;
use harness_model::efficientnet::{
    EfficientNet, EfficientNetConfig, MbStageConfig, WeightMismatch,
};
use harness_spec::{ArchitectureSpec, EfficientNetShape, Family, NetworkManifest};
use sha2::{Digest, Sha256};

/// A weight file in the cache that fits its manifest: hash and architecture checked.
#[derive(Debug, Clone)]
pub struct VerifiedWeights {
    pub path: PathBuf,
    pub sha256: String,
    /// How it was obtained: `cache`, or the source that delivered it.
    pub origin: String,
}

/// The burn config of a manifest's architecture.
pub fn efficientnet_config(arch: &ArchitectureSpec) -> EfficientNetConfig {
    match arch.family {
        Family::EfficientNetLite => efficientnet_shape_config(&arch.efficientnet(), arch.classes),
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
        .join("weights.pth")
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
    if target.is_file() {
        let bytes =
            std::fs::read(&target).with_context(|| format!("reading {}", target.display()))?;
        if hex::encode(Sha256::digest(&bytes)) == recorded {
            return Ok(VerifiedWeights {
                path: target,
                sha256: recorded,
                origin: "cache".into(),
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
    if let Err(mismatch) = load_weight_file(manifest, staged.path()) {
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
    staged
        .persist(&target)
        .with_context(|| format!("moving the weights into {}", target.display()))?;
    Ok(VerifiedWeights {
        path: target,
        sha256: recorded,
        origin: fetched.source,
    })
}
