//! Facts about this run that every result row records: code version, machine, time.

/// The commit the harness was built from and whether its tracked files had changes then,
/// recorded by `build.rs` from the harness's own checkout: the directory a run starts in,
/// which may be any other repository, plays no part. None when it was not built from a git
/// checkout.
pub fn git_state() -> (Option<String>, Option<bool>) {
    let commit = Some(env!("HARNESS_GIT_COMMIT").to_string()).filter(|c| !c.is_empty());
    let dirty = match env!("HARNESS_GIT_DIRTY") {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    };
    (commit, dirty)
}

/// The facts about this machine that change float results: the CPU (model name with its
/// family, model and stepping numbers) and the widest SIMD level the kernels can dispatch to.
/// The same build gives the same bits on machines that agree on both (BURN-NOTES.md), and
/// may not otherwise.
pub fn machine() -> (String, String) {
    (cpu(), simd_level().to_string())
}

fn cpu() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let name = field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string());
    match (field("cpu family"), field("model"), field("stepping")) {
        (Some(f), Some(m), Some(s)) => format!("{name} (family {f} model {m} stepping {s})"),
        _ => name,
    }
}

/// The x86-64 micro-architecture level (v4 = AVX-512, v3 = AVX2 + FMA, v2 = SSE4.2) the
/// matrix kernels of the CPU backend pick at run time; `neon` or the architecture elsewhere.
fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512cd")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return "x86-64-v4 (avx512)";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return "x86-64-v3 (avx2, fma)";
        }
        if std::arch::is_x86_feature_detected!("sse4.2") {
            return "x86-64-v2 (sse4.2)";
        }
        "x86-64"
    }
    #[cfg(target_arch = "aarch64")]
    {
        "aarch64 (neon)"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        std::env::consts::ARCH
    }
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

/// This process's view for its result rows: the build's version, commit and state, the
/// machine and the thread count.
pub fn row_context() -> harness_train::RowContext {
    let (git_commit, git_dirty) = git_state();
    let (cpu, simd) = machine();
    harness_train::RowContext {
        harness_version: env!("CARGO_PKG_VERSION").into(),
        git_commit,
        git_dirty,
        host: host(),
        cpu,
        simd,
        threads: rayon::current_num_threads(),
    }
}
