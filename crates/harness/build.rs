//! Records the versions of the main dependencies (from Cargo.lock) and of rustc, for provenance.

fn main() {
    let lock = std::fs::read_to_string("../../Cargo.lock").unwrap_or_default();
    for name in ["burn", "polars"] {
        let marker = format!("name = \"{name}\"\nversion = \"");
        let version = lock
            .find(&marker)
            .map(|at| {
                let rest = &lock[at + marker.len()..];
                rest[..rest.find('"').unwrap_or(0)].to_string()
            })
            .unwrap_or_else(|| "unknown".into());
        println!(
            "cargo:rustc-env=HARNESS_{}_VERSION={version}",
            name.to_uppercase()
        );
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=HARNESS_RUSTC_VERSION={version}");
    println!("cargo:rerun-if-changed=../../Cargo.lock");
    git_state();
}

/// The commit this harness is built from and whether its tracked files differ from it, read
/// from the checkout that holds its sources (not from wherever it later runs): rows and
/// reports record them. Empty when the sources are not a git checkout.
fn git_state() {
    // Read when the script runs, not when it is compiled: checkouts that share a target
    // directory share the compiled script.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let root = std::path::Path::new(&manifest_dir).join("../..");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_default();
    let dirty = if commit.is_empty() {
        String::new()
    } else {
        git(&["status", "--porcelain", "--untracked-files=no"])
            .map(|s| (!s.is_empty()).to_string())
            .unwrap_or_default()
    };
    println!("cargo:rustc-env=HARNESS_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=HARNESS_GIT_DIRTY={dirty}");
    // Run again when the commit or any source changes. The paths are given relative to this
    // package, so that cargo checks them in whichever checkout it builds: two checkouts that
    // share a target directory share this script's last output, and absolute paths would tie it
    // to the other one. Paths that do not exist are left out (cargo would run the script on
    // every build).
    let relative = |path: &std::path::Path| -> String {
        let root = root.canonicalize().unwrap_or_else(|_| root.clone());
        match path
            .canonicalize()
            .ok()
            .and_then(|p| p.strip_prefix(&root).ok().map(std::path::Path::to_path_buf))
        {
            Some(inside) => format!("../../{}", inside.display()),
            None => path.display().to_string(),
        }
    };
    // And when cargo is started from another directory, as when another checkout builds.
    println!("cargo:rerun-if-env-changed=PWD");
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let git_dir = std::path::PathBuf::from(git_dir);
        for name in ["HEAD", "index", "packed-refs", "refs"] {
            let path = git_dir.join(name);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", relative(&path));
            }
        }
    }
    for name in ["crates", "Cargo.toml", "bench"] {
        let path = root.join(name);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", relative(&path));
        }
    }
}
