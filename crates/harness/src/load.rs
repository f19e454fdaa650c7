//! Reading the experiment files and the manifests, and expanding them into plans.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use harness_results::{ArmSize, ResultStore, chosen_rates};
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
        let mut plan = expand(&experiment, &manifests)?;
        add_chosen_rates(&experiment, &mut plan, paths)?;
        let plan = plan.for_backend(harness_train::backend().fingerprint_tag());
        loaded.push(Loaded { experiment, plan });
    }
    Ok((manifests, loaded))
}

/// Under `[finetune.search] pilot_seeds`: the cells of every seed at the learning rate its
/// arm's pilots chose, for each arm and n_train whose pilots all have a row in the store
/// (`harness run` runs the pilots, then loads again and runs these).
fn add_chosen_rates(experiment: &Experiment, plan: &mut Plan, paths: &Paths) -> Result<()> {
    if !plan.cells.iter().any(|c| c.rate_choice.is_some()) {
        return Ok(());
    }
    let store = ResultStore::open(&paths.results, &experiment.name);
    if store.finished().is_empty() {
        return Ok(());
    }
    let chosen = chosen_rates(&store.rows()?);
    plan.add_chosen_rates(|cell| {
        let arm = ArmSize {
            target: cell.target.clone(),
            arm: cell.arm(),
            option: i64::from(cell.option.number()),
            n_train: cell.n_train as i64,
        };
        chosen.get(&arm).map(|c| c.rate)
    });
    Ok(())
}
