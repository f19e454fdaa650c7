//! Facts about this run that every result row records: code version, machine, time.

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

/// The git commit of the working directory and whether it has uncommitted changes to tracked files.
pub fn git_state() -> (Option<String>, Option<bool>) {
    let commit = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let dirty = commit.as_ref().and_then(|_| {
        Command::new("git")
            .args(["status", "--porcelain", "--untracked-files=no"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| !o.stdout.is_empty())
    });
    (commit, dirty)
}

pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// (name, version) of the harness and the libraries that decide its numbers.
pub fn versions() -> Vec<(String, String)> {
    vec![
        ("harness".into(), env!("CARGO_PKG_VERSION").into()),
        ("burn".into(), env!("HARNESS_BURN_VERSION").into()),
        ("polars".into(), env!("HARNESS_POLARS_VERSION").into()),
        (
            "rustc".into(),
            env!("HARNESS_RUSTC_VERSION")
                .trim_start_matches("rustc ")
                .into(),
        ),
    ]
}

/// SHA256 over the files of a checkpoint folder, in name order.
pub fn checkpoint_sha256(files: &[&Path]) -> Option<String> {
    let mut h = Sha256::new();
    for f in files {
        h.update(std::fs::read(f).ok()?);
    }
    Some(hex::encode(h.finalize()))
}
