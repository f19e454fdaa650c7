//! `harness bench`: the harness's training step and frozen-feature extraction on each
//! experiment's model, beside the PyTorch reference (`bench/reference.py`) in the same run.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use std::collections::BTreeSet;

use anyhow::{Context, Result, bail};
use harness_data::{DataCache, Dataset};
use harness_model::ClassifierConfig;
use harness_results::{ResultRow, ResultStore};
use harness_spec::{
    Activation, Cell, CellStatus, Experiment, ManifestSet, Modality, ModelSpec, NetworkArm,
    NetworkBody, Relation,
};
use harness_train::{
    InputShape, cached_pretrained, cell_arrays, classifier_config, measure_features, measure_train,
    model_config,
};

use crate::ledger::run_records;
use crate::load::{Loaded, load, merged};
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

/// One model choice to measure: its label, its input, its network and its batch if not the
/// default one.
struct Candidate {
    label: String,
    shape: InputShape,
    model: ModelSpec,
    batch: Option<usize>,
}

impl Candidate {
    /// `model` on `shape` at the default batch.
    fn new(label: String, shape: InputShape, model: ModelSpec) -> Self {
        Self {
            label,
            shape,
            model,
            batch: None,
        }
    }

    /// What this candidate changes against `b`'s model.
    fn kind(&self, b: &Bench) -> VariantKind {
        if self.label == "default" {
            VariantKind::Default
        } else if self.batch.is_some() {
            VariantKind::Batch
        } else if self.model.d_model != b.model.d_model
            || self.model.activation != b.model.activation
        {
            VariantKind::Network
        } else {
            VariantKind::Tokens
        }
    }
}

/// The model choices measured against the default: another activation, twice the width, a
/// smaller training batch, and fewer or more tokens per example. Each is (label, network,
/// batch size if not the default).
fn variants(b: &Bench) -> Vec<(String, VariantKind, ClassifierConfig, Option<usize>)> {
    let mut candidates = setting_candidates(b);
    candidates.extend(token_candidates(b));
    candidates
        .into_iter()
        .filter_map(|c| {
            let kind = c.kind(b);
            let config = classifier_config(c.shape, &c.model, b.classes).ok()?;
            Some((c.label, kind, config, c.batch))
        })
        .collect()
}

/// The default, another activation, twice the width, and the default at batch 32.
fn setting_candidates(b: &Bench) -> Vec<Candidate> {
    let other = match b.model.activation {
        Activation::Gelu => Activation::Relu,
        Activation::Relu => Activation::Gelu,
    };
    vec![
        Candidate::new("default".into(), b.shape, b.model.clone()),
        Candidate::new(
            format!("activation {other}"),
            b.shape,
            ModelSpec {
                activation: other,
                ..b.model.clone()
            },
        ),
        Candidate::new(
            format!("d_model {}, d_ff {}", b.model.d_model * 2, b.model.d_ff * 2),
            b.shape,
            ModelSpec {
                d_model: b.model.d_model * 2,
                d_ff: b.model.d_ff * 2,
                ..b.model.clone()
            },
        ),
        Candidate {
            batch: Some(32),
            ..Candidate::new("batch 32".into(), b.shape, b.model.clone())
        },
    ]
}

/// Fewer and more tokens per example: half and twice the text length, or the nearest patch
/// sizes and frame stretches that tile the input.
fn token_candidates(b: &Bench) -> Vec<Candidate> {
    let mut out = Vec::new();
    match b.shape {
        InputShape::Text { vocab_size, tokens } => {
            for t in [tokens / 2, tokens * 2] {
                out.push(Candidate::new(
                    format!("max_tokens {t}"),
                    InputShape::Text {
                        vocab_size,
                        tokens: t,
                    },
                    b.model.clone(),
                ));
            }
        }
        InputShape::Image { side } => {
            let p = b.model.patch;
            let larger = (p + 1..=side).find(|q| side % q == 0);
            let smaller = (1..p).rev().find(|q| side % q == 0);
            for q in [larger, smaller].into_iter().flatten() {
                out.push(Candidate::new(
                    format!("patch {q}"),
                    b.shape,
                    ModelSpec {
                        patch: q,
                        ..b.model.clone()
                    },
                ));
            }
        }
        InputShape::Audio { frames, .. } => {
            if let Some(f) = b.model.frames_per_token {
                // Stretches must tile the clip: the nearest divisors of its frame count.
                let larger = (f + 1..=frames).find(|g| frames % g == 0);
                let smaller = (1..f).rev().find(|g| frames % g == 0);
                for g in [larger, smaller].into_iter().flatten() {
                    out.push(Candidate::new(
                        format!("frames_per_token {g}"),
                        b.shape,
                        ModelSpec {
                            frames_per_token: Some(g),
                            ..b.model.clone()
                        },
                    ));
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
        md.push_str(&default_speed_text(b, default, target));
        md.push_str(&other_choices_text(&mine, default));
        md.push('\n');
    }
    md
}

/// The default model's settings and speed, and whether it meets the target against PyTorch.
fn default_speed_text(b: &Bench, default: &VariantRow, target: f64) -> String {
    let mut md = String::new();
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
        default.train.ours(),
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
    md
}

/// What the other networks, token counts and batches of one experiment do to its speed.
fn other_choices_text(mine: &[&VariantRow], default: &VariantRow) -> String {
    let mut md = String::new();
    let speed = default.train.ours();
    let against = |r: &VariantRow| r.train.ours() / speed;
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

impl BenchArgs {
    /// How long each round runs, as asked.
    fn timing(&self) -> Timing {
        Timing {
            batch: self.batch,
            steps: self.steps,
            rounds: self.rounds,
            min_seconds: self.min_seconds,
        }
    }

    /// The thread count of the single-count measurements (networks, cells): the first asked.
    fn first_threads(&self) -> usize {
        self.threads.first().copied().unwrap_or(1)
    }
}

/// The models of the experiments, each measured once.
struct DistinctModels {
    benches: Vec<Bench>,
    /// The experiment files whose model is measured (their cells are the reduced matrix).
    cell_files: Vec<PathBuf>,
    /// A sentence for each experiment whose model is another's.
    same_models: Vec<String>,
}

impl DistinctModels {
    /// An experiment whose Transformer is one measured already (e.g. the Transformer arms of
    /// pretrained-image are image's) is measured once, under the first experiment's name.
    fn collect(files: &[PathBuf], manifests: &ManifestSet) -> Result<Self> {
        let mut out = Self {
            benches: Vec::new(),
            cell_files: Vec::new(),
            same_models: Vec::new(),
        };
        for file in files {
            let experiment = Experiment::load(file)?;
            let b = bench_config(&experiment, manifests)?;
            if let Some(first) = out.benches.iter().find(|m| {
                m.modality == b.modality && model_json(&m.config) == model_json(&b.config)
            }) {
                out.same_models.push(format!(
                    "{}'s Transformer is {}'s and is measured once, under {}.",
                    b.name, first.name, first.name
                ));
                continue;
            }
            out.cell_files.push(file.clone());
            out.benches.push(b);
        }
        Ok(out)
    }
}

/// What one `harness bench` measured, for BENCHMARKS.md.
struct Measured {
    /// The training-step and feature table at each thread count.
    throughput: String,
    same_models: Vec<String>,
    networks: Option<String>,
    /// The variants' table and the defaults in words.
    variants: Option<(String, String)>,
    cells: Option<String>,
    end_to_end: Option<String>,
    /// The reference's PyTorch version, if it ran.
    torch: Option<String>,
    /// Why the reference did not run, if it did not.
    no_reference: Option<String>,
}

/// `harness bench`.
pub fn bench(args: &BenchArgs, paths: &Paths) -> Result<()> {
    let manifests = ManifestSet::load_dir(&paths.manifests)?;
    let models = DistinctModels::collect(&args.files, &manifests)?;
    let python = args
        .python
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_VENV_PYTHON));
    let timing = args.timing();
    let mut theirs = Theirs::start(&python);

    if args.networks_only {
        return bench_networks_only(args, &manifests, paths, &mut theirs, timing);
    }

    // Training-step and feature throughput, at each thread count.
    let throughput = bench_throughput(&models.benches, &args.threads, &mut theirs, timing)?;
    print!("{throughput}");

    // Networks pre-trained elsewhere, on their published weights, at each experiment's side.
    let threads = args.first_threads();
    let networks = bench_networks(&args.files, &manifests, paths, &mut theirs, timing, threads)?;
    if let Some(n) = &networks {
        print!("\n{n}");
    }

    // The defaults against other choices.
    let variants = if args.variants {
        let rows = bench_variants(&models.benches, &mut theirs, timing)?;
        let table = variants_table(&rows);
        let words = defaults_text(&models.benches, &rows, TARGET_RATIO);
        print!("\n{table}\n{words}");
        Some((table, words))
    } else {
        None
    };

    // Whole fine-tuning cells on real data, harness against the reference loop.
    let cells = if args.cells {
        let md = bench_cells(&models.cell_files, paths, &mut theirs, threads)?;
        print!("\n{md}");
        Some(md)
    } else {
        None
    };

    let torch = theirs.torch();
    let no_reference = theirs.failure.clone();
    drop(theirs);

    // What recorded runs of these experiments took, and the estimate for a larger matrix.
    let end_to_end = end_to_end(&args.files, paths)?;
    if let Some(e) = &end_to_end {
        print!("\n{e}");
    }

    if let Some(path) = &args.write {
        let measured = Measured {
            throughput,
            same_models: models.same_models,
            networks,
            variants,
            cells,
            end_to_end,
            torch,
            no_reference,
        };
        std::fs::write(path, benchmarks_doc(args, path, &measured))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Training-step and feature throughput of each model at each thread count, beside the
/// reference; a Markdown table.
fn bench_throughput(
    benches: &[Bench],
    thread_counts: &[usize],
    theirs: &mut Theirs,
    timing: Timing,
) -> Result<String> {
    let Timing {
        batch,
        steps,
        rounds,
        min_seconds,
    } = timing;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| experiment | modality | tokens | threads | harness train ex/s | PyTorch train ex/s | ratio (range over rounds) | harness features ex/s | PyTorch features ex/s | ratio (range over rounds) |"
    );
    let _ = writeln!(
        md,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for &threads in thread_counts {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .context("building a thread pool")?;
        for b in benches {
            eprintln!(
                "measuring {} ({}, {} tokens, {threads} thread{}), harness and PyTorch alternately …",
                b.name,
                b.modality.as_str(),
                tokens(&b.config),
                if threads == 1 { "" } else { "s" }
            );
            let c = &b.config;
            let measured = Throughput {
                train: Paired::measure(
                    rounds,
                    || pool.install(|| measure_train(c, batch, steps, min_seconds)),
                    theirs,
                    &timing.train(c, batch, threads),
                ),
                features: Paired::measure(
                    rounds,
                    || pool.install(|| measure_features(c, steps * batch, min_seconds)),
                    theirs,
                    &timing.features(c, threads),
                ),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {threads} | {} |",
                b.name,
                b.modality.as_str(),
                tokens(c),
                measured.columns(),
            );
        }
    }
    Ok(md)
}

/// A model's training-step and feature throughput, harness and reference.
struct Throughput {
    train: Paired,
    features: Paired,
}

impl Throughput {
    /// The six table columns: for training, then features, the harness's examples/s, the
    /// reference's, and their ratio.
    fn columns(&self) -> String {
        format!(
            "{:.0} | {} | {} | {:.0} | {} | {}",
            self.train.ours(),
            figure(self.train.theirs()),
            self.train.ratio_cell(),
            self.features.ours(),
            figure(self.features.theirs()),
            self.features.ratio_cell(),
        )
    }
}

/// BENCHMARKS.md as `harness bench … --write PATH` writes it.
fn benchmarks_doc(args: &BenchArgs, path: &Path, measured: &Measured) -> String {
    let mut doc = String::new();
    let _ = writeln!(doc, "# Benchmarks\n");
    let files: Vec<String> = args.files.iter().map(|f| f.display().to_string()).collect();
    let thread_args: Vec<String> = args
        .threads
        .iter()
        .map(|t| format!("--threads {t}"))
        .collect();
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
    if let Some(e) = &measured.no_reference {
        let _ = writeln!(doc, "The PyTorch reference did not run: {e}\n");
    }
    doc.push_str(&throughput_section(args.timing(), measured));
    if let Some(n) = &measured.networks {
        doc.push_str(&networks_section(n, args.first_threads(), args.batch, None));
    }
    if let Some((table, words)) = &measured.variants {
        doc.push_str(&variants_section(table, words));
    }
    if let Some(c) = &measured.cells {
        doc.push_str(&cells_section(c, args.first_threads()));
    }
    if let Some(e) = &measured.end_to_end {
        let _ = writeln!(doc, "\n## End to end\n");
        doc.push_str(e);
    }
    doc.push_str(&machine_text());
    doc
}

/// The training-step and frozen-feature section: what was measured, the table, and which
/// experiments share a model.
fn throughput_section(timing: Timing, measured: &Measured) -> String {
    let Timing {
        batch,
        steps,
        rounds,
        min_seconds,
    } = timing;
    let torch = measured.torch.as_deref().unwrap_or("not run");
    let mut doc = String::new();
    let _ = writeln!(doc, "## Training step and frozen features\n");
    let _ = writeln!(
        doc,
        "Training examples/s (forward, backward and Adam on batches of {batch}; 2 warm-up steps, then at least {steps} steps and {min_seconds} s) and frozen-feature extraction examples/s (batches of 500, no gradients; at least {} examples and {min_seconds} s), median of {rounds} rounds, on synthetic inputs of each experiment's model shape, with the given compute threads in one process. The PyTorch reference (`bench/reference.py`, PyTorch {torch}, eager) runs the same models in the same run with the same threads, one round at a time, alternating with the harness (each side goes first in every other round). Ratio = the median over rounds of harness / PyTorch, with its range. `harness run` runs one cell per core, each with one thread (`--jobs`, `--threads`): the 1-thread rows are the speed of each of its jobs.\n",
        steps * batch
    );
    doc.push_str(&measured.throughput);
    for line in &measured.same_models {
        let _ = writeln!(doc, "\n{line}");
    }
    doc
}

/// The variants' section: what was measured, the table, and the defaults in words.
fn variants_section(table: &str, words: &str) -> String {
    let mut doc = String::new();
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
    doc
}

/// The fine-tuning cells' section: how harness and reference ran them, and the table.
fn cells_section(table: &str, threads: usize) -> String {
    let mut doc = String::new();
    let _ = writeln!(doc, "\n## Fine-tuning cells on real data\n");
    let _ = writeln!(
        doc,
        "The reduced matrix: each experiment's first target, from scratch, first seed, smallest and largest `n_train`, both options; {threads} thread{} each. The harness runs each cell as `harness run` does (Option 1 trains the head on frozen features it computes once per network and keeps for the next cell). The reference loop (`bench/reference.py`) gets the same subset, normalised inputs, batch size, learning rate and number of steps, validates as often, keeps the best weights and tests once, as a PyTorch script would: its Option 1 sets `requires_grad` off outside the head and runs the frozen layers at every step. Seconds cover initialisation, training, validation and the test pass.\n",
        if threads == 1 { "" } else { "s" }
    );
    doc.push_str(table);
    doc
}

/// The machine, the versions and the backend the figures were measured with.
fn machine_text() -> String {
    let mut doc = String::new();
    let (cpu, simd) = provenance::machine();
    let _ = writeln!(doc, "\n- machine: {cpu}, {simd}, {} cores", cores());
    for (name, version) in provenance::versions() {
        let _ = writeln!(doc, "- {name} {version}");
    }
    let _ = writeln!(doc, "- backend: {}", harness_train::backend().as_str());
    doc
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
    let threads = args.first_threads();
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

/// A network source to measure: the first experiment that names it, its arm, and the classes
/// of that experiment's target.
struct NetworkSource {
    experiment: String,
    arm: NetworkArm,
    classes: usize,
}

/// Every network source with published weights of `files`, once each, in the order met.
fn network_sources(files: &[PathBuf], manifests: &ManifestSet) -> Result<Vec<NetworkSource>> {
    let mut sources: Vec<NetworkSource> = Vec::new();
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
            if !sources.iter().any(|s| s.arm == *arm) {
                sources.push(NetworkSource {
                    experiment: experiment.name.clone(),
                    arm: arm.clone(),
                    classes,
                });
            }
        }
    }
    Ok(sources)
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
    let sources = network_sources(files, manifests)?;
    if sources.is_empty() {
        return Ok(None);
    }
    let bench = NetworkBench {
        manifests,
        pool: rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .context("building a thread pool")?,
        cache: DataCache::new(paths.cache_dir()),
        display: Display::new(),
        timing,
        threads,
    };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| experiment | network | input | threads | harness train ex/s | PyTorch train ex/s | ratio (range over rounds) | harness features ex/s | PyTorch features ex/s | ratio (range over rounds) |"
    );
    let _ = writeln!(
        md,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for source in &sources {
        md.push_str(&bench.row(source, theirs)?);
    }
    Ok(Some(md))
}

/// What measuring each network source shares: its threads, the caches and the timing.
struct NetworkBench<'a> {
    manifests: &'a ManifestSet,
    pool: rayon::ThreadPool,
    cache: DataCache,
    display: Display,
    timing: Timing,
    threads: usize,
}

impl NetworkBench<'_> {
    /// One network's table row: its weights fetched, then measured beside the reference.
    fn row(&self, source: &NetworkSource, theirs: &mut Theirs) -> Result<String> {
        let (arm, threads) = (&source.arm, self.threads);
        let id = arm.weights.as_deref().unwrap_or_default();
        let manifest = self
            .manifests
            .network(id)
            .with_context(|| format!("network `{id}` has no manifest"))?;
        let weights = crate::workbench::fetch_network(manifest, &self.cache, &self.display)?;
        eprintln!(
            "measuring {id} ({}; {threads} thread{}), harness and PyTorch alternately …",
            arm.adapter_label(),
            if threads == 1 { "" } else { "s" },
        );
        let model = reference_network(source, &weights.path)?;
        let measured = self
            .measure(source, &weights.path, &model, theirs)
            .with_context(|| format!("measuring {id}"))?;
        Ok(format!(
            "| {} | {id} | {} | {threads} | {} |\n",
            source.experiment,
            arm.adapter_label(),
            measured.columns(),
        ))
    }

    /// Training steps and the frozen-feature pass of one network, harness and reference in
    /// alternate rounds; the first error of the harness's rounds, after all rounds ran.
    fn measure(
        &self,
        source: &NetworkSource,
        weights: &Path,
        model: &serde_json::Value,
        theirs: &mut Theirs,
    ) -> Result<Throughput> {
        let Timing {
            batch,
            steps,
            rounds,
            min_seconds,
        } = self.timing;
        let (arm, classes, threads) = (&source.arm, source.classes, self.threads);
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
                keep(self.pool.install(|| {
                    harness_train::measure_network_train(
                        arm,
                        weights,
                        classes,
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
                keep(self.pool.install(|| {
                    harness_train::measure_network_features(
                        arm,
                        weights,
                        classes,
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
        match failure {
            Some(e) => Err(e),
            None => Ok(Throughput { train, features }),
        }
    }
}

/// The network as the reference builds it: architecture, weights, classes and its input.
fn reference_network(source: &NetworkSource, weights: &Path) -> Result<serde_json::Value> {
    let arm = &source.arm;
    let mut model = serde_json::json!({
        "kind": arm.architecture, "weights": weights, "classes": source.classes,
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
    Ok(model)
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
    let all = merged(&loaded);
    let chosen = reduced_matrix(&loaded)?;
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
        let dir = tmp.path().join(format!("cell{k}"));
        request_cells.push(reference_cell(cell, target, row.steps_run, &dir)?);
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
    Ok(cells_table(
        &loaded,
        &CellTimes {
            chosen: &chosen,
            ours: &ours,
            theirs: &theirs,
            answered: answer.is_some(),
        },
    ))
}

/// The reduced matrix: of each experiment (by its index in `loaded`), the cells from scratch
/// of its first target and first seed at its smallest and largest `n_train`.
fn reduced_matrix(loaded: &[Loaded]) -> Result<Vec<(usize, &Cell)>> {
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
    Ok(chosen)
}

/// Writes the arrays of `cell` into `dir` for the reference loop, and returns its request:
/// the same subset, model and schedule, run for the `steps` the harness ran.
fn reference_cell(
    cell: &Cell,
    target: &Dataset,
    steps: i64,
    dir: &Path,
) -> Result<serde_json::Value> {
    let arrays = cell_arrays(cell, target)?;
    let config = model_config(
        target,
        &ModelSpec {
            dropout: 0.0,
            ..cell.model.clone()
        },
    )?;
    std::fs::create_dir_all(dir)?;
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
    Ok(serde_json::json!({
        "dir": dir, "width": arrays.width,
        "sizes": {"fit": arrays.fit.1.len(), "validation": arrays.validation.1.len(), "test": arrays.test.1.len()},
        "model": model_json(&config),
        "option": cell.option, "seed": cell.seed,
        "steps": steps, "total_steps": arrays.total_steps,
        "eval_every": arrays.eval_every, "batch_size": arrays.batch_size,
        "learning_rate": arrays.learning_rate, "patience": arrays.patience,
    }))
}

/// The reduced matrix's seconds and accuracies, harness and reference, cell by cell.
struct CellTimes<'a> {
    chosen: &'a [(usize, &'a Cell)],
    ours: &'a [ResultRow],
    /// The reference's (seconds, test accuracy) of each cell it answered for.
    theirs: &'a [Option<(f64, f64)>],
    /// Whether the reference answered at all.
    answered: bool,
}

/// The cells' table, one row a cell and a row of totals.
fn cells_table(loaded: &[Loaded], times: &CellTimes) -> String {
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
    for (((i, cell), row), t) in times.chosen.iter().zip(times.ours).zip(times.theirs) {
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
        if times.answered {
            format!("{sum_theirs:.1}")
        } else {
            "–".into()
        },
        if times.answered {
            format!("{:.2}×", sum_theirs / sum_ours)
        } else {
            "–".into()
        },
    );
    md
}

/// From the result stores of `files`: each experiment's recorded runs (wall time, jobs,
/// memory), and an estimate of the cross-modal matrix of issue 6 (each target with 4 sources,
/// its own sizes, 2 options, 5 seeds) from the measured mean cell times and pre-training times.
fn end_to_end(files: &[PathBuf], paths: &Paths) -> Result<Option<String>> {
    let (_, loaded) = load(files, paths)?;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| experiment | cells | wall s | jobs × threads | pre-training s (summed) | cell s (summed) | peak MiB (run + each job) |"
    );
    let _ = writeln!(md, "| --- | ---: | ---: | --- | ---: | ---: | --- |");
    let mut estimate = EstimateShare::default();
    let mut peak_total: f64 = 0.0;
    let mut any = false;
    for l in &loaded {
        let Some(run) = recorded_run(l, paths)? else {
            continue;
        };
        any = true;
        md.push_str(&run.row);
        peak_total = peak_total.max(run.peak_mib);
        if let Some(share) = run.estimate {
            estimate.cells += share.cells;
            estimate.pretrain += share.pretrain;
            estimate.longest_pretrain = estimate.longest_pretrain.max(share.longest_pretrain);
        }
    }
    if !any {
        return Ok(None);
    }
    let jobs = cores() as f64;
    let wall = ((estimate.cells + estimate.pretrain) / jobs).max(estimate.longest_pretrain);
    let _ = writeln!(
        md,
        "\nEstimate for the cross-modal matrix (each target above whose sources are all Transformers × 4 sources × its sizes × 2 options × 5 seeds), on {} jobs: {:.0} s of cells (the measured mean time of each option and size, × 20) + {:.0} s of pre-training (every source above, once), shared by the jobs: **{:.0} minutes**. Peak memory of a run above: {:.0} MiB.",
        cores(),
        estimate.cells,
        estimate.pretrain,
        wall / 60.0,
        peak_total
    );
    Ok(Some(md))
}

/// One experiment's recorded runs, as the end-to-end table shows them.
struct RecordedRun {
    /// Its row of the table.
    row: String,
    /// The run's peak plus each job's, MiB.
    peak_mib: f64,
    /// What it adds to the cross-modal estimate; none for an experiment with networks
    /// pre-trained elsewhere.
    estimate: Option<EstimateShare>,
}

/// Seconds toward the cross-modal estimate.
#[derive(Debug, Default)]
struct EstimateShare {
    /// Mean cell seconds by option and size, times 4 sources × 5 seeds.
    cells: f64,
    /// Pre-training seconds, summed.
    pretrain: f64,
    /// The longest single pre-training.
    longest_pretrain: f64,
}

/// The recorded runs of one experiment; none unless it has runs and an `ok` row for every cell.
fn recorded_run(l: &Loaded, paths: &Paths) -> Result<Option<RecordedRun>> {
    let store = ResultStore::open(&paths.results, &l.experiment.name);
    let records = run_records(&store);
    let rows = store.rows().unwrap_or_default();
    let wanted: BTreeSet<&String> = l.plan.cells.iter().map(|c| &c.fingerprint).collect();
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| wanted.contains(&r.fingerprint) && r.status == CellStatus::Ok)
        .collect();
    if records.is_empty() || rows.len() < l.plan.cells.len() {
        return Ok(None);
    }
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
    let cache = paths.cache_dir();
    let (mut pretrain, mut longest_pretrain) = (0.0, 0.0f64);
    for job in &l.plan.pretrain_jobs {
        if let Some(o) = cached_pretrained(&cache, &job.key)? {
            pretrain += o.meta.seconds;
            longest_pretrain = longest_pretrain.max(o.meta.seconds);
        }
    }
    let cell_seconds: f64 = rows.iter().map(|r| r.train_seconds).sum();
    let n_jobs = jobs.map_or(1, |j| j.0);
    let row = format!(
        "| {} | {} | {wall:.0} | {} | {pretrain:.0} | {cell_seconds:.0} | {run_peak:.0} + {n_jobs} × {job_peak:.0} |\n",
        l.experiment.name,
        rows.len(),
        jobs.map_or("1 × all cores (before --jobs)".into(), |(j, t)| format!(
            "{j} × {t}"
        )),
    );
    let estimate = in_estimate.then(|| {
        // Mean cell seconds by option and size, times 4 sources × 5 seeds.
        let mut by: std::collections::BTreeMap<(i64, i64), (f64, usize)> = Default::default();
        for r in &rows {
            let e = by.entry((r.option, r.n_train)).or_default();
            e.0 += r.train_seconds;
            e.1 += 1;
        }
        EstimateShare {
            cells: by.values().map(|(s, n)| s / *n as f64).sum::<f64>() * 4.0 * 5.0,
            pretrain,
            longest_pretrain,
        }
    });
    Ok(Some(RecordedRun {
        row,
        peak_mib: run_peak + n_jobs as f64 * job_peak,
        estimate,
    }))
}
