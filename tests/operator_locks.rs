//! The operator's commands that must not run beside another process on the data directory,
//! through the `nayose` binary: `server rotate-label-key` beside a running `server build` (it
//! fails naming `build.lock` and changes nothing), and `server audit rotate` beside a running
//! `server serve` (it fails naming `serve.lock`); without them both work, and `audit verify`
//! reports archived segments as not checked, or checks them with `--archive`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn rotate_label_key_fails_while_a_build_runs_and_changes_nothing() {
    let w = world(40);
    setup_pki_and_epoch(&w, "hosp-a");
    let key_file = w.path("server/label-master.key");
    let key_before = fs::read(&key_file).unwrap();
    // A registry long to read, so the next build runs for a while.
    let reg = fs::read_to_string(w.path("registry.csv")).unwrap();
    let mut lines = reg.lines();
    let mut text = format!("{}\n", lines.next().unwrap());
    let body: Vec<&str> = lines.collect();
    for i in 0..400_000 {
        text.push_str(body[i % body.len()]);
        text.push('\n');
    }
    fs::write(w.path("long.csv"), text).unwrap();
    let mut build = Command::new(BIN)
        .args([
            "server",
            "build",
            "--data-dir",
            &w.s("server"),
            "--registry",
            &w.s("long.csv"),
        ])
        .env("LC_ALL", "C")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the build holds its lock.
    let lock = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(w.path("server/build.lock"))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match lock.try_lock() {
            Err(fs::TryLockError::WouldBlock) => break,
            Ok(()) => lock.unlock().unwrap(),
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < deadline, "the build never took its lock");
        assert!(build.try_wait().unwrap().is_none(), "the build ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = nayose(&["server", "rotate-label-key", "--data-dir", &w.s("server")]);
    let still_building = build.try_wait().unwrap().is_none();
    assert!(!out.status.success(), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains(&w.s("server/build.lock")) && e.contains("not changed"),
        "{e}"
    );
    assert_eq!(
        fs::read(&key_file).unwrap(),
        key_before,
        "the key was changed"
    );
    assert!(
        still_building,
        "the build ended before the rotation was refused"
    );
    build.kill().unwrap();
    build.wait().unwrap();
    // With the build gone, the rotation runs.
    let out = ok(&["server", "rotate-label-key", "--data-dir", &w.s("server")]);
    assert!(
        stderr(&out).contains("label master key rotated"),
        "{}",
        stderr(&out)
    );
    assert_ne!(fs::read(&key_file).unwrap(), key_before);
}

#[test]
fn audit_rotate_refuses_beside_serve_and_verify_reports_archived_segments() {
    let w = world(40);
    setup_pki_and_epoch(&w, "hosp-a");
    let port = free_udp_port();
    let server = serve(&w, port);
    run_link(&link_args(&w, port, "hosp-a", "out.csv"));
    let data = w.s("server");
    let out = nayose(&["server", "audit", "rotate", &data]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains(&w.s("server/serve.lock")) && e.contains("audit_rotate_bytes"),
        "{e}"
    );
    assert!(
        !w.path("server/audit/audit.00000000000000000001.log")
            .exists()
    );
    drop(server);

    // Two rotations by hand, then more records.
    let out = ok(&["server", "audit", "rotate", &data]);
    assert!(
        stdout(&out).contains("audit.00000000000000000001.log (records 1.."),
        "{}",
        stdout(&out)
    );
    let server = serve(&w, port);
    run_link(&link_args(&w, port, "hosp-a", "out2.csv"));
    drop(server);
    ok(&["server", "audit", "rotate", &data]);
    let out = ok(&["server", "audit", "verify", &data]);
    let v = stdout(&out);
    assert!(
        v.contains("records, chain intact") && v.contains("2 closed segment(s)"),
        "{v}"
    );

    // The oldest segment archived: verified from the next one, said plainly; with --archive,
    // everything again.
    let archive = w.path("archive");
    fs::create_dir(&archive).unwrap();
    fs::rename(
        w.path("server/audit/audit.00000000000000000001.log"),
        archive.join("audit.00000000000000000001.log"),
    )
    .unwrap();
    let v = stdout(&ok(&["server", "audit", "verify", &data]));
    assert!(
        v.contains("audit log OK from record") && v.contains("NOT CHECKED"),
        "{v}"
    );
    let v = stdout(&ok(&[
        "server",
        "audit",
        "verify",
        &data,
        "--archive",
        &archive.to_string_lossy(),
    ]));
    assert!(
        v.contains("records, chain intact") && v.contains("(1 from the archive)"),
        "{v}"
    );
    // An archived segment that was edited fails verification.
    let p = archive.join("audit.00000000000000000001.log");
    let text = fs::read_to_string(&p).unwrap();
    fs::write(&p, text.replacen("hosp-a", "hosp-b", 1)).unwrap();
    let out = nayose(&[
        "server",
        "audit",
        "verify",
        &data,
        "--archive",
        &archive.to_string_lossy(),
    ]);
    assert!(!out.status.success(), "{}", stdout(&out));
}
