//! `nayose server build --report` through the binary: a CP932 registry with Japanese headers
//! and Excel damage (lost leading zeros, full-width digits, a duplicate, a conflict, a bad check
//! digit) gives the expected report lines, in CP932, owner-only; invalid rows stop the build
//! but the report is still written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;

use common::*;

fn registry_text() -> String {
    let a = insurer("0613001");
    let b = insurer("0613002");
    let c = insurer("0613003");
    let d = insurer("0613004");
    let full: String = d
        .chars()
        .map(|ch| char::from_u32(ch as u32 - '0' as u32 + '０' as u32).unwrap())
        .collect();
    [
        "個人ID,保険者番号,記号,番号,枝番".to_string(),
        format!("甲001,{a},記号1,100,01"), // 2
        format!("甲001,{},記号1,101,01", b.trim_start_matches('0')), // 3: lost zero
        format!("乙002,{a},記号1,100,01"), // 4: conflict with 2
        format!("丙003,{c},記号1,200,01"), // 5
        format!("丙003,{c},記号1,200,01"), // 6: duplicate of 5
        "丁004,12345678,記号1,1,01".to_string(), // 7: check digit
        format!("戊005,{full},記号1,300,01"), // 8: full-width
        String::new(),
    ]
    .join("\r\n")
}

fn report_lines(path: &std::path::Path) -> Vec<(String, String)> {
    let bytes = fs::read(path).unwrap();
    let (text, _, bad) = encoding_rs::SHIFT_JIS.decode(&bytes);
    assert!(!bad, "the report is in CP932 like the registry");
    let mut r = csv::Reader::from_reader(text.as_bytes());
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[0].to_string(), rec[4].to_string())
        })
        .collect()
}

#[test]
fn a_cp932_registry_with_excel_damage_gives_the_expected_report_lines() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("登録情報.csv");
    let text = registry_text();
    let (bytes, _, bad) = encoding_rs::SHIFT_JIS.encode(&text);
    assert!(!bad);
    fs::write(&reg, &bytes).unwrap();
    let data = dir.path().join("data");
    let report = dir.path().join("build-report.csv");
    let (reg_s, data_s, report_s) = (
        reg.to_string_lossy().into_owned(),
        data.to_string_lossy().into_owned(),
        report.to_string_lossy().into_owned(),
    );

    // Without --repair and --skip-invalid: the build stops, names the report, and writes it.
    let failed = nayose(&[
        "server",
        "build",
        "--data-dir",
        &data_s,
        "--registry",
        &reg_s,
        "--report",
        &report_s,
    ]);
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(
        err.contains("2 invalid row(s)") && err.contains(&report_s),
        "{err}"
    );
    let lines = report_lines(&report);
    assert!(
        lines.contains(&("3".into(), "insurer_length".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("7".into(), "check_digit".into())),
        "{lines:?}"
    );
    assert!(!data.join("current").exists(), "nothing published");

    // With --repair --skip-invalid: published; every kind of row in the report.
    let out = ok(&[
        "server",
        "build",
        "--data-dir",
        &data_s,
        "--registry",
        &reg_s,
        "--report",
        &report_s,
        "--repair",
        "--skip-invalid",
    ]);
    let summary = String::from_utf8_lossy(&out.stderr);
    let lines = report_lines(&report);
    for (line, reason) in [
        ("2", "number_conflict"),
        ("3", "repaired"),
        ("4", "number_conflict"),
        ("6", "duplicate_row"),
        ("7", "check_digit"),
        ("8", "normalized"),
    ] {
        assert!(
            lines.contains(&(line.into(), reason.into())),
            "{line} {reason}: {lines:?}"
        );
    }
    assert!(!lines.iter().any(|(l, _)| l == "5"), "{lines:?}");
    assert!(
        summary.contains("保険者番号") && summary.contains("個人ID"),
        "{summary}"
    );
    assert!(
        summary.contains("number_conflict") && summary.contains("duplicate_row"),
        "{summary}"
    );
    assert!(summary.contains(&report_s), "{summary}");
    assert!(summary.contains("numbers          3"), "{summary}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&report).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the report is owner-only");
    }
}
