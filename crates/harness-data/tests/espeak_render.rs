//! espeak-ng renders: a clip depends on its own settings only (not on render order, on what was
//! rendered before, or on the clock), and a render job list reproduces clip for clip.
//!
//! These tests need the espeak-ng library and data that the `espeak-words` manifest fetches, so
//! they are `#[ignore]`d in the plain test run and run by `.ci/run` after fetching:
//! `HARNESS_ESPEAK_DIR=<cache>/downloads/render/pip-espeakng-loader-0.2.4 cargo test --release
//! -p harness-data --test espeak_render -- --ignored`. Without the variable they fail, so an
//! ignored run cannot pass by not testing.

use std::path::PathBuf;

use harness_data::{Espeak, render_jobs};
use harness_spec::RenderSpec;

fn engine() -> Espeak {
    let dir = PathBuf::from(
        std::env::var_os("HARNESS_ESPEAK_DIR")
            .expect("set HARNESS_ESPEAK_DIR to a folder holding library.so and data/"),
    );
    Espeak::load(&dir.join("library.so"), &dir.join("data")).expect("loading espeak-ng")
}

fn spec() -> RenderSpec {
    RenderSpec {
        seed: 11,
        clips_per_class: 6,
        voices: vec!["en-us".into(), "en-gb-scotland".into(), "pl".into()],
        variants: vec![
            "m3".into(),
            "f2".into(),
            "klatt4".into(),
            "klatt6".into(),
            "whisper".into(),
            "croak".into(),
        ],
        pitch: [20, 80],
        rate: [110, 250],
        sha256: None,
    }
}

#[test]
#[ignore = "needs the espeak-ng assets: run by .ci/run with HARNESS_ESPEAK_DIR"]
fn clips_do_not_depend_on_order_or_on_what_was_rendered_before() {
    let mut espeak = engine();
    let words: Vec<String> = ["lantern", "seven", "harbor"].map(String::from).to_vec();
    let jobs = render_jobs(&words, &spec());
    let render = |espeak: &mut Espeak, j: &harness_data::RenderJob| {
        espeak
            .render_seeded(&j.text, &j.voice, j.pitch, j.rate, j.noise_seed)
            .unwrap()
    };
    let forward: Vec<Vec<i16>> = jobs.iter().map(|j| render(&mut espeak, j)).collect();
    assert!(forward.iter().all(|c| c.iter().any(|&s| s != 0)));
    for (i, job) in jobs.iter().enumerate().rev() {
        espeak.render("interference", "en+klatt3", 90, 400).unwrap();
        assert!(
            render(&mut espeak, job) == forward[i],
            "{job:?} changed when rendered in reverse order"
        );
    }
    // A second engine (a fresh load of the library) agrees too.
    let mut other = engine();
    assert!(render(&mut other, &jobs[4]) == forward[4]);
}

#[test]
#[ignore = "needs the espeak-ng assets: run by .ci/run with HARNESS_ESPEAK_DIR"]
fn breathy_variants_follow_their_noise_seed_and_unknown_voices_are_errors() {
    let mut espeak = engine();
    let a = espeak
        .render_seeded("seven", "en-us+whisper", 50, 175, 1)
        .unwrap();
    assert_eq!(
        a,
        espeak
            .render_seeded("seven", "en-us+whisper", 50, 175, 1)
            .unwrap()
    );
    assert_ne!(
        a,
        espeak
            .render_seeded("seven", "en-us+whisper", 50, 175, 2)
            .unwrap()
    );
    let err = espeak
        .render("seven", "en-us+nonexistent", 50, 175)
        .unwrap_err();
    assert!(format!("{err:#}").contains("nonexistent"), "{err:#}");
}
