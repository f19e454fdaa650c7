//! One interface over every architecture the harness trains: training, Option 1's feature
//! cache and evaluation see a [`Network`] — flat inputs in, pooled features and logits out, one
//! output layer to replace — whatever is inside.

use burn::nn::Linear;
use burn::prelude::*;

use crate::bert::Bert;
use crate::crepe::{Crepe, WINDOW, normalise_frames};
use crate::efficientnet::EfficientNet;
use crate::{Classifier, PatchStem};

/// A network the harness trains: its own Transformer family, or one pre-trained elsewhere.
#[derive(Module, Debug)]
pub enum Network {
    /// Stem + pre-LN Transformer backbone + head.
    Transformer(Classifier),
    /// EfficientNet-Lite on `side × side` grey images, the grey channel copied to RGB.
    EfficientNet(GreyImageNet),
    /// BERT on token ids of its own tokenizer, mean-pooled over the non-padding tokens.
    Bert(Bert),
    /// CREPE on frames of a waveform, its embeddings mean-pooled over the clip's frames.
    Crepe(FramedCrepe),
    /// BERT's layers behind a fresh patch stem, on images or spectrograms.
    PatchBert(PatchBert),
}

/// A Transformer pre-trained on text, read by another modality as Lu et al. (2021) do: a new
/// patch stem (linear projection of each patch plus a learned position, in place of BERT's
/// word, position and token-type embeddings) feeds BERT's embedding LayerNorm and layers; the
/// tokens are mean-pooled and the output layer `bert.fc` reads them. BERT's word embeddings
/// stay in the module (so the published file loads whole) but are never used.
#[derive(Module, Debug)]
pub struct PatchBert {
    pub stem: PatchStem,
    pub bert: Bert,
}

impl PatchBert {
    /// Mean of the last layer's vectors over the patches, `[batch, hidden]`.
    pub fn features(&self, input: Tensor<2>) -> Tensor<2> {
        let tokens = self.stem.forward(input);
        let [batch, count, _] = tokens.dims();
        let no_padding = Tensor::<2, Int>::zeros([batch, count], &tokens.device()).equal_elem(1);
        self.bert
            .encode(tokens, no_padding)
            .mean_dim(1)
            .squeeze_dim(1)
    }

    /// Freezes BERT's layers (Option 1); the stem and the output layer train.
    pub fn freeze_body(mut self) -> Self {
        self.bert = self.bert.freeze_body();
        self
    }
}

/// CREPE fed whole clips `[batch, samples]`: each clip is cut into frames of 1,024 samples,
/// one every `hop` samples from the first sample while a whole frame fits (no padding), each
/// frame normalised as CREPE was trained; the clip's embedding is the mean of its frames'.
#[derive(Module, Debug)]
pub struct FramedCrepe {
    pub net: Crepe,
    pub hop: usize,
}

impl FramedCrepe {
    /// Frames per clip of `samples` samples (at least one: a shorter clip is an error).
    pub fn frames_per_clip(samples: usize, hop: usize) -> usize {
        assert!(
            samples >= WINDOW && hop > 0,
            "a clip of {samples} samples holds no frame of {WINDOW}"
        );
        (samples - WINDOW) / hop + 1
    }

    /// Clip embeddings `[batch, features]`.
    pub fn features(&self, clips: Tensor<2>) -> Tensor<2> {
        let [batch, samples] = clips.dims();
        let frames = Self::frames_per_clip(samples, self.hop);
        let cut: Vec<Tensor<2>> = (0..frames)
            .map(|f| {
                let start = f * self.hop;
                clips.clone().slice([0..batch, start..start + WINDOW])
            })
            .collect();
        let stacked = Tensor::stack::<3>(cut, 1).reshape([batch * frames, WINDOW]);
        let per_frame = self.net.features(normalise_frames(stacked));
        let [_, width] = per_frame.dims();
        per_frame
            .reshape([batch, frames, width])
            .mean_dim(1)
            .squeeze_dim(1)
    }
}

/// An image network fed `[batch, side·side]` grey values (already scaled as it expects): the
/// channel is copied to the three it was trained on.
#[derive(Module, Debug)]
pub struct GreyImageNet {
    pub net: EfficientNet,
    pub side: usize,
}

impl GreyImageNet {
    fn images(&self, input: Tensor<2>) -> Tensor<4> {
        let [batch, _] = input.dims();
        let channels = self.net.conv_stem.weight.dims()[1];
        input
            .reshape([batch, 1, self.side, self.side])
            .repeat_dim(1, channels)
    }
}

impl Network {
    /// Whether Option 1's features are computed only for the examples cells use (networks
    /// whose forward pass is costly), in fixed blocks; otherwise for whole splits.
    pub fn sparse_features(&self) -> bool {
        matches!(self, Network::Bert(_) | Network::Crepe(_))
    }

    /// Pooled features before the output layer, `[batch, width]`.
    pub fn features(&self, input: Tensor<2>) -> Tensor<2> {
        match self {
            Network::Transformer(m) => m.features(input),
            Network::EfficientNet(m) => m.net.features(m.images(input)),
            Network::Bert(m) => m.features(input),
            Network::Crepe(m) => m.features(input),
            Network::PatchBert(m) => m.features(input),
        }
    }

    /// Class logits, `[batch, classes]`.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        match self {
            Network::Transformer(m) => m.forward(input),
            Network::EfficientNet(m) => m.net.forward(m.images(input)),
            Network::Bert(m) => m.forward(input),
            Network::Crepe(m) => m.net.classifier.forward(m.features(input)),
            Network::PatchBert(m) => m.bert.fc.forward(m.features(input)),
        }
    }

    /// The output layer (what transfer replaces and Option 1 trains).
    pub fn head(&self) -> &Linear {
        match self {
            Network::Transformer(m) => &m.head,
            Network::EfficientNet(m) => &m.net.fc,
            Network::Bert(m) => &m.fc,
            Network::Crepe(m) => &m.net.classifier,
            Network::PatchBert(m) => &m.bert.fc,
        }
    }

    /// The network with `head` as its output layer.
    pub fn with_head(self, head: Linear) -> Network {
        match self {
            Network::Transformer(mut m) => {
                m.head = head;
                Network::Transformer(m)
            }
            Network::EfficientNet(mut m) => {
                m.net.fc = head;
                Network::EfficientNet(m)
            }
            Network::Bert(mut m) => {
                m.fc = head;
                Network::Bert(m)
            }
            Network::Crepe(mut m) => {
                m.net.classifier = head;
                Network::Crepe(m)
            }
            Network::PatchBert(mut m) => {
                m.bert.fc = head;
                Network::PatchBert(m)
            }
        }
    }
}
