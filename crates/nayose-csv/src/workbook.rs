//! Excel workbooks (.xlsx, .xlsm, .xlsb, .xls) and OpenDocument spreadsheets (.ods), read
//! through calamine: the first sheet, every cell as text.
//!
//! Invariants:
//! * a workbook is recognised by its first bytes ([`format_of`]: a ZIP archive or an OLE2
//!   compound file), never by its file name, so an .xlsx renamed to .csv is read as a workbook;
//! * unlike text files, a workbook is held in memory whole (calamine parses the archive and the
//!   sheet at once); records are then handed out one at a time like CSV records;
//! * the header is the first row of the sheet's used range; a record's line is its row number as
//!   Excel shows it (1-based), so messages point at the row the user sees;
//! * a cell becomes the text Excel would show for a general-format cell: strings as they are,
//!   whole numbers without a decimal point (an insurer number typed as a number, `1130012`,
//!   reads `1130012`, its leading zero lost as in CSV — `--repair` restores it), other numbers in
//!   Rust's shortest form, empty cells as the empty string.

use std::io::{Cursor, Read};

use calamine::{Data, Range, Reader, open_workbook_auto_from_rs};
use csv::StringRecord;

use crate::error::CsvError;

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const OLE2_MAGIC: &[u8] = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1";

/// The kind of workbook a file starting with `head` is, if it is one: `.xlsx` (a ZIP archive,
/// which also covers .xlsm, .xlsb and .ods) or `.xls` (an OLE2 compound file).
pub(crate) fn format_of(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(ZIP_MAGIC) {
        Some(".xlsx")
    } else if head.starts_with(OLE2_MAGIC) {
        Some(".xls")
    } else {
        None
    }
}

/// The rows of a sheet, handed out one record at a time.
pub(crate) struct SheetRows {
    range: Range<Data>,
    /// The next row, as an offset in `range`.
    next: usize,
    /// The 1-based sheet row of `range`'s first row.
    first_row: u64,
}

/// Reads the workbook in `reader` whole and returns its first sheet's rows after the header,
/// and the header.
pub(crate) fn open<R: Read>(mut reader: R) -> Result<(SheetRows, StringRecord), CsvError> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).map_err(CsvError::Stream)?;
    let unreadable = |reason: String| CsvError::Workbook {
        format: format_of(&bytes).unwrap_or("Excel"),
        reason,
    };
    let mut book = open_workbook_auto_from_rs(Cursor::new(bytes.as_slice()))
        .map_err(|e| unreadable(e.to_string()))?;
    let range = match book.worksheet_range_at(0) {
        Some(Ok(range)) => range,
        Some(Err(e)) => return Err(unreadable(e.to_string())),
        None => return Err(CsvError::NoHeader),
    };
    let first_row = range.start().map_or(1, |(row, _)| u64::from(row) + 1);
    let mut rows = SheetRows {
        range,
        next: 0,
        first_row,
    };
    let mut headers = StringRecord::new();
    if rows.next_record(&mut headers).is_none() {
        return Err(CsvError::NoHeader);
    }
    Ok((rows, headers))
}

impl SheetRows {
    /// Fills `record` with the next row's cells as text and returns its sheet row number, or
    /// `None` after the last row.
    pub(crate) fn next_record(&mut self, record: &mut StringRecord) -> Option<u64> {
        let row = self.range.rows().nth(self.next)?;
        record.clear();
        for cell in row {
            record.push_field(&cell_text(cell));
        }
        let line = self.first_row + self.next as u64;
        self.next += 1;
        Some(line)
    }
}

/// The text of one cell (see the module invariants).
fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
        other => other.to_string(),
    }
}
