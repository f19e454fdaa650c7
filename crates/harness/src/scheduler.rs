//! Which task a free worker of `harness run` takes next. Option 1 cells of one target,
//! tokenizer and frozen network read the same frozen features, which a worker computes once
//! and keeps; the rule sends such cells to the worker that holds their features, and keeps the
//! other workers off them while it does.

use std::collections::BTreeSet;

use harness_spec::Cell;

/// The frozen network whose features an Option 1 cell reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FrozenNetwork {
    /// A checkpoint the harness pre-trained, by its key.
    Pretrained { key: String },
    /// A network pre-trained elsewhere: its weights, behind the cell's input adapter.
    Downloaded {
        architecture: String,
        weights_sha256: String,
        adapter: String,
    },
    /// A network at its random initialisation (a scratch arm), which depends on the seed.
    Random {
        /// `None`: the experiment's Transformer.
        architecture: Option<String>,
        adapter: Option<String>,
        seed: u64,
    },
}

/// The frozen features an Option 1 cell reads: its target, tokenizer and frozen network.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FeatureKey {
    pub target: String,
    pub tokenizer: Option<String>,
    pub network: FrozenNetwork,
}

impl FeatureKey {
    /// The features `cell` reads, if it caches any: only cells that train their output layer
    /// alone on frozen layers do ([`Cell::trains_head_on_frozen_features`]).
    pub fn of(cell: &Cell) -> Option<FeatureKey> {
        if !cell.trains_head_on_frozen_features() {
            return None;
        }
        let network = match (&cell.pretrain_key, &cell.network) {
            (Some(key), _) => FrozenNetwork::Pretrained { key: key.clone() },
            (None, Some(arm)) => match &arm.weights_sha256 {
                Some(sha) => FrozenNetwork::Downloaded {
                    architecture: arm.architecture.clone(),
                    weights_sha256: sha.clone(),
                    adapter: arm.adapter_label(),
                },
                None => FrozenNetwork::Random {
                    architecture: Some(arm.architecture.clone()),
                    adapter: Some(arm.adapter_label()),
                    seed: cell.seed,
                },
            },
            (None, None) => FrozenNetwork::Random {
                architecture: None,
                adapter: None,
                seed: cell.seed,
            },
        };
        Some(FeatureKey {
            target: cell.target.clone(),
            tokenizer: cell.tokenizer.clone(),
            network,
        })
    }
}

/// What the choice needs to know of a waiting cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The frozen features it reads, if any.
    pub features: Option<FeatureKey>,
    /// The pre-training it starts from, if any: it can run once that checkpoint is ready.
    pub needs: Option<String>,
}

impl Waiting {
    pub fn of(cell: &Cell) -> Waiting {
        Waiting {
            features: FeatureKey::of(cell),
            needs: cell.pretrain_key.clone(),
        }
    }
}

/// The position in `queue` of the cell a free worker holding the features `holds` runs next,
/// while the other workers hold `others`; `None` when no cell can run yet (every one waits
/// for a checkpoint not in `ready`) or none is left. In order of preference:
///
/// 1. the first runnable cell that reads the features this worker holds;
/// 2. the first runnable cell that reads no features another worker holds;
/// 3. the first runnable cell.
pub fn pick(
    queue: &[Waiting],
    holds: Option<&FeatureKey>,
    others: &[Option<FeatureKey>],
    ready: &BTreeSet<String>,
) -> Option<usize> {
    let runnable = |w: &Waiting| w.needs.as_ref().is_none_or(|k| ready.contains(k));
    let held_elsewhere = |f: &FeatureKey| others.iter().flatten().any(|o| o == f);
    holds
        .and_then(|h| {
            queue
                .iter()
                .position(|w| runnable(w) && w.features.as_ref() == Some(h))
        })
        .or_else(|| {
            queue
                .iter()
                .position(|w| runnable(w) && w.features.as_ref().is_none_or(|f| !held_elsewhere(f)))
        })
        .or_else(|| queue.iter().position(runnable))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(target: &str, key: &str) -> FeatureKey {
        FeatureKey {
            target: target.into(),
            tokenizer: None,
            network: FrozenNetwork::Pretrained { key: key.into() },
        }
    }

    fn waiting(features: Option<FeatureKey>, needs: Option<&str>) -> Waiting {
        Waiting {
            features,
            needs: needs.map(str::to_string),
        }
    }

    fn ready(keys: &[&str]) -> BTreeSet<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn a_worker_keeps_the_cells_whose_features_it_holds() {
        let a = features("mnist", "a");
        let b = features("mnist", "b");
        let queue = [
            waiting(Some(b.clone()), Some("b")),
            waiting(None, None),
            waiting(Some(a.clone()), Some("a")),
        ];
        let p = pick(&queue, Some(&a), &[None], &ready(&["a", "b"]));
        assert_eq!(p, Some(2));
    }

    #[test]
    fn a_worker_leaves_alone_the_features_another_worker_holds() {
        let a = features("mnist", "a");
        let queue = [waiting(Some(a.clone()), Some("a")), waiting(None, None)];
        assert_eq!(
            pick(&queue, None, &[Some(a.clone())], &ready(&["a"])),
            Some(1)
        );
        // Once nothing else is left, it takes them too rather than idle.
        let queue = [waiting(Some(a.clone()), Some("a"))];
        assert_eq!(pick(&queue, None, &[Some(a)], &ready(&["a"])), Some(0));
    }

    #[test]
    fn a_cell_waits_for_its_checkpoint() {
        let queue = [waiting(None, Some("pending")), waiting(None, Some("done"))];
        assert_eq!(pick(&queue, None, &[], &ready(&["done"])), Some(1));
        assert_eq!(pick(&queue[..1], None, &[], &ready(&["done"])), None);
        assert_eq!(pick(&[], None, &[], &ready(&[])), None);
    }

    #[test]
    fn features_differ_by_target_tokenizer_and_random_seed() {
        let a = features("mnist", "a");
        let mut other_target = a.clone();
        other_target.target = "fashion-mnist".into();
        let mut other_tokenizer = a.clone();
        other_tokenizer.tokenizer = Some("t".into());
        assert_ne!(a, other_target);
        assert_ne!(a, other_tokenizer);
        let random = |seed| FrozenNetwork::Random {
            architecture: None,
            adapter: None,
            seed,
        };
        assert_ne!(random(0), random(1));
        // A worker holding seed 0's random features is not preferred for seed 1's cells.
        let held = FeatureKey {
            network: random(0),
            ..a.clone()
        };
        let queue = [
            waiting(
                Some(FeatureKey {
                    network: random(1),
                    ..a.clone()
                }),
                None,
            ),
            waiting(Some(held.clone()), None),
        ];
        assert_eq!(pick(&queue, Some(&held), &[], &ready(&[])), Some(1));
    }
}
