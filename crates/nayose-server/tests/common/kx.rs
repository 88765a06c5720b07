//! Test peers for the TLS key exchange: rustls key exchange groups that record which group a
//! handshake completed with (quinn does not expose the negotiated group), and a QUIC client
//! endpoint and a handshake-only QUIC server built with chosen groups, standing for peers of
//! another implementation or an older version (classical-only).
//!
//! Shared by the tests of nayose-server and nayose-client (`#[path]`), so that both sides are
//! observed the same way.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::NamedGroup;
use rustls::crypto::aws_lc_rs::{self, kx_group};
use rustls::crypto::{ActiveKeyExchange, CompletedKeyExchange, SharedSecret, SupportedKxGroup};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The groups handshakes completed with, in order.
#[derive(Debug, Clone, Default)]
pub struct Negotiated(Arc<Mutex<Vec<NamedGroup>>>);

impl Negotiated {
    pub fn groups(&self) -> Vec<NamedGroup> {
        self.0.lock().unwrap().clone()
    }

    fn push(&self, g: NamedGroup) {
        self.0.lock().unwrap().push(g);
    }
}

/// A group of aws-lc-rs that records every key exchange completed with it (on a client: the
/// group the server chose; on a server: the group it chose).
#[derive(Debug)]
struct Recording {
    inner: &'static dyn SupportedKxGroup,
    seen: Negotiated,
}

struct RecordingActive {
    inner: Box<dyn ActiveKeyExchange>,
    seen: Negotiated,
}

impl SupportedKxGroup for Recording {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        Ok(Box::new(RecordingActive {
            inner: self.inner.start()?,
            seen: self.seen.clone(),
        }))
    }

    fn start_and_complete(&self, peer: &[u8]) -> Result<CompletedKeyExchange, rustls::Error> {
        let done = self.inner.start_and_complete(peer)?;
        self.seen.push(self.inner.name());
        Ok(done)
    }

    fn name(&self) -> NamedGroup {
        self.inner.name()
    }
}

impl ActiveKeyExchange for RecordingActive {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, rustls::Error> {
        let group = self.inner.group();
        let secret = self.inner.complete(peer)?;
        self.seen.push(group);
        Ok(secret)
    }

    fn hybrid_component(&self) -> Option<(NamedGroup, &[u8])> {
        self.inner.hybrid_component()
    }

    fn complete_hybrid_component(
        self: Box<Self>,
        peer: &[u8],
    ) -> Result<SharedSecret, rustls::Error> {
        // The server chose the classical half of the hybrid (its X25519 share was sent along).
        let group = self.inner.hybrid_component().map(|(g, _)| g);
        let secret = self.inner.complete_hybrid_component(peer)?;
        if let Some(g) = group {
            self.seen.push(g);
        }
        Ok(secret)
    }

    fn pub_key(&self) -> &[u8] {
        self.inner.pub_key()
    }

    fn group(&self) -> NamedGroup {
        self.inner.group()
    }
}

/// X25519MLKEM768 alone: what a nayose node offers by default.
pub const HYBRID_ONLY: &[&str] = &["X25519MLKEM768"];
/// The classical groups of aws-lc-rs: an older or foreign classical-only peer.
pub const CLASSICAL_ONLY: &[&str] = &["X25519", "secp256r1", "secp384r1"];
/// The hybrid first, then the classical groups.
pub const HYBRID_FIRST: &[&str] = &["X25519MLKEM768", "X25519", "secp256r1", "secp384r1"];
/// A classical group first, then the hybrid: a peer that prefers classical.
pub const CLASSICAL_FIRST: &[&str] = &["X25519", "X25519MLKEM768"];

fn group(name: &str) -> &'static dyn SupportedKxGroup {
    match name {
        "X25519MLKEM768" => kx_group::X25519MLKEM768,
        "X25519" => kx_group::X25519,
        "secp256r1" => kx_group::SECP256R1,
        "secp384r1" => kx_group::SECP384R1,
        other => panic!("no group {other}"),
    }
}

/// The aws-lc-rs provider with `names`, in that order, each recording into the returned log.
pub fn recording_provider(names: &[&str]) -> (rustls::crypto::CryptoProvider, Negotiated) {
    let seen = Negotiated::default();
    let kx_groups = names
        .iter()
        .map(|n| {
            let g: &'static dyn SupportedKxGroup = Box::leak(Box::new(Recording {
                inner: group(n),
                seen: seen.clone(),
            }));
            g
        })
        .collect();
    (
        rustls::crypto::CryptoProvider {
            kx_groups,
            ..aws_lc_rs::default_provider()
        },
        seen,
    )
}

/// A QUIC client endpoint with the groups `names`, trusting `ca_pem`, presenting (cert, key);
/// otherwise configured as a nayose client (TLS 1.3, ALPN `nayose/2`).
pub fn client_endpoint(
    ca_pem: &Path,
    identity: (&Path, &Path),
    names: &[&str],
) -> (quinn::Endpoint, Negotiated) {
    let (provider, seen) = recording_provider(names);
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca_pem).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(identity.0)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(identity.1).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    cfg.alpn_protocols = vec![nayose_wire::ALPN.to_vec()];
    let qc = quinn::crypto::rustls::QuicClientConfig::try_from(cfg).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(qc)));
    (ep, seen)
}

/// A QUIC server on 127.0.0.1 with the groups `names` and the certificate (chain, key), no
/// client authentication, ALPN `nayose/2`. It completes handshakes and then closes each
/// connection with the application code `NotAccredited` and the reason `handshake completed`,
/// so a client run ends with `NotAccredited` exactly when its handshake succeeded. Serves until
/// the runtime ends.
pub fn handshake_server(
    cert: &Path,
    key: &Path,
    names: &[&str],
) -> (std::net::SocketAddr, Negotiated) {
    let (provider, seen) = recording_provider(names);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    tls.alpn_protocols = vec![nayose_wire::ALPN.to_vec()];
    let qc = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    let sc = quinn::ServerConfig::with_crypto(Arc::new(qc));
    let ep = quinn::Endpoint::server(sc, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = ep.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(incoming) = ep.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.await {
                    conn.close(
                        quinn::VarInt::from_u32(nayose_wire::CloseCode::NotAccredited.to_u32()),
                        b"handshake completed",
                    );
                    // Let the close frame go out before the connection is dropped.
                    conn.closed().await;
                }
            });
        }
    });
    (addr, seen)
}
