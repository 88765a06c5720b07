//! nayose's PKI: what identifies a client certificate to the accredited list, the management
//! body's tools (sign an entity's certificate signing request, revoke a certificate and publish
//! a CRL), and a development PKI for trials.
//!
//! - The accredited list names entities and, per entity, its certificates by SPKI fingerprint
//!   or by issuer + subject ([`cert_identity`], [`issued_by`]; `nayose pki fingerprint`). The
//!   subject CommonName ([`client_id_of`], 1 to 64 bytes of `A-Z a-z 0-9 . _ -`) is what `pki
//!   request` and `pki sign` put in a certificate, and names the entity only for the earlier
//!   `[[client]]` entries of `clients.toml`.
//! - Roles are kept apart: a **server CA** issues only server certificates (extended key usage
//!   `serverAuth`), a **client CA** only client certificates (`clientAuth`). Clients trust only
//!   the server CA, the server only the client CA, and each side also requires the other's
//!   certificate to carry its extended key usage ([`require_purpose`]).
//! - End-entity certificates are valid for [`CERT_VALIDITY_DAYS`] days, CAs for
//!   [`CA_VALIDITY_DAYS`]; serial numbers are 16 random bytes, so a CRL names exactly one
//!   certificate.
//! - The real workflow ([`dir::request`] → [`dir::sign`] → [`dir::revoke`]): an entity makes its
//!   key and a CSR on its own machine, the management body checks the CSR and issues a client
//!   certificate with the client CA, and revokes it later by publishing a CRL that the server
//!   is given (`client_crl`). No private key ever leaves the machine that made it.
//! - [`dir::init`] and [`dir::issue_client`] make a development PKI in one directory; private
//!   keys are created owner-readable only (0600). ECDSA P-256 keys, generated with ring through
//!   rcgen.
//!
//! The development PKI is for trials: in a real deployment the management body keeps its CA
//! keys offline or in an HSM and runs its own issuance process (see the README).

mod crl;
mod csr;
pub mod dir;
mod identity;
mod issue;

pub use crl::{CrlSummary, Revocation, crl_summary, make_crl, verify_crl_issuer};
pub use csr::{Request, SignedRequest, make_request, sign_request};
pub use dir::{init, issue_client};
pub use identity::{
    CertIdentity, cert_identity, issued_by, normalize_fingerprint, spki_fingerprint,
};
pub use issue::{
    CA_VALIDITY_DAYS, CERT_VALIDITY_DAYS, Issued, Purpose, generate_ca, issue_cert_with_purposes,
    issue_client_cert, issue_client_cert_valid, issue_server_cert, require_purpose,
};

use std::path::PathBuf;

use thiserror::Error;

/// Errors of the PKI tools and of reading a client id.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PkiError {
    /// Certificate, CSR or CRL generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file that would be overwritten already exists; refusing to overwrite keys.
    #[error("{0} already exists; refusing to overwrite it (remove it or choose another path)")]
    Exists(PathBuf),
    /// A certificate is not valid DER X.509.
    #[error("not a valid X.509 certificate: {0}")]
    BadCertificate(String),
    /// The certificate carries no usable client id.
    #[error("client certificate has {0}")]
    NoClientId(String),
    /// A proposed client id breaks the id rule.
    #[error("invalid client id {0:?}: use 1 to 64 characters from A-Z a-z 0-9 . _ -")]
    BadClientId(String),
    /// A certificate lacks the extended key usage of its role.
    #[error(
        "the certificate ({subject}) does not carry the {purpose} extended key usage: it was not \
         issued for this role"
    )]
    WrongPurpose {
        /// The certificate's subject.
        subject: String,
        /// The missing purpose, `serverAuth` or `clientAuth`.
        purpose: &'static str,
    },
    /// A certificate signing request was refused.
    #[error("{path}: {reason}")]
    BadRequest {
        /// The CSR file (or `<memory>`).
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// A CRL is unreadable or not from the expected CA.
    #[error("{path}: {reason}")]
    BadCrl {
        /// The CRL file (or `<memory>`).
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// The revocation list of a CA directory is malformed.
    #[error("{path}, line {line}: {reason}")]
    BadRevocationList {
        /// The `revoked.txt` file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Whether `id` satisfies the client-id rule: 1 to 64 bytes of `A-Z a-z 0-9 . _ -`.
pub fn is_valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The client id carried by a DER certificate: its subject CommonName, which must be unique and
/// satisfy [`is_valid_client_id`]. Call only on a certificate whose chain TLS has verified.
pub fn client_id_of(cert_der: &[u8]) -> Result<String, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    id_of_name(cert.subject())
}

/// The client id of a subject name: its one CommonName, a UTF8String or PrintableString that
/// satisfies [`is_valid_client_id`].
pub(crate) fn id_of_name(name: &x509_parser::x509::X509Name<'_>) -> Result<String, PkiError> {
    let mut cns = name.iter_common_name();
    let cn = cns
        .next()
        .ok_or_else(|| PkiError::NoClientId("no subject CommonName".into()))?;
    if cns.next().is_some() {
        return Err(PkiError::NoClientId(
            "more than one subject CommonName".into(),
        ));
    }
    // wire.md §2: the CommonName is a UTF8String or a PrintableString; other string types
    // (which x509-parser would also read) are refused so every server applies one rule.
    let tag = cn.attr_value().tag();
    if tag != x509_parser::der_parser::asn1_rs::Tag::Utf8String
        && tag != x509_parser::der_parser::asn1_rs::Tag::PrintableString
    {
        return Err(PkiError::NoClientId(
            "a CommonName that is neither a UTF8String nor a PrintableString".into(),
        ));
    }
    let id = cn
        .as_str()
        .map_err(|_| PkiError::NoClientId("a CommonName that is not a string".into()))?;
    if !is_valid_client_id(id) {
        return Err(PkiError::BadClientId(id.to_string()));
    }
    Ok(id.to_string())
}

/// Who a certificate names and when it is valid: what a person needs to recognise it in an
/// error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// The subject, e.g. `O=nayose development PKI, CN=research-01`.
    pub subject: String,
    /// The serial number, lower-case hex without leading zero bytes (as CRLs list it).
    pub serial: String,
    /// Start of validity, seconds since the UNIX epoch (UTC).
    pub not_before: i64,
    /// End of validity, seconds since the UNIX epoch (UTC).
    pub not_after: i64,
}

/// The subject, serial and validity of a DER certificate (not verified: for messages only).
pub fn certificate_summary(cert_der: &[u8]) -> Result<CertSummary, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    let v = cert.validity();
    Ok(CertSummary {
        subject: cert.subject().to_string(),
        serial: serial_hex(cert.raw_serial()),
        not_before: v.not_before.timestamp(),
        not_after: v.not_after.timestamp(),
    })
}

/// A serial number's DER integer bytes as lower-case hex, without leading zero bytes (`0` for
/// zero).
pub fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    if start == raw.len() {
        return "0".to_owned();
    }
    raw[start..].iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a serial written by [`serial_hex`] (colons and upper case accepted).
pub fn parse_serial_hex(text: &str) -> Option<Vec<u8>> {
    let digits: String = text.chars().filter(|&c| c != ':').collect();
    if digits.is_empty() || digits.len() > 42 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let digits = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits
    };
    let bytes: Option<Vec<u8>> = (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
        .collect();
    let bytes = bytes?;
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    Some(bytes[start..].to_vec())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::fs;
    use std::path::Path;

    use super::*;

    fn der_of(pem: &str) -> Vec<u8> {
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        p.contents
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn client_certificates_carry_their_id() {
        let ca = generate_ca("test CA").unwrap();
        let c = issue_client_cert(&ca, "research-db.01").unwrap();
        assert_eq!(
            client_id_of(&der_of(&c.cert_pem)).unwrap(),
            "research-db.01"
        );
        let s = issue_server_cert(&ca, "localhost").unwrap();
        assert_eq!(client_id_of(&der_of(&s.cert_pem)).unwrap(), "localhost");
        assert!(matches!(
            issue_client_cert(&ca, "bad id!"),
            Err(PkiError::BadClientId(_))
        ));
        assert!(matches!(
            client_id_of(b"not a certificate"),
            Err(PkiError::BadCertificate(_))
        ));
    }

    #[test]
    fn certificates_carry_their_role_a_year_of_validity_and_random_serials() {
        let ca = generate_ca("test CA").unwrap();
        let ca_s = certificate_summary(&der_of(&ca.cert_pem)).unwrap();
        let years = (ca_s.not_after - ca_s.not_before) as f64 / (365.25 * 86400.0);
        assert!((4.9..5.1).contains(&years), "CA valid {years} years");
        let c = issue_client_cert(&ca, "alpha").unwrap();
        let s = issue_server_cert(&ca, "localhost").unwrap();
        for (cert, good, wrong) in [
            (&c, Purpose::ClientAuth, Purpose::ServerAuth),
            (&s, Purpose::ServerAuth, Purpose::ClientAuth),
        ] {
            let der = der_of(&cert.cert_pem);
            let sum = certificate_summary(&der).unwrap();
            let days = (sum.not_after - sum.not_before) / 86400;
            assert!((365..=366).contains(&days), "{days} days");
            assert!(sum.not_before <= now() && now() < sum.not_after);
            require_purpose(&der, good).unwrap();
            let e = require_purpose(&der, wrong).unwrap_err();
            assert!(e.to_string().contains(wrong.name()), "{e}");
            let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
            let ku = x.key_usage().unwrap().unwrap().value;
            assert!(ku.digital_signature() && !ku.key_cert_sign());
        }
        let none = issue_cert_with_purposes(&ca, "x", None, &[]).unwrap();
        assert!(require_purpose(&der_of(&none.cert_pem), Purpose::ClientAuth).is_err());
        let other = issue_client_cert(&ca, "alpha").unwrap();
        assert_ne!(
            certificate_summary(&der_of(&c.cert_pem)).unwrap().serial,
            certificate_summary(&der_of(&other.cert_pem))
                .unwrap()
                .serial
        );
    }

    #[test]
    fn serials_round_trip_through_hex() {
        assert_eq!(serial_hex(&[0, 0, 0x1a, 0x02]), "1a02");
        assert_eq!(serial_hex(&[0]), "0");
        assert_eq!(parse_serial_hex("1A:02").unwrap(), vec![0x1a, 0x02]);
        assert_eq!(parse_serial_hex("a02").unwrap(), vec![0x0a, 0x02]);
        assert!(parse_serial_hex("xyz").is_none());
        assert!(parse_serial_hex("").is_none());
    }

    /// PEM of `der` under `label` (base64, 64 columns).
    fn pem_of(label: &str, der: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut b64 = String::new();
        for chunk in der.chunks(3) {
            let v = (u32::from(chunk[0]) << 16)
                | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
                | u32::from(*chunk.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= chunk.len() {
                    b64.push(T[((v >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    b64.push('=');
                }
            }
        }
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn a_csr_is_checked_and_signed_for_its_own_key() {
        let ca = generate_ca("client CA").unwrap();
        let r = make_request("clinic-7").unwrap();
        let p = Path::new("clinic-7.csr");
        let signed = sign_request(&ca, &r.csr_pem, Some("clinic-7"), p).unwrap();
        assert_eq!(signed.id, "clinic-7");
        let der = der_of(&signed.cert_pem);
        assert_eq!(client_id_of(&der).unwrap(), "clinic-7");
        require_purpose(&der, Purpose::ClientAuth).unwrap();
        // The certificate is for the request's key.
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let key = rcgen::KeyPair::from_pem(&r.key_pem).unwrap();
        assert_eq!(
            cert.public_key().raw,
            rcgen::PublicKeyData::subject_public_key_info(&key).as_slice()
        );

        // Another id than expected.
        let e = sign_request(&ca, &r.csr_pem, Some("clinic-8"), p).unwrap_err();
        assert!(e.to_string().contains("not \"clinic-8\""), "{e}");
        // An altered request: its subject renamed after signing.
        let (_, pem) = x509_parser::pem::parse_x509_pem(r.csr_pem.as_bytes()).unwrap();
        let mut bad = pem.contents.clone();
        let at = bad.windows(8).position(|w| w == b"clinic-7").unwrap();
        bad[at + 7] = b'8';
        let e = sign_request(&ca, &pem_of("CERTIFICATE REQUEST", &bad), None, p).unwrap_err();
        assert!(e.to_string().contains("signature does not verify"), "{e}");
        // Not a CSR at all.
        let e = sign_request(&ca, "hello", None, p).unwrap_err();
        assert!(e.to_string().contains("clinic-7.csr"), "{e}");
        assert!(matches!(
            make_request("bad id"),
            Err(PkiError::BadClientId(_))
        ));
    }

    #[test]
    fn a_crl_lists_revoked_serials_and_is_signed_by_its_ca() {
        let ca = generate_ca("client CA").unwrap();
        let other = generate_ca("other CA").unwrap();
        let c = issue_client_cert(&ca, "alpha").unwrap();
        let serial = certificate_summary(&der_of(&c.cert_pem)).unwrap().serial;
        let pem = make_crl(
            &ca,
            &[Revocation {
                serial: parse_serial_hex(&serial).unwrap(),
                revoked_at: now(),
            }],
            now(),
            30,
        )
        .unwrap();
        assert!(pem.starts_with("-----BEGIN X509 CRL-----"), "{pem}");
        let der = der_of(&pem);
        let s = crl_summary(&der, Path::new("crl.pem")).unwrap();
        assert_eq!(s.revoked, vec![serial]);
        assert!(s.next_update.unwrap() - s.this_update >= 30 * 86400 - 1);
        assert!(verify_crl_issuer(&der, &der_of(&ca.cert_pem)));
        assert!(!verify_crl_issuer(&der, &der_of(&other.cert_pem)));
    }

    #[test]
    fn init_and_issue_write_owner_only_keys_and_refuse_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), "localhost").unwrap();
        let (cert, key) = issue_client(dir.path(), "alpha").unwrap();
        assert!(cert.exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for k in [
                key,
                dir.path().join("server-ca.key"),
                dir.path().join("client-ca.key"),
                dir.path().join("server.key"),
            ] {
                assert_eq!(
                    fs::metadata(&k).unwrap().permissions().mode() & 0o777,
                    0o600,
                    "{k:?}"
                );
            }
        }
        assert!(matches!(
            init(dir.path(), "localhost"),
            Err(PkiError::Exists(_))
        ));
        assert!(matches!(
            issue_client(dir.path(), "alpha"),
            Err(PkiError::Exists(_))
        ));
        // Two CAs: the server's certificate is from the server CA, the client's from the
        // client CA, and the two CAs differ.
        let read = |f: &str| der_of(&fs::read_to_string(dir.path().join(f)).unwrap());
        let name = |der: &[u8], issuer: bool| {
            let (_, c) = x509_parser::parse_x509_certificate(der).unwrap();
            if issuer {
                c.issuer().to_string()
            } else {
                c.subject().to_string()
            }
        };
        assert_eq!(
            name(&read("server.pem"), true),
            name(&read("server-ca.pem"), false)
        );
        assert_eq!(
            name(&read("clients/alpha.pem"), true),
            name(&read("client-ca.pem"), false)
        );
        assert_ne!(
            name(&read("server-ca.pem"), false),
            name(&read("client-ca.pem"), false)
        );
    }

    #[test]
    fn request_sign_revoke_and_crl_through_files() {
        let body = tempfile::tempdir().unwrap();
        let entity = tempfile::tempdir().unwrap();
        init(body.path(), "localhost").unwrap();
        let (key, csr) = dir::request(entity.path(), "clinic-7").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&key).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(matches!(
            dir::request(entity.path(), "clinic-7"),
            Err(PkiError::Exists(_))
        ));
        let out = entity.path().join("clinic-7.pem");
        let signed = dir::sign(body.path(), &csr, &out, Some("clinic-7")).unwrap();
        assert_eq!(signed.id, "clinic-7");
        assert!(
            body.path()
                .join(format!("issued/{}.pem", signed.serial))
                .exists()
        );
        assert!(matches!(
            dir::sign(body.path(), &csr, &out, None),
            Err(PkiError::Exists(_))
        ));

        // Revoke by certificate file, then again (no duplicate), then by serial.
        let cert = dir::RevokeTarget::Certificate(&out);
        let r = dir::revoke(body.path(), cert.clone(), now(), 30).unwrap();
        assert_eq!(r.serial, signed.serial);
        assert!(r.subject.contains("clinic-7") && !r.already && r.listed == 1);
        let r = dir::revoke(body.path(), cert, now(), 30).unwrap();
        assert!(r.already && r.listed == 1);
        let r = dir::revoke(body.path(), dir::RevokeTarget::Serial("0a:bc"), now(), 30).unwrap();
        assert_eq!((r.serial.as_str(), r.listed), ("0abc", 2));
        let crl = der_of(&fs::read_to_string(body.path().join("client-crl.pem")).unwrap());
        let s = crl_summary(&crl, Path::new("client-crl.pem")).unwrap();
        assert_eq!(s.revoked, vec![signed.serial.clone(), "0abc".to_owned()]);

        // A certificate of the server CA cannot be revoked with the client CA's CRL.
        let server = body.path().join("server.pem");
        let e = dir::revoke(
            body.path(),
            dir::RevokeTarget::Certificate(&server),
            now(),
            30,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not issued by the client CA"), "{e}");

        // A malformed revoked.txt is named with its line.
        fs::write(body.path().join("revoked.txt"), "# x\nzz 1 y\n").unwrap();
        let e = dir::write_crl(body.path(), now(), 30).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }
}
