//! Certificate revocation lists: made by the management body with the client CA's key, read by
//! the server (`client_crl`) to refuse revoked client certificates.

use std::path::Path;

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use time::{Duration, OffsetDateTime};

use crate::issue::{Issued, ca_issuer};
use crate::{PkiError, serial_hex};

/// One revoked certificate: its serial number and when it was revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The certificate's serial number (big-endian integer bytes, no leading zero byte).
    pub serial: Vec<u8>,
    /// When it was revoked, seconds since the UNIX epoch (UTC).
    pub revoked_at: i64,
}

fn datetime(unix: i64, what: &str) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|e| PkiError::BadCrl {
        path: "<memory>".into(),
        reason: format!("{what} {unix} is out of range: {e}"),
    })
}

/// A CRL signed by `ca` listing `revoked`, issued at `now` (UNIX seconds) and announcing its
/// next update `valid_days` later; its CRL number is `now`, so later CRLs have larger numbers.
/// Returns the CRL as PEM (`X509 CRL`).
pub fn make_crl(
    ca: &Issued,
    revoked: &[Revocation],
    now: i64,
    valid_days: u32,
) -> Result<String, PkiError> {
    let this_update = datetime(now, "the issue time")?;
    let params = CertificateRevocationListParams {
        this_update,
        next_update: this_update + Duration::days(i64::from(valid_days.max(1))),
        crl_number: SerialNumber::from(u64::try_from(now).unwrap_or(0)),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|r| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&r.serial),
                    revocation_time: datetime(r.revoked_at, "the revocation time")?,
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect::<Result<_, PkiError>>()?,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    Ok(params.signed_by(&ca_issuer(ca)?)?.pem()?)
}

/// What a CRL says: for messages and checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlSummary {
    /// The issuing CA's subject.
    pub issuer: String,
    /// When it was issued, UNIX seconds.
    pub this_update: i64,
    /// When the next one is due, UNIX seconds (if stated).
    pub next_update: Option<i64>,
    /// The revoked serials, lower-case hex as [`serial_hex`] writes them.
    pub revoked: Vec<String>,
}

fn bad(path: &Path, reason: impl Into<String>) -> PkiError {
    PkiError::BadCrl {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads a DER CRL (signature not checked: see [`verify_crl_issuer`]). `path` names it in
/// errors.
pub fn crl_summary(der: &[u8], path: &Path) -> Result<CrlSummary, PkiError> {
    let (_, crl) = x509_parser::parse_x509_crl(der)
        .map_err(|e| bad(path, format!("not a valid X.509 CRL: {e}")))?;
    Ok(CrlSummary {
        issuer: crl.issuer().to_string(),
        this_update: crl.last_update().timestamp(),
        next_update: crl.next_update().map(|t| t.timestamp()),
        revoked: crl
            .iter_revoked_certificates()
            .map(|r| serial_hex(r.raw_serial()))
            .collect(),
    })
}

/// Whether the DER CRL was issued and signed by the DER CA certificate `ca_der`: same name,
/// and the signature verifies with the CA's public key.
pub fn verify_crl_issuer(crl_der: &[u8], ca_der: &[u8]) -> bool {
    let (Ok((_, crl)), Ok((_, ca))) = (
        x509_parser::parse_x509_crl(crl_der),
        x509_parser::parse_x509_certificate(ca_der),
    ) else {
        return false;
    };
    crl.issuer().as_raw() == ca.subject().as_raw() && crl.verify_signature(ca.public_key()).is_ok()
}
