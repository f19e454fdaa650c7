//! Statistics over seeds: means with Student-t 95% confidence intervals, and paired differences
//! between arms that share a seed (and so share the training subset).

use statrs::distribution::{ContinuousCDF, StudentsT};

use polars::prelude::PolarsResult;

use crate::analysis::{arm_frame, arm_summaries};
use crate::row::ResultRow;

/// The 0.975 quantile of Student's t with `df` degrees of freedom: the half-width factor of a
/// two-sided 95% interval (scipy's `t.ppf(0.975, df)`); NaN for 0 degrees of freedom.
pub fn t_quantile_975(df: usize) -> f64 {
    match StudentsT::new(0.0, 1.0, df as f64) {
        Ok(t) if df > 0 => t.inverse_cdf(0.975),
        _ => f64::NAN,
    }
}

/// Mean, sample standard deviation and 95% CI of a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanCi {
    pub n: usize,
    pub mean: f64,
    pub sd: f64,
    pub low: f64,
    pub high: f64,
}

impl MeanCi {
    pub fn of(values: &[f64]) -> MeanCi {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n.max(1) as f64;
        let sd = if n < 2 {
            f64::NAN
        } else {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        };
        MeanCi::from_moments(n, mean, sd)
    }

    /// The interval of a sample of `n` values with this mean and sample standard deviation
    /// (none below two values).
    pub fn from_moments(n: usize, mean: f64, sd: f64) -> MeanCi {
        if n < 2 {
            return MeanCi {
                n,
                mean,
                sd: f64::NAN,
                low: f64::NAN,
                high: f64::NAN,
            };
        }
        let half = t_quantile_975(n - 1) * sd / (n as f64).sqrt();
        MeanCi {
            n,
            mean,
            sd,
            low: mean - half,
            high: mean + half,
        }
    }

    pub fn half_width(&self) -> f64 {
        (self.high - self.low) / 2.0
    }
}

/// Accuracy of one arm (target, source, option) at one n_train, over seeds.
#[derive(Debug, Clone)]
pub struct ArmSummary {
    pub target: String,
    pub source: String,
    pub relation: harness_spec::Relation,
    pub option: i64,
    pub n_train: i64,
    pub accuracy: MeanCi,
    pub macro_f1: MeanCi,
    pub seconds: f64,
}

/// Summaries of every arm, ordered by target, option, source, n_train (a Polars group-by,
/// see [`crate::analysis`]); scratch rows are named after their architecture's scratch arm.
pub fn summarise(rows: &[ResultRow]) -> PolarsResult<Vec<ArmSummary>> {
    arm_summaries(&arm_frame(rows)?)
}

/// Paired difference of test accuracy between two arms over the seeds both have.
#[derive(Debug, Clone)]
pub struct PairedDifference {
    pub target: String,
    pub n_train: i64,
    /// Description of arm A, e.g. `fashion-mnist, option 2`.
    pub a: String,
    /// Description of arm B, e.g. `scratch, option 2`.
    pub b: String,
    /// A − B, over seeds.
    pub difference: MeanCi,
}

/// P(T ≤ t) for Student's t with `df` degrees of freedom.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    if t.is_nan() {
        return f64::NAN;
    }
    if t.is_infinite() {
        return if t > 0.0 { 1.0 } else { 0.0 };
    }
    match StudentsT::new(0.0, 1.0, df) {
        Ok(dist) => dist.cdf(t),
        Err(_) => f64::NAN,
    }
}

/// The one-sample t statistic of `values` against `mu`, and its degrees of freedom. With no
/// spread at all, the statistic is ±∞ (or 0 when the mean is `mu`).
fn t_statistic(values: &[f64], mu: f64) -> Option<(f64, f64)> {
    let m = MeanCi::of(values);
    if m.n < 2 {
        return None;
    }
    let se = m.sd / (m.n as f64).sqrt();
    let diff = m.mean - mu;
    let t = if se > 0.0 {
        diff / se
    } else if diff == 0.0 {
        0.0
    } else {
        diff.signum() * f64::INFINITY
    };
    Some((t, (m.n - 1) as f64))
}

/// p-value of the one-sample t-test that the mean of `values` is greater than `mu`
/// (scipy's `ttest_1samp(values, mu, alternative="greater")`); NaN with fewer than 2 values.
pub fn t_test_greater(values: &[f64], mu: f64) -> f64 {
    t_statistic(values, mu).map_or(f64::NAN, |(t, df)| 1.0 - t_cdf(t, df))
}

/// p-value of the one-sample t-test that the mean of `values` is less than `mu`.
pub fn t_test_less(values: &[f64], mu: f64) -> f64 {
    t_statistic(values, mu).map_or(f64::NAN, |(t, df)| t_cdf(t, df))
}

/// Two one-sided tests (TOST) of equivalence within ±`margin`: the larger p-value of
/// "mean > −margin" and "mean < +margin". Small: the mean lies inside the margin.
pub fn tost(values: &[f64], margin: f64) -> f64 {
    t_test_greater(values, -margin).max(t_test_less(values, margin))
}

/// Holm's step-down adjustment of `p` (same order as given; NaN stays NaN and is not counted).
pub fn holm(p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| p[i].is_finite()).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    let m = order.len();
    let mut out = vec![f64::NAN; p.len()];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// The `q` quantile (0 ≤ q ≤ 1) of sorted values, interpolated linearly between order
/// statistics (numpy's default `percentile`).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (pos - lo as f64) * (sorted[hi] - sorted[lo])
}

/// The seed of the bootstrap's resampling when it samples (more than [`EXACT_BOOTSTRAP_MAX`]
/// values); fixed, so the same rows give the same intervals.
pub const BOOTSTRAP_SEED: u64 = 20_261_128;
/// Resamples drawn when the bootstrap samples.
pub const BOOTSTRAP_RESAMPLES: usize = 20_000;
/// Up to this many values, the bootstrap enumerates every one of the nⁿ resamples (5 seeds:
/// 3,125), so its interval has no resampling noise at all.
pub const EXACT_BOOTSTRAP_MAX: usize = 7;

/// Percentile bootstrap interval of the mean at `level` (e.g. 0.95): exact (every resample
/// with replacement, equally weighted) up to [`EXACT_BOOTSTRAP_MAX`] values, otherwise
/// [`BOOTSTRAP_RESAMPLES`] resamples drawn with [`BOOTSTRAP_SEED`].
pub fn bootstrap_mean_ci(values: &[f64], level: f64) -> (f64, f64) {
    let n = values.len();
    if n < 2 {
        return (f64::NAN, f64::NAN);
    }
    let mut means = Vec::new();
    if n <= EXACT_BOOTSTRAP_MAX {
        let total = n.pow(n as u32);
        means.reserve(total);
        let mut idx = vec![0usize; n];
        for _ in 0..total {
            means.push(idx.iter().map(|&i| values[i]).sum::<f64>() / n as f64);
            // The next index tuple, the last position fastest (itertools.product's order).
            for k in (0..n).rev() {
                idx[k] += 1;
                if idx[k] < n {
                    break;
                }
                idx[k] = 0;
            }
        }
    } else {
        let mut state = BOOTSTRAP_SEED;
        let mut next = || {
            // splitmix64
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        means.reserve(BOOTSTRAP_RESAMPLES);
        for _ in 0..BOOTSTRAP_RESAMPLES {
            let sum: f64 = (0..n).map(|_| values[(next() % n as u64) as usize]).sum();
            means.push(sum / n as f64);
        }
    }
    means.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    (
        quantile_sorted(&means, tail),
        quantile_sorted(&means, 1.0 - tail),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ci_of_a_known_sample_matches_the_t_formula() {
        // Sample 1..5: mean 3, sd √2.5, t(4) = 2.7764451 → half-width 2.776·√2.5/√5 = 1.963.
        let ci = MeanCi::of(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert!((ci.mean - 3.0).abs() < 1e-12);
        let t4 = 2.776_445_105_197_799;
        assert!((ci.half_width() - t4 * (2.5f64).sqrt() / 5f64.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn large_df_quantiles_approach_the_normal() {
        assert!((t_quantile_975(60) - 2.000).abs() < 0.002);
        assert!((t_quantile_975(120) - 1.980).abs() < 0.002);
        assert!(t_quantile_975(31) < t_quantile_975(30));
    }

    #[test]
    fn a_single_value_has_no_interval() {
        assert!(MeanCi::of(&[0.5]).low.is_nan());
    }
}
