//! Tab-separated files, the explicit delimiter option, and Excel's comma-only rows.

#![allow(clippy::unwrap_used)] // tests unwrap on data they built themselves

use nayose_csv::*;

fn utf8() -> TextEncoding {
    TextEncoding::Utf8 { bom: false }
}

fn collect(reader: &mut HeldReader<&[u8]>) -> (Vec<HeldRow>, Vec<ReportLine>) {
    let mut lines = Vec::new();
    let mut rows = Vec::new();
    let mut sink = |l: ReportLine| -> Result<(), CsvError> {
        lines.push(l);
        Ok(())
    };
    while let Some(row) = reader.next_row(&mut sink).unwrap() {
        rows.push(row);
    }
    (rows, lines)
}

#[test]
fn detection_looks_at_the_header_line_only() {
    assert_eq!(Delimiter::detect(b"a\tb\tc\n1,2\t3\n"), Delimiter::Tab);
    assert_eq!(Delimiter::detect(b"a,b\tc\n"), Delimiter::Comma);
    assert_eq!(Delimiter::detect(b"a,b,c"), Delimiter::Comma);
    assert_eq!(
        Delimiter::detect(b"insured_number\n1\t2\n"),
        Delimiter::Comma
    );
    assert_eq!(Delimiter::detect(b""), Delimiter::Comma);
    assert_eq!("tab".parse::<Delimiter>().unwrap(), Delimiter::Tab);
    assert_eq!("TSV".parse::<Delimiter>().unwrap(), Delimiter::Tab);
    assert_eq!(",".parse::<Delimiter>().unwrap(), Delimiter::Comma);
    assert!(matches!(
        "semicolon".parse::<Delimiter>(),
        Err(CsvError::UnknownDelimiter(_))
    ));
}

#[test]
fn a_tsv_held_file_is_read_by_detection() {
    let text = "insurer_number\tsymbol\tnumber\tbranch\tmemo\n\
01130012\t0647\t0950759\t03\ta, b\n";
    let mut reader = HeldReader::from_reader(
        text.as_bytes(),
        utf8(),
        &HeldColumns::default(),
        &ReadOptions::default(),
    )
    .unwrap();
    assert_eq!(reader.delimiter(), Some(Delimiter::Tab));
    let (rows, lines) = collect(&mut reader);
    assert_eq!(rows.len(), 1);
    assert!(rows[0].number.is_ok());
    assert_eq!(rows[0].record.get(4), Some("a, b"));
    assert!(lines.is_empty(), "{lines:?}");
}

#[test]
fn an_explicit_delimiter_wins_over_detection() {
    // A header with a tab and no comma, but the user says the file is comma-separated: the
    // whole header is one column, so the number columns are missing.
    let text = "insurer_number\tsymbol\tnumber\tbranch\n01130012\t0647\t0950759\t03\n";
    let comma = ReadOptions {
        delimiter: Some(Delimiter::Comma),
        ..ReadOptions::default()
    };
    let err = HeldReader::from_reader(text.as_bytes(), utf8(), &HeldColumns::default(), &comma)
        .err()
        .unwrap();
    assert!(matches!(err, CsvError::MissingColumn { .. }), "{err}");
    // And a tab delimiter forced on a comma header reads it as one column.
    let text = "insured_number,memo\n01130012-0647-095075903,x\n";
    let tab = ReadOptions {
        delimiter: Some(Delimiter::Tab),
        ..ReadOptions::default()
    };
    let r = HeldReader::from_reader(text.as_bytes(), utf8(), &HeldColumns::combined(), &tab);
    assert!(matches!(r, Err(CsvError::MissingColumn { .. })));
    let r = HeldReader::from_reader(
        text.as_bytes(),
        utf8(),
        &HeldColumns::combined(),
        &ReadOptions::default(),
    )
    .unwrap();
    assert_eq!(r.delimiter(), Some(Delimiter::Comma));
}

#[test]
fn comma_only_and_blank_rows_are_skipped_counted_and_reported() {
    let text = "insurer_number,symbol,number,branch\n\
01130012,0647,0950759,03\n\
,,,\n\
 , ,\u{3000},\n\
,,\n\
\n\
01130012,0647,0950759,04\n\
,,,,,,\n";
    let mut reader = HeldReader::from_reader(
        text.as_bytes(),
        utf8(),
        &HeldColumns::default(),
        &ReadOptions::default(),
    )
    .unwrap();
    let (rows, lines) = collect(&mut reader);
    assert_eq!(
        rows.iter().map(|r| (r.line, r.index)).collect::<Vec<_>>(),
        vec![(2, 0), (7, 1)]
    );
    assert!(rows.iter().all(|r| r.number.is_ok()));
    let blank: Vec<u64> = lines
        .iter()
        .filter(|l| l.reason == ReportReason::BlankRow)
        .map(|l| l.line)
        .collect();
    // Line 6 is truly empty: the CSV parser skips it without a record.
    assert_eq!(blank, vec![3, 4, 5, 8]);
    assert_eq!(reader.blank_rows(), 4);
    assert_eq!(reader.report_counts().get(ReportReason::BlankRow), 4);
    assert_eq!(lines.len(), 4, "{lines:?}");
}

#[test]
fn tab_only_rows_of_a_tsv_are_blank_and_the_registry_skips_them_too() {
    let text = "person_id\tinsurer_number\tsymbol\tnumber\tbranch\n\
P1\t01130012\t0647\t0950759\t03\n\
\t\t\t\t\n\
P2\t01130012\t0647\t0950759\t04\n";
    let reader =
        RegistryReader::from_reader(text.as_bytes(), utf8(), &ReadOptions::default()).unwrap();
    let mut lines = Vec::new();
    let mut ids = Vec::new();
    let report = reader
        .for_each_valid_with_report(
            InvalidRows::Report,
            &mut |l: ReportLine| -> Result<(), CsvError> {
                lines.push(l);
                Ok(())
            },
            |e| ids.push((e.line, e.person_id)),
        )
        .unwrap();
    assert_eq!(ids, vec![(2, "P1".to_owned()), (4, "P2".to_owned())]);
    assert_eq!((report.rows, report.valid, report.blank_rows), (2, 2, 1));
    assert_eq!(report.counts.get(ReportReason::BlankRow), 1);
    assert_eq!(lines.len(), 1);
    assert_eq!((lines[0].line, lines[0].reason.code()), (3, "blank_row"));
}

#[test]
fn blank_rows_do_not_shift_indices_between_passes() {
    let text = "insurer_number,symbol,number,branch\n,,,\n01130012,0647,0950759,03\n";
    let open = || {
        HeldReader::from_reader(
            text.as_bytes(),
            utf8(),
            &HeldColumns::default(),
            &ReadOptions::default(),
        )
        .unwrap()
    };
    let set = HeldSet::build(open(), InvalidRows::Report).unwrap();
    assert_eq!(set.row_count(), 1);
    assert_eq!(set.blank_rows(), 1);
    for row in open() {
        assert_eq!(set.check_row(&row.unwrap()).unwrap(), Some(0));
    }
}
