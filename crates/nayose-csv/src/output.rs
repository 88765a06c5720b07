//! [`OutputWriter`]: the client's output, the input rows plus `nayose_group` and `nayose_status`.
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

/// Writes the output file atomically.
pub struct OutputWriter {
    file: AtomicFile,
    encoder: LineEncoder,
    encoding: OutputEncoding,
    headers: StringRecord,
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
        for c in [GROUP_COLUMN, STATUS_COLUMN] {
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
            bytes: Vec::new(),
        };
        w.bytes.extend_from_slice(encoding.bom());
        let mut header = headers.clone();
        header.push_field(GROUP_COLUMN);
        header.push_field(STATUS_COLUMN);
        w.write_record(1, &header)?;
        Ok(w)
    }

    /// The encoding being written.
    pub fn encoding(&self) -> OutputEncoding {
        self.encoding
    }

    /// Writes one input row (`record`, from input line `line`) with its group and status.
    pub fn write_row(
        &mut self,
        line: u64,
        record: &StringRecord,
        group: &str,
        status: &str,
    ) -> Result<(), CsvError> {
        let mut out = record.clone();
        while out.len() < self.headers.len() {
            out.push_field("");
        }
        out.push_field(group);
        out.push_field(status);
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
            Some(0) => GROUP_COLUMN.to_owned(),
            Some(_) => STATUS_COLUMN.to_owned(),
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
