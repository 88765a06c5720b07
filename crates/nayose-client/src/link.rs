//! One link run: read and deduplicate the held file, talk to the server, write the output.
//!
//! Invariants:
//! * invalid rows are all reported before any network work, unless `skip_invalid`;
//! * each distinct number is evaluated once; every row maps back to its number's result;
//! * results come from one epoch only: an epoch change restarts the networked part from
//!   scratch, discarding every output, tag and label of the old epoch;
//! * the output file appears (atomically, by rename) only after every step succeeded; any error
//!   leaves no output file (and an existing file at the output path untouched).

use std::collections::HashMap;
use std::io::BufReader;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nayose_csv::{
    ColumnMapping, ColumnSpec, CountingReader, CsvError, HeldReader, HeldSet, InvalidRows,
    OutputColumns, OutputEncoding, OutputWriter, ReadOptions, ReportCounts, ReportReason,
    ReportWriter, RowError, RowResult, TextEncoding,
};
use nayose_proto::{LinkConfig, LinkCore, SyncKind};
use nayose_table::Matches;

use crate::config::{ClientConfig, Resolved, UnlinkedGroup};
use crate::driver::{CacheRoot, drive};
use crate::error::{ClientError, InvalidRowsDetail};
use crate::progress::{Phase, Progress};
use crate::session::Session;
use crate::summary::{LinkSummary, SyncSummary};
use crate::tls;

/// Status of a row whose number was found.
pub const STATUS_LINKED: &str = "linked";
/// Status of a row whose valid number the server does not know.
pub const STATUS_NOT_FOUND: &str = "not_found";
/// Status of an invalid row (only with `skip_invalid`).
pub const STATUS_INVALID: &str = "invalid";

/// How often the read phase's byte count is handed to the progress display.
const PROGRESS_TICK: Duration = Duration::from_millis(100);

/// Most invalid rows quoted in the summary when they are skipped.
const INVALID_EXAMPLES: usize = 20;

/// Runs a link on a runtime of its own. Do not call from inside a tokio runtime; use
/// [`link_async`] there.
pub fn link(config: &ClientConfig, progress: &dyn Progress) -> Result<LinkSummary, ClientError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Runtime(e.to_string()))?;
    rt.block_on(link_async(config, progress))
}

/// Runs a link: see the crate documentation. Needs a multi-threaded tokio runtime with I/O and
/// time enabled.
pub async fn link_async(
    config: &ClientConfig,
    progress: &dyn Progress,
) -> Result<LinkSummary, ClientError> {
    let started = Instant::now();
    let cfg = config.resolve()?;
    let creds = tls::load(&cfg)?;
    check_output_dir(&cfg)?;
    // Temporary files (personal data) that a killed earlier run left next to the output or
    // the report; each writer also does this before it creates its own.
    for path in std::iter::once(&cfg.output).chain(cfg.report.as_ref()) {
        for stale in nayose_csv::remove_stale_temp_files(path) {
            progress.note(&format!(
                "removed {}, a temporary file left by an earlier run that was killed",
                stale.display()
            ));
        }
    }
    let mut summary = LinkSummary {
        client_id: creds.peer.client_id.clone(),
        ..Default::default()
    };

    // Read: first pass over the input, its progress in bytes of the file.
    let t = Instant::now();
    match std::fs::metadata(&cfg.input) {
        Ok(m) => progress.start_bytes(Phase::Read, m.len()),
        Err(_) => progress.start(Phase::Read, None),
    }
    let read_cfg = cfg.clone();
    let read_bytes = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&read_bytes);
    let mut task = tokio::task::spawn_blocking(move || read_held(&read_cfg, counter));
    let mut tick = tokio::time::interval(PROGRESS_TICK);
    let mut shown = 0;
    let first = loop {
        tokio::select! {
            done = &mut task => break done,
            _ = tick.tick() => {
                let now = read_bytes.load(Ordering::Relaxed);
                progress.advance(Phase::Read, now.saturating_sub(shown));
                shown = shown.max(now);
            }
        }
    }
    .map_err(|e| ClientError::Runtime(format!("reading task: {e}")))??;
    progress.advance(
        Phase::Read,
        read_bytes.load(Ordering::Relaxed).saturating_sub(shown),
    );
    progress.finish(Phase::Read);
    let held = &first.held;
    summary.add_phase(Phase::Read, t.elapsed());
    summary.rows = held.row_count() as u64;
    summary.distinct_numbers = held.len() as u64;
    summary.invalid_rows = held.invalid_rows().len() as u64;
    summary.repaired = held.repairs().len() as u64;
    summary.invalid_examples = held
        .invalid_rows()
        .iter()
        .take(INVALID_EXAMPLES)
        .map(|e| e.to_string())
        .collect();
    summary.invalid_example_rows = held
        .invalid_rows()
        .iter()
        .take(INVALID_EXAMPLES)
        .map(row_brief)
        .collect();
    summary.report_counts = held
        .report_counts()
        .iter()
        .map(|(r, n)| (r.code().to_owned(), n))
        .collect();
    summary.columns = first
        .mapping
        .columns
        .iter()
        .map(|c| (c.role.name().to_owned(), c.header.clone()))
        .collect();
    summary.branch_in_number = first.mapping.branch_in_number();
    summary.input_encoding = first.encoding.name().to_owned();
    summary.output_encoding = output_encoding(&cfg, first.encoding).name().to_owned();
    summary.report = cfg.report.as_ref().map(|p| p.display().to_string());

    // Network: Info, Evaluate the numbers not cached, sync the table, match: one key period
    // and one epoch (the link core decides, the driver carries out).
    let matches = if held.is_empty() {
        progress.note("no valid number in the input: nothing sent to the server");
        None
    } else {
        let inputs: Vec<Vec<u8>> = held.canonical_inputs();
        let caches = CacheRoot {
            root: cfg.cache_dir.as_deref(),
            server_name: &cfg.server_name,
        };
        let mut core = LinkCore::new(
            inputs,
            LinkConfig {
                batch_size: cfg.batch_size,
                window: cfg.pipeline_depth as usize,
                max_key_period_restarts: cfg.retry.max_epoch_restarts,
                ..LinkConfig::default()
            },
        );
        if cfg.announcement_keys.is_empty() {
            progress.note(
                "no announcement_keys configured: the server's key and table are not checked \
                 against the management body's signed announcements",
            );
        }
        core.trust_announcement_keys(cfg.announcement_keys.clone());
        let mut session = Session::new(&cfg, creds.quic, creds.peer, progress);
        let mut times = std::collections::BTreeMap::new();
        let result = drive(&mut session, &mut core, &caches, progress, &mut times).await;
        for (phase, d) in times {
            summary.add_phase(phase, d);
        }
        session.shutdown().await;
        summary.bytes_sent = session
            .counters
            .sent
            .load(std::sync::atomic::Ordering::Relaxed);
        summary.bytes_received = session
            .counters
            .received
            .load(std::sync::atomic::Ordering::Relaxed);
        summary.connections = session.stats.connections;
        summary.evaluate_requests = session.stats.evaluate_requests;
        summary.entries_received = session.stats.entries_received;
        let r = result?;
        summary.entity = r.info.entity.as_str().to_owned();
        summary.epoch = r.epoch;
        summary.key_period = r.key_period.to_string();
        summary.table_entries = r.table_entries;
        summary.evaluated_numbers = r.evaluated;
        summary.numbers_from_cache = r.from_cache;
        summary.sync = match r.sync {
            SyncKind::Current { epoch } => SyncSummary {
                kind: "current".into(),
                to: epoch,
                ..Default::default()
            },
            SyncKind::Delta { from, to } => SyncSummary {
                kind: "delta".into(),
                from: Some(from),
                to,
                added: r.delta_counts.added,
                removed: r.delta_counts.removed,
                relabelled: r.delta_counts.relabelled,
                ..Default::default()
            },
            SyncKind::Base {
                epoch,
                resumed_from,
            } => SyncSummary {
                kind: "base".into(),
                to: epoch,
                resumed_from: Some(resumed_from),
                ..Default::default()
            },
        };
        Some(r.matches)
    };
    if let Some(m) = &matches {
        summary.linked_numbers = m.matched() as u64;
        summary.not_found_numbers = m.unmatched() as u64;
        let hist = m.group_size_histogram();
        summary.groups = hist.values().sum::<usize>() as u64;
        summary.group_size_histogram = hist
            .into_iter()
            .map(|(k, v)| (k as u64, v as u64))
            .collect();
    }

    // Write: second pass over the input.
    let t = Instant::now();
    progress.start(Phase::Write, Some(summary.rows));
    let write_cfg = cfg.clone();
    let (linked, not_found) =
        tokio::task::spawn_blocking(move || write_output(&write_cfg, &first, matches.as_ref()))
            .await
            .map_err(|e| ClientError::Runtime(format!("writing task: {e}")))??;
    progress.finish(Phase::Write);
    summary.add_phase(Phase::Write, t.elapsed());
    summary.linked_rows = linked;
    summary.not_found_rows = not_found;
    summary.total_ms = started.elapsed().as_millis() as u64;
    Ok(summary)
}

/// Fails early, before any network work (and before any quota is spent), if the output cannot
/// be written: its directory is missing or not writable, or the output path is an existing
/// directory. Also creates the cache directory if one is configured, so a bad cache path fails
/// here too. The writability probe is an empty, owner-only file created and removed at once.
fn check_output_dir(cfg: &Resolved) -> Result<(), ClientError> {
    let dir = match cfg.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let fail = |path: &std::path::Path, kind, why: &str| ClientError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(kind, why.to_owned()),
    };
    if !dir.is_dir() {
        return Err(fail(
            dir,
            std::io::ErrorKind::NotFound,
            "the output's directory does not exist",
        ));
    }
    if cfg.output.is_dir() {
        return Err(fail(
            &cfg.output,
            std::io::ErrorKind::InvalidInput,
            "the output path is a directory; name a file inside it (e.g. --output DIR/linked.csv)",
        ));
    }
    // Unique per call, not only per process: two runs of one process (the library used by
    // a service) may check the same directory at once.
    let probe = dir.join(format!(
        ".nayose-write-check-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(&probe) {
        Ok(f) => {
            drop(f);
            let _ = std::fs::remove_file(&probe);
        }
        Err(e) => {
            return Err(ClientError::Io {
                path: dir.to_owned(),
                source: std::io::Error::new(
                    e.kind(),
                    format!("the output's directory is not writable: {e}"),
                ),
            });
        }
    }
    if let Some(cache) = &cfg.cache_dir {
        std::fs::create_dir_all(cache).map_err(|source| ClientError::Io {
            path: cache.clone(),
            source,
        })?;
    }
    warn_if_key_is_shared(&cfg.key);
    Ok(())
}

/// Warns (it does not refuse: the entity owns its key's storage) when the client's private key
/// file can be read by the group or by others.
fn warn_if_key_is_shared(key: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(key)
            && m.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %key.display(),
                mode = format!("{:o}", m.permissions().mode() & 0o777),
                "the client's private key can be read by other users; restrict it with chmod 600"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = key;
}

fn read_options(cfg: &Resolved) -> ReadOptions {
    ReadOptions {
        encoding: cfg.encoding.choice(),
        repair: cfg.repair,
        delimiter: cfg.delimiter,
    }
}

/// The columns the user named; fields not named are recognised from the header (Japanese or
/// English names, see `nayose_csv::mapping`).
fn column_spec(cfg: &Resolved) -> ColumnSpec {
    cfg.columns
        .as_ref()
        .map(ColumnSpec::from)
        .unwrap_or_default()
}

/// The output's (and the report's) encoding: as configured, else the input's, with a BOM for
/// UTF-8 so that Excel reads it as UTF-8.
pub(crate) fn output_encoding(cfg: &Resolved, input: TextEncoding) -> OutputEncoding {
    cfg.output_encoding
        .unwrap_or(match OutputEncoding::like_input(input) {
            OutputEncoding::Utf8 => OutputEncoding::Utf8Bom,
            other => other,
        })
}

/// What the first pass learnt about the input.
pub(crate) struct FirstPass {
    pub(crate) held: HeldSet,
    pub(crate) encoding: TextEncoding,
    pub(crate) mapping: ColumnMapping,
    pub(crate) spec: ColumnSpec,
}

/// First pass: the distinct numbers, every report line to the report file (if asked for).
/// The bytes of the input read so far go to `read` (encoding detection reads the file before,
/// uncounted; a workbook is read whole when it is opened).
///
/// The report is completed whenever the whole input was read — also when invalid rows then
/// stop the run, since that is when it is needed; an error while reading leaves none.
fn read_held(cfg: &Resolved, read: Arc<AtomicU64>) -> Result<FirstPass, ClientError> {
    let opts = read_options(cfg);
    let spec = column_spec(cfg);
    let encoding = TextEncoding::resolve(&cfg.input, opts.encoding)?;
    let file = std::fs::File::open(&cfg.input).map_err(|source| CsvError::Io {
        path: cfg.input.clone(),
        source,
    })?;
    let counted = BufReader::with_capacity(1 << 16, CountingReader::new(file, read));
    let reader = HeldReader::from_reader_mapped(counted, encoding, &spec, &opts)?;
    let encoding = reader.encoding();
    let mapping = reader.mapping().clone();
    let policy = if cfg.skip_invalid {
        InvalidRows::Skip
    } else {
        InvalidRows::Report
    };
    let built = match &cfg.report {
        Some(path) => {
            let mut report = ReportWriter::create(path, output_encoding(cfg, encoding))?;
            let built = HeldSet::build_with_report(reader, policy, &mut report);
            if matches!(built, Ok(_) | Err(CsvError::InvalidRows { .. })) {
                report.finish()?;
            }
            built
        }
        None => HeldSet::build(reader, policy),
    };
    let held = match built {
        Ok(held) => held,
        Err(CsvError::InvalidRows { errors }) => return Err(invalid_rows(cfg, &errors)),
        Err(e) => return Err(e.into()),
    };
    Ok(FirstPass {
        held,
        encoding,
        mapping,
        spec,
    })
}

/// (line, column, reason code) of an invalid row.
fn row_brief(e: &RowError) -> (u64, Option<String>, String) {
    (
        e.line,
        e.column.clone(),
        ReportReason::of_row_reason(&e.reason).code().to_owned(),
    )
}

/// The error for invalid rows: the first [`INVALID_EXAMPLES`], and a count and hint per reason.
fn invalid_rows(cfg: &Resolved, errors: &[RowError]) -> ClientError {
    let mut counts = ReportCounts::default();
    for e in errors {
        counts.add(ReportReason::of_row_reason(&e.reason));
    }
    ClientError::InvalidRows {
        input: cfg.input.clone(),
        total: errors.len() as u64,
        shown: errors
            .iter()
            .take(INVALID_EXAMPLES)
            .map(ToString::to_string)
            .collect(),
        reasons: counts
            .iter()
            .map(|(r, n)| format!("{} {n}: {}", r.code(), r.hint()))
            .collect(),
        detail: Box::new(InvalidRowsDetail {
            shown_rows: errors
                .iter()
                .take(INVALID_EXAMPLES)
                .map(row_brief)
                .collect(),
            reason_counts: counts
                .iter()
                .map(|(r, n)| (r.code().to_owned(), n))
                .collect(),
        }),
        report: cfg.report.clone(),
    }
}

/// Second pass: every input row with its group, status and note (and canonical number, if
/// asked for). Returns (linked, not found) rows.
fn write_output(
    cfg: &Resolved,
    first: &FirstPass,
    matches: Option<&Matches>,
) -> Result<(u64, u64), ClientError> {
    let opts = read_options(cfg);
    let held = &first.held;
    let reader =
        HeldReader::open_mapped_with_encoding(&cfg.input, first.encoding, &first.spec, &opts)?;
    if reader.mapping() != &first.mapping {
        return Err(CsvError::ChangedBetweenPasses { line: 1 }.into());
    }
    let mut out = OutputWriter::create_with_columns(
        &cfg.output,
        output_encoding(cfg, first.encoding),
        reader.headers(),
        OutputColumns {
            note: true,
            number: cfg.canonical_column,
        },
    )?;
    let (mut linked, mut not_found, mut rows) = (0u64, 0u64, 0u64);
    // Number index → line of its first row, for `nf-<line>` (only with UnlinkedGroup::Line).
    let mut first_line: HashMap<u32, u64> = HashMap::new();
    for row in reader {
        let row = row?;
        rows += 1;
        let index = held.check_row(&row)?;
        let label = index.map(|i| matches.and_then(|m| m.label(i as usize)));
        let note = match &row.number {
            Err(e) => ReportReason::of_row_reason(&e.reason).code(),
            Ok(_) if !row.repairs.is_empty() => ReportReason::Repaired.code(),
            Ok(_) => "",
        };
        let canonical = match (&row.number, cfg.canonical_column) {
            (Ok(n), true) => n.to_string(),
            _ => String::new(),
        };
        let line_group = cfg.unlinked_group == UnlinkedGroup::Line;
        let (group, status) = match (label, index) {
            (Some(Some(l)), _) => {
                linked += 1;
                (l.to_string(), STATUS_LINKED)
            }
            (Some(None), Some(i)) => {
                not_found += 1;
                let group = if line_group {
                    format!("nf-{}", first_line.entry(i).or_insert(row.line))
                } else {
                    String::new()
                };
                (group, STATUS_NOT_FOUND)
            }
            _ => {
                let group = if line_group {
                    format!("invalid-{}", row.line)
                } else {
                    String::new()
                };
                (group, STATUS_INVALID)
            }
        };
        out.write_result(
            row.line,
            &row.record,
            &RowResult {
                group: &group,
                status,
                note,
                number: &canonical,
            },
        )?;
    }
    if rows != held.row_count() as u64 {
        return Err(CsvError::ChangedBetweenPasses { line: rows + 1 }.into());
    }
    out.finish()?;
    Ok((linked, not_found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn runs_of_one_process_can_check_one_output_directory_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ClientConfig {
            server: Some("127.0.0.1:4433".into()),
            ca: Some(dir.path().join("ca.pem")),
            cert: Some(dir.path().join("c.pem")),
            key: Some(dir.path().join("c.key")),
            input: Some(dir.path().join("in.csv")),
            output: Some(dir.path().join("out.csv")),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        // The probe of a run of this process that is checking right now (the name the check
        // used before, one per process).
        std::fs::write(
            dir.path()
                .join(format!(".nayose-write-check-{}", std::process::id())),
            "",
        )
        .unwrap();
        let runs: Vec<_> = (0..8)
            .map(|_| {
                let cfg = cfg.clone();
                std::thread::spawn(move || (0..50).try_for_each(|_| check_output_dir(&cfg)))
            })
            .collect();
        for r in runs {
            r.join().unwrap().unwrap();
        }
    }

    #[test]
    fn the_run_can_be_spawned() {
        let cfg = ClientConfig::default();
        let fut = link_async(&cfg, &NoProgress);
        assert_send(&fut);
    }
}
