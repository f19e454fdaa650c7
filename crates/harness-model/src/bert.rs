//! BERT (Devlin et al. 2019) as a burn module whose parameter names follow the Hugging Face
//! `BertModel` files (e.g. sentence-transformers' all-MiniLM-L6-v2), so that a published
//! `model.safetensors` loads through burn-store with two key remappings ([`WEIGHT_KEY_REMAP`]).
//!
//! What is copied exactly from the original, because each changes the numbers: post-LN layers
//! (attention → add → LayerNorm, feed-forward → add → LayerNorm), LayerNorm epsilon 1e-12, the
//! exact (erf) GELU, absolute learned positions and token type 0 for every token, and padding
//! (id 0) masked out of attention. The sentence vector is the mean of the last layer's token
//! vectors over the non-padding tokens (sentence-transformers' mean pooling); the output layer
//! `fc` reads it.

use std::path::Path;

use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::prelude::*;
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};

use harness_spec::BertShape;

use crate::efficientnet::{WeightMismatch, check_fit};

/// Key remappings from the original tensor names to this module's:
/// `encoder.layer.0.attention.self.query.weight` → `encoder.layer.0.attention.self_attention.query.weight`,
/// `….LayerNorm.weight` → `….layer_norm.weight`.
pub const WEIGHT_KEY_REMAP: [(&str, &str); 2] = [
    (r"\.attention\.self\.", ".attention.self_attention."),
    (r"(^|\.)LayerNorm\.", "${1}layer_norm."),
];

/// Everything that determines the shape of a [`Bert`]: the encoder's shape (as a manifest
/// resolves it) and the output layer's classes.
#[derive(Config, Debug, PartialEq)]
pub struct BertConfig {
    /// Vocabulary, width, layers, heads, feed-forward width and positions.
    pub shape: BertShape,
    #[config(default = 2)]
    pub token_types: usize,
    #[config(default = 1e-12)]
    pub layer_norm_epsilon: f64,
    /// Classes of the output layer.
    pub classes: usize,
}

impl BertConfig {
    /// all-MiniLM-L6-v2: 6 layers, width 384, 12 heads, feed-forward 1,536, the uncased
    /// WordPiece vocabulary of 30,522 pieces, 512 positions (22.7 M parameters).
    pub fn minilm_l6(classes: usize) -> Self {
        BertConfig::new(BertShape::MINILM_L6, classes)
    }

    /// Builds the network with every parameter drawn now from `seed`: as the original, normal
    /// (0, 0.02) weights, zero biases, unit LayerNorm scales.
    pub fn init_seeded(&self, device: &Device, seed: u64) -> Bert {
        device.seed(seed);
        let model = self.init(device);
        crate::materialise(&model);
        model
    }

    fn init(&self, device: &Device) -> Bert {
        let shape = &self.shape;
        let normal = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        let linear = |input: usize, output: usize| {
            LinearConfig::new(input, output)
                .with_initializer(normal.clone())
                .init(device)
        };
        let embedding = |n: usize| {
            EmbeddingConfig::new(n, shape.hidden)
                .with_initializer(normal.clone())
                .init(device)
        };
        let norm = || {
            LayerNormConfig::new(shape.hidden)
                .with_epsilon(self.layer_norm_epsilon)
                .init(device)
        };
        let layer = || BertLayer {
            attention: Attention {
                self_attention: SelfAttention {
                    query: linear(shape.hidden, shape.hidden),
                    key: linear(shape.hidden, shape.hidden),
                    value: linear(shape.hidden, shape.hidden),
                    heads: shape.heads,
                },
                output: AddNorm {
                    dense: linear(shape.hidden, shape.hidden),
                    layer_norm: norm(),
                },
            },
            intermediate: Intermediate {
                dense: linear(shape.hidden, shape.intermediate),
            },
            output: AddNorm {
                dense: linear(shape.intermediate, shape.hidden),
                layer_norm: norm(),
            },
        };
        Bert {
            embeddings: Embeddings {
                word_embeddings: embedding(shape.vocab_size),
                position_embeddings: embedding(shape.max_positions),
                token_type_embeddings: embedding(self.token_types),
                layer_norm: norm(),
            },
            encoder: Encoder {
                layer: (0..shape.layers).map(|_| layer()).collect(),
            },
            fc: linear(shape.hidden, self.classes),
        }
    }
}

/// Word + position + token-type embeddings, then LayerNorm.
#[derive(Module, Debug)]
pub struct Embeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    pub layer_norm: LayerNorm,
}

/// Multi-head scaled dot-product attention; padding keys get no weight.
#[derive(Module, Debug)]
pub struct SelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub heads: usize,
}

impl SelfAttention {
    /// `x` `[batch, tokens, hidden]`, `pad` `[batch, tokens]` (true = padding).
    fn forward(&self, x: Tensor<3>, pad: Tensor<2, Bool>) -> Tensor<3> {
        let [batch, tokens, hidden] = x.dims();
        let head = hidden / self.heads;
        let split = |t: Tensor<3>| t.reshape([batch, tokens, self.heads, head]).swap_dims(1, 2);
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x));
        let scores = q.matmul(k.swap_dims(2, 3)).div_scalar((head as f64).sqrt());
        // The original adds the most negative float to padding keys; a mask fill does the same.
        let mask = pad
            .reshape([batch, 1, 1, tokens])
            .expand([batch, self.heads, tokens, tokens]);
        let scores = scores.mask_fill(mask, f32::MIN);
        let weights = burn::tensor::activation::softmax(scores, 3);
        weights
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch, tokens, hidden])
    }
}

/// A projection, dropout-free, added to the residual and layer-normalised (post-LN).
#[derive(Module, Debug)]
pub struct AddNorm {
    pub dense: Linear,
    pub layer_norm: LayerNorm,
}

impl AddNorm {
    fn forward(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        self.layer_norm.forward(self.dense.forward(x) + residual)
    }
}

#[derive(Module, Debug)]
pub struct Attention {
    pub self_attention: SelfAttention,
    pub output: AddNorm,
}

#[derive(Module, Debug)]
pub struct Intermediate {
    pub dense: Linear,
}

/// One post-LN BERT layer.
#[derive(Module, Debug)]
pub struct BertLayer {
    pub attention: Attention,
    pub intermediate: Intermediate,
    pub output: AddNorm,
}

impl BertLayer {
    fn forward(&self, x: Tensor<3>, pad: Tensor<2, Bool>) -> Tensor<3> {
        let attended = self
            .attention
            .output
            .forward(self.attention.self_attention.forward(x.clone(), pad), x);
        let inner =
            burn::tensor::activation::gelu(self.intermediate.dense.forward(attended.clone()));
        self.output.forward(inner, attended)
    }
}

#[derive(Module, Debug)]
pub struct Encoder {
    pub layer: Vec<BertLayer>,
}

/// BERT encoder with mean pooling and an output layer `fc`.
#[derive(Module, Debug)]
pub struct Bert {
    pub embeddings: Embeddings,
    pub encoder: Encoder,
    pub fc: Linear,
}

impl Bert {
    /// The last layer's token vectors `[batch, tokens, hidden]` of token ids `[batch, tokens]`
    /// (given as floats, exact below 2²⁴; id 0 is padding), and the padding mask.
    pub fn tokens(&self, ids: Tensor<2>) -> (Tensor<3>, Tensor<2, Bool>) {
        let [batch, tokens] = ids.dims();
        let device = ids.device();
        let ids = ids.int();
        let pad = ids.clone().equal_elem(0);
        let positions = Tensor::<1, Int>::arange(0..tokens as i64, &device)
            .reshape([1, tokens])
            .expand([batch, tokens]);
        let types = Tensor::<2, Int>::zeros([batch, tokens], &device);
        let e = &self.embeddings;
        let summed = e.word_embeddings.forward(ids)
            + e.position_embeddings.forward(positions)
            + e.token_type_embeddings.forward(types);
        (self.encode(summed, pad.clone()), pad)
    }

    /// The last layer's vectors `[batch, tokens, hidden]` of summed input embeddings
    /// `[batch, tokens, hidden]` (the embeddings' LayerNorm, then every layer); `pad` marks
    /// the positions attention ignores.
    pub fn encode(&self, embedded: Tensor<3>, pad: Tensor<2, Bool>) -> Tensor<3> {
        let mut x = self.embeddings.layer_norm.forward(embedded);
        for layer in &self.encoder.layer {
            x = layer.forward(x, pad.clone());
        }
        x
    }

    /// Mean of the last layer's vectors over the non-padding tokens, `[batch, hidden]`.
    pub fn features(&self, ids: Tensor<2>) -> Tensor<2> {
        let (x, pad) = self.tokens(ids);
        let keep = pad.bool_not().float().unsqueeze_dim::<3>(2);
        let count = keep.clone().sum_dim(1).clamp_min(1e-9);
        (x * keep).sum_dim(1).div(count).squeeze_dim(1)
    }

    /// Class logits, `[batch, classes]`.
    pub fn forward(&self, ids: Tensor<2>) -> Tensor<2> {
        self.fc.forward(self.features(ids))
    }

    /// Freezes every layer but the output layer `fc` (Option 1).
    pub fn freeze_body(mut self) -> Self {
        self.embeddings = self.embeddings.freeze();
        self.encoder = self.encoder.freeze();
        self
    }

    /// Loads every parameter from a safetensors file of Hugging Face's `BertModel` (the
    /// unused `pooler.*` and the `embeddings.position_ids` buffer aside). Fails, naming the first
    /// offending tensor, unless every tensor of the network is there with its shape.
    pub fn load_safetensors(mut self, path: &Path) -> Result<Self, WeightMismatch> {
        let mut store = SafetensorsStore::from_file(path)
            .with_from_adapter(PyTorchToBurnAdapter)
            .with_key_remapping(WEIGHT_KEY_REMAP[0].0, WEIGHT_KEY_REMAP[0].1)
            .with_key_remapping(WEIGHT_KEY_REMAP[1].0, WEIGHT_KEY_REMAP[1].1)
            .validate(false)
            .allow_partial(true);
        let result = self.load_from(&mut store).map_err(|e| WeightMismatch {
            tensor: None,
            problem: format!("cannot read it as a safetensors file: {e}"),
        })?;
        // The new output layer is not in the file; the unused pooler and position-id buffer
        // of `BertModel` may stay there.
        check_fit(
            &result,
            |name| name.starts_with("fc."),
            |name| name.starts_with("pooler.") || name == "embeddings.position_ids",
        )?;
        Ok(self)
    }
}
