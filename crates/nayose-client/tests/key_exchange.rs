//! The TLS key exchange of the client over real QUIC on 127.0.0.1 (protocol-spec/wire.md §2.1):
//! a default client negotiates the post-quantum hybrid X25519MLKEM768 and refuses a server that
//! offers only classical groups with `KeyExchangeRefused`, naming the key exchange; with
//! `allow_classical_key_exchange` it accepts that server, and still gets the hybrid from a server
//! that has it. The servers are test-built (their groups record which one each handshake
//! completed with; after the handshake they close with `NotAccredited`, so a run that ends with
//! `NotAccredited` had a complete handshake), plus the real server for a whole run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../nayose-server/tests/common/kx.rs"]
mod kx;

use std::net::SocketAddr;

use common::*;
use nayose_client::{ClientConfig, ClientError, NoProgress, link_async};
use rustls::NamedGroup;

/// A link run against `addr` with the fixture's PKI; `allow_classical` sets the allowance.
async fn run(pki: &Pki, dir: &std::path::Path, addr: SocketAddr, allow: bool) -> ClientError {
    let input = dir.join("held.csv");
    write_held(&input, &registry(3), 1, 0);
    let mut cfg: ClientConfig =
        client_config(pki, addr, &input, &dir.join("out.csv"), &dir.join("cache"));
    cfg.allow_classical_key_exchange = Some(allow);
    tokio::time::timeout(TEST_LIMIT, link_async(&cfg, &NoProgress))
        .await
        .expect("the run ends in bounded time")
        .expect_err("the test server never answers a request")
}

fn test_server(pki: &Pki, groups: &[&str]) -> (SocketAddr, kx::Negotiated) {
    kx::handshake_server(
        &pki.dir.join("server.pem"),
        &pki.dir.join("server.key"),
        groups,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_client_refuses_a_classical_only_server_naming_the_key_exchange() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let (addr, seen) = test_server(&pki, kx::CLASSICAL_ONLY);
    let started = std::time::Instant::now();
    let err = run(&pki, tmp.path(), addr, false).await;
    let ClientError::KeyExchangeRefused { .. } = err else {
        panic!("expected KeyExchangeRefused, got {err}");
    };
    assert_eq!(err.kind(), "key_exchange_refused");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "the server {addr} refused the TLS handshake (TLS alert HandshakeFailure: peer is \
             incompatible: NoKxGroupsInCommon): no key exchange in common: this client offers \
             only the post-quantum key exchange X25519MLKEM768 (allow_classical_key_exchange = \
             false)"
        )),
        "{text}"
    );
    assert!(
        text.contains("set allow_classical_key_exchange = true (--allow-classical-key-exchange)"),
        "{text}"
    );
    assert!(seen.groups().is_empty(), "no key exchange completed");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "refused at once, not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_allowance_a_classical_only_server_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    let (addr, seen) = test_server(&pki, kx::CLASSICAL_ONLY);
    let err = run(&pki, tmp.path(), addr, true).await;
    assert!(
        matches!(err, ClientError::NotAccredited { ref message, .. } if message == "handshake completed"),
        "the handshake completed: {err}"
    );
    assert_eq!(seen.groups(), vec![NamedGroup::X25519]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_offers_the_hybrid_first_with_or_without_the_allowance() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"));
    // A server that accepts classical groups before the hybrid still follows the client's
    // order (rustls): the client's first choice decides.
    let (addr, seen) = test_server(&pki, &["X25519", "secp256r1", "X25519MLKEM768"]);
    for allow in [false, true] {
        let err = run(&pki, tmp.path(), addr, allow).await;
        assert!(
            matches!(err, ClientError::NotAccredited { .. }),
            "allow_classical_key_exchange = {allow}: {err}"
        );
    }
    assert_eq!(
        seen.groups(),
        vec![NamedGroup::X25519MLKEM768, NamedGroup::X25519MLKEM768]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_client_and_a_default_server_link_over_the_hybrid() {
    // Both sides accept X25519MLKEM768 alone, so a whole run proves they negotiated it.
    let fx = Fixture::new(30, |c| assert!(!c.allow_classical_key_exchange));
    let server = fx.start().await;
    let input = fx.path("held.csv");
    let truth = write_held(&input, &fx.reg, 3, 2);
    let out = fx.path("out.csv");
    let cfg = fx.client(server.local_addr(), &input, &out);
    assert_eq!(cfg.allow_classical_key_exchange, None);
    tokio::time::timeout(TEST_LIMIT, link_async(&cfg, &NoProgress))
        .await
        .unwrap()
        .unwrap();
    check_ground_truth(&read_output(&out), &truth);
    server.shutdown().await;
}
