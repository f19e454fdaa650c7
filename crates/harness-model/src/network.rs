//! One interface over every architecture the harness trains: training, Option 1's feature
//! cache and evaluation see a [`Network`] — flat inputs in, pooled features and logits out, one
//! output layer to replace — whatever is inside.

use burn::nn::Linear;
use burn::prelude::*;

use crate::Classifier;
use crate::efficientnet::EfficientNet;

/// A network the harness trains: its own Transformer family, or one pre-trained elsewhere.
#[derive(Module, Debug)]
pub enum Network {
    /// Stem + pre-LN Transformer backbone + head.
    Transformer(Classifier),
    /// EfficientNet-Lite on `side × side` grey images, the grey channel copied to RGB.
    EfficientNet(GreyImageNet),
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
    /// Pooled features before the output layer, `[batch, width]`.
    pub fn features(&self, input: Tensor<2>) -> Tensor<2> {
        match self {
            Network::Transformer(m) => m.features(input),
            Network::EfficientNet(m) => m.net.features(m.images(input)),
        }
    }

    /// Class logits, `[batch, classes]`.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        match self {
            Network::Transformer(m) => m.forward(input),
            Network::EfficientNet(m) => m.net.forward(m.images(input)),
        }
    }

    /// The output layer (what transfer replaces and Option 1 trains).
    pub fn head(&self) -> &Linear {
        match self {
            Network::Transformer(m) => &m.head,
            Network::EfficientNet(m) => &m.net.fc,
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
        }
    }
}
