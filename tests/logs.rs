//! Log lines through the `nayose` binary: `--log-format json` gives one JSON object per log
//! line (for `server build` and `server serve`), and neither format carries ANSI colour codes
//! when stderr is not a terminal (here: a pipe, as for a log file).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

/// The JSON log lines of `stderr` (lines that start with `{`), each parsed.
fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn server_build_logs_json_lines_without_colour() {
    let w = world(5);
    let out = ok(&[
        "server",
        "build",
        "--data-dir",
        &w.s("server"),
        "--registry",
        &w.s("registry.csv"),
        "-v",
        "--log-format",
        "json",
    ]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains('\x1b'), "no ANSI escapes: {stderr}");
    let events = json_lines(&stderr);
    let messages: Vec<&str> = events
        .iter()
        .map(|e| e["fields"]["message"].as_str().unwrap())
        .collect();
    for m in ["key period started", "building epoch", "epoch published"] {
        assert!(messages.contains(&m), "{m} in {messages:?}");
    }
    for e in &events {
        assert_eq!(e["level"], "INFO", "{e}");
        assert!(e["timestamp"].is_string() && e["target"].is_string(), "{e}");
    }
    let published = events
        .iter()
        .find(|e| e["fields"]["message"] == "epoch published")
        .unwrap();
    assert_eq!(published["fields"]["epoch"], 1);
    // The build's report stays a human-readable text after the log lines.
    assert!(stderr.contains("published epoch 1"), "{stderr}");

    // The default text format, into a pipe: plain, no colour.
    let out = ok(&[
        "server",
        "build",
        "--data-dir",
        &w.s("server"),
        "--registry",
        &w.s("registry.csv"),
        "-v",
    ]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!stderr.contains('\x1b'), "no ANSI escapes: {stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("INFO") && l.contains("building epoch")),
        "{stderr}"
    );
    assert!(json_lines(&stderr).is_empty(), "{stderr}");
}

#[test]
fn server_serve_writes_only_json_lines() {
    let w = world(5);
    setup_pki_and_epoch(&w, "research-01");
    let port = free_udp_port();
    let mut child = Command::new(BIN)
        .args([
            "server",
            "serve",
            "--data-dir",
            &w.s("server"),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--cert",
            &w.s("pki/server.pem"),
            "--key",
            &w.s("pki/server.key"),
            "--client-ca",
            &w.s("pki/client-ca.pem"),
            "--clients",
            &w.s("clients.toml"),
            "--log-format",
            "json",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let listening = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                let done = line.contains("listening on");
                lines.push(line);
                if done {
                    break lines.last().cloned();
                }
            }
            Err(_) => break None,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let listening = listening.unwrap_or_else(|| panic!("no listening line in {lines:?}"));
    for l in &lines {
        assert!(!l.contains('\x1b'), "no ANSI escapes: {l}");
        serde_json::from_str::<serde_json::Value>(l)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
    }
    let event: serde_json::Value = serde_json::from_str(&listening).unwrap();
    assert_eq!(event["level"], "INFO");
    assert_eq!(event["fields"]["listen"], format!("127.0.0.1:{port}"));
    let epoch = event["fields"]["epoch"].as_str().unwrap();
    assert!(epoch.starts_with("1 (key period "), "{event}");
}
