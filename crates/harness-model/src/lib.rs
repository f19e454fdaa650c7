//! # harness-model
//!
//! The burn modules of the harness — a modality **stem** that turns raw input into `d_model`-wide
//! tokens, a shared pre-LN Transformer **backbone**, and a **head** (mean pooling + linear) — and
//! transfer between them: copying every layer but the output layer from a pre-trained network,
//! freezing the copied layers (Option 1) or leaving everything trainable (Option 2).
//!
//! It knows nothing of datasets, files of results, or training loops.
//!
//! ```no_run
//! use burn::prelude::*;
//! use harness_model::{BackboneShape, Classifier, ClassifierConfig, StemShape};
//!
//! let device = Device::flex().autodiff();
//! let backbone = BackboneShape {
//!     d_model: 64,
//!     n_layers: 2,
//!     n_heads: 4,
//!     d_ff: 128,
//!     activation: "relu".into(),
//!     dropout: 0.0,
//! };
//! let config = ClassifierConfig::of(StemShape::Image { side: 28, patch: 7 }, &backbone, 10);
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

/// Everything that determines the shape of a [`Classifier`].
#[derive(Config, Debug)]
pub struct ClassifierConfig {
    /// Input grid: `(side, side)` for images, `(mels, frames)` for audio.
    pub rows: usize,
    pub cols: usize,
    /// Patch cut from the grid for one token.
    pub patch_rows: usize,
    pub patch_cols: usize,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_ff: usize,
    pub activation: String,
    pub dropout: f64,
    pub classes: usize,
    /// Text only: vocabulary size of the token embedding (0: a patch stem). For text, `rows`
    /// is 1 and `cols` the number of tokens.
    #[config(default = 0)]
    pub vocab_size: usize,
}

/// The Transformer backbone's shape (and dropout), whatever stem feeds it.
#[derive(Debug, Clone, PartialEq)]
pub struct BackboneShape {
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_ff: usize,
    /// `relu` or `gelu`.
    pub activation: String,
    pub dropout: f64,
}

/// What the stem takes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StemShape {
    /// Square `side × side` images cut into `patch × patch` patches.
    Image { side: usize, patch: usize },
    /// `mels × frames` log-mel spectrograms, one token per `frames_per_token` frames.
    Audio {
        mels: usize,
        frames: usize,
        frames_per_token: usize,
    },
    /// `tokens` token ids from a vocabulary of `vocab_size`.
    Text { vocab_size: usize, tokens: usize },
}

impl ClassifierConfig {
    /// The network for inputs of `stem`, with `backbone`, and `classes` outputs.
    pub fn of(stem: StemShape, backbone: &BackboneShape, classes: usize) -> Self {
        let (rows, cols, patch_rows, patch_cols, vocab_size) = match stem {
            StemShape::Image { side, patch } => (side, side, patch, patch, 0),
            StemShape::Audio {
                mels,
                frames,
                frames_per_token,
            } => (mels, frames, mels, frames_per_token, 0),
            StemShape::Text { vocab_size, tokens } => (1, tokens, 1, 1, vocab_size),
        };
        ClassifierConfig::new(
            rows,
            cols,
            patch_rows,
            patch_cols,
            backbone.d_model,
            backbone.n_layers,
            backbone.n_heads,
            backbone.d_ff,
            backbone.activation.clone(),
            backbone.dropout,
            classes,
        )
        .with_vocab_size(vocab_size)
    }

    /// Builds the network with every parameter drawn now from `seed`, so that the same seed
    /// gives the same weights whatever is loaded into the network afterwards.
    pub fn init_seeded(&self, device: &Device, seed: u64) -> Classifier {
        device.seed(seed);
        let model = self.init(device);
        materialise(&model);
        model
    }

    fn init(&self, device: &Device) -> Classifier {
        let tokens = (self.rows / self.patch_rows) * (self.cols / self.patch_cols);
        let activation = match self.activation.as_str() {
            "gelu" => ActivationConfig::Gelu,
            _ => ActivationConfig::Relu,
        };
        let encoder =
            TransformerEncoderConfig::new(self.d_model, self.d_ff, self.n_heads, self.n_layers)
                .with_norm_first(true)
                .with_dropout(self.dropout)
                .with_activation(activation)
                .init(device);
        let position = PatchStem::draw_position(tokens, self.d_model, device);
        Classifier {
            stem: if self.vocab_size > 0 {
                Stem::Text(TextStem {
                    embedding: EmbeddingConfig::new(self.vocab_size, self.d_model).init(device),
                    position: Param::from_tensor(position),
                })
            } else {
                Stem::Patch(PatchStem::new(
                    (self.rows, self.cols),
                    (self.patch_rows, self.patch_cols),
                    position,
                    device,
                ))
            },
            backbone: Backbone {
                encoder,
                norm: LayerNormConfig::new(self.d_model).init(device),
            },
            head: LinearConfig::new(self.d_model, self.classes).init(device),
        }
    }
}
