//! The report of one experiment: `report.md`, one SVG figure per target, the results as
//! Parquet, and everything needed to reproduce them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use harness_spec::{Arm, CellStatus, Expect, Experiment, Hypothesis};
use serde::{Deserialize, Serialize};

use crate::analysis::{
    ScratchComparison, against_scratch, arm_frame, arm_summaries, gain_pivot, ints, optional_strs,
    options_compared, strs, validation_spread,
};
use crate::bounds::{FloorComparison, against_floor, render_bounds};
use crate::plot::{GainCell, accuracy_figure, gain_figure};
use crate::row::{ResultRow, with_arm_names};
use crate::selection::{GridEdge, HeldOut, RateViews};
use crate::stats::{ArmSummary, MeanCi, PairedDifference};
use crate::store::{read_parquet, write_parquet};
use crate::table::{Align, Table};
use crate::verdict::{ALPHA, HypothesisTest, Verdict, test_hypotheses};
use polars::prelude::{DataFrame, PolarsResult};

/// The file of a report folder that holds its [`ReportContext`], so that the report can be
/// written again from its rows alone (see [`rewrite_report`]).
pub const CONTEXT_FILE: &str = "context.json";

/// Everything a report states besides the rows themselves.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReportContext {
    pub experiment: String,
    pub description: String,
    /// The experiment file as given, and its text.
    pub experiment_file: String,
    pub experiment_text: String,
    /// The command that produces these results.
    pub command: String,
    /// Wall time of the runs that produced the rows (their pre-trainings included), when known.
    pub wall_seconds: Option<f64>,
    /// How many `harness run`s that wall time adds up, and how many pre-trainings they ran
    /// (the rest came from the checkpoint cache); absent in contexts written before them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrainings_run: Option<usize>,
    /// (name, version) of the harness and its main dependencies.
    pub versions: Vec<(String, String)>,
    pub generated_at: String,
    /// The hypotheses declared in the experiment file, tested in the report.
    #[serde(default)]
    pub hypotheses: Vec<Hypothesis>,
    /// The files the experiment file includes, (path, text), in the order read.
    #[serde(default)]
    pub included: Vec<(String, String)>,
    /// Each target's ceiling size under `[matrix.ceiling]` where it is larger than the
    /// target's sizes: its rows are the ceiling's, kept apart from every other table.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ceilings: BTreeMap<String, i64>,
}

impl ReportContext {
    /// The context stored in `report_dir`'s [`CONTEXT_FILE`]. A context written before it
    /// stored the hypotheses has them parsed again from the experiment text it quotes.
    pub fn read(report_dir: &Path) -> Result<ReportContext> {
        let path = report_dir.join(CONTEXT_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let stored_hypotheses = json.get("hypotheses").is_some();
        let mut ctx: ReportContext =
            serde_json::from_value(json).with_context(|| format!("parsing {}", path.display()))?;
        if !stored_hypotheses {
            let experiment =
                Experiment::parse(Path::new(&ctx.experiment_file), &ctx.experiment_text)
                    .with_context(|| format!("the experiment text quoted in {}", path.display()))?;
            ctx.hypotheses = experiment.hypotheses;
        }
        Ok(ctx)
    }
}

/// Writes the report of `report_dir` again into `out_dir` (which may be the same folder) from
/// the rows of its `results.parquet` and its [`CONTEXT_FILE`]: what a change to the report's
/// text or figures is checked against, without running anything.
pub fn rewrite_report(report_dir: &Path, out_dir: &Path) -> Result<Vec<PathBuf>> {
    let ctx = ReportContext::read(report_dir)?;
    let rows = read_parquet(&report_dir.join("results.parquet"))?;
    write_report(&rows, &ctx, out_dir)
}

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1}", v * 100.0)
    } else {
        "–".into()
    }
}

fn ci(m: &MeanCi) -> String {
    if m.low.is_finite() {
        format!("[{}, {}]", pct(m.low), pct(m.high))
    } else {
        "–".into()
    }
}

fn signed_pts(v: f64) -> String {
    if v.is_finite() {
        format!("{:+.1}", v * 100.0)
    } else {
        "–".into()
    }
}

fn verdict(d: &MeanCi) -> &'static str {
    if !d.low.is_finite() {
        "too few seeds"
    } else if d.low > 0.0 {
        "higher (CI above 0)"
    } else if d.high < 0.0 {
        "lower (CI below 0)"
    } else {
        "no clear difference (CI spans 0)"
    }
}

fn fmt_duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    format!(
        "{}h {:02}m {:02}s ({seconds:.0} s)",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// Writes `out_dir/report.md`, `out_dir/accuracy-TARGET.svg` and `out_dir/results.parquet`.
pub fn write_report(
    rows: &[ResultRow],
    ctx: &ReportContext,
    out_dir: &Path,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut written = Vec::new();
    let parquet = out_dir.join("results.parquet");
    write_parquet(rows, &parquet)?;
    written.push(parquet);
    let context = out_dir.join(CONTEXT_FILE);
    std::fs::write(&context, serde_json::to_string_pretty(ctx)? + "\n")
        .with_context(|| format!("writing {}", context.display()))?;
    written.push(context);

    // The ceiling's cells (`[matrix.ceiling]`) are the ceiling and nothing else.
    let (ceiling_rows, rows): (Vec<ResultRow>, Vec<ResultRow>) =
        (rows.iter().cloned()).partition(|r| ctx.ceilings.get(&r.target) == Some(&r.n_train));
    let ceiling_rows = with_arm_names(&ceiling_rows);
    let rows = &rows[..];

    // Under `[finetune.search] pilot_seeds` the report reads each arm at its chosen rate; the
    // fixed rates' verdicts are set beside them in their own section.
    let views = RateViews::of(rows);
    let all_rows = rows;
    let rows = views.as_ref().map_or(rows, |v| &v.chosen[..]);
    let frame = arm_frame(rows)?;
    let rows = &with_arm_names(rows);
    let comparisons = against_scratch(&frame)?;
    let analysed = Analysed {
        arms: arm_summaries(&frame)?,
        gain_table: gain_table(&comparisons)?,
        validation_notes: validation_notes(&frame)?,
        against_scratch: comparisons,
        options: options_compared(&frame)?,
        tests: test_hypotheses(rows, &ctx.hypotheses)?,
        against_floor: against_floor(&frame)?,
        ceiling_rows,
    };
    let targets: BTreeSet<String> = rows.iter().map(|r| r.target.clone()).collect();
    let mut figures = Vec::new();
    for target in &targets {
        let name = format!("accuracy-{target}.svg");
        let path = out_dir.join(&name);
        std::fs::write(&path, accuracy_figure(target, &analysed.arms))?;
        written.push(path);
        figures.push((target.clone(), name));
    }

    let gains = gains_over_scratch(&analysed.against_scratch);
    let gain_file = (!gains.is_empty()).then(|| "gain-over-scratch.svg".to_string());
    if let Some(name) = &gain_file {
        let path = out_dir.join(name);
        std::fs::write(&path, gain_figure(&gains))?;
        written.push(path);
    }

    let mut md = render_markdown(rows, &analysed, ctx, &figures, gain_file.as_deref());
    if let Some(views) = &views {
        let side_by_side = rate_sections(all_rows, views, &analysed, &ctx.hypotheses)?;
        // After the verdicts of the chosen rates, before the floor and the gains.
        let at = ["## Between floor and ceiling", "## Does pre-training help?"]
            .iter()
            .find_map(|h| md.find(h))
            .unwrap_or(md.len());
        md.insert_str(at, &side_by_side);
    }
    let path = out_dir.join("report.md");
    std::fs::write(&path, md)?;
    written.push(path);
    Ok(written)
}

/// The numbers of a report, computed once from its rows.
struct Analysed {
    arms: Vec<ArmSummary>,
    gain_table: Table,
    validation_notes: Vec<String>,
    against_scratch: Vec<ScratchComparison>,
    options: Vec<(String, PairedDifference)>,
    tests: Vec<HypothesisTest>,
    against_floor: Vec<FloorComparison>,
    /// The rows of `[matrix.ceiling]`'s cells, arms named as in every table.
    ceiling_rows: Vec<ResultRow>,
}

/// The gains over scratch as a table: a line per target, pre-trained arm and option, a column
/// per n_train (a Polars pivot); bold where the 95% interval excludes 0.
fn gain_table(comparisons: &[ScratchComparison]) -> Result<Table> {
    let (wide, sizes) = gain_pivot(comparisons, |m| {
        let gain = signed_pts(m.mean);
        if m.low > 0.0 || m.high < 0.0 {
            format!("**{gain}**")
        } else {
            gain
        }
    })?;
    let mut columns = vec![
        ("target".to_string(), Align::Left),
        ("pre-trained arm".to_string(), Align::Left),
        ("option".to_string(), Align::Right),
    ];
    columns.extend(sizes.iter().map(|n| (format!("n = {n}"), Align::Right)));
    let mut table = Table::new(&columns);
    let (target, source) = (strs(&wide, "target")?, strs(&wide, "source")?);
    let option = ints(&wide, "option")?;
    let cells = sizes
        .iter()
        .map(|n| optional_strs(&wide, &n.to_string()))
        .collect::<PolarsResult<Vec<_>>>()?;
    for i in 0..wide.height() {
        let mut row = vec![target[i].clone(), source[i].clone(), option[i].to_string()];
        row.extend(
            cells
                .iter()
                .map(|c| c[i].clone().unwrap_or_else(|| "–".into())),
        );
        table.row(row);
    }
    Ok(table)
}

/// Every pre-trained arm against scratch at the same option and n_train: mean paired
/// difference over seeds, for the heat map.
fn gains_over_scratch(comparisons: &[ScratchComparison]) -> Vec<GainCell> {
    comparisons
        .iter()
        .map(|c| {
            let d = &c.difference;
            GainCell {
                target: d.target.clone(),
                source: c.source.clone(),
                relation: c.relation,
                option: c.option,
                n_train: d.n_train,
                gain: d.difference.mean,
                significant: d.difference.low > 0.0 || d.difference.high < 0.0,
            }
        })
        .collect()
}

fn p_value(p: f64) -> String {
    if !p.is_finite() {
        "–".into()
    } else if p < 0.001 {
        "< 0.001".into()
    } else {
        format!("{p:.3}")
    }
}

/// What a hypothesis expects, in words: "A − B > 0", "|A − B| < 2.0 pts".
fn expectation(h: &Hypothesis) -> String {
    let (a, b) = (h.a.describe(), h.b.describe());
    let m = h.margin * 100.0;
    match h.expect {
        Expect::Greater if h.margin == 0.0 => format!("{a} > {b}"),
        Expect::Greater => format!("{a} − {b} > {m:.1} pts"),
        Expect::NotWorse => format!("{a} − {b} > −{m:.1} pts"),
        Expect::Equivalent => format!("\\|{a} − {b}\\| < {m:.1} pts"),
    }
}

fn where_it_applies(h: &Hypothesis) -> String {
    let mut parts = vec![h.n_train.describe()];
    if !h.options.is_empty() {
        parts.push(format!(
            "option {}",
            h.options
                .iter()
                .map(|o| o.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if matches!(h.a, Arm::Option(_)) {
        parts.push(if h.sources.is_empty() {
            "every source".into()
        } else {
            format!(
                "sources: {}",
                h.sources
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
    }
    if !h.targets.is_empty() {
        parts.push(format!("targets: {}", h.targets.join(", ")));
    }
    parts.join("; ")
}

fn render_verdicts(md: &mut String, tests: &[HypothesisTest]) {
    let _ = writeln!(md, "## Verdicts\n");
    let _ = writeln!(
        md,
        "Each hypothesis was declared in the experiment file before the run. It is tested on each target it applies to: per seed, the difference A − B in test accuracy, averaged over the comparisons it spans there (every pairing of its sources and options at its n_train); then over seeds the mean, a 95% percentile-bootstrap interval (every one of the nⁿ resamples for n ≤ {} seeds, otherwise {} resamples with the fixed seed {}), and a one-sided t-test of the claim (for an equivalence, two one-sided tests, TOST) and of its opposite. Holm's correction runs across all {} tests of each kind; a verdict is **supported** when the claim's corrected p-value is below {ALPHA}, **contradicted** when the opposite's is (A below B; for an equivalence, the difference beyond the margin), and **inconclusive** otherwise.\n",
        crate::stats::EXACT_BOOTSTRAP_MAX,
        crate::stats::BOOTSTRAP_RESAMPLES,
        crate::stats::BOOTSTRAP_SEED,
        tests.len()
    );
    verdict_table(tests).write(md);
    let counts: BTreeSet<usize> = tests.iter().map(|t| t.per_seed.len()).collect();
    if let (Some(fewest), Some(most)) = (counts.first(), counts.last())
        && fewest != most
    {
        let _ = writeln!(
            md,
            "The tests have from {fewest} to {most} seeds. Where the experiment file has `[matrix.more_seeds]`, the harness added seeds, after every cell had its row, at the sizes of each test whose interval was wider than its goal (its margin, else the table's `half_width`): a rule that reads the interval's width, never where it lies.\n"
        );
    }
    verdict_summaries(md, tests);
    md.push('\n');
    let _ = writeln!(
        md,
        "<details><summary>The comparisons behind each test</summary>\n"
    );
    for t in tests {
        let seeds: Vec<String> = t
            .per_seed
            .iter()
            .map(|(s, d)| format!("seed {s}: {}", signed_pts(*d)))
            .collect();
        let _ = writeln!(
            md,
            "- {} / {}: {} ({} per seed); {}",
            t.hypothesis.name,
            t.target,
            t.comparisons.join("; "),
            t.comparisons.len(),
            seeds.join(", ")
        );
    }
    let _ = writeln!(md, "\n</details>\n");
}

fn verdict_table(tests: &[HypothesisTest]) -> Table {
    use Align::{Left, Right};
    let mut table = Table::new(&[
        ("hypothesis", Left),
        ("expects", Left),
        ("where", Left),
        ("target", Left),
        ("seeds", Right),
        ("A − B (pts)", Right),
        ("95% bootstrap CI (pts)", Left),
        ("p claim (Holm)", Right),
        ("p opposite (Holm)", Right),
        ("verdict", Left),
    ]);
    for t in tests {
        let h = &t.hypothesis;
        table.row(vec![
            h.name.clone(),
            expectation(h),
            where_it_applies(h),
            t.target.clone(),
            t.per_seed.len().to_string(),
            signed_pts(t.mean),
            format!("[{}, {}]", signed_pts(t.ci.0), signed_pts(t.ci.1)),
            p_value(t.p_claim_holm),
            p_value(t.p_opposite_holm),
            format!("**{}**", t.verdict.as_str()),
        ]);
    }
    table
}

/// One line per hypothesis: its claim, and the targets of each verdict it got.
fn verdict_summaries(md: &mut String, tests: &[HypothesisTest]) {
    let mut names: Vec<&str> = Vec::new();
    for t in tests {
        if !names.contains(&t.hypothesis.name.as_str()) {
            names.push(&t.hypothesis.name);
        }
    }
    for name in names {
        let mine: Vec<&HypothesisTest> =
            tests.iter().filter(|t| t.hypothesis.name == name).collect();
        let h = &mine[0].hypothesis;
        let by: Vec<String> = [
            Verdict::Supported,
            Verdict::Contradicted,
            Verdict::Inconclusive,
            Verdict::NoData,
        ]
        .iter()
        .filter_map(|v| {
            let on: Vec<&str> = mine
                .iter()
                .filter(|t| t.verdict == *v)
                .map(|t| t.target.as_str())
                .collect();
            (!on.is_empty()).then(|| format!("{} on {}", v.as_str(), on.join(", ")))
        })
        .collect();
        let claim = if h.claim.is_empty() {
            expectation(h)
        } else {
            h.claim.clone()
        };
        let _ = writeln!(md, "- **{}**: {}. *{}.*", h.name, claim, by.join("; "));
    }
}

/// One sentence per n_train whose validation split is not the fraction the experiment asks
/// for (by more than 5 points), with the fraction the rows actually held out.
fn validation_notes(frame: &DataFrame) -> PolarsResult<Vec<String>> {
    Ok(validation_spread(frame)?
        .into_iter()
        .filter(|&(_, asked, lo, hi)| (lo - asked).abs() > 0.05 || (hi - asked).abs() > 0.05)
        .map(|(n, asked, lo, hi)| {
            let held = if (hi - lo).abs() < 0.005 {
                format!("{:.0}%", lo * 100.0)
            } else {
                format!("{:.0}–{:.0}%", lo * 100.0, hi * 100.0)
            };
            format!(
                "at n_train = {n} the validation split held {held} of each subset, not the {:.0}% asked: every class keeps one example to fit and, when it has two or more, at least one to validate",
                asked * 100.0
            )
        })
        .collect())
}

/// The build a row was made by: its commit, and whether the sources had changes.
fn build_of(r: &ResultRow) -> String {
    match (&r.git_commit, r.git_dirty) {
        (Some(c), Some(true)) => format!("{} with uncommitted changes", &c[..c.len().min(12)]),
        (Some(c), _) => c[..c.len().min(12)].to_string(),
        (None, _) => format!("an unknown build of harness {}", r.harness_version),
    }
}

/// The kind of machine a row was made on: what decides its float rounding.
fn machine_of(r: &ResultRow) -> String {
    match (&r.cpu, &r.simd) {
        (Some(cpu), Some(simd)) => format!("{cpu}, {simd}, {} backend", r.backend),
        _ => format!("an unrecorded CPU, {} backend", r.backend),
    }
}

/// One sentence for each arm whose rows came from more than one build or kind of machine:
/// their differences may then come from float rounding or code, not only from the arm.
pub fn mixed_provenance(rows: &[ResultRow]) -> Vec<String> {
    let mut by_arm: BTreeMap<(String, String, i64), (BTreeSet<String>, BTreeSet<String>)> =
        BTreeMap::new();
    for r in rows {
        let e = by_arm
            .entry((r.target.clone(), r.source.clone(), r.option))
            .or_default();
        e.0.insert(build_of(r));
        e.1.insert(machine_of(r));
    }
    let mut out = Vec::new();
    for ((target, source, option), (builds, machines)) in by_arm {
        let list = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join("; ");
        if builds.len() > 1 {
            out.push(format!(
                "the rows of {target} ← {source}, option {option} come from {} builds ({}): rows are the same bit for bit only from one build on one kind of machine",
                builds.len(),
                list(&builds)
            ));
        }
        if machines.len() > 1 {
            out.push(format!(
                "the rows of {target} ← {source}, option {option} come from {} kinds of machine ({}): float rounding differs between them",
                machines.len(),
                list(&machines)
            ));
        }
    }
    out
}

/// The section of a report whose arms choose their learning rate on pilot seeds: what each
/// chose and why, and the verdicts and gains over scratch of the fixed rates beside those of
/// the chosen ones.
fn rate_sections(
    all_rows: &[ResultRow],
    views: &RateViews,
    chosen: &Analysed,
    hypotheses: &[Hypothesis],
) -> Result<String> {
    let mut md = String::new();
    let pilot_seeds: BTreeSet<Vec<u64>> = (views.choices.values())
        .map(|c| c.pilot_seeds.clone())
        .collect();
    let seeds_text: Vec<String> = (pilot_seeds.iter())
        .map(|s| {
            let s: Vec<String> = s.iter().map(|x| x.to_string()).collect();
            s.join(", ")
        })
        .collect();
    let _ = writeln!(
        md,
        "## Fixed learning rate against one chosen on validation
"
    );
    let _ = writeln!(
        md,
        "Every arm that trains with Adam was run at the learning rate the experiment fixes and, on the pilot seeds ({}), at each rate of `[finetune.search]`. For each target, arm, option and n_train, the rate with the highest validation accuracy averaged over the pilot seeds is chosen (rates at which a pilot diverged are passed over; ties keep the fixed rate, then the smaller); the other seeds train at it, early-stopped on their own validation split, without a refit on fitting + validation. The test set plays no part in a choice. The sections above read each arm at its chosen rate; the floor and Option 1's probe choose `C` in every cell and are the same in both columns below. {} rows in all, {} of them read above.\n",
        seeds_text.join("; "),
        all_rows.len(),
        views.chosen.len()
    );
    let _ = writeln!(
        md,
        "What selection cost and gave up: the choice is made once per arm and size on a few seeds' validation splits (at n_train = 50 about ten examples each), not in every cell as VTAB-1k does, so it is noisier; and no arm is refitted on fitting + validation. It costs the pilots' extra rates and one run per other seed where the choice moved.\n"
    );

    choice_table(&mut md, views);
    verdicts_side_by_side(&mut md, views, chosen, hypotheses)?;
    gains_side_by_side(&mut md, views, chosen)?;
    Ok(md)
}

/// What each arm and size chose, with every rate's mean validation accuracy.
fn choice_table(md: &mut String, views: &RateViews) {
    use Align::{Left, Right};
    let mut table = Table::new(&[
        ("target", Left),
        ("arm", Left),
        ("option", Right),
        ("n_train", Right),
        ("fixed rate", Right),
        ("chosen", Right),
        ("mean validation accuracy % per rate", Left),
        ("other seeds' validation %, fixed → chosen", Left),
    ]);
    for (arm, choice) in &views.choices {
        let scores: Vec<String> = (choice.scores.iter())
            .map(|s| {
                let text = format!(
                    "{:e}: {}{}",
                    s.rate,
                    pct(s.validation),
                    if s.diverged > 0 { " (diverged)" } else { "" }
                );
                if s.rate == choice.rate {
                    format!("**{text}**")
                } else {
                    text
                }
            })
            .collect();
        table.row(vec![
            arm.target.clone(),
            arm.arm.clone(),
            arm.option.to_string(),
            arm.n_train.to_string(),
            format!("{:e}", choice.fixed),
            format!("{:e}", choice.rate),
            scores.join(" · "),
            match views.held_out(arm) {
                Some(h) => format!("{} → {} ({} seeds)", pct(h.fixed), pct(h.chosen), h.seeds),
                None => "–".into(),
            },
        ]);
    }
    choice_summary(md, views);
    table.write(md);
    md.push('\n');
}

/// How many choices moved, how many fell on an end of the grid, and how the moved ones did
/// on the validation of the seeds that did not choose.
fn choice_summary(md: &mut String, views: &RateViews) {
    let moved = (views.choices.values())
        .filter(|c| c.rate != c.fixed)
        .count();
    let edge = |e| {
        (views.choices.values())
            .filter(|c| c.at_edge() == Some(e))
            .count()
    };
    let (largest, smallest) = (edge(GridEdge::Largest), edge(GridEdge::Smallest));
    let _ = write!(
        md,
        "The choice moved away from the fixed rate for {moved} of {} arm sizes.",
        views.choices.len()
    );
    let edges: Vec<String> = [(largest, "largest"), (smallest, "smallest")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, end)| format!("the {end} rate tried for {n}"))
        .collect();
    if !edges.is_empty() {
        let _ = write!(
            md,
            " It fell on {}: for those the best rate may lie outside the grid, and the arm may still be under-tuned.",
            edges.join(" and on ")
        );
    }
    let held: Vec<HeldOut> = (views.choices.keys())
        .filter_map(|arm| views.held_out(arm))
        .collect();
    if !held.is_empty() {
        let better = held.iter().filter(|h| h.chosen > h.fixed).count();
        let worse = held.iter().filter(|h| h.chosen < h.fixed).count();
        let mean = held.iter().map(|h| h.chosen - h.fixed).sum::<f64>() / held.len() as f64;
        let _ = write!(
            md,
            " On the seeds that did not choose (each trains at both rates, on one validation split), the chosen rate's validation accuracy was above the fixed rate's for {better} of the {} arm sizes whose choice moved and below for {worse}, by {} points on average: a check of the choice out of its sample, on validation only.",
            held.len(),
            signed_pts(mean)
        );
    }
    md.push_str("\n\n");
}

/// The hypotheses' verdicts at the fixed rates beside those at the chosen ones.
fn verdicts_side_by_side(
    md: &mut String,
    views: &RateViews,
    chosen: &Analysed,
    hypotheses: &[Hypothesis],
) -> Result<()> {
    use Align::{Left, Right};
    let fixed_tests = test_hypotheses(&views.fixed, hypotheses)?;
    if !fixed_tests.is_empty() || !chosen.tests.is_empty() {
        let _ = writeln!(
            md,
            "Verdicts at the fixed rates and at the chosen ones (Holm's correction within each column):\n"
        );
        let mut table = Table::new(&[
            ("hypothesis", Left),
            ("target", Left),
            ("fixed: A − B (pts) [95% CI]", Right),
            ("fixed: verdict", Left),
            ("chosen: A − B (pts) [95% CI]", Right),
            ("chosen: verdict", Left),
        ]);
        let keyed = |tests: &[HypothesisTest]| -> BTreeMap<(String, String), HypothesisTest> {
            (tests.iter())
                .map(|t| ((t.hypothesis.name.clone(), t.target.clone()), t.clone()))
                .collect()
        };
        let (fixed, chosen) = (keyed(&fixed_tests), keyed(&chosen.tests));
        let keys: BTreeSet<&(String, String)> = fixed.keys().chain(chosen.keys()).collect();
        let show = |t: Option<&HypothesisTest>| match t {
            Some(t) => (
                format!(
                    "{} [{}, {}]",
                    signed_pts(t.mean),
                    signed_pts(t.ci.0),
                    signed_pts(t.ci.1)
                ),
                t.verdict.as_str().to_string(),
            ),
            None => ("–".into(), "no data".into()),
        };
        for key in keys {
            let (f, fv) = show(fixed.get(key));
            let (c, cv) = show(chosen.get(key));
            table.row(vec![key.0.clone(), key.1.clone(), f, fv, c, cv]);
        }
        table.write(md);
        md.push('\n');
    }

    Ok(())
}

/// Each pre-trained arm's gain over its scratch partner at the fixed rates beside the gain at
/// the chosen ones.
fn gains_side_by_side(md: &mut String, views: &RateViews, chosen: &Analysed) -> Result<()> {
    use Align::{Left, Right};
    let fixed_gains = against_scratch(&arm_frame(&views.fixed)?)?;
    let key = |c: &ScratchComparison| {
        (
            c.difference.target.clone(),
            c.source.clone(),
            c.option,
            c.difference.n_train,
        )
    };
    let fixed_by: BTreeMap<_, &ScratchComparison> =
        fixed_gains.iter().map(|c| (key(c), c)).collect();
    let chosen_by: BTreeMap<_, &ScratchComparison> = (chosen.against_scratch.iter())
        .map(|c| (key(c), c))
        .collect();
    let keys: BTreeSet<_> = fixed_by.keys().chain(chosen_by.keys()).cloned().collect();
    if !keys.is_empty() {
        let _ = writeln!(
            md,
            "Each pre-trained arm against its scratch partner, paired by seed (points, mean and 95% interval), at the fixed rates and at the chosen ones:\n"
        );
        let mut table = Table::new(&[
            ("target", Left),
            ("pre-trained arm", Left),
            ("option", Right),
            ("n_train", Right),
            ("fixed rate", Right),
            ("chosen rate", Right),
        ]);
        let show = |c: Option<&&ScratchComparison>| {
            c.map_or("–".to_string(), |c| {
                let d = &c.difference.difference;
                format!("{} {}", signed_pts(d.mean), ci_pts(d))
            })
        };
        for k in keys {
            table.row(vec![
                k.0.clone(),
                k.1.clone(),
                k.2.to_string(),
                k.3.to_string(),
                show(fixed_by.get(&k)),
                show(chosen_by.get(&k)),
            ]);
        }
        table.write(md);
        md.push('\n');
    }
    Ok(())
}

/// An interval in signed points, `[−1.2, +3.4]`.
fn ci_pts(m: &MeanCi) -> String {
    if m.low.is_finite() {
        format!("[{}, {}]", signed_pts(m.low), signed_pts(m.high))
    } else {
        "–".into()
    }
}

fn render_markdown(
    rows: &[ResultRow],
    analysed: &Analysed,
    ctx: &ReportContext,
    figures: &[(String, String)],
    gain_file: Option<&str>,
) -> String {
    let mut md = String::new();
    render_header(&mut md, rows, &analysed.validation_notes, ctx);
    if !analysed.tests.is_empty() {
        render_verdicts(&mut md, &analysed.tests);
    }
    render_bounds(
        &mut md,
        rows,
        &analysed.ceiling_rows,
        &analysed.arms,
        &analysed.against_floor,
    );
    render_against_scratch(&mut md, analysed, gain_file);
    render_unpaired(&mut md, rows);
    render_arms(&mut md, &analysed.arms, figures);
    render_options(&mut md, &analysed.options);
    render_pretraining(&mut md, rows);
    render_failed(&mut md, rows);
    render_reproduce(&mut md, rows, ctx);
    md
}

/// Title, description, what the rows are, the time they took, and notes on them.
fn render_header(md: &mut String, rows: &[ResultRow], notes: &[String], ctx: &ReportContext) {
    let ok = rows.iter().filter(|r| r.status == CellStatus::Ok).count();
    let seeds: BTreeSet<i64> = rows.iter().map(|r| r.seed).collect();
    let _ = writeln!(md, "# Report: `{}`\n", ctx.experiment);
    if !ctx.description.trim().is_empty() {
        let _ = writeln!(md, "{}\n", ctx.description.trim());
    }
    let _ = writeln!(
        md,
        "{} cells ({ok} ok, {} not ok) over {} seeds. Test accuracy is measured once per cell on the \
         target's fixed test set; early stopping used only a validation split carved from each cell's \
         training subset. Every source and option of one (n_train, seed) trained on the same subset.\n",
        rows.len(),
        rows.len() - ok,
        seeds.len()
    );
    if let Some(w) = ctx.wall_seconds {
        let _ = writeln!(md, "{}\n", wall_time_sentence(w, ctx));
    }
    let cell_seconds: f64 = rows.iter().map(|r| r.train_seconds).sum();
    let _ = writeln!(md, "Sum of cell times: {}.\n", fmt_duration(cell_seconds));
    for note in notes {
        let _ = writeln!(md, "> **Note:** {note}\n");
    }
    for warning in mixed_provenance(rows) {
        let _ = writeln!(md, "> **Warning:** {warning}\n");
    }
}

/// The wall time of the runs behind the rows, saying how many runs it adds up and whether
/// it includes pre-training or the checkpoints came from the cache.
fn wall_time_sentence(wall_seconds: f64, ctx: &ReportContext) -> String {
    let runs = match ctx.runs {
        Some(n) if n > 1 => format!("**Wall time of its {n} runs**"),
        _ => "**Wall time of the run**".to_string(),
    };
    let pretraining = match ctx.pretrainings_run {
        None => "pre-training, if any, included".to_string(),
        Some(0) => "no pre-training: every source checkpoint came from the cache".to_string(),
        Some(1) => "1 pre-training included".to_string(),
        Some(n) => format!("{n} pre-trainings included"),
    };
    format!("{runs} ({pretraining}): {}.", fmt_duration(wall_seconds))
}

/// A paired difference as the cells `seeds | difference | [low, high] | reading`.
fn difference_cells(m: &MeanCi) -> [String; 4] {
    [
        m.n.to_string(),
        signed_pts(m.mean),
        format!("[{}, {}]", signed_pts(m.low), signed_pts(m.high)),
        verdict(m).to_string(),
    ]
}

/// A note naming the pre-trained arms that no scratch arm trains the same parameters as (a
/// cross-modal Option 1 arm without its trained-stem control), so their absence from the
/// comparisons is explained, not silent.
fn render_unpaired(md: &mut String, rows: &[ResultRow]) {
    let arms: BTreeSet<(&str, &str, i64)> = rows
        .iter()
        .map(|r| (r.target.as_str(), r.source.as_str(), r.option))
        .collect();
    let unpaired: BTreeSet<(String, String, i64)> = rows
        .iter()
        .filter(|r| r.relation.is_pretrained())
        .map(|r| (r, r.scratch_partner()))
        .filter(|(r, partner)| !arms.contains(&(r.target.as_str(), partner.as_str(), r.option)))
        .map(|(r, partner)| (format!("{} on {}", r.source, r.target), partner, r.option))
        .collect();
    if unpaired.is_empty() {
        return;
    }
    let list: Vec<String> = unpaired
        .iter()
        .map(|(arm, partner, option)| format!("{arm} (option {option}; needs `{partner}`)"))
        .collect();
    let _ = writeln!(
        md,
        "> **Not compared with scratch:** {}. No scratch arm among these rows trains the same \
         parameters, so the comparison is left out rather than made against an arm that trains \
         fewer (see *Matched controls* in the README).\n",
        list.join("; ")
    );
}

fn render_against_scratch(md: &mut String, analysed: &Analysed, gain_file: Option<&str>) {
    use Align::{Left, Right};
    let comparisons = &analysed.against_scratch;
    if comparisons.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Does pre-training help?\n");
    if let Some(file) = gain_file {
        let _ = writeln!(
            md,
            "![gain over scratch, per target and source, at each n_train and option]({file})\n"
        );
    }
    let _ = writeln!(
        md,
        "Gain over the scratch arm of the same architecture, in points, at each n_train (mean paired difference over seeds; **bold** where its 95% t-interval excludes 0):\n"
    );
    analysed.gain_table.write(md);
    let _ = writeln!(
        md,
        "Paired difference in test accuracy, pre-trained minus scratch at the same option, seed and subset \
        (percentage points, mean and 95% t-interval over seeds):\n"
    );
    let mut table = Table::new(&[
        ("target", Left),
        ("n_train", Right),
        ("pre-trained arm", Left),
        ("scratch arm", Left),
        ("seeds", Right),
        ("difference (pts)", Right),
        ("95% CI (pts)", Left),
        ("reading", Left),
    ]);
    for c in comparisons {
        let d = &c.difference;
        let mut cells = vec![
            d.target.clone(),
            d.n_train.to_string(),
            d.a.clone(),
            d.b.clone(),
        ];
        cells.extend(difference_cells(&d.difference));
        table.row(cells);
    }
    table.write(md);
}

fn render_arms(md: &mut String, arms: &[ArmSummary], figures: &[(String, String)]) {
    use Align::{Left, Right};
    let _ = writeln!(md, "## Mean test accuracy per arm\n");
    let mut table = Table::new(&[
        ("target", Left),
        ("option", Right),
        ("source", Left),
        ("relation", Left),
        ("n_train", Right),
        ("seeds", Right),
        ("accuracy %", Right),
        ("95% CI", Left),
        ("macro-F1 %", Right),
        ("cell seconds", Right),
    ]);
    for a in arms {
        table.row(vec![
            a.target.clone(),
            a.option.to_string(),
            a.source.clone(),
            a.relation.to_string(),
            a.n_train.to_string(),
            a.accuracy.n.to_string(),
            pct(a.accuracy.mean),
            ci(&a.accuracy),
            pct(a.macro_f1.mean),
            format!("{:.0}", a.seconds),
        ]);
    }
    table.write(md);
    for (target, file) in figures {
        let _ = writeln!(md, "![{target}: accuracy against n_train]({file})\n");
    }
}

fn render_options(md: &mut String, options: &[(String, PairedDifference)]) {
    use Align::{Left, Right};
    if options.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Option 1 against Option 2\n");
    let _ = writeln!(
        md,
        "Paired difference, Option 1 minus Option 2 for the same source, seed and subset (points):\n"
    );
    let mut table = Table::new(&[
        ("target", Left),
        ("n_train", Right),
        ("source", Left),
        ("seeds", Right),
        ("difference (pts)", Right),
        ("95% CI (pts)", Left),
        ("reading", Left),
    ]);
    for (source, d) in options {
        let mut cells = vec![d.target.clone(), d.n_train.to_string(), source.clone()];
        cells.extend(difference_cells(&d.difference));
        table.row(cells);
    }
    table.write(md);
}

/// One line per pre-training the rows used.
fn render_pretraining(md: &mut String, rows: &[ResultRow]) {
    use Align::{Left, Right};
    let mut pretrained: Vec<&ResultRow> = Vec::new();
    for r in rows.iter().filter(|r| r.pretrain_key.is_some()) {
        if !pretrained.iter().any(|p| p.pretrain_key == r.pretrain_key) {
            pretrained.push(r);
        }
    }
    if pretrained.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Pre-training\n");
    let mut table = Table::new(&[
        ("source", Left),
        ("epochs", Right),
        ("batch", Right),
        ("learning rate", Right),
        ("seed", Right),
        ("accuracy on the source's test set", Right),
        ("checkpoint key", Left),
    ]);
    for r in pretrained {
        let key = r.pretrain_key.as_deref().unwrap_or_default();
        table.row(vec![
            r.source.clone(),
            r.pretrain_epochs.unwrap_or_default().to_string(),
            r.pretrain_batch_size.unwrap_or_default().to_string(),
            r.pretrain_learning_rate.unwrap_or_default().to_string(),
            r.pretrain_seed.unwrap_or_default().to_string(),
            format!("{} %", pct(r.source_test_accuracy.unwrap_or(f64::NAN))),
            format!("`{}`", &key[..16.min(key.len())]),
        ]);
    }
    table.write(md);
}

fn render_failed(md: &mut String, rows: &[ResultRow]) {
    let failed: Vec<&ResultRow> = rows.iter().filter(|r| r.status != CellStatus::Ok).collect();
    if failed.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Cells that did not finish well\n");
    for r in failed {
        let _ = writeln!(
            md,
            "- {} / {} / option {} / n={} / seed {}: **{}** {}",
            r.target,
            r.source,
            r.option,
            r.n_train,
            r.seed,
            r.status,
            r.message.clone().unwrap_or_default()
        );
    }
    md.push('\n');
}

/// The command, the builds, the machines and the data that made the rows, and the experiment
/// file as it was.
fn render_reproduce(md: &mut String, rows: &[ResultRow], ctx: &ReportContext) {
    let _ = writeln!(md, "## Reproduce\n");
    let commits: BTreeSet<String> = rows.iter().filter_map(|r| r.git_commit.clone()).collect();
    let dirty = rows.iter().any(|r| r.git_dirty == Some(true));
    let _ = writeln!(md, "```sh");
    if let Some(c) = commits.iter().next() {
        let _ = writeln!(md, "git checkout {c}");
    }
    let _ = writeln!(md, "{}", ctx.command);
    let _ = writeln!(md, "```\n");
    let _ = writeln!(
        md,
        "- commit(s) of the rows: {}{}",
        if commits.is_empty() {
            "unknown".into()
        } else {
            commits.iter().cloned().collect::<Vec<_>>().join(", ")
        },
        if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        }
    );
    for (name, version) in &ctx.versions {
        let _ = writeln!(md, "- {name} {version}");
    }
    for line in provenance_lines(rows) {
        let _ = writeln!(md, "- {line}");
    }
    let _ = writeln!(md, "- report generated {}\n", ctx.generated_at);
    let _ = writeln!(
        md,
        "Rerun with the same build on the same machine, the same command gives the same rows bit for bit. Another machine may round floats differently, even one of the same kind: on a second 2-core AVX-512 Xeon, 37 of the 60 rows of `experiments/image.toml` differed (BURN-NOTES.md). Compare rows from other machines by their intervals, not bit for bit; the rows record the build, CPU and SIMD level that made them.\n"
    );
    let _ = writeln!(md, "### Experiment file `{}`\n", ctx.experiment_file);
    let _ = writeln!(md, "```toml\n{}\n```", ctx.experiment_text.trim_end());
    for (file, text) in &ctx.included {
        let _ = writeln!(md, "\n### Included file `{file}`\n");
        let _ = writeln!(md, "```toml\n{}\n```", text.trim_end());
    }
}

/// The machines, datasets and tokenizers of the rows, one line each.
fn provenance_lines(rows: &[ResultRow]) -> Vec<String> {
    let machines: BTreeSet<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} threads on {}, host {}",
                r.threads,
                machine_of(r),
                r.host
            )
        })
        .collect();
    let mut hashes: BTreeSet<(String, String)> = BTreeSet::new();
    for r in rows {
        hashes.insert((r.target.clone(), r.target_sha256.clone()));
        if let Some(s) = &r.source_sha256 {
            hashes.insert((r.source.clone(), s.clone()));
        }
    }
    let tokenizers: BTreeSet<(String, i64, i64)> = rows
        .iter()
        .filter_map(|r| {
            Some((
                r.tokenizer_sha256.clone()?,
                r.vocab_size.unwrap_or(0),
                r.max_tokens.unwrap_or(0),
            ))
        })
        .collect();
    let mut lines: Vec<String> = machines.into_iter().collect();
    lines.extend(
        hashes
            .into_iter()
            .map(|(id, sha)| format!("dataset `{id}`: decoded content sha256 `{sha}`")),
    );
    lines.extend(tokenizers.into_iter().map(|(sha, vocab, tokens)| {
        format!("tokenizer.json sha256 `{sha}` ({vocab} pieces, {tokens} tokens per document)")
    }));
    lines
}
