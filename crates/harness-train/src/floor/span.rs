//! The ℓ2 logistic regression on wide sparse rows (TF-IDF: tens of thousands of words, a few
//! hundred documents) solved in the span of its fitting rows, where it has as many features as
//! documents instead of words.
//!
//! With `n` fitting rows `X` (`n × V`), the weights that minimise the probe's objective (loss
//! plus ½‖W‖², see `probe.rs`) lie in the span of the rows (their component outside it only
//! adds to the penalty). Take an orthonormal basis `B` (`r × V`) of that span: writing `W = M B`
//! gives `W x = M (B x)` and `‖W‖ = ‖M‖`, so the objective over `W` is the same objective over
//! `M` on the coordinates `z = B x` (`r` features), intercepts unchanged. The probe is fitted on
//! the coordinates by the same solver, and `W = M B` is written back over the words.
//!
//! The basis comes from a pivoted Cholesky factorisation of the Gram matrix `K = X Xᵀ`
//! (a column at a time, never `n × n` in full): pivot rows `S` with `K_SS = L Lᵀ` (`L` lower
//! triangular, `r × r`) give `B = L⁻¹ X_S`, whose rows are orthonormal, and a row's coordinates
//! `z = L⁻¹ (X_S x)`; for the fitting rows they are the factor's own rows. Pivoting stops when
//! every row is within `√(RANK_TOLERANCE × max ‖xᵢ‖²)` of the span of the pivots, so duplicate
//! and empty documents cost nothing; what a row has outside the span of the pivots is
//! below that distance and dropped. Memory: the factor, `n × n` values; time: about `n³/6` for
//! the factorisation, then `n·r·classes` per evaluation of the objective (as much as dense
//! rows of `r` features): meant for up to a few thousand documents.

use super::tfidf::SparseRows;
use crate::probe::LogisticProbe;

/// Pivoting stops when no row's squared distance to the span of the pivots exceeds this
/// fraction of the largest squared row norm.
const RANK_TOLERANCE: f64 = 1e-10;

/// An orthonormal basis of the span of some fitting rows, held as pivot rows and a triangular
/// factor.
pub(crate) struct RowSpan<'a> {
    rows: &'a SparseRows,
    /// The fitting rows by column: `(row, value)` of every non-zero, rows ascending.
    columns: Vec<Vec<(u32, f64)>>,
    /// Fitting-row indices of the pivots, in pivot order.
    pivots: Vec<usize>,
    /// `L`, `r × r`, row-major, lower triangular.
    lower: Vec<f64>,
    /// The coordinates of every fitting row, `n × r`, row-major.
    coordinates: Vec<f64>,
}

impl<'a> RowSpan<'a> {
    /// The span of `rows`.
    pub(crate) fn of(rows: &'a SparseRows) -> RowSpan<'a> {
        let n = rows.len();
        let mut columns = vec![Vec::new(); rows.dim()];
        for i in 0..n {
            let (cols, values) = rows.row(i);
            for (&c, &v) in cols.iter().zip(values) {
                columns[c as usize].push((i as u32, v));
            }
        }
        let mut span = RowSpan {
            rows,
            columns,
            pivots: Vec::new(),
            lower: Vec::new(),
            coordinates: Vec::new(),
        };
        let factor = span.factorise();
        let r = span.pivots.len();
        span.coordinates = (0..n)
            .flat_map(|i| factor[i * n..i * n + r].iter().copied())
            .collect();
        span.lower = span
            .pivots
            .iter()
            .flat_map(|&p| factor[p * n..p * n + r].iter().copied())
            .collect();
        span
    }

    /// Pivoted Cholesky of `X Xᵀ`: fills `pivots` and returns the factor, `n × n` row-major,
    /// of which the first `r` columns are set.
    fn factorise(&mut self) -> Vec<f64> {
        let n = self.rows.len();
        let mut residual: Vec<f64> = (0..n)
            .map(|i| self.rows.row(i).1.iter().map(|v| v * v).sum())
            .collect();
        let tolerance = RANK_TOLERANCE * residual.iter().copied().fold(0.0, f64::max);
        let mut factor = vec![0.0; n * n];
        let mut free = vec![true; n];
        let mut gram = vec![0.0; n];
        for k in 0..n {
            // The farthest row from the span so far; ties go to the first.
            let p = (0..n)
                .filter(|&i| free[i])
                .fold(None, |best: Option<usize>, i| match best {
                    Some(b) if residual[b] >= residual[i] => Some(b),
                    _ => Some(i),
                })
                .expect("fewer pivots than rows");
            if residual[p] <= tolerance || residual[p] <= 0.0 {
                break;
            }
            let (columns, values) = self.rows.row(p);
            self.gram_column(columns, values, &mut gram);
            let pivot = residual[p].sqrt();
            free[p] = false;
            factor[p * n + k] = pivot;
            for i in (0..n).filter(|&i| free[i]) {
                let (done, pivot_row) = (&factor[i * n..i * n + k], &factor[p * n..p * n + k]);
                let dot: f64 = done.iter().zip(pivot_row).map(|(a, b)| a * b).sum();
                let l = (gram[i] - dot) / pivot;
                factor[i * n + k] = l;
                residual[i] -= l * l;
            }
            self.pivots.push(p);
        }
        factor
    }

    /// `out[i] = xᵢ · x` for every fitting row `xᵢ`, with `x` given by its non-zeros.
    fn gram_column(&self, columns: &[u32], values: &[f64], out: &mut [f64]) {
        out.iter_mut().for_each(|g| *g = 0.0);
        for (&c, &v) in columns.iter().zip(values) {
            for &(i, u) in &self.columns[c as usize] {
                out[i as usize] += u * v;
            }
        }
    }

    /// The number of coordinates (the rank found).
    pub(crate) fn rank(&self) -> usize {
        self.pivots.len()
    }

    /// The coordinates of every fitting row, `n × rank`, row-major.
    pub(crate) fn fitting_coordinates(&self) -> &[f64] {
        &self.coordinates
    }

    /// The coordinates of other rows over the same columns, `rows.len() × rank`, row-major.
    pub(crate) fn coordinates(&self, rows: &SparseRows) -> Vec<f64> {
        assert_eq!(rows.dim(), self.rows.dim(), "rows over another vocabulary");
        let r = self.rank();
        let mut gram = vec![0.0; self.rows.len()];
        let mut out = vec![0.0; rows.len() * r];
        // (With rank 0 there is nothing to fill, and no chunk.)
        for (i, z) in out.chunks_exact_mut(r.max(1)).enumerate() {
            let (columns, values) = rows.row(i);
            self.gram_column(columns, values, &mut gram);
            // Forward substitution: L z = X_S x.
            for a in 0..r {
                let row = &self.lower[a * r..a * r + a];
                let dot: f64 = row.iter().zip(&z[..a]).map(|(l, z)| l * z).sum();
                z[a] = (gram[self.pivots[a]] - dot) / self.lower[a * r + a];
            }
        }
        out
    }

    /// `probe` (fitted on coordinates) as a probe over the rows' own columns: `W = M L⁻¹ X_S`.
    pub(crate) fn probe_over_columns(&self, probe: &LogisticProbe) -> LogisticProbe {
        let (r, dim) = (self.rank(), self.rows.dim());
        assert_eq!(probe.dim, r, "a probe fitted on other coordinates");
        let mut weights = vec![0.0; probe.classes * dim];
        let mut a = vec![0.0; r];
        for (j, w) in weights.chunks_exact_mut(dim.max(1)).enumerate() {
            // Back substitution: a L = m, i.e. Lᵀ aᵀ = mᵀ.
            let m = probe.weight_row(j);
            for b in (0..r).rev() {
                let dot: f64 = (b + 1..r).map(|c| a[c] * self.lower[c * r + b]).sum();
                a[b] = (m[b] - dot) / self.lower[b * r + b];
            }
            for (&p, &coefficient) in self.pivots.iter().zip(&a) {
                let (columns, values) = self.rows.row(p);
                for (&c, &v) in columns.iter().zip(values) {
                    w[c as usize] += coefficient * v;
                }
            }
        }
        LogisticProbe {
            classes: probe.classes,
            dim,
            weights,
            bias: probe.bias.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::floor::tfidf::TfIdf;
    use crate::probe::{FeatureRows, fit_logistic};

    const DOCS: [&str; 10] = [
        "red apple green pear",
        "red red car",
        "green car fast car",
        "", // no word: a zero row
        "apple pie and pear pie",
        "red red car", // a duplicate: nothing new for the span
        "fast green apple",
        "pie car",
        "slow red pear",
        "and and and",
    ];
    const LABELS: [u16; 10] = [0, 1, 2, 0, 0, 1, 2, 2, 1, 0];

    fn max_difference(a: &[f64], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn coordinates_keep_every_inner_product_of_the_fitting_rows() {
        let rows = TfIdf::fit(&DOCS).rows(&DOCS);
        let span = RowSpan::of(&rows);
        // Eight distinct non-empty documents, independent over their words.
        assert_eq!(span.rank(), 8);
        let (r, dense, z) = (span.rank(), rows.to_dense(), span.fitting_coordinates());
        let d = rows.dim();
        for i in 0..DOCS.len() {
            for j in 0..DOCS.len() {
                let dot = |v: &[f64], w: usize, a: usize, b: usize| -> f64 {
                    (0..w).map(|t| v[a * w + t] * v[b * w + t]).sum()
                };
                assert!((dot(z, r, i, j) - dot(&dense, d, i, j)).abs() < 1e-12);
            }
        }
        // The fitting rows' coordinates, recomputed as other rows' are, are the factor's rows.
        assert!(max_difference(&span.coordinates(&rows), z) < 1e-12);
    }

    #[test]
    fn the_probe_solved_in_the_span_is_the_probe_on_the_rows_themselves() {
        let words = TfIdf::fit(&DOCS);
        let rows = words.rows(&DOCS);
        let span = RowSpan::of(&rows);
        let unseen = words.rows(&["red pie", "green apple car car", "unknown"]);
        let dense = rows.to_dense();
        for (classes, c) in [(3, 0.5), (3, 20.0), (2, 3.0)] {
            let labels: Vec<u16> = LABELS.iter().map(|&y| y % classes as u16).collect();
            let direct = fit_logistic(
                FeatureRows::new(&dense, rows.dim()).unwrap(),
                &labels,
                classes,
                c,
            )
            .unwrap();
            let coordinates = FeatureRows::new(span.fitting_coordinates(), span.rank()).unwrap();
            let reduced = fit_logistic(coordinates, &labels, classes, c).unwrap();
            let over_words = span.probe_over_columns(&reduced.probe);
            assert!(max_difference(&over_words.weights, &direct.probe.weights) < 1e-6);
            assert!(max_difference(&over_words.bias, &direct.probe.bias) < 1e-6);
            // Rows outside the fitting set: their coordinates give the same logits.
            let z = span.coordinates(&unseen);
            let z = FeatureRows::new(&z, span.rank()).unwrap();
            let unseen_dense = unseen.to_dense();
            let x = FeatureRows::new(&unseen_dense, unseen.dim()).unwrap();
            let p = reduced.probe.probabilities(z);
            assert!(max_difference(&p, &over_words.probabilities(x)) < 1e-12);
        }
    }
}
