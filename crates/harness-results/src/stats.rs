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
