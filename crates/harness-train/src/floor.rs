//! The floor of a report: an ℓ2-regularised logistic regression on the target's raw input,
//! fitted on a cell's subset by the protocol of Option 1's probe, so that a network can be
//! read against what no network at all reaches on the same examples.
//!
//! The input is the modality's plainest one ([`FloorInput`]): pixels in [0, 1], the mean of
//! each mel band over a spectrogram's frames, or TF-IDF of words as scikit-learn's
//! `TfidfVectorizer()` makes them ([`TfIdf`]). The protocol is the probe's (`probe_head.rs`):
//! features fitted on the fitting split (standardisation; for text the vocabulary and idf), `C`
//! chosen on the validation split by [`select_c`](crate::select_c) (accuracy, then log-loss,
//! then the smaller `C`), features and probe refitted on fitting + validation with that `C`,
//! and the whole test set scored once. The test set is read only after every choice is made.
//!
//! TF-IDF rows are ℓ2-normalised and sparse, and are not standardised (centring would make them
//! dense and weigh rare words up). Their probe is solved in the span of the fitting documents
//! (`floor/span.rs`): the same optimum, with as many features as documents.
//!
//! ```no_run
//! # fn demo(target: &harness_data::Dataset, subset: &harness_data::Subset) -> anyhow::Result<()> {
//! let grid = [0.001, 0.01, 0.1, 1.0, 10.0, 100.0];
//! let floor = harness_train::fit_floor(target, subset, &grid)?;
//! let c = floor.search.chosen().value;
//! println!("{}: C = {c}, test accuracy {:.3}", floor.input.describe(), floor.test.accuracy);
//! # Ok(()) }
//! ```

mod span;
mod tfidf;

pub use tfidf::{SparseRows, TfIdf};

use anyhow::{Context, Result, bail, ensure};
use harness_data::{Dataset, ImageSet, Inputs, SpectrogramSet, Subset, TextSet};

use crate::cell::Search;
use crate::eval::{Evaluation, macro_f1};
use crate::probe::{FeatureRows, LabelledRows, LogisticProbe, argmax, log_sum_exp};
use crate::probe_head::{choose_then_refit, standardised_probe};
use span::RowSpan;

/// Test examples turned into features at a time: the test set's features are never held whole.
const TEST_CHUNK: usize = 1000;

/// What the floor reads: the raw input of the target's modality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorInput {
    /// Every pixel scaled to [0, 1], standardised.
    Pixels,
    /// The mean over frames of each mel band of the log-mel spectrogram, standardised.
    MeanLogMel,
    /// TF-IDF of words, ℓ2-normalised rows, not standardised.
    WordTfIdf,
}

impl FloorInput {
    /// The floor's input for `inputs`' modality: images, spectrograms or documents.
    pub fn of(inputs: &Inputs) -> Result<FloorInput> {
        match inputs {
            Inputs::Images(_) => Ok(FloorInput::Pixels),
            Inputs::Spectrograms(_) => Ok(FloorInput::MeanLogMel),
            Inputs::Texts(_) => Ok(FloorInput::WordTfIdf),
            Inputs::Tokens(_) => bail!(
                "the floor reads documents, and these are token ids\n\
                 help: fit the floor on the dataset as decoded, before `encode_dataset` \
                 tokenises it"
            ),
            Inputs::Waveforms(_) => bail!(
                "the floor reads log-mel spectrograms, and these are waveforms\n\
                 help: fit the floor on the dataset as decoded, before an adapter turns it \
                 into waveforms"
            ),
        }
    }

    /// How a report names it.
    pub fn describe(self) -> &'static str {
        match self {
            FloorInput::Pixels => "raw pixels",
            FloorInput::MeanLogMel => "mean log-mel",
            FloorInput::WordTfIdf => "TF-IDF of words",
        }
    }
}

/// The floor of one subset: the choice of `C` on validation, and the refit's test scores.
#[derive(Debug, Clone, PartialEq)]
pub struct FloorFit {
    pub input: FloorInput,
    /// Features of the refit: pixels, mel bands, or words of its vocabulary.
    pub dim: usize,
    /// The chosen `C`'s scores on validation, fitted on the fitting split only (macro-F1
    /// measured, unlike the candidates of `search`).
    pub validation: Evaluation,
    /// The refit (fitting + validation) on the whole test set, scored once.
    pub test: Evaluation,
    /// Every `C` with its validation scores, the chosen one, and the refit's solver iterations.
    pub search: Search,
}

/// The floor of `target` on `subset` (indices of `target.train`), `C` chosen from `grid`; the
/// test set is all of `target.test`.
pub fn fit_floor(target: &Dataset, subset: &Subset, grid: &[f64]) -> Result<FloorFit> {
    let input =
        FloorInput::of(&target.train).with_context(|| format!("the floor of `{}`", target.id))?;
    check_examples(target, subset)
        .and_then(|()| {
            let classes = target.classes.len();
            match (&target.train, &target.test) {
                (Inputs::Images(train), Inputs::Images(test)) => {
                    ensure!(
                        train.side == test.side,
                        "test images of side {} against training images of side {}",
                        test.side,
                        train.side
                    );
                    dense_floor(input, train, test, subset, classes, grid)
                }
                (Inputs::Spectrograms(train), Inputs::Spectrograms(test)) => {
                    ensure!(
                        train.mels == test.mels,
                        "test spectrograms of {} mel bands against training ones of {}",
                        test.mels,
                        train.mels
                    );
                    dense_floor(input, train, test, subset, classes, grid)
                }
                (Inputs::Texts(train), Inputs::Texts(test)) => {
                    text_floor(train, test, subset, classes, grid)
                }
                _ => bail!("the test set is not of the training pool's modality"),
            }
        })
        .with_context(|| format!("the floor of `{}` on {}", target.id, input.describe()))
}

/// An error unless the subset indexes the training pool and every test label is a class.
fn check_examples(target: &Dataset, subset: &Subset) -> Result<()> {
    let pool = target.train.len();
    if let Some(i) = subset
        .fit
        .iter()
        .chain(&subset.validation)
        .find(|&&i| i >= pool)
    {
        bail!("the subset names example {i} of a training pool of {pool}");
    }
    let (labels, classes) = (target.test.labels(), target.classes.len());
    ensure!(!labels.is_empty(), "there is no test example");
    if let Some(i) = labels.iter().position(|&y| usize::from(y) >= classes) {
        bail!(
            "test example {i} has label {}, not a class of 0..{classes}",
            labels[i]
        );
    }
    Ok(())
}

/// A dense modality's examples as floor features.
trait DenseFeatures {
    fn dim(&self) -> usize;
    fn labels(&self) -> &[u16];
    /// The features of the examples at `indices`, row-major.
    fn rows(&self, indices: &[usize]) -> Vec<f64>;
}

impl DenseFeatures for ImageSet {
    fn dim(&self) -> usize {
        self.side * self.side
    }

    fn labels(&self) -> &[u16] {
        &self.labels
    }

    fn rows(&self, indices: &[usize]) -> Vec<f64> {
        let image = |i: usize| self.image(i).iter().map(|&p| f64::from(p) / 255.0);
        indices.iter().flat_map(|&i| image(i)).collect()
    }
}

impl DenseFeatures for SpectrogramSet {
    fn dim(&self) -> usize {
        self.mels
    }

    fn labels(&self) -> &[u16] {
        &self.labels
    }

    fn rows(&self, indices: &[usize]) -> Vec<f64> {
        let frames = self.frames;
        let band_means = |i: usize| {
            self.example(i)
                .chunks_exact(frames)
                .map(|band| band.iter().map(|&v| f64::from(v)).sum::<f64>() / frames as f64)
        };
        indices.iter().flat_map(|&i| band_means(i)).collect()
    }
}

/// The floor on standardised dense features, by the probe's own protocol.
fn dense_floor<D: DenseFeatures>(
    input: FloorInput,
    train: &D,
    test: &D,
    subset: &Subset,
    classes: usize,
    grid: &[f64],
) -> Result<FloorFit> {
    let dim = train.dim();
    let take = |indices: &[usize]| -> (Vec<f64>, Vec<u16>) {
        let labels = indices.iter().map(|&i| train.labels()[i]).collect();
        (train.rows(indices), labels)
    };
    let ((fit_x, fit_y), (val_x, val_y)) = (take(&subset.fit), take(&subset.validation));
    let probe = standardised_probe((&fit_x, &fit_y), (&val_x, &val_y), dim, classes, grid)?;
    let mut validation = Tally::default();
    let val_s = probe.choice_scaling.standardise(&val_x)?;
    validation.add_dense(&probe.selection.chosen.probe, &val_s, &val_y);
    let mut tally = Tally::default();
    let n = test.labels().len();
    for start in (0..n).step_by(TEST_CHUNK) {
        let chunk = start..n.min(start + TEST_CHUNK);
        let indices: Vec<usize> = chunk.clone().collect();
        let x = probe.scaling.standardise(&test.rows(&indices))?;
        tally.add_dense(&probe.refit.probe, &x, &test.labels()[chunk]);
    }
    Ok(FloorFit {
        input,
        dim,
        validation: validation.evaluation(classes),
        test: tally.evaluation(classes),
        search: probe.search,
    })
}

/// Some training documents as TF-IDF rows of a vocabulary fitted on themselves.
struct Documents {
    words: TfIdf,
    rows: SparseRows,
    labels: Vec<u16>,
}

impl Documents {
    fn of(set: &TextSet, indices: &[usize]) -> Documents {
        let docs: Vec<&str> = indices.iter().map(|&i| set.docs[i].as_str()).collect();
        let words = TfIdf::fit(&docs);
        let rows = words.rows(&docs);
        let labels = indices.iter().map(|&i| set.labels[i]).collect();
        Documents {
            words,
            rows,
            labels,
        }
    }
}

/// The floor on TF-IDF of words: vocabulary and idf of the fitting documents for the choice,
/// of fitting + validation documents for the refit, each probe solved in its documents' span.
fn text_floor(
    train: &TextSet,
    test: &TextSet,
    subset: &Subset,
    classes: usize,
    grid: &[f64],
) -> Result<FloorFit> {
    let fit = Documents::of(train, &subset.fit);
    let all: Vec<usize> = subset
        .fit
        .iter()
        .chain(&subset.validation)
        .copied()
        .collect();
    let all = Documents::of(train, &all);
    let (fit_span, all_span) = (RowSpan::of(&fit.rows), RowSpan::of(&all.rows));
    ensure!(
        fit_span.rank() > 0,
        "no fitting document has a word of two or more letters or digits"
    );
    let val_docs: Vec<&str> = subset
        .validation
        .iter()
        .map(|&i| train.docs[i].as_str())
        .collect();
    let val_z = fit_span.coordinates(&fit.words.rows(&val_docs));
    let val_y: Vec<u16> = subset.validation.iter().map(|&i| train.labels[i]).collect();
    let labelled = |x, dim, y| -> Result<LabelledRows> {
        Ok(LabelledRows::new(FeatureRows::new(x, dim)?, y)?)
    };
    let (selection, refit, search) = choose_then_refit(
        grid,
        classes,
        labelled(fit_span.fitting_coordinates(), fit_span.rank(), &fit.labels)?,
        labelled(&val_z, fit_span.rank(), &val_y)?,
        labelled(all_span.fitting_coordinates(), all_span.rank(), &all.labels)?,
    )?;
    let mut validation = Tally::default();
    validation.add_dense(&selection.chosen.probe, &val_z, &val_y);
    let over_words = all_span.probe_over_columns(&refit.probe);
    let mut tally = Tally::default();
    let mut z = vec![0.0; classes];
    for (docs, labels) in test
        .docs
        .chunks(TEST_CHUNK)
        .zip(test.labels.chunks(TEST_CHUNK))
    {
        let rows = all.words.rows(docs);
        for (i, &y) in labels.iter().enumerate() {
            sparse_logits(&over_words, rows.row(i), &mut z);
            tally.add(&z, y);
        }
    }
    Ok(FloorFit {
        input: FloorInput::WordTfIdf,
        dim: all.words.vocabulary().len(),
        validation: validation.evaluation(classes),
        test: tally.evaluation(classes),
        search,
    })
}

/// The logits of one sparse row into `out` (`classes` long).
fn sparse_logits(probe: &LogisticProbe, (columns, values): (&[u32], &[f64]), out: &mut [f64]) {
    for (j, z) in out.iter_mut().enumerate() {
        let w = probe.weight_row(j);
        let dot: f64 = columns
            .iter()
            .zip(values)
            .map(|(&c, v)| w[c as usize] * v)
            .sum();
        *z = probe.bias[j] + dot;
    }
}

/// Predictions and summed log-loss of labelled rows, scored one at a time.
#[derive(Default)]
struct Tally {
    predictions: Vec<usize>,
    truth: Vec<usize>,
    loss: f64,
}

impl Tally {
    /// One row's logits and label.
    fn add(&mut self, logits: &[f64], label: u16) {
        let y = usize::from(label);
        self.loss += log_sum_exp(logits) - logits[y];
        self.predictions.push(argmax(logits));
        self.truth.push(y);
    }

    /// Dense rows of `probe.dim` features, row-major, with their labels.
    fn add_dense(&mut self, probe: &LogisticProbe, rows: &[f64], labels: &[u16]) {
        let mut z = vec![0.0; probe.classes];
        for (x, &y) in rows.chunks_exact(probe.dim).zip(labels) {
            probe.logits(x, &mut z);
            self.add(&z, y);
        }
    }

    /// Accuracy, macro-F1 and mean log-loss (natural log), as the probe's score sums them.
    fn evaluation(&self, classes: usize) -> Evaluation {
        let n = self.truth.len();
        let correct = self
            .predictions
            .iter()
            .zip(&self.truth)
            .filter(|(p, t)| p == t)
            .count();
        Evaluation {
            accuracy: correct as f64 / n as f64,
            macro_f1: macro_f1(&self.predictions, &self.truth, classes),
            loss: self.loss / n as f64,
        }
    }
}

#[cfg(test)]
mod tests;
