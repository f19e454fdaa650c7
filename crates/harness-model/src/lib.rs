//! # harness-model
//!
//! The burn modules of the harness — a modality **stem** that turns raw input into `d_model`-wide
//! tokens, a shared pre-LN Transformer **backbone**, and a **head** (mean pooling + linear) — and
//! transfer between them: copying every layer but the output layer from a pre-trained network,
//! freezing the copied layers (Option 1) or leaving everything trainable (Option 2).
//!
//! It knows nothing of datasets, files of results, or training loops; from `harness-spec` it
//! takes only the closed choices an experiment or a manifest names ([`Activation`], the BERT
//! shape), so that they are checked once, when the file is read.
//!
//! ```no_run
//! use burn::prelude::*;
//! use harness_model::{Activation, BackboneConfig, Classifier, ClassifierConfig, StemConfig};
//!
//! let device = Device::flex().autodiff();
//! let backbone = BackboneConfig {
//!     d_model: 64,
//!     n_layers: 2,
//!     n_heads: 4,
//!     d_ff: 128,
//!     activation: Activation::Relu,
//!     dropout: 0.0,
//! };
//! let config = ClassifierConfig::new(StemConfig::Image { side: 28, patch: 7 }, backbone, 10);
//! let model: Classifier = config.init_seeded(&device, 0);
//! let logits = model.forward(Tensor::zeros([8, 28 * 28], &device));
//! assert_eq!(logits.dims(), [8, 10]);
//! ```

pub mod bert;
pub mod crepe;
pub mod efficientnet;
mod network;
mod snapshot;
mod transfer;

use burn::module::Param;
use burn::nn::activation::ActivationConfig;
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

pub use harness_spec::Activation;
pub use network::{FramedCrepe, GreyImageNet, Network, PatchBert};
pub use snapshot::{ParamSnapshot, materialise, snapshot};
pub use transfer::{Checkpoint, Transfer, load_pretrained, save_pretrained};

/// Patch stem, shared by images and log-mel spectrograms: the `rows × cols` input is cut into
/// non-overlapping `patch_rows × patch_cols` patches, each projected to `d_model`, plus a learned
/// position embedding. Images use square patches; audio uses every mel band and
/// `frames_per_token` consecutive frames, so each token is a short stretch of time.
#[derive(Module, Debug)]
pub struct PatchStem {
    pub projection: Linear,
    pub position: Param<Tensor<3>>,
    pub rows: usize,
    pub cols: usize,
    pub patch_rows: usize,
    pub patch_cols: usize,
}

impl PatchStem {
    /// Learned positions for `tokens` tokens of width `d_model`, drawn from normal(0, 0.02).
    pub fn draw_position(tokens: usize, d_model: usize, device: &Device) -> Tensor<3> {
        Tensor::<3>::random(
            [1, tokens, d_model],
            burn::tensor::Distribution::Normal(0.0, 0.02),
            device,
        )
    }

    /// A new stem for a `rows × cols` grid cut into `patch_rows × patch_cols` patches, each
    /// projected to the width of `position` (`[1, tokens, d_model]`, see
    /// [`PatchStem::draw_position`]) by a Linear layer drawn now (burn's default initialiser).
    pub fn new(
        grid: (usize, usize),
        patch: (usize, usize),
        position: Tensor<3>,
        device: &Device,
    ) -> PatchStem {
        let (rows, cols) = grid;
        let (patch_rows, patch_cols) = patch;
        let [_, tokens, d_model] = position.dims();
        assert_eq!(tokens, (rows / patch_rows) * (cols / patch_cols));
        PatchStem {
            projection: LinearConfig::new(patch_rows * patch_cols, d_model).init(device),
            position: Param::from_tensor(position),
            rows,
            cols,
            patch_rows,
            patch_cols,
        }
    }

    /// `[batch, rows·cols]` normalised values (row-major) → `[batch, tokens, d_model]`.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<3> {
        let [batch, _] = input.dims();
        let (pr, pc) = (self.patch_rows, self.patch_cols);
        let (gr, gc) = (self.rows / pr, self.cols / pc);
        let patches = input
            .reshape([batch, gr, pr, gc, pc])
            .swap_dims(2, 3)
            .reshape([batch, gr * gc, pr * pc]);
        self.projection.forward(patches) + self.position.val()
    }
}

/// Text stem: token ids (given as floats, exact below 2²⁴) → learned embeddings plus a learned
/// position embedding. Id 0 is padding: it is masked out of attention and of the pooling.
#[derive(Module, Debug)]
pub struct TextStem {
    pub embedding: Embedding,
    pub position: Param<Tensor<3>>,
}

impl TextStem {
    /// `[batch, tokens]` ids → (`[batch, tokens, d_model]`, padding mask `[batch, tokens]`).
    pub fn forward(&self, ids: Tensor<2>) -> (Tensor<3>, Tensor<2, Bool>) {
        let ids = ids.int();
        let pad = ids.clone().equal_elem(0);
        (self.embedding.forward(ids) + self.position.val(), pad)
    }
}

/// The modality stem: patches (images, spectrograms) or token embeddings (text).
#[derive(Module, Debug)]
pub enum Stem {
    Patch(PatchStem),
    Text(TextStem),
}

impl Stem {
    /// Tokens, and for text the padding mask.
    pub fn forward(&self, input: Tensor<2>) -> (Tensor<3>, Option<Tensor<2, Bool>>) {
        match self {
            Stem::Patch(stem) => (stem.forward(input), None),
            Stem::Text(stem) => {
                let (tokens, pad) = stem.forward(input);
                (tokens, Some(pad))
            }
        }
    }
}

/// The shared backbone: a pre-LN Transformer encoder followed by a final layer norm.
#[derive(Module, Debug)]
pub struct Backbone {
    pub encoder: TransformerEncoder,
    pub norm: LayerNorm,
}

impl Backbone {
    /// Tokens through the encoder; `pad` marks positions attention must ignore.
    pub fn forward(&self, tokens: Tensor<3>, pad: Option<Tensor<2, Bool>>) -> Tensor<3> {
        let mut input = TransformerEncoderInput::new(tokens);
        if let Some(pad) = pad {
            input = input.mask_pad(pad);
        }
        self.norm.forward(self.encoder.forward(input))
    }
}

/// Stem + backbone + head.
#[derive(Module, Debug)]
pub struct Classifier {
    pub stem: Stem,
    pub backbone: Backbone,
    pub head: Linear,
}

impl Classifier {
    /// Mean-pooled backbone features (padding excluded), `[batch, d_model]`.
    pub fn features(&self, input: Tensor<2>) -> Tensor<2> {
        let (tokens, pad) = self.stem.forward(input);
        let out = self.backbone.forward(tokens, pad.clone());
        match pad {
            None => out.mean_dim(1).squeeze_dim(1),
            Some(pad) => {
                let keep = pad.bool_not().float().unsqueeze_dim::<3>(2);
                let count = keep.clone().sum_dim(1).clamp_min(1.0);
                (out * keep).sum_dim(1).div(count).squeeze_dim(1)
            }
        }
    }

    /// Class logits, `[batch, classes]`.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        self.head.forward(self.features(input))
    }
}

/// The backbone's shape and dropout, whatever stem feeds it.
#[derive(Config, Debug, PartialEq)]
pub struct BackboneConfig {
    /// Width of every token.
    pub d_model: usize,
    /// Transformer encoder layers.
    pub n_layers: usize,
    /// Attention heads (they divide `d_model`).
    pub n_heads: usize,
    /// Hidden width of each layer's feed-forward block.
    pub d_ff: usize,
    /// Feed-forward activation.
    pub activation: Activation,
    /// Dropout inside the encoder during training.
    pub dropout: f64,
}

impl BackboneConfig {
    /// The pre-LN encoder (its parameters initialised lazily, when first read).
    fn encoder(&self, device: &Device) -> TransformerEncoder {
        let activation = match self.activation {
            Activation::Relu => ActivationConfig::Relu,
            Activation::Gelu => ActivationConfig::Gelu,
        };
        TransformerEncoderConfig::new(self.d_model, self.d_ff, self.n_heads, self.n_layers)
            .with_norm_first(true)
            .with_dropout(self.dropout)
            .with_activation(activation)
            .init(device)
    }
}

/// What the stem takes in, which fixes its shape.
#[derive(Config, Debug, PartialEq)]
pub enum StemConfig {
    /// Square `side × side` images cut into `patch × patch` patches.
    Image { side: usize, patch: usize },
    /// `mels × frames` log-mel spectrograms, one token per `frames_per_token` frames (every
    /// mel band).
    Audio {
        mels: usize,
        frames: usize,
        frames_per_token: usize,
    },
    /// `tokens` token ids from a vocabulary of `vocab_size`.
    Text { vocab_size: usize, tokens: usize },
}

impl StemConfig {
    /// The input grid, `(rows, cols)`: `(side, side)`, `(mels, frames)`, or `(1, tokens)`.
    pub fn grid(&self) -> (usize, usize) {
        match *self {
            StemConfig::Image { side, .. } => (side, side),
            StemConfig::Audio { mels, frames, .. } => (mels, frames),
            StemConfig::Text { tokens, .. } => (1, tokens),
        }
    }

    /// The patch of the grid that makes one token, `(rows, cols)`; `(1, 1)` for text.
    pub fn patch(&self) -> (usize, usize) {
        match *self {
            StemConfig::Image { patch, .. } => (patch, patch),
            StemConfig::Audio {
                mels,
                frames_per_token,
                ..
            } => (mels, frames_per_token),
            StemConfig::Text { .. } => (1, 1),
        }
    }

    /// Tokens per example.
    pub fn tokens(&self) -> usize {
        let ((rows, cols), (patch_rows, patch_cols)) = (self.grid(), self.patch());
        (rows / patch_rows) * (cols / patch_cols)
    }

    /// The vocabulary of a text stem; `None` for a patch stem.
    pub fn vocab_size(&self) -> Option<usize> {
        match *self {
            StemConfig::Text { vocab_size, .. } => Some(vocab_size),
            _ => None,
        }
    }

    /// The stem for tokens of width `d_model`, with `position` (`[1, tokens, d_model]`) as its
    /// learned positions.
    fn init(&self, position: Tensor<3>, device: &Device) -> Stem {
        let [_, _, d_model] = position.dims();
        match self.vocab_size() {
            Some(vocab_size) => Stem::Text(TextStem {
                embedding: EmbeddingConfig::new(vocab_size, d_model).init(device),
                position: Param::from_tensor(position),
            }),
            None => Stem::Patch(PatchStem::new(self.grid(), self.patch(), position, device)),
        }
    }
}

/// Everything that determines the shape of a [`Classifier`]: its stem, its backbone and its
/// number of classes.
#[derive(Config, Debug, PartialEq)]
pub struct ClassifierConfig {
    pub stem: StemConfig,
    pub backbone: BackboneConfig,
    /// Outputs of the head.
    pub classes: usize,
}

impl ClassifierConfig {
    /// Builds the network with every parameter drawn now from `seed`, so that the same seed
    /// gives the same weights whatever is loaded into the network afterwards.
    pub fn init_seeded(&self, device: &Device, seed: u64) -> Classifier {
        device.seed(seed);
        let model = self.init(device);
        materialise(&model);
        model
    }

    /// The network, its parameters drawn lazily except the positions (drawn now). The order
    /// of the draws is what a seed's weights depend on: keep it.
    fn init(&self, device: &Device) -> Classifier {
        let d_model = self.backbone.d_model;
        let encoder = self.backbone.encoder(device);
        let position = PatchStem::draw_position(self.stem.tokens(), d_model, device);
        let stem = self.stem.init(position, device);
        Classifier {
            stem,
            backbone: Backbone {
                encoder,
                norm: LayerNormConfig::new(d_model).init(device),
            },
            head: LinearConfig::new(d_model, self.classes).init(device),
        }
    }
}

/// Tests that draw seeded weights take turns: the seed of a Flex device is shared by every
/// thread, so two drawing at once would interleave their draws.
#[cfg(test)]
pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backbone(activation: Activation) -> BackboneConfig {
        BackboneConfig {
            d_model: 16,
            n_layers: 2,
            n_heads: 4,
            d_ff: 24,
            activation,
            dropout: 0.0,
        }
    }

    /// `[2, width]` inputs a stem of `stem` takes (ids 1 for text).
    fn input(stem: &StemConfig, device: &Device) -> Tensor<2> {
        let (rows, cols) = stem.grid();
        Tensor::ones([2, rows * cols], device)
    }

    #[test]
    fn a_classifier_config_builds_the_stem_backbone_and_head_it_names() {
        let _serial = serial();
        let device = Device::flex();
        // (stem, tokens, width of one token's input: patch values or vocabulary)
        for (stem, tokens, per_token) in [
            (StemConfig::Image { side: 8, patch: 4 }, 4, 16),
            (
                StemConfig::Audio {
                    mels: 6,
                    frames: 10,
                    frames_per_token: 2,
                },
                5,
                12,
            ),
            (
                StemConfig::Text {
                    vocab_size: 30,
                    tokens: 7,
                },
                7,
                30,
            ),
        ] {
            let config = ClassifierConfig::new(stem.clone(), backbone(Activation::Relu), 3);
            let model = config.init_seeded(&device, 0);
            assert_eq!(stem.tokens(), tokens, "{stem:?}");
            let (first, position) = match &model.stem {
                Stem::Patch(p) => (p.projection.weight.dims(), p.position.dims()),
                Stem::Text(t) => (t.embedding.weight.dims(), t.position.dims()),
            };
            assert_eq!(first, [per_token, 16], "{stem:?}");
            assert_eq!(position, [1, tokens, 16], "{stem:?}");
            let encoder = &model.backbone.encoder;
            assert_eq!(encoder.layers.len(), 2);
            assert_eq!(
                (encoder.d_model, encoder.d_ff, encoder.n_heads),
                (16, 24, 4)
            );
            assert_eq!(model.head.weight.dims(), [16, 3]);
            assert_eq!(model.forward(input(&stem, &device)).dims(), [2, 3]);
        }
    }

    #[test]
    fn the_activation_of_the_config_is_the_one_the_encoder_applies() {
        let _serial = serial();
        let device = Device::flex();
        let stem = StemConfig::Image { side: 8, patch: 4 };
        let output = |activation: Activation| {
            let config = ClassifierConfig::new(stem.clone(), backbone(activation), 3);
            let model = config.init_seeded(&device, 0);
            let layer = &model.backbone.encoder.layers[0];
            let gelu = matches!(
                layer.pwff.activation,
                burn::nn::activation::Activation::Gelu(_)
            );
            (gelu, model.forward(input(&stem, &device)).into_data())
        };
        let (relu_is_gelu, relu) = output(Activation::Relu);
        let (gelu_is_gelu, gelu) = output(Activation::Gelu);
        assert!(!relu_is_gelu && gelu_is_gelu);
        // Same seed, same weights: only the activation differs, and it shows in the logits.
        assert_ne!(relu, gelu);
    }

    #[test]
    fn one_seed_draws_the_same_weights_and_another_seed_others() {
        let _serial = serial();
        let device = Device::flex();
        let config = ClassifierConfig::new(
            StemConfig::Text {
                vocab_size: 30,
                tokens: 7,
            },
            backbone(Activation::Gelu),
            3,
        );
        let a = snapshot(&config.init_seeded(&device, 5));
        assert_eq!(a, snapshot(&config.init_seeded(&device, 5)));
        assert_ne!(a, snapshot(&config.init_seeded(&device, 6)));
    }

    #[test]
    fn a_config_reads_back_from_its_json() {
        let config = ClassifierConfig::new(
            StemConfig::Audio {
                mels: 6,
                frames: 10,
                frames_per_token: 2,
            },
            backbone(Activation::Gelu),
            3,
        );
        let json = config.to_string();
        assert!(json.contains("\"gelu\""), "{json}");
        let back: ClassifierConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
    }
}
