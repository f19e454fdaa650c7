//! The rule of `[matrix.more_seeds]`: which hypotheses' intervals are still wider than their
//! goal, so that their (target, n_train) get more seeds.

use harness_spec::Hypothesis;
use polars::prelude::PolarsResult;

use crate::row::ResultRow;
use crate::selection::RateViews;
use crate::verdict::{Verdict, test_hypotheses};

/// A (hypothesis, target) whose 95% interval of A − B is wider than its goal.
#[derive(Debug, Clone, PartialEq)]
pub struct Imprecise {
    pub hypothesis: String,
    pub target: String,
    /// The training-set sizes the hypothesis covers on the target.
    pub sizes: Vec<i64>,
    /// Seeds with every comparison present.
    pub seeds: usize,
    /// Half the interval's width, and the goal it exceeds.
    pub half_width: f64,
    pub goal: f64,
}

/// The (hypothesis, target) pairs of `rows` whose interval's half-width is above
/// `goal(margin)`, read as the report reads them (each arm at its chosen learning rate where
/// the arms choose one). Only the width counts, never where the interval lies, so adding
/// seeds where this says cannot steer a verdict towards either side. A pair with fewer than
/// two seeds is left out: it has no interval yet.
pub fn imprecise(
    rows: &[ResultRow],
    hypotheses: &[Hypothesis],
    goal: impl Fn(f64) -> f64,
) -> PolarsResult<Vec<Imprecise>> {
    let mut out = Vec::new();
    for t in test_hypotheses(&RateViews::read(rows), hypotheses)? {
        if t.verdict == Verdict::NoData {
            continue;
        }
        let half_width = (t.ci.1 - t.ci.0) / 2.0;
        let goal = goal(t.hypothesis.margin);
        if half_width > goal {
            out.push(Imprecise {
                hypothesis: t.hypothesis.name.clone(),
                target: t.target.clone(),
                sizes: t.sizes.clone(),
                seeds: t.per_seed.len(),
                half_width,
                goal,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use harness_spec::{Arm, CellStatus, Expect, Relation, SizeScope};

    use super::*;

    /// Two arms of one target at n = 50 and 200 whose paired difference per seed is
    /// `shift` + `spread` × a fixed jitter (seeds 0..`seeds`).
    fn rows(seeds: i64, shift: f64, spread: f64) -> Vec<ResultRow> {
        let jitter = [0.5, -1.0, 0.8, -0.3, 0.1, -0.6, 0.9, -0.2, 0.4, -0.7];
        let mut out = Vec::new();
        for (source, relation) in [("scratch", Relation::None), ("same", Relation::Matched)] {
            for n in [50, 200] {
                for seed in 0..seeds {
                    let own = if source == "same" {
                        shift + spread * jitter[seed as usize % jitter.len()]
                    } else {
                        0.0
                    };
                    out.push(ResultRow {
                        target: "t".into(),
                        source: source.into(),
                        relation,
                        option: 2,
                        n_train: n,
                        seed,
                        status: CellStatus::Ok,
                        test_accuracy: 0.5 + own,
                        validation_accuracy: 0.5,
                        ..Default::default()
                    });
                }
            }
        }
        out
    }

    fn hypothesis(expect: Expect, margin: f64) -> Hypothesis {
        Hypothesis {
            name: "h".into(),
            claim: String::new(),
            a: Arm::Matched,
            b: Arm::Scratch,
            expect,
            margin,
            n_train: SizeScope::Smallest,
            options: Vec::new(),
            sources: Vec::new(),
            targets: Vec::new(),
            architectures: Vec::new(),
        }
    }

    #[test]
    fn a_wide_interval_asks_for_seeds_at_the_sizes_its_hypothesis_covers() {
        let h = [hypothesis(Expect::Greater, 0.0)];
        let found = imprecise(&rows(5, 0.05, 0.10), &h, |_| 0.02).unwrap();
        assert_eq!(found.len(), 1);
        let f = &found[0];
        assert_eq!(
            (f.target.as_str(), &f.sizes[..], f.seeds),
            ("t", &[50][..], 5)
        );
        assert!(f.half_width > 0.02, "{f:?}");
        // A goal wider than the interval asks for nothing; so does a narrow spread.
        assert!(
            imprecise(&rows(5, 0.05, 0.10), &h, |_| 0.5)
                .unwrap()
                .is_empty()
        );
        assert!(
            imprecise(&rows(5, 0.05, 0.001), &h, |_| 0.02)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn where_the_interval_lies_never_matters_only_its_width() {
        let h = [hypothesis(Expect::Greater, 0.0)];
        let width = |shift: f64| -> Vec<f64> {
            (imprecise(&rows(6, shift, 0.08), &h, |_| 0.01).unwrap())
                .iter()
                .map(|f| (f.half_width * 1e9).round())
                .collect()
        };
        // Far above zero, around it, far below: the same width, the same request.
        assert_eq!(width(0.2), width(0.0));
        assert_eq!(width(-0.2), width(0.0));
        assert_eq!(width(0.0).len(), 1);
    }

    #[test]
    fn a_margin_is_the_goal_of_its_hypothesis() {
        let h = [hypothesis(Expect::Equivalent, 0.3)];
        let goal = |margin: f64| if margin > 0.0 { margin } else { 0.001 };
        assert!(imprecise(&rows(5, 0.0, 0.1), &h, goal).unwrap().is_empty());
        let h = [hypothesis(Expect::Equivalent, 0.01)];
        assert_eq!(imprecise(&rows(5, 0.0, 0.1), &h, goal).unwrap().len(), 1);
        // One seed has no interval yet.
        assert!(imprecise(&rows(1, 0.0, 0.1), &h, goal).unwrap().is_empty());
    }
}
