//! The one error type of the link core.

use thiserror::Error;

/// Why a link run stopped. Each message says what happened and what the user can do.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtoError {
    /// The server sent something the spec does not allow; nothing from it was used.
    #[error("protocol violation by the server: {0}")]
    Protocol(String),
    /// A DLEQ proof did not verify: the server did not use the key of its Info.
    #[error(
        "the server's proof for an Evaluate batch did not verify against the key period's public \
         key; nothing from that batch was used (report this to the management body)"
    )]
    ProofInvalid,
    /// A quota is too small for the numbers that still need evaluating.
    #[error(
        "quota: {need} numbers need evaluating, the server allows {today} more today and {period} \
         more in this key period{retry}"
    )]
    Quota {
        /// Numbers still to evaluate.
        need: u64,
        /// Evaluations left today.
        today: u64,
        /// Evaluations left in the key period.
        period: u64,
        /// When the daily quota resets, as text.
        retry: String,
    },
    /// The entity reached the hard cap the management body set on its evaluations (an
    /// enumeration control, security.md §6.1): final until the management body raises it.
    #[error(
        "the management body's hard cap on this entity's evaluations is reached; nothing more is \
         evaluated for it until the management body reviews its use and raises the cap (contact \
         the management body; retrying does not help). The server said: {message}"
    )]
    HardCap {
        /// The server's message (the entity's totals and its cap).
        message: String,
    },
    /// The server answered with an error the client cannot recover from.
    #[error("the server refused {request}: {code} {message}")]
    Server {
        /// The request's name.
        request: &'static str,
        /// The error code, as text.
        code: String,
        /// The server's message.
        message: String,
    },
    /// A freshly downloaded base does not match the digest the server stated.
    #[error(
        "the downloaded table of epoch {epoch} does not match the digest the server stated for \
         it; the server is inconsistent (report this to the management body)"
    )]
    BaseDigestMismatch {
        /// The epoch.
        epoch: u32,
    },
    /// The server's Info is not covered by a valid signed announcement of the management body
    /// (protocol-spec/announcements.md §5), and the client requires one.
    #[error(
        "refused the server: its Info is not covered by a valid announcement of the management \
         body ({}: {detail}); nothing from this server was used",
        fault.name()
    )]
    Announcement {
        /// Which check failed.
        fault: crate::announce::Fault,
        /// What exactly, and what to do.
        detail: String,
    },
    /// The server's key period or epoch kept changing.
    #[error("the server's {what} kept changing during the run ({count} restarts); try again later")]
    Unstable {
        /// "key period" or "epoch".
        what: &'static str,
        /// Restarts made.
        count: u32,
    },
}
