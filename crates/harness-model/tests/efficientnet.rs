//! EfficientNet-Lite against timm, an independent implementation of the same network: the
//! fixtures (made by `tests/fixtures/make_efficientnet_fixtures.sh`) hold a small network's
//! weights in the published file's format with its outputs, and the outputs of the published
//! ImageNet weights on three photographs.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use harness_model::efficientnet::{EfficientNet, EfficientNetConfig, MbStageConfig};
use serde_json::Value;

fn fixtures() -> PathBuf {
    // Read at run time: a test binary reused from another checkout must read this one's files.
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("tests/fixtures/efficientnet")
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(name)).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// A PNG as `[1, 3, height, width]`, scaled as the original network expects: (x − 127) / 128.
fn image(name: &str, device: &Device) -> Tensor<4> {
    let rgb = image::open(fixtures().join(name)).unwrap().to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let mut chw = vec![0f32; 3 * h * w];
    for (x, y, p) in rgb.enumerate_pixels() {
        for c in 0..3 {
            chw[c * h * w + y as usize * w + x as usize] = (p[c] as f32 - 127.0) / 128.0;
        }
    }
    Tensor::<4>::from_data(TensorData::new(chw, [1, 3, h, w]), device)
}

fn values(t: Tensor<2>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn tiny_config(reference: &Value) -> EfficientNetConfig {
    let stages = reference["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let s: Vec<usize> = s
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            MbStageConfig::new(s[0], s[1], s[2], s[3], s[4])
        })
        .collect();
    EfficientNetConfig::new(
        reference["stem"].as_u64().unwrap() as usize,
        stages,
        reference["head"].as_u64().unwrap() as usize,
        reference["classes"].as_u64().unwrap() as usize,
    )
}

fn tiny_network(device: &Device) -> (EfficientNet, Value) {
    let reference = json("tiny.json");
    let net = tiny_config(&reference)
        .init_seeded(device, 0)
        .load_pytorch(&fixtures().join("tiny.pth"))
        .expect("the tiny file fits its architecture");
    (net, reference)
}

#[test]
fn a_small_network_in_the_published_format_loads_and_matches_timm() {
    let device = Device::flex();
    let (net, reference) = tiny_network(&device);
    for record in reference["images"].as_array().unwrap() {
        let x = image(record["file"].as_str().unwrap(), &device);
        let features = values(net.features(x.clone()));
        let logits = values(net.forward(x));
        let df = max_abs_diff(&features, &floats(&record["features"]));
        let dl = max_abs_diff(&logits, &floats(&record["logits"]));
        assert!(df < 1e-4, "{}: features differ by {df}", record["file"]);
        assert!(dl < 1e-4, "{}: logits differ by {dl}", record["file"]);
    }
}

#[test]
fn random_weights_do_not_match_timm() {
    // The comparison above can fail: the same architecture without the file's weights is far off.
    let device = Device::flex();
    let reference = json("tiny.json");
    let net = tiny_config(&reference).init_seeded(&device, 0);
    let record = &reference["images"][0];
    let logits = values(net.forward(image(record["file"].as_str().unwrap(), &device)));
    assert!(max_abs_diff(&logits, &floats(&record["logits"])) > 1e-2);
}

#[test]
fn a_file_of_another_architecture_names_the_first_mismatching_tensor() {
    let device = Device::flex();
    let reference = json("tiny.json");
    // One more block in the last stage: the file lacks its tensors.
    let mut config = tiny_config(&reference);
    config.stages.last_mut().unwrap().repeats += 1;
    let err = config
        .init_seeded(&device, 0)
        .load_pytorch(&fixtures().join("tiny.pth"))
        .unwrap_err();
    assert_eq!(
        err.tensor.as_deref().map(|t| t.starts_with("blocks.6.")),
        Some(true),
        "{err}"
    );

    // A wider head: the shapes differ.
    let mut config = tiny_config(&reference);
    config.head = 40;
    let err = config
        .init_seeded(&device, 0)
        .load_pytorch(&fixtures().join("tiny.pth"))
        .unwrap_err();
    assert_eq!(err.tensor.as_deref(), Some("conv_head.weight"), "{err}");
    assert!(err.problem.contains("[32, 24, 1, 1]"), "{err}");

    // One block fewer: the file holds tensors the network has no place for.
    let mut config = tiny_config(&reference);
    config.stages.last_mut().unwrap().repeats -= 1;
    let err = config
        .init_seeded(&device, 0)
        .load_pytorch(&fixtures().join("tiny.pth"))
        .unwrap_err();
    assert_eq!(
        err.tensor.as_deref().map(|t| t.contains("blocks.5")),
        Some(true),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_a_pytorch_file_is_an_error() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.pth");
    std::fs::write(&path, b"not a pickle").unwrap();
    let reference = json("tiny.json");
    assert!(
        tiny_config(&reference)
            .init_seeded(&device, 0)
            .load_pytorch(&path)
            .is_err()
    );
}

/// The published EfficientNet-Lite0 ImageNet weights (fetched by `harness fetch
/// efficientnet-lite0-imagenet`; CI runs this with `HARNESS_EFFICIENTNET_LITE0` set to the
/// verified file): logits within 1e-3 of timm's and the same top-5 classes on three photographs.
#[test]
#[ignore = "needs the published weights: set HARNESS_EFFICIENTNET_LITE0 to the .pth file"]
fn the_published_imagenet_weights_match_timm() {
    let path = std::env::var("HARNESS_EFFICIENTNET_LITE0")
        .expect("HARNESS_EFFICIENTNET_LITE0 names the weight file");
    let device = Device::flex();
    let net = EfficientNetConfig::lite0(1000)
        .init_seeded(&device, 0)
        .load_pytorch(Path::new(&path))
        .unwrap();
    let reference = json("lite0-imagenet.json");
    for record in reference["images"].as_array().unwrap() {
        let logits = values(net.forward(image(record["file"].as_str().unwrap(), &device)));
        let d = max_abs_diff(&logits, &floats(&record["logits"]));
        assert!(d < 1e-3, "{}: logits differ by {d}", record["file"]);
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        let top5: Vec<u64> = order[..5].iter().map(|&i| i as u64).collect();
        let expected: Vec<u64> = record["top5"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(top5, expected, "{}: top-5 classes", record["file"]);
    }
}
