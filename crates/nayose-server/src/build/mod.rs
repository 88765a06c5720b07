//! `nayose server build`: one new epoch from the registry, published atomically.
//!
//! **Which key period.** A build starts a new key period (fresh VOPRF key, the data directory's
//! label master key copied into the key period, every number evaluated, every version = the new
//! epoch, no delta) when no epoch was published yet or when [`BuildOptions::new_key_period`] is
//! set, and only then (table.md §4). Otherwise it builds the next epoch of the current key
//! period (table.md §8.2), refusing if the label master key was rotated since the key period
//! started.
//!
//! **Next epoch of a key period.** Phases: (1) stream the registry (nayose-csv; rows are read
//! in batches on one thread and parsed on all cores) into fixed-size rows (number key =
//! SHA-256(canonical number)[0..16], person, line) and an arena of canonical numbers
//! (`registry.rs`); (2) sort by key and resolve repeats: the same number under one person is a
//! duplicate row (kept once), under two or more persons a conflict (left out); both are
//! reported; (3) merge-join with the previous epoch's number index (`index.bin`: key → table
//! position): a number in both is kept, a new number is ADDed — the only numbers evaluated
//! (`ServerKey::evaluate_batch` in VOPRF mode, all cores) — and an index entry whose number is
//! gone is REMOVEd (`diff.rs`); (4) one pass over the previous table in tag order, merged with
//! the added entries sorted by tag, writes the new records: a kept entry keeps tag, label key
//! and version, unless its person id changed (RELABEL: version = new epoch); equal tags, or an
//! added tag equal to a removed one, are a collision (`ServerError::TagCollision`, the epoch is
//! not published and a new key period must be started, table.md §8.3); the same pass yields
//! the delta (removed tags ascending; upserts = entries whose version is the new epoch,
//! ascending by tag, with label keys and person ids) and the new index; (5) write; (6)
//! publish. The work is one sequential pass over the registry, the previous index and the
//! previous table, plus the evaluation of the added numbers (`files.rs` holds the file work).
//!
//! **Epoch numbers** are u32, strictly increasing across key periods and never reused: a new
//! epoch gets the greatest number ever allocated in the data directory (published epoch
//! directories, delta files, `current` and the `last-epoch` counter, which is written before
//! anything else) plus 1.
//!
//! **Publication protocol** (every step durable before the next; a crash at any point leaves
//! the previous epoch current and no partial epoch visible):
//! 0. take the exclusive lock on `DATA_DIR/build.lock` for the whole build (a second build
//!    fails within 2 s, naming the lock file): the number allocation below is a read-then-write
//!    of `last-epoch`, and two builds allocating the same number would publish two deltas —
//!    two labels under one versioned pad;
//! 1. allocate the number (`last-epoch`); for a new key period, write `keyperiods/<n>/`
//!    through a temporary directory and a rename (an unreferenced key period is harmless: the
//!    next one takes a higher number);
//! 2. write every file of the epoch, and its delta (`delta.bin`), into
//!    `epochs/.build-<pid>-<random>/`, fsync each file and the directory;
//! 3. rename the temporary directory to `epochs/<20-digit number>/` (which fails if that
//!    directory exists) and fsync `epochs/`;
//! 4. only then hard-link the delta to `deltas/<epoch>.bin` — failing, never replacing, if that
//!    file exists — fsync `deltas/`, and remove it from the epoch directory. The epoch is
//!    complete but not yet current (a server only loads the epoch `current` names; an orphan
//!    delta of an epoch that never became current is never part of a chain: chains follow
//!    `previous` links from the current epoch);
//! 5. replace `current` atomically (temp file, fsync, rename, fsync the data directory);
//! 6. prune: epoch directories beyond `keep_epochs` (never the current one), delta files beyond
//!    the last `delta_history` of the chain or of another key period, key period directories no
//!    kept epoch uses.

mod diff;
mod files;
mod registry;

use std::fmt;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nayose_csv::{ReportCounts, RowError};
use nayose_table::{RECORD_LEN, RecordTable};

pub use nayose_csv::{ColumnSpec, EncodingChoice};

use nayose_mmap::VerifiedMap;

use crate::epoch::{KeyPeriod, Manifest, PersonsView, decode_index, read_current, sha256_hex};
use crate::error::ServerError;
use crate::fsutil::{atomic_write, create_dir_private, fsync_dir};
use crate::keys::load_or_create_label_master_key;
use crate::layout::{DataDir, INDEX, epoch_dir_name, parse_epoch_dir_name};
use diff::{Assembled, PreviousTable, assemble};
use files::{
    last_allocated_epoch, load_previous, lock_build, map_persons, previous_chain, prune_deltas,
    prune_epochs, prune_key_periods, publish_delta, remove_stale_builds, start_key_period,
    write_epoch_files,
};
use registry::read_registry;

/// Numbers evaluated per OPRF batch.
const CHUNK: usize = 1 << 16;

/// Rejected rows and conflicts listed in an error or the summary (the report lists all).
const SHOWN: usize = 20;

/// The least number of epoch directories a build keeps (the current one and the one before
/// it, table.md §8.4), whatever [`BuildOptions::keep_epochs`] says.
pub const MIN_KEEP_EPOCHS: usize = 2;

/// Default number of epochs whose deltas are kept.
pub const DEFAULT_DELTA_HISTORY: u32 = 90;

/// A point in the publication protocol at which a test can make the build fail, to check that
/// a crash there leaves the previous epoch current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPoint {
    /// After the table file was written into the temporary directory (step 2).
    AfterTableWritten,
    /// After every file (and the delta) was written, before the epoch directory is renamed.
    BeforeEpochRename,
    /// After the epoch directory was renamed into place, before `current` changes (4 → 5).
    BeforeCurrentSwitch,
}

/// Progress of a running build, handed to [`BuildOptions::progress`].
#[derive(Debug, Clone, Copy)]
pub struct BuildProgress {
    /// The phase: `"read"`, `"evaluate"`, `"write"` or `"publish"`.
    pub phase: &'static str,
    /// Bytes of the registry file read so far (in `"read"`), numbers evaluated (in
    /// `"evaluate"`), entries otherwise.
    pub done: u64,
    /// What `done` counts up to: the registry file's size in `"read"`, the numbers to evaluate
    /// in `"evaluate"`, the entries in the others.
    pub total: u64,
    /// Whether `done` and `total` count bytes (the `"read"` phase).
    pub bytes: bool,
}

/// Callback receiving build progress (e.g. to drive a progress bar when stderr is a terminal).
pub type ProgressFn = Arc<dyn Fn(BuildProgress) + Send + Sync>;

/// Options of [`build_epoch`].
#[derive(Clone)]
pub struct BuildOptions {
    /// The server's data directory (created if missing).
    pub data_dir: PathBuf,
    /// The registry CSV (`person_id,insurer_number,symbol,number,branch`).
    pub registry: PathBuf,
    /// The registry's text encoding (default: detect).
    pub encoding: EncodingChoice,
    /// Leave invalid rows out (and report them) instead of failing.
    pub skip_invalid: bool,
    /// Repair spreadsheet damage (lost leading zeros), every repair reported.
    pub repair: bool,
    /// How many published epoch directories to keep on disk (the new one included; default 2).
    /// Values below 2 are raised to 2 ([`MIN_KEEP_EPOCHS`]): table.md §8.4 requires the epoch
    /// before the current one, so requests that started before a switch can finish. Older ones
    /// are deleted after publication.
    pub keep_epochs: usize,
    /// How many epochs' deltas to keep (default 90): clients whose table is older than that
    /// download a base instead.
    pub delta_history: u32,
    /// Start a new key period (fresh VOPRF key; every number evaluated; clients download a
    /// base). Also what makes a rotated label master key take effect. Default false.
    pub new_key_period: bool,
    /// Called with progress while the build runs.
    pub progress: Option<ProgressFn>,
    /// Crash-safety testing: fail at this point of the publication protocol.
    pub fail_at: Option<FailPoint>,
    /// Write the row report (every rejected, repaired, changed, duplicate or conflicting row)
    /// to this CSV file, in the registry's encoding; written also when invalid rows stop the
    /// build.
    pub report: Option<PathBuf>,
    /// Registry columns named by the operator; the others are recognised from the header.
    pub columns: ColumnSpec,
}

impl BuildOptions {
    /// Options with the defaults: detect encoding, fail on invalid rows, no repair, keep 2
    /// epochs and 90 deltas, same key period (a new one only if none exists), no progress.
    pub fn new(data_dir: impl Into<PathBuf>, registry: impl Into<PathBuf>) -> Self {
        BuildOptions {
            data_dir: data_dir.into(),
            registry: registry.into(),
            encoding: EncodingChoice::Auto,
            skip_invalid: false,
            repair: false,
            keep_epochs: 2,
            delta_history: DEFAULT_DELTA_HISTORY,
            new_key_period: false,
            progress: None,
            fail_at: None,
            report: None,
            columns: ColumnSpec::default(),
        }
    }
}

impl fmt::Debug for BuildOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildOptions")
            .field("data_dir", &self.data_dir)
            .field("registry", &self.registry)
            .field("encoding", &self.encoding)
            .field("skip_invalid", &self.skip_invalid)
            .field("repair", &self.repair)
            .field("keep_epochs", &self.keep_epochs)
            .field("delta_history", &self.delta_history)
            .field("new_key_period", &self.new_key_period)
            .field("fail_at", &self.fail_at)
            .field("report", &self.report)
            .field("columns", &self.columns)
            .finish_non_exhaustive()
    }
}

/// One number found under two or more persons: left out of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Registry lines (1-based, header = 1) holding the number, ascending.
    pub lines: Vec<u64>,
    /// How many different persons those lines name.
    pub persons: usize,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.lines.iter().map(u64::to_string).collect();
        write!(
            f,
            "lines {}: the same number under {} different persons (left out of the table)",
            lines.join(", "),
            self.persons
        )
    }
}

/// Durations of the build's phases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhaseTimes {
    /// Reading and checking the previous epoch (table, persons, number index).
    pub load: Duration,
    /// Reading and parsing the registry.
    pub read: Duration,
    /// Sorting by number, resolving duplicates and conflicts, and the diff against the
    /// previous epoch.
    pub sort: Duration,
    /// OPRF evaluation of the added numbers and tag / label-key derivation.
    pub evaluate: Duration,
    /// Sorting by tag, digest, delta, writing and syncing the files.
    pub write: Duration,
    /// Renaming into place and switching `current`.
    pub publish: Duration,
}

/// What [`build_epoch`] did.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The registry file.
    pub registry: PathBuf,
    /// The registry's encoding as detected or chosen.
    pub encoding: &'static str,
    /// The new epoch's number.
    pub epoch_number: u32,
    /// The previous epoch of the same key period (`None` for the first epoch of a key period).
    pub previous_epoch: Option<u32>,
    /// The key period id as displayed, `<number>-<16 hex digits>`.
    pub key_period: String,
    /// The key period's number.
    pub key_period_number: u64,
    /// Whether this build started the key period.
    pub new_key_period: bool,
    /// The key period's VOPRF public key, hex.
    pub public_key: String,
    /// Public id of the key period's label master key.
    pub label_master_key_id: String,
    /// Whether this build created the label master key (first build of the data directory).
    pub label_master_key_created: bool,
    /// Data rows read (valid and rejected).
    pub rows: u64,
    /// Table entries: distinct numbers published.
    pub numbers: u64,
    /// Persons with at least one published number.
    pub persons: u64,
    /// Entries added against the previous epoch (every entry in a new key period).
    pub added: u64,
    /// Entries of the previous epoch whose number is gone.
    pub removed: u64,
    /// Entries whose number moved to another person.
    pub relabelled: u64,
    /// Numbers evaluated under the key period's key (the added ones).
    pub evaluated: u64,
    /// The table digest of the new epoch, hex.
    pub digest: String,
    /// Rows repeating a number already seen under the same person (kept once).
    pub duplicate_rows: u64,
    /// Rows rejected as invalid (only with `skip_invalid`; otherwise the build fails).
    pub rejected: Vec<RowError>,
    /// Repairs made (only with `repair`).
    pub repairs: u64,
    /// Numbers under two or more persons, left out.
    pub conflicts: Vec<Conflict>,
    /// How the registry's columns were found, one line per field.
    pub mapping: String,
    /// Report lines by reason (rejected, repaired, changed, duplicate and conflicting rows).
    pub report_counts: ReportCounts,
    /// The row report written, if one was asked for.
    pub report: Option<PathBuf>,
    /// Phase durations.
    pub phases: PhaseTimes,
    /// Whole build.
    pub total: Duration,
    /// Epoch directories deleted after publication.
    pub pruned: Vec<u32>,
    /// Delta files deleted after publication.
    pub pruned_deltas: Vec<u32>,
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

impl fmt::Display for BuildReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "published epoch {} (key period {}{}) in {}",
            self.epoch_number,
            self.key_period,
            if self.new_key_period {
                ", new key period"
            } else {
                ""
            },
            self.data_dir.display()
        )?;
        match self.previous_epoch {
            Some(p) => writeln!(f, "  previous epoch   {p}")?,
            None => writeln!(
                f,
                "  previous epoch   none (first epoch of the key period: clients download a base)"
            )?,
        }
        writeln!(f, "  public key       {}", self.public_key)?;
        writeln!(
            f,
            "  label master key {}{}",
            self.label_master_key_id,
            if self.label_master_key_created {
                " (created)"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "  registry         {} ({})",
            self.registry.display(),
            self.encoding
        )?;
        writeln!(f, "  rows             {}", self.rows)?;
        writeln!(f, "  numbers          {}", self.numbers)?;
        writeln!(f, "  persons          {}", self.persons)?;
        writeln!(f, "  added            {}", self.added)?;
        writeln!(f, "  removed          {}", self.removed)?;
        writeln!(f, "  relabelled       {}", self.relabelled)?;
        writeln!(f, "  evaluated        {}", self.evaluated)?;
        writeln!(f, "  digest           {}", self.digest)?;
        writeln!(f, "  duplicate rows   {}", self.duplicate_rows)?;
        writeln!(f, "  rejected rows    {}", self.rejected.len())?;
        writeln!(f, "  repairs          {}", self.repairs)?;
        writeln!(f, "  conflicts        {}", self.conflicts.len())?;
        let p = &self.phases;
        writeln!(
            f,
            "  time             load {}, read {}, sort {}, evaluate {}, write {}, publish {}, total {}",
            secs(p.load),
            secs(p.read),
            secs(p.sort),
            secs(p.evaluate),
            secs(p.write),
            secs(p.publish),
            secs(self.total)
        )?;
        if !self.mapping.is_empty() {
            writeln!(f, "  columns")?;
            for l in self.mapping.lines() {
                writeln!(f, "    {l}")?;
            }
        }
        if !self.report_counts.is_empty() {
            writeln!(f, "  rows reported, by reason")?;
            for (reason, n) in self.report_counts.iter() {
                writeln!(f, "    {:<18} {n:>9}  {}", reason.code(), reason.hint())?;
            }
            match &self.report {
                Some(r) => writeln!(f, "  report           {} (every such row)", r.display())?,
                None => writeln!(
                    f,
                    "  report           pass --report FILE to list every such row"
                )?,
            }
        }
        for r in self.rejected.iter().take(SHOWN) {
            writeln!(f, "  rejected: {r}")?;
        }
        if self.rejected.len() > SHOWN {
            writeln!(
                f,
                "  ... and {} more rejected rows",
                self.rejected.len() - SHOWN
            )?;
        }
        for c in self.conflicts.iter().take(SHOWN) {
            writeln!(f, "  conflict: {c}")?;
        }
        if self.conflicts.len() > SHOWN {
            writeln!(
                f,
                "  ... and {} more conflicts",
                self.conflicts.len() - SHOWN
            )?;
        }
        if !self.pruned.is_empty() {
            let p: Vec<String> = self.pruned.iter().map(u32::to_string).collect();
            writeln!(f, "  removed old epochs {}", p.join(", "))?;
        }
        if !self.pruned_deltas.is_empty() {
            writeln!(
                f,
                "  removed {} old delta file(s)",
                self.pruned_deltas.len()
            )?;
        }
        Ok(())
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Builds a new epoch from `opts.registry` and publishes it in `opts.data_dir` (see the module
/// documentation for the phases and the publication protocol).
pub fn build_epoch(opts: &BuildOptions) -> Result<BuildReport, ServerError> {
    let started = Instant::now();
    let data = DataDir::create(&opts.data_dir)?;
    // Held until this function returns: one build at a time per data directory.
    let _lock = lock_build(&data)?;
    let (root_master, master_created) = load_or_create_label_master_key(&data)?;
    create_dir_private(&data.epochs())?;
    create_dir_private(&data.deltas())?;
    create_dir_private(&data.key_periods())?;
    remove_stale_builds(&data)?;

    // The previous epoch, when this build continues its key period.
    let current = read_current(&data)?.and_then(|n| parse_epoch_dir_name(&n));
    let t = Instant::now();
    let previous = match current {
        Some(c) if !opts.new_key_period => {
            let p = load_previous(&data, c)?;
            if p.kp.meta.label_master_key_id != root_master.key_id().to_string() {
                return Err(ServerError::LabelKeyRotated {
                    key_period: p.kp.id.to_string(),
                    in_use: p.kp.meta.label_master_key_id.clone(),
                    rotated: root_master.key_id().to_string(),
                });
            }
            Some(p)
        }
        _ => None,
    };

    let mut phases = PhaseTimes {
        load: t.elapsed(),
        ..PhaseTimes::default()
    };
    let reg = read_registry(opts, &mut phases)?;

    // Allocate the epoch number before writing anything (never reused).
    let number = last_allocated_epoch(&data)?
        .checked_add(1)
        .ok_or_else(|| ServerError::Internal("epoch numbers are exhausted (u32)".into()))?;
    atomic_write(&data.last_epoch(), format!("{number}\n").as_bytes())?;

    // The key period: the previous epoch's, or a new one.
    let (kp, new_kp) = match &previous {
        Some(p) => (KeyPeriod::load(&data, p.manifest.key_period)?, false),
        None => (start_key_period(&data, number, &root_master)?, true),
    };
    tracing::info!(epoch = number, key_period = %kp.id, new_key_period = new_kp, registry = %opts.registry.display(), "building epoch");

    // Diff against the previous epoch, evaluate the added numbers, assemble the new files.
    let prev_what = previous
        .as_ref()
        .map(|p| epoch_dir_name(u64::from(p.manifest.number)));
    let prev_index_path = previous
        .as_ref()
        .map(|p| data.epoch_dir(p.manifest.number).join(INDEX));
    let prev_table = match (&previous, &prev_what, &prev_index_path) {
        (Some(p), Some(what), Some(ipath)) => Some(PreviousTable {
            number: p.manifest.number,
            records: &p.table.bytes()[16..],
            index: decode_index(what, ipath, p.index.bytes())?,
            index_path: ipath,
        }),
        _ => None,
    };
    // The person list to continue: the previous epoch's, or in a new key period the current
    // epoch's (serials, and so labels, outlive key periods).
    let seed_map = match (&previous, current) {
        (Some(_), _) | (None, None) => None,
        (None, Some(c)) => Some(map_persons(&data, c)?),
    };
    let seed_bytes = previous
        .as_ref()
        .map(|p| p.persons.bytes())
        .or(seed_map.as_ref().map(VerifiedMap::bytes));
    let seed_persons = match seed_bytes {
        Some(b) => Some(PersonsView::split(b).ok_or_else(|| {
            ServerError::Internal("the previous person list changed after its check".into())
        })?),
        None => None,
    };
    let prev_chain = match &previous {
        Some(p) => Some(previous_chain(&p.manifest)?),
        None => None,
    };
    let asm = assemble(
        &reg,
        prev_table.as_ref(),
        seed_persons.as_ref(),
        prev_chain,
        &kp.key,
        kp.id,
        number,
        opts.progress.as_ref(),
    )?;
    drop(seed_map);
    let previous_epoch = previous.as_ref().map(|p| p.manifest.number);
    drop(previous);
    phases.sort += asm.times.merge + asm.times.assemble;
    phases.evaluate = asm.times.evaluate;
    let t = Instant::now();
    let person_count = asm.person_count;
    let digest =
        RecordTable::new(kp.id, number, person_count, &asm.records[16..])?.digest(&asm.chain);
    let manifest = Manifest {
        format: 2,
        number,
        key_period: kp.id.number(),
        key_period_id: hex::encode(kp.id.to_bytes()),
        public_key: kp.meta.public_key.clone(),
        label_master_key_id: kp.meta.label_master_key_id.clone(),
        previous_epoch,
        created_unix: now_unix(),
        entries: ((asm.records.len() - 16) / RECORD_LEN) as u64,
        persons: person_count,
        added: asm.added,
        removed: asm.removed,
        relabelled: asm.relabelled,
        digest: digest.to_string(),
        upsert_chain: asm.chain.to_string(),
        table_sha256: sha256_hex(&asm.records),
        persons_sha256: sha256_hex(&asm.persons),
        index_sha256: sha256_hex(&asm.index),
        delta_sha256: asm.delta.as_ref().map(|d| sha256_hex(d)),
    };
    let (added, relabelled) = (asm.added, asm.relabelled);
    let Assembled {
        records,
        index,
        delta,
        persons_used,
        persons: pbytes,
        ..
    } = asm;

    let tmp = data.epochs().join(format!(
        ".build-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let written = write_epoch_files(
        &tmp,
        &records,
        &pbytes,
        &index,
        delta.as_deref().map(Vec::as_slice),
        &manifest,
        opts.fail_at,
    );
    if let Err(e) = written {
        if !matches!(e, ServerError::InjectedFailure(_)) {
            let _ = fs::remove_dir_all(&tmp);
        }
        return Err(e);
    }
    phases.write = t.elapsed();
    if let Some(p) = &opts.progress {
        p(BuildProgress {
            phase: "write",
            done: manifest.entries,
            total: manifest.entries,
            bytes: false,
        });
    }

    // Publish.
    let t = Instant::now();
    if opts.fail_at == Some(FailPoint::BeforeEpochRename) {
        return Err(ServerError::InjectedFailure(FailPoint::BeforeEpochRename));
    }
    let final_dir = data.epoch_dir(number);
    if final_dir.exists() {
        let _ = fs::remove_dir_all(&tmp);
        return Err(ServerError::Internal(format!(
            "{} appeared while building; is another build running on this data directory?",
            final_dir.display()
        )));
    }
    if let Err(e) = fs::rename(&tmp, &final_dir) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(ServerError::io("cannot rename into place", &final_dir)(e));
    }
    fsync_dir(&data.epochs())?;
    // The epoch number is ours now (the rename succeeded); only now does its delta enter
    // `deltas/`, and never over an existing file.
    if delta.is_some() {
        publish_delta(&data, number)?;
    }
    if opts.fail_at == Some(FailPoint::BeforeCurrentSwitch) {
        return Err(ServerError::InjectedFailure(FailPoint::BeforeCurrentSwitch));
    }
    atomic_write(
        &data.current(),
        format!("{}\n", epoch_dir_name(u64::from(number))).as_bytes(),
    )?;
    phases.publish = t.elapsed();
    if let Some(p) = &opts.progress {
        p(BuildProgress {
            phase: "publish",
            done: manifest.entries,
            total: manifest.entries,
            bytes: false,
        });
    }
    let pruned = prune_epochs(
        &data,
        number,
        current,
        opts.keep_epochs.max(MIN_KEEP_EPOCHS),
    )?;
    let pruned_deltas = prune_deltas(&data, &manifest, &kp, opts.delta_history)?;
    prune_key_periods(&data, kp.id.number())?;
    tracing::info!(epoch = number, key_period = %kp.id, numbers = manifest.entries, added, removed = manifest.removed, relabelled, "epoch published");

    Ok(BuildReport {
        data_dir: opts.data_dir.clone(),
        registry: opts.registry.clone(),
        encoding: reg.encoding,
        epoch_number: number,
        previous_epoch: manifest.previous_epoch,
        key_period: kp.id.to_string(),
        key_period_number: kp.id.number(),
        new_key_period: new_kp,
        public_key: manifest.public_key.clone(),
        label_master_key_id: manifest.label_master_key_id.clone(),
        label_master_key_created: master_created,
        rows: reg.rows,
        numbers: manifest.entries,
        persons: persons_used,
        added,
        removed: manifest.removed,
        relabelled,
        evaluated: added,
        digest: manifest.digest.clone(),
        duplicate_rows: reg.duplicate_rows,
        rejected: reg.rejected,
        repairs: reg.repairs,
        conflicts: reg.conflicts,
        mapping: reg.mapping,
        report_counts: reg.counts,
        report: opts.report.clone(),
        phases,
        total: started.elapsed(),
        pruned,
        pruned_deltas,
    })
}
