//! `nayose client link`.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use nayose_client::{
    ClientConfig, ClientError, ColumnNames, Encoding, LinkSummary, Progress, abandon_temp_files,
    link_async,
};

use crate::i18n::{self, Lang};
use crate::progress;
use crate::signals::{StopSignals, Stopped};

#[derive(Debug, Subcommand)]
pub(crate) enum ClientCommand {
    /// Link the held numbers of a CSV file: adds nayose_group, nayose_status and nayose_note
    /// columns.
    Link(Box<LinkArgs>),
}

#[derive(Debug, Args)]
pub(crate) struct LinkArgs {
    /// A client.toml holding any of the settings below (flags override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The server's address, HOST:PORT.
    #[arg(long)]
    server: Option<String>,
    /// The name the server's certificate must carry (defaults to HOST of --server).
    #[arg(long)]
    server_name: Option<String>,
    /// CA certificate that issued the server's certificate (PEM).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// This client's certificate (PEM), issued by the management body's CA.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// This client's private key (PEM).
    #[arg(long)]
    key: Option<PathBuf>,
    /// The held-numbers CSV.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Where to write the input rows with nayose_group, nayose_status and nayose_note added.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Directory of the caches of each key period (OPRF outputs, the table, a partial download).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// The management body's announcement public key: 64 hex digits or a file holding them
    /// (repeatable; replaces `announcement_keys` of client.toml). The server must then show
    /// statements signed with it.
    #[arg(long = "announcement-key", value_name = "HEX|FILE")]
    announcement_keys: Vec<String>,
    /// Text encoding of the input: auto (detect UTF-16, UTF-8 or CP932), utf-8 or cp932.
    #[arg(long)]
    encoding: Option<String>,
    /// Field delimiter of the input: comma or tab (default: detected from the header line).
    #[arg(long)]
    delimiter: Option<String>,
    /// Encoding of the output and the report: utf-8-bom, utf-8 or cp932 (default: the
    /// input's; UTF-8 with a BOM for UTF-8, UTF-16 and workbook inputs, so Excel opens it).
    #[arg(long)]
    output_encoding: Option<String>,
    /// Write every invalid, repaired, blank-skipped or changed row to this CSV (line, column,
    /// value as written, value used, reason, message).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Name of the one column holding combined numbers (dashed or colon form). Without any
    /// column flag the columns are recognised from the header (Japanese or English names).
    #[arg(long, conflicts_with_all = ["insurer_column", "symbol_column", "number_column", "branch_column"])]
    combined_column: Option<String>,
    /// Name of the insurer-number column (separate-columns layout).
    #[arg(long)]
    insurer_column: Option<String>,
    /// Name of the 記号 column (separate-columns layout).
    #[arg(long)]
    symbol_column: Option<String>,
    /// Name of the 番号 column (separate-columns layout).
    #[arg(long)]
    number_column: Option<String>,
    /// Name of the 枝番 column (separate-columns layout).
    #[arg(long)]
    branch_column: Option<String>,
    /// Go on without rows that fail validation (marked invalid in the output) instead of stopping.
    #[arg(long)]
    skip_invalid: bool,
    /// Restore insurer numbers that lost a leading zero when the check digit confirms it.
    #[arg(long)]
    repair: bool,
    /// Add a nayose_number column: each valid row's number in its canonical form
    /// (insurer:symbol:number:branch, 8-digit insurer number).
    #[arg(long)]
    canonical_column: bool,
    /// What nayose_group holds for rows not linked: empty (default), or line: nf-LINE for a
    /// not-found number (LINE of its first row) and invalid-LINE for an invalid row, so that a
    /// pivot table does not put them all in one bucket.
    #[arg(long, value_name = "empty|line")]
    unlinked_group: Option<String>,
    /// Also offer classical TLS key exchange (X25519, P-256, P-384) after the post-quantum
    /// X25519MLKEM768, so that a server offering only classical key exchange is accepted
    /// (allow_classical_key_exchange of client.toml; default: refused).
    #[arg(long)]
    allow_classical_key_exchange: bool,
    /// Print the summary as JSON on stdout (the human summary still goes to stderr).
    #[arg(long)]
    json: bool,
}

/// client.toml (if any) with the flags over it.
fn configure(a: &LinkArgs) -> Result<ClientConfig> {
    let mut cfg = match &a.config {
        Some(p) => ClientConfig::load(p).with_context(|| format!("reading {}", p.display()))?,
        None => ClientConfig::default(),
    };
    cfg.merge(flags(a)?);
    Ok(cfg)
}

fn flags(a: &LinkArgs) -> Result<ClientConfig> {
    let encoding = match &a.encoding {
        Some(e) => Some(
            e.parse::<Encoding>()
                .map_err(|err| anyhow::anyhow!("--encoding {e}: {err}"))?,
        ),
        None => None,
    };
    let columns = if a.combined_column.is_some()
        || a.insurer_column.is_some()
        || a.symbol_column.is_some()
        || a.number_column.is_some()
        || a.branch_column.is_some()
    {
        Some(ColumnNames {
            combined: a.combined_column.clone(),
            insurer: a.insurer_column.clone(),
            symbol: a.symbol_column.clone(),
            number: a.number_column.clone(),
            branch: a.branch_column.clone(),
        })
    } else {
        None
    };
    Ok(ClientConfig {
        server: a.server.clone(),
        server_name: a.server_name.clone(),
        ca: a.ca.clone(),
        cert: a.cert.clone(),
        key: a.key.clone(),
        input: a.input.clone(),
        output: a.output.clone(),
        cache_dir: a.cache_dir.clone(),
        encoding,
        delimiter: a.delimiter.clone(),
        output_encoding: a.output_encoding.clone(),
        report: a.report.clone(),
        columns,
        skip_invalid: a.skip_invalid.then_some(true),
        repair: a.repair.then_some(true),
        canonical_column: a.canonical_column.then_some(true),
        unlinked_group: a.unlinked_group.clone(),
        announcement_keys: (!a.announcement_keys.is_empty()).then(|| a.announcement_keys.clone()),
        allow_classical_key_exchange: a.allow_classical_key_exchange.then_some(true),
        ..ClientConfig::default()
    })
}

/// Runs the link, or stops at the first SIGINT, SIGTERM or SIGHUP: the run is dropped (its
/// connection closed), every temporary file of the process is removed and no file is renamed
/// into place afterwards (`abandon_temp_files`), and reading or writing threads still running
/// are left to end with the process.
fn link_or_stop(
    cfg: &ClientConfig,
    progress: &dyn Progress,
) -> Result<Result<LinkSummary, Stopped>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let outcome = rt.block_on(async {
        let mut stop = StopSignals::install()?;
        tokio::select! {
            r = link_async(cfg, progress) => Ok(Ok(r.context("link run failed")?)),
            s = stop.recv() => Ok(Err(s)),
        }
    });
    if matches!(outcome, Ok(Err(_))) {
        // No temporary file may survive (not even one a blocking writer is still filling).
        let _ = abandon_temp_files();
        rt.shutdown_background();
    }
    outcome
}

/// What a stopped run says: nothing was written, or which files were completed before.
fn interrupted(lang: Lang, stopped: Stopped, finished: &[PathBuf]) -> String {
    if finished.is_empty() {
        return i18n::t(lang, "err.interrupted", &[&stopped.signal]);
    }
    let files = finished
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    i18n::t(lang, "err.interrupted_after", &[&stopped.signal, &files])
}

/// Runs `client link`; prints the summary on success. With `--json`, a failure prints
/// `{"error": {"message": ..., "kind": ...}}` on stdout (and the error on stderr as always).
/// Stopped by SIGINT, SIGTERM or SIGHUP, it removes its temporary files, says so, and exits
/// with 128 + the signal's number (130 for Ctrl-C).
pub(crate) fn run(cmd: ClientCommand, quiet: bool, lang: Lang) -> Result<ExitCode> {
    let ClientCommand::Link(a) = cmd;
    let bars = progress::enabled(quiet).then(progress::ClientBars::default);
    let shown: &dyn Progress = match &bars {
        Some(b) => b,
        None => &progress::NotesOnly,
    };
    let result = configure(&a).and_then(|cfg| link_or_stop(&cfg, shown));
    let summary = match result {
        Ok(Ok(s)) => s,
        Ok(Err(stopped)) => {
            if let Some(b) = &bars {
                b.clear();
            }
            // Called a second time only to read what the first call did.
            let finished = abandon_temp_files().finished;
            eprintln!(
                "{}",
                i18n::t(lang, "error", &[&interrupted(lang, stopped, &finished)])
            );
            if a.json {
                let message = interrupted(Lang::En, stopped, &finished);
                let obj =
                    serde_json::json!({ "error": { "message": message, "kind": "interrupted" } });
                println!("{}", serde_json::to_string_pretty(&obj)?);
            }
            return Ok(ExitCode::from(stopped.status));
        }
        Err(e) => {
            if a.json {
                // Errors that are not the client's own are in the flags' values.
                let kind = e
                    .chain()
                    .find_map(|c| c.downcast_ref::<ClientError>())
                    .map_or("usage", ClientError::kind);
                let message = e
                    .chain()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(": ");
                let obj = serde_json::json!({ "error": { "message": message, "kind": kind } });
                println!("{}", serde_json::to_string_pretty(&obj)?);
            }
            return Err(e);
        }
    };
    if !quiet {
        eprintln!("{}", i18n::summary_text(lang, &summary));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(ExitCode::SUCCESS)
}
