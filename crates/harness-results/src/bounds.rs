//! Floor and ceiling: where each arm lies between a linear classifier on the raw input (the
//! floor, run by the harness on the same subsets) and the best arm on the most data the
//! report has (the ceiling), so that a weak learner is not mistaken for an effect.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use harness_spec::{CellStatus, Relation};
use polars::prelude::*;

use crate::analysis::{finished, ints, paired_frame, side, strs};
use crate::row::ResultRow;
use crate::selection::{ArmSize, best_on_validation};
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

/// The ceiling of a target: the arm best on validation at the largest n_train of the matrix,
/// trained on the ceiling's own examples where the experiment has `[matrix.ceiling]`, else as
/// it is at that n_train.
#[derive(Debug, Clone)]
pub struct Ceiling {
    pub source: String,
    pub option: i64,
    pub n_train: i64,
    /// Test accuracy over the ceiling's seeds.
    pub accuracy: MeanCi,
    /// Whether it trained on the ceiling's own examples (`[matrix.ceiling]`).
    pub own_cells: bool,
}

/// The ceiling of each target of `rows` (the report's rows, one rate per arm): from
/// `ceiling_rows` (the cells of `[matrix.ceiling]`) where the target has them, else the arm
/// with the best mean validation accuracy at the target's largest n_train ([`best_on_validation`];
/// the test set chooses nothing), the floor left out.
pub fn ceilings(rows: &[ResultRow], ceiling_rows: &[ResultRow]) -> BTreeMap<String, Ceiling> {
    let mut out = BTreeMap::new();
    let targets: BTreeSet<&str> = rows.iter().map(|r| r.target.as_str()).collect();
    for target in targets {
        let own: Vec<&ResultRow> = (ceiling_rows.iter())
            .filter(|r| r.target == target && r.status == CellStatus::Ok)
            .collect();
        let (arm, of_arm, own_cells) = if let Some(first) = own.first() {
            (ArmSize::of_row(first), own, true)
        } else {
            let arms = rows
                .iter()
                .filter(|r| r.target == target && r.relation != Relation::Floor);
            let Some(largest) = arms.map(|r| r.n_train).max() else {
                continue;
            };
            let Some(best) = best_on_validation(rows, target, largest) else {
                continue;
            };
            let of_arm: Vec<&ResultRow> = (rows.iter())
                .filter(|r| r.status == CellStatus::Ok && ArmSize::of_row(r) == best)
                .collect();
            (best, of_arm, false)
        };
        let accuracy: Vec<f64> = of_arm.iter().map(|r| r.test_accuracy).collect();
        out.insert(
            target.to_string(),
            Ceiling {
                source: arm.arm,
                option: arm.option,
                n_train: arm.n_train,
                accuracy: MeanCi::of(&accuracy),
                own_cells,
            },
        );
    }
    out
}

/// The least span, in accuracy, between floor and ceiling that places an arm: over a
/// narrower one a fraction of a point reads as hundreds of percent (measured: a ceiling 0.04
/// points above the floor put an arm 0.9 points above it at 2,350%).
const MIN_SPAN: f64 = 0.01;

/// Where `mean` lies between `floor` (0%) and `ceiling` (100%); None unless the ceiling lies
/// at least [`MIN_SPAN`] above the floor (when every arm is below the floor there is no span
/// to place it in), and None for an arm further below the floor than the ceiling lies above it
/// (a few points of span would turn its difference into "−600%", which says less than the
/// difference itself).
pub fn position(mean: f64, floor: f64, ceiling: f64) -> Option<f64> {
    let span = ceiling - floor;
    (span >= MIN_SPAN)
        .then(|| (mean - floor) / span)
        .filter(|p| *p >= -1.0)
}

/// The report's section on floor and ceiling; nothing when the rows have no floor.
pub fn render_bounds(
    md: &mut String,
    rows: &[ResultRow],
    ceiling_rows: &[ResultRow],
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
    let ceilings = ceilings(rows, ceiling_rows);
    let own: Vec<String> = (ceilings.iter())
        .filter(|(_, c)| c.own_cells)
        .map(|(target, c)| {
            let s = if c.accuracy.n == 1 { "" } else { "s" };
            format!("{target}: n = {}, {} seed{s}", c.n_train, c.accuracy.n)
        })
        .collect();
    let ceiling_text = if own.is_empty() {
        "the arm with the best mean validation accuracy at the largest n_train this report has \
         (the experiment has no `[matrix.ceiling]` for these targets)"
            .to_string()
    } else {
        format!(
            "the arm with the best mean validation accuracy at the largest n_train, trained again \
             on the ceiling's examples of `[matrix.ceiling]` ({}), on the first seeds; a target \
             without one takes that arm at the largest n_train",
            own.join("; ")
        )
    };
    let _ = writeln!(md, "## Between floor and ceiling\n");
    let _ = writeln!(
        md,
        "The **floor** is an ℓ2-regularised logistic regression on the raw input ({}), fitted by the \
         harness on each cell's own fitting split, its strength chosen on the same validation split \
         as the arms, refitted on fitting + validation and tested once on the same test set. The \
         **ceiling** is {ceiling_text}; the test set chooses nothing. Position: 0% at the \
         floor, 100% at the ceiling; none where the ceiling lies below the floor (then even the \
         best arm on the most data does worse than a linear classifier on the raw input) or less \
         than a point above it, nor \
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

    fn row(source: &str, relation: Relation, n: i64, seed: i64, validation: f64) -> ResultRow {
        ResultRow {
            target: "t".into(),
            source: source.into(),
            relation,
            option: 1,
            n_train: n,
            seed,
            status: CellStatus::Ok,
            validation_accuracy: validation,
            test_accuracy: 1.0 - validation,
            ..Default::default()
        }
    }

    #[test]
    fn the_ceiling_is_the_arm_best_on_validation_at_the_largest_size_never_the_floor() {
        let mut rows = Vec::new();
        for seed in 0..3 {
            rows.push(row("a", Relation::None, 100, seed, 0.95));
            rows.push(row("b", Relation::Matched, 200, seed, 0.7));
            rows.push(row("c", Relation::Matched, 200, seed, 0.8));
            rows.push(row("floor", Relation::Floor, 200, seed, 0.99));
        }
        let c = &ceilings(&rows, &[])["t"];
        assert_eq!((c.source.as_str(), c.option, c.n_train), ("c", 1, 200));
        // Its test accuracy, though b's test accuracy is higher.
        assert!((c.accuracy.mean - 0.2).abs() < 1e-12 && !c.own_cells);
        // The ceiling's own cells stand in where the target has them.
        let own: Vec<ResultRow> = (0..2)
            .map(|s| row("c", Relation::Matched, 900, s, 0.9))
            .collect();
        let c = &ceilings(&rows, &own)["t"];
        assert_eq!((c.n_train, c.accuracy.n, c.own_cells), (900, 2, true));
        assert!((c.accuracy.mean - 0.1).abs() < 1e-12);
    }

    #[test]
    fn the_position_is_zero_at_the_floor_one_at_the_ceiling_and_negative_below() {
        assert_eq!(position(0.6, 0.6, 0.9), Some(0.0));
        assert!((position(0.9, 0.6, 0.9).unwrap() - 1.0).abs() < 1e-12);
        assert!(position(0.5, 0.6, 0.9).unwrap() < 0.0);
        assert_eq!(position(0.5, 0.6, 0.6), None);
        assert_eq!(
            position(0.8434, 0.843, 0.8434),
            None,
            "a ceiling 0.04 points above the floor places nothing"
        );
        assert!((position(0.85, 0.84, 0.85).unwrap() - 1.0).abs() < 1e-9);
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
