//! The result store: a folder of one-row Parquet files named by cell fingerprint. Each row is
//! written to a temporary file and renamed into place, so a crash or `kill -9` never leaves a
//! partial row, and a fingerprint can only ever be present once.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use polars::prelude::*;

use crate::row::ResultRow;

/// Results of one experiment, under `RESULTS/EXPERIMENT/`.
#[derive(Debug, Clone)]
pub struct ResultStore {
    pub dir: PathBuf,
}

impl ResultStore {
    pub fn open(results_root: &Path, experiment: &str) -> ResultStore {
        ResultStore {
            dir: results_root.join(experiment),
        }
    }

    fn row_path(&self, fingerprint: &str) -> PathBuf {
        self.dir.join(format!("{fingerprint}.parquet"))
    }

    /// Fingerprints of the rows already stored.
    pub fn finished(&self) -> HashSet<String> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return HashSet::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".parquet")
                    .filter(|s| !s.starts_with('.'))
                    .map(str::to_string)
            })
            .collect()
    }

    /// Writes one row atomically; a row with the same fingerprint is replaced.
    pub fn write(&self, row: &ResultRow) -> Result<PathBuf> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let mut frame = ResultRow::to_frame(std::slice::from_ref(row))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".row-")
            .suffix(".tmp")
            .tempfile_in(&self.dir)?;
        ParquetWriter::new(tmp.as_file_mut()).finish(&mut frame)?;
        tmp.as_file_mut().flush()?;
        tmp.as_file().sync_all()?;
        let path = self.row_path(&row.fingerprint);
        tmp.persist(&path)?;
        Ok(path)
    }

    /// Every stored row, in a stable order (target, n_train, seed, source, option).
    pub fn rows(&self) -> Result<Vec<ResultRow>> {
        let frame = self.frame()?;
        let mut rows = ResultRow::from_frame(&frame)?;
        rows.sort_by(|a, b| {
            (&a.target, a.n_train, a.seed, &a.source, a.option)
                .cmp(&(&b.target, b.n_train, b.seed, &b.source, b.option))
        });
        Ok(rows)
    }

    /// Every stored row as one Polars frame.
    pub fn frame(&self) -> Result<DataFrame> {
        let mut paths: Vec<PathBuf> = match fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension().is_some_and(|x| x == "parquet")
                        && !p
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        paths.sort();
        let mut frame = ResultRow::to_frame(&[])?;
        for path in paths {
            let part = anyhow::Context::with_context(
                ParquetReader::new(File::open(&path)?).finish(),
                || format!("reading result row {}", path.display()),
            )?;
            anyhow::Context::with_context(frame.vstack_mut(&part), || {
                format!("{} has another schema", path.display())
            })?;
        }
        Ok(frame)
    }

    /// Removes temporary files left by an interrupted write.
    pub fn clean_partial_writes(&self) {
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for e in entries.filter_map(|e| e.ok()) {
                if e.file_name().to_string_lossy().starts_with(".row-") {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }
}

/// Writes `rows` as one Parquet file (for reports).
pub fn write_parquet(rows: &[ResultRow], path: &Path) -> Result<()> {
    let mut frame = ResultRow::to_frame(rows)?;
    let mut file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    ParquetWriter::new(&mut file).finish(&mut frame)?;
    Ok(())
}
