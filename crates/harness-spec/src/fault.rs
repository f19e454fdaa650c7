//! Fault injection for the tests that check what survives a crash: with
//! `HARNESS_FAULT=POINT:N` in its environment, a harness process kills itself with SIGKILL the
//! N-th time it passes the named point, exactly as `kill -9` from outside would stop it there.
//! The points: `pretrain-step` (after a pre-training step), `row-write` (a result row written
//! to its temporary file, not yet renamed into place) and `between-cells` (a cell's row
//! stored, the next cell not started). Without the variable a point costs one comparison.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

static ARMED: OnceLock<Option<(String, usize)>> = OnceLock::new();
static PASSED: AtomicUsize = AtomicUsize::new(0);

/// Passes the point `name`: kills this process if `HARNESS_FAULT` names it and this is the
/// pass it counts to.
pub fn point(name: &str) {
    let armed = ARMED.get_or_init(|| {
        let value = std::env::var("HARNESS_FAULT").ok()?;
        let (point, n) = value.rsplit_once(':')?;
        Some((point.to_string(), n.parse().ok()?))
    });
    if let Some((point, n)) = armed
        && point == name
        && PASSED.fetch_add(1, Ordering::SeqCst) + 1 == *n
    {
        // SAFETY: sends a signal to this very process; nothing is touched afterwards.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
