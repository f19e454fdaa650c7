//! What pre-training jobs and cells need, loaded on first use and then kept: decoded datasets,
//! tokenizers, token-id datasets, checkpoints and the frozen features of Option 1. `harness run`
//! keeps one in its own process with `--jobs 1`; with more jobs, each worker process has its own.

use std::collections::{BTreeSet, HashMap};

use anyhow::{Context, Result};
use harness_data::{
    DataCache, Dataset, FetchEvent, Inputs, PAD_ID, PlannedTokenizer, Tokenizer, adapt_images,
    adapt_log_mel_images, adapt_texts, encode_dataset, plan_tokenizer, prepare, prepare_waveforms,
};
use harness_results::{ResultRow, ResultStore};
use harness_spec::{
    Cell, InputAdapter, ManifestSet, NetworkArm, NetworkBody, NetworkManifest, Plan, PretrainJob,
    TokenizerPlan,
};
use harness_train::{
    CachedCheckpoint, CellInputs, FeatureCache, PretrainOutcome, RowContext, Source, Timing,
    TrainEvent, VerifiedWeights, check_pretrained, ensure_pretrained, result_row, run_cell_cached,
    run_floor,
};

use crate::progress::Display;
use crate::provenance;

/// A checkpoint ready for cells, with the SHA256 of its files.
pub type Pretrained = (PretrainOutcome, Option<String>);

/// Loads what work needs on first use and keeps it for the next task.
pub struct Workbench<'a> {
    manifests: &'a ManifestSet,
    all: &'a Plan,
    cache: DataCache,
    display: &'a Display,
    raw: HashMap<String, Dataset>,
    tokenizers: HashMap<String, (Tokenizer, String)>,
    encoded: HashMap<(String, String), Dataset>,
    checkpoints: HashMap<String, Pretrained>,
    /// Targets through a network's input adapter, by (dataset id, adapter label).
    adapted: HashMap<(String, String), Dataset>,
    /// Verified weight files of networks pre-trained elsewhere, by network id.
    weights: HashMap<String, VerifiedWeights>,
    features: FeatureCache,
    context: Option<RowContext>,
}

/// The dataset a cell or a pre-training job sees: text as token ids, the rest as decoded.
fn dataset_in<'d>(
    raw: &'d HashMap<String, Dataset>,
    encoded: &'d HashMap<(String, String), Dataset>,
    id: &str,
    tokenizer: &Option<String>,
) -> &'d Dataset {
    match tokenizer {
        Some(key) => &encoded[&(id.to_string(), key.clone())],
        None => &raw[id],
    }
}

impl<'a> Workbench<'a> {
    pub fn new(
        manifests: &'a ManifestSet,
        all: &'a Plan,
        cache: DataCache,
        display: &'a Display,
    ) -> Workbench<'a> {
        Workbench {
            manifests,
            all,
            cache,
            display,
            raw: HashMap::new(),
            tokenizers: HashMap::new(),
            encoded: HashMap::new(),
            checkpoints: HashMap::new(),
            adapted: HashMap::new(),
            weights: HashMap::new(),
            features: FeatureCache::default(),
            context: None,
        }
    }

    /// Fetches, verifies and decodes the datasets of `cells` and of the pre-training jobs
    /// `keys`, learns (or reads) their tokenizers and encodes their text; each thing once.
    pub fn prepare(&mut self, cells: &[&Cell], keys: &BTreeSet<String>) -> Result<()> {
        let all = self.all;
        let jobs: Vec<&PretrainJob> = keys.iter().filter_map(|k| all.job(k)).collect();
        let mut ids: BTreeSet<String> = cells.iter().map(|c| c.target.clone()).collect();
        ids.extend(jobs.iter().map(|j| j.source.clone()));
        // Text datasets, each with the tokenizer that encodes it.
        let mut text_uses: BTreeSet<(String, String)> = cells
            .iter()
            .filter_map(|c| Some((c.target.clone(), c.tokenizer.clone()?)))
            .collect();
        text_uses.extend(
            jobs.iter()
                .filter_map(|j| Some((j.source.clone(), j.tokenizer.clone()?))),
        );
        text_uses.retain(|u| !self.encoded.contains_key(u));
        let tokenizer_keys: BTreeSet<&String> = text_uses
            .iter()
            .map(|(_, k)| k)
            .filter(|k| !self.tokenizers.contains_key(*k))
            .collect();
        ids.extend(
            tokenizer_keys
                .iter()
                .filter_map(|k| all.tokenizer(k)?.corpus.clone()),
        );
        ids.retain(|id| !self.raw.contains_key(id));

        let fetched = fetch_datasets(&ids, self.manifests, &self.cache, self.display)?;
        self.raw.extend(fetched);
        let tokenizers =
            tokenise_datasets(&tokenizer_keys, all, &self.raw, &self.cache, self.display)?;
        self.tokenizers.extend(tokenizers);
        for (id, key) in text_uses {
            let (tokenizer, _) = &self.tokenizers[&key];
            let plan = all.tokenizer(&key).context("tokenizer of a planned key")?;
            let dataset = encode_dataset(&self.raw[&id], tokenizer, plan)
                .with_context(|| format!("tokenising `{id}`"))?;
            self.display.line(token_summary(&dataset, plan));
            self.encoded.insert((id, key), dataset);
        }
        Ok(())
    }

    /// The hash of the decoded content of each dataset of `ids`, fetched and decoded if it is
    /// not loaded yet (and then kept for the work that follows).
    pub fn content_hashes(&mut self, ids: &BTreeSet<String>) -> Result<HashMap<String, String>> {
        let missing: BTreeSet<String> = ids
            .iter()
            .filter(|id| !self.raw.contains_key(*id))
            .cloned()
            .collect();
        let fetched = fetch_datasets(&missing, self.manifests, &self.cache, self.display)?;
        self.raw.extend(fetched);
        Ok(ids
            .iter()
            .map(|id| (id.clone(), self.raw[id].content_sha256.clone()))
            .collect())
    }

    /// The dataset a cell or job sees (prepared before): text as token ids.
    pub fn dataset(&self, id: &str, tokenizer: &Option<String>) -> &Dataset {
        dataset_in(&self.raw, &self.encoded, id, tokenizer)
    }

    /// How large a stratified subset of dataset `id`'s pool can be (prepared before), with the
    /// name of the class that bounds it.
    pub fn stratified_limit(&self, id: &str) -> (harness_data::StratifiedLimit, &str) {
        let dataset = &self.raw[id];
        let limit =
            harness_data::largest_stratified_n(dataset.train.labels(), dataset.classes.len());
        let class = dataset
            .classes
            .get(limit.smallest_class)
            .map_or("", String::as_str);
        (limit, class)
    }

    /// Drops the datasets and features held so far (they are loaded again when needed).
    pub fn release_data(&mut self) {
        self.raw.clear();
        self.encoded.clear();
        self.adapted.clear();
        self.features = FeatureCache::default();
    }

    /// The checkpoint of the pre-training job `key`: from the cache, or trained now on its
    /// source (which is loaded first).
    pub fn checkpoint(
        &mut self,
        key: &str,
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<&Pretrained> {
        if !self.checkpoints.contains_key(key) {
            let all = self.all;
            let job = all.job(key).context("job of a planned key")?;
            let outcome = match check_pretrained(&self.cache.root, key) {
                CachedCheckpoint::Verified(outcome) => outcome,
                other => {
                    if let CachedCheckpoint::Damaged(why) = other {
                        self.display.line(format!(
                            "checkpoint of {} does not verify, training it again: {why}",
                            job.source
                        ));
                    }
                    self.prepare(&[], &BTreeSet::from([key.to_string()]))?;
                    let source = dataset_in(&self.raw, &self.encoded, &job.source, &job.tokenizer);
                    ensure_pretrained(job, source, &self.cache.root, on_event)
                        .with_context(|| format!("pre-training on `{}`", job.source))?
                }
            };
            // The weights' hash (files verified above), the same whenever the job is trained
            // again on this machine: rows record it.
            let sha = outcome.meta.weights_sha256.clone();
            self.checkpoints.insert(key.to_string(), (outcome, sha));
        }
        Ok(&self.checkpoints[key])
    }

    /// The network's verified weight file (fetched and checked once) and the target through
    /// the cell's network adapter (once per dataset and adapter): images resized, documents
    /// through the network's own tokenizer, sound as waveforms at the network's sample rate.
    fn prepare_network(&mut self, cell: &Cell, arm: &NetworkArm) -> Result<()> {
        if let Some(id) = &arm.weights
            && !self.weights.contains_key(id)
        {
            let weights = self.network_weights(id)?;
            anyhow::ensure!(
                Some(&weights.sha256) == arm.weights_sha256.as_ref(),
                "network `{id}`: the cached weights are not the ones the cell was planned with"
            );
            self.weights.insert(id.clone(), weights);
        }
        let key = (cell.target.clone(), arm.adapter_label());
        if !self.adapted.contains_key(&key) {
            let adapted = self.adapted_target(cell, arm)?;
            self.adapted.insert(key, adapted);
        }
        Ok(())
    }

    /// The cell's target through `arm`'s input adapter, with a line saying what was done.
    fn adapted_target(&mut self, cell: &Cell, arm: &NetworkArm) -> Result<Dataset> {
        Ok(match &arm.body {
            NetworkBody::Image {
                input:
                    InputAdapter {
                        side,
                        log_mel: Some(log_mel),
                        ..
                    },
                ..
            } => {
                self.display.line(format!(
                    "dataset {}: log-mel spectrograms as {side}×{side} grey images for {} ({} dB below each clip's maximum onto 0–255, high bands at the top)",
                    cell.target, arm.architecture, log_mel.top_db
                ));
                adapt_log_mel_images(&self.raw[&cell.target], *side, log_mel.top_db)?
            }
            NetworkBody::Image { input, .. } => {
                self.display.line(format!(
                    "dataset {}: images resized to {side}×{side} for {} (grey copied to {} channels, scaled (x − {}) / {})",
                    cell.target,
                    arm.architecture,
                    input.channels,
                    input.offset,
                    input.scale,
                    side = input.side,
                ));
                adapt_images(&self.raw[&cell.target], input.side)?
            }
            NetworkBody::Text { input, .. } => {
                let tokenizer = self.network_tokenizer(arm, &input.tokenizer_sha256)?;
                let adapted = adapt_texts(&self.raw[&cell.target], &tokenizer, input.max_tokens)?;
                self.display.line(format!(
                    "dataset {}: documents through the tokenizer of {} ({} tokens at most, [CLS] and [SEP] included)",
                    cell.target, arm.architecture, input.max_tokens
                ));
                adapted
            }
            NetworkBody::Audio { input, .. } => {
                let adapted = self.waveforms(&cell.target, input.sample_rate)?;
                self.display.line(format!(
                    "dataset {}: clips as {} Hz waveforms for {} (frames of {} samples every {})",
                    cell.target, input.sample_rate, arm.architecture, input.window, input.hop
                ));
                adapted
            }
            // A fresh stem reads the target exactly as the harness's own Transformer does.
            NetworkBody::Patches { stem, .. } => {
                self.display.line(format!(
                    "dataset {}: {} patches of {}×{} through a fresh stem into the layers of {}",
                    cell.target,
                    stem.tokens(),
                    stem.patch_rows,
                    stem.patch_cols,
                    arm.architecture
                ));
                self.raw[&cell.target].clone()
            }
        })
    }

    /// Audio dataset `id` as waveforms at `sample_rate`, in the order of its spectrograms.
    fn waveforms(&self, id: &str, sample_rate: u32) -> Result<Dataset> {
        let raw = &self.raw[id];
        let manifest = self
            .manifests
            .get(id)
            .with_context(|| format!("dataset `{id}` has no manifest"))?;
        let adapted = prepare_waveforms(
            manifest,
            &self.cache,
            sample_rate,
            &raw.content_sha256,
            &mut |_| {},
        )?;
        anyhow::ensure!(
            adapted.train.labels() == raw.train.labels()
                && adapted.test.labels() == raw.test.labels(),
            "dataset `{id}`: its waveforms do not come in the order of its spectrograms",
        );
        Ok(adapted)
    }

    /// Fetches and verifies, each once, the weight files of the networks `cells` load and, for
    /// a text network's scratch arm, those of the network whose tokenizer it reads: what a
    /// cell would otherwise fetch when it starts (`harness submit` does it before submitting,
    /// as compute nodes often have no network).
    pub fn prepare_networks(&mut self, cells: &[&Cell]) -> Result<()> {
        for cell in cells {
            let Some(arm) = &cell.network else {
                continue;
            };
            if let Some(id) = &arm.weights
                && !self.weights.contains_key(id)
            {
                let weights = self.network_weights(id)?;
                self.weights.insert(id.clone(), weights);
            }
            if let NetworkBody::Text { input, .. } = &arm.body {
                self.network_tokenizer(arm, &input.tokenizer_sha256)?;
            }
        }
        Ok(())
    }

    /// The verified weights of network `id`, fetched if they are not in the cache.
    fn network_weights(&self, id: &str) -> Result<VerifiedWeights> {
        let manifest = self
            .manifests
            .network(id)
            .with_context(|| format!("network `{id}` has no manifest"))?;
        fetch_network(manifest, &self.cache, self.display)
    }

    /// The `tokenizer.json` of a text network arm: that of the network it loads or, for the
    /// scratch arm, of the network whose tokenizer has this SHA256 (its files fetched and
    /// checked once).
    fn network_tokenizer(&mut self, arm: &NetworkArm, sha256: &str) -> Result<std::path::PathBuf> {
        let id = match &arm.weights {
            Some(id) => id.clone(),
            None => self
                .manifests
                .networks
                .values()
                .find(|n| {
                    n.text_input
                        .as_ref()
                        .is_some_and(|t| t.tokenizer_sha256.get_ref().eq_ignore_ascii_case(sha256))
                })
                .with_context(|| format!("no network manifest declares the tokenizer {sha256}"))?
                .id
                .clone(),
        };
        if !self.weights.contains_key(&id) {
            let weights = self.network_weights(&id)?;
            self.weights.insert(id.clone(), weights);
        }
        self.weights[&id]
            .tokenizer
            .clone()
            .with_context(|| format!("network `{id}` came without its tokenizer"))
    }

    /// Runs `cell` (loading what it needs first) and writes its row into `store`. A cell that
    /// fails still gives a row, with status `failed` and the reason.
    pub fn run_cell(
        &mut self,
        cell: &Cell,
        store: &ResultStore,
        on_event: &mut dyn FnMut(TrainEvent),
    ) -> Result<ResultRow> {
        self.prepare(&[cell], &BTreeSet::new())?;
        if let Some(key) = &cell.pretrain_key {
            self.checkpoint(key, &mut |_| {})?;
        }
        if let Some(arm) = &cell.network {
            self.prepare_network(cell, arm)?;
        }
        let context = self.context.get_or_insert_with(provenance::row_context);
        let started_at = provenance::now();
        let target = match &cell.network {
            Some(arm) => &self.adapted[&(cell.target.clone(), arm.adapter_label())],
            None => dataset_in(&self.raw, &self.encoded, &cell.target, &cell.tokenizer),
        };
        let pretrained = cell.pretrain_key.as_ref().map(|k| &self.checkpoints[k]);
        let weights = cell
            .network
            .as_ref()
            .and_then(|arm| arm.weights.as_ref())
            .map(|id| &self.weights[id]);
        let source = match (pretrained, weights) {
            (Some(p), _) => Source::Checkpoint(&p.0.checkpoint),
            (None, Some(w)) => Source::Network(&w.path),
            (None, None) => Source::Scratch,
        };
        let outcome = if cell.is_floor() {
            run_floor(cell, target)
        } else {
            run_cell_cached(cell, target, source, &mut self.features, on_event).map(|o| o.measured)
        };
        let tokenizer_sha = match cell.network.as_ref().map(|arm| &arm.body) {
            Some(NetworkBody::Text { input, .. }) => Some(input.tokenizer_sha256.clone()),
            _ => cell
                .tokenizer
                .as_ref()
                .map(|k| self.tokenizers[k].1.clone()),
        };
        let job = cell.pretrain_key.as_ref().and_then(|k| self.all.job(k));
        let inputs = CellInputs {
            cell,
            job,
            target,
            pretrained,
            weights,
            tokenizer_sha256: tokenizer_sha,
        };
        let timing = Timing {
            started_at,
            finished_at: provenance::now(),
        };
        let row = result_row(
            &inputs,
            outcome.as_ref().map_err(|e| format!("{e:#}")),
            context,
            timing,
        );
        store
            .write(&row)
            .with_context(|| format!("writing a result row into {}", store.dir.display()))?;
        harness_spec::fault::point("between-cells");
        Ok(row)
    }
}

/// The verified weight file of a network manifest, fetched if it is not in the cache.
pub fn fetch_network(
    manifest: &NetworkManifest,
    cache: &DataCache,
    display: &Display,
) -> Result<VerifiedWeights> {
    let id = &manifest.id;
    let spinner = display.spinner(format!("network {id}: looking in the cache"));
    let mut on_event = |event: FetchEvent| match event {
        FetchEvent::Trying { source, .. } => {
            spinner.set_message(format!("network {id}: fetching through {source}"))
        }
        FetchEvent::Failed { source, reason, .. } => {
            display.line(format!("  {id}: {source} failed: {reason}"))
        }
        FetchEvent::Fetched { source, .. } => spinner.set_message(format!(
            "network {id}: checking what {source} delivered against the architecture"
        )),
        FetchEvent::Rendering { .. } | FetchEvent::Duplicates { .. } => {}
    };
    let weights = harness_train::ensure_weights(manifest, &cache.root, &mut on_event);
    spinner.finish_and_clear();
    weights
}

pub fn fetch_datasets(
    ids: &BTreeSet<String>,
    manifests: &ManifestSet,
    cache: &DataCache,
    display: &Display,
) -> Result<HashMap<String, Dataset>> {
    let mut out = HashMap::new();
    for id in ids {
        let manifest = manifests.get(id).context("dataset id checked at load")?;
        let spinner = display.spinner(format!("dataset {id}: looking in the cache"));
        let mut on_event = |event: FetchEvent| match event {
            FetchEvent::Trying { source, .. } => {
                spinner.set_message(format!("dataset {id}: fetching through {source}"))
            }
            FetchEvent::Failed { source, reason, .. } => {
                display.line(format!("  {id}: {source} failed: {reason}"))
            }
            FetchEvent::Fetched { source, .. } => {
                spinner.set_message(format!("dataset {id}: decoding what {source} delivered"))
            }
            FetchEvent::Rendering { done, total, .. } => {
                spinner.set_message(format!("dataset {id}: rendering clip {done} of {total}"))
            }
            FetchEvent::Duplicates { groups, .. } => {
                let clips: usize = groups.iter().map(Vec::len).sum();
                display.line(format!(
                    "  {id}: dropped {clips} clips, {} sets of byte-identical files (every copy):",
                    groups.len()
                ));
                for group in groups {
                    display.line(format!("    {}", group.join(" = ")));
                }
            }
        };
        let dataset = prepare(manifest, cache, &mut on_event);
        spinner.finish_and_clear();
        let dataset = dataset?;
        display.line(format!(
            "dataset {id}: {} training-pool + {} test examples from {} (sha256 {})",
            dataset.train.len(),
            dataset.test.len(),
            dataset.origin,
            &dataset.content_sha256[..16]
        ));
        out.insert(id.clone(), dataset);
    }
    Ok(out)
}

/// Each tokenizer the pending work needs, trained on its corpus (or read from the cache, or
/// the user's file): key → (tokenizer, SHA256 of its `tokenizer.json`).
fn tokenise_datasets(
    keys: &BTreeSet<&String>,
    all: &Plan,
    raw: &HashMap<String, Dataset>,
    cache: &DataCache,
    display: &Display,
) -> Result<HashMap<String, (Tokenizer, String)>> {
    let mut out = HashMap::new();
    for &key in keys {
        let plan = all.tokenizer(key).context("tokenizer of a planned key")?;
        let corpus = plan.corpus.as_ref().map(|id| &raw[id]);
        let spinner = corpus.filter(|_| plan.file.is_none()).map(|c| {
            display.spinner(format!(
                "tokenizer: learning a {}-token vocabulary from {}",
                plan.text.vocab_size, c.id
            ))
        });
        let planned = plan_tokenizer(plan, corpus, &cache.root);
        if let Some(spinner) = spinner {
            spinner.finish_and_clear();
        }
        let PlannedTokenizer {
            tokenizer,
            sha256: sha,
            origin,
        } = planned?;
        display.line(format!(
            "tokenizer {}: {} tokens, {origin}, sha256 {}",
            &key[..16],
            tokenizer.get_vocab_size(true),
            &sha[..16.min(sha.len())]
        ));
        out.insert(key.clone(), (tokenizer, sha));
    }
    Ok(out)
}

/// One line on how documents fit `max_tokens`: the mean length and the share that is cut.
fn token_summary(dataset: &Dataset, plan: &TokenizerPlan) -> String {
    let Inputs::Tokens(t) = &dataset.train else {
        return String::new();
    };
    let n = t.labels.len().max(1);
    let lengths: Vec<usize> = (0..t.labels.len())
        .map(|i| t.example(i).iter().filter(|&&id| id != PAD_ID).count())
        .collect();
    let full = lengths.iter().filter(|&&l| l == t.tokens).count();
    format!(
        "dataset {}: tokenised to {} ids per document: {:.0} tokens on average before padding, {:.0}% of documents fill all {} (and may be cut)",
        dataset.id,
        plan.text.max_tokens,
        lengths.iter().sum::<usize>() as f64 / n as f64,
        100.0 * full as f64 / n as f64,
        t.tokens
    )
}
