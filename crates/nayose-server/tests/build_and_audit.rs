//! Epoch build (duplicates, conflicts, invalid rows, deltas, key periods, label-key rotation,
//! crash safety), key-file permissions and the audit chain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::*;
use nayose_server::{
    BuildOptions, FailPoint, Server, ServerError, build_epoch, check_current_epoch,
    rotate_label_master_key, verify_audit,
};
use nayose_wire::Request;

#[test]
fn duplicates_conflicts_and_invalid_rows_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut rows = registry_rows(10, 0);
    let n = rows.len();
    // Row repeated under the same person: a duplicate, kept once.
    rows.push(rows[0].clone());
    // A number under two persons: a conflict, left out entirely.
    let mut stolen = rows[3].clone();
    stolen.person = "P999999".into();
    rows.push(stolen);
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &rows);
    let r = build(&data, &reg);
    assert_eq!(r.rows, n as u64 + 2);
    assert_eq!(r.duplicate_rows, 1);
    assert_eq!(r.conflicts.len(), 1);
    assert_eq!(r.conflicts[0].persons, 2);
    // Line numbers: header is line 1, rows[i] is line i + 2.
    assert_eq!(r.conflicts[0].lines, vec![3 + 2, n as u64 + 1 + 2]);
    assert_eq!(r.numbers, n as u64 - 1);
    let text = r.to_string();
    assert!(
        text.contains("conflicts        1") && text.contains("lines 5, "),
        "{text}"
    );

    // An invalid row fails the build unless skip_invalid is set.
    let mut s = fs::read_to_string(&reg).unwrap();
    s.push_str("P1,12345678,1,1,01\n");
    fs::write(&reg, &s).unwrap();
    let err = build_epoch(&BuildOptions::new(&data, &reg))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--skip-invalid") && err.contains("line"),
        "{err}"
    );
    let mut opts = BuildOptions::new(&data, &reg);
    opts.skip_invalid = true;
    let r = build_epoch(&opts).unwrap();
    assert_eq!(r.rejected.len(), 1);
    assert_eq!(r.rejected[0].line, rows.len() as u64 + 2);
    assert_eq!(r.epoch_number, 2);
    assert_eq!(r.previous_epoch, Some(1));
    assert!(!r.new_key_period);
    assert_eq!(
        (r.added, r.removed, r.relabelled, r.evaluated),
        (0, 0, 0, 0)
    );
}

fn build_with(data: &Path, reg: &Path, new_key_period: bool) -> nayose_server::BuildReport {
    let mut o = BuildOptions::new(data, reg);
    o.new_key_period = new_key_period;
    build_epoch(&o).unwrap()
}

#[test]
fn delta_builds_evaluate_only_added_numbers_and_key_periods_are_explicit() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let reg = tmp.path().join("registry.csv");
    let rows = registry_rows(60, 0);
    write_registry(&reg, &rows);
    let first = build(&data, &reg);
    assert_eq!(first.epoch_number, 1);
    assert!(first.new_key_period && first.previous_epoch.is_none());
    assert_eq!(first.key_period_number, 1);
    assert!(first.key_period.starts_with("1-"), "{}", first.key_period);
    assert_eq!(first.added, first.numbers);
    assert_eq!(first.evaluated, first.numbers);
    assert_eq!((first.removed, first.relabelled), (0, 0));
    // One VOPRF key per key period, and no key in the epoch directory.
    let kp1 = data.join("keyperiods").join(format!("{:020}", 1));
    for f in ["oprf.key", "label-master.key"] {
        assert_eq!(
            fs::metadata(kp1.join(f)).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let e1 = data.join("epochs").join(format!("{:020}", 1));
    assert!(!e1.join("oprf.key").exists() && !e1.join("label-master.key").exists());
    assert!(!data.join("deltas").join(format!("{:020}.bin", 1)).exists());

    // Epoch 2: drop 5 numbers, move 4 numbers to another person, add 7 new numbers.
    let mut next: Vec<Row> = rows[5..].to_vec();
    for r in next.iter_mut().take(4) {
        r.person = format!("{}-moved", r.person);
    }
    let extra = registry_rows(7, 500);
    next.extend(extra.iter().take(7).map(|r| Row {
        person: format!("N{}", r.person),
        number: format!("9{}", r.number),
        ..r.clone()
    }));
    write_registry(&reg, &next);
    let second = build(&data, &reg);
    assert_eq!(second.epoch_number, 2);
    assert_eq!(second.previous_epoch, Some(1));
    assert_eq!(second.key_period, first.key_period, "same key period");
    assert_eq!(second.public_key, first.public_key, "no new key");
    assert!(!second.new_key_period);
    assert_eq!((second.added, second.removed, second.relabelled), (7, 5, 4));
    assert_eq!(second.evaluated, 7, "only the added numbers are evaluated");
    assert_eq!(second.numbers, first.numbers - 5 + 7);
    assert_ne!(second.digest, first.digest);
    let text = second.to_string();
    assert!(
        text.contains("added            7") && text.contains("relabelled       4"),
        "{text}"
    );
    assert!(data.join("deltas").join(format!("{:020}.bin", 2)).exists());

    // Epoch 3: the same registry: an empty delta, only the digest changes (epoch number).
    let third = build(&data, &reg);
    assert_eq!(
        (
            third.added,
            third.removed,
            third.relabelled,
            third.evaluated
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(third.numbers, second.numbers);
    assert_ne!(third.digest, second.digest);
    let cur = check_current_epoch(&data).unwrap();
    assert_eq!((cur.number, cur.oldest_delta_base), (3, 1));
    assert_eq!(cur.digest, third.digest);

    // A new key period only when asked: fresh key, everything evaluated, no delta.
    let fourth = build_with(&data, &reg, true);
    assert_eq!(fourth.epoch_number, 4);
    assert!(fourth.new_key_period && fourth.previous_epoch.is_none());
    assert_eq!(fourth.key_period_number, 2);
    assert_ne!(fourth.public_key, first.public_key);
    assert_eq!(fourth.evaluated, fourth.numbers);
    let cur = check_current_epoch(&data).unwrap();
    assert_eq!((cur.number, cur.oldest_delta_base), (4, 4));
    // The old key period's deltas are gone; its key period directory stays while an epoch of
    // it is kept (keep_epochs = 2: epoch 3).
    assert!(!data.join("deltas").join(format!("{:020}.bin", 2)).exists());
    assert!(kp1.exists());
    let fifth = build(&data, &reg);
    assert_eq!((fifth.epoch_number, fifth.key_period_number), (5, 2));
    assert!(
        !kp1.exists(),
        "a key period no kept epoch uses is destroyed"
    );

    // Rotating K_L takes effect only with a new key period; until then builds are refused.
    let rot = rotate_label_master_key(&data).unwrap();
    assert!(rot.to_string().contains("NEW KEY PERIOD"), "{rot}");
    let e = build_epoch(&BuildOptions::new(&data, &reg))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("start a new key period (--new-key-period) to use the rotated label master key"),
        "{e}"
    );
    assert_eq!(check_current_epoch(&data).unwrap().number, 5);
    let sixth = build_with(&data, &reg, true);
    assert_eq!(sixth.label_master_key_id, rot.new_key_id.to_string());
    assert_ne!(sixth.label_master_key_id, fifth.label_master_key_id);
    assert!(
        sixth.epoch_number > 5,
        "numbers are never reused, even after a refusal"
    );
}

#[test]
fn every_injected_failure_leaves_the_previous_epoch_current() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &registry_rows(30, 0));
    let first = build(&data, &reg);
    write_registry(&reg, &registry_rows(40, 7));
    for fp in [
        FailPoint::AfterTableWritten,
        FailPoint::BeforeEpochRename,
        FailPoint::BeforeCurrentSwitch,
    ] {
        let mut opts = BuildOptions::new(&data, &reg);
        opts.fail_at = Some(fp);
        let e = build_epoch(&opts).unwrap_err();
        assert!(
            matches!(e, ServerError::InjectedFailure(p) if p == fp),
            "{e}"
        );
        let cur = check_current_epoch(&data).unwrap();
        assert_eq!(cur.number, first.epoch_number, "after {fp:?}");
        assert_eq!(cur.entries, first.numbers);
        assert_eq!(cur.digest, first.digest);
        let names: Vec<String> = fs::read_dir(data.join("epochs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let unfinished = names.iter().filter(|n| n.starts_with(".build-")).count();
        match fp {
            // An unfinished build directory is left (and ignored by every reader).
            FailPoint::AfterTableWritten | FailPoint::BeforeEpochRename => {
                assert_eq!(unfinished, 1, "{names:?}")
            }
            // A complete epoch directory exists but `current` does not name it.
            FailPoint::BeforeCurrentSwitch => {
                assert_eq!(unfinished, 0, "{names:?}");
                assert_eq!(names.len(), 2, "{names:?}");
            }
        }
    }
    // A failed new key period leaves the old one current, and the next ordinary build
    // continues it (the orphan key period is never adopted).
    let mut opts = BuildOptions::new(&data, &reg);
    opts.new_key_period = true;
    opts.fail_at = Some(FailPoint::BeforeCurrentSwitch);
    assert!(build_epoch(&opts).is_err());
    assert_eq!(
        check_current_epoch(&data).unwrap().key_period,
        first.key_period
    );
    // The next build cleans up and publishes a higher number, as a delta of the first epoch.
    let next = build(&data, &reg);
    assert!(next.epoch_number > first.epoch_number + 1);
    assert_eq!(next.previous_epoch, Some(first.epoch_number));
    assert_eq!(next.key_period, first.key_period);
    assert_eq!(
        check_current_epoch(&data).unwrap().number,
        next.epoch_number
    );
    assert_eq!(
        check_current_epoch(&data).unwrap().oldest_delta_base,
        first.epoch_number,
        "the chain skips the numbers of failed builds"
    );
    // Only the published delta is kept; orphan deltas of failed builds are removed.
    let deltas: Vec<String> = fs::read_dir(data.join("deltas"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(deltas, vec![format!("{:020}.bin", next.epoch_number)]);
    assert!(!fs::read_dir(data.join("epochs")).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".build-")
    }));
}

/// Runs only as the child of `a_build_killed_at_any_moment_leaves_a_servable_epoch`.
#[test]
fn child_build_process() {
    let (Ok(data), Ok(reg)) = (
        std::env::var("NAYOSE_TEST_CHILD_DATA"),
        std::env::var("NAYOSE_TEST_CHILD_REGISTRY"),
    ) else {
        return;
    };
    build_epoch(&BuildOptions::new(&data, &reg)).unwrap();
}

#[test]
fn a_build_killed_at_any_moment_leaves_a_servable_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let small = tmp.path().join("small.csv");
    write_registry(&small, &registry_rows(30, 0));
    let first = build(&data, &small);
    let big = tmp.path().join("big.csv");
    write_registry(&big, &registry_rows(6_000, 3));
    let exe = std::env::current_exe().unwrap();
    let mut current = first.epoch_number;
    let mut published = 0;
    for delay_ms in [
        0u64, 10, 30, 60, 100, 150, 200, 300, 400, 600, 900, 1300, 2000, 4000,
    ] {
        let mut child = std::process::Command::new(&exe)
            .args(["--exact", "child_build_process", "--test-threads=1"])
            .env("NAYOSE_TEST_CHILD_DATA", &data)
            .env("NAYOSE_TEST_CHILD_REGISTRY", &big)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        // Whatever the moment, `current` names a complete epoch that passes every check: the
        // previous one, or (if the child finished) the new one.
        let now = check_current_epoch(&data).unwrap();
        if now.number != current {
            assert!(
                status.success(),
                "a new epoch became current only after a full build"
            );
            assert_eq!(now.entries, 12_000);
            published += 1;
            current = now.number;
        }
    }
    eprintln!("{published} of 14 killed builds had finished");
    // A normal build afterwards still works.
    let last = build(&data, &small);
    assert_eq!(
        check_current_epoch(&data).unwrap().number,
        last.epoch_number
    );
    assert_eq!(last.key_period, first.key_period);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_files_readable_by_others_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"), "CA");
    let data = tmp.path().join("data");
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &registry_rows(10, 0));
    let r = build(&data, &reg);
    let key = data
        .join("keyperiods")
        .join(format!("{:020}", r.key_period_number))
        .join("oprf.key");
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
    let clients = "[[client]]\nid = \"a\"\nevaluations_per_day = 1\n";
    let err = Server::start(config(&pki, &data, clients))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("oprf.key") && err.contains("chmod 600"),
        "{err}"
    );
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(
        pki.dir.join("server.key"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let err = Server::start(config(&pki, &data, clients))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("server.key") && err.contains("chmod 600"),
        "{err}"
    );
}

fn copy_audit(from: &Path, to: &Path) {
    fs::create_dir_all(to.join("audit")).unwrap();
    for f in ["audit.log", "audit.head"] {
        fs::copy(from.join("audit").join(f), to.join("audit").join(f)).unwrap();
    }
}

fn lines(p: &Path) -> Vec<String> {
    fs::read_to_string(p.join("audit/audit.log"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(p: &Path, l: &[String]) {
    let mut s = l.join("\n");
    s.push('\n');
    fs::write(p.join("audit/audit.log"), s).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_chain_detects_modified_removed_and_truncated_records() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"), "CA");
    let data = tmp.path().join("data");
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &registry_rows(10, 0));
    build(&data, &reg);
    let clients = "[[client]]\nid = \"hosp-a\"\nevaluations_per_day = 10\n";
    let server = Server::start(config(&pki, &data, clients)).await.unwrap();
    let (cert, key) = pki.client("hosp-a");
    let ep = client_endpoint(&pki.ca_pem(), Some((&cert, &key)));
    let conn = connect(&ep, server.local_addr()).await.unwrap();
    for _ in 0..5 {
        info(&conn).await;
    }
    conn.close(0u32.into(), b"");
    server.shutdown().await;

    // connected, 5 × Info, closed.
    let ok = verify_audit(&data).unwrap();
    assert_eq!(ok.records, 7);
    assert_eq!(ok.anchored, 7);
    assert!(ok.to_string().contains("7 records"));
    let original = lines(&data);
    assert_eq!(original.len(), 7);
    assert!(original[0].contains("\"event\":\"connected\""));
    assert!(original[6].contains("\"event\":\"closed\""));

    // Modified record in the middle: the next record's prev no longer matches.
    let d = tmp.path().join("modified");
    copy_audit(&data, &d);
    let mut l = original.clone();
    l[1] = l[1].replace("\"op\":\"Info\"", "\"op\":\"FetchBase\"");
    write_lines(&d, &l);
    let e = verify_audit(&d).unwrap_err().to_string();
    assert!(
        e.contains("record 3") && e.contains("record 2 was modified"),
        "{e}"
    );

    // Modified last record: the head's hash no longer matches.
    let d = tmp.path().join("modified-last");
    copy_audit(&data, &d);
    let mut l = original.clone();
    l[6] = l[6].replace("hosp-a", "hosp-b");
    write_lines(&d, &l);
    let e = verify_audit(&d).unwrap_err().to_string();
    assert!(e.contains("record 7") && e.contains("head"), "{e}");

    // Removed record.
    let d = tmp.path().join("removed");
    copy_audit(&data, &d);
    let mut l = original.clone();
    l.remove(2);
    write_lines(&d, &l);
    let e = verify_audit(&d).unwrap_err().to_string();
    assert!(e.contains("line 3 has seq 4"), "{e}");

    // Truncated: the last two records gone.
    let d = tmp.path().join("truncated");
    copy_audit(&data, &d);
    write_lines(&d, &original[..5]);
    let e = verify_audit(&d).unwrap_err().to_string();
    assert!(
        e.contains("truncated") && e.contains("2 record(s) missing"),
        "{e}"
    );

    // Head file deleted while records exist.
    let d = tmp.path().join("headless");
    copy_audit(&data, &d);
    fs::remove_file(d.join("audit/audit.head")).unwrap();
    assert!(
        verify_audit(&d)
            .unwrap_err()
            .to_string()
            .contains("head file is missing")
    );

    // A torn final line (crash mid-append) is reported, not an error; the server repairs it.
    let mut s = fs::read(data.join("audit/audit.log")).unwrap();
    s.extend_from_slice(b"{\"seq\":8,\"ti");
    fs::write(data.join("audit/audit.log"), &s).unwrap();
    let torn = verify_audit(&data).unwrap();
    assert!(torn.torn_tail && torn.records == 7);

    // The server refuses to append to a broken chain, and repairs a torn one.
    let broken = tmp.path().join("modified");
    let mut cfg = config(&pki, &data, clients);
    cfg.data_dir = Some(data.clone());
    let server = Server::start(cfg).await.unwrap();
    let conn = connect(&ep, server.local_addr()).await.unwrap();
    let _ = request(&conn, &Request::Info).await.unwrap();
    conn.close(0u32.into(), b"");
    server.shutdown().await;
    let after = verify_audit(&data).unwrap();
    assert!(!after.torn_tail);
    assert_eq!(after.records, 10);

    let bad_data = tmp.path().join("bad-data");
    fs::create_dir_all(&bad_data).unwrap();
    // A data dir whose audit log is broken: copy the epoch and the broken audit.
    for e in ["current", "label-master.key"] {
        fs::copy(data.join(e), bad_data.join(e)).unwrap();
    }
    for d in ["epochs", "keyperiods", "deltas"] {
        copy_dir(&data.join(d), &bad_data.join(d));
    }
    copy_audit(&broken, &bad_data);
    let err = Server::start(config(&pki, &bad_data, clients))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("broken chain") || err.contains("modified"),
        "{err}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_second_build_while_one_holds_the_lock_fails_and_publishes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &registry_rows(30, 0));
    let first = build(&data, &reg);
    write_registry(&reg, &registry_rows(40, 7));
    let before = (
        listing(&data.join("epochs")),
        listing(&data.join("deltas")),
        fs::read_to_string(data.join("last-epoch")).unwrap(),
        fs::read_to_string(data.join("current")).unwrap(),
    );
    // The running build: it holds the exclusive lock on DATA_DIR/build.lock.
    let lock_path = data.join("build.lock");
    let held = fs::OpenOptions::new().write(true).open(&lock_path).unwrap();
    held.lock().unwrap();
    let e = build_epoch(&BuildOptions::new(&data, &reg)).unwrap_err();
    assert!(matches!(e, ServerError::BuildLocked { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&lock_path.display().to_string()) && msg.contains("another build"),
        "{msg}"
    );
    // Nothing was allocated or written.
    let after = (
        listing(&data.join("epochs")),
        listing(&data.join("deltas")),
        fs::read_to_string(data.join("last-epoch")).unwrap(),
        fs::read_to_string(data.join("current")).unwrap(),
    );
    assert_eq!(before, after);
    assert_eq!(
        check_current_epoch(&data).unwrap().number,
        first.epoch_number
    );
    // Once the first build is done, building works again.
    drop(held);
    let next = build(&data, &reg);
    assert_eq!(next.epoch_number, first.epoch_number + 1);
    // The delta reached deltas/ and left no copy in the epoch directory.
    assert!(
        data.join("deltas")
            .join(format!("{:020}.bin", next.epoch_number))
            .exists()
    );
    assert!(
        !data
            .join("epochs")
            .join(format!("{:020}", next.epoch_number))
            .join("delta.bin")
            .exists()
    );
}

#[test]
fn a_delta_file_other_than_the_one_its_epoch_was_built_with_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let other = tmp.path().join("other");
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &registry_rows(30, 0));
    build(&data, &reg);
    // Same key period, same epoch numbers, different registries: each delta is valid on its
    // own (checksum, key period, epochs), but the two give different labels to one version.
    copy_dir(&data, &other);
    let mut a = registry_rows(30, 0);
    a[0].person = "moved-A".into();
    let mut b = registry_rows(30, 0);
    // (Persons are stored by serial: a new person in each directory would get the same next
    // serial, so B moves the number to an existing person instead.)
    b[0].person = b[b.len() - 1].person.clone();
    assert_ne!(b[0].person, a[0].person);
    write_registry(&reg, &a);
    assert_eq!(build(&data, &reg).epoch_number, 2);
    write_registry(&reg, &b);
    assert_eq!(build(&other, &reg).epoch_number, 2);
    let delta = |d: &Path, n: u32| d.join("deltas").join(format!("{n:020}.bin"));
    let original = fs::read(delta(&data, 2)).unwrap();
    assert_ne!(original, fs::read(delta(&other, 2)).unwrap());

    // The current epoch's delta replaced by the other build's.
    fs::copy(delta(&other, 2), delta(&data, 2)).unwrap();
    let e = check_current_epoch(&data).unwrap_err().to_string();
    assert!(
        e.contains("delta of epoch 2") && e.contains("manifest of epoch 2"),
        "{e}"
    );
    fs::write(delta(&data, 2), &original).unwrap();
    assert_eq!(check_current_epoch(&data).unwrap().number, 2);

    // An earlier delta of the chain, while its epoch directory is kept.
    write_registry(&reg, &a);
    assert_eq!(build(&data, &reg).epoch_number, 3);
    fs::copy(delta(&other, 2), delta(&data, 2)).unwrap();
    let e = check_current_epoch(&data).unwrap_err().to_string();
    assert!(
        e.contains("delta of epoch 2") && e.contains("manifest of epoch 2"),
        "{e}"
    );
}

#[test]
fn a_build_removes_temporary_files_of_writes_killed_before_their_rename() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &registry_rows(30, 0));
    build(&data, &reg);
    fs::create_dir_all(data.join("state")).unwrap();
    // Left by processes killed (SIGKILL) between writing and renaming: pid 4294967 is above
    // Linux's pid_max, so its writer is certainly gone.
    let dead = "tmp-4294967-00000000deadbeef";
    let stale = [
        data.join(format!(".current.{dead}")),
        data.join("deltas").join(format!(".{:020}.bin.{dead}", 9)),
        data.join("state").join(format!(".quota.json.{dead}")),
        data.join("keyperiods")
            .join(format!("{:020}", 1))
            .join(format!(".oprf.key.{dead}")),
    ];
    // A server of this (live) process writing its quota state right now.
    let live = data.join("state").join(format!(
        ".quota.json.tmp-{}-0000000000000001",
        std::process::id()
    ));
    for p in stale.iter().chain([&live]) {
        write_private(p, "secret");
    }
    build(&data, &reg);
    for p in &stale {
        assert!(!p.exists(), "{} survived the build", p.display());
    }
    assert!(
        live.exists(),
        "a live writer's temporary file is left alone"
    );
}

#[test]
fn keep_epochs_below_two_still_keeps_the_previous_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &registry_rows(20, 0));
    for keep in [0, 1, 1] {
        let mut o = BuildOptions::new(&data, &reg);
        o.keep_epochs = keep;
        build_epoch(&o).unwrap();
    }
    let epochs = listing(&data.join("epochs"));
    assert_eq!(epochs, vec![format!("{:020}", 2), format!("{:020}", 3)]);
}
