//! [`OutputWriter`]: the client's output, the input rows plus `nayose_group` and `nayose_status`,
//! and, as the caller chooses ([`OutputColumns`]), `nayose_note` and `nayose_number`.
//!
//! Invariants:
//! * the output is written in the encoding the caller chose ([`OutputWriter::create_with`]), or
//!   the input's ([`OutputWriter::create`], see [`OutputEncoding::like_input`]); a character
//!   CP932 cannot represent is an error naming line and column, never replaced;
//! * every input field is written with its decoded value unchanged (quoting may differ from the
//!   input; rows shorter than the header are padded with empty fields so the two new columns
//!   stay aligned); lines end with CRLF;
//! * the file is owner-only (0600 on unix) and written whole or not at all ([`crate::atomic`]):
//!   [`OutputWriter::finish`] renames it into place; dropped without `finish`, the destination
//!   is untouched.

use std::path::Path;

use csv::StringRecord;

use crate::atomic::{AtomicFile, LineEncoder, Unencodable};
use crate::encoding::{OutputEncoding, TextEncoding};
use crate::error::CsvError;

/// The column holding the group label.
pub const GROUP_COLUMN: &str = "nayose_group";
/// The column holding the row's status.
pub const STATUS_COLUMN: &str = "nayose_status";
/// The column holding a note on the row: why it is invalid, or that its number was repaired
/// (a [`crate::ReportReason`] code).
pub const NOTE_COLUMN: &str = "nayose_note";
/// The column holding the row's number in its canonical form (the colon form).
pub const NUMBER_COLUMN: &str = "nayose_number";

/// Which columns the output adds after the input's: always [`GROUP_COLUMN`] and
/// [`STATUS_COLUMN`], then [`NOTE_COLUMN`] and [`NUMBER_COLUMN`] when chosen, in that order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputColumns {
    /// Add [`NOTE_COLUMN`].
    pub note: bool,
    /// Add [`NUMBER_COLUMN`].
    pub number: bool,
}

impl OutputColumns {
    /// The names of the added columns, in output order.
    pub fn names(self) -> Vec<&'static str> {
        let mut v = vec![GROUP_COLUMN, STATUS_COLUMN];
        if self.note {
            v.push(NOTE_COLUMN);
        }
        if self.number {
            v.push(NUMBER_COLUMN);
        }
        v
    }
}

/// The values of the added columns for one row (a value whose column was not chosen is ignored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowResult<'a> {
    /// `nayose_group`.
    pub group: &'a str,
    /// `nayose_status`.
    pub status: &'a str,
    /// `nayose_note`.
    pub note: &'a str,
    /// `nayose_number`.
    pub number: &'a str,
}

/// Writes the output file atomically.
pub struct OutputWriter {
    file: AtomicFile,
    encoder: LineEncoder,
    encoding: OutputEncoding,
    headers: StringRecord,
    columns: OutputColumns,
    added: Vec<&'static str>,
    bytes: Vec<u8>,
}

impl OutputWriter {
    /// Creates the output in the input's encoding ([`OutputEncoding::like_input`]); see
    /// [`OutputWriter::create_with`].
    pub fn create(
        path: &Path,
        encoding: TextEncoding,
        headers: &StringRecord,
    ) -> Result<Self, CsvError> {
        Self::create_with(path, OutputEncoding::like_input(encoding), headers)
    }

    /// Creates the temporary file next to `path` (owner-only) and writes the header (`headers`
    /// plus the two new columns) in `encoding`. Fails if `headers` already has either new
    /// column.
    pub fn create_with(
        path: &Path,
        encoding: OutputEncoding,
        headers: &StringRecord,
    ) -> Result<Self, CsvError> {
        Self::create_with_columns(path, encoding, headers, OutputColumns::default())
    }

    /// [`OutputWriter::create_with`] adding the columns of `columns`. Fails if `headers`
    /// already has any column that would be added.
    pub fn create_with_columns(
        path: &Path,
        encoding: OutputEncoding,
        headers: &StringRecord,
        columns: OutputColumns,
    ) -> Result<Self, CsvError> {
        let added = columns.names();
        for &c in &added {
            if headers.iter().any(|h| h.trim() == c) {
                return Err(CsvError::ColumnExists {
                    column: c.to_owned(),
                });
            }
        }
        let mut w = OutputWriter {
            file: AtomicFile::create(path)?,
            encoder: LineEncoder::new(encoding),
            encoding,
            headers: headers.clone(),
            columns,
            added,
            bytes: Vec::new(),
        };
        w.bytes.extend_from_slice(encoding.bom());
        let mut header = headers.clone();
        for c in &w.added {
            header.push_field(c);
        }
        w.write_record(1, &header)?;
        Ok(w)
    }

    /// The encoding being written.
    pub fn encoding(&self) -> OutputEncoding {
        self.encoding
    }

    /// Writes one input row (`record`, from input line `line`) with its group and status (and
    /// empty values in the other added columns).
    pub fn write_row(
        &mut self,
        line: u64,
        record: &StringRecord,
        group: &str,
        status: &str,
    ) -> Result<(), CsvError> {
        self.write_result(
            line,
            record,
            &RowResult {
                group,
                status,
                ..RowResult::default()
            },
        )
    }

    /// Writes one input row (`record`, from input line `line`) with the values of the added
    /// columns.
    pub fn write_result(
        &mut self,
        line: u64,
        record: &StringRecord,
        result: &RowResult<'_>,
    ) -> Result<(), CsvError> {
        let mut out = record.clone();
        while out.len() < self.headers.len() {
            out.push_field("");
        }
        out.push_field(result.group);
        out.push_field(result.status);
        if self.columns.note {
            out.push_field(result.note);
        }
        if self.columns.number {
            out.push_field(result.number);
        }
        self.write_record(line, &out)
    }

    fn write_record(&mut self, line: u64, record: &StringRecord) -> Result<(), CsvError> {
        match self.encoder.encode(record, &mut self.bytes) {
            Ok(()) => {}
            Err(Unencodable::Char { field, ch }) => {
                return Err(CsvError::Unrepresentable {
                    line,
                    column: self.column_name(field),
                    ch,
                });
            }
            Err(Unencodable::Csv(e)) => return Err(self.file.io(std::io::Error::other(e))),
        }
        if self.bytes.len() >= 64 * 1024 {
            self.flush_bytes()?;
        }
        Ok(())
    }

    fn column_name(&self, i: usize) -> String {
        match i.checked_sub(self.headers.len()) {
            None => self.headers.get(i).unwrap_or("").to_owned(),
            Some(k) => self.added.get(k).copied().unwrap_or("").to_owned(),
        }
    }

    fn flush_bytes(&mut self) -> Result<(), CsvError> {
        let r = self.file.write_all(&self.bytes);
        self.bytes.clear();
        r
    }

    /// Flushes, fsyncs and renames the temporary file onto the destination path.
    pub fn finish(mut self) -> Result<(), CsvError> {
        self.flush_bytes()?;
        self.file.finish()
    }
}
