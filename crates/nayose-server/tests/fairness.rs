//! Issue 11 item 1, fairness under load, over real QUIC on loopback: a client that stalls its
//! downloads cannot stop another from linking and loses its slots after the write deadline; a
//! per-client cap answers the excess `Busy` while another client is served; a client removed
//! from clients.toml is disconnected at the next reload; failing peers are throttled per
//! address and per certificate, and refusals are aggregated in the audit log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use nayose_server::{Server, ServerConfig, verify_audit};
use nayose_wire::{
    ErrorCode, FetchBaseRequest, InfoResponse, Request, Response, StreamCode, encode_request_frame,
};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const CLIENTS: &str = "[[client]]\nid = \"hosp-a\"\nevaluations_per_day = 1000\n\
                       [[client]]\nid = \"hosp-s\"\nevaluations_per_day = 1000\n";

/// A client endpoint bound to `bind` (another loopback address stands for another source);
/// `window`: a tiny receive window, as a client that advertises almost no flow-control credit.
fn endpoint_at(
    ca_pem: &Path,
    identity: (&Path, &Path),
    bind: &str,
    window: Option<u32>,
) -> quinn::Endpoint {
    let provider = Arc::new(nayose_server::tls_crypto_provider(false));
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca_pem).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(identity.0)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(identity.1).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    cfg.alpn_protocols = vec![nayose_wire::ALPN.to_vec()];
    let mut qc = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(cfg).unwrap()));
    if let Some(w) = window {
        let mut t = quinn::TransportConfig::default();
        t.stream_receive_window(quinn::VarInt::from_u32(w));
        t.receive_window(quinn::VarInt::from_u32(w * 64));
        qc.transport_config(Arc::new(t));
    }
    let mut ep = quinn::Endpoint::client(bind.parse::<SocketAddr>().unwrap()).unwrap();
    ep.set_default_client_config(qc);
    ep
}

fn fetch_base_frame(i: &InfoResponse) -> Vec<u8> {
    encode_request_frame(&Request::FetchBase(FetchBaseRequest {
        key_period: i.key_period,
        epoch: i.epoch,
        offset: 0,
    }))
    .unwrap()
}

/// Sends a FetchBase, checks that the server started streaming it (the first frame is a
/// BaseChunk, message type 2, not an Error), and reads nothing more; the streams are returned
/// to keep them open.
async fn stalled_download(
    conn: &quinn::Connection,
    i: &InfoResponse,
) -> (quinn::SendStream, quinn::RecvStream) {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&fetch_base_frame(i)).await.unwrap();
    send.finish().unwrap();
    let mut hdr = [0u8; 8];
    tokio::time::timeout(STEP, recv.read_exact(&mut hdr))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]),
        2,
        "the download was admitted and streams a BaseChunk"
    );
    (send, recv)
}

/// The server's answer to `req`, retried while it is `Busy` (as a real client does).
async fn until_not_busy(conn: &quinn::Connection, req: &Request) -> Vec<Response> {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let r = request(conn, req).await.unwrap();
        match r.first() {
            Some(Response::Error(e)) if e.code == ErrorCode::Busy => {
                assert!(tokio::time::Instant::now() < deadline, "still Busy");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => return r,
        }
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    pki: Pki,
    data: std::path::PathBuf,
    cfg: ServerConfig,
}

fn fixture(persons: u32) -> Fixture {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"), "CA");
    let data = tmp.path().join("data");
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &registry_rows(persons, 0));
    build(&data, &reg);
    let mut cfg = config(&pki, &data, CLIENTS);
    cfg.fetch_chunk_entries = 256;
    Fixture {
        _tmp: tmp,
        pki,
        data,
        cfg,
    }
}

fn audit_lines(data: &Path) -> Vec<String> {
    std::fs::read_to_string(data.join("audit/audit.log"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalling_client_does_not_stop_an_honest_client_and_loses_its_slots_after_the_deadline() {
    let mut f = fixture(2000);
    // The whole download pool is two streams, both of which the stalling client takes.
    f.cfg.max_concurrent_downloads = 2;
    f.cfg.max_downloads_per_client = 2;
    f.cfg.write_timeout_ms = 1500;
    let server = Server::start(f.cfg.clone()).await.unwrap();
    let addr = server.local_addr();

    let (cert, key) = f.pki.client("hosp-s");
    let stall_ep = endpoint_at(&f.pki.ca_pem(), (&cert, &key), "127.0.0.1:0", Some(1024));
    let staller = connect(&stall_ep, addr).await.unwrap();
    let si = info(&staller).await;
    let mut stalled = Vec::new();
    for _ in 0..2 {
        stalled.push(stalled_download(&staller, &si).await);
    }

    // The honest client links meanwhile: Info and Evaluate are answered at once (their pool is
    // not the download pool), and its own download completes (after Busy while the stalled
    // streams hold the pool, until their deadline frees it).
    let (cert, key) = f.pki.client("hosp-a");
    let ep = client_endpoint(&f.pki.ca_pem(), Some((&cert, &key)));
    let honest = connect(&ep, addr).await.unwrap();
    let hi = info(&honest).await;
    let outputs = evaluate(&honest, &hi, &[b"a".to_vec(), b"b".to_vec()])
        .await
        .expect("Evaluate answered while downloads are stalled");
    assert_eq!(outputs.len(), 2);
    let frames = until_not_busy(
        &honest,
        &Request::FetchBase(FetchBaseRequest {
            key_period: hi.key_period,
            epoch: hi.epoch,
            offset: 0,
        }),
    )
    .await;
    assert!(
        matches!(frames.last(), Some(Response::BaseEnd(e)) if e.total == hi.table_entries),
        "the honest download completes"
    );

    // The stalled streams were reset with Timeout (0x2)…
    for (_send, mut recv) in stalled {
        let r = tokio::time::timeout(STEP, recv.read_to_end(1 << 20))
            .await
            .expect("a stalled stream ends");
        match r {
            Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => {
                assert_eq!(code, quinn::VarInt::from_u32(StreamCode::Timeout.to_u32()));
            }
            other => panic!("expected a reset, got {other:?}"),
        }
    }
    // …and their slots are free: the same client, now reading, downloads the whole base.
    let frames = until_not_busy(
        &staller,
        &Request::FetchBase(FetchBaseRequest {
            key_period: si.key_period,
            epoch: si.epoch,
            offset: 0,
        }),
    )
    .await;
    assert!(matches!(frames.last(), Some(Response::BaseEnd(_))));
    staller.close(0u32.into(), b"");
    honest.close(0u32.into(), b"");
    server.shutdown().await;
    let log = audit_lines(&f.data);
    let stalled_ends = log
        .iter()
        .filter(|l| l.contains("\"event\":\"fetch_end\"") && l.contains("\"outcome\":\"stalled\""))
        .count();
    assert_eq!(stalled_ends, 2, "{log:#?}");
    verify_audit(&f.data).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_client_cap_refuses_the_excess_with_busy_while_another_client_is_served() {
    let mut f = fixture(2000);
    f.cfg.max_requests_per_client = 2;
    // Long enough that the stalled downloads stay held for the whole test.
    f.cfg.write_timeout_ms = 120_000;
    f.cfg.shutdown_grace_ms = 0;
    let server = Server::start(f.cfg.clone()).await.unwrap();
    let addr = server.local_addr();
    let (cert, key) = f.pki.client("hosp-s");
    let stall_ep = endpoint_at(&f.pki.ca_pem(), (&cert, &key), "127.0.0.1:0", Some(1024));
    let staller = connect(&stall_ep, addr).await.unwrap();
    let si = info(&staller).await;
    let _held = [
        stalled_download(&staller, &si).await,
        stalled_download(&staller, &si).await,
    ];
    // Its next request, over the cap, is answered Busy (once the server has admitted both).
    let deadline = tokio::time::Instant::now() + STEP;
    let busy = loop {
        match one(&staller, &Request::Info).await {
            Response::Error(e) if e.code == ErrorCode::Busy => break e,
            other => {
                assert!(tokio::time::Instant::now() < deadline, "no Busy: {other:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert!(
        busy.message.as_str().contains("this client"),
        "{:?}",
        busy.message
    );
    assert_eq!(busy.retry_after_secs, 1);
    // A second connection of the same client is capped too (the cap is per client id).
    let second = connect(&stall_ep, addr).await.unwrap();
    assert_eq!(
        error_code(&one(&second, &Request::Info).await),
        ErrorCode::Busy
    );

    // Another client is served: Info, Evaluate and a whole download.
    let (cert, key) = f.pki.client("hosp-a");
    let ep = client_endpoint(&f.pki.ca_pem(), Some((&cert, &key)));
    let honest = connect(&ep, addr).await.unwrap();
    let hi = info(&honest).await;
    evaluate(&honest, &hi, &[b"x".to_vec()]).await.unwrap();
    let base = fetch_base(&honest, &hi, 0).await.unwrap();
    assert_eq!(base.len() as u64, hi.table_entries);
    honest.close(0u32.into(), b"");
    staller.close(0u32.into(), b"");
    server.shutdown().await;
    // The Busy answers are one aggregated record, not one record each.
    let log = audit_lines(&f.data);
    let busy_records: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("\"outcome\":\"Busy\""))
        .collect();
    assert_eq!(busy_records.len(), 1, "{log:#?}");
    assert!(busy_records[0].contains("\"event\":\"refusals\""));
    verify_audit(&f.data).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_removed_from_clients_toml_is_disconnected_at_the_next_reload() {
    let f = fixture(50);
    let clients_path = f.cfg.clients.clone().unwrap();
    let server = Server::start(f.cfg.clone()).await.unwrap();
    let (cert, key) = f.pki.client("hosp-s");
    let ep = client_endpoint(&f.pki.ca_pem(), Some((&cert, &key)));
    let conn = connect(&ep, server.local_addr()).await.unwrap();
    info(&conn).await;
    let (cert, key) = f.pki.client("hosp-a");
    let ep_a = client_endpoint(&f.pki.ca_pem(), Some((&cert, &key)));
    let kept = connect(&ep_a, server.local_addr()).await.unwrap();
    info(&kept).await;

    std::fs::write(
        &clients_path,
        "[[client]]\nid = \"hosp-a\"\nevaluations_per_day = 1000\n",
    )
    .unwrap();
    // No request is sent: the reload alone closes the connection, with NotAccredited.
    match tokio::time::timeout(STEP, conn.closed()).await.unwrap() {
        quinn::ConnectionError::ApplicationClosed(c) => assert_eq!(
            c.error_code,
            quinn::VarInt::from_u32(nayose_wire::CloseCode::NotAccredited.to_u32())
        ),
        other => panic!("expected an application close, got {other:?}"),
    }
    // The client still listed keeps its connection.
    info(&kept).await;
    assert!(kept.close_reason().is_none());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_peers_are_throttled_per_address_and_certificate_and_refusals_are_aggregated() {
    let mut f = fixture(50);
    f.cfg.refused_burst = 3;
    f.cfg.refused_per_minute = 1;
    let server = Server::start(f.cfg.clone()).await.unwrap();
    let addr = server.local_addr();
    let (cert, key) = f.pki.client("hosp-z");
    // A de-accredited peer from 127.0.0.2: its first three connections are answered
    // NotAccredited and closed…
    let z2 = endpoint_at(&f.pki.ca_pem(), (&cert, &key), "127.0.0.2:0", None);
    for _ in 0..3 {
        let c = connect(&z2, addr).await.unwrap();
        let r = request(&c, &Request::Info).await.unwrap();
        assert_eq!(error_code(&r[0]), ErrorCode::NotAccredited);
        let _ = tokio::time::timeout(STEP, c.closed()).await.unwrap();
    }
    // …the fourth is refused before the handshake.
    let e = connect(&z2, addr).await.unwrap_err();
    assert!(e.to_lowercase().contains("refused"), "{e}");
    // The same certificate from another address: closed right after the handshake, without
    // an answer.
    let z3 = endpoint_at(&f.pki.ca_pem(), (&cert, &key), "127.0.0.3:0", None);
    match connect(&z3, addr).await {
        Err(_) => {}
        Ok(c) => {
            assert!(request(&c, &Request::Info).await.is_err());
            match tokio::time::timeout(STEP, c.closed()).await.unwrap() {
                quinn::ConnectionError::ApplicationClosed(c) => assert_eq!(
                    c.error_code,
                    quinn::VarInt::from_u32(nayose_wire::CloseCode::NotAccredited.to_u32())
                ),
                other => panic!("{other:?}"),
            }
        }
    }
    // An accredited client from another address is not affected, and its refused requests
    // (here: 40 undecodable ones) add one record, not forty.
    let (cert, key) = f.pki.client("hosp-a");
    let ep = client_endpoint(&f.pki.ca_pem(), Some((&cert, &key)));
    let honest = connect(&ep, addr).await.unwrap();
    info(&honest).await;
    for _ in 0..40 {
        let r = request_raw(&honest, &[1, 0, 0, 0, 0xff]).await.unwrap();
        assert!(matches!(r.first(), Some(Response::Error(_))));
    }
    honest.close(0u32.into(), b"");
    server.shutdown().await;

    let log = audit_lines(&f.data);
    let refusals: Vec<serde_json::Value> = log
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event"] == "refusals")
        .collect();
    let find = |client: &str, peer: &str, outcome: &str| {
        let v: Vec<&serde_json::Value> = refusals
            .iter()
            .filter(|r| r["client"] == client && r["peer"] == peer && r["outcome"] == outcome)
            .collect();
        assert_eq!(v.len(), 1, "{client} {peer} {outcome}: {log:#?}");
        v[0]["count"].as_u64().unwrap()
    };
    assert_eq!(find("hosp-z", "127.0.0.2", "NotAccredited"), 3);
    assert_eq!(find("", "127.0.0.2", "RateLimited"), 1);
    assert_eq!(find("hosp-z", "127.0.0.3", "RateLimited"), 1);
    let bad: Vec<&serde_json::Value> = refusals
        .iter()
        .filter(|r| r["client"] == "hosp-a")
        .collect();
    assert_eq!(bad.len(), 1, "{log:#?}");
    assert_eq!(bad[0]["count"].as_u64(), Some(40));
    assert_eq!(bad[0]["op"], "Invalid");
    assert!(log.len() < 20, "{} records: {log:#?}", log.len());
    verify_audit(&f.data).unwrap();
}
