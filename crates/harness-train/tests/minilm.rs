//! all-MiniLM-L6-v2 from text to sentence embedding: the documents tokenised by the network's
//! own `tokenizer.json` (the `tokenizers` crate, as the harness will feed it), then the BERT
//! module, against the token ids and embeddings sentence-transformers gives for the same five
//! sentences (`harness-model/tests/fixtures/bert/minilm.json`). Needs the published files:
//! `.ci/run` fetches them with `harness fetch all-minilm-l6-v2` and runs this test.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use harness_data::{load_network_tokenizer, network_token_ids};
use harness_model::bert::BertConfig;
use serde_json::Value;

fn reference() -> Value {
    let path = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../harness-model/tests/fixtures/bert/minilm.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
#[ignore = "needs the published files: set HARNESS_MINILM_L6 to the cached model.safetensors (tokenizer.json beside it)"]
fn text_through_the_network_tokenizer_and_bert_gives_sentence_transformers_embeddings() {
    let weights = PathBuf::from(
        std::env::var("HARNESS_MINILM_L6").expect("HARNESS_MINILM_L6 names the weights"),
    );
    let tokenizer = load_network_tokenizer(&weights.with_file_name("tokenizer.json"), 128).unwrap();
    let reference = reference();
    let sentences: Vec<&str> = reference["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let (ids, width) = network_token_ids(&tokenizer, &sentences).unwrap();
    let expected: Vec<Vec<u32>> = reference["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect()
        })
        .collect();
    assert_eq!(width, expected[0].len(), "padded to the longest sentence");
    for (i, row) in expected.iter().enumerate() {
        assert_eq!(
            &ids[i * width..(i + 1) * width],
            row.as_slice(),
            "sentence {i}"
        );
    }

    let device = Device::flex();
    let net = BertConfig::minilm_l6(2)
        .init_seeded(&device, 0)
        .load_safetensors(Path::new(&weights))
        .unwrap();
    let input = Tensor::<2>::from_data(
        TensorData::new(
            ids.iter().map(|&i| i as f32).collect::<Vec<f32>>(),
            [sentences.len(), width],
        ),
        &device,
    );
    let pooled = net
        .features(input)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let hidden = pooled.len() / sentences.len();
    let mut largest = 0f32;
    for (i, row) in reference["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let v = &pooled[i * hidden..(i + 1) * hidden];
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        for (x, r) in v.iter().zip(row.as_array().unwrap()) {
            largest = largest.max((x / norm - r.as_f64().unwrap() as f32).abs());
        }
    }
    eprintln!("text to embedding: largest difference {largest:e}");
    assert!(largest < 1e-4, "largest difference {largest}");
}

#[test]
#[ignore = "needs the published files: set HARNESS_MINILM_L6 to the cached model.safetensors (tokenizer.json beside it)"]
fn a_long_document_is_cut_at_max_tokens_keeping_its_end_marker() {
    let weights = PathBuf::from(
        std::env::var("HARNESS_MINILM_L6").expect("HARNESS_MINILM_L6 names the weights"),
    );
    let tokenizer = load_network_tokenizer(&weights.with_file_name("tokenizer.json"), 16).unwrap();
    let long = "word ".repeat(100);
    let (ids, width) = network_token_ids(&tokenizer, &[long.as_str(), "short"]).unwrap();
    assert_eq!(width, 16);
    let sep = tokenizer.token_to_id("[SEP]").unwrap();
    let cls = tokenizer.token_to_id("[CLS]").unwrap();
    assert_eq!((ids[0], ids[15]), (cls, sep));
    assert_eq!(
        &ids[16..19],
        &[cls, tokenizer.token_to_id("short").unwrap(), sep]
    );
    assert!(ids[19..32].iter().all(|&i| i == 0), "padded with [PAD] = 0");
}
