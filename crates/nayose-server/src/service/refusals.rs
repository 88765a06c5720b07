//! Aggregated audit records of refused and failed requests and connections (issue 11 item 3).
//!
//! A request answered with an Error (no data leaves the server), a request that timed out, and a
//! refused or failed connection are not written one record each: they are counted per (event,
//! client, source address, request kind, outcome) and written as one `refusals` record per key
//! every `audit_refusal_interval_secs` and at shutdown, with the count in `count`. So a client
//! that sends refused requests as fast as it can adds at most one record per key and interval,
//! and never an fsync per request. The map holds at most [`MAX_KEYS`] keys per interval; further
//! keys are counted under one overflow key. Every request answered with data keeps its own
//! record, durable before the answer.
//!
//! What is lost: the refusals of the current interval if the server is killed (a clean
//! shutdown writes them).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tracing::error;

use crate::audit::AuditEntry;
use crate::clock::rfc3339;

use super::{Shared, audit};

/// Most distinct keys per interval before further refusals go under the overflow key.
pub(super) const MAX_KEYS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    event: String,
    client: String,
    peer: String,
    op: String,
    outcome: String,
}

#[derive(Debug, Clone)]
struct Agg {
    count: u64,
    cert_sha256: String,
    first: String,
}

/// The counts of the current interval.
#[derive(Default)]
pub(super) struct Refusals {
    map: Mutex<BTreeMap<Key, Agg>>,
}

impl Refusals {
    /// Counts one refusal described by `e` (its event, client, peer, op and outcome; the peer is
    /// reduced to its IP address, so new source ports do not make new keys).
    pub(super) fn count(&self, time: String, e: &AuditEntry) {
        let peer = e
            .peer
            .parse::<SocketAddr>()
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|_| e.peer.clone());
        let mut key = Key {
            event: e.event.clone(),
            client: e.client.clone(),
            peer,
            op: e.op.clone(),
            outcome: e.outcome.clone(),
        };
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_KEYS && !m.contains_key(&key) {
            key = Key {
                event: "overflow".into(),
                client: String::new(),
                peer: String::new(),
                op: String::new(),
                outcome: "refused".into(),
            };
        }
        let a = m.entry(key).or_insert_with(|| Agg {
            count: 0,
            cert_sha256: e.cert_sha256.clone(),
            first: time,
        });
        a.count += 1;
        if a.cert_sha256 != e.cert_sha256 {
            // Several certificates under one key: the record names none.
            a.cert_sha256 = "several".into();
        }
    }

    fn take(&self) -> BTreeMap<Key, Agg> {
        std::mem::take(&mut *self.map.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Counts a refusal (see [`Refusals::count`]).
pub(super) fn refused(shared: &Shared, e: &AuditEntry) {
    shared.refusals.count(rfc3339(shared.clock.now()), e);
}

/// Writes one `refusals` record per key counted since the last flush.
pub(super) async fn flush(shared: &Arc<Shared>) {
    for (k, a) in shared.refusals.take() {
        let detail = format!("{} x {} since {}", a.count, k.event, a.first);
        let rec = AuditEntry {
            event: "refusals".into(),
            client: k.client,
            cert_sha256: if a.cert_sha256 == "several" {
                String::new()
            } else {
                a.cert_sha256
            },
            peer: k.peer,
            op: k.op,
            outcome: k.outcome,
            count: Some(a.count),
            detail,
            ..AuditEntry::default()
        };
        if let Err(e) = audit(shared, rec).await {
            error!("cannot write the aggregated refusals to the audit log: {e}");
        }
    }
}

/// Flushes every `audit_refusal_interval_secs` until stopped.
pub(super) async fn flush_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_secs(shared.s.cfg.audit_refusal_interval_secs);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        flush(&shared).await;
    }
}
