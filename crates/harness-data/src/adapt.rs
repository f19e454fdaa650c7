//! Input adapters: a target's examples reshaped once per dataset for a network pre-trained
//! elsewhere, never per cell.

use anyhow::{Result, bail};
use image::imageops::{FilterType, resize};
use image::{GrayImage, Luma};

use crate::dataset::Dataset;
use crate::decode::ImageSet;
use crate::inputs::Inputs;

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
