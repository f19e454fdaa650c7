//! Throughput of the harness's own training step and frozen-feature extraction on synthetic
//! inputs of a model's shape, for `harness bench` (which runs the PyTorch reference beside it).

use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::TensorData;
use harness_data::Rng;
use std::path::Path;

use anyhow::Result;
use harness_model::{ClassifierConfig, Network};
use harness_spec::{NetworkArm, NetworkBody};

use crate::{eval_device, train_device};

/// Synthetic inputs for `config`: values from a standard normal-ish spread for patch stems,
/// ids in `1..vocab_size` (never padding) for text; labels spread over the classes.
fn inputs(config: &ClassifierConfig, n: usize, rng: &mut Rng) -> (Vec<f32>, Vec<i64>) {
    let (rows, cols) = config.stem.grid();
    let values = (0..n * rows * cols)
        .map(|_| match config.stem.vocab_size() {
            Some(vocab_size) => (1 + rng.below(vocab_size - 1)) as f32,
            None => (rng.below(2001) as f32 - 1000.0) / 500.0,
        })
        .collect();
    let labels = (0..n).map(|_| rng.below(config.classes) as i64).collect();
    (values, labels)
}

/// Training examples per second of one round: a fresh network (seed 0) and Adam, 2 warm-up
/// steps, then at least `steps` timed steps of `batch` examples, continuing until
/// `min_seconds` have passed (so a fast model is timed over as long a stretch as a slow one).
pub fn measure_train(
    config: &ClassifierConfig,
    batch: usize,
    steps: usize,
    min_seconds: f64,
) -> f64 {
    let mut rng = Rng::new(0, "bench");
    let (x, y) = inputs(config, batch, &mut rng);
    let model = Network::Transformer(crate::init_network(config, &train_device(), 0));
    time_train(model, x, y, batch, steps, min_seconds)
}

/// Frozen-feature examples per second of one round: mean-pooled features without gradients in
/// batches of 500 (Option 1's cached path), over at least `n` examples and `min_seconds`.
pub fn measure_features(config: &ClassifierConfig, n: usize, min_seconds: f64) -> f64 {
    let mut rng = Rng::new(1, "bench");
    let (values, _) = inputs(config, n, &mut rng);
    let model = Network::Transformer(crate::init_network(config, &eval_device(), 0));
    time_features(&model, &values, n, min_seconds)
}

/// [`measure_train`] for a network pre-trained elsewhere (`arm`, its published `weights`,
/// `classes` new outputs) on synthetic inputs shaped as its adapter makes them: Option 2's step.
pub fn measure_network_train(
    arm: &NetworkArm,
    weights: &Path,
    classes: usize,
    batch: usize,
    steps: usize,
    min_seconds: f64,
) -> Result<f64> {
    let mut rng = Rng::new(0, "bench");
    let (x, y) = network_inputs(arm, classes, batch, &mut rng);
    let model = crate::network_with_weights(arm, classes, 0, Some(weights), false)?;
    Ok(time_train(model, x, y, batch, steps, min_seconds))
}

/// [`measure_features`] for a network pre-trained elsewhere: Option 1's feature pass.
pub fn measure_network_features(
    arm: &NetworkArm,
    weights: &Path,
    classes: usize,
    n: usize,
    min_seconds: f64,
) -> Result<f64> {
    let mut rng = Rng::new(1, "bench");
    let (values, _) = network_inputs(arm, classes, n, &mut rng);
    let model = crate::network_with_weights(arm, classes, 0, Some(weights), true)?;
    Ok(time_features(&model, &values, n, min_seconds))
}

/// Seconds of sound in the clips the audio networks are measured on (the audio datasets').
pub const BENCH_CLIP_SECONDS: f64 = 1.5;

/// Synthetic inputs as the network's adapter gives them, and labels: grey images of its side
/// scaled as it expects; documents of exactly its token length (`[CLS]` 101, random ids,
/// `[SEP]` 102: the costliest case); clips of [`BENCH_CLIP_SECONDS`] of noise at its rate.
fn network_inputs(
    arm: &NetworkArm,
    classes: usize,
    n: usize,
    rng: &mut Rng,
) -> (Vec<f32>, Vec<i64>) {
    let values = match &arm.body {
        NetworkBody::Image { input, .. } => {
            let (offset, scale) = (input.offset as f32, input.scale as f32);
            (0..n * input.side * input.side)
                .map(|_| (rng.below(256) as f32 - offset) / scale)
                .collect()
        }
        NetworkBody::Text { input, shape } => {
            let length = input.max_tokens;
            (0..n * length)
                .map(|i| match i % length {
                    0 => 101.0,
                    p if p == length - 1 => 102.0,
                    _ => (1_000 + rng.below(shape.vocab_size - 1_000)) as f32,
                })
                .collect()
        }
        NetworkBody::Audio { input, .. } => {
            let samples = (BENCH_CLIP_SECONDS * input.sample_rate as f64) as usize;
            (0..n * samples)
                .map(|_| rng.below(20_001) as f32 / 10_000.0 - 1.0)
                .collect()
        }
        NetworkBody::Patches { stem, .. } => (0..n * stem.rows * stem.cols)
            .map(|_| rng.below(20_001) as f32 / 10_000.0 - 1.0)
            .collect(),
    };
    let labels = (0..n).map(|_| rng.below(classes) as i64).collect();
    (values, labels)
}

fn time_train(
    mut model: Network,
    x: Vec<f32>,
    y: Vec<i64>,
    batch: usize,
    steps: usize,
    min_seconds: f64,
) -> f64 {
    let device = train_device();
    let width = x.len() / batch;
    let x = Tensor::<2>::from_data(TensorData::new(x, [batch, width]), &device);
    let y = Tensor::<1, Int>::from_data(TensorData::new(y, [batch]), &device);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut optim = AdamConfig::new().init();
    let mut started = Instant::now();
    let mut timed = 0usize;
    for step in 0.. {
        if step == 2 {
            started = Instant::now();
        }
        if step >= 2 {
            if timed >= steps && started.elapsed().as_secs_f64() >= min_seconds {
                break;
            }
            timed += 1;
        }
        let loss = loss_fn.forward(model.forward(x.clone()), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model, grads);
    }
    (timed * batch) as f64 / started.elapsed().as_secs_f64()
}

/// Examples per forward pass of Option 1's feature computation for `model`.
pub fn feature_chunk(model: &Network) -> usize {
    if model.sparse_features() {
        crate::features::SPARSE_BLOCK
    } else {
        crate::features::CHUNK
    }
}

fn time_features(model: &Network, values: &[f32], n: usize, min_seconds: f64) -> f64 {
    let eval = eval_device();
    let model = model.valid();
    let width = values.len() / n;
    let chunk_size = feature_chunk(&model);
    let started = Instant::now();
    let mut done = 0usize;
    while done < n || started.elapsed().as_secs_f64() < min_seconds {
        let start = done % n;
        let end = (start + chunk_size).min(n);
        let chunk = values[start * width..end * width].to_vec();
        let x = Tensor::<2>::from_data(TensorData::new(chunk, [end - start, width]), &eval);
        let _ = model.features(x).into_data();
        done += end - start;
    }
    done as f64 / started.elapsed().as_secs_f64()
}
