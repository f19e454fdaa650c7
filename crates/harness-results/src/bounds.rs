//! Floor and ceiling: where each arm lies between a linear classifier on the raw input (the
//! floor, run by the harness on the same subsets) and the best arm on the most data the
//! report has (the ceiling), so that a weak learner is not mistaken for an effect.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use harness_spec::Relation;
use polars::prelude::*;

use crate::analysis::{finished, ints, paired_frame, side, strs};
use crate::row::ResultRow;
use crate::stats::{ArmSummary, MeanCi, PairedDifference};
use crate::table::{Align, Table};

/// One arm against its target's floor at one n_train, paired by seed.
#[derive(Debug, Clone)]
pub struct FloorComparison {
    pub source: String,
    pub option: i64,
    pub difference: PairedDifference,
}

/// Every arm against the floor of its target at the same n_train and seed (so on the same
/// subset, validation and test sets), ordered by target, source, option, n_train.
pub fn against_floor(frame: &DataFrame) -> PolarsResult<Vec<FloorComparison>> {
    let on = ["target", "n_train", "seed"];
    let is_floor = col("relation").eq(lit(Relation::Floor.as_str()));
    let arms = side(
        finished(frame).filter(is_floor.clone().not()),
        &[on.map(col).as_slice(), &[col("source"), col("option")]].concat(),
        "a",
    );
    let floor = side(finished(frame).filter(is_floor), &on.map(col), "b");
    let group = ["target", "source", "option", "n_train"];
    let table = paired_frame(arms, floor, &on, &group, &[])?;
    let (source, option) = (strs(&table, "source")?, ints(&table, "option")?);
    Ok(crate::analysis::differences(&table)?
        .into_iter()
        .enumerate()
        .map(|(i, difference)| FloorComparison {
            source: source[i].clone(),
            option: option[i],
            difference,
        })
        .collect())
}

/// The ceiling of a target: the best arm (by mean test accuracy) at the largest n_train the
/// report has for it.
#[derive(Debug, Clone)]
pub struct Ceiling {
    pub source: String,
    pub option: i64,
    pub n_train: i64,
    pub accuracy: MeanCi,
}

/// The ceiling of each target among `arms` (the floor excluded).
pub fn ceilings(arms: &[ArmSummary]) -> BTreeMap<String, Ceiling> {
    let mut out: BTreeMap<String, Ceiling> = BTreeMap::new();
    for a in arms.iter().filter(|a| a.relation != Relation::Floor) {
        let better = out.get(&a.target).is_none_or(|c| {
            (a.n_train, a.accuracy.mean) > (c.n_train, c.accuracy.mean)
                && !(a.n_train == c.n_train && a.accuracy.mean.is_nan())
        });
        if better {
            out.insert(
                a.target.clone(),
                Ceiling {
                    source: a.source.clone(),
                    option: a.option,
                    n_train: a.n_train,
                    accuracy: a.accuracy,
                },
            );
        }
    }
    out
}

/// Where `mean` lies between `floor` (0%) and `ceiling` (100%); None unless the ceiling lies
/// above the floor (when every arm is below the floor there is no span to place it in), and
/// None for an arm further below the floor than the ceiling lies above it (a few points of span
/// would turn its difference into "−600%", which says less than the difference itself).
pub fn position(mean: f64, floor: f64, ceiling: f64) -> Option<f64> {
    let span = ceiling - floor;
    (span > 1e-12)
        .then(|| (mean - floor) / span)
        .filter(|p| *p >= -1.0)
}

/// The report's section on floor and ceiling; nothing when the rows have no floor.
pub fn render_bounds(
    md: &mut String,
    rows: &[ResultRow],
    arms: &[ArmSummary],
    comparisons: &[FloorComparison],
) {
    let floors: Vec<&ArmSummary> = arms
        .iter()
        .filter(|a| a.relation == Relation::Floor)
        .collect();
    if floors.is_empty() {
        return;
    }
    let ceilings = ceilings(arms);
    let _ = writeln!(md, "## Between floor and ceiling\n");
    let _ = writeln!(
        md,
        "The **floor** is an ℓ2-regularised logistic regression on the raw input ({}), fitted by the \
         harness on each cell's own fitting split, its strength chosen on the same validation split \
         as the arms, refitted on fitting + validation and tested once on the same test set. The \
         **ceiling** is the best arm at the largest n_train this report has. Position: 0% at the \
         floor, 100% at the ceiling; none where the ceiling lies below the floor (then even the \
         best arm on the most data does worse than a linear classifier on the raw input), nor \
         for an arm further below the floor than the ceiling lies above it.\n",
        floor_inputs(rows)
    );
    level_table(&floors, &ceilings, comparisons).write(md);
    let _ = writeln!(
        md,
        "Each arm minus the floor at the same seed and subset, in points (mean over seeds; \
         **bold** where the 95% t-interval excludes 0), and its position between floor and \
         ceiling:\n"
    );
    detail_table(&floors, &ceilings, comparisons).write(md);
}

/// What the floors read, from their rows' architecture (`logistic (raw pixels)`), per target.
fn floor_inputs(rows: &[ResultRow]) -> String {
    let mut inputs: BTreeMap<&str, &str> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.relation == Relation::Floor) {
        inputs.insert(&r.target, r.architecture());
    }
    inputs
        .iter()
        .map(|(target, input)| format!("{target}: {input}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Per target and n_train: the floor, the ceiling, and how many arms lie clearly above the
/// floor, within reach of it, or clearly below it.
fn level_table(
    floors: &[&ArmSummary],
    ceilings: &BTreeMap<String, Ceiling>,
    comparisons: &[FloorComparison],
) -> Table {
    use Align::{Left, Right};
    let mut table = Table::new(&[
        ("target", Left),
        ("n_train", Right),
        ("floor %", Right),
        ("ceiling %", Right),
        ("ceiling arm", Left),
        ("arms above floor", Right),
        ("not distinguishable", Right),
        ("arms below floor", Right),
    ]);
    for f in floors {
        let mine = comparisons
            .iter()
            .filter(|c| c.difference.target == f.target && c.difference.n_train == f.n_train);
        let mut counts = [0usize; 3];
        for c in mine {
            let d = &c.difference.difference;
            counts[if d.low > 0.0 {
                0
            } else if d.high < 0.0 {
                2
            } else {
                1
            }] += 1;
        }
        let ceiling = ceilings.get(&f.target);
        table.row(vec![
            f.target.clone(),
            f.n_train.to_string(),
            format!("{:.1}", f.accuracy.mean * 100.0),
            ceiling.map_or("–".into(), |c| format!("{:.1}", c.accuracy.mean * 100.0)),
            ceiling.map_or("–".into(), |c| {
                format!("{}, option {} (n = {})", c.source, c.option, c.n_train)
            }),
            counts[0].to_string(),
            counts[1].to_string(),
            counts[2].to_string(),
        ]);
    }
    table
}

/// One line per target, arm and option; a column per n_train holding `arm − floor` and the
/// arm's position between floor and ceiling.
fn detail_table(
    floors: &[&ArmSummary],
    ceilings: &BTreeMap<String, Ceiling>,
    comparisons: &[FloorComparison],
) -> Table {
    use Align::{Left, Right};
    let mut sizes: Vec<i64> = floors.iter().map(|f| f.n_train).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut columns = vec![
        ("target".to_string(), Left),
        ("arm".to_string(), Left),
        ("option".to_string(), Right),
    ];
    columns.extend(sizes.iter().map(|n| (format!("n = {n}"), Right)));
    let mut table = Table::new(&columns);
    let mut lines: BTreeMap<(&str, &str, i64), BTreeMap<i64, String>> = BTreeMap::new();
    for c in comparisons {
        let d = &c.difference;
        let floor = floors
            .iter()
            .find(|f| f.target == d.target && f.n_train == d.n_train);
        let place = match (floor, ceilings.get(&d.target)) {
            (Some(f), Some(ceiling)) => position(
                f.accuracy.mean + d.difference.mean,
                f.accuracy.mean,
                ceiling.accuracy.mean,
            ),
            _ => None,
        };
        lines
            .entry((&d.target, &c.source, c.option))
            .or_default()
            .insert(d.n_train, difference_with_position(&d.difference, place));
    }
    for ((target, source, option), cells) in lines {
        let mut row = vec![target.to_string(), source.to_string(), option.to_string()];
        row.extend(
            sizes
                .iter()
                .map(|n| cells.get(n).cloned().unwrap_or_else(|| "–".into())),
        );
        table.row(row);
    }
    table
}

/// `+3.1 (62%)`, bold where the interval excludes 0.
fn difference_with_position(d: &MeanCi, place: Option<f64>) -> String {
    let points = format!("{:+.1}", d.mean * 100.0);
    let points = if d.low > 0.0 || d.high < 0.0 {
        format!("**{points}**")
    } else {
        points
    };
    match place {
        Some(p) => format!("{points} ({:.0}%)", p * 100.0),
        None => points,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(source: &str, relation: Relation, option: i64, n: i64, mean: f64) -> ArmSummary {
        ArmSummary {
            target: "t".into(),
            source: source.into(),
            relation,
            option,
            n_train: n,
            accuracy: MeanCi {
                n: 3,
                mean,
                sd: 0.0,
                low: mean,
                high: mean,
            },
            macro_f1: MeanCi::of(&[]),
            seconds: 0.0,
        }
    }

    #[test]
    fn the_ceiling_is_the_best_arm_at_the_largest_size_and_never_the_floor() {
        let arms = [
            arm("a", Relation::None, 1, 100, 0.9),
            arm("b", Relation::Matched, 2, 200, 0.7),
            arm("c", Relation::Matched, 1, 200, 0.8),
            arm("floor", Relation::Floor, 1, 200, 0.95),
        ];
        let c = &ceilings(&arms)["t"];
        assert_eq!((c.source.as_str(), c.option, c.n_train), ("c", 1, 200));
    }

    #[test]
    fn the_position_is_zero_at_the_floor_one_at_the_ceiling_and_negative_below() {
        assert_eq!(position(0.6, 0.6, 0.9), Some(0.0));
        assert!((position(0.9, 0.6, 0.9).unwrap() - 1.0).abs() < 1e-12);
        assert!(position(0.5, 0.6, 0.9).unwrap() < 0.0);
        assert_eq!(position(0.5, 0.6, 0.6), None);
        // Further below the floor than the ceiling is above it: no position.
        assert!((position(0.3, 0.6, 0.9).unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(position(0.29, 0.6, 0.9), None);
        assert_eq!(
            position(0.5, 0.8, 0.7),
            None,
            "a ceiling below the floor places nothing"
        );
    }
}
