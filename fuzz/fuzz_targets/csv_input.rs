//! The CSV and workbook readers of nayose-csv: the client's held file and the server's
//! registry, in every encoding (UTF-8 with and without BOM, CP932, UTF-16 LE/BE, a workbook)
//! or the detected one. The first byte picks the encoding (low 3 bits; 6 and 7: detect),
//! repair (bit 3), the delimiter (bits 4-5: detect, comma, tab), and the reader (bits 6-7:
//! held file with its columns recognised, held file with one combined column, registry read
//! row by row, registry read in raw batches and parsed as the server's build does); the rest
//! is the file. The readers must never panic: every fault is a `CsvError` or a row error.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nayose_csv::{
    ColumnSpec, Delimiter, DiscardReport, HeldColumns, HeldReader, HeldSet, InvalidRows,
    ReadOptions, RegistryReader, TextEncoding, detect_encoding,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, file)) = data.split_first() else {
        return;
    };
    let encoding = match mode % 8 {
        0 => TextEncoding::Utf8 { bom: false },
        1 => TextEncoding::Utf8 { bom: true },
        2 => TextEncoding::Cp932,
        3 => TextEncoding::Utf16Le,
        4 => TextEncoding::Utf16Be,
        5 => TextEncoding::Workbook,
        _ => match detect_encoding(file) {
            Ok(e) => e,
            Err(_) => return,
        },
    };
    let options = ReadOptions {
        repair: mode & 8 != 0,
        delimiter: match (mode >> 4) % 4 {
            1 => Some(Delimiter::Comma),
            2 => Some(Delimiter::Tab),
            _ => None,
        },
        ..ReadOptions::default()
    };
    match mode >> 6 {
        0 | 1 => {
            let spec = if mode >> 6 == 0 {
                ColumnSpec::default()
            } else {
                ColumnSpec::from(&HeldColumns::combined())
            };
            if let Ok(reader) = HeldReader::from_reader_mapped(file, encoding, &spec, &options) {
                let _ = HeldSet::build_with_report(reader, InvalidRows::Skip, &mut DiscardReport);
            }
        }
        2 => {
            if let Ok(reader) = RegistryReader::from_reader(file, encoding, &options) {
                let _ = reader.for_each_valid(InvalidRows::Skip, |_| {});
            }
        }
        _ => {
            if let Ok(mut reader) = RegistryReader::from_reader(file, encoding, &options) {
                let mut rows = Vec::new();
                while let Ok(more) = reader.read_raw(7, &mut rows) {
                    for row in &rows {
                        let (_entry, lines) = reader.parser().parse(row);
                        if reader.emit_lines(lines, &mut DiscardReport).is_err() {
                            return;
                        }
                    }
                    if !more {
                        break;
                    }
                }
            }
        }
    }
});
