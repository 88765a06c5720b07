//! The server's registry file: a person id and an insured number per row. The documented header
//! is `person_id,insurer_number,symbol,number,branch`; Japanese and other recognised header
//! names, a combined number column and a file without a 枝番 column are read the same way as a
//! held file ([`crate::mapping`], `number_row.rs`).
//!
//! Invariants: the reader streams (one record in memory at a time); each valid row yields a
//! [`RegistryEntry`], each invalid row a [`CsvError::InvalidRow`] after which iteration goes on;
//! blank rows are skipped, counted and reported; any other error (I/O, decoding, CSV syntax, the
//! report sink) ends the iteration. Columns are found by header name, in any order; other
//! columns are ignored. The person id is opaque: surrounding ASCII spaces are trimmed and it
//! must not be empty; it is not otherwise normalized.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use csv::StringRecord;
use nayose_number::{InsuredNumber, Repair};

use crate::columns::{self, Records};
use crate::delimiter::Delimiter;
use crate::encoding::TextEncoding;
use crate::error::{CsvError, RowError, RowReason};
use crate::mapping::{ColumnMapping, ColumnRole, ColumnSpec, FileKind};
use crate::number_row::{NumberColumns, check_width};
use crate::options::{InvalidRows, ReadOptions};
use crate::report::{
    DiscardReport, ReadReport, ReportCounts, ReportLine, ReportReason, ReportSink, RowRepair,
};

/// The registry header columns, in their documented order.
pub const REGISTRY_COLUMNS: [&str; 5] =
    ["person_id", "insurer_number", "symbol", "number", "branch"];

/// One valid registry row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    /// 1-based file line.
    pub line: u64,
    /// The person id.
    pub person_id: String,
    /// The insured number.
    pub number: InsuredNumber,
    /// Repairs made to this row (only with [`ReadOptions::repair`]).
    pub repairs: Vec<Repair>,
}

/// A streaming reader of a registry file.
pub struct RegistryReader<R> {
    records: Records<R>,
    parser: RowParser,
    mapping: ColumnMapping,
    encoding: TextEncoding,
    delimiter: Option<Delimiter>,
    counts: ReportCounts,
    blank_rows: u64,
    record: StringRecord,
    line: u64,
    done: bool,
}

/// What one non-blank row of the registry gave.
type RowResult = Result<(RegistryEntry, Vec<RowRepair>), RowError>;

impl RegistryReader<BufReader<File>> {
    /// Opens the registry file at `path`, recognising its columns from the header.
    pub fn open(path: &Path, options: &ReadOptions) -> Result<Self, CsvError> {
        Self::open_mapped(path, &ColumnSpec::default(), options)
    }

    /// Opens the registry file at `path`; columns not named in `spec` are recognised from the
    /// header ([`RegistryReader::mapping`]).
    pub fn open_mapped(
        path: &Path,
        spec: &ColumnSpec,
        options: &ReadOptions,
    ) -> Result<Self, CsvError> {
        let encoding = TextEncoding::resolve(path, options.encoding)?;
        let file = File::open(path).map_err(|source| CsvError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_reader_mapped(BufReader::new(file), encoding, spec, options)
    }
}

impl<R: Read> RegistryReader<R> {
    /// Reads a registry from a stream in a known encoding, recognising its columns
    /// (`options.encoding` is ignored).
    pub fn from_reader(
        reader: R,
        encoding: TextEncoding,
        options: &ReadOptions,
    ) -> Result<Self, CsvError> {
        Self::from_reader_mapped(reader, encoding, &ColumnSpec::default(), options)
    }

    /// Reads a registry from a stream in a known encoding; columns not named in `spec` are
    /// recognised (`options.encoding` is ignored).
    pub fn from_reader_mapped(
        reader: R,
        encoding: TextEncoding,
        spec: &ColumnSpec,
        options: &ReadOptions,
    ) -> Result<Self, CsvError> {
        let (records, headers, delimiter) = columns::open(reader, encoding, options.delimiter)?;
        let mapping = crate::mapping::resolve(&headers, spec, FileKind::Registry)?;
        Ok(RegistryReader {
            records,
            parser: RowParser {
                numbers: NumberColumns::new(&mapping, &headers, options.repair),
                person: mapping.index(ColumnRole::PersonId).unwrap_or(0),
                headers,
            },
            mapping,
            encoding,
            delimiter,
            counts: ReportCounts::default(),
            blank_rows: 0,
            record: StringRecord::new(),
            line: 1,
            done: false,
        })
    }

    /// The file's encoding.
    pub fn encoding(&self) -> TextEncoding {
        self.encoding
    }

    /// The field delimiter (given or detected); `None` for a workbook.
    pub fn delimiter(&self) -> Option<Delimiter> {
        self.delimiter
    }

    /// Which header column serves which field.
    pub fn mapping(&self) -> &ColumnMapping {
        &self.mapping
    }

    /// Report lines so far, by reason (kept whether or not a sink was given).
    pub fn report_counts(&self) -> &ReportCounts {
        &self.counts
    }

    /// Blank rows skipped so far.
    pub fn blank_rows(&self) -> u64 {
        self.blank_rows
    }

    /// Reads the whole file, handing each valid entry to `sink`. Invalid rows are collected;
    /// with [`InvalidRows::Report`] any invalid row makes the result [`CsvError::InvalidRows`]
    /// listing all of them (after the whole file was read, so the list is complete).
    pub fn for_each_valid(
        self,
        policy: InvalidRows,
        sink: impl FnMut(RegistryEntry),
    ) -> Result<ReadReport, CsvError> {
        self.for_each_valid_with_report(policy, &mut DiscardReport, sink)
    }

    /// [`RegistryReader::for_each_valid`], handing every report line to `report` as it goes.
    pub fn for_each_valid_with_report(
        mut self,
        policy: InvalidRows,
        report: &mut (impl ReportSink + ?Sized),
        mut sink: impl FnMut(RegistryEntry),
    ) -> Result<ReadReport, CsvError> {
        let mut out = ReadReport::default();
        while let Some(row) = self.next_row(report)? {
            out.rows += 1;
            match row {
                Ok((entry, repairs)) => {
                    out.valid += 1;
                    out.repairs.extend(repairs);
                    sink(entry);
                }
                Err(e) => out.invalid.push(e),
            }
        }
        out.blank_rows = self.blank_rows;
        out.counts = self.counts;
        if policy == InvalidRows::Report && !out.invalid.is_empty() {
            return Err(CsvError::InvalidRows {
                errors: out.invalid,
            });
        }
        Ok(out)
    }

    /// The next non-blank row (valid or not), handing its report lines and those of blank rows
    /// before it to `report`; `Ok(None)` at the end.
    pub fn next_entry(
        &mut self,
        report: &mut (impl ReportSink + ?Sized),
    ) -> Result<Option<Result<RegistryEntry, RowError>>, CsvError> {
        Ok(self.next_row(report)?.map(|r| r.map(|(entry, _)| entry)))
    }

    fn next_row(
        &mut self,
        report: &mut (impl ReportSink + ?Sized),
    ) -> Result<Option<RowResult>, CsvError> {
        if self.done {
            return Ok(None);
        }
        let r = self.read_row(report);
        if !matches!(r, Ok(Some(_))) {
            self.done = true;
        }
        r
    }

    fn emit(
        &mut self,
        report: &mut (impl ReportSink + ?Sized),
        line: ReportLine,
    ) -> Result<(), CsvError> {
        self.counts.add(line.reason);
        report.report(line)
    }

    fn read_row(
        &mut self,
        report: &mut (impl ReportSink + ?Sized),
    ) -> Result<Option<RowResult>, CsvError> {
        loop {
            let Some(line) = columns::next_record(&mut self.records, &mut self.record, self.line)?
            else {
                return Ok(None);
            };
            self.line = line;
            if columns::is_blank(&self.record) {
                self.blank_rows += 1;
                self.emit(report, ReportLine::blank(line))?;
                continue;
            }
            let (row, lines) = self.parser.row(line, &self.record);
            for l in lines {
                self.emit(report, l)?;
            }
            return Ok(Some(row));
        }
    }

    /// Reads up to `max` rows into `out` (replacing its rows) without parsing them, for
    /// [`RowParser::parse`] on any thread. Returns false once the end of the file was reached.
    /// Each row's report lines (a blank row's too) must then be handed back, in file order,
    /// through [`RegistryReader::emit_lines`], which keeps the counts of
    /// [`RegistryReader::report_counts`] and [`RegistryReader::blank_rows`].
    pub fn read_raw(&mut self, max: usize, out: &mut Vec<RawRow>) -> Result<bool, CsvError> {
        // The rows already in `out` are overwritten in place: their records' buffers are
        // reused, so a long read does not allocate per row.
        let mut n = 0;
        if self.done {
            out.clear();
            return Ok(false);
        }
        while n < max {
            if n == out.len() {
                out.push(RawRow {
                    line: 0,
                    record: StringRecord::new(),
                });
            }
            let row = &mut out[n];
            let Some(line) = columns::next_record(&mut self.records, &mut row.record, self.line)?
            else {
                self.done = true;
                out.truncate(n);
                return Ok(false);
            };
            self.line = line;
            row.line = line;
            n += 1;
        }
        out.truncate(n);
        Ok(true)
    }

    /// The parser of this file's rows (shareable across threads).
    pub fn parser(&self) -> &RowParser {
        &self.parser
    }

    /// Counts `lines` (report lines of rows parsed with [`RowParser::parse`]) and hands them
    /// to `report`, in order.
    pub fn emit_lines(
        &mut self,
        lines: Vec<ReportLine>,
        report: &mut (impl ReportSink + ?Sized),
    ) -> Result<(), CsvError> {
        for l in lines {
            if l.reason == ReportReason::BlankRow {
                self.blank_rows += 1;
            }
            self.emit(report, l)?;
        }
        Ok(())
    }
}

/// One row read by [`RegistryReader::read_raw`] (blank or not), not yet parsed.
#[derive(Debug, Clone)]
pub struct RawRow {
    line: u64,
    record: StringRecord,
}

impl RawRow {
    /// The row's 1-based file line.
    pub fn line(&self) -> u64 {
        self.line
    }
}

/// Parses the rows of one registry file (its column layout). Pure and `Sync`, so rows can be
/// parsed on several threads while the next ones are read.
#[derive(Debug, Clone)]
pub struct RowParser {
    numbers: NumberColumns,
    person: usize,
    headers: StringRecord,
}

impl RowParser {
    /// One row: its entry or its error (`None` for a blank row, which is skipped), and its
    /// report lines in order.
    pub fn parse(
        &self,
        row: &RawRow,
    ) -> (Option<Result<RegistryEntry, RowError>>, Vec<ReportLine>) {
        if columns::is_blank(&row.record) {
            return (None, vec![ReportLine::blank(row.line)]);
        }
        let (r, lines) = self.row(row.line, &row.record);
        (Some(r.map(|(entry, _)| entry)), lines)
    }

    /// One non-blank row and its report lines.
    fn row(&self, line: u64, r: &StringRecord) -> (RowResult, Vec<ReportLine>) {
        if let Err(e) = check_width(line, r, self.headers.len()) {
            let l = ReportLine::invalid(&e, "");
            return (Err(e), vec![l]);
        }
        let written = columns::field(r, self.person);
        let person_id = written.trim_matches(|c: char| c.is_ascii_whitespace());
        if person_id.is_empty() {
            let e = RowError {
                line,
                column: Some(self.headers.get(self.person).unwrap_or("").to_owned()),
                reason: RowReason::EmptyPersonId,
            };
            let l = ReportLine::invalid(&e, written);
            return (Err(e), vec![l]);
        }
        let outcome = self.numbers.parse(line, r);
        let row = outcome.number.map(|number| {
            let entry = RegistryEntry {
                line,
                person_id: person_id.to_owned(),
                number,
                repairs: outcome.repairs.iter().map(|r| r.repair.clone()).collect(),
            };
            (entry, outcome.repairs)
        });
        (row, outcome.lines)
    }
}

impl<R: Read> Iterator for RegistryReader<R> {
    type Item = Result<RegistryEntry, CsvError>;

    /// The next row: an entry, or [`CsvError::InvalidRow`] for an invalid row (iteration goes
    /// on), or another error (iteration ends). Report lines are counted, not kept.
    fn next(&mut self) -> Option<Self::Item> {
        match self.next_entry(&mut DiscardReport) {
            Ok(Some(Ok(entry))) => Some(Ok(entry)),
            Ok(Some(Err(e))) => Some(Err(CsvError::InvalidRow(e))),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}
