//! The accredited entity's client node: one `link` run over QUIC.
//!
//! [`link`] (or [`link_async`]) reads the held CSV file, deduplicates its numbers, evaluates
//! each distinct number once through the server's VOPRF (pipelined Evaluate batches on one
//! mutual-TLS QUIC connection, every proof verified against the epoch's public key), retrieves
//! the table entries it needs — the whole table, cached on disk per epoch ([`Privacy::Full`]),
//! or only the tag-prefix ranges of its own tags ([`Privacy::KAnon`]) — matches and decrypts
//! them, and writes every input row with `nayose_group` and `nayose_status`.
//!
//! Modules:
//! - [`config`]: the settings, [`ClientConfig`] (`client.toml` + overrides), and their resolution;
//! - [`progress`]: the callback trait [`Progress`] (the CLI draws bars; the library never
//!   touches the terminal);
//! - [`summary`]: the run's [`LinkSummary`];
//! - `link`: the run; `session`: connection, retries, Evaluate, retrieval; `net`: one
//!   connection and failure classification; `plan`: resume bookkeeping; `cache`: the per-epoch
//!   table cache; `tls`: credentials.
//!
//! Invariants: a run that returns an error has written no output file; results never mix two
//! epochs; nothing secret (numbers, blinds, OPRF outputs, label keys) is logged or reported.

mod cache;
pub mod config;
mod error;
mod link;
mod net;
mod plan;
pub mod progress;
mod session;
pub mod summary;
mod tls;

pub use config::{
    ClientConfig, ColumnNames, Encoding, Privacy, Resolved, RetryPolicy, RetrySettings,
};
pub use error::ClientError;
pub use link::{STATUS_INVALID, STATUS_LINKED, STATUS_NOT_FOUND, link, link_async};
pub use nayose_csv::{GROUP_COLUMN, HeldColumns, STATUS_COLUMN};
pub use progress::{NoProgress, Phase, Progress};
pub use summary::LinkSummary;
