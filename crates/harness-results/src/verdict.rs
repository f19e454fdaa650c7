//! The declared hypotheses, tested on the rows: for each hypothesis and each target it applies
//! to, the paired difference A − B in test accuracy per seed (averaged over the comparisons the
//! hypothesis spans there), its 95% bootstrap interval, a one-sided t-test or TOST, Holm's
//! correction across every (hypothesis, target), and a verdict.

use std::collections::{BTreeMap, BTreeSet};

use harness_spec::{Arm, CellStatus, Expect, Hypothesis, Relation, TransferOption};

use polars::prelude::*;

use crate::analysis::{arm_frame, finished, floats, ints, sort_by};
use crate::row::{ResultRow, with_arm_names};
use crate::stats::{MeanCi, bootstrap_mean_ci, holm, t_test_greater, t_test_less, tost};

/// Family-wise error rate of the verdicts.
pub const ALPHA: f64 = 0.05;

/// What the data say about one hypothesis on one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The claim's test rejects its null hypothesis after Holm's correction.
    Supported,
    /// The opposite claim's test does (for `greater`: A is below B; for `equivalent`: the
    /// difference lies outside the margin).
    Contradicted,
    /// Neither.
    Inconclusive,
    /// Fewer than two seeds with every comparison present.
    NoData,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Supported => "supported",
            Verdict::Contradicted => "contradicted",
            Verdict::Inconclusive => "inconclusive",
            Verdict::NoData => "no data",
        }
    }
}

/// One (hypothesis, target) test.
#[derive(Debug, Clone)]
pub struct HypothesisTest {
    pub hypothesis: Hypothesis,
    pub target: String,
    /// The n_train values covered.
    pub sizes: Vec<i64>,
    /// The comparisons averaged within each seed, e.g. `fashion-mnist − scratch, option 2, n 50`.
    pub comparisons: Vec<String>,
    /// (seed, mean difference A − B over the comparisons) for every seed that has them all.
    pub per_seed: Vec<(i64, f64)>,
    /// Mean over seeds, and its 95% percentile-bootstrap interval.
    pub mean: f64,
    pub ci: (f64, f64),
    /// p-value of the claim's test, and of the opposite claim's test; raw and Holm-adjusted.
    pub p_claim: f64,
    pub p_opposite: f64,
    pub p_claim_holm: f64,
    pub p_opposite_holm: f64,
    pub verdict: Verdict,
}

/// One comparison: (source, option) of A against (source, option) of B at one n_train.
struct Comparison {
    n: i64,
    a: (String, i64),
    b: (String, i64),
}

/// The arms of one target as a hypothesis sees them.
struct TargetArms<'a> {
    /// Each source and its relation (`none`, `matched`, `mismatched`).
    relation: BTreeMap<&'a str, Relation>,
    /// The architecture of each source: arms are compared only within one.
    architecture: BTreeMap<&'a str, &'a str>,
    options: BTreeSet<i64>,
    /// The options each source ran (a control and the floor run Option 1 only).
    options_of: BTreeMap<&'a str, BTreeSet<i64>>,
}

impl<'a> TargetArms<'a> {
    fn of(rows: &[&'a ResultRow], target: &str) -> TargetArms<'a> {
        let mine = || rows.iter().filter(move |r| r.target == target);
        TargetArms {
            relation: mine().map(|r| (r.source.as_str(), r.relation)).collect(),
            architecture: mine()
                .map(|r| (r.source.as_str(), r.architecture()))
                .collect(),
            options: mine().map(|r| r.option).collect(),
            options_of: mine().fold(BTreeMap::new(), |mut of, r| {
                of.entry(r.source.as_str())
                    .or_insert_with(BTreeSet::new)
                    .insert(r.option);
                of
            }),
        }
    }

    /// Whether `source` ran under `option`.
    fn ran(&self, source: &str, option: i64) -> bool {
        self.options_of
            .get(source)
            .is_some_and(|o| o.contains(&option))
    }

    /// Whether `a` and `b` may be compared under `option`: the same architecture and, when one
    /// is a scratch arm, the scratch arm that trains what the other trains
    /// ([`harness_spec::partner_arm`]).
    fn comparable(&self, a: &str, b: &str, option: i64) -> bool {
        let partner = |arm: &str| {
            let option = TransferOption::from_number(option).unwrap_or(TransferOption::FineTune);
            harness_spec::partner_arm(self.relation[arm], option, self.architecture[arm], None)
        };
        self.architecture[a] == self.architecture[b]
            && match (self.relation[a], self.relation[b]) {
                (Relation::None, Relation::None) => a == b,
                (Relation::None, _) => partner(b) == a,
                (_, Relation::None) => partner(a) == b,
                _ => true,
            }
    }

    /// Whether `source` is of an architecture the hypothesis compares.
    fn in_scope(&self, h: &Hypothesis, source: &str) -> bool {
        h.architectures.is_empty()
            || h.architectures
                .iter()
                .any(|a| a == self.architecture[source])
    }
}

fn comparisons(
    h: &Hypothesis,
    rows: &[&ResultRow],
    target: &str,
    sizes: &[i64],
) -> Vec<Comparison> {
    let arms = TargetArms::of(rows, target);
    match (h.a, h.b) {
        (Arm::Option(oa), Arm::Option(ob)) => option_comparisons(h, &arms, sizes, (oa, ob)),
        (a, b) => relation_comparisons(h, &arms, sizes, (a, b)),
    }
}

/// Option `oa` against option `ob` of each chosen source, at each size.
fn option_comparisons(
    h: &Hypothesis,
    arms: &TargetArms,
    sizes: &[i64],
    (oa, ob): (TransferOption, TransferOption),
) -> Vec<Comparison> {
    let chosen = |source: &str, rel: Relation| {
        arms.in_scope(h, source)
            && (h.sources.is_empty() || h.sources.iter().any(|s| s.covers(source, rel)))
    };
    let mut out = Vec::new();
    for &n in sizes {
        for (&source, &rel) in &arms.relation {
            let both = arms.ran(source, oa.number().into()) && arms.ran(source, ob.number().into());
            if chosen(source, rel) && both {
                out.push(Comparison {
                    n,
                    a: (source.to_string(), oa.number().into()),
                    b: (source.to_string(), ob.number().into()),
                });
            }
        }
    }
    out
}

/// Every source of relation `a` against every source of relation `b` of the same
/// architecture, at each size and option.
fn relation_comparisons(
    h: &Hypothesis,
    arms: &TargetArms,
    sizes: &[i64],
    (a, b): (Arm, Arm),
) -> Vec<Comparison> {
    let of = |arm: Arm| -> Vec<&str> {
        arms.relation
            .iter()
            .filter(|(s, r)| Some(**r) == arm.relation() && arms.in_scope(h, s))
            .map(|(s, _)| *s)
            .collect()
    };
    let opts: Vec<i64> = if h.options.is_empty() {
        arms.options.iter().copied().collect()
    } else {
        h.options.iter().map(|o| o.number().into()).collect()
    };
    let mut out = Vec::new();
    for &n in sizes {
        for &o in &opts {
            for sa in of(a) {
                for sb in of(b) {
                    if arms.comparable(sa, sb, o) && arms.ran(sa, o) && arms.ran(sb, o) {
                        out.push(Comparison {
                            n,
                            a: (sa.to_string(), o),
                            b: (sb.to_string(), o),
                        });
                    }
                }
            }
        }
    }
    out
}

/// Per seed, A − B averaged over the comparisons `comps` on `target`, for every seed that has
/// all of them, ordered by seed: the plan of comparisons joined twice with the finished cells
/// (once for A, once for B), then a group-by over seeds.
fn per_seed_differences(
    frame: &DataFrame,
    target: &str,
    comps: &[Comparison],
) -> PolarsResult<Vec<(i64, f64)>> {
    let plan = df! {
        "n_train" => comps.iter().map(|c| c.n).collect::<Vec<_>>(),
        "a_source" => comps.iter().map(|c| c.a.0.clone()).collect::<Vec<_>>(),
        "a_option" => comps.iter().map(|c| c.a.1).collect::<Vec<_>>(),
        "b_source" => comps.iter().map(|c| c.b.0.clone()).collect::<Vec<_>>(),
        "b_option" => comps.iter().map(|c| c.b.1).collect::<Vec<_>>(),
    }?;
    let side = |name: &str| {
        let on: Vec<Expr> = [
            format!("{name}_source"),
            format!("{name}_option"),
            "n_train".into(),
        ]
        .iter()
        .map(|c| col(c.as_str()))
        .collect();
        let cells = finished(frame)
            .filter(col("target").eq(lit(target)))
            .select([
                col("source").alias(format!("{name}_source")),
                col("option").alias(format!("{name}_option")),
                col("n_train"),
                col("seed"),
                col("test_accuracy").alias(name),
            ]);
        (on, cells)
    };
    let (on_a, cells_a) = side("a");
    let (mut on_b, cells_b) = side("b");
    on_b.push(col("seed"));
    let per_seed = sort_by(
        plan.lazy()
            .join(cells_a, on_a.clone(), on_a, JoinArgs::new(JoinType::Inner))
            .join(cells_b, on_b.clone(), on_b, JoinArgs::new(JoinType::Inner))
            .group_by([col("seed")])
            .agg([
                (col("a") - col("b")).mean().alias("difference"),
                col("a").count().alias("comparisons"),
            ])
            .filter(col("comparisons").eq(lit(comps.len() as IdxSize))),
        &["seed"],
    )
    .collect()?;
    let seed = ints(&per_seed, "seed")?;
    let difference = floats(&per_seed, "difference")?;
    Ok(seed.into_iter().zip(difference).collect())
}

/// The test of `h` on `target` from its per-seed differences, before Holm's correction.
fn one_test(
    h: &Hypothesis,
    target: &str,
    sizes: Vec<i64>,
    comps: &[Comparison],
    per_seed: Vec<(i64, f64)>,
) -> HypothesisTest {
    let values: Vec<f64> = per_seed.iter().map(|(_, d)| *d).collect();
    let m = h.margin;
    let (p_claim, p_opposite) = match h.expect {
        Expect::Greater => (t_test_greater(&values, m), t_test_less(&values, 0.0)),
        Expect::NotWorse => (t_test_greater(&values, -m), t_test_less(&values, -m)),
        Expect::Equivalent => (
            tost(&values, m),
            (2.0 * t_test_greater(&values, m).min(t_test_less(&values, -m))).min(1.0),
        ),
    };
    HypothesisTest {
        hypothesis: h.clone(),
        target: target.to_string(),
        sizes,
        comparisons: comps
            .iter()
            .map(|c| {
                if c.a.0 == c.b.0 {
                    format!("{}: option {} − option {}, n {}", c.a.0, c.a.1, c.b.1, c.n)
                } else {
                    format!("{} − {}, option {}, n {}", c.a.0, c.b.0, c.a.1, c.n)
                }
            })
            .collect(),
        mean: MeanCi::of(&values).mean,
        ci: bootstrap_mean_ci(&values, 0.95),
        per_seed,
        p_claim,
        p_opposite,
        p_claim_holm: f64::NAN,
        p_opposite_holm: f64::NAN,
        verdict: Verdict::NoData,
    }
}

/// Holm's correction across every test of each kind (the claims, the opposites), then each
/// test's verdict.
fn adjust_and_judge(tests: &mut [HypothesisTest]) {
    let claim = holm(&tests.iter().map(|t| t.p_claim).collect::<Vec<_>>());
    let opposite = holm(&tests.iter().map(|t| t.p_opposite).collect::<Vec<_>>());
    for (i, t) in tests.iter_mut().enumerate() {
        t.p_claim_holm = claim[i];
        t.p_opposite_holm = opposite[i];
        t.verdict = if t.per_seed.len() < 2 || !t.p_claim.is_finite() {
            Verdict::NoData
        } else if t.p_claim_holm < ALPHA {
            Verdict::Supported
        } else if t.p_opposite_holm < ALPHA {
            Verdict::Contradicted
        } else {
            Verdict::Inconclusive
        };
    }
}

/// Tests every hypothesis on every target it applies to, in declaration order, then target;
/// scratch rows are named after their architecture's scratch arm first.
pub fn test_hypotheses(
    rows: &[ResultRow],
    hypotheses: &[Hypothesis],
) -> PolarsResult<Vec<HypothesisTest>> {
    let rows = &with_arm_names(rows);
    let frame = arm_frame(rows)?;
    let ok: Vec<&ResultRow> = rows
        .iter()
        .filter(|r| r.status == CellStatus::Ok && r.test_accuracy.is_finite())
        .collect();
    let targets: BTreeSet<&str> = rows.iter().map(|r| r.target.as_str()).collect();
    let mut tests = Vec::new();
    for h in hypotheses {
        for &target in &targets {
            if !h.targets.is_empty() && !h.targets.iter().any(|t| t == target) {
                continue;
            }
            let available: Vec<usize> = rows
                .iter()
                .filter(|r| r.target == target)
                .map(|r| r.n_train as usize)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let sizes: Vec<i64> = h
                .n_train
                .select(&available)
                .into_iter()
                .map(|n| n as i64)
                .collect();
            let comps = comparisons(h, &ok, target, &sizes);
            if comps.is_empty() {
                continue;
            }
            let per_seed = per_seed_differences(&frame, target, &comps)?;
            tests.push(one_test(h, target, sizes, &comps, per_seed));
        }
    }
    adjust_and_judge(&mut tests);
    Ok(tests)
}

#[cfg(test)]
mod tests {
    use harness_spec::SizeScope;

    use super::*;

    /// Rows of one target with sources `scratch` (none), `same` (matched), `other`
    /// (mismatched), options 1 and 2, n_train 50 and 200, seeds 0–4. Accuracy is 0.5 plus
    /// `effect(source, option, n)` plus a seed's share of `noise`.
    fn rows(effect: impl Fn(&str, i64, i64) -> f64, noise: f64) -> Vec<ResultRow> {
        let jitter = [0.3, -0.9, 0.5, -0.2, 0.8];
        let mut out = Vec::new();
        for (source, relation) in [
            ("scratch", "none"),
            ("same", "matched"),
            ("other", "mismatched"),
        ] {
            for option in [1, 2] {
                for n in [50, 200] {
                    for seed in 0..5i64 {
                        let k = (seed as usize + option as usize + source.len()) % 5;
                        out.push(ResultRow {
                            target: "t".into(),
                            source: source.into(),
                            relation: Relation::parse(relation).unwrap(),
                            option,
                            n_train: n,
                            seed,
                            status: CellStatus::Ok,
                            test_accuracy: 0.5 + effect(source, option, n) + noise * jitter[k],
                            ..Default::default()
                        });
                    }
                }
            }
        }
        out
    }

    fn hypothesis(a: Arm, b: Arm, expect: Expect, margin: f64, n: SizeScope) -> Hypothesis {
        Hypothesis {
            name: "h".into(),
            claim: String::new(),
            a,
            b,
            expect,
            margin,
            n_train: n,
            options: vec![],
            sources: vec![],
            targets: vec![],
            architectures: vec![],
        }
    }

    fn one(rows: &[ResultRow], h: Hypothesis) -> HypothesisTest {
        let mut t = test_hypotheses(rows, &[h]).unwrap();
        assert_eq!(t.len(), 1);
        t.remove(0)
    }

    #[test]
    fn a_clear_gain_supports_greater_and_a_clear_loss_contradicts_it() {
        let gain = rows(|s, _, _| if s == "same" { 0.10 } else { 0.0 }, 0.01);
        let h = hypothesis(
            Arm::Matched,
            Arm::Scratch,
            Expect::Greater,
            0.0,
            SizeScope::Smallest,
        );
        let t = one(&gain, h.clone());
        assert_eq!(t.verdict, Verdict::Supported, "{t:?}");
        assert!((t.mean - 0.10).abs() < 0.01, "{}", t.mean);
        assert!(t.ci.0 > 0.05 && t.ci.1 < 0.15, "{:?}", t.ci);
        assert_eq!(t.per_seed.len(), 5);
        // Only the smallest n_train, both options: two comparisons per seed.
        assert_eq!(t.sizes, vec![50]);
        assert_eq!(t.comparisons.len(), 2, "{:?}", t.comparisons);
        let loss = rows(|s, _, _| if s == "same" { -0.10 } else { 0.0 }, 0.01);
        assert_eq!(one(&loss, h.clone()).verdict, Verdict::Contradicted);
        let noise = rows(|s, _, _| if s == "same" { 0.003 } else { 0.0 }, 0.05);
        assert_eq!(one(&noise, h).verdict, Verdict::Inconclusive);
    }

    #[test]
    fn a_cross_modal_option_1_arm_meets_the_trained_stem_control_never_the_frozen_stem_scratch() {
        // The cross-modal arm's Option 1 gain over plain scratch is all its trainable stem:
        // the trained-stem control scores the same.
        let effect = |s: &str, o: i64, _| if s == "other" && o == 1 { 0.10 } else { 0.0 };
        let mut all = rows(effect, 0.01);
        let control: Vec<ResultRow> = all
            .iter()
            .filter(|r| r.source == "scratch" && r.option == 1)
            .map(|r| ResultRow {
                control: Some("trained stem".into()),
                test_accuracy: r.test_accuracy + 0.10,
                ..r.clone()
            })
            .collect();
        let h = hypothesis(
            Arm::Mismatched,
            Arm::Scratch,
            Expect::Greater,
            0.0,
            SizeScope::Smallest,
        );
        // Without the control, Option 1 has no fair partner and is left out.
        let t = one(&all, h.clone());
        assert_eq!(t.comparisons, ["other − scratch, option 2, n 50"], "{t:?}");
        all.extend(control);
        let t = one(&all, h);
        assert_eq!(
            t.comparisons,
            [
                "other − scratch (trained stem), option 1, n 50",
                "other − scratch, option 2, n 50"
            ]
        );
        assert!(t.mean.abs() < 0.01, "{t:?}");
        assert_ne!(t.verdict, Verdict::Supported);
    }

    #[test]
    fn equivalence_within_the_margin_is_supported_and_a_gain_beyond_it_contradicts() {
        let h = hypothesis(
            Arm::Mismatched,
            Arm::Scratch,
            Expect::Equivalent,
            0.02,
            SizeScope::All,
        );
        let same = rows(|_, _, _| 0.0, 0.004);
        let t = one(&same, h.clone());
        assert_eq!(t.verdict, Verdict::Supported, "{t:?}");
        // Option 1's cross-modal arm has no trained-stem control among these rows, so it is
        // not compared (see the test above): 2 sizes × option 2.
        assert_eq!(t.comparisons.len(), 2, "{:?}", t.comparisons);
        let better = rows(|s, _, _| if s == "other" { 0.08 } else { 0.0 }, 0.004);
        assert_eq!(one(&better, h.clone()).verdict, Verdict::Contradicted);
        // Equal on average but too noisy to place inside ±2 points.
        let noisy = rows(|_, _, _| 0.0, 0.08);
        assert_eq!(one(&noisy, h).verdict, Verdict::Inconclusive);
    }

    #[test]
    fn sources_are_compared_only_with_the_scratch_arm_of_their_own_architecture() {
        // The Transformer rows as `rows` makes them; a second architecture's scratch arm and
        // network, 0.3 apart, whose scratch arm is far below the Transformer's.
        let mut all = rows(|s, _, _| if s == "same" { 0.1 } else { 0.0 }, 0.0);
        for (source, relation, accuracy) in [("scratch", "none", 0.2), ("net", "matched", 0.5)] {
            for option in [1, 2] {
                for n in [50, 200] {
                    for seed in 0..5i64 {
                        all.push(ResultRow {
                            target: "t".into(),
                            source: source.into(),
                            relation: Relation::parse(relation).unwrap(),
                            architecture: Some("cnn".into()),
                            option,
                            n_train: n,
                            seed,
                            status: CellStatus::Ok,
                            test_accuracy: accuracy + 0.001 * seed as f64,
                            ..Default::default()
                        });
                    }
                }
            }
        }
        let all = crate::with_arm_names(&all);
        let h = || {
            hypothesis(
                Arm::Matched,
                Arm::Scratch,
                Expect::Greater,
                0.0,
                SizeScope::Smallest,
            )
        };
        let both = one(&all, h());
        assert_eq!(both.comparisons.len(), 2 * 2, "{:?}", both.comparisons);
        assert!(
            both.comparisons
                .iter()
                .all(|c| c.contains("net − scratch (cnn)") || c.contains("same − scratch,")),
            "{:?}",
            both.comparisons
        );
        assert!((both.mean - 0.2).abs() < 1e-9, "{}", both.mean);
        let cnn = one(
            &all,
            Hypothesis {
                architectures: vec!["cnn".into()],
                ..h()
            },
        );
        assert!((cnn.mean - 0.3).abs() < 1e-9, "{}", cnn.mean);
        let transformer = one(
            &all,
            Hypothesis {
                architectures: vec!["transformer".into()],
                ..h()
            },
        );
        assert!(
            (transformer.mean - 0.1).abs() < 1e-9,
            "{}",
            transformer.mean
        );
    }

    #[test]
    fn options_are_compared_within_each_chosen_source() {
        let r = rows(
            |s, o, n| match (s, o, n) {
                ("same", 1, 50) => 0.06,
                ("same", 2, 200) => 0.09,
                _ => 0.0,
            },
            0.005,
        );
        let mut small = hypothesis(
            Arm::Option(TransferOption::Freeze),
            Arm::Option(TransferOption::FineTune),
            Expect::Greater,
            0.0,
            SizeScope::Smallest,
        );
        small.sources = vec!["matched".into()];
        let t = one(&r, small.clone());
        assert_eq!(
            t.comparisons,
            vec!["same: option 1 − option 2, n 50".to_string()]
        );
        assert_eq!(t.verdict, Verdict::Supported);
        let mut large = small.clone();
        large.a = Arm::Option(TransferOption::FineTune);
        large.b = Arm::Option(TransferOption::Freeze);
        large.n_train = SizeScope::Largest;
        assert_eq!(one(&r, large).verdict, Verdict::Supported);
        // Over every source, the matched source's gain is diluted by two that show none.
        small.sources = vec![];
        let t = one(&r, small);
        assert_eq!(t.comparisons.len(), 3);
        assert!((t.mean - 0.02).abs() < 0.005, "{}", t.mean);
    }

    #[test]
    fn a_seed_missing_a_comparison_is_left_out_and_holm_counts_every_test() {
        let mut r = rows(|s, _, _| if s == "same" { 0.05 } else { 0.0 }, 0.01);
        r.retain(|row| {
            !(row.seed == 2 && row.source == "scratch" && row.option == 2 && row.n_train == 50)
        });
        let h = hypothesis(
            Arm::Matched,
            Arm::Scratch,
            Expect::Greater,
            0.0,
            SizeScope::Smallest,
        );
        let t = one(&r, h.clone());
        assert_eq!(
            t.per_seed.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            vec![0, 1, 3, 4]
        );
        let mut h2 = h.clone();
        h2.name = "h2".into();
        h2.a = Arm::Mismatched;
        let both = test_hypotheses(&r, &[h, h2]).unwrap();
        assert_eq!(both.len(), 2);
        let (p1, p2) = (both[0].p_claim, both[1].p_claim);
        let smaller = p1.min(p2);
        let adjusted = if p1 < p2 {
            both[0].p_claim_holm
        } else {
            both[1].p_claim_holm
        };
        assert!((adjusted - (2.0 * smaller).min(1.0)).abs() < 1e-12);
    }
}
