//! The statistics of the report against reference values computed with numpy, scipy and
//! statsmodels (`fixtures/make_stats_reference.py`, which wrote `fixtures/stats_reference.json`).

use harness_results::{
    MeanCi, bootstrap_mean_ci, holm, t_cdf, t_quantile_975, t_test_greater, t_test_less, tost,
};
use serde_json::Value;

fn reference() -> Value {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo");
    let path = std::path::Path::new(&dir).join("tests/fixtures/stats_reference.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!(
        (a - b).abs() <= tol,
        "{what}: harness {a}, reference {b} (tolerance {tol})"
    );
}

#[test]
fn student_t_distribution_matches_scipy() {
    let r = reference();
    for point in r["t_cdf"].as_array().unwrap() {
        let (t, df) = (point["t"].as_f64().unwrap(), point["df"].as_f64().unwrap());
        close(
            t_cdf(t, df),
            point["cdf"].as_f64().unwrap(),
            1e-10,
            &format!("t cdf at {t} with {df} df"),
        );
    }
}

#[test]
fn student_t_quantiles_match_scipy() {
    let r = reference();
    let points = r["t_ppf_975"].as_array().unwrap();
    assert!(points.len() > 40);
    for point in points {
        let df = point["df"].as_u64().unwrap() as usize;
        close(
            t_quantile_975(df),
            point["q"].as_f64().unwrap(),
            1e-9,
            &format!("t quantile 0.975 with {df} df"),
        );
    }
}

#[test]
fn mean_t_intervals_match_scipy() {
    let r = reference();
    let mut checked = 0;
    for s in r["samples"].as_array().unwrap() {
        let Some(interval) = s.get("t_interval_95") else {
            continue;
        };
        let x = floats(&s["values"]);
        let ci = MeanCi::of(&x);
        let expected = floats(interval);
        close(
            ci.low,
            expected[0],
            1e-12,
            &format!("t-interval low of {x:?}"),
        );
        close(
            ci.high,
            expected[1],
            1e-12,
            &format!("t-interval high of {x:?}"),
        );
        checked += 1;
    }
    assert_eq!(checked, 8, "every sample has an interval");
}

#[test]
fn one_sided_t_tests_and_tost_match_scipy() {
    let r = reference();
    let mut checked = 0;
    for s in r["samples"].as_array().unwrap() {
        let x = floats(&s["values"]);
        for (name, test) in [
            ("t_greater", t_test_greater as fn(&[f64], f64) -> f64),
            ("t_less", t_test_less),
        ] {
            for (mu, p) in s[name].as_object().unwrap() {
                let mu: f64 = mu.parse().unwrap();
                close(
                    test(&x, mu),
                    p.as_f64().unwrap(),
                    1e-9,
                    &format!("{name} of {x:?} against {mu}"),
                );
                checked += 1;
            }
        }
        for (margin, p) in s["tost"].as_object().unwrap() {
            let margin: f64 = margin.parse().unwrap();
            close(
                tost(&x, margin),
                p.as_f64().unwrap(),
                1e-9,
                &format!("TOST of {x:?} within {margin}"),
            );
            checked += 1;
        }
    }
    assert!(checked >= 60, "{checked}");
}

#[test]
fn exact_bootstrap_intervals_match_numpy_and_sampled_ones_match_scipy() {
    let r = reference();
    let (mut exact, mut sampled) = (0, 0);
    for s in r["samples"].as_array().unwrap() {
        let x = floats(&s["values"]);
        let (low, high) = bootstrap_mean_ci(&x, 0.95);
        if let Some(e) = s.get("bootstrap_exact") {
            let e = floats(e);
            close(low, e[0], 1e-12, &format!("exact bootstrap low of {x:?}"));
            close(high, e[1], 1e-12, &format!("exact bootstrap high of {x:?}"));
            exact += 1;
        } else {
            // Two generators, 20,000 and 200,000 resamples: they agree to the sampling noise of
            // a 2.5% quantile, a few thousandths here.
            let e = floats(&s["bootstrap_sampled"]);
            close(low, e[0], 0.002, &format!("sampled bootstrap low of {x:?}"));
            close(
                high,
                e[1],
                0.002,
                &format!("sampled bootstrap high of {x:?}"),
            );
            sampled += 1;
        }
        // The same values give the same interval: the resampling is seeded.
        assert_eq!(bootstrap_mean_ci(&x, 0.95), (low, high));
    }
    assert!(
        exact >= 5 && sampled >= 1,
        "{exact} exact, {sampled} sampled"
    );
}

#[test]
fn holm_adjustment_matches_statsmodels() {
    let r = reference();
    for case in r["holm"].as_array().unwrap() {
        let p = floats(&case["p"]);
        let want = floats(&case["adjusted"]);
        let got = holm(&p);
        for (g, w) in got.iter().zip(&want) {
            close(*g, *w, 1e-12, &format!("Holm of {p:?}"));
        }
    }
}
