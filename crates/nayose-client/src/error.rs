//! The one error type of the client node.
//!
//! Invariant: every variant says what failed and what the user can do about it; none carries a
//! secret (held numbers, blinds, OPRF outputs, label keys).

use std::path::PathBuf;

use nayose_csv::CsvError;
use nayose_wire::ErrorCode;

/// Why a link run failed. When [`crate::link`] returns an error, no output file was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A required setting is missing from both `client.toml` and the command line.
    #[error("missing setting `{setting}`: give it in client.toml or on the command line")]
    MissingSetting {
        /// The setting's name in `client.toml`.
        setting: &'static str,
    },
    /// A setting has an invalid value.
    #[error("setting `{setting}`: {reason}")]
    Config {
        /// The setting's name in `client.toml`.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `client.toml` could not be parsed.
    #[error("{path}: {message}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the line and key).
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// The input has invalid rows (and `skip_invalid` is off): nothing was sent to the server.
    /// The message quotes the first rows and counts every row by reason with what fixes it;
    /// the row report (`--report`) lists them all.
    #[error(
        "{total} invalid row(s) in {input}; nothing was sent to the server:\n{}{more}\nby \
         reason (what fixes it):\n{}",
        shown.iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n"),
        reasons.iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n"),
        more = invalid_rows_more(*total, shown.len(), report.as_deref()),
    )]
    InvalidRows {
        /// The input file.
        input: PathBuf,
        /// Invalid rows in all.
        total: u64,
        /// The first invalid rows, as messages (at most 20).
        shown: Vec<String>,
        /// One line per reason: `code: count: what fixes it`.
        reasons: Vec<String>,
        /// The same, as data, for messages in other languages.
        detail: Box<InvalidRowsDetail>,
        /// The row report written, if one was asked for.
        report: Option<PathBuf>,
    },
    /// The input could not be read, or the output or the report could not be written.
    #[error(transparent)]
    Csv(#[from] CsvError),
    /// A certificate or key file is unusable.
    #[error("{path}: {reason}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// This client ended the TLS handshake, usually because it refused the server's
    /// certificate (not issued by the CA of `--ca`, wrong server name, expired). Retrying does
    /// not help.
    #[error("TLS handshake with {server} failed: {reason}; check --ca and --server-name")]
    Handshake {
        /// The server address.
        server: String,
        /// What the TLS layer reported.
        reason: String,
    },
    /// The server refused this client's certificate during the TLS handshake (a TLS alert):
    /// not issued by the management body's CA, expired, or revoked. Retrying does not help.
    #[error(
        "the server {server} refused this client's certificate {certificate}: {why}; ask the \
         management body whether this certificate is the one they issued and still valid"
    )]
    CertificateRefused {
        /// The server address.
        server: String,
        /// The certificate: file, subject and validity (in JST).
        certificate: String,
        /// Why, as the server's TLS alert says.
        why: String,
    },
    /// The server ended the TLS handshake because it accepts none of the key exchanges this
    /// client offers (TLS alert `handshake_failure`): by default this client offers only the
    /// post-quantum hybrid X25519MLKEM768, so a server offering only classical key exchange is
    /// refused. Retrying does not help.
    #[error("the server {server} refused the TLS handshake ({alert}): {why}")]
    KeyExchangeRefused {
        /// The server address.
        server: String,
        /// The TLS alert and the server's reason, if it gave one.
        alert: String,
        /// What this client offered and what to do.
        why: String,
    },
    /// The server could not be reached, or the connection kept failing, after every retry.
    #[error(
        "lost contact with {server} after {attempts} attempt(s): {last}; is the server running \
         and reachable?"
    )]
    Unreachable {
        /// The server address.
        server: String,
        /// Consecutive attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// This run never reached the server (no connection within about 30 seconds).
    #[error(
        "could not connect to {server} within {waited_secs} s: {last}; is the server running, \
         and are the address and port right?"
    )]
    CouldNotConnect {
        /// The server address.
        server: String,
        /// Seconds spent trying.
        waited_secs: u64,
        /// The last failure.
        last: String,
    },
    /// The server refused this client's certificate id.
    #[error("the server does not accredit this client ({client_id}): {message}")]
    NotAccredited {
        /// The client id from the client certificate.
        client_id: String,
        /// The server's message.
        message: String,
    },
    /// The link core stopped the run (quota, a server error, an inconsistent server, …).
    #[error(transparent)]
    Link(nayose_proto::ProtoError),
    /// A VOPRF proof did not verify: the server did not evaluate with the key it published for
    /// the key period. Nothing of that batch is used and no output is written.
    #[error("{detail}; no output was written")]
    ProofInvalid {
        /// What failed.
        detail: String,
    },
    /// The server answered with an error that retrying does not fix.
    #[error("the server refused {request}: {code:?} (code {code_value}): {message}")]
    Server {
        /// The request that failed.
        request: &'static str,
        /// The error code.
        code: ErrorCode,
        /// The numeric error code.
        code_value: u16,
        /// The server's message.
        message: String,
    },
    /// The server broke the protocol (a malformed or unexpected response, a table out of
    /// order, an epoch id that does not match its public key).
    #[error("protocol violation by the server: {0}")]
    Protocol(String),
    /// The async runtime could not be started.
    #[error("could not start the async runtime: {0}")]
    Runtime(String),
}

/// The invalid rows of [`ClientError::InvalidRows`] as data (for messages in other languages).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvalidRowsDetail {
    /// The rows quoted, as (line, column, reason code of `nayose_csv::ReportReason`).
    pub shown_rows: Vec<(u64, Option<String>, String)>,
    /// Rows by reason code, in report order.
    pub reason_counts: Vec<(String, u64)>,
}

fn invalid_rows_more(total: u64, shown: usize, report: Option<&std::path::Path>) -> String {
    let rest = total.saturating_sub(shown as u64);
    match (rest, report) {
        (0, Some(r)) => format!("\n  (the report {} lists them)", r.display()),
        (0, None) => "\n  (pass --report FILE for a CSV of every row reported)".to_owned(),
        (n, Some(r)) => format!(
            "\n  ... and {n} more: the report {} lists every one",
            r.display()
        ),
        (n, None) => format!("\n  ... and {n} more: pass --report FILE to list every one"),
    }
}

impl ClientError {
    /// A stable snake_case name of the variant, for scripts (`kind` in the `--json` error
    /// object).
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::MissingSetting { .. } => "missing_setting",
            ClientError::Config { .. } => "config",
            ClientError::ConfigFile { .. } => "config_file",
            ClientError::Io { .. } => "io",
            ClientError::InvalidRows { .. } => "invalid_rows",
            ClientError::Csv(_) => "input_output",
            ClientError::Credentials { .. } => "credentials",
            ClientError::Handshake { .. } => "handshake",
            ClientError::CertificateRefused { .. } => "certificate_refused",
            ClientError::KeyExchangeRefused { .. } => "key_exchange_refused",
            ClientError::Unreachable { .. } => "unreachable",
            ClientError::CouldNotConnect { .. } => "could_not_connect",
            ClientError::NotAccredited { .. } => "not_accredited",
            ClientError::Link(_) => "link",
            ClientError::ProofInvalid { .. } => "proof_invalid",
            ClientError::Server { .. } => "server",
            ClientError::Protocol(_) => "protocol",
            ClientError::Runtime(_) => "runtime",
        }
    }
}
