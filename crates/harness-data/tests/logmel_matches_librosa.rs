//! The log-mel features agree with librosa's on committed fixtures.
//!
//! The fixtures (`tests/fixtures/logmel/*.json`) hold float32 signals and
//! `librosa.power_to_db(librosa.feature.melspectrogram(...), ref=1, amin=1e-10, top_db=80)`
//! computed by `tests/fixtures/make_logmel_fixtures.sh` (librosa 0.11.0 in a pip virtual
//! environment). This test runs offline from the JSON files.
//!
//! Tolerance: every value within 0.001 dB of librosa's (measured here: at most 4e-6 dB).

use harness_data::{LogMelSpec, log_mel};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    name: String,
    sample_rate: u32,
    n_fft: usize,
    hop: usize,
    n_mels: usize,
    fmin: f64,
    fmax: f64,
    amin: f64,
    top_db: f64,
    signal: Vec<f32>,
    logmel: Vec<Vec<f64>>,
}

const TOLERANCE_DB: f64 = 1e-3;

fn check(file: &str) {
    let path = format!("{}/tests/fixtures/logmel/{file}", manifest_dir());
    let fixture: Fixture = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let spec = LogMelSpec {
        sample_rate: fixture.sample_rate,
        n_fft: fixture.n_fft,
        hop: fixture.hop,
        n_mels: fixture.n_mels,
        fmin: fixture.fmin,
        fmax: fixture.fmax,
        amin: fixture.amin,
        top_db: Some(fixture.top_db),
    };
    let ours = log_mel(&fixture.signal, &spec);
    let frames = fixture.logmel[0].len();
    assert_eq!(fixture.logmel.len(), spec.n_mels, "{}", fixture.name);
    assert_eq!(
        ours.len(),
        spec.n_mels * frames,
        "{}: frame count differs from librosa",
        fixture.name
    );
    let mut worst = 0.0f64;
    for (m, row) in fixture.logmel.iter().enumerate() {
        for (t, &theirs) in row.iter().enumerate() {
            let diff = (ours[m * frames + t] as f64 - theirs).abs();
            assert!(
                diff <= TOLERANCE_DB,
                "{}: mel {m}, frame {t}: ours {} librosa {theirs}",
                fixture.name,
                ours[m * frames + t]
            );
            worst = worst.max(diff);
        }
    }
    eprintln!("{}: largest difference {worst:.2e} dB", fixture.name);
}

#[test]
fn tones_match_librosa() {
    check("tones.json");
}

#[test]
fn noise_of_a_length_that_is_no_multiple_of_the_hop_matches_librosa() {
    check("noise.json");
}

#[test]
fn a_chirp_with_other_fft_and_mel_settings_matches_librosa() {
    check("chirp.json");
}

#[test]
fn a_click_in_silence_matches_librosa_at_the_top_db_floor() {
    check("click.json");
}

/// The package folder of this checkout, read when the test runs: `cargo test` sets it. The
/// compile-time `env!` value is not used because cargo reuses a test binary built in another
/// checkout that shares the target folder, and would read that checkout's files.
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").expect("run through cargo test")
}
