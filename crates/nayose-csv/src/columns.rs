//! Opening a CSV stream over a [`DecodingReader`] and finding columns by header name.
//!
//! Invariants: header names are matched exactly after trimming surrounding spaces; a required
//! column that is missing, or that appears twice, is an error naming it; data rows may have a
//! different number of fields than the header (reported per row, not fatal).

use std::io::Read;

use csv::StringRecord;

use crate::encoding::{DecodingReader, TextEncoding, map_csv_error};
use crate::error::CsvError;

pub(crate) type Csv<R> = csv::Reader<DecodingReader<R>>;

/// Opens the CSV stream and reads its header.
pub(crate) fn open<R: Read>(
    reader: R,
    encoding: TextEncoding,
) -> Result<(Csv<R>, StringRecord), CsvError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(DecodingReader::new(reader, encoding));
    let headers = csv.headers().map_err(|e| map_csv_error(e, 1))?.clone();
    if headers.is_empty() || (headers.len() == 1 && headers[0].trim().is_empty()) {
        return Err(CsvError::NoHeader);
    }
    Ok((csv, headers))
}

/// The index of each of `names` in `headers`.
pub(crate) fn find(headers: &StringRecord, names: &[&str]) -> Result<Vec<usize>, CsvError> {
    names
        .iter()
        .map(|name| {
            let mut hits = headers
                .iter()
                .enumerate()
                .filter(|(_, h)| h.trim() == *name);
            match (hits.next(), hits.next()) {
                (Some((i, _)), None) => Ok(i),
                (Some(_), Some(_)) => Err(CsvError::DuplicateColumn {
                    column: (*name).to_owned(),
                }),
                (None, _) => Err(CsvError::MissingColumn {
                    column: (*name).to_owned(),
                    found: headers.iter().map(str::to_owned).collect(),
                }),
            }
        })
        .collect()
}

/// Reads the next record; `Ok(None)` at the end. `last_line` is used for errors without a
/// position.
pub(crate) fn next_record<R: Read>(
    csv: &mut Csv<R>,
    record: &mut StringRecord,
    last_line: u64,
) -> Result<Option<u64>, CsvError> {
    match csv.read_record(record) {
        Ok(true) => {
            let line = match record.position() {
                Some(p) => csv.get_mut().line_of_record(p.byte()),
                None => last_line + 1,
            };
            Ok(Some(line))
        }
        Ok(false) => Ok(None),
        Err(e) => Err(map_csv_error(e, last_line + 1)),
    }
}

/// The field at `i`, or "" when the row is short.
pub(crate) fn field(record: &StringRecord, i: usize) -> &str {
    record.get(i).unwrap_or("")
}
