//! `harness bench`: the harness's training step and frozen-feature extraction on each
//! experiment's model, beside the PyTorch reference (`bench/reference.py`) in the same run.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use harness_model::ClassifierConfig;
use harness_spec::{Experiment, ManifestSet, Modality, ModelSpec};
use harness_train::{InputShape, Throughput, classifier_config, measure};

use crate::Paths;
use crate::provenance;

/// The virtual environment `bench/setup.sh` creates by default.
pub const DEFAULT_VENV_PYTHON: &str = "/var/tmp/harness-bench-venv/bin/python";

/// One model to measure: the first target of an experiment, with its settings.
struct Bench {
    name: String,
    modality: Modality,
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
        config,
    })
}

fn tokens(c: &ClassifierConfig) -> usize {
    if c.vocab_size > 0 {
        c.cols
    } else {
        (c.rows / c.patch_rows) * (c.cols / c.patch_cols)
    }
}

/// Runs the PyTorch reference on the same models; `None` with a reason when it cannot run.
fn reference(
    python: &Path,
    benches: &[Bench],
    threads: usize,
    batch: usize,
    steps: usize,
    rounds: usize,
) -> Result<serde_json::Value> {
    let script = Path::new("bench/reference.py");
    if !script.is_file() {
        bail!("{} not found (run from the project root)", script.display());
    }
    let models: Vec<serde_json::Value> = benches
        .iter()
        .map(|b| {
            let c = &b.config;
            serde_json::json!({
                "name": b.name, "rows": c.rows, "cols": c.cols,
                "patch_rows": c.patch_rows, "patch_cols": c.patch_cols,
                "vocab_size": c.vocab_size, "d_model": c.d_model, "n_layers": c.n_layers,
                "n_heads": c.n_heads, "d_ff": c.d_ff, "activation": c.activation,
                "classes": c.classes,
            })
        })
        .collect();
    let request = serde_json::json!({
        "threads": threads, "batch": batch, "steps": steps, "rounds": rounds, "models": models,
    });
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

/// `harness bench`.
pub fn bench(
    files: &[PathBuf],
    paths: &Paths,
    python: Option<PathBuf>,
    batch: usize,
    steps: usize,
    rounds: usize,
    write: Option<PathBuf>,
) -> Result<()> {
    let manifests = ManifestSet::load_dir(&paths.manifests)?;
    let mut benches = Vec::new();
    for file in files {
        let experiment = Experiment::load(file)?;
        benches.push(bench_config(&experiment, &manifests)?);
    }
    let threads = rayon::current_num_threads();
    let mut ours = Vec::new();
    for b in &benches {
        eprintln!(
            "harness: measuring {} ({}, {} tokens) …",
            b.name,
            b.modality.as_str(),
            tokens(&b.config)
        );
        ours.push(measure(&b.config, batch, steps, rounds));
    }
    let python = python.unwrap_or_else(|| PathBuf::from(DEFAULT_VENV_PYTHON));
    eprintln!(
        "PyTorch reference: {} bench/reference.py …",
        python.display()
    );
    let reference = match reference(&python, &benches, threads, batch, steps, rounds) {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("no reference figures: {e:#} (install it with bench/setup.sh)");
            None
        }
    };
    let theirs = |name: &str, what: &str| -> Option<f64> {
        reference.as_ref()?.get(name)?.get(what)?.as_f64()
    };

    let mut md = String::new();
    let _ = writeln!(
        md,
        "| experiment | modality | tokens | harness train ex/s | PyTorch train ex/s | ratio | harness features ex/s | PyTorch features ex/s | ratio |"
    );
    let _ = writeln!(
        md,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for (b, Throughput { train, features }) in benches.iter().zip(&ours) {
        let cell = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.0}"));
        let ratio =
            |a: f64, v: Option<f64>| v.map_or("–".to_string(), |v| format!("{:.2}×", a / v));
        let (pt, pf) = (theirs(&b.name, "train"), theirs(&b.name, "features"));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {train:.0} | {} | {} | {features:.0} | {} | {} |",
            b.name,
            b.modality.as_str(),
            tokens(&b.config),
            cell(pt),
            ratio(*train, pt),
            cell(pf),
            ratio(*features, pf),
        );
    }
    print!("{md}");
    if let Some(path) = write {
        let torch = reference
            .as_ref()
            .and_then(|r| r.get("torch")?.as_str().map(str::to_string))
            .unwrap_or_else(|| "not run".into());
        let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        let mut doc = String::new();
        let _ = writeln!(doc, "# Benchmarks\n");
        let _ = writeln!(
            doc,
            "Generated by `harness bench {} --write {}` on {}; regenerate it, do not edit it.\n",
            files.join(" "),
            path.display(),
            provenance::now()
        );
        let _ = writeln!(
            doc,
            "Training examples/s (forward, backward and Adam on batches of {batch}; {steps} steps after 2 warm-up steps) and frozen-feature extraction examples/s (batches of 500, no gradients), median of {rounds} rounds, {threads} threads, on synthetic inputs of each experiment's model shape. The PyTorch reference (`bench/reference.py`, PyTorch {torch}, eager) runs the same models in the same run. Ratio = harness / PyTorch.\n"
        );
        doc.push_str(&md);
        let _ = writeln!(doc, "\n- machine: {}, {} cores", cpu_model(), threads);
        for (name, version) in provenance::versions() {
            let _ = writeln!(doc, "- {name} {version}");
        }
        let _ = writeln!(doc, "- backend: {}", harness_train::BACKEND);
        std::fs::write(&path, doc).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
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
