//! Link runs over real QUIC on 127.0.0.1 against the real server node (and, for a wrong proof,
//! a fake one): the ground truth across a base download, a free rerun, delta epochs and a new
//! key period; bad input; a bad proof; a server restart mid-run and an epoch change mid-run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use nayose_client::{ClientError, LinkSummary, NoProgress, Phase, Progress, link_async};
use std::os::unix::fs::PermissionsExt;

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
async fn a_base_a_free_rerun_deltas_and_a_new_key_period_all_match_the_ground_truth() {
    let fx = Fixture::new(PERSONS, |_| {});
    let server = fx.start().await;
    let addr = server.local_addr();
    let input = fx.path("held.csv");
    let mut truth = write_held(&input, &fx.reg, STEP, UNKNOWN);

    // First run: evaluates every distinct number, downloads a base.
    let out1 = fx.path("out1.csv");
    let s1 = run(&fx.client(addr, &input, &out1), &NoProgress)
        .await
        .unwrap();
    let labels1 = check_ground_truth(&read_output(&out1), &truth);
    assert_eq!(s1.sync.kind, "base");
    assert_eq!(s1.evaluated_numbers, s1.distinct_numbers);
    assert_eq!(s1.rows, truth.len() as u64);
    assert_eq!(s1.not_found_rows, u64::from(UNKNOWN));
    assert_eq!(s1.groups, labels1.len() as u64);
    assert!(
        s1.distinct_numbers < s1.rows,
        "duplicate rows are evaluated once"
    );
    assert_eq!(s1.entries_received, fx.reg.len() as u64);
    assert_eq!(s1.table_entries, fx.reg.len() as u64);
    assert_eq!(s1.epoch, server.epoch());
    assert_eq!(s1.key_period, server.key_period());
    let hist_numbers: u64 = s1.group_size_histogram.iter().map(|(k, v)| k * v).sum();
    assert_eq!(hist_numbers, s1.linked_numbers);

    // Rerun, same epoch: nothing evaluated, nothing downloaded, same output.
    let out2 = fx.path("out2.csv");
    let s2 = run(&fx.client(addr, &input, &out2), &NoProgress)
        .await
        .unwrap();
    assert_eq!(s2.sync.kind, "current");
    assert_eq!((s2.evaluated_numbers, s2.evaluate_requests), (0, 0));
    assert_eq!(s2.numbers_from_cache, s2.distinct_numbers);
    assert_eq!(s2.entries_received, 0);
    assert!(
        s2.bytes_received < 1024,
        "only Info: {} bytes",
        s2.bytes_received
    );
    assert_eq!(std::fs::read(&out1).unwrap(), std::fs::read(&out2).unwrap());

    // Two epochs later (a merge of two held persons, new numbers, a removed number): deltas.
    let mut reg = fx.reg.clone();
    let (a, b) = (reg[0].person.clone(), reg[reg.len() - 1].person.clone());
    let moved_from = reg
        .iter()
        .position(|n| n.person != a && labels1.contains_key(&n.person))
        .unwrap();
    let from_person = reg[moved_from].person.clone();
    for n in reg.iter_mut().filter(|n| n.person == from_person) {
        n.person = a.clone();
    }
    for t in truth.iter_mut().flatten() {
        if *t == from_person {
            *t = a.clone();
        }
    }
    fx.new_epoch(&reg);
    reg.retain(|n| n.person != b || labels1.contains_key(&b));
    reg.push(Num {
        person: "NEW000001".into(),
        insurer: insurer(4242),
        symbol: "77".into(),
        number: "4242".into(),
        branch: "01".into(),
    });
    fx.new_epoch(&reg);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let out3 = fx.path("out3.csv");
    let s3 = run(&fx.client(addr, &input, &out3), &NoProgress)
        .await
        .unwrap();
    check_ground_truth(&read_output(&out3), &truth);
    assert_eq!(s3.sync.kind, "delta", "{s3:?}");
    assert_eq!(s3.sync.from, Some(s1.epoch));
    assert_eq!(s3.epoch, server.epoch());
    assert_eq!(s3.evaluated_numbers, 0);
    assert!(
        s3.sync.relabelled >= 1 && s3.sync.added == 1,
        "{:?}",
        s3.sync
    );
    assert!(s3.bytes_received * 5 < s1.bytes_received);

    // A new key period: every number evaluated again under the new key, a new base.
    fx.new_key_period();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let out4 = fx.path("out4.csv");
    let s4 = run(&fx.client(addr, &input, &out4), &NoProgress)
        .await
        .unwrap();
    check_ground_truth(&read_output(&out4), &truth);
    assert_ne!(s4.key_period, s1.key_period);
    assert_eq!(s4.sync.kind, "base");
    assert_eq!(s4.evaluated_numbers, s4.distinct_numbers);
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
    let ClientError::InvalidRows {
        total,
        shown,
        reasons,
        ..
    } = &err
    else {
        panic!("expected the list of invalid rows, got {err}");
    };
    assert_eq!(*total, 2);
    assert!(
        shown[0].starts_with("line 3, column \"insurer_number\""),
        "{shown:?}"
    );
    assert!(
        shown[1].starts_with("line 5, column \"number\""),
        "{shown:?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("check_digit 1: ")),
        "{reasons:?}"
    );
    assert_eq!(err.kind(), "invalid_rows");
    let text = err.to_string();
    assert!(text.contains("pass --report FILE"), "{text}");
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
    let report = fx.path("report.csv");
    cfg.report = Some(report.clone());
    let s = run(&cfg, &NoProgress).await.unwrap();
    assert_eq!((s.rows, s.invalid_rows, s.linked_rows), (4, 2, 2));
    assert_eq!(s.distinct_numbers, 1);
    assert_eq!(s.invalid_examples.len(), 2);
    assert_eq!(s.report_counts.get("check_digit"), Some(&1), "{s:?}");
    assert_eq!(s.report_counts.get("empty_value"), Some(&1), "{s:?}");
    assert_eq!(
        s.columns.get("insurer_number").map(String::as_str),
        Some("insurer_number")
    );
    let text = s.to_string();
    assert!(
        text.contains("check_digit 1: correct the 保険者番号"),
        "{text}"
    );
    assert!(
        text.contains("columns: insurer_number → insurer_number, symbol → symbol"),
        "{text}"
    );
    let mode = std::fs::metadata(&report).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the report is owner-only");
    let report_text = std::fs::read_to_string(&report).unwrap();
    let mut rdr = csv::Reader::from_reader(report_text.as_bytes());
    assert_eq!(
        rdr.headers().unwrap(),
        vec![
            "line",
            "column",
            "value_as_written",
            "value_used",
            "reason",
            "message"
        ]
    );
    let lines: Vec<(String, String, String, String)> = rdr
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[0].to_owned(),
                r[1].to_owned(),
                r[2].to_owned(),
                r[4].to_owned(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            (
                "3".into(),
                "insurer_number".into(),
                "06130010".into(),
                "check_digit".into()
            ),
            (
                "5".into(),
                "number".into(),
                String::new(),
                "empty_value".into()
            ),
        ]
    );
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
    assert!(err.to_string().contains("did not verify"), "{err}");
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
    let text = err.to_string();
    assert!(
        text.contains(&server.local_addr().to_string()),
        "the address: {text}"
    );
    assert!(
        text.contains("this client refused the server's certificate (")
            && text.contains("not valid for the name \"elsewhere.example\" (--server-name)")
            && text.contains(" JST to "),
        "whose, why and the dates in JST: {text}"
    );
    assert!(!out.exists());
    server.shutdown().await;
}

/// No run of ten digits (UNIX seconds) in a message.
fn has_unix_seconds(text: &str) -> bool {
    text.as_bytes()
        .windows(10)
        .any(|w| w.iter().all(u8::is_ascii_digit))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_client_certificate_is_refused_before_any_network_work() {
    let fx = Fixture::new(20, |_| {});
    let expired = nayose_pki::issue_client_cert_valid(
        &fx.pki.client_ca,
        CLIENT_ID,
        (2020, 1, 1),
        (2021, 1, 1),
    )
    .unwrap();
    std::fs::write(fx.pki.dir.join("client.pem"), &expired.cert_pem).unwrap();
    write_private(&fx.pki.dir.join("client.key"), &expired.key_pem);
    let input = fx.path("held.csv");
    write_held(&input, &fx.reg, 2, 0);
    let out = fx.path("out.csv");
    // No server at all: the certificate is refused before any connection is tried.
    let nowhere: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let cfg = fx.client(nowhere, &input, &out);
    let err = run(&cfg, &NoProgress).await.unwrap_err();
    assert!(matches!(err, ClientError::Credentials { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("client.pem"), "the file: {text}");
    assert!(text.contains(&format!("CN={CLIENT_ID}")), "whose: {text}");
    assert!(
        text.contains("expired on 2021-01-01 09:00 JST")
            && text.contains("valid 2020-01-01 09:00 JST to 2021-01-01 09:00 JST"),
        "{text}"
    );
    assert!(!has_unix_seconds(&text), "{text}");
}

/// Shuts the server down when the hook fires (blocking the run until it is down), then starts
/// it again on the same address.
async fn restart_during(
    phase: Phase,
    at: u64,
    persons: u32,
    tweak: impl FnOnce(&mut nayose_server::ServerConfig),
) {
    let fx = Arc::new(Fixture::new(persons, |c| {
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
    restarted.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_restart_during_evaluate_is_survived() {
    restart_during(Phase::Evaluate, 32, PERSONS, |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_restart_during_the_download_resumes_it() {
    // A base larger than what QUIC buffers for one stream (about 1.25 MB by default; a compact
    // base codes an entry in about 11 bytes), so the restart lands while the server is still
    // sending it and the client must resume.
    restart_during(Phase::Fetch, 1000, 100_000, |_| {}).await;
}

/// Publishes a new epoch when the hook fires and waits until the server has picked it up.
async fn epoch_change_during(phase: Phase, at: u64) -> (LinkSummary, u32, u32) {
    let fx = Arc::new(Fixture::new(PERSONS, |c| c.fetch_chunk_entries = 200));
    let server = fx.start().await;
    let before = server.epoch();
    let input = fx.path("held.csv");
    let truth = write_held(&input, &fx.reg, STEP, UNKNOWN);
    let out = fx.path("out.csv");
    let mut cfg = fx.client(server.local_addr(), &input, &out);
    cfg.pipeline_depth = Some(1);
    let fx2 = fx.clone();
    let hook = Hook::new(phase, at, move || {
        let mut reg = fx2.reg.clone();
        reg.pop();
        fx2.new_epoch(&reg);
        std::thread::sleep(Duration::from_millis(600));
    });
    let s = run(&cfg, &hook).await.unwrap();
    assert!(hook.fired.load(Ordering::SeqCst));
    let after = server.epoch();
    assert_ne!(before, after, "the server switched epochs");
    assert_eq!(
        s.evaluated_numbers, s.distinct_numbers,
        "outputs stay valid across epochs of one key period: each number evaluated once"
    );
    check_ground_truth(&read_output(&out), &truth);
    server.shutdown().await;
    (s, before, after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_epoch_change_during_evaluate_keeps_the_outputs_and_syncs_the_new_epoch() {
    let (s, _, after) = epoch_change_during(Phase::Evaluate, 32).await;
    assert_eq!(
        s.epoch, after,
        "the sync targets the epoch current after evaluation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_epoch_change_during_the_base_download_gives_one_consistent_epoch() {
    // The base of the old epoch may still complete (it matches the Info it started from) or the
    // sync restarts at the new epoch; either way the output is of one verified epoch.
    let (s, before, after) = epoch_change_during(Phase::Fetch, 400).await;
    assert!(s.epoch == before || s.epoch == after, "{s:?}");
    assert_eq!(s.sync.kind, "base");
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
    // The server's quota day is the JST day: it resets at midnight JST, shown as a clock time.
    let text = err.to_string();
    assert!(
        text.contains("the daily quota resets at 00:00 JST (in "),
        "{text}"
    );
    let ClientError::Link(nayose_proto::ProtoError::Quota { need, today, .. }) = err else {
        panic!("expected a quota error, got {err}");
    };
    assert_eq!(today, 5);
    assert!(need > 5);
    assert!(!out.exists());
    let evaluated: u64 = server.stats().values().map(|c| c.evaluations).sum();
    assert_eq!(evaluated, 0, "nothing evaluated");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_not_accredited_is_refused_without_retrying() {
    let fx = Fixture::new(20, |_| {});
    let server = fx.start().await;
    let other = nayose_pki::issue_client_cert(&fx.pki.client_ca, "stranger").unwrap();
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
        "氏名,保険者番号,記号,番号,枝番,nayose_group,nayose_status,nayose_note"
    );
    assert!(
        lines[1].starts_with("山田 太郎,") && lines[1].ends_with(",linked,"),
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
        matches!(err, ClientError::CertificateRefused { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "the server {} refused this client's certificate",
            server.local_addr()
        )),
        "the address, and that the server refused: {text}"
    );
    assert!(
        text.contains("client.pem") && text.contains(&format!("CN={CLIENT_ID}")),
        "whose: {text}"
    );
    assert!(text.contains(" JST to "), "the dates in JST: {text}");
    assert!(text.contains("TLS alert"), "why: {text}");
    assert!(!has_unix_seconds(&text), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no retry loop: {err}"
    );
    assert!(!out.exists());
    server.shutdown().await;
}

/// Records how each phase started (its total, and whether in bytes) and the units done.
#[derive(Default)]
struct Recorder {
    starts: std::sync::Mutex<Vec<(Phase, Option<u64>, bool)>>,
    read_done: AtomicU64,
}

impl Progress for Recorder {
    fn start(&self, phase: Phase, total: Option<u64>) {
        self.starts.lock().unwrap().push((phase, total, false));
    }
    fn start_bytes(&self, phase: Phase, total: u64) {
        self.starts.lock().unwrap().push((phase, Some(total), true));
    }
    fn advance(&self, phase: Phase, n: u64) {
        if phase == Phase::Read {
            self.read_done.fetch_add(n, Ordering::SeqCst);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_read_phase_has_the_file_size_as_its_total_and_counts_every_byte() {
    let fx = Fixture::new(PERSONS, |_| {});
    let server = fx.start().await;
    let input = fx.path("held.csv");
    write_held(&input, &fx.reg, 3, UNKNOWN);
    let size = std::fs::metadata(&input).unwrap().len();
    let out = fx.path("out.csv");
    let p = Recorder::default();
    let s = run(&fx.client(server.local_addr(), &input, &out), &p)
        .await
        .unwrap();
    assert!(s.rows > 0);
    let starts = p.starts.lock().unwrap().clone();
    assert_eq!(starts[0], (Phase::Read, Some(size), true), "{starts:?}");
    assert_eq!(p.read_done.load(Ordering::SeqCst), size);
    // Connecting has no total; writing counts rows.
    assert!(
        starts.contains(&(Phase::Connect, None, false)),
        "{starts:?}"
    );
    assert!(
        starts.contains(&(Phase::Write, Some(s.rows), false)),
        "{starts:?}"
    );
    server.shutdown().await;
}
