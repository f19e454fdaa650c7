//! The committed manifests and experiments load, expand, and keep the promises their comments
//! make.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use harness_spec::{Experiment, ManifestSet, expand};

fn root() -> PathBuf {
    Path::new(&manifest_dir()).join("../..")
}

#[test]
fn every_committed_experiment_expands_against_the_committed_manifests() {
    let manifests = ManifestSet::load_dir(&root().join("data-manifests")).unwrap();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root().join("experiments")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let experiment = Experiment::load(&path).unwrap();
            let plan = expand(&experiment, &manifests).unwrap_or_else(|e| panic!("{e}"));
            assert!(!plan.cells.is_empty());
            names.push(experiment.name);
        }
    }
    assert!(names.iter().any(|n| n == "audio"), "{names:?}");
}

/// What the Hedgewars phrases say, word by word (the class names run the words together).
const PHRASES: [(&str, &str); 35] = [
    ("Byebye", "bye bye"),
    ("Comeonthen", "come on then"),
    ("Enemydown", "enemy down"),
    ("Firstblood", "first blood"),
    ("Flawless", "flawless"),
    ("Hello", "hello"),
    ("Hurry", "hurry"),
    ("Illgetyou", "i'll ill i get you"),
    ("Incoming", "incoming"),
    ("Jump1", "jump"),
    ("Jump2", "jump"),
    ("Jump3", "jump"),
    ("Kamikaze", "kamikaze"),
    ("Laugh", "laugh"),
    ("Missed", "missed miss"),
    ("Nooo", "no nooo"),
    ("Nutter", "nutter"),
    ("Ooff1", "oof ooff"),
    ("Ooff2", "oof ooff"),
    ("Ooff3", "oof ooff"),
    ("Oops", "oops"),
    ("Ow1", "ow"),
    ("Ow2", "ow"),
    ("Ow3", "ow"),
    ("Ow4", "ow"),
    ("Reinforcements", "reinforcements reinforcement"),
    ("Sameteam", "same team"),
    ("Stupid", "stupid"),
    ("Takecover", "take cover"),
    ("Traitor", "traitor"),
    ("Uh-oh", "uh oh"),
    ("Victory", "victory"),
    ("Watchit", "watch it"),
    ("Yessir", "yes sir"),
    ("Youllregretthat", "you'll youll you will regret that"),
];

#[test]
fn the_spoken_word_vocabulary_shares_no_word_with_the_target_phrases() {
    let manifests = ManifestSet::load_dir(&root().join("data-manifests")).unwrap();
    let target = manifests.get("hedgewars-voices").unwrap();
    let source = manifests.get("espeak-words").unwrap();
    let phrase_classes: Vec<&str> = PHRASES.iter().map(|(c, _)| *c).collect();
    assert_eq!(
        target.classes, phrase_classes,
        "the transcripts above cover the target's classes"
    );
    let phrase_words: BTreeSet<&str> = PHRASES
        .iter()
        .flat_map(|(_, words)| words.split_whitespace())
        .collect();
    let vocabulary: BTreeSet<String> = source.classes.iter().map(|w| w.to_lowercase()).collect();
    assert!(vocabulary.len() >= 100, "{} words", vocabulary.len());
    let shared: Vec<&String> = vocabulary
        .iter()
        .filter(|w| phrase_words.contains(w.as_str()))
        .collect();
    assert!(shared.is_empty(), "words in both: {shared:?}");
    // Nor does any vocabulary word hide inside a run-together class name.
    let hidden: Vec<(&String, &str)> = vocabulary
        .iter()
        .flat_map(|w| {
            phrase_classes
                .iter()
                .filter(move |c| w.len() >= 4 && c.to_lowercase().contains(w.as_str()))
                .map(move |c| (w, *c))
        })
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
    let render = source.render.as_ref().unwrap();
    assert!(source.classes.len() * render.clips_per_class >= 20_000);
}

/// The package folder of this checkout, read when the test runs: `cargo test` sets it. The
/// compile-time `env!` value is not used because cargo reuses a test binary built in another
/// checkout that shares the target folder, and would read that checkout's files.
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").expect("run through cargo test")
}
