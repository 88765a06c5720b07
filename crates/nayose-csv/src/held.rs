//! The client's held-number file: any CSV or TSV with either separate number columns (保険者番号,
//! 記号, 番号 and optionally 枝番) or one column holding a combined string (dashed or colon
//! form), named by the user or recognised from the header ([`crate::mapping`]). Every column is
//! carried through untouched in [`HeldRow::record`].
//!
//! Invariants: the reader streams (one record in memory at a time) and never fails on an invalid
//! number — it yields the row with [`HeldRow::number`] set to the error, so the caller can both
//! report it and write the row to the output. Blank rows (no value in any column, e.g. Excel's
//! `,,,,`) are not yielded: they are counted and reported ([`crate::ReportReason::BlankRow`]).
//! Only I/O, decoding, CSV syntax and report-sink errors end the iteration. Data rows are
//! numbered from 0 in [`HeldRow::index`] in file order (blank rows take no index); two passes
//! over an unchanged file yield the same indices (the client reads the file twice: once to build
//! the [`crate::HeldSet`], once to write the output).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use csv::StringRecord;
use nayose_number::InsuredNumber;

use crate::columns::{self, Records};
use crate::delimiter::Delimiter;
use crate::encoding::TextEncoding;
use crate::error::{CsvError, RowError};
use crate::mapping::{ColumnMapping, ColumnSpec, FileKind};
use crate::number_row::{NumberColumns, check_width};
use crate::options::ReadOptions;
use crate::report::{DiscardReport, ReportCounts, ReportLine, ReportSink, RowRepair};

/// Which columns of the held file hold the number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeldColumns {
    /// Four columns: 保険者番号, 記号, 番号, 枝番 (empty 記号 / 枝番 cells mean absent).
    Fields {
        /// 保険者番号 column.
        insurer: String,
        /// 記号 column.
        symbol: String,
        /// 番号 column.
        number: String,
        /// 枝番 column.
        branch: String,
    },
    /// One column holding a combined string (dashed or colon form).
    Combined {
        /// The column (default name `insured_number`).
        column: String,
    },
}

impl Default for HeldColumns {
    /// `insurer_number,symbol,number,branch`.
    fn default() -> Self {
        HeldColumns::Fields {
            insurer: "insurer_number".into(),
            symbol: "symbol".into(),
            number: "number".into(),
            branch: "branch".into(),
        }
    }
}

impl HeldColumns {
    /// The default combined column, `insured_number`.
    pub fn combined() -> Self {
        HeldColumns::Combined {
            column: "insured_number".into(),
        }
    }
}

/// One data row of the held file.
#[derive(Debug, Clone)]
pub struct HeldRow {
    /// 1-based file line where the record starts (the header is line 1).
    pub line: u64,
    /// 0-based index among data rows.
    pub index: u64,
    /// Every field of the row, as decoded (carried through to the output).
    pub record: StringRecord,
    /// The row's number, or why it has none.
    pub number: Result<InsuredNumber, RowError>,
    /// Repairs made to this row (only with [`ReadOptions::repair`]).
    pub repairs: Vec<RowRepair>,
}

/// A streaming reader of a held-number file.
pub struct HeldReader<R> {
    records: Records<R>,
    numbers: NumberColumns,
    mapping: ColumnMapping,
    headers: StringRecord,
    encoding: TextEncoding,
    delimiter: Option<Delimiter>,
    counts: ReportCounts,
    blank_rows: u64,
    line: u64,
    index: u64,
    done: bool,
}

impl HeldReader<BufReader<File>> {
    /// Opens the held file at `path` with every number column named, resolving
    /// `options.encoding` (detection reads the file once more, in constant memory).
    pub fn open(
        path: &Path,
        columns: &HeldColumns,
        options: &ReadOptions,
    ) -> Result<Self, CsvError> {
        Self::open_mapped(path, &ColumnSpec::from(columns), options)
    }

    /// Opens the held file at `path` in an encoding already resolved (for the second pass, use
    /// the first pass's [`HeldReader::encoding`]).
    pub fn open_with_encoding(
        path: &Path,
        encoding: TextEncoding,
        columns: &HeldColumns,
        options: &ReadOptions,
    ) -> Result<Self, CsvError> {
        Self::open_mapped_with_encoding(path, encoding, &ColumnSpec::from(columns), options)
    }

    /// Opens the held file at `path`, resolving `options.encoding` and `options.delimiter`;
    /// columns not named in `spec` are recognised from the header ([`HeldReader::mapping`]).
    pub fn open_mapped(
        path: &Path,
        spec: &ColumnSpec,
        options: &ReadOptions,
    ) -> Result<Self, CsvError> {
        let encoding = TextEncoding::resolve(path, options.encoding)?;
        Self::open_mapped_with_encoding(path, encoding, spec, options)
    }

    /// [`HeldReader::open_mapped`] in an encoding already resolved. For the second pass pass
    /// the first pass's [`HeldReader::encoding`] and the same `spec` and options: the mapping
    /// and the detected delimiter depend only on the file, so they come out the same.
    pub fn open_mapped_with_encoding(
        path: &Path,
        encoding: TextEncoding,
        spec: &ColumnSpec,
        options: &ReadOptions,
    ) -> Result<Self, CsvError> {
        let file = File::open(path).map_err(|source| CsvError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_reader_mapped(BufReader::new(file), encoding, spec, options)
    }
}

impl<R: Read> HeldReader<R> {
    /// Reads a held file from a stream in a known encoding with every number column named
    /// (`options.encoding` is ignored).
    pub fn from_reader(
        reader: R,
        encoding: TextEncoding,
        columns: &HeldColumns,
        options: &ReadOptions,
    ) -> Result<Self, CsvError> {
        Self::from_reader_mapped(reader, encoding, &ColumnSpec::from(columns), options)
    }

    /// Reads a held file from a stream in a known encoding; columns not named in `spec` are
    /// recognised from the header (`options.encoding` is ignored).
    pub fn from_reader_mapped(
        reader: R,
        encoding: TextEncoding,
        spec: &ColumnSpec,
        options: &ReadOptions,
    ) -> Result<Self, CsvError> {
        let (records, headers, delimiter) = columns::open(reader, encoding, options.delimiter)?;
        let mapping = crate::mapping::resolve(&headers, spec, FileKind::Held)?;
        Ok(HeldReader {
            records,
            numbers: NumberColumns::new(&mapping, &headers, options.repair),
            mapping,
            headers,
            encoding,
            delimiter,
            counts: ReportCounts::default(),
            blank_rows: 0,
            line: 1,
            index: 0,
            done: false,
        })
    }

    /// The header row, as decoded.
    pub fn headers(&self) -> &StringRecord {
        &self.headers
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

    fn emit(
        &mut self,
        sink: &mut (impl ReportSink + ?Sized),
        line: ReportLine,
    ) -> Result<(), CsvError> {
        self.counts.add(line.reason);
        sink.report(line)
    }

    /// The next data row, handing its report lines (and those of blank rows before it) to
    /// `sink`; `Ok(None)` at the end.
    pub fn next_row(
        &mut self,
        sink: &mut (impl ReportSink + ?Sized),
    ) -> Result<Option<HeldRow>, CsvError> {
        if self.done {
            return Ok(None);
        }
        let r = self.read_row(sink);
        if !matches!(r, Ok(Some(_))) {
            self.done = true;
        }
        r
    }

    fn read_row(
        &mut self,
        sink: &mut (impl ReportSink + ?Sized),
    ) -> Result<Option<HeldRow>, CsvError> {
        let mut record = StringRecord::new();
        loop {
            let Some(line) = columns::next_record(&mut self.records, &mut record, self.line)?
            else {
                return Ok(None);
            };
            self.line = line;
            if columns::is_blank(&record) {
                self.blank_rows += 1;
                self.emit(sink, ReportLine::blank(line))?;
                continue;
            }
            let index = self.index;
            self.index += 1;
            let (number, repairs) = match check_width(line, &record, self.headers.len()) {
                Err(e) => {
                    self.emit(sink, ReportLine::invalid(&e, ""))?;
                    (Err(e), Vec::new())
                }
                Ok(()) => {
                    let outcome = self.numbers.parse(line, &record);
                    for l in outcome.lines {
                        self.emit(sink, l)?;
                    }
                    (outcome.number, outcome.repairs)
                }
            };
            return Ok(Some(HeldRow {
                line,
                index,
                record,
                number,
                repairs,
            }));
        }
    }
}

impl<R: Read> Iterator for HeldReader<R> {
    type Item = Result<HeldRow, CsvError>;

    /// [`HeldReader::next_row`] with report lines counted but not kept.
    fn next(&mut self) -> Option<Self::Item> {
        self.next_row(&mut DiscardReport).transpose()
    }
}
