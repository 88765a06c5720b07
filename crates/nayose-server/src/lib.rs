//! The management body's server node for nayose/2: epoch build and QUIC service.
//!
//! - [`build_epoch`] (`nayose server build [--new-key-period]`): registry CSV → a new epoch,
//!   evaluating only the numbers added since the previous epoch of the key period, with its
//!   table digest and delta, published atomically ([`build`] documents the diff and the
//!   crash-safe publication protocol).
//! - [`Server::start`] (`nayose server serve`): the nayose/2 service over QUIC with mutual TLS
//!   and no session resumption: Info, Evaluate, FetchBase (resumable base) and FetchDelta (kept
//!   deltas); both quotas ([`ClientLimits`]); an audit log ([`audit`]); epoch and key period
//!   pickup without restart; graceful shutdown and status lines. The per-request decision is an
//!   I/O-free core (`decide`), the service only drives it.
//! - [`verify_audit`] (`nayose server audit verify`), [`rotate_audit`] (`audit rotate`),
//!   [`check_current_epoch`] and [`rotate_label_master_key`].
//! - [`ServerConfig`] (`server.toml`) and [`AccreditedClients`] (`clients.toml`: the accredited
//!   entities, the certificates that act for each, their quotas and enumeration controls).
//!
//! nayose/2 invariants kept by this crate (protocol-spec/table.md §4–§9, flows.md §5):
//! - **Key periods.** One VOPRF key per key period, generated only by a build that starts one
//!   (no epoch yet, or `new_key_period`); never reused. Its id is
//!   `KeyPeriodId::new(number, pkS)`. K_L is fixed within a key period: a rotation takes effect
//!   with the next new key period, and a build of the current key period after a rotation is
//!   refused.
//! - **Epochs.** u32 numbers, strictly increasing across key periods, never reused (the greatest
//!   number ever allocated + 1). Within a key period an entry's tag and label key never change;
//!   its version is the epoch in which it was added or last relabelled; the table is sorted by
//!   tag with unique tags, and its digest is computed once at build and re-checked at load.
//! - **Deltas.** The delta of epoch e against its previous epoch p holds exactly the tags of p
//!   absent from e and the entries of e whose version is e; applying the kept deltas after a to
//!   a client's state of epoch a gives exactly the base of the current epoch.
//!   `oldest_delta_base` is the least a of the current key period such that every delta after
//!   a is kept. A new key period has no delta.
//! - **Service.** Every request is answered against one snapshot (key period, epoch, table,
//!   digest, kept deltas); a request naming another key period gets `KeyPeriodChanged`, a
//!   FetchBase naming another epoch `EpochChanged`, both with the current state, with no grace
//!   period. Labels are computed per request for the connection's authenticated client id only,
//!   under the versioned pad, never stored.
//! - **Files.** Secrets (skS, K_L, label keys, and the numbers of the index) live in owner-only
//!   files and zeroizing memory and are never logged; every file the server replaces is
//!   replaced atomically; every answer is audited durably before it is sent; both quotas are
//!   charged durably before an evaluation. Time comes from a [`Clock`], so quotas can be tested
//!   without waiting.
//!
//! The data directory layout is in [`layout`].

mod announce;
pub mod audit;
pub mod build;
mod clock;
mod config;
mod entities;
mod epoch;
mod error;
mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
mod keys;
pub mod layout;
mod metrics;
mod person_map;
mod pgstate;
mod quota;
mod safety;
mod service;
mod stats;
mod tls;

pub use announce::{
    AnnounceReport, DEFAULT_VALID_DAYS, announce, keygen_announce, public_key_path,
    read_signing_key,
};
pub use audit::{
    AuditAnchor, AuditHead, AuditKey, AuditRecord, AuditRotation, AuditSummary, VerifyOptions,
    anchor_audit, read_anchors, rotate_audit, verify_audit, verify_audit_anchored,
    verify_audit_opts, verify_audit_with,
};
pub use build::{
    BuildOptions, BuildProgress, BuildReport, ColumnSpec, Conflict, DEFAULT_DELTA_HISTORY,
    EncodingChoice, FailPoint, PhaseTimes, ProgressFn, build_epoch,
};
pub use clock::{Clock, ManualClock, SystemClock};
/// Removes the temporary files of this process's row reports (for a process being stopped by a
/// signal, where destructors do not run).
pub use nayose_csv::abandon_temp_files;

/// The current time in RFC 3339 UTC, as audit records and anchors write it.
pub fn rfc3339_now() -> String {
    clock::rfc3339(std::time::SystemTime::now())
}
pub use config::{
    AccreditedClients, CertificateName, ClientEntry, ClientLimits, DEFAULT_AUDIT_ROTATE_BYTES,
    DEFAULT_ENUMERATION_WINDOW_DAYS, DEFAULT_KEY_PERIOD_QUOTA_DAYS, DEFAULT_LISTEN, EntityEntry,
    PostgresSetting, Presented, ServerConfig,
};
pub use epoch::{EpochSummary, Manifest};
pub use error::ServerError;
pub use keys::{RotationReport, rotate_label_master_key};
pub use pgstate::{export_audit_postgres, postgres_quota_used};
pub use safety::check_current_epoch;
pub use service::{RunningServer, Server};
pub use stats::ClientCounters;
pub use tls::{POST_QUANTUM_KEY_EXCHANGE, tls_crypto_provider};
