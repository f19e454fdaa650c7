//! An experiment's tokenizer (trained on its corpus, read from the cache, or the user's own
//! file) and its text datasets encoded through it.

use std::path::Path;

use anyhow::{Context, Result, bail};
use harness_spec::TokenizerPlan;

use crate::dataset::Dataset;
use crate::inputs::Inputs;
use crate::tokenize::{Normalise, TokenizerSpec, ensure_tokenizer, load_tokenizer, tokenise_texts};
use tokenizers::Tokenizer;

/// The tokenizer a [`TokenizerPlan`] asks for, with the SHA256 of its `tokenizer.json` and a
/// phrase saying where it came from.
pub struct PlannedTokenizer {
    pub tokenizer: Tokenizer,
    pub sha256: String,
    /// E.g. "trained on the 1600 training-pool documents of 20newsgroups-2k (cached), PATH".
    pub origin: String,
}

/// The tokenizer of `plan`: the user's file, or learned on the training pool of `corpus`
/// (the plan's `corpus` dataset; the normalised documents are made only when the tokenizer is
/// not in `cache_root` yet).
pub fn plan_tokenizer(
    plan: &TokenizerPlan,
    corpus: Option<&Dataset>,
    cache_root: &Path,
) -> Result<PlannedTokenizer> {
    if let Some(path) = &plan.file {
        return Ok(PlannedTokenizer {
            tokenizer: load_tokenizer(path)?,
            sha256: plan.file_sha256.clone().unwrap_or_default(),
            origin: format!("{} (the experiment's own)", path.display()),
        });
    }
    let corpus = corpus.context("a tokenizer without a corpus or a file")?;
    let id = &corpus.id;
    let Inputs::Texts(texts) = &corpus.train else {
        bail!("`text.corpus` = `{id}` is not a text dataset");
    };
    let normalisation = plan.text.normalise;
    let docs = std::cell::OnceCell::new();
    let cached = ensure_tokenizer(
        cache_root,
        &format!("{}:normalise={normalisation}", corpus.content_sha256),
        &TokenizerSpec {
            vocab_size: plan.text.vocab_size,
            min_frequency: plan.text.min_frequency,
        },
        || {
            docs.get_or_init(|| {
                texts
                    .docs
                    .iter()
                    .map(|d| normalisation.apply(d))
                    .collect::<Vec<String>>()
            })
            .iter()
            .map(String::as_str)
        },
    )
    .with_context(|| format!("training the tokenizer on `{id}`"))?;
    Ok(PlannedTokenizer {
        origin: format!(
            "trained on the {} training-pool documents of {id}{}, {}",
            texts.docs.len(),
            if cached.trained_now { "" } else { " (cached)" },
            cached.path.display()
        ),
        tokenizer: cached.tokenizer,
        sha256: cached.sha256,
    })
}

/// `dataset` with its documents as token ids, normalised and cut as `plan` says.
pub fn encode_dataset(
    dataset: &Dataset,
    tokenizer: &Tokenizer,
    plan: &TokenizerPlan,
) -> Result<Dataset> {
    let encode = |inputs: &Inputs| -> Result<Inputs> {
        match inputs {
            Inputs::Texts(texts) => Ok(Inputs::Tokens(tokenise_texts(
                tokenizer,
                texts,
                plan.text.max_tokens,
                plan.text.normalise,
            )?)),
            _ => bail!("`{}` is not a text dataset", dataset.id),
        }
    };
    Ok(Dataset {
        id: dataset.id.clone(),
        classes: dataset.classes.clone(),
        train: encode(&dataset.train)?,
        test: encode(&dataset.test)?,
        content_sha256: dataset.content_sha256.clone(),
        origin: dataset.origin.clone(),
    })
}
