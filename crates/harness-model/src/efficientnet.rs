//! EfficientNet-Lite (Tan & Le 2019; the "Lite" variants of tensorflow/tpu drop squeeze-and-
//! excitation and use ReLU6), as a burn module whose parameter names follow the PyTorch files of
//! lukemelas/EfficientNet-PyTorch with the leading `_` of each name dropped, so that a published
//! `.pth` file loads through burn-store with one key remapping ([`WEIGHT_KEY_REMAP`]).
//!
//! What is copied exactly from the original, because each changes the numbers: BatchNorm
//! epsilon 1e-3, TensorFlow "same" padding (the odd pixel of a strided convolution padded at the
//! bottom and right), ReLU6, no convolution biases, and inputs scaled as `(x − 127) / 128`
//! (that scaling belongs to the input adapter, not to this module).

use std::path::Path;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::store::{ApplyError, ApplyResult, ModuleSnapshot, PytorchStore};

/// Key remapping from the original tensor names to this module's: `_blocks.3._bn1.weight` →
/// `blocks.3.bn1.weight`.
pub const WEIGHT_KEY_REMAP: (&str, &str) = (r"(^|\.)_", "$1");

/// One stage of MBConv blocks: `repeats` blocks of kernel `kernel`, expansion `expand`, `out`
/// output channels; the first block of the stage has stride `stride`, the others 1.
#[derive(Config, Debug, PartialEq)]
pub struct MbStageConfig {
    pub repeats: usize,
    pub kernel: usize,
    pub stride: usize,
    pub expand: usize,
    pub out: usize,
}

/// Everything that determines the shape of an [`EfficientNet`].
#[derive(Config, Debug)]
pub struct EfficientNetConfig {
    /// Input channels (3: RGB).
    #[config(default = 3)]
    pub in_channels: usize,
    /// Channels of the stem convolution (3×3, stride 2).
    pub stem: usize,
    pub stages: Vec<MbStageConfig>,
    /// Channels of the 1×1 head convolution, and so of the pooled features.
    pub head: usize,
    /// Classes of the output layer.
    pub classes: usize,
    #[config(default = 1e-3)]
    pub bn_epsilon: f64,
    /// PyTorch's convention: running = (1 − momentum)·running + momentum·batch.
    #[config(default = 0.01)]
    pub bn_momentum: f64,
    /// Draw convolutions as the original implementation does (TensorFlow's and timm's
    /// EfficientNet): normal(0, √(2 / fan_out)), fan_out = k²·out / groups. burn's default lets
    /// activations vanish through the ~50 layers of a random network.
    #[config(default = false)]
    pub original_init: bool,
}

impl EfficientNetConfig {
    /// EfficientNet-Lite0 with `classes` outputs (ImageNet: 1,000): 4.65 M parameters.
    pub fn lite0(classes: usize) -> Self {
        let stage = |repeats, kernel, stride, expand, out| MbStageConfig {
            repeats,
            kernel,
            stride,
            expand,
            out,
        };
        EfficientNetConfig::new(
            32,
            vec![
                stage(1, 3, 1, 1, 16),
                stage(2, 3, 2, 6, 24),
                stage(2, 5, 2, 6, 40),
                stage(3, 3, 2, 6, 80),
                stage(3, 5, 1, 6, 112),
                stage(4, 5, 2, 6, 192),
                stage(1, 3, 1, 6, 320),
            ],
            1280,
            classes,
        )
    }

    /// Builds the network with every parameter drawn now from `seed` (burn's initialisers).
    pub fn init_seeded(&self, device: &Device, seed: u64) -> EfficientNet {
        device.seed(seed);
        let model = self.init(device);
        crate::materialise(&model);
        model
    }

    fn init(&self, device: &Device) -> EfficientNet {
        let bn = |channels: usize| {
            BatchNormConfig::new(channels)
                .with_epsilon(self.bn_epsilon)
                .with_momentum(self.bn_momentum)
                .init(device)
        };
        let conv = |cin: usize, cout: usize, kernel: usize, stride: usize, groups: usize| {
            let config = Conv2dConfig::new([cin, cout], [kernel, kernel])
                .with_stride([stride, stride])
                .with_groups(groups)
                .with_padding(PaddingConfig2d::Same)
                .with_bias(false);
            let config = if self.original_init {
                let fan_out = (kernel * kernel * cout / groups) as f64;
                config.with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: (2.0 / fan_out).sqrt(),
                })
            } else {
                config
            };
            config.init(device)
        };
        let mut blocks = Vec::new();
        let mut cin = self.stem;
        for stage in &self.stages {
            for i in 0..stage.repeats {
                let stride = if i == 0 { stage.stride } else { 1 };
                let mid = cin * stage.expand;
                let (expand_conv, bn0) = if stage.expand == 1 {
                    (None, None)
                } else {
                    (Some(conv(cin, mid, 1, 1, 1)), Some(bn(mid)))
                };
                blocks.push(MbConv {
                    expand_conv,
                    bn0,
                    depthwise_conv: conv(mid, mid, stage.kernel, stride, mid),
                    bn1: bn(mid),
                    project_conv: conv(mid, stage.out, 1, 1, 1),
                    bn2: bn(stage.out),
                    residual: stride == 1 && cin == stage.out,
                });
                cin = stage.out;
            }
        }
        EfficientNet {
            conv_stem: conv(self.in_channels, self.stem, 3, 2, 1),
            bn0: bn(self.stem),
            blocks,
            conv_head: conv(cin, self.head, 1, 1, 1),
            bn1: bn(self.head),
            fc: LinearConfig::new(self.head, self.classes).init(device),
        }
    }
}

fn relu6(x: Tensor<4>) -> Tensor<4> {
    x.clamp(0.0, 6.0)
}

/// Inverted residual block without squeeze-and-excitation: expand 1×1 (absent when the
/// expansion is 1) → BN → ReLU6 → depthwise k×k → BN → ReLU6 → project 1×1 → BN, plus the input
/// when the stride is 1 and the width unchanged.
#[derive(Module, Debug)]
pub struct MbConv {
    pub expand_conv: Option<Conv2d>,
    pub bn0: Option<BatchNorm>,
    pub depthwise_conv: Conv2d,
    pub bn1: BatchNorm,
    pub project_conv: Conv2d,
    pub bn2: BatchNorm,
    pub residual: bool,
}

impl MbConv {
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let mut x = input.clone();
        if let (Some(conv), Some(bn)) = (&self.expand_conv, &self.bn0) {
            x = relu6(bn.forward(conv.forward(x)));
        }
        x = relu6(self.bn1.forward(self.depthwise_conv.forward(x)));
        x = self.bn2.forward(self.project_conv.forward(x));
        if self.residual { x + input } else { x }
    }
}

/// EfficientNet-Lite: stem, MBConv blocks, 1×1 head convolution, global average pooling and
/// the output layer `fc`.
#[derive(Module, Debug)]
pub struct EfficientNet {
    pub conv_stem: Conv2d,
    pub bn0: BatchNorm,
    pub blocks: Vec<MbConv>,
    pub conv_head: Conv2d,
    pub bn1: BatchNorm,
    pub fc: Linear,
}

impl EfficientNet {
    /// Globally average-pooled head features, `[batch, head]`, of scaled images
    /// `[batch, channels, height, width]`.
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = relu6(self.bn0.forward(self.conv_stem.forward(images)));
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = relu6(self.bn1.forward(self.conv_head.forward(x)));
        let [batch, channels, _, _] = x.dims();
        x.mean_dim(3).mean_dim(2).reshape([batch, channels])
    }

    /// Class logits, `[batch, classes]` (dropout before `fc` is an identity at inference and
    /// is not used in training here either).
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.fc.forward(self.features(images))
    }

    /// Freezes every layer but the output layer `fc` (Option 1): no gradient, no update, and
    /// BatchNorm normalises with its running statistics and leaves them unchanged.
    pub fn freeze_body(mut self) -> Self {
        self.conv_stem = self.conv_stem.freeze();
        self.bn0 = self.bn0.freeze();
        self.blocks = self.blocks.into_iter().map(|b| b.freeze()).collect();
        self.conv_head = self.conv_head.freeze();
        self.bn1 = self.bn1.freeze();
        self
    }

    /// Loads every parameter and running statistic from a PyTorch file written by the original
    /// implementation. Fails, naming the first offending tensor, unless every tensor of the
    /// network is present with its shape and the file holds nothing else (PyTorch's
    /// `num_batches_tracked` counters aside).
    pub fn load_pytorch(mut self, path: &Path) -> Result<Self, WeightMismatch> {
        let mut store = PytorchStore::from_file(path)
            .with_key_remapping(WEIGHT_KEY_REMAP.0, WEIGHT_KEY_REMAP.1)
            // Mismatches are reported below, one tensor named, rather than as burn's table.
            .validate(false)
            .allow_partial(true);
        let result = self.load_from(&mut store).map_err(|e| WeightMismatch {
            tensor: None,
            problem: format!("cannot read it as a PyTorch file: {e}"),
        })?;
        check_fit(
            &result,
            |_| false,
            |name| name.ends_with("num_batches_tracked"),
        )?;
        Ok(self)
    }
}

/// Whether a weight file fit the module it was loaded into: no tensor of the wrong shape, no
/// tensor of the module missing (but those `may_lack`), nothing in the file left over (but
/// those `may_leave`). Otherwise the first offending tensor.
pub(crate) fn check_fit(
    result: &ApplyResult,
    may_lack: impl Fn(&str) -> bool,
    may_leave: impl Fn(&str) -> bool,
) -> Result<(), WeightMismatch> {
    if let Some(error) = result.errors.first() {
        return Err(mismatch_of(error));
    }
    if let Some((missing, _)) = result.missing.iter().find(|(name, _)| !may_lack(name)) {
        return Err(WeightMismatch {
            tensor: Some(missing.clone()),
            problem: "the architecture needs this tensor and the file lacks it".into(),
        });
    }
    if let Some(unused) = result.unused.iter().find(|name| !may_leave(name)) {
        return Err(WeightMismatch {
            tensor: Some(unused.clone()),
            problem: "the file holds this tensor and the architecture has no place for it".into(),
        });
    }
    Ok(())
}

/// What burn-store's error about one tensor says, as a [`WeightMismatch`].
fn mismatch_of(error: &ApplyError) -> WeightMismatch {
    match error {
        ApplyError::ShapeMismatch {
            path,
            expected,
            found,
        } => WeightMismatch {
            tensor: Some(path.clone()),
            problem: format!(
                "the file's shape is {:?}, the architecture needs {:?}",
                found.as_slice(),
                expected.as_slice()
            ),
        },
        other => WeightMismatch {
            tensor: None,
            problem: other.to_string(),
        },
    }
}

/// A weight file that does not fit the architecture; `tensor` is the first offending name (in
/// this module's naming) when one can be told.
#[derive(Debug, Clone)]
pub struct WeightMismatch {
    pub tensor: Option<String>,
    pub problem: String,
}

impl std::fmt::Display for WeightMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tensor {
            Some(t) => write!(f, "tensor `{t}`: {}", self.problem),
            None => write!(f, "{}", self.problem),
        }
    }
}

impl std::error::Error for WeightMismatch {}
