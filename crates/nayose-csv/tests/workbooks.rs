//! Excel workbooks read directly: an .xlsx (even renamed to .csv) with Japanese headers, numbers
//! typed as numbers (lost leading zeros), blank rows, and lines that are Excel's row numbers.

#![allow(clippy::unwrap_used)] // tests unwrap on data they built themselves

use nayose_csv::*;
use nayose_number::InsuredNumber;
use rust_xlsxwriter::Workbook;

/// A held sheet as a hospital would keep it: the header on row 2 (row 1 is empty), the insurer
/// number typed as a number in row 3 (Excel drops its leading zero), an emptied row 5,
/// full-width digits in row 6.
fn hospital_workbook() -> Vec<u8> {
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    for (col, h) in ["患者ID", "保険者番号", "記号", "番号", "枝番"]
        .iter()
        .enumerate()
    {
        sheet.write_string(1, col as u16, *h).unwrap();
    }
    sheet.write_string(2, 0, "A1").unwrap();
    sheet.write_number(2, 1, 1_130_012).unwrap();
    sheet.write_string(2, 2, "0647").unwrap();
    sheet.write_string(2, 3, "0950759").unwrap();
    sheet.write_string(2, 4, "03").unwrap();
    sheet.write_string(3, 0, "A2").unwrap();
    sheet.write_string(3, 1, "39131016").unwrap();
    sheet.write_number(3, 3, 12_345_678).unwrap();
    // Row 5 (index 4) left empty; row 6 in full width.
    sheet.write_string(5, 0, "A3").unwrap();
    sheet.write_string(5, 1, "０１１３００１２").unwrap();
    sheet.write_string(5, 2, "０６４７").unwrap();
    sheet.write_string(5, 3, "０９５０７５９").unwrap();
    sheet.write_string(5, 4, "０４").unwrap();
    book.save_to_buffer().unwrap()
}

fn read_all(
    path: &std::path::Path,
    repair: bool,
) -> (
    HeldReader<std::io::BufReader<std::fs::File>>,
    Vec<HeldRow>,
    Vec<ReportLine>,
) {
    let options = ReadOptions {
        repair,
        ..ReadOptions::default()
    };
    let mut reader = HeldReader::open_mapped(path, &ColumnSpec::default(), &options).unwrap();
    let mut lines = Vec::new();
    let mut rows = Vec::new();
    let mut sink = |l: ReportLine| -> Result<(), CsvError> {
        lines.push(l);
        Ok(())
    };
    while let Some(row) = reader.next_row(&mut sink).unwrap() {
        rows.push(row);
    }
    (reader, rows, lines)
}

#[test]
fn an_xlsx_renamed_to_csv_is_read_from_its_first_sheet() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.csv");
    std::fs::write(&path, hospital_workbook()).unwrap();
    assert_eq!(
        TextEncoding::resolve(&path, EncodingChoice::Auto).unwrap(),
        TextEncoding::Workbook
    );
    let (reader, rows, lines) = read_all(&path, true);
    assert_eq!(reader.encoding(), TextEncoding::Workbook);
    assert_eq!(reader.delimiter(), None);
    assert_eq!(reader.headers().get(1), Some("保険者番号"));
    assert!(!reader.mapping().branch_in_number());
    // Lines are Excel's row numbers: the header is on row 2.
    assert_eq!(
        rows.iter().map(|r| (r.line, r.index)).collect::<Vec<_>>(),
        vec![(3, 0), (4, 1), (6, 2)]
    );
    assert_eq!(rows[0].record.get(1), Some("1130012"));
    assert_eq!(rows[1].record.get(3), Some("12345678"));
    let numbers: Vec<InsuredNumber> = rows.iter().map(|r| r.number.clone().unwrap()).collect();
    assert_eq!(
        numbers,
        vec![
            InsuredNumber::from_fields("01130012", "0647", "0950759", "03").unwrap(),
            InsuredNumber::from_fields("39131016", "", "12345678", "").unwrap(),
            InsuredNumber::from_fields("01130012", "0647", "0950759", "04").unwrap(),
        ]
    );
    let got: Vec<(u64, &str, &str)> = lines
        .iter()
        .map(|l| (l.line, l.column.as_str(), l.reason.code()))
        .collect();
    assert_eq!(
        got,
        vec![
            (3, "保険者番号", "repaired"),
            (5, "", "blank_row"),
            (6, "保険者番号", "normalized"),
            (6, "記号", "normalized"),
            (6, "番号", "normalized"),
            (6, "枝番", "normalized"),
        ]
    );
}

#[test]
fn without_repair_the_lost_zero_is_invalid_with_the_repair_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.xlsx");
    std::fs::write(&path, hospital_workbook()).unwrap();
    let (_, rows, lines) = read_all(&path, false);
    let e = rows[0].number.as_ref().unwrap_err();
    assert_eq!((e.line, e.column.as_deref()), (3, Some("保険者番号")));
    assert_eq!(lines[0].reason, ReportReason::InsurerLength);
    assert!(lines[0].reason.hint().contains("--repair"));
}

#[test]
fn two_passes_over_a_workbook_agree_and_the_output_is_utf8_with_bom() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.xlsx");
    std::fs::write(&path, hospital_workbook()).unwrap();
    let options = ReadOptions {
        repair: true,
        ..ReadOptions::default()
    };
    let first = HeldReader::open_mapped(&path, &ColumnSpec::default(), &options).unwrap();
    let encoding = first.encoding();
    let set = HeldSet::build(first, InvalidRows::Report).unwrap();
    assert_eq!((set.len(), set.row_count(), set.blank_rows()), (3, 3, 1));
    let second =
        HeldReader::open_mapped_with_encoding(&path, encoding, &ColumnSpec::default(), &options)
            .unwrap();
    let out = dir.path().join("out.csv");
    let mut w = OutputWriter::create(&out, encoding, second.headers()).unwrap();
    for row in second {
        let row = row.unwrap();
        let i = set.check_row(&row).unwrap().unwrap();
        w.write_row(row.line, &row.record, &i.to_string(), "linked")
            .unwrap();
    }
    w.finish().unwrap();
    let text = std::fs::read(&out).unwrap();
    assert!(text.starts_with(b"\xEF\xBB\xBF"));
    let text = String::from_utf8(text[3..].to_vec()).unwrap();
    assert!(
        text.starts_with("患者ID,保険者番号,記号,番号,枝番,nayose_group,nayose_status\r\nA1,1130012,0647,0950759,03,0,linked\r\n"),
        "{text}"
    );
}

#[test]
fn a_registry_workbook_reads_like_its_csv() {
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    for (col, h) in ["person_id", "insurer_number", "symbol", "number", "branch"]
        .iter()
        .enumerate()
    {
        sheet.write_string(0, col as u16, *h).unwrap();
    }
    sheet.write_string(1, 0, "P1").unwrap();
    sheet.write_string(1, 1, "01130012").unwrap();
    sheet.write_string(1, 2, "0647").unwrap();
    sheet.write_string(1, 3, "0950759").unwrap();
    sheet.write_string(1, 4, "03").unwrap();
    let bytes = book.save_to_buffer().unwrap();
    let entries: Vec<RegistryEntry> =
        RegistryReader::from_reader(&bytes[..], TextEncoding::Workbook, &ReadOptions::default())
            .unwrap()
            .map(Result::unwrap)
            .collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].line, 2);
    assert_eq!(entries[0].person_id, "P1");
}

#[test]
fn an_empty_workbook_has_no_header() {
    let mut book = Workbook::new();
    book.add_worksheet();
    let bytes = book.save_to_buffer().unwrap();
    let err =
        RegistryReader::from_reader(&bytes[..], TextEncoding::Workbook, &ReadOptions::default())
            .err()
            .unwrap();
    assert!(matches!(err, CsvError::NoHeader), "{err}");
}
