//! Transfer as the lecture defines it: copy every layer except the output layer from a
//! pre-trained network; Option 1 freezes the copied layers, Option 2 trains everything. Across
//! modalities the source's stem cannot take the target's input, so only the backbone is copied
//! and the stem starts fresh (and trains, under either option).

use std::path::{Path, PathBuf};

use burn::module::Module;

use crate::Classifier;

/// A saved pre-trained network: its stem and backbone (the head is never transferred).
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub dir: PathBuf,
}

impl Checkpoint {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Checkpoint { dir: dir.into() }
    }

    pub fn stem_file(&self) -> PathBuf {
        self.dir.join("stem.bpk")
    }

    pub fn backbone_file(&self) -> PathBuf {
        self.dir.join("backbone.bpk")
    }

    pub fn exists(&self) -> bool {
        self.stem_file().is_file() && self.backbone_file().is_file()
    }
}

/// How a cell's network starts.
#[derive(Debug, Clone)]
pub enum Transfer {
    /// Random initialisation; `freeze` gives the frozen-random-backbone control (Option 1),
    /// whose stem is frozen too unless `train_stem` (the partner of a cross-modal Option 1
    /// arm, whose fresh stem trains).
    Scratch { freeze: bool, train_stem: bool },
    /// Backbone copied from a checkpoint, and its stem too when `copy_stem` (same modality);
    /// head new. `freeze` is Option 1: it freezes what was copied.
    Pretrained {
        checkpoint: Checkpoint,
        copy_stem: bool,
        freeze: bool,
    },
}

/// Writes the stem and backbone of `model` into `dir` (created if needed).
pub fn save_pretrained(model: &Classifier, dir: &Path) -> anyhow::Result<Checkpoint> {
    std::fs::create_dir_all(dir)?;
    let checkpoint = Checkpoint::new(dir);
    model
        .stem
        .clone()
        .save_file(checkpoint.stem_file())
        .map_err(|e| anyhow::anyhow!("saving the stem: {e:?}"))?;
    model
        .backbone
        .clone()
        .save_file(checkpoint.backbone_file())
        .map_err(|e| anyhow::anyhow!("saving the backbone: {e:?}"))?;
    Ok(checkpoint)
}

/// Applies `transfer` to a freshly initialised `model`: loads the copied layers, then freezes
/// them (Option 1) or leaves them trainable (Option 2). The head, and a stem that was not
/// copied, stay new and trainable. Option 1 from scratch freezes the random stem and backbone,
/// or the backbone alone when its stem trains.
pub fn load_pretrained(mut model: Classifier, transfer: &Transfer) -> anyhow::Result<Classifier> {
    let (freeze_stem, freeze_backbone) = match transfer {
        Transfer::Scratch { freeze, train_stem } => (*freeze && !*train_stem, *freeze),
        Transfer::Pretrained {
            checkpoint,
            copy_stem,
            freeze,
        } => {
            if *copy_stem {
                model.stem = model
                    .stem
                    .try_load_file(checkpoint.stem_file())
                    .map_err(|e| {
                        anyhow::anyhow!("loading {}: {e:?}", checkpoint.stem_file().display())
                    })?;
            }
            model.backbone = model
                .backbone
                .try_load_file(checkpoint.backbone_file())
                .map_err(|e| {
                    anyhow::anyhow!("loading {}: {e:?}", checkpoint.backbone_file().display())
                })?;
            (*freeze && *copy_stem, *freeze)
        }
    };
    if freeze_stem {
        model.stem = model.stem.freeze();
    }
    if freeze_backbone {
        model.backbone = model.backbone.freeze();
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use burn::optim::{AdamConfig, GradientsParams};
    use burn::prelude::*;
    use harness_spec::Activation;

    use super::*;
    use crate::{BackboneConfig, ClassifierConfig, ParamSnapshot, StemConfig, snapshot};

    fn config() -> ClassifierConfig {
        ClassifierConfig::new(
            StemConfig::Image { side: 8, patch: 4 },
            BackboneConfig {
                d_model: 8,
                n_layers: 1,
                n_heads: 2,
                d_ff: 16,
                activation: Activation::Relu,
                dropout: 0.0,
            },
            3,
        )
    }

    fn part(snap: &ParamSnapshot, prefix: &str) -> ParamSnapshot {
        snap.iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// One Adam step on a cross-entropy loss of random inputs.
    fn step(model: Classifier, device: &Device) -> Classifier {
        let input = Tensor::<2>::random([4, 64], burn::tensor::Distribution::Default, device);
        let labels = Tensor::<1, Int>::from_ints([0, 1, 2, 0], device);
        let loss = burn::nn::loss::CrossEntropyLossConfig::new()
            .init(device)
            .forward(model.forward(input), labels);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let mut optim = AdamConfig::new().init();
        optim.step(1e-2, model, grads)
    }

    #[test]
    fn the_trained_stem_control_freezes_the_random_backbone_and_trains_stem_and_head() {
        let _serial = crate::serial();
        let device = Device::flex().autodiff();
        let transfer = Transfer::Scratch {
            freeze: true,
            train_stem: true,
        };
        let model = load_pretrained(config().init_seeded(&device, 3), &transfer).unwrap();
        let before = snapshot(&model);
        let after = snapshot(&step(model, &device));
        assert_eq!(part(&after, "backbone"), part(&before, "backbone"));
        for prefix in ["stem", "head"] {
            assert_ne!(
                part(&after, prefix),
                part(&before, prefix),
                "{prefix} trains"
            );
        }
        // The plain scratch Option 1 arm freezes its stem too.
        let plain = Transfer::Scratch {
            freeze: true,
            train_stem: false,
        };
        let model = load_pretrained(config().init_seeded(&device, 3), &plain).unwrap();
        let after = snapshot(&step(model, &device));
        assert_eq!(part(&after, "stem"), part(&before, "stem"));
    }

    #[test]
    fn option1_loads_the_saved_stem_and_backbone_and_trains_only_the_head() {
        let _serial = crate::serial();
        let device = Device::flex().autodiff();
        let dir = tempfile::tempdir().unwrap();
        let source = config().init_seeded(&device, 1);
        let checkpoint = save_pretrained(&source, dir.path()).unwrap();
        let saved = snapshot(&source);
        let transfer = Transfer::Pretrained {
            checkpoint,
            copy_stem: true,
            freeze: true,
        };
        let model = load_pretrained(config().init_seeded(&device, 2), &transfer).unwrap();
        let loaded = snapshot(&model);
        for prefix in ["stem", "backbone"] {
            assert_eq!(
                part(&loaded, prefix),
                part(&saved, prefix),
                "{prefix} copied"
            );
        }
        let trained = snapshot(&step(model, &device));
        for prefix in ["stem", "backbone"] {
            assert_eq!(
                part(&trained, prefix),
                part(&saved, prefix),
                "{prefix} frozen"
            );
        }
        assert_ne!(
            part(&trained, "head"),
            part(&loaded, "head"),
            "the head trains"
        );
    }
}
