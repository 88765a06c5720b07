//! A link run stopped by a signal leaves no temporary file (they hold patient ids and numbers),
//! through the `nayose` binary: SIGINT and SIGHUP while the input is read (the row report's
//! temporary file exists), SIGTERM while the output is written, over real QUIC on 127.0.0.1;
//! and SIGKILL, which cannot be caught: its temporary file is removed by the next run.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A held file long enough for a signal to arrive mid-phase: the world's rows repeated (few
/// distinct numbers, so the server's work stays small, but many rows to read and write).
fn long_held_file(w: &World, rows: usize) {
    let held = fs::read_to_string(w.path("held.csv")).unwrap();
    let mut lines = held.lines();
    let header = lines.next().unwrap();
    let body: Vec<&str> = lines.collect();
    let mut text = String::with_capacity(rows * 48);
    text.push_str(header);
    text.push('\n');
    for i in 0..rows {
        // Each row keeps its own record id so that the rows stay distinct.
        let line = body[i % body.len()];
        let rest = line.split_once(',').unwrap().1;
        text.push_str(&format!("X{i},{rest}\n"));
    }
    fs::write(w.path("held.csv"), text).unwrap();
}

/// Starts `nayose args` with a C locale, stdout and stderr captured.
fn start(args: &[String]) -> Child {
    Command::new(BIN)
        .args(args)
        .env_remove("LC_MESSAGES")
        .env("LC_ALL", "C")
        .env("LANG", "C")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The nayose temporary files in `dir` (`.NAME.nayose-PID-N.tmp`).
fn temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n.contains(".nayose-") && n.ends_with(".tmp"))
        .collect()
}

/// Waits until the child's temporary file of `name` exists in `dir` (bounded); false if the
/// child ended first. (Its handlers are installed before it creates any file.)
fn wait_for_temp(child: &mut Child, dir: &Path, name: &str) -> bool {
    let prefix = format!(".{name}.nayose-{}-", child.id());
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if temp_files(dir).iter().any(|n| n.starts_with(&prefix)) {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("no temporary file of {name} appeared in {}", dir.display());
}

fn send(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal}");
}

/// Link arguments writing into `out/` (a directory of its own, to list what is left there).
fn args_into_out_dir(w: &World, port: u16, extra: &[&str]) -> Vec<String> {
    fs::create_dir_all(w.path("out")).unwrap();
    let mut args = link_args(w, port, "research-01", "out/linked.csv");
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn sigint_and_sighup_while_reading_leave_no_temporary_file() {
    let w = world(60);
    setup_pki_and_epoch(&w, "research-01");
    long_held_file(&w, 400_000);
    // Nothing listens there: the run is stopped before it would connect.
    let port = free_udp_port();
    let report = w.s("out/report.csv");
    let args = args_into_out_dir(&w, port, &["--report", &report]);
    for (signal, status) in [("INT", 130), ("HUP", 129)] {
        let mut child = start(&args);
        assert!(
            wait_for_temp(&mut child, &w.path("out"), "report.csv"),
            "the run ended before its report's temporary file was seen"
        );
        send(&child, signal);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "SIG{signal}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "interrupted by SIG{signal}: nothing was written and no temporary file is left"
            )),
            "{stderr}"
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["error"]["kind"], "interrupted");
        let left: Vec<_> = fs::read_dir(w.path("out")).unwrap().flatten().collect();
        assert!(left.is_empty(), "SIG{signal} left {left:?}");
    }
}

#[test]
fn sigkill_leaves_a_temporary_file_the_next_run_removes_and_sigterm_while_writing_leaves_none() {
    let w = world(60);
    setup_pki_and_epoch(&w, "research-01");
    long_held_file(&w, 400_000);
    let port = free_udp_port();
    let _server = serve(&w, port);
    let args = args_into_out_dir(&w, port, &[]);
    let out_dir = w.path("out");

    // SIGKILL while the output is written: no handler runs, the temporary file stays.
    let mut child = start(&args);
    assert!(wait_for_temp(&mut child, &out_dir, "linked.csv"));
    send(&child, "KILL");
    let _ = child.wait_with_output().unwrap();
    let stale = temp_files(&out_dir);
    assert_eq!(stale.len(), 1, "the killed run's temporary file: {stale:?}");
    // A temporary file of a process that runs (this test) is never touched.
    let alive = format!(".linked.csv.nayose-{}-0.tmp", std::process::id());
    fs::write(out_dir.join(&alive), "").unwrap();

    // The next run removes the dead process's file before it writes; SIGTERM while it writes
    // the output removes its own.
    let mut child = start(&args);
    assert!(wait_for_temp(&mut child, &out_dir, "linked.csv"));
    send(&child, "TERM");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(
        stderr.contains("interrupted by SIGTERM: nothing was written"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}, a temporary file left by an earlier run that was killed",
            stale[0]
        )),
        "{stderr}"
    );
    assert_eq!(temp_files(&out_dir), vec![alive.clone()]);
    assert!(!out_dir.join("linked.csv").exists());

    // Not stopped, the run completes and still leaves the live process's file alone.
    let json = run_link(&args);
    assert_eq!(json["rows"], 400_000);
    assert!(out_dir.join("linked.csv").exists());
    assert_eq!(temp_files(&out_dir), vec![alive]);
}
