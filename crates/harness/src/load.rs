//! Reading the experiment files and the manifests, and expanding them into plans.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use harness_spec::{Experiment, ManifestSet, Plan, expand};

use crate::Paths;

/// An experiment file with its expanded plan.
pub struct Loaded {
    pub experiment: Experiment,
    pub plan: Plan,
}

/// Reads the manifests and every experiment file, and expands them; any error stops here.
pub fn load(files: &[PathBuf], paths: &Paths) -> Result<(ManifestSet, Vec<Loaded>)> {
    let manifests = ManifestSet::load_dir(&paths.manifests)?;
    let mut loaded = Vec::new();
    let mut names = BTreeMap::new();
    for file in files {
        let experiment = Experiment::load(file)?;
        if let Some(other) = names.insert(experiment.name.clone(), file.clone()) {
            anyhow::bail!(harness_spec::SpecError::new(
                file,
                format!(
                    "experiment name `{}` is also used by {}; names pick the results folder, so they must differ",
                    experiment.name,
                    other.display()
                )
            ));
        }
        let plan = expand(&experiment, &manifests)?
            .for_backend(harness_train::backend().fingerprint_tag());
        loaded.push(Loaded { experiment, plan });
    }
    Ok((manifests, loaded))
}
