//! Load and fault test over real QUIC on 127.0.0.1 (issue 11 item 5): many honest clients
//! linking at once, first alone (the baseline), then beside stalling clients that try to hold
//! the server's slots. Every honest client is a real `nayose-client` link run with an id and a
//! certificate of its own, and its output is checked against the ground truth of the registry.
//!
//! The stalling clients are accredited (they pass the handshake and take slots) and of three
//! kinds, in turn:
//! - **no reads**: table downloads and Info requests whose answers they never read (with a
//!   stream window below one base, so that a download really stops: a window the size of the
//!   base would take the whole answer into the client's buffer);
//! - **tiny windows**: a 64-byte stream window and a 512-byte connection window, read slowly
//!   (64 bytes every 500 ms), for downloads and Info requests;
//! - **half-sent requests**: every stream the connection allows carries half a request frame
//!   and nothing more.
//!
//! Each opens `max_connections_per_client` connections and keeps requests outstanding on every
//! one, reopening them as the server resets them; the server runs with its default fairness
//! settings. A probe client meanwhile sends Info and an Evaluate of 16 numbers, one after the
//! other, and records how long each took to be answered (Busy answers retried after 100 ms,
//! counted in the time). Reported on stderr (`--nocapture`): the time until every honest
//! client had finished, with and without the stalling clients, and the ratio; the probe's
//! Info and Evaluate latencies (p50, p99, max), Busy answers and the audit records written.
//! Asserted: correctness of every honest output, every run finishing within a generous limit,
//! the probe's answers (verified proofs, outputs equal in both phases, each within 30 s), the
//! audit chain. Never a time ratio: CI machines
//! vary.
//!
//! The CI variant is small (tiny holdings, a table of a few thousand entries); the long one is
//! ignored: `cargo test --release -p nayose-client --test load -- --ignored --nocapture`.
//! Measured results are in benches/README.md ("Load with stalling clients").
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use nayose_client::{ClientConfig, NoProgress, link_async};
use nayose_oprf::{ClientBatch, Mode, PublicKey};
use nayose_server::{Server, ServerConfig, verify_audit};
use nayose_wire::{
    ElementBatch, ErrorCode, EvaluateRequest, FetchBaseRequest, FrameDecoder, InfoResponse,
    Request, Response, decode_response, encode_request_frame,
};
use quinn::crypto::rustls::QuicClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The size of one run.
#[derive(Clone, Copy, Debug)]
struct Scale {
    /// Honest clients linking at once.
    honest: usize,
    /// Stalling clients beside them.
    stalling: usize,
    /// Registry persons (each holds 1 to 4 numbers).
    table_persons: u32,
    /// Persons each honest client holds (all their numbers), plus `unknown` numbers.
    held_persons: usize,
    unknown: u32,
    /// Limit on one phase (every honest client finished).
    limit: Duration,
}

const CI: Scale = Scale {
    honest: 64,
    stalling: 8,
    table_persons: 1600,
    held_persons: 6,
    unknown: 2,
    limit: Duration::from_secs(300),
};

const LONG: Scale = Scale {
    honest: 64,
    stalling: 8,
    table_persons: 40_000,
    held_persons: 100,
    unknown: 20,
    limit: Duration::from_secs(1800),
};

/// The kinds of stalling client, taken in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stall {
    NoReads,
    TinyWindow,
    HalfSent,
}

const KINDS: [Stall; 3] = [Stall::NoReads, Stall::TinyWindow, Stall::HalfSent];

/// The server's limits that the stalling clients work against (its defaults).
const MAX_CONNECTIONS: usize = 4;
const STREAMS_PER_CONNECTION: usize = 32;

fn honest_id(i: usize) -> String {
    format!("honest-{i:03}")
}

fn stall_id(i: usize) -> String {
    format!("stall-{i:02}")
}

struct World {
    dir: tempfile::TempDir,
    pki: Pki,
    server_config: ServerConfig,
    /// Per honest client: its held file and the expected person of every row.
    held: Vec<(PathBuf, Vec<Option<String>>)>,
    base_bytes: u64,
}

fn world(scale: Scale) -> World {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("pki"));
    let data = dir.path().join("data");
    let registry_path = dir.path().join("registry.csv");
    let reg = registry(scale.table_persons);
    write_registry(&registry_path, &reg);
    nayose_server::build_epoch(&nayose_server::BuildOptions::new(&data, &registry_path)).unwrap();

    // Every client has an id and a certificate of its own, as accredited entities do.
    let mut clients = String::new();
    let ids: Vec<String> = (0..scale.honest)
        .map(honest_id)
        .chain((0..scale.stalling).map(stall_id))
        .chain(["probe".to_owned()])
        .collect();
    for id in &ids {
        let c = nayose_pki::issue_client_cert(&pki.client_ca, id).unwrap();
        std::fs::write(pki.dir.join(format!("{id}.pem")), &c.cert_pem).unwrap();
        write_private(&pki.dir.join(format!("{id}.key")), &c.key_pem);
        clients.push_str(&format!(
            "[[client]]\nid = \"{id}\"\nevaluations_per_day = 100000000\n\
             evaluations_per_key_period = 100000000\n"
        ));
    }
    let clients_path = pki.dir.join("clients.toml");
    std::fs::write(&clients_path, clients).unwrap();

    // Honest client i holds the numbers of persons i·k .. (i+1)·k (disjoint holdings).
    let mut held = Vec::new();
    let persons: Vec<&str> = {
        let mut p: Vec<&str> = reg.iter().map(|n| n.person.as_str()).collect();
        p.dedup();
        p
    };
    for i in 0..scale.honest {
        let mine: std::collections::BTreeSet<&str> = persons
            [i * scale.held_persons..(i + 1) * scale.held_persons]
            .iter()
            .copied()
            .collect();
        let nums: Vec<Num> = reg
            .iter()
            .filter(|n| mine.contains(n.person.as_str()))
            .cloned()
            .collect();
        let path = dir.path().join(format!("held-{i:03}.csv"));
        let truth = write_held(&path, &nums, 1, scale.unknown);
        held.push((path, truth));
    }
    // Default fairness settings (the point of the test); only the paths, the port and the
    // status line differ.
    let server_config = ServerConfig {
        data_dir: Some(data),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        cert: Some(pki.dir.join("server.pem")),
        key: Some(pki.dir.join("server.key")),
        client_ca: Some(pki.dir.join("client-ca.pem")),
        clients: Some(clients_path),
        status_interval_secs: 0,
        shutdown_grace_ms: 1000,
        ..ServerConfig::default()
    };
    let base_bytes = reg.len() as u64 * 36;
    World {
        dir,
        pki,
        server_config,
        held,
        base_bytes,
    }
}

impl World {
    fn client_config(&self, addr: SocketAddr, i: usize, phase: &str) -> ClientConfig {
        let id = honest_id(i);
        let out = self.dir.path().join(format!("out-{phase}-{i:03}.csv"));
        ClientConfig {
            server: Some(addr.to_string()),
            server_name: Some("localhost".into()),
            ca: Some(self.pki.dir.join("server-ca.pem")),
            cert: Some(self.pki.dir.join(format!("{id}.pem"))),
            key: Some(self.pki.dir.join(format!("{id}.key"))),
            input: Some(self.held[i].0.clone()),
            output: Some(out),
            // A cache of its own per phase: both phases evaluate and download a base.
            cache_dir: Some(self.dir.path().join(format!("cache-{phase}-{i:03}"))),
            ..Default::default()
        }
    }

    fn identity(&self, id: &str) -> (PathBuf, PathBuf) {
        (
            self.pki.dir.join(format!("{id}.pem")),
            self.pki.dir.join(format!("{id}.key")),
        )
    }
}

/// A QUIC client endpoint presenting `identity`; `windows`: (stream, connection) receive
/// windows instead of quinn's defaults.
fn endpoint(
    ca_pem: &Path,
    identity: (&Path, &Path),
    windows: Option<(u32, u32)>,
) -> quinn::Endpoint {
    let provider = Arc::new(nayose_client::tls_crypto_provider(false));
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
    if let Some((stream, conn)) = windows {
        let mut t = quinn::TransportConfig::default();
        t.stream_receive_window(quinn::VarInt::from_u32(stream));
        t.receive_window(quinn::VarInt::from_u32(conn));
        qc.transport_config(Arc::new(t));
    }
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(qc);
    ep
}

async fn connect(ep: &quinn::Endpoint, addr: SocketAddr) -> Option<quinn::Connection> {
    let c = ep.connect(addr, "localhost").ok()?;
    tokio::time::timeout(Duration::from_secs(20), c)
        .await
        .ok()?
        .ok()
}

/// One request on a new stream, every response frame until FIN (bounded by 60 s).
async fn request(conn: &quinn::Connection, req: &Request) -> Result<Vec<Response>, String> {
    let fut = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| format!("open: {e}"))?;
        send.write_all(&encode_request_frame(req).unwrap())
            .await
            .map_err(|e| format!("write: {e}"))?;
        send.finish().map_err(|e| format!("finish: {e}"))?;
        let bytes = recv
            .read_to_end(64 << 20)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let mut dec = FrameDecoder::new();
        dec.push(&bytes);
        let mut out = Vec::new();
        while let Some(p) = dec.next_frame().map_err(|e| e.to_string())? {
            out.push(decode_response(&p).map_err(|e| e.to_string())?);
        }
        Ok(out)
    };
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .map_err(|_| "request timed out after 60 s".to_string())?
}

/// The one answer to `req` that is not `Busy` (retried after 100 ms), and how many Busy
/// answers came first.
async fn answered(conn: &quinn::Connection, req: &Request) -> (Response, u32) {
    let mut busy = 0;
    loop {
        let mut r = request(conn, req).await.unwrap();
        assert_eq!(r.len(), 1, "{r:?}");
        match r.pop().unwrap() {
            Response::Error(e) if e.code == ErrorCode::Busy => {
                busy += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return (other, busy),
        }
    }
}

/// What the probe measured in one phase.
#[derive(Default)]
struct Probe {
    info_ms: Vec<f64>,
    evaluate_ms: Vec<f64>,
    busy: u32,
    /// The verified outputs of the probe's 16 numbers (equal in every round).
    outputs: Option<Vec<[u8; 64]>>,
}

/// Info, then an Evaluate of 16 numbers (proof verified), in turn, until `stop`.
async fn probe(conn: quinn::Connection, stop: Arc<AtomicBool>) -> Probe {
    let inputs: Vec<Vec<u8>> = (0..16u8).map(|i| vec![b'p', i]).collect();
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let mut p = Probe::default();
    while !stop.load(Ordering::Relaxed) || p.evaluate_ms.is_empty() {
        let t = Instant::now();
        let (r, busy) = answered(&conn, &Request::Info).await;
        p.info_ms.push(t.elapsed().as_secs_f64() * 1e3);
        p.busy += busy;
        let Response::Info(info) = r else {
            panic!("expected Info, got {r:?}")
        };
        let batch = ClientBatch::blind(Mode::Voprf, &refs, &mut rand::rng()).unwrap();
        let req = Request::Evaluate(EvaluateRequest {
            key_period: info.key_period,
            elements: ElementBatch::from_arrays(batch.blinded_elements()).unwrap(),
        });
        let t = Instant::now();
        let (r, busy) = answered(&conn, &req).await;
        p.evaluate_ms.push(t.elapsed().as_secs_f64() * 1e3);
        p.busy += busy;
        let Response::Evaluated(ev) = r else {
            panic!("expected Evaluated, got {r:?}")
        };
        let pk = PublicKey::from_bytes(&info.public_key.0).unwrap();
        let outputs: Vec<[u8; 64]> = batch
            .verify(&pk, &ev.elements.to_arrays(), &ev.proof.0)
            .expect("the proof verifies")
            .finalize()
            .iter()
            .map(|o| *o.as_bytes())
            .collect();
        match &p.outputs {
            None => p.outputs = Some(outputs),
            Some(o) => assert!(*o == outputs, "the same numbers give the same outputs"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p
}

/// Audit records so far: (all, those of the stalling clients).
fn audit_records(data: &Path) -> (usize, usize) {
    let text = std::fs::read_to_string(data.join("audit/audit.log")).unwrap_or_default();
    let all = text.lines().count();
    let stalling = text
        .lines()
        .filter(|l| l.contains("\"client\":\"stall-"))
        .count();
    (all, stalling)
}

fn percentile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() - 1) as f64 * q).round() as usize]
}

fn latency_line(name: &str, v: &[f64]) -> String {
    format!(
        "{name}: {} answered, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        v.len(),
        percentile(v, 0.5),
        percentile(v, 0.99),
        percentile(v, 1.0)
    )
}

/// Counts of what the stalling clients did.
#[derive(Default)]
struct StallCounts {
    connections: AtomicU64,
    streams: AtomicU64,
    resets: AtomicU64,
}

fn fetch_base(info: &InfoResponse) -> Request {
    Request::FetchBase(FetchBaseRequest {
        key_period: info.key_period,
        epoch: info.epoch,
        offset: 0,
    })
}

/// One stream of a stalling client: sends its request (or half of it) and then does what its
/// kind does until the server ends the stream or `stop`.
async fn stall_stream(
    kind: Stall,
    conn: quinn::Connection,
    frame: Vec<u8>,
    stop: Arc<AtomicBool>,
    counts: Arc<StallCounts>,
) {
    let Ok(Ok((mut send, mut recv))) =
        tokio::time::timeout(Duration::from_secs(2), conn.open_bi()).await
    else {
        tokio::time::sleep(Duration::from_millis(200)).await;
        return;
    };
    counts.streams.fetch_add(1, Ordering::Relaxed);
    match kind {
        Stall::HalfSent => {
            let _ = send.write_all(&frame[..frame.len() / 2]).await;
        }
        _ => {
            let _ = send.write_all(&frame).await;
            let _ = send.finish();
        }
    }
    let ended = async {
        match kind {
            // Never reads: waits for the server to reset the stream (or finish it, if the
            // whole answer fits the window).
            Stall::NoReads | Stall::HalfSent => {
                let _ = recv.received_reset().await;
            }
            Stall::TinyWindow => {
                let mut buf = [0u8; 64];
                while let Ok(Some(_)) = recv.read(&mut buf).await {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    };
    let stopped = async {
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        _ = ended => { counts.resets.fetch_add(1, Ordering::Relaxed); }
        _ = stopped => {}
    }
}

/// A stalling client: `MAX_CONNECTIONS` connections, each keeping every stream it may open
/// busy with its kind of stall until `stop`.
async fn staller(
    kind: Stall,
    ep: quinn::Endpoint,
    addr: SocketAddr,
    info: InfoResponse,
    stop: Arc<AtomicBool>,
    counts: Arc<StallCounts>,
) {
    let frames = [
        encode_request_frame(&fetch_base(&info)).unwrap(),
        encode_request_frame(&Request::Info).unwrap(),
    ];
    let half_sent = encode_request_frame(&Request::Evaluate(EvaluateRequest {
        key_period: info.key_period,
        elements: ElementBatch::from_arrays(&[[1u8; 32]; 64]).unwrap(),
    }))
    .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..MAX_CONNECTIONS {
        let (ep, stop, counts) = (ep.clone(), stop.clone(), counts.clone());
        let frames = frames.clone();
        let half_sent = half_sent.clone();
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Some(conn) = connect(&ep, addr).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                counts.connections.fetch_add(1, Ordering::Relaxed);
                let mut streams = tokio::task::JoinSet::new();
                let mut n = c;
                while !stop.load(Ordering::Relaxed) && conn.close_reason().is_none() {
                    while streams.len() < STREAMS_PER_CONNECTION {
                        let frame = match kind {
                            Stall::HalfSent => half_sent.clone(),
                            _ => frames[n % 2].clone(),
                        };
                        n += 1;
                        streams.spawn(stall_stream(
                            kind,
                            conn.clone(),
                            frame,
                            stop.clone(),
                            counts.clone(),
                        ));
                    }
                    tokio::select! {
                        _ = streams.join_next() => {}
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
                streams.shutdown().await;
                conn.close(0u32.into(), b"");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// What one phase measured.
struct Phase {
    /// From the start until the last honest client finished.
    wall: Duration,
    /// Each honest run's own time.
    runs: Vec<Duration>,
    probe: Probe,
}

async fn phase(w: &World, addr: SocketAddr, scale: Scale, stalling: bool) -> Phase {
    let name = if stalling { "stall" } else { "alone" };
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(StallCounts::default());
    let (cert, key) = w.identity("probe");
    let probe_ep = endpoint(&w.pki.dir.join("server-ca.pem"), (&cert, &key), None);
    let probe_conn = connect(&probe_ep, addr).await.expect("probe connects");
    let (r, _) = answered(&probe_conn, &Request::Info).await;
    let Response::Info(info) = r else {
        panic!("{r:?}")
    };

    let mut stallers = tokio::task::JoinSet::new();
    if stalling {
        // Below one base, so that an unread download stops the server's writes.
        let no_read_window = (w.base_bytes / 4).clamp(4096, 1_250_000) as u32;
        for s in 0..scale.stalling {
            let kind = KINDS[s % KINDS.len()];
            let windows = match kind {
                Stall::NoReads => Some((no_read_window, no_read_window * 8)),
                Stall::TinyWindow => Some((64, 512)),
                Stall::HalfSent => None,
            };
            let (cert, key) = w.identity(&stall_id(s));
            let ep = endpoint(&w.pki.dir.join("server-ca.pem"), (&cert, &key), windows);
            stallers.spawn(staller(
                kind,
                ep,
                addr,
                info.clone(),
                stop.clone(),
                counts.clone(),
            ));
        }
        // Let them take what they can before the honest clients arrive.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    let data = w.server_config.data_dir.clone().unwrap();
    let records_before = audit_records(&data);
    let probe_stop = Arc::new(AtomicBool::new(false));
    let probe_task = tokio::spawn(probe(probe_conn.clone(), probe_stop.clone()));
    let started = Instant::now();
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..scale.honest {
        let cfg = w.client_config(addr, i, name);
        runs.spawn(async move {
            let t = Instant::now();
            let r = link_async(&cfg, &NoProgress).await;
            (i, r, t.elapsed())
        });
    }
    let mut times = vec![Duration::ZERO; scale.honest];
    let collect = async {
        while let Some(done) = runs.join_next().await {
            let (i, r, took) = done.unwrap();
            let s = r.unwrap_or_else(|e| panic!("{} failed: {e}", honest_id(i)));
            assert_eq!(s.sync.kind, "base");
            times[i] = took;
        }
    };
    tokio::time::timeout(scale.limit, collect)
        .await
        .expect("every honest client finishes within the limit");
    let wall = started.elapsed();
    probe_stop.store(true, Ordering::Relaxed);
    let probe = probe_task.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    while stallers.join_next().await.is_some() {}
    probe_conn.close(0u32.into(), b"");

    for (i, (_, truth)) in w.held.iter().enumerate() {
        let out = w.dir.path().join(format!("out-{name}-{i:03}.csv"));
        check_ground_truth(&read_output(&out), truth);
    }
    let records = audit_records(&data);
    eprintln!(
        "{name}: {} audit records written, {} of them about the stalling clients",
        records.0 - records_before.0,
        records.1 - records_before.1
    );
    if stalling {
        eprintln!(
            "stalling clients: {} connections, {} streams, {} ended by the server (reset, or answered in full)",
            counts.connections.load(Ordering::Relaxed),
            counts.streams.load(Ordering::Relaxed),
            counts.resets.load(Ordering::Relaxed)
        );
    }
    Phase {
        wall,
        runs: times,
        probe,
    }
}

fn report(name: &str, p: &Phase) {
    let mut runs: Vec<f64> = p.runs.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    runs.sort_by(f64::total_cmp);
    eprintln!(
        "{name}: all honest clients done in {:.2} s; one run p50 {:.0} ms, max {:.0} ms",
        p.wall.as_secs_f64(),
        percentile(&runs, 0.5),
        percentile(&runs, 1.0)
    );
    eprintln!("  probe {}", latency_line("Info", &p.probe.info_ms));
    eprintln!(
        "  probe {}",
        latency_line("Evaluate(16)", &p.probe.evaluate_ms)
    );
    eprintln!("  probe Busy answers: {}", p.probe.busy);
}

async fn run(scale: Scale) {
    let w = world(scale);
    let server = Server::start(w.server_config.clone()).await.unwrap();
    let addr = server.local_addr();
    eprintln!(
        "load: {} honest clients ({} persons + {} unknown each), {} stalling, table of {} entries",
        scale.honest,
        scale.held_persons,
        scale.unknown,
        scale.stalling,
        w.base_bytes / 36
    );
    let alone = phase(&w, addr, scale, false).await;
    report("without stalling clients", &alone);
    let stalled = phase(&w, addr, scale, true).await;
    report("with stalling clients", &stalled);
    eprintln!(
        "ratio (with / without stalling clients): {:.2}",
        stalled.wall.as_secs_f64() / alone.wall.as_secs_f64()
    );
    // Bounded, generously (a liveness bound, not a measurement): the write deadline and the
    // request timeout are 10 s, the client's request timeout 60 s.
    for p in [&alone.probe, &stalled.probe] {
        let worst = percentile(&p.info_ms, 1.0).max(percentile(&p.evaluate_ms, 1.0));
        assert!(worst < 30_000.0, "Info/Evaluate took {worst:.0} ms");
    }
    assert_eq!(
        alone.probe.outputs, stalled.probe.outputs,
        "the probe's outputs are the same in both phases"
    );
    server.shutdown().await;
    verify_audit(w.server_config.data_dir.as_ref().unwrap()).expect("the audit chain verifies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_honest_clients_link_correctly_beside_eight_stalling_clients() {
    run(CI).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: cargo test --release -p nayose-client --test load -- --ignored --nocapture"]
async fn long_sixty_four_honest_clients_beside_eight_stalling_clients_with_a_large_table() {
    run(LONG).await;
}
