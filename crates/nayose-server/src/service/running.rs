//! The running server's handle: addresses, state for tests and status, graceful shutdown.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nayose_wire::CloseCode;
use quinn::VarInt;
use tracing::{info, warn};

use crate::audit::AuditHead;
use crate::error::ServerError;
use crate::stats::ClientCounters;

use super::RunningServer;

impl RunningServer {
    /// The bound UDP address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound address of the metrics endpoint (`metrics_listen`), if it is on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The current epoch and key period, `<epoch> (key period <number>-<key check>)`.
    pub fn epoch_id(&self) -> String {
        let e = self.shared.epoch();
        format!("{} (key period {})", e.number(), e.key_period())
    }

    /// The current epoch number.
    pub fn epoch(&self) -> u32 {
        self.shared.epoch().number()
    }

    /// The current key period id as displayed, `<number>-<key check>`.
    pub fn key_period(&self) -> String {
        self.shared.epoch().key_period().to_string()
    }

    /// The least epoch a FetchDelta can start from now.
    pub fn oldest_delta_base(&self) -> u32 {
        self.shared.epoch().oldest_delta_base()
    }

    /// The epochs held in memory: the current one first, then any previous epoch that requests
    /// started on it still hold. A previous epoch is destroyed (its table and person maps
    /// unmapped, its keys zeroized) as soon as it is no longer served.
    pub fn epochs_in_memory(&self) -> Vec<u32> {
        self.shared.epochs_in_memory()
    }

    /// Counters per client id since start.
    pub fn stats(&self) -> BTreeMap<String, ClientCounters> {
        self.shared.stats.snapshot()
    }

    /// The audit log's head (records written, last hash).
    pub fn audit_head(&self) -> AuditHead {
        self.shared.audit.head()
    }

    /// Graceful shutdown: stops accepting connections, answers new requests with
    /// `ShuttingDown`, waits up to `shutdown_grace_ms` for in-flight requests to finish, then
    /// closes every connection with `CloseCode::ShuttingDown`. Idempotent.
    pub async fn shutdown(&self) {
        if self.shared.shutting_down.swap(true, Ordering::SeqCst) {
            self.wait().await;
            return;
        }
        info!("shutting down: finishing in-flight requests");
        let _ = self.stop_tx.send(true);
        let grace = Duration::from_millis(self.shared.s.cfg.shutdown_grace_ms);
        let wait_idle = async {
            loop {
                let notified = self.shared.idle.notified();
                if self.shared.inflight.load(Ordering::SeqCst) == 0 {
                    break;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(grace, wait_idle).await.is_err() {
            warn!(
                inflight = self.shared.inflight.load(Ordering::SeqCst),
                "grace period over; closing connections with requests still running"
            );
        }
        let code = CloseCode::ShuttingDown;
        self.endpoint
            .close(VarInt::from_u32(code.to_u32()), code.reason());
        let _ = tokio::time::timeout(Duration::from_secs(3), self.endpoint.wait_idle()).await;
        let conns_done = async {
            loop {
                let notified = self.shared.conns_done.notified();
                if self.shared.conn_tasks.load(Ordering::SeqCst) == 0 {
                    break;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(3), conns_done).await;
        // The refusals counted since the last interval, then a last anchor of the head.
        super::refusals::flush(&self.shared).await;
        super::status::write_anchor(&self.shared).await;
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            t.abort();
        }
        let head = self.shared.audit.head();
        info!(audit_records = head.count, audit_head = %head.hash, "server stopped");
        // Nothing serves any more: another server may take the data directory.
        drop(
            self.shared
                .serve_lock
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
    }

    /// Waits until the server has been shut down (by [`RunningServer::shutdown`] from another
    /// task).
    pub async fn wait(&self) {
        let mut rx = self.done_rx.clone();
        // The sender is dropped when the stop signal arrives; then wait for the endpoint.
        while rx.changed().await.is_ok() {}
        self.endpoint.wait_idle().await;
    }

    /// Serves until SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn serve_until_signal(self) -> Result<(), ServerError> {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| ServerError::Internal(format!("cannot install SIGTERM handler: {e}")))?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                r.map_err(|e| ServerError::Internal(format!("cannot listen for SIGINT: {e}")))?;
                info!("SIGINT received");
            }
            _ = term.recv() => info!("SIGTERM received"),
        }
        self.shutdown().await;
        Ok(())
    }
}
