//! The QUIC service: connections, request streams, and the four requests of nayose/2.
//!
//! This module is a driver: it moves bytes, files and time; the per-request decision is
//! [`crate::decide`] (no I/O). Per connection: TLS (see [`crate::tls`]) verified the client
//! certificate; the client id is its subject CommonName (`nayose_pki::client_id_of`); a client
//! not in `clients.toml` gets `NotAccredited` and is closed with `CloseCode::NotAccredited`, one
//! over its connection allowance is closed with `CloseCode::TooManyConnections`. Each
//! bidirectional stream carries one request frame (then FIN) and gets its response frames
//! (FetchBase: BaseChunks then BaseEnd; FetchDelta: DeltaChunks then DeltaEnd; otherwise one
//! frame), then FIN.
//!
//! Per request, in order: read the frame within `request_timeout_ms` (a header announcing more
//! than `nayose_wire::MAX_REQUEST_LEN` → `FrameTooLarge` without reading the payload;
//! undecodable → the codec's error code); refuse with `ShuttingDown` during shutdown and `Busy`
//! when `max_concurrent_requests` are running; take the current snapshot once (key period,
//! epoch, table, digest, kept deltas: the request finishes against it even if a new epoch or key
//! period is published meanwhile); re-read the client's accreditation; decide
//! ([`nayose_proto::server::decide`], under the quota book's lock, which persists an Evaluate's charge
//! of both quotas before the answer); compute (evaluate, or encrypt entries for this client);
//! append the audit record (durably); send.
//!
//! Invariants: no answer leaves before its audit record is on disk (if the audit log cannot be
//! written the client gets `Internal`); both quotas are debited on disk before evaluating and
//! refunded only if nothing was evaluated; labels are computed for the connection's
//! authenticated client id only; nothing secret (keys, label keys, person ids) and nothing
//! client-private (elements, tags, labels) is logged.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use nayose_table::ClientId;
use nayose_wire::{
    BaseChunk, ChunkList, CloseCode, DeltaChunk, ElementBatch, ErrorCode, ErrorResponse,
    EvaluateResponse, FRAME_HEADER_LEN, KeyPeriodId as WireKeyPeriodId, MAX_ENTRIES_PER_CHUNK,
    MAX_REQUEST_LEN, Proof, Request, Response, StreamCode, WireError, decode_request,
    encode_response_frame, frame_len,
};
use quinn::VarInt;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, Semaphore, watch};
use tracing::{debug, error, info, warn};

use crate::audit::{AuditEntry, AuditHead, AuditLog};
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::config::{AccreditedClients, ServerConfig};
use crate::epoch::{Epoch, read_current};
use crate::error::ServerError;
use crate::layout::DataDir;
use crate::metrics::{Metrics, Snapshot};
use crate::quota::QuotaBook;
use crate::stats::{ClientCounters, Stats};
use nayose_proto::server::{
    BaseLoad, Current, Decision, Standing, decide, display_kp, key_period_changed,
};

/// Settings resolved from [`ServerConfig`] (all required paths present).
struct Settings {
    cfg: ServerConfig,
    data: DataDir,
}

struct Shared {
    s: Settings,
    /// The accredited list; replaced when `clients.toml` changes (see [`reload_clients`]).
    clients: RwLock<Arc<AccreditedClients>>,
    clients_path: PathBuf,
    /// Modification time and length of `clients.toml` when it was last loaded.
    clients_stamp: Mutex<Option<(SystemTime, u64)>>,
    epoch: RwLock<Arc<Epoch>>,
    quota: QuotaBook,
    audit: AuditLog,
    stats: Stats,
    /// The Prometheus metrics (served when `metrics_listen` is set).
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    conns: Mutex<HashMap<ClientId, u32>>,
    /// Base downloads in progress, per client and in total.
    bases: Mutex<(HashMap<ClientId, u32>, u32)>,
    busy: Semaphore,
    inflight: AtomicUsize,
    idle: Notify,
    conn_tasks: AtomicUsize,
    conns_done: Notify,
    shutting_down: AtomicBool,
}

impl Shared {
    fn clients(&self) -> Arc<AccreditedClients> {
        self.clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn epoch(&self) -> Arc<Epoch> {
        self.epoch.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// The state the metrics endpoint reads at each scrape.
    fn metrics_snapshot(&self) -> Snapshot {
        let epoch = self.epoch();
        let open: u32 = self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .sum();
        Snapshot {
            epoch: epoch.number(),
            key_period_number: epoch.key_period().number(),
            key_period: epoch.key_period().to_string(),
            open_connections: u64::from(open),
            audit_records: self.audit.head().count,
        }
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

/// Counts a running connection task (so shutdown can wait for its final audit record).
struct ConnTaskGuard(Arc<Shared>);

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

/// The server node's entry point.
#[derive(Debug, Clone, Copy)]
pub struct Server;

/// A running server: its address, metrics, and graceful shutdown.
pub struct RunningServer {
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
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

        let clients_stamp = file_stamp(&clients_path);
        let clients = AccreditedClients::load(&clients_path)?;
        if clients.is_empty() {
            warn!(path = %clients_path.display(), "no accredited client: every connection will be refused");
        }
        let tls = crate::tls::server_config(&cert, &key, &client_ca)?;
        let data = DataDir::new(&data_dir);
        let history = config.delta_history;
        let (data2, epoch) = {
            let data = data.clone();
            tokio::task::spawn_blocking(move || {
                let e = Epoch::load_current(&data, history);
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
            epoch = epoch.number(),
            key_period = %epoch.key_period(),
            entries = epoch.len(),
            oldest_delta_base = epoch.oldest_delta_base(),
            clients = clients.len(),
            "nayose server listening"
        );

        let metrics_listener = match config.metrics_listen {
            Some(addr) => {
                let l = crate::metrics::bind(addr)
                    .await
                    .map_err(|e| ServerError::Listen {
                        addr,
                        reason: format!("metrics endpoint: {e}"),
                    })?;
                let bound = l.local_addr().map_err(|e| ServerError::Listen {
                    addr,
                    reason: format!("metrics endpoint: {e}"),
                })?;
                info!("metrics on http://{bound}/metrics");
                Some((l, bound))
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            busy: Semaphore::new(config.max_concurrent_requests as usize),
            s: Settings { cfg: config, data },
            clients: RwLock::new(Arc::new(clients)),
            clients_path: clients_path.clone(),
            clients_stamp: Mutex::new(clients_stamp),
            epoch: RwLock::new(Arc::new(epoch)),
            quota,
            audit,
            stats: Stats::default(),
            metrics: Arc::new(Metrics::new()),
            clock,
            conns: Mutex::new(HashMap::new()),
            bases: Mutex::new((HashMap::new(), 0)),
            inflight: AtomicUsize::new(0),
            idle: Notify::new(),
            conn_tasks: AtomicUsize::new(0),
            conns_done: Notify::new(),
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
        let metrics_addr = metrics_listener.as_ref().map(|(_, a)| *a);
        if let Some((listener, _)) = metrics_listener {
            let s = shared.clone();
            tasks.push(tokio::spawn(crate::metrics::serve(
                listener,
                shared.metrics.clone(),
                Arc::new(move || s.metrics_snapshot()),
                stop_rx.clone(),
            )));
        }
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
            metrics_addr,
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
        // Address validation (security.md, denial of service): a client must echo a Retry
        // token before the server spends a TLS handshake on it, so spoofed source addresses
        // cannot make the server do work or amplify traffic. Costs one round trip per connection.
        if !incoming.remote_address_validated() && incoming.may_retry() {
            if let Err(e) = incoming.retry() {
                e.into_incoming().ignore();
            }
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
        reload_clients(&shared);
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
        let history = shared.s.cfg.delta_history;
        let n2 = name.clone();
        let loaded = tokio::task::spawn_blocking(move || Epoch::load(&data, &n2, history)).await;
        match loaded {
            Ok(Ok(e)) => {
                let old = shared.epoch();
                if old.key_period() != e.key_period() {
                    info!(old = %old.key_period(), new = %e.key_period(), "new key period is now current");
                }
                info!(old = old.number(), new = e.number(), key_period = %e.key_period(), entries = e.len(), oldest_delta_base = e.oldest_delta_base(), "new epoch is now current");
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

/// Modification time and length of a file, to notice that it changed.
fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Reloads `clients.toml` when it changed since it was last loaded. A file that does not parse
/// is reported and the previous list stays in force. Removing an id takes effect on that
/// client's next request (answered `NotAccredited`, then the connection is closed); a new
/// `evaluations_per_day` applies from its next request on.
fn reload_clients(shared: &Shared) {
    let stamp = file_stamp(&shared.clients_path);
    let mut last = shared
        .clients_stamp
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if stamp.is_none() || stamp == *last {
        return;
    }
    match AccreditedClients::load(&shared.clients_path) {
        Ok(c) => {
            info!(
                path = %shared.clients_path.display(),
                clients = c.len(),
                "accredited clients reloaded"
            );
            *shared.clients.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c);
            *last = stamp;
        }
        Err(e) => {
            error!("clients.toml changed but cannot be loaded; keeping the previous list: {e}");
            *last = stamp;
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
            epoch = shared.epoch().number(),
            key_period = %shared.epoch().key_period(),
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

/// The verified end-entity certificate of the peer (DER).
fn peer_leaf(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.peer_identity()
        .and_then(|id| {
            id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .and_then(|certs| certs.first().map(|c| c.as_ref().to_vec()))
}

fn client_id_from(leaf: Option<&[u8]>) -> Result<ClientId, String> {
    let leaf = leaf.ok_or("no client certificate")?;
    let id = nayose_pki::client_id_of(leaf).map_err(|e| e.to_string())?;
    ClientId::new(&id).map_err(|e| e.to_string())
}

/// "serial <hex>, issuer <DN>" of a certificate, for the `connected` audit record.
fn serial_and_issuer(leaf: &[u8]) -> String {
    match x509_parser::parse_x509_certificate(leaf) {
        Ok((_, c)) => format!(
            "serial {}, issuer {}",
            c.tbs_certificate.raw_serial_as_string(),
            c.issuer()
        ),
        Err(_) => String::new(),
    }
}

async fn audit(shared: &Arc<Shared>, mut entry: AuditEntry) -> Result<(), ServerError> {
    if entry.time.is_empty() {
        entry.time = rfc3339(shared.clock.now());
    }
    let s = shared.clone();
    tokio::task::spawn_blocking(move || s.audit.append(entry))
        .await
        .map_err(|e| ServerError::Internal(format!("audit task failed: {e}")))?
        .map(|_| ())
}

fn ms_since(t: Instant) -> Option<u64> {
    Some(u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX))
}

async fn handle_connection(
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
            info!(%peer, "connection refused during the handshake: {e}");
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
    let (client, limit) = match client_id_from(leaf.as_deref()) {
        Ok(c) => match shared.clients().limits_of(&c) {
            Some(limit) => (c, limit),
            None => {
                let why = format!("client id {c} is not accredited");
                refuse_not_accredited(
                    &shared,
                    &conn,
                    c.as_str(),
                    &why,
                    event("refused", c.as_str(), "NotAccredited", why.clone()),
                )
                .await;
                return;
            }
        },
        Err(reason) => {
            let why = format!("no client id could be read from the certificate: {reason}");
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
        let _ = audit(
            &shared,
            event("refused", client.as_str(), "TooManyConnections", detail),
        )
        .await;
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
    };
    info!(%peer, client = %client, "client connected");
    let detail = leaf.as_deref().map(serial_and_issuer).unwrap_or_default();
    if let Err(e) = audit(&shared, event("connected", client.as_str(), "ok", detail)).await {
        error!("cannot write the audit log; closing the connection: {e}");
        close(&conn, CloseCode::Internal);
        return;
    }
    let _ = limit;
    let ctx = Arc::new(ConnCtx {
        client: client.clone(),
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
                debug!(client = %ctx.client, "connection ended: {e}");
                break;
            }
        }
    }
    let reason = conn
        .close_reason()
        .map_or_else(|| "closed".to_string(), |r| r.to_string());
    let mut rec = event(
        "closed",
        client.as_str(),
        &reason,
        format!("{} requests", ctx.requests.load(Ordering::SeqCst)),
    );
    rec.duration_ms = ms_since(started);
    let _ = audit(&shared, rec).await;
}

/// wire.md §2.4: answer the first request with `NotAccredited` (or wait the request timeout),
/// then close the connection with `CloseCode::NotAccredited`.
async fn refuse_not_accredited(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    client: &str,
    why: &str,
    record: AuditEntry,
) {
    warn!(peer = %conn.remote_address(), "refusing: {why}");
    shared.metrics.error("NotAccredited");
    shared.stats.record(
        client,
        ClientCounters {
            errors: 1,
            ..ClientCounters::default()
        },
    );
    let _ = audit(shared, record).await;
    let timeout = Duration::from_millis(shared.s.cfg.request_timeout_ms);
    if let Ok(Ok((mut send, mut recv))) = tokio::time::timeout(timeout, conn.accept_bi()).await {
        let mut n = 0;
        let _ = tokio::time::timeout(timeout, read_request(&mut recv, &mut n)).await;
        let mut out = 0;
        if write_frame(
            &mut send,
            &err_resp(ErrorCode::NotAccredited, why),
            &mut out,
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

struct ConnCtx {
    client: ClientId,
    conn: quinn::Connection,
    peer: SocketAddr,
    conn_id: u64,
    cert_sha256: String,
    requests: AtomicU64,
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
    // No request is longer than a full Evaluate (wire.md §5): refuse longer frames before
    // allocating, so a client cannot make the server hold 4 MiB per stream.
    if len > MAX_REQUEST_LEN {
        return Err(ReadFail::Bad(
            WireError::FrameTooLarge {
                len: len as u64,
                max: MAX_REQUEST_LEN,
            },
            true,
        ));
    }
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

/// What to stream after the audit record.
enum Stream {
    /// A base of the snapshot's epoch from `offset`.
    Base {
        epoch: Arc<Epoch>,
        cur: Current,
        offset: u64,
        _slot: BaseSlot,
    },
    /// The deltas of the snapshot's chain after `from`.
    Delta {
        epoch: Arc<Epoch>,
        cur: Current,
        from: u32,
    },
}

/// A base download in progress (released when dropped).
struct BaseSlot {
    shared: Arc<Shared>,
    client: ClientId,
}

impl Drop for BaseSlot {
    fn drop(&mut self) {
        let mut b = self.shared.bases.lock().unwrap_or_else(|p| p.into_inner());
        b.1 = b.1.saturating_sub(1);
        if let Some(n) = b.0.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                b.0.remove(&self.client);
            }
        }
    }
}

/// An Evaluate's charge, refunded if nothing was evaluated.
struct Charge {
    n: u64,
    now: SystemTime,
    key_period: String,
}

/// The outcome of one request: what to audit and what to send.
struct Answer {
    frame: Option<Response>,
    audit: AuditEntry,
    counters: ClientCounters,
    stream: Option<Stream>,
    charge: Option<Charge>,
}

impl Answer {
    fn one(frame: Response, audit: AuditEntry, counters: ClientCounters) -> Self {
        Answer {
            frame: Some(frame),
            audit,
            counters,
            stream: None,
            charge: None,
        }
    }
}

fn err_resp(code: ErrorCode, message: &str) -> Response {
    Response::Error(ErrorResponse::new(code, message))
}

fn encode(r: &Response) -> Option<Vec<u8>> {
    match encode_response_frame(r) {
        Ok(f) => Some(f),
        Err(e) => {
            error!("cannot encode a {} response: {e}", r.name());
            None
        }
    }
}

async fn write_frame(
    send: &mut quinn::SendStream,
    r: &Response,
    bytes_out: &mut u64,
) -> Result<(), ()> {
    let frame = encode(r).ok_or(())?;
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
    let started = Instant::now();
    let mut counters = ClientCounters {
        requests: 1,
        ..ClientCounters::default()
    };
    let timeout = Duration::from_millis(shared.s.cfg.request_timeout_ms);
    let base = AuditEntry {
        event: "request".into(),
        client: ctx.client.to_string(),
        cert_sha256: ctx.cert_sha256.clone(),
        peer: ctx.peer.to_string(),
        conn: ctx.conn_id,
        stream: Some(u64::from(send.id())),
        ..AuditEntry::default()
    };
    let read = tokio::time::timeout(timeout, read_request(&mut recv, &mut counters.bytes_in)).await;
    // The request's slot of `max_concurrent_requests`, held until its answer is fully sent, so
    // base and delta streaming count against the limit as well.
    let mut permit = None;
    let answer = match read {
        Err(_) => {
            debug!(client = %ctx.client, "request timed out");
            let _ = recv.stop(VarInt::from_u32(StreamCode::Timeout.to_u32()));
            let _ = send.reset(VarInt::from_u32(StreamCode::Timeout.to_u32()));
            counters.errors += 1;
            let _ = audit(
                &shared,
                AuditEntry {
                    op: "Invalid".into(),
                    outcome: "Timeout".into(),
                    bytes_in: Some(counters.bytes_in),
                    duration_ms: ms_since(started),
                    ..base
                },
            )
            .await;
            shared
                .metrics
                .request(ctx.client.as_str(), "Invalid", Some("Timeout"), &counters);
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
            Answer::one(
                err_resp(code, &e.to_string()),
                AuditEntry {
                    op: "Invalid".into(),
                    outcome: format!("{code:?}"),
                    detail: e.to_string(),
                    ..base
                },
                counters,
            )
        }
        Ok(Ok(req)) => {
            let a = AuditEntry {
                op: req.name().into(),
                key_period_requested: req.key_period().map(display_kp).unwrap_or_default(),
                epoch_requested: match &req {
                    Request::FetchBase(r) => Some(r.epoch),
                    Request::FetchDelta(r) => Some(r.from_epoch),
                    _ => None,
                },
                ..base
            };
            // Load shedding before accreditation and the key period check, on purpose
            // (flows.md §5.2): the cheapest refusal stays the cheapest under overload.
            if shared.is_shutting_down() {
                let mut e = ErrorResponse::new(
                    ErrorCode::ShuttingDown,
                    "server shutting down; reconnect later",
                );
                e.retry_after_secs = 5;
                Answer::one(Response::Error(e), a, counters)
            } else {
                match shared.busy.try_acquire() {
                    Err(_) => {
                        let mut e =
                            ErrorResponse::new(ErrorCode::Busy, "server busy; retry shortly");
                        e.retry_after_secs = 1;
                        Answer::one(Response::Error(e), a, counters)
                    }
                    Ok(p) => {
                        permit = Some(p);
                        answer(&shared, &ctx, req, a, counters).await
                    }
                }
            }
        }
    };
    let revoked = matches!(
        &answer.frame,
        Some(Response::Error(e)) if e.code == ErrorCode::NotAccredited
    );
    send_answer(&shared, &ctx, send, answer, started).await;
    drop(permit);
    if revoked {
        close(&ctx.conn, CloseCode::NotAccredited);
    }
}

async fn send_answer(
    shared: &Arc<Shared>,
    ctx: &ConnCtx,
    mut send: quinn::SendStream,
    mut ans: Answer,
    started: Instant,
) {
    let mut frame = ans.frame.as_ref().and_then(encode);
    let mut error_code = match &ans.frame {
        Some(Response::Error(e)) => Some(format!("{:?}", e.code)),
        _ => None,
    };
    if let Some(Response::Error(e)) = &ans.frame {
        ans.counters.errors += 1;
        if ans.audit.outcome.is_empty() {
            ans.audit.outcome = format!("{:?}", e.code);
        }
    }
    if ans.frame.is_some() && frame.is_none() {
        ans.audit.outcome = "Internal".into();
        error_code = Some("Internal".into());
        frame = encode(&err_resp(ErrorCode::Internal, "internal error"));
    }
    if ans.audit.outcome.is_empty() {
        ans.audit.outcome = "ok".into();
    }
    ans.audit.bytes_in = Some(ans.counters.bytes_in);
    ans.audit.bytes_out = frame.as_ref().map(|f| f.len() as u64);
    ans.audit.duration_ms = ms_since(started);
    let stream_record = ans.audit.clone();
    let kind = stream_record.op.clone();
    if let Err(e) = audit(shared, ans.audit).await {
        error!("cannot write the audit log; refusing to answer: {e}");
        frame = encode(&err_resp(
            ErrorCode::Internal,
            "server cannot record the request; retry later",
        ));
        ans.stream = None;
        error_code = Some("Internal".into());
        ans.counters.errors += 1;
        ans.counters.evaluations = 0;
        if let Some(c) = ans.charge.take() {
            refund(shared, ctx, c).await;
        }
    }
    let mut bytes_out = 0u64;
    let mut ok = true;
    if let Some(f) = &frame {
        ok = send.write_all(f).await.is_ok();
        if ok {
            bytes_out += f.len() as u64;
        }
    }
    if let Some(st) = ans.stream.take() {
        let (sent, completed, reached) = match &st {
            Stream::Base {
                epoch, cur, offset, ..
            } => {
                let (n, done) =
                    stream_base(shared, ctx, &mut send, epoch, cur, *offset, &mut bytes_out).await;
                (n, done, None)
            }
            Stream::Delta { epoch, cur, from } => {
                let (n, done) =
                    stream_delta(ctx, &mut send, epoch, cur, *from, &mut bytes_out).await;
                (n, done, done.then_some(cur.epoch))
            }
        };
        drop(st);
        ok = completed;
        ans.counters.entries = sent;
        let _ = audit(
            shared,
            AuditEntry {
                event: "fetch_end".into(),
                time: String::new(),
                entries: Some(sent),
                epoch_reached: reached,
                bytes_in: None,
                bytes_out: Some(bytes_out),
                duration_ms: ms_since(started),
                outcome: if completed { "completed" } else { "cancelled" }.into(),
                ..stream_record
            },
        )
        .await;
    }
    if ok {
        let _ = send.finish();
        let _ = tokio::time::timeout(Duration::from_secs(10), send.stopped()).await;
    }
    // flows.md §4.2: evaluations are charged once computed, even when the answer could not be
    // written: a client can read the evaluated elements and then reset the stream before the
    // proof, so a refund here would be an unmetered oracle.
    ans.counters.bytes_out += bytes_out;
    shared.metrics.request(
        ctx.client.as_str(),
        &kind,
        error_code.as_deref(),
        &ans.counters,
    );
    shared.stats.record(ctx.client.as_str(), ans.counters);
}

async fn refund(shared: &Arc<Shared>, ctx: &ConnCtx, c: Charge) {
    let s = shared.clone();
    let client = ctx.client.to_string();
    let r = tokio::task::spawn_blocking(move || s.quota.refund(&client, c.n, c.now, &c.key_period))
        .await;
    if !matches!(r, Ok(Ok(()))) {
        warn!(client = %ctx.client, "cannot refund {} evaluations", c.n);
    }
}

/// Sends the BaseChunks from `offset` and BaseEnd; returns (entries sent, whether the stream
/// completed).
async fn stream_base(
    shared: &Arc<Shared>,
    ctx: &ConnCtx,
    send: &mut quinn::SendStream,
    epoch: &Arc<Epoch>,
    cur: &Current,
    offset: u64,
    bytes_out: &mut u64,
) -> (u64, bool) {
    let chunk = u64::from(shared.s.cfg.fetch_chunk_entries).min(MAX_ENTRIES_PER_CHUNK as u64);
    let mut at = offset;
    while at < cur.entries {
        let end = (at + chunk).min(cur.entries);
        let e = epoch.clone();
        let client = ctx.client.clone();
        let entries =
            tokio::task::spawn_blocking(move || e.base_entries(at as usize..end as usize, &client))
                .await;
        let Ok(Ok(entries)) = entries else {
            return (at - offset, false);
        };
        let Ok(list) = ChunkList::new(entries) else {
            return (at - offset, false);
        };
        let r = Response::BaseChunk(BaseChunk {
            key_period: cur.key_period,
            epoch: cur.epoch,
            offset: at,
            total: cur.entries,
            entries: list,
        });
        if write_frame(send, &r, bytes_out).await.is_err() {
            // A chunk whose write started counts as sent: the client may hold most of it.
            return (end - offset, false);
        }
        at = end;
    }
    let ok = write_frame(send, &nayose_proto::server::base_end(cur), bytes_out)
        .await
        .is_ok();
    (cur.entries - offset, ok)
}

/// Sends the DeltaChunks of every kept epoch after `from` and DeltaEnd; returns (items sent,
/// whether the stream completed).
async fn stream_delta(
    ctx: &ConnCtx,
    send: &mut quinn::SendStream,
    epoch: &Arc<Epoch>,
    cur: &Current,
    from: u32,
    bytes_out: &mut u64,
) -> (u64, bool) {
    let mut sent = 0u64;
    let count = epoch.deltas_after(from).len();
    for i in 0..count {
        let e = epoch.clone();
        let client = ctx.client.clone();
        // Read and encrypt one epoch's delta off the async threads.
        let built = tokio::task::spawn_blocking(move || {
            let h = &e.deltas_after(from)[i];
            let d = h.read()?;
            let mut frames = Vec::new();
            for (r, u) in nayose_proto::server::delta_chunks(
                d.removed.len(),
                d.upserts.len(),
                MAX_ENTRIES_PER_CHUNK,
            ) {
                let removed: Vec<nayose_wire::Tag> =
                    d.removed[r].iter().map(|t| nayose_wire::Tag(t.0)).collect();
                let upserts = e.delta_upserts(&d, u, &client);
                let items = (removed.len() + upserts.len()) as u64;
                let chunk = DeltaChunk {
                    key_period: WireKeyPeriodId(e.key_period().to_bytes()),
                    epoch: d.epoch,
                    removed: ChunkList::new(removed)
                        .map_err(|e| ServerError::Internal(e.to_string()))?,
                    upserts: ChunkList::new(upserts)
                        .map_err(|e| ServerError::Internal(e.to_string()))?,
                };
                frames.push((Response::DeltaChunk(chunk), items));
            }
            Ok::<_, ServerError>(frames)
        })
        .await;
        let frames = match built {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                error!("cannot serve a delta: {e}");
                return (sent, false);
            }
            Err(e) => {
                error!("delta task failed: {e}");
                return (sent, false);
            }
        };
        for (f, items) in frames {
            if write_frame(send, &f, bytes_out).await.is_err() {
                return (sent + items, false);
            }
            sent += items;
        }
    }
    let ok = write_frame(send, &nayose_proto::server::delta_end(cur), bytes_out)
        .await
        .is_ok();
    (sent, ok)
}

/// The snapshot as the decision sees it.
fn current_of(epoch: &Epoch, cfg: &ServerConfig) -> Current {
    Current {
        key_period: WireKeyPeriodId(epoch.key_period().to_bytes()),
        public_key: epoch.public_key(),
        epoch: epoch.number(),
        entries: epoch.len() as u64,
        digest: epoch.digest().0,
        oldest_delta_base: epoch.oldest_delta_base(),
        delta_bases: epoch.delta_bases(),
        max_batch: cfg.max_batch,
    }
}

async fn answer(
    shared: &Arc<Shared>,
    ctx: &Arc<ConnCtx>,
    req: Request,
    mut a: AuditEntry,
    mut counters: ClientCounters,
) -> Answer {
    // One snapshot for the whole request (flows.md §5.2).
    let epoch = shared.epoch();
    let cur = current_of(&epoch, &shared.s.cfg);
    let kp = epoch.key_period().to_string();
    a.key_period_current = kp.clone();
    a.epoch_current = Some(cur.epoch);
    let internal = |mut a: AuditEntry, counters, why: &str| {
        error!("{why}");
        a.outcome = "Internal".into();
        Answer::one(
            err_resp(ErrorCode::Internal, "internal error; retry later"),
            a,
            counters,
        )
    };
    // Accreditation is re-read on every request, so removing an id from clients.toml takes
    // effect without a restart (wire.md §2.4).
    let Some(limits) = shared.clients().limits_of(&ctx.client) else {
        let d = decide(ctx.client.as_str(), Standing::NotAccredited, &req, &cur);
        let Decision::Reply(r) = d else {
            unreachable!("an unaccredited client only gets a reply")
        };
        a.outcome = "NotAccredited".into();
        return Answer::one(r, a, counters);
    };
    let now = shared.clock.now();
    let decided = {
        let s = shared.clone();
        let client = ctx.client.clone();
        let kp = kp.clone();
        let req = req.clone();
        let cur = cur.clone();
        let (max_client, max_total) = (
            shared.s.cfg.max_base_downloads_per_client,
            shared.s.cfg.max_base_downloads,
        );
        tokio::task::spawn_blocking(move || {
            s.quota
                .decide_and_charge(client.as_str(), limits, &kp, now, |quota| {
                    // The base-download counters are taken and, for a base stream, incremented
                    // under the same locks as the decision.
                    let mut b = s.bases.lock().unwrap_or_else(|p| p.into_inner());
                    let bases = BaseLoad {
                        client: b.0.get(&client).copied().unwrap_or(0),
                        total: b.1,
                        max_client,
                        max_total,
                    };
                    let d = decide(
                        client.as_str(),
                        Standing::Accredited { quota, bases },
                        &req,
                        &cur,
                    );
                    let slot = if matches!(d, Decision::StreamBase { .. }) {
                        *b.0.entry(client.clone()).or_insert(0) += 1;
                        b.1 += 1;
                        Some(BaseSlot {
                            shared: s.clone(),
                            client: client.clone(),
                        })
                    } else {
                        None
                    };
                    let charge = match d {
                        Decision::Evaluate { charge } => charge,
                        _ => 0,
                    };
                    ((d, slot), charge)
                })
        })
        .await
    };
    let ((decision, slot), quota) = match decided {
        Ok(Ok(Some(v))) => v,
        Ok(Ok(None)) => {
            // This request's snapshot is older than a key period the client was already
            // charged in (a switch happened in between): nothing was charged; the request is
            // answered as one naming a previous key period, with the current snapshot.
            let now_cur = current_of(&shared.epoch(), &shared.s.cfg);
            let named = req.key_period().copied().unwrap_or(cur.key_period);
            let Decision::Reply(r) = key_period_changed(&now_cur, &named) else {
                unreachable!("key_period_changed is a reply")
            };
            a.outcome = "KeyPeriodChanged".into();
            return Answer::one(r, a, counters);
        }
        Ok(Err(e)) => {
            return internal(a, counters, &format!("cannot persist the quota state: {e}"));
        }
        Err(e) => return internal(a, counters, &format!("quota task failed: {e}")),
    };
    a.quota_before = Some(quota.left_today);
    a.quota_after = Some(quota.left_today);
    a.key_period_quota_before = Some(quota.left_key_period);
    a.key_period_quota_after = Some(quota.left_key_period);
    match decision {
        Decision::Reply(r) => Answer::one(r, a, counters),
        Decision::StreamBase { offset } => {
            a.offset = Some(offset);
            a.entries = Some(cur.entries - offset);
            let Some(slot) = slot else {
                return internal(a, counters, "base download slot missing");
            };
            Answer {
                frame: None,
                audit: a,
                counters,
                stream: Some(Stream::Base {
                    epoch,
                    cur,
                    offset,
                    _slot: slot,
                }),
                charge: None,
            }
        }
        Decision::StreamDelta { from } => Answer {
            frame: None,
            audit: a,
            counters,
            stream: Some(Stream::Delta { epoch, cur, from }),
            charge: None,
        },
        Decision::Evaluate { charge: n } => {
            a.elements = Some(n);
            a.quota_after = Some(quota.left_today - n);
            a.key_period_quota_after = Some(quota.left_key_period - n);
            let charge = Charge {
                n,
                now,
                key_period: kp,
            };
            let Request::Evaluate(r) = req else {
                unreachable!("only an Evaluate is evaluated")
            };
            let e2 = epoch.clone();
            let arrays = r.elements.to_arrays();
            let evaluated = tokio::task::spawn_blocking(move || {
                let mut rng = rand::rng();
                e2.key().blind_evaluate_batch_with_proof(&arrays, &mut rng)
            })
            .await;
            let outcome = match evaluated {
                Ok(Ok((elements, proof))) => match ElementBatch::from_arrays(&elements) {
                    Ok(batch) => Ok(Response::Evaluated(EvaluateResponse {
                        key_period: cur.key_period,
                        elements: batch,
                        proof: Proof(proof.to_bytes()),
                    })),
                    Err(e) => Err((ErrorCode::Internal, format!("encoding failed: {e}"))),
                },
                Ok(Err(e)) => Err((ErrorCode::InvalidElement, e.to_string())),
                Err(e) => Err((ErrorCode::Internal, format!("evaluation task failed: {e}"))),
            };
            match outcome {
                Ok(resp) => {
                    counters.evaluations = n;
                    Answer {
                        frame: Some(resp),
                        audit: a,
                        counters,
                        stream: None,
                        charge: Some(charge),
                    }
                }
                Err((code, msg)) => {
                    refund(shared, ctx, charge).await;
                    a.quota_after = a.quota_before;
                    a.key_period_quota_after = a.key_period_quota_before;
                    if code == ErrorCode::Internal {
                        error!("{msg}");
                    }
                    let text = if code == ErrorCode::Internal {
                        "internal error; retry later"
                    } else {
                        msg.as_str()
                    };
                    Answer::one(err_resp(code, text), a, counters)
                }
            }
        }
    }
}
