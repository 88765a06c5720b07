//! End-to-end tests of the `nayose` binary: pki → server build → server serve → client link over
//! real QUIC on 127.0.0.1, checked against the ground truth; a rerun that costs nothing; the
//! next epoch (a delta: added numbers, merged persons) synced by delta; bad input; a server
//! killed and restarted in the middle of a run; the demo.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::{
    collections::HashMap,
    fs,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

mod common;

use common::*;

#[test]
fn a_first_run_a_free_rerun_and_the_next_epoch_synced_by_delta_all_match_the_ground_truth() {
    let mut w = world(300);
    setup_pki_and_epoch(&w, "research-01");
    let port = free_udp_port();
    let server = serve(&w, port);
    let u = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k}: {v}"));

    let first = run_link(&link_args(&w, port, "research-01", "first.csv"));
    assert_groups_match(&w, "first.csv");
    assert_eq!(first["sync"]["kind"], "base", "{first}");
    let distinct = u(&first, "distinct_numbers");
    assert_eq!(u(&first, "evaluated_numbers"), distinct);
    assert!(u(&first, "bytes_sent") > distinct * 32, "{first}");

    // The same file again, same epoch: nothing evaluated, nothing downloaded.
    let again = run_link(&link_args(&w, port, "research-01", "again.csv"));
    assert_groups_match(&w, "again.csv");
    assert_eq!(again["sync"]["kind"], "current", "{again}");
    assert_eq!(u(&again, "evaluated_numbers"), 0);
    assert!(
        u(&again, "bytes_received") * 100 <= u(&first, "bytes_received"),
        "a rerun received {} bytes, the first run {}",
        u(&again, "bytes_received"),
        u(&first, "bytes_received")
    );
    let labels = |f: &str| fs::read_to_string(w.path(f)).unwrap();
    assert_eq!(labels("first.csv"), labels("again.csv"));

    // The next day: person P000002 is merged into P000004 (their numbers are relabelled) and
    // new persons' numbers appear. The server publishes a delta epoch.
    let registry = fs::read_to_string(w.path("registry.csv")).unwrap();
    let mut next: String = registry
        .lines()
        .map(|l| match l.strip_prefix("P000002,") {
            Some(rest) => format!("P000004,{rest}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    for n in 0..30 {
        next.push_str(&format!(
            "N{n:05},{},0777,{},01\n",
            insurer("0113001"),
            70_000 + n
        ));
    }
    fs::write(w.path("registry.csv"), next).unwrap();
    for v in w.truth.values_mut() {
        if v.as_deref() == Some("P000002") {
            *v = Some("P000004".into());
        }
    }
    let built = ok(&[
        "server",
        "build",
        "--data-dir",
        &w.s("server"),
        "--registry",
        &w.s("registry.csv"),
    ]);
    let report = String::from_utf8_lossy(&built.stderr);
    assert!(
        report.contains("added") && report.contains("relabelled"),
        "{report}"
    );
    drop(server);
    let _server = serve(&w, port);
    let delta = run_link(&link_args(&w, port, "research-01", "delta.csv"));
    assert_groups_match(&w, "delta.csv");
    assert_eq!(delta["sync"]["kind"], "delta", "{delta}");
    assert_eq!(u(&delta, "evaluated_numbers"), 0, "{delta}");
    assert_eq!(delta["sync"]["added"], 30, "{delta}");
    assert!(
        delta["sync"]["relabelled"].as_u64().unwrap() >= 2,
        "{delta}"
    );
    assert_eq!(u(&delta, "epoch"), u(&first, "epoch") + 1);
    assert!(
        u(&delta, "bytes_received") * 10 < u(&first, "bytes_received"),
        "the delta run received {} bytes, the first run {}",
        u(&delta, "bytes_received"),
        u(&first, "bytes_received")
    );
}

#[test]
fn malformed_input_fails_clearly_before_any_network_work_and_writes_nothing() {
    let w = world(20);
    setup_pki_and_epoch(&w, "research-02");
    let mut held = fs::read_to_string(w.path("held.csv")).unwrap();
    held.push_str("R900,01130013-0647-0950759,bad check digit\n");
    fs::write(w.path("held.csv"), held).unwrap();
    // No server is running: the run must stop on the bad row before connecting.
    let args = link_args(&w, free_udp_port(), "research-02", "out.csv");
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = nayose(&a);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line"), "{err}");
    assert!(err.to_lowercase().contains("check digit"), "{err}");
    assert!(
        !w.path("out.csv").exists(),
        "no output file after a failed run"
    );
}

#[test]
fn an_output_path_that_is_a_directory_fails_before_any_network_work_and_leaves_no_file() {
    let w = world(20);
    setup_pki_and_epoch(&w, "research-04");
    fs::create_dir(w.path("outdir")).unwrap();
    // No server is running: a run that got as far as connecting would fail with a connection
    // error instead, after spending quota on a real server.
    let args = link_args(&w, free_udp_port(), "research-04", "outdir");
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let out = nayose(&a);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is a directory"), "{err}");
    assert!(err.contains("outdir"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "failed fast, without connection attempts"
    );
    let left: Vec<_> = fs::read_dir(w.path("outdir")).unwrap().collect();
    assert!(
        left.is_empty(),
        "nothing written into the directory: {left:?}"
    );
    let stray: Vec<String> = fs::read_dir(w.path(""))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp") || n.contains("nayose-write-check"))
        .collect();
    assert!(stray.is_empty(), "no temporary file left: {stray:?}");
}

#[test]
fn a_server_that_is_not_running_is_reported_within_about_half_a_minute() {
    let w = world(20);
    setup_pki_and_epoch(&w, "research-05");
    let port = free_udp_port();
    let args = link_args(&w, port, "research-05", "out.csv");
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let out = nayose(&a);
    let waited = started.elapsed();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("could not connect to 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(
        waited < Duration::from_secs(60),
        "gave up after {waited:?}, not after the whole retry schedule"
    );
    assert!(!w.path("out.csv").exists());
}

#[test]
fn a_server_killed_and_restarted_mid_run_still_yields_the_correct_output() {
    let w = world(3000);
    setup_pki_and_epoch(&w, "research-03");
    let port = free_udp_port();
    let server = serve(&w, port);
    let args = link_args(&w, port, "research-03", "out.csv");
    let child = Command::new(BIN)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill once the server has answered the client's first evaluation (seen in its audit log),
    // so the kill lands mid-run however slowly the client started on a busy machine.
    let audit = w.path("server/audit/audit.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&audit).is_ok_and(|l| l.contains("\"op\":\"Evaluate\"")) {
        assert!(Instant::now() < deadline, "the client never evaluated");
        thread::sleep(Duration::from_millis(10));
    }
    drop(server); // SIGKILL
    thread::sleep(Duration::from_millis(500));
    let _server = serve(&w, port);
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "link after restart failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(120));
    assert_groups_match(&w, "out.csv");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        summary["connections"].as_u64().unwrap() >= 2,
        "the kill landed mid-run, so the client reconnected: {summary}"
    );
}

#[test]
fn the_demo_runs_and_checks_itself() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("demo");
    let out = ok(&[
        "demo",
        "--persons",
        "1500",
        "--held",
        "1200",
        "--keep",
        &keep.to_string_lossy(),
        "--json",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("OK: all"), "{err}");
    assert!(err.contains("OK: after the next day's epoch"), "{err}");
    assert!(keep.join("held.linked.csv").exists());
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs["first"]["sync"]["kind"], "base", "{runs}");
    assert_eq!(runs["second"]["sync"]["kind"], "delta", "{runs}");
    assert_eq!(runs["second"]["evaluated_numbers"], 0, "{runs}");
}

#[test]
fn a_utf16_file_and_a_tsv_file_link_to_the_same_groups_as_the_csv() {
    let w = world(120);
    setup_pki_and_epoch(&w, "research-06");
    let port = free_udp_port();
    let _server = serve(&w, port);
    let held = fs::read_to_string(w.path("held.csv")).unwrap();
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(held.encode_utf16().flat_map(u16::to_le_bytes));
    fs::write(w.path("held16.csv"), utf16).unwrap();
    fs::write(w.path("held.tsv"), held.replace(',', "\t")).unwrap();
    let base = link_args(&w, port, "research-06", "csv.out.csv");

    let csv_run = run_link(&base);
    assert_groups_match(&w, "csv.out.csv");
    assert_eq!(csv_run["output_encoding"], "utf-8-bom", "{csv_run}");
    let raw = fs::read(w.path("csv.out.csv")).unwrap();
    assert!(
        raw.starts_with(&[0xEF, 0xBB, 0xBF]),
        "a UTF-8 input gives a UTF-8 output with a BOM by default"
    );

    // UTF-16 (as Excel's "Unicode text" saves), columns recognised from the header.
    let utf16_args = with_flag(
        &with_flag(
            &with_flag(&base, "--input", Some(&w.s("held16.csv"))),
            "--output",
            Some(&w.s("utf16.out.csv")),
        ),
        "--combined-column",
        None,
    );
    let utf16_run = run_link(&utf16_args);
    assert_groups_match(&w, "utf16.out.csv");
    assert_eq!(utf16_run["input_encoding"], "UTF-16LE", "{utf16_run}");
    assert_eq!(
        utf16_run["columns"]["insured_number"], "insured_number",
        "{utf16_run}"
    );

    // Tab-separated: detected, and named with --delimiter tab; --output-encoding utf-8.
    for (name, delimiter) in [("tsv1.out.csv", None), ("tsv2.out.csv", Some("tab"))] {
        let mut args = with_flag(
            &with_flag(&base, "--input", Some(&w.s("held.tsv"))),
            "--output",
            Some(&w.s(name)),
        );
        args = with_flag(&args, "--output-encoding", Some("utf-8"));
        if let Some(d) = delimiter {
            args = with_flag(&args, "--delimiter", Some(d));
        }
        run_link(&args);
        assert_groups_match(&w, name);
        assert!(!fs::read(w.path(name)).unwrap().starts_with(&[0xEF]));
    }

    let want = groups_by_record(&w.path("csv.out.csv"));
    for name in ["utf16.out.csv", "tsv1.out.csv", "tsv2.out.csv"] {
        assert_eq!(groups_by_record(&w.path(name)), want, "{name}");
    }
}

#[test]
fn a_cp932_file_with_japanese_headers_and_lost_leading_zeros_is_repaired_and_reported() {
    let mut w = world(80);
    setup_pki_and_epoch(&w, "research-07");
    let port = free_udp_port();
    let _server = serve(&w, port);

    // The registry's numbers in Japanese columns, as a spreadsheet saved them: insurer numbers
    // starting with 0 lost it (a number cell), and a blank row (,,,,,) at the end.
    let registry = fs::read_to_string(w.path("registry.csv")).unwrap();
    let mut text = String::from("record_id,保険者番号,記号,番号,枝番,note\n");
    let mut truth = HashMap::new();
    // (line, written, used) of each damaged insurer number.
    let mut damaged: Vec<(u64, String, String)> = Vec::new();
    for (i, l) in registry.lines().skip(1).enumerate() {
        let f: Vec<&str> = l.split(',').collect();
        let written = f[1].strip_prefix('0').unwrap_or(f[1]).to_owned();
        if written != f[1] {
            damaged.push((i as u64 + 2, written.clone(), f[1].to_owned()));
        }
        let id = format!("J{i}");
        text.push_str(&format!(
            "{id},{written},{},{},{},note {i}\n",
            f[2], f[3], f[4]
        ));
        truth.insert(id, Some(f[0].to_owned()));
    }
    text.push_str(",,,,,\n");
    w.truth = truth;
    assert!(damaged.len() > 20, "enough damage to cap the list");
    let (bytes, _, bad) = encoding_rs::SHIFT_JIS.encode(&text);
    assert!(!bad);
    fs::write(w.path("held-sjis.csv"), &bytes).unwrap();
    let base = with_flag(
        &with_flag(
            &link_args(&w, port, "research-07", "sjis.out.csv"),
            "--input",
            Some(&w.s("held-sjis.csv")),
        ),
        "--combined-column",
        None,
    );
    let base = with_flag(&base, "--report", Some(&w.s("report.csv")));

    // Without --repair: every damaged row is invalid; stderr quotes 20 and points to the report,
    // --json prints an error object, and nothing else is written.
    let a: Vec<&str> = base.iter().map(String::as_str).collect();
    let failed = nayose(&a);
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(err.matches("\n  line ").count(), 20, "{err}");
    assert!(
        err.contains(&format!("... and {} more", damaged.len() - 20)),
        "{err}"
    );
    assert!(err.contains("insurer_length"), "{err}");
    assert!(err.contains("--repair"), "{err}");
    let obj: serde_json::Value = serde_json::from_slice(&failed.stdout).expect("an error object");
    assert_eq!(obj["error"]["kind"], "invalid_rows", "{obj}");
    assert!(
        obj["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing was sent to the server"),
        "{obj}"
    );
    assert!(!w.path("sjis.out.csv").exists());

    // With --repair: linked, the output in CP932 like the input, every repair in the report.
    let mut repair = base.clone();
    repair.push("--repair".to_owned());
    let summary = run_link(&repair);
    let out_bytes = fs::read(w.path("sjis.out.csv")).unwrap();
    let (out, _, bad) = encoding_rs::SHIFT_JIS.decode(&out_bytes);
    assert!(!bad);
    assert_groups_match_text(&w, &out, 20);
    assert!(out.starts_with("record_id,保険者番号,記号,番号,枝番,note,nayose_group,nayose_status"));
    assert_eq!(summary["output_encoding"], "cp932", "{summary}");
    assert_eq!(
        summary["columns"]["insurer_number"], "保険者番号",
        "{summary}"
    );
    assert_eq!(summary["columns"]["branch"], "枝番", "{summary}");
    assert_eq!(
        summary["report_counts"]["repaired"].as_u64(),
        Some(damaged.len() as u64),
        "{summary}"
    );
    assert_eq!(summary["report_counts"]["blank_row"], 1, "{summary}");
    let report_bytes = fs::read(w.path("report.csv")).unwrap();
    let (report, _, bad) = encoding_rs::SHIFT_JIS.decode(&report_bytes);
    assert!(!bad);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(w.path("report.csv"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the report is owner-only");
    }
    let mut rdr = csv::Reader::from_reader(report.as_bytes());
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    let repaired: Vec<(u64, String, String)> = rows
        .iter()
        .filter(|r| &r[4] == "repaired")
        .map(|r| {
            assert_eq!(&r[1], "保険者番号");
            (r[0].parse().unwrap(), r[2].to_owned(), r[3].to_owned())
        })
        .collect();
    assert_eq!(repaired, damaged);
    let blank_line = (w.truth.len() + 2).to_string();
    assert!(
        rows.iter()
            .any(|r| &r[4] == "blank_row" && r[0] == *blank_line),
        "{report}"
    );
}
