//! Files without a 枝番 column: the 番号 carries the 枝番, appended or after a dash.

#![allow(clippy::unwrap_used)] // tests unwrap on data they built themselves

use nayose_csv::*;
use nayose_number::InsuredNumber;

fn read(text: &str, repair: bool) -> (Vec<HeldRow>, Vec<ReportLine>, ColumnMapping) {
    let options = ReadOptions {
        repair,
        ..ReadOptions::default()
    };
    let mut reader = HeldReader::from_reader_mapped(
        text.as_bytes(),
        TextEncoding::Utf8 { bom: false },
        &ColumnSpec::default(),
        &options,
    )
    .unwrap();
    let mapping = reader.mapping().clone();
    let mut lines = Vec::new();
    let mut rows = Vec::new();
    let mut sink = |l: ReportLine| -> Result<(), CsvError> {
        lines.push(l);
        Ok(())
    };
    while let Some(row) = reader.next_row(&mut sink).unwrap() {
        rows.push(row);
    }
    (rows, lines, mapping)
}

fn number(i: &str, s: &str, n: &str, b: &str) -> InsuredNumber {
    InsuredNumber::from_fields(i, s, n, b).unwrap()
}

#[test]
fn the_branch_is_read_from_the_end_of_the_number_or_after_a_dash() {
    let text = "保険者番号,記号,番号\n\
01130012,0647,095075903\n\
01130012,0647,0950759-04\n\
01130012,0647,０９５０７５９－０５\n\
39131016,,12345678\n";
    let (rows, lines, mapping) = read(text, false);
    assert!(mapping.branch_in_number());
    assert_eq!(mapping.held_columns(), None);
    assert!(mapping.to_string().contains("no column"), "{mapping}");
    let numbers: Vec<InsuredNumber> = rows.iter().map(|r| r.number.clone().unwrap()).collect();
    assert_eq!(
        numbers,
        vec![
            number("01130012", "0647", "0950759", "03"),
            number("01130012", "0647", "0950759", "04"),
            number("01130012", "0647", "0950759", "05"),
            // 法別番号 39 has no 枝番: the 番号 is taken whole.
            number("39131016", "", "12345678", ""),
        ]
    );
    let split: Vec<(u64, &str, Option<&str>)> = lines
        .iter()
        .filter(|l| l.reason == ReportReason::BranchFromNumber)
        .map(|l| (l.line, l.written.as_str(), l.used.as_deref()))
        .collect();
    assert_eq!(
        split,
        vec![
            (2, "095075903", Some("0950759 03")),
            (3, "0950759-04", Some("0950759 04")),
            (4, "０９５０７５９－０５", Some("0950759 05")),
        ]
    );
    assert!(lines.iter().all(|l| l.column == "番号"));
    assert!(
        lines[0].message.contains("last 2 digits"),
        "{}",
        lines[0].message
    );
}

#[test]
fn a_number_too_short_or_not_ending_in_digits_is_invalid_and_named() {
    let text = "insurer_number,symbol,number\n\
01130012,0647,03\n\
01130012,0647,09507AB\n\
01130012,0647,09-50-759\n\
0113001X,0647,095075903\n";
    let (rows, lines, _) = read(text, false);
    let errors: Vec<(u64, Option<String>, ReportReason)> = rows
        .iter()
        .map(|r| {
            let e = r.number.as_ref().unwrap_err();
            (
                e.line,
                e.column.clone(),
                ReportReason::of_row_reason(&e.reason),
            )
        })
        .collect();
    assert_eq!(
        errors,
        vec![
            (2, Some("number".into()), ReportReason::CombinedForm),
            (3, Some("number".into()), ReportReason::CombinedForm),
            (4, Some("number".into()), ReportReason::CombinedForm),
            (
                5,
                Some("insurer_number".into()),
                ReportReason::InvalidCharacter
            ),
        ]
    );
    assert_eq!(lines.len(), 4);
    assert!(lines.iter().all(|l| l.used.is_none()));
    assert_eq!(lines[1].written, "09507AB");
    assert!(
        lines[0].message.contains("2-digit 枝番"),
        "{}",
        lines[0].message
    );
}

#[test]
fn repair_restores_a_one_digit_branch_after_a_dash_and_a_short_insurer() {
    let text = "保険者番号,記号,番号\n1130012,0647,0950759-3\n";
    let (rows, lines, _) = read(text, false);
    assert!(rows[0].number.is_err());
    assert_eq!(lines[0].reason, ReportReason::InsurerLength);
    let (rows, lines, _) = read(text, true);
    assert_eq!(
        rows[0].number.as_ref().unwrap(),
        &number("01130012", "0647", "0950759", "03")
    );
    let reasons: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l.column.as_str(), l.reason.code()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("番号", "branch_from_number"),
            ("保険者番号", "repaired"),
            ("番号", "repaired"),
        ]
    );
    assert_eq!(rows[0].repairs.len(), 2);
}

#[test]
fn a_registry_without_a_branch_column_reads_the_same_numbers() {
    let with = "person_id,insurer_number,symbol,number,branch\nP1,01130012,0647,0950759,03\n";
    let without = "person_id,insurer_number,symbol,number\nP1,01130012,0647,095075903\n";
    let read = |t: &str| -> Vec<InsuredNumber> {
        RegistryReader::from_reader(
            t.as_bytes(),
            TextEncoding::Utf8 { bom: false },
            &ReadOptions::default(),
        )
        .unwrap()
        .map(|e| e.unwrap().number)
        .collect()
    };
    assert_eq!(read(with), read(without));
}
