//! TLS for the QUIC endpoint: rustls with the ring provider, TLS 1.3 only, ALPN `nayose/2`,
//! mutual TLS against the configured client CA, 0-RTT disabled, and no session resumption
//! (wire.md §2.1: no tickets are issued and no session is cached, so every connection is a full
//! handshake that verifies the client certificate again).
//!
//! Invariant: a connection reaches the service only after rustls verified the client's
//! certificate chain to the client CA (`WebPkiClientVerifier`, client authentication
//! mandatory); the client id is then read from the verified end-entity certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::error::ServerError;
use crate::fsutil::check_owner_only;

fn tls_err(path: &Path, reason: impl Into<String>) -> ServerError {
    ServerError::Tls {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads every certificate of a PEM file (at least one).
pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let bytes = std::fs::read(path).map_err(ServerError::io("cannot read", path))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(path, format!("not a valid PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(tls_err(path, "holds no CERTIFICATE block"));
    }
    Ok(certs)
}

/// Reads a private key PEM file (must be owner-only).
pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, ServerError> {
    check_owner_only(path)?;
    let bytes =
        zeroize::Zeroizing::new(std::fs::read(path).map_err(ServerError::io("cannot read", path))?);
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| tls_err(path, format!("holds no usable private key: {e}")))
}

/// The rustls server configuration of the endpoint.
pub(crate) fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
) -> Result<rustls::ServerConfig, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(client_ca)? {
        roots
            .add(c)
            .map_err(|e| tls_err(client_ca, format!("not a usable CA certificate: {e}")))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| tls_err(client_ca, format!("cannot verify clients with it: {e}")))?;
    let chain = load_certs(cert)?;
    let key_der = load_key(key)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err(cert, format!("TLS 1.3 unavailable: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            tls_err(
                key,
                format!("does not match the certificate {}: {e}", cert.display()),
            )
        })?;
    cfg.alpn_protocols = vec![nayose_wire::ALPN.to_vec()];
    cfg.max_early_data_size = 0;
    cfg.send_tls13_tickets = 0;
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_resumption_no_early_data_and_nayose_2() {
        let dir = tempfile::tempdir().unwrap();
        let ca = nayose_pki::generate_ca("test CA").unwrap();
        let server = nayose_pki::issue_server_cert(&ca, "localhost").unwrap();
        let (ca_pem, cert, key) = (
            dir.path().join("ca.pem"),
            dir.path().join("s.pem"),
            dir.path().join("s.key"),
        );
        std::fs::write(&ca_pem, &ca.cert_pem).unwrap();
        std::fs::write(&cert, &server.cert_pem).unwrap();
        crate::fsutil::atomic_write(&key, server.key_pem.as_bytes()).unwrap();
        let cfg = server_config(&cert, &key, &ca_pem).unwrap();
        assert_eq!(cfg.send_tls13_tickets, 0);
        assert_eq!(cfg.max_early_data_size, 0);
        assert!(!cfg.ticketer.enabled());
        assert!(!cfg.session_storage.can_cache());
        assert_eq!(cfg.alpn_protocols, vec![b"nayose/2".to_vec()]);
    }
}
