//! `harness bench`: the harness's training step and frozen-feature extraction on each
//! experiment's model, beside the PyTorch reference (`bench/reference.py`) in the same run.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::collections::BTreeSet;

use anyhow::{Context, Result, bail};
use harness_data::DataCache;
use harness_model::ClassifierConfig;
use harness_results::ResultStore;
use harness_spec::{Cell, Experiment, ManifestSet, Modality, ModelSpec, Plan};
use harness_train::{
    InputShape, Throughput, cached_pretrained, cell_arrays, classifier_config, measure,
    model_config,
};

use crate::progress::Display;
use crate::run::{self, load};
use crate::workbench::Workbench;
use crate::{Paths, provenance};

/// The virtual environment `bench/setup.sh` creates by default.
pub const DEFAULT_VENV_PYTHON: &str = "/var/tmp/harness-bench-venv/bin/python";

/// One model to measure: the first target of an experiment, with its settings.
struct Bench {
    name: String,
    modality: Modality,
    shape: InputShape,
    model: ModelSpec,
    classes: usize,
    config: ClassifierConfig,
}

fn bench_config(experiment: &Experiment, manifests: &ManifestSet) -> Result<Bench> {
    let id = experiment
        .matrix
        .targets
        .first()
        .context("an experiment without targets")?
        .get_ref();
    let manifest = manifests
        .get(id)
        .with_context(|| format!("unknown dataset `{id}`"))?;
    let shape = match manifest.modality {
        Modality::Image => InputShape::Image {
            side: manifest.image.as_ref().context("`[image]` missing")?.side,
        },
        Modality::Audio => {
            let audio = manifest.audio.as_ref().context("`[audio]` missing")?;
            InputShape::Audio {
                mels: audio.n_mels,
                frames: audio.frames(),
            }
        }
        Modality::Text => InputShape::Text {
            vocab_size: experiment.text_spec.vocab_size,
            tokens: experiment.text_spec.max_tokens,
        },
    };
    // The reference trains without dropout; so does the measured network.
    let model = ModelSpec {
        dropout: 0.0,
        ..experiment.model.clone()
    };
    let config = classifier_config(shape, &model, manifest.classes.len())?;
    Ok(Bench {
        name: experiment.name.clone(),
        modality: manifest.modality,
        shape,
        model,
        classes: manifest.classes.len(),
        config,
    })
}

/// The model choices measured against the default: another activation, twice the width, a
/// smaller training batch, and fewer or more tokens per example. Each is (label, network,
/// batch size if not the default).
fn variants(b: &Bench) -> Vec<(String, ClassifierConfig, Option<usize>)> {
    let mut out = Vec::new();
    let mut add = |label: String, shape: InputShape, m: ModelSpec, batch: Option<usize>| {
        if let Ok(c) = classifier_config(shape, &m, b.classes) {
            out.push((label, c, batch));
        }
    };
    add("default".into(), b.shape, b.model.clone(), None);
    let other = if b.model.activation == "gelu" {
        "relu"
    } else {
        "gelu"
    };
    add(
        format!("activation {other}"),
        b.shape,
        ModelSpec {
            activation: other.into(),
            ..b.model.clone()
        },
        None,
    );
    add(
        format!("d_model {}, d_ff {}", b.model.d_model * 2, b.model.d_ff * 2),
        b.shape,
        ModelSpec {
            d_model: b.model.d_model * 2,
            d_ff: b.model.d_ff * 2,
            ..b.model.clone()
        },
        None,
    );
    add("batch 32".into(), b.shape, b.model.clone(), Some(32));
    match b.shape {
        InputShape::Text { vocab_size, tokens } => {
            for t in [tokens / 2, tokens * 2] {
                add(
                    format!("max_tokens {t}"),
                    InputShape::Text {
                        vocab_size,
                        tokens: t,
                    },
                    b.model.clone(),
                    None,
                );
            }
        }
        InputShape::Image { side } => {
            let p = b.model.patch;
            let larger = (p + 1..=side).find(|q| side % q == 0);
            let smaller = (1..p).rev().find(|q| side % q == 0);
            for q in [larger, smaller].into_iter().flatten() {
                add(
                    format!("patch {q}"),
                    b.shape,
                    ModelSpec {
                        patch: q,
                        ..b.model.clone()
                    },
                    None,
                );
            }
        }
        InputShape::Audio { frames, .. } => {
            if let Some(f) = b.model.frames_per_token {
                // Stretches must tile the clip: the nearest divisors of its frame count.
                let larger = (f + 1..=frames).find(|g| frames % g == 0);
                let smaller = (1..f).rev().find(|g| frames % g == 0);
                for g in [larger, smaller].into_iter().flatten() {
                    add(
                        format!("frames_per_token {g}"),
                        b.shape,
                        ModelSpec {
                            frames_per_token: Some(g),
                            ..b.model.clone()
                        },
                        None,
                    );
                }
            }
        }
    }
    out
}

/// Measures every variant of every model at one thread, beside the reference; a table.
fn bench_variants(
    benches: &[Bench],
    python: &Path,
    steps: usize,
    rounds: usize,
    batch: usize,
) -> Result<String> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .context("building a thread pool")?;
    let mut rows = Vec::new();
    let mut models = Vec::new();
    for b in benches {
        for (label, config, vb) in variants(b) {
            let vb = vb.unwrap_or(batch);
            eprintln!("harness: measuring {} with {label} …", b.name);
            let t = pool.install(|| measure(&config, vb, steps, rounds));
            let name = format!("{} / {label}", b.name);
            let mut m = model_json(&name, &config);
            m["batch"] = vb.into();
            models.push(m);
            rows.push((b.name.clone(), label, tokens(&config), vb, t.train, name));
        }
    }
    eprintln!("PyTorch reference: the same variants, 1 thread …");
    let answer = reference(
        python,
        serde_json::json!({
            "threads": 1, "batch": batch, "steps": steps, "rounds": rounds, "models": models,
        }),
        1,
    )
    .map_err(|e| eprintln!("no reference figures: {e:#}"))
    .ok();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| experiment | variant | tokens | batch | harness train ex/s | against the default | PyTorch train ex/s | ratio |"
    );
    let _ = writeln!(
        md,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let mut default_speed = 0.0;
    for (experiment, label, tokens, vb, train, name) in rows {
        if label == "default" {
            default_speed = train;
        }
        let pt = answer
            .as_ref()
            .and_then(|a| a.get(&name)?.get("train")?.as_f64());
        let _ = writeln!(
            md,
            "| {experiment} | {label} | {tokens} | {vb} | {train:.0} | {:.2}× | {} | {} |",
            train / default_speed,
            figure(pt),
            ratio(train, pt),
        );
    }
    Ok(md)
}

fn tokens(c: &ClassifierConfig) -> usize {
    if c.vocab_size > 0 {
        c.cols
    } else {
        (c.rows / c.patch_rows) * (c.cols / c.patch_cols)
    }
}

/// Runs `bench/reference.py` on `request` (with `threads` set) and returns its JSON answer.
fn reference(
    python: &Path,
    request: serde_json::Value,
    threads: usize,
) -> Result<serde_json::Value> {
    let script = Path::new("bench/reference.py");
    if !script.is_file() {
        bail!("{} not found (run from the project root)", script.display());
    }
    let mut child = Command::new(python)
        .arg(script)
        .env("OMP_NUM_THREADS", threads.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", python.display()))?;
    child
        .stdin
        .take()
        .context("reference stdin")?
        .write_all(request.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "the PyTorch reference failed ({}): {}",
            out.status,
            stderr.lines().last().unwrap_or("no message")
        );
    }
    serde_json::from_slice(&out.stdout).context("reading the reference's JSON")
}

/// The model as the reference builds it.
fn model_json(name: &str, c: &ClassifierConfig) -> serde_json::Value {
    serde_json::json!({
        "name": name, "rows": c.rows, "cols": c.cols,
        "patch_rows": c.patch_rows, "patch_cols": c.patch_cols,
        "vocab_size": c.vocab_size, "d_model": c.d_model, "n_layers": c.n_layers,
        "n_heads": c.n_heads, "d_ff": c.d_ff, "activation": c.activation,
        "classes": c.classes,
    })
}

/// What `harness bench` is asked to do.
pub struct BenchArgs {
    pub files: Vec<PathBuf>,
    pub python: Option<PathBuf>,
    pub batch: usize,
    pub steps: usize,
    pub rounds: usize,
    pub threads: Vec<usize>,
    pub cells: bool,
    pub variants: bool,
    pub write: Option<PathBuf>,
}

/// `harness bench`.
pub fn bench(args: &BenchArgs, paths: &Paths) -> Result<()> {
    let manifests = ManifestSet::load_dir(&paths.manifests)?;
    let mut benches = Vec::new();
    for file in &args.files {
        let experiment = Experiment::load(file)?;
        benches.push(bench_config(&experiment, &manifests)?);
    }
    let python = args
        .python
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_VENV_PYTHON));
    let (batch, steps, rounds) = (args.batch, args.steps, args.rounds);
    let mut torch_version = None;
    let mut no_reference = None;

    // Training-step and feature throughput, at each thread count.
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| experiment | modality | tokens | threads | harness train ex/s | PyTorch train ex/s | ratio | harness features ex/s | PyTorch features ex/s | ratio |"
    );
    let _ = writeln!(
        md,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for &threads in &args.threads {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .context("building a thread pool")?;
        let mut ours: Vec<Throughput> = Vec::new();
        for b in &benches {
            eprintln!(
                "harness: measuring {} ({}, {} tokens, {threads} thread{}) …",
                b.name,
                b.modality.as_str(),
                tokens(&b.config),
                if threads == 1 { "" } else { "s" }
            );
            ours.push(pool.install(|| measure(&b.config, batch, steps, rounds)));
        }
        eprintln!(
            "PyTorch reference: {} bench/reference.py ({threads} thread{}) …",
            python.display(),
            if threads == 1 { "" } else { "s" }
        );
        let models: Vec<serde_json::Value> = benches
            .iter()
            .map(|b| model_json(&b.name, &b.config))
            .collect();
        let request = serde_json::json!({
            "threads": threads, "batch": batch, "steps": steps, "rounds": rounds,
            "models": models,
        });
        let answer = match reference(&python, request, threads) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("no reference figures: {e:#} (install it with bench/setup.sh)");
                no_reference = Some(format!("{e:#}"));
                None
            }
        };
        if let Some(v) = answer.as_ref().and_then(|r| r.get("torch")?.as_str()) {
            torch_version = Some(v.to_string());
        }
        let theirs = |name: &str, what: &str| -> Option<f64> {
            answer.as_ref()?.get(name)?.get(what)?.as_f64()
        };
        for (b, Throughput { train, features }) in benches.iter().zip(&ours) {
            let (pt, pf) = (theirs(&b.name, "train"), theirs(&b.name, "features"));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {threads} | {train:.0} | {} | {} | {features:.0} | {} | {} |",
                b.name,
                b.modality.as_str(),
                tokens(&b.config),
                figure(pt),
                ratio(*train, pt),
                figure(pf),
                ratio(*features, pf),
            );
        }
    }
    print!("{md}");

    // The defaults against other choices.
    let variants_md = if args.variants {
        let md = bench_variants(&benches, &python, steps, rounds, batch)?;
        print!("\n{md}");
        Some(md)
    } else {
        None
    };

    // Whole fine-tuning cells on real data, harness against the reference loop.
    let threads = args.threads.first().copied().unwrap_or(1);
    let cells_md = if args.cells {
        let md = bench_cells(&args.files, paths, &python, threads)?;
        print!("\n{md}");
        Some(md)
    } else {
        None
    };

    // What recorded runs of these experiments took, and the estimate for a larger matrix.
    let end_to_end = end_to_end(&args.files, paths)?;
    if let Some(e) = &end_to_end {
        print!("\n{e}");
    }

    if let Some(path) = &args.write {
        let torch = torch_version.unwrap_or_else(|| "not run".into());
        let files: Vec<String> = args.files.iter().map(|f| f.display().to_string()).collect();
        let thread_args: Vec<String> = args
            .threads
            .iter()
            .map(|t| format!("--threads {t}"))
            .collect();
        let mut doc = String::new();
        let _ = writeln!(doc, "# Benchmarks\n");
        let _ = writeln!(
            doc,
            "Generated by `harness bench {} {}{} --write {}` on {}; regenerate it, do not edit it.\n",
            files.join(" "),
            thread_args.join(" "),
            format!(
                "{}{}",
                if args.variants { " --variants" } else { "" },
                if args.cells { " --cells" } else { "" }
            ),
            path.display(),
            provenance::now()
        );
        if let Some(e) = &no_reference {
            let _ = writeln!(doc, "The PyTorch reference did not run: {e}\n");
        }
        let _ = writeln!(doc, "## Training step and frozen features\n");
        let _ = writeln!(
            doc,
            "Training examples/s (forward, backward and Adam on batches of {batch}; {steps} steps after 2 warm-up steps) and frozen-feature extraction examples/s (batches of 500, no gradients), median of {rounds} rounds, on synthetic inputs of each experiment's model shape, with the given compute threads in one process. The PyTorch reference (`bench/reference.py`, PyTorch {torch}, eager) runs the same models in the same run with the same threads. Ratio = harness / PyTorch. `harness run` runs one cell per core, each with one thread (`--jobs`, `--threads`): the 1-thread rows are the speed of each of its jobs.\n"
        );
        doc.push_str(&md);
        if let Some(v) = &variants_md {
            let _ = writeln!(doc, "\n## The default models against other choices\n");
            let _ = writeln!(
                doc,
                "Each experiment's model as committed (`default`) and with one setting changed, measured as above at 1 thread (training steps only); \"against the default\" is the harness's speed relative to the default model.\n"
            );
            doc.push_str(v);
        }
        if let Some(c) = &cells_md {
            let _ = writeln!(doc, "\n## Fine-tuning cells on real data\n");
            let _ = writeln!(
                doc,
                "The reduced matrix: each experiment's first target, from scratch, first seed, smallest and largest `n_train`, both options; {threads} thread{} each. The harness runs each cell as `harness run` does (Option 1 trains the head on frozen features it computes once per network and keeps for the next cell). The reference loop (`bench/reference.py`) gets the same subset, normalised inputs, batch size, learning rate and number of steps, validates as often, keeps the best weights and tests once, as a PyTorch script would: its Option 1 sets `requires_grad` off outside the head and runs the frozen layers at every step. Seconds cover initialisation, training, validation and the test pass.\n",
                if threads == 1 { "" } else { "s" }
            );
            doc.push_str(c);
        }
        if let Some(e) = &end_to_end {
            let _ = writeln!(doc, "\n## End to end\n");
            doc.push_str(e);
        }
        let _ = writeln!(doc, "\n- machine: {}, {} cores", cpu_model(), cores());
        for (name, version) in provenance::versions() {
            let _ = writeln!(doc, "- {name} {version}");
        }
        let _ = writeln!(doc, "- backend: {}", harness_train::backend().as_str());
        std::fs::write(path, doc).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn figure(v: Option<f64>) -> String {
    v.map_or("–".to_string(), |v| format!("{v:.0}"))
}

fn ratio(a: f64, v: Option<f64>) -> String {
    v.map_or("–".to_string(), |v| format!("{:.2}×", a / v))
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Writes `values` as raw little-endian bytes.
fn write_raw<T: Copy>(path: &Path, values: &[T], to_le: impl Fn(T) -> Vec<u8>) -> Result<()> {
    let mut bytes = Vec::with_capacity(values.len() * std::mem::size_of::<T>());
    for &v in values {
        bytes.extend(to_le(v));
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Runs the reduced matrix in the harness and in the reference; a Markdown table.
fn bench_cells(files: &[PathBuf], paths: &Paths, python: &Path, threads: usize) -> Result<String> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("building a thread pool")?;
    let (manifests, loaded) = load(files, paths)?;
    let mut all = Plan::default();
    for l in &loaded {
        all.merge(l.plan.clone());
    }
    let mut chosen: Vec<(usize, &Cell)> = Vec::new();
    for (i, l) in loaded.iter().enumerate() {
        let m = &l.experiment.matrix;
        let target = m
            .targets
            .first()
            .context("an experiment without targets")?
            .get_ref();
        let seed = *m.seeds.first().context("an experiment without seeds")?;
        let sizes = [
            m.n_train
                .iter()
                .map(|n| *n.get_ref())
                .min()
                .context("no n_train")?,
            m.n_train
                .iter()
                .map(|n| *n.get_ref())
                .max()
                .context("no n_train")?,
        ];
        chosen.extend(
            l.plan
                .cells
                .iter()
                .filter(|c| {
                    c.source == harness_spec::SCRATCH
                        && c.target == *target
                        && c.seed == seed
                        && sizes.contains(&c.n_train)
                })
                .map(|c| (i, c)),
        );
    }
    let display = Display::new();
    let mut bench = Workbench::new(
        &manifests,
        &all,
        DataCache::new(paths.cache_dir()),
        &display,
    );
    let cell_refs: Vec<&Cell> = chosen.iter().map(|(_, c)| *c).collect();
    bench.prepare(&cell_refs, &BTreeSet::new())?;
    let tmp = tempfile::tempdir().context("a temporary folder")?;
    let mut ours = Vec::new();
    let mut request_cells = Vec::new();
    for (k, (i, cell)) in chosen.iter().enumerate() {
        eprintln!("harness: cell {}", run::cell_title(cell));
        let store = ResultStore::open(&tmp.path().join("results"), &loaded[*i].experiment.name);
        let row = pool.install(|| bench.run_cell(cell, &store, &mut |_| {}))?;
        let target = bench.dataset(&cell.target, &cell.tokenizer);
        let arrays = cell_arrays(cell, target)?;
        let config = model_config(
            target,
            &ModelSpec {
                dropout: 0.0,
                ..cell.model.clone()
            },
        )?;
        let dir = tmp.path().join(format!("cell{k}"));
        std::fs::create_dir_all(&dir)?;
        for (split, (x, y)) in [
            ("fit", &arrays.fit),
            ("validation", &arrays.validation),
            ("test", &arrays.test),
        ] {
            write_raw(&dir.join(format!("{split}_x.f32")), x, |v| {
                v.to_le_bytes().to_vec()
            })?;
            write_raw(&dir.join(format!("{split}_y.u16")), y, |v| {
                v.to_le_bytes().to_vec()
            })?;
        }
        request_cells.push(serde_json::json!({
            "dir": dir, "width": arrays.width,
            "sizes": {"fit": arrays.fit.1.len(), "validation": arrays.validation.1.len(), "test": arrays.test.1.len()},
            "model": model_json(&cell.target, &config),
            "option": cell.option, "seed": cell.seed,
            "steps": row.steps_run, "total_steps": arrays.total_steps,
            "eval_every": arrays.eval_every, "batch_size": arrays.batch_size,
            "learning_rate": arrays.learning_rate, "patience": arrays.patience,
        }));
        ours.push(row);
    }
    eprintln!("PyTorch reference: the same {} cells …", chosen.len());
    let answer = reference(
        python,
        serde_json::json!({"threads": threads, "cells": request_cells}),
        threads,
    );
    let theirs: Vec<Option<(f64, f64)>> = match &answer {
        Ok(a) => (0..chosen.len())
            .map(|k| {
                let c = a.get("cells")?.get(k)?;
                Some((
                    c.get("seconds")?.as_f64()?,
                    c.get("test_accuracy")?.as_f64()?,
                ))
            })
            .collect(),
        Err(e) => {
            eprintln!("no reference cells: {e:#}");
            vec![None; chosen.len()]
        }
    };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| experiment | target | option | n_train | steps | harness s | PyTorch s | PyTorch s / harness s | harness accuracy | PyTorch accuracy |"
    );
    let _ = writeln!(
        md,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let (mut sum_ours, mut sum_theirs) = (0.0, 0.0);
    for (((i, cell), row), t) in chosen.iter().zip(&ours).zip(&theirs) {
        sum_ours += row.train_seconds;
        if let Some((s, _)) = t {
            sum_theirs += s;
        }
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.1} | {} | {} | {:.3} | {} |",
            loaded[*i].experiment.name,
            cell.target,
            cell.option,
            cell.n_train,
            row.steps_run,
            row.train_seconds,
            t.map_or("–".into(), |(s, _)| format!("{s:.1}")),
            t.map_or("–".into(), |(s, _)| format!(
                "{:.2}×",
                s / row.train_seconds
            )),
            row.test_accuracy,
            t.map_or("–".into(), |(_, a)| format!("{a:.3}")),
        );
    }
    let _ = writeln!(
        md,
        "| all | | | | | {sum_ours:.1} | {} | {} | | |",
        if answer.is_ok() {
            format!("{sum_theirs:.1}")
        } else {
            "–".into()
        },
        if answer.is_ok() {
            format!("{:.2}×", sum_theirs / sum_ours)
        } else {
            "–".into()
        },
    );
    Ok(md)
}

/// From the result stores of `files`: each experiment's recorded runs (wall time, jobs,
/// memory), and an estimate of the cross-modal matrix of issue 6 (each target with 4 sources,
/// its own sizes, 2 options, 5 seeds) from the measured mean cell times and pre-training times.
fn end_to_end(files: &[PathBuf], paths: &Paths) -> Result<Option<String>> {
    let (_, loaded) = load(files, paths)?;
    let cache = paths.cache_dir();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| experiment | cells | wall s | jobs × threads | pre-training s (summed) | cell s (summed) | peak MiB (run + each job) |"
    );
    let _ = writeln!(md, "| --- | ---: | ---: | --- | ---: | ---: | --- |");
    let (mut estimate_cells, mut estimate_pretrain, mut longest_pretrain) = (0.0, 0.0, 0.0f64);
    let mut peak_total: f64 = 0.0;
    let mut any = false;
    for l in &loaded {
        let store = ResultStore::open(&paths.results, &l.experiment.name);
        let records = run::run_records(&store);
        let rows = store.rows().unwrap_or_default();
        let wanted: BTreeSet<&String> = l.plan.cells.iter().map(|c| &c.fingerprint).collect();
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|r| wanted.contains(&r.fingerprint) && r.status == "ok")
            .collect();
        if records.is_empty() || rows.len() < l.plan.cells.len() {
            continue;
        }
        any = true;
        let wall: f64 = records.iter().map(|r| r.wall_seconds).sum();
        let jobs = records.last().and_then(|r| Some((r.jobs?, r.threads?)));
        let run_peak = records
            .iter()
            .filter_map(|r| r.peak_rss_mib)
            .fold(0.0, f64::max);
        let job_peak = rows
            .iter()
            .filter_map(|r| r.peak_rss_mib)
            .fold(0.0, f64::max);
        let mut pretrain = 0.0;
        for job in &l.plan.pretrain_jobs {
            if let Some(o) = cached_pretrained(&cache, &job.key)? {
                pretrain += o.meta.seconds;
                longest_pretrain = longest_pretrain.max(o.meta.seconds);
            }
        }
        estimate_pretrain += pretrain;
        let cell_seconds: f64 = rows.iter().map(|r| r.train_seconds).sum();
        let n_jobs = jobs.map_or(1, |j| j.0);
        peak_total = peak_total.max(run_peak + n_jobs as f64 * job_peak);
        let _ = writeln!(
            md,
            "| {} | {} | {wall:.0} | {} | {pretrain:.0} | {cell_seconds:.0} | {run_peak:.0} + {n_jobs} × {job_peak:.0} |",
            l.experiment.name,
            rows.len(),
            jobs.map_or("1 × all cores (before --jobs)".into(), |(j, t)| format!(
                "{j} × {t}"
            )),
        );
        // Mean cell seconds by option and size, times 4 sources × 5 seeds.
        let mut by: std::collections::BTreeMap<(i64, i64), (f64, usize)> = Default::default();
        for r in &rows {
            let e = by.entry((r.option, r.n_train)).or_default();
            e.0 += r.train_seconds;
            e.1 += 1;
        }
        estimate_cells += by.values().map(|(s, n)| s / *n as f64).sum::<f64>() * 4.0 * 5.0;
    }
    if !any {
        return Ok(None);
    }
    let jobs = cores() as f64;
    let wall = ((estimate_cells + estimate_pretrain) / jobs).max(longest_pretrain);
    let _ = writeln!(
        md,
        "\nEstimate for the cross-modal matrix (each of these targets × 4 sources × its sizes × 2 options × 5 seeds), on {} jobs: {:.0} s of cells (the measured mean time of each option and size, × 20) + {:.0} s of pre-training (every source above, once), shared by the jobs: **{:.0} minutes**. Peak memory of a run above: {:.0} MiB.",
        cores(),
        estimate_cells,
        estimate_pretrain,
        wall / 60.0,
        peak_total
    );
    Ok(Some(md))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
