use super::*;
use harness_data::{Rng, TokenSet, training_subset};

const GRID: [f64; 4] = [0.01, 0.1, 1.0, 10.0];
const CLASSES: usize = 3;

fn dataset(train: Inputs, test: Inputs) -> Dataset {
    Dataset {
        id: "synthetic".into(),
        classes: (0..CLASSES).map(|c| format!("class {c}")).collect(),
        train,
        test,
        content_sha256: String::new(),
        origin: "test".into(),
    }
}

/// Labels 0, 1, 2, 0, … of `n` examples.
fn labels(n: usize) -> Vec<u16> {
    (0..n).map(|i| (i % CLASSES) as u16).collect()
}

/// Noisy images whose class lights three pixels of its own.
fn images(n: usize, seed: u64) -> Inputs {
    let mut rng = Rng::new(seed, "floor-images");
    let side = 6;
    let labels = labels(n);
    let mut pixels = Vec::new();
    for &y in &labels {
        let lit = usize::from(y) * 4..usize::from(y) * 4 + 3;
        pixels.extend((0..side * side).map(|p| {
            let noise = rng.below(120) as u8;
            if lit.contains(&p) { noise + 110 } else { noise }
        }));
    }
    Inputs::Images(ImageSet {
        side,
        pixels,
        labels,
    })
}

/// Noisy spectrograms whose class raises one mel band by a few dB.
fn spectrograms(n: usize, seed: u64) -> Inputs {
    let mut rng = Rng::new(seed, "floor-spectrograms");
    let (mels, frames) = (8, 6);
    let labels = labels(n);
    let mut values = Vec::new();
    for &y in &labels {
        for m in 0..mels {
            let raised = if m == usize::from(y) + 2 { 6.0 } else { 0.0 };
            values.extend((0..frames).map(|_| -50.0 + rng.below(20) as f32 + raised));
        }
    }
    Inputs::Spectrograms(SpectrogramSet {
        mels,
        frames,
        values,
        labels,
    })
}

/// Documents of filler words, four in five also naming their class's word.
fn texts(n: usize, seed: u64) -> Inputs {
    const FILLER: [&str; 12] = [
        "the", "of", "and", "report", "meeting", "today", "was", "long", "it", "data", "new",
        "some",
    ];
    const SIGNAL: [&str; CLASSES] = ["Alpha!", "(bravo)", "CHARLIE,"];
    let mut rng = Rng::new(seed, "floor-texts");
    let labels = labels(n);
    let docs = labels
        .iter()
        .map(|&y| {
            let mut words: Vec<&str> = (0..8).map(|_| FILLER[rng.below(FILLER.len())]).collect();
            if rng.below(5) != 0 {
                words.insert(rng.below(9), SIGNAL[usize::from(y)]);
            }
            words.join(" ")
        })
        .collect();
    Inputs::Texts(TextSet { docs, labels })
}

/// A stratified subset of 90 of the pool's 120 examples, a quarter held out for validation.
fn subset() -> Subset {
    let pool: Vec<usize> = (0..120).collect();
    training_subset(&pool, &labels(120), CLASSES, 90, 7, 0.25).unwrap()
}

/// The same dataset with every test label moved to the next class.
fn with_moved_test_labels(target: &Dataset) -> Dataset {
    let mut moved = target.clone();
    let shift = |labels: &mut Vec<u16>| {
        labels
            .iter_mut()
            .for_each(|y| *y = (*y + 1) % CLASSES as u16)
    };
    match &mut moved.test {
        Inputs::Images(s) => shift(&mut s.labels),
        Inputs::Spectrograms(s) => shift(&mut s.labels),
        Inputs::Texts(s) => shift(&mut s.labels),
        _ => unreachable!("the floor's modalities only"),
    }
    moved
}

fn synthetic(make: fn(usize, u64) -> Inputs) -> Dataset {
    dataset(make(120, 1), make(90, 2))
}

fn learns_the_class_signal(make: fn(usize, u64) -> Inputs, input: FloorInput, dim: usize) {
    let floor = fit_floor(&synthetic(make), &subset(), &GRID).unwrap();
    assert_eq!(floor.input, input);
    assert_eq!(floor.dim, dim);
    assert!(
        floor.test.accuracy > 0.75 && floor.validation.accuracy > 0.75,
        "{input:?}: test {:?}, validation {:?}",
        floor.test,
        floor.validation
    );
    assert!(floor.test.macro_f1 > 0.7 && floor.test.loss.is_finite());
    assert_eq!(floor.search.setting, crate::Setting::ProbeC);
    let tried: Vec<f64> = floor.search.candidates.iter().map(|c| c.value).collect();
    assert_eq!(tried, GRID);
    assert!(GRID.contains(&floor.search.chosen().value));
    let chosen = floor.search.chosen().validation;
    assert_eq!(
        (chosen.accuracy, chosen.loss),
        (floor.validation.accuracy, floor.validation.loss)
    );
    assert!(floor.search.refit_steps > 0);
}

#[test]
fn the_floor_on_pixels_learns_a_class_lit_in_three_pixels() {
    learns_the_class_signal(images, FloorInput::Pixels, 36);
}

#[test]
fn the_floor_on_mean_log_mel_learns_a_class_raised_in_one_band() {
    learns_the_class_signal(spectrograms, FloorInput::MeanLogMel, 8);
}

#[test]
fn the_floor_on_tfidf_learns_a_class_named_by_one_word() {
    // 12 filler words and the 3 class words, lower-cased without their punctuation.
    learns_the_class_signal(texts, FloorInput::WordTfIdf, 15);
}

#[test]
fn moving_every_test_label_changes_no_choice_and_no_validation_score() {
    for make in [images, spectrograms, texts] {
        let target = synthetic(make);
        let moved = with_moved_test_labels(&target);
        let (a, b) = (
            fit_floor(&target, &subset(), &GRID).unwrap(),
            fit_floor(&moved, &subset(), &GRID).unwrap(),
        );
        // Debug text compares the NaN macro-F1 of the candidates too.
        assert_eq!(format!("{:?}", a.search), format!("{:?}", b.search));
        assert_eq!(a.validation, b.validation);
        assert_eq!(a.dim, b.dim);
        assert!(
            b.test.accuracy < a.test.accuracy - 0.5,
            "{:?}: the test labels were read: {} then {}",
            a.input,
            a.test.accuracy,
            b.test.accuracy
        );
    }
}

#[test]
fn token_ids_and_mixed_modalities_are_refused_with_help() {
    let tokens = Inputs::Tokens(TokenSet::default());
    let err = fit_floor(&dataset(tokens.clone(), tokens), &subset(), &GRID).unwrap_err();
    assert!(format!("{err:#}").contains("help: fit the floor on the dataset as decoded"));
    let mixed = dataset(images(120, 1), spectrograms(90, 2));
    let err = fit_floor(&mixed, &subset(), &GRID).unwrap_err();
    assert!(format!("{err:#}").contains("not of the training pool's modality"));
}

#[test]
fn documents_without_a_word_are_refused() {
    let silent = |n| {
        Inputs::Texts(TextSet {
            docs: vec!["a b c".to_string(); n],
            labels: labels(n),
        })
    };
    let err = fit_floor(&dataset(silent(120), silent(90)), &subset(), &GRID).unwrap_err();
    assert!(format!("{err:#}").contains("no fitting document has a word"));
}
