//! `nayose pki …`: the development PKI for trials (`init`, `issue-client`) and the real
//! workflow: `request` on the entity's machine, `sign`, `revoke` and `crl` at the management
//! body; `fingerprint` prints what `clients.toml` lists of a certificate.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use nayose_pki::dir::{self, CLIENT_CA, CLIENT_CA_KEY, RevokeTarget, SERVER_CA, SERVER_CA_KEY};
use nayose_proto::jst;

#[derive(Debug, Subcommand)]
pub(crate) enum PkiCommand {
    /// Trials: create DIR with a server CA, a client CA and a server certificate (server-ca.pem,
    /// server-ca.key, client-ca.pem, client-ca.key, server.pem, server.key).
    Init {
        /// Directory to create the PKI in.
        #[arg(long)]
        dir: PathBuf,
        /// DNS name or IP address the server certificate is valid for.
        #[arg(long, default_value = "localhost")]
        server_name: String,
    },
    /// Trials: issue DIR/clients/ID.pem and DIR/clients/ID.key with the client CA (the key is
    /// made here; real entities use `pki request`).
    IssueClient {
        /// Directory of the PKI (made by `pki init`).
        #[arg(long)]
        dir: PathBuf,
        /// The accredited client id (1 to 64 of A-Z a-z 0-9 . _ -).
        #[arg(long)]
        id: String,
    },
    /// Entity: make a private key (OUT/ID.key, owner-only, stays here) and a certificate
    /// signing request (OUT/ID.csr) to send to the management body.
    Request {
        /// The accredited client id (1 to 64 of A-Z a-z 0-9 . _ -).
        #[arg(long)]
        id: String,
        /// Directory to write the key and the request to.
        #[arg(long)]
        out: PathBuf,
    },
    /// Management body: check a CSR (signature, subject) and issue a client certificate for it
    /// with the client CA of CA_DIR.
    Sign {
        /// The PKI directory holding client-ca.pem and client-ca.key.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The entity's request (PEM, from `pki request`).
        #[arg(long)]
        csr: PathBuf,
        /// Where to write the certificate (must not exist).
        #[arg(long)]
        out: PathBuf,
        /// Refuse the request unless it is for this client id.
        #[arg(long)]
        id: Option<String>,
    },
    /// Management body: revoke a client certificate and rewrite CA_DIR/client-crl.pem (give it
    /// to the server as client_crl).
    Revoke {
        /// The PKI directory holding client-ca.pem and client-ca.key.
        #[arg(long)]
        ca_dir: PathBuf,
        /// The certificate to revoke (PEM).
        #[arg(long, conflicts_with = "serial", required_unless_present = "serial")]
        cert: Option<PathBuf>,
        /// The serial number to revoke, in hex (as `pki sign` prints it).
        #[arg(long)]
        serial: Option<String>,
        /// Days until the CRL's next update.
        #[arg(long, default_value_t = dir::DEFAULT_CRL_DAYS)]
        days: u32,
    },
    /// Management body: print a client certificate's SPKI fingerprint (SHA-256 of its public
    /// key), subject and issuer, as lines to paste under its entity in clients.toml.
    Fingerprint {
        /// The certificate (PEM; the first CERTIFICATE block is used).
        #[arg(long)]
        cert: PathBuf,
    },
    /// Management body: rewrite CA_DIR/client-crl.pem from the revoked list (renew it before
    /// its next update).
    Crl {
        /// The PKI directory holding client-ca.pem and client-ca.key.
        #[arg(long)]
        ca_dir: PathBuf,
        /// Days until the CRL's next update.
        #[arg(long, default_value_t = dir::DEFAULT_CRL_DAYS)]
        days: u32,
    },
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Runs a `pki` command.
pub(crate) fn run(cmd: PkiCommand) -> Result<()> {
    match cmd {
        PkiCommand::Init { dir, server_name } => init(&dir, &server_name),
        PkiCommand::IssueClient { dir, id } => issue_client(&dir, &id),
        PkiCommand::Request { id, out } => {
            let (key, csr) = dir::request(&out, &id).with_context(|| {
                format!("making a key and a request for {id:?} in {}", out.display())
            })?;
            eprintln!(
                "wrote {} (private key: owner-only, keep it on this machine) and {} (send this \
                 request to the management body)",
                key.display(),
                csr.display()
            );
            Ok(())
        }
        PkiCommand::Sign {
            ca_dir,
            csr,
            out,
            id,
        } => {
            let s = dir::sign(&ca_dir, &csr, &out, id.as_deref()).with_context(|| {
                format!(
                    "signing {} with the client CA of {}",
                    csr.display(),
                    ca_dir.display()
                )
            })?;
            eprintln!(
                "issued {} for client id {:?}: serial {}, valid until {}; add the id to the \
                 server's clients.toml if it is new",
                out.display(),
                s.id,
                s.serial,
                jst::datetime(s.not_after)
            );
            Ok(())
        }
        PkiCommand::Revoke {
            ca_dir,
            cert,
            serial,
            days,
        } => {
            let target = match (&cert, &serial) {
                (Some(c), _) => RevokeTarget::Certificate(c),
                (None, Some(s)) => RevokeTarget::Serial(s),
                (None, None) => anyhow::bail!("give --cert FILE or --serial HEX"),
            };
            let r = dir::revoke(&ca_dir, target, now_unix(), days)
                .with_context(|| format!("revoking with the client CA of {}", ca_dir.display()))?;
            let what = if r.subject.is_empty() {
                format!("serial {}", r.serial)
            } else {
                format!("{} (serial {})", r.subject, r.serial)
            };
            if r.already {
                eprintln!("{what} was already revoked");
            } else {
                eprintln!("revoked {what}");
            }
            eprintln!(
                "wrote {} ({} revoked certificate(s)); give it to the server (client_crl) and \
                 restart it",
                r.crl.display(),
                r.listed
            );
            Ok(())
        }
        PkiCommand::Fingerprint { cert } => fingerprint(&cert),
        PkiCommand::Crl { ca_dir, days } => {
            let (path, n) = dir::write_crl(&ca_dir, now_unix(), days)
                .with_context(|| format!("writing the CRL of {}", ca_dir.display()))?;
            eprintln!(
                "wrote {} ({n} revoked certificate(s), next update in {days} days)",
                path.display()
            );
            Ok(())
        }
    }
}

/// `nayose pki init --dir DIR [--server-name NAME]`.
pub(crate) fn init(dir: &Path, server_name: &str) -> Result<()> {
    nayose_pki::init(dir, server_name)
        .with_context(|| format!("creating the development PKI in {}", dir.display()))?;
    eprintln!(
        "created {0}/{SERVER_CA} and {0}/{SERVER_CA_KEY} (server CA: clients trust it, --ca), \
         {0}/{CLIENT_CA} and {0}/{CLIENT_CA_KEY} (client CA: the server trusts it, \
         --client-ca), {0}/server.pem and {0}/server.key (server name {1})",
        dir.display(),
        server_name
    );
    eprintln!("this PKI is for trials only; see the README for real deployments");
    Ok(())
}

/// `nayose pki issue-client --dir DIR --id ID`.
pub(crate) fn issue_client(dir: &Path, id: &str) -> Result<()> {
    let (cert, key) = nayose_pki::issue_client(dir, id).with_context(|| {
        format!(
            "issuing a client certificate for {id:?} from {}",
            dir.display()
        )
    })?;
    eprintln!("issued {} and {}", cert.display(), key.display());
    Ok(())
}

/// `nayose pki fingerprint --cert FILE`: the certificate's identity on stdout, as TOML lines of
/// an `[[entity]]` of clients.toml (comments say whose certificate it is).
pub(crate) fn fingerprint(cert: &Path) -> Result<()> {
    let (id, summary) = dir::certificate_file(cert)
        .with_context(|| format!("reading the certificate {}", cert.display()))?;
    println!(
        "# {}: serial {}, valid {} to {}",
        cert.display(),
        summary.serial,
        jst::datetime(summary.not_before),
        jst::datetime(summary.not_after)
    );
    println!("# by key (any CA of client_ca):");
    println!("spki_sha256 = [\"{}\"]", id.spki_sha256);
    println!("# or by issuer and subject (signed by that CA of client_ca):");
    println!("[[entity.certificate]]");
    println!("issuer = {}", toml_string(&id.issuer));
    println!("subject = {}", toml_string(&id.subject));
    Ok(())
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
