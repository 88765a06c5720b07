//! The QUIC service: connections, request streams, and the four requests of nayose/2.
//!
//! This module is a driver: it moves bytes, files and time; the per-request decision is
//! [`crate::decide`] (no I/O). Per connection: TLS (see [`crate::tls`]) verified the client
//! certificate; the entity it acts for is derived from it ([`crate::entities`]: SPKI
//! fingerprint, issuer + subject, or the CommonName of a `[[client]]`) and keys everything per
//! client; a certificate no entity lists gets `NotAccredited` and is closed with
//! `CloseCode::NotAccredited`, one over its entity's connection allowance is closed with
//! `CloseCode::TooManyConnections`. Each
//! bidirectional stream carries one request frame (then FIN) and gets its response frames
//! (FetchBase: BaseChunks then BaseEnd; FetchDelta: DeltaChunks then DeltaEnd; otherwise one
//! frame), then FIN.
//!
//! Per request, in order: read the frame within `request_timeout_ms` (a header announcing more
//! than `nayose_wire::MAX_REQUEST_LEN` → `FrameTooLarge` without reading the payload;
//! undecodable → the codec's error code); refuse with `ShuttingDown` during shutdown and `Busy`
//! when the request gets no slot ([`limits`]: its client's `max_requests_per_client` and, for a
//! download, `max_downloads_per_client`; one of `max_concurrent_requests` for Info and Evaluate
//! or of the separate `max_concurrent_downloads` for downloads); take the current snapshot once (key period,
//! epoch, table, digest, kept deltas: the request finishes against it even if a new epoch or key
//! period is published meanwhile); re-read the client's accreditation; decide
//! ([`nayose_proto::server::decide`], under the quota book's lock, which persists an Evaluate's charge
//! of both quotas before the answer); compute (evaluate, or encrypt entries for this client);
//! append the audit record (durably; an Error answer is counted for an aggregated record
//! instead, [`refusals`]); send, each frame within `write_timeout_ms` (a stalled stream is reset
//! with `StreamCode::Timeout` and its slots are freed).
//!
//! Invariants: no answer with data leaves before its audit record is on disk (if the audit log
//! cannot be written the client gets `Internal`); both quotas are debited on disk before evaluating and
//! refunded only if nothing was evaluated; labels are computed for the connection's
//! authenticated client id only; nothing secret (keys, label keys, person ids) and nothing
//! client-private (elements, tags, labels) is logged.
//!
//! Where things are: this file holds the shared state and [`Server::start`]; [`running`] the
//! handle and shutdown; [`connection`] connections and accreditation; [`requests`] one request
//! stream; [`answer`] the decision and evaluation; [`respond`] audit-then-send; [`streams`] base
//! and delta downloads; [`frames`] frame reading and writing; [`reload`] epoch and
//! `clients.toml` pickup (closing the connections of removed ids); [`status`] the status lines
//! and audit anchors; [`enumeration`] the entities' totals and the declared-holdings warning; [`limits`] request slots and the throttle of failing peers; [`refusals`]
//! the aggregated records of refusals.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use nayose_table::ClientId;
use quinn::VarInt;
use tokio::sync::{Notify, Semaphore, watch};
use tracing::{info, warn};

use crate::audit::{AuditEntry, AuditKey, AuditLog};
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::config::{AccreditedClients, ServerConfig};
use crate::epoch::Epoch;
use crate::error::ServerError;
use crate::layout::DataDir;
use crate::metrics::{Metrics, Snapshot};
use crate::pgstate::{ChargeRefused, PgCharge, PgState};
use crate::quota::QuotaBook;
use crate::safety::{ServedEpoch, check_secret_files, lock_serve};
use crate::stats::Stats;

use connection::accept_loop;
use reload::{epoch_watcher, file_stamp};
use status::status_loop;

mod answer;
mod connection;
mod enumeration;
mod frames;
mod limits;
mod refusals;
mod reload;
mod requests;
mod respond;
mod running;
mod state;
mod status;
mod streams;

use state::{AuditStore, QuotaStore};

/// Settings resolved from [`ServerConfig`] (all required paths present).
struct Settings {
    cfg: ServerConfig,
    data: DataDir,
}

/// An open connection of an accredited entity: the entity, the certificate it presented (to
/// re-check after a reload), the connection.
type LiveConnection = (ClientId, Arc<crate::config::Presented>, quinn::Connection);

struct Shared {
    s: Settings,
    /// The accredited list; replaced when `clients.toml` changes (see [`reload_clients`]).
    clients: RwLock<Arc<AccreditedClients>>,
    clients_path: PathBuf,
    /// Modification time and length of `clients.toml` when it was last loaded.
    clients_stamp: Mutex<Option<(SystemTime, u64)>>,
    epoch: RwLock<Arc<Epoch>>,
    /// Epochs no longer current, while requests that started on them still hold them (see
    /// [`Shared::epochs_in_memory`]).
    retired: Mutex<Vec<(u32, Weak<Epoch>)>>,
    /// The greatest epoch ever served (`state/served-epoch`): epochs only move forward.
    served: Mutex<ServedEpoch>,
    /// The management body's statements of the served epoch (announcements.md §6).
    announcements: crate::announce::AnnouncementCache,
    /// The exclusive lock on `DATA_DIR/serve.lock`: held from start until shutdown has
    /// finished (or, without a shutdown, as long as anything of this server runs).
    serve_lock: Mutex<Option<std::fs::File>>,
    quota: QuotaStore,
    audit: AuditStore,
    stats: Stats,
    /// The Prometheus metrics (served when `metrics_listen` is set).
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    conns: Mutex<HashMap<ClientId, u32>>,
    /// Open connections of accredited clients by connection id, so a reload of `clients.toml`
    /// can close those of removed ids at once.
    live: Mutex<HashMap<u64, LiveConnection>>,
    /// The certificates of `client_ca` (DER): an `[[entity.certificate]]` names its issuer, and
    /// one of these of that name must have signed the certificate.
    client_cas: Vec<Vec<u8>>,
    /// Requests and downloads in progress per client (see [`limits`]).
    per_client: Mutex<HashMap<ClientId, limits::ClientLoad>>,
    /// The pool of downloads (FetchBase, FetchDelta), separate from `busy`.
    downloads: Semaphore,
    /// The throttle of peers whose connections fail or are refused.
    limiter: limits::Limiter,
    /// Each entity's latest totals of evaluations (the enumeration controls' status).
    entity_totals: enumeration::EntityTotals,
    /// Refusals counted for the next aggregated audit records.
    refusals: refusals::Refusals,
    /// Base downloads in progress, per client and in total.
    bases: Mutex<(HashMap<ClientId, u32>, u32)>,
    /// The pool of Info and Evaluate requests (`max_concurrent_requests`).
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

    /// Makes `new` the epoch every new request is answered against. The previous one is
    /// dropped here unless requests that started on it are still running; it is destroyed
    /// (its table and person maps unmapped, its keys zeroized) when the last of them ends.
    fn install_epoch(&self, new: Epoch) {
        let old = std::mem::replace(
            &mut *self.epoch.write().unwrap_or_else(|p| p.into_inner()),
            Arc::new(new),
        );
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        retired.push((old.number(), Arc::downgrade(&old)));
        drop(old);
        retired.retain(|(_, w)| w.strong_count() > 0);
    }

    /// The numbers of the epochs held in memory: the current one first, then retired ones that
    /// running requests still hold.
    fn epochs_in_memory(&self) -> Vec<u32> {
        let mut out = vec![self.epoch().number()];
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        retired.retain(|(_, w)| w.strong_count() > 0);
        out.extend(retired.iter().map(|(n, _)| *n));
        out
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
        let tls = crate::tls::server_config(
            &cert,
            &key,
            &client_ca,
            &config.client_crl,
            config.allow_classical_key_exchange,
        )?;
        if config.allow_classical_key_exchange {
            warn!(
                "allow_classical_key_exchange = true: clients that offer only classical TLS key \
                 exchange are accepted (each such handshake is logged); {} stays preferred",
                crate::tls::POST_QUANTUM_KEY_EXCHANGE
            );
        }
        let client_cas: Vec<Vec<u8>> = crate::tls::load_certs(&client_ca)?
            .iter()
            .map(|c| c.as_ref().to_vec())
            .collect();
        crate::entities::check_client_cas(&client_ca, &client_cas)?;
        for id in clients.by_common_name() {
            warn!(
                entity = %id,
                "clients.toml: [[client]] {id} is accepted by CommonName from any CA of \
                 client_ca; list its certificates under [[entity]] (nayose pki fingerprint) so \
                 that no other CA can act for it"
            );
        }
        if !data_dir.is_dir() {
            return Err(ServerError::NoEpoch { data_dir });
        }
        let data = DataDir::new(&data_dir);
        // Before anything is read: one server per data directory, and owner-only secrets.
        // With PostgreSQL, replicas may share the data directory (a shared lock each); a server
        // with the file state holds it alone.
        let serve_lock = lock_serve(&data, config.postgres.is_some())?;
        check_secret_files(&data)?;
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
        let mut served = ServedEpoch::open(&data)?;
        served.advance(epoch.number())?;
        let audit_key = match &config.audit_key_file {
            Some(path) => Some(AuditKey::load(path, Some(data.root()))?),
            None => {
                warn!(
                    "no audit_key_file in server.toml: audit records are chained with plain \
                     SHA-256, so whoever can write the data directory can rewrite the log"
                );
                None
            }
        };
        let (quota, audit) = match &config.postgres {
            None => {
                // A server killed during an atomic write (quota state, audit head, served
                // epoch) left its temporary file; with the file state this server holds the
                // data directory alone, so every such file of a process that is gone goes.
                for dir in [data.state(), data.audit_dir()] {
                    for p in crate::fsutil::remove_stale_temp_files(&dir)? {
                        warn!(path = %p.display(), "removed a temporary file of an unfinished write (a server that was killed)");
                    }
                }
                (
                    QuotaStore::File(Arc::new(QuotaBook::open(
                        data.quota(),
                        config.quota_utc_offset_minutes,
                        config.enumeration_window_days,
                    )?)),
                    AuditStore::File(Arc::new(AuditLog::open(
                        &data,
                        audit_key,
                        config.audit_rotate_bytes,
                    )?)),
                )
            }
            Some(pg) => {
                let st = Arc::new(
                    PgState::open(
                        &pg.0,
                        audit_key,
                        config.quota_utc_offset_minutes,
                        config.enumeration_window_days,
                    )
                    .await?,
                );
                info!(
                    postgres = st.target(),
                    audit_records = st.cached_head().count,
                    "quotas and audit log in PostgreSQL (shared by the replicas)"
                );
                (QuotaStore::Postgres(st.clone()), AuditStore::Postgres(st))
            }
        };
        if let Some(anchors) = &config.audit_anchor_file {
            crate::audit::check_anchor_path(anchors, data.root())?;
        }

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
            downloads: Semaphore::new(config.max_concurrent_downloads as usize),
            limiter: limits::Limiter::new(config.refused_burst, config.refused_per_minute),
            refusals: refusals::Refusals::default(),
            per_client: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            client_cas,
            entity_totals: enumeration::EntityTotals::default(),
            s: Settings { cfg: config, data },
            clients: RwLock::new(Arc::new(clients)),
            clients_path: clients_path.clone(),
            clients_stamp: Mutex::new(clients_stamp),
            epoch: RwLock::new(Arc::new(epoch)),
            retired: Mutex::new(Vec::new()),
            served: Mutex::new(served),
            announcements: crate::announce::AnnouncementCache::default(),
            serve_lock: Mutex::new(Some(serve_lock)),
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
        shared
            .announcements
            .refresh(&shared.s.data, &shared.epoch());
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
        tasks.push(tokio::spawn(refusals::flush_loop(
            shared.clone(),
            stop_rx.clone(),
        )));
        if shared.s.cfg.audit_anchor_file.is_some() {
            tasks.push(tokio::spawn(status::anchor_loop(
                shared.clone(),
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

async fn audit(shared: &Arc<Shared>, entry: AuditEntry) -> Result<(), ServerError> {
    audit_charging(shared, entry, None).await.map(|_| ())
}

/// Appends `entry` durably; with PostgreSQL and an Evaluate's pending `charge`, charges it in
/// the same transaction ([`crate::pgstate`]). `Ok(Err(_))`: that charge was refused, nothing
/// was charged or recorded.
async fn audit_charging(
    shared: &Arc<Shared>,
    mut entry: AuditEntry,
    charge: Option<&PgCharge>,
) -> Result<Result<(), ChargeRefused>, ServerError> {
    if entry.time.is_empty() {
        entry.time = rfc3339(shared.clock.now());
    }
    match &shared.audit {
        AuditStore::File(log) => {
            let log = log.clone();
            tokio::task::spawn_blocking(move || log.append(entry))
                .await
                .map_err(|e| ServerError::Internal(format!("audit task failed: {e}")))?
                .map(|_| Ok(()))
        }
        AuditStore::Postgres(pg) => Ok(pg.append(entry, charge).await?.map(|_| ())),
    }
}

fn ms_since(t: Instant) -> Option<u64> {
    Some(u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX))
}
