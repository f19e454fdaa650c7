//! The report's numbers as Polars queries over the rows: a group-by for each arm's summary,
//! joins on (target, n_train, seed) for the paired differences. Only the interval of each
//! group (a Student-t quantile, [`crate::stats`]) is computed outside Polars.

use polars::prelude::*;

use harness_spec::{CellStatus, Relation};

use crate::row::{FromColumn, ResultRow, with_arm_names};
use crate::stats::{ArmSummary, MeanCi, PairedDifference};

/// The rows as one frame the way reports compare them: every scratch row named after its
/// architecture's scratch arm ([`with_arm_names`]), a column `scratch_arm` naming the scratch
/// arm each row is compared with, and a column `arm_label` (`SOURCE, option N`).
pub fn arm_frame(rows: &[ResultRow]) -> PolarsResult<DataFrame> {
    let rows = with_arm_names(rows);
    let mut frame = ResultRow::to_frame(&rows)?;
    let scratch: Vec<String> = rows.iter().map(ResultRow::scratch_partner).collect();
    let labels: Vec<String> = rows
        .iter()
        .map(|r| format!("{}, option {}", r.source, r.option))
        .collect();
    frame.with_column(Column::new("scratch_arm".into(), scratch))?;
    frame.with_column(Column::new("arm_label".into(), labels))?;
    Ok(frame)
}

/// The cells the statistics count: finished, with a test accuracy.
pub(crate) fn finished(frame: &DataFrame) -> LazyFrame {
    frame.clone().lazy().filter(
        col("status")
            .eq(lit(CellStatus::Ok.as_str()))
            .and(col("test_accuracy").is_not_nan()),
    )
}

pub(crate) fn strs(frame: &DataFrame, name: &str) -> PolarsResult<Vec<String>> {
    Ok(frame
        .column(name)?
        .str()?
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect())
}

pub(crate) fn ints(frame: &DataFrame, name: &str) -> PolarsResult<Vec<i64>> {
    let column = frame.column(name)?.cast(&DataType::Int64)?;
    Ok(column
        .i64()?
        .iter()
        .map(|v| v.unwrap_or_default())
        .collect())
}

/// A float column; a null (the spread of a single value) reads as NaN.
pub(crate) fn floats(frame: &DataFrame, name: &str) -> PolarsResult<Vec<f64>> {
    Ok(frame
        .column(name)?
        .f64()?
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect())
}

/// The `relation` column, each value one of [`Relation`]'s.
fn relations(frame: &DataFrame) -> PolarsResult<Vec<Relation>> {
    Relation::read(frame.column("relation")?)
}

/// Mean, sample standard deviation and count of `value`, named `{prefix}_mean`,
/// `{prefix}_sd` and `{prefix}_n`.
fn moments(value: &str, prefix: &str) -> [Expr; 3] {
    [
        col(value).mean().alias(format!("{prefix}_mean")),
        col(value).std(1).alias(format!("{prefix}_sd")),
        col(value).count().alias(format!("{prefix}_n")),
    ]
}

/// The [`MeanCi`]s of the columns [`moments`] made.
fn intervals(frame: &DataFrame, prefix: &str) -> PolarsResult<Vec<MeanCi>> {
    let n = ints(frame, &format!("{prefix}_n"))?;
    let mean = floats(frame, &format!("{prefix}_mean"))?;
    let sd = floats(frame, &format!("{prefix}_sd"))?;
    Ok((0..frame.height())
        .map(|i| MeanCi::from_moments(n[i] as usize, mean[i], sd[i]))
        .collect())
}

pub(crate) fn sort_by(lf: LazyFrame, keys: &[&str]) -> LazyFrame {
    lf.sort(keys.iter().copied(), SortMultipleOptions::default())
}

/// Each arm (target, option, source) at each n_train over seeds, ordered by target, option,
/// source, n_train.
pub fn arm_summaries(frame: &DataFrame) -> PolarsResult<Vec<ArmSummary>> {
    let keys = ["target", "option", "source", "n_train"];
    let mut aggs = vec![
        col("relation").first(),
        col("train_seconds").sum().alias("seconds"),
    ];
    aggs.extend(moments("test_accuracy", "accuracy"));
    aggs.extend(moments("test_macro_f1", "macro_f1"));
    let summary = sort_by(finished(frame).group_by(keys.map(col)).agg(aggs), &keys).collect()?;
    let (target, source, relation) = (
        strs(&summary, "target")?,
        strs(&summary, "source")?,
        relations(&summary)?,
    );
    let (option, n_train) = (ints(&summary, "option")?, ints(&summary, "n_train")?);
    let accuracy = intervals(&summary, "accuracy")?;
    let macro_f1 = intervals(&summary, "macro_f1")?;
    let seconds = floats(&summary, "seconds")?;
    Ok((0..summary.height())
        .map(|i| ArmSummary {
            target: target[i].clone(),
            source: source[i].clone(),
            relation: relation[i],
            option: option[i],
            n_train: n_train[i],
            accuracy: accuracy[i],
            macro_f1: macro_f1[i],
            seconds: seconds[i],
        })
        .collect())
}

/// A − B per seed for the arms `a` and `b` (lazy frames with the columns of `on`, a label
/// `a_label`/`b_label` and the accuracy `a`/`b`), joined on `on`; then, per `group` (which
/// must include `target` and `n_train`), the mean difference and its interval over seeds,
/// with the first value of each column of `carry`, ordered by `group`.
pub(crate) fn paired_frame(
    a: LazyFrame,
    b: LazyFrame,
    on: &[&str],
    group: &[&str],
    carry: &[&str],
) -> PolarsResult<DataFrame> {
    let on: Vec<Expr> = on.iter().map(|c| col(*c)).collect();
    let mut aggs: Vec<Expr> = ["a_label", "b_label"]
        .iter()
        .chain(carry)
        .map(|c| col(*c).first())
        .collect();
    aggs.extend(moments("difference", "difference"));
    let joined = a
        .join(b, on.clone(), on, JoinArgs::new(JoinType::Inner))
        .with_column((col("a") - col("b")).alias("difference"));
    let grouped = joined
        .group_by(group.iter().map(|c| col(*c)).collect::<Vec<_>>())
        .agg(aggs);
    sort_by(grouped, group).collect()
}

/// The rows of a [`paired_frame`] as [`PairedDifference`]s.
pub(crate) fn differences(table: &DataFrame) -> PolarsResult<Vec<PairedDifference>> {
    let (target, n_train) = (strs(table, "target")?, ints(table, "n_train")?);
    let (a_label, b_label) = (strs(table, "a_label")?, strs(table, "b_label")?);
    let difference = intervals(table, "difference")?;
    Ok((0..table.height())
        .map(|i| PairedDifference {
            target: target[i].clone(),
            n_train: n_train[i],
            a: a_label[i].clone(),
            b: b_label[i].clone(),
            difference: difference[i],
        })
        .collect())
}

/// One side of a paired comparison: the key columns, the arm's label as `{side}_label` and its
/// accuracy as `{side}`.
pub(crate) fn side(lf: LazyFrame, keys: &[Expr], side: &str) -> LazyFrame {
    let mut columns = keys.to_vec();
    columns.push(col("arm_label").alias(format!("{side}_label")));
    columns.push(col("test_accuracy").alias(side));
    lf.select(columns)
}

/// A pre-trained arm against the scratch arm of its own architecture, at one option.
#[derive(Debug, Clone)]
pub struct ScratchComparison {
    pub source: String,
    pub relation: Relation,
    pub option: i64,
    pub difference: PairedDifference,
}

/// Every pre-trained arm against the scratch arm of its own architecture at the same option,
/// n_train and seed (so on the same subset), ordered by source, scratch arm, option, target,
/// n_train.
pub fn against_scratch(frame: &DataFrame) -> PolarsResult<Vec<ScratchComparison>> {
    let on = ["scratch_arm", "option", "target", "n_train", "seed"];
    let pretrained = side(
        finished(frame).filter(
            col("relation")
                .eq(lit(Relation::Matched.as_str()))
                .or(col("relation").eq(lit(Relation::Mismatched.as_str()))),
        ),
        &[on.map(col).as_slice(), &[col("source"), col("relation")]].concat(),
        "a",
    );
    let scratch = side(
        finished(frame).filter(col("relation").eq(lit(Relation::None.as_str()))),
        &on.map(col),
        "b",
    );
    let group = ["source", "scratch_arm", "option", "target", "n_train"];
    let table = paired_frame(pretrained, scratch, &on, &group, &["relation"])?;
    let (source, relation) = (strs(&table, "source")?, relations(&table)?);
    let option = ints(&table, "option")?;
    Ok(differences(&table)?
        .into_iter()
        .enumerate()
        .map(|(i, difference)| ScratchComparison {
            source: source[i].clone(),
            relation: relation[i],
            option: option[i],
            difference,
        })
        .collect())
}

/// Option 1 against Option 2 of each source at the same n_train and seed, ordered by source,
/// target, n_train.
pub fn options_compared(frame: &DataFrame) -> PolarsResult<Vec<(String, PairedDifference)>> {
    let on = ["source", "target", "n_train", "seed"];
    let option = |o: i64, name: &str| {
        side(
            finished(frame).filter(col("option").eq(lit(o))),
            &on.map(col),
            name,
        )
    };
    let group = ["source", "target", "n_train"];
    let table = paired_frame(option(1, "a"), option(2, "b"), &on, &group, &[])?;
    let source = strs(&table, "source")?;
    Ok(source.into_iter().zip(differences(&table)?).collect())
}

/// The gain table: one line per (target, pre-trained arm, option), one column per n_train
/// (named by its value, in increasing order), each holding that comparison's `cell` (a pivot
/// of `comparisons`; a size an arm lacks is null).
pub fn gain_pivot(
    comparisons: &[ScratchComparison],
    cell: impl Fn(&MeanCi) -> String,
) -> PolarsResult<(DataFrame, Vec<i64>)> {
    let long = df! {
        "target" => comparisons.iter().map(|c| c.difference.target.clone()).collect::<Vec<_>>(),
        "source" => comparisons.iter().map(|c| c.source.clone()).collect::<Vec<_>>(),
        "option" => comparisons.iter().map(|c| c.option).collect::<Vec<_>>(),
        "n_train" => comparisons.iter().map(|c| c.difference.n_train).collect::<Vec<_>>(),
        "gain" => comparisons.iter().map(|c| cell(&c.difference.difference)).collect::<Vec<_>>(),
    }?;
    let mut sizes: Vec<i64> = ints(&long, "n_train")?;
    sizes.sort_unstable();
    sizes.dedup();
    let on_columns = df! { "n_train" => sizes.clone() }?;
    let keys = ["target", "source", "option"];
    let wide = sort_by(long.lazy(), &[&keys[..], &["n_train"]].concat())
        .pivot(
            cols(["n_train"]),
            Arc::new(on_columns),
            cols(keys),
            cols(["gain"]),
            element().first(),
            true,
            "_".into(),
            polars::frame::PivotColumnNaming::Auto,
        )
        .collect()?;
    Ok((wide, sizes))
}

/// The text of column `name` at each row of a pivot; null (a size the arm lacks) as `None`.
pub fn optional_strs(frame: &DataFrame, name: &str) -> PolarsResult<Vec<Option<String>>> {
    Ok(frame
        .column(name)?
        .str()?
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

/// For each (n_train, validation fraction asked), the smallest and largest fraction the rows
/// actually held out for validation, ordered by n_train: `(n_train, asked, low, high)`.
pub fn validation_spread(frame: &DataFrame) -> PolarsResult<Vec<(i64, f64, f64, f64)>> {
    let applied = col("validation_fraction_applied");
    let spread = sort_by(
        frame
            .clone()
            .lazy()
            .filter(applied.clone().is_not_null())
            .group_by([col("n_train"), col("validation_fraction")])
            .agg([
                applied.clone().min().alias("low"),
                applied.max().alias("high"),
            ]),
        &["n_train", "validation_fraction"],
    )
    .collect()?;
    let n = ints(&spread, "n_train")?;
    let asked = floats(&spread, "validation_fraction")?;
    let (low, high) = (floats(&spread, "low")?, floats(&spread, "high")?);
    Ok((0..spread.height())
        .map(|i| (n[i], asked[i], low[i], high[i]))
        .collect())
}
