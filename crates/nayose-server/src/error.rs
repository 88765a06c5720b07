//! The one error type of the server node.
//!
//! Invariant: every message names the file, setting or input that was wrong and, where there is
//! one, the command that fixes it; no message contains a key, an OPRF output, a number, a person
//! id or a label.

use std::path::PathBuf;

use thiserror::Error;

/// Everything that can stop the server node or one of its commands.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A file or directory could not be read, written, created, renamed or synced.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (e.g. "cannot read", "cannot fsync").
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A secret file (key or table) can be read by the group or by others.
    #[error(
        "{path} has mode {mode:04o}, readable by group or others; it holds secret key material. \
         Fix it with: chmod 600 {path}"
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file does not hold a valid key.
    #[error("{path} is not a valid key file: {reason}")]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A configuration file could not be parsed or holds an invalid value.
    #[error("{path}: {reason}")]
    Config {
        /// The configuration file (server.toml or clients.toml).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A required setting was given neither in server.toml nor as a command-line flag.
    #[error("the setting `{setting}` is required: set it in server.toml or pass {flag}")]
    MissingSetting {
        /// The server.toml key.
        setting: &'static str,
        /// The command-line flag.
        flag: &'static str,
    },
    /// A certificate or private key PEM file could not be used.
    #[error("{path}: {reason}")]
    Tls {
        /// The PEM file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The QUIC endpoint could not be created or bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The listen address.
        addr: std::net::SocketAddr,
        /// The cause.
        reason: String,
    },
    /// The data directory has no published epoch.
    #[error(
        "{data_dir} has no published epoch (no `current` file); build one with \
         `nayose server build --data-dir {data_dir} --registry FILE`"
    )]
    NoEpoch {
        /// The data directory.
        data_dir: PathBuf,
    },
    /// A stored epoch is damaged: a checksum, size or header does not match its manifest.
    #[error("epoch {epoch} in {path} is damaged: {reason}")]
    CorruptEpoch {
        /// The epoch directory name.
        epoch: String,
        /// The file that failed the check.
        path: PathBuf,
        /// Which check failed.
        reason: String,
    },
    /// The registry file could not be read (a whole-file problem, not one bad row).
    #[error("registry {path}: {reason}")]
    Registry {
        /// The registry file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A registry row is invalid and `--skip-invalid` was not given.
    #[error(
        "registry {path}, line {line}: {reason} (fix the row, or pass --skip-invalid to reject \
         such rows and report them)"
    )]
    InvalidRow {
        /// The registry file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong with the row.
        reason: String,
    },
    /// The registry holds no valid number.
    #[error("registry {path} holds no valid number; refusing to publish an empty epoch")]
    EmptyRegistry {
        /// The registry file.
        path: PathBuf,
    },
    /// Registry rows are invalid and `--skip-invalid` was not given.
    #[error(
        "registry {path}: {count} invalid row(s); fix them, or pass --skip-invalid to build \
         without them (they are then reported){}:\n{}{}",
        report.as_ref().map(|r| format!("; every one is listed in the report {}", r.display())).unwrap_or_else(|| "; pass --report FILE to list every one".into()),
        examples.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"),
        if *count > examples.len() as u64 { format!("\n  ... and {} more", *count - examples.len() as u64) } else { String::new() }
    )]
    InvalidRows {
        /// The registry file.
        path: PathBuf,
        /// How many rows are invalid.
        count: u64,
        /// The first ones, in file order.
        examples: Vec<nayose_csv::RowError>,
        /// The row report, if one was asked for (it lists every invalid row).
        report: Option<PathBuf>,
    },
    /// The build's row report could not be written.
    #[error("build report {path}: {reason}")]
    Report {
        /// The report file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The registry holds more persons or numbers than the table format can index.
    #[error("registry {path}: {reason}")]
    TooLarge {
        /// The registry file.
        path: PathBuf,
        /// Which limit was exceeded.
        reason: String,
    },
    /// An error of the OPRF core (a key or an input it rejected).
    #[error("OPRF: {0}")]
    Oprf(#[from] nayose_oprf::OprfError),
    /// An error of the table core.
    #[error("table: {0}")]
    Table(#[from] nayose_table::TableError),
    /// The audit log failed verification.
    #[error("audit log {path}: {reason}")]
    AuditBroken {
        /// The audit log file (or its head file).
        path: PathBuf,
        /// The first inconsistency found: which record and what is wrong.
        reason: String,
    },
    /// An audit anchors file cannot be used (inside the data directory, or a line that is not
    /// an anchor).
    #[error("audit anchors file {path}: {reason}")]
    AuditAnchors {
        /// The anchors file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The label master key was rotated since the current key period started; a build of the
    /// same key period would silently keep the old key.
    #[error(
        "the label master key was rotated ({rotated}) after key period {key_period} started with \
         {in_use}; start a new key period (--new-key-period) to use the rotated label master key"
    )]
    LabelKeyRotated {
        /// The current key period (display form).
        key_period: String,
        /// Key id of the K_L the key period uses.
        in_use: String,
        /// Key id of the rotated K_L in the data directory.
        rotated: String,
    },
    /// The person-id key is gone while an epoch's person map was made with it.
    #[error(
        "{path} is missing, but the person map of epoch {epoch} was made with it: restore it from \
         the backup of the data directory (without it no person keeps its serial, and every label \
         every client holds would change; with no backup, the only way on is a new data directory, \
         and every client's labels change)"
    )]
    PersonIdKeyMissing {
        /// The key file.
        path: PathBuf,
        /// The epoch whose person map needs it.
        epoch: String,
    },
    /// The person-id key is not the one the person map to continue was made with.
    #[error(
        "{path} was made with another person-id key than DATA_DIR/person-id.key (its key check \
         differs; epoch {epoch}): restore the matching person-id.key from the backup of the data \
         directory. Nothing was built: with another key no person would keep its serial, and every \
         label every client holds would change"
    )]
    PersonIdKeyMismatch {
        /// The person map.
        path: PathBuf,
        /// Its epoch.
        epoch: String,
    },
    /// Two distinct numbers got the same tag under the key period's key (table.md §8.3).
    #[error(
        "two distinct numbers have the same tag in key period {key_period} (a 2^-70 event); the \
         epoch was not published: start a new key period (--new-key-period)"
    )]
    TagCollision {
        /// The key period (display form).
        key_period: String,
    },
    /// Another build holds the data directory's build lock: two builds at once could allocate
    /// the same epoch number and publish two different labels under one versioned pad.
    #[error(
        "another build is running on this data directory (it holds the lock {path}); wait for \
         it to finish and build again (the lock is released when that process exits)"
    )]
    BuildLocked {
        /// The lock file (`DATA_DIR/build.lock`).
        path: PathBuf,
    },
    /// The audit key file (`audit_key_file`) cannot be used.
    #[error("audit key file {path}: {reason}")]
    AuditKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// Another `server serve` holds the data directory's serve lock: two servers on one data
    /// directory would each grant a client its whole quota.
    #[error(
        "another `nayose server serve` is running on this data directory (it holds the lock \
         {path}); stop it first, or give this server another data directory"
    )]
    ServeLocked {
        /// The lock file (`DATA_DIR/serve.lock`).
        path: PathBuf,
    },
    /// `audit rotate` found a server running on the data directory: the server's writer owns
    /// `audit/` while it runs.
    #[error(
        "a `nayose server serve` is running on this data directory (it holds the lock {path}); \
         it rotates its audit log itself when audit.log reaches `audit_rotate_bytes` \
         (server.toml). To rotate by hand, stop it first"
    )]
    AuditRotateServing {
        /// The lock file (`DATA_DIR/serve.lock`).
        path: PathBuf,
    },
    /// `rotate-label-key` found a build running on the data directory: a build reads the label
    /// master key when it starts a key period, so a key replaced during a build could be half in
    /// force.
    #[error(
        "a `nayose server build` is running on this data directory (it holds the lock {path}); \
         the label master key was not changed. Rotate it after the build has finished (the lock \
         is released when that process exits)"
    )]
    LabelKeyRotationDuringBuild {
        /// The lock file (`DATA_DIR/build.lock`).
        path: PathBuf,
    },
    /// `current` names an epoch older than one this data directory has already served.
    #[error(
        "`current` names epoch {current}, but this data directory has already served epoch \
         {served} (recorded in {path}); epochs only move forward. Point `current` back at epoch \
         {served} or newer (or run `nayose server build`); if the data directory was restored \
         from a backup on purpose, start a new key period and remove {path}"
    )]
    EpochRolledBack {
        /// The epoch `current` names.
        current: u32,
        /// The greatest epoch served.
        served: u32,
        /// `DATA_DIR/state/served-epoch`.
        path: PathBuf,
    },
    /// A state file of the server (`state/`) cannot be parsed.
    #[error("{path} is damaged: {reason}")]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// A build was stopped at an injected failure point (tests of crash safety only).
    #[error("build stopped at injected failure point {0:?}")]
    InjectedFailure(crate::build::FailPoint),
    /// The PostgreSQL state of server replicas (quotas, audit log) cannot be used.
    #[error("PostgreSQL ({target}): {action}: {reason}")]
    Postgres {
        /// Host, port, user and database of the connection string (never its password).
        target: String,
        /// What was being done (e.g. "cannot connect", "cannot charge the quota").
        action: &'static str,
        /// The database's or the driver's error, or what is wrong.
        reason: String,
    },
    /// A background task failed unexpectedly.
    #[error("internal error: {0}")]
    Internal(String),
    /// Signed announcements could not be made (protocol-spec/announcements.md §6).
    #[error("announce: {0}")]
    Announce(String),
}

impl ServerError {
    /// An [`ServerError::Io`] for `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> ServerError {
        let path = path.into();
        move |source| ServerError::Io {
            action,
            path,
            source,
        }
    }
}
