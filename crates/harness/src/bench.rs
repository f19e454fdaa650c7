//! `harness bench`: the harness's training step and frozen-feature extraction on each
//! experiment's model, beside the PyTorch reference (`bench/reference.py`) in the same run.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use std::collections::BTreeSet;

use anyhow::{Context, Result, bail};
use harness_data::DataCache;
use harness_model::ClassifierConfig;
use harness_results::ResultStore;
use harness_spec::{
    Activation, Cell, CellStatus, Experiment, ManifestSet, Modality, ModelSpec, NetworkArm,
    NetworkBody, Plan, Relation,
};
use harness_train::{
    InputShape, cached_pretrained, cell_arrays, classifier_config, measure_features, measure_train,
    model_config,
};

use crate::ledger::run_records;
use crate::load::load;
use crate::progress::Display;
use crate::progress::cell_title;
use crate::workbench::Workbench;
use crate::{Paths, provenance};

/// The training throughput, as a fraction of PyTorch eager's, that the default models should reach.
const TARGET_RATIO: f64 = 0.5;

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
fn variants(b: &Bench) -> Vec<(String, VariantKind, ClassifierConfig, Option<usize>)> {
    let mut out = Vec::new();
    let mut add = |label: String, shape: InputShape, m: ModelSpec, batch: Option<usize>| {
        let kind = if label == "default" {
            VariantKind::Default
        } else if batch.is_some() {
            VariantKind::Batch
        } else if m.d_model != b.model.d_model || m.activation != b.model.activation {
            VariantKind::Network
        } else {
            VariantKind::Tokens
        };
        if let Ok(c) = classifier_config(shape, &m, b.classes) {
            out.push((label, kind, c, batch));
        }
    };
    add("default".into(), b.shape, b.model.clone(), None);
    let other = match b.model.activation {
        Activation::Gelu => Activation::Relu,
        Activation::Relu => Activation::Gelu,
    };
    add(
        format!("activation {other}"),
        b.shape,
        ModelSpec {
            activation: other,
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

/// The PyTorch reference (`bench/reference.py --serve`), kept running and asked for one round
/// at a time, so that its rounds alternate with the harness's under the same machine load.
struct Reference {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    torch: Option<String>,
}

impl Reference {
    fn start(python: &Path) -> Result<Self> {
        let script = Path::new("bench/reference.py");
        if !script.is_file() {
            bail!("{} not found (run from the project root)", script.display());
        }
        let mut child = Command::new(python)
            .arg(script)
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", python.display()))?;
        let stdin = child.stdin.take().context("reference stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("reference stdout")?);
        Ok(Self {
            child,
            stdin,
            stdout,
            torch: None,
        })
    }

    /// Sends one request and reads its one-line answer.
    fn ask(&mut self, request: &serde_json::Value) -> Result<serde_json::Value> {
        writeln!(self.stdin, "{request}").context("writing to the reference")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        if line.trim().is_empty() {
            let status = self.child.wait()?;
            bail!(
                "the PyTorch reference stopped ({status}); run bench/reference.py by hand to see why"
            );
        }
        let answer: serde_json::Value =
            serde_json::from_str(&line).context("reading the reference's JSON")?;
        if let Some(v) = answer.get("torch").and_then(|v| v.as_str()) {
            self.torch = Some(v.to_string());
        }
        Ok(answer)
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The reference if it runs, or why it does not.
struct Theirs {
    reference: Option<Reference>,
    failure: Option<String>,
}

impl Theirs {
    fn start(python: &Path) -> Self {
        match Reference::start(python) {
            Ok(r) => Self {
                reference: Some(r),
                failure: None,
            },
            Err(e) => Self::failed(e),
        }
    }

    fn failed(e: anyhow::Error) -> Self {
        eprintln!("no reference figures: {e:#} (install it with bench/setup.sh)");
        Self {
            reference: None,
            failure: Some(format!("{e:#}")),
        }
    }

    /// The reference's answer to `request`; none once it has failed (said once, when it did).
    fn ask(&mut self, request: &serde_json::Value) -> Option<serde_json::Value> {
        let r = self.reference.as_mut()?;
        match r.ask(request) {
            Ok(v) => Some(v),
            Err(e) => {
                *self = Self::failed(e);
                None
            }
        }
    }

    /// One measured round: examples/s.
    fn round(&mut self, request: &serde_json::Value) -> Option<f64> {
        self.ask(request)?.get("value")?.as_f64()
    }

    fn torch(&self) -> Option<String> {
        self.reference.as_ref()?.torch.clone()
    }
}

/// Examples/s of the harness and of the reference, round by round.
#[derive(Debug, Default)]
struct Paired {
    ours: Vec<f64>,
    theirs: Vec<Option<f64>>,
}

impl Paired {
    /// `rounds` rounds, the harness and the reference alternately, each going first in every
    /// other round so that a drift in the machine's speed falls on both alike.
    fn measure(
        rounds: usize,
        mut ours: impl FnMut() -> f64,
        theirs: &mut Theirs,
        request: &serde_json::Value,
    ) -> Self {
        let mut p = Self::default();
        for r in 0..rounds.max(1) {
            if r % 2 == 0 {
                p.ours.push(ours());
                p.theirs.push(theirs.round(request));
            } else {
                p.theirs.push(theirs.round(request));
                p.ours.push(ours());
            }
        }
        p
    }

    fn ours(&self) -> f64 {
        median(self.ours.clone())
    }

    fn theirs(&self) -> Option<f64> {
        let t: Vec<f64> = self.theirs.iter().flatten().copied().collect();
        (t.len() == self.theirs.len()).then(|| median(t))
    }

    /// Median of the per-round ratios, harness / reference.
    fn ratio(&self) -> Option<f64> {
        self.theirs()?;
        Some(median(self.ratios()))
    }

    fn ratios(&self) -> Vec<f64> {
        self.ours
            .iter()
            .zip(&self.theirs)
            .filter_map(|(a, b)| Some(a / (*b)?))
            .collect()
    }

    /// "0.91× (0.88–0.95)": the median ratio and the range over rounds.
    fn ratio_cell(&self) -> String {
        let Some(m) = self.ratio() else {
            return "–".into();
        };
        let rs = self.ratios();
        if rs.len() < 2 {
            return format!("{m:.2}×");
        }
        let lo = rs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{m:.2}× ({lo:.2}–{hi:.2})")
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// How long each round runs.
#[derive(Debug, Clone, Copy)]
struct Timing {
    batch: usize,
    steps: usize,
    rounds: usize,
    min_seconds: f64,
}

impl Timing {
    fn train(&self, config: &ClassifierConfig, batch: usize, threads: usize) -> serde_json::Value {
        serde_json::json!({
            "what": "train", "threads": threads, "model": model_json(config),
            "batch": batch, "steps": self.steps, "min_seconds": self.min_seconds,
        })
    }

    fn features(&self, config: &ClassifierConfig, threads: usize) -> serde_json::Value {
        serde_json::json!({
            "what": "features", "threads": threads, "model": model_json(config),
            "n": self.steps * self.batch, "min_seconds": self.min_seconds,
        })
    }
}

/// One measured variant of an experiment's model.
struct VariantRow {
    experiment: String,
    label: String,
    kind: VariantKind,
    tokens: usize,
    batch: usize,
    train: Paired,
}

/// What a variant changes: the network only (same input), the tokens it sees, or the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VariantKind {
    Default,
    Network,
    Tokens,
    Batch,
}

/// Measures every variant of every model at one thread, beside the reference.
fn bench_variants(
    benches: &[Bench],
    theirs: &mut Theirs,
    timing: Timing,
) -> Result<Vec<VariantRow>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .context("building a thread pool")?;
    let mut rows = Vec::new();
    for b in benches {
        for (label, kind, config, vb) in variants(b) {
            let vb = vb.unwrap_or(timing.batch);
            eprintln!(
                "measuring {} with {label}, harness and PyTorch alternately …",
                b.name
            );
            let train = Paired::measure(
                timing.rounds,
                || pool.install(|| measure_train(&config, vb, timing.steps, timing.min_seconds)),
                theirs,
                &timing.train(&config, vb, 1),
            );
            rows.push(VariantRow {
                experiment: b.name.clone(),
                label,
                kind,
                tokens: tokens(&config),
                batch: vb,
                train,
            });
        }
    }
    Ok(rows)
}

fn variants_table(rows: &[VariantRow]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| experiment | variant | tokens | batch | harness train ex/s | against the default | PyTorch train ex/s | ratio (range over rounds) |"
    );
    let _ = writeln!(
        md,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let mut default_speed = f64::NAN;
    for r in rows {
        if r.kind == VariantKind::Default {
            default_speed = r.train.ours();
        }
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.0} | {:.2}× | {} | {} |",
            r.experiment,
            r.label,
            r.tokens,
            r.batch,
            r.train.ours(),
            r.train.ours() / default_speed,
            figure(r.train.theirs()),
            r.train.ratio_cell(),
        );
    }
    md
}

/// The choice of each default and what it buys, in words, from the variants' figures.
fn defaults_text(benches: &[Bench], rows: &[VariantRow], target: f64) -> String {
    let mut md = String::new();
    for b in benches {
        let mine: Vec<&VariantRow> = rows.iter().filter(|r| r.experiment == b.name).collect();
        let Some(default) = mine.iter().find(|r| r.kind == VariantKind::Default) else {
            continue;
        };
        let speed = default.train.ours();
        let against = |r: &VariantRow| r.train.ours() / speed;
        let m = &b.model;
        let _ = write!(
            md,
            "- **{}** ({}, d_model {}, d_ff {}, {} layers, {} tokens, batch {}): {:.0} training examples/s",
            b.name,
            m.activation,
            m.d_model,
            m.d_ff,
            m.n_layers,
            default.tokens,
            default.batch,
            speed,
        );
        match default.train.ratio() {
            Some(x) => {
                let _ = write!(
                    md,
                    ", {x:.2}× PyTorch eager ({} the target of {target}×).",
                    if x >= target { "meets" } else { "misses" }
                );
            }
            None => md.push('.'),
        }
        let network: Vec<&&VariantRow> = mine
            .iter()
            .filter(|r| r.kind == VariantKind::Network)
            .collect();
        let faster: Vec<String> = network
            .iter()
            .filter(|r| against(r) > 1.0)
            .map(|r| format!("{} ({:.2}×)", r.label, against(r)))
            .collect();
        let listed: Vec<String> = network
            .iter()
            .map(|r| format!("{} runs at {:.2}× its speed", r.label, against(r)))
            .collect();
        if !listed.is_empty() {
            let _ = write!(md, " With the same input, {}", listed.join("; "));
            if faster.is_empty() {
                md.push_str(": the default is the fastest of these networks.");
            } else {
                let _ = write!(
                    md,
                    ": faster than the default here: {}; consider it.",
                    faster.join(", ")
                );
            }
        }
        let token_effects: Vec<String> = mine
            .iter()
            .filter(|r| r.kind == VariantKind::Tokens)
            .map(|r| format!("{} ({} tokens) {:.2}×", r.label, r.tokens, against(r)))
            .collect();
        if !token_effects.is_empty() {
            let _ = write!(
                md,
                " Tokens per example set the cost most: {}; fewer tokens see the input more coarsely (text: posts cut shorter), more tokens cost in proportion.",
                token_effects.join(", ")
            );
        }
        for r in mine.iter().filter(|r| r.kind == VariantKind::Batch) {
            let _ = write!(
                md,
                " Batch {} (the fine-tuning batch) trains {:.2}× as many examples per second as batch {}.",
                r.batch,
                against(r),
                default.batch
            );
        }
        md.push('\n');
    }
    md
}

fn tokens(c: &ClassifierConfig) -> usize {
    c.stem.tokens()
}

/// The model as the reference builds it.
fn model_json(c: &ClassifierConfig) -> serde_json::Value {
    let ((rows, cols), (patch_rows, patch_cols)) = (c.stem.grid(), c.stem.patch());
    let b = &c.backbone;
    serde_json::json!({
        "rows": rows, "cols": cols,
        "patch_rows": patch_rows, "patch_cols": patch_cols,
        "vocab_size": c.stem.vocab_size().unwrap_or(0), "d_model": b.d_model,
        "n_layers": b.n_layers, "n_heads": b.n_heads, "d_ff": b.d_ff,
        "activation": b.activation, "classes": c.classes,
    })
}

/// What `harness bench` is asked to do.
pub struct BenchArgs {
    pub files: Vec<PathBuf>,
    pub python: Option<PathBuf>,
    pub batch: usize,
    pub steps: usize,
    pub rounds: usize,
    pub min_seconds: f64,
    pub threads: Vec<usize>,
    pub cells: bool,
    pub variants: bool,
    pub networks_only: bool,
    pub write: Option<PathBuf>,
}

/// `harness bench`.
pub fn bench(args: &BenchArgs, paths: &Paths) -> Result<()> {
    let manifests = ManifestSet::load_dir(&paths.manifests)?;
    // An experiment whose Transformer is one measured already (e.g. the Transformer arms of
    // pretrained-image are image's) is measured once, under the first experiment's name.
    let mut benches: Vec<Bench> = Vec::new();
    let mut cell_files = Vec::new();
    let mut same_models = Vec::new();
    for file in &args.files {
        let experiment = Experiment::load(file)?;
        let b = bench_config(&experiment, &manifests)?;
        if let Some(first) = benches
            .iter()
            .find(|m| m.modality == b.modality && model_json(&m.config) == model_json(&b.config))
        {
            same_models.push(format!(
                "{}'s Transformer is {}'s and is measured once, under {}.",
                b.name, first.name, first.name
            ));
            continue;
        }
        cell_files.push(file.clone());
        benches.push(b);
    }
    let python = args
        .python
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_VENV_PYTHON));
    let timing = Timing {
        batch: args.batch,
        steps: args.steps,
        rounds: args.rounds,
        min_seconds: args.min_seconds,
    };
    let Timing {
        batch,
        steps,
        rounds,
        min_seconds,
    } = timing;
    let mut theirs = Theirs::start(&python);

    if args.networks_only {
        return bench_networks_only(args, &manifests, paths, &mut theirs, timing);
    }

    // Training-step and feature throughput, at each thread count.
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| experiment | modality | tokens | threads | harness train ex/s | PyTorch train ex/s | ratio (range over rounds) | harness features ex/s | PyTorch features ex/s | ratio (range over rounds) |"
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
        for b in &benches {
            eprintln!(
                "measuring {} ({}, {} tokens, {threads} thread{}), harness and PyTorch alternately …",
                b.name,
                b.modality.as_str(),
                tokens(&b.config),
                if threads == 1 { "" } else { "s" }
            );
            let c = &b.config;
            let train = Paired::measure(
                rounds,
                || pool.install(|| measure_train(c, batch, steps, min_seconds)),
                &mut theirs,
                &timing.train(c, batch, threads),
            );
            let features = Paired::measure(
                rounds,
                || pool.install(|| measure_features(c, steps * batch, min_seconds)),
                &mut theirs,
                &timing.features(c, threads),
            );
            let _ = writeln!(
                md,
                "| {} | {} | {} | {threads} | {:.0} | {} | {} | {:.0} | {} | {} |",
                b.name,
                b.modality.as_str(),
                tokens(c),
                train.ours(),
                figure(train.theirs()),
                train.ratio_cell(),
                features.ours(),
                figure(features.theirs()),
                features.ratio_cell(),
            );
        }
    }
    print!("{md}");

    // Networks pre-trained elsewhere, on their published weights, at each experiment's side.
    let threads = args.threads.first().copied().unwrap_or(1);
    let networks_md = bench_networks(&args.files, &manifests, paths, &mut theirs, timing, threads)?;
    if let Some(n) = &networks_md {
        print!("\n{n}");
    }

    // The defaults against other choices.
    let variants_md = if args.variants {
        let rows = bench_variants(&benches, &mut theirs, timing)?;
        let table = variants_table(&rows);
        let words = defaults_text(&benches, &rows, TARGET_RATIO);
        print!("\n{table}\n{words}");
        Some((table, words))
    } else {
        None
    };

    // Whole fine-tuning cells on real data, harness against the reference loop.
    let threads = args.threads.first().copied().unwrap_or(1);
    let cells_md = if args.cells {
        let md = bench_cells(&cell_files, paths, &mut theirs, threads)?;
        print!("\n{md}");
        Some(md)
    } else {
        None
    };

    let torch_version = theirs.torch();
    let no_reference = theirs.failure.clone();
    drop(theirs);

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
            "Training examples/s (forward, backward and Adam on batches of {batch}; 2 warm-up steps, then at least {steps} steps and {min_seconds} s) and frozen-feature extraction examples/s (batches of 500, no gradients; at least {} examples and {min_seconds} s), median of {rounds} rounds, on synthetic inputs of each experiment's model shape, with the given compute threads in one process. The PyTorch reference (`bench/reference.py`, PyTorch {torch}, eager) runs the same models in the same run with the same threads, one round at a time, alternating with the harness (each side goes first in every other round). Ratio = the median over rounds of harness / PyTorch, with its range. `harness run` runs one cell per core, each with one thread (`--jobs`, `--threads`): the 1-thread rows are the speed of each of its jobs.\n",
            steps * batch
        );
        doc.push_str(&md);
        for line in &same_models {
            let _ = writeln!(doc, "\n{line}");
        }
        if let Some(n) = &networks_md {
            doc.push_str(&networks_section(n, threads, batch, None));
        }
        if let Some((table, words)) = &variants_md {
            let _ = writeln!(doc, "\n## The default models against other choices\n");
            let _ = writeln!(
                doc,
                "Each experiment's model as committed (`default`) and with one setting changed, measured as above at 1 thread (training steps only); \"against the default\" is the harness's speed relative to the default model.\n"
            );
            doc.push_str(table);
            let _ = writeln!(
                doc,
                "\n### The defaults and what they buy\n\nWritten by `harness bench` from the table above; the target is a training throughput of at least {TARGET_RATIO}× PyTorch eager at the thread count each job of `harness run` uses.\n"
            );
            doc.push_str(words);
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
        let (cpu, simd) = provenance::machine();
        let _ = writeln!(doc, "\n- machine: {cpu}, {simd}, {} cores", cores());
        for (name, version) in provenance::versions() {
            let _ = writeln!(doc, "- {name} {version}");
        }
        let _ = writeln!(doc, "- backend: {}", harness_train::backend().as_str());
        std::fs::write(path, doc).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The heading of the networks' section of BENCHMARKS.md.
const NETWORKS_HEADING: &str = "## Networks pre-trained elsewhere";

/// The networks' section: heading, what was measured, the table; `generated` says which
/// command made it when it was written on its own (`--networks-only`).
fn networks_section(table: &str, threads: usize, batch: usize, generated: Option<&str>) -> String {
    let mut doc = String::new();
    let _ = writeln!(doc, "\n{NETWORKS_HEADING}\n");
    if let Some(g) = generated {
        let _ = writeln!(doc, "{g}\n");
    }
    let _ = writeln!(
        doc,
        "Each network source of the experiments, on its published weights with a new output layer for the target's classes, on synthetic inputs shaped as the experiment's adapter makes them (`input`), {threads} thread{}: training steps as under Option 2 (everything tunes, BatchNorm on batch statistics; batches of {batch}) and Option 1's frozen-feature pass (batches of 500 for image networks, of the 16-example blocks the feature cache computes for text and audio networks), measured as above. The PyTorch references run the same weights in independent implementations fed the same inputs: timm's EfficientNet-Lite (`bench/timm_efficientnet.py`; grey images copied to three channels), transformers' `BertModel` without dropout, mean-pooled (documents of exactly the token length, the costliest case), and torchcrepe's `Crepe` on the same frames of 1.5-s noise clips, embeddings averaged over each clip (`bench/reference.py`).\n",
        if threads == 1 { "" } else { "s" }
    );
    doc.push_str(table);
    doc
}

/// `harness bench --networks-only`: the networks pre-trained elsewhere only; with `--write`,
/// their section replaces the one in the file (or goes before the variants' section, or at the
/// end), and the rest of the file stays as its own command generated it.
fn bench_networks_only(
    args: &BenchArgs,
    manifests: &ManifestSet,
    paths: &Paths,
    theirs: &mut Theirs,
    timing: Timing,
) -> Result<()> {
    let threads = args.threads.first().copied().unwrap_or(1);
    let Some(table) = bench_networks(&args.files, manifests, paths, theirs, timing, threads)?
    else {
        bail!("none of these experiments has a network pre-trained elsewhere among its sources");
    };
    print!("{table}");
    let Some(path) = &args.write else {
        return Ok(());
    };
    let files: Vec<String> = args.files.iter().map(|f| f.display().to_string()).collect();
    let (cpu, simd) = provenance::machine();
    let generated = format!(
        "This section was generated on its own by `harness bench {} --networks-only --threads {threads} --batch {} --rounds {} --steps {} --min-seconds {} --write {}` on {} ({cpu}, {simd}, {} cores; PyTorch {}); regenerate it, do not edit it.",
        files.join(" "),
        timing.batch,
        timing.rounds,
        timing.steps,
        timing.min_seconds,
        path.display(),
        provenance::now(),
        cores(),
        theirs.torch().unwrap_or_else(|| "not run".into()),
    );
    let section = networks_section(&table, threads, timing.batch, Some(&generated));
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".into());
    let doc = match old.find(NETWORKS_HEADING) {
        Some(start) => {
            let rest = &old[start + NETWORKS_HEADING.len()..];
            let end = rest
                .find("\n## ")
                .map_or(old.len(), |i| start + NETWORKS_HEADING.len() + i + 1);
            format!(
                "{}\n\n{}\n\n{}",
                old[..start].trim_end(),
                section.trim(),
                old[end..].trim_start()
            )
        }
        None => match old.find("\n## The default models against other choices") {
            Some(at) => format!(
                "{}\n\n{}\n\n{}",
                old[..at].trim_end(),
                section.trim(),
                old[at..].trim_start()
            ),
            None => format!("{}\n\n{}\n", old.trim_end(), section.trim()),
        },
    };
    std::fs::write(path, doc).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote the networks' section of {}", path.display());
    Ok(())
}

/// Training-step and feature throughput of every network source of `files` (published
/// weights, the experiment's side), beside the reference; none when no experiment has one.
fn bench_networks(
    files: &[PathBuf],
    manifests: &ManifestSet,
    paths: &Paths,
    theirs: &mut Theirs,
    timing: Timing,
    threads: usize,
) -> Result<Option<String>> {
    let mut arms: Vec<(String, NetworkArm, usize)> = Vec::new();
    for file in files {
        let experiment = Experiment::load(file)?;
        let plan = harness_spec::expand(&experiment, manifests)?;
        for cell in &plan.cells {
            // Each network on its own modality: across modalities it is the same network on
            // another input size, and PyTorch has no reference for a fresh stem.
            let Some(arm) = cell
                .network
                .as_ref()
                .filter(|a| a.weights.is_some() && cell.relation == Relation::Matched)
            else {
                continue;
            };
            let classes = manifests.get(&cell.target).map_or(0, |m| m.classes.len());
            if !arms.iter().any(|(_, a, _)| a == arm) {
                arms.push((experiment.name.clone(), arm.clone(), classes));
            }
        }
    }
    if arms.is_empty() {
        return Ok(None);
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("building a thread pool")?;
    let cache = DataCache::new(paths.cache_dir());
    let display = Display::new();
    let Timing {
        batch,
        steps,
        rounds,
        min_seconds,
    } = timing;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| experiment | network | input | threads | harness train ex/s | PyTorch train ex/s | ratio (range over rounds) | harness features ex/s | PyTorch features ex/s | ratio (range over rounds) |"
    );
    let _ = writeln!(
        md,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for (experiment, arm, classes) in &arms {
        let id = arm.weights.as_deref().unwrap_or_default();
        let manifest = manifests
            .network(id)
            .with_context(|| format!("network `{id}` has no manifest"))?;
        let weights = crate::workbench::fetch_network(manifest, &cache, &display)?;
        eprintln!(
            "measuring {id} ({}; {threads} thread{}), harness and PyTorch alternately …",
            arm.adapter_label(),
            if threads == 1 { "" } else { "s" },
        );
        let mut model = serde_json::json!({
            "kind": arm.architecture, "weights": weights.path, "classes": classes,
        });
        match &arm.body {
            NetworkBody::Image { input, .. } => {
                model["side"] = input.side.into();
                model["offset"] = input.offset.into();
                model["scale"] = input.scale.into();
            }
            NetworkBody::Text { input, .. } => model["tokens"] = input.max_tokens.into(),
            NetworkBody::Audio { input, .. } => {
                model["sample_rate"] = input.sample_rate.into();
                model["hop"] = input.hop.into();
                model["seconds"] = harness_train::BENCH_CLIP_SECONDS.into();
            }
            NetworkBody::Patches { .. } => {
                anyhow::bail!("a network behind a fresh stem has no PyTorch reference")
            }
        }
        let mut failure: Option<anyhow::Error> = None;
        let mut keep = |r: Result<f64>| {
            r.unwrap_or_else(|e| {
                failure.get_or_insert(e);
                f64::NAN
            })
        };
        let train = Paired::measure(
            rounds,
            || {
                keep(pool.install(|| {
                    harness_train::measure_network_train(
                        arm,
                        &weights.path,
                        *classes,
                        batch,
                        steps,
                        min_seconds,
                    )
                }))
            },
            theirs,
            &serde_json::json!({
                "what": "train", "threads": threads, "model": model,
                "batch": batch, "steps": steps, "min_seconds": min_seconds,
            }),
        );
        let features = Paired::measure(
            rounds,
            || {
                keep(pool.install(|| {
                    harness_train::measure_network_features(
                        arm,
                        &weights.path,
                        *classes,
                        steps * batch,
                        min_seconds,
                    )
                }))
            },
            theirs,
            &serde_json::json!({
                "what": "features", "threads": threads, "model": model,
                "n": steps * batch, "min_seconds": min_seconds,
                "chunk": if matches!(arm.body, NetworkBody::Image { .. }) {
                    harness_train::CHUNK
                } else {
                    harness_train::SPARSE_BLOCK
                },
            }),
        );
        if let Some(e) = failure {
            return Err(e.context(format!("measuring {id}")));
        }
        let _ = writeln!(
            md,
            "| {experiment} | {id} | {} | {threads} | {:.0} | {} | {} | {:.0} | {} | {} |",
            arm.adapter_label(),
            train.ours(),
            figure(train.theirs()),
            train.ratio_cell(),
            features.ours(),
            figure(features.theirs()),
            features.ratio_cell(),
        );
    }
    Ok(Some(md))
}

fn figure(v: Option<f64>) -> String {
    v.map_or("–".to_string(), |v| format!("{v:.0}"))
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
fn bench_cells(
    files: &[PathBuf],
    paths: &Paths,
    theirs: &mut Theirs,
    threads: usize,
) -> Result<String> {
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
            m.n_train_of(target)
                .iter()
                .map(|n| *n.get_ref())
                .min()
                .context("no n_train")?,
            m.n_train_of(target)
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
                        && c.network.is_none()
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
        eprintln!("harness: cell {}", cell_title(cell));
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
            "model": model_json(&config),
            "option": cell.option, "seed": cell.seed,
            "steps": row.steps_run, "total_steps": arrays.total_steps,
            "eval_every": arrays.eval_every, "batch_size": arrays.batch_size,
            "learning_rate": arrays.learning_rate, "patience": arrays.patience,
        }));
        ours.push(row);
    }
    eprintln!("PyTorch reference: the same {} cells …", chosen.len());
    let answer = theirs
        .ask(&serde_json::json!({"what": "cells", "threads": threads, "cells": request_cells}));
    let theirs: Vec<Option<(f64, f64)>> = (0..chosen.len())
        .map(|k| {
            let c = answer.as_ref()?.get("cells")?.get(k)?;
            Some((
                c.get("seconds")?.as_f64()?,
                c.get("test_accuracy")?.as_f64()?,
            ))
        })
        .collect();
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
        if answer.is_some() {
            format!("{sum_theirs:.1}")
        } else {
            "–".into()
        },
        if answer.is_some() {
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
        let records = run_records(&store);
        let rows = store.rows().unwrap_or_default();
        let wanted: BTreeSet<&String> = l.plan.cells.iter().map(|c| &c.fingerprint).collect();
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|r| wanted.contains(&r.fingerprint) && r.status == CellStatus::Ok)
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
        // The cross-modal matrix is of Transformers: experiments with networks pre-trained
        // elsewhere are shown but not part of its estimate.
        let in_estimate = l.plan.cells.iter().all(|c| c.network.is_none());
        let mut pretrain = 0.0;
        for job in &l.plan.pretrain_jobs {
            if let Some(o) = cached_pretrained(&cache, &job.key)? {
                pretrain += o.meta.seconds;
                if in_estimate {
                    longest_pretrain = longest_pretrain.max(o.meta.seconds);
                }
            }
        }
        if in_estimate {
            estimate_pretrain += pretrain;
        }
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
        if !in_estimate {
            continue;
        }
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
        "\nEstimate for the cross-modal matrix (each target above whose sources are all Transformers × 4 sources × its sizes × 2 options × 5 seeds), on {} jobs: {:.0} s of cells (the measured mean time of each option and size, × 20) + {:.0} s of pre-training (every source above, once), shared by the jobs: **{:.0} minutes**. Peak memory of a run above: {:.0} MiB.",
        cores(),
        estimate_cells,
        estimate_pretrain,
        wall / 60.0,
        peak_total
    );
    Ok(Some(md))
}
