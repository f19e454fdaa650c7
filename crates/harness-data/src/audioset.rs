//! Audio datasets: clips found in a folder tree (by class folder, or by group folder holding
//! one clip per class) or rendered, brought to one rate and length, and turned into log-mel
//! spectrograms.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Result, bail, ensure};
use harness_spec::{AudioSpec, Manifest, SplitMethod};
use rayon::prelude::*;

use crate::audio::{Clip, decode_audio, fix_length, resample};
use crate::inputs::SpectrogramSet;
use crate::logmel::{LogMelSpec, log_mel};

/// File extensions read as audio; other files in the tree (READMEs, licences) are skipped.
const AUDIO_EXTENSIONS: [&str; 4] = ["wav", "ogg", "oga", "wave"];

/// The log-mel settings of an `[audio]` table.
pub fn logmel_spec(audio: &AudioSpec) -> LogMelSpec {
    LogMelSpec {
        sample_rate: audio.sample_rate,
        n_fft: audio.n_fft,
        hop: audio.hop,
        n_mels: audio.n_mels,
        fmin: audio.fmin,
        fmax: audio.fmax,
        amin: 1e-10,
        top_db: Some(audio.top_db),
    }
}

/// Resamples, fixes the length of, and takes the log-mel spectrogram of every clip (in
/// parallel, keeping order).
pub fn spectrograms(clips: &[(Clip, u16)], audio: &AudioSpec) -> Result<SpectrogramSet> {
    let spec = logmel_spec(audio);
    let length = audio.samples();
    let per_clip: Vec<Vec<f32>> = clips
        .par_iter()
        .map(|(clip, _)| -> Result<Vec<f32>> {
            let clip = resample(clip, audio.sample_rate)?;
            let mut values = log_mel(&fix_length(&clip.samples, length), &spec);
            if audio.reference == "max" {
                let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                values.iter_mut().for_each(|v| *v -= max);
            }
            Ok(values)
        })
        .collect::<Result<_>>()?;
    let mut set = SpectrogramSet {
        mels: audio.n_mels,
        frames: audio.frames(),
        values: Vec::with_capacity(per_clip.len() * audio.n_mels * audio.frames()),
        labels: Vec::with_capacity(per_clip.len()),
    };
    for (values, (_, label)) in per_clip.into_iter().zip(clips) {
        debug_assert_eq!(values.len(), set.mels * set.frames);
        set.values.extend(values);
        set.labels.push(*label);
    }
    Ok(set)
}

/// One clip found in a tree: where it is, its group (layout `group/class`) and its class.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    path: String,
    group: Option<String>,
    label: u16,
}

fn find_clips(
    files: &BTreeMap<String, Vec<u8>>,
    classes: &[String],
    layout: &str,
) -> Result<Vec<Found>> {
    let index: BTreeMap<&str, u16> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_str(), i as u16))
        .collect();
    let mut found = Vec::new();
    for path in files.keys() {
        let p = Path::new(path);
        let is_audio = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        let parts: Vec<&str> = path.split('/').collect();
        if !is_audio || parts.len() != 2 {
            continue;
        }
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let (group, class) = match layout {
            "group/class" => (Some(parts[0].to_string()), stem),
            _ => (None, parts[0]),
        };
        if let Some(&label) = index.get(class) {
            found.push(Found {
                path: path.clone(),
                group,
                label,
            });
        }
    }
    Ok(found)
}

/// Decodes every clip of an `audio-folder` tree named in the manifest's classes and splits them
/// as `[split]` says. Returns (training pool, test set) as clips with labels, in path order.
/// `origin` prefixes file names in errors (e.g. the package folder).
pub fn decode_audio_tree(
    manifest: &Manifest,
    files: &BTreeMap<String, Vec<u8>>,
    origin: &str,
) -> Result<(Vec<(Clip, u16)>, Vec<(Clip, u16)>, Vec<String>)> {
    let audio = manifest.audio.as_ref().expect("validated: audio table");
    let layout = audio.layout.as_deref().unwrap_or("class/clip");
    let found = find_clips(files, &manifest.classes, layout)?;
    ensure!(
        !found.is_empty(),
        "no clip of any listed class was found in {origin} (layout `{layout}`)"
    );
    for (label, class) in manifest.classes.iter().enumerate() {
        ensure!(
            found.iter().any(|f| f.label as usize == label),
            "class `{class}` has no clip in {origin} (layout `{layout}`)"
        );
    }
    let decoded: Vec<Clip> = found
        .par_iter()
        .map(|f| decode_audio(&files[&f.path], &Path::new(origin).join(&f.path)))
        .collect::<Result<_>>()?;
    let clips: Vec<(Clip, u16)> = decoded
        .into_iter()
        .zip(&found)
        .map(|(c, f)| (c, f.label))
        .collect();
    let paths: Vec<String> = found.iter().map(|f| f.path.clone()).collect();
    match manifest.split.method {
        SplitMethod::Groups => {
            let groups: BTreeSet<&str> = found.iter().filter_map(|f| f.group.as_deref()).collect();
            for g in &manifest.split.test_groups {
                ensure!(
                    groups.contains(g.as_str()),
                    "test group `{g}` is not in {origin}; groups found: {}",
                    groups.iter().copied().collect::<Vec<_>>().join(", ")
                );
            }
            let (mut pool, mut test) = (Vec::new(), Vec::new());
            for (clip, f) in clips.into_iter().zip(&found) {
                let held_out = f
                    .group
                    .as_ref()
                    .is_some_and(|g| manifest.split.test_groups.contains(g));
                if held_out {
                    test.push(clip);
                } else {
                    pool.push(clip);
                }
            }
            Ok((pool, test, paths))
        }
        SplitMethod::Stratified => {
            let labels: Vec<u16> = clips.iter().map(|(_, l)| *l).collect();
            let per_class = manifest.split.test_per_class.unwrap_or(0);
            let seed = manifest.split.seed.unwrap_or(0);
            let (pool, test) = crate::split::stratified_test_split(
                &labels,
                manifest.classes.len(),
                per_class,
                seed,
            )?;
            let pick = |idx: &[usize]| idx.iter().map(|&i| clips[i].clone()).collect();
            Ok((pick(&pool), pick(&test), paths))
        }
        SplitMethod::Official => {
            bail!("audio folders are split by `groups` or `stratified`, not `official`")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_are_found_by_layout_and_other_files_are_skipped() {
        let mut files = BTreeMap::new();
        for p in [
            "alice/yes.ogg",
            "alice/no.wav",
            "alice/maybe.ogg",
            "bob/yes.ogg",
            "README",
            "bob/notes.txt",
            "deep/er/yes.ogg",
        ] {
            files.insert(p.to_string(), Vec::new());
        }
        let classes = vec!["yes".to_string(), "no".to_string()];
        let found = find_clips(&files, &classes, "group/class").unwrap();
        let got: Vec<(&str, Option<&str>, u16)> = found
            .iter()
            .map(|f| (f.path.as_str(), f.group.as_deref(), f.label))
            .collect();
        assert_eq!(
            got,
            vec![
                ("alice/no.wav", Some("alice"), 1),
                ("alice/yes.ogg", Some("alice"), 0),
                ("bob/yes.ogg", Some("bob"), 0)
            ]
        );
        let mut by_class = BTreeMap::new();
        by_class.insert("no/1.wav".to_string(), Vec::new());
        by_class.insert("yes/a.ogg".to_string(), Vec::new());
        let found = find_clips(&by_class, &classes, "class/clip").unwrap();
        assert_eq!(
            found.iter().map(|f| f.label).collect::<Vec<_>>(),
            vec![1, 0]
        );
    }
}
