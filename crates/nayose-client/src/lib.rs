//! The accredited entity's client node: one `link` run over QUIC.
//!
//! [`link`] (or [`link_async`]) reads the held CSV file, deduplicates its numbers, and runs the
//! nayose/2 link core (`nayose-proto`) over one mutual-TLS QUIC connection: numbers not yet in
//! the OPRF cache of the key period are evaluated (pipelined Evaluate batches, every proof
//! verified against the key period's public key), the cached table is brought up to the
//! server's epoch (nothing, deltas, or a resumable base download) and verified against the
//! server's digest, labels are decrypted, and every input row is written with `nayose_group`,
//! `nayose_status` and `nayose_note` (and, if asked for, `nayose_number`).
//!
//! Modules:
//! - [`config`]: the settings, [`ClientConfig`] (`client.toml` + overrides), and their resolution;
//! - [`progress`]: the callback trait [`Progress`] (the CLI draws bars; the library never
//!   touches the terminal);
//! - [`summary`]: the run's [`LinkSummary`];
//! - `link`: the run; `driver`: carries out the core's actions; `session`: connection and
//!   retries; `net`: one connection and failure classification; `cache`: the caches of each
//!   key period on disk; `tls`: credentials.
//!
//! Invariants: a run that returns an error has written no output file (and a process being
//! stopped by a signal calls [`abandon_temp_files`] to remove the temporary files of a run it
//! cannot finish); results never mix two
//! key periods or epochs; nothing secret (numbers, blinds, OPRF outputs, label keys) is logged or reported.

mod cache;
pub mod config;
mod driver;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod link;
mod net;
pub mod progress;
mod session;
pub mod summary;
mod tls;

pub use config::{
    ClientConfig, ColumnNames, Encoding, Resolved, RetryPolicy, RetrySettings, UnlinkedGroup,
};
pub use error::{ClientError, InvalidRowsDetail};
pub use link::{STATUS_INVALID, STATUS_LINKED, STATUS_NOT_FOUND, link, link_async};
pub use nayose_csv::{
    Abandoned, GROUP_COLUMN, HeldColumns, NOTE_COLUMN, NUMBER_COLUMN, ReportReason, STATUS_COLUMN,
    abandon_temp_files,
};
pub use nayose_proto::ProtoError;
pub use progress::{NoProgress, Phase, Progress};
pub use summary::{LinkSummary, SyncSummary};
pub use tls::{POST_QUANTUM_KEY_EXCHANGE, tls_crypto_provider};
