//! Throughput of the harness's own training step and frozen-feature extraction on synthetic
//! inputs of a model's shape, for `harness bench` (which runs the PyTorch reference beside it).

use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::TensorData;
use harness_data::Rng;
use harness_model::ClassifierConfig;

use crate::{eval_device, train_device};

/// Synthetic inputs for `config`: values from a standard normal-ish spread for patch stems,
/// ids in `1..vocab_size` (never padding) for text; labels spread over the classes.
fn inputs(config: &ClassifierConfig, n: usize, rng: &mut Rng) -> (Vec<f32>, Vec<i64>) {
    let width = config.rows * config.cols;
    let values = (0..n * width)
        .map(|_| {
            if config.vocab_size > 0 {
                (1 + rng.below(config.vocab_size - 1)) as f32
            } else {
                (rng.below(2001) as f32 - 1000.0) / 500.0
            }
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
    let width = config.rows * config.cols;
    let mut rng = Rng::new(0, "bench");
    let device = train_device();
    let (x, y) = inputs(config, batch, &mut rng);
    let x = Tensor::<2>::from_data(TensorData::new(x, [batch, width]), &device);
    let y = Tensor::<1, Int>::from_data(TensorData::new(y, [batch]), &device);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut model = crate::init_network(config, &device, 0);
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

/// Frozen-feature examples per second of one round: mean-pooled features without gradients in
/// batches of 500 (Option 1's cached path), over at least `n` examples and `min_seconds`.
pub fn measure_features(config: &ClassifierConfig, n: usize, min_seconds: f64) -> f64 {
    let width = config.rows * config.cols;
    let mut rng = Rng::new(1, "bench");
    let eval = eval_device();
    let (values, _) = inputs(config, n, &mut rng);
    let model = crate::init_network(config, &eval, 0);
    let started = Instant::now();
    let mut done = 0usize;
    while done < n || started.elapsed().as_secs_f64() < min_seconds {
        let start = done % n;
        let end = (start + 500).min(n);
        let chunk = values[start * width..end * width].to_vec();
        let x = Tensor::<2>::from_data(TensorData::new(chunk, [end - start, width]), &eval);
        let _ = model.features(x).into_data();
        done += end - start;
    }
    done as f64 / started.elapsed().as_secs_f64()
}
