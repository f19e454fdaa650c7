//! Reading the experiment files and the manifests, and expanding them into plans.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::Result;
use harness_results::{
    ArmSize, RateViews, ResultRow, ResultStore, best_on_validation, chosen_rates, imprecise,
};
use harness_spec::{
    Cell, CellStatus, Experiment, ExtraSeeds, ManifestSet, MoreSeeds, Plan, expand_with_seeds,
    on_backend,
};

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
        let plan = plan_with_results(&experiment, &manifests, paths)?;
        loaded.push(Loaded { experiment, plan });
    }
    Ok((manifests, loaded))
}

/// The experiment's plan as the rows stored so far complete it: under `[finetune.search]
/// pilot_seeds`, the cells at the rates the pilots chose; under `[matrix.ceiling]`, the cells
/// of each target's ceiling; under `[matrix.more_seeds]`, the seeds its hypotheses' intervals
/// still ask for. `harness run` runs what it holds, loads it
/// again and runs what joined, until nothing does. The same rows always give the same plan.
fn plan_with_results(
    experiment: &Experiment,
    manifests: &ManifestSet,
    paths: &Paths,
) -> Result<Plan> {
    let tag = harness_train::backend().fingerprint_tag();
    let matrix = expand_with_seeds(experiment, manifests, &ExtraSeeds::new())?;
    let store = ResultStore::open(&paths.results, &experiment.name);
    if !grows_from_results(experiment, &matrix) || store.finished().is_empty() {
        return Ok(matrix.for_backend(tag));
    }
    // Only the rows that can be counted: a damaged file is for `harness doctor` to name (and
    // `run`, `report` and `plan` refuse to go on while there is one).
    let rows = store.countable_rows()?.0;
    let by_cell = rows_by_cell(&rows);
    let mut extra = ExtraSeeds::new();
    let mut unseeded = Some(matrix);
    loop {
        let mut plan = match unseeded.take() {
            Some(matrix) => matrix,
            None => expand_with_seeds(experiment, manifests, &extra)?,
        };
        add_chosen_rates(&mut plan, &rows);
        add_ceilings(experiment, &mut plan, &by_cell, tag);
        let plan = plan.for_backend(tag);
        let Some(more) = &experiment.matrix.more_seeds else {
            return Ok(plan);
        };
        if !add_seeds(experiment, more, &plan, &by_cell, &mut extra)? {
            return Ok(plan);
        }
    }
}

/// Whether the experiment's plan can grow from its rows: learning rates chosen on pilot
/// seeds, a ceiling, more seeds. `harness run` loads such a plan again after each round.
pub fn grows_from_results(experiment: &Experiment, plan: &Plan) -> bool {
    experiment.matrix.more_seeds.is_some()
        || experiment.matrix.ceiling.is_some()
        || plan.cells.iter().any(|c| c.rate_choice.is_some())
}

/// Every experiment file and every file it includes, (path, text) in the order read: what a
/// plan was made from.
pub fn file_texts(loaded: &[Loaded]) -> Vec<(PathBuf, String)> {
    (loaded.iter().map(|l| &l.experiment))
        .flat_map(|e| {
            std::iter::once((e.path.clone(), e.text.clone()))
                .chain(e.included.iter().map(|f| (f.path.clone(), f.text.clone())))
        })
        .collect()
}

/// The first file, of `before`'s experiments or of the files they include, that `after` read
/// with other text (or no longer, or newly, includes). `harness run` loads its files again
/// after each round, so an edit made while it runs would change its plan halfway.
pub fn changed_file(before: &[Loaded], after: &[Loaded]) -> Option<PathBuf> {
    changed_text(&file_texts(before), &file_texts(after))
}

/// The first file whose text differs between two readings of the same experiment files (as
/// [`file_texts`] lists them), named as `after` names it, else as `before` does (a file no
/// longer read). Only texts are compared: a submission records its files by absolute path.
pub fn changed_text(before: &[(PathBuf, String)], after: &[(PathBuf, String)]) -> Option<PathBuf> {
    let differs = before.iter().zip(after).find(|(b, a)| b.1 != a.1);
    let extra = || after.get(before.len()).or(before.get(after.len()));
    differs.map(|(_, a)| a).or_else(extra).map(|f| f.0.clone())
}

/// Every loaded experiment's jobs and cells in one plan (shared pre-trainings once).
pub fn merged(loaded: &[Loaded]) -> Plan {
    let mut all = Plan::default();
    for l in loaded {
        all.merge(l.plan.clone());
    }
    all
}

/// Under `[finetune.search] pilot_seeds`: the cells of every seed at the learning rate its
/// arm's pilots chose, for each arm and n_train whose pilots all have a row.
fn add_chosen_rates(plan: &mut Plan, rows: &[ResultRow]) {
    if rows.is_empty() || !plan.cells.iter().any(|c| c.rate_choice.is_some()) {
        return;
    }
    let chosen = chosen_rates(rows);
    plan.add_chosen_rates(|cell| chosen.get(&ArmSize::of_cell(cell)).map(|c| c.rate));
}

/// `[matrix.more_seeds]`: once every cell of `plan` has a row, the next `step` seeds of each
/// (target, n_train) that a hypothesis whose interval is wider than its goal covers, up to
/// `up_to` seeds. Returns whether `extra` grew (never once every cell is not yet finished).
fn add_seeds(
    experiment: &Experiment,
    more: &MoreSeeds,
    plan: &Plan,
    by_cell: &BTreeMap<&str, &ResultRow>,
    extra: &mut ExtraSeeds,
) -> Result<bool> {
    let mut mine = Vec::with_capacity(plan.cells.len());
    for cell in &plan.cells {
        match by_cell.get(cell.fingerprint.as_str()) {
            // The ceiling's rows are no size of the matrix (the report keeps them apart too).
            Some(_) if experiment.ceiling_n_train(&cell.target) == Some(cell.n_train) => {}
            Some(&r) => mine.push(r.clone()),
            None => return Ok(false),
        }
    }
    let wide = imprecise(&mine, &experiment.hypotheses, |margin| more.goal(margin))?;
    let sizes: BTreeSet<(String, usize)> = (wide.iter())
        .flat_map(|w| w.sizes.iter().map(|&n| (w.target.clone(), n as usize)))
        .collect();
    let available = experiment.extra_seeds();
    let mut grew = false;
    for size in sizes {
        let added = extra.entry(size).or_default();
        let next: Vec<u64> = (available.iter().skip(added.len()).take(more.step))
            .copied()
            .collect();
        grew |= !next.is_empty();
        added.extend(next);
    }
    extra.retain(|_, seeds| !seeds.is_empty());
    Ok(grew)
}

/// Each cell's row by fingerprint: its successful one where it has one.
fn rows_by_cell(rows: &[ResultRow]) -> BTreeMap<&str, &ResultRow> {
    let mut by_cell: BTreeMap<&str, &ResultRow> = BTreeMap::new();
    for r in rows {
        let slot = by_cell.entry(r.fingerprint.as_str()).or_insert(r);
        if r.status == CellStatus::Ok {
            *slot = r;
        }
    }
    by_cell
}

/// `[matrix.ceiling]`: for each target with a ceiling larger than its largest n_train, once
/// every cell of the matrix's own seeds at that n_train has a row, the cells of the arm best on
/// validation there ([`harness_results::best_arm`]), at the rate it trains at, on the ceiling's seeds and size.
/// Only the matrix's own seeds choose, so seeds that `[matrix.more_seeds]` adds later never
/// change the arm. `tag` names the backend whose fingerprints the rows carry.
fn add_ceilings(
    experiment: &Experiment,
    plan: &mut Plan,
    by_cell: &BTreeMap<&str, &ResultRow>,
    tag: Option<&str>,
) {
    let own: BTreeSet<u64> = experiment.matrix.seeds.iter().copied().collect();
    let mut ceilings = Vec::new();
    for target in &experiment.matrix.targets {
        let target = target.get_ref();
        let Some(n) = experiment.ceiling_n_train(target) else {
            continue;
        };
        let sizes = experiment.matrix.n_train_of(target);
        let largest = sizes.iter().map(|n| *n.get_ref()).max().unwrap_or(0);
        let at_largest: Vec<&Cell> = (plan.cells.iter())
            .filter(|c| c.target == *target && c.n_train == largest && own.contains(&c.seed))
            .collect();
        let rows: Option<Vec<ResultRow>> = (at_largest.iter())
            .map(|c| (by_cell.get(on_backend(&c.fingerprint, tag).as_str())).map(|&r| r.clone()))
            .collect();
        let Some(rows) = rows else {
            continue;
        };
        // Each arm at its chosen rate: the rows the choice reads, and so the cells to copy.
        let read = RateViews::read(&rows);
        let Some(best) = best_on_validation(&read, target, largest as i64) else {
            continue;
        };
        let read: BTreeSet<&str> = read.iter().map(|r| r.fingerprint.as_str()).collect();
        for &seed in experiment.ceiling_seeds() {
            let template = at_largest.iter().find(|c| {
                c.seed == seed
                    && ArmSize::of_cell(c) == best
                    && read.contains(on_backend(&c.fingerprint, tag).as_str())
            });
            ceilings.extend(template.map(|c| c.at_n_train(n)));
        }
    }
    plan.cells.extend(ceilings);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MATRIX: &str = "include = [\"base.toml\"]\n\n[matrix]\ntargets = [\"mnist\"]\nsources = [\"scratch\"]\nn_train = [50]\noptions = [1]\nseeds = [0]\n";

    fn loaded(path: &std::path::Path) -> Loaded {
        Loaded {
            experiment: Experiment::load(path).unwrap(),
            plan: Plan::default(),
        }
    }

    #[test]
    fn an_edit_to_a_file_or_its_include_while_running_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (file, base) = (dir.path().join("exp.toml"), dir.path().join("base.toml"));
        std::fs::write(&base, "[finetune]\nepochs = 3\n").unwrap();
        std::fs::write(&file, MATRIX).unwrap();
        let before = [loaded(&file)];
        assert_eq!(changed_file(&before, &[loaded(&file)]), None);

        std::fs::write(&base, "[finetune]\nepochs = 4\n").unwrap();
        let after = [loaded(&file)];
        assert_eq!(after[0].experiment.finetune.epochs, 4);
        assert_eq!(changed_file(&before, &after), Some(base.clone()));

        // A comment is an edit too: the check compares text, not settings.
        std::fs::write(&file, format!("# one seed\n{MATRIX}")).unwrap();
        assert_eq!(changed_file(&after, &[loaded(&file)]), Some(file));
    }
}
