//! The service over real QUIC on 127.0.0.1: answers, refusals, quotas, epoch pickup.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use nayose_oprf::{ClientBatch, Mode, PublicKey};
use nayose_server::{ManualClock, Server};
use nayose_table::{ClientId, EncryptedLabel, EpochId, LabelMasterKey, Matcher, Tag, label_for};
use nayose_wire::{
    ElementBatch, ErrorCode, EvaluateRequest, FetchAllRequest, FetchRangeRequest, Request,
    Response, TagPrefix,
};

const CLIENTS: &str = "[[client]]\nid = \"hosp-a\"\nevaluations_per_day = 1000\n\
                       [[client]]\nid = \"hosp-b\"\nevaluations_per_day = 1000\n";

fn wire_epoch(i: &nayose_wire::InfoResponse) -> nayose_wire::EpochId {
    i.epoch
}

/// Blinds `rows`, evaluates them over `conn`, verifies the proof, and returns the outputs.
async fn evaluate(
    conn: &quinn::Connection,
    info: &nayose_wire::InfoResponse,
    inputs: &[Vec<u8>],
) -> Result<Vec<[u8; 64]>, Response> {
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let mut rng = rand::rng();
    let batch = ClientBatch::blind(Mode::Voprf, &refs, &mut rng).unwrap();
    let blinded = batch.blinded_elements().to_vec();
    let req = Request::Evaluate(EvaluateRequest {
        epoch: wire_epoch(info),
        elements: ElementBatch::from_arrays(&blinded).unwrap(),
    });
    match one(conn, &req).await {
        Response::Evaluated(ev) => {
            assert_eq!(ev.epoch, info.epoch);
            let pk = PublicKey::from_bytes(&info.public_key.0).unwrap();
            let verified = batch
                .verify(&pk, &ev.elements.to_arrays(), &ev.proof.0)
                .expect("the server's DLEQ proof verifies against pkS from Info");
            Ok(verified.finalize().iter().map(|o| *o.as_bytes()).collect())
        }
        other => Err(other),
    }
}

fn to_table(entries: &[nayose_wire::Entry]) -> Vec<(Tag, EncryptedLabel)> {
    entries
        .iter()
        .map(|e| (Tag(e.tag.0), EncryptedLabel(e.label.0)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accredited_client_gets_correct_answers() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"), "management body CA");
    let data = tmp.path().join("data");
    let rows = registry_rows(120, 0);
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &rows);
    let report = build(&data, &reg);
    assert_eq!(report.numbers, rows.len() as u64);
    assert_eq!(report.persons, 120);
    assert!(report.conflicts.is_empty() && report.rejected.is_empty());

    let server = Server::start(config(&pki, &data, CLIENTS)).await.unwrap();
    let (cert, key) = pki.client("hosp-a");
    let ep = client_endpoint(&pki.ca_pem(), Some((&cert, &key)));
    let conn = connect(&ep, server.local_addr()).await.unwrap();

    // Info describes the published epoch.
    let info = info(&conn).await;
    let epoch = EpochId::from_bytes(info.epoch.0);
    assert_eq!(epoch.to_string(), report.epoch_id);
    assert_eq!(hex::encode(info.public_key.0), report.public_key);
    assert!(epoch.matches_public_key(&info.public_key.0));
    assert_eq!(info.table_entries, rows.len() as u64);
    assert_eq!(info.max_batch, 64);
    assert_eq!(info.min_range_entries, 4);
    assert_eq!(info.quota_left, 1000);
    let max_bits = info.max_prefix_bits.expect("k-anon mode offered");

    // Evaluate: persons 1 (2 numbers), 2 (3 numbers), 3 (1 number) and a number nobody holds.
    let held: Vec<&Row> = rows
        .iter()
        .filter(|r| ["P000001", "P000002", "P000003"].contains(&r.person.as_str()))
        .collect();
    assert_eq!(held.len(), 6);
    let mut inputs: Vec<Vec<u8>> = held.iter().map(|r| r.canonical()).collect();
    let stranger = Row {
        person: "-".into(),
        insurer: insurer(999),
        symbol: "7".into(),
        number: "1".into(),
        branch: "02".into(),
    };
    inputs.push(stranger.canonical());
    let outputs = evaluate(&conn, &info, &inputs).await.unwrap();
    assert_eq!(info.quota_left - 7, self::info(&conn).await.quota_left);

    // The expected labels, from the server's label master key (the test plays auditor).
    let master_bytes: [u8; 32] = std::fs::read(data.join("label-master.key"))
        .unwrap()
        .try_into()
        .unwrap();
    let master = LabelMasterKey::from_bytes(&master_bytes).unwrap();
    let client = ClientId::new("hosp-a").unwrap();
    let expected: Vec<_> = held
        .iter()
        .map(|r| label_for(&master, &client, r.person.as_bytes()))
        .collect();

    // Full mode: FetchAll from 0, then resume from an offset.
    let all = request(
        &conn,
        &Request::FetchAll(FetchAllRequest {
            epoch: info.epoch,
            offset: 0,
        }),
    )
    .await
    .unwrap();
    let mut entries = Vec::new();
    for r in &all[..all.len() - 1] {
        match r {
            Response::TableChunk(c) => {
                assert_eq!(c.offset as usize, entries.len());
                assert_eq!(c.total, info.table_entries);
                entries.extend_from_slice(c.entries.as_slice());
            }
            other => panic!("expected a chunk, got {other:?}"),
        }
    }
    assert!(matches!(all.last(), Some(Response::TableEnd(e)) if e.total == info.table_entries));
    assert_eq!(entries.len() as u64, info.table_entries);
    assert!(
        entries.windows(2).all(|w| w[0].tag < w[1].tag),
        "sorted by tag"
    );
    let mut m = Matcher::new(client.clone(), epoch, &outputs);
    m.absorb(&to_table(&entries)).unwrap();
    let full = m.finish();
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(
            full.label(i),
            Some(*want),
            "number {i} decrypts to its person's label"
        );
    }
    assert_eq!(full.label(6), None, "an unknown number matches nothing");
    assert_eq!(full.groups().len(), 3);

    let resumed = request(
        &conn,
        &Request::FetchAll(FetchAllRequest {
            epoch: info.epoch,
            offset: 200,
        }),
    )
    .await
    .unwrap();
    match &resumed[0] {
        Response::TableChunk(c) => {
            assert_eq!(c.offset, 200);
            assert_eq!(c.entries.as_slice()[0], entries[200]);
        }
        other => panic!("{other:?}"),
    }
    let past = one(
        &conn,
        &Request::FetchAll(FetchAllRequest {
            epoch: info.epoch,
            offset: info.table_entries + 1,
        }),
    )
    .await;
    assert_eq!(error_code(&past), ErrorCode::OffsetOutOfRange);

    // k-anon mode: one range per distinct prefix gives the same labels.
    let mut m = Matcher::new(client.clone(), epoch, &outputs);
    for p in m.prefixes(max_bits).unwrap() {
        let mut value = [0u8; 8];
        let b = p.as_bytes();
        value[..b.len()].copy_from_slice(b);
        let wp = TagPrefix::new(max_bits, value).unwrap();
        let r = one(
            &conn,
            &Request::FetchRange(FetchRangeRequest {
                epoch: info.epoch,
                prefix: wp,
            }),
        )
        .await;
        match r {
            Response::Range(rr) => {
                assert!(rr.entries.len() >= 4, "every range is k-anonymous");
                assert!(rr.entries.as_slice().iter().all(|e| wp.matches(&e.tag)));
                m.absorb_range(&p, &to_table(rr.entries.as_slice()))
                    .unwrap();
            }
            other => panic!("expected Range, got {other:?}"),
        }
    }
    let kanon = m.finish();
    assert_eq!(kanon.labels(), full.labels());

    // A prefix longer than allowed, a stale epoch, an oversize batch, a bad element.
    let long = TagPrefix::of_tag(&nayose_wire::Tag(entries[0].tag.0), max_bits + 1).unwrap();
    let r = one(
        &conn,
        &Request::FetchRange(FetchRangeRequest {
            epoch: info.epoch,
            prefix: long,
        }),
    )
    .await;
    assert_eq!(error_code(&r), ErrorCode::RangeTooSmall);
    let mut stale = info.epoch;
    stale.0[7] ^= 1;
    let r = one(
        &conn,
        &Request::FetchAll(FetchAllRequest {
            epoch: stale,
            offset: 0,
        }),
    )
    .await;
    match &r {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::EpochChanged);
            assert_eq!(e.current_epoch, Some(info.epoch));
        }
        other => panic!("{other:?}"),
    }
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
            epoch: info.epoch,
            elements: ElementBatch::from_arrays(&blinded).unwrap(),
        }),
    )
    .await;
    assert_eq!(error_code(&r), ErrorCode::BatchTooLarge);
    let before = self::info(&conn).await.quota_left;
    let r = one(
        &conn,
        &Request::Evaluate(EvaluateRequest {
            epoch: info.epoch,
            elements: ElementBatch::from_arrays(&[[0xffu8; 32]]).unwrap(),
        }),
    )
    .await;
    assert_eq!(error_code(&r), ErrorCode::InvalidElement);
    assert_eq!(self::info(&conn).await.quota_left, before, "refunded");

    // Malformed frames: an oversize header, garbage, trailing bytes.
    let r = request_raw(&conn, &(5u32 * 1024 * 1024).to_le_bytes())
        .await
        .unwrap();
    assert_eq!(error_code(&r[0]), ErrorCode::FrameTooLarge);
    // Within the 4 MiB frame limit but longer than any valid request (a full Evaluate is
    // 131,100 bytes): refused before the payload is read or allocated.
    let r = request_raw(&conn, &131_101u32.to_le_bytes()).await.unwrap();
    assert_eq!(error_code(&r[0]), ErrorCode::FrameTooLarge);
    let r = request_raw(&conn, &[3, 0, 0, 0, 9, 9, 9]).await.unwrap();
    assert_eq!(error_code(&r[0]), ErrorCode::BadRequest);

    // A second client gets unlinkable labels for the same persons.
    let (cert_b, key_b) = pki.client("hosp-b");
    let ep_b = client_endpoint(&pki.ca_pem(), Some((&cert_b, &key_b)));
    let conn_b = connect(&ep_b, server.local_addr()).await.unwrap();
    let info_b = self::info(&conn_b).await;
    let out_b = evaluate(&conn_b, &info_b, &inputs[..1]).await.unwrap();
    assert_eq!(out_b[0], outputs[0], "same number, same OPRF output");
    let all_b = request(
        &conn_b,
        &Request::FetchAll(FetchAllRequest {
            epoch: info_b.epoch,
            offset: 0,
        }),
    )
    .await
    .unwrap();
    let mut mb = Matcher::new(ClientId::new("hosp-b").unwrap(), epoch, &out_b);
    for r in &all_b {
        if let Response::TableChunk(c) = r {
            mb.absorb(&to_table(c.entries.as_slice())).unwrap();
        }
    }
    let lb = mb.finish().label(0).unwrap();
    assert_eq!(
        lb,
        label_for(
            &master,
            &ClientId::new("hosp-b").unwrap(),
            held[0].person.as_bytes()
        )
    );
    assert_ne!(Some(lb), full.label(0));

    // Per-epoch allowances (security.md §5.1): hosp-b evaluated one element, so it may fetch
    // one range; it has used one of its three full downloads.
    let mut value = [0u8; 8];
    value[0] = entries[0].tag.0[0] & 0x80;
    let wp = TagPrefix::new(1, value).unwrap();
    let fr = Request::FetchRange(FetchRangeRequest {
        epoch: info_b.epoch,
        prefix: wp,
    });
    assert!(matches!(one(&conn_b, &fr).await, Response::Range(_)));
    let r = one(&conn_b, &fr).await;
    assert_eq!(error_code(&r), ErrorCode::QuotaExhausted);
    let fa = Request::FetchAll(FetchAllRequest {
        epoch: info_b.epoch,
        offset: 0,
    });
    for _ in 0..2 {
        let r = request(&conn_b, &fa).await.unwrap();
        assert!(matches!(r.last(), Some(Response::TableEnd(_))));
    }
    let r = one(&conn_b, &fa).await;
    assert_eq!(error_code(&r), ErrorCode::QuotaExhausted);

    // Metrics and audit.
    let stats = server.stats();
    assert_eq!(stats["hosp-a"].evaluations, 7);
    assert!(stats["hosp-a"].errors >= 6);
    assert!(stats["hosp-a"].bytes_out > 0 && stats["hosp-a"].bytes_in > 0);
    conn.close(0u32.into(), b"done");
    conn_b.close(0u32.into(), b"done");
    server.shutdown().await;
    let summary = nayose_server::verify_audit(&data).unwrap();
    assert_eq!(summary.records, server.audit_head().count);
    let log = std::fs::read_to_string(data.join("audit/audit.log")).unwrap();
    assert!(log.contains("\"op\":\"Evaluate\"") && log.contains("\"elements\":7"));
    assert!(log.contains("\"outcome\":\"EpochChanged\""));
    for r in &held {
        assert!(!log.contains(&r.number), "no number in the audit log");
    }
    assert!(
        !log.contains(&hex::encode(blinded[0])),
        "no element in the audit log"
    );
    assert!(
        !log.contains(&hex::encode(entries[0].tag.0)),
        "no tag in the audit log"
    );
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
async fn quota_exhaustion_survives_a_restart_and_resets_next_day() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"), "CA");
    let data = tmp.path().join("data");
    let rows = registry_rows(30, 0);
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &rows);
    build(&data, &reg);
    let clients = "[[client]]\nid = \"hosp-a\"\nevaluations_per_day = 5\n";
    // 2026-03-01T12:00:00Z = 21:00 JST: the quota day ends in 3 hours.
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_772_366_400);
    let clock = Arc::new(ManualClock::new(t0));
    let (cert, key) = pki.client("hosp-a");
    let inputs: Vec<Vec<u8>> = rows.iter().take(3).map(Row::canonical).collect();

    let server = Server::start_with_clock(config(&pki, &data, clients), clock.clone())
        .await
        .unwrap();
    let ep = client_endpoint(&pki.ca_pem(), Some((&cert, &key)));
    let conn = connect(&ep, server.local_addr()).await.unwrap();
    let i = info(&conn).await;
    assert_eq!((i.quota_left, i.quota_reset_secs), (5, 3 * 3600));
    evaluate(&conn, &i, &inputs).await.unwrap();
    let refused = evaluate(&conn, &i, &inputs).await.unwrap_err();
    match &refused {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::QuotaExhausted);
            assert_eq!(e.retry_after_secs, 3 * 3600);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        info(&conn).await.quota_left,
        2,
        "a refused request consumes nothing"
    );
    conn.close(0u32.into(), b"");
    server.shutdown().await;

    // Restart: the usage is still there.
    let server = Server::start_with_clock(config(&pki, &data, clients), clock.clone())
        .await
        .unwrap();
    let conn = connect(&ep, server.local_addr()).await.unwrap();
    let i = info(&conn).await;
    assert_eq!(i.quota_left, 2);
    let r = evaluate(&conn, &i, &inputs).await.unwrap_err();
    assert_eq!(error_code(&r), ErrorCode::QuotaExhausted);
    evaluate(&conn, &i, &inputs[..2]).await.unwrap();
    assert_eq!(info(&conn).await.quota_left, 0);

    // A new quota day (midnight JST) resets it.
    clock.advance(Duration::from_secs(3 * 3600));
    let i = info(&conn).await;
    assert_eq!((i.quota_left, i.quota_reset_secs), (5, 86_400));
    evaluate(&conn, &i, &inputs).await.unwrap();
    conn.close(0u32.into(), b"");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_epoch_is_picked_up_without_restart() {
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
    assert_eq!(EpochId::from_bytes(old.epoch.0).to_string(), first.epoch_id);
    let out_old = evaluate(&conn, &old, &[rows[0].canonical()]).await.unwrap();

    // Publish a new epoch with more numbers while the server runs.
    write_registry(&reg, &registry_rows(50, 0));
    let second = build(&data, &reg);
    assert_eq!(second.epoch_number, first.epoch_number + 1);
    let deadline = tokio::time::Instant::now() + STEP;
    let new = loop {
        let i = info(&conn).await;
        if i.epoch != old.epoch {
            break i;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "new epoch not picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        EpochId::from_bytes(new.epoch.0).to_string(),
        second.epoch_id
    );
    assert_eq!(server.epoch_id(), second.epoch_id);
    assert_ne!(new.public_key, old.public_key, "a fresh key per epoch");
    // Naming the old epoch gives EpochChanged with the new one.
    match evaluate(&conn, &old, &[rows[0].canonical()])
        .await
        .unwrap_err()
    {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::EpochChanged);
            assert_eq!(e.current_epoch, Some(new.epoch));
        }
        other => panic!("{other:?}"),
    }
    let out_new = evaluate(&conn, &new, &[rows[0].canonical()]).await.unwrap();
    assert_ne!(out_new, out_old);
    conn.close(0u32.into(), b"");
    server.shutdown().await;
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
    assert_eq!(info(&conn).await.quota_left, 1000);

    // A new quota applies without a restart…
    std::fs::write(
        &clients_path,
        "[[client]]\nid = \"hosp-a\"\nevaluations_per_day = 1000\n\
         [[client]]\nid = \"hosp-b\"\nevaluations_per_day = 7\n",
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + STEP;
    while info(&conn).await.quota_left != 7 {
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
