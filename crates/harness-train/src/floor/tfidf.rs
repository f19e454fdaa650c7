//! Documents as TF-IDF rows of words, as scikit-learn's `TfidfVectorizer()` makes them with its
//! defaults: the document lower-cased, its words every maximal run of two or more word
//! characters (the matches of `(?u)\b\w\w+\b`), a vocabulary of every word of the documents it
//! is fitted on, sorted, `idf = ln((1 + n) / (1 + df)) + 1` (smoothed), and a row the raw counts
//! times idf, ℓ2-normalised (a document without a known word stays a zero row). Words the
//! vocabulary lacks are dropped. `tests/floor_reference.rs` checks words, vocabulary, idf and
//! rows against scikit-learn to 1e-9 (`tests/fixtures/make_tfidf_reference.py`).
//!
//! A word character is `char::is_alphanumeric` or `_`. Python's `\w` is `str.isalnum()` or
//! `_`, which differs only on characters that are alphabetic without being letters or numbers
//! (Unicode's `Other_Alphabetic`: vowel signs of Indic scripts, circled letters such as `Ⓐ`):
//! they are word characters here and not in Python.

use std::collections::{BTreeMap, HashMap};

/// Rows of `dim` columns, each stored as its non-zero columns (ascending) and their values.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseRows {
    dim: usize,
    /// Row `i` is `columns[offsets[i]..offsets[i + 1]]`, with its values alike.
    offsets: Vec<usize>,
    columns: Vec<u32>,
    values: Vec<f64>,
}

impl SparseRows {
    /// The number of rows.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of columns.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Row `i`: its non-zero columns, ascending, and their values.
    pub fn row(&self, i: usize) -> (&[u32], &[f64]) {
        let span = self.offsets[i]..self.offsets[i + 1];
        (&self.columns[span.clone()], &self.values[span])
    }

    /// Every row written out in full, row-major (for small sets: tests, references).
    pub fn to_dense(&self) -> Vec<f64> {
        let mut out = vec![0.0; self.len() * self.dim];
        for i in 0..self.len() {
            let (columns, values) = self.row(i);
            for (&c, &v) in columns.iter().zip(values) {
                out[i * self.dim + c as usize] = v;
            }
        }
        out
    }

    fn empty(dim: usize) -> SparseRows {
        SparseRows {
            dim,
            offsets: vec![0],
            columns: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Appends a row given as `(column, value)` pairs in ascending column order.
    fn push(&mut self, entries: impl IntoIterator<Item = (u32, f64)>) {
        for (c, v) in entries {
            self.columns.push(c);
            self.values.push(v);
        }
        self.offsets.push(self.columns.len());
    }
}

/// Calls `word` with every word of `doc`, in order, as the module doc defines them.
fn for_each_word(doc: &str, mut word: impl FnMut(&str)) {
    let lower = doc.to_lowercase();
    let is_word_char = |c: char| c.is_alphanumeric() || c == '_';
    let mut run: Option<(usize, usize)> = None; // (byte start, characters)
    for (at, c) in lower.char_indices() {
        match (&mut run, is_word_char(c)) {
            (Some((_, chars)), true) => *chars += 1,
            (None, true) => run = Some((at, 1)),
            (Some((start, chars)), false) => {
                if *chars >= 2 {
                    word(&lower[*start..at]);
                }
                run = None;
            }
            (None, false) => {}
        }
    }
    if let Some((start, chars)) = run
        && chars >= 2
    {
        word(&lower[start..]);
    }
}

/// A fitted vocabulary with the smoothed idf of each word.
#[derive(Debug, Clone, PartialEq)]
pub struct TfIdf {
    /// Every word of the fitted documents, sorted (by code point, as Python sorts).
    vocabulary: Vec<String>,
    index: HashMap<String, u32>,
    idf: Vec<f64>,
}

impl TfIdf {
    /// The vocabulary and idf of `docs`.
    pub fn fit<S: AsRef<str>>(docs: &[S]) -> TfIdf {
        let mut df: BTreeMap<String, usize> = BTreeMap::new();
        let mut seen: Vec<String> = Vec::new();
        for doc in docs {
            seen.clear();
            for_each_word(doc.as_ref(), |w| seen.push(w.to_string()));
            seen.sort_unstable();
            seen.dedup();
            for w in seen.drain(..) {
                *df.entry(w).or_insert(0) += 1;
            }
        }
        let n = docs.len() as f64;
        let idf = df
            .values()
            .map(|&d| ((1.0 + n) / (1.0 + d as f64)).ln() + 1.0)
            .collect();
        let vocabulary: Vec<String> = df.into_keys().collect();
        let index = vocabulary
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        TfIdf {
            vocabulary,
            index,
            idf,
        }
    }

    /// The words of `doc`, in order, as the vectoriser reads them (see the module doc).
    pub fn words(doc: &str) -> Vec<String> {
        let mut out = Vec::new();
        for_each_word(doc, |w| out.push(w.to_string()));
        out
    }

    /// The words, in column order.
    pub fn vocabulary(&self) -> &[String] {
        &self.vocabulary
    }

    /// The idf of each word, in column order.
    pub fn idf(&self) -> &[f64] {
        &self.idf
    }

    /// The ℓ2-normalised TF-IDF row of each of `docs`; unknown words are dropped.
    pub fn rows<S: AsRef<str>>(&self, docs: &[S]) -> SparseRows {
        let mut out = SparseRows::empty(self.vocabulary.len());
        let mut known: Vec<u32> = Vec::new();
        let mut entries: Vec<(u32, f64)> = Vec::new();
        for doc in docs {
            known.clear();
            for_each_word(doc.as_ref(), |w| known.extend(self.index.get(w)));
            known.sort_unstable();
            entries.clear();
            for run in known.chunk_by(|a, b| a == b) {
                let column = run[0];
                entries.push((column, run.len() as f64 * self.idf[column as usize]));
            }
            // Squares summed in column order, as scikit-learn's row normalisation sums them.
            let norm = entries.iter().map(|(_, v)| v * v).sum::<f64>().sqrt();
            if norm > 0.0 {
                entries.iter_mut().for_each(|(_, v)| *v /= norm);
            }
            out.push(entries.iter().copied());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lowercased_runs_of_two_or_more_word_characters() {
        assert_eq!(
            TfIdf::words("A cat's __init__, x2-Y3 é naïve 42!"),
            ["cat", "__init__", "x2", "y3", "naïve", "42"]
        );
        assert!(TfIdf::words("a b c . !").is_empty());
    }

    #[test]
    fn rows_are_counts_times_idf_normalised_and_drop_unknown_words() {
        let tfidf = TfIdf::fit(&["the cat the", "the dog"]);
        assert_eq!(tfidf.vocabulary(), ["cat", "dog", "the"]);
        let (cat, the) = ((3.0f64 / 2.0).ln() + 1.0, 1.0);
        assert_eq!(tfidf.idf(), [cat, cat, the]);
        let rows = tfidf.rows(&["the cat the zebra", "zebra", ""]);
        let norm = (cat * cat + 4.0 * the * the).sqrt();
        assert_eq!(rows.row(0), (&[0u32, 2][..], &[cat / norm, 2.0 / norm][..]));
        assert_eq!(rows.row(1), (&[][..], &[][..]));
        assert_eq!(rows.row(2), (&[][..], &[][..]));
        assert_eq!(rows.to_dense().len(), 9);
    }
}
