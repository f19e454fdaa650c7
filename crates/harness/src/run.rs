//! The commands: load and validate everything first, then fetch data, pre-train, run cells and
//! write rows and reports, in that order, so that bad input never writes a result.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use harness_data::{
    DataCache, Dataset, FetchEvent, Inputs, PAD_ID, TextNormalisation, Tokenizer, TokenizerSpec,
    ensure_tokenizer, load_tokenizer, prepare, tokenise_texts,
};
use harness_results::{ReportContext, ResultRow, ResultStore, write_report};
use harness_spec::{Cell, Experiment, ManifestSet, Plan, PretrainJob, TokenizerPlan, expand};
use harness_train::{
    CellOutcome, FeatureCache, PretrainOutcome, TrainEvent, ensure_pretrained, run_cell_cached,
};
use serde::{Deserialize, Serialize};

use crate::Paths;
use crate::progress::Display;
use crate::provenance;

/// An experiment file with its expanded plan.
struct Loaded {
    experiment: Experiment,
    plan: Plan,
}

/// Reads the manifests and every experiment file, and expands them; any error stops here.
fn load(files: &[PathBuf], paths: &Paths) -> Result<(ManifestSet, Vec<Loaded>)> {
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
        let plan = expand(&experiment, &manifests)?;
        loaded.push(Loaded { experiment, plan });
    }
    Ok((manifests, loaded))
}

/// Fingerprints of rows that need no rerun (every status but `failed`).
fn finished(store: &ResultStore) -> Result<BTreeSet<String>> {
    if store.finished().is_empty() {
        return Ok(BTreeSet::new());
    }
    Ok(store
        .rows()?
        .into_iter()
        .filter(|r| r.status != "failed")
        .map(|r| r.fingerprint)
        .collect())
}

fn fetch_datasets(
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
        let (tokenizer, sha, what) = if let Some(path) = &plan.file {
            let tokenizer = load_tokenizer(path)?;
            let sha = plan.file_sha256.clone().unwrap_or_default();
            (
                tokenizer,
                sha,
                format!("{} (the experiment's own)", path.display()),
            )
        } else {
            let id = plan
                .corpus
                .as_ref()
                .context("a tokenizer without a corpus or a file")?;
            let corpus = &raw[id];
            let Inputs::Texts(texts) = &corpus.train else {
                anyhow::bail!("`text.corpus` = `{id}` is not a text dataset");
            };
            let normalisation = TextNormalisation::parse(&plan.text.normalise)?;
            let spinner = display.spinner(format!(
                "tokenizer: learning a {}-token vocabulary from {id}",
                plan.text.vocab_size
            ));
            // Normalised only if the tokenizer is not in the cache yet.
            let docs = std::cell::OnceCell::new();
            let cached = ensure_tokenizer(
                &cache.root,
                &format!(
                    "{}:normalise={}",
                    corpus.content_sha256, plan.text.normalise
                ),
                &TokenizerSpec {
                    vocab_size: plan.text.vocab_size,
                    min_frequency: plan.text.min_frequency,
                },
                || {
                    docs.get_or_init(|| {
                        texts
                            .docs
                            .iter()
                            .map(|d| normalisation.apply(d))
                            .collect::<Vec<String>>()
                    })
                    .iter()
                    .map(String::as_str)
                },
            );
            spinner.finish_and_clear();
            let cached = cached.with_context(|| format!("training the tokenizer on `{id}`"))?;
            let what = format!(
                "trained on the {} training-pool documents of {id}{}, {}",
                texts.docs.len(),
                if cached.trained_now { "" } else { " (cached)" },
                cached.path.display()
            );
            (cached.tokenizer, cached.sha256, what)
        };
        display.line(format!(
            "tokenizer {}: {} tokens, {what}, sha256 {}",
            &key[..16],
            tokenizer.get_vocab_size(true),
            &sha[..16.min(sha.len())]
        ));
        out.insert(key.clone(), (tokenizer, sha));
    }
    Ok(out)
}

/// `dataset` with its documents as token ids.
fn encode_dataset(
    dataset: &Dataset,
    tokenizer: &Tokenizer,
    plan: &TokenizerPlan,
) -> Result<Dataset> {
    let normalisation = TextNormalisation::parse(&plan.text.normalise)?;
    let encode = |inputs: &Inputs| -> Result<Inputs> {
        match inputs {
            Inputs::Texts(texts) => Ok(Inputs::Tokens(tokenise_texts(
                tokenizer,
                texts,
                plan.text.max_tokens,
                normalisation,
            )?)),
            _ => anyhow::bail!("`{}` is not a text dataset", dataset.id),
        }
    };
    Ok(Dataset {
        id: dataset.id.clone(),
        classes: dataset.classes.clone(),
        train: encode(&dataset.train)?,
        test: encode(&dataset.test)?,
        content_sha256: dataset.content_sha256.clone(),
        origin: dataset.origin.clone(),
    })
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

#[derive(Serialize, Deserialize)]
struct RunRecord {
    command: String,
    started_at: String,
    finished_at: String,
    wall_seconds: f64,
    cells_run: usize,
    pretrainings_run: usize,
}

fn command_line(files: &[PathBuf]) -> String {
    let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    format!("harness run {}", files.join(" "))
}

/// `harness run`.
pub fn run(
    files: &[PathBuf],
    paths: &Paths,
    threads: Option<usize>,
    write_reports: bool,
) -> Result<()> {
    let started = Instant::now();
    let started_at = provenance::now();
    if let Some(n) = threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("setting the thread count")?;
    }
    let (manifests, loaded) = load(files, paths)?;
    let display = Display::new();
    let cache = DataCache::new(paths.cache_dir());

    // What is left to do, experiment by experiment.
    let mut todo: Vec<(usize, Vec<Cell>)> = Vec::new();
    for (i, l) in loaded.iter().enumerate() {
        let store = ResultStore::open(&paths.results, &l.experiment.name);
        store.clean_partial_writes();
        let done = finished(&store)?;
        let remaining: Vec<Cell> = l
            .plan
            .cells
            .iter()
            .filter(|c| !done.contains(&c.fingerprint))
            .cloned()
            .collect();
        display.line(format!(
            "experiment {}: {} cells, {} finished, {} to run",
            l.experiment.name,
            l.plan.cells.len(),
            l.plan.cells.len() - remaining.len(),
            remaining.len()
        ));
        todo.push((i, remaining));
    }
    let mut all = Plan::default();
    for l in &loaded {
        all.merge(l.plan.clone());
    }
    let pending: Vec<&Cell> = todo.iter().flat_map(|(_, cells)| cells.iter()).collect();
    let keys: BTreeSet<String> = pending
        .iter()
        .filter_map(|c| c.pretrain_key.clone())
        .collect();
    let mut ids: BTreeSet<String> = pending.iter().map(|c| c.target.clone()).collect();
    ids.extend(
        keys.iter()
            .filter_map(|k| all.job(k))
            .map(|j| j.source.clone()),
    );
    // Text datasets, each with the tokenizer that encodes it.
    let mut text_uses: BTreeSet<(String, String)> = pending
        .iter()
        .filter_map(|c| Some((c.target.clone(), c.tokenizer.clone()?)))
        .collect();
    text_uses.extend(
        keys.iter()
            .filter_map(|k| all.job(k))
            .filter_map(|j| Some((j.source.clone(), j.tokenizer.clone()?))),
    );
    let tokenizer_keys: BTreeSet<&String> = text_uses.iter().map(|(_, k)| k).collect();
    ids.extend(
        tokenizer_keys
            .iter()
            .filter_map(|k| all.tokenizer(k)?.corpus.clone()),
    );

    let raw = fetch_datasets(&ids, &manifests, &cache, &display)?;
    let tokenizers = tokenise_datasets(&tokenizer_keys, &all, &raw, &cache, &display)?;
    let mut encoded: HashMap<(String, String), Dataset> = HashMap::new();
    for (id, key) in &text_uses {
        let (tokenizer, _) = &tokenizers[key];
        let plan = all.tokenizer(key).context("tokenizer of a planned key")?;
        let dataset = encode_dataset(&raw[id], tokenizer, plan)
            .with_context(|| format!("tokenising `{id}`"))?;
        display.line(token_summary(&dataset, plan));
        encoded.insert((id.clone(), key.clone()), dataset);
    }
    // The dataset a cell or a pre-training job sees: text as token ids, the rest as decoded.
    let dataset_for = |id: &String, tokenizer: &Option<String>| -> &Dataset {
        match tokenizer {
            Some(key) => &encoded[&(id.clone(), key.clone())],
            None => &raw[id],
        }
    };

    // Pre-training, once per key.
    let mut checkpoints: HashMap<String, (PretrainOutcome, Option<String>)> = HashMap::new();
    let mut pretrainings_run = 0;
    for key in &keys {
        let job = all.job(key).context("job of a planned key")?;
        let source = dataset_for(&job.source, &job.tokenizer);
        let bar = display.bar(0, format!("pre-train {}", job.source));
        let mut on_event = |event: TrainEvent| match event {
            TrainEvent::PretrainStep { step, total, loss } => {
                bar.set_length(total as u64);
                bar.set_position(step as u64);
                if step % 20 == 0 {
                    bar.set_message(format!("loss {loss:.3}"));
                }
            }
            TrainEvent::PretrainEpoch {
                epoch,
                epochs,
                loss,
            } => display.line(format!(
                "  pre-training {}: epoch {epoch}/{epochs}, mean loss {loss:.4}",
                job.source
            )),
            TrainEvent::CellStep { .. } => {}
        };
        let outcome = ensure_pretrained(job, source, &cache.root, &mut on_event)
            .with_context(|| format!("pre-training on `{}`", job.source))?;
        bar.finish_and_clear();
        if outcome.trained_now {
            pretrainings_run += 1;
        }
        display.line(format!(
            "pre-trained {} ({}): {} examples × {} epochs, {:.1}% on its own test set, {:.0} s{}",
            job.source,
            &key[..16],
            outcome.meta.examples,
            outcome.meta.epochs,
            outcome.meta.source_test_accuracy * 100.0,
            outcome.meta.seconds,
            if outcome.trained_now { "" } else { " (cached)" }
        ));
        let sha = provenance::checkpoint_sha256(&[
            &outcome.checkpoint.stem_file(),
            &outcome.checkpoint.backbone_file(),
        ]);
        checkpoints.insert(key.clone(), (outcome, sha));
    }

    // Cells.
    let (git_commit, git_dirty) = provenance::git_state();
    let context = RowContext {
        git_commit,
        git_dirty,
        host: provenance::host(),
        threads: rayon::current_num_threads(),
    };
    let total: usize = pending.len();
    let overall = display.bar(total as u64, "cells");
    let mut cells_run: HashMap<usize, usize> = HashMap::new();
    let mut failures = 0;
    // Frozen Option 1 features, shared by the cells of one checkpoint and target.
    let mut features = FeatureCache::default();
    for (index, cells) in &todo {
        let l = &loaded[*index];
        let store = ResultStore::open(&paths.results, &l.experiment.name);
        for cell in cells {
            let started_at = provenance::now();
            let target = dataset_for(&cell.target, &cell.tokenizer);
            let pretrained = cell.pretrain_key.as_ref().map(|k| &checkpoints[k]);
            let step_bar = display.bar(0, "steps");
            step_bar.set_message(format!(
                "{} ← {} option {} n={} seed {}",
                cell.target, cell.source, cell.option, cell.n_train, cell.seed
            ));
            let mut on_event = |event: TrainEvent| {
                if let TrainEvent::CellStep { step, total } = event {
                    step_bar.set_length(total as u64);
                    step_bar.set_position(step as u64);
                }
            };
            let outcome = run_cell_cached(
                cell,
                target,
                pretrained.map(|p| &p.0.checkpoint),
                &mut features,
                &mut on_event,
            );
            step_bar.finish_and_clear();
            let source = (cell.source != harness_spec::SCRATCH).then(|| &raw[&cell.source]);
            let tokenizer_sha = cell.tokenizer.as_ref().map(|k| tokenizers[k].1.clone());
            let job = cell.pretrain_key.as_ref().and_then(|k| all.job(k));
            let row = make_row(
                cell,
                job,
                target,
                source,
                pretrained,
                outcome.as_ref().map_err(|e| format!("{e:#}")),
                &context,
                started_at,
                tokenizer_sha,
            );
            store
                .write(&row)
                .with_context(|| format!("writing a result row into {}", store.dir.display()))?;
            if row.status == "failed" {
                failures += 1;
            }
            *cells_run.entry(*index).or_default() += 1;
            overall.inc(1);
            display.line(format!(
                "[{}/{}] {} ← {:<14} option {} n={:<5} seed {}: {} test accuracy {:.3} ({:.1} s)",
                overall.position(),
                total,
                cell.target,
                cell.source,
                cell.option,
                cell.n_train,
                cell.seed,
                row.status,
                row.test_accuracy,
                row.train_seconds
            ));
        }
    }
    overall.finish_and_clear();

    let finished_at = provenance::now();
    let wall = started.elapsed().as_secs_f64();
    for (index, _) in &todo {
        let l = &loaded[*index];
        let store = ResultStore::open(&paths.results, &l.experiment.name);
        let ran = cells_run.get(index).copied().unwrap_or(0);
        if ran > 0 {
            append_run_record(
                &store,
                &RunRecord {
                    command: command_line(&[l.experiment.path.clone()]),
                    started_at: started_at.clone(),
                    finished_at: finished_at.clone(),
                    wall_seconds: wall,
                    cells_run: ran,
                    pretrainings_run,
                },
            )?;
        }
        if write_reports {
            let out = write_experiment_report(l, paths)?;
            display.line(format!("report: {}", out.display()));
        }
    }
    display.line(format!(
        "done in {:.0} s: {total} cells run, {failures} failed",
        wall
    ));
    if failures > 0 {
        anyhow::bail!(
            "{failures} cells failed; their rows say why (status = failed), and the next run retries them"
        );
    }
    Ok(())
}

fn append_run_record(store: &ResultStore, record: &RunRecord) -> Result<()> {
    std::fs::create_dir_all(&store.dir)?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(store.dir.join("runs.jsonl"))?;
    writeln!(file, "{}", serde_json::to_string(record)?)?;
    Ok(())
}

/// Total wall time of the runs that did work for this experiment. Runs started by one command
/// over several experiments are counted once per experiment.
fn recorded_wall_seconds(store: &ResultStore) -> Option<f64> {
    let text = std::fs::read_to_string(store.dir.join("runs.jsonl")).ok()?;
    let records: Vec<RunRecord> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (!records.is_empty()).then(|| records.iter().map(|r| r.wall_seconds).sum())
}

struct RowContext {
    git_commit: Option<String>,
    git_dirty: Option<bool>,
    host: String,
    threads: usize,
}

#[allow(clippy::too_many_arguments)]
fn make_row(
    cell: &Cell,
    job: Option<&PretrainJob>,
    target: &Dataset,
    source: Option<&Dataset>,
    pretrained: Option<&(PretrainOutcome, Option<String>)>,
    outcome: std::result::Result<&CellOutcome, String>,
    ctx: &RowContext,
    started_at: String,
    tokenizer_sha256: Option<String>,
) -> ResultRow {
    let m = &cell.model;
    let ft = &cell.finetune;
    let nan = f64::NAN;
    let (status, message) = match &outcome {
        Ok(o) => (
            o.status.as_str().to_string(),
            (o.status.as_str() != "ok").then(|| "training loss became NaN or infinite".to_string()),
        ),
        Err(e) => ("failed".to_string(), Some(e.clone())),
    };
    let o = outcome.as_ref().ok();
    ResultRow {
        experiment: cell.experiment.clone(),
        target: cell.target.clone(),
        source: cell.source.clone(),
        relation: cell.relation.as_str().into(),
        option: cell.option as i64,
        n_train: cell.n_train as i64,
        seed: cell.seed as i64,
        patch: m.patch as i64,
        d_model: m.d_model as i64,
        n_layers: m.n_layers as i64,
        n_heads: m.n_heads as i64,
        d_ff: m.d_ff as i64,
        activation: m.activation.clone(),
        dropout: m.dropout,
        frames_per_token: matches!(target.train, Inputs::Spectrograms(_))
            .then(|| m.frames_per_token.map(|f| f as i64))
            .flatten(),
        max_tokens: match &target.train {
            Inputs::Tokens(t) => Some(t.tokens as i64),
            _ => None,
        },
        vocab_size: match &target.train {
            Inputs::Tokens(t) => Some(t.vocab_size as i64),
            _ => None,
        },
        batch_size: ft.batch_size as i64,
        learning_rate: if cell.option == 1 {
            ft.option1_learning_rate
        } else {
            ft.option2_learning_rate
        },
        epochs: ft.epochs as i64,
        min_steps: ft.min_steps as i64,
        validation_fraction: ft.validation_fraction,
        evaluations: ft.evaluations as i64,
        patience: ft.patience as i64,
        pretrain_epochs: job.map(|j| j.pretrain.epochs as i64),
        pretrain_batch_size: job.map(|j| j.pretrain.batch_size as i64),
        pretrain_learning_rate: job.map(|j| j.pretrain.learning_rate),
        pretrain_seed: job.map(|j| j.pretrain.seed as i64),
        pretrain_max_examples: job.map(|j| j.pretrain.max_examples as i64),
        source_test_accuracy: pretrained.map(|p| p.0.meta.source_test_accuracy),
        test_accuracy: o.map_or(nan, |o| o.test.accuracy),
        test_macro_f1: o.map_or(nan, |o| o.test.macro_f1),
        test_loss: o.map_or(nan, |o| o.test.loss),
        validation_accuracy: o.map_or(nan, |o| o.validation_accuracy),
        best_step: o.map_or(0, |o| o.best_step as i64),
        best_epoch: o.map_or(nan, |o| o.best_epoch),
        steps_run: o.map_or(0, |o| o.steps_run as i64),
        n_fit: o.map_or(0, |o| o.n_fit as i64),
        n_validation: o.map_or(0, |o| o.n_validation as i64),
        train_seconds: o.map_or(0.0, |o| o.train_seconds),
        examples_per_second: o.map_or(nan, |o| o.examples_per_second),
        peak_rss_mib: harness_train::peak_rss_mib(),
        status,
        message,
        fingerprint: cell.fingerprint.clone(),
        pretrain_key: cell.pretrain_key.clone(),
        checkpoint_sha256: pretrained.and_then(|p| p.1.clone()),
        tokenizer_sha256,
        target_sha256: target.content_sha256.clone(),
        source_sha256: source.map(|s| s.content_sha256.clone()),
        harness_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: ctx.git_commit.clone(),
        git_dirty: ctx.git_dirty,
        backend: harness_train::BACKEND.into(),
        threads: ctx.threads as i64,
        host: ctx.host.clone(),
        started_at,
        finished_at: provenance::now(),
    }
}

fn write_experiment_report(l: &Loaded, paths: &Paths) -> Result<PathBuf> {
    let store = ResultStore::open(&paths.results, &l.experiment.name);
    let mut rows = store.rows()?;
    // Report only the cells the experiment file asks for now.
    let wanted: BTreeSet<&String> = l.plan.cells.iter().map(|c| &c.fingerprint).collect();
    rows.retain(|r| wanted.contains(&r.fingerprint));
    let out = paths.reports.join(&l.experiment.name);
    let ctx = ReportContext {
        experiment: l.experiment.name.clone(),
        description: l.experiment.description.clone(),
        experiment_file: l.experiment.path.display().to_string(),
        experiment_text: l.experiment.text.clone(),
        command: command_line(&[l.experiment.path.clone()]),
        wall_seconds: recorded_wall_seconds(&store),
        versions: provenance::versions(),
        generated_at: provenance::now(),
    };
    write_report(&rows, &ctx, &out)?;
    Ok(out)
}

/// `harness plan`.
pub fn plan(files: &[PathBuf], paths: &Paths) -> Result<()> {
    let (_, loaded) = load(files, paths)?;
    let cache = paths.cache_dir();
    let mut all = Plan::default();
    for l in &loaded {
        all.merge(l.plan.clone());
    }
    if !all.tokenizers.is_empty() {
        println!("tokenizers: {}", all.tokenizers.len());
    }
    for t in &all.tokenizers {
        let origin = match (&t.file, &t.corpus) {
            (Some(file), _) => format!("the file {}", file.display()),
            (None, Some(corpus)) => format!(
                "learned from the training pool of {corpus}: {} pieces, min frequency {}",
                t.text.vocab_size, t.text.min_frequency
            ),
            (None, None) => "?".into(),
        };
        println!(
            "  {}  {origin}; normalise {}, {} tokens per document",
            &t.key[..16],
            t.text.normalise,
            t.text.max_tokens
        );
    }
    println!("pre-training jobs: {}", all.pretrain_jobs.len());
    for job in &all.pretrain_jobs {
        let cached =
            harness_model::Checkpoint::new(cache.join("checkpoints").join(&job.key)).exists();
        println!(
            "  {}  source {:<16} {} epochs, batch {}, lr {}, seed {}{}",
            &job.key[..16],
            job.source,
            job.pretrain.epochs,
            job.pretrain.batch_size,
            job.pretrain.learning_rate,
            job.pretrain.seed,
            if cached { "  [cached]" } else { "" }
        );
    }
    for l in &loaded {
        let store = ResultStore::open(&paths.results, &l.experiment.name);
        let done = finished(&store)?;
        let n_done = l
            .plan
            .cells
            .iter()
            .filter(|c| done.contains(&c.fingerprint))
            .count();
        println!(
            "\nexperiment {} ({}): {} cells, {} finished",
            l.experiment.name,
            l.experiment.path.display(),
            l.plan.cells.len(),
            n_done
        );
        let tw = l
            .plan
            .cells
            .iter()
            .map(|c| c.target.len())
            .chain([6])
            .max()
            .unwrap_or(6);
        let sw = l
            .plan
            .cells
            .iter()
            .map(|c| c.source.len())
            .chain([6])
            .max()
            .unwrap_or(6);
        println!(
            "  {:<16} {:<tw$} {:<sw$} {:<10} {:>6} {:>7} {:>5}  {:<16} state",
            "fingerprint",
            "target",
            "source",
            "relation",
            "option",
            "n_train",
            "seed",
            "pre-training"
        );
        for c in &l.plan.cells {
            println!(
                "  {:<16} {:<tw$} {:<sw$} {:<10} {:>6} {:>7} {:>5}  {:<16} {}",
                &c.fingerprint[..16],
                c.target,
                c.source,
                c.relation.as_str(),
                c.option,
                c.n_train,
                c.seed,
                c.pretrain_key.as_deref().map_or("-", |k| &k[..16]),
                if done.contains(&c.fingerprint) {
                    "finished"
                } else {
                    "to run"
                }
            );
        }
    }
    Ok(())
}

/// `harness report`.
pub fn report(files: &[PathBuf], paths: &Paths) -> Result<()> {
    let (_, loaded) = load(files, paths)?;
    for l in &loaded {
        let out = write_experiment_report(l, paths)?;
        println!("report: {}", out.join("report.md").display());
    }
    Ok(())
}

/// `harness fetch`.
pub fn fetch(ids: &[String], paths: &Paths) -> Result<()> {
    let manifests = ManifestSet::load_dir(&paths.manifests)?;
    let wanted: BTreeSet<String> = if ids.is_empty() {
        manifests.by_id.keys().cloned().collect()
    } else {
        for id in ids {
            if manifests.get(id).is_none() {
                anyhow::bail!(
                    "unknown dataset id `{id}`; known: {}",
                    manifests.known_ids()
                );
            }
        }
        ids.iter().cloned().collect()
    };
    let display = Display::new();
    fetch_datasets(
        &wanted,
        &manifests,
        &DataCache::new(paths.cache_dir()),
        &display,
    )?;
    Ok(())
}
