//! The server's registry file: `person_id,insurer_number,symbol,number,branch`.
//!
//! Invariants: the reader streams (one record in memory at a time); each valid row yields a
//! [`RegistryEntry`], each invalid row a [`CsvError::InvalidRow`] after which iteration goes on;
//! any other error (I/O, decoding, CSV syntax) ends the iteration. Columns are found by header
//! name, in any order; other columns are ignored. The person id is opaque: surrounding ASCII
//! spaces are trimmed and it must not be empty; it is not otherwise normalized.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use csv::StringRecord;
use nayose_number::{Field, Fields, InsuredNumber, ParseOptions, Repair};

use crate::columns::{self, Csv};
use crate::encoding::TextEncoding;
use crate::error::{CsvError, RowError, RowReason};
use crate::options::{InvalidRows, ReadOptions};
use crate::report::{ReadReport, RowRepair};

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
    csv: Csv<R>,
    cols: [usize; 5],
    headers_len: usize,
    encoding: TextEncoding,
    parse: ParseOptions,
    record: StringRecord,
    line: u64,
    done: bool,
}

impl RegistryReader<BufReader<File>> {
    /// Opens the registry file at `path`.
    pub fn open(path: &Path, options: &ReadOptions) -> Result<Self, CsvError> {
        let encoding = TextEncoding::resolve(path, options.encoding)?;
        let file = File::open(path).map_err(|source| CsvError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_reader(BufReader::new(file), encoding, options)
    }
}

impl<R: Read> RegistryReader<R> {
    /// Reads a registry from a stream in a known encoding (`options.encoding` is ignored).
    pub fn from_reader(
        reader: R,
        encoding: TextEncoding,
        options: &ReadOptions,
    ) -> Result<Self, CsvError> {
        let (csv, headers) = columns::open(reader, encoding)?;
        let found = columns::find(&headers, &REGISTRY_COLUMNS)?;
        let cols = [found[0], found[1], found[2], found[3], found[4]];
        Ok(RegistryReader {
            csv,
            cols,
            headers_len: headers.len(),
            encoding,
            parse: ParseOptions {
                repair: options.repair,
            },
            record: StringRecord::new(),
            line: 1,
            done: false,
        })
    }

    /// The file's encoding.
    pub fn encoding(&self) -> TextEncoding {
        self.encoding
    }

    /// Reads the whole file, handing each valid entry to `sink`. Invalid rows are collected;
    /// with [`InvalidRows::Report`] any invalid row makes the result [`CsvError::InvalidRows`]
    /// listing all of them (after the whole file was read, so the list is complete).
    pub fn for_each_valid(
        self,
        policy: InvalidRows,
        mut sink: impl FnMut(RegistryEntry),
    ) -> Result<ReadReport, CsvError> {
        let mut report = ReadReport::default();
        for item in self {
            match item {
                Ok(entry) => {
                    report.rows += 1;
                    report.valid += 1;
                    let line = entry.line;
                    report
                        .repairs
                        .extend(entry.repairs.iter().map(|r| RowRepair {
                            line,
                            column: REGISTRY_COLUMNS[repair_column(r.field)].to_owned(),
                            repair: r.clone(),
                        }));
                    sink(entry);
                }
                Err(CsvError::InvalidRow(e)) => {
                    report.rows += 1;
                    report.invalid.push(e);
                }
                Err(e) => return Err(e),
            }
        }
        if policy == InvalidRows::Report && !report.invalid.is_empty() {
            return Err(CsvError::InvalidRows {
                errors: report.invalid,
            });
        }
        Ok(report)
    }

    fn row(&self, line: u64) -> Result<RegistryEntry, RowError> {
        let r = &self.record;
        if r.len() != self.headers_len {
            return Err(RowError {
                line,
                column: None,
                reason: RowReason::FieldCount {
                    expected: self.headers_len,
                    found: r.len(),
                },
            });
        }
        let person_id =
            columns::field(r, self.cols[0]).trim_matches(|c: char| c.is_ascii_whitespace());
        if person_id.is_empty() {
            return Err(RowError {
                line,
                column: Some(REGISTRY_COLUMNS[0].to_owned()),
                reason: RowReason::EmptyPersonId,
            });
        }
        let fields = Fields {
            insurer: columns::field(r, self.cols[1]),
            symbol: columns::field(r, self.cols[2]),
            number: columns::field(r, self.cols[3]),
            branch: columns::field(r, self.cols[4]),
        };
        match InsuredNumber::from_fields_with(fields, self.parse) {
            Ok(p) => Ok(RegistryEntry {
                line,
                person_id: person_id.to_owned(),
                number: p.number,
                repairs: p.repairs,
            }),
            Err(e) => Err(RowError {
                line,
                column: Some(REGISTRY_COLUMNS[repair_column(e.field())].to_owned()),
                reason: RowReason::Number(e),
            }),
        }
    }
}

fn repair_column(field: Field) -> usize {
    match field {
        Field::Symbol => 2,
        Field::Number => 3,
        Field::Branch => 4,
        _ => 1,
    }
}

impl<R: Read> Iterator for RegistryReader<R> {
    type Item = Result<RegistryEntry, CsvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match columns::next_record(&mut self.csv, &mut self.record, self.line) {
            Ok(Some(line)) => {
                self.line = line;
                Some(self.row(line).map_err(CsvError::InvalidRow))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
