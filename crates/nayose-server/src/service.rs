//! The QUIC service: connections, request streams, and the four requests of nayose/1.
//!
//! Per connection: TLS (see [`crate::tls`]) verified the client certificate; the client id is
//! its subject CommonName (`nayose_pki::client_id_of`); a client not in `clients.toml` is closed
//! with `CloseCode::NotAccredited`, one over its connection allowance with
//! `CloseCode::TooManyConnections`. Each bidirectional stream carries one request frame (then
//! FIN) and gets one response (FetchAll: chunks then TableEnd, or an Error), then FIN.
//!
//! Per request, in order: read the frame within `request_timeout_ms` (oversize header →
//! `FrameTooLarge` without reading the payload; undecodable → the codec's error code); refuse
//! with `ShuttingDown` during shutdown and `Busy` when `max_concurrent_requests` are running;
//! take the current epoch (the request finishes against it even if a new one is published
//! meanwhile) and refuse a request naming another epoch with `EpochChanged`; check limits and
//! quota; compute; append the audit record (durably); send.
//!
//! Invariants: no answer leaves before its audit record is on disk (if the audit log cannot be
//! written the client gets `Internal`); quota is debited on disk before evaluating; nothing
//! secret (keys, label keys, person ids) and nothing client-private (elements, tags, labels)
//! is logged.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use nayose_table::{ClientId, TagPrefix};
use nayose_wire::{
    CloseCode, ElementBatch, EntryList, EpochId as WireEpochId, ErrorCode, ErrorResponse,
    EvaluateResponse, FRAME_HEADER_LEN, InfoResponse, MAX_ENTRIES_PER_CHUNK, Proof, PublicKeyBytes,
    RangeResponse, Request, Response, StreamCode, TableChunk, TableEnd, WireError, decode_request,
    encode_response_frame, frame_len,
};
use quinn::VarInt;
use tokio::sync::{Notify, Semaphore, watch};
use tracing::{debug, error, info, warn};

use crate::audit::{AuditEntry, AuditHead, AuditLog};
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::config::{AccreditedClients, ServerConfig};
use crate::epoch::{Epoch, read_current};
use crate::error::ServerError;
use crate::layout::DataDir;
use crate::quota::QuotaBook;
use crate::stats::{ClientCounters, Stats};

/// Settings resolved from [`ServerConfig`] (all required paths present).
struct Settings {
    cfg: ServerConfig,
    data: DataDir,
}

struct Shared {
    s: Settings,
    clients: AccreditedClients,
    epoch: RwLock<Arc<Epoch>>,
    quota: QuotaBook,
    audit: AuditLog,
    stats: Stats,
    clock: Arc<dyn Clock>,
    conns: Mutex<HashMap<ClientId, u32>>,
    busy: Semaphore,
    inflight: AtomicUsize,
    idle: Notify,
    shutting_down: AtomicBool,
}

impl Shared {
    fn epoch(&self) -> Arc<Epoch> {
        self.epoch.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

/// Counts a running request; wakes the shutdown waiter when the last one ends.
struct InflightGuard<'a>(&'a Shared);

impl<'a> InflightGuard<'a> {
    fn new(s: &'a Shared) -> Self {
        s.inflight.fetch_add(1, Ordering::SeqCst);
        InflightGuard(s)
    }
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The server node's entry point.
#[derive(Debug, Clone, Copy)]
pub struct Server;

/// A running server: its address, metrics, and graceful shutdown.
pub struct RunningServer {
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    stop_tx: watch::Sender<bool>,
    done_rx: watch::Receiver<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

fn require<T: Clone>(
    v: &Option<T>,
    setting: &'static str,
    flag: &'static str,
) -> Result<T, ServerError> {
    v.clone()
        .ok_or(ServerError::MissingSetting { setting, flag })
}

impl Server {
    /// Starts the server with the system clock. See [`Server::start_with_clock`].
    pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Loads the current epoch, the accredited clients, the quota book and the audit log,
    /// binds the QUIC endpoint and starts serving. Must be called inside a multi-threaded tokio
    /// runtime. `clock` is the time source of quotas and audit records.
    pub async fn start_with_clock(
        config: ServerConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<RunningServer, ServerError> {
        config.validate()?;
        let data_dir = require(&config.data_dir, "data_dir", "--data-dir")?;
        let cert = require(&config.cert, "cert", "--cert")?;
        let key = require(&config.key, "key", "--key")?;
        let client_ca = require(&config.client_ca, "client_ca", "--client-ca")?;
        let clients_path = require(&config.clients, "clients", "--clients")?;
        let listen = config.listen_addr();

        let clients = AccreditedClients::load(&clients_path)?;
        if clients.is_empty() {
            warn!(path = %clients_path.display(), "no accredited client: every connection will be refused");
        }
        let tls = crate::tls::server_config(&cert, &key, &client_ca)?;
        let data = DataDir::new(&data_dir);
        let k = config.k_anon.then_some(config.min_range_entries);
        let (data2, epoch) = {
            let data = data.clone();
            tokio::task::spawn_blocking(move || {
                let e = Epoch::load_current(&data, k);
                (data, e)
            })
            .await
            .map_err(|e| ServerError::Internal(format!("epoch loading task failed: {e}")))?
        };
        let epoch = epoch?;
        let data = data2;
        crate::fsutil::create_dir_private(&data.state())?;
        let quota = QuotaBook::open(data.quota(), config.quota_utc_offset_minutes)?;
        let audit = AuditLog::open(&data)?;

        let quic_crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| {
            ServerError::Tls {
                path: cert.clone(),
                reason: format!("cannot be used for QUIC: {e}"),
            }
        })?;
        let mut transport = quinn::TransportConfig::default();
        transport.max_concurrent_bidi_streams(VarInt::from_u32(config.max_concurrent_streams));
        transport.max_concurrent_uni_streams(VarInt::from_u32(0));
        transport.max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(Duration::from_millis(config.idle_timeout_ms)).map_err(
                |e| ServerError::Config {
                    path: "server.toml".into(),
                    reason: format!("idle_timeout_ms: {e}"),
                },
            )?,
        ));
        let mut qcfg = quinn::ServerConfig::with_crypto(Arc::new(quic_crypto));
        qcfg.transport_config(Arc::new(transport));
        qcfg.migration(false);
        let endpoint = quinn::Endpoint::server(qcfg, listen).map_err(|e| ServerError::Listen {
            addr: listen,
            reason: e.to_string(),
        })?;
        let local_addr = endpoint.local_addr().map_err(|e| ServerError::Listen {
            addr: listen,
            reason: e.to_string(),
        })?;
        info!(
            addr = %local_addr,
            epoch = %epoch.id(),
            entries = epoch.len(),
            k_anon_max_prefix_bits = ?epoch.max_prefix_bits(),
            clients = clients.len(),
            "nayose server listening"
        );

        let shared = Arc::new(Shared {
            busy: Semaphore::new(config.max_concurrent_requests as usize),
            s: Settings { cfg: config, data },
            clients,
            epoch: RwLock::new(Arc::new(epoch)),
            quota,
            audit,
            stats: Stats::default(),
            clock,
            conns: Mutex::new(HashMap::new()),
            inflight: AtomicUsize::new(0),
            idle: Notify::new(),
            shutting_down: AtomicBool::new(false),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(accept_loop(
            shared.clone(),
            endpoint.clone(),
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(epoch_watcher(shared.clone(), stop_rx.clone())));
        if shared.s.cfg.status_interval_secs > 0 {
            tasks.push(tokio::spawn(status_loop(shared.clone(), stop_rx.clone())));
        }
        // Keep the done channel open until shutdown completes.
        tasks.push(tokio::spawn(async move {
            let mut rx = stop_rx;
            while !*rx.borrow() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
            drop(done_tx);
        }));
        Ok(RunningServer {
            shared,
            endpoint,
            local_addr,
            stop_tx,
            done_rx,
            tasks: Mutex::new(tasks),
        })
    }
}

impl RunningServer {
    /// The bound UDP address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The current epoch id, `<number>-<key check>`.
    pub fn epoch_id(&self) -> String {
        self.shared.epoch().id().to_string()
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
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            t.abort();
        }
        let head = self.shared.audit.head();
        info!(audit_records = head.count, audit_head = %head.hash, "server stopped");
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

async fn accept_loop(
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
        tokio::spawn(handle_connection(shared.clone(), incoming, stop.clone()));
    }
    debug!("accept loop ended");
}

async fn epoch_watcher(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_millis(shared.s.cfg.epoch_poll_ms);
    let mut failed: Option<String> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        let name = match read_current(&shared.s.data) {
            Ok(Some(n)) => n,
            Ok(None) => continue,
            Err(e) => {
                warn!("cannot read the current epoch pointer: {e}");
                continue;
            }
        };
        if name == shared.epoch().dir_name() || failed.as_deref() == Some(name.as_str()) {
            continue;
        }
        let data = shared.s.data.clone();
        let k = shared
            .s
            .cfg
            .k_anon
            .then_some(shared.s.cfg.min_range_entries);
        let n2 = name.clone();
        let loaded = tokio::task::spawn_blocking(move || Epoch::load(&data, &n2, k)).await;
        match loaded {
            Ok(Ok(e)) => {
                let old = shared.epoch().id();
                info!(old = %old, new = %e.id(), entries = e.len(), "new epoch is now current");
                *shared.epoch.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(e);
                failed = None;
            }
            Ok(Err(e)) => {
                error!(
                    "the published epoch {name} cannot be loaded; still serving the previous one: {e}"
                );
                failed = Some(name);
            }
            Err(e) => error!("epoch loading task failed: {e}"),
        }
    }
}

async fn status_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
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
        info!(
            epoch = %shared.epoch().id(),
            connections = conns,
            audit_records = head.count,
            audit_head = %head.hash,
            "status"
        );
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

/// Removes a connection from its client's count when dropped.
struct ConnGuard {
    shared: Arc<Shared>,
    client: ClientId,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut m = self.shared.conns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.client);
            }
        }
    }
}

fn close(conn: &quinn::Connection, code: CloseCode) {
    conn.close(VarInt::from_u32(code.to_u32()), code.reason());
}

fn client_id_of(conn: &quinn::Connection) -> Result<ClientId, String> {
    let certs = conn
        .peer_identity()
        .and_then(|id| {
            id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .ok_or("no client certificate")?;
    let leaf = certs.first().ok_or("empty client certificate chain")?;
    let id = nayose_pki::client_id_of(leaf.as_ref()).map_err(|e| e.to_string())?;
    ClientId::new(&id).map_err(|e| e.to_string())
}

async fn audit(shared: &Arc<Shared>, entry: AuditEntry) -> Result<(), ServerError> {
    let s = shared.clone();
    tokio::task::spawn_blocking(move || s.audit.append(entry))
        .await
        .map_err(|e| ServerError::Internal(format!("audit task failed: {e}")))?
        .map(|_| ())
}

async fn handle_connection(
    shared: Arc<Shared>,
    incoming: quinn::Incoming,
    stop: watch::Receiver<bool>,
) {
    let peer = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            info!(%peer, "connection refused during the handshake: {e}");
            return;
        }
    };
    let entry = |client: &str, outcome: &str| AuditEntry {
        time: rfc3339(shared.clock.now()),
        client: client.to_string(),
        peer: peer.to_string(),
        op: "Connect",
        outcome: outcome.to_string(),
        ..AuditEntry::default()
    };
    let client = match client_id_of(&conn) {
        Ok(c) => c,
        Err(reason) => {
            warn!(%peer, "refusing a certificate without a valid client id: {reason}");
            let _ = audit(&shared, entry("", "NotAccredited")).await;
            close(&conn, CloseCode::NotAccredited);
            return;
        }
    };
    let Some(limit) = shared.clients.quota_of(&client) else {
        warn!(%peer, client = %client, "refusing a client that is not accredited");
        shared.stats.record(
            client.as_str(),
            ClientCounters {
                errors: 1,
                ..ClientCounters::default()
            },
        );
        let _ = audit(&shared, entry(client.as_str(), "NotAccredited")).await;
        close(&conn, CloseCode::NotAccredited);
        return;
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
        let _ = audit(&shared, entry(client.as_str(), "TooManyConnections")).await;
        close(&conn, CloseCode::TooManyConnections);
        return;
    }
    let _guard = ConnGuard {
        shared: shared.clone(),
        client: client.clone(),
    };
    info!(%peer, client = %client, "client connected");
    let ctx = Arc::new(ConnCtx {
        client,
        limit,
        peer,
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
                tokio::spawn(handle_stream(shared.clone(), ctx.clone(), send, recv));
            }
            Err(e) => {
                debug!(client = %ctx.client, "connection ended: {e}");
                break;
            }
        }
    }
}

struct ConnCtx {
    client: ClientId,
    limit: u64,
    peer: SocketAddr,
}

enum ReadFail {
    /// The frame or message is bad: answer with this error (and stop the stream if `stop`).
    Bad(WireError, bool),
    /// The stream or connection went away; nothing to answer.
    Gone,
}

async fn read_request(
    recv: &mut quinn::RecvStream,
    bytes_in: &mut u64,
) -> Result<Request, ReadFail> {
    let mut hdr = [0u8; FRAME_HEADER_LEN];
    match recv.read_exact(&mut hdr).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(n)) => {
            return Err(ReadFail::Bad(
                WireError::IncompleteFrame { buffered: n },
                false,
            ));
        }
        Err(quinn::ReadExactError::ReadError(_)) => return Err(ReadFail::Gone),
    }
    *bytes_in += FRAME_HEADER_LEN as u64;
    let len = frame_len(hdr).map_err(|e| ReadFail::Bad(e, true))?;
    let mut payload = vec![0u8; len];
    match recv.read_exact(&mut payload).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(n)) => {
            return Err(ReadFail::Bad(
                WireError::IncompleteFrame {
                    buffered: FRAME_HEADER_LEN + n,
                },
                false,
            ));
        }
        Err(quinn::ReadExactError::ReadError(_)) => return Err(ReadFail::Gone),
    }
    *bytes_in += len as u64;
    let mut extra = [0u8; 1];
    match recv.read(&mut extra).await {
        Ok(None) => {}
        Ok(Some(n)) => {
            return Err(ReadFail::Bad(
                WireError::TrailingBytes {
                    message: "frame",
                    count: n,
                },
                true,
            ));
        }
        Err(_) => return Err(ReadFail::Gone),
    }
    decode_request(&payload).map_err(|e| ReadFail::Bad(e, false))
}

/// The outcome of one request: what to audit and what to send.
struct Answer {
    frames: Vec<Response>,
    audit: AuditEntry,
    counters: ClientCounters,
    /// For FetchAll: stream chunks of this range of the table after `frames`.
    stream: Option<(Arc<Epoch>, u64, u64)>,
}

fn err_resp(code: ErrorCode, message: &str) -> Response {
    Response::Error(ErrorResponse::new(code, message))
}

fn wire_epoch(e: &Epoch) -> WireEpochId {
    WireEpochId(e.id().to_bytes())
}

async fn write_frame(
    send: &mut quinn::SendStream,
    r: &Response,
    bytes_out: &mut u64,
) -> Result<(), ()> {
    let frame = match encode_response_frame(r) {
        Ok(f) => f,
        Err(e) => {
            error!("cannot encode a {} response: {e}", r.name());
            return Err(());
        }
    };
    send.write_all(&frame).await.map_err(|_| ())?;
    *bytes_out += frame.len() as u64;
    Ok(())
}

async fn handle_stream(
    shared: Arc<Shared>,
    ctx: Arc<ConnCtx>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let _inflight = InflightGuard::new(&shared);
    let mut counters = ClientCounters {
        requests: 1,
        ..ClientCounters::default()
    };
    let timeout = Duration::from_millis(shared.s.cfg.request_timeout_ms);
    let base = AuditEntry {
        client: ctx.client.to_string(),
        peer: ctx.peer.to_string(),
        ..AuditEntry::default()
    };
    let read = tokio::time::timeout(timeout, read_request(&mut recv, &mut counters.bytes_in)).await;
    let answer = match read {
        Err(_) => {
            debug!(client = %ctx.client, "request timed out");
            let _ = recv.stop(VarInt::from_u32(StreamCode::Timeout.to_u32()));
            let _ = send.reset(VarInt::from_u32(StreamCode::Timeout.to_u32()));
            counters.errors += 1;
            let _ = audit(
                &shared,
                AuditEntry {
                    time: rfc3339(shared.clock.now()),
                    op: "Invalid",
                    outcome: "Timeout".into(),
                    ..base
                },
            )
            .await;
            shared.stats.record(ctx.client.as_str(), counters);
            return;
        }
        Ok(Err(ReadFail::Gone)) => {
            shared.stats.record(ctx.client.as_str(), counters);
            return;
        }
        Ok(Err(ReadFail::Bad(e, stop))) => {
            if stop {
                let _ = recv.stop(VarInt::from_u32(StreamCode::BadFrame.to_u32()));
            }
            let code = e.error_code();
            debug!(client = %ctx.client, "bad request: {e}");
            Answer {
                frames: vec![err_resp(code, &e.to_string())],
                audit: AuditEntry {
                    op: "Invalid",
                    outcome: format!("{code:?}"),
                    ..base
                },
                counters,
                stream: None,
            }
        }
        Ok(Ok(req)) => {
            let mut a = AuditEntry {
                op: req.name(),
                ..base
            };
            if shared.is_shutting_down() {
                a.outcome = "ShuttingDown".into();
                Answer {
                    frames: vec![err_resp(
                        ErrorCode::ShuttingDown,
                        "server shutting down; reconnect later",
                    )],
                    audit: a,
                    counters,
                    stream: None,
                }
            } else {
                match shared.busy.try_acquire() {
                    Err(_) => {
                        a.outcome = "Busy".into();
                        let mut e =
                            ErrorResponse::new(ErrorCode::Busy, "server busy; retry shortly");
                        e.retry_after_secs = 1;
                        Answer {
                            frames: vec![Response::Error(e)],
                            audit: a,
                            counters,
                            stream: None,
                        }
                    }
                    Ok(_permit) => answer(&shared, &ctx, req, a, counters).await,
                }
            }
        }
    };
    send_answer(&shared, &ctx, send, answer).await;
}

async fn send_answer(
    shared: &Arc<Shared>,
    ctx: &ConnCtx,
    mut send: quinn::SendStream,
    mut ans: Answer,
) {
    ans.audit.time = rfc3339(shared.clock.now());
    if ans.audit.outcome.is_empty() {
        ans.audit.outcome = "ok".into();
    }
    let is_error = ans.frames.iter().any(|f| matches!(f, Response::Error(_)));
    if is_error {
        ans.counters.errors += 1;
    }
    if let Err(e) = audit(shared, ans.audit.clone()).await {
        error!("cannot write the audit log; refusing to answer: {e}");
        ans.frames = vec![err_resp(
            ErrorCode::Internal,
            "server cannot record the request; retry later",
        )];
        ans.stream = None;
        ans.counters.errors += 1;
    }
    let mut bytes_out = 0u64;
    let mut ok = true;
    for f in &ans.frames {
        if write_frame(&mut send, f, &mut bytes_out).await.is_err() {
            ok = false;
            break;
        }
    }
    if ok && let Some((epoch, offset, total)) = ans.stream.take() {
        ok = stream_table(shared, ctx, &mut send, epoch, offset, total, &mut bytes_out).await;
    }
    if ok {
        let _ = send.finish();
        let _ = tokio::time::timeout(Duration::from_secs(10), send.stopped()).await;
    }
    ans.counters.bytes_out += bytes_out;
    shared.stats.record(ctx.client.as_str(), ans.counters);
}

#[allow(clippy::too_many_arguments)]
async fn stream_table(
    shared: &Arc<Shared>,
    ctx: &ConnCtx,
    send: &mut quinn::SendStream,
    epoch: Arc<Epoch>,
    offset: u64,
    total: u64,
    bytes_out: &mut u64,
) -> bool {
    let chunk = u64::from(shared.s.cfg.fetch_chunk_entries).min(MAX_ENTRIES_PER_CHUNK as u64);
    let mut at = offset;
    while at < total {
        let end = (at + chunk).min(total);
        let e = epoch.clone();
        let client = ctx.client.clone();
        let entries = tokio::task::spawn_blocking(move || {
            e.entries_for_client(at as usize..end as usize, &client)
        })
        .await;
        let Ok(entries) = entries else { return false };
        let Ok(list) = EntryList::new(entries) else {
            return false;
        };
        let r = Response::TableChunk(TableChunk {
            epoch: wire_epoch(&epoch),
            offset: at,
            total,
            entries: list,
        });
        if write_frame(send, &r, bytes_out).await.is_err() {
            return false;
        }
        at = end;
    }
    let r = Response::TableEnd(TableEnd {
        epoch: wire_epoch(&epoch),
        total,
    });
    write_frame(send, &r, bytes_out).await.is_ok()
}

fn epoch_changed(epoch: &Epoch) -> Response {
    Response::Error(ErrorResponse::epoch_changed(
        wire_epoch(epoch),
        &format!("epoch changed: the current epoch is {}", epoch.id()),
    ))
}

async fn answer(
    shared: &Arc<Shared>,
    ctx: &Arc<ConnCtx>,
    req: Request,
    mut a: AuditEntry,
    mut counters: ClientCounters,
) -> Answer {
    let epoch = shared.epoch();
    a.epoch = epoch.id().to_string();
    let cfg = &shared.s.cfg;
    let simple = |frames: Response, a: AuditEntry, counters: ClientCounters| Answer {
        frames: vec![frames],
        audit: a,
        counters,
        stream: None,
    };
    if let Some(named) = req.epoch()
        && named.0 != epoch.id().to_bytes()
    {
        a.outcome = "EpochChanged".into();
        return simple(epoch_changed(&epoch), a, counters);
    }
    match req {
        Request::Info => {
            let q = shared
                .quota
                .status(ctx.client.as_str(), ctx.limit, shared.clock.now());
            let info = InfoResponse {
                epoch: wire_epoch(&epoch),
                public_key: PublicKeyBytes(epoch.public_key()),
                table_entries: epoch.len() as u64,
                max_prefix_bits: if cfg.k_anon {
                    epoch.max_prefix_bits()
                } else {
                    None
                },
                min_range_entries: cfg.min_range_entries,
                max_batch: cfg.max_batch,
                quota_left: q.left,
                quota_reset_secs: q.reset_secs,
            };
            simple(Response::Info(info), a, counters)
        }
        Request::Evaluate(r) => {
            let n = r.elements.len() as u64;
            a.elements = n;
            if n > u64::from(cfg.max_batch) {
                a.outcome = "BatchTooLarge".into();
                let msg = format!(
                    "batch of {n} elements; this server accepts at most {}",
                    cfg.max_batch
                );
                return simple(err_resp(ErrorCode::BatchTooLarge, &msg), a, counters);
            }
            let now = shared.clock.now();
            let s = shared.clone();
            let client = ctx.client.to_string();
            let limit = ctx.limit;
            let admitted =
                tokio::task::spawn_blocking(move || s.quota.try_consume(&client, limit, n, now))
                    .await;
            match admitted {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err(st))) => {
                    a.outcome = "QuotaExhausted".into();
                    let mut e = ErrorResponse::new(
                        ErrorCode::QuotaExhausted,
                        &format!("quota: {} left today, the request needs {n}", st.left),
                    );
                    e.retry_after_secs = st.reset_secs;
                    return simple(Response::Error(e), a, counters);
                }
                Ok(Err(e)) => {
                    error!("cannot persist the quota state: {e}");
                    a.outcome = "Internal".into();
                    return simple(
                        err_resp(
                            ErrorCode::Internal,
                            "server cannot record the quota; retry later",
                        ),
                        a,
                        counters,
                    );
                }
                Err(e) => {
                    error!("quota task failed: {e}");
                    a.outcome = "Internal".into();
                    return simple(err_resp(ErrorCode::Internal, "internal error"), a, counters);
                }
            }
            let e2 = epoch.clone();
            let arrays = r.elements.to_arrays();
            let evaluated = tokio::task::spawn_blocking(move || {
                let mut rng = rand::rng();
                e2.key().blind_evaluate_batch_with_proof(&arrays, &mut rng)
            })
            .await;
            let refund = |why: &str| {
                let s = shared.clone();
                let client = ctx.client.to_string();
                let why = why.to_string();
                async move {
                    let r =
                        tokio::task::spawn_blocking(move || s.quota.refund(&client, n, now)).await;
                    if !matches!(r, Ok(Ok(()))) {
                        warn!("cannot refund quota after {why}");
                    }
                }
            };
            match evaluated {
                Ok(Ok((elements, proof))) => {
                    let (Ok(batch), p) = (
                        ElementBatch::from_arrays(&elements),
                        Proof(proof.to_bytes()),
                    ) else {
                        a.outcome = "Internal".into();
                        refund("an encoding failure").await;
                        return simple(
                            err_resp(ErrorCode::Internal, "internal error"),
                            a,
                            counters,
                        );
                    };
                    counters.evaluations = n;
                    simple(
                        Response::Evaluated(EvaluateResponse {
                            epoch: wire_epoch(&epoch),
                            elements: batch,
                            proof: p,
                        }),
                        a,
                        counters,
                    )
                }
                Ok(Err(e)) => {
                    refund("an invalid element").await;
                    a.outcome = "InvalidElement".into();
                    simple(
                        err_resp(ErrorCode::InvalidElement, &e.to_string()),
                        a,
                        counters,
                    )
                }
                Err(e) => {
                    refund("a failed task").await;
                    error!("evaluation task failed: {e}");
                    a.outcome = "Internal".into();
                    simple(err_resp(ErrorCode::Internal, "internal error"), a, counters)
                }
            }
        }
        Request::FetchRange(r) => {
            let bits = r.prefix.bits();
            let value = r.prefix.value();
            a.prefix = format!(
                "{bits}/{}",
                hex::encode(&value[..usize::from(bits).div_ceil(8)])
            );
            let max_bits = if cfg.k_anon {
                epoch.max_prefix_bits()
            } else {
                None
            };
            let Some(max_bits) = max_bits else {
                a.outcome = "ModeNotOffered".into();
                return simple(
                    err_resp(
                        ErrorCode::ModeNotOffered,
                        "this server does not offer k-anon mode (FetchRange); use FetchAll",
                    ),
                    a,
                    counters,
                );
            };
            if bits > max_bits {
                a.outcome = "RangeTooSmall".into();
                let msg = format!(
                    "prefix of {bits} bits is longer than the {max_bits} bits this epoch allows"
                );
                return simple(err_resp(ErrorCode::RangeTooSmall, &msg), a, counters);
            }
            let prefix =
                match TagPrefix::new(u16::from(bits), &value[..usize::from(bits).div_ceil(8)]) {
                    Ok(p) => p,
                    Err(e) => {
                        a.outcome = "BadRequest".into();
                        return simple(
                            err_resp(ErrorCode::BadRequest, &e.to_string()),
                            a,
                            counters,
                        );
                    }
                };
            let range = epoch.range_for_prefix(&prefix);
            if (range.len() as u64) < u64::from(cfg.min_range_entries) {
                a.outcome = "RangeTooSmall".into();
                let msg = format!(
                    "the range holds {} entries, fewer than {}",
                    range.len(),
                    cfg.min_range_entries
                );
                return simple(err_resp(ErrorCode::RangeTooSmall, &msg), a, counters);
            }
            if range.len() > MAX_ENTRIES_PER_CHUNK {
                a.outcome = "RangeTooLarge".into();
                let msg = format!(
                    "the range holds {} entries, more than {MAX_ENTRIES_PER_CHUNK}; use a longer prefix",
                    range.len()
                );
                return simple(err_resp(ErrorCode::RangeTooLarge, &msg), a, counters);
            }
            a.entries = range.len() as u64;
            let e2 = epoch.clone();
            let client = ctx.client.clone();
            let entries =
                tokio::task::spawn_blocking(move || e2.entries_for_client(range, &client)).await;
            let list = match entries.map(EntryList::new) {
                Ok(Ok(l)) => l,
                _ => {
                    a.outcome = "Internal".into();
                    return simple(err_resp(ErrorCode::Internal, "internal error"), a, counters);
                }
            };
            counters.entries = list.len() as u64;
            simple(
                Response::Range(RangeResponse {
                    epoch: wire_epoch(&epoch),
                    prefix: r.prefix,
                    entries: list,
                }),
                a,
                counters,
            )
        }
        Request::FetchAll(r) => {
            let total = epoch.len() as u64;
            a.offset = r.offset;
            if r.offset > total {
                a.outcome = "OffsetOutOfRange".into();
                let msg = format!("offset {} is beyond the table's {total} entries", r.offset);
                return simple(err_resp(ErrorCode::OffsetOutOfRange, &msg), a, counters);
            }
            a.entries = total - r.offset;
            counters.entries = total - r.offset;
            Answer {
                frames: Vec::new(),
                audit: a,
                counters,
                stream: Some((epoch, r.offset, total)),
            }
        }
    }
}
