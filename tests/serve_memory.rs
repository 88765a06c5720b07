//! Serving an epoch does not read the table into the heap (issue 10): the server maps the
//! epoch's table, so its anonymous memory (heap and stacks, `RssAnon` in
//! /proc) does not grow with the number of entries. Two servers, one over a small and one
//! over a large epoch, are started through the binary; the difference of their anonymous
//! memory is at most 8 bytes per additional number (reading the table into the heap, as before,
//! costs about 70).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

/// Resident anonymous memory of process `pid`, in bytes (Linux).
fn rss_anon(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .expect("RssAnon in /proc/PID/status")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

/// Starts a server over a world of `persons` persons and returns (numbers, its RssAnon after
/// the epoch was loaded and it listens).
fn serving(persons: usize) -> (u64, u64) {
    let w = world(persons);
    setup_pki_and_epoch(&w, "research-01");
    let numbers = std::fs::read_to_string(w.path("registry.csv"))
        .unwrap()
        .lines()
        .count() as u64
        - 1;
    let server = serve(&w, free_udp_port());
    // Let start-up settle (the status line, the first epoch poll).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let rss = rss_anon(server.child.id());
    (numbers, rss)
}

#[test]
#[cfg(target_os = "linux")]
fn the_heap_of_a_serving_server_does_not_grow_with_the_table() {
    let (small_n, small_rss) = serving(500);
    let (large_n, large_rss) = serving(150_000);
    let extra = large_n - small_n;
    let per_number = large_rss.saturating_sub(small_rss) as f64 / extra as f64;
    eprintln!(
        "RssAnon: {small_rss} B serving {small_n} numbers, {large_rss} B serving {large_n}: \
         {per_number:.2} B per additional number"
    );
    assert!(
        per_number <= 8.0,
        "the server's anonymous memory grew by {per_number:.1} bytes per number (limit 8)"
    );
}
