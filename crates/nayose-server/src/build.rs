//! `nayose server build`: one new epoch from the registry, published atomically.
//!
//! Phases: (1) stream the registry CSV (nayose-csv), map person ids to indices, and evaluate
//! each chunk of canonical numbers under a fresh VOPRF key (`ServerKey::evaluate_batch`, all
//! cores), deriving tag and label key per number; (2) sort by tag and resolve repeats: the same
//! number under one person is a duplicate row (kept once), under two or more persons a
//! conflict (the number is left out and reported); (3) write the epoch into a private temporary
//! directory `epochs/.build-*`; (4) publish.
//!
//! Publication protocol (every step durable before the next; a crash at any point leaves the
//! previous epoch current and no partial epoch visible):
//! 1. write every file of the epoch into `epochs/.build-<pid>-<random>/`, fsync each file;
//! 2. fsync the temporary directory;
//! 3. rename it to `epochs/<20-digit number>/` and fsync `epochs/` — the epoch is now complete
//!    but not yet current (a server only ever loads the epoch `current` names);
//! 4. replace `current` atomically (temp file, fsync, rename, fsync the data directory).
//!
//! A crash before step 3 leaves a `.build-*` directory that no reader looks at (the next build
//! removes it); a crash between 3 and 4 leaves a complete, unreferenced epoch (the next build
//! uses a higher number). Step 4 is a single rename: readers see the old or the new name.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nayose_csv::{CsvError, ReadOptions, RegistryReader, RowError};
use nayose_oprf::{Mode, ServerKey};
use nayose_table::{EpochId, LabelMasterKey, TableEntry, derive_entry_secrets};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

pub use nayose_csv::EncodingChoice;

use crate::epoch::{
    MAX_PERSON_ID_LEN, Manifest, PERSONS_MAGIC, TABLE_MAGIC, encode_persons, published_epochs,
    read_current, sha256_hex,
};
use crate::error::ServerError;
use crate::fsutil::{atomic_write, create_dir_private, create_new_private, fsync_dir};
use crate::keys::{generate_oprf_key, load_or_create_label_master_key};
use crate::layout::{
    DataDir, EPOCH_LABEL_MASTER_KEY, MANIFEST, OPRF_KEY, PERSONS, TABLE, epoch_dir_name,
};

/// Numbers evaluated per OPRF batch while the registry streams in.
const CHUNK: usize = 1 << 16;

/// A point in the publication protocol at which a test can make the build fail, to check that
/// a crash there leaves the previous epoch current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPoint {
    /// After the table file was written into the temporary directory (step 1).
    AfterTableWritten,
    /// After every file was written and the temporary directory synced (before step 3).
    BeforeEpochRename,
    /// After the epoch directory was renamed into place, before `current` changes (3 → 4).
    BeforeCurrentSwitch,
}

/// Progress of a running build, handed to [`BuildOptions::progress`].
#[derive(Debug, Clone, Copy)]
pub struct BuildProgress {
    /// The phase: `"evaluate"`, `"sort"`, `"write"` or `"publish"`.
    pub phase: &'static str,
    /// Registry rows read so far (in `"evaluate"`), entries otherwise.
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
    /// How many published epochs to keep on disk (the new one included; at least 1). Older
    /// epoch directories, with their keys, are deleted after publication.
    pub keep_epochs: usize,
    /// Called with progress while the build runs.
    pub progress: Option<ProgressFn>,
    /// Crash-safety testing: fail at this point of the publication protocol.
    pub fail_at: Option<FailPoint>,
}

impl BuildOptions {
    /// Options with the defaults: detect encoding, fail on invalid rows, no repair, keep 2
    /// epochs, no progress callback.
    pub fn new(data_dir: impl Into<PathBuf>, registry: impl Into<PathBuf>) -> Self {
        BuildOptions {
            data_dir: data_dir.into(),
            registry: registry.into(),
            encoding: EncodingChoice::Auto,
            skip_invalid: false,
            repair: false,
            keep_epochs: 2,
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
    /// OPRF evaluation and tag / label-key derivation.
    pub evaluate: Duration,
    /// Sorting by tag and resolving duplicates and conflicts.
    pub sort: Duration,
    /// Writing and syncing the epoch files.
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
    /// The new epoch's sequence number.
    pub epoch_number: u64,
    /// The new epoch's id (`<number>-<key check>`).
    pub epoch_id: String,
    /// The new epoch's VOPRF public key, hex.
    pub public_key: String,
    /// Public id of the label master key the epoch uses.
    pub label_master_key_id: String,
    /// Whether this build created the label master key (first build of the data directory).
    pub label_master_key_created: bool,
    /// Data rows read (valid and rejected).
    pub rows: u64,
    /// Table entries: distinct numbers published.
    pub numbers: u64,
    /// Persons with at least one published number.
    pub persons: u64,
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
    pub pruned: Vec<u64>,
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

impl fmt::Display for BuildReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "published epoch {} in {}",
            self.epoch_id,
            self.data_dir.display()
        )?;
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
        writeln!(f, "  duplicate rows   {}", self.duplicate_rows)?;
        writeln!(f, "  rejected rows    {}", self.rejected.len())?;
        writeln!(f, "  repairs          {}", self.repairs)?;
        writeln!(f, "  conflicts        {}", self.conflicts.len())?;
        let p = &self.phases;
        writeln!(
            f,
            "  time             read {}, evaluate {}, sort {}, write {}, publish {}, total {}",
            secs(p.read),
            secs(p.evaluate),
            secs(p.sort),
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
            let p: Vec<String> = self.pruned.iter().map(u64::to_string).collect();
            writeln!(f, "  removed old epochs {}", p.join(", "))?;
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

/// Entries being collected: the table entry and the registry line it came from.
struct Collected {
    entries: Vec<(TableEntry, u64)>,
}

fn evaluate_chunk(
    key: &ServerKey,
    inputs: &[Vec<u8>],
    meta: &[(u32, u64)],
    out: &mut Collected,
) -> Result<(), ServerError> {
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let outputs = key.evaluate_batch(Mode::Voprf, &refs)?;
    let derived: Vec<(TableEntry, u64)> = outputs
        .par_iter()
        .zip(meta.par_iter())
        .map(|(o, &(person, line))| {
            let (tag, label_key) = derive_entry_secrets(o.as_bytes());
            (
                TableEntry {
                    tag,
                    label_key,
                    person,
                },
                line,
            )
        })
        .collect();
    out.entries.extend(derived);
    Ok(())
}

/// Builds a new epoch from `opts.registry` and publishes it in `opts.data_dir` (see the module
/// documentation for the phases and the publication protocol).
pub fn build_epoch(opts: &BuildOptions) -> Result<BuildReport, ServerError> {
    let started = Instant::now();
    let data = DataDir::create(&opts.data_dir)?;
    let (master, master_created) = load_or_create_label_master_key(&data)?;
    create_dir_private(&data.epochs())?;
    remove_stale_builds(&data)?;

    let last = published_epochs(&data)?.last().copied().unwrap_or(0);
    let current = read_current(&data)?
        .and_then(|n| crate::layout::parse_epoch_dir_name(&n))
        .unwrap_or(0);
    let number = last.max(current) + 1;
    let key = generate_oprf_key()?;
    let public_key = key.public_key().to_bytes();
    let epoch_id = EpochId::new(number, &public_key);
    tracing::info!(epoch = %epoch_id, registry = %opts.registry.display(), "building epoch");

    // Phase 1: read and evaluate.
    let read_opts = ReadOptions {
        encoding: opts.encoding,
        repair: opts.repair,
        ..ReadOptions::default()
    };
    let reader = RegistryReader::open(&opts.registry, &read_opts)
        .map_err(|e| registry_err(&opts.registry, e))?;
    let encoding = reader.encoding().name();
    let mut phases = PhaseTimes::default();
    let mut person_index: HashMap<String, u32> = HashMap::new();
    let mut persons: Vec<String> = Vec::new();
    let mut collected = Collected {
        entries: Vec::new(),
    };
    let mut chunk: Vec<Vec<u8>> = Vec::with_capacity(CHUNK);
    let mut meta: Vec<(u32, u64)> = Vec::with_capacity(CHUNK);
    let mut rows = 0u64;
    let mut repairs = 0u64;
    let mut rejected: Vec<RowError> = Vec::new();
    let mut t_read = Instant::now();
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
        chunk.push(entry.number.canonical_bytes());
        meta.push((person, entry.line));
        if chunk.len() == CHUNK {
            phases.read += t_read.elapsed();
            let t = Instant::now();
            evaluate_chunk(&key, &chunk, &meta, &mut collected)?;
            phases.evaluate += t.elapsed();
            chunk.clear();
            meta.clear();
            if let Some(p) = &opts.progress {
                p(BuildProgress {
                    phase: "evaluate",
                    done: rows,
                });
            }
            t_read = Instant::now();
        }
    }
    phases.read += t_read.elapsed();
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
    if !chunk.is_empty() {
        let t = Instant::now();
        evaluate_chunk(&key, &chunk, &meta, &mut collected)?;
        phases.evaluate += t.elapsed();
        if let Some(p) = &opts.progress {
            p(BuildProgress {
                phase: "evaluate",
                done: rows,
            });
        }
    }
    drop((chunk, meta, person_index));

    // Phase 2: sort, duplicates, conflicts.
    let t = Instant::now();
    let mut entries = collected.entries;
    entries.par_sort_unstable_by(|a, b| (a.0.tag, a.1).cmp(&(b.0.tag, b.1)));
    let mut kept: Vec<TableEntry> = Vec::with_capacity(entries.len());
    let mut conflicts = Vec::new();
    let mut duplicate_rows = 0u64;
    let mut i = 0;
    while i < entries.len() {
        let mut j = i + 1;
        while j < entries.len() && entries[j].0.tag == entries[i].0.tag {
            j += 1;
        }
        let group = &entries[i..j];
        let mut group_persons: Vec<u32> = group.iter().map(|(e, _)| e.person).collect();
        group_persons.sort_unstable();
        group_persons.dedup();
        if group_persons.len() == 1 {
            duplicate_rows += (group.len() - 1) as u64;
            kept.push(group[0].0.clone());
        } else {
            conflicts.push(Conflict {
                lines: group.iter().map(|(_, l)| *l).collect(),
                persons: group_persons.len(),
            });
        }
        i = j;
    }
    drop(entries);
    if kept.is_empty() {
        return Err(ServerError::EmptyRegistry {
            path: opts.registry.clone(),
        });
    }
    let mut used = vec![false; persons.len()];
    for e in &kept {
        used[e.person as usize] = true;
    }
    let persons_used = used.iter().filter(|u| **u).count() as u64;
    phases.sort = t.elapsed();
    if let Some(p) = &opts.progress {
        p(BuildProgress {
            phase: "sort",
            done: kept.len() as u64,
        });
    }

    // Phase 3: write into a private temporary directory.
    let t = Instant::now();
    let tmp = data.epochs().join(format!(
        ".build-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let written = write_epoch_files(
        &tmp,
        &kept,
        &persons,
        &key,
        &master,
        number,
        epoch_id,
        opts.fail_at,
    );
    let manifest = match written {
        Ok(m) => m,
        Err(e) => {
            if !matches!(e, ServerError::InjectedFailure(_)) {
                let _ = fs::remove_dir_all(&tmp);
            }
            return Err(e);
        }
    };
    phases.write = t.elapsed();
    if let Some(p) = &opts.progress {
        p(BuildProgress {
            phase: "write",
            done: kept.len() as u64,
        });
    }

    // Phase 4: publish.
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
    fs::rename(&tmp, &final_dir)
        .map_err(ServerError::io("cannot rename into place", &final_dir))?;
    fsync_dir(&data.epochs())?;
    if opts.fail_at == Some(FailPoint::BeforeCurrentSwitch) {
        return Err(ServerError::InjectedFailure(FailPoint::BeforeCurrentSwitch));
    }
    atomic_write(
        &data.current(),
        format!("{}\n", epoch_dir_name(number)).as_bytes(),
    )?;
    phases.publish = t.elapsed();
    if let Some(p) = &opts.progress {
        p(BuildProgress {
            phase: "publish",
            done: kept.len() as u64,
        });
    }
    let pruned = prune_epochs(&data, number, opts.keep_epochs.max(1))?;
    tracing::info!(epoch = %epoch_id, numbers = kept.len(), "epoch published");

    Ok(BuildReport {
        data_dir: opts.data_dir.clone(),
        registry: opts.registry.clone(),
        encoding,
        epoch_number: number,
        epoch_id: epoch_id.to_string(),
        public_key: manifest.public_key,
        label_master_key_id: manifest.label_master_key_id,
        label_master_key_created: master_created,
        rows,
        numbers: kept.len() as u64,
        persons: persons_used,
        duplicate_rows,
        rejected,
        repairs,
        conflicts,
        phases,
        total: started.elapsed(),
        pruned,
    })
}

fn write_file_synced(path: &Path, bytes: &[u8]) -> Result<(), ServerError> {
    let mut f = create_new_private(path)?;
    f.write_all(bytes)
        .map_err(ServerError::io("cannot write", path))?;
    f.sync_all().map_err(ServerError::io("cannot fsync", path))
}

#[allow(clippy::too_many_arguments)]
fn write_epoch_files(
    dir: &Path,
    kept: &[TableEntry],
    persons: &[String],
    key: &ServerKey,
    master: &LabelMasterKey,
    number: u64,
    epoch_id: EpochId,
    fail_at: Option<FailPoint>,
) -> Result<Manifest, ServerError> {
    create_dir_private(dir)?;
    // table.bin, hashed while it is written.
    let tpath = dir.join(TABLE);
    let f = create_new_private(&tpath)?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let mut h = Sha256::new();
    w.write_all(TABLE_MAGIC)
        .map_err(ServerError::io("cannot write", &tpath))?;
    h.update(TABLE_MAGIC);
    for e in kept {
        let rec = e.to_record();
        w.write_all(rec.as_ref())
            .map_err(ServerError::io("cannot write", &tpath))?;
        h.update(rec.as_ref());
    }
    let f = w.into_inner().map_err(|e| ServerError::Io {
        action: "cannot write",
        path: tpath.clone(),
        source: e.into_error(),
    })?;
    f.sync_all()
        .map_err(ServerError::io("cannot fsync", &tpath))?;
    drop(f);
    let table_sha256 = hex::encode(h.finalize().as_slice());
    if fail_at == Some(FailPoint::AfterTableWritten) {
        return Err(ServerError::InjectedFailure(FailPoint::AfterTableWritten));
    }

    let pbytes = encode_persons(persons);
    debug_assert!(pbytes.starts_with(PERSONS_MAGIC));
    write_file_synced(&dir.join(PERSONS), &pbytes)?;
    write_file_synced(&dir.join(OPRF_KEY), key.to_bytes().as_ref())?;
    write_file_synced(
        &dir.join(EPOCH_LABEL_MASTER_KEY),
        master.to_bytes().as_ref(),
    )?;
    let manifest = Manifest {
        format: 1,
        number,
        epoch_id: hex::encode(epoch_id.to_bytes()),
        public_key: hex::encode(key.public_key().to_bytes()),
        label_master_key_id: master.key_id().to_string(),
        created_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        entries: kept.len() as u64,
        persons: u32::try_from(persons.len()).unwrap_or(u32::MAX),
        table_sha256,
        persons_sha256: sha256_hex(&pbytes),
    };
    write_file_synced(&dir.join(MANIFEST), manifest.to_toml()?.as_bytes())?;
    fsync_dir(dir)?;
    Ok(manifest)
}

/// Removes `epochs/.build-*` directories left by builds that did not finish.
fn remove_stale_builds(data: &DataDir) -> Result<(), ServerError> {
    let dir = data.epochs();
    let rd = fs::read_dir(&dir).map_err(ServerError::io("cannot list", &dir))?;
    for ent in rd {
        let ent = ent.map_err(ServerError::io("cannot list", &dir))?;
        let name = ent.file_name();
        if name.to_string_lossy().starts_with(".build-") {
            let p = ent.path();
            tracing::warn!(path = %p.display(), "removing an unfinished build");
            fs::remove_dir_all(&p).map_err(ServerError::io("cannot remove", &p))?;
        }
    }
    Ok(())
}

/// Deletes published epochs older than the newest `keep` (never the current one).
fn prune_epochs(data: &DataDir, current: u64, keep: usize) -> Result<Vec<u64>, ServerError> {
    let all = published_epochs(data)?;
    let mut pruned = Vec::new();
    if all.len() > keep {
        for &n in &all[..all.len() - keep] {
            if n == current {
                continue;
            }
            let p = data.epoch_dir(n);
            fs::remove_dir_all(&p).map_err(ServerError::io("cannot remove", &p))?;
            pruned.push(n);
        }
        fsync_dir(&data.epochs())?;
    }
    Ok(pruned)
}
