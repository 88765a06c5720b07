//! Where the quotas and the audit log live: the files of the data directory (one server, the
//! default) or PostgreSQL (replicas sharing them, [`crate::pgstate`]).
//!
//! The two differ in when an Evaluate is charged. Files: before the evaluation, under the
//! quota book's lock, persisted by one atomic file replacement; refunded if nothing was
//! evaluated or the audit record cannot be written. PostgreSQL: after the evaluation, in the
//! transaction that writes its audit record, before the answer; a failed evaluation or audit
//! write charges nothing, so there is nothing to refund. Both: an answer with evaluated
//! elements never leaves uncharged, and the quotas are never overdrawn.

use std::sync::Arc;

use crate::audit::{AuditHead, AuditLog};
use crate::pgstate::PgState;
use crate::quota::QuotaBook;

/// The quota book.
pub(super) enum QuotaStore {
    /// `state/quota.json`.
    File(Arc<QuotaBook>),
    /// The `nayose_quota` table.
    Postgres(Arc<PgState>),
}

/// The audit log.
pub(super) enum AuditStore {
    /// `audit/audit.log` and `audit/audit.head`.
    File(Arc<AuditLog>),
    /// The `nayose_audit` chain.
    Postgres(Arc<PgState>),
}

impl AuditStore {
    /// The head: the file's, or the shared chain's as this replica last saw it.
    pub(super) fn head(&self) -> AuditHead {
        match self {
            AuditStore::File(l) => l.head(),
            AuditStore::Postgres(p) => p.cached_head(),
        }
    }
}
