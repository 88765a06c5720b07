//! Encodings as Excel and hospital systems write them: UTF-16 with a BOM (Excel's "Unicode
//! text", tab-separated), a damaged .xlsx or .xls workbook, UTF-16 without a BOM.

#![allow(clippy::unwrap_used)] // tests unwrap on data they built themselves

use nayose_csv::*;
use nayose_number::InsuredNumber;

fn utf16le(s: &str) -> Vec<u8> {
    let mut out = vec![0xFF, 0xFE];
    for u in s.encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out
}

fn utf16be(s: &str) -> Vec<u8> {
    let mut out = vec![0xFE, 0xFF];
    for u in s.encode_utf16() {
        out.extend_from_slice(&u.to_be_bytes());
    }
    out
}

/// What Excel's "Unicode text" export of a held sheet looks like (before UTF-16 encoding).
const UNICODE_TEXT: &str = "患者ID\t保険者番号\t記号\t番号\t枝番\r\n\
1\t01130012\t０６４７\t0950759\t03\r\n\
2\t39131016\t\t12345678\t\r\n";

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn utf16le_unicode_text_is_detected_and_read_as_tsv() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "held.txt", &utf16le(UNICODE_TEXT));
    assert_eq!(
        detect_encoding(&std::fs::read(&path).unwrap()[..]).unwrap(),
        TextEncoding::Utf16Le
    );
    let reader =
        HeldReader::open_mapped(&path, &ColumnSpec::default(), &ReadOptions::default()).unwrap();
    assert_eq!(reader.encoding(), TextEncoding::Utf16Le);
    assert_eq!(reader.encoding().name(), "UTF-16LE");
    assert_eq!(reader.delimiter(), Some(Delimiter::Tab));
    assert_eq!(reader.headers().get(1), Some("保険者番号"));
    let rows: Vec<HeldRow> = reader.map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].line, 2);
    assert_eq!(
        rows[0].number.as_ref().unwrap(),
        &InsuredNumber::from_fields("01130012", "0647", "0950759", "03").unwrap()
    );
    assert_eq!(rows[1].line, 3);
    assert!(rows[1].number.is_ok());
}

#[test]
fn utf16be_with_bom_reads_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let le = write(&dir, "le.txt", &utf16le(UNICODE_TEXT));
    let be = write(&dir, "be.txt", &utf16be(UNICODE_TEXT));
    let read = |p: &std::path::Path| -> Vec<String> {
        let r =
            HeldReader::open_mapped(p, &ColumnSpec::default(), &ReadOptions::default()).unwrap();
        r.map(|row| row.unwrap().number.unwrap().to_string())
            .collect()
    };
    let r = HeldReader::open_mapped(&be, &ColumnSpec::default(), &ReadOptions::default()).unwrap();
    assert_eq!(r.encoding(), TextEncoding::Utf16Be);
    assert_eq!(read(&le), read(&be));
    assert_eq!(read(&le).len(), 2);
}

#[test]
fn a_utf16_bom_wins_over_an_explicit_utf8_choice() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "held.csv", &utf16le(UNICODE_TEXT));
    let enc = TextEncoding::resolve(&path, EncodingChoice::Utf8).unwrap();
    assert_eq!(enc, TextEncoding::Utf16Le);
    let enc = TextEncoding::resolve(&path, EncodingChoice::Cp932).unwrap();
    assert_eq!(enc, TextEncoding::Utf16Le);
}

#[test]
fn utf16_registry_and_a_bad_surrogate_names_the_line() {
    let text = "person_id\tinsurer_number\tsymbol\tnumber\tbranch\n\
P1\t01130012\t0647\t0950759\t03\n";
    let entries: Vec<RegistryEntry> = RegistryReader::from_reader(
        &utf16le(text)[..],
        TextEncoding::Utf16Le,
        &ReadOptions::default(),
    )
    .unwrap()
    .map(Result::unwrap)
    .collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].person_id, "P1");
    // An unpaired high surrogate on line 3 is a decode error naming line 3.
    let mut bytes = utf16le(&format!("{text}P2\t"));
    bytes.extend_from_slice(&0xD800u16.to_le_bytes());
    bytes.extend_from_slice(&utf16le("x\t01130012\t0647\t0950759\t04\n")[2..]);
    // (A small file is decoded while the header is read, so opening may report it.)
    let err = match RegistryReader::from_reader(
        &bytes[..],
        TextEncoding::Utf16Le,
        &ReadOptions::default(),
    ) {
        Err(e) => e,
        Ok(mut reader) => reader.find_map(Result::err).unwrap(),
    };
    assert!(
        matches!(
            err,
            CsvError::Decode {
                line: 3,
                encoding: "UTF-16LE",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_damaged_workbook_says_what_to_do_whatever_the_encoding_choice() {
    let dir = tempfile::tempdir().unwrap();
    // The start of an .xlsx (a ZIP local file header) and nothing a ZIP reader can use.
    let mut xlsx = b"PK\x03\x04\x14\x00\x06\x00".to_vec();
    xlsx.extend_from_slice(&[0u8; 64]);
    let path = write(&dir, "held.csv", &xlsx);
    for choice in [
        EncodingChoice::Auto,
        EncodingChoice::Utf8,
        EncodingChoice::Cp932,
    ] {
        assert_eq!(
            TextEncoding::resolve(&path, choice).unwrap(),
            TextEncoding::Workbook
        );
        let options = ReadOptions {
            encoding: choice,
            ..ReadOptions::default()
        };
        let err = HeldReader::open_mapped(&path, &ColumnSpec::default(), &options)
            .err()
            .unwrap();
        assert!(
            matches!(
                &err,
                CsvError::Workbook {
                    format: ".xlsx",
                    ..
                }
            ),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("Excel .xlsx workbook"), "{msg}");
        assert!(msg.contains("CSV UTF-8"), "{msg}");
    }
    let err = RegistryReader::open(&path, &ReadOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, CsvError::Workbook { .. }), "{err}");
    // A damaged old binary .xls (OLE2 compound file) too.
    let xls = write(&dir, "old.csv", b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1\0\0\0\0");
    assert_eq!(
        detect_encoding(&std::fs::read(&xls).unwrap()[..]).unwrap(),
        TextEncoding::Workbook
    );
    let err = RegistryReader::open(&xls, &ReadOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(err, CsvError::Workbook { format: ".xls", .. }),
        "{err}"
    );
}

#[test]
fn utf16_without_a_bom_says_so_instead_of_missing_columns() {
    let mut bytes = Vec::new();
    for u in "insurer_number,symbol,number,branch\r\n".encode_utf16() {
        bytes.extend_from_slice(&u.to_le_bytes());
    }
    let enc = detect_encoding(&bytes[..]).unwrap();
    let err = HeldReader::from_reader_mapped(
        &bytes[..],
        enc,
        &ColumnSpec::default(),
        &ReadOptions::default(),
    )
    .err()
    .unwrap();
    assert!(matches!(err, CsvError::NulInHeader), "{err}");
    assert!(err.to_string().contains("UTF-16"), "{err}");
}

#[test]
fn cp932_and_utf8_detection_is_unchanged() {
    let text = "保険者番号,記号,番号,枝番\r\n01130012,札幌東１２,0950759,03\r\n";
    let (sjis, _, bad) = encoding_rs::SHIFT_JIS.encode(text);
    assert!(!bad);
    assert_eq!(detect_encoding(&sjis[..]).unwrap(), TextEncoding::Cp932);
    assert_eq!(
        detect_encoding(text.as_bytes()).unwrap(),
        TextEncoding::Utf8 { bom: false }
    );
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(text.as_bytes());
    assert_eq!(
        detect_encoding(&bom[..]).unwrap(),
        TextEncoding::Utf8 { bom: true }
    );
}
