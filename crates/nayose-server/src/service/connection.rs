//! Connections: the accept loop (with address validation), the entity the certificate acts for
//! ([`crate::entities`]: by SPKI fingerprint, by issuer + subject, or by CommonName for a
//! `[[client]]`), accreditation and the per-entity connection allowance, the connection's audit
//! records, and the loop that hands each bidirectional stream to [`super::requests`].
//!
//! Invariant: everything per client (connections, request slots, quotas, labels, audit
//! records) is keyed by the **entity id** derived here, never by a certificate's name; two
//! certificates of one entity share all of it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nayose_table::ClientId;
use nayose_wire::{CloseCode, ErrorCode};
use quinn::VarInt;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::audit::AuditEntry;
use crate::config::Presented;
use crate::stats::ClientCounters;

use super::frames::{err_resp, read_request, write_frame};
use super::refusals::refused;
use super::requests::handle_stream;
use super::{Shared, audit, ms_since};

pub(super) async fn accept_loop(
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => i,
            _ = stop.changed() => break,
        };
        let Some(incoming) = incoming else { break };
        if shared.is_shutting_down() {
            incoming.refuse();
            continue;
        }
        // Address validation (security.md, denial of service): a client must echo a Retry
        // token before the server spends a TLS handshake on it, so spoofed source addresses
        // cannot make the server do work or amplify traffic. Costs one round trip per connection.
        if !incoming.remote_address_validated() && incoming.may_retry() {
            if let Err(e) = incoming.retry() {
                e.into_incoming().ignore();
            }
            continue;
        }
        // Peers whose connections keep failing or being refused are refused before the
        // handshake, the costly part (see [`super::limits`]).
        let peer = incoming.remote_address();
        if !shared.limiter.address_allowed(peer.ip()) {
            debug!(%peer, "refusing a connection before the handshake: too many failures from this address");
            rate_limited(&shared, peer, "", "");
            incoming.refuse();
            continue;
        }
        tokio::spawn(handle_connection(shared.clone(), incoming, stop.clone()));
    }
    debug!("accept loop ended");
}

/// Counts a running connection task (so shutdown can wait for its final audit record).
pub(super) struct ConnTaskGuard(Arc<Shared>);

impl ConnTaskGuard {
    fn new(s: Arc<Shared>) -> Self {
        s.conn_tasks.fetch_add(1, Ordering::SeqCst);
        ConnTaskGuard(s)
    }
}

impl Drop for ConnTaskGuard {
    fn drop(&mut self) {
        if self.0.conn_tasks.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.conns_done.notify_waiters();
        }
    }
}

/// Removes a connection from its client's count when dropped.
pub(super) struct ConnGuard {
    pub(super) shared: Arc<Shared>,
    pub(super) client: ClientId,
    pub(super) conn_id: u64,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.shared
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.conn_id);
        let mut m = self.shared.conns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.client);
            }
        }
    }
}

pub(super) fn close(conn: &quinn::Connection, code: CloseCode) {
    conn.close(VarInt::from_u32(code.to_u32()), code.reason());
}

/// The verified end-entity certificate of the peer (DER).
pub(super) fn peer_leaf(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.peer_identity()
        .and_then(|id| {
            id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .and_then(|certs| certs.first().map(|c| c.as_ref().to_vec()))
}

/// What the server knows of the peer's verified certificate, or why nothing could be read.
pub(super) fn presented_of(shared: &Shared, leaf: Option<&[u8]>) -> Result<Presented, String> {
    let leaf = leaf.ok_or("no client certificate")?;
    Presented::of(leaf, &shared.client_cas)
}

/// Who a certificate is, for records made before accreditation is decided: the entity it acts
/// for, else the CommonName it claims (empty if neither).
fn entity_for_record(shared: &Shared, leaf: Option<&[u8]>) -> String {
    let Ok(p) = presented_of(shared, leaf) else {
        return String::new();
    };
    match shared.clients().resolve(&p) {
        Ok((id, _)) => id.to_string(),
        Err(_) => p.identity.common_name.unwrap_or_default(),
    }
}

/// "serial <hex>, issuer <DN>" of a certificate, for the `connected` audit record.
pub(super) fn serial_and_issuer(leaf: &[u8]) -> String {
    match x509_parser::parse_x509_certificate(leaf) {
        Ok((_, c)) => format!(
            "serial {}, issuer {}",
            c.tbs_certificate.raw_serial_as_string(),
            c.issuer()
        ),
        Err(_) => String::new(),
    }
}

pub(super) async fn handle_connection(
    shared: Arc<Shared>,
    incoming: quinn::Incoming,
    stop: watch::Receiver<bool>,
) {
    let _task = ConnTaskGuard::new(shared.clone());
    let peer = incoming.remote_address();
    let started = Instant::now();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            match crate::tls::key_exchange_refusal(&e, shared.s.cfg.allow_classical_key_exchange) {
                Some(why) => warn!(%peer, "{why}"),
                None => {
                    info!(%peer, "connection refused during the handshake: {}", close_outcome(&e))
                }
            }
            shared.limiter.failed(peer.ip(), "");
            shared.metrics.error("HandshakeFailed");
            refused(
                &shared,
                &AuditEntry {
                    event: "handshake_failed".into(),
                    peer: peer.to_string(),
                    outcome: "HandshakeFailed".into(),
                    ..AuditEntry::default()
                },
            );
            return;
        }
    };
    let leaf = peer_leaf(&conn);
    let cert_sha256 = leaf
        .as_deref()
        .map(|l| hex::encode(Sha256::digest(l).as_slice()))
        .unwrap_or_default();
    let conn_id = conn.stable_id() as u64;
    let event = |event: &str, client: &str, outcome: &str, detail: String| AuditEntry {
        event: event.to_string(),
        client: client.to_string(),
        cert_sha256: cert_sha256.clone(),
        peer: peer.to_string(),
        conn: conn_id,
        outcome: outcome.to_string(),
        detail,
        ..AuditEntry::default()
    };
    if !shared.limiter.certificate_allowed(&cert_sha256) {
        debug!(%peer, "closing a connection: too many failures with this certificate");
        shared.limiter.failed(peer.ip(), &cert_sha256);
        let client = entity_for_record(&shared, leaf.as_deref());
        rate_limited(&shared, peer, &client, &cert_sha256);
        close(&conn, CloseCode::NotAccredited);
        return;
    }
    let presented = match presented_of(&shared, leaf.as_deref()) {
        Ok(p) => Arc::new(p),
        Err(reason) => {
            let why = format!("the client certificate could not be read: {reason}");
            refuse_not_accredited(
                &shared,
                &conn,
                "",
                &why,
                event("refused", "", "NotAccredited", why.clone()),
            )
            .await;
            return;
        }
    };
    let client = match shared.clients().resolve(&presented) {
        Ok((c, _)) => c,
        Err(why) => {
            // The record names the CommonName the certificate claims (no entity was derived).
            let name = presented.identity.common_name.clone().unwrap_or_default();
            refuse_not_accredited(
                &shared,
                &conn,
                &name,
                &why,
                event("refused", &name, "NotAccredited", why.clone()),
            )
            .await;
            return;
        }
    };
    let over = {
        let mut m = shared.conns.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(client.clone()).or_insert(0);
        if *n >= shared.s.cfg.max_connections_per_client {
            true
        } else {
            *n += 1;
            false
        }
    };
    if over {
        warn!(%peer, client = %client, "refusing a connection over the client's allowance");
        let detail = format!(
            "the client already has {} connections",
            shared.s.cfg.max_connections_per_client
        );
        shared.limiter.failed(peer.ip(), &cert_sha256);
        refused(
            &shared,
            &event("refused", client.as_str(), "TooManyConnections", detail),
        );
        shared.stats.record(
            client.as_str(),
            ClientCounters {
                errors: 1,
                ..ClientCounters::default()
            },
        );
        shared.metrics.error("TooManyConnections");
        close(&conn, CloseCode::TooManyConnections);
        return;
    }
    let _guard = ConnGuard {
        shared: shared.clone(),
        client: client.clone(),
        conn_id,
    };
    shared
        .live
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(conn_id, (client.clone(), presented.clone(), conn.clone()));
    info!(%peer, entity = %client, "client connected");
    let detail = format!(
        "{}, SPKI SHA-256 {}",
        leaf.as_deref().map(serial_and_issuer).unwrap_or_default(),
        presented.identity.spki_sha256
    );
    if let Err(e) = audit(&shared, event("connected", client.as_str(), "ok", detail)).await {
        error!("cannot write the audit log; closing the connection: {e}");
        close(&conn, CloseCode::Internal);
        return;
    }
    let ctx = Arc::new(ConnCtx {
        client: client.clone(),
        presented,
        conn: conn.clone(),
        peer,
        conn_id,
        cert_sha256: cert_sha256.clone(),
        requests: AtomicU64::new(0),
    });
    let mut stop = stop;
    loop {
        let stream = tokio::select! {
            s = conn.accept_bi() => s,
            r = conn.accept_uni() => {
                if r.is_ok() {
                    close(&conn, CloseCode::ProtocolViolation);
                }
                break;
            }
            _ = stop.changed(), if !*stop.borrow() => continue,
        };
        match stream {
            Ok((send, recv)) => {
                ctx.requests.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(handle_stream(shared.clone(), ctx.clone(), send, recv));
            }
            Err(e) => {
                debug!(client = %ctx.client, "connection ended: {}", close_outcome(&e));
                break;
            }
        }
    }
    let reason = conn
        .close_reason()
        .map_or_else(|| "closed".to_string(), |r| close_outcome(&r));
    let mut rec = event(
        "closed",
        client.as_str(),
        &reason,
        format!("{} requests", ctx.requests.load(Ordering::SeqCst)),
    );
    rec.duration_ms = ms_since(started);
    let _ = audit(&shared, rec).await;
}

/// How a connection ended, for its `closed` audit record and the log: only codes and lengths.
/// The peer's close reason is free text it chose (a client once closed with a patient's number
/// as the reason), so it never enters a record or a log line.
pub(super) fn close_outcome(e: &quinn::ConnectionError) -> String {
    use quinn::ConnectionError as E;
    match e {
        E::ApplicationClosed(c) => format!(
            "closed by peer: code {} (reason of {} bytes not recorded)",
            c.error_code,
            c.reason.len()
        ),
        E::ConnectionClosed(c) => format!(
            "aborted by peer: {} (reason of {} bytes not recorded)",
            c.error_code,
            c.reason.len()
        ),
        E::TransportError(t) => format!("transport error {}", t.code),
        E::VersionMismatch => "version mismatch".into(),
        E::Reset => "reset by peer".into(),
        E::TimedOut => "timed out".into(),
        E::LocallyClosed => "closed".into(),
        E::CidsExhausted => "CIDs exhausted".into(),
    }
}

/// wire.md §2.4: answer the first request with `NotAccredited` (or wait the request timeout),
/// then close the connection with `CloseCode::NotAccredited`.
pub(super) async fn refuse_not_accredited(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    client: &str,
    why: &str,
    record: AuditEntry,
) {
    warn!(peer = %conn.remote_address(), "refusing: {why}");
    shared
        .limiter
        .failed(conn.remote_address().ip(), &record.cert_sha256);
    shared.metrics.error("NotAccredited");
    shared.stats.record(
        client,
        ClientCounters {
            errors: 1,
            ..ClientCounters::default()
        },
    );
    refused(shared, &record);
    let timeout = Duration::from_millis(shared.s.cfg.request_timeout_ms);
    if let Ok(Ok((mut send, mut recv))) = tokio::time::timeout(timeout, conn.accept_bi()).await {
        let mut n = 0;
        let _ = tokio::time::timeout(timeout, read_request(&mut recv, &mut n)).await;
        let mut out = 0;
        let deadline = Duration::from_millis(shared.s.cfg.write_timeout_ms);
        if write_frame(
            &mut send,
            &err_resp(ErrorCode::NotAccredited, why),
            &mut out,
            deadline,
        )
        .await
        .is_ok()
        {
            let _ = send.finish();
            let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
        }
    }
    close(conn, CloseCode::NotAccredited);
}

/// Counts a connection refused for too many failures (of its address or certificate).
fn rate_limited(shared: &Shared, peer: SocketAddr, client: &str, cert_sha256: &str) {
    shared.metrics.error("RateLimited");
    refused(
        shared,
        &AuditEntry {
            event: "refused".into(),
            client: client.to_string(),
            cert_sha256: cert_sha256.to_string(),
            peer: peer.to_string(),
            outcome: "RateLimited".into(),
            ..AuditEntry::default()
        },
    );
}

pub(super) struct ConnCtx {
    /// The entity the certificate acts for (derived at the handshake).
    pub(super) client: ClientId,
    /// The certificate, re-resolved against `clients.toml` on every request.
    pub(super) presented: Arc<Presented>,
    pub(super) conn: quinn::Connection,
    pub(super) peer: SocketAddr,
    pub(super) conn_id: u64,
    pub(super) cert_sha256: String,
    pub(super) requests: AtomicU64,
}
