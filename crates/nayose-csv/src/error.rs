//! The one error type of this crate, and the per-row error.
//!
//! Invariants: every error that concerns a row names its file line (1-based, the header is line
//! 1; for a record spanning several physical lines, the line where it starts) and, when one
//! column is at fault, that column's header name.

use std::fmt;
use std::path::PathBuf;

use nayose_number::NumberError;

/// Why a row was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RowReason {
    /// The insured number (or one of its fields) is invalid.
    Number(NumberError),
    /// The person id of a registry row is empty.
    EmptyPersonId,
    /// The row has a different number of fields than the header.
    FieldCount {
        /// Fields in the header.
        expected: usize,
        /// Fields in the row.
        found: usize,
    },
}

impl fmt::Display for RowReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowReason::Number(e) => e.fmt(f),
            RowReason::EmptyPersonId => f.write_str("person id is empty"),
            RowReason::FieldCount { expected, found } => {
                write!(f, "row has {found} fields but the header has {expected}")
            }
        }
    }
}

/// One rejected row: where it is and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// 1-based file line (the header is line 1).
    pub line: u64,
    /// The header name of the offending column, or `None` when the row as a whole is at fault.
    pub column: Option<String>,
    /// The reason.
    pub reason: RowReason,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(c) => write!(f, "line {}, column {c:?}: {}", self.line, self.reason),
            None => write!(f, "line {}: {}", self.line, self.reason),
        }
    }
}

impl std::error::Error for RowError {}

/// Errors of the CSV readers and writers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsvError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing a stream (not a named file) failed.
    #[error("I/O error: {0}")]
    Stream(#[source] std::io::Error),
    /// The input holds a byte sequence that is not valid in its encoding.
    #[error(
        "line {line}: byte offset {offset}: invalid {encoding} byte sequence; choose the \
         encoding explicitly (utf-8 or cp932) if detection picked the wrong one"
    )]
    Decode {
        /// 1-based line where the bad bytes are.
        line: u64,
        /// 0-based byte offset in the file.
        offset: u64,
        /// The encoding being decoded.
        encoding: &'static str,
    },
    /// Malformed CSV syntax.
    #[error("line {line}: malformed CSV: {message}")]
    Syntax {
        /// 1-based line.
        line: u64,
        /// What the CSV parser reported.
        message: String,
    },
    /// The file has no header line.
    #[error("the file is empty: a header line is required")]
    NoHeader,
    /// A required column is missing from the header.
    #[error("column {column:?} is missing; the header has {found:?}{hint}")]
    MissingColumn {
        /// The column looked for (the name given, or the field's English name when the column
        /// was to be recognised).
        column: String,
        /// The header's column names.
        found: Vec<String>,
        /// What to do, starting with "; " (empty when the column was named explicitly).
        hint: String,
    },
    /// A column name appears twice in the header.
    #[error("column {column:?} appears more than once in the header; rename one of them")]
    DuplicateColumn {
        /// The repeated name.
        column: String,
    },
    /// Several header columns look like the same field and none was named.
    #[error(
        "columns {columns:?} all look like the {field} column; name the one to use with \
         {option}"
    )]
    AmbiguousColumn {
        /// The field, e.g. `保険者番号 (insurer number)`.
        field: String,
        /// The header names that match it.
        columns: Vec<String>,
        /// The command-line option that names it, e.g. `--insurer-column`.
        option: &'static str,
    },
    /// Both a combined column and separate number columns were named.
    #[error(
        "both a combined column ({combined:?}) and separate number columns were named; name \
         either the combined column or the separate columns"
    )]
    ConflictingColumns {
        /// The combined column named.
        combined: String,
    },
    /// The header contains NUL characters: UTF-16 text read as UTF-8 or CP932.
    #[error(
        "the header contains NUL characters: the file is probably UTF-16 without a byte-order \
         mark; save it from Excel as \"CSV UTF-8 (comma delimited)\" and read that file"
    )]
    NulInHeader,
    /// The file starts like an Excel workbook but cannot be read as one.
    #[error(
        "the file looks like an Excel {format} workbook but cannot be read ({reason}): open it \
         in Excel and save it as \"CSV UTF-8 (comma delimited)\" (File > Save As), then pass \
         the .csv file"
    )]
    Workbook {
        /// `.xlsx` (a ZIP archive) or `.xls` (an OLE2 compound file).
        format: &'static str,
        /// What the workbook reader reported.
        reason: String,
    },
    /// The input already has a column the output would add.
    #[error(
        "the input already has a column named {column:?}; rename it (perhaps this file is a previous output)"
    )]
    ColumnExists {
        /// The column name.
        column: String,
    },
    /// One invalid row (the registry reader yields these and goes on with the next row).
    #[error("{0}")]
    InvalidRow(RowError),
    /// Invalid rows found in a whole pass; nothing was sent anywhere.
    #[error(
        "{} invalid row(s); fix them, or pass --skip-invalid to leave them out:\n{}",
        errors.len(),
        errors.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n")
    )]
    InvalidRows {
        /// Every invalid row, in file order.
        errors: Vec<RowError>,
    },
    /// A value cannot be written in the output encoding (CP932 has no such character).
    #[error(
        "line {line}, column {column:?}: character {ch:?} (U+{code:04X}) cannot be written in \
         CP932; write the output as UTF-8 instead",
        code = u32::from(*ch)
    )]
    Unrepresentable {
        /// Input line of the row.
        line: u64,
        /// The column holding the character.
        column: String,
        /// The character.
        ch: char,
    },
    /// The input file changed between the two passes of the client.
    #[error("line {line}: the input file changed since it was first read; run again")]
    ChangedBetweenPasses {
        /// The first line found different.
        line: u64,
    },
    /// More distinct numbers or rows than the index type holds.
    #[error("more than {max} rows: split the input")]
    TooManyRows {
        /// The limit.
        max: u64,
    },
    /// An unknown encoding name.
    #[error("unknown encoding {0:?}: use auto, utf-8 or cp932")]
    UnknownEncoding(String),
    /// An unknown output encoding name.
    #[error("unknown output encoding {0:?}: use utf-8-bom, utf-8 or cp932")]
    UnknownOutputEncoding(String),
    /// An unknown delimiter name.
    #[error("unknown delimiter {0:?}: use comma or tab")]
    UnknownDelimiter(String),
    /// The process is being interrupted (a signal): no new file is written or renamed into
    /// place (see [`crate::abandon_temp_files`]).
    #[error("{path}: not written: the run was interrupted")]
    Interrupted {
        /// The file that was not written.
        path: PathBuf,
    },
}
