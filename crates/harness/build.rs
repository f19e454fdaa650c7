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
}
