//! Text into token ids with the `tokenizers` crate: a WordPiece tokenizer trained on a corpus
//! (the text source's training pool) or the user's own `tokenizer.json`, cached under a content
//! hash, and fixed-length id sequences for the model.
//!
//! Normalisation lives inside the tokenizer (BERT's: control characters removed, accents
//! stripped, lower-cased), so source and target text are normalised the same way by
//! construction. Ids 0 and 1 are always `[PAD]` and `[UNK]`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, ensure};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

pub use harness_spec::TextNormalisation;

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::{
    AddedToken, NormalizedString, Normalizer, OffsetReferential, OffsetType, PreTokenizedString,
    PreTokenizer, Tokenizer,
};

/// Id of the padding token (and of nothing else).
pub const PAD_ID: u32 = 0;
pub const PAD: &str = "[PAD]";
pub const UNK: &str = "[UNK]";

/// What a trained tokenizer depends on besides its corpus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenizerSpec {
    pub vocab_size: usize,
    /// Pieces seen fewer times than this in the corpus are not learned.
    pub min_frequency: u64,
}

/// Trains a WordPiece tokenizer on `texts`.
///
/// The vocabulary is learned here rather than by the crate's `WordPieceTrainer`, which is not
/// deterministic: it orders characters of equal count (and through them merges of equal count)
/// by hash-map iteration, so two trainings on one corpus gave different vocabularies (measured).
/// This learner is deterministic and simple: after the tokenizer's own normalisation and
/// pre-tokenisation, the vocabulary holds `[PAD]`, `[UNK]`, every character seen at least
/// `min_frequency` times (alone and as a `##` continuation, most frequent first), then whole
/// words by frequency (ties by text) up to `vocab_size`. WordPiece's greedy longest match then
/// spells an out-of-vocabulary word as a known prefix and continuation pieces.
pub fn train_tokenizer<'a>(
    texts: impl Iterator<Item = &'a str> + Send,
    spec: &TokenizerSpec,
) -> Result<Tokenizer> {
    ensure!(
        spec.vocab_size > 2,
        "the vocabulary needs more than the 2 special tokens"
    );
    let normalizer = BertNormalizer::new(true, true, Some(true), true);
    let pre_tokenizer = BertPreTokenizer;
    let mut words: HashMap<String, u64> = HashMap::new();
    let mut chars: HashMap<char, u64> = HashMap::new();
    for text in texts {
        let mut normalized = NormalizedString::from(text);
        normalizer
            .normalize(&mut normalized)
            .map_err(|e| anyhow!("normalising: {e}"))?;
        let mut pre = PreTokenizedString::from(normalized);
        pre_tokenizer
            .pre_tokenize(&mut pre)
            .map_err(|e| anyhow!("pre-tokenising: {e}"))?;
        for (word, _, _) in pre.get_splits(OffsetReferential::Original, OffsetType::Char) {
            *words.entry(word.to_string()).or_default() += 1;
            for c in word.chars() {
                *chars.entry(c).or_default() += 1;
            }
        }
    }
    let by_count = |a: &(u64, String), b: &(u64, String)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
    let mut char_list: Vec<(u64, String)> = chars
        .into_iter()
        .filter(|&(_, n)| n >= spec.min_frequency)
        .map(|(c, n)| (n, c.to_string()))
        .collect();
    char_list.sort_by(by_count);
    let mut vocab: Vec<String> = vec![PAD.into(), UNK.into()];
    let budget = spec.vocab_size - 2;
    // Each character takes two entries (itself and its continuation).
    for (_, c) in char_list.iter().take(budget / 2) {
        vocab.push(c.clone());
        vocab.push(format!("##{c}"));
    }
    let mut word_list: Vec<(u64, String)> = words
        .into_iter()
        .filter(|(w, n)| *n >= spec.min_frequency && w.chars().count() > 1)
        .map(|(w, n)| (n, w))
        .collect();
    word_list.sort_by(by_count);
    let room = spec.vocab_size.saturating_sub(vocab.len());
    vocab.extend(word_list.into_iter().take(room).map(|(_, w)| w));
    let ids: ahash::AHashMap<String, u32> = vocab
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, i as u32))
        .collect();
    let model = WordPiece::builder()
        .vocab(ids)
        .unk_token(UNK.into())
        .build()
        .map_err(|e| anyhow!("building WordPiece: {e}"))?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_normalizer(Some(normalizer));
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.add_special_tokens(&[AddedToken::from(PAD, true), AddedToken::from(UNK, true)]);
    check_specials(&tokenizer)?;
    Ok(tokenizer)
}

fn check_specials(tokenizer: &Tokenizer) -> Result<()> {
    ensure!(
        tokenizer.token_to_id(PAD) == Some(PAD_ID),
        "the tokenizer must map `{PAD}` to id {PAD_ID}"
    );
    Ok(())
}

/// Loads a `tokenizer.json` (the user's own, or a cached one).
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    let tokenizer = Tokenizer::from_file(path)
        .map_err(|e| anyhow!("{}: not a readable tokenizer.json: {e}", path.display()))?;
    check_specials(&tokenizer).with_context(|| path.display().to_string())?;
    Ok(tokenizer)
}

/// A network's own tokenizer (its `tokenizer.json`, as published with the weights), set to cut
/// documents at `max_tokens` as the network was trained (the special tokens kept: `[CLS] …
/// [SEP]`) and to add no padding: [`network_token_ids`] pads.
pub fn load_network_tokenizer(path: &Path, max_tokens: usize) -> Result<Tokenizer> {
    let mut tokenizer = load_tokenizer(path)?;
    tokenizer
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length: max_tokens,
            ..Default::default()
        }))
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    tokenizer.with_padding(None);
    Ok(tokenizer)
}

/// Token ids of `texts` through a network's own tokenizer ([`load_network_tokenizer`]), each
/// padded with [`PAD_ID`] to the longest, `[texts, tokens]` row-major with the token count.
pub fn network_token_ids(tokenizer: &Tokenizer, texts: &[&str]) -> Result<(Vec<u32>, usize)> {
    let encoded = tokenizer
        .encode_batch(texts.to_vec(), true)
        .map_err(|e| anyhow!("tokenising with the network's tokenizer: {e}"))?;
    let width = encoded.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(texts.len() * width);
    for e in &encoded {
        ids.extend_from_slice(e.get_ids());
        ids.extend(std::iter::repeat_n(PAD_ID, width - e.get_ids().len()));
    }
    Ok((ids, width))
}

/// A cached tokenizer: where its `tokenizer.json` is and the file's SHA256.
#[derive(Debug, Clone)]
pub struct CachedTokenizer {
    pub path: PathBuf,
    pub sha256: String,
    pub tokenizer: Tokenizer,
    /// Whether it was trained by this call (false: read from the cache).
    pub trained_now: bool,
}

/// Returns the tokenizer trained on the corpus whose content hash is `corpus_sha256`, training
/// it on `texts()` and saving it (atomically) as `cache/tokenizers/KEY/tokenizer.json` the
/// first time.
pub fn ensure_tokenizer<'a, I>(
    cache_root: &Path,
    corpus_sha256: &str,
    spec: &TokenizerSpec,
    texts: impl FnOnce() -> I,
) -> Result<CachedTokenizer>
where
    I: Iterator<Item = &'a str> + Send,
{
    #[derive(Serialize)]
    struct Key<'a> {
        version: u32,
        corpus: &'a str,
        spec: &'a TokenizerSpec,
        model: &'static str,
    }
    let key = hex::encode(Sha256::digest(serde_json::to_vec(&Key {
        version: 1,
        corpus: corpus_sha256,
        spec,
        model: "wordpiece+bert-normalizer",
    })?));
    let dir = cache_root.join("tokenizers").join(&key[..16]);
    let path = dir.join("tokenizer.json");
    // The file's SHA256 as written, beside it: a tokenizer that no longer matches it (or was
    // written before it was recorded) is learned again.
    let recorded_path = dir.join("tokenizer.json.sha256");
    if path.is_file() {
        let bytes = fs::read(&path)?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let recorded = fs::read_to_string(&recorded_path).unwrap_or_default();
        if recorded.trim() == sha256 {
            return Ok(CachedTokenizer {
                sha256,
                tokenizer: load_tokenizer(&path)?,
                path,
                trained_now: false,
            });
        }
        eprintln!(
            "warning: {} does not match its recorded sha256 ({}); learning it again",
            path.display(),
            if recorded.is_empty() {
                "none recorded"
            } else {
                recorded.trim()
            }
        );
    }
    let tokenizer = train_tokenizer(texts(), spec)?;
    let json = tokenizer
        .to_string(false)
        .map_err(|e| anyhow!("serialising the tokenizer: {e}"))?;
    fs::create_dir_all(&dir)?;
    let sha256 = hex::encode(Sha256::digest(json.as_bytes()));
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
    tmp.write_all(json.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(&path)?;
    fs::write(&recorded_path, format!("{sha256}\n"))?;
    Ok(CachedTokenizer {
        sha256,
        path,
        tokenizer,
        trained_now: true,
    })
}

/// Token ids of `text`, cut to `length` (the start is kept) or padded with [`PAD_ID`].
pub fn encode_fixed(tokenizer: &Tokenizer, text: &str, length: usize) -> Result<Vec<u32>> {
    let encoding = tokenizer
        .encode(text, false)
        .map_err(|e| anyhow!("tokenising: {e}"))?;
    let mut ids: Vec<u32> = encoding.get_ids().iter().take(length).copied().collect();
    ids.resize(length, PAD_ID);
    Ok(ids)
}

/// What a [`TextNormalisation`] (the experiment's `text.normalise`, chosen when the file is
/// read) does to a text.
pub trait Normalise {
    /// `text` as this normalisation leaves it.
    fn apply(self, text: &str) -> String;

    /// The first `max_words` words of [`Normalise::apply`]'s output (for `Tokenizer`, of the
    /// text's whitespace-separated words). Every such word becomes at least one token, so a
    /// document encoded to `n` ids never needs more than its first `n` words: cutting first
    /// gives the same ids, much faster on long documents.
    fn apply_words(self, text: &str, max_words: usize) -> String;
}

impl Normalise for TextNormalisation {
    fn apply(self, text: &str) -> String {
        self.apply_words(text, usize::MAX)
    }

    fn apply_words(self, text: &str, max_words: usize) -> String {
        let mut out = String::new();
        let mut words = 0;
        let push = |out: &mut String, word: &str| {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
        };
        for raw in text.split_whitespace() {
            if words >= max_words {
                break;
            }
            match self {
                TextNormalisation::Tokenizer => {
                    push(&mut out, raw);
                    words += 1;
                }
                TextNormalisation::Letters => {
                    let folded;
                    let word = if raw.is_ascii() {
                        raw
                    } else {
                        // Lower-casing and accent stripping as BERT does (cannot fail).
                        let mut normalized = NormalizedString::from(raw);
                        let _ = BertNormalizer::new(false, false, Some(true), true)
                            .normalize(&mut normalized);
                        folded = normalized.get().to_string();
                        &folded
                    };
                    let mut piece = String::new();
                    for c in word.chars().chain(std::iter::once(' ')) {
                        let c = c.to_ascii_lowercase();
                        if c.is_ascii_lowercase() {
                            piece.push(c);
                        } else if !piece.is_empty() {
                            if words < max_words {
                                push(&mut out, &piece);
                                words += 1;
                            }
                            piece.clear();
                        }
                    }
                }
            }
        }
        out
    }
}

/// Every document of `texts`, normalised and encoded to `length` ids (see [`encode_fixed`]),
/// in parallel and in order.
pub fn tokenise_texts(
    tokenizer: &Tokenizer,
    texts: &crate::TextSet,
    length: usize,
    normalisation: TextNormalisation,
) -> Result<crate::TokenSet> {
    use rayon::prelude::*;
    let rows: Vec<Vec<u32>> = texts
        .docs
        .par_iter()
        .map(|doc| encode_fixed(tokenizer, &normalisation.apply_words(doc, length), length))
        .collect::<Result<_>>()?;
    Ok(crate::TokenSet {
        tokens: length,
        vocab_size: tokenizer.get_vocab_size(true),
        ids: rows.concat(),
        labels: texts.labels.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        let words = [
            "package",
            "library",
            "network",
            "server",
            "client",
            "python",
            "module",
            "utility",
            "graphics",
            "sound",
            "daemon",
            "kernel",
            "driver",
            "documentation",
            "development",
        ];
        (0..400)
            .map(|i| {
                (0..12)
                    .map(|j| words[(i * 7 + j * 3) % words.len()])
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    fn spec() -> TokenizerSpec {
        TokenizerSpec {
            vocab_size: 120,
            min_frequency: 2,
        }
    }

    #[test]
    fn training_twice_gives_the_same_tokenizer_file() {
        let texts = corpus();
        let a = train_tokenizer(texts.iter().map(String::as_str), &spec()).unwrap();
        let b = train_tokenizer(texts.iter().map(String::as_str), &spec()).unwrap();
        assert_eq!(a.to_string(false).unwrap(), b.to_string(false).unwrap());
        assert!(a.get_vocab_size(true) <= 120);
        // Frequent words are whole tokens; the rest is spelled with continuation pieces.
        let encoding = a.encode("package packages", false).unwrap();
        assert_eq!(encoding.get_tokens(), &["package", "package", "##s"]);
    }

    #[test]
    fn normalisation_and_padding_are_fixed_and_unknown_text_is_not_lost() {
        let texts = corpus();
        let t = train_tokenizer(texts.iter().map(String::as_str), &spec()).unwrap();
        // Case and accents are normalised away inside the tokenizer.
        assert_eq!(
            encode_fixed(&t, "Python Kérnel", 6).unwrap(),
            encode_fixed(&t, "python kernel", 6).unwrap()
        );
        let ids = encode_fixed(&t, "python kernel", 6).unwrap();
        assert_eq!(&ids[2..], &[PAD_ID; 4]);
        assert!(ids[..2].iter().all(|&i| i != PAD_ID));
        // Long text is cut to the length; unseen characters map to [UNK], not to padding.
        assert_eq!(encode_fixed(&t, &texts[0], 5).unwrap().len(), 5);
        let unk = t.token_to_id(UNK).unwrap();
        assert!(encode_fixed(&t, "ж", 3).unwrap().contains(&unk));
    }

    #[test]
    fn the_cache_trains_once_and_a_saved_file_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let texts = corpus();
        let first = ensure_tokenizer(dir.path(), "abc", &spec(), || {
            texts.iter().map(String::as_str)
        })
        .unwrap();
        assert!(first.trained_now);
        let second = ensure_tokenizer(dir.path(), "abc", &spec(), || -> std::iter::Empty<&str> {
            panic!("must not retrain")
        })
        .unwrap();
        assert!(!second.trained_now);
        assert_eq!(first.sha256, second.sha256);
        let loaded = load_tokenizer(&first.path).unwrap();
        assert_eq!(
            encode_fixed(&loaded, "network server", 4).unwrap(),
            encode_fixed(&first.tokenizer, "network server", 4).unwrap()
        );
        let other = ensure_tokenizer(dir.path(), "other-corpus", &spec(), || {
            texts.iter().map(String::as_str)
        })
        .unwrap();
        assert_ne!(other.path, first.path);
    }

    #[test]
    fn a_file_that_is_not_a_tokenizer_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        fs::write(&path, "{ not json").unwrap();
        let err = load_tokenizer(&path).unwrap_err();
        assert!(format!("{err:#}").contains("tokenizer.json"), "{err:#}");
    }

    #[test]
    fn letters_normalisation_keeps_lower_case_words_only() {
        let n = TextNormalisation::Letters;
        assert_eq!(
            n.apply("  Hello, Wörld! GTK+ 3.0 bindings\tfor C++ (libfoo-dev) "),
            "hello world gtk bindings for c libfoo dev"
        );
        // Already-normalised text (20 Newsgroups) is left as it is.
        assert_eq!(n.apply("already normal text"), "already normal text");
        assert_eq!(n.apply("1234 ..."), "");
        assert_eq!(n.apply_words("One, two-three 4 four", 3), "one two three");
        assert_eq!(
            TextNormalisation::Tokenizer.apply_words("a  b\tc d", 3),
            "a b c"
        );
        assert_eq!(TextNormalisation::Tokenizer.apply("Keep, It!"), "Keep, It!");
    }

    #[test]
    fn tokenised_sets_keep_order_labels_and_length() {
        let texts = corpus();
        let t = train_tokenizer(texts.iter().map(String::as_str), &spec()).unwrap();
        let set = crate::TextSet {
            docs: vec!["Python, kernel!".into(), "".into(), texts[3].clone()],
            labels: vec![2, 0, 1],
        };
        let tokens = tokenise_texts(&t, &set, 4, TextNormalisation::Letters).unwrap();
        assert_eq!(tokens.labels, vec![2, 0, 1]);
        assert_eq!(tokens.ids.len(), 12);
        assert_eq!(
            tokens.example(0),
            encode_fixed(&t, "python kernel", 4).unwrap()
        );
        assert_eq!(tokens.example(1), &[PAD_ID; 4]);
        // Cutting a long document to its first words first gives the ids of the whole text.
        let whole = TextNormalisation::Letters.apply(&texts[3]);
        assert_eq!(tokens.example(2), encode_fixed(&t, &whole, 4).unwrap());
        assert_eq!(tokens.vocab_size, t.get_vocab_size(true));
    }
}
