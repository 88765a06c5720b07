//! The periodic status log lines (epoch, connections, audit head, per-client counters).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{error, info};

use super::Shared;
use super::state::AuditStore;
use crate::audit::AuditAnchor;
use crate::error::ServerError;

pub(super) async fn status_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_secs(shared.s.cfg.status_interval_secs);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        let interval = shared.stats.take_interval();
        let conns: u32 = shared
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum();
        let head = shared.audit.head();
        let in_memory = shared.epochs_in_memory();
        if in_memory.len() > 1 {
            info!(
                epochs = ?&in_memory[1..],
                "previous epochs still held by running downloads; destroyed when they end"
            );
        }
        info!(
            epoch = shared.epoch().number(),
            key_period = %shared.epoch().key_period(),
            connections = conns,
            audit_records = head.count,
            audit_head = %head.hash,
            "status"
        );
        super::enumeration::status_lines(&shared, &shared.epoch().key_period().to_string());
        for (client, c) in interval {
            info!(
                client = %client,
                requests = c.requests,
                evaluations = c.evaluations,
                entries = c.entries,
                bytes_in = c.bytes_in,
                bytes_out = c.bytes_out,
                errors = c.errors,
                "status per client (last interval)"
            );
        }
    }
}

/// Appends the audit chain's head to `audit_anchor_file` every `audit_anchor_interval_secs`
/// (and, through [`write_anchor`], once more at shutdown).
pub(super) async fn anchor_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_secs(shared.s.cfg.audit_anchor_interval_secs);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        write_anchor(&shared).await;
    }
}

/// Appends the current head to `audit_anchor_file`, if one is set; failures are logged.
pub(super) async fn write_anchor(shared: &Arc<Shared>) {
    let Some(path) = shared.s.cfg.audit_anchor_file.clone() else {
        return;
    };
    let time = crate::clock::rfc3339(shared.clock.now());
    let r = match &shared.audit {
        AuditStore::File(log) => {
            let log = log.clone();
            tokio::task::spawn_blocking(move || log.anchor(&path, time))
                .await
                .map_err(|e| ServerError::Internal(format!("audit anchor task failed: {e}")))
                .and_then(|r| r)
        }
        // The shared chain's head now (every replica's records).
        AuditStore::Postgres(pg) => match pg.head().await {
            Ok(head) => {
                let a = AuditAnchor {
                    time,
                    seq: head.count,
                    link: head.hash,
                    key_id: pg.key_id(),
                };
                tokio::task::spawn_blocking(move || {
                    crate::audit::append_anchor(&path, &a).map(|()| a)
                })
                .await
                .map_err(|e| ServerError::Internal(format!("audit anchor task failed: {e}")))
                .and_then(|r| r)
            }
            Err(e) => Err(e),
        },
    };
    match r {
        Ok(a) => info!(seq = a.seq, link = %a.link, "audit head anchored"),
        Err(e) => error!("cannot write the audit anchor: {e}"),
    }
}
