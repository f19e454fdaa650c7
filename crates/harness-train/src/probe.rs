//! The linear probe: ℓ2-regularised multinomial logistic regression on standardised features,
//! in plain `f64` Rust, with the regularisation chosen on a validation split.
//!
//! It minimises exactly the objective of scikit-learn's
//! `LogisticRegression(C=c, l1_ratio=0, solver="lbfgs", fit_intercept=True)` (`l1_ratio=0` is
//! the `penalty="l2"` that scikit-learn 1.8 deprecated): with `n` fitting rows `xᵢ`, labels `yᵢ`
//! and `k` classes,
//!
//! ```text
//! k ≥ 3:  (1/n) Σᵢ [ log Σⱼ exp(zᵢⱼ) − zᵢ,yᵢ ]  +  ‖W‖²_F / (2·C·n),   zᵢ = W xᵢ + b  (W: k × d)
//! k = 2:  (1/n) Σᵢ [ log(1 + exp(zᵢ)) − yᵢ zᵢ ]  +  ‖w‖²   / (2·C·n),   zᵢ = w·xᵢ + b
//! ```
//!
//! that is `C · Σᵢ lossᵢ + ½‖W‖²` divided by `C·n`: the loss is summed over rows, `C` scales
//! the loss, the penalty is ½‖W‖², and **the intercepts are not penalised**
//! (scikit-learn `linear_model/_logistic.py` sets `l2_reg_strength = 1.0 / (C * sw_sum)` for
//! lbfgs, and `_linear_loss.py`'s `LinearModelLoss` is the mean loss plus
//! `0.5 * l2_reg_strength * ||coef||²` over the weights only). With two classes scikit-learn
//! fits the binomial model above, not a two-row softmax, and so does this module: row 0 of
//! the weights and bias is pinned at zero and row 1 is scikit-learn's `coef_[0]` and
//! `intercept_[0]` (the softmax of `[0, z]` is the sigmoid of `z`). With three or more classes
//! the intercepts are defined up to a common shift, which the objective does not see; they are
//! returned centred (summing to zero), where a solver started from zeros leaves them.
//!
//! The solver is L-BFGS from zeros with a strong-Wolfe line search, deterministic (one thread,
//! a fixed order of summation), to a gradient max-norm of `1e-10` (relative to the gradient at
//! zero, and at least absolute); it gives up after a bounded number of iterations with
//! [`ProbeError::NotConverged`], never loops. `tests/probe_reference.rs` checks weights,
//! intercepts and held-out probabilities against scikit-learn to `1e-4`, on the features of
//! `tests/fixtures/probe_reference.json` (written by `tests/fixtures/make_probe_reference.py`).
//!
//! The protocol around it (VTAB's, Kornblith et al. 2019): standardise with statistics of the
//! fitting rows, fit each `C` of a grid, choose on validation ([`select_c`]), then refit on
//! fitting + validation rows (standardised afresh) with the chosen `C` and test once. The test
//! set is never an argument of anything here.
//!
//! ```
//! use harness_train::{LabelledRows, FeatureRows, Standardisation, select_c};
//! # fn main() -> Result<(), harness_train::ProbeError> {
//! let fit_x = [0.0, 1.0, 0.2, 0.9, 1.0, 0.1, 0.9, 0.0];
//! let val_x = [0.1, 1.0, 1.0, 0.2];
//! let scale = Standardisation::fit(&fit_x, 2)?;
//! let (fit_z, val_z) = (scale.standardise(&fit_x)?, scale.standardise(&val_x)?);
//! let fit = LabelledRows::new(FeatureRows::new(&fit_z, 2)?, &[0, 0, 1, 1])?;
//! let validation = LabelledRows::new(FeatureRows::new(&val_z, 2)?, &[0, 1])?;
//! let selection = select_c(&[0.01, 1.0, 100.0], fit, validation, 2)?;
//! assert_eq!(selection.chosen.probe.predict(validation.features), vec![0, 1]);
//! # Ok(()) }
//! ```

use std::fmt;

/// Row-major feature rows, `len() × dim()`.
#[derive(Debug, Clone, Copy)]
pub struct FeatureRows<'a> {
    values: &'a [f64],
    dim: usize,
}

impl<'a> FeatureRows<'a> {
    /// `values` read as rows of `dim` features each.
    pub fn new(values: &'a [f64], dim: usize) -> Result<Self, ProbeError> {
        check_shape(values.len(), dim, "feature rows")?;
        Ok(Self { values, dim })
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.values.len() / self.dim
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The number of features of a row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &'a [f64] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }

    /// All values, row after row.
    pub fn values(&self) -> &'a [f64] {
        self.values
    }
}

/// Feature rows with one label (a class index) per row.
#[derive(Debug, Clone, Copy)]
pub struct LabelledRows<'a> {
    pub features: FeatureRows<'a>,
    pub labels: &'a [u16],
}

impl<'a> LabelledRows<'a> {
    /// Pairs rows with their labels; the counts must agree.
    pub fn new(features: FeatureRows<'a>, labels: &'a [u16]) -> Result<Self, ProbeError> {
        if features.len() != labels.len() {
            return Err(ProbeError::Shape(format!(
                "{} feature rows but {} labels",
                features.len(),
                labels.len()
            )));
        }
        Ok(Self { features, labels })
    }
}

/// Per-feature mean and standard deviation of the fitting rows, applied to any rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardisation {
    /// Mean of each feature over the fitting rows.
    pub mean: Vec<f64>,
    /// Population standard deviation (divisor `n`, as scikit-learn's `StandardScaler`) of each
    /// feature over the fitting rows; 1 for a feature that is constant there.
    pub std: Vec<f64>,
}

impl Standardisation {
    /// The statistics of `fit_rows`, row-major with `dim` features per row (`f32` or `f64`).
    pub fn fit<T: Copy + Into<f64>>(fit_rows: &[T], dim: usize) -> Result<Self, ProbeError> {
        check_shape(fit_rows.len(), dim, "fitting rows")?;
        let n = fit_rows.len() / dim;
        if n == 0 {
            return Err(ProbeError::Empty("fitting rows to standardise"));
        }
        if let Some(i) = fit_rows.iter().position(|v| !(*v).into().is_finite()) {
            return Err(ProbeError::NonFinite {
                what: "fitting rows to standardise",
                row: i / dim,
                column: i % dim,
            });
        }
        // Column sums row after row: a fixed order of summation per feature.
        let rows = || fit_rows.chunks_exact(dim);
        let mut mean = vec![0.0; dim];
        for row in rows() {
            mean.iter_mut()
                .zip(row)
                .for_each(|(m, v)| *m += (*v).into());
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut var = vec![0.0; dim];
        let mut constant = vec![true; dim];
        let first = &fit_rows[..dim];
        for row in rows() {
            for j in 0..dim {
                let v: f64 = row[j].into();
                var[j] += (v - mean[j]) * (v - mean[j]);
                constant[j] &= v == first[j].into();
            }
        }
        let std = var
            .iter()
            .zip(&constant)
            .map(|(v, &constant)| {
                let s = (v / n as f64).sqrt();
                if constant || s == 0.0 { 1.0 } else { s }
            })
            .collect();
        Ok(Self { mean, std })
    }

    /// `(x − mean) / std` of every feature of `rows` (row-major, the fitted width).
    pub fn standardise<T: Copy + Into<f64>>(&self, rows: &[T]) -> Result<Vec<f64>, ProbeError> {
        let dim = self.mean.len();
        check_shape(rows.len(), dim, "rows to standardise")?;
        Ok(rows
            .iter()
            .enumerate()
            .map(|(i, v)| ((*v).into() - self.mean[i % dim]) / self.std[i % dim])
            .collect())
    }
}

/// A fitted linear classifier: logits `W x + b`, probabilities their softmax.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticProbe {
    pub classes: usize,
    pub dim: usize,
    /// `classes × dim`, row-major: row `j` weighs the features for class `j`.
    pub weights: Vec<f64>,
    /// One intercept per class.
    pub bias: Vec<f64>,
}

impl LogisticProbe {
    /// The weights of class `j`.
    pub fn weight_row(&self, j: usize) -> &[f64] {
        &self.weights[j * self.dim..(j + 1) * self.dim]
    }

    /// The logits of one row into `out` (`classes` long).
    pub fn logits(&self, x: &[f64], out: &mut [f64]) {
        for (j, z) in out.iter_mut().enumerate() {
            *z = self.bias[j] + dot(self.weight_row(j), x);
        }
    }

    /// Class probabilities of every row, row-major `rows.len() × classes`.
    pub fn probabilities(&self, rows: FeatureRows) -> Vec<f64> {
        self.check_width(rows);
        let mut out = vec![0.0; rows.len() * self.classes];
        for (i, p) in out.chunks_exact_mut(self.classes).enumerate() {
            self.logits(rows.row(i), p);
            let lse = log_sum_exp(p);
            p.iter_mut().for_each(|z| *z = (*z - lse).exp());
        }
        out
    }

    /// The most probable class of every row; a tie goes to the lowest class index.
    pub fn predict(&self, rows: FeatureRows) -> Vec<u16> {
        self.check_width(rows);
        let mut z = vec![0.0; self.classes];
        (0..rows.len())
            .map(|i| {
                self.logits(rows.row(i), &mut z);
                argmax(&z) as u16
            })
            .collect()
    }

    /// Accuracy and mean log-loss on labelled rows.
    pub fn score(&self, data: LabelledRows) -> ProbeScore {
        self.check_width(data.features);
        let mut z = vec![0.0; self.classes];
        let (mut correct, mut loss) = (0, 0.0);
        for (i, &y) in data.labels.iter().enumerate() {
            self.logits(data.features.row(i), &mut z);
            correct += usize::from(argmax(&z) == usize::from(y));
            loss += log_sum_exp(&z) - z[usize::from(y)];
        }
        let n = data.labels.len();
        ProbeScore {
            correct,
            rows: n,
            accuracy: correct as f64 / n as f64,
            log_loss: loss / n as f64,
        }
    }

    fn check_width(&self, rows: FeatureRows) {
        assert_eq!(
            rows.dim(),
            self.dim,
            "rows of {} features given to a probe fitted on {} features",
            rows.dim(),
            self.dim
        );
    }
}

/// How well a probe does on labelled rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeScore {
    pub correct: usize,
    pub rows: usize,
    pub accuracy: f64,
    /// Mean of `−log p(yᵢ | xᵢ)`, computed from the logits (never infinite, never clipped).
    pub log_loss: f64,
}

/// What the solver did for one fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SolverReport {
    /// L-BFGS iterations (accepted steps).
    pub iterations: usize,
    /// Evaluations of the objective and its gradient, line searches included.
    pub evaluations: usize,
    /// The objective at the returned point (the per-row mean form of the module doc).
    pub objective: f64,
    /// The largest gradient component at the returned point.
    pub gradient_max: f64,
    /// The largest gradient component that counts as converged.
    pub tolerance: f64,
}

/// A fitted probe and how its solver got there.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticFit {
    pub c: f64,
    pub probe: LogisticProbe,
    pub solver: SolverReport,
}

/// The L-BFGS settings of a fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeSolver {
    /// Converged when the gradient's max-norm is at most this times
    /// `max(1, max-norm of the gradient at zero)`.
    pub gradient_tolerance: f64,
    /// Give up (with [`ProbeError::NotConverged`]) after this many iterations.
    pub max_iterations: usize,
    /// Correction pairs L-BFGS keeps.
    pub memory: usize,
}

impl Default for ProbeSolver {
    fn default() -> Self {
        Self {
            gradient_tolerance: 1e-10,
            max_iterations: 20_000,
            memory: 10,
        }
    }
}

/// Why a probe could not be fitted.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeError {
    /// Counts that do not fit together (values vs width, rows vs labels).
    Shape(String),
    /// A set that must not be empty is.
    Empty(&'static str),
    /// A NaN or infinite feature.
    NonFinite {
        what: &'static str,
        row: usize,
        column: usize,
    },
    /// A label that is not a class index.
    Label {
        row: usize,
        label: u16,
        classes: usize,
    },
    /// Fewer than two classes.
    Classes(usize),
    /// A regularisation strength that is not a positive finite number.
    InvalidC(f64),
    /// The solver stopped short of the gradient tolerance; `last` is where it stopped.
    NotConverged {
        reason: &'static str,
        last: Box<LogisticFit>,
    },
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shape(what) => write!(f, "linear probe: {what}"),
            Self::Empty(what) => write!(f, "linear probe: no {what}"),
            Self::NonFinite { what, row, column } => write!(
                f,
                "linear probe: {what}: row {row}, feature {column} is not a finite number\n\
                 help: the features feeding a probe must be finite; look for a diverged network"
            ),
            Self::Label {
                row,
                label,
                classes,
            } => write!(
                f,
                "linear probe: label {label} at row {row} is not a class of 0..{classes}"
            ),
            Self::Classes(k) => write!(
                f,
                "linear probe: {k} class(es); a classifier needs at least 2"
            ),
            Self::InvalidC(c) => write!(
                f,
                "linear probe: C = {c} is not a positive finite number\n\
                 help: C is the inverse regularisation strength, e.g. a grid of 0.001 to 1000"
            ),
            Self::NotConverged { reason, last } => write!(
                f,
                "linear probe: C = {}: {reason} after {} iterations, with the largest gradient \
                 component {:.3e} above the tolerance {:.3e}\n\
                 help: a very large C on separable features converges slowly; use a smaller C \
                 or raise ProbeSolver::max_iterations",
                last.c, last.solver.iterations, last.solver.gradient_max, last.solver.tolerance
            ),
        }
    }
}

impl std::error::Error for ProbeError {}

/// The validation score of one grid point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeGridScore {
    pub c: f64,
    pub validation: ProbeScore,
    pub iterations: usize,
}

/// The regularisation chosen on validation, the probe fitted with it, and every grid point.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSelection {
    pub chosen_c: f64,
    /// The probe fitted on the fitting rows with `chosen_c`.
    pub chosen: LogisticFit,
    /// One per grid value, in the grid's order.
    pub scores: Vec<ProbeGridScore>,
}

/// Fits the probe of the module doc with the default [`ProbeSolver`].
pub fn fit_logistic(
    x: FeatureRows,
    y: &[u16],
    classes: usize,
    c: f64,
) -> Result<LogisticFit, ProbeError> {
    ProbeSolver::default().fit(LabelledRows::new(x, y)?, classes, c)
}

/// Chooses `C` from `grid` on `validation` with the default [`ProbeSolver`]; see
/// [`ProbeSolver::select_c`].
pub fn select_c(
    grid: &[f64],
    fit: LabelledRows,
    validation: LabelledRows,
    classes: usize,
) -> Result<ProbeSelection, ProbeError> {
    ProbeSolver::default().select_c(grid, fit, validation, classes)
}

impl ProbeSolver {
    /// Fits the probe of the module doc on `data` (standardised features) with strength `c`.
    pub fn fit(
        &self,
        data: LabelledRows,
        classes: usize,
        c: f64,
    ) -> Result<LogisticFit, ProbeError> {
        let objective = Objective::new(data, classes, c)?;
        let start = vec![0.0; objective.parameters()];
        let (theta, solver, failure) = self.minimise(&objective, start);
        let fit = LogisticFit {
            c,
            probe: objective.probe(&theta),
            solver,
        };
        match failure {
            None => Ok(fit),
            Some(reason) => Err(ProbeError::NotConverged {
                reason,
                last: Box::new(fit),
            }),
        }
    }

    /// Fits every `C` of `grid` on `fit` and keeps the best on `validation`: the highest
    /// validation accuracy; among equals the lowest validation log-loss; among equals the
    /// smaller `C` (the stronger regularisation). Every row of both sets counts; the test set
    /// is not an argument, so it cannot make the choice. A grid value whose fit fails (e.g.
    /// [`ProbeError::NotConverged`]) fails the selection with that error.
    pub fn select_c(
        &self,
        grid: &[f64],
        fit: LabelledRows,
        validation: LabelledRows,
        classes: usize,
    ) -> Result<ProbeSelection, ProbeError> {
        if grid.is_empty() {
            return Err(ProbeError::Empty("values of C to choose from"));
        }
        if validation.labels.is_empty() {
            return Err(ProbeError::Empty("validation rows"));
        }
        check_labels(validation.labels, classes)?;
        let mut fits = Vec::with_capacity(grid.len());
        let mut scores = Vec::with_capacity(grid.len());
        for &c in grid {
            let fitted = self.fit(fit, classes, c)?;
            scores.push(ProbeGridScore {
                c,
                validation: fitted.probe.score(validation),
                iterations: fitted.solver.iterations,
            });
            fits.push(fitted);
        }
        let best = best_point(&scores);
        Ok(ProbeSelection {
            chosen_c: scores[best].c,
            chosen: fits.swap_remove(best),
            scores,
        })
    }

    /// L-BFGS from `theta`; returns the last point, the report, and why it stopped short if it
    /// did.
    fn minimise(
        &self,
        objective: &Objective,
        mut theta: Vec<f64>,
    ) -> (Vec<f64>, SolverReport, Option<&'static str>) {
        let len = theta.len();
        let mut grad = vec![0.0; len];
        let mut f = objective.value_gradient(&theta, &mut grad);
        let tolerance = self.gradient_tolerance * max_abs(&grad).max(1.0);
        let mut report = SolverReport {
            iterations: 0,
            evaluations: 1,
            objective: f,
            gradient_max: max_abs(&grad),
            tolerance,
        };
        let mut memory = Corrections::new(self.memory);
        let mut direction = vec![0.0; len];
        let mut trial = LinePoint::new(len);
        let failure = loop {
            if report.gradient_max <= tolerance {
                break None;
            }
            if report.iterations >= self.max_iterations {
                break Some("the iteration limit was reached");
            }
            memory.direction(&grad, &mut direction);
            let mut slope = dot(&grad, &direction);
            if slope.is_nan() || slope >= 0.0 {
                // Not a descent direction: forget the curvature, follow the gradient.
                memory.clear();
                memory.direction(&grad, &mut direction);
                slope = dot(&grad, &direction);
            }
            // Without curvature pairs the direction is the gradient itself: the first trial
            // moves by one unit, as L-BFGS-B's first step does.
            let first = if memory.is_empty() {
                1.0 / norm(&grad)
            } else {
                1.0
            };
            let search = LineSearch {
                objective,
                theta: &theta,
                f,
                slope,
                direction: &direction,
            };
            if !search.run(first, &mut trial, &mut report.evaluations) {
                if memory.is_empty() {
                    break Some("the line search found no acceptable step");
                }
                // The quasi-Newton direction failed: forget the curvature and retry along
                // the gradient before giving up.
                memory.clear();
                continue;
            }
            memory.push(&theta, &trial.theta, &grad, &trial.grad);
            std::mem::swap(&mut theta, &mut trial.theta);
            std::mem::swap(&mut grad, &mut trial.grad);
            f = trial.f;
            report.iterations += 1;
            report.objective = f;
            report.gradient_max = max_abs(&grad);
        };
        (theta, report, failure)
    }
}

/// The index of the best grid point under [`ProbeSolver::select_c`]'s rule.
fn best_point(scores: &[ProbeGridScore]) -> usize {
    let mut best = 0;
    for (i, s) in scores.iter().enumerate().skip(1) {
        let b = &scores[best];
        let better = (s.validation.correct, b.validation.log_loss, b.c)
            > (b.validation.correct, s.validation.log_loss, s.c);
        if better {
            best = i;
        }
    }
    best
}

/// The objective of the module doc over the free parameters: the weights of the free rows
/// (row-major), then their intercepts. With two classes only row 1 is free.
struct Objective<'a> {
    data: LabelledRows<'a>,
    classes: usize,
    first_free: usize,
    /// `1 / (C·n)`.
    l2: f64,
}

impl<'a> Objective<'a> {
    fn new(data: LabelledRows<'a>, classes: usize, c: f64) -> Result<Self, ProbeError> {
        if classes < 2 {
            return Err(ProbeError::Classes(classes));
        }
        if !(c > 0.0 && c.is_finite()) {
            return Err(ProbeError::InvalidC(c));
        }
        let n = data.labels.len();
        if n == 0 {
            return Err(ProbeError::Empty("fitting rows"));
        }
        check_labels(data.labels, classes)?;
        if let Some(i) = data.features.values().iter().position(|v| !v.is_finite()) {
            return Err(ProbeError::NonFinite {
                what: "fitting rows",
                row: i / data.features.dim(),
                column: i % data.features.dim(),
            });
        }
        Ok(Self {
            data,
            classes,
            first_free: usize::from(classes == 2),
            l2: 1.0 / (c * n as f64),
        })
    }

    fn free_rows(&self) -> usize {
        self.classes - self.first_free
    }

    fn parameters(&self) -> usize {
        self.free_rows() * (self.data.features.dim() + 1)
    }

    /// The probe that `theta` parameterises.
    fn probe(&self, theta: &[f64]) -> LogisticProbe {
        let d = self.data.features.dim();
        let (w, b) = theta.split_at(self.free_rows() * d);
        let mut weights = vec![0.0; self.first_free * d];
        weights.extend_from_slice(w);
        let mut bias = vec![0.0; self.first_free];
        bias.extend_from_slice(b);
        if self.first_free == 0 {
            let shift = bias.iter().sum::<f64>() / bias.len() as f64;
            bias.iter_mut().for_each(|v| *v -= shift);
        }
        LogisticProbe {
            classes: self.classes,
            dim: d,
            weights,
            bias,
        }
    }

    /// The objective at `theta`, with its gradient written into `grad`. Rows go through in
    /// blocks of [`BLOCK`], which share each weight loaded; every sum is still taken in the
    /// order of a row-by-row pass (see [`dot_block`] and [`axpy_block`]).
    fn value_gradient(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let x = self.data.features;
        let (d, k, free, rows) = (x.dim(), self.classes, self.first_free, self.free_rows());
        let n = self.data.labels.len();
        let (w, b) = theta.split_at(rows * d);
        grad.iter_mut().for_each(|g| *g = 0.0);
        let (gw, gb) = grad.split_at_mut(rows * d);
        let mut z = vec![0.0; BLOCK * k];
        let mut residual = vec![0.0; rows * BLOCK];
        let mut loss = 0.0;
        for start in (0..n).step_by(BLOCK) {
            let m = BLOCK.min(n - start);
            let xb: [&[f64]; BLOCK] = std::array::from_fn(|i| x.row(start + i.min(m - 1)));
            for r in 0..rows {
                let dots = dot_block(&w[r * d..(r + 1) * d], &xb, m);
                for i in 0..m {
                    z[i * k + free + r] = b[r] + dots[i];
                }
            }
            for (i, &y) in self.data.labels[start..start + m].iter().enumerate() {
                let zi = &mut z[i * k..(i + 1) * k];
                zi[..free].iter_mut().for_each(|v| *v = 0.0);
                let lse = log_sum_exp(zi);
                let y = usize::from(y);
                loss += lse - zi[y];
                for r in 0..rows {
                    let j = r + free;
                    residual[r * BLOCK + i] = (zi[j] - lse).exp() - f64::from(u8::from(j == y));
                }
            }
            for r in 0..rows {
                let coefficients = &residual[r * BLOCK..r * BLOCK + m];
                gb[r] = coefficients.iter().fold(gb[r], |g, c| g + c);
                axpy_block(coefficients, &xb, &mut gw[r * d..(r + 1) * d]);
            }
        }
        let scale = 1.0 / n as f64;
        grad.iter_mut().for_each(|g| *g *= scale);
        let (gw, _) = grad.split_at_mut(rows * d);
        axpy(self.l2, w, gw);
        loss * scale + 0.5 * self.l2 * dot(w, w)
    }
}

/// Rows per block in the objective's pass over the data.
const BLOCK: usize = 4;

/// `dot(w, xs[i])` for the first `m` rows of a block, each bit for bit as [`dot`] sums it,
/// with every chunk of `w` loaded once for the whole block.
fn dot_block(w: &[f64], xs: &[&[f64]; BLOCK], m: usize) -> [f64; BLOCK] {
    if m < BLOCK {
        return std::array::from_fn(|i| if i < m { dot(w, xs[i]) } else { 0.0 });
    }
    let len = w.len();
    let body = len - len % 4;
    let xs: [&[f64]; BLOCK] = std::array::from_fn(|i| &xs[i][..len]);
    let mut s = [[0.0; 4]; BLOCK];
    for c in (0..body).step_by(4) {
        let wc = &w[c..c + 4];
        for (si, x) in s.iter_mut().zip(&xs) {
            let xc = &x[c..c + 4];
            for l in 0..4 {
                si[l] += wc[l] * xc[l];
            }
        }
    }
    std::array::from_fn(|i| {
        let tail: f64 = w[body..]
            .iter()
            .zip(&xs[i][body..])
            .map(|(a, b)| a * b)
            .sum();
        (s[i][0] + s[i][1]) + (s[i][2] + s[i][3]) + tail
    })
}

/// `y += a[i]·xs[i]` for the rows of a block in turn, bit for bit as that many [`axpy`]s, with
/// every element of `y` loaded and stored once for the whole block.
fn axpy_block(a: &[f64], xs: &[&[f64]; BLOCK], y: &mut [f64]) {
    if a.len() < BLOCK {
        for (ai, x) in a.iter().zip(xs) {
            axpy(*ai, x, y);
        }
        return;
    }
    let len = y.len();
    let [x0, x1, x2, x3] = xs.map(|x| &x[..len]);
    for j in 0..len {
        y[j] = y[j] + a[0] * x0[j] + a[1] * x1[j] + a[2] * x2[j] + a[3] * x3[j];
    }
}

/// A trial point of a line search: parameters, objective, gradient.
struct LinePoint {
    theta: Vec<f64>,
    grad: Vec<f64>,
    f: f64,
}

impl LinePoint {
    fn new(len: usize) -> Self {
        Self {
            theta: vec![0.0; len],
            grad: vec![0.0; len],
            f: 0.0,
        }
    }
}

/// A line search along `direction` from `theta` for a step that satisfies the strong Wolfe
/// conditions (Nocedal & Wright, algorithms 3.5 and 3.6). The sufficient-decrease test allows
/// the rounding noise of the objective (`1e-12` of its size): close to the optimum the
/// objective stops changing in `f64` while its gradient still carries information, and the
/// curvature condition, on gradients alone, then decides.
struct LineSearch<'a> {
    objective: &'a Objective<'a>,
    theta: &'a [f64],
    f: f64,
    slope: f64,
    direction: &'a [f64],
}

/// The sufficient-decrease constant of the Wolfe conditions.
const WOLFE_DECREASE: f64 = 1e-4;
/// The curvature constant of the strong Wolfe conditions (0.9, as usual for quasi-Newton).
const WOLFE_CURVATURE: f64 = 0.9;
/// Evaluations one line search may spend (scikit-learn gives L-BFGS-B 50).
const LINE_SEARCH_EVALUATIONS: usize = 50;

impl LineSearch<'_> {
    /// Whether a step was accepted; the point it reached is then in `trial`.
    fn run(&self, first: f64, trial: &mut LinePoint, evaluations: &mut usize) -> bool {
        let noise = 1e-12 * self.f.abs().max(f64::MIN_POSITIVE);
        // The ends of the bracket: (step, objective, slope); `high` is absent until a step
        // too long has been seen.
        let mut low = (0.0, self.f, self.slope);
        let mut high: Option<(f64, f64, f64)> = None;
        let mut step = first;
        for _ in 0..LINE_SEARCH_EVALUATIONS {
            let (f, slope) = self.evaluate(step, trial);
            *evaluations += 1;
            if !f.is_finite() {
                high = Some((step, f64::INFINITY, f64::INFINITY));
            } else if f > self.f + WOLFE_DECREASE * step * self.slope + noise || f > low.1 + noise {
                high = Some((step, f, slope));
            } else if slope.abs() <= -WOLFE_CURVATURE * self.slope {
                return true;
            } else if slope > 0.0 {
                high = Some((step, f, slope));
            } else {
                low = (step, f, slope);
            }
            step = match high {
                None => 2.0 * step,
                Some(hi) => {
                    let width = hi.0 - low.0;
                    if width.abs() <= f64::EPSILON * hi.0.abs().max(low.0.abs()) {
                        return false;
                    }
                    // A zero of the slope by secant when it changes sign across the bracket
                    // (the objective is convex, so the slope grows along the line), else the
                    // midpoint; kept away from the ends.
                    let secant = if low.2 < 0.0 && hi.2 > 0.0 && hi.2.is_finite() {
                        low.0 - low.2 * width / (hi.2 - low.2)
                    } else {
                        low.0 + 0.5 * width
                    };
                    let (a, b) = (low.0 + 0.1 * width, hi.0 - 0.1 * width);
                    secant.clamp(a.min(b), a.max(b))
                }
            };
        }
        false
    }

    /// The objective and the slope along the line at `step`, with the point in `trial`.
    fn evaluate(&self, step: f64, trial: &mut LinePoint) -> (f64, f64) {
        for ((t, x), p) in trial.theta.iter_mut().zip(self.theta).zip(self.direction) {
            *t = x + step * p;
        }
        trial.f = self.objective.value_gradient(&trial.theta, &mut trial.grad);
        (trial.f, dot(&trial.grad, self.direction))
    }
}

/// The last `capacity` correction pairs `(s, y)` of L-BFGS, oldest first.
struct Corrections {
    capacity: usize,
    pairs: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)>,
    alpha: Vec<f64>,
}

impl Corrections {
    fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            pairs: std::collections::VecDeque::new(),
            alpha: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    fn clear(&mut self) {
        self.pairs.clear();
    }

    /// Records the step from `(x0, g0)` to `(x1, g1)` if its curvature is positive.
    fn push(&mut self, x0: &[f64], x1: &[f64], g0: &[f64], g1: &[f64]) {
        let s: Vec<f64> = x1.iter().zip(x0).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g1.iter().zip(g0).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy.is_nan() || sy <= f64::EPSILON * norm(&s) * norm(&y) {
            return;
        }
        if self.pairs.len() == self.capacity {
            self.pairs.pop_front();
        }
        self.pairs.push_back((s, y, 1.0 / sy));
    }

    /// The two-loop recursion: `out = −H g`, with `H` the L-BFGS inverse-Hessian estimate
    /// (scaled by `s·y / y·y` of the newest pair). With no pairs, `out = −g`.
    fn direction(&mut self, grad: &[f64], out: &mut [f64]) {
        out.iter_mut().zip(grad).for_each(|(o, g)| *o = -g);
        self.alpha.clear();
        for (s, y, rho) in self.pairs.iter().rev() {
            let a = rho * dot(s, out);
            axpy(-a, y, out);
            self.alpha.push(a);
        }
        if let Some((s, y, _)) = self.pairs.back() {
            let gamma = dot(s, y) / dot(y, y);
            out.iter_mut().for_each(|o| *o *= gamma);
        }
        for ((s, y, rho), a) in self.pairs.iter().zip(self.alpha.iter().rev()) {
            let b = rho * dot(y, out);
            axpy(a - b, s, out);
        }
    }
}

fn check_shape(len: usize, dim: usize, what: &str) -> Result<(), ProbeError> {
    if dim == 0 || !len.is_multiple_of(dim) {
        return Err(ProbeError::Shape(format!(
            "{what}: {len} values do not make rows of {dim} features"
        )));
    }
    Ok(())
}

fn check_labels(labels: &[u16], classes: usize) -> Result<(), ProbeError> {
    match labels.iter().position(|&y| usize::from(y) >= classes) {
        Some(row) => Err(ProbeError::Label {
            row,
            label: labels[row],
            classes,
        }),
        None => Ok(()),
    }
}

/// The first index of the largest value.
pub(crate) fn argmax(z: &[f64]) -> usize {
    let mut best = 0;
    for (j, v) in z.iter().enumerate().skip(1) {
        if *v > z[best] {
            best = j;
        }
    }
    best
}

pub(crate) fn log_sum_exp(z: &[f64]) -> f64 {
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// `Σ aᵢbᵢ` in four interleaved partial sums, added in a fixed order: deterministic, and
/// fast enough to vectorise.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let mut s = [0.0; 4];
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = a4
        .remainder()
        .iter()
        .zip(b4.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a4.zip(b4) {
        for l in 0..4 {
            s[l] += x[l] * y[l];
        }
    }
    (s[0] + s[1]) + (s[2] + s[3]) + tail
}

/// `y += a·x`.
fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
}

fn norm(v: &[f64]) -> f64 {
    dot(v, v).sqrt()
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny 3-class problem: 12 rows of 3 features, deterministic and not separable.
    fn tiny(classes: usize) -> (Vec<f64>, Vec<u16>) {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..12u16 {
            let t = f64::from(i);
            x.extend([
                (t * 0.7).sin(),
                (t * 1.3).cos() - 0.2,
                (t * 0.37).sin() * 2.0,
            ]);
            y.push(i % classes as u16);
        }
        (x, y)
    }

    fn gradient_max_at(fit: &LogisticFit, data: LabelledRows) -> f64 {
        let objective = Objective::new(data, fit.probe.classes, fit.c).unwrap();
        let theta = parameters_of(&objective, &fit.probe);
        let mut grad = vec![0.0; theta.len()];
        objective.value_gradient(&theta, &mut grad);
        max_abs(&grad)
    }

    fn parameters_of(objective: &Objective, probe: &LogisticProbe) -> Vec<f64> {
        let d = probe.dim;
        let mut theta = probe.weights[objective.first_free * d..].to_vec();
        theta.extend_from_slice(&probe.bias[objective.first_free..]);
        theta
    }

    #[test]
    fn gradient_matches_central_finite_differences() {
        for classes in [2, 3] {
            let (x, y) = tiny(classes);
            let data = LabelledRows::new(FeatureRows::new(&x, 3).unwrap(), &y).unwrap();
            let objective = Objective::new(data, classes, 0.7).unwrap();
            let theta: Vec<f64> = (0..objective.parameters())
                .map(|i| 0.3 * ((i as f64) * 1.7).sin())
                .collect();
            let mut grad = vec![0.0; theta.len()];
            objective.value_gradient(&theta, &mut grad);
            let h = 1e-6;
            for i in 0..theta.len() {
                let (mut up, mut down) = (theta.clone(), theta.clone());
                up[i] += h;
                down[i] -= h;
                let mut scratch = vec![0.0; theta.len()];
                let numeric = (objective.value_gradient(&up, &mut scratch)
                    - objective.value_gradient(&down, &mut scratch))
                    / (2.0 * h);
                assert!(
                    (numeric - grad[i]).abs() < 1e-8,
                    "k={classes} parameter {i}: analytic {} numeric {numeric}",
                    grad[i]
                );
            }
        }
    }

    #[test]
    fn the_gradient_vanishes_at_the_fitted_optimum() {
        for classes in [2, 3] {
            let (x, y) = tiny(classes);
            let data = LabelledRows::new(FeatureRows::new(&x, 3).unwrap(), &y).unwrap();
            for c in [0.01, 1.0, 1000.0] {
                let fit = ProbeSolver::default().fit(data, classes, c).unwrap();
                assert!(fit.solver.gradient_max <= fit.solver.tolerance);
                assert!(gradient_max_at(&fit, data) <= 1e-10, "k={classes} C={c}");
            }
        }
    }

    #[test]
    fn a_separable_problem_is_classified_perfectly_with_a_large_c() {
        // Three clusters on a line, 1 apart, with a little jitter in a second feature.
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..30u16 {
            let class = i % 3;
            x.extend([f64::from(class) + 0.1 * f64::from(i % 5), f64::from(i % 4)]);
            y.push(class);
        }
        let rows = FeatureRows::new(&x, 2).unwrap();
        let fit = fit_logistic(rows, &y, 3, 1e4).unwrap();
        assert_eq!(fit.probe.predict(rows), y);
        let score = fit.probe.score(LabelledRows::new(rows, &y).unwrap());
        assert_eq!(score.accuracy, 1.0);
        // ...which the strongest regularisation does not reach: the weights nearly vanish.
        let weak = fit_logistic(rows, &y, 3, 1e-6).unwrap();
        assert!(max_abs(&weak.probe.weights) < 1e-4);
    }

    #[test]
    fn two_classes_pin_row_zero_and_centre_nothing() {
        let (x, y) = tiny(2);
        let fit = fit_logistic(FeatureRows::new(&x, 3).unwrap(), &y, 2, 1.0).unwrap();
        assert_eq!(fit.probe.weight_row(0), &[0.0; 3]);
        assert_eq!(fit.probe.bias[0], 0.0);
        assert!(max_abs(fit.probe.weight_row(1)) > 0.01);
    }

    #[test]
    fn many_classes_get_centred_intercepts() {
        let (x, y) = tiny(3);
        let fit = fit_logistic(FeatureRows::new(&x, 3).unwrap(), &y, 3, 1.0).unwrap();
        assert!(fit.probe.bias.iter().sum::<f64>().abs() < 1e-12);
    }

    #[test]
    fn probabilities_sum_to_one_and_predictions_take_their_argmax() {
        let (x, y) = tiny(3);
        let rows = FeatureRows::new(&x, 3).unwrap();
        let probe = fit_logistic(rows, &y, 3, 1.0).unwrap().probe;
        let p = probe.probabilities(rows);
        let predicted = probe.predict(rows);
        for (row, pred) in p.chunks_exact(3).zip(predicted) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            assert_eq!(argmax(row), usize::from(pred));
        }
    }

    #[test]
    fn a_tie_predicts_the_lowest_class() {
        let probe = LogisticProbe {
            classes: 3,
            dim: 1,
            weights: vec![0.0, 1.0, 1.0],
            bias: vec![0.0, 0.0, 0.0],
        };
        assert_eq!(
            probe.predict(FeatureRows::new(&[0.0, 2.0], 1).unwrap()),
            vec![0, 1]
        );
    }

    fn point(c: f64, correct: usize, log_loss: f64) -> ProbeGridScore {
        ProbeGridScore {
            c,
            validation: ProbeScore {
                correct,
                rows: 10,
                accuracy: correct as f64 / 10.0,
                log_loss,
            },
            iterations: 1,
        }
    }

    #[test]
    fn selection_prefers_accuracy_then_lower_log_loss_then_smaller_c() {
        // Accuracy first, even against a lower log-loss.
        assert_eq!(best_point(&[point(1.0, 7, 0.1), point(10.0, 8, 0.9)]), 1);
        // Equal accuracy: the lower log-loss, wherever it stands in the grid.
        assert_eq!(best_point(&[point(1.0, 8, 0.5), point(10.0, 8, 0.4)]), 1);
        assert_eq!(best_point(&[point(10.0, 8, 0.4), point(1.0, 8, 0.5)]), 0);
        // Equal accuracy and log-loss: the smaller C, in any grid order.
        assert_eq!(best_point(&[point(10.0, 8, 0.4), point(1.0, 8, 0.4)]), 1);
        assert_eq!(best_point(&[point(1.0, 8, 0.4), point(10.0, 8, 0.4)]), 0);
    }

    #[test]
    fn select_c_scores_every_grid_value_and_returns_the_chosen_fit() {
        let (x, y) = tiny(3);
        let fit = LabelledRows::new(FeatureRows::new(&x[..24], 3).unwrap(), &y[..8]).unwrap();
        let validation =
            LabelledRows::new(FeatureRows::new(&x[24..], 3).unwrap(), &y[8..]).unwrap();
        let grid = [100.0, 0.01, 1.0];
        let selection = select_c(&grid, fit, validation, 3).unwrap();
        let cs: Vec<f64> = selection.scores.iter().map(|s| s.c).collect();
        assert_eq!(cs, grid);
        let best = selection.scores[best_point(&selection.scores)];
        assert_eq!(selection.chosen_c, best.c);
        assert_eq!(selection.chosen.c, best.c);
        assert_eq!(selection.chosen.probe.score(validation), best.validation);
    }

    #[test]
    fn standardisation_uses_the_fitting_rows_and_leaves_a_constant_feature_unscaled() {
        let fit_rows = [1.0f32, 5.0, 3.0, 5.0];
        let scale = Standardisation::fit(&fit_rows, 2).unwrap();
        assert_eq!(scale.mean, vec![2.0, 5.0]);
        assert_eq!(scale.std, vec![1.0, 1.0]);
        assert_eq!(scale.standardise(&[4.0f32, 7.0]).unwrap(), vec![2.0, 2.0]);
        let scale = Standardisation::fit(&[0.0, 4.0], 1).unwrap();
        assert_eq!(scale.std, vec![2.0]);
        assert_eq!(scale.standardise(&[6.0]).unwrap(), vec![2.0]);
    }

    #[test]
    fn fitting_is_deterministic() {
        let (x, y) = tiny(3);
        let rows = FeatureRows::new(&x, 3).unwrap();
        assert_eq!(
            fit_logistic(rows, &y, 3, 3.0).unwrap(),
            fit_logistic(rows, &y, 3, 3.0).unwrap()
        );
    }

    #[test]
    fn an_iteration_limit_is_an_error_carrying_the_last_point() {
        let (x, y) = tiny(3);
        let data = LabelledRows::new(FeatureRows::new(&x, 3).unwrap(), &y).unwrap();
        let solver = ProbeSolver {
            max_iterations: 2,
            ..ProbeSolver::default()
        };
        match solver.fit(data, 3, 1.0) {
            Err(ProbeError::NotConverged { last, .. }) => {
                assert_eq!(last.solver.iterations, 2);
                assert!(last.solver.gradient_max > last.solver.tolerance);
            }
            other => panic!("expected NotConverged, got {other:?}"),
        }
    }

    #[test]
    fn bad_inputs_are_refused() {
        let (x, y) = tiny(3);
        let rows = FeatureRows::new(&x, 3).unwrap();
        assert!(matches!(
            fit_logistic(rows, &y, 2, 1.0),
            Err(ProbeError::Label { label: 2, .. })
        ));
        assert!(matches!(
            fit_logistic(rows, &y, 3, 0.0),
            Err(ProbeError::InvalidC(_))
        ));
        assert!(matches!(
            fit_logistic(rows, &y, 1, 1.0),
            Err(ProbeError::Classes(1))
        ));
        assert!(matches!(FeatureRows::new(&x, 5), Err(ProbeError::Shape(_))));
        assert!(matches!(
            fit_logistic(rows, &y[1..], 3, 1.0),
            Err(ProbeError::Shape(_))
        ));
        let mut bad = x.clone();
        bad[4] = f64::NAN;
        assert!(matches!(
            fit_logistic(FeatureRows::new(&bad, 3).unwrap(), &y, 3, 1.0),
            Err(ProbeError::NonFinite {
                row: 1,
                column: 1,
                ..
            })
        ));
    }
}
