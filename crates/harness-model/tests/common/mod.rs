//! What the fixture tests of the pre-trained networks share: reading a fixture's JSON, rows
//! of numbers in and out of tensors, and their largest difference.

#![allow(dead_code)]

use std::path::PathBuf;

use burn::prelude::*;
use serde_json::Value;

/// The fixture folder `name` (read at run time: a test binary reused from another checkout
/// must read this one's files).
pub fn fixtures(name: &str) -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("tests/fixtures")
        .join(name)
}

/// The JSON file `file` of the fixture folder `folder`.
pub fn json(folder: &str, file: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures(folder).join(file)).unwrap()).unwrap()
}

/// A JSON array of arrays of numbers.
pub fn rows(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

/// Equal-length rows as a `[rows, width]` tensor.
pub fn tensor(rows: &[Vec<f32>], device: &Device) -> Tensor<2> {
    Tensor::<2>::from_data(
        TensorData::new(rows.concat(), [rows.len(), rows[0].len()]),
        device,
    )
}

/// A `[rows, width]` tensor as rows.
pub fn values(t: Tensor<2>) -> Vec<Vec<f32>> {
    let [n, d] = t.dims();
    let flat = t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    (0..n).map(|i| flat[i * d..(i + 1) * d].to_vec()).collect()
}

pub fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}
