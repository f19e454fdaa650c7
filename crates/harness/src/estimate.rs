//! How long `harness run` of some experiment files would take, estimated before it starts
//! from what the harness has measured: each unfinished cell from the `train_seconds` of the
//! finished rows most like it, each pre-training the cache lacks from the seconds the cache
//! records for pre-trainings of the same source. Rows, cells and records in, an estimate out:
//! nothing here reads a file.
//!
//! Rows stand only for cells of the same workload (target, architecture, option, relation,
//! network shape) and training budget; among those the nearest kind wins, in this order: the
//! same arm, size and selection; the same arm at another size or learning-rate grid, scaled by
//! the examples its step budget processes; other arms of the same relation, scaled likewise.
//! Cells that train only their output layer on cached features are averaged over their arm
//! whatever their size or budget: their time is mostly the features' computation.

use std::collections::{BTreeMap, BTreeSet};

use harness_results::ResultRow;
use harness_spec::{Cell, CellStatus, FinetuneSpec, PretrainJob, Relation, TRANSFORMER};
use harness_train::PretrainMeta;

/// Where the estimate is for: this machine's CPU (as rows record it) and the backend its
/// cells would run on. Rows of another backend are never used.
#[derive(Debug, Clone)]
pub struct Here {
    pub cpu: String,
    pub backend: String,
}

/// How a cell chooses what it trains with, which sets how many trainings it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// One training at the option's learning rate.
    Fixed,
    /// `[finetune.search]` of this many learning rates: one training each, then the refit.
    LearningRates(usize),
    /// `[finetune.probe]`: the logistic probe on cached features.
    Probe,
}

impl Selection {
    fn of_cell(cell: &Cell) -> Selection {
        if harness_train::fits_probe(cell) {
            return Selection::Probe;
        }
        match cell.finetune.search.learning_rates(cell.option).len() {
            0 => Selection::Fixed,
            k => Selection::LearningRates(k),
        }
    }

    /// As the row records it: a probe's `C`, or the search's candidates (one JSON entry each).
    fn of_row(row: &ResultRow) -> Selection {
        if row.probe_c.is_some() {
            return Selection::Probe;
        }
        let candidates = (row.search.as_deref())
            .and_then(|s| serde_json::from_str::<Vec<serde_json::Value>>(s).ok())
            .map_or(0, |c| c.len());
        match candidates {
            0 => Selection::Fixed,
            k => Selection::LearningRates(k),
        }
    }

    /// Trainings run: a grid of k learning rates trains k candidates, then refits the chosen
    /// one on fitting + validation (about one more training).
    fn trainings(self) -> f64 {
        match self {
            Selection::Fixed | Selection::Probe => 1.0,
            Selection::LearningRates(k) => k as f64 + 1.0,
        }
    }
}

/// What makes cells cost alike beyond their arm, size, budget and selection: the target, the
/// network and the option, and so the path through the network. No measurement of another
/// workload is used.
#[derive(Debug, Clone, PartialEq)]
struct Workload {
    target: String,
    architecture: String,
    option: i64,
    relation: Relation,
    /// The patch of the stem (the Transformer's, or a fresh one before a network).
    patch: i64,
    /// The Transformer's width, layers, heads, feed-forward width and dropout (none for a
    /// network pre-trained elsewhere, whose shape its architecture names).
    transformer: Option<(i64, i64, i64, i64, f64)>,
    /// The side a network's images are resized to.
    input_side: Option<i64>,
}

/// The training budget of a cell: what its step budget and validation checks depend on.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Budget {
    batch_size: usize,
    epochs: usize,
    min_steps: usize,
    evaluations: usize,
    patience: usize,
    validation_fraction: f64,
}

impl Budget {
    fn of_cell(ft: &FinetuneSpec) -> Budget {
        Budget {
            batch_size: ft.batch_size,
            epochs: ft.epochs,
            min_steps: ft.min_steps,
            evaluations: ft.evaluations,
            patience: ft.patience,
            validation_fraction: ft.validation_fraction,
        }
    }

    fn of_row(row: &ResultRow) -> Budget {
        Budget {
            batch_size: row.batch_size.max(1) as usize,
            epochs: row.epochs.max(0) as usize,
            min_steps: row.min_steps.max(0) as usize,
            evaluations: row.evaluations.max(0) as usize,
            patience: row.patience.max(0) as usize,
            validation_fraction: row.validation_fraction,
        }
    }

    /// Examples a validated training on `n_train` examples may process: its step budget on
    /// the fitting split (`n_train` less the validation share) times the batch size.
    fn examples(&self, n_train: usize) -> f64 {
        let held_out = (n_train as f64 * self.validation_fraction).round() as usize;
        let finetune = FinetuneSpec {
            batch_size: self.batch_size.max(1),
            epochs: self.epochs,
            min_steps: self.min_steps,
            ..FinetuneSpec::default()
        };
        let steps = harness_train::step_budget(&finetune, n_train.saturating_sub(held_out));
        (steps * finetune.batch_size) as f64
    }
}

/// One kind of cell: finished rows of one kind are averaged, and a cell is estimated from the
/// kinds nearest its own.
#[derive(Debug, Clone, PartialEq)]
struct Kind {
    workload: Workload,
    arm: String,
    n_train: usize,
    budget: Budget,
    selection: Selection,
}

impl Kind {
    fn of_cell(cell: &Cell) -> Kind {
        let m = &cell.model;
        let architecture = cell.architecture().to_string();
        Kind {
            workload: Workload {
                target: cell.target.clone(),
                transformer: (architecture == TRANSFORMER).then_some((
                    m.d_model as i64,
                    m.n_layers as i64,
                    m.n_heads as i64,
                    m.d_ff as i64,
                    m.dropout,
                )),
                architecture,
                option: cell.option.number().into(),
                relation: cell.relation,
                patch: m.patch as i64,
                input_side: (cell.network.as_ref())
                    .and_then(|n| n.image_input())
                    .map(|i| i.side as i64),
            },
            arm: cell.arm(),
            n_train: cell.n_train,
            budget: Budget::of_cell(&cell.finetune),
            selection: Selection::of_cell(cell),
        }
    }

    fn of_row(row: &ResultRow) -> Kind {
        let architecture = row.architecture().to_string();
        Kind {
            workload: Workload {
                target: row.target.clone(),
                transformer: (architecture == TRANSFORMER).then_some((
                    row.d_model,
                    row.n_layers,
                    row.n_heads,
                    row.d_ff,
                    row.dropout,
                )),
                option: row.option,
                relation: row.relation,
                patch: row.patch,
                input_side: row.input_side,
                architecture,
            },
            arm: harness_spec::arm_name(&row.source, row.architecture(), row.control_arm()),
            n_train: row.n_train.max(0) as usize,
            budget: Budget::of_row(row),
            selection: Selection::of_row(row),
        }
    }

    /// How much a cell of this kind trains, to scale a measurement of one kind to another of
    /// the same workload. A cell that trains only its output layer on cached features counts
    /// one whatever its size, budget or selection: computing the features (once per frozen
    /// network, by whichever such cell runs first) outweighs the head's steps. Any other
    /// cell: the examples its step budget processes, times its trainings.
    fn work(&self, cached_features: bool) -> f64 {
        if cached_features {
            return 1.0;
        }
        (self.budget.examples(self.n_train) * self.selection.trainings()).max(1.0)
    }
}

/// Which measurements an estimate came from, nearest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Basis {
    /// Cells of the same arm, size, budget and selection (for cells on cached features: of the
    /// same arm and selection, at any size or budget).
    SameKind,
    /// Cells of the same arm and budget at another size or learning-rate grid, scaled.
    Scaled,
    /// Cells of other arms of the same workload (same relation), scaled.
    OtherSources,
    /// No finished row of the same workload.
    Unmeasured,
}

impl Basis {
    /// Whether rows of kind `measured` may stand for cells of kind `cell` at this basis.
    /// Rows of another budget are never used for a cell that trains through the network:
    /// between pretrained-matrix.toml's and pretrained-image.toml's EfficientNet budgets, the
    /// seconds did not follow the examples processed (3× off).
    fn admits(self, cell: &Kind, cached_features: bool, measured: &Kind) -> bool {
        let workload = measured.workload == cell.workload
            && (cached_features || measured.budget == cell.budget);
        let arm = workload && measured.arm == cell.arm;
        match self {
            Basis::SameKind => {
                arm && measured.selection == cell.selection
                    && (cached_features || measured.n_train == cell.n_train)
            }
            Basis::Scaled => arm,
            Basis::OtherSources => workload,
            Basis::Unmeasured => false,
        }
    }
}

/// How rows written before the CPU was recorded are named among other CPUs.
const NO_CPU: &str = "rows without a CPU recorded";

/// The finished rows of one kind: their seconds measured on this machine's CPU and elsewhere.
struct Measured {
    kind: Kind,
    here: Vec<f64>,
    elsewhere: Vec<(f64, String)>,
}

/// The estimate of one unfinished cell.
#[derive(Debug, Clone, PartialEq)]
pub struct CellEstimate {
    pub target: String,
    /// Seconds, none when unmeasured.
    pub seconds: Option<f64>,
    pub basis: Basis,
    /// The other CPUs whose rows it came from (empty: this machine's).
    pub elsewhere: BTreeSet<String>,
}

/// The estimate of one pre-training the cache lacks.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainEstimate {
    pub source: String,
    /// Seconds, none when the cache records no pre-training of its source.
    pub seconds: Option<f64>,
}

/// What `harness run` would cost: every unfinished cell and every pre-training to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub cells: Vec<CellEstimate>,
    pub pretrainings: Vec<PretrainEstimate>,
    /// Finished rows of this backend with a time, that the estimate could draw on.
    pub rows: usize,
}

/// Estimates `cells` (the unfinished ones) from `rows` (finished or not, of any experiment)
/// and `jobs` (the pre-trainings to run) from `recorded` (the cache's records).
pub fn estimate(
    cells: &[&Cell],
    jobs: &[&PretrainJob],
    rows: &[ResultRow],
    recorded: &[PretrainMeta],
    here: &Here,
) -> Estimate {
    let (measured, used) = measured(rows, here);
    Estimate {
        cells: cells.iter().map(|c| estimate_cell(c, &measured)).collect(),
        pretrainings: jobs
            .iter()
            .map(|j| estimate_pretraining(j, recorded))
            .collect(),
        rows: used,
    }
}

/// The rows that measured a cell's time (finished, not failed, of this backend), by kind;
/// and how many there are.
fn measured(rows: &[ResultRow], here: &Here) -> (Vec<Measured>, usize) {
    let mut kinds: Vec<Measured> = Vec::new();
    let mut used = 0;
    for row in rows {
        if row.status == CellStatus::Failed
            || row.backend != here.backend
            || !row.train_seconds.is_finite()
            || row.train_seconds < 0.0
        {
            continue;
        }
        used += 1;
        let kind = Kind::of_row(row);
        let i = match kinds.iter().position(|m| m.kind == kind) {
            Some(i) => i,
            None => {
                kinds.push(Measured {
                    kind,
                    here: Vec::new(),
                    elsewhere: Vec::new(),
                });
                kinds.len() - 1
            }
        };
        match row.cpu.as_deref() {
            Some(cpu) if cpu == here.cpu => kinds[i].here.push(row.train_seconds),
            cpu => kinds[i]
                .elsewhere
                .push((row.train_seconds, cpu.unwrap_or(NO_CPU).to_string())),
        }
    }
    (kinds, used)
}

/// A cell's seconds from the nearest basis that has rows, preferring, at each basis, rows of
/// this machine's CPU.
fn estimate_cell(cell: &Cell, measured: &[Measured]) -> CellEstimate {
    let kind = Kind::of_cell(cell);
    let cached = cell.trains_head_on_frozen_features();
    for basis in [Basis::SameKind, Basis::Scaled, Basis::OtherSources] {
        let admitted: Vec<&Measured> = (measured.iter())
            .filter(|m| basis.admits(&kind, cached, &m.kind))
            .collect();
        if let Some((seconds, elsewhere)) = nearest(&kind, cached, &admitted) {
            return CellEstimate {
                target: cell.target.clone(),
                seconds: Some(seconds),
                basis,
                elsewhere,
            };
        }
    }
    CellEstimate {
        target: cell.target.clone(),
        seconds: None,
        basis: Basis::Unmeasured,
        elsewhere: BTreeSet::new(),
    }
}

/// The mean seconds of the admitted kinds nearest `kind` in work, each scaled to its work
/// (several kinds at the same distance: the mean of their estimates); rows of this machine's
/// CPU when any kind has them, else of other CPUs, named.
fn nearest(kind: &Kind, cached: bool, admitted: &[&Measured]) -> Option<(f64, BTreeSet<String>)> {
    let on_this_cpu = admitted.iter().any(|m| !m.here.is_empty());
    let with_rows: Vec<(&Kind, Vec<f64>)> = admitted
        .iter()
        .map(|m| {
            let seconds = if on_this_cpu {
                m.here.clone()
            } else {
                m.elsewhere.iter().map(|(s, _)| *s).collect()
            };
            (&m.kind, seconds)
        })
        .filter(|(_, seconds)| !seconds.is_empty())
        .collect();
    let work = kind.work(cached);
    let distance = |k: &Kind| (work / k.work(cached)).ln().abs();
    let best = with_rows
        .iter()
        .map(|(k, _)| distance(k))
        .min_by(f64::total_cmp)?;
    let scaled: Vec<f64> = with_rows
        .iter()
        .filter(|(k, _)| distance(k) <= best + 1e-9)
        .map(|(k, seconds)| mean(seconds) * work / k.work(cached))
        .collect();
    let elsewhere = if on_this_cpu {
        BTreeSet::new()
    } else {
        (admitted.iter())
            .filter(|m| distance(&m.kind) <= best + 1e-9)
            .flat_map(|m| m.elsewhere.iter().map(|(_, cpu)| cpu.clone()))
            .collect()
    };
    Some((mean(&scaled), elsewhere))
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// A pre-training's seconds from the cache's records of the same source: their seconds per
/// example and epoch, times the job's epochs and examples (its `max_examples`, or else, as
/// for a whole pool, the most examples a recorded pre-training of that source used). The
/// network's size is not recorded, so it is not scaled for.
fn estimate_pretraining(job: &PretrainJob, recorded: &[PretrainMeta]) -> PretrainEstimate {
    let same: Vec<&PretrainMeta> = recorded
        .iter()
        .filter(|m| m.source == job.source && m.epochs > 0 && m.examples > 0)
        .filter(|m| m.seconds.is_finite() && m.seconds >= 0.0)
        .collect();
    let seconds = same.iter().map(|m| m.examples).max().map(|pool| {
        let examples = match job.pretrain.max_examples {
            0 => pool,
            cap => cap.min(pool),
        };
        let rates: Vec<f64> = (same.iter())
            .map(|m| m.seconds / (m.epochs * m.examples) as f64)
            .collect();
        mean(&rates) * (job.pretrain.epochs * examples) as f64
    });
    PretrainEstimate {
        source: job.source.clone(),
        seconds,
    }
}

impl Estimate {
    /// Seconds of the cells that have an estimate.
    pub fn cell_seconds(&self) -> f64 {
        self.cells
            .iter()
            .filter_map(|c| c.seconds)
            .fold(0.0, |a, b| a + b)
    }

    /// Seconds of the pre-trainings that have an estimate.
    pub fn pretrain_seconds(&self) -> f64 {
        self.pretrainings
            .iter()
            .filter_map(|p| p.seconds)
            .fold(0.0, |a, b| a + b)
    }

    /// Cells estimated on `basis`.
    pub fn count(&self, basis: Basis) -> usize {
        self.cells.iter().filter(|c| c.basis == basis).count()
    }

    /// Wall-clock seconds at `jobs` workers if they share the work evenly: the total over
    /// the jobs, but never less than the longest single task.
    pub fn wall_seconds(&self, jobs: usize) -> f64 {
        let tasks = (self.cells.iter().filter_map(|c| c.seconds))
            .chain(self.pretrainings.iter().filter_map(|p| p.seconds));
        let longest = tasks.fold(0.0, f64::max);
        ((self.cell_seconds() + self.pretrain_seconds()) / jobs.max(1) as f64).max(longest)
    }

    /// Per target: the seconds of its estimated cells and how many have no measurement.
    pub fn by_target(&self) -> BTreeMap<&str, (f64, usize)> {
        let mut out: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
        for c in &self.cells {
            let entry = out.entry(c.target.as_str()).or_default();
            match c.seconds {
                Some(s) => entry.0 += s,
                None => entry.1 += 1,
            }
        }
        out
    }

    /// Cells estimated from rows of another CPU, and those CPUs.
    pub fn elsewhere(&self) -> (usize, BTreeSet<&str>) {
        let from: Vec<&CellEstimate> = (self.cells.iter())
            .filter(|c| !c.elsewhere.is_empty())
            .collect();
        let cpus = (from.iter())
            .flat_map(|c| c.elsewhere.iter().map(String::as_str))
            .collect();
        (from.len(), cpus)
    }
}

/// Seconds as a person reads a duration: `45 s`, `12 min`, `1 h 42 min`.
pub fn duration(seconds: f64) -> String {
    if seconds < 59.5 {
        return format!("{seconds:.0} s");
    }
    let minutes = (seconds / 60.0).round() as u64;
    if minutes < 60 {
        format!("{minutes} min")
    } else {
        format!("{} h {} min", minutes / 60, minutes % 60)
    }
}

/// Where the rows came from, for saying so.
#[derive(Debug, Clone)]
pub struct Provenance<'a> {
    /// The folder of result stores read.
    pub results: &'a std::path::Path,
    /// Row files of those stores that could not be counted, left out.
    pub left_out: usize,
    pub here: &'a Here,
}

impl Estimate {
    /// The estimate as `harness plan` says it: the total and its wall-clock time at `jobs`,
    /// then what the cells, the pre-trainings and the measurements behind them were.
    pub fn lines(&self, jobs: usize, from: &Provenance) -> Vec<String> {
        let n = self.cells.len();
        if n == 0 {
            return vec!["estimated time of `harness run`: none, every cell is finished".into()];
        }
        let total = self.cell_seconds() + self.pretrain_seconds();
        let unmeasured = self.count(Basis::Unmeasured)
            + self
                .pretrainings
                .iter()
                .filter(|p| p.seconds.is_none())
                .count();
        let work = format!(
            "{n} unfinished cell{}{}",
            plural(n),
            match self.pretrainings.len() {
                0 => String::new(),
                k => format!(" and {k} pre-training{}", plural(k)),
            }
        );
        let mut head = if unmeasured == n + self.pretrainings.len() {
            format!("estimated time of `harness run`: unknown for {work}, none like them measured")
        } else {
            format!(
                "estimated time of `harness run`: {} of training for {work}",
                duration(total)
            )
        };
        if jobs > 1 && unmeasured < n + self.pretrainings.len() {
            head += &format!(
                ", about {} at {jobs} jobs if they share it evenly (--jobs)",
                duration(self.wall_seconds(jobs))
            );
        }
        if unmeasured > 0 && !head.contains("unknown") {
            head += &format!("; {unmeasured} with no measurement are not counted");
        }
        let mut lines = vec![head, self.cells_line()];
        lines.extend(self.pretrain_line());
        lines.push(self.measured_line(from));
        let targets = self.by_target();
        if targets.len() > 1 {
            let parts: Vec<String> = (targets.iter())
                .map(|(t, (s, u))| match u {
                    0 => format!("{t} {}", duration(*s)),
                    u => format!("{t} {} ({u} not measured)", duration(*s)),
                })
                .collect();
            lines.push(format!("  by target: {}", parts.join(", ")));
        }
        lines
    }

    fn cells_line(&self) -> String {
        let parts: Vec<String> = [
            (Basis::SameKind, "from measured cells of the same kind"),
            (
                Basis::Scaled,
                "scaled from their arm at another n_train or learning-rate grid",
            ),
            (
                Basis::OtherSources,
                "scaled from other sources of the same relation",
            ),
            (Basis::Unmeasured, "with no measurement (not counted)"),
        ]
        .into_iter()
        .filter(|(b, _)| self.count(*b) > 0)
        .map(|(b, said)| format!("{} {said}", self.count(b)))
        .collect();
        if self.count(Basis::Unmeasured) == self.cells.len() {
            return format!("  cells: {}", parts.join(", "));
        }
        format!(
            "  cells: {}; {}",
            duration(self.cell_seconds()),
            parts.join(", ")
        )
    }

    fn pretrain_line(&self) -> Option<String> {
        if self.pretrainings.is_empty() {
            return None;
        }
        let (known, unknown): (Vec<&PretrainEstimate>, Vec<&PretrainEstimate>) =
            self.pretrainings.iter().partition(|p| p.seconds.is_some());
        let mut said = Vec::new();
        if !known.is_empty() {
            let each: Vec<String> = (known.iter())
                .map(|p| format!("{} {}", p.source, duration(p.seconds.unwrap_or(0.0))))
                .collect();
            said.push(format!(
                "{} ({}), from the seconds the cache records for pre-training the same source, \
                 scaled by epochs × examples",
                duration(self.pretrain_seconds()),
                each.join(", ")
            ));
        }
        if !unknown.is_empty() {
            let sources: Vec<&str> = unknown.iter().map(|p| p.source.as_str()).collect();
            said.push(format!(
                "no pre-training of {} recorded in the cache (not counted)",
                sources.join(", ")
            ));
        }
        Some(format!("  pre-training: {}", said.join("; ")))
    }

    fn measured_line(&self, from: &Provenance) -> String {
        let mut line = match self.rows {
            0 => format!(
                "  measured: no finished rows in {}/*/",
                from.results.display()
            ),
            n => format!(
                "  measured: train_seconds of {n} finished row{} in {}/*/",
                plural(n),
                from.results.display()
            ),
        };
        if from.left_out > 0 {
            line += &format!(
                " ({} file{} that cannot be counted left out)",
                from.left_out,
                plural(from.left_out)
            );
        }
        let (elsewhere, cpus) = self.elsewhere();
        let measured = self.cells.len() - self.count(Basis::Unmeasured);
        line += &if measured == 0 {
            "; none of the same target, network, option and relation as an unfinished cell"
                .to_string()
        } else if elsewhere == 0 {
            format!(
                "; every one used measured on this machine's CPU, {}",
                from.here.cpu
            )
        } else {
            let cpus: Vec<&str> = cpus.into_iter().collect();
            format!(
                "; {elsewhere} of the {measured} cells from rows not measured on this machine's \
                 CPU ({}), which may run at another speed here; this machine's CPU is {}",
                cpus.join("; "),
                from.here.cpu
            )
        };
        line
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness_spec::{Modality, ModelSpec, PretrainSpec, SCRATCH, TransferOption};

    const CPU: &str = "Test CPU (family 6 model 1 stepping 1)";
    const OPTION2: TransferOption = TransferOption::FineTune;

    fn here() -> Here {
        Here {
            cpu: CPU.into(),
            backend: "flex".into(),
        }
    }

    /// A cell of the Transformer on `mnist` with the default budget (batch 32, 30 epochs, at
    /// least 200 steps, a fifth held out).
    fn cell(source: &str, option: TransferOption, n_train: usize) -> Cell {
        Cell {
            experiment: "planned".into(),
            target: "mnist".into(),
            source: source.into(),
            relation: if source == SCRATCH {
                Relation::None
            } else {
                Relation::Matched
            },
            option,
            n_train,
            seed: 0,
            model: ModelSpec::default(),
            finetune: FinetuneSpec::default(),
            tokenizer: None,
            pretrain_key: None,
            network: None,
            control: None,
            rate_choice: None,
            target_content: String::new(),
            fingerprint: format!("{source}-{option}-{n_train}"),
        }
    }

    /// The finished row `cell` would write if it took `seconds` on this machine.
    fn row(cell: &Cell, seconds: f64) -> ResultRow {
        let (m, ft) = (&cell.model, &cell.finetune);
        ResultRow {
            target: cell.target.clone(),
            source: cell.source.clone(),
            relation: cell.relation,
            option: cell.option.number().into(),
            n_train: cell.n_train as i64,
            architecture: Some(TRANSFORMER.into()),
            patch: m.patch as i64,
            d_model: m.d_model as i64,
            n_layers: m.n_layers as i64,
            n_heads: m.n_heads as i64,
            d_ff: m.d_ff as i64,
            dropout: m.dropout,
            batch_size: ft.batch_size as i64,
            epochs: ft.epochs as i64,
            min_steps: ft.min_steps as i64,
            evaluations: ft.evaluations as i64,
            patience: ft.patience as i64,
            validation_fraction: ft.validation_fraction,
            train_seconds: seconds,
            status: CellStatus::Ok,
            backend: "flex".into(),
            cpu: Some(CPU.into()),
            // Option 1 on cached features fits the probe by default, and its row says so.
            probe_c: harness_train::fits_probe(cell).then_some(1.0),
            ..ResultRow::default()
        }
    }

    fn one(cell: &Cell, rows: &[ResultRow]) -> CellEstimate {
        estimate(&[cell], &[], rows, &[], &here()).cells[0].clone()
    }

    #[test]
    fn a_cell_takes_the_mean_of_the_finished_rows_of_its_own_kind() {
        let planned = cell(SCRATCH, OPTION2, 50);
        let failed = ResultRow {
            status: CellStatus::Failed,
            ..row(&planned, 0.0)
        };
        let other_backend = ResultRow {
            backend: "tch".into(),
            ..row(&planned, 900.0)
        };
        let rows = [
            row(&planned, 10.0),
            row(&planned, 20.0),
            failed,
            other_backend,
            row(&cell("fashion-mnist", OPTION2, 50), 1000.0),
            row(&cell(SCRATCH, OPTION2, 1000), 1000.0),
        ];
        let e = one(&planned, &rows);
        assert_eq!(e.basis, Basis::SameKind);
        assert_eq!(e.seconds, Some(15.0));
        assert!(e.elsewhere.is_empty());
    }

    #[test]
    fn another_n_train_of_the_arm_is_scaled_by_its_step_budget_from_the_nearest_size() {
        // n = 1000: 800 to fit, 25 batches × 30 epochs = 750 steps; n = 2000: 1500 steps;
        // n = 50 and 100: the 200 steps of min_steps.
        let rows = [
            row(&cell(SCRATCH, OPTION2, 50), 100.0),
            row(&cell(SCRATCH, OPTION2, 1000), 75.0),
        ];
        let e = one(&cell(SCRATCH, OPTION2, 2000), &rows);
        assert_eq!(e.basis, Basis::Scaled);
        assert!((e.seconds.unwrap() - 150.0).abs() < 1e-9, "{e:?}");
        let e = one(&cell(SCRATCH, OPTION2, 100), &rows);
        assert_eq!(e.basis, Basis::Scaled);
        assert!((e.seconds.unwrap() - 100.0).abs() < 1e-9, "{e:?}");
    }

    #[test]
    fn a_learning_rate_grid_of_k_rates_costs_k_plus_one_fixed_rate_trainings() {
        let fixed = cell(SCRATCH, OPTION2, 50);
        let mut searching = fixed.clone();
        searching.finetune.search.option2_learning_rates = vec![1e-4, 1e-3, 1e-2];
        let e = one(&searching, &[row(&fixed, 10.0)]);
        assert_eq!(e.basis, Basis::Scaled);
        assert!((e.seconds.unwrap() - 40.0).abs() < 1e-9, "{e:?}");

        // The other way: a row that searched 3 rates (its `search` column) for a fixed cell.
        let searched = ResultRow {
            search: Some(
                r#"[{"learning_rate":1e-4},{"learning_rate":1e-3},{"learning_rate":1e-2}]"#.into(),
            ),
            ..row(&fixed, 40.0)
        };
        let e = one(&fixed, std::slice::from_ref(&searched));
        assert_eq!(e.basis, Basis::Scaled);
        assert!((e.seconds.unwrap() - 10.0).abs() < 1e-9, "{e:?}");
        assert_eq!(one(&searching, &[searched]).basis, Basis::SameKind);
    }

    #[test]
    fn other_sources_of_the_same_relation_stand_in_when_the_arm_has_no_row() {
        let rows = [
            row(&cell("kmnist", OPTION2, 50), 30.0),
            row(&cell(SCRATCH, OPTION2, 50), 1.0),
        ];
        let e = one(&cell("fashion-mnist", OPTION2, 50), &rows);
        assert_eq!(e.basis, Basis::OtherSources);
        assert_eq!(e.seconds, Some(30.0), "scratch is another relation");
    }

    #[test]
    fn cells_with_no_row_of_their_workload_and_budget_are_counted_not_guessed() {
        let planned = cell(SCRATCH, OPTION2, 50);
        let unlike = [
            ResultRow {
                target: "kmnist".into(),
                ..row(&planned, 10.0)
            },
            ResultRow {
                epochs: 5,
                ..row(&planned, 10.0)
            },
            ResultRow {
                d_model: 128,
                ..row(&planned, 10.0)
            },
            ResultRow {
                option: 1,
                ..row(&planned, 10.0)
            },
        ];
        let e = estimate(&[&planned], &[], &unlike, &[], &here());
        assert_eq!(e.cells[0].basis, Basis::Unmeasured);
        assert_eq!(e.cells[0].seconds, None);
        assert_eq!(e.count(Basis::Unmeasured), 1);
        assert_eq!(e.cell_seconds(), 0.0);
        let lines = e.lines(1, &provenance()).join("\n");
        assert!(
            lines.contains("unknown for 1 unfinished cell, none like them measured"),
            "{lines}"
        );
        assert!(lines.contains("none of the same target"), "{lines}");
    }

    fn provenance() -> Provenance<'static> {
        static HERE: std::sync::OnceLock<Here> = std::sync::OnceLock::new();
        Provenance {
            results: std::path::Path::new("results"),
            left_out: 0,
            here: HERE.get_or_init(here),
        }
    }

    #[test]
    fn cells_on_cached_features_are_averaged_over_their_arm_at_any_size() {
        // The n = 50 cell computed the frozen features; the others reused them.
        let option1 = TransferOption::Freeze;
        let rows = [
            row(&cell(SCRATCH, option1, 50), 40.0),
            row(&cell(SCRATCH, option1, 200), 0.0),
        ];
        let e = one(&cell(SCRATCH, option1, 1000), &rows);
        assert_eq!(e.basis, Basis::SameKind);
        assert_eq!(e.seconds, Some(20.0));
    }

    #[test]
    fn rows_of_this_cpu_come_first_and_rows_of_another_are_named() {
        let planned = cell(SCRATCH, OPTION2, 50);
        let elsewhere = ResultRow {
            cpu: Some("Other CPU".into()),
            ..row(&planned, 100.0)
        };
        let e = one(&planned, &[row(&planned, 10.0), elsewhere.clone()]);
        assert_eq!(e.seconds, Some(10.0));
        assert!(e.elsewhere.is_empty());

        let e = estimate(&[&planned], &[], &[elsewhere], &[], &here());
        assert_eq!(e.cells[0].seconds, Some(100.0));
        assert_eq!(e.elsewhere().0, 1);
        let lines = e.lines(1, &provenance()).join("\n");
        assert!(
            lines.contains(
                "1 of the 1 cells from rows not measured on this machine's CPU (Other CPU)"
            ),
            "{lines}"
        );
    }

    #[test]
    fn a_pretraining_is_scaled_by_epochs_and_examples_from_a_recorded_one_of_its_source() {
        let recorded = PretrainMeta {
            key: "k".into(),
            source: "fashion-mnist".into(),
            source_sha256: String::new(),
            examples: 60_000,
            epochs: 3,
            source_test_accuracy: 0.9,
            seconds: 300.0,
            harness_version: String::new(),
            weights_sha256: None,
            files_sha256: None,
        };
        let job = |source: &str, epochs: usize, max_examples: usize| PretrainJob {
            source: source.into(),
            modality: Modality::Image,
            model: ModelSpec::default(),
            pretrain: PretrainSpec {
                epochs,
                max_examples,
                ..PretrainSpec::default()
            },
            tokenizer: None,
            source_content: String::new(),
            key: format!("{source}-{epochs}-{max_examples}"),
        };
        let jobs = [
            job("fashion-mnist", 6, 30_000),
            job("fashion-mnist", 3, 0),
            job("kmnist", 3, 0),
        ];
        let jobs: Vec<&PretrainJob> = jobs.iter().collect();
        let e = estimate(&[], &jobs, &[], &[recorded], &here());
        let seconds: Vec<Option<f64>> = e.pretrainings.iter().map(|p| p.seconds).collect();
        assert_eq!(seconds, [Some(300.0), Some(300.0), None]);
    }

    #[test]
    fn the_wall_clock_at_n_jobs_is_the_total_over_n_but_never_below_the_longest_task() {
        let rows = [
            row(&cell(SCRATCH, OPTION2, 50), 60.0),
            row(&cell(SCRATCH, OPTION2, 1000), 600.0),
        ];
        let small = cell(SCRATCH, OPTION2, 50);
        let large = cell(SCRATCH, OPTION2, 1000);
        let e = estimate(&[&small, &small, &large], &[], &rows, &[], &here());
        assert_eq!(e.cell_seconds(), 720.0);
        assert_eq!(e.wall_seconds(1), 720.0);
        assert_eq!(e.wall_seconds(2), 600.0);
        let head = &e.lines(2, &provenance())[0];
        assert_eq!(
            head,
            "estimated time of `harness run`: 12 min of training for 3 unfinished cells, about 10 min at 2 jobs if they share it evenly (--jobs)"
        );
    }

    #[test]
    fn durations_read_in_seconds_minutes_or_hours_and_minutes() {
        assert_eq!(duration(45.2), "45 s");
        assert_eq!(duration(12.0 * 60.0 + 10.0), "12 min");
        assert_eq!(duration(102.0 * 60.0), "1 h 42 min");
    }
}
