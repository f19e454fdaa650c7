//! Log-mel spectrograms with rustfft, computed the way librosa does by default, so that features
//! can be checked against `librosa.feature.melspectrogram` followed by `librosa.power_to_db`:
//!
//! - frames: the signal is padded with `n_fft / 2` zeros at both ends (librosa's `center=True`,
//!   `pad_mode="constant"`), then cut every `hop` samples into `n_fft`-sample frames, giving
//!   `1 + len / hop` frames;
//! - window: periodic Hann of length `n_fft`; power spectrum `|FFT|²` of bins `0..=n_fft/2`;
//! - mel filters: Slaney mel scale (linear below 1 kHz, logarithmic above) with Slaney area
//!   normalisation, `n_mels` triangles between `fmin` and `fmax`;
//! - log: `10·log10(max(amin, S))`, then everything below `max − top_db` is raised to it
//!   (`ref = 1`).

use std::f64::consts::PI;

use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

/// Every parameter of the log-mel transform.
#[derive(Debug, Clone, PartialEq)]
pub struct LogMelSpec {
    pub sample_rate: u32,
    pub n_fft: usize,
    pub hop: usize,
    pub n_mels: usize,
    pub fmin: f64,
    pub fmax: f64,
    /// Floor of the power before the logarithm (librosa `amin`, default 1e-10).
    pub amin: f64,
    /// Dynamic range kept below the maximum, in dB (librosa `top_db`, default 80); `None` keeps all.
    pub top_db: Option<f64>,
}

const F_SP: f64 = 200.0 / 3.0;
const MIN_LOG_HZ: f64 = 1000.0;
const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;

fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

/// Hertz to Slaney mels.
pub fn hz_to_mel(hz: f64) -> f64 {
    if hz >= MIN_LOG_HZ {
        MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / log_step()
    } else {
        hz / F_SP
    }
}

/// Slaney mels to hertz.
pub fn mel_to_hz(mel: f64) -> f64 {
    if mel >= MIN_LOG_MEL {
        MIN_LOG_HZ * (log_step() * (mel - MIN_LOG_MEL)).exp()
    } else {
        mel * F_SP
    }
}

/// The `n_mels × (n_fft/2 + 1)` filter bank, row-major.
pub fn mel_filters(spec: &LogMelSpec) -> Vec<f64> {
    let bins = spec.n_fft / 2 + 1;
    let sr = spec.sample_rate as f64;
    let fft_freqs: Vec<f64> = (0..bins)
        .map(|k| k as f64 * sr / spec.n_fft as f64)
        .collect();
    let (lo, hi) = (hz_to_mel(spec.fmin), hz_to_mel(spec.fmax));
    let points = spec.n_mels + 2;
    let mel_f: Vec<f64> = (0..points)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (points - 1) as f64))
        .collect();
    let mut weights = vec![0.0; spec.n_mels * bins];
    for m in 0..spec.n_mels {
        let (left, centre, right) = (mel_f[m], mel_f[m + 1], mel_f[m + 2]);
        let norm = 2.0 / (right - left);
        for (k, &f) in fft_freqs.iter().enumerate() {
            let lower = (f - left) / (centre - left);
            let upper = (right - f) / (right - centre);
            weights[m * bins + k] = lower.min(upper).max(0.0) * norm;
        }
    }
    weights
}

/// Number of frames for a signal of `len` samples.
pub fn frame_count(len: usize, hop: usize) -> usize {
    1 + len / hop
}

/// The log-mel spectrogram of `signal`, `n_mels × frames`, row-major (mel-major, as librosa).
pub fn log_mel(signal: &[f32], spec: &LogMelSpec) -> Vec<f32> {
    let n_fft = spec.n_fft;
    let bins = n_fft / 2 + 1;
    let pad = n_fft / 2;
    let frames = frame_count(signal.len(), spec.hop);
    let window: Vec<f64> = (0..n_fft)
        .map(|i| 0.5 - 0.5 * (2.0 * PI * i as f64 / n_fft as f64).cos())
        .collect();
    let filters = mel_filters(spec);
    let fft = FftPlanner::<f64>::new().plan_fft_forward(n_fft);
    let mut buffer = vec![Complex::new(0.0, 0.0); n_fft];
    let mut power = vec![0.0f64; bins];
    let mut mel = vec![0.0f64; spec.n_mels * frames];
    for t in 0..frames {
        let start = t * spec.hop; // in padded coordinates
        for (i, slot) in buffer.iter_mut().enumerate() {
            let padded = start + i;
            let sample = if padded >= pad && padded - pad < signal.len() {
                signal[padded - pad] as f64
            } else {
                0.0
            };
            *slot = Complex::new(sample * window[i], 0.0);
        }
        fft.process(&mut buffer);
        for (k, p) in power.iter_mut().enumerate() {
            *p = buffer[k].norm_sqr();
        }
        for m in 0..spec.n_mels {
            let row = &filters[m * bins..(m + 1) * bins];
            mel[m * frames + t] = row.iter().zip(&power).map(|(w, p)| w * p).sum();
        }
    }
    let mut db: Vec<f64> = mel
        .iter()
        .map(|&s| 10.0 * s.max(spec.amin).log10())
        .collect();
    if let Some(top) = spec.top_db {
        let max = db.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        for v in &mut db {
            *v = v.max(max - top);
        }
    }
    db.into_iter().map(|v| v as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mel_scale_round_trips_and_is_linear_below_1khz() {
        for hz in [0.0, 100.0, 999.0, 1000.0, 4000.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9);
        }
        assert!((hz_to_mel(500.0) - 7.5).abs() < 1e-12);
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
    }

    #[test]
    fn frames_follow_librosa_centering() {
        let spec = LogMelSpec {
            sample_rate: 16000,
            n_fft: 512,
            hop: 160,
            n_mels: 40,
            fmin: 20.0,
            fmax: 8000.0,
            amin: 1e-10,
            top_db: Some(80.0),
        };
        let out = log_mel(&vec![0.0; 16000], &spec);
        assert_eq!(out.len(), 40 * 101);
        // Silence sits at the floor: 10·log10(1e-10) = −100 dB.
        assert!(out.iter().all(|&v| (v + 100.0).abs() < 1e-4));
    }
}
