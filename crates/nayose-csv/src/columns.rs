//! Opening an input: a CSV stream over a [`DecodingReader`] with its delimiter (explicit, or
//! detected from the header line), or a workbook's first sheet; the header, records with their
//! file lines, and blank rows.
//!
//! Invariants: the header line is read ahead once, in the decoded stream, and replayed to the
//! CSV parser unchanged (so record byte positions, and hence line numbers, are those of the
//! decoded file); data rows may have a different number of fields than the header (reported per
//! row, not fatal); a record whose every field is empty or only whitespace (Excel writes `,,,,`
//! for an emptied row) is blank ([`is_blank`]).

use std::io::{self, Read};

use csv::StringRecord;

use crate::delimiter::Delimiter;
use crate::encoding::{DecodingReader, TextEncoding, map_csv_error, map_io_error};
use crate::error::CsvError;
use crate::workbook::{self, SheetRows};

/// At most this many decoded bytes are read ahead to find the header line's end.
const HEAD_LIMIT: usize = 1 << 20;

pub(crate) type Csv<R> = csv::Reader<Replay<DecodingReader<R>>>;

/// Where records come from.
pub(crate) enum Records<R> {
    /// A text file (CSV or TSV); boxed, as it is much larger than a sheet's cursor.
    Text(Box<Csv<R>>),
    /// A workbook's first sheet.
    Sheet(SheetRows),
}

/// A reader that first yields `head` (bytes already read from `inner`), then `inner`.
pub(crate) struct Replay<R> {
    head: Vec<u8>,
    pos: usize,
    inner: R,
}

impl<R: Read> Read for Replay<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.head.len() {
            let n = buf.len().min(self.head.len() - self.pos);
            buf[..n].copy_from_slice(&self.head[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

/// Reads decoded bytes until the first line feed (or the end, or [`HEAD_LIMIT`]).
fn read_head<R: Read>(reader: &mut DecodingReader<R>) -> Result<Vec<u8>, CsvError> {
    let mut head = Vec::new();
    let mut buf = [0u8; 8192];
    while head.len() < HEAD_LIMIT && !head.contains(&b'\n') {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(map_io_error(e)),
        }
    }
    Ok(head)
}

/// Opens the input and reads its header; returns the delimiter used (`None` for a workbook).
pub(crate) fn open<R: Read>(
    reader: R,
    encoding: TextEncoding,
    delimiter: Option<Delimiter>,
) -> Result<(Records<R>, StringRecord, Option<Delimiter>), CsvError> {
    let (records, headers, delimiter) = if encoding == TextEncoding::Workbook {
        let (rows, headers) = workbook::open(reader)?;
        (Records::Sheet(rows), headers, None)
    } else {
        let mut decoded = DecodingReader::new(reader, encoding);
        let head = read_head(&mut decoded)?;
        let delimiter = delimiter.unwrap_or_else(|| Delimiter::detect(&head));
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .delimiter(delimiter.byte())
            .from_reader(Replay {
                head,
                pos: 0,
                inner: decoded,
            });
        let headers = csv.headers().map_err(|e| map_csv_error(e, 1))?.clone();
        (Records::Text(Box::new(csv)), headers, Some(delimiter))
    };
    if headers.iter().all(|h| h.trim().is_empty()) {
        return Err(CsvError::NoHeader);
    }
    if headers.iter().any(|h| h.contains('\0')) {
        return Err(CsvError::NulInHeader);
    }
    Ok((records, headers, delimiter))
}

/// Reads the next record; `Ok(None)` at the end. `last_line` is used for errors without a
/// position.
pub(crate) fn next_record<R: Read>(
    records: &mut Records<R>,
    record: &mut StringRecord,
    last_line: u64,
) -> Result<Option<u64>, CsvError> {
    let csv = match records {
        Records::Sheet(rows) => return Ok(rows.next_record(record)),
        Records::Text(csv) => csv,
    };
    match csv.read_record(record) {
        Ok(true) => {
            let line = match record.position() {
                Some(p) => csv.get_mut().inner.line_of_record(p.byte()),
                None => last_line + 1,
            };
            Ok(Some(line))
        }
        Ok(false) => Ok(None),
        Err(e) => Err(map_csv_error(e, last_line + 1)),
    }
}

/// True when every field of `record` is empty or whitespace (including U+3000).
pub(crate) fn is_blank(record: &StringRecord) -> bool {
    record.iter().all(|f| f.trim().is_empty())
}

/// The field at `i`, or "" when the row is short.
pub(crate) fn field(record: &StringRecord, i: usize) -> &str {
    record.get(i).unwrap_or("")
}
