//! BERT against Hugging Face transformers and sentence-transformers: the fixtures (made by
//! `tests/fixtures/make_bert_fixtures.sh`) hold a small BertModel's weights in the published
//! files' format with its mean-pooled outputs, and all-MiniLM-L6-v2's sentence embeddings of
//! five sentences.

use burn::prelude::*;
use harness_model::bert::BertConfig;
use serde_json::Value;

mod common;
use common::{max_abs_diff, rows, tensor, values};

fn fixtures() -> std::path::PathBuf {
    common::fixtures("bert")
}

fn json(name: &str) -> Value {
    common::json("bert", name)
}

/// Token ids `[sequences, tokens]` as the network takes them (floats).
fn ids(v: &Value, device: &Device) -> Tensor<2> {
    tensor(&rows(v), device)
}

fn tiny_config(reference: &Value) -> BertConfig {
    let c = &reference["config"];
    let get = |k: &str| c[k].as_u64().unwrap() as usize;
    let shape = harness_spec::BertShape {
        vocab_size: get("vocab_size"),
        hidden: get("hidden_size"),
        layers: get("num_hidden_layers"),
        heads: get("num_attention_heads"),
        intermediate: get("intermediate_size"),
        max_positions: get("max_position_embeddings"),
    };
    BertConfig::new(shape, 3)
}

#[test]
fn a_small_bert_in_the_published_format_loads_and_matches_transformers() {
    let device = Device::flex();
    let reference = json("tiny.json");
    let net = tiny_config(&reference)
        .init_seeded(&device, 0)
        .load_safetensors(&fixtures().join("tiny.safetensors"))
        .unwrap();
    let features = values(net.features(ids(&reference["ids"], &device)));
    let diff = max_abs_diff(&features, &rows(&reference["features"]));
    eprintln!("tiny BERT against transformers: largest difference {diff:e}");
    assert!(diff < 1e-4, "largest difference {diff}");
}

#[test]
fn random_weights_do_not_match_transformers() {
    let device = Device::flex();
    let reference = json("tiny.json");
    let net = tiny_config(&reference).init_seeded(&device, 0);
    let features = values(net.features(ids(&reference["ids"], &device)));
    assert!(max_abs_diff(&features, &rows(&reference["features"])) > 1e-2);
}

#[test]
fn padding_changes_nothing() {
    let device = Device::flex();
    let reference = json("tiny.json");
    let net = tiny_config(&reference)
        .init_seeded(&device, 0)
        .load_safetensors(&fixtures().join("tiny.safetensors"))
        .unwrap();
    let short = Tensor::<2>::from_data(TensorData::new(vec![2f32, 17., 33.], [1, 3]), &device);
    let padded = Tensor::<2>::from_data(
        TensorData::new(vec![2f32, 17., 33., 0., 0., 0.], [1, 6]),
        &device,
    );
    let diff = max_abs_diff(&values(net.features(short)), &values(net.features(padded)));
    assert!(diff < 1e-5, "padding moved the features by {diff}");
}

#[test]
fn a_file_of_another_shape_names_the_first_mismatching_tensor() {
    let device = Device::flex();
    let reference = json("tiny.json");
    let mut config = tiny_config(&reference);
    config.shape.intermediate *= 2;
    let err = config
        .init_seeded(&device, 0)
        .load_safetensors(&fixtures().join("tiny.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("intermediate.dense"), "{err}");
}

#[test]
#[ignore = "needs the published weights: set HARNESS_MINILM_L6 to the model.safetensors file"]
fn the_published_minilm_weights_match_sentence_transformers() {
    let path = std::env::var("HARNESS_MINILM_L6")
        .expect("HARNESS_MINILM_L6 names the model.safetensors of all-MiniLM-L6-v2");
    let device = Device::flex();
    let net = BertConfig::minilm_l6(2)
        .init_seeded(&device, 0)
        .load_safetensors(std::path::Path::new(&path))
        .unwrap();
    let reference = json("minilm.json");
    let pooled = values(net.features(ids(&reference["ids"], &device)));
    let diff = max_abs_diff(&pooled, &rows(&reference["mean_pooled"]));
    eprintln!("all-MiniLM-L6-v2 mean pooling: largest difference {diff:e}");
    assert!(diff < 1e-4, "mean pooling: largest difference {diff}");
    // sentence-transformers' embeddings are the same vectors, L2-normalised.
    let normalised: Vec<Vec<f32>> = pooled
        .iter()
        .map(|v| {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / norm).collect()
        })
        .collect();
    let diff = max_abs_diff(&normalised, &rows(&reference["embeddings"]));
    eprintln!("all-MiniLM-L6-v2 sentence embeddings: largest difference {diff:e}");
    assert!(diff < 1e-4, "embeddings: largest difference {diff}");
}
