//! [`OutputWriter`]: the client's output, the input rows plus `nayose_group` and `nayose_status`.
//!
//! Invariants:
//! * the output is written in the input's encoding (UTF-8 keeps a BOM if the input had one); a
//!   character CP932 cannot represent is an error naming line and column, never replaced;
//! * every input field is written with its decoded value unchanged (quoting may differ from the
//!   input; rows shorter than the header are padded with empty fields so the two new columns
//!   stay aligned); lines end with CRLF;
//! * the file is written to a temporary file in the destination's directory, flushed and fsynced,
//!   then renamed into place by [`OutputWriter::finish`] (and the directory fsynced): a reader
//!   sees the old file or the complete new one. Dropped without `finish`, the temporary file is
//!   removed and the destination is untouched.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use csv::StringRecord;

use crate::encoding::{TextEncoding, bom, encode_row};
use crate::error::CsvError;

/// The column holding the group label.
pub const GROUP_COLUMN: &str = "nayose_group";
/// The column holding the row's status.
pub const STATUS_COLUMN: &str = "nayose_status";

/// Writes the output file atomically.
pub struct OutputWriter {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<BufWriter<File>>,
    encoding: TextEncoding,
    headers: StringRecord,
    text: Vec<u8>,
    bytes: Vec<u8>,
}

impl OutputWriter {
    /// Creates the temporary file next to `path` and writes the header (`headers` plus the two
    /// new columns). Fails if `headers` already has either new column.
    pub fn create(
        path: &Path,
        encoding: TextEncoding,
        headers: &StringRecord,
    ) -> Result<Self, CsvError> {
        for c in [GROUP_COLUMN, STATUS_COLUMN] {
            if headers.iter().any(|h| h.trim() == c) {
                return Err(CsvError::ColumnExists {
                    column: c.to_owned(),
                });
            }
        }
        let io = |source| CsvError::Io {
            path: path.to_owned(),
            source,
        };
        let name = path.file_name().ok_or_else(|| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the output path names no file",
            ))
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let tmp = dir.join(format!(
            ".{}.nayose-{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|source| CsvError::Io {
                path: tmp.clone(),
                source,
            })?;
        let mut w = OutputWriter {
            path: path.to_owned(),
            tmp,
            file: Some(BufWriter::new(file)),
            encoding,
            headers: headers.clone(),
            text: Vec::new(),
            bytes: Vec::new(),
        };
        w.bytes.extend_from_slice(bom(encoding));
        let mut header = headers.clone();
        header.push_field(GROUP_COLUMN);
        header.push_field(STATUS_COLUMN);
        w.write_record(1, &header)?;
        Ok(w)
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
        self.text.clear();
        let written = {
            let mut w = csv::WriterBuilder::new()
                .flexible(true)
                .terminator(csv::Terminator::CRLF)
                .buffer_capacity(256)
                .from_writer(&mut self.text);
            w.write_record(record)
                .and_then(|()| w.flush().map_err(csv::Error::from))
        };
        written.map_err(|e| self.csv_io(e))?;
        // The CSV writer wrote only our UTF-8 fields and ASCII punctuation.
        let text = std::str::from_utf8(&self.text).map_err(|_| {
            self.io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "non-UTF-8 row",
            ))
        })?;
        if let Err(ch) = encode_row(text, self.encoding, &mut self.bytes) {
            let column = record
                .iter()
                .enumerate()
                .find(|(_, f)| f.contains(ch))
                .map(|(i, _)| self.column_name(i))
                .unwrap_or_default();
            return Err(CsvError::Unrepresentable { line, column, ch });
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

    fn io(&self, source: std::io::Error) -> CsvError {
        CsvError::Io {
            path: self.tmp.clone(),
            source,
        }
    }

    fn csv_io(&self, e: csv::Error) -> CsvError {
        match e.into_kind() {
            csv::ErrorKind::Io(source) => self.io(source),
            other => self.io(std::io::Error::other(format!("{other:?}"))),
        }
    }

    fn flush_bytes(&mut self) -> Result<(), CsvError> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let r = file.write_all(&self.bytes);
        self.bytes.clear();
        r.map_err(|e| self.io(e))
    }

    /// Flushes, fsyncs and renames the temporary file onto the destination path.
    pub fn finish(mut self) -> Result<(), CsvError> {
        self.flush_bytes()?;
        let Some(writer) = self.file.take() else {
            return Ok(());
        };
        let file = writer.into_inner().map_err(|e| self.io(e.into_error()))?;
        file.sync_all().map_err(|e| self.io(e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).map_err(|source| CsvError::Io {
            path: self.path.clone(),
            source,
        })?;
        if let Some(dir) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Persist the rename; directories cannot be opened for sync on every platform.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for OutputWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
