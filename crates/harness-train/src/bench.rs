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

/// Examples per second of one model, each the median of the rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// Training steps (forward, backward, Adam) over batches of the benchmark's size.
    pub train: f64,
    /// Mean-pooled features without gradients, in batches of 500 (Option 1's cached path).
    pub features: f64,
}

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

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Measures `config`: `steps` training steps of `batch` examples after 2 warm-up steps, and
/// feature extraction over `steps × batch` examples, `rounds` times each.
pub fn measure(config: &ClassifierConfig, batch: usize, steps: usize, rounds: usize) -> Throughput {
    let width = config.rows * config.cols;
    let mut rng = Rng::new(0, "bench");
    let device = train_device();
    let (x, y) = inputs(config, batch, &mut rng);
    let x = Tensor::<2>::from_data(TensorData::new(x, [batch, width]), &device);
    let y = Tensor::<1, Int>::from_data(TensorData::new(y, [batch]), &device);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut train = Vec::new();
    for _ in 0..rounds {
        let mut model = crate::init_network(config, &device, 0);
        let mut optim = AdamConfig::new().init();
        let mut started = Instant::now();
        for step in 0..steps + 2 {
            if step == 2 {
                started = Instant::now();
            }
            let loss = loss_fn.forward(model.forward(x.clone()), y.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-3, model, grads);
        }
        train.push((steps * batch) as f64 / started.elapsed().as_secs_f64());
    }

    let eval = eval_device();
    let n = steps * batch;
    let (values, _) = inputs(config, n, &mut rng);
    let model = crate::init_network(config, &eval, 0);
    let mut features = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        for start in (0..n).step_by(500) {
            let end = (start + 500).min(n);
            let chunk = values[start * width..end * width].to_vec();
            let x = Tensor::<2>::from_data(TensorData::new(chunk, [end - start, width]), &eval);
            let f = model.features(x);
            let _ = f.into_data();
        }
        features.push(n as f64 / started.elapsed().as_secs_f64());
    }
    Throughput {
        train: median(train),
        features: median(features),
    }
}
