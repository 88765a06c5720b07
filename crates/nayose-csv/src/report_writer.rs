//! [`ReportWriter`]: the row report as a CSV file, one [`ReportLine`] per line.
//!
//! Invariants: the header is [`REPORT_COLUMNS`]; lines are written as they come (memory does not
//! grow with the report); the file is owner-only and appears only when
//! [`ReportWriter::finish`] succeeds ([`crate::atomic`]); a character the chosen encoding cannot
//! represent is an error naming the report's line, never replaced.

use std::path::Path;

use csv::StringRecord;

use crate::atomic::{AtomicFile, LineEncoder, Unencodable};
use crate::encoding::OutputEncoding;
use crate::error::CsvError;
use crate::report::{ReportLine, ReportSink};

/// The report's header.
pub const REPORT_COLUMNS: [&str; 6] = [
    "line",
    "column",
    "value_as_written",
    "value_used",
    "reason",
    "message",
];

/// Writes report lines to a CSV file.
pub struct ReportWriter {
    file: AtomicFile,
    encoder: LineEncoder,
    record: StringRecord,
    bytes: Vec<u8>,
    lines: u64,
}

impl ReportWriter {
    /// Creates the report's temporary file next to `path` (owner-only) and writes the header.
    pub fn create(path: &Path, encoding: OutputEncoding) -> Result<Self, CsvError> {
        let mut w = ReportWriter {
            file: AtomicFile::create(path)?,
            encoder: LineEncoder::new(encoding),
            record: StringRecord::new(),
            bytes: Vec::new(),
            lines: 0,
        };
        w.bytes.extend_from_slice(encoding.bom());
        w.record = REPORT_COLUMNS.iter().copied().collect();
        w.encode(0)?;
        Ok(w)
    }

    /// Report lines written so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Writes one report line.
    pub fn write(&mut self, line: &ReportLine) -> Result<(), CsvError> {
        self.record.clear();
        self.record.push_field(&line.line.to_string());
        self.record.push_field(&line.column);
        self.record.push_field(&line.written);
        self.record.push_field(line.used.as_deref().unwrap_or(""));
        self.record.push_field(line.reason.code());
        self.record.push_field(&line.message);
        self.encode(line.line)?;
        self.lines += 1;
        if self.bytes.len() >= 64 * 1024 {
            self.file.write_all(&self.bytes)?;
            self.bytes.clear();
        }
        Ok(())
    }

    fn encode(&mut self, line: u64) -> Result<(), CsvError> {
        match self.encoder.encode(&self.record, &mut self.bytes) {
            Ok(()) => Ok(()),
            Err(Unencodable::Char { field, ch }) => Err(CsvError::Unrepresentable {
                line,
                column: format!(
                    "{} (of the report)",
                    REPORT_COLUMNS.get(field).copied().unwrap_or("")
                ),
                ch,
            }),
            Err(Unencodable::Csv(e)) => Err(self.file.io(std::io::Error::other(e))),
        }
    }

    /// Flushes, fsyncs and renames the report into place.
    pub fn finish(mut self) -> Result<(), CsvError> {
        self.file.write_all(&self.bytes)?;
        self.bytes.clear();
        self.file.finish()
    }
}

impl ReportSink for ReportWriter {
    fn report(&mut self, line: ReportLine) -> Result<(), CsvError> {
        self.write(&line)
    }
}
