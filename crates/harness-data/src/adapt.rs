//! Input adapters: a target's examples reshaped once per dataset for a network pre-trained
//! elsewhere, never per cell.

use std::path::Path;

use anyhow::{Context, Result, bail};
use image::imageops::{FilterType, resize};
use image::{GrayImage, Luma};

use crate::dataset::Dataset;
use crate::decode::ImageSet;
use crate::inputs::{Inputs, SpectrogramSet, TextSet, TokenSet};
use crate::tokenize::{PAD_ID, load_network_tokenizer, network_token_ids};

/// Every image of `set` resized to `side × side` (bilinear: the triangle filter), still grey
/// bytes; the channel copy and the network's scaling happen at the network's input.
pub fn resize_images(set: &ImageSet, side: usize) -> ImageSet {
    if set.side == side {
        return set.clone();
    }
    let mut pixels = Vec::with_capacity(set.len() * side * side);
    for i in 0..set.len() {
        let image: GrayImage =
            GrayImage::from_raw(set.side as u32, set.side as u32, set.image(i).to_vec())
                .expect("an image has side² pixels");
        let resized: image::ImageBuffer<Luma<u8>, Vec<u8>> =
            resize(&image, side as u32, side as u32, FilterType::Triangle);
        pixels.extend_from_slice(resized.as_raw());
    }
    ImageSet {
        side,
        pixels,
        labels: set.labels.clone(),
    }
}

/// `dataset` with its images resized to `side` (its id, classes and content hash kept: the
/// adapter is a function of them, recorded in each cell's fingerprint).
pub fn adapt_images(dataset: &Dataset, side: usize) -> Result<Dataset> {
    let (Inputs::Images(train), Inputs::Images(test)) = (&dataset.train, &dataset.test) else {
        bail!(
            "`{}` holds no images: an image network needs an image target",
            dataset.id
        );
    };
    Ok(Dataset {
        train: Inputs::Images(resize_images(train, side)),
        test: Inputs::Images(resize_images(test, side)),
        ..dataset.clone()
    })
}

/// Every log-mel spectrogram of `set` as a grey `side × side` image, the way AST and PANNs
/// hand sound to an image network: the `top_db` decibels below each clip's maximum map
/// linearly onto 0–255 (256 grey levels, so steps of `top_db / 255` dB; anything lower is
/// black), the highest mel band in the top row and time running left to right, then the
/// `mels × frames` picture is resized (bilinear, as images are) to `side × side`.
pub fn log_mel_images(set: &SpectrogramSet, side: usize, top_db: f64) -> ImageSet {
    let (mels, frames) = (set.mels, set.frames);
    let mut pixels = Vec::with_capacity(set.len() * side * side);
    for i in 0..set.len() {
        let values = &set.values[i * mels * frames..(i + 1) * mels * frames];
        let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let mut grey = Vec::with_capacity(mels * frames);
        for row in (0..mels).rev() {
            for &v in &values[row * frames..(row + 1) * frames] {
                let level = ((v as f64 - max + top_db) / top_db).clamp(0.0, 1.0);
                grey.push((level * 255.0).round() as u8);
            }
        }
        let image = GrayImage::from_raw(frames as u32, mels as u32, grey)
            .expect("a spectrogram has mels × frames values");
        pixels.extend_from_slice(
            resize(&image, side as u32, side as u32, FilterType::Triangle).as_raw(),
        );
    }
    ImageSet {
        side,
        pixels,
        labels: set.labels.clone(),
    }
}

/// `dataset`'s log-mel spectrograms as grey images of `side` (see [`log_mel_images`]); the
/// id, classes and content hash are kept, as for images.
pub fn adapt_log_mel_images(dataset: &Dataset, side: usize, top_db: f64) -> Result<Dataset> {
    let (Inputs::Spectrograms(train), Inputs::Spectrograms(test)) = (&dataset.train, &dataset.test)
    else {
        bail!(
            "`{}` holds no spectrograms: the log-mel image adapter needs an audio target",
            dataset.id
        );
    };
    Ok(Dataset {
        train: Inputs::Images(log_mel_images(train, side, top_db)),
        test: Inputs::Images(log_mel_images(test, side, top_db)),
        ..dataset.clone()
    })
}

/// `dataset`'s documents as ids of a text network's own tokenizer (its `tokenizer.json` at
/// `tokenizer`), each cut to `max_tokens` ids keeping `[CLS]` and `[SEP]` and padded with
/// `[PAD]` = 0 to exactly `max_tokens`, so an example's ids never depend on its neighbours.
/// The id, classes and content hash are kept, as for images.
pub fn adapt_texts(dataset: &Dataset, tokenizer: &Path, max_tokens: usize) -> Result<Dataset> {
    let (Inputs::Texts(train), Inputs::Texts(test)) = (&dataset.train, &dataset.test) else {
        bail!(
            "`{}` holds no documents: a text network needs a text target",
            dataset.id
        );
    };
    let tok = load_network_tokenizer(tokenizer, max_tokens)?;
    let vocab_size = tok.get_vocab_size(true);
    let encode = |set: &TextSet| -> Result<TokenSet> {
        let docs: Vec<&str> = set.docs.iter().map(String::as_str).collect();
        let mut ids = Vec::with_capacity(docs.len() * max_tokens);
        // In batches, only to bound memory: each document is encoded on its own.
        for chunk in docs.chunks(1_000) {
            let (batch, width) = network_token_ids(&tok, chunk)
                .with_context(|| format!("tokenising `{}`", dataset.id))?;
            if width == 0 {
                ids.extend(std::iter::repeat_n(PAD_ID, chunk.len() * max_tokens));
                continue;
            }
            for row in batch.chunks_exact(width) {
                ids.extend_from_slice(row);
                ids.extend(std::iter::repeat_n(PAD_ID, max_tokens - width));
            }
        }
        Ok(TokenSet {
            tokens: max_tokens,
            vocab_size,
            ids,
            labels: set.labels.clone(),
        })
    };
    Ok(Dataset {
        train: Inputs::Tokens(encode(train)?),
        test: Inputs::Tokens(encode(test)?),
        ..dataset.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resizing_keeps_labels_and_flat_images_flat() {
        let set = ImageSet {
            side: 2,
            pixels: vec![7, 7, 7, 7, 200, 200, 200, 200],
            labels: vec![3, 1],
        };
        let out = resize_images(&set, 5);
        assert_eq!(out.side, 5);
        assert_eq!(out.labels, vec![3, 1]);
        assert!(out.image(0).iter().all(|&p| p == 7));
        assert!(out.image(1).iter().all(|&p| p == 200));
        assert_eq!(resize_images(&set, 2), set);
    }
}
