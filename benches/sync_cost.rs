//! The cost of keeping up with the registry (issue 9), measured end to end on loopback:
//!
//! 1. a registry of N numbers (default 1,000,000; `NAYOSE_SYNC_NUMBERS`), about 3 per person;
//!    the first epoch is built (full build, timed);
//! 2. a client holding H numbers (default 100,000; `NAYOSE_SYNC_HELD`) links: first run;
//! 3. the next epoch adds 1% new numbers (of new persons) and relabels 0.1% (persons merged); the
//!    client's file gains H/100 of the new numbers; the epoch is built as a delta (timed);
//! 4. second run; 5. third run with nothing changed.
//!
//! Reported as ratios from this one run: second-run bytes / first-run bytes (target ≤ 3%),
//! third-run bytes / first-run bytes (≤ 1%), evaluations per run (second = the new held numbers
//! only, third = 0), delta build time / full build time (≤ 10%).
//!
//! ```sh
//! cargo bench --bench sync_cost            # about 2 minutes on 2 cores, after the build
//! NAYOSE_SYNC_NUMBERS=200000 NAYOSE_SYNC_HELD=20000 cargo bench --bench sync_cost
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use nayose_client::{ClientConfig, ColumnNames, LinkSummary, NoProgress, link_async};
use nayose_server::{BuildOptions, Server, ServerConfig, build_epoch};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn insurer(i: usize) -> String {
    let body = format!("06{:02}{:03}", 1 + (i / 1000) % 47, i % 1000);
    let cd = nayose_number::check_digit(body.as_bytes()).unwrap();
    format!("{body}{cd}")
}

/// Number `i` of the synthetic registry: (insurer, symbol, number, branch).
fn number(i: usize) -> (String, String, String, String) {
    (
        insurer(i % 1000),
        format!("{}", 100 + (i / 1000) % 900),
        format!("{}", 1_000_000 + i / 1000),
        format!("{:02}", 1 + i % 3),
    )
}

fn write_registry(path: &Path, rows: &[(usize, usize)]) {
    let mut s = String::with_capacity(rows.len() * 48);
    s.push_str("person_id,insurer_number,symbol,number,branch\n");
    for &(n, p) in rows {
        let (a, b, c, d) = number(n);
        writeln!(s, "P{p:09},{a},{b},{c},{d}").unwrap();
    }
    std::fs::write(path, s).unwrap();
}

fn write_held(path: &Path, numbers: &[usize]) {
    let mut s = String::from("row_id,insurer_number,symbol,number,branch\n");
    for (r, &n) in numbers.iter().enumerate() {
        let (a, b, c, d) = number(n);
        writeln!(s, "r{r},{a},{b},{c},{d}").unwrap();
    }
    std::fs::write(path, s).unwrap();
}

fn main() {
    let n = env_or("NAYOSE_SYNC_NUMBERS", 1_000_000);
    let h = env_or("NAYOSE_SYNC_HELD", 100_000).min(n);
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s);

    // Registry: number i belongs to person i / 3.
    let mut rows: Vec<(usize, usize)> = (0..n).map(|i| (i, i / 3)).collect();
    write_registry(&p("registry.csv"), &rows);
    let held: Vec<usize> = (0..n).step_by((n / h).max(1)).take(h).collect();
    write_held(&p("held.csv"), &held);

    nayose_pki::init(&p("pki"), "localhost").unwrap();
    let (cert, key) = nayose_pki::issue_client(&p("pki"), "bench-client").unwrap();
    std::fs::write(
        p("clients.toml"),
        "[[client]]\nid = \"bench-client\"\nevaluations_per_day = 100000000\n",
    )
    .unwrap();
    let opts = BuildOptions::new(p("data"), p("registry.csv"));
    let t = Instant::now();
    let first_build = build_epoch(&opts).unwrap();
    let full_build = t.elapsed();

    let server_cfg = ServerConfig {
        data_dir: Some(p("data")),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        cert: Some(p("pki/server.pem")),
        key: Some(p("pki/server.key")),
        client_ca: Some(p("pki/client-ca.pem")),
        clients: Some(p("clients.toml")),
        status_interval_secs: 0,
        ..ServerConfig::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let link = |label: &str| -> LinkSummary {
        rt.block_on(async {
            let server = Server::start(server_cfg.clone()).await.unwrap();
            let cfg = ClientConfig {
                server: Some(server.local_addr().to_string()),
                server_name: Some("localhost".into()),
                ca: Some(p("pki/server-ca.pem")),
                cert: Some(cert.clone()),
                key: Some(key.clone()),
                input: Some(p("held.csv")),
                output: Some(p(&format!("out-{label}.csv"))),
                cache_dir: Some(p("cache")),
                columns: Some(ColumnNames {
                    insurer: Some("insurer_number".into()),
                    symbol: Some("symbol".into()),
                    number: Some("number".into()),
                    branch: Some("branch".into()),
                    combined: None,
                }),
                ..ClientConfig::default()
            };
            let s = link_async(&cfg, &NoProgress).await.unwrap();
            server.shutdown().await;
            s
        })
    };
    let t = Instant::now();
    let run1 = link("first");
    let run1_time = t.elapsed();

    // The next epoch: 1% new numbers (new persons), 0.1% relabelled (merged into another person).
    let added = n / 100;
    let relabel = n / 1000;
    for k in 0..relabel {
        let i = (k * 997) % n;
        rows[i].1 = (rows[(i + 3) % n].1 + 1) % (n / 3).max(1);
    }
    for k in 0..added {
        rows.push((n + k, n + k));
    }
    write_registry(&p("registry.csv"), &rows);
    let mut held2 = held.clone();
    let new_held = (h / 100).max(1).min(added);
    held2.extend((0..new_held).map(|k| n + k * (added / new_held)));
    write_held(&p("held.csv"), &held2);
    let t = Instant::now();
    let second_build = build_epoch(&opts).unwrap();
    let delta_build = t.elapsed();
    let t = Instant::now();
    let run2 = link("second");
    let run2_time = t.elapsed();
    let t = Instant::now();
    let run3 = link("third");
    let run3_time = t.elapsed();

    let pct = |a: u64, b: u64| 100.0 * a as f64 / b.max(1) as f64;
    println!("## Sync cost (issue 9): {n} registry numbers, a client holding {h}\n");
    println!("| step | time | evaluated | bytes received | bytes sent | sync | ratio |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| full build (epoch {}) | {:.2} s | {} | | | | 1.00 (baseline) |",
        first_build.epoch_number,
        full_build.as_secs_f64(),
        first_build.evaluated
    );
    println!(
        "| delta build (epoch {}: +{} / -{} / ~{}) | {:.2} s | {} | | | | {:.3} × full build |",
        second_build.epoch_number,
        second_build.added,
        second_build.removed,
        second_build.relabelled,
        delta_build.as_secs_f64(),
        second_build.evaluated,
        delta_build.as_secs_f64() / full_build.as_secs_f64()
    );
    for (label, s, t, base) in [
        ("first run", &run1, run1_time, true),
        (
            "second run (after the delta epoch)",
            &run2,
            run2_time,
            false,
        ),
        ("third run (nothing changed)", &run3, run3_time, false),
    ] {
        println!(
            "| {label} | {:.2} s | {} | {} | {} | {} | {} |",
            t.as_secs_f64(),
            s.evaluated_numbers,
            s.bytes_received,
            s.bytes_sent,
            s.sync.kind,
            if base {
                "1.00 (baseline)".to_owned()
            } else {
                format!(
                    "{:.2}% of the first run's bytes",
                    pct(s.bytes_received, run1.bytes_received)
                )
            }
        );
    }
    println!(
        "\nsecond run evaluated {} numbers; the held file gained {new_held} new numbers",
        run2.evaluated_numbers
    );
    println!("full build phases: {:?}", first_build.phases);
    println!("delta build phases: {:?}", second_build.phases);
    let ok = pct(run2.bytes_received, run1.bytes_received) <= 3.0
        && pct(run3.bytes_received, run1.bytes_received) <= 1.0
        && run2.evaluated_numbers == new_held as u64
        && run3.evaluated_numbers == 0
        && delta_build.as_secs_f64() <= 0.10 * full_build.as_secs_f64();
    println!(
        "targets (≤ 3%, ≤ 1%, new numbers only, 0, delta build ≤ 10%): {}",
        if ok { "met" } else { "NOT met" }
    );
}
