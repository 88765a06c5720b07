//! `nayose server build`: one new epoch from the registry, published atomically.
//!
//! **Which key period.** A build starts a new key period (fresh VOPRF key, the data directory's
//! label master key copied into the key period, every number evaluated, every version = the new
//! epoch, no delta) when no epoch was published yet or when [`BuildOptions::new_key_period`] is
//! set, and only then (table.md §4). Otherwise it builds the next epoch of the current key
//! period (table.md §8.2), refusing if the label master key was rotated since the key period
//! started.
//!
//! **Next epoch of a key period.** Phases: (1) stream the registry (nayose-csv; while one
//! batch of rows is parsed on all cores, the batch before it is taken in line order and the
//! next one read, on one thread) into 24-byte rows (number key =
//! SHA-256(canonical number)[0..16], arena sequence number, person index) while the canonical
//! numbers and their lines go to an unnamed spill file (`registry.rs`, `arena.rs`) and person
//! ids, keyed with the person-id key on the parsing threads (`crate::person_map`), are interned
//! into random serials continuing the previous person map (`persons.rs`); (2) sort
//! by key and resolve repeats: the same number under one person is a duplicate row (kept once),
//! under two or more persons a conflict (left out); both are reported; (3) merge-join with the
//! previous epoch's number index (`index.bin`: key → table position, streamed): a number in
//! both is kept, a new number is ADDed — the only numbers evaluated — and an index entry whose
//! number is gone is REMOVEd (`merge.rs`); (4) the added numbers, read back from the spill file
//! in order, are evaluated (`ServerKey::evaluate_batch_with` in VOPRF mode, all cores) into tag
//! buckets (`evaluate.rs`); (5) one pass over the previous table in tag order (streamed), merged
//! with each bucket sorted in memory, writes the new records straight into `table.bin`: a kept
//! entry keeps tag, label key and version, unless its person serial changed (RELABEL: version
//! = new epoch); equal tags, or an added tag equal to a removed one, are a collision
//! (`ServerError::TagCollision`, the epoch is not published and a new key period must be
//! started, table.md §8.3); the same pass yields the delta (removed tags ascending; upserts =
//! entries whose version is the new epoch, ascending by tag) and every number's position
//! (`emit.rs`); (6) the table is synced and its digest read back while the index and the
//! person map are written, then the delta and the manifest (`write.rs`); (7) publish.
//!
//! **Memory** (issue 10): 24 bytes per row, 4 per number for its new position, 4 per arena
//! entry, 4 per previous entry, about 32 per person, plus fixed buffers — the previous epoch's
//! person map, index and table are read once each with `read()`, hashed as they pass and
//! checked against the manifest's SHA-256 before anything is published (`previous.rs`), never
//! mapped. Spill files are unnamed (`spool.rs`): no build,
//! however it ends, leaves one behind.
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
//!    `epochs/.build-<pid>-<random>/` (the table during phase 5, the rest after it), fsync each
//!    file and the directory;
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

mod arena;
mod emit;
mod evaluate;
mod files;
mod merge;
mod persons;
mod previous;
mod registry;
mod report;
mod spool;
#[cfg(test)]
mod tests;
mod write;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use nayose_table::{RECORD_LEN, TAG_LEN, Tag, UpsertChain};

pub use nayose_csv::{ColumnSpec, EncodingChoice};

use crate::epoch::{
    KeyPeriod, Manifest, TABLE_MAGIC, encode_delta, read_current, read_manifest, sha256_hex,
    to_toml,
};
use crate::error::ServerError;
use crate::fsutil::{atomic_write, create_dir_private, fsync_dir};
use crate::keys::{create_person_id_key, load_or_create_label_master_key, read_person_id_key};
use crate::layout::{
    BUILD_DELTA, DataDir, INDEX, MANIFEST, PERSONS, TABLE, epoch_dir_name, parse_epoch_dir_name,
};
use crate::person_map::{PersonIdKey, PersonMapFormat};
use emit::{EmitError, EmitInputs, emit_table};
use evaluate::evaluate_added;
use files::{
    last_allocated_epoch, lock_build, open_previous, previous_chain, prune_deltas, prune_epochs,
    prune_key_periods, publish_delta, remove_stale_builds, start_key_period, write_file_synced,
};
use merge::classify;
use persons::PersonTable;
use previous::{PrevIndex, PrevRecords, person_map_format_of, read_person_seed};
use registry::{Registry, read_registry};
pub use report::{BuildReport, Conflict, PhaseTimes};
use write::{create_hashed, digest_of_written, write_index, write_persons};

/// Numbers evaluated per OPRF batch: at least 2^14, and 2^12 per thread of rayon's pool, so
/// every core gets 64 or more of the evaluation's chunks of 64 and the cores finish a batch
/// within one chunk (under 2 %) of each other; few enough that a batch's inputs and entries
/// (under 150 bytes per number) stay a small constant (40 MB on 64 cores).
fn batch_len() -> usize {
    (rayon::current_num_threads() << 12).max(1 << 14)
}

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

/// The peak resident memory of this process (`VmHWM`), where Linux's /proc tells it.
fn peak_resident() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    let kb: u64 = kb.trim().trim_end_matches("kB").trim().parse().ok()?;
    kb.checked_mul(1024)
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
            let (manifest, kp) = open_previous(&data, c)?;
            if kp.meta.label_master_key_id != root_master.key_id().to_string() {
                return Err(ServerError::LabelKeyRotated {
                    key_period: kp.id.to_string(),
                    in_use: kp.meta.label_master_key_id.clone(),
                    rotated: root_master.key_id().to_string(),
                });
            }
            Some((manifest, kp))
        }
        _ => None,
    };
    // The person map to continue: the previous epoch's, or in a new key period the current
    // epoch's (serials, and so labels, outlive key periods).
    let seed_manifest = match (&previous, current) {
        (Some((m, _)), _) => Some(m.clone()),
        (None, Some(c)) => Some(read_manifest(&data, c)?),
        (None, None) => None,
    };
    let person_key = person_id_key(&data, seed_manifest.as_ref())?;
    let seed = match &seed_manifest {
        Some(m) => read_person_seed(&data, m, &person_key)?,
        None => PersonTable::with_capacity(0),
    };
    let mut phases = PhaseTimes {
        load: t.elapsed(),
        ..PhaseTimes::default()
    };
    let reg = read_registry(opts, &data.epochs(), seed, &person_key, &mut phases)?;

    // Allocate the epoch number before writing anything (never reused).
    let number = last_allocated_epoch(&data)?
        .checked_add(1)
        .ok_or_else(|| ServerError::Internal("epoch numbers are exhausted (u32)".into()))?;
    atomic_write(&data.last_epoch(), format!("{number}\n").as_bytes())?;

    // The key period: the previous epoch's, or a new one.
    let (previous, kp, new_kp) = match previous {
        Some((m, kp)) => (Some(m), kp, false),
        None => (None, start_key_period(&data, number, &root_master)?, true),
    };
    tracing::info!(epoch = number, key_period = %kp.id, new_key_period = new_kp, registry = %opts.registry.display(), "building epoch");

    let tmp = data.epochs().join(format!(
        ".build-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let written = write_epoch(
        &Job {
            data: &data,
            opts,
            reg: &reg,
            previous: previous.as_ref(),
            kp: &kp,
            person_key: &person_key,
            number,
            tmp: &tmp,
        },
        &mut phases,
    );
    let (manifest, persons_used) = match written {
        Ok(w) => w,
        Err(e) => {
            if !matches!(e, ServerError::InjectedFailure(_)) {
                let _ = fs::remove_dir_all(&tmp);
            }
            return Err(e);
        }
    };
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
    if manifest.delta_sha256.is_some() {
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
    tracing::info!(epoch = number, key_period = %kp.id, numbers = manifest.entries, added = manifest.added, removed = manifest.removed, relabelled = manifest.relabelled, "epoch published");

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
        added: manifest.added,
        removed: manifest.removed,
        relabelled: manifest.relabelled,
        evaluated: manifest.added,
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
        peak_resident: peak_resident(),
        pruned,
        pruned_deltas,
    })
}

/// The data directory's person-id key K_P, created if it does not exist yet — unless the person
/// map to continue (of the epoch of `seed`) was keyed with it: a new key would give every
/// person a new serial, so that is an error naming the file to restore.
fn person_id_key(data: &DataDir, seed: Option<&Manifest>) -> Result<PersonIdKey, ServerError> {
    if let Some(k) = read_person_id_key(data)? {
        return Ok(k);
    }
    if let Some(m) = seed
        && m.persons > 0
        && person_map_format_of(data, m)? == PersonMapFormat::Keyed
    {
        return Err(ServerError::PersonIdKeyMissing {
            path: data.person_id_key(),
            epoch: epoch_dir_name(u64::from(m.number)),
        });
    }
    create_person_id_key(data)
}

/// What [`write_epoch`] works from.
struct Job<'a> {
    data: &'a DataDir,
    opts: &'a BuildOptions,
    reg: &'a Registry,
    /// The manifest of the previous epoch of the key period (none in a new key period).
    previous: Option<&'a Manifest>,
    kp: &'a KeyPeriod,
    /// Keys the person map's key check.
    person_key: &'a PersonIdKey,
    number: u32,
    /// The temporary epoch directory (created here).
    tmp: &'a Path,
}

/// The diff, the evaluation and every file of the new epoch, written into `job.tmp` (steps 1–2
/// of the publication protocol). Returns the manifest and the persons with an entry.
fn write_epoch(job: &Job<'_>, phases: &mut PhaseTimes) -> Result<(Manifest, u64), ServerError> {
    let Job {
        data,
        opts,
        reg,
        previous,
        kp,
        person_key,
        number,
        tmp,
    } = *job;
    let t = Instant::now();
    let prev_index = match previous {
        Some(m) => Some((
            PrevIndex::open(data, m)?,
            usize::try_from(m.entries)
                .map_err(|_| ServerError::Internal("more entries than memory".into()))?,
        )),
        None => None,
    };
    let cls = classify(reg, prev_index)?;
    phases.sort += t.elapsed();

    let t = Instant::now();
    let buckets = evaluate_added(reg, &cls, &kp.key, &data.epochs(), opts.progress.as_ref())?;
    phases.evaluate = t.elapsed();

    let t = Instant::now();
    create_dir_private(tmp)?;
    let table_path = tmp.join(TABLE);
    let mut w = create_hashed(&table_path)?;
    w.put(TABLE_MAGIC)?;
    let prev_records = match previous {
        Some(m) => Some(PrevRecords::open(data, m)?),
        None => None,
    };
    let emitted = emit_table(
        EmitInputs {
            prev: prev_records,
            row_at: &cls.row_at,
            buckets,
            numbers: &reg.numbers,
            serials: reg.persons.serials(),
            number,
        },
        w,
    )
    .map_err(|e| match e {
        EmitError::Collision => ServerError::TagCollision {
            key_period: kp.id.to_string(),
        },
        EmitError::Server(e) => e,
    })?;
    drop(cls);
    if opts.fail_at == Some(FailPoint::AfterTableWritten) {
        return Err(ServerError::InjectedFailure(FailPoint::AfterTableWritten));
    }
    let upserts: Vec<&[u8]> = emitted.upserts.chunks_exact(RECORD_LEN).collect();
    let chain = match previous {
        None => UpsertChain::first(kp.id, number),
        Some(m) => {
            let tags: Vec<Tag> = upserts
                .iter()
                .map(|r| {
                    let mut t = [0u8; TAG_LEN];
                    t.copy_from_slice(&r[..TAG_LEN]);
                    Tag(t)
                })
                .collect();
            previous_chain(m)?
                .next(kp.id, number, tags.iter())
                .map_err(|e| ServerError::Internal(format!("upsert chain: {e}")))?
        }
    };
    // The table's fsync and read-back beside the index and the person map: each side waits on
    // the disk while the other computes. Both are done before anything below (and before the
    // epoch directory is renamed, step 3).
    let (digest, written) = rayon::join(
        || -> Result<_, ServerError> {
            emitted
                .table
                .sync_all()
                .map_err(ServerError::io("cannot fsync", &table_path))?;
            digest_of_written(&table_path, kp.id, number, &chain, emitted.entries)
        },
        || -> Result<_, ServerError> {
            let index = write_index(&tmp.join(INDEX), &reg.numbers, &emitted.pos_of_row)?;
            let persons = write_persons(&tmp.join(PERSONS), &reg.persons, person_key)?;
            Ok((index, persons))
        },
    );
    let digest = digest?;
    let (index_sha, persons_sha) = written?;
    let delta_sha = match previous {
        Some(m) => {
            let delta = encode_delta(kp.id, number, m.number, &emitted.removed, &upserts);
            write_file_synced(&tmp.join(BUILD_DELTA), &delta)?;
            Some(sha256_hex(&delta))
        }
        None => None,
    };
    let manifest = Manifest {
        format: 2,
        number,
        key_period: kp.id.number(),
        key_period_id: hex::encode(kp.id.to_bytes()),
        public_key: kp.meta.public_key.clone(),
        label_master_key_id: kp.meta.label_master_key_id.clone(),
        previous_epoch: previous.map(|m| m.number),
        created_unix: now_unix(),
        entries: emitted.entries,
        persons: reg.persons.len(),
        added: emitted.added,
        removed: emitted.removed.len() as u64,
        relabelled: emitted.relabelled,
        digest: digest.to_string(),
        upsert_chain: chain.to_string(),
        table_sha256: hex::encode(emitted.table_sha256),
        persons_sha256: hex::encode(persons_sha),
        index_sha256: hex::encode(index_sha),
        delta_sha256: delta_sha,
    };
    write_file_synced(&tmp.join(MANIFEST), to_toml(&manifest)?.as_bytes())?;
    fsync_dir(tmp)?;
    phases.write = t.elapsed();
    Ok((manifest, emitted.persons_used))
}
