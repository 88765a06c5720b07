//! The output's encoding choice and its owner-only, atomic file.

#![allow(clippy::unwrap_used)] // tests unwrap on data they built themselves

use nayose_csv::*;

fn record(fields: &[&str]) -> StringRecord {
    fields.iter().copied().collect()
}

#[test]
fn output_encoding_names_parse_and_follow_the_input() {
    assert_eq!(
        "utf-8-bom".parse::<OutputEncoding>().unwrap(),
        OutputEncoding::Utf8Bom
    );
    assert_eq!(
        "UTF8".parse::<OutputEncoding>().unwrap(),
        OutputEncoding::Utf8
    );
    assert_eq!(
        "Shift_JIS".parse::<OutputEncoding>().unwrap(),
        OutputEncoding::Cp932
    );
    assert!(matches!(
        "latin1".parse::<OutputEncoding>(),
        Err(CsvError::UnknownOutputEncoding(_))
    ));
    use OutputEncoding as O;
    assert_eq!(O::like_input(TextEncoding::Utf8 { bom: true }), O::Utf8Bom);
    assert_eq!(O::like_input(TextEncoding::Utf8 { bom: false }), O::Utf8);
    assert_eq!(O::like_input(TextEncoding::Cp932), O::Cp932);
    assert_eq!(O::like_input(TextEncoding::Utf16Le), O::Utf8Bom);
    assert_eq!(O::like_input(TextEncoding::Utf16Be), O::Utf8Bom);
}

#[test]
fn the_output_is_written_in_the_chosen_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let headers = record(&["氏名", "insured_number"]);
    let body = "氏名,insured_number,nayose_group,nayose_status\r\n\
山田,01130012-0647-095075903,g1,linked\r\n";
    for (enc, bytes) in [
        (OutputEncoding::Utf8, body.as_bytes().to_vec()),
        (
            OutputEncoding::Utf8Bom,
            [b"\xEF\xBB\xBF".as_slice(), body.as_bytes()].concat(),
        ),
        (
            OutputEncoding::Cp932,
            encoding_rs::SHIFT_JIS.encode(body).0.into_owned(),
        ),
    ] {
        let path = dir.path().join(format!("out-{}.csv", enc.name()));
        let mut w = OutputWriter::create_with(&path, enc, &headers).unwrap();
        assert_eq!(w.encoding(), enc);
        w.write_row(
            2,
            &record(&["山田", "01130012-0647-095075903"]),
            "g1",
            "linked",
        )
        .unwrap();
        w.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{enc:?}");
    }
}

#[test]
fn a_utf16_input_gets_a_utf8_bom_output_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.csv");
    let w = OutputWriter::create(&path, TextEncoding::Utf16Le, &record(&["a"])).unwrap();
    assert_eq!(w.encoding(), OutputEncoding::Utf8Bom);
    w.finish().unwrap();
    assert!(std::fs::read(&path).unwrap().starts_with(b"\xEF\xBB\xBFa,"));
}

#[cfg(unix)]
#[test]
fn the_output_is_owner_only_even_when_replacing_a_readable_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.csv");
    std::fs::write(&path, "old").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let w = OutputWriter::create_with(&path, OutputEncoding::Utf8, &record(&["a"])).unwrap();
    // While being written, the temporary file is owner-only too.
    let tmp: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p != &path)
        .collect();
    assert_eq!(tmp.len(), 1);
    let mode = std::fs::metadata(&tmp[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    w.finish().unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_ne!(std::fs::read_to_string(&path).unwrap(), "old");
}
