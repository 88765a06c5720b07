//! `nayose server build|serve|check|audit verify|anchor|rotate|export|rotate-label-key`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use nayose_server::{
    AuditKey, BuildOptions, EncodingChoice, PostgresSetting, Server, ServerConfig, VerifyOptions,
    abandon_temp_files, anchor_audit, build_epoch, check_current_epoch, export_audit_postgres,
    rotate_audit, rotate_label_master_key, verify_audit_opts,
};

use crate::cli::LogFormat;
use crate::progress;
use crate::signals::{StopSignals, Stopped};

/// Runs the build on a blocking thread, or returns at the first SIGINT, SIGTERM or SIGHUP.
/// Stopping mid-build is as safe as a crash (the publication protocol): the build's own files
/// are in the data directory and the next build removes them.
fn build_or_stop(
    opts: BuildOptions,
) -> Result<Result<Result<nayose_server::BuildReport, nayose_server::ServerError>, Stopped>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let outcome = rt.block_on(async {
        let mut stop = StopSignals::install()?;
        let build = tokio::task::spawn_blocking(move || build_epoch(&opts));
        tokio::select! {
            r = build => Ok(Ok(r.context("the build thread failed")?)),
            s = stop.recv() => Ok(Err(s)),
        }
    });
    if matches!(outcome, Ok(Err(_))) {
        rt.shutdown_background();
    }
    outcome
}

#[derive(Debug, Subcommand)]
pub(crate) enum ServerCommand {
    /// Build and publish the next epoch from the registry CSV
    /// (person_id,insurer_number,symbol,number,branch): a delta of the current epoch (only new
    /// numbers are evaluated), or the first epoch of a new key period.
    Build(BuildArgs),
    /// Serve the current epoch over QUIC to accredited clients (mutual TLS).
    Serve(ServeArgs),
    /// Audit log tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Load and verify the current epoch (checksums, keys, file permissions) without serving.
    Check {
        /// The server's data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Create the management body's Ed25519 announcement key pair (on an offline machine).
    KeygenAnnounce(crate::announce_cmd::KeygenAnnounceArgs),
    /// Sign the statements of the current key period and its epochs with the announcement key,
    /// into DATA_DIR/announcements/ (run after each build; idempotent).
    Announce(crate::announce_cmd::AnnounceArgs),
    /// Replace the label master key. It takes effect with the next new key period
    /// (`server build --new-key-period`); every client's labels change then, which breaks
    /// longitudinal linkage across the rotation.
    RotateLabelKey {
        /// The server's data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// The server's data directory (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// The registry CSV.
    #[arg(long)]
    registry: PathBuf,
    /// Text encoding of the registry: auto (detect), utf-8 or cp932 (Shift_JIS).
    #[arg(long, default_value = "auto")]
    encoding: String,
    /// Build without the rows that fail validation (they are still listed) instead of stopping.
    #[arg(long)]
    skip_invalid: bool,
    /// Restore insurer numbers that lost a leading zero when the check digit confirms it.
    #[arg(long)]
    repair: bool,
    /// Start a new key period: a fresh VOPRF key, every number evaluated again, every client
    /// downloads a new base and re-evaluates its numbers. For a schedule (say yearly) or a
    /// suspected key compromise.
    #[arg(long)]
    new_key_period: bool,
    /// Write every rejected, repaired, changed, duplicate or conflicting registry row to this CSV
    /// (line, column, value as written, value used, reason, message), in the registry's
    /// encoding; written also when invalid rows stop the build.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Name of the person id column. Columns not named are recognised from the header
    /// (person_id, 個人ID, 共通ID, and the number columns' Japanese or English names).
    #[arg(long)]
    person_column: Option<String>,
    /// Name of the one column holding combined numbers (dashed or colon form).
    #[arg(long, conflicts_with_all = ["insurer_column", "symbol_column", "number_column", "branch_column"])]
    combined_column: Option<String>,
    /// Name of the insurer-number column.
    #[arg(long)]
    insurer_column: Option<String>,
    /// Name of the 記号 column.
    #[arg(long)]
    symbol_column: Option<String>,
    /// Name of the 番号 column.
    #[arg(long)]
    number_column: Option<String>,
    /// Name of the 枝番 column.
    #[arg(long)]
    branch_column: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// A server.toml holding any of the settings below (flags override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The server's data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// UDP address to listen on, e.g. 0.0.0.0:4433.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// The server's certificate chain (PEM).
    #[arg(long)]
    cert: Option<PathBuf>,
    /// The server's private key (PEM).
    #[arg(long)]
    key: Option<PathBuf>,
    /// CA certificate(s) that issue accredited clients' certificates (PEM).
    #[arg(long)]
    client_ca: Option<PathBuf>,
    /// A CRL of the client CA (PEM or DER); repeat for several. Replaces client_crl of the file.
    #[arg(long)]
    client_crl: Vec<PathBuf>,
    /// The accredited clients list (clients.toml).
    #[arg(long)]
    clients: Option<PathBuf>,
    /// Accept clients that offer only classical TLS key exchange (X25519, P-256, P-384);
    /// sets allow_classical_key_exchange of the file (default: refused, X25519MLKEM768 is
    /// required).
    #[arg(long)]
    allow_classical_key_exchange: bool,
    /// PostgreSQL connection string (`host=... user=... dbname=...`) of the quota and audit
    /// state shared by replicas; replaces `postgres` of the file. Prefer the environment
    /// variable, which keeps a password out of the process list.
    #[arg(long, env = "NAYOSE_POSTGRES", hide_env_values = true)]
    postgres: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Verify the hash chain of the audit log in a data directory: every segment a rotation
    /// closed (audit/audit.<first record>.log) in order, then audit/audit.log; exits non-zero if
    /// any record or segment was edited, removed, reordered or truncated. When the oldest
    /// segments were moved away, it verifies from the oldest one present and says which records
    /// it did not check.
    Verify {
        /// The server's data directory.
        data_dir: PathBuf,
        /// The audit key file (`audit_key_file` of server.toml): required when the records are
        /// authenticated with a key; every such record is checked against it.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// An anchors file (written by `audit anchor` or the server's `audit_anchor_file`):
        /// every head anchored in it must still be in the log.
        #[arg(long)]
        anchors: Option<PathBuf>,
        /// A directory holding segments moved out of DATA_DIR/audit/ (archived): they are
        /// verified in order with the rest, so the whole chain is checked from record 1.
        #[arg(long)]
        archive: Option<PathBuf>,
    },
    /// Close audit/audit.log as a segment (audit/audit.<first record>.log) now; a new
    /// audit.log continues the chain. Only while no server runs on the data directory: a
    /// running server rotates by itself when audit.log reaches `audit_rotate_bytes`.
    Rotate {
        /// The server's data directory.
        data_dir: PathBuf,
        /// The audit key file (`audit_key_file` of server.toml), when the records are keyed: the
        /// new file's first record is authenticated with it like every record.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Verify the audit log and append its head (record count and last link) to an anchors
    /// file outside the data directory, for `audit verify --anchors` to check later.
    Anchor {
        /// The server's data directory.
        data_dir: PathBuf,
        /// The audit key file, as for `verify`.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// The anchors file to append to (created if missing; must not be in the data
        /// directory).
        #[arg(long)]
        anchors: PathBuf,
    },
    /// Write the audit log that replicas keep in PostgreSQL to DIR/audit/audit.log and
    /// DIR/audit/audit.head (one consistent snapshot), for `audit verify DIR` and as evidence.
    Export {
        /// PostgreSQL connection string, as `postgres` of server.toml.
        #[arg(long, env = "NAYOSE_POSTGRES", hide_env_values = true)]
        postgres: String,
        /// The directory to write (created owner-only; an existing export is replaced).
        dir: PathBuf,
    },
}

/// Runs a server command. With `--log-format json`, `serve` also reports that it listens as a
/// log event, so that its stderr holds JSON lines only.
pub(crate) fn run(cmd: ServerCommand, quiet: bool, log_format: LogFormat) -> Result<()> {
    match cmd {
        ServerCommand::Build(a) => {
            let encoding: EncodingChoice = a
                .encoding
                .parse()
                .map_err(|e| anyhow::anyhow!("--encoding {}: {e}", a.encoding))?;
            let mut opts = BuildOptions::new(&a.data_dir, &a.registry);
            opts.encoding = encoding;
            opts.skip_invalid = a.skip_invalid;
            opts.repair = a.repair;
            opts.new_key_period = a.new_key_period;
            opts.report = a.report.clone();
            opts.columns = nayose_server::ColumnSpec {
                person_id: a.person_column.clone(),
                insurer: a.insurer_column.clone(),
                symbol: a.symbol_column.clone(),
                number: a.number_column.clone(),
                branch: a.branch_column.clone(),
                combined: a.combined_column.clone(),
            };
            if progress::enabled(quiet) {
                opts.progress = Some(progress::build_bars());
            }
            let report = match build_or_stop(opts)? {
                Ok(r) => r.with_context(|| {
                    format!(
                        "building an epoch from {} into {}",
                        a.registry.display(),
                        a.data_dir.display()
                    )
                })?,
                Err(stopped) => {
                    // The report's temporary file holds registry numbers and person ids.
                    let _ = abandon_temp_files();
                    eprintln!(
                        "error: interrupted by {}: the build was stopped; the current epoch is \
                         unchanged (or, if it was already being published, the new one is \
                         complete), no report was written and no temporary file is left \
                         outside the data directory",
                        stopped.signal
                    );
                    std::process::exit(i32::from(stopped.status));
                }
            };
            eprintln!("{report}");
            Ok(())
        }
        ServerCommand::Serve(a) => {
            let mut cfg = match &a.config {
                Some(p) => {
                    ServerConfig::load(p).with_context(|| format!("reading {}", p.display()))?
                }
                None => ServerConfig::default(),
            };
            if a.data_dir.is_some() {
                cfg.data_dir = a.data_dir;
            }
            if a.listen.is_some() {
                cfg.listen = a.listen;
            }
            if a.cert.is_some() {
                cfg.cert = a.cert;
            }
            if a.key.is_some() {
                cfg.key = a.key;
            }
            if a.client_ca.is_some() {
                cfg.client_ca = a.client_ca;
            }
            if !a.client_crl.is_empty() {
                cfg.client_crl = a.client_crl;
            }
            if a.clients.is_some() {
                cfg.clients = a.clients;
            }
            if a.allow_classical_key_exchange {
                cfg.allow_classical_key_exchange = true;
            }
            if let Some(pg) = a.postgres {
                cfg.postgres = Some(PostgresSetting(pg));
            }
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(async move {
                let server = Server::start(cfg).await?;
                match log_format {
                    LogFormat::Text => eprintln!(
                        "nayose server listening on {} (epoch {}); Ctrl-C or SIGTERM stops it",
                        server.local_addr(),
                        server.epoch_id()
                    ),
                    LogFormat::Json => tracing::info!(
                        listen = %server.local_addr(),
                        epoch = server.epoch_id(),
                        "nayose server listening on {}; Ctrl-C or SIGTERM stops it",
                        server.local_addr()
                    ),
                }
                server.serve_until_signal().await?;
                Ok::<_, anyhow::Error>(())
            })
        }
        ServerCommand::Audit(AuditCommand::Verify {
            data_dir,
            key_file,
            anchors,
            archive,
        }) => {
            let key = key_file
                .as_deref()
                .map(|p| AuditKey::load(p, None))
                .transpose()
                .context("reading the audit key file")?;
            let opts = VerifyOptions {
                key: key.as_ref(),
                anchors: anchors.as_deref(),
                archive: archive.as_deref(),
            };
            let summary = verify_audit_opts(&data_dir, &opts)
                .with_context(|| format!("verifying the audit log in {}", data_dir.display()))?;
            println!("{summary}");
            Ok(())
        }
        ServerCommand::Audit(AuditCommand::Rotate { data_dir, key_file }) => {
            if !data_dir.is_dir() {
                bail!("{} is not a directory", data_dir.display());
            }
            let key = key_file
                .as_deref()
                .map(|p| AuditKey::load(p, None))
                .transpose()
                .context("reading the audit key file")?;
            let time = nayose_server::rfc3339_now();
            match rotate_audit(&data_dir, key, time)
                .with_context(|| format!("rotating the audit log of {}", data_dir.display()))?
            {
                Some(r) => println!("{r}"),
                None => println!("audit.log holds no record: nothing to rotate"),
            }
            Ok(())
        }
        ServerCommand::Audit(AuditCommand::Export { postgres, dir }) => {
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let head = rt
                .block_on(export_audit_postgres(&postgres, &dir))
                .with_context(|| format!("exporting the audit log into {}", dir.display()))?;
            println!(
                "exported {} records (last link {}) to {}; verify with: nayose server audit \
                 verify {} [--key-file FILE]",
                head.count,
                head.hash,
                dir.join("audit").display(),
                dir.display()
            );
            Ok(())
        }
        ServerCommand::Audit(AuditCommand::Anchor {
            data_dir,
            key_file,
            anchors,
        }) => {
            let key = key_file
                .as_deref()
                .map(|p| AuditKey::load(p, None))
                .transpose()
                .context("reading the audit key file")?;
            let time = nayose_server::rfc3339_now();
            let a = anchor_audit(&data_dir, key.as_ref(), &anchors, time).with_context(|| {
                format!(
                    "anchoring the audit log of {} in {}",
                    data_dir.display(),
                    anchors.display()
                )
            })?;
            println!(
                "anchored: {} records, last link {} -> {}",
                a.seq,
                a.link,
                anchors.display()
            );
            Ok(())
        }
        ServerCommand::Check { data_dir } => {
            let summary = check_current_epoch(&data_dir)
                .with_context(|| format!("checking the current epoch in {}", data_dir.display()))?;
            println!("{summary}");
            Ok(())
        }
        ServerCommand::KeygenAnnounce(a) => crate::announce_cmd::keygen(&a),
        ServerCommand::Announce(a) => crate::announce_cmd::run(&a),
        ServerCommand::RotateLabelKey { data_dir } => {
            if !data_dir.is_dir() {
                bail!("{} is not a directory", data_dir.display());
            }
            let report = rotate_label_master_key(&data_dir).with_context(|| {
                format!("rotating the label master key in {}", data_dir.display())
            })?;
            eprintln!("{report}");
            Ok(())
        }
    }
}
