//! Option 1's output layer as a linear probe (`[finetune.probe]`): ℓ2-regularised logistic
//! regression on standardised frozen features, its strength `C` chosen on the cell's
//! validation split and refitted on fitting + validation, as Kornblith et al. (2019) and LP-FT
//! (Kumar et al. 2022) train theirs. The probe becomes the network's own output layer (the
//! standardisation folded into its weights), so the cell tests and keeps a network as any
//! other.

use anyhow::{Context, Result};
use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;

use crate::cell::{Candidate, Search, Setting};
use crate::eval::Evaluation;
use crate::features::SplitFeatures;
use crate::probe::{
    FeatureRows, LabelledRows, LogisticFit, LogisticProbe, ProbeSelection, Standardisation,
    fit_logistic, select_c,
};
use crate::{CellStatus, train_device};

/// The probe chosen on validation and refitted on `fit` + `validation`, as an output layer of
/// `head`'s shape, with the search that chose it (refit length: the solver's iterations).
pub(crate) fn probe_head(
    pool: &SplitFeatures,
    labels: &[u16],
    (fit, validation): (&[usize], &[usize]),
    classes: usize,
    grid: &[f64],
) -> Result<(Linear, Search)> {
    let take = |indices: &[usize]| -> (Vec<f32>, Vec<u16>) {
        (
            pool.rows(indices),
            indices.iter().map(|&i| labels[i]).collect(),
        )
    };
    let ((fit_x, fit_y), (val_x, val_y)) = (take(fit), take(validation));
    let probe = standardised_probe((&fit_x, &fit_y), (&val_x, &val_y), pool.dim, classes, grid)?;
    let head = folded_head(&probe.refit.probe, &probe.scaling, pool.dim, classes);
    Ok((head, probe.search))
}

/// A probe whose `C` was chosen on validation and which was refitted on fitting + validation,
/// each fit reading its rows standardised over themselves.
pub(crate) struct StandardisedProbe {
    /// Statistics of the fitting rows, over which the choice read every row.
    pub choice_scaling: Standardisation,
    pub selection: ProbeSelection,
    /// Statistics of fitting + validation rows, over which the refit reads every row.
    pub scaling: Standardisation,
    pub refit: LogisticFit,
    pub search: Search,
}

/// The probe's protocol on dense features of width `dim` (Option 1's frozen features, the
/// floor's pixels and mel bands): standardise over the fitting rows, choose `C` by
/// [`choose_then_refit`], standardise fitting + validation rows (in that order) over themselves
/// for the refit.
pub(crate) fn standardised_probe<T: Copy + Into<f64>>(
    (fit_x, fit_y): (&[T], &[u16]),
    (val_x, val_y): (&[T], &[u16]),
    dim: usize,
    classes: usize,
    grid: &[f64],
) -> Result<StandardisedProbe> {
    let choice_scaling = Standardisation::fit(fit_x, dim)?;
    let fit_s = choice_scaling.standardise(fit_x)?;
    let val_s = choice_scaling.standardise(val_x)?;
    let all_x: Vec<T> = fit_x.iter().chain(val_x).copied().collect();
    let all_y: Vec<u16> = fit_y.iter().chain(val_y).copied().collect();
    let scaling = Standardisation::fit(&all_x, dim)?;
    let all_s = scaling.standardise(&all_x)?;
    let (selection, refit, search) = choose_then_refit(
        grid,
        classes,
        LabelledRows::new(FeatureRows::new(&fit_s, dim)?, fit_y)?,
        LabelledRows::new(FeatureRows::new(&val_s, dim)?, val_y)?,
        LabelledRows::new(FeatureRows::new(&all_s, dim)?, &all_y)?,
    )?;
    Ok(StandardisedProbe {
        choice_scaling,
        selection,
        scaling,
        refit,
        search,
    })
}

/// `C` chosen from `grid` by [`select_c`] on `fit` and `validation`, the refit with it on
/// `all` (fitting + validation rows, as its own features), and the search as a row records it
/// (validation macro-F1 not measured: NaN; refit length: the solver's iterations).
pub(crate) fn choose_then_refit(
    grid: &[f64],
    classes: usize,
    fit: LabelledRows,
    validation: LabelledRows,
    all: LabelledRows,
) -> Result<(ProbeSelection, LogisticFit, Search)> {
    let selection = select_c(grid, fit, validation, classes)
        .context("choosing the probe's regularisation on validation")?;
    let refit = fit_logistic(all.features, all.labels, classes, selection.chosen_c)
        .context("refitting the probe on fitting + validation")?;
    let candidates = selection
        .scores
        .iter()
        .map(|s| Candidate {
            value: s.c,
            validation: Evaluation {
                accuracy: s.validation.accuracy,
                macro_f1: f64::NAN,
                loss: s.validation.log_loss,
            },
            best_step: s.iterations,
            status: CellStatus::Ok,
        })
        .collect::<Vec<_>>();
    let chosen = candidates
        .iter()
        .position(|c| c.value == selection.chosen_c)
        .expect("the chosen C is on the grid");
    let search = Search {
        setting: Setting::ProbeC,
        candidates,
        chosen,
        refit_steps: refit.solver.iterations,
    };
    Ok((selection, refit, search))
}

/// The layer `x ↦ W ((x − μ) / σ) + b` as a burn `Linear` of `dim` inputs and `classes`
/// outputs: weights `W / σ`, bias `b − W (μ / σ)`.
fn folded_head(
    probe: &LogisticProbe,
    scaling: &Standardisation,
    dim: usize,
    classes: usize,
) -> Linear {
    let mut weight = vec![0.0f32; dim * classes];
    let mut bias = vec![0.0f32; classes];
    for k in 0..classes {
        let w = probe.weight_row(k);
        let mut shift = probe.bias[k];
        for d in 0..dim {
            let scaled = w[d] / scaling.std[d];
            weight[d * classes + k] = scaled as f32;
            shift -= scaled * scaling.mean[d];
        }
        bias[k] = shift as f32;
    }
    let device = train_device();
    Linear {
        weight: Param::from_tensor(Tensor::<2>::from_data(
            TensorData::new(weight, [dim, classes]),
            &device,
        )),
        bias: Some(Param::from_tensor(Tensor::<1>::from_data(
            TensorData::new(bias, [classes]),
            &device,
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folded_head_gives_the_probes_logits_on_raw_features() {
        let (dim, classes) = (3, 4);
        let probe = LogisticProbe {
            classes,
            dim,
            weights: (0..dim * classes)
                .map(|i| (i as f64 * 0.37).sin())
                .collect(),
            bias: vec![0.1, -0.2, 0.3, 0.05],
        };
        let scaling = Standardisation {
            mean: vec![1.0, -2.0, 0.5],
            std: vec![2.0, 0.5, 1.0],
        };
        let head = folded_head(&probe, &scaling, dim, classes);
        let raw = [0.3f32, 4.0, -1.5, 2.0, -2.0, 0.5];
        let device = train_device();
        let logits = head.forward(Tensor::<2>::from_data(
            TensorData::new(raw.to_vec(), [2, dim]),
            &device,
        ));
        let got: Vec<f32> = logits.into_data().convert::<f32>().try_into_vec().unwrap();
        let standardised = scaling.standardise(&raw).unwrap();
        for row in 0..2 {
            let mut want = vec![0.0; classes];
            probe.logits(&standardised[row * dim..(row + 1) * dim], &mut want);
            for k in 0..classes {
                let diff = (got[row * classes + k] as f64 - want[k]).abs();
                assert!(
                    diff < 1e-5,
                    "row {row} class {k}: {} against {}",
                    got[row * classes + k],
                    want[k]
                );
            }
        }
    }
}
