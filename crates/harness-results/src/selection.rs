//! Learning rates chosen once per arm and size on pilot seeds (`[finetune.search]
//! pilot_seeds`): which rate each arm's pilots chose, and which rows then hold the verdicts of
//! the fixed rates and which those of the chosen ones. Only validation accuracy chooses; the
//! test set plays no part.

use std::collections::BTreeMap;

use harness_spec::{CellStatus, RateChoice, arm_name};

use crate::row::ResultRow;

/// One arm of one target at one n_train, under one option: what a rate is chosen for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArmSize {
    pub target: String,
    /// The arm's name ([`arm_name`]).
    pub arm: String,
    pub option: i64,
    pub n_train: i64,
}

impl ArmSize {
    /// The arm and size of a planned cell (as [`ArmSize::of_row`] gives for its row).
    pub fn of_cell(c: &harness_spec::Cell) -> ArmSize {
        ArmSize {
            target: c.target.clone(),
            arm: c.arm(),
            option: i64::from(c.option.number()),
            n_train: c.n_train as i64,
        }
    }

    pub fn of_row(r: &ResultRow) -> ArmSize {
        ArmSize {
            target: r.target.clone(),
            arm: arm_name(&r.source, r.architecture(), r.control_arm()),
            option: r.option,
            n_train: r.n_train,
        }
    }
}

/// How one rate did on the pilots.
#[derive(Debug, Clone, PartialEq)]
pub struct RateScore {
    pub rate: f64,
    /// Validation accuracy averaged over the pilot seeds.
    pub validation: f64,
    /// Pilot seeds whose run diverged at this rate.
    pub diverged: usize,
}

/// The rate chosen for one arm and size, with every rate's score.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub fixed: f64,
    pub rate: f64,
    pub pilot_seeds: Vec<u64>,
    /// Every rate the pilots trained at, ascending.
    pub scores: Vec<RateScore>,
}

/// Where a chosen rate lies in the grid the pilots tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GridEdge {
    /// The largest rate tried: a larger one might have done better.
    Largest,
    /// The smallest rate tried: a smaller one might have done better.
    Smallest,
}

impl Choice {
    /// Whether the chosen rate is the largest or the smallest the pilots tried, so that the
    /// best rate may lie outside the grid (none for a grid of one rate).
    pub fn at_edge(&self) -> Option<GridEdge> {
        let (first, last) = (self.scores.first()?, self.scores.last()?);
        if self.scores.len() < 2 {
            None
        } else if self.rate == last.rate {
            Some(GridEdge::Largest)
        } else if self.rate == first.rate {
            Some(GridEdge::Smallest)
        } else {
            None
        }
    }

    /// The rule: among the rates at which no pilot diverged (all of them if every one did),
    /// the highest mean validation accuracy; ties go to the fixed rate, then to the smaller
    /// rate, so that the choice moves away from the fixed rate only when validation says so.
    fn rule(fixed: f64, scores: &[RateScore]) -> f64 {
        let usable: Vec<&RateScore> = if scores.iter().any(|s| s.diverged == 0) {
            scores.iter().filter(|s| s.diverged == 0).collect()
        } else {
            scores.iter().collect()
        };
        let key = |s: &RateScore| (s.validation, s.rate == fixed, -s.rate);
        let mut best = usable[0];
        for s in &usable[1..] {
            if key(s).partial_cmp(&key(best)) == Some(std::cmp::Ordering::Greater) {
                best = s;
            }
        }
        best.rate
    }
}

/// The row's rate choice, if it has one that parses.
pub fn rate_choice(r: &ResultRow) -> Option<RateChoice> {
    serde_json::from_str(r.rate_choice.as_deref()?).ok()
}

/// The rate choice of every arm and size that has one, from any of its rows that records it:
/// a row at the fixed rate may have been written before its experiment chose (or before rows
/// recorded the choice), and is the same cell, fingerprint and all.
fn choices_by_arm(rows: &[ResultRow]) -> BTreeMap<ArmSize, RateChoice> {
    let mut by_arm = BTreeMap::new();
    for r in rows {
        if let Some(choice) = rate_choice(r) {
            by_arm.entry(ArmSize::of_row(r)).or_insert(choice);
        }
    }
    by_arm
}

/// The rate chosen for every arm and size whose pilots all have a row (finished, at every
/// rate, on every pilot seed); arms still waiting for a pilot are absent.
pub fn chosen_rates(rows: &[ResultRow]) -> BTreeMap<ArmSize, Choice> {
    // (arm, size) → (its choice, rate bits → seed → (validation accuracy, diverged)).
    type Pilots = BTreeMap<u64, BTreeMap<u64, (f64, bool)>>;
    let choices = choices_by_arm(rows);
    let mut by_arm: BTreeMap<ArmSize, (RateChoice, Pilots)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.status != CellStatus::Failed) {
        let arm = ArmSize::of_row(r);
        let Some(choice) = choices.get(&arm) else {
            continue;
        };
        let seed = r.seed as u64;
        if !choice.pilot_seeds.contains(&seed) || !r.learning_rate.is_finite() {
            continue;
        }
        let (_, pilots) = by_arm
            .entry(arm)
            .or_insert_with(|| (choice.clone(), BTreeMap::new()));
        pilots.entry(r.learning_rate.to_bits()).or_default().insert(
            seed,
            (r.validation_accuracy, r.status == CellStatus::Diverged),
        );
    }
    let mut chosen = BTreeMap::new();
    for (arm, (choice, pilots)) in by_arm {
        let mut scores = Vec::new();
        for &rate in &choice.rates {
            let Some(seeds) = pilots.get(&rate.to_bits()) else {
                break;
            };
            if choice.pilot_seeds.iter().any(|s| !seeds.contains_key(s)) {
                break;
            }
            let accuracies: Vec<f64> = seeds.values().map(|(a, _)| *a).collect();
            scores.push(RateScore {
                rate,
                validation: accuracies.iter().sum::<f64>() / accuracies.len() as f64,
                diverged: seeds.values().filter(|(_, d)| *d).count(),
            });
        }
        if scores.len() < choice.rates.len() {
            continue;
        }
        chosen.insert(
            arm,
            Choice {
                fixed: choice.fixed,
                rate: Choice::rule(choice.fixed, &scores),
                pilot_seeds: choice.pilot_seeds,
                scores,
            },
        );
    }
    chosen
}

/// The rows of one protocol: every row without a rate choice (the floor, the probe, arms
/// that do not choose), and of those that choose, each arm's rows at one rate.
#[derive(Debug, Clone, Default)]
pub struct RateViews {
    /// The rows at each arm's fixed rate: the verdicts without selection.
    pub fixed: Vec<ResultRow>,
    /// The rows at each arm's chosen rate; an arm whose pilots have not all finished has
    /// none here.
    pub chosen: Vec<ResultRow>,
    pub choices: BTreeMap<ArmSize, Choice>,
}

impl RateViews {
    /// `rows` as the report reads them: each arm at its chosen rate where arms choose one
    /// ([`RateViews::chosen`]), else every row.
    pub fn read(rows: &[ResultRow]) -> std::borrow::Cow<'_, [ResultRow]> {
        match RateViews::of(rows) {
            Some(views) => std::borrow::Cow::Owned(views.chosen),
            None => std::borrow::Cow::Borrowed(rows),
        }
    }

    /// `rows` split by protocol, or `None` when no row chooses its rate.
    pub fn of(rows: &[ResultRow]) -> Option<RateViews> {
        let by_arm = choices_by_arm(rows);
        if by_arm.is_empty() {
            return None;
        }
        let choices = chosen_rates(rows);
        let mut views = RateViews::default();
        for r in rows {
            let Some(choice) = by_arm.get(&ArmSize::of_row(r)) else {
                views.fixed.push(r.clone());
                views.chosen.push(r.clone());
                continue;
            };
            if r.learning_rate == choice.fixed {
                views.fixed.push(r.clone());
            }
            if choices
                .get(&ArmSize::of_row(r))
                .is_some_and(|c| c.rate == r.learning_rate)
            {
                views.chosen.push(r.clone());
            }
        }
        views.choices = choices;
        Some(views)
    }
}

/// A moved choice checked on the seeds that did not make it: their mean validation accuracy at
/// the fixed rate and at the chosen one, over the seeds that have a finished row at both (each
/// pair shares one validation split).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeldOut {
    pub fixed: f64,
    pub chosen: f64,
    pub seeds: usize,
}

impl RateViews {
    /// [`HeldOut`] for `arm`, or `None` when its choice kept the fixed rate or no seed outside
    /// the pilots has both rows yet. It reads validation only and changes no choice.
    pub fn held_out(&self, arm: &ArmSize) -> Option<HeldOut> {
        let choice = self.choices.get(arm).filter(|c| c.rate != c.fixed)?;
        let by_seed = |rows: &[ResultRow], rate: f64| -> BTreeMap<i64, f64> {
            (rows.iter())
                .filter(|r| r.status == CellStatus::Ok && r.learning_rate == rate)
                .filter(|r| !choice.pilot_seeds.contains(&(r.seed as u64)))
                .filter(|r| ArmSize::of_row(r) == *arm)
                .map(|r| (r.seed, r.validation_accuracy))
                .collect()
        };
        let fixed = by_seed(&self.fixed, choice.fixed);
        let chosen = by_seed(&self.chosen, choice.rate);
        let pairs: Vec<(f64, f64)> = (fixed.iter())
            .filter_map(|(seed, f)| chosen.get(seed).map(|c| (*f, *c)))
            .collect();
        if pairs.is_empty() {
            return None;
        }
        let n = pairs.len() as f64;
        Some(HeldOut {
            fixed: pairs.iter().map(|p| p.0).sum::<f64>() / n,
            chosen: pairs.iter().map(|p| p.1).sum::<f64>() / n,
            seeds: pairs.len(),
        })
    }
}

/// The ceiling's arm of `target` (`[matrix.ceiling]`): among `rows` at `n_train` (read at each
/// arm's chosen rate where arms choose one; the floor left out), the arm with the highest mean
/// validation accuracy over its finished rows. Ties go to the first in [`ArmSize`] order. The
/// test set plays no part.
pub fn best_arm(rows: &[ResultRow], target: &str, n_train: i64) -> Option<ArmSize> {
    best_on_validation(&RateViews::read(rows), target, n_train)
}

/// [`best_arm`] among rows already read at one rate per arm (a report's rows).
pub fn best_on_validation(rows: &[ResultRow], target: &str, n_train: i64) -> Option<ArmSize> {
    let mut sums: BTreeMap<ArmSize, (f64, usize)> = BTreeMap::new();
    for r in rows {
        if r.target != target
            || r.n_train != n_train
            || r.relation == harness_spec::Relation::Floor
            || r.status != CellStatus::Ok
            || !r.validation_accuracy.is_finite()
        {
            continue;
        }
        let sum = sums.entry(ArmSize::of_row(r)).or_default();
        sum.0 += r.validation_accuracy;
        sum.1 += 1;
    }
    let mut best: Option<(ArmSize, f64)> = None;
    for (arm, (sum, n)) in sums {
        let mean = sum / n as f64;
        if best.as_ref().is_none_or(|(_, b)| mean > *b) {
            best = Some((arm, mean));
        }
    }
    best.map(|(arm, _)| arm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seed: i64, rate: f64, validation: f64, test: f64) -> ResultRow {
        let choice = RateChoice {
            fixed: 1e-3,
            rates: vec![1e-4, 1e-3, 1e-2],
            pilot_seeds: vec![0, 1],
        };
        ResultRow {
            target: "t".into(),
            source: "scratch".into(),
            option: 2,
            n_train: 50,
            seed,
            learning_rate: rate,
            validation_accuracy: validation,
            test_accuracy: test,
            status: CellStatus::Ok,
            rate_choice: Some(serde_json::to_string(&choice).unwrap()),
            ..Default::default()
        }
    }

    fn pilots(v: [[f64; 3]; 2]) -> Vec<ResultRow> {
        let rates = [1e-4, 1e-3, 1e-2];
        let mut rows = Vec::new();
        for (seed, per_rate) in v.iter().enumerate() {
            for (rate, val) in rates.iter().zip(per_rate) {
                rows.push(row(seed as i64, *rate, *val, 0.5));
            }
        }
        rows
    }

    fn only(rows: &[ResultRow]) -> Choice {
        let chosen = chosen_rates(rows);
        assert_eq!(chosen.len(), 1, "{chosen:?}");
        chosen.into_values().next().unwrap()
    }

    #[test]
    fn the_best_mean_validation_accuracy_over_the_pilot_seeds_chooses() {
        let c = only(&pilots([[0.5, 0.6, 0.7], [0.5, 0.6, 0.4]]));
        // Means: 0.5, 0.6, 0.55.
        assert_eq!(c.rate, 1e-3);
        let c = only(&pilots([[0.5, 0.6, 0.7], [0.5, 0.6, 0.6]]));
        assert_eq!(c.rate, 1e-2);
        assert_eq!(c.scores.len(), 3);
        assert!((c.scores[2].validation - 0.65).abs() < 1e-12);
    }

    #[test]
    fn a_choice_at_either_end_of_the_grid_says_so() {
        let edge = |v| only(&pilots(v)).at_edge();
        assert_eq!(
            edge([[0.5, 0.6, 0.7], [0.5, 0.6, 0.6]]),
            Some(GridEdge::Largest)
        );
        assert_eq!(
            edge([[0.8, 0.6, 0.7], [0.8, 0.6, 0.6]]),
            Some(GridEdge::Smallest)
        );
        assert_eq!(edge([[0.5, 0.6, 0.5], [0.5, 0.6, 0.5]]), None);
    }

    #[test]
    fn a_moved_choice_is_checked_on_the_validation_of_the_seeds_that_did_not_choose() {
        // The pilots choose 1e-2; seeds 2 and 3 train at 1e-3 (fixed) and 1e-2 (chosen), seed 4
        // at the fixed rate only. Test accuracy plays no part.
        let mut rows = pilots([[0.5, 0.6, 0.7], [0.5, 0.6, 0.6]]);
        for (seed, fixed, chosen) in [(2, 0.70, 0.50), (3, 0.60, 0.40)] {
            rows.push(row(seed, 1e-3, fixed, 0.1));
            rows.push(row(seed, 1e-2, chosen, 0.9));
        }
        rows.push(row(4, 1e-3, 0.99, 0.5));
        let views = RateViews::of(&rows).unwrap();
        let arm = views.choices.keys().next().unwrap().clone();
        let held = views.held_out(&arm).unwrap();
        assert_eq!(held.seeds, 2);
        assert!((held.fixed - 0.65).abs() < 1e-12 && (held.chosen - 0.45).abs() < 1e-12);
        // A choice that keeps the fixed rate has nothing to check.
        let kept = RateViews::of(&pilots([[0.5, 0.7, 0.6], [0.5, 0.7, 0.6]])).unwrap();
        let arm = kept.choices.keys().next().unwrap().clone();
        assert_eq!(kept.held_out(&arm), None);
    }

    #[test]
    fn ties_keep_the_fixed_rate_then_the_smaller() {
        assert_eq!(only(&pilots([[0.6, 0.6, 0.6], [0.6, 0.6, 0.6]])).rate, 1e-3);
        assert_eq!(only(&pilots([[0.7, 0.6, 0.7], [0.7, 0.6, 0.7]])).rate, 1e-4);
    }

    #[test]
    fn a_diverged_pilot_rules_its_rate_out() {
        let mut rows = pilots([[0.5, 0.6, 0.9], [0.5, 0.6, 0.9]]);
        rows[5].status = CellStatus::Diverged;
        assert_eq!(only(&rows).rate, 1e-3);
    }

    #[test]
    fn nothing_is_chosen_until_every_pilot_has_its_row() {
        let mut rows = pilots([[0.5, 0.6, 0.7], [0.5, 0.6, 0.7]]);
        rows.pop();
        assert!(chosen_rates(&rows).is_empty());
        let mut rows = pilots([[0.5, 0.6, 0.7], [0.5, 0.6, 0.7]]);
        rows[4].status = CellStatus::Failed;
        assert!(chosen_rates(&rows).is_empty());
        // A seed outside the pilots does not stand in for one.
        rows[4] = row(7, 1e-3, 0.6, 0.5);
        assert!(chosen_rates(&rows).is_empty());
    }

    #[test]
    fn a_fixed_rate_row_written_before_the_choice_still_counts_as_its_pilot() {
        let mut rows = pilots([[0.5, 0.6, 0.7], [0.5, 0.6, 0.6]]);
        for r in rows.iter_mut().filter(|r| r.learning_rate == 1e-3) {
            r.rate_choice = None;
        }
        assert_eq!(only(&rows).rate, 1e-2);
        let v = RateViews::of(&rows).unwrap();
        assert!(v.fixed.iter().all(|r| r.learning_rate == 1e-3) && v.fixed.len() == 2);
        assert!(v.chosen.iter().all(|r| r.learning_rate == 1e-2) && v.chosen.len() == 2);
    }

    #[test]
    fn the_ceilings_arm_is_the_best_on_validation_at_its_chosen_rate_never_on_test() {
        // Scratch at its chosen rate (1e-2: mean validation 0.65) and another arm without a
        // choice (0.62); the pilots' unchosen rates and the floor (0.9) do not compete.
        let mut rows = pilots([[0.5, 0.6, 0.7], [0.5, 0.6, 0.6]]);
        for (seed, validation) in [(0, 0.61), (1, 0.63)] {
            rows.push(ResultRow {
                source: "other".into(),
                relation: harness_spec::Relation::Matched,
                rate_choice: None,
                ..row(seed, 1e-3, validation, 0.99)
            });
            rows.push(ResultRow {
                source: "floor".into(),
                relation: harness_spec::Relation::Floor,
                rate_choice: None,
                ..row(seed, f64::NAN, 0.9, 0.99)
            });
        }
        let best = best_arm(&rows, "t", 50).unwrap();
        assert_eq!((best.arm.as_str(), best.option), ("scratch", 2));
        assert_eq!(best_arm(&rows, "t", 200), None);
        // Validation decides: raise the other arm's and it wins, whatever the test says.
        for r in rows.iter_mut().filter(|r| r.source == "other") {
            r.validation_accuracy = 0.7;
            r.test_accuracy = 0.0;
        }
        assert_eq!(best_arm(&rows, "t", 50).unwrap().arm, "other");
    }

    #[test]
    fn test_accuracy_never_changes_a_choice() {
        let rows = pilots([[0.5, 0.6, 0.7], [0.5, 0.6, 0.6]]);
        let before = only(&rows);
        for flip in [0.0, 1.0] {
            let mut changed = rows.clone();
            for (i, r) in changed.iter_mut().enumerate() {
                r.test_accuracy = if i % 2 == 0 { flip } else { 1.0 - flip };
                r.test_loss = 10.0 * flip;
            }
            assert_eq!(only(&changed), before);
        }
    }

    #[test]
    fn views_hold_each_arm_at_its_fixed_and_at_its_chosen_rate() {
        let mut rows = pilots([[0.5, 0.6, 0.7], [0.5, 0.6, 0.6]]);
        // Seed 2 is no pilot: it trains at the fixed rate and at the chosen one.
        rows.push(row(2, 1e-3, 0.6, 0.5));
        rows.push(row(2, 1e-2, 0.6, 0.5));
        // A floor row has no choice and stands in both views.
        rows.push(ResultRow {
            target: "t".into(),
            source: "floor".into(),
            seed: 2,
            ..Default::default()
        });
        let v = RateViews::of(&rows).unwrap();
        let rate_seed = |rows: &[ResultRow]| -> Vec<(i64, f64)> {
            let mut out: Vec<(i64, f64)> = (rows.iter())
                .filter(|r| r.source == "scratch")
                .map(|r| (r.seed, r.learning_rate))
                .collect();
            out.sort_by(|a, b| a.partial_cmp(b).unwrap());
            out
        };
        assert_eq!(rate_seed(&v.fixed), vec![(0, 1e-3), (1, 1e-3), (2, 1e-3)]);
        assert_eq!(rate_seed(&v.chosen), vec![(0, 1e-2), (1, 1e-2), (2, 1e-2)]);
        assert!(v.fixed.iter().any(|r| r.source == "floor"));
        assert!(v.chosen.iter().any(|r| r.source == "floor"));
        assert!(RateViews::of(&rows[rows.len() - 1..]).is_none());
    }
}
