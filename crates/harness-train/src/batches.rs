//! Turning dataset examples into tensors.

use burn::prelude::*;
use burn::tensor::TensorData;
use harness_data::{Inputs, Normalisation};

/// Normalised inputs `[n, rows·cols]` and labels `[n]` of the examples at `indices`.
pub fn batch(
    set: &Inputs,
    norm: &Normalisation,
    indices: &[usize],
    device: &Device,
) -> (Tensor<2>, Tensor<1, Int>) {
    let features = norm.features(set, indices);
    let width = set.width();
    let x = Tensor::<2>::from_data(TensorData::new(features, [indices.len(), width]), device);
    (x, label_tensor(set.labels(), indices, device))
}

/// The labels at `indices`, `[indices.len()]`.
pub fn label_tensor(labels: &[u16], indices: &[usize], device: &Device) -> Tensor<1, Int> {
    let y: Vec<i64> = indices.iter().map(|&i| labels[i] as i64).collect();
    Tensor::<1, Int>::from_data(TensorData::new(y, [indices.len()]), device)
}
