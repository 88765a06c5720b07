//! The client's held-number file: any CSV with either four number columns (names configurable,
//! default `insurer_number,symbol,number,branch`) or one column holding a combined string
//! (dashed or colon form). Every column is carried through untouched in [`HeldRow::record`].
//!
//! Invariants: the reader streams (one record in memory at a time) and never fails on an invalid
//! number — it yields the row with [`HeldRow::number`] set to the error, so the caller can both
//! report it and write the row to the output. Only I/O, decoding and CSV syntax errors end the
//! iteration. Data rows are numbered from 0 in [`HeldRow::index`] in file order; two passes over
//! an unchanged file yield the same indices (the client reads the file twice: once to build the
//! [`crate::HeldSet`], once to write the output).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use csv::StringRecord;
use nayose_number::{Field, Fields, InsuredNumber, ParseOptions};

use crate::columns::{self, Csv};
use crate::encoding::TextEncoding;
use crate::error::{CsvError, RowError, RowReason};
use crate::options::ReadOptions;
use crate::report::RowRepair;

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

    fn names(&self) -> Vec<&str> {
        match self {
            HeldColumns::Fields {
                insurer,
                symbol,
                number,
                branch,
            } => {
                vec![insurer, symbol, number, branch]
            }
            HeldColumns::Combined { column } => vec![column],
        }
    }

    fn column_of(&self, field: Field) -> &str {
        match self {
            HeldColumns::Combined { column } => column,
            HeldColumns::Fields {
                insurer,
                symbol,
                number,
                branch,
            } => match field {
                Field::Symbol => symbol,
                Field::Number => number,
                Field::Branch => branch,
                _ => insurer,
            },
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
    csv: Csv<R>,
    columns: HeldColumns,
    cols: Vec<usize>,
    headers: StringRecord,
    encoding: TextEncoding,
    parse: ParseOptions,
    line: u64,
    index: u64,
    done: bool,
}

impl HeldReader<BufReader<File>> {
    /// Opens the held file at `path`, resolving `options.encoding` (detection reads the file
    /// once more, in constant memory).
    pub fn open(
        path: &Path,
        columns: &HeldColumns,
        options: &ReadOptions,
    ) -> Result<Self, CsvError> {
        let encoding = TextEncoding::resolve(path, options.encoding)?;
        Self::open_with_encoding(path, encoding, columns, options)
    }

    /// Opens the held file at `path` in an encoding already resolved (for the second pass, use
    /// the first pass's [`HeldReader::encoding`]).
    pub fn open_with_encoding(
        path: &Path,
        encoding: TextEncoding,
        columns: &HeldColumns,
        options: &ReadOptions,
    ) -> Result<Self, CsvError> {
        let file = File::open(path).map_err(|source| CsvError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_reader(BufReader::new(file), encoding, columns, options)
    }
}

impl<R: Read> HeldReader<R> {
    /// Reads a held file from a stream in a known encoding (`options.encoding` is ignored).
    pub fn from_reader(
        reader: R,
        encoding: TextEncoding,
        columns: &HeldColumns,
        options: &ReadOptions,
    ) -> Result<Self, CsvError> {
        let (csv, headers) = columns::open(reader, encoding)?;
        let cols = columns::find(&headers, &columns.names())?;
        Ok(HeldReader {
            csv,
            columns: columns.clone(),
            cols,
            headers,
            encoding,
            parse: ParseOptions {
                repair: options.repair,
            },
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

    fn parse_row(
        &self,
        line: u64,
        record: &StringRecord,
    ) -> (Result<InsuredNumber, RowError>, Vec<RowRepair>) {
        if record.len() != self.headers.len() {
            let reason = RowReason::FieldCount {
                expected: self.headers.len(),
                found: record.len(),
            };
            return (
                Err(RowError {
                    line,
                    column: None,
                    reason,
                }),
                Vec::new(),
            );
        }
        let parsed = match &self.columns {
            HeldColumns::Combined { .. } => {
                InsuredNumber::parse_with(columns::field(record, self.cols[0]), self.parse)
            }
            HeldColumns::Fields { .. } => InsuredNumber::from_fields_with(
                Fields {
                    insurer: columns::field(record, self.cols[0]),
                    symbol: columns::field(record, self.cols[1]),
                    number: columns::field(record, self.cols[2]),
                    branch: columns::field(record, self.cols[3]),
                },
                self.parse,
            ),
        };
        match parsed {
            Ok(p) => {
                let repairs = p
                    .repairs
                    .into_iter()
                    .map(|repair| RowRepair {
                        line,
                        column: self.columns.column_of(repair.field).to_owned(),
                        repair,
                    })
                    .collect();
                (Ok(p.number), repairs)
            }
            Err(e) => {
                let column = Some(self.columns.column_of(e.field()).to_owned());
                (
                    Err(RowError {
                        line,
                        column,
                        reason: RowReason::Number(e),
                    }),
                    Vec::new(),
                )
            }
        }
    }
}

impl<R: Read> Iterator for HeldReader<R> {
    type Item = Result<HeldRow, CsvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut record = StringRecord::new();
        match columns::next_record(&mut self.csv, &mut record, self.line) {
            Ok(Some(line)) => {
                self.line = line;
                let index = self.index;
                self.index += 1;
                let (number, repairs) = self.parse_row(line, &record);
                Some(Ok(HeldRow {
                    line,
                    index,
                    record,
                    number,
                    repairs,
                }))
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
