//! A build's memory does not grow with the registry beyond a few dozen bytes per number (issue
//! 10: at most 64 bytes per number plus a constant). The build streams: 24-byte rows per number,
//! the numbers themselves spilled to an unnamed file, evaluated entries spilled to tag buckets,
//! the previous epoch's files read once, the new files written as they are made.
//!
//! Two registries, of about 300,000 and 800,000 numbers, are built through the binary, each as a full build
//! and then as a delta build; the build reports its own peak resident memory (`VmHWM`). The
//! difference per additional number must stay under 64 bytes (the build that held everything in
//! memory took about 200). Linux only: the peak comes from /proc.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

/// The peak resident bytes a `server build` reported on stderr.
fn peak(out: &std::process::Output) -> u64 {
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines()
        .find_map(|l| l.trim().strip_prefix("peak memory"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no peak memory line in the build's summary:\n{err}"))
}

/// Builds the world's registry (full build), then the same registry without its first 1% of
/// numbers (delta build); returns (numbers, full peak, delta peak).
fn builds(persons: usize) -> (u64, u64, u64) {
    let w = world(persons);
    let registry = std::fs::read_to_string(w.path("registry.csv")).unwrap();
    let numbers = registry.lines().count() as u64 - 1;
    let full = ok(&[
        "server",
        "build",
        "--data-dir",
        &w.s("server"),
        "--registry",
        &w.s("registry.csv"),
    ]);
    let mut lines = registry.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.collect();
    let next = std::iter::once(header)
        .chain(rows[rows.len() / 100..].iter().copied())
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(w.path("registry2.csv"), next + "\n").unwrap();
    let delta = ok(&[
        "server",
        "build",
        "--data-dir",
        &w.s("server"),
        "--registry",
        &w.s("registry2.csv"),
    ]);
    (numbers, peak(&full), peak(&delta))
}

#[test]
#[cfg(target_os = "linux")]
fn build_memory_grows_by_less_than_64_bytes_per_number() {
    // The small registry is large enough to fill the build's fixed buffers (an evaluation
    // batch, the read pipeline, the allocator's arenas: they grow up to about 300,000 numbers),
    // so that the difference counts what grows with the registry.
    let (small_n, small_full, small_delta) = builds(150_000);
    let (large_n, large_full, large_delta) = builds(400_000);
    let extra = (large_n - small_n) as f64;
    for (what, small, large) in [
        ("full build", small_full, large_full),
        ("delta build", small_delta, large_delta),
    ] {
        let per_number = large.saturating_sub(small) as f64 / extra;
        eprintln!(
            "{what}: peak {small} B over {small_n} numbers, {large} B over {large_n}: \
             {per_number:.1} B per additional number"
        );
        assert!(
            per_number <= 64.0,
            "the {what}'s peak memory grew by {per_number:.1} bytes per number (limit 64)"
        );
    }
}
