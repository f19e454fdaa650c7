//! The `espeak-ng` generator: spoken words rendered with libespeak-ng, each class name being
//! the word spoken.
//!
//! Clip `k` of word `w` is spoken with a language voice, a voice variant, a pitch and a rate
//! drawn from a generator seeded by (`[render] seed`, `w`, `k`) alone, so a clip never depends on
//! which other clips are rendered or in what order. The rendered content is hashed (see
//! [`RenderHasher`]) and checked against `[render] sha256`.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use harness_spec::{Manifest, NotesSpec, RenderSpec};
use sha2::{Digest, Sha256};

use crate::audio::Clip;
use crate::espeak::Espeak;
use crate::soundfont::NoteRenderer;
use crate::split::Rng;

/// What one clip is: the text and how it is spoken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderJob {
    pub label: u16,
    pub text: String,
    /// `language+variant`, as espeak-ng names a voice.
    pub voice: String,
    pub pitch: i32,
    pub rate: i32,
    /// Seed of espeak-ng's noise generators (breathy and whispering variants).
    pub noise_seed: u32,
}

/// Every clip of a render, class after class, `clips_per_class` each.
pub fn render_jobs(classes: &[String], render: &RenderSpec) -> Vec<RenderJob> {
    let mut jobs = Vec::with_capacity(classes.len() * render.clips_per_class);
    for (label, word) in classes.iter().enumerate() {
        for k in 0..render.clips_per_class {
            let mut rng = Rng::new(render.seed, &format!("espeak/{word}/{k}"));
            let voice = &render.voices[rng.below(render.voices.len())];
            let variant = &render.variants[rng.below(render.variants.len())];
            let mut within = |[lo, hi]: [i32; 2]| lo + rng.below((hi - lo + 1) as usize) as i32;
            let pitch = within(render.pitch);
            let rate = within(render.rate);
            let noise_seed = rng.next_u64() as u32;
            jobs.push(RenderJob {
                label: label as u16,
                text: word.replace('_', " "),
                voice: format!("{voice}+{variant}"),
                pitch,
                rate,
                noise_seed,
            });
        }
    }
    jobs
}

/// SHA256 of rendered content: for every clip in order, its label (u16 LE), sample rate
/// (u32 LE), sample count (u64 LE) and samples (i16 LE).
#[derive(Default)]
pub struct RenderHasher(Sha256);

impl RenderHasher {
    pub fn add(&mut self, label: u16, sample_rate: u32, samples: &[i16]) {
        self.0.update(label.to_le_bytes());
        self.0.update(sample_rate.to_le_bytes());
        self.0.update((samples.len() as u64).to_le_bytes());
        for s in samples {
            self.0.update(s.to_le_bytes());
        }
    }

    /// Like [`add`](Self::add) for float samples (f32 LE).
    pub fn add_f32(&mut self, label: u16, sample_rate: u32, samples: &[f32]) {
        self.0.update(label.to_le_bytes());
        self.0.update(sample_rate.to_le_bytes());
        self.0.update((samples.len() as u64).to_le_bytes());
        for s in samples {
            self.0.update(s.to_le_bytes());
        }
    }

    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// Renders every clip of an `espeak-ng` manifest with the library and data folder given.
/// Returns the clips with their labels and the content hash.
pub fn render_words(
    manifest: &Manifest,
    library: &Path,
    data: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<(Clip, u16)>, String)> {
    let render = manifest.render.as_ref().context("no `[render]` table")?;
    let jobs = render_jobs(&manifest.classes, render);
    let mut espeak = Espeak::load(library, data)?;
    let rate = espeak.sample_rate();
    let mut hasher = RenderHasher::default();
    let mut clips = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        let samples = espeak
            .render_seeded(&job.text, &job.voice, job.pitch, job.rate, job.noise_seed)
            .with_context(|| format!("rendering clip {i} of `{}`", manifest.id))?;
        ensure!(
            !samples.is_empty(),
            "espeak-ng rendered nothing for {:?} with voice `{}` (pitch {}, rate {}); drop that voice from `[render]` in {}",
            job.text,
            job.voice,
            job.pitch,
            job.rate,
            manifest.path.display()
        );
        hasher.add(job.label, rate, &samples);
        let clip = Clip {
            samples: samples.iter().map(|&s| s as f32 / 32768.0).collect(),
            sample_rate: rate,
        };
        clips.push((clip, job.label));
        if i % 100 == 99 || i + 1 == jobs.len() {
            progress(i + 1, jobs.len());
        }
    }
    Ok((clips, hasher.finish()))
}

/// One note of a `soundfont-notes` render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoteJob {
    pub program: u8,
    pub key: u8,
    pub velocity: u8,
}

impl NoteJob {
    /// The note's class: its program's General MIDI family.
    pub fn label(&self) -> u16 {
        (self.program / 8) as u16
    }
}

/// Every note of a render: programs 0–127, then keys, then velocities. A key above (or in a gap
/// of) a program's recorded range would render silence, so it is moved down by octaves until
/// `plays(program, key, velocity)` holds for every velocity (or no lower octave is left).
pub fn note_jobs(notes: &NotesSpec, plays: &dyn Fn(u8, u8, u8) -> bool) -> Vec<NoteJob> {
    let mut jobs = Vec::new();
    for program in 0..=127u8 {
        for &listed in &notes.keys {
            let mut key = listed;
            while key >= 12 && !notes.velocities.iter().all(|&v| plays(program, key, v)) {
                key -= 12;
            }
            for &velocity in &notes.velocities {
                jobs.push(NoteJob {
                    program,
                    key,
                    velocity,
                });
            }
        }
    }
    jobs
}

/// Renders every note of a `soundfont-notes` manifest from the SoundFont bytes, at the
/// manifest's sample rate and clip length (in parallel; each note in its own synthesizer, so
/// the order does not matter). Returns the clips with their labels and the content hash
/// ([`RenderHasher::add_f32`] over the notes in job order).
pub fn render_notes(
    manifest: &Manifest,
    soundfont: &[u8],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<(Clip, u16)>, String)> {
    use rayon::prelude::*;
    let notes = manifest.notes.as_ref().context("no `[notes]` table")?;
    let audio = manifest.audio.as_ref().context("no `[audio]` table")?;
    let rate = audio.sample_rate;
    let renderer = NoteRenderer::from_bytes(soundfont, rate)?;
    let jobs = note_jobs(notes, &|p, k, v| renderer.plays(p, k, v));
    let mut clips = Vec::with_capacity(jobs.len());
    let mut hasher = RenderHasher::default();
    for (done, chunk) in jobs.chunks(256).enumerate() {
        let rendered: Vec<Vec<f32>> = chunk
            .par_iter()
            .map(|j| {
                renderer
                    .render(
                        j.program,
                        j.key,
                        j.velocity,
                        notes.hold_seconds,
                        audio.seconds,
                    )
                    .with_context(|| {
                        format!(
                            "rendering program {} key {} velocity {}",
                            j.program, j.key, j.velocity
                        )
                    })
            })
            .collect::<Result<_>>()?;
        for (job, samples) in chunk.iter().zip(rendered) {
            hasher.add_f32(job.label(), rate, &samples);
            clips.push((
                Clip {
                    samples,
                    sample_rate: rate,
                },
                job.label(),
            ));
        }
        progress((done * 256 + chunk.len()).min(jobs.len()), jobs.len());
    }
    Ok((clips, hasher.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness_spec::NotesSpec;

    fn spec() -> RenderSpec {
        RenderSpec {
            seed: 5,
            clips_per_class: 40,
            voices: vec!["en".into(), "de".into(), "fr".into()],
            variants: vec!["m1".into(), "f2".into()],
            pitch: [20, 80],
            rate: [120, 240],
            sha256: None,
        }
    }

    #[test]
    fn each_clip_depends_on_its_word_and_index_only() {
        let words: Vec<String> = ["apple", "river", "seven"].map(String::from).to_vec();
        let all = render_jobs(&words, &spec());
        assert_eq!(all.len(), 120);
        // The same word alone, or in another position, gets the same voices.
        let alone = render_jobs(&words[1..2], &spec());
        let river: Vec<_> = all.iter().filter(|j| j.text == "river").collect();
        for (a, b) in alone.iter().zip(river) {
            assert_eq!((&a.voice, a.pitch, a.rate), (&b.voice, b.pitch, b.rate));
        }
        assert!(all.iter().all(|j| (20..=80).contains(&j.pitch)));
        assert!(all.iter().all(|j| (120..=240).contains(&j.rate)));
        let voices: std::collections::BTreeSet<_> = all.iter().map(|j| &j.voice).collect();
        assert_eq!(voices.len(), 6, "every voice+variant is used");
        let mut other = spec();
        other.seed = 6;
        assert_ne!(render_jobs(&words, &other), all);
    }

    #[test]
    fn notes_outside_an_instruments_range_move_down_by_octaves() {
        let notes = NotesSpec {
            keys: vec![48, 84],
            velocities: vec![80, 110],
            hold_seconds: 1.0,
            sha256: None,
        };
        // Program 33 plays keys up to 72 only; the others play everything.
        let plays = |p: u8, k: u8, _v: u8| p != 33 || k <= 72;
        let jobs = note_jobs(&notes, &plays);
        assert_eq!(jobs.len(), 128 * 2 * 2);
        let keys = |p: u8| -> Vec<u8> {
            jobs.iter()
                .filter(|j| j.program == p)
                .map(|j| j.key)
                .collect()
        };
        assert_eq!(keys(0), vec![48, 48, 84, 84]);
        assert_eq!(keys(33), vec![48, 48, 72, 72]);
        assert_eq!(jobs.iter().find(|j| j.program == 33).unwrap().label(), 4);
    }

    #[test]
    fn the_hash_covers_labels_rates_and_samples() {
        let hash = |label, rate, samples: &[i16]| {
            let mut h = RenderHasher::default();
            h.add(label, rate, samples);
            h.finish()
        };
        let base = hash(1, 22050, &[1, 2, 3]);
        assert_eq!(base, hash(1, 22050, &[1, 2, 3]));
        assert_ne!(base, hash(2, 22050, &[1, 2, 3]));
        assert_ne!(base, hash(1, 16000, &[1, 2, 3]));
        assert_ne!(base, hash(1, 22050, &[1, 2, 4]));
    }
}
