//! Option 1 on cached features. Under Option 1 the stem and backbone are frozen, so every
//! example's mean-pooled backbone output is a constant: it is computed once per (frozen
//! network, target) and only the new output layer trains, on those features.
//!
//! Features are always computed in fixed blocks of consecutive examples, never for "whatever a
//! cell needed first", so a feature's value cannot depend on which cells ran before it: a
//! resumed run and a fresh run give the same rows. Cheap networks compute whole splits in
//! blocks of [`CHUNK`]; costly ones ([`Network::sparse_features`]: BERT, CREPE) compute only
//! the blocks of [`SPARSE_BLOCK`] examples that hold an example some cell uses.

use std::collections::HashMap;

use burn::prelude::*;
use burn::tensor::TensorData;
use harness_data::{Inputs, Normalisation};
use harness_model::Network;
use harness_spec::Cell;
use serde::Serialize;

use crate::batches::batch;
use crate::eval_device;

/// Examples per forward pass when computing the features of a whole split.
pub const CHUNK: usize = 500;

/// Examples per block when only the blocks cells use are computed.
pub const SPARSE_BLOCK: usize = 16;

/// Mean-pooled backbone features of the examples of one split, `dim` values each; the blocks
/// not computed yet hold no values.
#[derive(Debug, Clone)]
pub struct SplitFeatures {
    pub dim: usize,
    pub values: Vec<f32>,
    /// Examples per block.
    block: usize,
    /// Which blocks are computed.
    done: Vec<bool>,
}

impl SplitFeatures {
    /// Features of every example of `set` under the frozen layers of `model`.
    pub fn compute(model: &Network, set: &Inputs, norm: &Normalisation) -> SplitFeatures {
        let mut features = SplitFeatures::empty(set.len(), CHUNK);
        let all: Vec<usize> = (0..set.len()).collect();
        features.ensure(model, set, norm, &all);
        features
    }

    /// No block computed yet, for a split of `len` examples.
    fn empty(len: usize, block: usize) -> SplitFeatures {
        SplitFeatures {
            dim: 0,
            values: Vec::new(),
            block,
            done: vec![false; len.div_ceil(block)],
        }
    }

    /// Examples computed so far.
    pub fn computed(&self, len: usize) -> usize {
        (0..len).filter(|i| self.done[i / self.block]).count()
    }

    /// Computes every block holding one of `indices` that is not computed yet.
    fn ensure(&mut self, model: &Network, set: &Inputs, norm: &Normalisation, indices: &[usize]) {
        let mut missing: Vec<usize> = indices
            .iter()
            .map(|&i| i / self.block)
            .filter(|&b| !self.done[b])
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return;
        }
        let device = eval_device();
        let model = model.valid();
        for b in missing {
            let chunk: Vec<usize> =
                (b * self.block..((b + 1) * self.block).min(set.len())).collect();
            let (x, _) = batch(set, norm, &chunk, &device);
            let features = model.features(x);
            let dim = features.dims()[1];
            if self.values.is_empty() {
                self.dim = dim;
                self.values = vec![0.0; set.len() * dim];
            }
            let values = features
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("float features");
            let start = chunk[0] * dim;
            self.values[start..start + values.len()].copy_from_slice(&values);
            self.done[b] = true;
        }
    }

    /// The features of the examples at `indices`, row after row.
    pub fn rows(&self, indices: &[usize]) -> Vec<f32> {
        let mut rows = Vec::with_capacity(indices.len() * self.dim);
        for &i in indices {
            assert!(
                self.done[i / self.block],
                "features of example {i} were never computed"
            );
            rows.extend_from_slice(&self.values[i * self.dim..(i + 1) * self.dim]);
        }
        rows
    }

    /// The features of the examples at `indices`, `[indices.len(), dim]`, on `device`.
    pub fn batch(&self, indices: &[usize], device: &Device) -> Tensor<2> {
        let rows = self.rows(indices);
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
    /// Feature sets (one per frozen network and target) begun so far (for reporting and tests).
    pub computed: usize,
}

impl FeatureCache {
    /// The features for `cell`, computing them with its frozen `model` the first time: the
    /// whole test set, and the training-pool examples `used` (the cell's subset) or, for a cheap
    /// network, the whole pool.
    pub fn get_or_compute(
        &mut self,
        cell: &Cell,
        model: &Network,
        (train, test): (&Inputs, &Inputs),
        used: &[usize],
        norm: &Normalisation,
    ) -> &FrozenFeatures {
        let key = frozen_key(cell);
        let sparse = model.sparse_features();
        let computed = &mut self.computed;
        let entry = self.entries.entry(key).or_insert_with(|| {
            *computed += 1;
            let block = if sparse { SPARSE_BLOCK } else { CHUNK };
            FrozenFeatures {
                pool: SplitFeatures::empty(train.len(), block),
                test: SplitFeatures::empty(test.len(), block),
            }
        });
        let all = |n: usize| (0..n).collect::<Vec<usize>>();
        entry.test.ensure(model, test, norm, &all(test.len()));
        if sparse {
            entry.pool.ensure(model, train, norm, used);
        } else {
            entry.pool.ensure(model, train, norm, &all(train.len()));
        }
        entry
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
