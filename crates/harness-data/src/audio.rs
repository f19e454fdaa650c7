//! Audio input: decoding WAV (hound) and Ogg Vorbis (lewton) to mono, resampling to one rate
//! (rubato's FFT resampler), and bringing every clip to one length.
//!
//! The length rule: a clip longer than `length` keeps its `length` samples centred on the
//! clip's middle; a shorter clip is padded with zeros at the end. A silent clip stays silent
//! (its log-mel sits at the floor) and an empty clip becomes `length` zeros; neither is an
//! error.

use std::io::Cursor;
use std::path::Path;

use anyhow::{Context, Result, anyhow, ensure};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

/// A mono clip and its sample rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

fn mix_to_mono(interleaved: &[f32], channels: usize) -> Vec<f32> {
    if channels <= 1 {
        return interleaved.to_vec();
    }
    interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect()
}

/// Decodes WAV or Ogg Vorbis bytes (told apart by their magic numbers) into a mono clip.
/// `name` (usually the file path) appears in every error.
pub fn decode_audio(bytes: &[u8], name: &Path) -> Result<Clip> {
    let clip = if bytes.starts_with(b"RIFF") {
        decode_wav(bytes)
    } else if bytes.starts_with(b"OggS") {
        decode_ogg(bytes)
    } else {
        Err(anyhow!("neither a WAV (RIFF) nor an Ogg file"))
    };
    clip.with_context(|| format!("{}: cannot decode audio", name.display()))
}

fn decode_wav(bytes: &[u8]) -> Result<Clip> {
    let mut reader = hound::WavReader::new(Cursor::new(bytes))?;
    let spec = reader.spec();
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().collect::<Result<_, _>>()?,
        hound::SampleFormat::Int => {
            let scale = (1i64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 / scale))
                .collect::<Result<_, _>>()?
        }
    };
    Ok(Clip {
        samples: mix_to_mono(&samples, spec.channels as usize),
        sample_rate: spec.sample_rate,
    })
}

fn decode_ogg(bytes: &[u8]) -> Result<Clip> {
    let mut reader = lewton::inside_ogg::OggStreamReader::new(Cursor::new(bytes))?;
    let channels = reader.ident_hdr.audio_channels as usize;
    let sample_rate = reader.ident_hdr.audio_sample_rate;
    let mut interleaved = Vec::new();
    while let Some(packet) = reader.read_dec_packet_itl()? {
        interleaved.extend(packet.into_iter().map(|s| s as f32 / 32768.0));
    }
    // The last page's granule position is the stream's length in samples per channel; the
    // final packet decodes past it and must be cut there (Vorbis I spec, section A.2).
    if let Some(total) = reader.get_last_absgp() {
        interleaved.truncate(
            (total as usize)
                .saturating_mul(channels)
                .min(interleaved.len()),
        );
    }
    Ok(Clip {
        samples: mix_to_mono(&interleaved, channels),
        sample_rate,
    })
}

/// Resamples a clip to `rate` (unchanged if it already has that rate).
pub fn resample(clip: &Clip, rate: u32) -> Result<Clip> {
    if clip.sample_rate == rate || clip.samples.is_empty() {
        return Ok(Clip {
            samples: clip.samples.clone(),
            sample_rate: rate,
        });
    }
    let mut resampler = Fft::<f32>::new(
        clip.sample_rate as usize,
        rate as usize,
        1024,
        1,
        FixedSync::Both,
    )
    .context("building the resampler")?;
    let input = InterleavedSlice::new(&clip.samples[..], 1, clip.samples.len())
        .context("resampler input")?;
    let output = resampler
        .process_all(&input, clip.samples.len(), None)
        .context("resampling")?;
    Ok(Clip {
        samples: output.take_data(),
        sample_rate: rate,
    })
}

/// Brings `samples` to exactly `length` samples by the module's rule (centre crop, end padding).
pub fn fix_length(samples: &[f32], length: usize) -> Vec<f32> {
    if samples.len() >= length {
        let start = (samples.len() - length) / 2;
        samples[start..start + length].to_vec()
    } else {
        let mut out = samples.to_vec();
        out.resize(length, 0.0);
        out
    }
}

/// Decode, resample to `rate`, and fix the length to `length` samples.
pub fn load_clip(bytes: &[u8], name: &Path, rate: u32, length: usize) -> Result<Vec<f32>> {
    let clip = decode_audio(bytes, name)?;
    ensure!(clip.sample_rate > 0, "{}: sample rate 0", name.display());
    let clip = resample(&clip, rate).with_context(|| format!("{}: resampling", name.display()))?;
    Ok(fix_length(&clip.samples, length))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(samples: &[i16], rate: u32, channels: u16) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        out.into_inner()
    }

    #[test]
    fn stereo_wav_is_mixed_to_mono() {
        let bytes = wav(&[16384, 0, -16384, -16384], 8000, 2);
        let clip = decode_audio(&bytes, Path::new("x.wav")).unwrap();
        assert_eq!(clip.sample_rate, 8000);
        assert_eq!(clip.samples, vec![0.25, -0.5]);
    }

    #[test]
    fn a_truncated_or_foreign_file_names_the_file() {
        let bytes = wav(&[1, 2, 3, 4, 5, 6], 8000, 1);
        let err = decode_audio(&bytes[..30], Path::new("voices/Pack/Hello.wav")).unwrap_err();
        assert!(
            format!("{err:#}").contains("voices/Pack/Hello.wav"),
            "{err:#}"
        );
        let err = decode_audio(b"not audio at all", Path::new("a.ogg")).unwrap_err();
        assert!(format!("{err:#}").contains("a.ogg"));
        let err = decode_audio(b"OggS\0\0garbage", Path::new("b.ogg")).unwrap_err();
        assert!(format!("{err:#}").contains("b.ogg"));
    }

    #[test]
    fn the_length_rule_crops_the_centre_and_pads_the_end() {
        assert_eq!(
            fix_length(&[1.0, 2.0, 3.0, 4.0, 5.0], 3),
            vec![2.0, 3.0, 4.0]
        );
        assert_eq!(fix_length(&[1.0, 2.0], 4), vec![1.0, 2.0, 0.0, 0.0]);
        assert_eq!(fix_length(&[], 3), vec![0.0, 0.0, 0.0]);
    }

    #[test]
    fn resampling_keeps_duration_and_a_tone_s_frequency() {
        let rate = 44100;
        let tone: Vec<f32> = (0..rate)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin())
            .collect();
        let out = resample(
            &Clip {
                samples: tone,
                sample_rate: rate as u32,
            },
            16000,
        )
        .unwrap();
        assert_eq!(out.samples.len(), 16000);
        // Count upward zero crossings in the middle second: 440 Hz.
        let crossings = out
            .samples
            .windows(2)
            .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
            .count();
        assert!((438..=441).contains(&crossings), "{crossings}");
    }

    #[test]
    fn a_silent_or_empty_clip_is_handled_by_the_rule() {
        let silent = wav(&[0; 100], 16000, 1);
        assert_eq!(
            load_clip(&silent, Path::new("s.wav"), 16000, 200).unwrap(),
            vec![0.0; 200]
        );
        let empty = wav(&[], 22050, 1);
        assert_eq!(
            load_clip(&empty, Path::new("e.wav"), 16000, 50).unwrap(),
            vec![0.0; 50]
        );
    }
}
