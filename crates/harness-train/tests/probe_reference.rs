//! The linear probe (`src/probe.rs`) against scikit-learn's `LogisticRegression(solver="lbfgs")`
//! on committed features: `fixtures/make_probe_reference.py` wrote
//! `fixtures/probe_reference.json` (three problems, C = 0.01, 1, 100). Standardisation must
//! agree to rounding; weights, intercepts and held-out probabilities to 1e-4; held-out
//! predictions exactly.

use harness_train::{FeatureRows, LabelledRows, LogisticFit, Standardisation, fit_logistic};
use serde_json::Value;

const TOLERANCE: f64 = 1e-4;

fn fixture() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/probe_reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("probe_reference.json parses")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

fn labels(v: &Value) -> Vec<u16> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| u16::try_from(x.as_u64().expect("a label")).expect("a small label"))
        .collect()
}

fn max_difference(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// One fixture problem, standardised by the harness.
struct Problem {
    name: String,
    classes: usize,
    dim: usize,
    fit_x: Vec<f64>,
    fit_y: Vec<u16>,
    held_x: Vec<f64>,
}

impl Problem {
    fn read(p: &Value) -> Self {
        let dim = p["dim"].as_u64().unwrap() as usize;
        let scale = Standardisation::fit(&floats(&p["fit_features"]), dim).unwrap();
        // The harness's standardisation is numpy's, to rounding.
        assert!(max_difference(&scale.mean, &floats(&p["mean"])) < 1e-12);
        assert!(max_difference(&scale.std, &floats(&p["std"])) < 1e-12);
        Self {
            name: p["name"].as_str().unwrap().to_string(),
            classes: p["classes"].as_u64().unwrap() as usize,
            dim,
            fit_x: scale.standardise(&floats(&p["fit_features"])).unwrap(),
            fit_y: labels(&p["fit_labels"]),
            held_x: scale.standardise(&floats(&p["held_out_features"])).unwrap(),
        }
    }

    fn fit(&self, c: f64) -> LogisticFit {
        let rows = FeatureRows::new(&self.fit_x, self.dim).unwrap();
        fit_logistic(rows, &self.fit_y, self.classes, c)
            .unwrap_or_else(|e| panic!("{} C={c}: {e}", self.name))
    }

    fn held_out(&self) -> FeatureRows<'_> {
        FeatureRows::new(&self.held_x, self.dim).unwrap()
    }
}

/// scikit-learn's coef_ and intercept_ in the probe's layout: for two classes sklearn keeps
/// the single row of the binomial model, which is the probe's row 1 (row 0 is pinned at 0).
fn sklearn_parameters(fit: &Value, classes: usize, dim: usize) -> (Vec<f64>, Vec<f64>) {
    let (coef, intercept) = (floats(&fit["coef"]), floats(&fit["intercept"]));
    if classes == 2 {
        assert_eq!(fit["coef_rows"], 1);
        let mut weights = vec![0.0; dim];
        weights.extend(coef);
        (weights, vec![0.0, intercept[0]])
    } else {
        (coef, intercept)
    }
}

#[test]
fn probe_matches_scikit_learn_weights_intercepts_and_held_out_probabilities() {
    let fixture = fixture();
    for p in fixture["problems"].as_array().unwrap() {
        let problem = Problem::read(p);
        for reference in p["fits"].as_array().unwrap() {
            let c = reference["c"].as_f64().unwrap();
            let fit = problem.fit(c);
            let (weights, bias) = sklearn_parameters(reference, problem.classes, problem.dim);
            let dw = max_difference(&fit.probe.weights, &weights);
            let db = max_difference(&fit.probe.bias, &bias);
            let proba = fit.probe.probabilities(problem.held_out());
            let dp = max_difference(&proba, &floats(&reference["held_out_probabilities"]));
            println!(
                "{} C={c}: {} iterations ({} evaluations; sklearn {}), max |Δ| weights {dw:.2e}, \
                 intercepts {db:.2e}, probabilities {dp:.2e}",
                problem.name, fit.solver.iterations, fit.solver.evaluations, reference["n_iter"]
            );
            let at = format!("{} C={c}", problem.name);
            assert!(dw <= TOLERANCE, "{at}: weights differ by {dw:e}");
            assert!(db <= TOLERANCE, "{at}: intercepts differ by {db:e}");
            assert!(dp <= TOLERANCE, "{at}: probabilities differ by {dp:e}");
            assert_eq!(
                fit.probe.predict(problem.held_out()),
                labels(&reference["held_out_predictions"]),
                "{at}: held-out predictions"
            );
        }
    }
}

#[test]
fn a_different_c_misses_the_reference_weights() {
    // The comparison above can fail: fitting C = 1 and comparing with scikit-learn's C = 100
    // (or C = 0.01) must be far outside the tolerance on every problem.
    let fixture = fixture();
    for p in fixture["problems"].as_array().unwrap() {
        let problem = Problem::read(p);
        let fit = problem.fit(1.0);
        for reference in p["fits"].as_array().unwrap() {
            let c = reference["c"].as_f64().unwrap();
            if c == 1.0 {
                continue;
            }
            let (weights, _) = sklearn_parameters(reference, problem.classes, problem.dim);
            let dw = max_difference(&fit.probe.weights, &weights);
            assert!(
                dw > 100.0 * TOLERANCE,
                "{}: C=1 is within {dw:e} of sklearn's C={c}",
                problem.name
            );
        }
    }
}

#[test]
fn held_out_accuracy_and_log_loss_follow_from_the_probabilities() {
    // score() reads the same logits as probabilities(): its log-loss is the mean of
    // −ln p(y) over sklearn's probabilities, to the same tolerance.
    let fixture = fixture();
    for p in fixture["problems"].as_array().unwrap() {
        let problem = Problem::read(p);
        let held_y = labels(&p["held_out_labels"]);
        let k = problem.classes;
        for reference in p["fits"].as_array().unwrap() {
            let fit = problem.fit(reference["c"].as_f64().unwrap());
            let score = fit
                .probe
                .score(LabelledRows::new(problem.held_out(), &held_y).unwrap());
            let sk = floats(&reference["held_out_probabilities"]);
            let sk_loss = held_y
                .iter()
                .enumerate()
                .map(|(i, &y)| -sk[i * k + usize::from(y)].ln())
                .sum::<f64>()
                / held_y.len() as f64;
            let predicted = labels(&reference["held_out_predictions"]);
            let sk_correct = predicted
                .iter()
                .zip(&held_y)
                .filter(|(a, b)| a == b)
                .count();
            assert_eq!(score.correct, sk_correct, "{}", problem.name);
            assert!((score.log_loss - sk_loss).abs() < 1e-3, "{}", problem.name);
        }
    }
}
