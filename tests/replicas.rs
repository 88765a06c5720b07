//! Two `nayose server serve` replicas sharing one data directory and one PostgreSQL database
//! (quotas and audit log), over real QUIC on loopback: one is killed with SIGKILL in the middle
//! of a client's run, the client finishes with a second run against the other replica (the
//! client has one server address; its caches carry what the first run verified), and the
//! quota is charged exactly once per evaluation the audit log records.
//!
//! Needs `NAYOSE_TEST_POSTGRES` (a libpq connection string; `.ci/run` starts PostgreSQL and sets
//! it) and `psql`; without it the test prints SKIPPED, except under CI (`CI=true`), where it
//! fails.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A fresh schema in the test database, as a connection string whose `search_path` is it.
fn test_database(name: &str) -> Option<String> {
    let Some(base) = std::env::var("NAYOSE_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "NAYOSE_TEST_POSTGRES is not set under CI: .ci/run must start PostgreSQL"
        );
        eprintln!(
            "SKIPPED {name}: NAYOSE_TEST_POSTGRES not set (.ci/run starts PostgreSQL; README \
             \"Tests and CI\" says how to run these tests locally)"
        );
        return None;
    };
    let schema = format!("t_{name}_{}", std::process::id());
    psql(
        &base,
        &format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"),
    );
    Some(format!("{base} options='-c search_path={schema}'"))
}

/// One SQL command through `psql`; its unaligned output.
fn psql(conn: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            conn,
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .expect("psql (Debian's postgresql-client) runs");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn two_replicas_one_killed_mid_run_the_client_finishes_on_the_other_and_each_evaluation_is_charged_once()
 {
    let Some(conn) = test_database("replicas") else {
        return;
    };
    const CLIENT: &str = "research-pg";
    const BATCH: u64 = 16;
    const DEPTH: u64 = 2;
    let w = world(4000);
    setup_pki_and_epoch(&w, CLIENT);
    let key = w.path("audit.key");
    fs::write(&key, [0x5a_u8; 32]).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(
        w.path("server.toml"),
        format!(
            "postgres = {conn:?}\naudit_key_file = {:?}\nstatus_interval_secs = 0\n",
            key.display().to_string()
        ),
    )
    .unwrap();
    fs::write(
        w.path("client.toml"),
        format!(
            "batch_size = {BATCH}\npipeline_depth = {DEPTH}\n[retry]\nmax_attempts = 2\n\
             initial_backoff_ms = 200\nmax_backoff_ms = 400\nconnect_timeout_ms = 2000\n\
             request_timeout_ms = 5000\n"
        ),
    )
    .unwrap();
    let config = w.s("server.toml");
    let (port_a, port_b) = (free_udp_port(), free_udp_port());
    // Both replicas serve the same data directory (a shared serve lock each).
    let replica_a = serve_with(&w, port_a, &["--config", &config]);
    let replica_b = serve_with(&w, port_b, &["--config", &config]);

    let evaluate_records = || {
        psql(
            &conn,
            "SELECT count(*) FROM nayose_audit WHERE line LIKE '%\"op\":\"Evaluate\"%'",
        )
        .parse::<u64>()
        .unwrap()
    };
    let mut first = link_args(&w, port_a, CLIENT, "out-a.csv");
    first.extend(["--config".to_string(), w.s("client.toml")]);
    let mut run1 = Command::new(BIN)
        .args(&first)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill replica A once the client is well into its Evaluate batches.
    let started = Instant::now();
    while evaluate_records() < 10 {
        assert!(
            run1.try_wait().unwrap().is_none(),
            "the first run ended before 10 batches were evaluated"
        );
        assert!(started.elapsed() < Duration::from_secs(60), "no evaluation");
        thread::sleep(Duration::from_millis(5));
    }
    drop(replica_a); // SIGKILL
    let killed_at = evaluate_records();
    let out1 = run1.wait_with_output().unwrap();
    assert!(
        !out1.status.success(),
        "the first run lost its server mid-run and gives up (one server address, 2 attempts)"
    );

    // The client finishes against replica B; its cache holds what the first run verified.
    let mut second = link_args(&w, port_b, CLIENT, "out.csv");
    second.extend(["--config".to_string(), w.s("client.toml")]);
    let summary = run_link(&second);
    assert_groups_match(&w, "out.csv");
    let distinct = summary["distinct_numbers"].as_u64().unwrap();
    let evaluated = summary["evaluated_numbers"].as_u64().unwrap();
    let cached = summary["numbers_from_cache"].as_u64().unwrap();
    assert_eq!(evaluated + cached, distinct, "{summary}");
    assert!(
        cached > 0,
        "the first run's verified batches were kept: {summary}"
    );
    assert!(evaluated > 0, "the kill was mid-run: {summary}");

    // The quota in PostgreSQL, both counters.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (used_today, used_key_period) = rt
        .block_on(nayose_server::postgres_quota_used(&conn, CLIENT))
        .unwrap()
        .expect("charged");
    assert_eq!(used_today, used_key_period);

    // The audit log of both replicas: one chain, exported and verified with the key.
    drop(replica_b);
    let export = w.s("export");
    let out = ok(&["server", "audit", "export", "--postgres", &conn, &export]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("exported"),
        "{out:?}"
    );
    let out = ok(&[
        "server",
        "audit",
        "verify",
        &export,
        "--key-file",
        &key.display().to_string(),
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit log OK"));
    let log = fs::read_to_string(w.path("export/audit/audit.log")).unwrap();
    let mut recorded = 0u64;
    let mut batches = 0u64;
    for line in log.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        if r["event"] == "request" && r["op"] == "Evaluate" && r["outcome"] == "ok" {
            assert_eq!(r["client"], CLIENT);
            let n = r["elements"].as_u64().unwrap();
            assert_eq!(
                r["quota_before"].as_u64().unwrap() - r["quota_after"].as_u64().unwrap(),
                n,
                "each record carries its own charge"
            );
            recorded += n;
            batches += 1;
        }
    }
    // Exactly once per evaluation: the counters equal the evaluations the audit log records
    // (the charge and the record are one transaction).
    assert_eq!(used_today, recorded, "quota used vs. evaluations recorded");
    // And per number: every distinct number once, plus only what was evaluated and charged on
    // replica A but never reached the client (at most the batches in flight at the kill),
    // evaluated and charged again on B.
    let lost = used_today - distinct;
    assert!(
        used_today >= distinct && lost <= DEPTH * BATCH,
        "used {used_today}, distinct {distinct}"
    );
    eprintln!(
        "replicas: {distinct} distinct numbers, {batches} Evaluate batches recorded \
         ({killed_at} when replica A was killed), quota used {used_today} (= recorded), \
         {lost} evaluations answered by A but lost with it, charged again on B"
    );
}
