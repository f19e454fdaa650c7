//! Option 1 on cached features. Under Option 1 the stem and backbone are frozen, so every
//! example's mean-pooled backbone output is a constant: it is computed once per (frozen
//! network, target) and only the new output layer trains, on those features.
//!
//! Features are always computed for a whole split in fixed chunks of [`CHUNK`] examples, never
//! for "whatever a cell needed first", so a feature's value cannot depend on which cells ran
//! before it: a resumed run and a fresh run give the same rows.

use std::collections::HashMap;

use burn::prelude::*;
use burn::tensor::TensorData;
use harness_data::{Inputs, Normalisation};
use harness_model::Network;
use harness_spec::Cell;
use serde::Serialize;

use crate::batches::batch;
use crate::eval_device;

/// Examples per forward pass when computing features.
pub const CHUNK: usize = 500;

/// Mean-pooled backbone features of every example of one split, `dim` values each.
#[derive(Debug, Clone)]
pub struct SplitFeatures {
    pub dim: usize,
    pub values: Vec<f32>,
}

impl SplitFeatures {
    /// Features of every example of `set` under the frozen layers of `model`.
    pub fn compute(model: &Network, set: &Inputs, norm: &Normalisation) -> SplitFeatures {
        let device = eval_device();
        let model = model.valid();
        let all: Vec<usize> = (0..set.len()).collect();
        let mut values = Vec::new();
        let mut dim = 0;
        for chunk in all.chunks(CHUNK) {
            let (x, _) = batch(set, norm, chunk, &device);
            let features = model.features(x);
            dim = features.dims()[1];
            values.extend(
                features
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .expect("float features"),
            );
        }
        SplitFeatures { dim, values }
    }

    /// The features of the examples at `indices`, `[indices.len(), dim]`, on `device`.
    pub fn batch(&self, indices: &[usize], device: &Device) -> Tensor<2> {
        let mut rows = Vec::with_capacity(indices.len() * self.dim);
        for &i in indices {
            rows.extend_from_slice(&self.values[i * self.dim..(i + 1) * self.dim]);
        }
        Tensor::<2>::from_data(TensorData::new(rows, [indices.len(), self.dim]), device)
    }
}

/// The frozen features of a target's training pool and test set.
#[derive(Debug, Clone)]
pub struct FrozenFeatures {
    pub pool: SplitFeatures,
    pub test: SplitFeatures,
}

/// Frozen features kept across cells: the cells of one checkpoint and target share them
/// whatever their n_train and seed; a scratch Option 1 cell's frozen random network depends
/// on its seed, so those are shared across n_train only.
#[derive(Debug, Default)]
pub struct FeatureCache {
    entries: HashMap<String, FrozenFeatures>,
    /// Splits computed so far (for reporting and tests).
    pub computed: usize,
}

impl FeatureCache {
    /// The features for `cell`, computing them with its frozen `model` the first time.
    pub fn get_or_compute(
        &mut self,
        cell: &Cell,
        model: &Network,
        train: &Inputs,
        test: &Inputs,
        norm: &Normalisation,
    ) -> &FrozenFeatures {
        let key = frozen_key(cell);
        if !self.entries.contains_key(&key) {
            self.computed += 1;
            let features = FrozenFeatures {
                pool: SplitFeatures::compute(model, train, norm),
                test: SplitFeatures::compute(model, test, norm),
            };
            self.entries.insert(key.clone(), features);
        }
        &self.entries[&key]
    }
}

/// What determines a cell's frozen layers and the examples they see: the checkpoint or the
/// network's weights (or, from scratch, the seed of the random initialisation), the
/// architecture, and the target's data and tokenizer. The head, the subset and the option do
/// not enter.
fn frozen_key(cell: &Cell) -> String {
    #[derive(Serialize)]
    struct Key<'a> {
        checkpoint: &'a Option<String>,
        scratch_seed: Option<u64>,
        model: &'a harness_spec::ModelSpec,
        network: &'a Option<harness_spec::NetworkArm>,
        target: &'a str,
        content: &'a str,
        tokenizer: &'a Option<String>,
    }
    let pretrained =
        cell.pretrain_key.is_some() || cell.network.as_ref().is_some_and(|n| n.weights.is_some());
    serde_json::to_string(&Key {
        checkpoint: &cell.pretrain_key,
        scratch_seed: (!pretrained).then_some(cell.seed),
        model: &cell.model,
        network: &cell.network,
        target: &cell.target,
        content: &cell.target_content,
        tokenizer: &cell.tokenizer,
    })
    .expect("keys serialise")
}
