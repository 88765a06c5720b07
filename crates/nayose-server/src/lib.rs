//! The management body's server node: epoch build and QUIC service.
//!
//! - [`build_epoch`] (`nayose server build`): registry CSV → a new epoch, published atomically
//!   ([`build`] documents the crash-safe publication protocol).
//! - [`Server::start`] (`nayose server serve`): the nayose/1 service over QUIC with mutual TLS,
//!   quotas ([`quota`]), an audit log ([`audit`]), epoch pickup without restart, graceful
//!   shutdown and status lines.
//! - [`verify_audit`] (`nayose server audit verify`) and [`rotate_label_master_key`].
//! - [`ServerConfig`] (`server.toml`) and [`AccreditedClients`] (`clients.toml`).
//!
//! The data directory layout is in [`layout`]. Invariants across the crate: secrets (skS, K_L,
//! label keys) live in owner-only files and zeroizing memory and are never logged; every file
//! the server replaces is replaced atomically; every answer is audited durably before it is
//! sent. Time comes from a [`Clock`], so quotas can be tested without waiting.

pub mod audit;
pub mod build;
mod clock;
mod config;
mod epoch;
mod error;
mod fsutil;
mod keys;
pub mod layout;
pub mod quota;
mod service;
mod stats;
mod tls;

pub use audit::{AuditHead, AuditRecord, AuditSummary, verify_audit};
pub use build::{
    BuildOptions, BuildProgress, BuildReport, Conflict, EncodingChoice, FailPoint, PhaseTimes,
    ProgressFn, build_epoch,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{AccreditedClients, ClientEntry, DEFAULT_LISTEN, ServerConfig};
pub use epoch::{EpochSummary, Manifest, check_current_epoch};
pub use error::ServerError;
pub use keys::{RotationReport, rotate_label_master_key};
pub use service::{RunningServer, Server};
pub use stats::ClientCounters;
