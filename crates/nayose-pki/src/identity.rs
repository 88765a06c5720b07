//! What identifies a client certificate to the accredited list (protocol-spec/wire.md §2.3):
//! its **SPKI fingerprint** — SHA-256 of the DER SubjectPublicKeyInfo, 64 lower-case hex
//! digits — and its **issuer and subject** names as x509-parser prints them
//! (`O=nayose development PKI, CN=clinic-7`). `nayose pki fingerprint` prints all three, in the
//! form `clients.toml` takes them.
//!
//! Invariant: a fingerprint written by [`spki_fingerprint`] or returned by
//! [`normalize_fingerprint`] is exactly 64 characters of `0-9a-f`, so two spellings of one
//! fingerprint (colons, upper case) compare equal after normalisation.

use sha2::{Digest, Sha256};

use crate::{PkiError, id_of_name};

/// The names and key fingerprint of a certificate (not verified: the server computes it only
/// for a certificate whose chain TLS has verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// SHA-256 of the SubjectPublicKeyInfo DER, 64 lower-case hex digits.
    pub spki_sha256: String,
    /// The subject name, e.g. `O=nayose development PKI, CN=clinic-7`.
    pub subject: String,
    /// The issuer name (the subject of the CA that signed it).
    pub issuer: String,
    /// The subject CommonName, when it is one valid client id (the `[[client]]` rule of
    /// `clients.toml`); `None` otherwise.
    pub common_name: Option<String>,
}

/// The identity of a DER certificate.
pub fn cert_identity(cert_der: &[u8]) -> Result<CertIdentity, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    Ok(CertIdentity {
        spki_sha256: hex(&Sha256::digest(cert.public_key().raw)),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        common_name: id_of_name(cert.subject()).ok(),
    })
}

/// The SPKI fingerprint of a DER certificate (SHA-256 of its SubjectPublicKeyInfo, hex).
pub fn spki_fingerprint(cert_der: &[u8]) -> Result<String, PkiError> {
    cert_identity(cert_der).map(|i| i.spki_sha256)
}

/// A fingerprint as written by a person (upper or lower case, with or without colons) in the
/// canonical form of [`spki_fingerprint`]; `None` unless it is 32 bytes of hex.
pub fn normalize_fingerprint(text: &str) -> Option<String> {
    let digits: String = text
        .chars()
        .filter(|&c| c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (digits.len() == 64 && digits.bytes().all(|b| b.is_ascii_hexdigit())).then_some(digits)
}

/// Whether the DER certificate `cert_der` was signed by the DER CA certificate `ca_der`: its
/// issuer is the CA's subject (byte for byte) and its signature verifies with the CA's key.
pub fn issued_by(cert_der: &[u8], ca_der: &[u8]) -> bool {
    let (Ok((_, cert)), Ok((_, ca))) = (
        x509_parser::parse_x509_certificate(cert_der),
        x509_parser::parse_x509_certificate(ca_der),
    ) else {
        return false;
    };
    cert.issuer().as_raw() == ca.subject().as_raw()
        && cert.verify_signature(Some(ca.public_key())).is_ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{generate_ca, issue_client_cert};

    fn der_of(pem: &str) -> Vec<u8> {
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        p.contents
    }

    #[test]
    fn the_fingerprint_is_sha256_of_the_spki_and_names_its_key_only() {
        let ca = generate_ca("client CA").unwrap();
        let a = issue_client_cert(&ca, "clinic-7").unwrap();
        let b = issue_client_cert(&ca, "clinic-7").unwrap();
        let (da, db) = (der_of(&a.cert_pem), der_of(&b.cert_pem));
        let ia = cert_identity(&da).unwrap();
        // Computed independently: the key pair's own SubjectPublicKeyInfo DER.
        let key = rcgen::KeyPair::from_pem(&a.key_pem).unwrap();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        assert_eq!(ia.spki_sha256, hex(&Sha256::digest(&spki)));
        assert_eq!(ia.spki_sha256.len(), 64);
        assert_eq!(ia.common_name.as_deref(), Some("clinic-7"));
        assert!(ia.subject.ends_with("CN=clinic-7"), "{}", ia.subject);
        assert!(ia.issuer.ends_with("CN=client CA"), "{}", ia.issuer);
        // Same names, another key: another fingerprint.
        let ib = cert_identity(&db).unwrap();
        assert_eq!(
            (ia.subject.as_str(), ia.issuer.as_str()),
            (ib.subject.as_str(), ib.issuer.as_str())
        );
        assert_ne!(ia.spki_sha256, ib.spki_sha256);
        assert_eq!(spki_fingerprint(&da).unwrap(), ia.spki_sha256);
        assert!(spki_fingerprint(b"junk").is_err());
    }

    #[test]
    fn fingerprints_normalise_and_issuers_are_checked_by_signature() {
        let f = "AB:".repeat(31) + "AB";
        assert_eq!(normalize_fingerprint(&f).unwrap(), "ab".repeat(32));
        assert!(normalize_fingerprint("ab").is_none());
        assert!(normalize_fingerprint(&"zz".repeat(32)).is_none());
        let ca = generate_ca("client CA").unwrap();
        // Another CA of the same name: the issuer name matches, the signature does not.
        let twin = generate_ca("client CA").unwrap();
        let c = der_of(&issue_client_cert(&ca, "x").unwrap().cert_pem);
        assert!(issued_by(&c, &der_of(&ca.cert_pem)));
        assert!(!issued_by(&c, &der_of(&twin.cert_pem)));
        assert!(!issued_by(b"junk", &der_of(&ca.cert_pem)));
    }
}
