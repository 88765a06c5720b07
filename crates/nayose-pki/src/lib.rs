//! A development PKI for trials of nayose, and the rule that ties a client certificate to an
//! accredited client id.
//!
//! - The client id is the certificate's subject CommonName; it must be a valid client id
//!   (1 to 64 bytes of `A-Z a-z 0-9 . _ -`). The server reads it with [`client_id_of`] after
//!   TLS has verified the chain to the configured client CA.
//! - [`init`] writes `ca.pem`, `ca.key`, `server.pem`, `server.key` into a directory and
//!   [`issue_client`] writes `clients/ID.pem` and `clients/ID.key`; private keys are created
//!   owner-readable only (0600). ECDSA P-256 keys, generated with ring through rcgen.
//!
//! This PKI is for trials: a real deployment has the management body's CA issue client
//! certificates to accredited entities through its own process (see the README).

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use thiserror::Error;

/// Errors of the development PKI and of reading a client id.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PkiError {
    /// Certificate generation failed.
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
    /// The directory already holds a PKI; refusing to overwrite keys.
    #[error(
        "{0} already exists; refusing to overwrite an existing PKI (remove it or use another --dir)"
    )]
    Exists(PathBuf),
    /// A certificate is not valid DER X.509.
    #[error("client certificate is not a valid X.509 certificate: {0}")]
    BadCertificate(String),
    /// The certificate carries no usable client id.
    #[error("client certificate has {0}")]
    NoClientId(String),
    /// A proposed client id breaks the id rule.
    #[error("invalid client id {0:?}: use 1 to 64 characters from A-Z a-z 0-9 . _ -")]
    BadClientId(String),
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
    let mut cns = cert.subject().iter_common_name();
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
    /// Start of validity, seconds since the UNIX epoch (UTC).
    pub not_before: i64,
    /// End of validity, seconds since the UNIX epoch (UTC).
    pub not_after: i64,
}

/// The subject and validity of a DER certificate (not verified: for messages only).
pub fn certificate_summary(cert_der: &[u8]) -> Result<CertSummary, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    let v = cert.validity();
    Ok(CertSummary {
        subject: cert.subject().to_string(),
        not_before: v.not_before.timestamp(),
        not_after: v.not_after.timestamp(),
    })
}

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The PKCS#8 private key, PEM. Secret.
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("key_pem", &"<secret>")
            .finish_non_exhaustive()
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::OrganizationName, "nayose development PKI");
    d.push(DnType::CommonName, cn);
    d
}

/// A fresh CA certificate (self-signed, CA:true, keyCertSign).
pub fn generate_ca(name: &str) -> Result<Issued, PkiError> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = dn(name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = p.self_signed(&key)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn issue(ca: &Issued, params: CertificateParams) -> Result<Issued, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A server certificate for `server_name` (DNS name or IP address in the SAN), signed by `ca`.
pub fn issue_server_cert(ca: &Issued, server_name: &str) -> Result<Issued, PkiError> {
    let mut p = CertificateParams::new(vec![server_name.to_string()])?;
    p.distinguished_name = dn(server_name);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    issue(ca, p)
}

/// A client certificate whose subject CommonName is the client id, signed by `ca`.
pub fn issue_client_cert(ca: &Issued, id: &str) -> Result<Issued, PkiError> {
    if !is_valid_client_id(id) {
        return Err(PkiError::BadClientId(id.to_string()));
    }
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = dn(id);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    issue(ca, p)
}

/// [`issue_client_cert`] valid only from `not_before` to `not_after`, each a (year, month,
/// day) at 00:00 UTC: for trying out expired or not-yet-valid certificates.
pub fn issue_client_cert_valid(
    ca: &Issued,
    id: &str,
    not_before: (i32, u8, u8),
    not_after: (i32, u8, u8),
) -> Result<Issued, PkiError> {
    if !is_valid_client_id(id) {
        return Err(PkiError::BadClientId(id.to_string()));
    }
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = dn(id);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    p.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
    p.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    issue(ca, p)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a file that must not exist yet; `secret` files are created with mode 0600.
fn write_new(path: &Path, contents: &str, secret: bool) -> Result<(), PkiError> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = o.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            PkiError::Exists(path.to_path_buf())
        } else {
            PkiError::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    })?;
    f.write_all(contents.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(io(path))
}

/// Creates `dir` (if needed) with a new CA and a server certificate for `server_name`.
/// Refuses to overwrite an existing `ca.pem` or key.
pub fn init(dir: &Path, server_name: &str) -> Result<(), PkiError> {
    fs::create_dir_all(dir.join("clients")).map_err(io(dir))?;
    let ca_path = dir.join("ca.pem");
    if ca_path.exists() {
        return Err(PkiError::Exists(ca_path));
    }
    let ca = generate_ca("nayose development CA")?;
    let server = issue_server_cert(&ca, server_name)?;
    write_new(&dir.join("ca.key"), &ca.key_pem, true)?;
    write_new(&ca_path, &ca.cert_pem, false)?;
    write_new(&dir.join("server.key"), &server.key_pem, true)?;
    write_new(&dir.join("server.pem"), &server.cert_pem, false)?;
    Ok(())
}

/// Issues `clients/ID.pem` and `clients/ID.key` from the CA in `dir`; returns their paths.
pub fn issue_client(dir: &Path, id: &str) -> Result<(PathBuf, PathBuf), PkiError> {
    let ca = Issued {
        cert_pem: read(&dir.join("ca.pem"))?,
        key_pem: read(&dir.join("ca.key"))?,
    };
    let c = issue_client_cert(&ca, id)?;
    let clients = dir.join("clients");
    fs::create_dir_all(&clients).map_err(io(&clients))?;
    let cert = clients.join(format!("{id}.pem"));
    let key = clients.join(format!("{id}.key"));
    write_new(&key, &c.key_pem, true)?;
    write_new(&cert, &c.cert_pem, false)?;
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn der_of(pem: &str) -> Vec<u8> {
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        p.contents
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
                dir.path().join("ca.key"),
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
    }
}
