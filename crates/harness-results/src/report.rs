//! The report of one experiment: `report.md`, one SVG figure per target, the results as
//! Parquet, and everything needed to reproduce them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use harness_spec::{Arm, Expect, Experiment, Hypothesis};
use serde::{Deserialize, Serialize};

use crate::plot::{GainCell, accuracy_figure, gain_figure};
use crate::row::{ResultRow, scratch_arm, with_arm_names};
use crate::stats::{ArmSummary, MeanCi, PairedDifference, paired, summarise};
use crate::store::{read_parquet, write_parquet};
use crate::verdict::{ALPHA, HypothesisTest, Verdict, test_hypotheses};

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
    /// Wall time of the run that produced the rows, pre-training included, when known.
    pub wall_seconds: Option<f64>,
    /// (name, version) of the harness and its main dependencies.
    pub versions: Vec<(String, String)>,
    pub generated_at: String,
    /// The hypotheses declared in the experiment file, tested in the report. Not stored in
    /// [`CONTEXT_FILE`]: they are parsed again from `experiment_text`.
    #[serde(skip)]
    pub hypotheses: Vec<Hypothesis>,
}

impl ReportContext {
    /// The context stored in `report_dir`'s [`CONTEXT_FILE`], with its hypotheses parsed again
    /// from the experiment text it quotes.
    pub fn read(report_dir: &Path) -> Result<ReportContext> {
        let path = report_dir.join(CONTEXT_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut ctx: ReportContext =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let experiment =
            Experiment::parse(Path::new(&ctx.experiment_file), &ctx.experiment_text)
                .with_context(|| format!("the experiment text quoted in {}", path.display()))?;
        ctx.hypotheses = experiment.hypotheses;
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

    let rows = &with_arm_names(rows);
    let arms = summarise(rows);
    let targets: BTreeSet<String> = rows.iter().map(|r| r.target.clone()).collect();
    let mut figures = Vec::new();
    for target in &targets {
        let name = format!("accuracy-{target}.svg");
        let path = out_dir.join(&name);
        std::fs::write(&path, accuracy_figure(target, &arms))?;
        written.push(path);
        figures.push((target.clone(), name));
    }

    let gains = gains_over_scratch(rows);
    let gain_file = (!gains.is_empty()).then(|| "gain-over-scratch.svg".to_string());
    if let Some(name) = &gain_file {
        let path = out_dir.join(name);
        std::fs::write(&path, gain_figure(&gains))?;
        written.push(path);
    }

    let tests = test_hypotheses(rows, &ctx.hypotheses);
    let md = render_markdown(rows, &arms, ctx, &figures, &tests, gain_file.as_deref());
    let path = out_dir.join("report.md");
    std::fs::write(&path, md)?;
    written.push(path);
    Ok(written)
}

/// Each pre-trained source against the scratch arm of its own architecture at each option:
/// (source, option, difference).
fn differences_against_scratch(rows: &[ResultRow]) -> Vec<(String, i64, PairedDifference)> {
    let sources: BTreeSet<(&str, String)> = rows
        .iter()
        .filter(|r| r.relation != "none")
        .map(|r| (r.source.as_str(), scratch_arm(r.architecture())))
        .collect();
    let options: BTreeSet<i64> = rows.iter().map(|r| r.option).collect();
    let mut out = Vec::new();
    for (source, scratch) in &sources {
        for &option in &options {
            out.extend(
                paired(rows, (source, option), (scratch, option))
                    .into_iter()
                    .map(|d| (source.to_string(), option, d)),
            );
        }
    }
    out
}

fn options_compared(rows: &[ResultRow]) -> Vec<PairedDifference> {
    let sources: BTreeSet<&str> = rows.iter().map(|r| r.source.as_str()).collect();
    sources
        .iter()
        .flat_map(|s| paired(rows, (s, 1), (s, 2)))
        .collect()
}

/// Every pre-trained arm against scratch at the same option and n_train: mean paired
/// difference over seeds, for the heat map.
fn gains_over_scratch(rows: &[ResultRow]) -> Vec<GainCell> {
    differences_against_scratch(rows)
        .into_iter()
        .map(|(source, option, d)| {
            let relation = rows
                .iter()
                .find(|r| r.target == d.target && r.source == source)
                .map(|r| r.relation.clone())
                .unwrap_or_default();
            GainCell {
                target: d.target,
                source,
                relation,
                option,
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
            format!("sources: {}", h.sources.join(", "))
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
    let _ = writeln!(
        md,
        "| hypothesis | expects | where | target | seeds | A − B (pts) | 95% bootstrap CI (pts) | p claim (Holm) | p opposite (Holm) | verdict |"
    );
    let _ = writeln!(
        md,
        "| --- | --- | --- | --- | ---: | ---: | --- | ---: | ---: | --- |"
    );
    for t in tests {
        let h = &t.hypothesis;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | [{}, {}] | {} | {} | **{}** |",
            h.name,
            expectation(h),
            where_it_applies(h),
            t.target,
            t.per_seed.len(),
            signed_pts(t.mean),
            signed_pts(t.ci.0),
            signed_pts(t.ci.1),
            p_value(t.p_claim_holm),
            p_value(t.p_opposite_holm),
            t.verdict.as_str()
        );
    }
    md.push('\n');
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

/// One sentence per n_train whose validation split is not the fraction the experiment asks
/// for (by more than 5 points), with the fraction the rows actually held out.
pub fn validation_notes(rows: &[ResultRow]) -> Vec<String> {
    let mut by_n: BTreeMap<(i64, String), (f64, f64, f64)> = BTreeMap::new();
    for r in rows {
        let Some(applied) = r.validation_fraction_applied else {
            continue;
        };
        let e = by_n
            .entry((r.n_train, format!("{}", r.validation_fraction)))
            .or_insert((r.validation_fraction, f64::INFINITY, f64::NEG_INFINITY));
        e.1 = e.1.min(applied);
        e.2 = e.2.max(applied);
    }
    by_n.into_iter()
        .filter(|(_, (asked, lo, hi))| (lo - asked).abs() > 0.05 || (hi - asked).abs() > 0.05)
        .map(|((n, _), (asked, lo, hi))| {
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
        .collect()
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

fn render_markdown(
    rows: &[ResultRow],
    arms: &[ArmSummary],
    ctx: &ReportContext,
    figures: &[(String, String)],
    tests: &[HypothesisTest],
    gain_file: Option<&str>,
) -> String {
    let mut md = String::new();
    let ok = rows.iter().filter(|r| r.status == "ok").count();
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
        let _ = writeln!(
            md,
            "**Wall time of the run** (pre-training included): {}.\n",
            fmt_duration(w)
        );
    }
    let cell_seconds: f64 = rows.iter().map(|r| r.train_seconds).sum();
    let _ = writeln!(md, "Sum of cell times: {}.\n", fmt_duration(cell_seconds));
    for note in validation_notes(rows) {
        let _ = writeln!(md, "> **Note:** {note}\n");
    }
    for warning in mixed_provenance(rows) {
        let _ = writeln!(md, "> **Warning:** {warning}\n");
    }

    if !tests.is_empty() {
        render_verdicts(&mut md, tests);
    }

    let diffs = differences_against_scratch(rows);
    if !diffs.is_empty() {
        let _ = writeln!(md, "## Does pre-training help?\n");
        if let Some(file) = gain_file {
            let _ = writeln!(
                md,
                "![gain over scratch, per target and source, at each n_train and option]({file})\n"
            );
        }
        let _ = writeln!(
            md,
            "Paired difference in test accuracy, pre-trained minus scratch at the same option, seed and subset \
            (percentage points, mean and 95% t-interval over seeds):\n"
        );
        let _ = writeln!(
            md,
            "| target | n_train | pre-trained arm | scratch arm | seeds | difference (pts) | 95% CI (pts) | reading |"
        );
        let _ = writeln!(md, "| --- | ---: | --- | --- | ---: | ---: | --- | --- |");
        for (_, _, d) in &diffs {
            let m = &d.difference;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | [{}, {}] | {} |",
                d.target,
                d.n_train,
                d.a,
                d.b,
                m.n,
                signed_pts(m.mean),
                signed_pts(m.low),
                signed_pts(m.high),
                verdict(m)
            );
        }
        md.push('\n');
    }

    let _ = writeln!(md, "## Mean test accuracy per arm\n");
    let _ = writeln!(
        md,
        "| target | option | source | relation | n_train | seeds | accuracy % | 95% CI | macro-F1 % | cell seconds |"
    );
    let _ = writeln!(
        md,
        "| --- | ---: | --- | --- | ---: | ---: | ---: | --- | ---: | ---: |"
    );
    for a in arms {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} |",
            a.target,
            a.option,
            a.source,
            a.relation,
            a.n_train,
            a.accuracy.n,
            pct(a.accuracy.mean),
            ci(&a.accuracy),
            pct(a.macro_f1.mean),
            a.seconds
        );
    }
    md.push('\n');
    for (target, file) in figures {
        let _ = writeln!(md, "![{target}: accuracy against n_train]({file})\n");
    }

    let opts = options_compared(rows);
    if !opts.is_empty() {
        let _ = writeln!(md, "## Option 1 against Option 2\n");
        let _ = writeln!(
            md,
            "Paired difference, Option 1 minus Option 2 for the same source, seed and subset (points):\n"
        );
        let _ = writeln!(
            md,
            "| target | n_train | source | seeds | difference (pts) | 95% CI (pts) | reading |"
        );
        let _ = writeln!(md, "| --- | ---: | --- | ---: | ---: | --- | --- |");
        for d in &opts {
            let m = &d.difference;
            let source = d.a.split(',').next().unwrap_or_default();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | [{}, {}] | {} |",
                d.target,
                d.n_train,
                source,
                m.n,
                signed_pts(m.mean),
                signed_pts(m.low),
                signed_pts(m.high),
                verdict(m)
            );
        }
        md.push('\n');
    }

    let mut pretrained: Vec<&ResultRow> = Vec::new();
    for r in rows.iter().filter(|r| r.pretrain_key.is_some()) {
        if !pretrained.iter().any(|p| p.pretrain_key == r.pretrain_key) {
            pretrained.push(r);
        }
    }
    if !pretrained.is_empty() {
        let _ = writeln!(md, "## Pre-training\n");
        let _ = writeln!(
            md,
            "| source | epochs | batch | learning rate | seed | accuracy on the source's test set | checkpoint key |"
        );
        let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: | ---: | --- |");
        for r in pretrained {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} % | `{}` |",
                r.source,
                r.pretrain_epochs.unwrap_or_default(),
                r.pretrain_batch_size.unwrap_or_default(),
                r.pretrain_learning_rate.unwrap_or_default(),
                r.pretrain_seed.unwrap_or_default(),
                pct(r.source_test_accuracy.unwrap_or(f64::NAN)),
                &r.pretrain_key.as_deref().unwrap_or_default()
                    [..16.min(r.pretrain_key.as_deref().unwrap_or_default().len())]
            );
        }
        md.push('\n');
    }

    let failed: Vec<&ResultRow> = rows.iter().filter(|r| r.status != "ok").collect();
    if !failed.is_empty() {
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
    let backends: BTreeSet<String> = rows
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
    for b in backends {
        let _ = writeln!(md, "- {b}");
    }
    let mut hashes: BTreeSet<(String, String)> = BTreeSet::new();
    for r in rows {
        hashes.insert((r.target.clone(), r.target_sha256.clone()));
        if let Some(s) = &r.source_sha256 {
            hashes.insert((r.source.clone(), s.clone()));
        }
    }
    for (id, sha) in hashes {
        let _ = writeln!(md, "- dataset `{id}`: decoded content sha256 `{sha}`");
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
    for (sha, vocab, tokens) in tokenizers {
        let _ = writeln!(
            md,
            "- tokenizer.json sha256 `{sha}` ({vocab} pieces, {tokens} tokens per document)"
        );
    }
    let _ = writeln!(md, "- report generated {}\n", ctx.generated_at);
    let _ = writeln!(
        md,
        "Rerun with the same build on the same machine, the same command gives the same rows bit for bit. Another machine may round floats differently, even one of the same kind: on a second 2-core AVX-512 Xeon, 37 of the 60 rows of `experiments/image.toml` differed (BURN-NOTES.md). Compare rows from other machines by their intervals, not bit for bit; the rows record the build, CPU and SIMD level that made them.\n"
    );
    let _ = writeln!(md, "### Experiment file `{}`\n", ctx.experiment_file);
    let _ = writeln!(md, "```toml\n{}\n```", ctx.experiment_text.trim_end());
    md
}
