//! Text and audio networks pre-trained elsewhere as cells: the small BERT and CREPE fixtures of
//! harness-model (in the published files' formats) on small token and waveform datasets the
//! test makes. Option 1 trains only the new output layer on features computed only for the
//! examples the cell uses; Option 2 tunes everything; the scratch twin starts from the same
//! output layer.

use std::f32::consts::PI;
use std::path::PathBuf;

use harness_data::{Dataset, Inputs, Rng, TokenSet, WaveformSet};
use harness_model::{ParamSnapshot, snapshot};
use harness_spec::{
    AudioAdapter, BertShape, Cell, FinetuneSpec, ModelSpec, NetworkArm, NetworkBody, Relation,
    TextAdapter,
};
use harness_train::{FeatureCache, SPARSE_BLOCK, Source, initial_model, run_cell_cached};

/// burn seeds one global generator per backend: tests that draw weights run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap())
        .join("../harness-model/tests/fixtures")
        .join(rel)
}

const TOKENS: usize = 10;

/// Class `c` of 2: `[CLS]` (2), six ids from the class's own range, `[SEP]` (3), padding.
fn tokens(per_class: usize, seed: u64) -> TokenSet {
    let mut rng = Rng::new(seed, "tokens");
    let mut set = TokenSet {
        tokens: TOKENS,
        vocab_size: 50,
        ..Default::default()
    };
    for i in 0..per_class * 2 {
        let class = i % 2;
        set.ids.push(2);
        for _ in 0..6 {
            set.ids.push((6 + class * 20 + rng.below(20)) as u32);
        }
        set.ids.extend([3, 0, 0]);
        set.labels.push(class as u16);
    }
    set
}

const SAMPLES: usize = 4_000;

/// Class `c` of 2: a tone of 300 or 1,200 Hz with a little noise, 0.25 s at 16 kHz.
fn waveforms(per_class: usize, seed: u64) -> WaveformSet {
    let mut rng = Rng::new(seed, "waveforms");
    let mut set = WaveformSet {
        sample_rate: 16_000,
        samples: SAMPLES,
        ..Default::default()
    };
    for i in 0..per_class * 2 {
        let class = i % 2;
        let hz = [300.0, 1_200.0][class] * (1.0 + rng.below(10) as f32 / 100.0);
        for t in 0..SAMPLES {
            let noise = rng.below(100) as f32 / 1_000.0 - 0.05;
            set.values
                .push(0.5 * (2.0 * PI * hz * t as f32 / 16_000.0).sin() + noise);
        }
        set.labels.push(class as u16);
    }
    set
}

fn dataset(train: Inputs, test: Inputs) -> Dataset {
    Dataset {
        id: "target".into(),
        classes: vec!["a".into(), "b".into()],
        content_sha256: harness_data::content_sha256(&train, &test),
        train,
        test,
        origin: "test".into(),
    }
}

fn text_target() -> Dataset {
    dataset(Inputs::Tokens(tokens(40, 1)), Inputs::Tokens(tokens(10, 2)))
}

fn audio_target() -> Dataset {
    dataset(
        Inputs::Waveforms(waveforms(40, 1)),
        Inputs::Waveforms(waveforms(10, 2)),
    )
}

/// The tiny BERT of the fixtures (vocabulary 50, width 8, 2 layers, 16 positions).
fn bert_arm(weights: bool) -> NetworkArm {
    NetworkArm {
        architecture: "bert(custom)".into(),
        body: NetworkBody::Text {
            shape: BertShape {
                vocab_size: 50,
                hidden: 8,
                layers: 2,
                heads: 2,
                intermediate: 16,
                max_positions: 16,
            },
            input: TextAdapter {
                max_tokens: TOKENS,
                tokenizer_sha256: "unchecked here".into(),
            },
        },
        weights: weights.then(|| "tiny-bert".to_string()),
        weights_sha256: weights.then(|| "unchecked here".to_string()),
        init: (!weights).then_some(harness_spec::RandomInit::Original),
    }
}

/// The small CREPE of the fixtures (channels 8, 4, 4, 4, 4, 6), a frame every 1,500 samples.
fn crepe_arm(weights: bool) -> NetworkArm {
    NetworkArm {
        architecture: "crepe(custom)".into(),
        body: NetworkBody::Audio {
            channels: [8, 4, 4, 4, 4, 6],
            input: AudioAdapter {
                sample_rate: 16_000,
                window: 1_024,
                hop: 1_500,
            },
        },
        weights: weights.then(|| "small-crepe".to_string()),
        weights_sha256: weights.then(|| "unchecked here".to_string()),
        init: (!weights).then_some(harness_spec::RandomInit::Original),
    }
}

fn cell(arm: NetworkArm, option: u8, n_train: usize) -> Cell {
    let pretrained = arm.weights.is_some();
    Cell {
        experiment: "t".into(),
        target: "target".into(),
        source: arm.weights.clone().unwrap_or_else(|| "scratch".into()),
        relation: if pretrained {
            Relation::Matched
        } else {
            Relation::None
        },
        option: option.try_into().unwrap(),
        n_train,
        seed: 3,
        model: ModelSpec::default(),
        finetune: FinetuneSpec {
            epochs: 3,
            min_steps: 12,
            evaluations: 4,
            patience: 4,
            batch_size: 8,
            option1_learning_rate: 1e-2,
            option2_learning_rate: 1e-3,
            // Option 1's Adam head, as these tests were written for.
            probe: harness_spec::ProbeSpec::adam(),
            ..Default::default()
        },
        tokenizer: None,
        pretrain_key: None,
        network: Some(arm),
        control: None,
        rate_choice: None,
        target_content: "t".into(),
        fingerprint: format!("network-{option}-{pretrained}"),
    }
}

fn part(snap: &ParamSnapshot, prefix: &str, keep: bool) -> ParamSnapshot {
    snap.iter()
        .filter(|(k, _)| k.starts_with(prefix) == keep)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Option 1 and 2 on one network: `head` names its output layer in the snapshot.
fn check_options(
    arm: fn(bool) -> NetworkArm,
    target: &Dataset,
    weights: &std::path::Path,
    head: &str,
) {
    let source = Source::Network(weights);
    let start = snapshot(&initial_model(&cell(arm(true), 1, 30), target, source).unwrap());

    // The scratch twin: the same parameters, other values, the same new output layer.
    let twin = snapshot(&initial_model(&cell(arm(false), 1, 30), target, Source::Scratch).unwrap());
    assert_eq!(
        twin.keys().collect::<Vec<_>>(),
        start.keys().collect::<Vec<_>>()
    );
    assert_ne!(part(&twin, head, false), part(&start, head, false));
    assert_eq!(part(&twin, head, true), part(&start, head, true));

    // Option 1: only the output layer trains (BatchNorm statistics included, nothing else
    // moves), on features of the examples the cell uses only.
    let mut cache = FeatureCache::default();
    let small = run_cell_cached(
        &cell(arm(true), 1, 30),
        target,
        source,
        &mut cache,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(small.status.as_str(), "ok");
    let after = snapshot(&small.model);
    assert_eq!(part(&after, head, false), part(&start, head, false));
    assert_ne!(part(&after, head, true), part(&start, head, true));
    assert_eq!(cache.computed, 1);
    let larger = run_cell_cached(
        &cell(arm(true), 1, 60),
        target,
        source,
        &mut cache,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(
        cache.computed, 1,
        "the second size reuses the network's features"
    );
    assert!(larger.n_fit > small.n_fit);

    // Option 2: every layer tunes.
    let tuned = run_cell_cached(
        &cell(arm(true), 2, 30),
        target,
        source,
        &mut cache,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(tuned.status.as_str(), "ok");
    assert_ne!(
        part(&snapshot(&tuned.model), head, false),
        part(&start, head, false)
    );
}

#[test]
fn a_bert_network_trains_its_output_layer_under_option1_and_everything_under_option2() {
    let _serial = serial();
    check_options(
        bert_arm,
        &text_target(),
        &fixture("bert/tiny.safetensors"),
        "fc.",
    );
}

#[test]
fn a_crepe_network_trains_its_output_layer_under_option1_and_everything_under_option2() {
    let _serial = serial();
    check_options(
        crepe_arm,
        &audio_target(),
        &fixture("crepe/small.pth"),
        "net.classifier.",
    );
}

#[test]
fn features_of_a_costly_network_are_computed_only_for_the_blocks_cells_use() {
    let _serial = serial();
    let target = text_target();
    let weights = fixture("bert/tiny.safetensors");
    let c = cell(bert_arm(true), 1, 12);
    let model = initial_model(&c, &target, Source::Network(&weights)).unwrap();
    let mut cache = FeatureCache::default();
    let used = [0usize, 1, 40];
    let norm = harness_data::Normalisation {
        mean: 0.0,
        std: 1.0,
    };
    let features = cache.get_or_compute(&c, &model, (&target.train, &target.test), &used, &norm);
    let pool = target.train.len();
    // Blocks 0 and 2 of the pool (examples 0–15 and 32–47), and the whole test set.
    assert_eq!(features.pool.computed(pool), 2 * SPARSE_BLOCK);
    assert_eq!(features.test.computed(target.test.len()), target.test.len());

    // A feature does not depend on which blocks were computed before: computed alone, in its
    // own block, example 40 has the same values.
    let mut alone = FeatureCache::default();
    let first = features.pool.batch(&[40], &burn::prelude::Device::flex());
    let only = alone.get_or_compute(&c, &model, (&target.train, &target.test), &[40], &norm);
    assert_eq!(only.pool.computed(pool), SPARSE_BLOCK);
    let again = only.pool.batch(&[40], &burn::prelude::Device::flex());
    assert_eq!(
        first.into_data().try_to_vec::<f32>().unwrap(),
        again.into_data().try_to_vec::<f32>().unwrap()
    );
}

/// Class `c` of 2: 8 × 8 grey images, bright on the left half (class 0) or the right half.
fn images(per_class: usize, seed: u64) -> harness_data::ImageSet {
    let mut rng = Rng::new(seed, "images");
    let mut set = harness_data::ImageSet {
        side: 8,
        pixels: Vec::new(),
        labels: Vec::new(),
    };
    for i in 0..per_class * 2 {
        let class = i % 2;
        for _row in 0..8 {
            for col in 0..8 {
                let bright = (col < 4) == (class == 0);
                let base = if bright { 180 } else { 40 };
                set.pixels.push((base + rng.below(60)) as u8);
            }
        }
        set.labels.push(class as u16);
    }
    set
}

/// The tiny BERT's layers behind a fresh stem of 2 × 2 patches of 4 × 4 pixels.
fn patch_bert_arm(weights: bool) -> NetworkArm {
    let NetworkBody::Text { shape, .. } = bert_arm(weights).body else {
        unreachable!()
    };
    NetworkArm {
        architecture: "bert(custom) + patch stem".into(),
        body: NetworkBody::Patches {
            shape,
            stem: harness_spec::PatchAdapter {
                rows: 8,
                cols: 8,
                patch_rows: 4,
                patch_cols: 4,
            },
        },
        ..bert_arm(weights)
    }
}

#[test]
fn a_text_transformer_behind_a_fresh_stem_trains_the_stem_under_option1() {
    let _serial = serial();
    let target = dataset(Inputs::Images(images(40, 1)), Inputs::Images(images(10, 2)));
    let weights = fixture("bert/tiny.safetensors");
    let source = Source::Network(&weights);
    let mismatched = |weights: bool, option: u8| Cell {
        relation: if weights {
            Relation::Mismatched
        } else {
            Relation::None
        },
        ..cell(patch_bert_arm(weights), option, 30)
    };
    let start = snapshot(&initial_model(&mismatched(true, 1), &target, source).unwrap());
    let twin = snapshot(&initial_model(&mismatched(false, 1), &target, Source::Scratch).unwrap());
    // The twin: the same stem and output layer, random layers in between.
    assert_eq!(part(&twin, "stem.", true), part(&start, "stem.", true));
    assert_eq!(
        part(&twin, "bert.fc.", true),
        part(&start, "bert.fc.", true)
    );
    assert_ne!(
        part(&twin, "bert.encoder.", true),
        part(&start, "bert.encoder.", true)
    );

    // Option 1: BERT's layers stay as published; the fresh stem and the output layer train,
    // through the whole network at every step (no cached features).
    let mut cache = FeatureCache::default();
    let frozen = run_cell_cached(
        &mismatched(true, 1),
        &target,
        source,
        &mut cache,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(frozen.status.as_str(), "ok");
    assert_eq!(cache.computed, 0);
    let after = snapshot(&frozen.model);
    let body = |s: &ParamSnapshot| part(&part(s, "bert.", true), "bert.fc.", false);
    assert_eq!(body(&after), body(&start));
    assert_ne!(part(&after, "stem.", true), part(&start, "stem.", true));
    assert_ne!(
        part(&after, "bert.fc.", true),
        part(&start, "bert.fc.", true)
    );

    // Option 2: the layers tune too.
    let tuned = run_cell_cached(
        &mismatched(true, 2),
        &target,
        source,
        &mut cache,
        &mut |_| {},
    )
    .unwrap();
    assert_ne!(
        part(&snapshot(&tuned.model), "bert.encoder.", true),
        part(&start, "bert.encoder.", true)
    );
}
