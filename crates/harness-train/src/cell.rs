//! One cell: the paired subset, the network as the transfer option says, fine-tuning with
//! early stopping on the validation split, and one evaluation on the fixed test set.

use std::time::Instant;

use anyhow::Result;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use harness_data::{Dataset, Normalisation, Rng, training_subset};
use harness_model::{Checkpoint, Classifier, Transfer, load_pretrained};
use harness_spec::Cell;

use crate::batches::batch;
use crate::eval::{Evaluation, evaluate};
use crate::{TrainEvent, train_device};

/// How a cell ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellStatus {
    Ok,
    /// The training loss became NaN or infinite.
    Diverged,
}

impl CellStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CellStatus::Ok => "ok",
            CellStatus::Diverged => "diverged",
        }
    }
}

/// The measured result of one cell.
#[derive(Debug, Clone)]
pub struct CellOutcome {
    pub status: CellStatus,
    pub test: Evaluation,
    pub test_accuracy: f64,
    pub validation_accuracy: f64,
    /// Step whose weights were kept (best validation accuracy), and the same in epochs.
    pub best_step: usize,
    pub best_epoch: f64,
    pub steps_run: usize,
    pub n_fit: usize,
    pub n_validation: usize,
    pub train_seconds: f64,
    pub examples_per_second: f64,
    /// Indices (into the target's training pool) of the subset, for paired-design checks.
    pub subset: Vec<usize>,
    /// The network that was evaluated.
    pub model: Classifier,
}

/// Builds the cell's starting network: seeded fresh weights, then the transfer applied.
pub fn initial_model(
    cell: &Cell,
    target: &Dataset,
    checkpoint: Option<&Checkpoint>,
) -> Result<Classifier> {
    let config = crate::model_config(target, &cell.model)?;
    // Every arm of one seed draws the same fresh weights, so the new head starts identical
    // whether the rest is copied or not.
    let model = config.init_seeded(&train_device(), cell.seed);
    let freeze = cell.option == 1;
    let transfer = match checkpoint {
        Some(c) => Transfer::Pretrained {
            checkpoint: c.clone(),
            freeze,
        },
        None => Transfer::Scratch { freeze },
    };
    load_pretrained(model, &transfer)
}

/// Runs one cell to completion.
pub fn run_cell(
    cell: &Cell,
    target: &Dataset,
    checkpoint: Option<&Checkpoint>,
    events: &mut dyn FnMut(TrainEvent),
) -> Result<CellOutcome> {
    anyhow::ensure!(
        cell.pretrain_key.is_none() == checkpoint.is_none(),
        "cell {} needs {} checkpoint",
        cell.fingerprint,
        if cell.pretrain_key.is_some() {
            "a"
        } else {
            "no"
        }
    );
    let started = Instant::now();
    let ft = &cell.finetune;
    let classes = target.classes.len();
    let pool: Vec<usize> = (0..target.train.len()).collect();
    let subset = training_subset(
        &pool,
        target.train.labels(),
        classes,
        cell.n_train,
        cell.seed,
        ft.validation_fraction,
    )?;
    let norm = Normalisation::of_pool(&target.train);
    let device = train_device();

    let mut model = initial_model(cell, target, checkpoint)?;
    let lr = if cell.option == 1 {
        ft.option1_learning_rate
    } else {
        ft.option2_learning_rate
    };
    let mut optim = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);

    let steps_per_epoch = subset.fit.len().div_ceil(ft.batch_size);
    let total = (steps_per_epoch * ft.epochs).max(ft.min_steps);
    let eval_every = total.div_ceil(ft.evaluations).max(1);
    let mut order = subset.fit.clone();
    let mut rng = Rng::new(cell.seed, "finetune-order");
    let mut cursor = order.len();

    let score = |e: &Evaluation| (e.accuracy, -e.loss);
    let first = evaluate(&model, &target.train, &norm, &subset.validation, classes);
    let mut best = (first, 0usize, model.clone());
    let mut since_best = 0;
    let mut status = CellStatus::Ok;
    let mut step = 0;
    let mut examples_seen = 0usize;
    while step < total {
        if cursor >= order.len() {
            rng.shuffle(&mut order);
            cursor = 0;
        }
        let end = (cursor + ft.batch_size).min(order.len());
        let (x, y) = batch(&target.train, &norm, &order[cursor..end], &device);
        examples_seen += end - cursor;
        cursor = end;
        let loss = loss_fn.forward(model.forward(x), y);
        let value: f32 = loss.clone().into_scalar::<f32>();
        if !value.is_finite() {
            status = CellStatus::Diverged;
            break;
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
        step += 1;
        events(TrainEvent::CellStep { step, total });
        if step % eval_every == 0 || step == total {
            let eval = evaluate(&model, &target.train, &norm, &subset.validation, classes);
            if score(&eval) > score(&best.0) {
                best = (eval, step, model.clone());
                since_best = 0;
            } else {
                since_best += 1;
                if since_best >= ft.patience {
                    break;
                }
            }
        }
    }
    let train_seconds_fit = started.elapsed().as_secs_f64();
    let (validation, best_step, best_model) = best;
    let test_indices: Vec<usize> = (0..target.test.len()).collect();
    let test = evaluate(&best_model, &target.test, &norm, &test_indices, classes);
    Ok(CellOutcome {
        status,
        test,
        test_accuracy: test.accuracy,
        validation_accuracy: validation.accuracy,
        best_step,
        best_epoch: best_step as f64 / steps_per_epoch as f64,
        steps_run: step,
        n_fit: subset.fit.len(),
        n_validation: subset.validation.len(),
        train_seconds: started.elapsed().as_secs_f64(),
        examples_per_second: examples_seen as f64 / train_seconds_fit.max(1e-9),
        subset: subset.all(),
        model: best_model,
    })
}
