//! Decoders from raw files to labelled grayscale images: IDX, CSV of pixels, image folders.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};

/// Labelled grayscale images, `side × side` bytes each, stored contiguously.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageSet {
    pub side: usize,
    pub pixels: Vec<u8>,
    pub labels: Vec<u16>,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of example `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let size = self.side * self.side;
        &self.pixels[i * size..(i + 1) * size]
    }

    /// A new set made of the examples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> ImageSet {
        let mut out = ImageSet {
            side: self.side,
            ..Default::default()
        };
        for &i in indices {
            out.pixels.extend_from_slice(self.image(i));
            out.labels.push(self.labels[i]);
        }
        out
    }

    fn push(&mut self, pixels: &[u8], label: u16) {
        self.pixels.extend_from_slice(pixels);
        self.labels.push(label);
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Decodes an IDX image file (magic 0x00000803) and its IDX label file (magic 0x00000801).
pub fn decode_idx(images: &[u8], labels: &[u8], classes: usize, side: usize) -> Result<ImageSet> {
    ensure!(
        images.len() >= 16 && be_u32(images, 0) == 0x0803,
        "not an IDX image file (bad magic number)"
    );
    ensure!(
        labels.len() >= 8 && be_u32(labels, 0) == 0x0801,
        "not an IDX label file (bad magic number)"
    );
    let n = be_u32(images, 4) as usize;
    let (rows, cols) = (be_u32(images, 8) as usize, be_u32(images, 12) as usize);
    ensure!(
        rows == side && cols == side,
        "IDX images are {rows}×{cols}, the manifest says {side}×{side}"
    );
    ensure!(
        be_u32(labels, 4) as usize == n,
        "IDX image and label files hold different counts"
    );
    ensure!(
        images.len() == 16 + n * rows * cols,
        "IDX image file is truncated"
    );
    ensure!(labels.len() == 8 + n, "IDX label file is truncated");
    let mut set = ImageSet {
        side,
        pixels: images[16..].to_vec(),
        labels: Vec::with_capacity(n),
    };
    for (i, &label) in labels[8..].iter().enumerate() {
        ensure!(
            (label as usize) < classes,
            "label {label} of example {i} is not below the {classes} classes"
        );
        set.labels.push(label as u16);
    }
    Ok(set)
}

/// Decodes CSV lines of `side²` pixel values (0–255) plus one class index, first or last.
/// Errors name the 1-based line.
pub fn decode_csv_pixels(
    text: &[u8],
    classes: usize,
    side: usize,
    label_first: bool,
    header: bool,
) -> Result<ImageSet> {
    let text = std::str::from_utf8(text).context("the CSV file is not UTF-8 text")?;
    let want = side * side + 1;
    let mut set = ImageSet {
        side,
        ..Default::default()
    };
    let mut row = Vec::with_capacity(want);
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if (header && index == 0) || line.trim().is_empty() {
            continue;
        }
        row.clear();
        for field in line.split(',') {
            let value: u32 = field.trim().parse().with_context(|| {
                format!("line {line_no}: `{}` is not a whole number", field.trim())
            })?;
            row.push(value);
        }
        ensure!(
            row.len() == want,
            "line {line_no}: {} values, expected {want} ({side}×{side} pixels and a label)",
            row.len()
        );
        let (label, pixels) = if label_first {
            (row[0], &row[1..])
        } else {
            (row[want - 1], &row[..want - 1])
        };
        ensure!(
            (label as usize) < classes,
            "line {line_no}: label {label} is not below the {classes} classes"
        );
        let bytes: Vec<u8> = pixels
            .iter()
            .map(|&p| {
                u8::try_from(p)
                    .map_err(|_| anyhow::anyhow!("line {line_no}: pixel value {p} is above 255"))
            })
            .collect::<Result<_>>()?;
        set.push(&bytes, label as u16);
    }
    ensure!(!set.is_empty(), "the CSV file holds no examples");
    Ok(set)
}

/// Decodes a folder of one sub-folder per class (named as in `classes`) holding PNG or JPEG
/// images, converted to grayscale and resized to `side × side`. Files are read in name order.
pub fn decode_image_folder(dir: &Path, classes: &[String], side: usize) -> Result<ImageSet> {
    let mut set = ImageSet {
        side,
        ..Default::default()
    };
    let present: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read image folder {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for name in &present {
        if !classes.contains(name) {
            bail!(
                "{}: folder `{name}` is not one of the manifest's classes {classes:?}",
                dir.display()
            );
        }
    }
    for (label, class) in classes.iter().enumerate() {
        let class_dir = dir.join(class);
        let mut files: Vec<_> = match std::fs::read_dir(&class_dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect(),
            Err(_) => bail!("{}: no folder for class `{class}`", dir.display()),
        };
        files.sort();
        ensure!(
            !files.is_empty(),
            "{}: the folder of class `{class}` holds no images",
            dir.display()
        );
        for file in files {
            let img = image::open(&file)
                .with_context(|| format!("{}: not a readable PNG or JPEG image", file.display()))?;
            let gray = img
                .resize_exact(
                    side as u32,
                    side as u32,
                    image::imageops::FilterType::Triangle,
                )
                .to_luma8();
            set.push(gray.as_raw(), label as u16);
        }
    }
    ensure!(!set.is_empty(), "{} holds no images", dir.display());
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_class_folder_is_named_by_its_class() {
        let dir = tempfile::tempdir().unwrap();
        for class in ["cats", "dogs"] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
        }
        image::GrayImage::new(4, 4)
            .save(dir.path().join("cats/a.png"))
            .unwrap();
        let err = decode_image_folder(dir.path(), &["cats".into(), "dogs".into()], 4)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the folder of class `dogs` holds no images"),
            "{err}"
        );
    }

    fn idx(n: usize, side: usize, labels: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut images = vec![0, 0, 8, 3];
        for v in [n, side, side] {
            images.extend_from_slice(&(v as u32).to_be_bytes());
        }
        images.extend((0..n * side * side).map(|i| (i % 256) as u8));
        let mut lab = vec![0, 0, 8, 1];
        lab.extend_from_slice(&(n as u32).to_be_bytes());
        lab.extend_from_slice(labels);
        (images, lab)
    }

    #[test]
    fn idx_files_decode_to_images_and_labels() {
        let (images, labels) = idx(3, 2, &[0, 1, 2]);
        let set = decode_idx(&images, &labels, 3, 2).unwrap();
        assert_eq!(set.len(), 3);
        assert_eq!(set.image(1), &[4, 5, 6, 7]);
        assert_eq!(set.labels, vec![0, 1, 2]);
    }

    #[test]
    fn truncated_idx_is_an_error() {
        let (images, labels) = idx(3, 2, &[0, 1, 2]);
        assert!(decode_idx(&images[..images.len() - 1], &labels, 3, 2).is_err());
        assert!(
            decode_idx(&images, &labels, 2, 2).is_err(),
            "label 2 with 2 classes"
        );
    }

    #[test]
    fn csv_rows_decode_and_a_bad_row_names_its_line() {
        let good = b"1,2,3,4,1\n5,6,7,8,0\n";
        let set = decode_csv_pixels(good, 2, 2, false, false).unwrap();
        assert_eq!(set.labels, vec![1, 0]);
        assert_eq!(set.image(1), &[5, 6, 7, 8]);
        let bad = b"1,2,3,4,1\n5,6,7,0\n";
        let err = decode_csv_pixels(bad, 2, 2, false, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        let big = b"1,2,3,400,1\n";
        assert!(
            decode_csv_pixels(big, 2, 2, false, false)
                .unwrap_err()
                .to_string()
                .contains("line 1")
        );
    }
}
