//! The service over real QUIC on 127.0.0.1: Info, Evaluate, FetchBase, FetchDelta, refusals,
//! both quotas, epoch and key period pickup.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use nayose_oprf::{ClientBatch, Mode};
use nayose_server::{BuildOptions, ManualClock, Server, build_epoch};
use nayose_table::{ClientId, label_for};
use nayose_wire::{
    ElementBatch, ErrorCode, EvaluateRequest, FetchBaseRequest, InfoResponse, Request, Response,
};

const CLIENTS: &str = "[[client]]\nid = \"hosp-a\"\nevaluations_per_day = 1000\n\
                       [[client]]\nid = \"hosp-b\"\nevaluations_per_day = 1000\n";

/// Waits until the server's Info names epoch `epoch`.
async fn wait_for_epoch(conn: &quinn::Connection, epoch: u32) -> InfoResponse {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let i = info(conn).await;
        if i.epoch == epoch {
            return i;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "epoch {epoch} not picked up (still {})",
            i.epoch
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn new_key_period(data: &Path, reg: &Path) -> nayose_server::BuildReport {
    let mut o = BuildOptions::new(data, reg);
    o.new_key_period = true;
    build_epoch(&o).unwrap()
}

fn error(r: &Response) -> &nayose_wire::ErrorResponse {
    match r {
        Response::Error(e) => e,
        other => panic!("expected an Error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_and_deltas_reconstruct_every_epoch_with_correct_labels() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"), "management body CA");
    let data = tmp.path().join("data");
    let rows = registry_rows(120, 0);
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &rows);
    let first = build(&data, &reg);
    assert_eq!(first.numbers, rows.len() as u64);
    assert_eq!(first.persons, 120);

    let server = Server::start(config(&pki, &data, CLIENTS)).await.unwrap();
    assert_eq!(server.epoch(), 1);
    assert_eq!(server.key_period(), first.key_period);
    assert_eq!(
        server.epoch_id(),
        format!("1 (key period {})", first.key_period)
    );
    let (cert, key) = pki.client("hosp-a");
    let ep = client_endpoint(&pki.ca_pem(), Some((&cert, &key)));
    let conn = connect(&ep, server.local_addr()).await.unwrap();

    // Info describes the published epoch and both quotas (key period default: 10 × daily).
    let i1 = info(&conn).await;
    let kp = key_period(&i1);
    assert_eq!(kp.to_string(), first.key_period);
    assert_eq!(hex::encode(i1.public_key.0), first.public_key);
    assert_eq!((i1.epoch, i1.oldest_delta_base), (1, 1));
    assert_eq!(i1.table_entries, rows.len() as u64);
    assert_eq!(hex::encode(i1.table_digest.0), first.digest);
    assert_eq!(i1.max_batch, 64);
    assert_eq!(
        (i1.quota_left_today, i1.quota_left_key_period),
        (1000, 10_000)
    );

    // Evaluate: persons 1 (2 numbers), 2 (3 numbers), 3 (1 number) and a number nobody holds.
    let held: Vec<&Row> = rows
        .iter()
        .filter(|r| ["P000001", "P000002", "P000003"].contains(&r.person.as_str()))
        .collect();
    assert_eq!(held.len(), 6);
    let mut inputs: Vec<Vec<u8>> = held.iter().map(|r| r.canonical()).collect();
    let stranger = Row {
        person: "P900000".into(),
        insurer: insurer(999),
        symbol: "7".into(),
        number: "1".into(),
        branch: "02".into(),
    };
    inputs.push(stranger.canonical());
    let outputs = evaluate(&conn, &i1, &inputs).await.unwrap();
    let after = info(&conn).await;
    assert_eq!(
        (after.quota_left_today, after.quota_left_key_period),
        (1000 - 7, 10_000 - 7),
        "one Evaluate charges both quotas"
    );

    // The expected labels, from the key period's label master key (the test plays auditor).
    let master = label_master_key(&data, first.key_period_number);
    let client = ClientId::new("hosp-a").unwrap();
    let label = |person: &str| Some(label_for(&master, &client, serial_of(&data, person)));

    // A base from offset 0 verifies against the digest and decrypts to the persons' labels.
    let base1 = fetch_base(&conn, &i1, 0).await.unwrap();
    assert_eq!(base1.len() as u64, i1.table_entries);
    assert!(base1.iter().all(|e| e.pad_epoch == 1));
    let mut table = client_table(&i1, &base1);
    assert_eq!(table.key_period(), kp);
    assert_eq!(table.digest().0, i1.table_digest.0);
    let l1 = labels("hosp-a", &table, &outputs);
    let want1: Vec<_> = held.iter().map(|r| label(&r.person)).collect();
    assert_eq!(&l1[..6], want1.as_slice());
    assert_eq!(l1[6], None, "an unknown number matches nothing");

    // Resumption from an offset, the end of the table, and beyond it.
    let resumed = fetch_base(&conn, &i1, 200).await.unwrap();
    assert_eq!(resumed.as_slice(), &base1[200..]);
    assert!(
        fetch_base(&conn, &i1, i1.table_entries)
            .await
            .unwrap()
            .is_empty()
    );
    let past = fetch_base(&conn, &i1, i1.table_entries + 1)
        .await
        .unwrap_err();
    assert_eq!(error_code(&past), ErrorCode::OffsetOutOfRange);
    // Nothing to sync yet: FetchDelta from the current epoch is just DeltaEnd.
    let (d, reached, total) = fetch_delta(&conn, i1.key_period, 1).await.unwrap();
    assert!(d.is_empty());
    assert_eq!((reached, total), (1, i1.table_entries));

    // Epoch 2: person 10 (2 numbers) leaves, person 1's first number moves to person 2, the stranger's
    // number becomes known. Epoch 3: person 3's number is removed, three persons are added.
    let mut r2: Vec<Row> = rows
        .iter()
        .filter(|r| r.person != "P000010")
        .cloned()
        .collect();
    let moved = r2.iter_mut().find(|r| r.person == "P000001").unwrap();
    moved.person = "P000002".into();
    r2.push(stranger.clone());
    write_registry(&reg, &r2);
    let second = build(&data, &reg);
    assert_eq!((second.added, second.removed, second.relabelled), (1, 2, 1));
    let mut r3: Vec<Row> = r2
        .iter()
        .filter(|r| r.person != "P000003")
        .cloned()
        .collect();
    r3.extend(registry_rows(3, 700).into_iter().map(|r| Row {
        person: format!("Q{}", r.person),
        number: format!("7{}", r.number),
        ..r
    }));
    write_registry(&reg, &r3);
    let third = build(&data, &reg);
    assert_eq!((third.added, third.removed, third.relabelled), (6, 1, 0));
    assert_eq!(third.evaluated, 6);

    let i3 = wait_for_epoch(&conn, 3).await;
    assert_eq!(i3.key_period, i1.key_period, "same key period");
    assert_eq!(i3.public_key, i1.public_key, "same key");
    assert_eq!(i3.oldest_delta_base, 1);
    assert_eq!(hex::encode(i3.table_digest.0), third.digest);
    assert_eq!(server.epoch(), 3);

    // FetchDelta from epoch 1: one delta per epoch, applied in order, gives exactly the base
    // of epoch 3 (entry by entry) and its digest.
    let (deltas, reached, total) = fetch_delta(&conn, i3.key_period, 1).await.unwrap();
    assert_eq!(deltas.iter().map(|d| d.0).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!((deltas[0].1.len(), deltas[0].2.len()), (2, 2));
    assert_eq!((deltas[1].1.len(), deltas[1].2.len()), (1, 6));
    assert_eq!((reached, total), (3, i3.table_entries));
    apply(&mut table, &deltas);
    assert_eq!(table.epoch(), 3);
    assert_eq!(table.digest().0, i3.table_digest.0);
    let base3 = fetch_base(&conn, &i3, 0).await.unwrap();
    let tags = |v: &[nayose_table::ClientEntry]| v.iter().map(|e| e.tag).collect::<Vec<_>>();
    assert_eq!(tags(&table.entries()), tags(&base3));
    assert_eq!(
        labels("hosp-a", &table, &outputs),
        labels("hosp-a", &client_table(&i3, &base3), &outputs)
    );
    // Labels decrypt correctly after the deltas: the moved number carries person 2's label,
    // the removed one is gone, the stranger's number is now found.
    let l3 = labels("hosp-a", &table, &outputs);
    assert_eq!(l3[0], label("P000002"), "relabelled under a new version");
    assert_eq!(l3[1], label("P000001"));
    assert_eq!(&l3[2..5], &want1[2..5]);
    assert_eq!(l3[5], None, "removed");
    assert_eq!(l3[6], label("P900000"), "added");
    // A relabelled entry is encrypted under a new pad: its ciphertext changed.
    let moved_tag = nayose_table::derive_entry_secrets(&outputs[0]).0;
    assert_ne!(
        table.get(&moved_tag).unwrap().label,
        base1.iter().find(|e| e.tag == moved_tag).unwrap().label
    );
    assert_eq!(table.get(&moved_tag).unwrap().pad_epoch, 2);

    // From epoch 2: only epoch 3's delta; from the current epoch: nothing.
    let (d, reached, _) = fetch_delta(&conn, i3.key_period, 2).await.unwrap();
    assert_eq!((d.len(), d[0].0, reached), (1, 3, 3));
    let (d, reached, _) = fetch_delta(&conn, i3.key_period, 3).await.unwrap();
    assert!(d.is_empty() && reached == 3);
    for from in [0, 4, 1000] {
        let r = fetch_delta(&conn, i3.key_period, from).await.unwrap_err();
        assert_eq!(error_code(&r), ErrorCode::DeltaUnavailable, "from {from}");
    }

    // A base of the old epoch: EpochChanged with the current state, at once.
    let r = fetch_base(&conn, &i1, 0).await.unwrap_err();
    let e = error(&r);
    assert_eq!(e.code, ErrorCode::EpochChanged);
    assert_eq!(
        e.current.map(|c| (c.key_period, c.epoch)),
        Some((i3.key_period, 3))
    );
    // Another key period: KeyPeriodChanged on every request that names one.
    let mut other = i3.key_period;
    other.0[15] ^= 1;
    let r = evaluate_in(&conn, &i3, other, &inputs[..1])
        .await
        .unwrap_err();
    assert_eq!(error(&r).code, ErrorCode::KeyPeriodChanged);
    assert_eq!(error(&r).current.map(|c| c.epoch), Some(3));
    let r = fetch_delta(&conn, other, 1).await.unwrap_err();
    assert_eq!(error_code(&r), ErrorCode::KeyPeriodChanged);
    let r = one(
        &conn,
        &Request::FetchBase(FetchBaseRequest {
            key_period: other,
            epoch: 3,
            offset: 0,
        }),
    )
    .await;
    assert_eq!(error_code(&r), ErrorCode::KeyPeriodChanged);

    // An oversize batch and a bad element: refused, nothing charged.
    let before = info(&conn).await;
    let blinded: Vec<[u8; 32]> = {
        let refs: Vec<&[u8]> = (0..65u8).map(|_| inputs[0].as_slice()).collect();
        ClientBatch::blind(Mode::Voprf, &refs, &mut rand::rng())
            .unwrap()
            .blinded_elements()
            .to_vec()
    };
    let r = one(
        &conn,
        &Request::Evaluate(EvaluateRequest {
            key_period: i3.key_period,
            elements: ElementBatch::from_arrays(&blinded).unwrap(),
        }),
    )
    .await;
    assert_eq!(error_code(&r), ErrorCode::BatchTooLarge);
    let r = one(
        &conn,
        &Request::Evaluate(EvaluateRequest {
            key_period: i3.key_period,
            elements: ElementBatch::from_arrays(&[[0xffu8; 32]]).unwrap(),
        }),
    )
    .await;
    assert_eq!(error_code(&r), ErrorCode::InvalidElement);
    let now = info(&conn).await;
    assert_eq!(
        (now.quota_left_today, now.quota_left_key_period),
        (before.quota_left_today, before.quota_left_key_period),
        "refunded on both counters"
    );

    // Malformed frames: an oversize header, one byte over the largest request, garbage.
    let r = request_raw(&conn, &(5u32 * 1024 * 1024).to_le_bytes())
        .await
        .unwrap();
    assert_eq!(error_code(&r[0]), ErrorCode::FrameTooLarge);
    let over = (nayose_wire::MAX_REQUEST_LEN as u32 + 1).to_le_bytes();
    let r = request_raw(&conn, &over).await.unwrap();
    assert_eq!(error_code(&r[0]), ErrorCode::FrameTooLarge);
    let r = request_raw(&conn, &[3, 0, 0, 0, 9, 9, 9]).await.unwrap();
    assert_eq!(error_code(&r[0]), ErrorCode::BadRequest);

    // A second client gets the same tags and versions but its own, unlinkable labels.
    let (cert_b, key_b) = pki.client("hosp-b");
    let ep_b = client_endpoint(&pki.ca_pem(), Some((&cert_b, &key_b)));
    let conn_b = connect(&ep_b, server.local_addr()).await.unwrap();
    let ib = info(&conn_b).await;
    let out_b = evaluate(&conn_b, &ib, &inputs[..1]).await.unwrap();
    assert_eq!(
        out_b[0], outputs[0],
        "same number, same OPRF output in one key period"
    );
    let base_b = fetch_base(&conn_b, &ib, 0).await.unwrap();
    let tb = client_table(&ib, &base_b);
    assert_eq!(
        tb.digest(),
        table.digest(),
        "the digest is client-independent"
    );
    let lb = labels("hosp-b", &tb, &out_b)[0];
    let client_b = ClientId::new("hosp-b").unwrap();
    assert_eq!(
        lb,
        Some(label_for(&master, &client_b, serial_of(&data, "P000002")))
    );
    assert_ne!(lb, l3[0]);
    assert!(
        base_b.iter().zip(&base3).all(|(b, a)| b.label != a.label),
        "every ciphertext differs between clients"
    );

    // Metrics and audit.
    let stats = server.stats();
    assert_eq!(stats["hosp-a"].evaluations, 7);
    assert!(stats["hosp-a"].errors >= 10);
    assert!(stats["hosp-a"].entries > 0);
    conn.close(0u32.into(), b"done");
    conn_b.close(0u32.into(), b"done");
    server.shutdown().await;
    let summary = nayose_server::verify_audit(&data).unwrap();
    assert_eq!(summary.records, server.audit_head().count);
    let log = std::fs::read_to_string(data.join("audit/audit.log")).unwrap();
    assert!(log.contains("\"op\":\"Evaluate\"") && log.contains("\"elements\":7"));
    assert!(log.contains("\"op\":\"FetchDelta\"") && log.contains("\"epoch_reached\":3"));
    assert!(log.contains("\"outcome\":\"EpochChanged\""));
    assert!(log.contains("\"outcome\":\"KeyPeriodChanged\""));
    assert!(log.contains("\"outcome\":\"DeltaUnavailable\""));
    for r in &held {
        assert!(!log.contains(&r.number), "no number in the audit log");
    }
    assert!(
        !log.contains(&hex::encode(blinded[0])),
        "no element in the audit log"
    );
    for e in base3.iter().take(50) {
        assert!(
            !log.contains(&hex::encode(e.tag.0)),
            "no tag in the audit log"
        );
        assert!(
            !log.contains(&hex::encode(e.label.0)),
            "no ciphertext in the audit log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_key_period_is_picked_up_and_the_old_one_is_refused() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"), "CA");
    let data = tmp.path().join("data");
    let rows = registry_rows(40, 0);
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &rows);
    let first = build(&data, &reg);
    let server = Server::start(config(&pki, &data, CLIENTS)).await.unwrap();
    let (cert, key) = pki.client("hosp-a");
    let ep = client_endpoint(&pki.ca_pem(), Some((&cert, &key)));
    let conn = connect(&ep, server.local_addr()).await.unwrap();
    let old = info(&conn).await;
    let out_old = evaluate(&conn, &old, &[rows[0].canonical()]).await.unwrap();
    assert_eq!(info(&conn).await.quota_left_key_period, 9_999);

    let second = new_key_period(&data, &reg);
    assert_eq!(second.epoch_number, 2);
    assert_eq!(second.key_period_number, 2);
    let new = wait_for_epoch(&conn, 2).await;
    assert_ne!(new.key_period, old.key_period);
    assert_ne!(new.public_key, old.public_key, "a fresh key per key period");
    assert_eq!(key_period(&new).to_string(), second.key_period);
    assert_eq!(key_period(&new).number(), 2);
    assert_eq!(
        new.oldest_delta_base, 2,
        "a new key period starts with no delta"
    );
    assert_eq!(server.key_period(), second.key_period);
    assert_eq!(server.oldest_delta_base(), 2);
    assert_eq!(
        (new.quota_left_today, new.quota_left_key_period),
        (999, 10_000),
        "the key-period counter starts at zero, the day's does not"
    );
    assert_ne!(second.public_key, first.public_key);

    // Every request naming the old key period: KeyPeriodChanged with the new state, no grace.
    let r = evaluate(&conn, &old, &[rows[0].canonical()])
        .await
        .unwrap_err();
    let e = error(&r);
    assert_eq!(e.code, ErrorCode::KeyPeriodChanged);
    assert_eq!(
        e.current.map(|c| (c.key_period, c.epoch)),
        Some((new.key_period, 2))
    );
    let r = fetch_base(&conn, &old, 0).await.unwrap_err();
    assert_eq!(error_code(&r), ErrorCode::KeyPeriodChanged);
    let r = fetch_delta(&conn, old.key_period, 1).await.unwrap_err();
    assert_eq!(error_code(&r), ErrorCode::KeyPeriodChanged);
    // In the new key period there is no delta from the old epoch.
    let r = fetch_delta(&conn, new.key_period, 1).await.unwrap_err();
    assert_eq!(error_code(&r), ErrorCode::DeltaUnavailable);

    let out_new = evaluate(&conn, &new, &[rows[0].canonical()]).await.unwrap();
    assert_ne!(
        out_new, out_old,
        "outputs of one key period never match another's table"
    );
    let base = fetch_base(&conn, &new, 0).await.unwrap();
    assert!(base.iter().all(|e| e.pad_epoch == 2));
    let t = client_table(&new, &base);
    assert_eq!(t.digest().0, new.table_digest.0);
    let master = label_master_key(&data, 2);
    assert_eq!(
        labels("hosp-a", &t, &out_new)[0],
        Some(label_for(
            &master,
            &ClientId::new("hosp-a").unwrap(),
            serial_of(&data, &rows[0].person)
        ))
    );
    assert_eq!(labels("hosp-a", &t, &out_old)[0], None);
    conn.close(0u32.into(), b"");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_quotas_refuse_whole_batches_persist_and_reset() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"), "CA");
    let data = tmp.path().join("data");
    let rows = registry_rows(30, 0);
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &rows);
    build(&data, &reg);
    let clients = "[[client]]\nid = \"hosp-a\"\nevaluations_per_day = 5\n\
                   evaluations_per_key_period = 8\n";
    // 2026-03-01T12:00:00Z = 21:00 JST: the quota day ends in 3 hours.
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_772_366_400);
    let clock = Arc::new(ManualClock::new(t0));
    let (cert, key) = pki.client("hosp-a");
    let inputs: Vec<Vec<u8>> = rows.iter().take(4).map(Row::canonical).collect();
    let left = |i: &InfoResponse| (i.quota_left_today, i.quota_left_key_period);

    let server = Server::start_with_clock(config(&pki, &data, clients), clock.clone())
        .await
        .unwrap();
    let ep = client_endpoint(&pki.ca_pem(), Some((&cert, &key)));
    let conn = connect(&ep, server.local_addr()).await.unwrap();
    let i = info(&conn).await;
    assert_eq!((left(&i), i.quota_reset_secs), ((5, 8), 3 * 3600));
    evaluate(&conn, &i, &inputs[..3]).await.unwrap();
    // Only the daily quota is short: refused whole, retry at 00:00 JST, nothing charged.
    let r = evaluate(&conn, &i, &inputs[..3]).await.unwrap_err();
    let e = error(&r);
    assert_eq!(
        (e.code, e.retry_after_secs),
        (ErrorCode::QuotaExhausted, 3 * 3600)
    );
    assert_eq!(left(&info(&conn).await), (2, 5));
    conn.close(0u32.into(), b"");
    server.shutdown().await;

    // Restart: both counters are still there.
    let server = Server::start_with_clock(config(&pki, &data, clients), clock.clone())
        .await
        .unwrap();
    let conn = connect(&ep, server.local_addr()).await.unwrap();
    let i = info(&conn).await;
    assert_eq!(left(&i), (2, 5));
    evaluate(&conn, &i, &inputs[..2]).await.unwrap();
    assert_eq!(left(&info(&conn).await), (0, 3));

    // A new quota day (midnight JST) resets the daily quota only.
    clock.advance(Duration::from_secs(3 * 3600));
    let i = info(&conn).await;
    assert_eq!((left(&i), i.quota_reset_secs), ((5, 3), 86_400));
    // The key-period quota is short: refused whole with retry 0 (waiting does not help).
    let r = evaluate(&conn, &i, &inputs[..4]).await.unwrap_err();
    let e = error(&r);
    assert_eq!((e.code, e.retry_after_secs), (ErrorCode::QuotaExhausted, 0));
    assert_eq!(left(&info(&conn).await), (5, 3), "nothing charged");
    evaluate(&conn, &i, &inputs[..3]).await.unwrap();
    assert_eq!(left(&info(&conn).await), (2, 0));
    let r = evaluate(&conn, &i, &inputs[..1]).await.unwrap_err();
    assert_eq!(error(&r).retry_after_secs, 0);
    conn.close(0u32.into(), b"");
    server.shutdown().await;
    let state = std::fs::read_to_string(data.join("state/quota.json")).unwrap();
    assert!(state.contains("\"key_period_used\": 8"), "{state}");

    // A new key period renews the key-period quota.
    new_key_period(&data, &reg);
    let server = Server::start_with_clock(config(&pki, &data, clients), clock.clone())
        .await
        .unwrap();
    let conn = connect(&ep, server.local_addr()).await.unwrap();
    let i = info(&conn).await;
    assert_eq!(left(&i), (2, 8));
    evaluate(&conn, &i, &inputs[..2]).await.unwrap();
    conn.close(0u32.into(), b"");
    server.shutdown().await;
}

/// How the server refused a TLS handshake: the connection's close reason.
async fn refusal(ep: &quinn::Endpoint, addr: std::net::SocketAddr) -> String {
    match connect(ep, addr).await {
        Err(e) => e,
        Ok(c) => {
            assert!(
                request(&c, &Request::Info).await.is_err(),
                "no answer without a valid certificate"
            );
            tokio::time::timeout(STEP, c.closed())
                .await
                .unwrap()
                .to_string()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unverified_or_unaccredited_clients_are_refused() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"), "management body CA");
    let data = tmp.path().join("data");
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &registry_rows(20, 0));
    build(&data, &reg);
    let server = Server::start(config(&pki, &data, CLIENTS)).await.unwrap();
    let addr = server.local_addr();

    // A certificate from another CA (same id).
    let rogue = Pki::new(&tmp.path().join("rogue"), "someone else's CA");
    let (cert, key) = rogue.client("hosp-a");
    let ep = client_endpoint(&pki.ca_pem(), Some((&cert, &key)));
    let refused = refusal(&ep, addr).await;
    assert!(refused.contains("handshake failed"), "{refused}");
    assert!(
        refused.contains("UnknownIssuer") || refused.contains("unknown"),
        "{refused}"
    );

    // No certificate at all.
    let ep = client_endpoint(&pki.ca_pem(), None);
    let refused = refusal(&ep, addr).await;
    assert!(refused.contains("peer sent no certificates"), "{refused}");

    // A valid certificate whose id is not accredited: closed with NotAccredited (0x2).
    let (cert, key) = pki.client("hosp-z");
    let ep = client_endpoint(&pki.ca_pem(), Some((&cert, &key)));
    let conn = connect(&ep, addr).await.unwrap();
    let r = request(&conn, &Request::Info).await.unwrap();
    assert_eq!(error_code(&r[0]), ErrorCode::NotAccredited);
    match &r[0] {
        Response::Error(e) => assert!(e.message.as_str().contains("hosp-z"), "{e:?}"),
        _ => unreachable!(),
    }
    let reason = tokio::time::timeout(STEP, conn.closed()).await.unwrap();
    match reason {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(
                c.error_code,
                quinn::VarInt::from_u32(nayose_wire::CloseCode::NotAccredited.to_u32())
            );
        }
        other => panic!("expected an application close, got {other:?}"),
    }

    // Too many connections for one client.
    let (cert, key) = pki.client("hosp-b");
    let ep = client_endpoint(&pki.ca_pem(), Some((&cert, &key)));
    let mut open = Vec::new();
    for _ in 0..4 {
        let c = connect(&ep, addr).await.unwrap();
        info(&c).await;
        open.push(c);
    }
    let extra = connect(&ep, addr).await.unwrap();
    let _ = request(&extra, &Request::Info).await;
    match tokio::time::timeout(STEP, extra.closed()).await.unwrap() {
        quinn::ConnectionError::ApplicationClosed(c) => assert_eq!(
            c.error_code,
            quinn::VarInt::from_u32(nayose_wire::CloseCode::TooManyConnections.to_u32())
        ),
        other => panic!("{other:?}"),
    }
    // The accredited client's first connections still work.
    info(&open[0]).await;
    server.shutdown().await;
    let log = std::fs::read_to_string(data.join("audit/audit.log")).unwrap();
    assert!(log.contains("\"client\":\"hosp-z\"") && log.contains("\"outcome\":\"NotAccredited\""));
    assert!(log.contains("\"outcome\":\"TooManyConnections\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_client_from_clients_toml_takes_effect_without_restart() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"), "CA");
    let data = tmp.path().join("data");
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &registry_rows(20, 0));
    build(&data, &reg);
    let cfg = config(&pki, &data, CLIENTS);
    let clients_path = cfg.clients.clone().unwrap();
    let server = Server::start(cfg).await.unwrap();
    let (cert, key) = pki.client("hosp-b");
    let ep = client_endpoint(&pki.ca_pem(), Some((&cert, &key)));
    let conn = connect(&ep, server.local_addr()).await.unwrap();
    assert_eq!(info(&conn).await.quota_left_today, 1000);

    // A new quota applies without a restart…
    std::fs::write(
        &clients_path,
        "[[client]]\nid = \"hosp-a\"\nevaluations_per_day = 1000\n\
         [[client]]\nid = \"hosp-b\"\nevaluations_per_day = 7\n",
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + STEP;
    while info(&conn).await.quota_left_today != 7 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "new quota not applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // …and so does a revocation: the open connection's next request is refused and closed.
    std::fs::write(
        &clients_path,
        "[[client]]\nid = \"hosp-a\"\nevaluations_per_day = 1000\n",
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        match request(&conn, &Request::Info).await {
            Ok(r) if matches!(r.first(), Some(Response::Error(e)) if e.code == ErrorCode::NotAccredited) =>
            {
                break;
            }
            Ok(_) => {}
            Err(_) => break, // the server already closed the connection
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "revocation not applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        conn.close_reason().is_some(),
        "the server closed the revoked client's connection"
    );
    server.shutdown().await;
}
