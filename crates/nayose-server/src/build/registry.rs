//! Reading the registry for a build: one streaming pass that turns every valid row into a
//! fixed-size [`NumberRow`] and spills the canonical number to an unnamed file ([`Arena`]),
//! then one sort that resolves repeated numbers.
//!
//! Invariants of a [`Registry`]:
//! * `numbers` is strictly ascending by [`NumberRow::key`], one row per distinct number;
//! * a row's key is the first 16 bytes of SHA-256 over the number's canonical encoding
//!   (numbers.md §6), its `s` the sequence number of that encoding (and of its line) in the
//!   arena, without the constant 23-byte prefix (version and domain);
//! * two registry rows with one key hold one number (checked byte for byte against the arena:
//!   rows of distinct numbers with equal keys stop the build, never merge); the same number
//!   under one person is a duplicate (kept once: the first line), under two or more persons a
//!   conflict (left out); both are counted and, with a report, listed line by line;
//! * a row's `person` is the person's index in the build's [`PersonTable`] (its serial is
//!   `persons.serials()[person]`); the person id itself is keyed on the parsing threads
//!   (`crate::person_map`) and never kept.
//!
//! Memory (issue 10): 24 bytes per row and about 32 per person; the numbers themselves are on
//! disk, in the arena, read back in order when needed.

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
use rand::SeedableRng;
use rand::rngs::StdRng;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::arena::{Arena, ArenaWriter};
use super::persons::PersonTable;
use super::{BuildOptions, BuildProgress, Conflict, PhaseTimes};
use crate::error::ServerError;
use crate::person_map::{MAX_PERSON_ID_LEN, PersonIdKey, PersonKey};

/// Bytes every canonical encoding starts with: the version byte, the domain's length byte and
/// the domain. Left out of the arena and put back before evaluation.
const PREFIX_LEN: usize = 2 + ENCODING_DOMAIN.len();

/// One distinct number of the registry (or, before resolution, one valid row): 24 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NumberRow {
    /// The first 8 bytes of the key (see [`NumberRow::key`]).
    key_hi: u64,
    /// Bytes 8..16 of the key.
    key_lo: u64,
    /// The sequence number of the row's entry (number and line) in the arena.
    pub s: u32,
    /// The person's index in the build's person table.
    pub person: u32,
}

impl NumberRow {
    /// A row of `key`.
    pub(super) fn new(key: u128, s: u32, person: u32) -> Self {
        NumberRow {
            key_hi: (key >> 64) as u64,
            key_lo: key as u64,
            s,
            person,
        }
    }

    /// The first 16 bytes of SHA-256(canonical encoding), big-endian: the sort and join key.
    pub(super) fn key(&self) -> u128 {
        (u128::from(self.key_hi) << 64) | u128::from(self.key_lo)
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
    /// Persons by index, with their serials (sealed: no more interning).
    pub persons: PersonTable,
    /// Distinct numbers, ascending by key.
    pub numbers: Vec<NumberRow>,
    /// Canonical encodings without their prefix, and their lines, by sequence number.
    pub arena: Arena,
    /// Rows repeating a number under the same person.
    pub duplicate_rows: u64,
    /// Numbers under two or more persons (left out).
    pub conflicts: Vec<Conflict>,
    /// Report lines by reason (rows changed or rejected, duplicates, conflicts).
    pub counts: ReportCounts,
}

/// The canonical encoding of a number whose encoding without the prefix is `body`.
pub(super) fn canonical_into(body: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.push(ENCODING_VERSION);
    out.push(ENCODING_DOMAIN.len() as u8);
    out.extend_from_slice(ENCODING_DOMAIN);
    out.extend_from_slice(body);
}

/// The number of `body` as printed (`保険者番号-記号-番号-枝番`), for reports.
fn printed(body: &[u8]) -> String {
    let mut c = Vec::new();
    canonical_into(body, &mut c);
    InsuredNumber::from_canonical_bytes(&c).map_or_else(|_| String::new(), |n| n.dashed())
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
    /// The person key of the row's person id (`None`: the id is too long).
    person: Option<PersonKey>,
    /// The canonical encoding (its constant prefix is left out of the arena).
    canonical: Vec<u8>,
    key: u128,
    repairs: u64,
}

fn prepare(entry: RegistryEntry, person_key: &PersonIdKey) -> Prepared {
    let canonical = entry.number.canonical_bytes();
    let id = entry.person_id.as_bytes();
    Prepared {
        line: entry.line,
        key: number_key(&canonical),
        canonical,
        person: (id.len() <= MAX_PERSON_ID_LEN).then(|| person_key.person_key(id)),
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
/// (also when invalid rows make the build fail: that is when it is needed most). Person ids
/// are keyed with `person_key` and continue `seed`'s serials; the numbers are spilled into
/// `spill_dir`.
pub(super) fn read_registry(
    opts: &BuildOptions,
    spill_dir: &Path,
    seed: PersonTable,
    person_key: &PersonIdKey,
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
    let arena = ArenaWriter::create(spill_dir)?;
    let sinks = Sinks {
        persons: seed,
        person_key,
        arena,
    };
    match &opts.report {
        None => read_with(opts, reader, sinks, &progress, &mut DiscardReport, phases),
        Some(path) => {
            let encoding = OutputEncoding::like_input(reader.encoding());
            let mut report =
                ReportWriter::create(path, encoding).map_err(|e| ServerError::Report {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            let result = read_with(opts, reader, sinks, &progress, &mut report, phases);
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

/// Where the read puts what it keeps.
struct Sinks<'a> {
    persons: PersonTable,
    person_key: &'a PersonIdKey,
    arena: ArenaWriter,
}

/// A batch of parsed rows: each row (`None`: blank) and its report lines.
type Parsed = Vec<(Option<Result<Prepared, RowError>>, Vec<ReportLine>)>;

/// What the read keeps, taken batch after batch in line order by one thread at a time.
struct Kept<'a> {
    persons: PersonTable,
    arena: ArenaWriter,
    /// New persons' serials: a CSPRNG seeded from the OS (table.md §3.2).
    rng: StdRng,
    rows_of: Vec<NumberRow>,
    rows: u64,
    repairs: u64,
    rejected: Vec<RowError>,
    path: &'a Path,
}

impl Kept<'_> {
    /// Takes one parsed batch: report lines counted and reported, rejected rows kept for the
    /// error or the report, each valid row's person interned and its number spilled.
    fn take<R: Read>(
        &mut self,
        parsed: Parsed,
        reader: &mut RegistryReader<R>,
        report: &mut (impl ReportSink + ?Sized),
    ) -> Result<(), ServerError> {
        let path = self.path;
        for (row, lines) in parsed {
            reader
                .emit_lines(lines, report)
                .map_err(|e| registry_err(path, e))?;
            let Some(row) = row else { continue };
            self.rows += 1;
            let p = match row {
                Ok(p) => p,
                Err(e) => {
                    self.rejected.push(e);
                    continue;
                }
            };
            self.repairs += p.repairs;
            let Some(person_key) = p.person else {
                return Err(ServerError::InvalidRow {
                    path: path.to_path_buf(),
                    line: p.line,
                    reason: format!("person_id is longer than {MAX_PERSON_ID_LEN} bytes"),
                });
            };
            let line =
                u32::try_from(p.line).map_err(|_| too_large(path, "more than 4294967295 lines"))?;
            let person = self
                .persons
                .intern(&person_key, &mut self.rng)
                .map_err(|_| too_large(path, "more than 2147483648 persons"))?;
            let body = p.canonical.get(PREFIX_LEN..).unwrap_or_default();
            let s = self.arena.push(line, body)?;
            self.rows_of.push(NumberRow::new(p.key, s, person));
        }
        Ok(())
    }
}

fn read_with<R: Read + Send>(
    opts: &BuildOptions,
    mut reader: RegistryReader<R>,
    sinks: Sinks<'_>,
    file: &FileProgress,
    report: &mut (impl ReportSink + Send + ?Sized),
    phases: &mut PhaseTimes,
) -> Result<Registry, ServerError> {
    let path = &opts.registry;
    let t = Instant::now();
    let encoding = reader.encoding().name();
    let mapping = reader.mapping().to_string();
    let Sinks {
        persons,
        person_key,
        arena,
    } = sinks;
    let mut kept = Kept {
        persons,
        arena,
        rng: StdRng::from_os_rng(),
        // Room for every row a registry of this size can hold (a row is at least about 20
        // bytes): pages of a large allocation are only resident once written, while growing
        // the vector as rows arrive would copy it and leave the old block in the heap.
        rows_of: Vec::with_capacity(usize::try_from(file.size / 20).unwrap_or(0).min(1 << 32)),
        rows: 0,
        repairs: 0,
        rejected: Vec::new(),
        path,
    };
    // Pipeline: while one batch is parsed (all cores), the batch parsed before it is taken (in
    // line order) and then the next one is read, on one thread.
    let parser = reader.parser().clone();
    let (mut batch, mut next) = (Vec::new(), Vec::new());
    let mut pending: Parsed = Vec::new();
    let mut more = reader
        .read_raw(READ_BATCH, &mut batch)
        .map_err(|e| registry_err(path, e))?;
    while !batch.is_empty() || !pending.is_empty() {
        let (parsed, side) = rayon::join(
            || {
                batch
                    .par_iter()
                    .map(|raw| {
                        let (row, lines) = parser.parse(raw);
                        (row.map(|r| r.map(|e| prepare(e, person_key))), lines)
                    })
                    .collect::<Parsed>()
            },
            || -> Result<bool, ServerError> {
                kept.take(std::mem::take(&mut pending), &mut reader, report)?;
                if more {
                    reader
                        .read_raw(READ_BATCH, &mut next)
                        .map_err(|e| registry_err(path, e))
                } else {
                    next.clear();
                    Ok(false)
                }
            },
        );
        more = side?;
        pending = parsed;
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
    let Kept {
        mut persons,
        arena,
        mut rows_of,
        rows,
        repairs,
        rejected,
        ..
    } = kept;
    persons.seal();
    let arena = arena.finish()?;
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
    // By key, then by sequence number, which is line order: a group's first row is its first
    // line.
    rows_of.par_sort_unstable_by_key(|r| (r.key(), r.s));
    let mut reg = Registry {
        encoding,
        mapping,
        rows,
        repairs,
        rejected,
        persons,
        numbers: Vec::new(),
        arena,
        duplicate_rows: 0,
        conflicts: Vec::new(),
        counts,
    };
    resolve_repeats(&mut reg, rows_of, path, report)?;
    if reg.numbers.is_empty() {
        return Err(ServerError::EmptyRegistry { path: path.clone() });
    }
    phases.sort = t.elapsed();
    Ok(reg)
}

/// The arena entries (line and body) of the rows that share their key with another row,
/// fetched in one pass over the arena; sorted by sequence number.
fn fetch_repeated(
    reg: &Registry,
    sorted: &[NumberRow],
) -> Result<Vec<(u32, u32, Vec<u8>)>, ServerError> {
    let mut wanted: Vec<u32> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i + 1;
        while j < sorted.len() && sorted[j].key() == sorted[i].key() {
            j += 1;
        }
        if j > i + 1 {
            wanted.extend(sorted[i..j].iter().map(|r| r.s));
        }
        i = j;
    }
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    wanted.sort_unstable();
    let mut out = Vec::with_capacity(wanted.len());
    let mut r = reg.arena.reader();
    let mut buf = Vec::new();
    let mut w = 0;
    while w < wanted.len() {
        let Some(e) = r.next_into(&mut buf)? else {
            return Err(ServerError::Internal(
                "the build's spill file holds fewer numbers than were read".into(),
            ));
        };
        if e.s == wanted[w] {
            out.push((e.s, e.line, e.body.to_vec()));
            w += 1;
        }
    }
    Ok(out)
}

/// Keeps one row per distinct number of `sorted` (ascending by key, then sequence number) in
/// `reg.numbers`, counting and reporting duplicates and conflicts. Works in place: `sorted`
/// becomes `reg.numbers`.
fn resolve_repeats(
    reg: &mut Registry,
    mut sorted: Vec<NumberRow>,
    path: &Path,
    report: &mut (impl ReportSink + ?Sized),
) -> Result<(), ServerError> {
    let repeated = fetch_repeated(reg, &sorted)?;
    let entry = |s: u32| -> Result<(u32, &[u8]), ServerError> {
        repeated
            .binary_search_by_key(&s, |e| e.0)
            .map(|i| (repeated[i].1, repeated[i].2.as_slice()))
            .map_err(|_| ServerError::Internal("a repeated number was not fetched".into()))
    };
    let (mut i, mut w) = (0usize, 0usize);
    while i < sorted.len() {
        let first = sorted[i];
        let mut j = i + 1;
        while j < sorted.len() && sorted[j].key() == first.key() {
            j += 1;
        }
        if j == i + 1 {
            sorted[w] = first;
            w += 1;
            i = j;
            continue;
        }
        let group = &sorted[i..j];
        let (first_line, body) = entry(first.s)?;
        let mut lines = Vec::with_capacity(group.len());
        for r in group {
            let (line, b) = entry(r.s)?;
            if b != body {
                // Two distinct numbers with one 128-bit key: never seen, never merged.
                return Err(ServerError::Internal(format!(
                    "{}: lines {first_line} and {line} hold different numbers with the same \
                     128-bit index key (a SHA-256 prefix collision); please report this",
                    path.display(),
                )));
            }
            lines.push(line);
        }
        let mut group_persons: Vec<u32> = group.iter().map(|r| r.person).collect();
        group_persons.sort_unstable();
        group_persons.dedup();
        let printed = printed(body);
        if group_persons.len() == 1 {
            reg.duplicate_rows += (group.len() - 1) as u64;
            for &line in &lines[1..] {
                let line = ReportLine {
                    line: u64::from(line),
                    column: String::new(),
                    written: printed.clone(),
                    used: None,
                    reason: ReportReason::DuplicateRow,
                    message: format!(
                        "repeats the number of line {first_line} under the same person: \
                         published once"
                    ),
                };
                emit(&mut reg.counts, report, line).map_err(|e| registry_err(path, e))?;
            }
            sorted[w] = first;
            w += 1;
        } else {
            let lines: Vec<u64> = lines.iter().map(|&l| u64::from(l)).collect();
            let list: Vec<String> = lines.iter().map(u64::to_string).collect();
            for &line in &lines {
                let line = ReportLine {
                    line,
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
    sorted.truncate(w);
    reg.numbers = sorted;
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
