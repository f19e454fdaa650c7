//! Transfer as the lecture defines it: copy every layer except the output layer from a
//! pre-trained network; Option 1 freezes the copied layers, Option 2 trains everything.

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
    /// Random initialisation; `freeze` gives the frozen-random-backbone control (Option 1).
    Scratch { freeze: bool },
    /// Stem and backbone copied from a checkpoint, head new; `freeze` is Option 1.
    Pretrained {
        checkpoint: Checkpoint,
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
/// them (Option 1) or leaves them trainable (Option 2). The head always stays new and trainable.
pub fn load_pretrained(mut model: Classifier, transfer: &Transfer) -> anyhow::Result<Classifier> {
    let freeze = match transfer {
        Transfer::Scratch { freeze } => *freeze,
        Transfer::Pretrained { checkpoint, freeze } => {
            model.stem = model
                .stem
                .try_load_file(checkpoint.stem_file())
                .map_err(|e| {
                    anyhow::anyhow!("loading {}: {e:?}", checkpoint.stem_file().display())
                })?;
            model.backbone = model
                .backbone
                .try_load_file(checkpoint.backbone_file())
                .map_err(|e| {
                    anyhow::anyhow!("loading {}: {e:?}", checkpoint.backbone_file().display())
                })?;
            *freeze
        }
    };
    if freeze {
        model.stem = model.stem.freeze();
        model.backbone = model.backbone.freeze();
    }
    Ok(model)
}
