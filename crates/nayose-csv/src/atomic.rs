//! Files this crate writes (the output and the row report): whole or not at all, owner-only.
//!
//! Invariants:
//! * bytes go to a temporary file in the destination's directory, created new (never an existing
//!   file) with mode 0600 on unix, so the rows of a health-insurance file are never readable by
//!   other users, not even while being written;
//! * [`AtomicFile::finish`] flushes, fsyncs and renames it onto the destination (and fsyncs the
//!   directory): a reader sees the old file or the complete new one, and the new one is 0600;
//! * dropped without `finish`, the temporary file is removed and the destination is untouched.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use csv::StringRecord;

use crate::encoding::{OutputEncoding, encode_row};
use crate::error::CsvError;

/// Distinguishes temporary files of one process.
static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

/// A file written to a temporary path and renamed into place on success.
pub(crate) struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Creates the temporary file next to `path`.
    pub(crate) fn create(path: &Path) -> Result<Self, CsvError> {
        let name = path.file_name().ok_or_else(|| CsvError::Io {
            path: path.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the output path names no file",
            ),
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let tmp = dir.join(format!(
            ".{}.nayose-{}-{}.tmp",
            name.to_string_lossy(),
            std::process::id(),
            NEXT_TMP.fetch_add(1, Ordering::Relaxed)
        ));
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(&tmp).map_err(|source| CsvError::Io {
            path: tmp.clone(),
            source,
        })?;
        Ok(AtomicFile {
            path: path.to_owned(),
            tmp,
            file: Some(BufWriter::new(file)),
        })
    }

    /// An I/O error on the temporary file.
    pub(crate) fn io(&self, source: std::io::Error) -> CsvError {
        CsvError::Io {
            path: self.tmp.clone(),
            source,
        }
    }

    /// Appends `bytes`.
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> Result<(), CsvError> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let r = file.write_all(bytes);
        r.map_err(|e| self.io(e))
    }

    /// Flushes, fsyncs and renames the temporary file onto the destination path.
    pub(crate) fn finish(mut self) -> Result<(), CsvError> {
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

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Why a record could not be encoded.
pub(crate) enum Unencodable {
    /// The CSV writer failed (it writes to memory, so only on a bug).
    Csv(csv::Error),
    /// Field `field` holds a character the output encoding cannot represent.
    Char {
        /// 0-based field index.
        field: usize,
        /// The character.
        ch: char,
    },
}

/// Writes records as CSV lines (CRLF-terminated, quoted where needed) in an output encoding.
pub(crate) struct LineEncoder {
    encoding: OutputEncoding,
    text: Vec<u8>,
}

impl LineEncoder {
    pub(crate) fn new(encoding: OutputEncoding) -> Self {
        LineEncoder {
            encoding,
            text: Vec::new(),
        }
    }

    /// Appends `record`, encoded, to `out`.
    pub(crate) fn encode(
        &mut self,
        record: &StringRecord,
        out: &mut Vec<u8>,
    ) -> Result<(), Unencodable> {
        self.text.clear();
        {
            let mut w = csv::WriterBuilder::new()
                .flexible(true)
                .terminator(csv::Terminator::CRLF)
                .buffer_capacity(256)
                .from_writer(&mut self.text);
            w.write_record(record)
                .and_then(|()| w.flush().map_err(csv::Error::from))
                .map_err(Unencodable::Csv)?;
        }
        // The CSV writer wrote only our UTF-8 fields and ASCII punctuation.
        let text = String::from_utf8_lossy(&self.text);
        encode_row(&text, self.encoding, out).map_err(|ch| Unencodable::Char {
            field: record
                .iter()
                .position(|f| f.contains(ch))
                .unwrap_or_default(),
            ch,
        })
    }
}
