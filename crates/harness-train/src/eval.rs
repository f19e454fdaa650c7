//! Evaluation without gradients: accuracy, macro-F1 and mean cross-entropy.

use burn::nn::Linear;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use harness_data::{Inputs, Normalisation};
use harness_model::Network;

use crate::batches::{batch, label_tensor};
use crate::eval_device;
use crate::features::SplitFeatures;

/// Metrics of a network on a set of examples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    pub accuracy: f64,
    pub macro_f1: f64,
    pub loss: f64,
}

impl Evaluation {
    /// What a run that is not validated (a refit) reports for its validation: NaN.
    pub fn not_measured() -> Evaluation {
        Evaluation {
            accuracy: f64::NAN,
            macro_f1: f64::NAN,
            loss: f64::NAN,
        }
    }
}

const EVAL_BATCH: usize = 500;

/// Evaluates `model` on the examples of `set` at `indices`.
pub fn evaluate(
    model: &Network,
    set: &Inputs,
    norm: &Normalisation,
    indices: &[usize],
    classes: usize,
) -> Evaluation {
    let device = eval_device();
    let model = model.valid();
    score(set.labels(), indices, classes, |chunk| {
        let (x, y) = batch(set, norm, chunk, &device);
        (model.forward(x), y)
    })
}

/// Evaluates an output layer on frozen features (Option 1's cached path); `labels` are the
/// labels of the split the features belong to.
pub fn evaluate_head(
    head: &Linear,
    features: &SplitFeatures,
    labels: &[u16],
    indices: &[usize],
    classes: usize,
) -> Evaluation {
    let device = eval_device();
    let head = head.valid();
    score(labels, indices, classes, |chunk| {
        let y = label_tensor(labels, chunk, &device);
        (head.forward(features.batch(chunk, &device)), y)
    })
}

/// Accuracy, macro-F1 and mean loss of the logits `forward` gives, chunk by chunk.
fn score(
    labels: &[u16],
    indices: &[usize],
    classes: usize,
    mut forward: impl FnMut(&[usize]) -> (Tensor<2>, Tensor<1, Int>),
) -> Evaluation {
    let loss_fn = CrossEntropyLossConfig::new().init(&eval_device());
    let mut predictions = Vec::with_capacity(indices.len());
    let mut loss_sum = 0.0f64;
    for chunk in indices.chunks(EVAL_BATCH) {
        let (logits, y) = forward(chunk);
        let loss: f32 = loss_fn.forward(logits.clone(), y).into_scalar::<f32>();
        loss_sum += loss as f64 * chunk.len() as f64;
        let argmax = logits
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .expect("int predictions");
        predictions.extend(argmax.into_iter().map(|p| p as usize));
    }
    let truth: Vec<usize> = indices.iter().map(|&i| labels[i] as usize).collect();
    let correct = predictions
        .iter()
        .zip(&truth)
        .filter(|(p, t)| p == t)
        .count();
    Evaluation {
        accuracy: correct as f64 / indices.len().max(1) as f64,
        macro_f1: macro_f1(&predictions, &truth, classes),
        loss: loss_sum / indices.len().max(1) as f64,
    }
}

/// Unweighted mean over classes of F1 = 2·TP / (2·TP + FP + FN); a class never present nor
/// predicted counts as 0, as in scikit-learn's default.
pub fn macro_f1(predictions: &[usize], truth: &[usize], classes: usize) -> f64 {
    let mut tp = vec![0usize; classes];
    let mut fp = vec![0usize; classes];
    let mut fn_ = vec![0usize; classes];
    for (&p, &t) in predictions.iter().zip(truth) {
        if p == t {
            tp[t] += 1;
        } else {
            fp[p] += 1;
            fn_[t] += 1;
        }
    }
    let sum: f64 = (0..classes)
        .map(|c| {
            let denom = 2 * tp[c] + fp[c] + fn_[c];
            if denom == 0 {
                0.0
            } else {
                2.0 * tp[c] as f64 / denom as f64
            }
        })
        .sum();
    sum / classes as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_f1_matches_a_hand_computed_value() {
        // class 0: tp 1, fp 1, fn 0 → 2/3; class 1: tp 1, fp 0, fn 1 → 2/3; class 2: tp 1 → 1.
        let f1 = macro_f1(&[0, 0, 1, 2], &[0, 1, 1, 2], 3);
        assert!((f1 - (2.0 / 3.0 + 2.0 / 3.0 + 1.0) / 3.0).abs() < 1e-12);
        assert_eq!(macro_f1(&[0, 1], &[0, 1], 2), 1.0);
    }
}
