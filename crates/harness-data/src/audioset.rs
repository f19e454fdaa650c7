//! Audio datasets: clips found in a folder tree (by class folder, or by group folder holding
//! one clip per class) or rendered, brought to one rate and length, and turned into log-mel
//! spectrograms.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Result, bail, ensure};
use harness_spec::{AudioSpec, ClipLayout, Duplicates, Manifest, SplitMethod};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

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
            if audio.reference == harness_spec::DbReference::Max {
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

/// One clip found in a tree: where it is, its group (layouts `group/class`, `class/group`) and
/// its class.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    path: String,
    group: Option<String>,
    label: u16,
}

fn find_clips(
    files: &BTreeMap<String, Vec<u8>>,
    classes: &[String],
    layout: ClipLayout,
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
            ClipLayout::GroupClass => (Some(parts[0].to_string()), stem),
            ClipLayout::ClassGroup => (Some(stem.to_string()), parts[0]),
            ClipLayout::ClassClip => (None, parts[0]),
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

/// Splits `found` into the clips whose bytes no other clip shares, and the groups of paths
/// (two or more each, in path order) whose bytes are identical.
fn without_duplicates(
    found: Vec<Found>,
    files: &BTreeMap<String, Vec<u8>>,
) -> (Vec<Found>, Vec<Vec<String>>) {
    let mut by_hash: BTreeMap<[u8; 32], Vec<String>> = BTreeMap::new();
    for f in &found {
        let hash: [u8; 32] = Sha256::digest(&files[&f.path]).into();
        by_hash.entry(hash).or_default().push(f.path.clone());
    }
    let mut groups: Vec<Vec<String>> = by_hash.into_values().filter(|p| p.len() > 1).collect();
    groups.sort();
    let copied: BTreeSet<&str> = groups.iter().flatten().map(String::as_str).collect();
    let kept = found
        .iter()
        .filter(|f| !copied.contains(f.path.as_str()))
        .cloned()
        .collect();
    (kept, groups)
}

/// An audio tree decoded and split: the training pool and test set as clips with labels (in
/// path order), and the groups of byte-identical clips that were dropped (`duplicates =
/// "drop"`; empty otherwise).
pub struct DecodedTree {
    pub pool: Vec<(Clip, u16)>,
    pub test: Vec<(Clip, u16)>,
    pub dropped: Vec<Vec<String>>,
}

/// Decodes every clip of an `audio-folder` tree named in the manifest's classes, drops
/// byte-identical copies if `[audio] duplicates = "drop"`, and splits the rest as `[split]`
/// says. `origin` prefixes file names in errors (e.g. the package folder).
pub fn decode_audio_tree(
    manifest: &Manifest,
    files: &BTreeMap<String, Vec<u8>>,
    origin: &str,
) -> Result<DecodedTree> {
    let audio = manifest.audio.as_ref().expect("validated: audio table");
    let layout = audio.layout.unwrap_or(ClipLayout::ClassClip);
    let found = find_clips(files, &manifest.classes, layout)?;
    let (found, dropped) = match audio.duplicates {
        Duplicates::Keep => (found, Vec::new()),
        Duplicates::Drop => without_duplicates(found, files),
    };
    let layout = layout.name();
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
    let (pool, test) = match manifest.split.method {
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
            (pool, test)
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
            (pick(&pool), pick(&test))
        }
        SplitMethod::Official => {
            bail!("audio folders are split by `groups` or `stratified`, not `official`")
        }
    };
    Ok(DecodedTree {
        pool,
        test,
        dropped,
    })
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
        let found = find_clips(&files, &classes, ClipLayout::GroupClass).unwrap();
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
        let found = find_clips(&by_class, &classes, ClipLayout::ClassClip).unwrap();
        assert_eq!(
            found.iter().map(|f| f.label).collect::<Vec<_>>(),
            vec![1, 0]
        );
        // Speakers as classes, the phrase (the file's stem) as the group.
        let speakers = vec!["bob".to_string(), "alice".to_string()];
        let found = find_clips(&files, &speakers, ClipLayout::ClassGroup).unwrap();
        let got: Vec<(&str, Option<&str>, u16)> = found
            .iter()
            .map(|f| (f.path.as_str(), f.group.as_deref(), f.label))
            .collect();
        assert_eq!(
            got,
            vec![
                ("alice/maybe.ogg", Some("maybe"), 1),
                ("alice/no.wav", Some("no"), 1),
                ("alice/yes.ogg", Some("yes"), 1),
                ("bob/yes.ogg", Some("yes"), 0)
            ]
        );
    }

    #[test]
    fn every_copy_of_identical_bytes_is_dropped_and_named() {
        let mut files = BTreeMap::new();
        for (p, bytes) in [
            ("alice/yes.ogg", b"one".as_slice()),
            ("bob/yes.ogg", b"one"),
            ("alice/no.ogg", b"two"),
            ("bob/no.ogg", b"three"),
            ("bob/maybe.ogg", b"three"),
            ("carol/no.ogg", b"three"),
            ("carol/yes.ogg", b"four"),
        ] {
            files.insert(p.to_string(), bytes.to_vec());
        }
        let speakers: Vec<String> = ["alice", "bob", "carol"].map(String::from).to_vec();
        let found = find_clips(&files, &speakers, ClipLayout::ClassGroup).unwrap();
        let (kept, groups) = without_duplicates(found, &files);
        assert_eq!(
            kept.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            vec!["alice/no.ogg", "carol/yes.ogg"]
        );
        assert_eq!(
            groups,
            vec![
                vec!["alice/yes.ogg".to_string(), "bob/yes.ogg".to_string()],
                vec![
                    "bob/maybe.ogg".to_string(),
                    "bob/no.ogg".to_string(),
                    "carol/no.ogg".to_string()
                ],
            ]
        );
    }
}
