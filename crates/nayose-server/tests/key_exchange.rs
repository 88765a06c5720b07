//! The TLS key exchange of the server over real QUIC on 127.0.0.1 (protocol-spec/wire.md §2.1):
//! by default it negotiates the post-quantum hybrid X25519MLKEM768 and refuses a client that
//! offers only classical groups, saying so in its log; with `allow_classical_key_exchange` it
//! accepts that client (and logs the classical handshake), while a client that offers the
//! hybrid first still gets the hybrid. The clients are test-built rustls configurations whose
//! groups record which one each handshake completed with.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/kx.rs"]
mod kx;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use common::*;
use nayose_server::{RunningServer, Server};
use rustls::NamedGroup;

const CLIENTS: &str = "[[client]]\nid = \"hosp-a\"\nevaluations_per_day = 1000\n";

/// Everything the server logs in this test binary (warnings and above).
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .try_init();
        buf
    })
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

/// The log once it holds every one of `needles` (the server's connection task may log after
/// the client has seen the outcome); panics with the log after [`STEP`].
async fn log_with(needles: &[&str]) -> String {
    let deadline = std::time::Instant::now() + STEP;
    loop {
        let log = logged();
        if needles.iter().all(|n| log.contains(n)) {
            return log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the log lacks one of {needles:?}:\n{log}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A server with an epoch of 20 persons; `allow_classical` sets the allowance.
async fn start(tmp: &Path, allow_classical: bool) -> (Pki, RunningServer) {
    let pki = Pki::new(&tmp.join("pki"), "management body CA");
    let data = tmp.join("data");
    let reg = tmp.join("registry.csv");
    write_registry(&reg, &registry_rows(20, 0));
    build(&data, &reg);
    let mut cfg = config(&pki, &data, CLIENTS);
    cfg.allow_classical_key_exchange = allow_classical;
    let server = Server::start(cfg).await.unwrap();
    (pki, server)
}

/// Connects offering `groups` and asks for Info (which must be answered): the groups the
/// handshake completed with, or the connection error.
async fn attempt(pki: &Pki, addr: SocketAddr, groups: &[&str]) -> Result<Vec<NamedGroup>, String> {
    let (cert, key) = pki.client("hosp-a");
    let (ep, seen) = kx::client_endpoint(&pki.ca_pem(), (&cert, &key), groups);
    let conn = connect(&ep, addr).await?;
    info(&conn).await;
    conn.close(0u32.into(), b"done");
    Ok(seen.groups())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_the_hybrid_is_negotiated_and_a_classical_only_client_is_refused() {
    logs();
    let tmp = tempfile::tempdir().unwrap();
    let (pki, server) = start(tmp.path(), false).await;
    let addr = server.local_addr();

    // A client that offers the hybrid first, as nayose does.
    assert_eq!(
        attempt(&pki, addr, kx::HYBRID_FIRST).await.unwrap(),
        vec![NamedGroup::X25519MLKEM768]
    );
    // A client that prefers X25519 but also offers the hybrid: the server accepts only the
    // hybrid, so that is what is negotiated (after a HelloRetryRequest).
    assert_eq!(
        attempt(&pki, addr, kx::CLASSICAL_FIRST).await.unwrap(),
        vec![NamedGroup::X25519MLKEM768]
    );
    // A classical-only client: refused in the handshake with handshake_failure (TLS alert 40,
    // QUIC error 0x128), and the server's log names the key exchange.
    let refused = attempt(&pki, addr, kx::CLASSICAL_ONLY).await.unwrap_err();
    assert_eq!(
        refused,
        "aborted by peer: the cryptographic handshake failed: error 40: peer is incompatible: \
         NoKxGroupsInCommon"
    );
    log_with(&[
        "refused a TLS handshake: the client does not offer the post-quantum key exchange \
         X25519MLKEM768, which this server requires",
        "or set allow_classical_key_exchange = true to accept classical key exchange",
    ])
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_allowance_a_classical_only_client_is_accepted_and_logged() {
    logs();
    let tmp = tempfile::tempdir().unwrap();
    let (pki, server) = start(tmp.path(), true).await;
    let addr = server.local_addr();

    // The hybrid stays preferred for a client that offers it first.
    assert_eq!(
        attempt(&pki, addr, kx::HYBRID_FIRST).await.unwrap(),
        vec![NamedGroup::X25519MLKEM768]
    );
    // A classical-only client is accepted with X25519 and answered.
    assert_eq!(
        attempt(&pki, addr, kx::CLASSICAL_ONLY).await.unwrap(),
        vec![NamedGroup::X25519]
    );
    // rustls follows the client's order among the groups the server accepts: a client that
    // lists X25519 before the hybrid gets X25519 (documented in wire.md §2.1).
    assert_eq!(
        attempt(&pki, addr, kx::CLASSICAL_FIRST).await.unwrap(),
        vec![NamedGroup::X25519]
    );
    log_with(&[
        "a TLS handshake uses the classical key exchange X25519, not X25519MLKEM768: allowed by \
         allow_classical_key_exchange = true",
    ])
    .await;
    server.shutdown().await;
}
