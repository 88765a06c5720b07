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
    /// The input could not be read, has invalid rows (all listed), or the output could not be
    /// written.
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
    /// The TLS handshake was refused (wrong CA, wrong server name, certificate not accepted).
    /// Retrying does not help.
    #[error(
        "TLS handshake with {server} failed: {reason}; check --ca, --server-name and the client \
         certificate"
    )]
    Handshake {
        /// The server address.
        server: String,
        /// What the TLS layer reported.
        reason: String,
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
