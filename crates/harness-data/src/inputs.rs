//! The examples of one split, whatever the modality: grayscale images (bytes) or log-mel
//! spectrograms (`f32` decibels). Both are `rows × cols` grids, which is all the model's patch
//! stem needs to know.

use crate::decode::ImageSet;

/// Labelled log-mel spectrograms, `mels × frames` values each (mel-major), stored contiguously.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpectrogramSet {
    pub mels: usize,
    pub frames: usize,
    pub values: Vec<f32>,
    pub labels: Vec<u16>,
}

impl SpectrogramSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The spectrogram of example `i`.
    pub fn example(&self, i: usize) -> &[f32] {
        let size = self.mels * self.frames;
        &self.values[i * size..(i + 1) * size]
    }

    /// A new set made of the examples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> SpectrogramSet {
        let mut out = SpectrogramSet {
            mels: self.mels,
            frames: self.frames,
            ..Default::default()
        };
        for &i in indices {
            out.values.extend_from_slice(self.example(i));
            out.labels.push(self.labels[i]);
        }
        out
    }
}

/// Labelled token-id sequences, `tokens` ids each (padded with id 0), from a vocabulary of
/// `vocab_size`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenSet {
    pub tokens: usize,
    pub vocab_size: usize,
    pub ids: Vec<u32>,
    pub labels: Vec<u16>,
}

impl TokenSet {
    pub fn example(&self, i: usize) -> &[u32] {
        &self.ids[i * self.tokens..(i + 1) * self.tokens]
    }

    pub fn select(&self, indices: &[usize]) -> TokenSet {
        let mut out = TokenSet {
            tokens: self.tokens,
            vocab_size: self.vocab_size,
            ..Default::default()
        };
        for &i in indices {
            out.ids.extend_from_slice(self.example(i));
            out.labels.push(self.labels[i]);
        }
        out
    }
}

/// Labelled mono clips of `samples` samples each at `sample_rate` (an audio network's input,
/// made from a dataset's sound by its adapter; datasets themselves hold spectrograms).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WaveformSet {
    pub sample_rate: u32,
    pub samples: usize,
    pub values: Vec<f32>,
    pub labels: Vec<u16>,
}

impl WaveformSet {
    pub fn example(&self, i: usize) -> &[f32] {
        &self.values[i * self.samples..(i + 1) * self.samples]
    }

    pub fn select(&self, indices: &[usize]) -> WaveformSet {
        let mut out = WaveformSet {
            sample_rate: self.sample_rate,
            samples: self.samples,
            ..Default::default()
        };
        for &i in indices {
            out.values.extend_from_slice(self.example(i));
            out.labels.push(self.labels[i]);
        }
        out
    }
}

/// Labelled documents, before tokenisation (which depends on the experiment).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TextSet {
    pub docs: Vec<String>,
    pub labels: Vec<u16>,
}

/// One split of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub enum Inputs {
    Images(ImageSet),
    Spectrograms(SpectrogramSet),
    Tokens(TokenSet),
    Texts(TextSet),
    Waveforms(WaveformSet),
}

impl Inputs {
    pub fn len(&self) -> usize {
        self.labels().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn labels(&self) -> &[u16] {
        match self {
            Inputs::Images(s) => &s.labels,
            Inputs::Spectrograms(s) => &s.labels,
            Inputs::Tokens(s) => &s.labels,
            Inputs::Texts(s) => &s.labels,
            Inputs::Waveforms(s) => &s.labels,
        }
    }

    /// `(rows, cols)` of one example: `(side, side)` or `(mels, frames)`.
    pub fn shape(&self) -> (usize, usize) {
        match self {
            Inputs::Images(s) => (s.side, s.side),
            Inputs::Spectrograms(s) => (s.mels, s.frames),
            Inputs::Tokens(s) => (1, s.tokens),
            // Documents have no fixed shape until they are tokenised.
            Inputs::Texts(_) => (1, 0),
            Inputs::Waveforms(s) => (1, s.samples),
        }
    }

    /// Values per example.
    pub fn width(&self) -> usize {
        let (rows, cols) = self.shape();
        rows * cols
    }

    pub fn select(&self, indices: &[usize]) -> Inputs {
        match self {
            Inputs::Images(s) => Inputs::Images(s.select(indices)),
            Inputs::Spectrograms(s) => Inputs::Spectrograms(s.select(indices)),
            Inputs::Tokens(s) => Inputs::Tokens(s.select(indices)),
            Inputs::Texts(s) => Inputs::Texts(TextSet {
                docs: indices.iter().map(|&i| s.docs[i].clone()).collect(),
                labels: indices.iter().map(|&i| s.labels[i]).collect(),
            }),
            Inputs::Waveforms(s) => Inputs::Waveforms(s.select(indices)),
        }
    }

    /// Example `i` as floats on its natural scale: pixels in [0, 1], spectrograms in dB, token
    /// ids as exact floats.
    fn raw(&self, i: usize, out: &mut Vec<f32>) {
        match self {
            Inputs::Images(s) => out.extend(s.image(i).iter().map(|&p| p as f32 / 255.0)),
            Inputs::Spectrograms(s) => out.extend_from_slice(s.example(i)),
            Inputs::Tokens(s) => out.extend(s.example(i).iter().map(|&id| id as f32)),
            Inputs::Waveforms(s) => out.extend_from_slice(s.example(i)),
            Inputs::Texts(_) => {}
        }
    }
}

/// Per-dataset input normalisation, computed on the training pool only: one mean and one
/// standard deviation over every value (pixels scaled to [0, 1]; spectrograms in dB).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalisation {
    pub mean: f32,
    pub std: f32,
}

impl Normalisation {
    pub fn of_pool(pool: &Inputs) -> Normalisation {
        match pool {
            Inputs::Images(images) => return Normalisation::of_pixels(&images.pixels),
            // Ids are indices, not quantities: they pass through unchanged; an audio network
            // normalises each frame of a waveform itself.
            Inputs::Tokens(_) | Inputs::Texts(_) | Inputs::Waveforms(_) => {
                return Normalisation {
                    mean: 0.0,
                    std: 1.0,
                };
            }
            Inputs::Spectrograms(_) => {}
        }
        let (mut sum, mut count) = (0.0f64, 0usize);
        let mut buffer = Vec::with_capacity(pool.width());
        for i in 0..pool.len() {
            buffer.clear();
            pool.raw(i, &mut buffer);
            sum += buffer.iter().map(|&v| v as f64).sum::<f64>();
            count += buffer.len();
        }
        let mean = sum / count.max(1) as f64;
        let mut squares = 0.0f64;
        for i in 0..pool.len() {
            buffer.clear();
            pool.raw(i, &mut buffer);
            squares += buffer
                .iter()
                .map(|&v| (v as f64 - mean).powi(2))
                .sum::<f64>();
        }
        Normalisation {
            mean: mean as f32,
            std: ((squares / count.max(1) as f64).sqrt() as f32).max(1e-6),
        }
    }

    /// Pixel statistics in f64 on `p / 255` (the arithmetic the image results were made with).
    fn of_pixels(pixels: &[u8]) -> Normalisation {
        let n = pixels.len().max(1) as f64;
        let mean = pixels.iter().map(|&p| p as f64 / 255.0).sum::<f64>() / n;
        let var = pixels
            .iter()
            .map(|&p| (p as f64 / 255.0 - mean).powi(2))
            .sum::<f64>()
            / n;
        Normalisation {
            mean: mean as f32,
            std: (var.sqrt() as f32).max(1e-6),
        }
    }

    /// The normalised values of `indices`, flattened example after example.
    pub fn features(&self, set: &Inputs, indices: &[usize]) -> Vec<f32> {
        let mut out = Vec::with_capacity(indices.len() * set.width());
        for &i in indices {
            let start = out.len();
            set.raw(i, &mut out);
            for v in &mut out[start..] {
                *v = (*v - self.mean) / self.std;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalised_pool_values_have_zero_mean_and_unit_variance() {
        let set = Inputs::Spectrograms(SpectrogramSet {
            mels: 2,
            frames: 3,
            values: (0..12).map(|v| v as f32 * 1.5 - 40.0).collect(),
            labels: vec![0, 1],
        });
        let norm = Normalisation::of_pool(&set);
        let x = norm.features(&set, &[0, 1]);
        let mean = x.iter().sum::<f32>() / 12.0;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 12.0;
        assert!(
            mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4,
            "{mean} {var}"
        );
        assert_eq!(set.shape(), (2, 3));
        assert_eq!(set.select(&[1]).labels(), &[1]);
    }

    #[test]
    fn image_normalisation_scales_pixels_to_unit_range_first() {
        let set = Inputs::Images(ImageSet {
            side: 1,
            pixels: vec![0, 255],
            labels: vec![0, 1],
        });
        let norm = Normalisation::of_pool(&set);
        assert!((norm.mean - 0.5).abs() < 1e-6 && (norm.std - 0.5).abs() < 1e-6);
    }
}

#[cfg(test)]
mod token_tests {
    use super::*;

    #[test]
    fn token_ids_pass_through_normalisation_unchanged() {
        let set = Inputs::Tokens(TokenSet {
            tokens: 3,
            vocab_size: 50_000,
            ids: vec![5, 0, 0, 49_999, 7, 1],
            labels: vec![0, 1],
        });
        let norm = Normalisation::of_pool(&set);
        assert_eq!(
            norm.features(&set, &[1, 0]),
            vec![49_999.0, 7.0, 1.0, 5.0, 0.0, 0.0]
        );
        assert_eq!(set.shape(), (1, 3));
    }
}
