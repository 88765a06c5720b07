//! Certificate signing requests: an entity makes its key and a CSR; the management body checks
//! the CSR and issues a client certificate for its public key. The private key never leaves
//! the entity's machine.

use std::path::Path;

use rcgen::{CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType, IsCa};
use x509_parser::prelude::FromDer;

use crate::issue::{Issued, client_params, sign_for};
use crate::{PkiError, id_of_name};

/// An entity's new private key and its certificate signing request, both PEM.
#[derive(Clone)]
pub struct Request {
    /// The PKCS#8 private key, PEM. Secret: stays on the entity's machine.
    pub key_pem: String,
    /// The CSR, PEM (`CERTIFICATE REQUEST`): what the entity sends to the management body.
    pub csr_pem: String,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("csr_pem", &self.csr_pem)
            .field("key_pem", &"<secret>")
            .finish()
    }
}

/// A new ECDSA P-256 key and a CSR for client id `id` (subject `CN=id`, requesting
/// `clientAuth`), signed with that key.
pub fn make_request(id: &str) -> Result<Request, PkiError> {
    if !crate::is_valid_client_id(id) {
        return Err(PkiError::BadClientId(id.to_string()));
    }
    let key = rcgen::KeyPair::generate()?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, id);
    p.distinguished_name = dn;
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let csr = p.serialize_request(&key)?;
    Ok(Request {
        key_pem: key.serialize_pem(),
        csr_pem: csr.pem()?,
    })
}

/// A client certificate issued from a CSR.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The client id (the CSR's CommonName).
    pub id: String,
}

fn bad(path: &Path, reason: impl Into<String>) -> PkiError {
    PkiError::BadRequest {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Checks a CSR and issues a client certificate for its public key with `ca` (the client CA).
///
/// Checked: the PEM holds one `CERTIFICATE REQUEST`; its signature verifies with the public key
/// it carries (the requester holds the private key and the request was not altered); its
/// subject has exactly one CommonName that is a valid client id (and equals `expected_id` when
/// given); it does not ask to be a CA. The certificate's contents are decided here, not by the
/// request: subject `CN=id`, `clientAuth`, digitalSignature, one year, a random serial.
/// `path` names the CSR in errors.
pub fn sign_request(
    ca: &Issued,
    csr_pem: &str,
    expected_id: Option<&str>,
    path: &Path,
) -> Result<SignedRequest, PkiError> {
    let parsed = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| match e {
        rcgen::Error::CouldNotParseCertificationRequest => bad(
            path,
            "is not a PEM certificate signing request (CERTIFICATE REQUEST); make one with \
             `nayose pki request`",
        ),
        rcgen::Error::InvalidCertificationRequestSignature => bad(
            path,
            "its signature does not verify: the request was altered or not signed with the key \
             it names; ask the entity for a new request",
        ),
        rcgen::Error::UnsupportedExtension => bad(
            path,
            "requests an extension nayose does not issue; make the request with `nayose pki \
             request` (or without extensions)",
        ),
        other => bad(path, format!("unusable request: {other}")),
    })?;
    if matches!(parsed.params.is_ca, IsCa::Ca(_)) {
        return Err(bad(
            path,
            "asks for a CA certificate; only client certificates are issued",
        ));
    }
    // The subject, read with the client-id rule the server applies to certificates.
    let (_, pem) = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes())
        .map_err(|e| bad(path, format!("unreadable PEM: {e}")))?;
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)
            .map_err(|e| bad(path, format!("unreadable request: {e}")))?;
    let id = id_of_name(&req.certification_request_info.subject)
        .map_err(|e| bad(path, format!("its subject is unusable: {e}")))?;
    if let Some(expected) = expected_id
        && expected != id
    {
        return Err(bad(
            path,
            format!("is for client id {id:?}, not {expected:?} (--id)"),
        ));
    }
    let mut params = client_params(&id)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, id.as_str());
    params.distinguished_name = dn;
    let cert_pem = sign_for(ca, &params, &parsed.public_key)?;
    Ok(SignedRequest { cert_pem, id })
}
