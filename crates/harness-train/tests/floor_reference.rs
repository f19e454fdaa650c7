//! The floor (`src/floor.rs`) against scikit-learn on committed fixtures:
//! `fixtures/make_tfidf_reference.py` wrote `fixtures/tfidf_reference.json` (the words,
//! vocabulary, idf and rows of `TfidfVectorizer()` on a dozen awkward documents, and the rows
//! of two unseen ones), checked to 1e-9; `fixtures/make_floor_reference.py` wrote
//! `fixtures/floor_reference.json` (the floor on raw pixels of a tiny image dataset with
//! `StandardScaler` and `LogisticRegression`), whose choice of `C` and test accuracy must be
//! the same, and whose log-losses agree to 1e-5.

use harness_data::{Dataset, ImageSet, Inputs, Subset};
use harness_train::{FloorInput, TfIdf, fit_floor};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_str().expect("a string").to_string())
        .collect()
}

fn integers<T: TryFrom<u64>>(v: &Value) -> Vec<T> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| {
            T::try_from(x.as_u64().expect("an integer"))
                .ok()
                .expect("in range")
        })
        .collect()
}

fn dense_rows(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("rows")
        .iter()
        .flat_map(floats)
        .collect()
}

fn max_difference(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn tfidf_of_words_is_scikit_learns_tfidf_vectorizer() {
    let reference = fixture("tfidf_reference.json");
    let docs = strings(&reference["docs"]);
    for (doc, tokens) in docs.iter().zip(reference["tokens"].as_array().unwrap()) {
        assert_eq!(TfIdf::words(doc), strings(tokens), "the words of {doc:?}");
    }
    let tfidf = TfIdf::fit(&docs);
    assert_eq!(tfidf.vocabulary(), strings(&reference["vocabulary"]));
    assert!(max_difference(tfidf.idf(), &floats(&reference["idf"])) < 1e-9);
    let rows = tfidf.rows(&docs);
    assert_eq!(
        (rows.len(), rows.dim()),
        (docs.len(), tfidf.vocabulary().len())
    );
    assert!(max_difference(&rows.to_dense(), &dense_rows(&reference["rows"])) < 1e-9);
    let unseen = tfidf.rows(&strings(&reference["unseen_docs"]));
    assert!(max_difference(&unseen.to_dense(), &dense_rows(&reference["unseen_rows"])) < 1e-9);
}

fn images(reference: &Value, split: &str) -> Inputs {
    Inputs::Images(ImageSet {
        side: reference["side"].as_u64().unwrap() as usize,
        pixels: integers(&reference[format!("{split}_pixels")]),
        labels: integers(&reference[format!("{split}_labels")]),
    })
}

#[test]
fn the_floor_on_pixels_chooses_and_tests_as_scikit_learn_does() {
    let reference = fixture("floor_reference.json");
    let classes = reference["classes"].as_u64().unwrap() as usize;
    let target = Dataset {
        id: "floor-reference".into(),
        classes: (0..classes).map(|c| c.to_string()).collect(),
        train: images(&reference, "train"),
        test: images(&reference, "test"),
        content_sha256: String::new(),
        origin: "fixture".into(),
    };
    let subset = Subset {
        fit: integers(&reference["fit"]),
        validation: integers(&reference["validation"]),
    };
    let floor = fit_floor(&target, &subset, &floats(&reference["grid"])).unwrap();
    assert_eq!(floor.input, FloorInput::Pixels);
    let candidates = reference["candidates"].as_array().unwrap();
    assert_eq!(floor.search.candidates.len(), candidates.len());
    for (ours, theirs) in floor.search.candidates.iter().zip(candidates) {
        assert_eq!(ours.value, theirs["c"].as_f64().unwrap());
        assert_eq!(
            ours.validation.accuracy,
            theirs["accuracy"].as_f64().unwrap()
        );
        let loss = theirs["loss"].as_f64().unwrap();
        assert!(
            (ours.validation.loss - loss).abs() < 1e-5,
            "C = {}",
            ours.value
        );
    }
    assert_eq!(
        floor.search.chosen().value,
        reference["chosen_c"].as_f64().unwrap()
    );
    let chosen = &candidates[floor.search.chosen];
    assert!((floor.validation.macro_f1 - chosen["macro_f1"].as_f64().unwrap()).abs() < 1e-12);
    let test = &reference["test"];
    assert_eq!(floor.test.accuracy, test["accuracy"].as_f64().unwrap());
    assert!((floor.test.macro_f1 - test["macro_f1"].as_f64().unwrap()).abs() < 1e-12);
    assert!((floor.test.loss - test["loss"].as_f64().unwrap()).abs() < 1e-5);
}
