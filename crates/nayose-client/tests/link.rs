//! Link runs over real QUIC on 127.0.0.1 against the real server node (and, for a wrong proof,
//! a fake one): both retrieval modes against the ground truth, the cache, bad input, a bad
//! proof, a server restart mid-run and an epoch change mid-run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use nayose_client::{ClientError, LinkSummary, NoProgress, Phase, Privacy, Progress, link_async};
use nayose_csv::CsvError;

const PERSONS: u32 = 1500;
const STEP: usize = 40;
const UNKNOWN: u32 = 7;

async fn run(
    cfg: &nayose_client::ClientConfig,
    p: &dyn Progress,
) -> Result<LinkSummary, ClientError> {
    tokio::time::timeout(TEST_LIMIT, link_async(cfg, p))
        .await
        .expect("the link run must end in bounded time")
}

/// Calls `action` once, when `at` units of `phase` are done.
struct Hook {
    phase: Phase,
    at: u64,
    seen: AtomicU64,
    fired: AtomicBool,
    action: Box<dyn Fn() + Send + Sync>,
}

impl Hook {
    fn new(phase: Phase, at: u64, action: impl Fn() + Send + Sync + 'static) -> Hook {
        Hook {
            phase,
            at,
            seen: AtomicU64::new(0),
            fired: AtomicBool::new(false),
            action: Box::new(action),
        }
    }
}

impl Progress for Hook {
    fn advance(&self, phase: Phase, n: u64) {
        if phase != self.phase {
            return;
        }
        let seen = self.seen.fetch_add(n, Ordering::SeqCst) + n;
        if seen >= self.at && !self.fired.swap(true, Ordering::SeqCst) {
            (self.action)();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_modes_match_the_ground_truth_and_the_cache_is_reused() {
    let fx = Fixture::new(PERSONS, |_| {});
    let server = fx.start().await;
    let addr = server.local_addr();
    let input = fx.path("held.csv");
    let truth = write_held(&input, &fx.reg, STEP, UNKNOWN);

    // Full mode, first run: downloads the table.
    let out1 = fx.path("out-full.csv");
    let cfg = fx.client(addr, &input, &out1);
    let s1 = run(&cfg, &NoProgress).await.unwrap();
    let labels_full = check_ground_truth(&read_output(&out1), &truth);
    assert_eq!(s1.mode, Privacy::Full);
    assert!(!s1.cache_used);
    assert_eq!(s1.rows, truth.len() as u64);
    assert_eq!(s1.not_found_rows, u64::from(UNKNOWN));
    assert_eq!(s1.linked_rows, truth.len() as u64 - u64::from(UNKNOWN));
    assert_eq!(s1.groups, labels_full.len() as u64);
    assert!(
        s1.distinct_numbers < s1.rows,
        "duplicate rows are evaluated once"
    );
    assert_eq!(s1.entries_received, fx.reg.len() as u64);
    assert_eq!(s1.table_entries, fx.reg.len() as u64);
    assert_eq!(s1.epoch, server.epoch_id());
    let hist_numbers: u64 = s1.group_size_histogram.iter().map(|(k, v)| k * v).sum();
    assert_eq!(hist_numbers, s1.linked_numbers);

    // Full mode, second run against the same epoch: only Info and Evaluate travel.
    let out2 = fx.path("out-full-2.csv");
    let cfg2 = fx.client(addr, &input, &out2);
    let s2 = run(&cfg2, &NoProgress).await.unwrap();
    assert!(s2.cache_used);
    assert_eq!(s2.entries_received, 0);
    assert_eq!(std::fs::read(&out1).unwrap(), std::fs::read(&out2).unwrap());
    let eval_reply_bound = s2.distinct_numbers * 32 + s2.evaluate_requests * 128 + 256;
    assert!(
        s2.bytes_received <= eval_reply_bound,
        "second run received {} bytes; evaluation replies are at most {eval_reply_bound}",
        s2.bytes_received
    );
    assert!(s1.bytes_received > s2.bytes_received + 32 * fx.reg.len() as u64 - 1);

    // k-anon mode: only the ranges, same labels (same client).
    let out3 = fx.path("out-kanon.csv");
    let mut cfg3 = fx.client(addr, &input, &out3);
    cfg3.privacy = Some(Privacy::KAnon);
    let s3 = run(&cfg3, &NoProgress).await.unwrap();
    assert_eq!(s3.mode, Privacy::KAnon, "{:?}", s3.mode_note);
    let bits = s3.prefix_bits.expect("k-anon used a prefix length");
    assert!(bits > 0);
    assert!(s3.ranges_fetched > 0 && s3.ranges_fetched <= s3.distinct_numbers);
    assert!(s3.entries_received < fx.reg.len() as u64);
    let labels_kanon = check_ground_truth(&read_output(&out3), &truth);
    assert_eq!(labels_full, labels_kanon);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_rows_are_all_listed_and_nothing_is_sent() {
    let fx = Fixture::new(50, |_| {});
    let server = fx.start().await;
    let input = fx.path("held.csv");
    let good = &fx.reg[0];
    std::fs::write(
        &input,
        format!(
            "insurer_number,symbol,number,branch\n\
             {},{},{},{}\n\
             06130010,1,2,01\n\
             {},{},{},{}\n\
             {},{},,01\n",
            good.insurer,
            good.symbol,
            good.number,
            good.branch,
            good.insurer,
            good.symbol,
            good.number,
            good.branch,
            good.insurer,
            good.symbol
        ),
    )
    .unwrap();
    let out = fx.path("out.csv");
    let cfg = fx.client(server.local_addr(), &input, &out);
    let err = run(&cfg, &NoProgress).await.unwrap_err();
    let ClientError::Csv(CsvError::InvalidRows { errors }) = &err else {
        panic!("expected the list of invalid rows, got {err}");
    };
    let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![3, 5]);
    assert_eq!(errors[0].column.as_deref(), Some("insurer_number"));
    assert_eq!(errors[1].column.as_deref(), Some("number"));
    let text = err.to_string();
    assert!(text.contains("line 3") && text.contains("line 5"), "{text}");
    assert!(!out.exists());
    assert!(
        server.stats().is_empty(),
        "no request may reach the server: {:?}",
        server.stats()
    );

    // With skip_invalid the same file links, the bad rows marked invalid.
    let mut cfg = cfg;
    cfg.skip_invalid = Some(true);
    let s = run(&cfg, &NoProgress).await.unwrap();
    assert_eq!((s.rows, s.invalid_rows, s.linked_rows), (4, 2, 2));
    assert_eq!(s.distinct_numbers, 1);
    assert_eq!(s.invalid_examples.len(), 2);
    let rows = read_output(&out);
    let statuses: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(statuses, vec!["linked", "invalid", "linked", "invalid"]);
    assert_eq!(rows[0].0, rows[2].0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_proof_fails_the_run_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let addr = lying_server(&pki).await;
    let input = dir.path().join("held.csv");
    write_held(&input, &registry(20), 2, 0);
    let out = dir.path().join("out").join("linked.csv");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let cfg = client_config(&pki, addr, &input, &out, &dir.path().join("cache"));
    let err = run(&cfg, &NoProgress).await.unwrap_err();
    assert!(matches!(err, ClientError::ProofInvalid { .. }), "{err}");
    assert!(err.to_string().contains("does not verify"), "{err}");
    assert_eq!(
        std::fs::read_dir(out.parent().unwrap()).unwrap().count(),
        0,
        "no output and no temporary file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_server_name_is_a_handshake_error() {
    let fx = Fixture::new(20, |_| {});
    let server = fx.start().await;
    let input = fx.path("held.csv");
    write_held(&input, &fx.reg, 2, 0);
    let out = fx.path("out.csv");
    let mut cfg = fx.client(server.local_addr(), &input, &out);
    cfg.server_name = Some("elsewhere.example".into());
    let err = run(&cfg, &NoProgress).await.unwrap_err();
    assert!(matches!(err, ClientError::Handshake { .. }), "{err}");
    assert!(!out.exists());
    server.shutdown().await;
}

/// Shuts the server down when the hook fires (blocking the run until it is down), then starts
/// it again on the same address.
async fn restart_during(
    phase: Phase,
    at: u64,
    tweak: impl FnOnce(&mut nayose_server::ServerConfig),
) {
    let fx = Arc::new(Fixture::new(PERSONS, |c| {
        c.shutdown_grace_ms = 0;
        c.fetch_chunk_entries = 200;
        tweak(c);
    }));
    let server = fx.start().await;
    let addr = server.local_addr();
    let input = fx.path("held.csv");
    let truth = write_held(&input, &fx.reg, STEP, UNKNOWN);
    let out = fx.path("out.csv");
    let cfg = fx.client(addr, &input, &out);

    let (go_tx, mut go_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (down_tx, down_rx) = std::sync::mpsc::channel::<()>();
    let fx2 = fx.clone();
    let controller = tokio::spawn(async move {
        go_rx.recv().await;
        server.shutdown().await;
        drop(server); // releases the UDP port
        down_tx.send(()).unwrap();
        fx2.start_at(addr).await
    });
    let down_rx = std::sync::Mutex::new(down_rx);
    let hook = Hook::new(phase, at, move || {
        go_tx.send(()).unwrap();
        down_rx
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(30))
            .unwrap();
    });
    let s = run(&cfg, &hook).await.unwrap();
    assert!(hook.fired.load(Ordering::SeqCst));
    let restarted = controller.await.unwrap();
    assert!(s.connections >= 2, "the run reconnected: {s:?}");
    check_ground_truth(&read_output(&out), &truth);
    if phase == Phase::Fetch {
        assert_eq!(
            s.entries_received,
            fx.reg.len() as u64,
            "the download resumed from its offset instead of starting over"
        );
    }
    assert_eq!(s.epoch_restarts, 0);
    restarted.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_restart_during_evaluate_is_survived() {
    restart_during(Phase::Evaluate, 32, |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_restart_during_the_download_resumes_it() {
    restart_during(Phase::Fetch, 1000, |_| {}).await;
}

/// Publishes a new epoch when the hook fires and waits until the server has picked it up.
async fn epoch_change_during(phase: Phase, at: u64, privacy: Privacy) -> LinkSummary {
    let fx = Arc::new(Fixture::new(PERSONS, |c| c.fetch_chunk_entries = 200));
    let server = fx.start().await;
    let before = server.epoch_id();
    let input = fx.path("held.csv");
    let truth = write_held(&input, &fx.reg, STEP, UNKNOWN);
    let out = fx.path("out.csv");
    let mut cfg = fx.client(server.local_addr(), &input, &out);
    cfg.privacy = Some(privacy);
    cfg.pipeline_depth = Some(1);
    let fx2 = fx.clone();
    let hook = Hook::new(phase, at, move || {
        fx2.new_epoch();
        std::thread::sleep(Duration::from_millis(600));
    });
    let s = run(&cfg, &hook).await.unwrap();
    assert!(hook.fired.load(Ordering::SeqCst));
    let after = server.epoch_id();
    assert_ne!(before, after, "the server switched epochs");
    assert_eq!(s.epoch, after, "results belong to the new epoch only");
    assert_eq!(s.epoch_restarts, 1);
    check_ground_truth(&read_output(&out), &truth);
    server.shutdown().await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_epoch_change_during_evaluate_restarts_cleanly() {
    let s = epoch_change_during(Phase::Evaluate, 32, Privacy::Full).await;
    assert_eq!(s.mode, Privacy::Full);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_epoch_change_after_ranges_were_fetched_falls_back_to_full_mode() {
    let s = epoch_change_during(Phase::Fetch, 3, Privacy::KAnon).await;
    assert_eq!(s.requested_mode, Privacy::KAnon);
    assert_eq!(
        s.mode,
        Privacy::Full,
        "no ranges of the same numbers in a second epoch"
    );
    assert!(
        s.mode_note.as_deref().unwrap_or("").contains("epoch"),
        "{:?}",
        s.mode_note
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_insufficient_quota_stops_before_evaluating() {
    let fx = Fixture::new(50, |_| {});
    let clients = fx.server_config.clients.clone().unwrap();
    std::fs::write(
        &clients,
        format!("[[client]]\nid = \"{CLIENT_ID}\"\nevaluations_per_day = 5\n"),
    )
    .unwrap();
    let server = fx.start().await;
    let input = fx.path("held.csv");
    write_held(&input, &fx.reg, 2, 0);
    let out = fx.path("out.csv");
    let cfg = fx.client(server.local_addr(), &input, &out);
    let err = run(&cfg, &NoProgress).await.unwrap_err();
    let ClientError::Quota { needed, left, .. } = err else {
        panic!("expected a quota error, got {err}");
    };
    assert_eq!(left, 5);
    assert!(needed > 5);
    assert!(!out.exists());
    let evaluated: u64 = server.stats().values().map(|c| c.evaluations).sum();
    assert_eq!(evaluated, 0, "nothing evaluated");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_not_accredited_is_refused_without_retrying() {
    let fx = Fixture::new(20, |_| {});
    let server = fx.start().await;
    let other = nayose_pki::issue_client_cert(&fx.pki.ca, "stranger").unwrap();
    std::fs::write(fx.pki.dir.join("client.pem"), &other.cert_pem).unwrap();
    write_private(&fx.pki.dir.join("client.key"), &other.key_pem);
    let input = fx.path("held.csv");
    write_held(&input, &fx.reg, 2, 0);
    let out = fx.path("out.csv");
    let cfg = fx.client(server.local_addr(), &input, &out);
    let started = std::time::Instant::now();
    let err = run(&cfg, &NoProgress).await.unwrap_err();
    assert!(
        matches!(err, ClientError::NotAccredited { ref client_id, .. } if client_id == "stranger"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "no retry loop");
    assert!(!out.exists());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cp932_input_gives_a_cp932_output_with_every_column_kept() {
    let fx = Fixture::new(30, |_| {});
    let server = fx.start().await;
    let input = fx.path("held-sjis.csv");
    let n = &fx.reg[0];
    let m = fx
        .reg
        .iter()
        .find(|x| x.person == n.person && x.insurer != n.insurer);
    let m = m.unwrap_or(n);
    let text = format!(
        "氏名,保険者番号,記号,番号,枝番\r\n山田 太郎,{},{},{},{}\r\n山田　太郎,{},{},{},{}\r\n",
        n.insurer, n.symbol, n.number, n.branch, m.insurer, m.symbol, m.number, m.branch
    );
    let (bytes, _, bad) = encoding_rs::SHIFT_JIS.encode(&text);
    assert!(!bad);
    std::fs::write(&input, &bytes).unwrap();
    let out = fx.path("out-sjis.csv");
    let mut cfg = fx.client(server.local_addr(), &input, &out);
    cfg.columns = Some(nayose_client::ColumnNames {
        insurer: Some("保険者番号".into()),
        symbol: Some("記号".into()),
        number: Some("番号".into()),
        branch: Some("枝番".into()),
        combined: None,
    });
    let s = run(&cfg, &NoProgress).await.unwrap();
    assert_eq!((s.rows, s.linked_rows, s.groups), (2, 2, 1));
    let raw = std::fs::read(&out).unwrap();
    let (decoded, _, bad) = encoding_rs::SHIFT_JIS.decode(&raw);
    assert!(!bad, "the output is CP932");
    let lines: Vec<&str> = decoded.lines().collect();
    assert_eq!(
        lines[0],
        "氏名,保険者番号,記号,番号,枝番,nayose_group,nayose_status"
    );
    assert!(
        lines[1].starts_with("山田 太郎,") && lines[1].ends_with(",linked"),
        "{}",
        lines[1]
    );
    assert!(lines[2].starts_with("山田　太郎,"), "{}", lines[2]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_refused_as_too_large_is_split() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let addr = fake_server(&pki, false, Some(5)).await;
    let input = dir.path().join("held.csv");
    let truth = write_held(&input, &registry(40), 1, 0);
    let out = dir.path().join("out.csv");
    let cfg = client_config(&pki, addr, &input, &out, &dir.path().join("cache"));
    let s = run(&cfg, &NoProgress).await.unwrap();
    assert_eq!(
        s.not_found_rows,
        truth.len() as u64,
        "the fake table is empty"
    );
    assert!(
        s.evaluate_requests >= s.distinct_numbers.div_ceil(4),
        "batches of 16 were split into requests of at most 4: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_certificate_from_another_ca_is_refused_without_retrying() {
    let fx = Fixture::new(20, |_| {});
    let server = fx.start().await;
    let rogue_ca = nayose_pki::generate_ca("rogue CA").unwrap();
    let rogue = nayose_pki::issue_client_cert(&rogue_ca, CLIENT_ID).unwrap();
    std::fs::write(fx.pki.dir.join("client.pem"), &rogue.cert_pem).unwrap();
    write_private(&fx.pki.dir.join("client.key"), &rogue.key_pem);
    let input = fx.path("held.csv");
    write_held(&input, &fx.reg, 2, 0);
    let out = fx.path("out.csv");
    let cfg = fx.client(server.local_addr(), &input, &out);
    let started = std::time::Instant::now();
    let err = run(&cfg, &NoProgress).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Handshake { .. } | ClientError::NotAccredited { .. }
        ),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no retry loop: {err}"
    );
    assert!(!out.exists());
    server.shutdown().await;
}
