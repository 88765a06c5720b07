//! TLS 1.3 client configuration for QUIC: the server is verified against the configured CA and
//! server name, the client presents its certificate (mutual TLS), ALPN is `nayose/2`.
//!
//! The server's certificate is checked by rustls' standard WebPKI verifier against the server
//! CA (`ca`), and must carry the `serverAuth` extended key usage (WebPKI alone accepts a
//! certificate without extended key usages; a certificate of the client CA or one issued for
//! another role is refused). A thin wrapper adds that requirement and remembers, in words, why
//! it refused a certificate (whose certificate, why, dates in JST) for the error message. A client certificate that is expired or not yet valid is refused here, before any
//! network work.
//!
//! Key exchange (wire.md §2.1, security.md §6.8): the client offers the post-quantum hybrid
//! X25519MLKEM768 (named group 0x11EC) first and, unless `allow_classical_key_exchange` is set,
//! nothing else, so a server that offers only classical groups cannot complete the handshake
//! (it answers with the TLS alert `handshake_failure`, which [`crate::net`] reports as
//! [`ClientError::KeyExchangeRefused`]). With the allowance, X25519, P-256 and P-384 follow it.
//!
//! Invariants: only the aws-lc-rs provider and TLS 1.3 are used, with the key exchange groups of
//! [`key_exchange_groups`]; no process-wide default provider is installed; the private key is
//! read once and handed to rustls (never logged). The client does not decide its entity: the
//! server derives it from the certificate and names it in Info (wire.md §2.3); the
//! certificate's name here (its CommonName, or its subject when that is not an id) is only for
//! messages.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nayose_pki::CertSummary;
use nayose_proto::jst;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::aws_lc_rs::{self, kx_group};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::config::Resolved;
use crate::error::ClientError;

/// The client's TLS identity and trust anchors, loaded and checked.
pub(crate) struct Credentials {
    pub(crate) quic: quinn::ClientConfig,
    pub(crate) peer: Arc<PeerInfo>,
}

/// What messages about a refused handshake need: whose certificates, from which files, and
/// why this client refused the server's certificate (if it did).
#[derive(Debug)]
pub(crate) struct PeerInfo {
    /// The certificate's name: its CommonName, or its subject when that is not an id.
    pub(crate) client_id: String,
    /// `HOST:PORT`.
    pub(crate) server: String,
    /// The client certificate's file.
    pub(crate) cert_file: PathBuf,
    /// The client certificate's subject and validity.
    pub(crate) cert: CertSummary,
    /// Why the server's certificate was refused, in words, set by the verifier.
    pub(crate) server_refusal: Arc<Mutex<Option<String>>>,
    /// `allow_classical_key_exchange`: whether classical groups are offered after
    /// X25519MLKEM768.
    pub(crate) allow_classical_key_exchange: bool,
}

impl PeerInfo {
    /// `client.pem (O=…, CN=research-01, valid 2025-01-01 09:00 JST to 2026-01-01 09:00 JST)`.
    pub(crate) fn client_cert(&self) -> String {
        format!(
            "{} ({}, {})",
            self.cert_file.display(),
            self.cert.subject,
            validity(&self.cert)
        )
    }

    /// Why this client refused the server's certificate, if it did.
    pub(crate) fn server_refusal(&self) -> Option<String> {
        self.server_refusal.lock().ok().and_then(|r| r.clone())
    }
}

/// The post-quantum hybrid key exchange nayose offers first and, by default, alone: X25519
/// combined with ML-KEM-768 (TLS named group 0x11EC, draft-ietf-tls-ecdhe-mlkem).
pub const POST_QUANTUM_KEY_EXCHANGE: &str = "X25519MLKEM768";

/// The key exchange groups this client offers, in order of preference: X25519MLKEM768 alone,
/// or, with `allow_classical_key_exchange`, followed by X25519, P-256 and P-384.
pub(crate) fn key_exchange_groups(allow_classical: bool) -> Vec<&'static dyn SupportedKxGroup> {
    let mut groups = vec![kx_group::X25519MLKEM768];
    if allow_classical {
        groups.extend([kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1]);
    }
    groups
}

/// The rustls crypto provider of the client: aws-lc-rs with [`key_exchange_groups`], for
/// `builder_with_provider` (no process-wide default provider is installed).
pub fn tls_crypto_provider(allow_classical_key_exchange: bool) -> CryptoProvider {
    CryptoProvider {
        kx_groups: key_exchange_groups(allow_classical_key_exchange),
        ..aws_lc_rs::default_provider()
    }
}

/// `valid 2025-01-01 09:00 JST to 2026-01-01 09:00 JST`.
fn validity(c: &CertSummary) -> String {
    format!(
        "valid {} to {}",
        jst::datetime(c.not_before),
        jst::datetime(c.not_after)
    )
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Refuses, before any network work, a client certificate that is expired or not yet valid:
/// the server would refuse it too, with less to go on.
fn check_validity(path: &Path, c: &CertSummary, now: i64) -> Result<(), ClientError> {
    let whose = format!("this client's certificate ({})", c.subject);
    if now > c.not_after {
        return Err(cred_err(
            path,
            format!(
                "{whose} expired on {} ({}); ask the management body for a new certificate",
                jst::datetime(c.not_after),
                validity(c)
            ),
        ));
    }
    if now < c.not_before {
        return Err(cred_err(
            path,
            format!(
                "{whose} is not valid before {} ({}); check this computer's clock, or wait",
                jst::datetime(c.not_before),
                validity(c)
            ),
        ));
    }
    Ok(())
}

/// The server's certificate refused by rustls, in words: whose certificate, why, dates in JST
/// (rustls' own text gives UNIX seconds).
fn describe_refusal(
    end_entity: &CertificateDer<'_>,
    error: &rustls::Error,
    server_name: &ServerName<'_>,
    ca_file: &Path,
) -> String {
    let cert = nayose_pki::certificate_summary(end_entity.as_ref());
    let whose = match &cert {
        Ok(c) => format!("the server's certificate ({}, {})", c.subject, validity(c)),
        Err(_) => "the server's certificate".to_owned(),
    };
    let why = match (error, &cert) {
        (
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            ),
            Ok(c),
        ) => format!("it expired on {}", jst::datetime(c.not_after)),
        (
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
            ),
            Ok(c),
        ) => format!("it is not valid before {}", jst::datetime(c.not_before)),
        (rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer), _) => format!(
            "it was not issued by the server CA of --ca ({})",
            ca_file.display()
        ),
        (
            rustls::Error::InvalidCertificate(
                CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. },
            ),
            _,
        ) => {
            "it is not a server certificate: it lacks the serverAuth extended key usage".to_owned()
        }
        (
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ),
            _,
        ) => format!(
            "it is not valid for the name {:?} (--server-name)",
            server_name.to_str()
        ),
        (e, _) => e.to_string(),
    };
    format!("this client refused {whose}: {why}")
}

/// The standard WebPKI verifier, remembering in words why it refused a certificate.
#[derive(Debug)]
struct ExplainingVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    ca_file: PathBuf,
    refusal: Arc<Mutex<Option<String>>>,
}

impl ServerCertVerifier for ExplainingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .and_then(|ok| {
                // WebPKI accepts a certificate without extended key usages; nayose requires
                // serverAuth (protocol-spec/wire.md §2).
                nayose_pki::require_purpose(end_entity.as_ref(), nayose_pki::Purpose::ServerAuth)
                    .map(|()| ok)
                    .map_err(|_| {
                        rustls::Error::InvalidCertificate(CertificateError::InvalidPurpose)
                    })
            })
            .inspect_err(|e| {
                if let Ok(mut r) = self.refusal.lock() {
                    *r = Some(describe_refusal(end_entity, e, server_name, &self.ca_file));
                }
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
    let provider = Arc::new(tls_crypto_provider(cfg.allow_classical_key_exchange));
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs(&cfg.ca)? {
        roots
            .add(ca)
            .map_err(|e| cred_err(&cfg.ca, format!("unusable CA certificate: {e}")))?;
    }
    let chain = certs(&cfg.cert)?;
    let summary = nayose_pki::certificate_summary(chain[0].as_ref())
        .map_err(|e| cred_err(&cfg.cert, e.to_string()))?;
    check_validity(&cfg.cert, &summary, now_unix())?;
    let client_id =
        nayose_pki::client_id_of(chain[0].as_ref()).unwrap_or_else(|_| summary.subject.clone());
    let key_pem = zeroize::Zeroizing::new(read(&cfg.key)?);
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| cred_err(&cfg.key, format!("no usable PEM private key: {e}")))?;
    let refusal = Arc::new(Mutex::new(None));
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| cred_err(&cfg.ca, format!("unusable CA certificate: {e}")))?;
    let verifier = Arc::new(ExplainingVerifier {
        inner,
        ca_file: cfg.ca.clone(),
        refusal: refusal.clone(),
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| cred_err(&cfg.cert, format!("TLS setup failed: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
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
    let peer = Arc::new(PeerInfo {
        client_id,
        server: cfg.server.clone(),
        cert_file: cfg.cert.clone(),
        cert: summary,
        server_refusal: refusal,
        allow_classical_key_exchange: cfg.allow_classical_key_exchange,
    });
    Ok(Credentials { quic, peer })
}
