//! Ogg Vorbis decoding on a committed fixture made by `tests/fixtures/make_audio_fixtures.sh`.

use std::path::Path;

use harness_data::{decode_audio, load_clip};

fn fixture() -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/audio/tone440-stereo-22050.ogg",
        manifest_dir()
    ))
    .unwrap()
}

#[test]
fn a_stereo_ogg_vorbis_tone_decodes_to_mono_at_its_rate() {
    let clip = decode_audio(&fixture(), Path::new("tone.ogg")).unwrap();
    assert_eq!(clip.sample_rate, 22050);
    assert_eq!(
        clip.samples.len(),
        11025,
        "0.5 s at 22,050 Hz, cut at the last granule position"
    );
    let crossings = clip
        .samples
        .windows(2)
        .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
        .count();
    assert!(
        (218..=222).contains(&crossings),
        "{crossings} upward zero crossings in 0.5 s of 440 Hz"
    );
    let peak = clip.samples.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!((0.45..0.55).contains(&peak), "peak {peak} for −6 dB");
}

#[test]
fn a_truncated_ogg_file_is_an_error_naming_the_file() {
    let bytes = fixture();
    let err = load_clip(
        &bytes[..bytes.len() / 3],
        Path::new("voices/Pack/Amazing.ogg"),
        16000,
        16000,
    );
    // lewton may decode the complete pages before the cut; what it must never do is panic, and
    // an error must name the file.
    if let Err(err) = err {
        assert!(
            format!("{err:#}").contains("voices/Pack/Amazing.ogg"),
            "{err:#}"
        );
    }
    let err = load_clip(
        &bytes[..100],
        Path::new("voices/Pack/Boring.ogg"),
        16000,
        16000,
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("voices/Pack/Boring.ogg"),
        "{err:#}"
    );
}

/// The package folder of this checkout, read when the test runs: `cargo test` sets it. The
/// compile-time `env!` value is not used because cargo reuses a test binary built in another
/// checkout that shares the target folder, and would read that checkout's files.
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").expect("run through cargo test")
}
