//! `server build --report`: every rejected, repaired, changed, duplicate and conflicting
//! registry row is listed with its line, and the summary counts them by reason and names the
//! fix; Japanese registry headers are recognised and the mapping is shown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;

use common::*;
use nayose_server::{BuildOptions, ServerError, build_epoch};

/// (line, reason, value as written) of every report row.
fn report_rows(path: &Path) -> Vec<(u64, String, String)> {
    let text = fs::read_to_string(path).unwrap();
    let mut r = csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let headers = r.headers().unwrap().clone();
    assert_eq!(headers.get(0), Some("line"));
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (line, reason, written) = (col("line"), col("reason"), col("value_as_written"));
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (
                rec[line].parse().unwrap(),
                rec[reason].to_string(),
                rec[written].to_string(),
            )
        })
        .collect()
}

fn full_width(s: &str) -> String {
    s.chars()
        .map(|c| char::from_u32(c as u32 - '0' as u32 + '０' as u32).unwrap())
        .collect()
}

fn write_damaged_registry(path: &Path) {
    let lost_zero = insurer(1).trim_start_matches('0').to_string();
    assert_eq!(lost_zero.len(), 7);
    let rows = [
        format!("P1,{},1,100,01", insurer(0)),              // line 2
        format!("P1,{lost_zero},1,100,01"),                 // line 3: repaired
        format!("P2,{},1,100,01", insurer(0)),              // line 4: conflict with line 2
        format!("P3,{},1,200,01", insurer(2)),              // line 5
        format!("P3,{},1,200,01", insurer(2)),              // line 6: duplicate of line 5
        "P4,12345678,1,1,01".to_string(),                   // line 7: check digit
        format!("P5,{},1,300,01", full_width(&insurer(3))), // line 8: normalized
        format!("P6,{},1,400,01", insurer(4)),              // line 9
    ];
    let mut s = String::from("個人ID,保険者番号,記号,番号,枝番\n");
    for r in rows {
        s.push_str(&r);
        s.push('\n');
    }
    fs::write(path, s).unwrap();
}

#[test]
fn the_report_lists_every_row_the_build_did_not_take_as_written() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = tmp.path().join("registry.csv");
    write_damaged_registry(&reg);
    let report = tmp.path().join("build-report.csv");
    let mut opts = BuildOptions::new(tmp.path().join("data"), &reg);
    opts.skip_invalid = true;
    opts.repair = true;
    opts.report = Some(report.clone());
    let r = build_epoch(&opts).unwrap();

    let rows = report_rows(&report);
    let has = |line: u64, reason: &str| rows.iter().any(|(l, r, _)| *l == line && r == reason);
    assert!(has(3, "repaired"), "{rows:?}");
    assert!(
        has(2, "number_conflict") && has(4, "number_conflict"),
        "{rows:?}"
    );
    assert!(
        has(6, "duplicate_row") && !has(5, "duplicate_row"),
        "{rows:?}"
    );
    assert!(has(7, "check_digit"), "{rows:?}");
    assert!(has(8, "normalized"), "{rows:?}");
    assert!(!rows.iter().any(|(l, _, _)| *l == 9), "{rows:?}");
    // A duplicate's value is the number it repeats, as printed.
    let dup = rows.iter().find(|(l, _, _)| *l == 6).unwrap();
    assert!(dup.2.starts_with(&insurer(2)), "{dup:?}");

    // Numbers: line 2/3 are distinct numbers (different insurers), but line 2 conflicts with
    // line 4; published: line 3, line 5, line 8, line 9.
    assert_eq!(r.numbers, 4);
    assert_eq!(r.duplicate_rows, 1);
    assert_eq!(r.conflicts.len(), 1);
    assert_eq!(r.rejected.len(), 1);
    assert_eq!(r.repairs, 1);
    let count = |code: &str| {
        r.report_counts
            .iter()
            .find(|(reason, _)| reason.code() == code)
            .map_or(0, |(_, n)| n)
    };
    assert_eq!(count("number_conflict"), 2);
    assert_eq!(count("duplicate_row"), 1);
    assert_eq!(count("check_digit"), 1);
    let text = r.to_string();
    assert!(
        text.contains("個人ID") && text.contains("recognised"),
        "{text}"
    );
    assert!(
        text.contains("check_digit") && text.contains("--skip-invalid"),
        "{text}"
    );
    assert!(text.contains(&report.display().to_string()), "{text}");
}

#[test]
fn invalid_rows_stop_the_build_but_the_report_is_still_written() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = tmp.path().join("registry.csv");
    write_damaged_registry(&reg);
    let report = tmp.path().join("build-report.csv");
    let data = tmp.path().join("data");
    let mut opts = BuildOptions::new(&data, &reg);
    opts.report = Some(report.clone());
    match build_epoch(&opts) {
        Err(e @ ServerError::InvalidRows { .. }) => {
            let text = e.to_string();
            assert!(text.contains("2 invalid row(s)"), "{text}");
            assert!(text.contains(&report.display().to_string()), "{text}");
        }
        other => panic!("expected InvalidRows, got {other:?}"),
    }
    let rows = report_rows(&report);
    assert!(
        rows.iter()
            .any(|(l, r, _)| *l == 3 && r == "insurer_length"),
        "{rows:?}"
    );
    assert!(
        rows.iter().any(|(l, r, _)| *l == 7 && r == "check_digit"),
        "{rows:?}"
    );
    assert!(!data.join("current").exists());
}

#[test]
fn registry_columns_can_be_named() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = tmp.path().join("registry.csv");
    let mut s = String::from("who,ins,sym,num,br\n");
    for p in 0..5u32 {
        s.push_str(&format!("X{p},{},1,{},01\n", insurer(p), 700 + p));
    }
    fs::write(&reg, s).unwrap();
    let mut opts = BuildOptions::new(tmp.path().join("data"), &reg);
    opts.columns = nayose_server::ColumnSpec {
        person_id: Some("who".into()),
        insurer: Some("ins".into()),
        symbol: Some("sym".into()),
        number: Some("num".into()),
        branch: Some("br".into()),
        combined: None,
    };
    let r = build_epoch(&opts).unwrap();
    assert_eq!(r.numbers, 5);
    assert!(
        r.mapping.contains("\"who\"") && r.mapping.contains("named"),
        "{}",
        r.mapping
    );
}

/// The read parses one batch of rows while it takes the one before (persons, numbers, report
/// lines, in line order) and reads the next: a registry of several batches keeps every row
/// and reports them in file order, whichever batch they are in, also when its rows fill the
/// last batch exactly.
#[test]
fn rows_of_a_registry_larger_than_one_read_batch_are_taken_in_line_order() {
    // Three read batches of 2^14 (the last one partly filled), and exactly two.
    for rows in [40_000u32, 32_768] {
        takes_every_row_in_line_order(rows);
    }
}

fn takes_every_row_in_line_order(rows: u32) {
    let tmp = tempfile::tempdir().unwrap();
    let reg = tmp.path().join("registry.csv");
    // Every 8,191st row has a wrong check digit (one or two in each batch); row 20,000
    // repeats row 10,000 (a duplicate found across batches).
    let mut s = String::from("person_id,insurer_number,symbol,number,branch\n");
    let mut bad = Vec::new();
    for i in 0..rows {
        let line = u64::from(i) + 2;
        if i % 8_191 == 4_000 {
            s.push_str(&format!("P{i},12345678,1,{i},01\n"));
            bad.push(line);
        } else if i == 20_000 {
            s.push_str(&format!(
                "P{},{},1,{},01\n",
                10_000 / 3,
                insurer(10_000),
                10_000
            ));
        } else {
            s.push_str(&format!("P{},{},1,{i},01\n", i / 3, insurer(i)));
        }
    }
    fs::write(&reg, s).unwrap();
    let report = tmp.path().join("build-report.csv");
    let mut opts = BuildOptions::new(tmp.path().join("data"), &reg);
    opts.skip_invalid = true;
    opts.report = Some(report.clone());
    let r = build_epoch(&opts).unwrap();

    assert_eq!(r.rows, u64::from(rows));
    assert!(bad.len() >= 4, "{bad:?}");
    assert_eq!(r.rejected.len(), bad.len());
    assert_eq!(r.duplicate_rows, 1);
    assert_eq!(r.numbers, u64::from(rows) - bad.len() as u64 - 1);
    let listed = report_rows(&report);
    // The lines found while reading, in file order (repeats are found after the read).
    let rejected: Vec<u64> = listed
        .iter()
        .filter(|(_, r, _)| r == "check_digit")
        .map(|(l, _, _)| *l)
        .collect();
    assert_eq!(rejected, bad, "{listed:?}");
    assert!(
        listed
            .iter()
            .any(|(l, r, _)| *l == 20_002 && r == "duplicate_row"),
        "{listed:?}"
    );
}

/// A registry with a header and no row publishes nothing and says why.
#[test]
fn a_registry_of_only_a_header_is_refused_as_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = tmp.path().join("registry.csv");
    fs::write(&reg, "person_id,insurer_number,symbol,number,branch\n").unwrap();
    let data = tmp.path().join("data");
    match build_epoch(&BuildOptions::new(&data, &reg)) {
        Err(e @ ServerError::EmptyRegistry { .. }) => {
            assert!(e.to_string().contains("registry.csv"), "{e}");
        }
        other => panic!("expected EmptyRegistry, got {other:?}"),
    }
    assert!(!data.join("current").exists());
}
