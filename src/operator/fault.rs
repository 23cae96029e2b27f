//! Fault injection for crash-safety tests: with `XCT_CRASH_AT=POINT[:N]`,
//! the process aborts (no cleanup, like SIGKILL) the N-th time (default 1st)
//! it reaches POINT: `after-decision`, `after-intent`, `after-execution`,
//! `after-result`. Without the variable every point is a no-op.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

struct Plan {
    point: String,
    nth: u32,
    seen: AtomicU32,
}

fn plan() -> Option<&'static Plan> {
    static PLAN: OnceLock<Option<Plan>> = OnceLock::new();
    PLAN.get_or_init(|| {
        let v = std::env::var("XCT_CRASH_AT").ok()?;
        let (point, nth) = match v.split_once(':') {
            Some((p, n)) => (p.to_string(), n.parse().unwrap_or(1)),
            None => (v, 1),
        };
        Some(Plan { point, nth, seen: AtomicU32::new(0) })
    })
    .as_ref()
}

/// A named boundary in the step pipeline.
pub fn point(name: &str) {
    if let Some(p) = plan()
        && p.point == name
        && p.seen.fetch_add(1, Ordering::SeqCst) + 1 == p.nth
    {
        eprintln!("xct: XCT_CRASH_AT={name}:{}: aborting", p.nth);
        std::process::abort();
    }
}
