//! The output as an analyst uses it, through the `nayose` binary over real QUIC on 127.0.0.1:
//! `nayose_status` on every row, `nayose_note` for repaired and invalid rows, the canonical
//! number column, per-row values in `nayose_group` for rows not linked; and the inputs
//! institutions have: an Excel workbook and a file without a 枝番 column; and the summary and
//! errors in Japanese (`--lang ja`, or a Japanese locale).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::HashMap;
use std::fs;

use common::*;

/// The registry's rows: (person, insurer, symbol, number, branch).
fn registry_rows(w: &World) -> Vec<[String; 5]> {
    fs::read_to_string(w.path("registry.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            [0, 1, 2, 3, 4].map(|i| f[i].to_owned())
        })
        .collect()
}

/// The output's rows as column name → value maps (a UTF-8 output, with or without BOM).
fn output_rows(w: &World, out: &str) -> (Vec<String>, Vec<HashMap<String, String>>) {
    let text = fs::read_to_string(w.path(out)).unwrap();
    let text = text.trim_start_matches('\u{feff}');
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let h: Vec<String> = rdr.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = rdr
        .records()
        .map(|r| {
            let r = r.unwrap();
            h.iter().cloned().zip(r.iter().map(str::to_owned)).collect()
        })
        .collect();
    (h, rows)
}

/// Same person ⇔ same `nayose_group`, every known row linked; `truth` maps `患者ID` to the
/// person.
fn assert_linked_like_truth(rows: &[HashMap<String, String>], truth: &HashMap<String, String>) {
    let mut label_of: HashMap<&str, &str> = HashMap::new();
    let mut person_of: HashMap<&str, &str> = HashMap::new();
    for r in rows {
        let person = truth[&r["患者ID"]].as_str();
        assert_eq!(r["nayose_status"], "linked", "{r:?}");
        let label = r["nayose_group"].as_str();
        assert!(label.starts_with('g') && label.len() == 9, "{r:?}");
        assert_eq!(*label_of.entry(person).or_insert(label), label, "{r:?}");
        assert_eq!(*person_of.entry(label).or_insert(person), person, "{r:?}");
    }
    assert!(label_of.len() >= 10, "enough persons linked");
}

#[test]
fn status_note_canonical_number_and_unlinked_groups_serve_an_analyst() {
    let w = world(60);
    setup_pki_and_epoch(&w, "analyst-01");
    let port = free_udp_port();
    let _server = serve(&w, port);

    // Registry numbers with the insurer number's leading zero lost (as a number cell would),
    // then an unknown number twice and another once, and a row with a wrong check digit.
    let mut text = String::from("患者ID,保険者番号,記号,番号,枝番\n");
    let mut repaired_ids = Vec::new();
    let mut canonical = HashMap::new();
    for (i, [_, ins, sym, num, br]) in registry_rows(&w).iter().enumerate() {
        let id = format!("K{i}");
        let written = ins.strip_prefix('0').unwrap_or(ins);
        if written != ins {
            repaired_ids.push(id.clone());
        }
        // The canonical form has an 8-digit insurer number (国保 numbers are 6).
        canonical.insert(id.clone(), format!("{ins:0>8}:{sym}:{num}:{br}"));
        text.push_str(&format!("{id},{written},{sym},{num},{br}\n"));
    }
    let known = registry_rows(&w).len();
    let unknown = insurer("0113001");
    text.push_str(&format!("U1,{unknown},0999,900001,01\n"));
    text.push_str(&format!("U2,{unknown},0999,900002,01\n"));
    text.push_str(&format!("U3,{unknown},0999,900001,01\n"));
    text.push_str("X1,01130013,0647,0950759,03\n");
    fs::write(w.path("held-k.csv"), text).unwrap();
    assert!(repaired_ids.len() > 5);

    let mut args = with_flag(
        &with_flag(
            &link_args(&w, port, "analyst-01", "k.out.csv"),
            "--input",
            Some(&w.s("held-k.csv")),
        ),
        "--combined-column",
        None,
    );
    args.extend(
        [
            "--repair",
            "--skip-invalid",
            "--canonical-column",
            "--unlinked-group",
            "line",
        ]
        .map(String::from),
    );
    let summary = run_link(&args);
    assert_eq!(summary["invalid_rows"], 1, "{summary}");

    let (h, rows) = output_rows(&w, "k.out.csv");
    assert_eq!(
        h[h.len() - 4..],
        [
            "nayose_group",
            "nayose_status",
            "nayose_note",
            "nayose_number"
        ]
    );
    let by_id: HashMap<&str, &HashMap<String, String>> =
        rows.iter().map(|r| (r["患者ID"].as_str(), r)).collect();
    let truth: HashMap<String, String> = registry_rows(&w)
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("K{i}"), r[0].clone()))
        .collect();
    assert_linked_like_truth(&rows[..known], &truth);
    for r in &rows[..known] {
        let id = r["患者ID"].as_str();
        // A repaired row is linked, and its note says it was repaired.
        let note = if repaired_ids.iter().any(|x| x == id) {
            "repaired"
        } else {
            ""
        };
        assert_eq!(r["nayose_note"], note, "{r:?}");
        assert_eq!(r["nayose_number"], canonical[id], "{r:?}");
    }
    // Lines: header 1, K rows 2..=known+1, then U1, U2, U3, X1.
    let l = known as u64 + 2;
    for (id, group) in [
        ("U1", format!("nf-{l}")),
        ("U2", format!("nf-{}", l + 1)),
        // The same unknown number as U1: the same group.
        ("U3", format!("nf-{l}")),
        ("X1", format!("invalid-{}", l + 3)),
    ] {
        assert_eq!(by_id[id]["nayose_group"], group, "{id}");
    }
    assert_eq!(by_id["U2"]["nayose_status"], "not_found");
    assert_eq!(by_id["U2"]["nayose_note"], "");
    assert_eq!(
        by_id["U2"]["nayose_number"],
        format!("{unknown}:0999:900002:01")
    );
    assert_eq!(by_id["X1"]["nayose_status"], "invalid");
    assert_eq!(by_id["X1"]["nayose_note"], "check_digit");
    assert_eq!(by_id["X1"]["nayose_number"], "");
    assert!(rows.iter().all(|r| !r["nayose_status"].is_empty()));

    // By default: no number column, empty groups for rows not linked, the note still there.
    let plain = with_flag(
        &with_flag(&args, "--output", Some(&w.s("plain.out.csv"))),
        "--unlinked-group",
        None,
    );
    let plain: Vec<String> = plain
        .into_iter()
        .filter(|a| a != "--canonical-column")
        .collect();
    run_link(&plain);
    let (h, rows) = output_rows(&w, "plain.out.csv");
    assert_eq!(h.last().unwrap(), "nayose_note");
    assert!(!h.iter().any(|c| c == "nayose_number"));
    for r in &rows[known..] {
        assert_eq!(r["nayose_group"], "", "{r:?}");
    }
}

/// A workbook of the registry's numbers without a 枝番 column (the 枝番 at the end of the 番号),
/// with insurer numbers typed as numbers (their leading zero lost).
fn held_workbook(w: &World) -> (Vec<u8>, HashMap<String, String>) {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    for (col, h) in ["患者ID", "保険者番号", "記号", "番号"].iter().enumerate() {
        sheet.write_string(0, col as u16, *h).unwrap();
    }
    let mut truth = HashMap::new();
    for (i, [person, ins, sym, num, br]) in registry_rows(w).iter().enumerate() {
        let row = i as u32 + 1;
        let id = format!("B{i}");
        sheet.write_string(row, 0, &id).unwrap();
        sheet
            .write_number(row, 1, ins.parse::<f64>().unwrap())
            .unwrap();
        sheet.write_string(row, 2, sym).unwrap();
        sheet.write_string(row, 3, format!("{num}{br}")).unwrap();
        truth.insert(id, person.clone());
    }
    (book.save_to_buffer().unwrap(), truth)
}

#[test]
fn an_excel_workbook_and_a_file_without_a_branch_column_link_end_to_end() {
    let w = world(60);
    setup_pki_and_epoch(&w, "analyst-02");
    let port = free_udp_port();
    let _server = serve(&w, port);

    let (book, truth) = held_workbook(&w);
    fs::write(w.path("held.xlsx"), &book).unwrap();
    // The same workbook renamed to .csv is recognised by its content.
    fs::write(w.path("held-renamed.csv"), &book).unwrap();
    // And the same rows as a plain CSV file without a 枝番 column.
    let mut text = String::from("患者ID,保険者番号,記号,番号\n");
    for (i, [_, ins, sym, num, br]) in registry_rows(&w).iter().enumerate() {
        text.push_str(&format!("B{i},{ins},{sym},{num}{br}\n"));
    }
    fs::write(w.path("no-branch.csv"), text).unwrap();

    let base = with_flag(
        &link_args(&w, port, "analyst-02", "unused.csv"),
        "--combined-column",
        None,
    );
    let mut outputs = Vec::new();
    for (input, repair) in [
        ("held.xlsx", true),
        ("held-renamed.csv", true),
        ("no-branch.csv", false),
    ] {
        let out = format!("{input}.out.csv");
        let mut args = with_flag(
            &with_flag(&base, "--input", Some(&w.s(input))),
            "--output",
            Some(&w.s(&out)),
        );
        if repair {
            args.push("--repair".into());
        }
        let summary = run_link(&args);
        assert_eq!(summary["branch_in_number"], true, "{input}: {summary}");
        assert_eq!(summary["columns"]["number"], "番号", "{input}: {summary}");
        assert!(summary["columns"].get("branch").is_none(), "{summary}");
        assert_eq!(summary["invalid_rows"], 0, "{input}: {summary}");
        if input != "no-branch.csv" {
            assert_eq!(
                summary["input_encoding"], "Excel workbook",
                "{input}: {summary}"
            );
            assert!(
                summary["report_counts"]["repaired"].as_u64().unwrap() > 5,
                "{summary}"
            );
        }
        let (_, rows) = output_rows(&w, &out);
        assert_eq!(rows.len(), truth.len(), "{input}");
        assert_linked_like_truth(&rows, &truth);
        outputs.push(
            rows.iter()
                .map(|r| (r["患者ID"].clone(), r["nayose_group"].clone()))
                .collect::<HashMap<_, _>>(),
        );
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
}

#[test]
fn the_summary_and_the_errors_are_in_japanese_with_lang_ja_or_a_japanese_locale() {
    let w = world(30);
    setup_pki_and_epoch(&w, "analyst-03");
    let port = free_udp_port();
    let _server = serve(&w, port);
    let base = link_args(&w, port, "analyst-03", "ja.out.csv");
    let args = |extra: &[&str]| -> Vec<String> {
        base.iter()
            .cloned()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    let run = |a: &[String], env: &[(&str, &str)]| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let out = nayose_env(&a, env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };

    // The summary: Japanese with --lang ja, and with LANG=ja_JP.UTF-8 alone.
    let ja = run(&args(&["--lang", "ja"]), &[]);
    let text = String::from_utf8_lossy(&ja.stderr);
    assert!(text.contains("行数 "), "{text}");
    assert!(text.contains("名寄せ済み"), "{text}");
    assert!(text.contains("グループ（人物）"), "{text}");
    assert!(!text.contains("distinct numbers"), "{text}");
    // --json is the same in both languages.
    let json: serde_json::Value = serde_json::from_slice(&ja.stdout).unwrap();
    assert!(json["linked_rows"].as_u64().unwrap() > 0);
    let locale = run(&args(&[]), &[("LC_ALL", ""), ("LANG", "ja_JP.UTF-8")]);
    assert!(String::from_utf8_lossy(&locale.stderr).contains("名寄せ済み"));
    // English stays the default, and --lang en wins over a Japanese locale.
    let en = run(&args(&[]), &[]);
    let text = String::from_utf8_lossy(&en.stderr);
    assert!(
        text.contains("rows ") && text.contains("distinct numbers"),
        "{text}"
    );
    let en = run(&args(&["--lang", "en"]), &[("LANG", "ja_JP.UTF-8")]);
    assert!(String::from_utf8_lossy(&en.stderr).contains("distinct numbers"));

    // Errors: invalid rows listed with Japanese reasons and what fixes them.
    let bad = insurer("0113001");
    let broken = format!("{}{}", &bad[..7], (bad.as_bytes()[7] - b'0' + 1) % 10);
    fs::write(
        w.path("bad.csv"),
        format!(
            "record_id,insured_number,note\nR1,{broken}:0100:5000:00,x\nR2,1130012:0100:5000:00,y\n"
        ),
    )
    .unwrap();
    let bad_args = with_flag(&args(&["--lang", "ja"]), "--input", Some(&w.s("bad.csv")));
    let a: Vec<&str> = bad_args.iter().map(String::as_str).collect();
    let failed = nayose_env(&a, &[]);
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains("エラー: "), "{err}");
    assert!(err.contains("に無効な行が 2 行あります"), "{err}");
    assert!(err.contains("2 行目、列「insured_number」"), "{err}");
    assert!(err.contains("検証番号"), "{err}");
    assert!(err.contains("--repair を指定すると"), "{err}");
    assert!(err.contains("出力ファイルは書き出していません"), "{err}");
    // The same failure in English is unchanged.
    let bad_en = with_flag(&base, "--input", Some(&w.s("bad.csv")));
    let a: Vec<&str> = bad_en.iter().map(String::as_str).collect();
    let failed = nayose_env(&a, &[]);
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.starts_with("error: link run failed"), "{err}");
    assert!(err.contains("2 invalid row(s)"), "{err}");
    assert!(!w.path("ja.out.csv.tmp").exists());

    // A server that does not answer: a Japanese lead, the English details after it.
    let nowhere = with_flag(
        &args(&["--lang", "ja"]),
        "--server",
        Some(&format!("127.0.0.1:{}", free_udp_port())),
    );
    let mut nowhere = with_flag(&nowhere, "--output", Some(&w.s("none.csv")));
    nowhere.extend(["--config".to_owned(), w.s("fast.toml")]);
    fs::write(
        w.path("fast.toml"),
        "[retry]\nmax_attempts = 2\ninitial_backoff_ms = 10\nconnect_timeout_ms = 300\n",
    )
    .unwrap();
    let a: Vec<&str> = nowhere.iter().map(String::as_str).collect();
    let failed = nayose_env(&a, &[]);
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(
        err.contains("接続できませんでした") || err.contains("通信が途絶えました"),
        "{err}"
    );
    assert!(err.contains("  詳細: "), "{err}");
}
