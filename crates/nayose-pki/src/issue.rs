//! CAs and end-entity certificates: validity, key usages, extended key usages, serials.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::{PkiError, is_valid_client_id};

/// Validity of a server or client certificate, in days (about one year).
pub const CERT_VALIDITY_DAYS: i64 = 365;
/// Validity of a CA certificate, in days (about five years).
pub const CA_VALIDITY_DAYS: i64 = 5 * 365;
/// How far back a new certificate's validity starts, to tolerate clocks a little behind.
const BACKDATE: Duration = Duration::hours(1);

/// The role a certificate is issued for: its extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// TLS server authentication (`id-kp-serverAuth`, 1.3.6.1.5.5.7.3.1).
    ServerAuth,
    /// TLS client authentication (`id-kp-clientAuth`, 1.3.6.1.5.5.7.3.2).
    ClientAuth,
}

impl Purpose {
    /// The name used in RFC 5280 and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Purpose::ServerAuth => "serverAuth",
            Purpose::ClientAuth => "clientAuth",
        }
    }

    fn eku(self) -> ExtendedKeyUsagePurpose {
        match self {
            Purpose::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
            Purpose::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
        }
    }
}

/// Checks that a DER certificate carries the extended key usage `purpose`. WebPKI (rustls)
/// only refuses a certificate whose extended key usages leave out the purpose; a certificate
/// with no such extension at all passes it. nayose requires the extension on both sides, so a
/// certificate issued without a role is not accepted for any role.
pub fn require_purpose(cert_der: &[u8], purpose: Purpose) -> Result<(), PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    let has = match cert.extended_key_usage() {
        Ok(Some(eku)) => match purpose {
            Purpose::ServerAuth => eku.value.server_auth,
            Purpose::ClientAuth => eku.value.client_auth,
        },
        Ok(None) => false,
        Err(e) => return Err(PkiError::BadCertificate(e.to_string())),
    };
    if has {
        Ok(())
    } else {
        Err(PkiError::WrongPurpose {
            subject: cert.subject().to_string(),
            purpose: purpose.name(),
        })
    }
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

pub(crate) fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::OrganizationName, "nayose development PKI");
    d.push(DnType::CommonName, cn);
    d
}

/// 16 random bytes, top bit clear (a positive DER integer of at most 20 bytes).
fn random_serial() -> SerialNumber {
    let mut b: [u8; 16] = rand::random();
    b[0] &= 0x7f;
    if b[0] == 0 {
        b[0] = 1;
    }
    SerialNumber::from_slice(&b)
}

/// Valid from an hour ago for `days` days.
fn validity(p: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    p.not_before = now - BACKDATE;
    p.not_after = now + Duration::days(days);
}

/// A fresh CA certificate (self-signed, CA:true with path length 0, keyCertSign and cRLSign),
/// valid for [`CA_VALIDITY_DAYS`].
pub fn generate_ca(name: &str) -> Result<Issued, PkiError> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name = dn(name);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.serial_number = Some(random_serial());
    validity(&mut p, CA_VALIDITY_DAYS);
    let cert = p.self_signed(&key)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// End-entity parameters: subject `cn`, optional SAN, `purposes`, digitalSignature, a random
/// serial, one year of validity.
fn end_entity(
    cn: &str,
    san: Option<&str>,
    purposes: &[Purpose],
) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::new(san.map(str::to_owned).into_iter().collect::<Vec<_>>())?;
    p.distinguished_name = dn(cn);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = purposes.iter().map(|p| p.eku()).collect();
    p.use_authority_key_identifier_extension = true;
    p.serial_number = Some(random_serial());
    validity(&mut p, CERT_VALIDITY_DAYS);
    Ok(p)
}

pub(crate) fn ca_issuer(ca: &Issued) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    Ok(Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?)
}

/// Signs `params` for `public_key` with `ca`; returns the certificate PEM.
pub(crate) fn sign_for(
    ca: &Issued,
    params: &CertificateParams,
    public_key: &impl PublicKeyData,
) -> Result<String, PkiError> {
    let issuer = ca_issuer(ca)?;
    Ok(params.signed_by(public_key, &issuer)?.pem())
}

fn issue(ca: &Issued, params: &CertificateParams) -> Result<Issued, PkiError> {
    let key = KeyPair::generate()?;
    Ok(Issued {
        cert_pem: sign_for(ca, params, &key)?,
        key_pem: key.serialize_pem(),
    })
}

/// A server certificate for `server_name` (DNS name or IP address in the SAN), signed by `ca`
/// (the server CA), with extended key usage `serverAuth`.
pub fn issue_server_cert(ca: &Issued, server_name: &str) -> Result<Issued, PkiError> {
    issue(
        ca,
        &end_entity(server_name, Some(server_name), &[Purpose::ServerAuth])?,
    )
}

/// Client-certificate parameters for `id`: CommonName `id`, `clientAuth`.
pub(crate) fn client_params(id: &str) -> Result<CertificateParams, PkiError> {
    if !is_valid_client_id(id) {
        return Err(PkiError::BadClientId(id.to_string()));
    }
    end_entity(id, None, &[Purpose::ClientAuth])
}

/// A client certificate whose subject CommonName is the client id, signed by `ca` (the client
/// CA), with extended key usage `clientAuth`. The key is made here: for trials only (in a real
/// deployment the entity makes its key, see [`crate::dir::request`]).
pub fn issue_client_cert(ca: &Issued, id: &str) -> Result<Issued, PkiError> {
    issue(ca, &client_params(id)?)
}

/// [`issue_client_cert`] valid only from `not_before` to `not_after`, each a (year, month,
/// day) at 00:00 UTC: for trying out expired or not-yet-valid certificates.
pub fn issue_client_cert_valid(
    ca: &Issued,
    id: &str,
    not_before: (i32, u8, u8),
    not_after: (i32, u8, u8),
) -> Result<Issued, PkiError> {
    let mut p = client_params(id)?;
    p.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
    p.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    issue(ca, &p)
}

/// A certificate with subject CommonName `cn`, an optional SAN and exactly the extended key
/// usages `purposes` (none: no extension at all), signed by `ca`: for trying out certificates
/// issued for the wrong role.
pub fn issue_cert_with_purposes(
    ca: &Issued,
    cn: &str,
    san: Option<&str>,
    purposes: &[Purpose],
) -> Result<Issued, PkiError> {
    issue(ca, &end_entity(cn, san, purposes)?)
}
