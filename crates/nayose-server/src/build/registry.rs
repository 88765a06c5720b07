//! Reading the registry for a build: one streaming pass that turns every valid row into a
//! fixed-size [`NumberRow`] and the canonical number into an arena, then one sort that resolves
//! repeated numbers.
//!
//! Invariants of a [`Registry`]:
//! * `numbers` is strictly ascending by [`NumberRow::key`], one row per distinct number;
//! * a row's key is the first 16 bytes of SHA-256 over the number's canonical encoding
//!   (numbers.md §6), its `at` the arena offset of that encoding without the constant
//!   23-byte prefix (version and domain), stored as `u8 length || bytes`;
//! * two registry rows with one key hold one number (checked byte for byte against the arena:
//!   rows of distinct numbers with equal keys stop the build, never merge); the same number
//!   under one person is a duplicate (kept once), under two or more persons a conflict (left
//!   out); both are counted and, with a report, listed line by line;
//! * person ids are interned: `persons.get(row.person)` is the id as written (ASCII spaces
//!   trimmed).
//!
//! Fixed-size rows keep the memory of a build at about 32 bytes per row plus the arena
//! (about 20 bytes per number) and the person ids, and make the sort a sort of integers.

use rustc_hash::FxHashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use nayose_csv::{
    CountingReader, CsvError, DiscardReport, OutputEncoding, ReadOptions, RegistryEntry,
    RegistryReader, ReportCounts, ReportLine, ReportReason, ReportSink, ReportWriter, RowError,
    TextEncoding,
};
use nayose_number::{ENCODING_DOMAIN, ENCODING_VERSION, InsuredNumber};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::{BuildOptions, BuildProgress, Conflict, PhaseTimes};
use crate::epoch::MAX_PERSON_ID_LEN;
use crate::error::ServerError;

/// Bytes every canonical encoding starts with: the version byte, the domain's length byte and
/// the domain. Left out of the arena and put back before evaluation.
const PREFIX_LEN: usize = 2 + ENCODING_DOMAIN.len();

/// One distinct number of the registry (or, before resolution, one valid row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NumberRow {
    /// The first 16 bytes of SHA-256(canonical encoding), big-endian: the sort and join key.
    pub key: u128,
    /// Offset of the encoding (without its constant prefix) in the arena.
    pub at: u64,
    /// The person's index in [`Persons`].
    pub person: u32,
    /// The 1-based file line (the first line, after resolution).
    pub line: u32,
}

/// The person ids of the registry, interned, in first-seen order.
#[derive(Debug, Default)]
pub(super) struct Persons {
    bytes: String,
    ends: Vec<u64>,
}

impl Persons {
    /// Number of distinct person ids.
    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Person id `i` (panics if out of range, like slice indexing).
    pub(super) fn get(&self, i: u32) -> &str {
        let i = i as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[start..self.ends[i] as usize]
    }

    fn push(&mut self, id: &str) {
        self.bytes.push_str(id);
        self.ends.push(self.bytes.len() as u64);
    }

    /// Every id, in index order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.ends.len() as u32).map(|i| self.get(i))
    }
}

/// The registry after reading and resolving repeats.
pub(super) struct Registry {
    /// The detected or chosen encoding's name.
    pub encoding: &'static str,
    /// How the columns were found, one line per field.
    pub mapping: String,
    /// Data rows read (valid and rejected).
    pub rows: u64,
    /// Repairs made.
    pub repairs: u64,
    /// Rejected rows (with `skip_invalid`; otherwise reading fails).
    pub rejected: Vec<RowError>,
    /// Interned person ids.
    pub persons: Persons,
    /// Distinct numbers, ascending by key.
    pub numbers: Vec<NumberRow>,
    /// Canonical encodings without their prefix, `u8 length || bytes` each.
    pub arena: Vec<u8>,
    /// Rows repeating a number under the same person.
    pub duplicate_rows: u64,
    /// Numbers under two or more persons (left out).
    pub conflicts: Vec<Conflict>,
    /// Report lines by reason (rows changed or rejected, duplicates, conflicts).
    pub counts: ReportCounts,
}

impl Registry {
    /// The canonical encoding of `row`'s number (the OPRF input).
    pub(super) fn canonical(&self, row: &NumberRow) -> Vec<u8> {
        let body = arena_entry(&self.arena, row.at);
        let mut out = Vec::with_capacity(PREFIX_LEN + body.len());
        out.push(ENCODING_VERSION);
        out.push(ENCODING_DOMAIN.len() as u8);
        out.extend_from_slice(ENCODING_DOMAIN);
        out.extend_from_slice(body);
        out
    }

    /// The number of `row` as printed (`保険者番号-記号-番号-枝番`), for reports.
    fn printed(&self, row: &NumberRow) -> String {
        InsuredNumber::from_canonical_bytes(&self.canonical(row))
            .map_or_else(|_| String::new(), |n| n.dashed())
    }
}

fn arena_entry(arena: &[u8], at: u64) -> &[u8] {
    let at = at as usize;
    let len = arena[at] as usize;
    &arena[at + 1..at + 1 + len]
}

/// The sort and join key of a canonical encoding.
pub(super) fn number_key(canonical: &[u8]) -> u128 {
    let h = Sha256::digest(canonical);
    let mut k = [0u8; 16];
    k.copy_from_slice(&h[..16]);
    u128::from_be_bytes(k)
}

/// How far the registry file has been read.
struct FileProgress {
    read: Arc<AtomicU64>,
    size: u64,
}

/// Rows read per batch of the read/parse pipeline.
const READ_BATCH: usize = 1 << 14;

/// A parsed row's parts the build keeps, computed on the parsing threads.
struct Prepared {
    line: u64,
    person_id: String,
    /// The canonical encoding (its constant prefix is left out of the arena).
    canonical: Vec<u8>,
    key: u128,
    repairs: u64,
}

fn prepare(entry: RegistryEntry) -> Prepared {
    let canonical = entry.number.canonical_bytes();
    Prepared {
        line: entry.line,
        key: number_key(&canonical),
        canonical,
        person_id: entry.person_id,
        repairs: entry.repairs.len() as u64,
    }
}

fn registry_err(path: &Path, e: CsvError) -> ServerError {
    ServerError::Registry {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn too_large(path: &Path, reason: &str) -> ServerError {
    ServerError::TooLarge {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads and resolves the registry of `opts`, writing the row report to `opts.report` if set
/// (also when invalid rows make the build fail: that is when it is needed most).
pub(super) fn read_registry(
    opts: &BuildOptions,
    phases: &mut PhaseTimes,
) -> Result<Registry, ServerError> {
    let read_opts = ReadOptions {
        encoding: opts.encoding,
        repair: opts.repair,
        ..ReadOptions::default()
    };
    let path = &opts.registry;
    let encoding = TextEncoding::resolve(path, opts.encoding).map_err(|e| registry_err(path, e))?;
    let file = File::open(path).map_err(|e| ServerError::Io {
        action: "cannot open",
        path: path.clone(),
        source: e,
    })?;
    let size = file.metadata().map_or(0, |m| m.len());
    let read = Arc::new(AtomicU64::new(0));
    let counted = CountingReader::new(file, Arc::clone(&read));
    let reader = RegistryReader::from_reader_mapped(
        BufReader::with_capacity(1 << 16, counted),
        encoding,
        &opts.columns,
        &read_opts,
    )
    .map_err(|e| registry_err(path, e))?;
    let progress = FileProgress { read, size };
    match &opts.report {
        None => read_with(opts, reader, &progress, &mut DiscardReport, phases),
        Some(path) => {
            let encoding = OutputEncoding::like_input(reader.encoding());
            let mut report =
                ReportWriter::create(path, encoding).map_err(|e| ServerError::Report {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            let result = read_with(opts, reader, &progress, &mut report, phases);
            if matches!(&result, Ok(_) | Err(ServerError::InvalidRows { .. })) {
                report.finish().map_err(|e| ServerError::Report {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
            result
        }
    }
}

fn read_with<R: Read + Send>(
    opts: &BuildOptions,
    mut reader: RegistryReader<R>,
    file: &FileProgress,
    report: &mut (impl ReportSink + ?Sized),
    phases: &mut PhaseTimes,
) -> Result<Registry, ServerError> {
    let path = &opts.registry;
    let t = Instant::now();
    let encoding = reader.encoding().name();
    let mapping = reader.mapping().to_string();
    // FxHash: the registry comes from the operator, so hash flooding is not a threat here,
    // and SipHash was a tenth of the read.
    let mut index: FxHashMap<Box<str>, u32> = FxHashMap::default();
    let mut persons = Persons::default();
    let mut arena: Vec<u8> = Vec::new();
    let mut rows_of: Vec<NumberRow> = Vec::new();
    let (mut rows, mut repairs) = (0u64, 0u64);
    let mut rejected: Vec<RowError> = Vec::new();
    // Pipeline: while the rows of one batch are parsed (all cores), the next batch is read.
    let parser = reader.parser().clone();
    let (mut batch, mut next) = (Vec::new(), Vec::new());
    let mut more = reader
        .read_raw(READ_BATCH, &mut batch)
        .map_err(|e| registry_err(path, e))?;
    while !batch.is_empty() {
        let (parsed, read) = rayon::join(
            || {
                batch
                    .par_iter()
                    .map(|raw| {
                        let (row, lines) = parser.parse(raw);
                        (row.map(|r| r.map(prepare)), lines)
                    })
                    .collect::<Vec<_>>()
            },
            || {
                if more {
                    reader.read_raw(READ_BATCH, &mut next)
                } else {
                    next.clear();
                    Ok(false)
                }
            },
        );
        more = read.map_err(|e| registry_err(path, e))?;
        for (row, lines) in parsed {
            reader
                .emit_lines(lines, report)
                .map_err(|e| registry_err(path, e))?;
            let Some(row) = row else { continue };
            rows += 1;
            let p = match row {
                Ok(p) => p,
                Err(e) => {
                    rejected.push(e);
                    continue;
                }
            };
            repairs += p.repairs;
            if p.person_id.len() > MAX_PERSON_ID_LEN {
                return Err(ServerError::InvalidRow {
                    path: path.clone(),
                    line: p.line,
                    reason: format!("person_id is longer than {MAX_PERSON_ID_LEN} bytes"),
                });
            }
            let line =
                u32::try_from(p.line).map_err(|_| too_large(path, "more than 4294967295 lines"))?;
            let person = match index.get(p.person_id.as_str()) {
                Some(&i) => i,
                None => {
                    let i = u32::try_from(persons.len())
                        .map_err(|_| too_large(path, "more than 4294967295 persons"))?;
                    persons.push(&p.person_id);
                    index.insert(p.person_id.into_boxed_str(), i);
                    i
                }
            };
            let at = arena.len() as u64;
            let body = p.canonical.get(PREFIX_LEN..).unwrap_or_default();
            // Validation bounds every encoding far below 256 bytes (numbers.md §6).
            arena.push(u8::try_from(body.len()).map_err(|_| {
                ServerError::Internal("a canonical encoding longer than 255 bytes".into())
            })?);
            arena.extend_from_slice(body);
            rows_of.push(NumberRow {
                key: p.key,
                at,
                person,
                line,
            });
        }
        std::mem::swap(&mut batch, &mut next);
        if let Some(p) = &opts.progress {
            p(BuildProgress {
                phase: "read",
                done: file.read.load(Ordering::Relaxed).min(file.size),
                total: file.size,
                bytes: true,
            });
        }
    }
    drop(index);
    let counts = reader.report_counts().clone();
    phases.read = t.elapsed();
    if !rejected.is_empty() && !opts.skip_invalid {
        return Err(ServerError::InvalidRows {
            path: path.clone(),
            count: rejected.len() as u64,
            examples: rejected.into_iter().take(super::SHOWN).collect(),
            report: opts.report.clone(),
        });
    }

    let t = Instant::now();
    rows_of.par_sort_unstable_by_key(|r| (r.key, r.line));
    let mut reg = Registry {
        encoding,
        mapping,
        rows,
        repairs,
        rejected,
        persons,
        numbers: Vec::with_capacity(rows_of.len()),
        arena,
        duplicate_rows: 0,
        conflicts: Vec::new(),
        counts,
    };
    resolve_repeats(&mut reg, &rows_of, path, report)?;
    drop(rows_of);
    if reg.numbers.is_empty() {
        return Err(ServerError::EmptyRegistry { path: path.clone() });
    }
    phases.sort = t.elapsed();
    Ok(reg)
}

/// Moves one row per distinct number of `sorted` (ascending by key, then line) into
/// `reg.numbers`, counting and reporting duplicates and conflicts.
fn resolve_repeats(
    reg: &mut Registry,
    sorted: &[NumberRow],
    path: &Path,
    report: &mut (impl ReportSink + ?Sized),
) -> Result<(), ServerError> {
    let mut i = 0;
    while i < sorted.len() {
        let first = sorted[i];
        let mut j = i + 1;
        while j < sorted.len() && sorted[j].key == first.key {
            j += 1;
        }
        if j == i + 1 {
            reg.numbers.push(first);
            i = j;
            continue;
        }
        let group = &sorted[i..j];
        let body = arena_entry(&reg.arena, first.at);
        if group[1..]
            .iter()
            .any(|r| arena_entry(&reg.arena, r.at) != body)
        {
            // Two distinct numbers with one 128-bit key: never seen, never merged.
            return Err(ServerError::Internal(format!(
                "{}: lines {} and {} hold different numbers with the same 128-bit index key \
                 (a SHA-256 prefix collision); please report this",
                path.display(),
                first.line,
                group[1].line
            )));
        }
        let mut group_persons: Vec<u32> = group.iter().map(|r| r.person).collect();
        group_persons.sort_unstable();
        group_persons.dedup();
        let printed = reg.printed(&first);
        if group_persons.len() == 1 {
            reg.duplicate_rows += (group.len() - 1) as u64;
            reg.numbers.push(first);
            for r in &group[1..] {
                let line = ReportLine {
                    line: u64::from(r.line),
                    column: String::new(),
                    written: printed.clone(),
                    used: None,
                    reason: ReportReason::DuplicateRow,
                    message: format!(
                        "repeats the number of line {} under the same person: published once",
                        first.line
                    ),
                };
                emit(&mut reg.counts, report, line).map_err(|e| registry_err(path, e))?;
            }
        } else {
            let lines: Vec<u64> = group.iter().map(|r| u64::from(r.line)).collect();
            let list: Vec<String> = lines.iter().map(u64::to_string).collect();
            for r in group {
                let line = ReportLine {
                    line: u64::from(r.line),
                    column: String::new(),
                    written: printed.clone(),
                    used: None,
                    reason: ReportReason::NumberConflict,
                    message: format!(
                        "the same number is given under {} different persons (lines {}): left \
                         out of the table",
                        group_persons.len(),
                        list.join(", ")
                    ),
                };
                emit(&mut reg.counts, report, line).map_err(|e| registry_err(path, e))?;
            }
            reg.conflicts.push(Conflict {
                lines,
                persons: group_persons.len(),
            });
        }
        i = j;
    }
    Ok(())
}

fn emit(
    counts: &mut ReportCounts,
    report: &mut (impl ReportSink + ?Sized),
    line: ReportLine,
) -> Result<(), CsvError> {
    counts.add(line.reason);
    report.report(line)
}
