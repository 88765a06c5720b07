//! `nayose server build`: one new epoch from the registry, published atomically.
//!
//! **Which key period.** A build starts a new key period (fresh VOPRF key, the data directory's
//! label master key copied into the key period, every number evaluated, every version = the new
//! epoch, no delta) when no epoch was published yet or when [`BuildOptions::new_key_period`] is
//! set, and only then (table.md §4). Otherwise it builds the next epoch of the current key
//! period (table.md §8.2), refusing if the label master key was rotated since the key period
//! started.
//!
//! **Next epoch of a key period.** Phases: (1) stream the registry CSV (nayose-csv) into
//! (canonical number, person, line) rows; (2) sort by canonical number and resolve repeats: the
//! same number under one person is a duplicate row (kept once), under two or more persons a
//! conflict (left out and reported); (3) merge-join with the previous epoch's number index
//! (`index.bin`, number → tag): same number and same person id (bytes) → the entry is kept
//! (tag, label key, version); same number, other person → RELABEL (version = new epoch); new
//! number → ADD, the only numbers evaluated (`ServerKey::evaluate_batch` in VOPRF mode, all
//! cores); a number of the previous epoch absent now → REMOVE; (4) sort the entries by tag
//! (equal tags of distinct numbers: `TableError::DuplicateTags`, the epoch is not published and
//! a new key period must be started, table.md §8.3), compute the table digest, the delta
//! (removed tags ascending; upserts = entries whose version is the new epoch, ascending by tag,
//! with their label keys and person ids) and the new index; (5) write; (6) publish. The work is
//! one sequential pass over the registry and the previous index plus work proportional to the
//! change.
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

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nayose_csv::{CsvError, ReadOptions, RegistryReader, RowError};
use nayose_oprf::{Mode, ServerKey};
use nayose_table::{
    KeyPeriodId, LabelKey, LabelMasterKey, RECORD_LEN, RecordTable, TableEntry, Tag,
    derive_entry_secrets,
};
use rayon::prelude::*;
use zeroize::Zeroizing;

pub use nayose_csv::EncodingChoice;

use crate::epoch::{
    KeyPeriod, KeyPeriodMeta, MAX_PERSON_ID_LEN, Manifest, TABLE_MAGIC, decode_index,
    decode_persons, encode_delta, encode_index, encode_persons, numbered_entries, published_epochs,
    read_current, read_index, read_manifest, sha256_hex, to_toml,
};
use crate::error::ServerError;
use crate::fsutil::{
    atomic_write, create_dir_private, create_new_private, fsync_dir, read_secret,
    remove_stale_temp_files,
};
use crate::keys::{generate_oprf_key, load_or_create_label_master_key, write_label_master_key};
use crate::layout::{
    BUILD_DELTA, DataDir, INDEX, KEY_PERIOD_LABEL_MASTER_KEY, KEY_PERIOD_META, MANIFEST, OPRF_KEY,
    PERSONS, TABLE, epoch_dir_name, parse_delta_file_name, parse_dir_name, parse_epoch_dir_name,
};

/// Numbers evaluated per OPRF batch.
const CHUNK: usize = 1 << 16;

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
    /// The phase: `"read"`, `"diff"`, `"evaluate"`, `"write"` or `"publish"`.
    pub phase: &'static str,
    /// Registry rows read so far (in `"read"`), numbers evaluated (in `"evaluate"`), entries
    /// otherwise.
    pub done: u64,
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
            "  time             read {}, sort {}, evaluate {}, write {}, publish {}, total {}",
            secs(p.read),
            secs(p.sort),
            secs(p.evaluate),
            secs(p.write),
            secs(p.publish),
            secs(self.total)
        )?;
        const SHOWN: usize = 20;
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

fn registry_err(path: &Path, e: CsvError) -> ServerError {
    ServerError::Registry {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The registry after reading and resolving repeats: distinct numbers ascending, each with its
/// person index.
struct Registry {
    encoding: &'static str,
    rows: u64,
    repairs: u64,
    rejected: Vec<RowError>,
    persons: Vec<String>,
    /// (canonical number, person index), strictly ascending by number.
    numbers: Vec<(Vec<u8>, u32)>,
    duplicate_rows: u64,
    conflicts: Vec<Conflict>,
}

fn read_registry(opts: &BuildOptions, phases: &mut PhaseTimes) -> Result<Registry, ServerError> {
    let t = Instant::now();
    let read_opts = ReadOptions {
        encoding: opts.encoding,
        repair: opts.repair,
        ..ReadOptions::default()
    };
    let reader = RegistryReader::open(&opts.registry, &read_opts)
        .map_err(|e| registry_err(&opts.registry, e))?;
    let encoding = reader.encoding().name();
    let mut person_index: HashMap<String, u32> = HashMap::new();
    let mut persons: Vec<String> = Vec::new();
    let mut raw: Vec<(Vec<u8>, u64, u32)> = Vec::new();
    let (mut rows, mut repairs) = (0u64, 0u64);
    let mut rejected: Vec<RowError> = Vec::new();
    for item in reader {
        let entry = match item {
            Ok(entry) => entry,
            Err(CsvError::InvalidRow(e)) => {
                rows += 1;
                rejected.push(e);
                continue;
            }
            Err(e) => return Err(registry_err(&opts.registry, e)),
        };
        rows += 1;
        repairs += entry.repairs.len() as u64;
        if entry.person_id.len() > MAX_PERSON_ID_LEN {
            return Err(ServerError::InvalidRow {
                path: opts.registry.clone(),
                line: entry.line,
                reason: format!("person_id is longer than {MAX_PERSON_ID_LEN} bytes"),
            });
        }
        let person = match person_index.get(&entry.person_id) {
            Some(&p) => p,
            None => {
                let p = u32::try_from(persons.len()).map_err(|_| ServerError::TooLarge {
                    path: opts.registry.clone(),
                    reason: "more than 4294967295 persons".into(),
                })?;
                persons.push(entry.person_id.clone());
                person_index.insert(entry.person_id, p);
                p
            }
        };
        raw.push((entry.number.canonical_bytes(), entry.line, person));
        if rows.is_multiple_of(CHUNK as u64)
            && let Some(p) = &opts.progress
        {
            p(BuildProgress {
                phase: "read",
                done: rows,
            });
        }
    }
    phases.read = t.elapsed();
    if !rejected.is_empty() && !opts.skip_invalid {
        let n = rejected.len();
        let list: Vec<String> = rejected.iter().take(20).map(|e| format!("  {e}")).collect();
        let more = if n > 20 {
            format!("\n  ... and {} more", n - 20)
        } else {
            String::new()
        };
        return Err(ServerError::Registry {
            path: opts.registry.clone(),
            reason: format!(
                "{n} invalid row(s); fix them, or pass --skip-invalid to leave them out (they \
                 are then reported):\n{}{more}",
                list.join("\n")
            ),
        });
    }
    drop(person_index);

    let t = Instant::now();
    raw.par_sort_unstable_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let mut numbers = Vec::with_capacity(raw.len());
    let mut conflicts = Vec::new();
    let mut duplicate_rows = 0u64;
    let mut i = 0;
    while i < raw.len() {
        let mut j = i + 1;
        while j < raw.len() && raw[j].0 == raw[i].0 {
            j += 1;
        }
        let group = &raw[i..j];
        let mut group_persons: Vec<u32> = group.iter().map(|r| r.2).collect();
        group_persons.sort_unstable();
        group_persons.dedup();
        if group_persons.len() == 1 {
            duplicate_rows += (group.len() - 1) as u64;
            numbers.push((std::mem::take(&mut raw[i].0), group_persons[0]));
        } else {
            conflicts.push(Conflict {
                lines: group.iter().map(|r| r.1).collect(),
                persons: group_persons.len(),
            });
        }
        i = j;
    }
    drop(raw);
    if numbers.is_empty() {
        return Err(ServerError::EmptyRegistry {
            path: opts.registry.clone(),
        });
    }
    phases.sort = t.elapsed();
    Ok(Registry {
        encoding,
        rows,
        repairs,
        rejected,
        persons,
        numbers,
        duplicate_rows,
        conflicts,
    })
}

/// Evaluates `inputs` (in chunks, all cores) and derives (tag, label key) for each, in order.
fn evaluate(
    key: &ServerKey,
    inputs: &[&[u8]],
    progress: Option<&ProgressFn>,
) -> Result<Vec<(Tag, LabelKey)>, ServerError> {
    let mut out = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(CHUNK) {
        let outputs = key.evaluate_batch(Mode::Voprf, chunk)?;
        let derived: Vec<(Tag, LabelKey)> = outputs
            .par_iter()
            .map(|o| derive_entry_secrets(o.as_bytes()))
            .collect();
        out.extend(derived);
        if let Some(p) = progress {
            p(BuildProgress {
                phase: "evaluate",
                done: out.len() as u64,
            });
        }
    }
    Ok(out)
}

/// The greatest epoch number ever allocated in `data` (0 if none).
fn last_allocated_epoch(data: &DataDir) -> Result<u32, ServerError> {
    let mut last = published_epochs(data)?.last().copied().unwrap_or(0);
    if let Some(n) = read_current(data)?.and_then(|n| parse_epoch_dir_name(&n)) {
        last = last.max(n);
    }
    if let Some(&n) = numbered_entries(&data.deltas(), parse_delta_file_name)?.last() {
        last = last.max(n);
    }
    let path = data.last_epoch();
    match fs::read_to_string(&path) {
        Ok(s) => {
            let n: u32 = s.trim().parse().map_err(|_| ServerError::CorruptEpoch {
                epoch: "last-epoch".into(),
                path: path.clone(),
                reason: "does not hold an epoch number".into(),
            })?;
            last = last.max(n);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ServerError::Io {
                action: "cannot read",
                path,
                source: e,
            });
        }
    }
    Ok(last)
}

/// The previous epoch a build diffs against.
struct Previous {
    manifest: Manifest,
    kp: KeyPeriod,
    table: Zeroizing<Vec<u8>>,
    persons: Vec<Box<[u8]>>,
    index: Zeroizing<Vec<u8>>,
}

fn load_previous(data: &DataDir, number: u32) -> Result<Previous, ServerError> {
    let manifest = read_manifest(data, number)?;
    let kp = KeyPeriod::load(data, manifest.key_period)?;
    let dir = data.epoch_dir(number);
    let what = epoch_dir_name(u64::from(number));
    let corrupt = |path: &Path, reason: &str| ServerError::CorruptEpoch {
        epoch: what.clone(),
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let tpath = dir.join(TABLE);
    let table = read_secret(&tpath)?;
    if sha256_hex(&table) != manifest.table_sha256 || !table.starts_with(TABLE_MAGIC) {
        return Err(corrupt(
            &tpath,
            "SHA-256 or header does not match the manifest",
        ));
    }
    RecordTable::new(kp.id, number, manifest.persons, &table[16..])
        .map_err(|e| corrupt(&tpath, &e.to_string()))?;
    let ppath = dir.join(PERSONS);
    let pbytes = read_secret(&ppath)?;
    if sha256_hex(&pbytes) != manifest.persons_sha256 {
        return Err(corrupt(&ppath, "SHA-256 does not match the manifest"));
    }
    let persons = decode_persons(&what, &ppath, &pbytes, manifest.persons)?;
    let index = read_index(data, &manifest)?;
    Ok(Previous {
        manifest,
        kp,
        table,
        persons,
        index,
    })
}

/// One entry of the new table with where it came from.
struct NewEntry {
    entry: TableEntry,
    /// Index into `Registry::numbers`.
    number: usize,
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

    let mut phases = PhaseTimes::default();
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

    // Diff against the previous epoch (merge-join on canonical numbers).
    let t = Instant::now();
    let mut entries: Vec<NewEntry> = Vec::with_capacity(reg.numbers.len());
    let mut to_evaluate: Vec<usize> = Vec::new();
    let mut removed: Vec<Tag> = Vec::new();
    let mut relabelled = 0u64;
    match &previous {
        None => to_evaluate.extend(0..reg.numbers.len()),
        Some(p) => {
            let what = epoch_dir_name(u64::from(p.manifest.number));
            let ipath = data.epoch_dir(p.manifest.number).join(INDEX);
            let index = decode_index(&what, &ipath, &p.index)?;
            let records = &p.table[16..];
            let prev_table =
                RecordTable::new(p.kp.id, p.manifest.number, p.manifest.persons, records)?;
            // One sequential merge classifies every number; the look-ups of the kept ones in
            // the previous table (random access) then run in parallel.
            let mut kept: Vec<(usize, Tag)> = Vec::with_capacity(reg.numbers.len());
            let (mut i, mut j) = (0usize, 0usize);
            while i < reg.numbers.len() || j < index.len() {
                let ord = match (reg.numbers.get(i), index.get(j)) {
                    (Some(a), Some(b)) => a.0.as_slice().cmp(b.0),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    _ => std::cmp::Ordering::Greater,
                };
                match ord {
                    std::cmp::Ordering::Less => {
                        to_evaluate.push(i);
                        i += 1;
                    }
                    std::cmp::Ordering::Greater => {
                        removed.push(index[j].1);
                        j += 1;
                    }
                    std::cmp::Ordering::Equal => {
                        kept.push((i, index[j].1));
                        i += 1;
                        j += 1;
                    }
                }
            }
            let looked: Vec<Option<(NewEntry, bool)>> = kept
                .par_iter()
                .map(|&(i, tag)| {
                    let at = prev_table.find(&tag)?;
                    let mut e = prev_table.entry(at);
                    let person = reg.numbers[i].1;
                    let relabel = p.persons[e.person as usize].as_ref()
                        != reg.persons[person as usize].as_bytes();
                    if relabel {
                        e.version = number;
                    }
                    e.person = person;
                    Some((
                        NewEntry {
                            entry: e,
                            number: i,
                        },
                        relabel,
                    ))
                })
                .collect();
            drop(kept);
            entries.reserve(looked.len() + to_evaluate.len());
            for l in looked {
                let Some((e, relabel)) = l else {
                    return Err(ServerError::CorruptEpoch {
                        epoch: what.clone(),
                        path: ipath.clone(),
                        reason: "the number index names a tag the table does not hold".into(),
                    });
                };
                relabelled += u64::from(relabel);
                entries.push(e);
            }
            removed.sort_unstable();
        }
    }
    phases.sort += t.elapsed();
    if let Some(p) = &opts.progress {
        p(BuildProgress {
            phase: "diff",
            done: reg.numbers.len() as u64,
        });
    }

    // Evaluate the added numbers only.
    let t = Instant::now();
    let inputs: Vec<&[u8]> = to_evaluate
        .iter()
        .map(|&i| reg.numbers[i].0.as_slice())
        .collect();
    let derived = evaluate(&kp.key, &inputs, opts.progress.as_ref())?;
    drop(inputs);
    for (&i, (tag, label_key)) in to_evaluate.iter().zip(derived) {
        entries.push(NewEntry {
            entry: TableEntry {
                tag,
                label_key,
                person: reg.numbers[i].1,
                version: number,
            },
            number: i,
        });
    }
    phases.evaluate = t.elapsed();
    let added = to_evaluate.len() as u64;
    let evaluated = added;

    // Sort by tag; equal tags of distinct numbers are a collision (table.md §8.3).
    let t = Instant::now();
    entries.par_sort_unstable_by(|a, b| a.entry.tag.cmp(&b.entry.tag));
    if tag_collision(&entries, &removed, number) {
        return Err(ServerError::TagCollision {
            key_period: kp.id.to_string(),
        });
    }
    // The table's tag for each number, for the index.
    let mut tag_of = vec![Tag([0u8; 16]); reg.numbers.len()];
    let mut records = Zeroizing::new(Vec::with_capacity(16 + entries.len() * RECORD_LEN));
    records.extend_from_slice(TABLE_MAGIC);
    for e in &entries {
        tag_of[e.number] = e.entry.tag;
        records.extend_from_slice(e.entry.to_record().as_ref());
    }
    let person_count = u32::try_from(reg.persons.len()).unwrap_or(u32::MAX);
    let digest = RecordTable::new(kp.id, number, person_count, &records[16..])?.digest();
    let index = encode_index(
        reg.numbers.len() as u64,
        reg.numbers
            .iter()
            .zip(&tag_of)
            .map(|((n, _), t)| (n.as_slice(), *t)),
    );
    let delta = previous.as_ref().map(|p| {
        let ups: Vec<(Tag, &LabelKey, &[u8])> = entries
            .iter()
            .filter(|e| e.entry.version == number)
            .map(|e| {
                (
                    e.entry.tag,
                    &e.entry.label_key,
                    reg.persons[e.entry.person as usize].as_bytes(),
                )
            })
            .collect();
        encode_delta(kp.id, number, p.manifest.number, &removed, &ups)
    });
    let mut used = vec![false; reg.persons.len()];
    for e in &entries {
        used[e.entry.person as usize] = true;
    }
    let persons_used = used.iter().filter(|u| **u).count() as u64;
    let pbytes = encode_persons(&reg.persons);
    let manifest = Manifest {
        format: 2,
        number,
        key_period: kp.id.number(),
        key_period_id: hex::encode(kp.id.to_bytes()),
        public_key: kp.meta.public_key.clone(),
        label_master_key_id: kp.meta.label_master_key_id.clone(),
        previous_epoch: previous.as_ref().map(|p| p.manifest.number),
        created_unix: now_unix(),
        entries: entries.len() as u64,
        persons: person_count,
        added,
        removed: removed.len() as u64,
        relabelled,
        digest: digest.to_string(),
        table_sha256: sha256_hex(&records),
        persons_sha256: sha256_hex(&pbytes),
        index_sha256: sha256_hex(&index),
        delta_sha256: delta.as_ref().map(|d| sha256_hex(d)),
    };
    drop(entries);

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
        evaluated,
        digest: manifest.digest.clone(),
        duplicate_rows: reg.duplicate_rows,
        rejected: reg.rejected,
        repairs: reg.repairs,
        conflicts: reg.conflicts,
        phases,
        total: started.elapsed(),
        pruned,
        pruned_deltas,
    })
}

/// Whether the new table, `entries` sorted by tag, cannot be published (table.md §8.3): two
/// entries share a tag, or an entry upserted in epoch `number` has the tag of an entry removed
/// in the same epoch (`removed`, ascending) — the delta would remove and upsert one tag, which
/// every client rejects (DeltaConflict). Only upserts can meet a removed tag: a kept entry's tag
/// was already distinct from every other tag of the previous table.
fn tag_collision(entries: &[NewEntry], removed: &[Tag], number: u32) -> bool {
    entries.windows(2).any(|w| w[0].entry.tag == w[1].entry.tag)
        || entries
            .iter()
            .filter(|e| e.entry.version == number)
            .any(|e| removed.binary_search(&e.entry.tag).is_ok())
}

/// Takes the data directory's build lock (`DATA_DIR/build.lock`, an exclusive lock on an open
/// file, released when the returned file is dropped or the process exits, even on SIGKILL).
/// Two builds at once could both allocate epoch n and publish two different deltas for it — two
/// labels under one versioned pad — so a second build fails (after at most [`LOCK_PATIENCE`]).
/// How long a build waits for a busy build lock before it gives up.
const LOCK_PATIENCE: Duration = Duration::from_secs(2);

fn lock_build(data: &DataDir) -> Result<fs::File, ServerError> {
    let path = data.build_lock();
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(crate::fsutil::FILE_MODE)
        .open(&path)
        .map_err(ServerError::io("cannot open", &path))?;
    // A lock can be held for a moment by a process being spawned elsewhere in this program
    // (a forked child holds a copy of every open file until it execs), so a busy lock is tried
    // again for a short while; another build holds it far longer and still fails here.
    let deadline = Instant::now() + LOCK_PATIENCE;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(fs::TryLockError::WouldBlock) => return Err(ServerError::BuildLocked { path }),
            Err(fs::TryLockError::Error(e)) => {
                return Err(ServerError::Io {
                    action: "cannot lock",
                    path,
                    source: e,
                });
            }
        }
    }
}

/// Starts key period (greatest existing number + 1): fresh skS, a copy of the data directory's
/// K_L, metadata; written through a temporary directory and a rename.
fn start_key_period(
    data: &DataDir,
    first_epoch: u32,
    master: &LabelMasterKey,
) -> Result<KeyPeriod, ServerError> {
    let kps = numbered_entries(&data.key_periods(), parse_dir_name)?;
    let kp_number = kps.last().copied().unwrap_or(0) + 1;
    let key = generate_oprf_key()?;
    let public_key = key.public_key().to_bytes();
    let id = KeyPeriodId::new(kp_number, &public_key);
    let meta = KeyPeriodMeta {
        format: 1,
        number: kp_number,
        key_period_id: hex::encode(id.to_bytes()),
        public_key: hex::encode(public_key),
        label_master_key_id: master.key_id().to_string(),
        first_epoch,
        created_unix: now_unix(),
    };
    let tmp = data.key_periods().join(format!(
        ".new-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        create_dir_private(&tmp)?;
        write_file_synced(&tmp.join(OPRF_KEY), key.to_bytes().as_ref())?;
        write_label_master_key(&tmp.join(KEY_PERIOD_LABEL_MASTER_KEY), master)?;
        write_file_synced(&tmp.join(KEY_PERIOD_META), to_toml(&meta)?.as_bytes())?;
        fsync_dir(&tmp)?;
        let dir = data.key_period_dir(kp_number);
        fs::rename(&tmp, &dir).map_err(ServerError::io("cannot rename into place", &dir))?;
        fsync_dir(&data.key_periods())
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    tracing::info!(key_period = %id, first_epoch, "key period started");
    KeyPeriod::load(data, kp_number)
}

fn write_file_synced(path: &Path, bytes: &[u8]) -> Result<(), ServerError> {
    let f = create_new_private(path)?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    w.write_all(bytes)
        .map_err(ServerError::io("cannot write", path))?;
    let f = w.into_inner().map_err(|e| ServerError::Io {
        action: "cannot write",
        path: path.to_path_buf(),
        source: e.into_error(),
    })?;
    f.sync_all().map_err(ServerError::io("cannot fsync", path))
}

fn write_epoch_files(
    dir: &Path,
    table: &[u8],
    persons: &[u8],
    index: &[u8],
    delta: Option<&[u8]>,
    manifest: &Manifest,
    fail_at: Option<FailPoint>,
) -> Result<(), ServerError> {
    create_dir_private(dir)?;
    write_file_synced(&dir.join(TABLE), table)?;
    debug_assert_eq!(sha256_hex(table), manifest.table_sha256);
    if fail_at == Some(FailPoint::AfterTableWritten) {
        return Err(ServerError::InjectedFailure(FailPoint::AfterTableWritten));
    }
    write_file_synced(&dir.join(PERSONS), persons)?;
    write_file_synced(&dir.join(INDEX), index)?;
    if let Some(d) = delta {
        write_file_synced(&dir.join(BUILD_DELTA), d)?;
    }
    write_file_synced(&dir.join(MANIFEST), to_toml(manifest)?.as_bytes())?;
    fsync_dir(dir)
}

/// Moves the delta of the just renamed epoch `number` from its directory to `deltas/`: a hard
/// link, which fails rather than replace an existing delta file (a delta, once published, is
/// never overwritten: its upserts' labels are bound to its epoch's pad), then the epoch
/// directory's copy is removed. Each step is synced.
fn publish_delta(data: &DataDir, number: u32) -> Result<(), ServerError> {
    let dir = data.epoch_dir(number);
    let from = dir.join(BUILD_DELTA);
    let to = data.delta_file(number);
    match fs::hard_link(&from, &to) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(ServerError::Internal(format!(
                "{} already exists; a published delta is never replaced (was another build \
                 running on this data directory?); epoch {number} is not made current",
                to.display()
            )));
        }
        Err(e) => return Err(ServerError::io("cannot link into place", &to)(e)),
    }
    fsync_dir(&data.deltas())?;
    fs::remove_file(&from).map_err(ServerError::io("cannot remove", &from))?;
    fsync_dir(&dir)
}

/// Removes `.build-*` and `.new-*` directories left by builds that did not finish, and the
/// temporary files of atomic writes whose process died before the rename (in the data
/// directory, `deltas/`, `keyperiods/*/` and `state/`; they may hold label keys and person ids,
/// which must not outlive their key period). Runs under the build lock.
fn remove_stale_builds(data: &DataDir) -> Result<(), ServerError> {
    for (dir, prefix) in [(data.epochs(), ".build-"), (data.key_periods(), ".new-")] {
        let rd = fs::read_dir(&dir).map_err(ServerError::io("cannot list", &dir))?;
        for ent in rd {
            let ent = ent.map_err(ServerError::io("cannot list", &dir))?;
            if ent.file_name().to_string_lossy().starts_with(prefix) {
                let p = ent.path();
                tracing::warn!(path = %p.display(), "removing an unfinished build");
                fs::remove_dir_all(&p).map_err(ServerError::io("cannot remove", &p))?;
            }
        }
    }
    let mut dirs = vec![data.root().to_path_buf(), data.deltas(), data.state()];
    dirs.extend(
        numbered_entries(&data.key_periods(), parse_dir_name)?
            .into_iter()
            .map(|n| data.key_period_dir(n)),
    );
    for dir in dirs {
        for p in remove_stale_temp_files(&dir)? {
            tracing::warn!(path = %p.display(), "removed a temporary file of an unfinished write");
        }
    }
    Ok(())
}

/// Deletes epoch directories that never became current (numbers between the previous current
/// epoch and the new one: builds that failed after their rename), then published epochs older
/// than the newest `keep` (never the current one).
fn prune_epochs(
    data: &DataDir,
    current: u32,
    previous_current: Option<u32>,
    keep: usize,
) -> Result<Vec<u32>, ServerError> {
    let mut pruned = Vec::new();
    let floor = previous_current.unwrap_or(0);
    for n in published_epochs(data)? {
        if n > floor && n != current && n < current {
            let p = data.epoch_dir(n);
            fs::remove_dir_all(&p).map_err(ServerError::io("cannot remove", &p))?;
            pruned.push(n);
        }
    }
    let all = published_epochs(data)?;
    if all.len() > keep {
        for &n in &all[..all.len() - keep] {
            if n == current {
                continue;
            }
            let p = data.epoch_dir(n);
            fs::remove_dir_all(&p).map_err(ServerError::io("cannot remove", &p))?;
            pruned.push(n);
        }
    }
    if !pruned.is_empty() {
        fsync_dir(&data.epochs())?;
    }
    pruned.sort_unstable();
    Ok(pruned)
}

/// Keeps the delta files of the last `history` epochs of the current chain; deletes every other
/// delta file (older ones, other key periods', orphans of unpublished epochs).
fn prune_deltas(
    data: &DataDir,
    current: &Manifest,
    kp: &KeyPeriod,
    history: u32,
) -> Result<Vec<u32>, ServerError> {
    let mut keep = std::collections::BTreeSet::new();
    let mut e = current.number;
    let mut prev = current.previous_epoch;
    while let Some(p) = prev {
        if keep.len() >= history as usize {
            break;
        }
        keep.insert(e);
        if p <= kp.meta.first_epoch {
            break;
        }
        // The previous epoch's predecessor, from its delta's header.
        let path = data.delta_file(p);
        let Ok(bytes) = read_secret(&path) else {
            break;
        };
        let Ok(d) = crate::epoch::decode_delta("delta", &path, &bytes) else {
            break;
        };
        e = p;
        prev = Some(d.previous);
    }
    let mut pruned = Vec::new();
    for n in numbered_entries(&data.deltas(), parse_delta_file_name)? {
        if !keep.contains(&n) {
            let p = data.delta_file(n);
            fs::remove_file(&p).map_err(ServerError::io("cannot remove", &p))?;
            pruned.push(n);
        }
    }
    if !pruned.is_empty() {
        fsync_dir(&data.deltas())?;
    }
    Ok(pruned)
}

/// Deletes key period directories that no kept epoch uses (never the current key period).
fn prune_key_periods(data: &DataDir, current: u64) -> Result<(), ServerError> {
    let mut used = std::collections::BTreeSet::from([current]);
    for n in published_epochs(data)? {
        if let Ok(m) = read_manifest(data, n) {
            used.insert(m.key_period);
        } else {
            // An unreadable epoch: keep every key period rather than guess.
            return Ok(());
        }
    }
    let mut removed = false;
    for n in numbered_entries(&data.key_periods(), parse_dir_name)? {
        if n < current && !used.contains(&n) {
            let p = data.key_period_dir(n);
            fs::remove_dir_all(&p).map_err(ServerError::io("cannot remove", &p))?;
            tracing::info!(
                key_period = n,
                "key period retired: its key and label key deleted"
            );
            removed = true;
        }
    }
    if removed {
        fsync_dir(&data.key_periods())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tag: u8, version: u32) -> NewEntry {
        NewEntry {
            entry: TableEntry {
                tag: Tag([tag; 16]),
                label_key: LabelKey::from_bytes(&[7; 32]),
                person: 0,
                version,
            },
            number: 0,
        }
    }

    #[test]
    fn an_added_tag_equal_to_a_removed_tag_is_a_collision() {
        let e = 5;
        let table = [entry(1, 3), entry(2, e), entry(4, 3)];
        assert!(!tag_collision(&table, &[Tag([3; 16])], e));
        // Two entries of the new table with one tag.
        assert!(tag_collision(&[entry(1, 3), entry(1, e)], &[], e));
        // The entry added in epoch e has the tag of an entry removed in epoch e.
        assert!(tag_collision(&table, &[Tag([0; 16]), Tag([2; 16])], e));
    }
}
