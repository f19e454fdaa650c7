//! The committed manifests and experiments load, expand, and keep the promises their comments
//! make.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use harness_spec::{Experiment, INHERITED_TABLES, ManifestSet, Modality, Plan, expand};

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

#[test]
fn the_transfer_matrix_crosses_every_target_with_every_source_and_shares_pretraining() {
    let manifests = ManifestSet::load_dir(&root().join("data-manifests")).unwrap();
    let (matrix, experiment) = plan_of(&manifests, "transfer-matrix.toml");
    crosses_every_target_with_every_source(&matrix, &experiment);
    // Its arms that train with Adam choose their rates on pilot seeds, beside the fixed rates.
    assert!(experiment.finetune.search.pilot_seeds.is_some());
    assert!(
        (matrix.cells.iter()).any(|c| c.rate_choice.is_some() && c.option.freezes()),
        "Option 1 behind a fresh stem chooses too"
    );
    pretrains_each_source_once_with_the_single_modality_experiments(&manifests, &matrix);
    takes_each_modality_s_settings_from_its_own_experiment(&manifests, &experiment);
    let names: Vec<&str> = experiment
        .hypotheses
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "matched-helps",
            "mismatched-does-not-help",
            "option1-wins-small",
            "option2-wins-large"
        ]
    );
}

/// The committed experiment `file`, expanded against `manifests`.
fn plan_of(manifests: &ManifestSet, file: &str) -> (Plan, Experiment) {
    let e = Experiment::load(&root().join("experiments").join(file)).unwrap();
    (expand(&e, manifests).unwrap_or_else(|e| panic!("{e}")), e)
}

/// The matrix's size, and each target meets one source of its own modality and two of others.
fn crosses_every_target_with_every_source(matrix: &Plan, experiment: &Experiment) {
    let m = &experiment.matrix;
    assert_eq!(m.targets.len(), 3);
    assert_eq!(m.sources.len(), 4);
    assert!(m.n_train.len() >= 4 && m.n_train.iter().any(|n| *n.get_ref() == 50));
    assert!(m.seeds.len() >= 5);
    assert!(matrix.cells.len() >= 360, "{}", matrix.cells.len());
    assert_eq!(matrix.pretrain_jobs.len(), 3, "one pre-training per source");
    // Each target meets one source of its own modality and two of others.
    for target in &m.targets {
        let relations: BTreeSet<(String, &str)> = matrix
            .cells
            .iter()
            .filter(|c| &c.target == target.get_ref())
            .map(|c| (c.source.clone(), c.relation.as_str()))
            .collect();
        let count = |r: &str| relations.iter().filter(|(_, x)| *x == r).count();
        assert_eq!(
            (count("none"), count("matched"), count("mismatched")),
            (1, 1, 2),
            "{relations:?}"
        );
    }
}

/// The same checkpoints as the single-modality experiments.
fn pretrains_each_source_once_with_the_single_modality_experiments(
    manifests: &ManifestSet,
    matrix: &Plan,
) {
    for (file, source) in [
        ("image.toml", "fashion-mnist"),
        ("audio.toml", "espeak-words"),
        ("text.toml", "debian-descriptions"),
    ] {
        let (single, _) = plan_of(manifests, file);
        let key = |p: &Plan| {
            p.pretrain_jobs
                .iter()
                .find(|j| j.source == source)
                .map(|j| j.key.clone())
                .unwrap()
        };
        assert_eq!(
            key(&single),
            key(matrix),
            "{source} pre-trains once for {file} and the matrix"
        );
    }
}

/// Each source pre-trains with its own experiment's settings, and every cell of a target
/// has that experiment's model (the other modalities' stem settings aside), text and
/// fine-tuning settings.
fn takes_each_modality_s_settings_from_its_own_experiment(
    manifests: &ManifestSet,
    experiment: &Experiment,
) {
    for (file, modality) in [
        ("image.toml", Modality::Image),
        ("audio.toml", Modality::Audio),
        ("text.toml", Modality::Text),
    ] {
        let (_, single) = plan_of(manifests, file);
        assert_eq!(
            experiment.pretrain.for_modality(modality),
            single.pretrain.for_modality(modality),
            "{file}"
        );
        assert_eq!(
            experiment.model.for_modality(modality),
            single.model.for_modality(modality),
            "{file}"
        );
        // The same fine-tuning; only the matrix chooses rates on pilot seeds besides.
        let fixed = harness_spec::FinetuneSpec {
            search: single.finetune.search.clone(),
            ..experiment.finetune.clone()
        };
        assert_eq!(fixed, single.finetune, "{file}");
    }
    assert_eq!(
        experiment.text_spec,
        plan_of(manifests, "text.toml").1.text_spec
    );
}

/// Experiments that share settings with others take them through `include` and write none
/// of them again, so a copy cannot drift (and checkpoints silently stop being shared).
#[test]
fn experiments_built_on_others_include_their_settings_instead_of_copying_them() {
    for (file, includes) in [
        (
            "transfer-matrix.toml",
            &["image.toml", "audio.toml", "text.toml"][..],
        ),
        (
            "pretrained-matrix.toml",
            &["image.toml", "audio.toml", "text.toml"],
        ),
        ("pretrained-image.toml", &["image.toml"]),
        ("parity.toml", &["image.toml"]),
    ] {
        let path = root().join("experiments").join(file);
        let experiment = Experiment::load(&path).unwrap();
        let included: Vec<PathBuf> = experiment.included.iter().map(|f| f.path.clone()).collect();
        let expected: Vec<PathBuf> = includes
            .iter()
            .map(|i| root().join("experiments").join(i))
            .collect();
        assert_eq!(included, expected, "{file}");
        let own: toml::Table = toml::from_str(&experiment.text).unwrap();
        for table in INHERITED_TABLES.iter().filter(|t| **t != "networks") {
            // How an experiment chooses its learning rates ([finetune.search]) is its own
            // protocol, which no included file sets: not a copy.
            let own_choice = *table == "finetune"
                && (own.get(*table).and_then(|t| t.as_table()))
                    .is_some_and(|t| t.keys().all(|k| k == "search"));
            assert!(
                !own.contains_key(*table) || own_choice,
                "{file} sets [{table}] itself; take it from the files it includes"
            );
        }
    }
    // What differs between the single-modality experiments lives in per-modality tables, so
    // including all three gives each source its own experiment's pre-training.
    let matrix = Experiment::load(&root().join("experiments/transfer-matrix.toml")).unwrap();
    for (key, file) in [
        ("pretrain.image.epochs", "image.toml"),
        ("pretrain.audio.epochs", "audio.toml"),
        ("pretrain.text.epochs", "text.toml"),
        ("model.patch", "image.toml"),
        ("model.frames_per_token", "audio.toml"),
        ("text.max_tokens", "text.toml"),
    ] {
        assert_eq!(
            matrix.origin(key).0,
            root().join("experiments").join(file),
            "{key}"
        );
    }
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
