//! TLS for the QUIC endpoint: rustls with the ring provider, TLS 1.3 only, ALPN `nayose/2`,
//! mutual TLS against the configured client CA, 0-RTT disabled, and no session resumption
//! (wire.md §2.1: no tickets are issued and no session is cached, so every connection is a full
//! handshake that verifies the client certificate again).
//!
//! Invariant: a connection reaches the service only after rustls verified the client's
//! certificate chain to the client CA (`WebPkiClientVerifier`, client authentication
//! mandatory); the client id is then read from the verified end-entity certificate. A thin
//! wrapper around the verifier decides nothing: when it refuses a certificate, it logs whose
//! (subject), why, and the validity in JST, and drops the UNIX seconds rustls puts in the
//! expiry errors (the TLS alert sent is the same).

use std::path::Path;
use std::sync::Arc;

use nayose_proto::jst;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tracing::warn;

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

/// The standard client-certificate verifier, explaining its refusals in the log.
#[derive(Debug)]
struct ExplainingVerifier(Arc<dyn ClientCertVerifier>);

/// Why a client certificate was refused, in words, with the dates in JST; and the error to
/// return (the expiry errors without their UNIX seconds).
fn explain(end_entity: &CertificateDer<'_>, e: rustls::Error) -> (String, rustls::Error) {
    let cert = nayose_pki::certificate_summary(end_entity.as_ref()).ok();
    let whose = match &cert {
        Some(c) => format!(
            "{}, valid {} to {}",
            c.subject,
            jst::datetime(c.not_before),
            jst::datetime(c.not_after)
        ),
        None => "unreadable subject".to_owned(),
    };
    let (why, e) = match (e, &cert) {
        (
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            ),
            Some(c),
        ) => (
            format!("it expired on {}", jst::datetime(c.not_after)),
            rustls::Error::InvalidCertificate(CertificateError::Expired),
        ),
        (
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
            ),
            Some(c),
        ) => (
            format!("it is not valid before {}", jst::datetime(c.not_before)),
            rustls::Error::InvalidCertificate(CertificateError::NotValidYet),
        ),
        (rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer), _) => (
            "it was not issued by the client CA (client_ca)".to_owned(),
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        ),
        (e, _) => (e.to_string(), e),
    };
    (format!("refused a client certificate ({whose}): {why}"), e)
}

impl ClientCertVerifier for ExplainingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .verify_client_cert(end_entity, intermediates, now)
            .map_err(|e| {
                let (message, e) = explain(end_entity, e);
                warn!("{message}");
                e
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
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
        .with_client_cert_verifier(Arc::new(ExplainingVerifier(verifier)))
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

    #[test]
    fn a_refused_client_certificate_is_explained_in_jst_without_unix_seconds() {
        let ca = nayose_pki::generate_ca("test CA").unwrap();
        let old = nayose_pki::issue_client_cert_valid(&ca, "clinic-7", (2020, 1, 1), (2021, 1, 1))
            .unwrap();
        let der = CertificateDer::from_pem_slice(old.cert_pem.as_bytes()).unwrap();
        let err = rustls::Error::InvalidCertificate(CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_795_921_200)),
            not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_609_459_200)),
        });
        let (message, e) = explain(&der, err);
        assert_eq!(
            message,
            "refused a client certificate (O=nayose development PKI, CN=clinic-7, valid \
             2020-01-01 09:00 JST to 2021-01-01 09:00 JST): it expired on 2021-01-01 09:00 JST"
        );
        assert!(!e.to_string().contains("1609459200"), "{e}");
        assert_eq!(
            e,
            rustls::Error::InvalidCertificate(CertificateError::Expired)
        );
    }
}
