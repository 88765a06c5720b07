//! TLS 1.3 client configuration for QUIC: the server is verified against the configured CA and
//! server name, the client presents its certificate (mutual TLS), ALPN is `nayose/1`.
//!
//! Invariants: only the `ring` provider and TLS 1.3 are used; the private key is read once and
//! handed to rustls (never logged); the client id is the client certificate's CommonName, read
//! with the same rule the server applies (`nayose_pki::client_id_of`).

use std::path::Path;
use std::sync::Arc;

use nayose_table::ClientId;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Resolved;
use crate::error::ClientError;

/// The client's TLS identity and trust anchors, loaded and checked.
pub(crate) struct Credentials {
    pub(crate) quic: quinn::ClientConfig,
    pub(crate) client_id: ClientId,
}

fn read(path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|source| ClientError::Io {
        path: path.to_owned(),
        source,
    })
}

fn cred_err(path: &Path, reason: impl Into<String>) -> ClientError {
    ClientError::Credentials {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let pem = read(path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| cred_err(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(cred_err(path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

/// Loads the CA, the client certificate chain and key, and builds the QUIC client config.
pub(crate) fn load(cfg: &Resolved) -> Result<Credentials, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs(&cfg.ca)? {
        roots
            .add(ca)
            .map_err(|e| cred_err(&cfg.ca, format!("unusable CA certificate: {e}")))?;
    }
    let chain = certs(&cfg.cert)?;
    let client_id = nayose_pki::client_id_of(chain[0].as_ref())
        .map_err(|e| cred_err(&cfg.cert, format!("no usable client id: {e}")))
        .and_then(|id| {
            ClientId::new(&id).map_err(|e| cred_err(&cfg.cert, format!("bad client id: {e}")))
        })?;
    let key_pem = zeroize::Zeroizing::new(read(&cfg.key)?);
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| cred_err(&cfg.key, format!("no usable PEM private key: {e}")))?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| cred_err(&cfg.cert, format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| {
            cred_err(
                &cfg.key,
                format!("the key does not fit the client certificate: {e}"),
            )
        })?;
    tls.alpn_protocols = vec![nayose_wire::ALPN.to_vec()];
    // No 0-RTT: early data could be replayed (protocol-spec/security.md). rustls' default is
    // already off; say so explicitly so a future default change cannot turn it on.
    tls.enable_early_data = false;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| cred_err(&cfg.cert, format!("TLS config unusable for QUIC: {e}")))?;
    let mut quic = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(std::time::Duration::from_millis(
        nayose_wire::DEFAULT_KEEP_ALIVE_MS,
    )));
    transport.max_idle_timeout(
        quinn::IdleTimeout::try_from(std::time::Duration::from_millis(
            nayose_wire::DEFAULT_IDLE_TIMEOUT_MS,
        ))
        .ok(),
    );
    // The server opens no streams to the client.
    transport.max_concurrent_bidi_streams(0u32.into());
    transport.max_concurrent_uni_streams(0u32.into());
    quic.transport_config(Arc::new(transport));
    Ok(Credentials { quic, client_id })
}
