//! `server.toml` and `clients.toml`.
//!
//! Every `server.toml` key is optional; a missing limit takes the default of
//! [`ServerConfig::default`] (the protocol's recommended values), a missing path must be given
//! as a command-line flag instead (the CLI overrides fields after [`ServerConfig::load`]).
//! Relative paths in a file are relative to the file's directory. Unknown keys are errors, so a
//! typo never silently falls back to a default.
//!
//! `clients.toml` (the accredited entities, their certificates, quotas and enumeration
//! controls) is read by [`crate::entities`]. Its quotas (protocol-spec/security.md §5.1):
//! `evaluations_per_day` (required; per quota day, 00:00 to 24:00 at
//! `quota_utc_offset_minutes`, JST by default) and `evaluations_per_key_period` (optional;
//! default **10 × `evaluations_per_day`**, i.e. ten full days of evaluations for the whole
//! lifetime of a key period — an entity evaluates each held number once per key period thanks
//! to its OPRF cache, so it needs about its holding plus its daily growth; set it explicitly
//! for entities with large holdings). The rolling window of the enumeration controls is
//! `enumeration_window_days` here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use nayose_wire::{
    DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
    DEFAULT_REQUEST_TIMEOUT_MS, MAX_BATCH_ELEMENTS, MAX_ENTRIES_PER_CHUNK,
};
use serde::{Deserialize, Serialize};

pub use crate::entities::{
    AccreditedClients, CertificateName, ClientEntry, ClientLimits, DEFAULT_KEY_PERIOD_QUOTA_DAYS,
    EntityEntry, Presented,
};
use crate::error::ServerError;

/// Default `audit_rotate_bytes`: 256 MiB, about half a million records per segment; `audit
/// verify` reads one segment into memory at a time.
pub const DEFAULT_AUDIT_ROTATE_BYTES: u64 = 256 << 20;

/// Default `enumeration_window_days`.
pub const DEFAULT_ENUMERATION_WINDOW_DAYS: u32 = 30;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:4433";

/// The server node's settings (`server.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// The data directory (epochs, keys, quota state, audit log). Required.
    pub data_dir: Option<PathBuf>,
    /// UDP address to listen on (default `0.0.0.0:4433`).
    pub listen: Option<SocketAddr>,
    /// TCP address of the Prometheus metrics endpoint (`GET /metrics`, plain HTTP), e.g.
    /// `127.0.0.1:9464`. Absent: no endpoint. Bind it to loopback or an operator network.
    pub metrics_listen: Option<SocketAddr>,
    /// The server's certificate chain, PEM. Required.
    pub cert: Option<PathBuf>,
    /// The server's private key, PEM (PKCS#8, SEC1 or PKCS#1). Required; must be owner-only.
    pub key: Option<PathBuf>,
    /// The CA certificate(s) client certificates must chain to, PEM. Required.
    pub client_ca: Option<PathBuf>,
    /// CRL files (PEM or DER) of the client CAs: a listed client certificate is refused. One
    /// path or a list; empty: no revocation check. When given, every CA of `client_ca` needs
    /// one (a certificate whose revocation status is unknown is refused).
    #[serde(
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub client_crl: Vec<PathBuf>,
    /// The accredited clients file (`clients.toml`). Required.
    pub clients: Option<PathBuf>,
    /// Accept clients that offer only classical TLS key exchange (X25519, P-256, P-384).
    /// Default false: the post-quantum hybrid X25519MLKEM768 is required and a classical-only
    /// client fails the handshake (protocol-spec/wire.md §2.1). Even when true, X25519MLKEM768
    /// is listed first, and every classical handshake is logged as a warning.
    pub allow_classical_key_exchange: bool,
    /// The operator's audit key (at least 32 random bytes, owner-only, outside the data
    /// directory): every audit record is then authenticated with HMAC-SHA256 under it. Absent:
    /// records are chained with plain SHA-256 (anyone able to write the log can rewrite it).
    pub audit_key_file: Option<PathBuf>,
    /// A file outside the data directory (another file system, or one shipped off the machine)
    /// to which the server appends the audit chain's head (`seq`, `link`) every
    /// `audit_anchor_interval_secs` and at shutdown; `nayose server audit verify --anchors`
    /// checks the log against it. Absent: no periodic anchors (`nayose server audit anchor`
    /// writes them on demand).
    pub audit_anchor_file: Option<PathBuf>,
    /// Seconds between two anchors appended to `audit_anchor_file`.
    pub audit_anchor_interval_secs: u64,
    /// Rotate the audit log when `audit/audit.log` reaches this many bytes: it is closed as a
    /// segment `audit/audit.<first record>.log` and a new file continues the chain (see
    /// `nayose server audit verify`). 0: never (`nayose server audit rotate` still rotates by
    /// hand while no server runs). Not used with `postgres` (the shared table is not rotated).
    pub audit_rotate_bytes: u64,
    /// Refused and failed requests and connections are not written one record each but counted
    /// per (client, address, request kind, outcome) and written as one `refusals` record per
    /// key every this many seconds (and at shutdown).
    pub audit_refusal_interval_secs: u64,
    /// Most simultaneous QUIC connections one client id may hold.
    pub max_connections_per_client: u32,
    /// Most concurrently open request streams per connection (QUIC `initial_max_streams_bidi`).
    pub max_concurrent_streams: u32,
    /// Most requests the whole server works on at once; more are answered `Busy`.
    pub max_concurrent_requests: u32,
    /// Most requests one client id works on at once, over all its connections (downloads
    /// included); more are answered `Busy`.
    pub max_requests_per_client: u32,
    /// Most base and delta downloads the whole server streams at once: a pool separate from
    /// `max_concurrent_requests`, so Info and Evaluate stay answerable while downloads are
    /// saturated; more are answered `Busy`.
    pub max_concurrent_downloads: u32,
    /// Most base and delta downloads one client id has in progress at once; more are answered
    /// `Busy`.
    pub max_downloads_per_client: u32,
    /// Time, in milliseconds, the peer has to accept each response frame (flow control): a
    /// stream that stalls longer is reset with `StreamCode::Timeout` and its slots are freed.
    /// A base chunk of `fetch_chunk_entries` entries must thus move at least
    /// `36 × fetch_chunk_entries` bytes per `write_timeout_ms`.
    pub write_timeout_ms: u64,
    /// Refused or failed connections (handshake failures, certificates without an accredited
    /// id, connections over the allowance) a source address or a certificate may cause in a
    /// burst before its further connections are refused before the handshake.
    pub refused_burst: u32,
    /// Refill of that allowance, per minute.
    pub refused_per_minute: u32,
    /// QUIC idle timeout in milliseconds.
    pub idle_timeout_ms: u64,
    /// Time a client has to send a complete request frame on a new stream, in milliseconds.
    pub request_timeout_ms: u64,
    /// Most elements in one Evaluate (1 to 4096); announced in Info as `max_batch`.
    pub max_batch: u32,
    /// Entries per BaseChunk of a FetchBase download (1 to 65536).
    pub fetch_chunk_entries: u32,
    /// Most epochs whose deltas are served (the server announces `oldest_delta_base`
    /// accordingly; the build keeps `delta_history` delta files, default 90).
    pub delta_history: u32,
    /// Most FetchBase downloads one client may have in progress; more are answered `Busy`.
    pub max_base_downloads_per_client: u32,
    /// Most FetchBase downloads in progress server-wide; more are answered `Busy`.
    pub max_base_downloads: u32,
    /// Seconds between status lines in the log (0: no status lines).
    pub status_interval_secs: u64,
    /// How often, in milliseconds, the server checks the `current` file for a new epoch.
    pub epoch_poll_ms: u64,
    /// How long, in milliseconds, a graceful shutdown waits for in-flight requests.
    pub shutdown_grace_ms: u64,
    /// Offset of the quota day from UTC, in minutes (default 540: quota days start at 00:00
    /// Japan Standard Time).
    pub quota_utc_offset_minutes: i32,
    /// Quota days in the rolling window of the enumeration controls (1 to 366, default 30):
    /// each entity's evaluations in the last this many quota days (today included) are
    /// counted, shown in the status lines and held to its `hard_cap` (security.md §6.1).
    pub enumeration_window_days: u32,
    /// PostgreSQL connection string (`host=... user=... dbname=...`) of the quota and audit
    /// state shared by server replicas. Absent (the default): the files of `state/` and
    /// `audit/` in the data directory, for one server. The CLI also reads `NAYOSE_POSTGRES`, so
    /// that a password need not be in this file; it is never logged.
    pub postgres: Option<PostgresSetting>,
}

/// A PostgreSQL connection string. Its `Debug` hides everything but host, port, user and
/// database, so a password never reaches a log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PostgresSetting(pub String);

impl std::fmt::Debug for PostgresSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PostgresSetting({})",
            crate::pgstate::describe_target(&self.0)
        )
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: None,
            listen: None,
            metrics_listen: None,
            audit_key_file: None,
            audit_anchor_file: None,
            audit_anchor_interval_secs: 3600,
            audit_refusal_interval_secs: 60,
            audit_rotate_bytes: DEFAULT_AUDIT_ROTATE_BYTES,
            cert: None,
            key: None,
            client_ca: None,
            client_crl: Vec::new(),
            clients: None,
            allow_classical_key_exchange: false,
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            max_concurrent_requests: 64,
            max_requests_per_client: 16,
            max_concurrent_downloads: 32,
            max_downloads_per_client: 4,
            write_timeout_ms: 10_000,
            refused_burst: 20,
            refused_per_minute: 10,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_batch: MAX_BATCH_ELEMENTS as u32,
            fetch_chunk_entries: 16_384,
            delta_history: crate::build::DEFAULT_DELTA_HISTORY,
            max_base_downloads_per_client: 2,
            max_base_downloads: 16,
            status_interval_secs: 60,
            epoch_poll_ms: 1000,
            shutdown_grace_ms: 10_000,
            quota_utc_offset_minutes: 540,
            enumeration_window_days: DEFAULT_ENUMERATION_WINDOW_DAYS,
            postgres: None,
        }
    }
}

/// A path or a list of paths (`client_crl = "crl.pem"` or `client_crl = ["a.pem", "b.der"]`).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(p) => vec![p],
        OneOrMany::Many(v) => v,
    })
}

fn resolve(base: &Path, p: &mut Option<PathBuf>) {
    if let Some(path) = p.as_mut()
        && path.is_relative()
    {
        *path = base.join(&*path);
    }
}

impl ServerConfig {
    /// Reads `server.toml`; relative paths in it are made relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ServerError> {
        let text = std::fs::read_to_string(path).map_err(ServerError::io("cannot read", path))?;
        let mut cfg = Self::from_toml_str(&text).map_err(|reason| ServerError::Config {
            path: path.to_path_buf(),
            reason,
        })?;
        let base = crate::fsutil::parent_of(path);
        for p in [
            &mut cfg.data_dir,
            &mut cfg.cert,
            &mut cfg.key,
            &mut cfg.client_ca,
            &mut cfg.clients,
            &mut cfg.audit_key_file,
            &mut cfg.audit_anchor_file,
        ] {
            resolve(&base, p);
        }
        for p in &mut cfg.client_crl {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }

    /// Parses `server.toml` text (paths are taken as written).
    pub fn from_toml_str(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Checks every limit's range; the error names the key and the allowed range.
    pub fn validate(&self) -> Result<(), ServerError> {
        let bad = |reason: String| ServerError::Config {
            path: PathBuf::from("server.toml"),
            reason,
        };
        let check = |name: &str, v: u64, lo: u64, hi: u64| {
            if v < lo || v > hi {
                Err(bad(format!("{name} = {v} is outside {lo}..={hi}")))
            } else {
                Ok(())
            }
        };
        check(
            "max_connections_per_client",
            self.max_connections_per_client.into(),
            1,
            1024,
        )?;
        check(
            "max_concurrent_streams",
            self.max_concurrent_streams.into(),
            1,
            1024,
        )?;
        check(
            "max_concurrent_requests",
            self.max_concurrent_requests.into(),
            1,
            1 << 16,
        )?;
        check(
            "max_requests_per_client",
            self.max_requests_per_client.into(),
            1,
            1 << 16,
        )?;
        check(
            "max_concurrent_downloads",
            self.max_concurrent_downloads.into(),
            1,
            1 << 16,
        )?;
        check(
            "max_downloads_per_client",
            self.max_downloads_per_client.into(),
            1,
            1024,
        )?;
        check("write_timeout_ms", self.write_timeout_ms, 100, 600_000)?;
        check("refused_burst", self.refused_burst.into(), 1, 1 << 20)?;
        check(
            "refused_per_minute",
            self.refused_per_minute.into(),
            1,
            1 << 20,
        )?;
        check(
            "audit_refusal_interval_secs",
            self.audit_refusal_interval_secs,
            1,
            86_400,
        )?;
        check(
            "audit_anchor_interval_secs",
            self.audit_anchor_interval_secs,
            1,
            86_400 * 7,
        )?;
        if self.audit_rotate_bytes != 0 {
            check(
                "audit_rotate_bytes (or 0: never)",
                self.audit_rotate_bytes,
                4096,
                1 << 40,
            )?;
        }
        check("idle_timeout_ms", self.idle_timeout_ms, 1000, 3_600_000)?;
        check("request_timeout_ms", self.request_timeout_ms, 100, 600_000)?;
        check(
            "max_batch",
            self.max_batch.into(),
            1,
            MAX_BATCH_ELEMENTS as u64,
        )?;
        check(
            "fetch_chunk_entries",
            self.fetch_chunk_entries.into(),
            1,
            MAX_ENTRIES_PER_CHUNK as u64,
        )?;
        check("delta_history", self.delta_history.into(), 0, 100_000)?;
        check(
            "max_base_downloads_per_client",
            self.max_base_downloads_per_client.into(),
            1,
            1024,
        )?;
        check(
            "max_base_downloads",
            self.max_base_downloads.into(),
            1,
            1 << 16,
        )?;
        check("epoch_poll_ms", self.epoch_poll_ms, 50, 3_600_000)?;
        check(
            "enumeration_window_days",
            self.enumeration_window_days.into(),
            1,
            366,
        )?;
        check("shutdown_grace_ms", self.shutdown_grace_ms, 0, 600_000)?;
        if self.quota_utc_offset_minutes.abs() > 14 * 60 {
            return Err(bad(format!(
                "quota_utc_offset_minutes = {} is outside -840..=840",
                self.quota_utc_offset_minutes
            )));
        }
        Ok(())
    }

    /// The listen address (the configured one or [`DEFAULT_LISTEN`]).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.unwrap_or_else(|| {
            DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 4433)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let c = ServerConfig::from_toml_str("").unwrap();
        assert_eq!(c, ServerConfig::default());
        c.validate().unwrap();
        let c = ServerConfig::from_toml_str("max_batch = 10\nlisten = \"127.0.0.1:9\"").unwrap();
        assert_eq!(c.max_batch, 10);
        assert!(ServerConfig::from_toml_str("max_btach = 10").is_err());
        assert!(
            ServerConfig::from_toml_str("k_anon = true").is_err(),
            "nayose/2 has no k-anon settings"
        );
        let c = ServerConfig::from_toml_str("max_batch = 5000").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("max_batch"));
    }

    #[test]
    fn classical_key_exchange_is_refused_unless_allowed() {
        assert!(!ServerConfig::default().allow_classical_key_exchange);
        let c = ServerConfig::from_toml_str("allow_classical_key_exchange = true").unwrap();
        assert!(c.allow_classical_key_exchange);
        assert!(ServerConfig::from_toml_str("allow_classical_key_exchange = \"yes\"").is_err());
    }

    #[test]
    fn client_crl_is_one_path_or_a_list_relative_to_the_file() {
        let c = ServerConfig::from_toml_str("client_crl = \"crl.pem\"").unwrap();
        assert_eq!(c.client_crl, vec![PathBuf::from("crl.pem")]);
        let c = ServerConfig::from_toml_str("client_crl = [\"a.pem\", \"b.der\"]").unwrap();
        assert_eq!(c.client_crl.len(), 2);
        assert!(ServerConfig::from_toml_str("client_crl = 3").is_err());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("server.toml");
        std::fs::write(&f, "client_crl = [\"pki/client-crl.pem\"]\n").unwrap();
        let c = ServerConfig::load(&f).unwrap();
        assert_eq!(c.client_crl, vec![dir.path().join("pki/client-crl.pem")]);
    }
}
