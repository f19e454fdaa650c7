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

/// A file in the store that cannot be counted as a row, and why.
#[derive(Debug, Clone)]
pub struct Problem {
    pub path: PathBuf,
    pub why: String,
}

/// What reading the store found: the rows (one per fingerprint) and the files that were not
/// counted.
#[derive(Debug, Default)]
pub struct Scan {
    pub frame: Option<DataFrame>,
    pub problems: Vec<Problem>,
}

/// The folder problem files are moved into by [`ResultStore::quarantine`].
pub const QUARANTINE: &str = "quarantine";

/// Whether `name` is a row file's name: 64 hexadecimal digits and `.parquet`.
fn fingerprint_of_name(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(".parquet")?;
    (stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit())).then_some(stem)
}

/// The exclusive right to write into one store, held until dropped: a second run of the same
/// experiment is refused while the first runs, instead of both training the same cells and
/// deleting each other's partial writes. The operating system releases it when the process
/// ends, `kill -9` included.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl ResultStore {
    pub fn open(results_root: &Path, experiment: &str) -> ResultStore {
        ResultStore {
            dir: results_root.join(experiment),
        }
    }

    /// The store of every experiment under `results_root` (each of its folders), by name.
    pub fn all(results_root: &Path) -> Vec<ResultStore> {
        let Ok(entries) = fs::read_dir(results_root) else {
            return Vec::new();
        };
        let mut stores: Vec<ResultStore> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .map(|dir| ResultStore { dir })
            .collect();
        stores.sort_by(|a, b| a.dir.cmp(&b.dir));
        stores
    }

    /// The rows that can be counted, leaving out the files [`ResultStore::scan`] cannot count
    /// (for reading other experiments' measurements; [`ResultStore::rows`] refuses such a
    /// store); also how many files were left out.
    pub fn countable_rows(&self) -> Result<(Vec<ResultRow>, usize)> {
        let scan = self.scan()?;
        let rows = match &scan.frame {
            Some(frame) => ResultRow::from_frame(frame)?,
            None => Vec::new(),
        };
        Ok((rows, scan.problems.len()))
    }

    fn row_path(&self, fingerprint: &str) -> PathBuf {
        self.dir.join(format!("{fingerprint}.parquet"))
    }

    /// Takes the store's lock, or says which process holds it.
    pub fn lock(&self, command: &str) -> Result<StoreLock> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let path = self.dir.join(".lock");
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                anyhow::bail!(
                    "another harness run is writing into {}: {}; wait for it to finish (or stop it) and run again",
                    self.dir.display(),
                    holder.trim()
                );
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        file.set_len(0)?;
        writeln!(
            file,
            "process {} started {} ({command})",
            std::process::id(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )?;
        file.flush()?;
        Ok(StoreLock { _file: file })
    }

    /// When the row of `fingerprint` was written, if it has one.
    pub fn row_written_at(&self, fingerprint: &str) -> Option<std::time::SystemTime> {
        fs::metadata(self.row_path(fingerprint))
            .ok()?
            .modified()
            .ok()
    }

    /// Fingerprints of the row files present (by name; [`ResultStore::rows`] reads them).
    pub fn finished(&self) -> HashSet<String> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return HashSet::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                fingerprint_of_name(&e.file_name().to_string_lossy()).map(str::to_string)
            })
            .collect()
    }

    /// Writes one row atomically; a row with the same fingerprint is replaced. The file gets
    /// the permissions the umask gives a new file.
    pub fn write(&self, row: &ResultRow) -> Result<PathBuf> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let mut frame = ResultRow::to_frame(std::slice::from_ref(row))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".row-{}-", std::process::id()))
            .suffix(".tmp")
            .permissions(<fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o666))
            .tempfile_in(&self.dir)?;
        ParquetWriter::new(tmp.as_file_mut()).finish(&mut frame)?;
        tmp.as_file_mut().flush()?;
        tmp.as_file().sync_all()?;
        harness_spec::fault::point("row-write");
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

    /// Every stored row as one Polars frame; an error that lists the files that cannot be
    /// counted (unreadable, a second copy of a row, a row under another name) and how to repair
    /// the store, if there are any.
    pub fn frame(&self) -> Result<DataFrame> {
        let scan = self.scan()?;
        if !scan.problems.is_empty() {
            let list: Vec<String> = scan
                .problems
                .iter()
                .map(|p| format!("  {}: {}", p.path.display(), p.why))
                .collect();
            anyhow::bail!(
                "the result store {} has {} file{} that cannot be counted as rows:\n{}\n`harness doctor --repair` with the experiment file moves them into {}/ (their cells then run again)",
                self.dir.display(),
                scan.problems.len(),
                if scan.problems.len() == 1 { "" } else { "s" },
                list.join("\n"),
                self.dir.join(QUARANTINE).display()
            );
        }
        match scan.frame {
            Some(frame) => Ok(frame),
            None => Ok(ResultRow::to_frame(&[])?),
        }
    }

    /// Reads every row file and sorts out what cannot be counted: a file that does not read
    /// as rows, holds other than one row, holds a row whose fingerprint is not its name, or
    /// is any other `.parquet` file (a copy, a backup).
    pub fn scan(&self) -> Result<Scan> {
        let mut paths: Vec<PathBuf> = match fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.path())
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
        let mut problems = Vec::new();
        for path in paths {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let problem = |why: String| Problem {
                path: path.clone(),
                why,
            };
            let part = match File::open(&path)
                .map_err(PolarsError::from)
                .and_then(|f| ParquetReader::new(f).finish())
            {
                Ok(part) => part,
                Err(e) => {
                    problems.push(problem(format!("cannot be read ({e})")));
                    continue;
                }
            };
            let Some(expected) = fingerprint_of_name(&name) else {
                problems.push(problem(
                    "is not named by a cell's fingerprint (a copy or a backup?): its rows would be counted twice"
                        .into(),
                ));
                continue;
            };
            if part.height() != 1 {
                problems.push(problem(format!("holds {} rows, not one", part.height())));
                continue;
            }
            let fingerprint = part
                .column("fingerprint")
                .ok()
                .and_then(|c| c.str().ok()?.get(0).map(str::to_string));
            if fingerprint.as_deref() != Some(expected) {
                problems.push(problem(format!(
                    "holds the row of fingerprint {}, not the one its name says",
                    fingerprint.as_deref().unwrap_or("(none)")
                )));
                continue;
            }
            // Through the row type and back, so that rows written before a column existed
            // (its value absent: null) stack with today's.
            let rows = match ResultRow::from_frame(&part) {
                Ok(rows) => rows,
                Err(e) => {
                    problems.push(problem(format!("is not a result row ({e})")));
                    continue;
                }
            };
            if let Err(e) = ResultRow::to_frame(&rows).and_then(|f| frame.vstack_mut(&f).map(drop))
            {
                problems.push(problem(format!("has another schema ({e})")));
            }
        }
        Ok(Scan {
            frame: Some(frame),
            problems,
        })
    }

    /// Moves the files [`ResultStore::scan`] cannot count into `quarantine/` (nothing is
    /// deleted); returns where each went.
    pub fn quarantine(&self, problems: &[Problem]) -> Result<Vec<PathBuf>> {
        let dir = self.dir.join(QUARANTINE);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut moved = Vec::new();
        for p in problems {
            let name = p.path.file_name().context("a file without a name")?;
            let mut to = dir.join(name);
            let mut i = 1;
            while to.exists() {
                to = dir.join(format!("{}.{i}", name.to_string_lossy()));
                i += 1;
            }
            fs::rename(&p.path, &to)
                .with_context(|| format!("moving {} to {}", p.path.display(), to.display()))?;
            moved.push(to);
        }
        Ok(moved)
    }

    /// Removes temporary files left by an interrupted write. Call it only holding the lock.
    pub fn clean_partial_writes(&self, _lock: &StoreLock) {
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for e in entries.filter_map(|e| e.ok()) {
                if e.file_name().to_string_lossy().starts_with(".row-") {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }
}

/// The rows of one Parquet file written by [`write_parquet`].
pub fn read_parquet(path: &Path) -> Result<Vec<ResultRow>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let frame = ParquetReader::new(file)
        .finish()
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    Ok(ResultRow::from_frame(&frame)?)
}

/// Writes `rows` as one Parquet file (for reports).
pub fn write_parquet(rows: &[ResultRow], path: &Path) -> Result<()> {
    let mut frame = ResultRow::to_frame(rows)?;
    let mut file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    ParquetWriter::new(&mut file).finish(&mut frame)?;
    Ok(())
}
