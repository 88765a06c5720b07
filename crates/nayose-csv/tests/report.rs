//! The row report: every invalid, repaired, blank or changed row listed (no cap), counts and
//! hints by reason, and the report file (encodings, owner-only, atomic).

#![allow(clippy::unwrap_used)] // tests unwrap on data they built themselves

use nayose_csv::*;

fn utf8() -> TextEncoding {
    TextEncoding::Utf8 { bom: false }
}

/// A held file with `n` invalid rows (bad check digit) between valid ones.
fn many_invalid(n: usize) -> String {
    let mut s = String::from("insurer_number,symbol,number,branch\r\n");
    for i in 0..n {
        s.push_str(&format!("01130012,0647,{i:07},03\r\n"));
        s.push_str(&format!("01130013,0647,{i:07},03\r\n"));
    }
    s
}

#[test]
fn every_invalid_row_is_reported_not_just_the_first_twenty() {
    let text = many_invalid(45);
    let reader = HeldReader::from_reader(
        text.as_bytes(),
        utf8(),
        &HeldColumns::default(),
        &ReadOptions::default(),
    )
    .unwrap();
    let mut lines = Vec::new();
    let set = HeldSet::build_with_report(
        reader,
        InvalidRows::Skip,
        &mut |l: ReportLine| -> Result<(), CsvError> {
            lines.push(l);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(lines.len(), 45);
    assert_eq!(set.invalid_rows().len(), 45);
    let expected: Vec<u64> = (0..45).map(|i| 3 + 2 * i).collect();
    assert_eq!(lines.iter().map(|l| l.line).collect::<Vec<_>>(), expected);
    assert!(lines.iter().all(|l| l.reason == ReportReason::CheckDigit
        && l.column == "insurer_number"
        && l.written == "01130013"
        && l.used.is_none()));
    assert_eq!(set.report_counts().get(ReportReason::CheckDigit), 45);
    assert_eq!(set.report_counts().total(), 45);
}

#[test]
fn repairs_and_folded_values_are_listed_with_written_and_used_values() {
    let text = "保険者番号,記号,番号,枝番\n\
1130012,0647,0950759,3\n\
０１１３００１２, 0647 ,０９５０７５９,03\n\
01130012,0647,0950759,04\n";
    let options = ReadOptions {
        repair: true,
        ..ReadOptions::default()
    };
    let mut reader =
        HeldReader::from_reader_mapped(text.as_bytes(), utf8(), &ColumnSpec::default(), &options)
            .unwrap();
    let mut lines = Vec::new();
    let mut sink = |l: ReportLine| -> Result<(), CsvError> {
        lines.push(l);
        Ok(())
    };
    while reader.next_row(&mut sink).unwrap().is_some() {}
    let got: Vec<(u64, &str, &str, Option<&str>, &str)> = lines
        .iter()
        .map(|l| {
            (
                l.line,
                l.column.as_str(),
                l.written.as_str(),
                l.used.as_deref(),
                l.reason.code(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (2, "保険者番号", "1130012", Some("01130012"), "repaired"),
            (2, "枝番", "3", Some("03"), "repaired"),
            (
                3,
                "保険者番号",
                "０１１３００１２",
                Some("01130012"),
                "normalized"
            ),
            (3, "記号", " 0647 ", Some("0647"), "normalized"),
            (3, "番号", "０９５０７５９", Some("0950759"), "normalized"),
        ]
    );
    assert!(
        lines[0].message.contains("check digit passes"),
        "{}",
        lines[0]
    );
    let counts = reader.report_counts();
    assert_eq!(counts.get(ReportReason::Repaired), 2);
    assert_eq!(counts.get(ReportReason::Normalized), 3);
    assert_eq!(
        counts.iter().collect::<Vec<_>>(),
        vec![(ReportReason::Normalized, 3), (ReportReason::Repaired, 2)]
    );
}

#[test]
fn reason_codes_are_stable_and_every_reason_has_a_hint() {
    let codes: Vec<&str> = ReportReason::ALL.iter().map(|r| r.code()).collect();
    let mut unique = codes.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), codes.len());
    assert!(
        codes
            .iter()
            .all(|c| c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'))
    );
    assert!(ReportReason::ALL.iter().all(|r| !r.hint().is_empty()));
    assert!(ReportReason::InsurerLength.hint().contains("--repair"));
    assert!(ReportReason::CheckDigit.hint().contains("--skip-invalid"));
    assert!(
        ReportReason::InvalidCharacter
            .hint()
            .contains("--number-column")
    );
    assert!(ReportReason::FieldCount.hint().contains("--delimiter"));
    assert!(!ReportReason::BlankRow.is_invalid());
    assert!(ReportReason::MissingBranch.is_invalid());
}

#[test]
fn field_count_and_empty_person_id_are_reported_by_the_registry() {
    let text = "person_id,insurer_number,symbol,number,branch\n\
P1,01130012,0647\n\
 ,01130012,0647,0950759,03\n\
P3,01130012,0647,0950759,\n";
    let reader =
        RegistryReader::from_reader(text.as_bytes(), utf8(), &ReadOptions::default()).unwrap();
    let mut lines = Vec::new();
    let report = reader
        .for_each_valid_with_report(
            InvalidRows::Skip,
            &mut |l: ReportLine| -> Result<(), CsvError> {
                lines.push(l);
                Ok(())
            },
            |_| {},
        )
        .unwrap();
    let got: Vec<(u64, &str, &str)> = lines
        .iter()
        .map(|l| (l.line, l.column.as_str(), l.reason.code()))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, "", "field_count"),
            (3, "person_id", "empty_person_id"),
            (4, "branch", "missing_branch"),
        ]
    );
    assert_eq!(report.invalid.len(), 3);
    assert_eq!(report.counts.total(), 3);
}

#[test]
fn a_failing_sink_stops_the_read() {
    let text = many_invalid(3);
    let mut reader = HeldReader::from_reader(
        text.as_bytes(),
        utf8(),
        &HeldColumns::default(),
        &ReadOptions::default(),
    )
    .unwrap();
    let mut sink = |_l: ReportLine| -> Result<(), CsvError> {
        Err(CsvError::Stream(std::io::Error::other("disk full")))
    };
    assert!(reader.next_row(&mut sink).unwrap().is_some());
    assert!(matches!(
        reader.next_row(&mut sink),
        Err(CsvError::Stream(_))
    ));
    assert!(reader.next_row(&mut sink).unwrap().is_none());
}

fn sample_lines() -> Vec<ReportLine> {
    vec![
        ReportLine {
            line: 2,
            column: "保険者番号".into(),
            written: "1130012".into(),
            used: Some("01130012".into()),
            reason: ReportReason::Repaired,
            message: "restored, \"quoted\"".into(),
        },
        ReportLine {
            line: 3,
            column: String::new(),
            written: String::new(),
            used: None,
            reason: ReportReason::BlankRow,
            message: "blank".into(),
        },
    ]
}

#[test]
fn the_report_file_is_csv_in_the_chosen_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let expected = "line,column,value_as_written,value_used,reason,message\r\n\
2,保険者番号,1130012,01130012,repaired,\"restored, \"\"quoted\"\"\"\r\n\
3,,,,blank_row,blank\r\n";
    for (enc, bytes) in [
        (OutputEncoding::Utf8, expected.as_bytes().to_vec()),
        (
            OutputEncoding::Utf8Bom,
            [b"\xEF\xBB\xBF".as_slice(), expected.as_bytes()].concat(),
        ),
        (
            OutputEncoding::Cp932,
            encoding_rs::SHIFT_JIS.encode(expected).0.into_owned(),
        ),
    ] {
        let path = dir.path().join(format!("report-{}.csv", enc.name()));
        let mut w = ReportWriter::create(&path, enc).unwrap();
        for l in sample_lines() {
            w.report(l).unwrap();
        }
        assert_eq!(w.lines(), 2);
        w.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{enc:?}");
    }
}

#[test]
fn the_report_file_appears_only_on_finish_and_is_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.csv");
    let mut w = ReportWriter::create(&path, OutputEncoding::Utf8Bom).unwrap();
    w.write(&sample_lines()[0]).unwrap();
    assert!(!path.exists());
    drop(w);
    assert!(!path.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "temp file left"
    );
    let mut w = ReportWriter::create(&path, OutputEncoding::Utf8Bom).unwrap();
    w.write(&sample_lines()[0]).unwrap();
    w.finish().unwrap();
    assert!(path.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn a_cp932_report_refuses_what_cp932_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.csv");
    let mut w = ReportWriter::create(&path, OutputEncoding::Cp932).unwrap();
    let mut l = sample_lines().remove(0);
    l.written = "😀".into();
    let err = w.write(&l).unwrap_err();
    assert!(
        matches!(&err, CsvError::Unrepresentable { line: 2, ch: '😀', column } if column.contains("value_as_written")),
        "{err}"
    );
}

#[test]
fn a_whole_pass_writes_its_report_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.csv");
    let text = "insurer_number,symbol,number,branch\n,,,\n01130013,0647,0950759,03\n";
    let reader = HeldReader::from_reader(
        text.as_bytes(),
        utf8(),
        &HeldColumns::default(),
        &ReadOptions::default(),
    )
    .unwrap();
    let mut w = ReportWriter::create(&path, OutputEncoding::Utf8).unwrap();
    let set = HeldSet::build_with_report(reader, InvalidRows::Skip, &mut w).unwrap();
    w.finish().unwrap();
    let written = std::fs::read_to_string(&path).unwrap();
    let rows: Vec<&str> = written.lines().collect();
    assert_eq!(rows.len(), 3, "{written}");
    assert!(rows[1].starts_with("2,,,,blank_row,"), "{written}");
    assert!(
        rows[2].starts_with("3,insurer_number,01130013,,check_digit,"),
        "{written}"
    );
    assert_eq!(set.report_counts().total(), 2);
}
