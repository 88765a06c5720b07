//! The PKI as files: a development PKI for trials ([`init`], [`issue_client`]) and the real
//! workflow ([`request`] on the entity's machine; [`sign`], [`revoke`], [`write_crl`] at the
//! management body).
//!
//! A PKI directory (`--dir` / `--ca-dir`) holds:
//!
//! | file | what |
//! |---|---|
//! | `server-ca.pem`, `server-ca.key` | the server CA: issues only server certificates; clients trust it (`ca`) |
//! | `client-ca.pem`, `client-ca.key` | the client CA: issues only client certificates; the server trusts it (`client_ca`) |
//! | `server.pem`, `server.key` | the server's certificate (`serverAuth`, SAN = server name) |
//! | `clients/ID.pem`, `clients/ID.key` | trial client certificates made by `issue-client` |
//! | `issued/SERIAL.pem` | a copy of every certificate `sign` issued |
//! | `revoked.txt` | the revoked serials (`SERIAL UNIX-SECONDS SUBJECT`, one a line) |
//! | `client-crl.pem` | the client CA's CRL, rewritten by `revoke` and `crl`: give it to the server (`client_crl`) |
//!
//! Private keys are created owner-readable only (0600) and never overwritten.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::crl::{Revocation, make_crl};
use crate::csr::{SignedRequest, make_request, sign_request};
use crate::issue::{Issued, generate_ca, issue_client_cert, issue_server_cert};
use crate::{PkiError, certificate_summary, parse_serial_hex, serial_hex};

/// The server CA's certificate.
pub const SERVER_CA: &str = "server-ca.pem";
/// The server CA's private key.
pub const SERVER_CA_KEY: &str = "server-ca.key";
/// The client CA's certificate.
pub const CLIENT_CA: &str = "client-ca.pem";
/// The client CA's private key.
pub const CLIENT_CA_KEY: &str = "client-ca.key";
/// The client CA's CRL.
pub const CLIENT_CRL: &str = "client-crl.pem";
/// The list of revoked client certificates.
pub const REVOKED: &str = "revoked.txt";
/// Days until a CRL's nextUpdate, unless told otherwise.
pub const DEFAULT_CRL_DAYS: u32 = 30;

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

/// Replaces a public file atomically (a temporary file renamed over it).
fn replace(path: &Path, contents: &str) -> Result<(), PkiError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(contents.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(io(path))
}

fn load_ca(dir: &Path, cert: &str, key: &str) -> Result<Issued, PkiError> {
    let cert_path = dir.join(cert);
    if !cert_path.exists() && dir.join("ca.pem").exists() {
        return Err(PkiError::BadCertificate(format!(
            "{} holds a PKI of an older nayose with one CA for servers and clients (ca.pem); \
             make a new PKI with `nayose pki init` (separate server and client CAs)",
            dir.display()
        )));
    }
    Ok(Issued {
        cert_pem: read(&cert_path)?,
        key_pem: read(&dir.join(key))?,
    })
}

fn der_of_pem(pem: &str, path: &Path) -> Result<Vec<u8>, PkiError> {
    x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map(|(_, p)| p.contents)
        .map_err(|e| PkiError::BadCertificate(format!("{}: {e}", path.display())))
}

/// The identity and validity of the first certificate of a PEM file (for `pki fingerprint`).
pub fn certificate_file(
    path: &Path,
) -> Result<(crate::CertIdentity, crate::CertSummary), PkiError> {
    let der = der_of_pem(&read(path)?, path)?;
    Ok((crate::cert_identity(&der)?, certificate_summary(&der)?))
}

/// Creates `dir` (if needed) with a server CA, a client CA and a server certificate for
/// `server_name` (issued by the server CA). Refuses to overwrite an existing CA or key.
pub fn init(dir: &Path, server_name: &str) -> Result<(), PkiError> {
    fs::create_dir_all(dir.join("clients")).map_err(io(dir))?;
    for f in [SERVER_CA, CLIENT_CA, SERVER_CA_KEY, CLIENT_CA_KEY] {
        if dir.join(f).exists() {
            return Err(PkiError::Exists(dir.join(f)));
        }
    }
    let server_ca = generate_ca("nayose development server CA")?;
    let client_ca = generate_ca("nayose development client CA")?;
    let server = issue_server_cert(&server_ca, server_name)?;
    write_new(&dir.join(SERVER_CA_KEY), &server_ca.key_pem, true)?;
    write_new(&dir.join(SERVER_CA), &server_ca.cert_pem, false)?;
    write_new(&dir.join(CLIENT_CA_KEY), &client_ca.key_pem, true)?;
    write_new(&dir.join(CLIENT_CA), &client_ca.cert_pem, false)?;
    write_new(&dir.join("server.key"), &server.key_pem, true)?;
    write_new(&dir.join("server.pem"), &server.cert_pem, false)?;
    Ok(())
}

/// Issues `clients/ID.pem` and `clients/ID.key` from the client CA in `dir` (the key is made
/// here: for trials); returns their paths.
pub fn issue_client(dir: &Path, id: &str) -> Result<(PathBuf, PathBuf), PkiError> {
    let ca = load_ca(dir, CLIENT_CA, CLIENT_CA_KEY)?;
    let c = issue_client_cert(&ca, id)?;
    let clients = dir.join("clients");
    fs::create_dir_all(&clients).map_err(io(&clients))?;
    let cert = clients.join(format!("{id}.pem"));
    let key = clients.join(format!("{id}.key"));
    write_new(&key, &c.key_pem, true)?;
    write_new(&cert, &c.cert_pem, false)?;
    Ok((cert, key))
}

/// On the entity's machine: writes `out/ID.key` (owner-only, new) and `out/ID.csr`; returns
/// their paths. Only the CSR is sent to the management body.
pub fn request(out: &Path, id: &str) -> Result<(PathBuf, PathBuf), PkiError> {
    let r = make_request(id)?;
    fs::create_dir_all(out).map_err(io(out))?;
    let key = out.join(format!("{id}.key"));
    let csr = out.join(format!("{id}.csr"));
    if csr.exists() {
        return Err(PkiError::Exists(csr));
    }
    write_new(&key, &r.key_pem, true)?;
    write_new(&csr, &r.csr_pem, false)?;
    Ok((key, csr))
}

/// What [`sign`] issued.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The client id.
    pub id: String,
    /// The certificate's serial, hex.
    pub serial: String,
    /// End of validity, UNIX seconds.
    pub not_after: i64,
}

/// At the management body: checks the CSR (see [`crate::sign_request`]) and writes a client
/// certificate for it, issued by the client CA of `ca_dir`, to `out` (which must not exist),
/// with a copy in `ca_dir/issued/SERIAL.pem`.
pub fn sign(
    ca_dir: &Path,
    csr: &Path,
    out: &Path,
    expected_id: Option<&str>,
) -> Result<Signed, PkiError> {
    let ca = load_ca(ca_dir, CLIENT_CA, CLIENT_CA_KEY)?;
    let csr_pem = read(csr)?;
    let SignedRequest { cert_pem, id } = sign_request(&ca, &csr_pem, expected_id, csr)?;
    let summary = certificate_summary(&der_of_pem(&cert_pem, out)?)?;
    write_new(out, &cert_pem, false)?;
    let issued = ca_dir.join("issued");
    fs::create_dir_all(&issued).map_err(io(&issued))?;
    write_new(
        &issued.join(format!("{}.pem", summary.serial)),
        &cert_pem,
        false,
    )?;
    Ok(Signed {
        id,
        serial: summary.serial,
        not_after: summary.not_after,
    })
}

/// One line of `revoked.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// The serial, hex.
    pub serial: String,
    /// When it was revoked, UNIX seconds.
    pub revoked_at: i64,
    /// The certificate's subject, if known.
    pub subject: String,
}

/// Reads `ca_dir/revoked.txt` (absent: nothing revoked).
pub fn revoked_list(ca_dir: &Path) -> Result<Vec<RevokedEntry>, PkiError> {
    let path = ca_dir.join(REVOKED);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&path)(e)),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: &str| PkiError::BadRevocationList {
            path: path.clone(),
            line: i + 1,
            reason: format!("{reason}; expected `SERIAL-HEX UNIX-SECONDS SUBJECT`"),
        };
        let mut parts = line.splitn(3, ' ');
        let serial = parts
            .next()
            .and_then(parse_serial_hex)
            .ok_or_else(|| bad("not a hex serial number"))?;
        let revoked_at = parts
            .next()
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or_else(|| bad("no revocation time"))?;
        out.push(RevokedEntry {
            serial: serial_hex(&serial),
            revoked_at,
            subject: parts.next().unwrap_or("").trim().to_owned(),
        });
    }
    Ok(out)
}

/// What to revoke: a certificate file, or a serial number.
#[derive(Debug, Clone)]
pub enum RevokeTarget<'a> {
    /// A certificate file (PEM), which must have been issued by the client CA.
    Certificate(&'a Path),
    /// A serial number in hex (colons allowed).
    Serial(&'a str),
}

/// What [`revoke`] did.
#[derive(Debug, Clone)]
pub struct Revoked {
    /// The revoked serial, hex.
    pub serial: String,
    /// The certificate's subject (empty when revoked by serial only).
    pub subject: String,
    /// Whether it was already listed.
    pub already: bool,
    /// The CRL written.
    pub crl: PathBuf,
    /// How many serials the CRL lists.
    pub listed: usize,
}

/// At the management body: adds a client certificate to `ca_dir/revoked.txt` (revoked at
/// `now`, UNIX seconds) and rewrites `ca_dir/client-crl.pem`, valid `crl_days` days.
pub fn revoke(
    ca_dir: &Path,
    target: RevokeTarget<'_>,
    now: i64,
    crl_days: u32,
) -> Result<Revoked, PkiError> {
    let ca = load_ca(ca_dir, CLIENT_CA, CLIENT_CA_KEY)?;
    let (serial, subject) = match target {
        RevokeTarget::Certificate(path) => {
            let der = der_of_pem(&read(path)?, path)?;
            let ca_der = der_of_pem(&ca.cert_pem, &ca_dir.join(CLIENT_CA))?;
            if !issued_by(&der, &ca_der) {
                return Err(PkiError::BadCertificate(format!(
                    "{} was not issued by the client CA {}: a CRL of this CA cannot revoke it",
                    path.display(),
                    ca_dir.join(CLIENT_CA).display()
                )));
            }
            let s = certificate_summary(&der)?;
            (s.serial, s.subject)
        }
        RevokeTarget::Serial(text) => {
            let bytes = parse_serial_hex(text).ok_or_else(|| {
                PkiError::BadCertificate(format!(
                    "{text:?} is not a serial number in hex (as `nayose pki sign` prints it)"
                ))
            })?;
            (serial_hex(&bytes), String::new())
        }
    };
    let list = revoked_list(ca_dir)?;
    let already = list.iter().any(|e| e.serial == serial);
    if !already {
        let path = ca_dir.join(REVOKED);
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        if list.is_empty() && f.metadata().map(|m| m.len() == 0).unwrap_or(false) {
            writeln!(
                f,
                "# revoked client certificates: SERIAL-HEX UNIX-SECONDS SUBJECT (nayose pki revoke)"
            )
            .map_err(io(&path))?;
        }
        writeln!(f, "{serial} {now} {subject}").map_err(io(&path))?;
        f.sync_all().map_err(io(&path))?;
    }
    let (crl, listed) = write_crl(ca_dir, now, crl_days)?;
    Ok(Revoked {
        serial,
        subject,
        already,
        crl,
        listed,
    })
}

/// Writes `ca_dir/client-crl.pem` from `revoked.txt`, issued at `now` and valid `crl_days`
/// days; returns its path and how many serials it lists.
pub fn write_crl(ca_dir: &Path, now: i64, crl_days: u32) -> Result<(PathBuf, usize), PkiError> {
    let ca = load_ca(ca_dir, CLIENT_CA, CLIENT_CA_KEY)?;
    let list = revoked_list(ca_dir)?;
    let revoked: Vec<Revocation> = list
        .iter()
        .map(|e| Revocation {
            serial: parse_serial_hex(&e.serial).unwrap_or_default(),
            revoked_at: e.revoked_at,
        })
        .collect();
    let pem = make_crl(&ca, &revoked, now, crl_days)?;
    let path = ca_dir.join(CLIENT_CRL);
    replace(&path, &pem)?;
    Ok((path, revoked.len()))
}

/// Whether DER certificate `cert` was signed by DER CA certificate `ca`.
fn issued_by(cert: &[u8], ca: &[u8]) -> bool {
    let (Ok((_, c)), Ok((_, ca))) = (
        x509_parser::parse_x509_certificate(cert),
        x509_parser::parse_x509_certificate(ca),
    ) else {
        return false;
    };
    c.issuer().as_raw() == ca.subject().as_raw()
        && c.verify_signature(Some(ca.public_key())).is_ok()
}
