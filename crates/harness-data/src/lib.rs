//! # harness-data
//!
//! Everything between a dataset manifest and normalised examples: fetching each manifest source
//! in order (official URL, `pip` wheel, `apt` package, the user's own folder, or a `render`
//! generator fed by fetched assets), reading members and folders out of archives, verifying the
//! SHA256 of the decoded content, decoding (IDX, CSV of pixels, image folders, WAV / Ogg Vorbis
//! folders, spoken words rendered with espeak-ng), resampling and log-mel spectrograms (rustfft,
//! checked against librosa), the fixed test split (stratified, or whole speakers held out),
//! nested stratified training subsets with their validation split, normalisation, and the
//! content-addressed dataset cache.
//!
//! It knows nothing of models, training or results.
//!
//! ```no_run
//! use harness_data::{DataCache, prepare, training_subset};
//! # fn demo(manifest: &harness_spec::Manifest) -> anyhow::Result<()> {
//! let dataset = prepare(manifest, &DataCache::new("/tmp/cache"), &mut |_| {})?;
//! let pool: Vec<usize> = (0..dataset.train.len()).collect();
//! let subset = training_subset(&pool, dataset.train.labels(), dataset.classes.len(), 50, 0, 0.2)?;
//! assert_eq!(subset.all().len(), 50);
//! # Ok(()) }
//! ```

mod adapt;
mod archive;
mod audio;
mod audioset;
mod dataset;
mod decode;
mod espeak;
mod fetch;
mod inputs;
mod logmel;
mod render;
mod soundfont;
mod split;
mod text;
mod text_plan;
mod tokenize;

pub use adapt::{adapt_images, adapt_log_mel_images, adapt_texts, log_mel_images, resize_images};
pub use archive::{
    gunzip_if_compressed, read_deb_member, read_deb_tree, read_zip_member, read_zip_tree,
};
pub use audio::{Clip, decode_audio, fix_length, load_clip, resample};
pub use audioset::{decode_audio_tree, logmel_spec, spectrograms};
pub use dataset::{DataCache, Dataset, content_sha256, prepare, prepare_waveforms};
pub use decode::{ImageSet, decode_csv_pixels, decode_idx, decode_image_folder};
pub use espeak::Espeak;
pub use fetch::{
    FetchEvent, Fetched, FetchedWeights, describe, fetch, fetch_weights, tree_sha256, verify,
};
pub use inputs::{Inputs, Normalisation, SpectrogramSet, TextSet, TokenSet, WaveformSet};
pub use logmel::{LogMelSpec, frame_count, hz_to_mel, log_mel, mel_filters, mel_to_hz};
pub use render::{
    NoteJob, RenderHasher, RenderJob, note_jobs, render_jobs, render_notes, render_words,
};
pub use soundfont::{NoteRenderer, gm_family};
pub use split::{
    Rng, StratifiedLimit, Subset, by_class, largest_stratified_n, proportional_subset,
    stratified_test_split, training_subset,
};
pub use text::{
    Labelled, Stanza, debian_descriptions, debian_descriptions_csv, parse_csv, parse_deb822,
    parse_orange_tab, parse_text_csv, write_csv_record,
};
pub use text_plan::{PlannedTokenizer, encode_dataset, plan_tokenizer};
pub use tokenize::{
    CachedTokenizer, Normalise, PAD, PAD_ID, TextNormalisation, TokenizerSpec, UNK, encode_fixed,
    ensure_tokenizer, load_network_tokenizer, load_tokenizer, network_token_ids, tokenise_texts,
    train_tokenizer,
};
/// The tokenizer type of the `tokenizers` crate, as [`load_tokenizer`] and [`ensure_tokenizer`]
/// return it.
pub use tokenizers::Tokenizer;
