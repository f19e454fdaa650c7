//! What the end-to-end tests share: a project folder in a temporary directory, the `harness`
//! binary run inside it with its own cache and one thread, and the rows it wrote. Each test
//! file adds its own constructor (`impl Project { fn new… }`) that writes its data.

#![allow(dead_code)]

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    /// An empty project folder.
    pub fn empty() -> Project {
        Project {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `harness ARGS` in the project folder, with the project's cache and no inherited paths.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("HARNESS_CACHE", self.path("cache"))
            .env_remove("HARNESS_MANIFESTS")
            .env_remove("HARNESS_RESULTS")
            .env_remove("HARNESS_REPORTS")
            .env("RAYON_NUM_THREADS", "1");
        cmd
    }

    pub fn harness(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// The rows of an experiment's result store.
    pub fn rows(&self, experiment: &str) -> Vec<harness_results::ResultRow> {
        harness_results::ResultStore::open(&self.path("results"), experiment)
            .rows()
            .unwrap()
    }

    pub fn write(&self, rel: &str, text: &str) {
        fs::write(self.path(rel), text).unwrap();
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
