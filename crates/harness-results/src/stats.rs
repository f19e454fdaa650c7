//! Statistics over seeds: means with Student-t 95% confidence intervals, and paired differences
//! between arms that share a seed (and so share the training subset).

use std::collections::BTreeMap;

use crate::row::ResultRow;

/// Two-sided 95% Student-t quantile for `df` degrees of freedom.
pub fn t_quantile_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => TABLE[df - 1],
        // Cornish–Fisher expansion; within 0.001 of the exact value beyond 30.
        _ => {
            let z: f64 = 1.959_964;
            let d = df as f64;
            z + (z.powi(3) + z) / (4.0 * d)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * d * d)
        }
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
        if n < 2 {
            return MeanCi {
                n,
                mean,
                sd: f64::NAN,
                low: f64::NAN,
                high: f64::NAN,
            };
        }
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let sd = var.sqrt();
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
    pub relation: String,
    pub option: i64,
    pub n_train: i64,
    pub accuracy: MeanCi,
    pub macro_f1: MeanCi,
    pub seconds: f64,
}

fn ok(rows: &[ResultRow]) -> impl Iterator<Item = &ResultRow> {
    rows.iter()
        .filter(|r| r.status == "ok" && r.test_accuracy.is_finite())
}

/// Summaries of every arm, ordered by target, option, source, n_train.
pub fn summarise(rows: &[ResultRow]) -> Vec<ArmSummary> {
    let mut groups: BTreeMap<(String, i64, String, i64), Vec<&ResultRow>> = BTreeMap::new();
    for r in ok(rows) {
        groups
            .entry((r.target.clone(), r.option, r.source.clone(), r.n_train))
            .or_default()
            .push(r);
    }
    groups
        .into_iter()
        .map(|((target, option, source, n_train), rs)| ArmSummary {
            relation: rs[0].relation.clone(),
            accuracy: MeanCi::of(&rs.iter().map(|r| r.test_accuracy).collect::<Vec<_>>()),
            macro_f1: MeanCi::of(&rs.iter().map(|r| r.test_macro_f1).collect::<Vec<_>>()),
            seconds: rs.iter().map(|r| r.train_seconds).sum(),
            target,
            source,
            option,
            n_train,
        })
        .collect()
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

/// A − B for every (target, n_train) where both arms have results, paired by seed.
pub fn paired(rows: &[ResultRow], a: (&str, i64), b: (&str, i64)) -> Vec<PairedDifference> {
    let mut by_key: BTreeMap<(String, i64), (BTreeMap<i64, f64>, BTreeMap<i64, f64>)> =
        BTreeMap::new();
    for r in ok(rows) {
        let entry = by_key.entry((r.target.clone(), r.n_train)).or_default();
        if (r.source.as_str(), r.option) == a {
            entry.0.insert(r.seed, r.test_accuracy);
        }
        if (r.source.as_str(), r.option) == b {
            entry.1.insert(r.seed, r.test_accuracy);
        }
    }
    by_key
        .into_iter()
        .filter_map(|((target, n_train), (xa, xb))| {
            let diffs: Vec<f64> = xa
                .iter()
                .filter_map(|(seed, va)| xb.get(seed).map(|vb| va - vb))
                .collect();
            (!diffs.is_empty()).then(|| PairedDifference {
                target,
                n_train,
                a: format!("{}, option {}", a.0, a.1),
                b: format!("{}, option {}", b.0, b.1),
                difference: MeanCi::of(&diffs),
            })
        })
        .collect()
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error below 1e-14).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The continued fraction of the incomplete beta function (modified Lentz).
fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    // One Lentz update with numerator `aa`: the factor it multiplies the fraction by.
    let mut update = |aa: f64| {
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        d * c
    };
    for m in 1..=500 {
        let m = m as f64;
        let m2 = 2.0 * m;
        h *= update(m * (b - m) * x / ((qam + m2) * (a + m2)));
        let del = update(-(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)));
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// The regularised incomplete beta function I_x(a, b).
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_fraction(b, a, 1.0 - x) / b
    }
}

/// P(T ≤ t) for Student's t with `df` degrees of freedom.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    if t.is_nan() {
        return f64::NAN;
    }
    if t.is_infinite() {
        return if t > 0.0 { 1.0 } else { 0.0 };
    }
    let tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t));
    if t > 0.0 { 1.0 - tail } else { tail }
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
        // Sample 1..5: mean 3, sd √2.5, t(4) = 2.776 → half-width 2.776·√2.5/√5 = 1.963.
        let ci = MeanCi::of(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert!((ci.mean - 3.0).abs() < 1e-12);
        assert!((ci.half_width() - 2.776 * (2.5f64).sqrt() / 5f64.sqrt()).abs() < 1e-9);
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
