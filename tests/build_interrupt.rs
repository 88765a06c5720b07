//! `server build` stopped by a signal: the row report's temporary file (registry numbers and
//! person ids) is removed, no report appears, the exit status is 128 + the signal's number, and
//! the epoch is not published; the next build succeeds.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
#[cfg(unix)]
fn a_build_stopped_by_sigint_leaves_no_temporary_report_and_publishes_nothing() {
    let w = world(40);
    // A registry long to read (its rows repeated: duplicates, little to evaluate).
    let reg = fs::read_to_string(w.path("registry.csv")).unwrap();
    let mut lines = reg.lines();
    let header = lines.next().unwrap();
    let body: Vec<&str> = lines.collect();
    let mut text = format!("{header}\n");
    for i in 0..400_000 {
        text.push_str(body[i % body.len()]);
        text.push('\n');
    }
    fs::write(w.path("long.csv"), text).unwrap();
    let out_dir = w.path("reports");
    fs::create_dir(&out_dir).unwrap();
    let report = out_dir.join("build-report.csv");
    let mut child = Command::new(BIN)
        .args([
            "server",
            "build",
            "--data-dir",
            &w.s("server"),
            "--registry",
            &w.s("long.csv"),
            "--report",
            &report.to_string_lossy(),
        ])
        .env("LC_ALL", "C")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until this build's temporary report exists, then interrupt it.
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    let tmp_of_child = || {
        fs::read_dir(&out_dir).unwrap().any(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            n.starts_with(".build-report.csv.nayose-") && n.contains(&format!("-{pid}-"))
        })
    };
    while !tmp_of_child() {
        assert!(
            Instant::now() < deadline,
            "the build never started its report"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended too soon"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted by SIGINT"), "{err}");
    let left: Vec<_> = fs::read_dir(&out_dir).unwrap().collect();
    assert!(left.is_empty(), "files left: {left:?}");
    assert!(!w.path("server/current").exists(), "nothing published");

    // The next build runs to the end.
    ok(&[
        "server",
        "build",
        "--data-dir",
        &w.s("server"),
        "--registry",
        &w.s("registry.csv"),
    ]);
    assert!(w.path("server/current").exists());
}
