//! TLS for the QUIC endpoint: rustls with the aws-lc-rs provider, TLS 1.3 only, ALPN
//! `nayose/2`, mutual TLS against the configured client CA, 0-RTT disabled, and no session
//! resumption (wire.md §2.1: no tickets are issued and no session is cached, so every connection
//! is a full handshake that verifies the client certificate again).
//!
//! Key exchange (wire.md §2.1, security.md §6.8): the post-quantum hybrid X25519MLKEM768 (named
//! group 0x11EC) is listed first and, unless `allow_classical_key_exchange` is set, is the only
//! group the server accepts, so a client that offers only classical groups fails the handshake
//! (rustls: no key exchange groups in common, TLS alert `handshake_failure`) and the log says so.
//! With the allowance, X25519, P-256 and P-384 are accepted after it, and every handshake that
//! uses one of them is logged as a warning. The negotiated group is not observable
//! through quinn, hence this design: what is not offered cannot be negotiated.
//!
//! Invariant: a connection reaches the service only after rustls verified the client's
//! certificate chain to the client CA (`WebPkiClientVerifier`, client authentication
//! mandatory), checked it against the client CRLs (`client_crl`, if any: every certificate of
//! the chain below the CA, an unknown revocation status refused), and the end-entity
//! certificate carries the `clientAuth` extended key usage (WebPKI alone accepts a certificate
//! without any extended key usage); the client id is then read from the verified end-entity
//! certificate. A thin wrapper around the verifier adds the `clientAuth` requirement and
//! otherwise decides nothing: when it refuses a certificate, it logs whose (subject, serial),
//! why (revoked: in which CRL), and the validity in JST, and drops the UNIX seconds rustls puts
//! in the expiry errors (the TLS alert sent is the same).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nayose_proto::jst;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::aws_lc_rs::{self, kx_group};
use rustls::crypto::{CompletedKeyExchange, CryptoProvider, SupportedKxGroup};
use rustls::ffdhe_groups::FfdheGroup;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, NamedGroup, ProtocolVersion,
    SignatureScheme,
};
use tracing::{info, warn};

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

/// The standard client-certificate verifier plus the `clientAuth` requirement, explaining its
/// refusals in the log.
#[derive(Debug)]
struct ExplainingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    /// The client CRLs, for naming the one that lists a revoked certificate.
    crls: Vec<LoadedCrl>,
}

/// A client CRL as read at start.
#[derive(Debug)]
struct LoadedCrl {
    path: PathBuf,
    summary: nayose_pki::CrlSummary,
}

/// Why a client certificate was refused, in words, with the dates in JST; and the error to
/// return (the expiry errors without their UNIX seconds).
fn explain(
    end_entity: &CertificateDer<'_>,
    e: rustls::Error,
    crls: &[LoadedCrl],
) -> (String, rustls::Error) {
    let cert = nayose_pki::certificate_summary(end_entity.as_ref()).ok();
    let whose = match &cert {
        Some(c) => format!(
            "{}, serial {}, valid {} to {}",
            c.subject,
            c.serial,
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
        (rustls::Error::InvalidCertificate(CertificateError::Revoked), c) => {
            let listed_in = c.as_ref().and_then(|c| {
                crls.iter()
                    .find(|l| l.summary.revoked.contains(&c.serial))
                    .map(|l| l.path.display().to_string())
            });
            (
                match listed_in {
                    Some(f) => format!("it is revoked (listed in the CRL {f}, client_crl)"),
                    None => "it is revoked (listed in a CRL of client_crl)".to_owned(),
                },
                rustls::Error::InvalidCertificate(CertificateError::Revoked),
            )
        }
        (rustls::Error::InvalidCertificate(CertificateError::UnknownRevocationStatus), _) => (
            "its revocation status is unknown: no CRL in client_crl is from the CA that issued \
             it (or one in its chain); add that CA's CRL"
                .to_owned(),
            rustls::Error::InvalidCertificate(CertificateError::UnknownRevocationStatus),
        ),
        (
            rustls::Error::InvalidCertificate(
                CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. },
            ),
            _,
        ) => (
            "it is not a client certificate: it lacks the clientAuth extended key usage".to_owned(),
            rustls::Error::InvalidCertificate(CertificateError::InvalidPurpose),
        ),
        (e, _) => (e.to_string(), e),
    };
    (format!("refused a client certificate ({whose}): {why}"), e)
}

impl ClientCertVerifier for ExplainingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
            .and_then(|ok| {
                // WebPKI accepts an end-entity certificate without extended key usages; nayose
                // requires clientAuth (protocol-spec/wire.md §2).
                nayose_pki::require_purpose(end_entity.as_ref(), nayose_pki::Purpose::ClientAuth)
                    .map(|()| ok)
                    .map_err(|_| {
                        rustls::Error::InvalidCertificate(CertificateError::InvalidPurpose)
                    })
            })
            .map_err(|e| {
                let (message, e) = explain(end_entity, e, &self.crls);
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
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Reads the CRLs of one file: PEM (`X509 CRL` blocks) or a single DER CRL.
fn load_crl_file(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, ServerError> {
    let bytes = std::fs::read(path).map_err(ServerError::io("cannot read", path))?;
    let crls = if bytes.starts_with(b"-----BEGIN") || bytes.windows(10).any(|w| w == b"-----BEGIN")
    {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_err(path, format!("not a valid PEM CRL file: {e}")))?
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    };
    if crls.is_empty() {
        return Err(tls_err(path, "holds no X509 CRL block"));
    }
    Ok(crls)
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Reads and checks the client CRLs: each is readable and signed by a CA of `client_ca`, and
/// every CA of `client_ca` has one (otherwise its certificates would all be refused as of
/// unknown revocation status). A CRL past its nextUpdate is used, with a warning.
fn load_crls(
    paths: &[PathBuf],
    client_ca: &Path,
    cas: &[CertificateDer<'static>],
) -> Result<(Vec<CertificateRevocationListDer<'static>>, Vec<LoadedCrl>), ServerError> {
    let mut ders = Vec::new();
    let mut loaded = Vec::new();
    let mut covered = vec![false; cas.len()];
    for path in paths {
        for der in load_crl_file(path)? {
            let summary = nayose_pki::crl_summary(der.as_ref(), path)
                .map_err(|e| tls_err(path, e.to_string()))?;
            let Some(ca) = cas
                .iter()
                .position(|ca| nayose_pki::verify_crl_issuer(der.as_ref(), ca.as_ref()))
            else {
                return Err(tls_err(
                    path,
                    format!(
                        "the CRL of {} is not signed by a CA of client_ca ({}): it cannot revoke \
                         any client certificate; give the CRL of the client CA",
                        summary.issuer,
                        client_ca.display()
                    ),
                ));
            };
            covered[ca] = true;
            if let Some(next) = summary.next_update
                && next < now_unix()
            {
                warn!(
                    crl = %path.display(),
                    "the CRL of {} was due for renewal on {} (nextUpdate); it is still used: ask \
                     the management body for a current one",
                    summary.issuer,
                    jst::datetime(next)
                );
            }
            info!(
                crl = %path.display(),
                "client CRL of {} issued {}: {} revoked certificate(s)",
                summary.issuer,
                jst::datetime(summary.this_update),
                summary.revoked.len()
            );
            ders.push(der);
            loaded.push(LoadedCrl {
                path: path.clone(),
                summary,
            });
        }
    }
    if !paths.is_empty()
        && let Some(i) = covered.iter().position(|c| !c)
    {
        let subject = nayose_pki::certificate_summary(cas[i].as_ref())
            .map(|s| s.subject)
            .unwrap_or_else(|_| format!("certificate {} of the file", i + 1));
        return Err(tls_err(
            client_ca,
            format!(
                "client_crl has no CRL of the client CA {subject}: every certificate it issued \
                 would be refused (unknown revocation status); add its CRL to client_crl"
            ),
        ));
    }
    Ok((ders, loaded))
}

/// The post-quantum hybrid key exchange nayose offers first and, by default, requires: X25519
/// combined with ML-KEM-768 (TLS named group 0x11EC, draft-ietf-tls-ecdhe-mlkem).
pub const POST_QUANTUM_KEY_EXCHANGE: &str = "X25519MLKEM768";

/// The classical groups accepted after X25519MLKEM768 when the operator allows classical key
/// exchange, each logging the handshakes it completes.
static CLASSICAL: [Classical; 3] = [
    Classical {
        inner: kx_group::X25519,
        name: "X25519",
    },
    Classical {
        inner: kx_group::SECP256R1,
        name: "secp256r1 (P-256)",
    },
    Classical {
        inner: kx_group::SECP384R1,
        name: "secp384r1 (P-384)",
    },
];

/// The key exchange groups of the server, in order of preference: X25519MLKEM768 alone, or,
/// with `allow_classical_key_exchange`, followed by X25519, P-256 and P-384 (each logged when
/// used).
pub(crate) fn key_exchange_groups(allow_classical: bool) -> Vec<&'static dyn SupportedKxGroup> {
    let mut groups: Vec<&'static dyn SupportedKxGroup> = vec![kx_group::X25519MLKEM768];
    if allow_classical {
        groups.extend(CLASSICAL.iter().map(|g| g as &'static dyn SupportedKxGroup));
    }
    groups
}

/// The rustls crypto provider of the server: aws-lc-rs with [`key_exchange_groups`]. Used with
/// `builder_with_provider`; no process-wide default provider is installed.
pub fn tls_crypto_provider(allow_classical_key_exchange: bool) -> CryptoProvider {
    CryptoProvider {
        kx_groups: key_exchange_groups(allow_classical_key_exchange),
        ..aws_lc_rs::default_provider()
    }
}

/// A classical group of aws-lc-rs, accepted only with `allow_classical_key_exchange`; logs
/// every key exchange it does (before the client's certificate is verified, so also for a peer
/// that then fails authentication; the throttle of failing peers bounds those), since such a
/// connection is not protected against a future quantum computer.
#[derive(Debug)]
struct Classical {
    inner: &'static dyn SupportedKxGroup,
    /// For the log.
    name: &'static str,
}

impl SupportedKxGroup for Classical {
    fn start(&self) -> Result<Box<dyn rustls::crypto::ActiveKeyExchange>, rustls::Error> {
        self.inner.start()
    }

    fn start_and_complete(
        &self,
        peer_pub_key: &[u8],
    ) -> Result<CompletedKeyExchange, rustls::Error> {
        let done = self.inner.start_and_complete(peer_pub_key)?;
        warn!(
            "a TLS handshake uses the classical key exchange {}, not \
             {POST_QUANTUM_KEY_EXCHANGE}: allowed by allow_classical_key_exchange = true, but \
             this connection is not protected against a future quantum computer; upgrade that \
             client",
            self.name
        );
        Ok(done)
    }

    fn ffdhe_group(&self) -> Option<FfdheGroup<'static>> {
        self.inner.ffdhe_group()
    }

    fn name(&self) -> NamedGroup {
        self.inner.name()
    }

    fn fips(&self) -> bool {
        self.inner.fips()
    }

    fn usable_for_version(&self, version: ProtocolVersion) -> bool {
        self.inner.usable_for_version(version)
    }
}

/// The log line for a handshake that failed because the client offered no key exchange this
/// server accepts (rustls' `NoKxGroupsInCommon`, sent as TLS alert `handshake_failure`); `None`
/// for any other failure.
pub(crate) fn key_exchange_refusal(
    e: &quinn::ConnectionError,
    allow_classical: bool,
) -> Option<String> {
    let quinn::ConnectionError::TransportError(t) = e else {
        return None;
    };
    if t.code != quinn::TransportErrorCode::crypto(HANDSHAKE_FAILURE)
        || !t.reason.contains("NoKxGroupsInCommon")
    {
        return None;
    }
    Some(if allow_classical {
        format!(
            "refused a TLS handshake: the client offers no key exchange this server accepts \
             ({POST_QUANTUM_KEY_EXCHANGE}, X25519, P-256 or P-384)"
        )
    } else {
        format!(
            "refused a TLS handshake: the client does not offer the post-quantum key exchange \
             {POST_QUANTUM_KEY_EXCHANGE}, which this server requires (a classical-only client, \
             e.g. an old version); upgrade the client, or set allow_classical_key_exchange = \
             true to accept classical key exchange (X25519, P-256, P-384)"
        )
    })
}

/// TLS alert `handshake_failure` (RFC 8446 §6.2).
const HANDSHAKE_FAILURE: u8 = 40;

/// The rustls server configuration of the endpoint. `client_crl` may be empty (no revocation
/// check). `allow_classical` is `allow_classical_key_exchange` of server.toml.
pub(crate) fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
    client_crl: &[PathBuf],
    allow_classical: bool,
) -> Result<rustls::ServerConfig, ServerError> {
    let provider = Arc::new(tls_crypto_provider(allow_classical));
    let mut roots = rustls::RootCertStore::empty();
    let cas = load_certs(client_ca)?;
    for c in &cas {
        roots
            .add(c.clone())
            .map_err(|e| tls_err(client_ca, format!("not a usable CA certificate: {e}")))?;
    }
    let (crl_ders, crls) = load_crls(client_crl, client_ca, &cas)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crl_ders)
        .build()
        .map_err(|e| {
            let files: Vec<String> = client_crl.iter().map(|p| p.display().to_string()).collect();
            tls_err(
                client_ca,
                format!(
                    "cannot verify clients with it and the CRLs [{}]: {e}",
                    files.join(", ")
                ),
            )
        })?;
    let chain = load_certs(cert)?;
    let key_der = load_key(key)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err(cert, format!("TLS 1.3 unavailable: {e}")))?
        .with_client_cert_verifier(Arc::new(ExplainingVerifier {
            inner: verifier,
            crls,
        }))
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
        let cfg = server_config(&cert, &key, &ca_pem, &[], false).unwrap();
        assert_eq!(cfg.send_tls13_tickets, 0);
        assert_eq!(cfg.max_early_data_size, 0);
        assert!(!cfg.ticketer.enabled());
        assert!(!cfg.session_storage.can_cache());
        assert_eq!(cfg.alpn_protocols, vec![b"nayose/2".to_vec()]);
    }

    #[test]
    fn the_hybrid_comes_first_and_alone_unless_classical_is_allowed() {
        let names = |allow| {
            tls_crypto_provider(allow)
                .kx_groups
                .iter()
                .map(|g| g.name())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(false), vec![NamedGroup::X25519MLKEM768]);
        assert_eq!(
            names(true),
            vec![
                NamedGroup::X25519MLKEM768,
                NamedGroup::X25519,
                NamedGroup::secp256r1,
                NamedGroup::secp384r1
            ]
        );
        assert_eq!(u16::from(NamedGroup::X25519MLKEM768), 0x11EC);
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
        let serial = nayose_pki::certificate_summary(der.as_ref())
            .unwrap()
            .serial;
        let (message, e) = explain(&der, err, &[]);
        assert_eq!(
            message,
            format!(
                "refused a client certificate (O=nayose development PKI, CN=clinic-7, serial \
                 {serial}, valid 2020-01-01 09:00 JST to 2021-01-01 09:00 JST): it expired on \
                 2021-01-01 09:00 JST"
            )
        );
        assert!(!e.to_string().contains("1609459200"), "{e}");
        assert_eq!(
            e,
            rustls::Error::InvalidCertificate(CertificateError::Expired)
        );
    }
}
