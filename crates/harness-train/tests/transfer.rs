//! Transfer and freezing, checked on small synthetic image and spectrogram datasets the test
//! makes.

use harness_data::{Dataset, ImageSet, Inputs, Rng, SpectrogramSet, TokenSet};
use harness_model::{ParamSnapshot, snapshot};
use harness_spec::{Cell, FinetuneSpec, Modality, ModelSpec, PretrainJob, PretrainSpec, Relation};
use harness_train::{
    FeatureCache, Source, initial_model, run_cell, run_cell_cached, run_cell_uncached,
};

const SIDE: usize = 8;

/// burn seeds one global generator per backend, so initialisations running in parallel test
/// threads would interleave their draws; each test holds this lock while it runs.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Class `c` of 3: a bright 4×4 quadrant `c` (of the first three) over noise; `shift` moves
/// the brightness so source and target differ.
fn images(per_class: usize, seed: u64, shift: u8) -> ImageSet {
    let mut rng = Rng::new(seed, "images");
    let mut set = ImageSet {
        side: SIDE,
        ..Default::default()
    };
    for i in 0..per_class * 3 {
        let class = i % 3;
        let (qy, qx) = [(0, 0), (0, 4), (4, 0)][class];
        for y in 0..SIDE {
            for x in 0..SIDE {
                let inside = y >= qy && y < qy + 4 && x >= qx && x < qx + 4;
                let noise = (rng.next_u64() % 60) as u8;
                set.pixels.push(if inside {
                    150 + noise + shift / 2
                } else {
                    noise + shift
                });
            }
        }
        set.labels.push(class as u16);
    }
    set
}

fn dataset(id: &str, shift: u8) -> Dataset {
    let train = Inputs::Images(images(40, 1 + shift as u64, shift));
    let test = Inputs::Images(images(10, 100 + shift as u64, shift));
    Dataset {
        id: id.into(),
        classes: vec!["a".into(), "b".into(), "c".into()],
        content_sha256: harness_data::content_sha256(&train, &test),
        train,
        test,
        origin: "test".into(),
    }
}

fn model_spec() -> ModelSpec {
    ModelSpec {
        patch: 4,
        d_model: 16,
        n_layers: 1,
        n_heads: 2,
        d_ff: 32,
        activation: harness_spec::Activation::Relu,
        dropout: 0.0,
        frames_per_token: Some(2),
    }
}

/// Class `c` of 3: log-mel-like decibels (−80 … 0) with mel band block `c` loud over
/// `SIDE` frames; `shift` changes the loudness so source and target differ.
fn spectrograms(per_class: usize, seed: u64, shift: f32) -> SpectrogramSet {
    let mut rng = Rng::new(seed, "spectrograms");
    let mut set = SpectrogramSet {
        mels: SIDE,
        frames: SIDE,
        ..Default::default()
    };
    for i in 0..per_class * 3 {
        let class = i % 3;
        for mel in 0..SIDE {
            for _frame in 0..SIDE {
                let noise = (rng.next_u64() % 200) as f32 / 10.0;
                let loud = mel / 3 == class;
                set.values.push(if loud {
                    -20.0 + noise - shift
                } else {
                    -80.0 + noise + shift
                });
            }
        }
        set.labels.push(class as u16);
    }
    set
}

fn audio_dataset(id: &str, shift: f32) -> Dataset {
    let train = Inputs::Spectrograms(spectrograms(40, 7 + shift as u64, shift));
    let test = Inputs::Spectrograms(spectrograms(10, 200 + shift as u64, shift));
    Dataset {
        id: id.into(),
        classes: vec!["a".into(), "b".into(), "c".into()],
        content_sha256: harness_data::content_sha256(&train, &test),
        train,
        test,
        origin: "test".into(),
    }
}

fn cell(source: &str, option: u8, pretrain_key: Option<String>) -> Cell {
    Cell {
        experiment: "t".into(),
        target: "target".into(),
        source: source.into(),
        relation: if pretrain_key.is_some() {
            Relation::Matched
        } else {
            Relation::None
        },
        option: option.try_into().unwrap(),
        n_train: 30,
        seed: 3,
        model: model_spec(),
        finetune: FinetuneSpec {
            epochs: 5,
            min_steps: 80,
            evaluations: 8,
            patience: 8,
            batch_size: 8,
            // These tests follow Option 1's Adam head; the probe has its own below.
            probe: harness_spec::ProbeSpec::adam(),
            ..Default::default()
        },
        tokenizer: None,
        pretrain_key,
        network: None,
        control: None,
        rate_choice: None,
        target_content: "t".into(),
        fingerprint: format!("{source}-{option}"),
    }
}

fn pretrained(cache: &std::path::Path) -> harness_train::PretrainOutcome {
    let job = PretrainJob {
        tokenizer: None,
        source: "source".into(),
        modality: Modality::Image,
        model: model_spec(),
        pretrain: PretrainSpec {
            epochs: 20,
            batch_size: 16,
            learning_rate: 3e-3,
            seed: 0,
            ..Default::default()
        },
        source_content: "s".into(),
        key: "k".into(),
    };
    harness_train::ensure_pretrained(&job, &dataset("source", 40), cache, &mut |_| {}).unwrap()
}

fn part(snap: &ParamSnapshot, prefix: &str) -> ParamSnapshot {
    snap.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The stem and backbone as saved in the checkpoint.
fn checkpoint_params(outcome: &harness_train::PretrainOutcome) -> ParamSnapshot {
    let c = cell("source", 2, Some("k".into()));
    let model = initial_model(&c, &dataset("target", 0), Some(&outcome.checkpoint)).unwrap();
    let mut s = part(&snapshot(&model), "stem");
    s.extend(part(&snapshot(&model), "backbone"));
    s
}

#[test]
fn at_the_start_copied_tensors_equal_the_checkpoint_and_the_head_is_fresh() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let outcome = pretrained(dir.path());
    let target = dataset("target", 0);
    let saved = checkpoint_params(&outcome);
    assert!(
        saved.len() >= 4,
        "stem and backbone hold parameters: {:?}",
        saved.keys()
    );
    for option in [1, 2] {
        let transferred = initial_model(
            &cell("source", option, Some("k".into())),
            &target,
            Some(&outcome.checkpoint),
        )
        .unwrap();
        let scratch = initial_model(&cell("scratch", option, None), &target, None).unwrap();
        let t = snapshot(&transferred);
        let s = snapshot(&scratch);
        for (name, values) in &saved {
            assert_eq!(
                &t[name], values,
                "option {option}: `{name}` copied from the checkpoint"
            );
            assert_ne!(&s[name], values, "scratch `{name}` is not the checkpoint's");
        }
        // The head is new, and the same fresh head in every arm of one seed.
        assert_eq!(part(&t, "head"), part(&s, "head"));
    }
}

#[test]
fn option1_leaves_every_copied_parameter_bit_identical_and_trains_the_head() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let outcome = pretrained(dir.path());
    let target = dataset("target", 0);
    let c = cell("source", 1, Some("k".into()));
    let before = snapshot(&initial_model(&c, &target, Some(&outcome.checkpoint)).unwrap());
    let result = run_cell(&c, &target, Some(&outcome.checkpoint), &mut |_| {}).unwrap();
    assert!(
        result.best_step > 0,
        "training improved on the starting point: {} steps, val {}, test {}",
        result.steps_run,
        result.validation_accuracy,
        result.test_accuracy
    );
    let saved = checkpoint_params(&outcome);
    // The whole-network path really trains with the copied layers frozen (the cached path
    // never touches them by construction).
    let full = run_cell_uncached(&c, &target, Some(&outcome.checkpoint), &mut |_| {}).unwrap();
    let full_after = snapshot(&full.model);
    for (name, values) in &saved {
        assert_eq!(&full_after[name], values, "`{name}` changed under Option 1");
    }
    let after = snapshot(&result.model);
    for (name, values) in &saved {
        assert_eq!(&after[name], values, "`{name}` changed under Option 1");
    }
    assert_ne!(
        part(&after, "head"),
        part(&before, "head"),
        "the head trained"
    );
}

#[test]
fn option1_on_cached_features_trains_the_same_head_as_through_the_whole_network() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let outcome = pretrained(dir.path());
    let target = dataset("target", 0);
    for (source, key) in [("source", Some("k".to_string())), ("scratch", None)] {
        let c = cell(source, 1, key);
        let checkpoint = c.pretrain_key.as_ref().map(|_| &outcome.checkpoint);
        let cached = run_cell(&c, &target, checkpoint, &mut |_| {}).unwrap();
        let full = run_cell_uncached(&c, &target, checkpoint, &mut |_| {}).unwrap();
        // Same batches, same early stopping, the same head up to float rounding (features
        // computed in chunks of 500 against batches of 8 through the network).
        assert_eq!(cached.steps_run, full.steps_run, "{source}");
        assert_eq!(cached.best_step, full.best_step, "{source}");
        let a = part(&snapshot(&cached.model), "head");
        let b = part(&snapshot(&full.model), "head");
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        let worst = a
            .iter()
            .flat_map(|(k, v)| v.iter().zip(&b[k]).map(|(x, y)| (x - y).abs()))
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{source}: head differs by up to {worst}");
        assert_eq!(cached.test_accuracy, full.test_accuracy, "{source}");
        assert!(cached.best_step > 0, "{source}: the head trained");
    }

    // One feature computation per frozen network: the cells of one checkpoint share it
    // whatever their seed; scratch cells of another seed have another random network.
    let mut cache = FeatureCache::default();
    for seed in [3, 4] {
        let mut c = cell("source", 1, Some("k".into()));
        c.seed = seed;
        run_cell_cached(
            &c,
            &target,
            Some(&outcome.checkpoint),
            &mut cache,
            &mut |_| {},
        )
        .unwrap();
    }
    assert_eq!(cache.computed, 1);
    for seed in [3, 4] {
        let mut c = cell("scratch", 1, None);
        c.seed = seed;
        run_cell_cached(&c, &target, None, &mut cache, &mut |_| {}).unwrap();
    }
    assert_eq!(cache.computed, 3);
}

#[test]
fn option1_on_scratch_keeps_the_random_backbone_frozen() {
    let _serial = serial();
    let target = dataset("target", 0);
    let c = cell("scratch", 1, None);
    let before = snapshot(&initial_model(&c, &target, None).unwrap());
    let result = run_cell(&c, &target, None, &mut |_| {}).unwrap();
    let after = snapshot(&result.model);
    assert_eq!(part(&after, "backbone"), part(&before, "backbone"));
    assert_eq!(part(&after, "stem"), part(&before, "stem"));
    assert_ne!(part(&after, "head"), part(&before, "head"));
}

#[test]
fn option2_changes_the_backbone() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let outcome = pretrained(dir.path());
    let target = dataset("target", 0);
    let c = cell("source", 2, Some("k".into()));
    let result = run_cell(&c, &target, Some(&outcome.checkpoint), &mut |_| {}).unwrap();
    assert!(result.best_step > 0);
    let after = snapshot(&result.model);
    let saved = checkpoint_params(&outcome);
    let changed = saved
        .iter()
        .filter(|(name, values)| &&after[*name] != values)
        .count();
    assert!(
        changed == saved.len(),
        "{changed} of {} copied tensors changed under Option 2",
        saved.len()
    );
}

#[test]
fn every_source_and_option_of_one_seed_trains_on_the_same_subset() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let outcome = pretrained(dir.path());
    let target = dataset("target", 0);
    let mut subsets = Vec::new();
    for (source, key) in [("scratch", None), ("source", Some("k".to_string()))] {
        for option in [1, 2] {
            let c = cell(source, option, key.clone());
            let checkpoint = key.as_ref().map(|_| &outcome.checkpoint);
            subsets.push(
                run_cell(&c, &target, checkpoint, &mut |_| {})
                    .unwrap()
                    .measured
                    .subset,
            );
        }
    }
    assert_eq!(subsets[0].len(), 30);
    assert!(subsets.iter().all(|s| s == &subsets[0]));
}

#[test]
fn the_same_cell_gives_bit_identical_results_twice() {
    let _serial = serial();
    let target = dataset("target", 0);
    let c = cell("scratch", 2, None);
    let a = run_cell(&c, &target, None, &mut |_| {}).unwrap();
    let b = run_cell(&c, &target, None, &mut |_| {}).unwrap();
    assert_eq!(a.test_accuracy.to_bits(), b.test_accuracy.to_bits());
    assert_eq!(a.test.loss.to_bits(), b.test.loss.to_bits());
    assert_eq!(snapshot(&a.model), snapshot(&b.model));
}

#[test]
fn a_second_request_for_the_same_pretraining_reads_the_cache() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let first = pretrained(dir.path());
    assert!(first.trained_now);
    let second = pretrained(dir.path());
    assert!(!second.trained_now);
    assert_eq!(
        first.meta.source_test_accuracy,
        second.meta.source_test_accuracy
    );
}

#[test]
fn audio_transfer_copies_stem_and_backbone_freezes_them_under_option1_and_tunes_them_under_option2()
{
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let job = PretrainJob {
        tokenizer: None,
        source: "audio-source".into(),
        modality: Modality::Audio,
        model: model_spec(),
        pretrain: PretrainSpec {
            epochs: 20,
            batch_size: 16,
            learning_rate: 3e-3,
            seed: 0,
            ..Default::default()
        },
        source_content: "s".into(),
        key: "audio-k".into(),
    };
    let outcome = harness_train::ensure_pretrained(
        &job,
        &audio_dataset("audio-source", 10.0),
        dir.path(),
        &mut |_| {},
    )
    .unwrap();
    assert!(
        outcome.meta.source_test_accuracy > 0.6,
        "pre-training learned the bands: {}",
        outcome.meta.source_test_accuracy
    );
    let target = audio_dataset("audio-target", 0.0);
    let start = initial_model(
        &cell("audio-source", 2, Some("audio-k".into())),
        &target,
        Some(&outcome.checkpoint),
    )
    .unwrap();
    let mut saved = part(&snapshot(&start), "stem");
    saved.extend(part(&snapshot(&start), "backbone"));
    // The spectrogram stem: one token per 2 frames of all 8 mel bands.
    let harness_model::Network::Transformer(harness_model::Classifier {
        stem: harness_model::Stem::Patch(stem),
        ..
    }) = &start
    else {
        panic!("audio uses the Transformer's patch stem")
    };
    assert_eq!(stem.patch_rows * stem.patch_cols, SIDE * 2);

    let c1 = cell("audio-source", 1, Some("audio-k".into()));
    let frozen = run_cell(&c1, &target, Some(&outcome.checkpoint), &mut |_| {}).unwrap();
    assert!(frozen.best_step > 0);
    let after = snapshot(&frozen.model);
    for (name, values) in &saved {
        assert_eq!(&after[name], values, "`{name}` changed under Option 1");
    }
    assert_ne!(part(&after, "head"), part(&snapshot(&start), "head"));

    let c2 = cell("audio-source", 2, Some("audio-k".into()));
    let tuned = run_cell(&c2, &target, Some(&outcome.checkpoint), &mut |_| {}).unwrap();
    let after = snapshot(&tuned.model);
    assert!(
        saved.iter().all(|(name, values)| &after[name] != values),
        "every copied tensor moves under Option 2"
    );
    assert_eq!(frozen.subset, tuned.subset, "paired subsets");
}

/// Class `c` of 3: documents of 2–8 tokens drawn mostly from the class's own ids (10c+2 …
/// 10c+11) plus shared noise ids, padded with 0 to 8 tokens; `shift` moves the noise ids.
fn token_dataset(id: &str, seed: u64, shift: u32) -> Dataset {
    let make = |per_class: usize, stream: u64| {
        let mut rng = Rng::new(seed + stream, "tokens");
        let mut set = TokenSet {
            tokens: 8,
            vocab_size: 64,
            ..Default::default()
        };
        for i in 0..per_class * 3 {
            let class = (i % 3) as u32;
            let len = 2 + rng.below(7);
            for t in 0..8 {
                let id = if t >= len {
                    0
                } else if rng.below(4) == 0 {
                    40 + shift + rng.below(10) as u32
                } else {
                    10 * class + 2 + rng.below(10) as u32
                };
                set.ids.push(id);
            }
            set.labels.push(class as u16);
        }
        Inputs::Tokens(set)
    };
    let (train, test) = (make(40, 0), make(10, 100));
    Dataset {
        id: id.into(),
        classes: vec!["a".into(), "b".into(), "c".into()],
        content_sha256: harness_data::content_sha256(&train, &test),
        train,
        test,
        origin: "test".into(),
    }
}

#[test]
fn text_transfer_copies_embedding_and_backbone_and_freezes_them_under_option1() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let job = PretrainJob {
        tokenizer: None,
        source: "text-source".into(),
        modality: Modality::Text,
        model: model_spec(),
        pretrain: PretrainSpec {
            epochs: 20,
            batch_size: 16,
            learning_rate: 3e-3,
            seed: 0,
            ..Default::default()
        },
        source_content: "s".into(),
        key: "text-k".into(),
    };
    let source = token_dataset("text-source", 1, 10);
    let outcome = harness_train::ensure_pretrained(&job, &source, dir.path(), &mut |_| {}).unwrap();
    assert!(
        outcome.meta.source_test_accuracy > 0.6,
        "pre-training learned the classes: {}",
        outcome.meta.source_test_accuracy
    );
    let target = token_dataset("text-target", 2, 0);
    let c2 = cell("text-source", 2, Some("text-k".into()));
    let start = initial_model(&c2, &target, Some(&outcome.checkpoint)).unwrap();
    assert!(matches!(
        &start,
        harness_model::Network::Transformer(harness_model::Classifier {
            stem: harness_model::Stem::Text(_),
            ..
        })
    ));
    let mut saved = part(&snapshot(&start), "stem");
    saved.extend(part(&snapshot(&start), "backbone"));
    assert!(saved.len() >= 4, "{:?}", saved.keys());

    let c1 = cell("text-source", 1, Some("text-k".into()));
    let frozen = run_cell(&c1, &target, Some(&outcome.checkpoint), &mut |_| {}).unwrap();
    assert!(frozen.best_step > 0);
    let after = snapshot(&frozen.model);
    for (name, values) in &saved {
        assert_eq!(&after[name], values, "`{name}` changed under Option 1");
    }
    let tuned = run_cell(&c2, &target, Some(&outcome.checkpoint), &mut |_| {}).unwrap();
    let after = snapshot(&tuned.model);
    assert!(saved.iter().any(|(name, values)| &after[name] != values));
    assert_eq!(frozen.subset, tuned.subset, "paired subsets");
    // A mostly padded document gives finite logits: padding is masked, never divided by zero.
    let model = burn::module::Module::valid(&tuned.model);
    let device = burn::prelude::Device::flex();
    let short = burn::prelude::Tensor::<2>::from_floats(
        [[12.0, 13.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]],
        &device,
    );
    let logits = model.forward(short);
    let v: Vec<f32> = logits
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    assert!(v.iter().all(|x| x.is_finite()));
}

#[test]
fn cross_modal_transfer_copies_only_the_backbone_and_option1_freezes_only_it() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // An image network, pre-trained; its backbone as a same-modality cell receives it.
    let outcome = pretrained(dir.path());
    let image_start = initial_model(
        &cell("source", 2, Some("k".into())),
        &dataset("image-target", 0),
        Some(&outcome.checkpoint),
    )
    .unwrap();
    let source_backbone = part(&snapshot(&image_start), "backbone");
    assert!(source_backbone.len() >= 4, "{:?}", source_backbone.keys());

    // An audio target: across modalities only the backbone is copied.
    let target = audio_dataset("audio-target", 0.0);
    let across = |option| {
        let mut c = cell("source", option, Some("k".into()));
        c.relation = Relation::Mismatched;
        c
    };
    let fresh = snapshot(&initial_model(&cell("scratch", 2, None), &target, None).unwrap());
    let start = snapshot(&initial_model(&across(2), &target, Some(&outcome.checkpoint)).unwrap());
    assert_eq!(
        part(&start, "backbone"),
        source_backbone,
        "the backbone is copied"
    );
    assert_ne!(
        part(&fresh, "backbone"),
        source_backbone,
        "a fresh backbone differs from the copied one"
    );
    assert_eq!(
        part(&start, "stem"),
        part(&fresh, "stem"),
        "the stem starts fresh"
    );
    assert_eq!(
        part(&start, "head"),
        part(&fresh, "head"),
        "the head starts fresh"
    );
    assert!(!part(&start, "stem").is_empty() && !part(&start, "head").is_empty());

    // Option 1: the copied backbone stays as it was; the fresh stem and head train. The stem
    // changes what the backbone sees, so no frozen features are cached.
    let mut cache = FeatureCache::default();
    let frozen = run_cell_cached(
        &across(1),
        &target,
        Some(&outcome.checkpoint),
        &mut cache,
        &mut |_| {},
    )
    .unwrap();
    assert!(frozen.best_step > 0, "it trained");
    assert_eq!(cache.computed, 0, "no cached features across modalities");
    let after = snapshot(&frozen.model);
    assert_eq!(part(&after, "backbone"), source_backbone, "backbone frozen");
    assert_ne!(part(&after, "stem"), part(&fresh, "stem"), "stem trained");
    assert_ne!(part(&after, "head"), part(&fresh, "head"), "head trained");
    // Option 2 trains the copied backbone as well.
    let tuned = run_cell(&across(2), &target, Some(&outcome.checkpoint), &mut |_| {}).unwrap();
    assert_ne!(part(&snapshot(&tuned.model), "backbone"), source_backbone);
}

/// The shape of the small EfficientNet-Lite of harness-model's fixtures.
fn tiny_shape() -> harness_spec::EfficientNetShape {
    harness_spec::EfficientNetShape {
        stem: 8,
        stages: vec![
            [1, 3, 1, 1, 8],
            [2, 3, 2, 6, 16],
            [1, 5, 2, 6, 24],
            [2, 3, 1, 6, 24],
        ],
        head: 32,
        classes: 10,
    }
}

/// The small EfficientNet-Lite of harness-model's fixtures, in the published file's format,
/// as a network pre-trained elsewhere; `weights` none: its scratch arm.
fn network_arm(weights: bool) -> harness_spec::NetworkArm {
    harness_spec::NetworkArm {
        architecture: "efficientnet-lite(custom)".into(),
        body: harness_spec::NetworkBody::Image {
            shape: tiny_shape(),
            input: harness_spec::InputAdapter {
                side: 16,
                channels: 3,
                offset: 127.0,
                scale: 128.0,
                log_mel: None,
            },
        },
        weights: weights.then(|| "tiny".to_string()),
        weights_sha256: weights.then(|| "unchecked here".to_string()),
        init: (!weights).then_some(harness_spec::RandomInit::Original),
    }
}

fn tiny_weights() -> std::path::PathBuf {
    std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap())
        .join("../harness-model/tests/fixtures/efficientnet/tiny.pth")
}

fn network_cell(option: u8, weights: bool) -> Cell {
    let mut c = cell(if weights { "tiny" } else { "scratch" }, option, None);
    c.relation = if weights {
        Relation::Matched
    } else {
        Relation::None
    };
    c.network = Some(network_arm(weights));
    c
}

/// Parameters and BatchNorm statistics outside the output layer `net.fc`.
fn body(snap: &ParamSnapshot) -> ParamSnapshot {
    snap.iter()
        .filter(|(k, _)| !k.starts_with("net.fc"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn a_network_from_elsewhere_starts_from_its_published_weights_with_a_new_output_layer() {
    let _serial = serial();
    let target = harness_data::adapt_images(&dataset("target", 0), 16).unwrap();
    let path = tiny_weights();
    let start =
        snapshot(&initial_model(&network_cell(2, true), &target, Source::Network(&path)).unwrap());
    let published = harness_model::efficientnet::EfficientNetConfig::new(
        8,
        tiny_shape()
            .stages
            .iter()
            .map(|&[r, k, s, e, o]| harness_model::efficientnet::MbStageConfig::new(r, k, s, e, o))
            .collect(),
        32,
        10,
    )
    .init_seeded(&burn::prelude::Device::flex(), 0)
    .load_pytorch(&path)
    .unwrap();
    let published: ParamSnapshot = snapshot(&published)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("fc"))
        .map(|(k, v)| (format!("net.{k}"), v))
        .collect();
    assert_eq!(
        body(&start),
        published,
        "every layer but the output layer is copied"
    );
    assert_eq!(
        start["net.fc.weight"].len(),
        32 * 3,
        "a new 3-way output layer"
    );

    // The scratch arm: the same architecture, random weights, the same new output layer.
    let scratch = snapshot(&initial_model(&network_cell(2, false), &target, None).unwrap());
    assert_eq!(
        scratch.keys().collect::<Vec<_>>(),
        start.keys().collect::<Vec<_>>()
    );
    assert_ne!(body(&scratch), body(&start));
    assert_eq!(part(&scratch, "net.fc"), part(&start, "net.fc"));

    // Its frozen random features tell images apart (drawn as the original draws them; with
    // burn's defaults they vanish to a constant).
    let frozen = initial_model(&network_cell(1, false), &target, None).unwrap();
    let norm = harness_data::Normalisation {
        mean: 127.0 / 255.0,
        std: 128.0 / 255.0,
    };
    let x = burn::prelude::Tensor::<2>::from_data(
        burn::tensor::TensorData::new(norm.features(&target.train, &[0, 1, 2]), [3, 16 * 16]),
        &burn::prelude::Device::flex(),
    );
    let f: Vec<f32> = burn::module::Module::valid(&frozen)
        .features(x)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let (a, b) = f.split_at(f.len() / 3);
    let spread = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    let size = a.iter().map(|x| x.abs()).fold(0.0, f32::max);
    assert!(
        size > 1e-2 && spread > 1e-3 * size,
        "features {size}, spread {spread}"
    );
}

#[test]
fn option1_on_a_network_from_elsewhere_trains_only_the_output_layer_and_keeps_batchnorm_statistics()
{
    let _serial = serial();
    let target = harness_data::adapt_images(&dataset("target", 0), 16).unwrap();
    let path = tiny_weights();
    let c = network_cell(1, true);
    let start = snapshot(&initial_model(&c, &target, Source::Network(&path)).unwrap());
    let cached = run_cell(&c, &target, Source::Network(&path), &mut |_| {}).unwrap();
    let after = snapshot(&cached.model);
    assert_eq!(
        body(&after),
        body(&start),
        "frozen layers and running statistics unchanged"
    );
    assert_ne!(
        part(&after, "net.fc"),
        part(&start, "net.fc"),
        "the output layer trained"
    );
    // The head trained on cached features equals the one trained through the whole network.
    let full = run_cell_uncached(&c, &target, Source::Network(&path), &mut |_| {}).unwrap();
    let (a, b) = (
        part(&after, "net.fc"),
        part(&snapshot(&full.model), "net.fc"),
    );
    for (k, v) in &a {
        let d = v
            .iter()
            .zip(&b[k])
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-4, "{k} differs by {d}");
    }
    assert_eq!(cached.test_accuracy, full.test_accuracy);
}

#[test]
fn option2_on_a_network_from_elsewhere_tunes_every_layer_and_updates_batchnorm_statistics() {
    let _serial = serial();
    let target = harness_data::adapt_images(&dataset("target", 0), 16).unwrap();
    let path = tiny_weights();
    let c = network_cell(2, true);
    let start = snapshot(&initial_model(&c, &target, Source::Network(&path)).unwrap());
    let tuned = run_cell(&c, &target, Source::Network(&path), &mut |_| {}).unwrap();
    let after = snapshot(&tuned.model);
    for key in ["net.conv_stem.weight", "net.blocks.3.depthwise_conv.weight"] {
        assert_ne!(after[key], start[key], "{key} was tuned");
    }
    for key in ["net.bn0.running_mean", "net.bn1.running_var"] {
        assert_ne!(
            after[key], start[key],
            "{key}: BatchNorm statistics follow the target"
        );
    }
    // Wrong starting weights for the cell are refused.
    assert!(run_cell(&c, &target, None, &mut |_| {}).is_err());
}

/// `target` with every test label moved to the next class: what a cell chooses may depend on
/// its fitting and validation examples only.
fn with_shuffled_test_labels(target: &Dataset) -> Dataset {
    let mut moved = target.clone();
    let Inputs::Images(test) = &mut moved.test else {
        unreachable!("an image dataset")
    };
    for label in &mut test.labels {
        *label = (*label + 1) % 3;
    }
    moved
}

/// A cell of `option` that chooses its learning rate among `rates` on validation.
fn searching_cell(option: u8, rates: &[f64]) -> Cell {
    let mut c = cell("scratch", option, None);
    let search = &mut c.finetune.search;
    match option {
        1 => search.option1_learning_rates = rates.to_vec(),
        _ => search.option2_learning_rates = rates.to_vec(),
    }
    c
}

#[test]
fn a_search_chooses_on_validation_and_test_labels_change_no_choice() {
    let _serial = serial();
    let target = dataset("target", 0);
    let moved = with_shuffled_test_labels(&target);
    for option in [1, 2] {
        let c = searching_cell(option, &[1e-5, 1e-2, 3e-1]);
        let run = |t: &Dataset| run_cell(&c, t, None, &mut |_| {}).unwrap();
        let (a, b) = (run(&target), run(&moved));
        let search = a
            .search
            .clone()
            .expect("a searching cell records its search");
        assert_eq!(search.candidates.len(), 3, "option {option}");
        // The same choices and validation scores, whatever the test labels say.
        assert_eq!(Some(&search), b.search.as_ref(), "option {option}");
        assert_ne!(
            a.test.loss, b.test.loss,
            "option {option}: the labels moved"
        );
        // The chosen rate has the best validation accuracy, and its refit ran.
        let best = search
            .candidates
            .iter()
            .map(|c| c.validation.accuracy)
            .fold(f64::MIN, f64::max);
        assert_eq!(search.chosen().validation.accuracy, best, "option {option}");
        assert!(search.refit_steps > 0, "option {option}: {search:?}");
        assert_eq!(a.steps_run, search.refit_steps, "option {option}");
        assert_eq!(a.validation_accuracy, best, "option {option}");
    }
}

#[test]
fn a_search_picks_the_lower_loss_then_the_smaller_rate_on_a_tie_and_skips_diverged_rates() {
    use harness_train::{Candidate, CellStatus, Evaluation, Search};
    let candidate = |learning_rate, accuracy, loss, status| Candidate {
        value: learning_rate,
        validation: Evaluation {
            accuracy,
            macro_f1: accuracy,
            loss,
        },
        best_step: 10,
        status,
    };
    let ok = CellStatus::Ok;
    let tie_on_accuracy = [
        candidate(1e-2, 0.8, 0.6, ok),
        candidate(1e-3, 0.8, 0.5, ok),
        candidate(1e-1, 0.7, 0.1, ok),
    ];
    assert_eq!(Search::choose(&tie_on_accuracy), 1);
    let full_tie = [candidate(1e-2, 0.8, 0.5, ok), candidate(1e-3, 0.8, 0.5, ok)];
    assert_eq!(Search::choose(&full_tie), 1);
    let diverged = [
        candidate(1.0, 0.9, 0.1, CellStatus::Diverged),
        candidate(1e-3, 0.5, 0.9, ok),
    ];
    assert_eq!(Search::choose(&diverged), 1);
}

#[test]
fn a_search_on_cached_features_chooses_as_through_the_whole_network() {
    let _serial = serial();
    let target = dataset("target", 0);
    let c = searching_cell(1, &[1e-3, 3e-2]);
    let cached = run_cell(&c, &target, None, &mut |_| {}).unwrap();
    let full = run_cell_uncached(&c, &target, None, &mut |_| {}).unwrap();
    let (a, b) = (
        cached.measured.search.unwrap(),
        full.measured.search.unwrap(),
    );
    assert_eq!(a.chosen, b.chosen);
    assert_eq!(a.refit_steps, b.refit_steps);
    for (x, y) in a.candidates.iter().zip(&b.candidates) {
        assert_eq!(x.best_step, y.best_step);
        assert!((x.validation.loss - y.validation.loss).abs() < 1e-4);
    }
}

#[test]
fn option1_as_a_logistic_probe_chooses_c_on_validation_and_test_labels_change_no_choice() {
    let _serial = serial();
    let target = dataset("target", 0);
    let moved = with_shuffled_test_labels(&target);
    let mut c = cell("scratch", 1, None);
    c.finetune.probe.c = vec![1e-3, 1e-1, 10.0];
    let a = run_cell(&c, &target, None, &mut |_| {}).unwrap();
    let b = run_cell(&c, &moved, None, &mut |_| {}).unwrap();
    let search = a.search.clone().expect("the probe records its choice");
    assert_eq!(search.setting, harness_train::Setting::ProbeC);
    assert_eq!(search.candidates.len(), 3);
    // The same choice and validation scores (compared as printed: the probe reports no
    // validation macro-F1, a NaN, which equals nothing).
    assert_eq!(
        format!("{search:?}"),
        format!("{:?}", b.search.as_ref().unwrap())
    );
    assert_ne!(a.test.loss, b.test.loss, "the labels moved");
    let best = search
        .candidates
        .iter()
        .map(|c| c.validation.accuracy)
        .fold(f64::MIN, f64::max);
    assert_eq!(search.chosen().validation.accuracy, best);
    // Only the output layer changed: the frozen layers are those of the untrained network.
    let start = snapshot(&initial_model(&c, &target, None).unwrap());
    let end = snapshot(&a.model);
    for (name, values) in &start {
        if !name.starts_with("head") {
            assert_eq!(values, &end[name], "{name} changed");
        }
    }
    assert_ne!(part(&start, "head"), part(&end, "head"));
}
