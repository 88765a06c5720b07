//! Readers, dedup and output on real-looking files: UTF-8 with and without BOM, CP932, combined
//! columns, invalid rows with line and column, repairs, and a streaming run over a generated
//! input that is never materialised.

#![allow(clippy::unwrap_used)] // tests unwrap on data they built themselves

use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;

use nayose_csv::*;
use nayose_number::InsuredNumber;

fn cp932(s: &str) -> Vec<u8> {
    let (b, _, bad) = encoding_rs::SHIFT_JIS.encode(s);
    assert!(!bad);
    b.into_owned()
}

const REGISTRY: &str = "person_id,insurer_number,symbol,number,branch\r\n\
P001,01130012,0647,0950759,03\r\n\
P001,39131016,,12345678,\r\n\
P002,０１００１７,札幌東１２,３４５６,０１\r\n";

fn registry(bytes: &[u8], enc: TextEncoding) -> Vec<RegistryEntry> {
    RegistryReader::from_reader(bytes, enc, &ReadOptions::default())
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[test]
fn registry_in_utf8_bom_and_cp932_reads_the_same() {
    let plain = REGISTRY.as_bytes().to_vec();
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(&plain);
    let sjis = cp932(REGISTRY);
    assert_eq!(
        detect_encoding(&plain[..]).unwrap(),
        TextEncoding::Utf8 { bom: false }
    );
    assert_eq!(
        detect_encoding(&bom[..]).unwrap(),
        TextEncoding::Utf8 { bom: true }
    );
    assert_eq!(detect_encoding(&sjis[..]).unwrap(), TextEncoding::Cp932);
    let a = registry(&plain, TextEncoding::Utf8 { bom: false });
    let b = registry(&bom, TextEncoding::Utf8 { bom: true });
    let c = registry(&sjis, TextEncoding::Cp932);
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(a.len(), 3);
    assert_eq!(a[0].line, 2);
    assert_eq!(a[2].line, 4);
    assert_eq!(a[2].person_id, "P002");
    assert_eq!(
        a[2].number,
        InsuredNumber::from_fields("00010017", "札幌東12", "3456", "01").unwrap()
    );
}

#[test]
fn registry_files_on_disk_with_detection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.csv");
    std::fs::write(&path, cp932(REGISTRY)).unwrap();
    let r = RegistryReader::open(&path, &ReadOptions::default()).unwrap();
    assert_eq!(r.encoding(), TextEncoding::Cp932);
    let report = r.for_each_valid(InvalidRows::Report, |_| {}).unwrap();
    assert_eq!((report.rows, report.valid), (3, 3));
    // Forcing UTF-8 on a CP932 file is a decode error naming the line.
    let opts = ReadOptions {
        encoding: EncodingChoice::Utf8,
        ..ReadOptions::default()
    };
    // (The small file is decoded while the header is read, so open itself reports it.)
    let err = match RegistryReader::open(&path, &opts) {
        Err(e) => e,
        Ok(mut r) => r.find_map(Result::err).unwrap(),
    };
    assert!(
        matches!(
            err,
            CsvError::Decode {
                line: 4,
                encoding: "UTF-8",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("line 4"));
}

#[test]
fn invalid_registry_rows_are_all_listed_with_line_and_column() {
    let text = "person_id,insurer_number,symbol,number,branch\n\
P1,01130012,0647,0950759,03\n\
P2,01130013,0647,0950759,03\n\
P3,01130012,0647,0950759,\n\
,01130012,0647,0950759,04\n\
\"P5\nwith newline\",01130012,06 47,0950759,05\n\
P6,01130012,0647\n\
P7,1130012,0647,0950759,07\n";
    let reader = RegistryReader::from_reader(
        text.as_bytes(),
        TextEncoding::Utf8 { bom: false },
        &ReadOptions::default(),
    )
    .unwrap();
    let err = reader
        .for_each_valid(InvalidRows::Report, |_| {})
        .unwrap_err();
    let CsvError::InvalidRows { errors } = &err else {
        panic!("{err}")
    };
    let got: Vec<(u64, Option<&str>)> = errors
        .iter()
        .map(|e| (e.line, e.column.as_deref()))
        .collect();
    assert_eq!(
        got,
        vec![
            (3, Some("insurer_number")),
            (4, Some("branch")),
            (5, Some("person_id")),
            (6, Some("symbol")),
            (8, None),
            (9, Some("insurer_number")),
        ]
    );
    let msg = err.to_string();
    assert!(msg.contains("line 3, column \"insurer_number\""), "{msg}");
    assert!(msg.contains("household"), "{msg}");
    assert!(msg.contains("--skip-invalid"), "{msg}");
    // Skipping keeps the valid row and still lists the others.
    let reader = RegistryReader::from_reader(
        text.as_bytes(),
        TextEncoding::Utf8 { bom: false },
        &ReadOptions::default(),
    )
    .unwrap();
    let mut valid = Vec::new();
    let report = reader
        .for_each_valid(InvalidRows::Skip, |e| valid.push(e))
        .unwrap();
    assert_eq!(valid.len(), 1);
    assert_eq!(report.invalid.len(), 6);
    // With repair, line 9's insurer is restored and reported.
    let opts = ReadOptions {
        repair: true,
        ..ReadOptions::default()
    };
    let reader =
        RegistryReader::from_reader(text.as_bytes(), TextEncoding::Utf8 { bom: false }, &opts)
            .unwrap();
    let report = reader.for_each_valid(InvalidRows::Skip, |_| {}).unwrap();
    assert_eq!(report.valid, 2);
    assert_eq!(report.repairs.len(), 1);
    assert_eq!(report.repairs[0].line, 9);
    assert_eq!(report.repairs[0].column, "insurer_number");
    assert!(report.repairs[0].to_string().contains("01130012"));
}

#[test]
fn registry_missing_column_is_named() {
    let text = "person_id,insurer,symbol,number,branch\nP1,01130012,0647,0950759,03\n";
    let err = RegistryReader::from_reader(
        text.as_bytes(),
        TextEncoding::Utf8 { bom: false },
        &ReadOptions::default(),
    )
    .err()
    .unwrap();
    assert!(
        matches!(&err, CsvError::MissingColumn { column, .. } if column == "insurer_number"),
        "{err}"
    );
    let err = RegistryReader::from_reader(
        &b""[..],
        TextEncoding::Utf8 { bom: false },
        &ReadOptions::default(),
    )
    .err()
    .unwrap();
    assert!(matches!(err, CsvError::NoHeader));
}

const HELD: &str = "患者ID,氏名,hoken,kigo,bango,edaban\r\n\
1,山田太郎,01130012,0647,0950759,03\r\n\
2,山田太郎,０１１３００１２,０６４７,０９５０７５９,０３\r\n\
3,佐藤花子,39131016,,12345678,\r\n\
4,鈴木一郎,01130012,0647,0950759,\r\n\
5,髙橋,010017,札幌東１２,3456,01\r\n";

fn held_columns() -> HeldColumns {
    HeldColumns::Fields {
        insurer: "hoken".into(),
        symbol: "kigo".into(),
        number: "bango".into(),
        branch: "edaban".into(),
    }
}

#[test]
fn held_file_in_cp932_dedups_and_writes_output_in_cp932() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("held.csv");
    std::fs::write(&input, cp932(HELD)).unwrap();
    let opts = ReadOptions::default();
    let first = HeldReader::open(&input, &held_columns(), &opts).unwrap();
    assert_eq!(first.encoding(), TextEncoding::Cp932);
    let enc = first.encoding();
    // Default policy: the household-level row 4 stops the run.
    let err = HeldSet::build(first, InvalidRows::Report).unwrap_err();
    let CsvError::InvalidRows { errors } = &err else {
        panic!("{err}")
    };
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (errors[0].line, errors[0].column.as_deref()),
        (5, Some("edaban"))
    );

    let set = HeldSet::build(
        HeldReader::open(&input, &held_columns(), &opts).unwrap(),
        InvalidRows::Skip,
    )
    .unwrap();
    assert_eq!(set.row_count(), 5);
    assert_eq!(set.len(), 3, "rows 1 and 2 are one number");
    assert_eq!(set.number_of_row(0), Some(0));
    assert_eq!(set.number_of_row(1), Some(0));
    assert_eq!(set.number_of_row(2), Some(1));
    assert_eq!(set.number_of_row(3), None);
    assert_eq!(set.number_of_row(4), Some(2));
    assert_eq!(
        set.canonical_inputs()[0],
        InsuredNumber::parse("01130012-0647-095075903")
            .unwrap()
            .canonical_bytes()
    );

    // Second pass: write the output in CP932.
    let output = dir.path().join("out.csv");
    let second = HeldReader::open_with_encoding(&input, enc, &held_columns(), &opts).unwrap();
    let mut w = OutputWriter::create(&output, enc, second.headers()).unwrap();
    for row in second {
        let row = row.unwrap();
        let (group, status) = match set.check_row(&row).unwrap() {
            Some(i) => (format!("g{i}"), "matched".to_owned()),
            None => (String::new(), "invalid".to_owned()),
        };
        w.write_row(row.line, &row.record, &group, &status).unwrap();
    }
    w.finish().unwrap();
    let bytes = std::fs::read(&output).unwrap();
    let (text, _, bad) = encoding_rs::SHIFT_JIS.decode(&bytes);
    assert!(!bad);
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(
        lines[0],
        "患者ID,氏名,hoken,kigo,bango,edaban,nayose_group,nayose_status"
    );
    assert_eq!(
        lines[2],
        "2,山田太郎,０１１３００１２,０６４７,０９５０７５９,０３,g0,matched"
    );
    assert_eq!(lines[4], "4,鈴木一郎,01130012,0647,0950759,,,invalid");
    assert_eq!(lines[5], "5,髙橋,010017,札幌東１２,3456,01,g2,matched");
    // Only the output remains in the directory (the temporary file was renamed).
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["held.csv", "out.csv"]);
}

#[test]
fn output_rejects_characters_cp932_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.csv");
    let headers = StringRecord::from(vec!["name", "insured_number"]);
    let mut w = OutputWriter::create(&output, TextEncoding::Cp932, &headers).unwrap();
    w.write_row(2, &StringRecord::from(vec!["①髙﨑", "x"]), "", "ok")
        .unwrap();
    let err = w
        .write_row(3, &StringRecord::from(vec!["𠮷田", "x"]), "", "ok")
        .unwrap_err();
    assert!(
        matches!(&err, CsvError::Unrepresentable { line: 3, column, ch: '𠮷' } if column == "name"),
        "{err}"
    );
    drop(w);
    // Not finished: nothing at the destination, no temporary file left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn output_keeps_utf8_bom_and_refuses_existing_columns() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.csv");
    std::fs::write(&output, "old").unwrap();
    let headers = StringRecord::from(vec!["insured_number", "memo"]);
    let mut w = OutputWriter::create(&output, TextEncoding::Utf8 { bom: true }, &headers).unwrap();
    w.write_row(
        2,
        &StringRecord::from(vec!["39131016-12345678", "a,\"b\""]),
        "g1",
        "matched",
    )
    .unwrap();
    w.write_row(3, &StringRecord::from(vec!["x"]), "", "invalid")
        .unwrap();
    assert_eq!(std::fs::read(&output).unwrap(), b"old");
    w.finish().unwrap();
    let text = std::fs::read_to_string(&output).unwrap();
    assert_eq!(
        text,
        "\u{FEFF}insured_number,memo,nayose_group,nayose_status\r\n\
         39131016-12345678,\"a,\"\"b\"\"\",g1,matched\r\nx,,,invalid\r\n"
    );
    let headers = StringRecord::from(vec!["a", "nayose_group"]);
    assert!(matches!(
        OutputWriter::create(
            &dir.path().join("o2.csv"),
            TextEncoding::Utf8 { bom: false },
            &headers
        ),
        Err(CsvError::ColumnExists { .. })
    ));
}

#[test]
fn combined_column_with_extra_columns_carried_through() {
    let text = "\u{FEFF}id,insured_number,memo\n\
a,01130012－0647－095075903,x\n\
b,\"00012344:あいう:１８７:05\",\"multi\nline\"\n\
c,01130012ー0647ー095075903,z\n\
d,01130012-0647-0950759,w\n";
    let reader = HeldReader::from_reader(
        text.as_bytes(),
        TextEncoding::Utf8 { bom: true },
        &HeldColumns::combined(),
        &ReadOptions::default(),
    )
    .unwrap();
    assert_eq!(
        reader.headers().iter().collect::<Vec<_>>(),
        vec!["id", "insured_number", "memo"]
    );
    let rows: Vec<HeldRow> = reader.map(|r| r.unwrap()).collect();
    assert_eq!(
        rows.iter().map(|r| r.line).collect::<Vec<_>>(),
        vec![2, 3, 5, 6]
    );
    assert_eq!(&rows[1].record[2], "multi\nline");
    assert_eq!(
        rows[0].number.as_ref().unwrap(),
        rows[2].number.as_ref().unwrap()
    );
    // d: "0950759" holds 番号 + 枝番 "59": valid shape, different number (the dashed form
    // always carries the 枝番) — it does not meet a.
    assert_ne!(
        rows[3].number.as_ref().unwrap(),
        rows[0].number.as_ref().unwrap()
    );
    let mut set = HeldSet::new();
    for r in rows {
        set.push(r).unwrap();
    }
    assert_eq!(set.len(), 3);
}

#[test]
fn combined_column_errors_name_the_column() {
    let text = "insured_number\n01130013-0647-095075903\n";
    let row = HeldReader::from_reader(
        text.as_bytes(),
        TextEncoding::Utf8 { bom: false },
        &HeldColumns::combined(),
        &ReadOptions::default(),
    )
    .unwrap()
    .next()
    .unwrap()
    .unwrap();
    let e = row.number.unwrap_err();
    assert_eq!((e.line, e.column.as_deref()), (2, Some("insured_number")));
    assert!(e.to_string().contains("check digit"));
}

#[test]
fn changed_file_between_passes_is_detected() {
    let a = "insured_number\n01130012-0647-095075903\n";
    let b = "insured_number\n01130012-0647-095075904\n";
    let open = |t: &'static str| {
        HeldReader::from_reader(
            t.as_bytes(),
            TextEncoding::Utf8 { bom: false },
            &HeldColumns::combined(),
            &ReadOptions::default(),
        )
        .unwrap()
    };
    let set = HeldSet::build(open(a), InvalidRows::Report).unwrap();
    let row = open(b).next().unwrap().unwrap();
    assert!(matches!(
        set.check_row(&row),
        Err(CsvError::ChangedBetweenPasses { line: 2 })
    ));
}

/// Generates a held file row by row, counting the bytes it has produced.
struct Generated {
    rows: u64,
    next: u64,
    pending: Vec<u8>,
    produced: Rc<Cell<u64>>,
    cp932: bool,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pending.is_empty() && self.next <= self.rows {
            let line = if self.next == 0 {
                "row,name,insurer_number,symbol,number,branch\r\n".to_owned()
            } else {
                // 1000 distinct numbers, repeated; full-width on every other row.
                let k = self.next % 1000;
                let num = format!("{:07}", k);
                let num = if self.next.is_multiple_of(2) {
                    num.chars()
                        .map(|c| char::from_u32(c as u32 + 0xFEE0).unwrap())
                        .collect()
                } else {
                    num
                };
                format!("{},山田　太郎,01130012,札幌東１２,{num},01\r\n", self.next)
            };
            self.pending = if self.cp932 {
                cp932(&line)
            } else {
                line.into_bytes()
            };
            self.next += 1;
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        self.produced.set(self.produced.get() + n as u64);
        Ok(n)
    }
}

#[test]
fn readers_stream_without_holding_the_file() {
    for cp in [false, true] {
        let produced = Rc::new(Cell::new(0));
        let rows = 300_000;
        let g = Generated {
            rows,
            next: 0,
            pending: Vec::new(),
            produced: produced.clone(),
            cp932: cp,
        };
        let enc = if cp {
            TextEncoding::Cp932
        } else {
            TextEncoding::Utf8 { bom: false }
        };
        let mut reader =
            HeldReader::from_reader(g, enc, &HeldColumns::default(), &ReadOptions::default())
                .unwrap();
        let first = reader.next().unwrap().unwrap();
        assert!(first.number.is_ok());
        // The first row is available after reading a bounded prefix, not the whole input.
        assert!(
            produced.get() < 512 * 1024,
            "read {} bytes before the first row",
            produced.get()
        );
        let mut set = HeldSet::new();
        set.push(first).unwrap();
        for row in reader {
            set.push(row.unwrap()).unwrap();
        }
        assert!(
            produced.get() > 10_000_000,
            "the input was {} bytes",
            produced.get()
        );
        assert_eq!(set.row_count() as u64, rows);
        assert_eq!(set.len(), 1000, "full-width and ASCII spellings meet");
        assert!(set.invalid_rows().is_empty());
    }
}

#[test]
fn line_numbers_survive_crlf_blank_lines_and_multiline_fields() {
    for nl in ["\n", "\r\n"] {
        let text = [
            "insured_number,memo",
            "01130012-0647-095075903,a",
            "",
            "\"39131016-12345678\",\"x",
            "y\"",
            "",
            "",
            "01130013-0647-095075903,b",
            "",
        ]
        .join(nl);
        let lines: Vec<u64> = HeldReader::from_reader(
            text.as_bytes(),
            TextEncoding::Utf8 { bom: false },
            &HeldColumns::combined(),
            &ReadOptions::default(),
        )
        .unwrap()
        .map(|r| r.unwrap().line)
        .collect();
        assert_eq!(lines, vec![2, 4, 8], "terminator {nl:?}");
    }
}

#[test]
fn decode_errors_in_large_files_name_the_line() {
    let mut text = String::from("insured_number\n");
    for _ in 0..20_000 {
        text.push_str("01130012-0647-095075903\n");
    }
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(b"\xff\xfe\n");
    let err = HeldReader::from_reader(
        &bytes[..],
        TextEncoding::Utf8 { bom: false },
        &HeldColumns::combined(),
        &ReadOptions::default(),
    )
    .unwrap()
    .find_map(Result::err)
    .unwrap();
    assert!(
        matches!(err, CsvError::Decode { line: 20_002, .. }),
        "{err}"
    );
}

#[test]
fn detection_handles_sequences_across_chunks_and_truncation() {
    for pad in [65_534, 65_535, 65_536, 131_071] {
        let mut s = "a".repeat(pad);
        s.push_str("札幌東");
        assert_eq!(
            detect_encoding(s.as_bytes()).unwrap(),
            TextEncoding::Utf8 { bom: false },
            "{pad}"
        );
        let mut cut = s.into_bytes();
        cut.pop();
        assert_eq!(
            detect_encoding(&cut[..]).unwrap(),
            TextEncoding::Cp932,
            "{pad}"
        );
    }
    assert_eq!(
        detect_encoding(&b""[..]).unwrap(),
        TextEncoding::Utf8 { bom: false }
    );
    assert_eq!(
        "CP932".parse::<EncodingChoice>().unwrap(),
        EncodingChoice::Cp932
    );
    assert_eq!(
        "shift_jis".parse::<EncodingChoice>().unwrap(),
        EncodingChoice::Cp932
    );
    assert_eq!(
        "utf-8".parse::<EncodingChoice>().unwrap(),
        EncodingChoice::Utf8
    );
    assert!("latin1".parse::<EncodingChoice>().is_err());
}
