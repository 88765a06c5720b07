//! Issue 11 item 4, local safety of `server serve` and `server check`: every secret file is
//! owner-only, one server per data directory, epochs only move forward, and a previous epoch is
//! dropped from memory once it is no longer served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use nayose_server::{Server, check_current_epoch};

const CLIENTS: &str = "[[client]]\nid = \"hosp-a\"\nevaluations_per_day = 100\n";

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// Waits until `f` holds, for at most [`STEP`].
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + STEP;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_check_refuse_every_secret_file_readable_by_others() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"), "CA");
    let data = tmp.path().join("data");
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &registry_rows(10, 0));
    let r = build(&data, &reg);
    // A first run with one evaluation creates the state and audit files.
    let server = Server::start(config(&pki, &data, CLIENTS)).await.unwrap();
    let (cert, key) = pki.client("hosp-a");
    let client = client_endpoint(&pki.ca_pem(), Some((&cert, &key)));
    let conn = connect(&client, server.local_addr()).await.unwrap();
    let i = info(&conn).await;
    evaluate(&conn, &i, &[b"x".to_vec()]).await.unwrap();
    conn.close(0u32.into(), b"");
    server.shutdown().await;
    check_current_epoch(&data).unwrap();

    let kp = data
        .join("keyperiods")
        .join(format!("{:020}", r.key_period_number));
    let ep = data.join("epochs").join(current(&data));
    let secrets: Vec<PathBuf> = vec![
        data.join("label-master.key"),
        kp.join("label-master.key"),
        kp.join("oprf.key"),
        ep.join("table.bin"),
        ep.join("persons.bin"),
        ep.join("index.bin"),
        data.join("state/quota.json"),
        data.join("state/served-epoch"),
        data.join("audit/audit.log"),
        data.join("audit/audit.head"),
    ];
    for f in &secrets {
        assert!(f.is_file(), "{} missing", f.display());
        assert_eq!(fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600);
        chmod(f, 0o640);
        let name = f.display().to_string();
        let e = check_current_epoch(&data).unwrap_err().to_string();
        assert!(e.contains(&name) && e.contains("chmod 600"), "check: {e}");
        let e = Server::start(config(&pki, &data, CLIENTS))
            .await
            .unwrap_err();
        let e = e.to_string();
        assert!(e.contains(&name) && e.contains("chmod 600"), "serve: {e}");
        chmod(f, 0o600);
    }
    check_current_epoch(&data).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_one_data_directory_fails_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"), "CA");
    let data = tmp.path().join("data");
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &registry_rows(10, 0));
    build(&data, &reg);
    let first = Server::start(config(&pki, &data, CLIENTS)).await.unwrap();
    let e = Server::start(config(&pki, &data, CLIENTS))
        .await
        .unwrap_err()
        .to_string();
    let lock = data.join("serve.lock").display().to_string();
    assert!(
        e.contains(&lock) && e.contains("another `nayose server serve`"),
        "{e}"
    );
    // A build still runs beside the server (it takes build.lock, not serve.lock).
    write_registry(&reg, &registry_rows(12, 0));
    build(&data, &reg);
    // Once the first server has shut down, the lock is free again (even while its handle
    // lives on).
    first.shutdown().await;
    let second = Server::start(config(&pki, &data, CLIENTS)).await.unwrap();
    assert_eq!(second.epoch(), 2);
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_current_is_never_served_and_the_previous_epoch_is_released() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"), "CA");
    let data = tmp.path().join("data");
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &registry_rows(10, 0));
    build(&data, &reg);
    let epoch1 = current(&data);
    let server = Server::start(config(&pki, &data, CLIENTS)).await.unwrap();
    assert_eq!(server.epochs_in_memory(), vec![1]);

    write_registry(&reg, &registry_rows(14, 0));
    build(&data, &reg);
    let epoch2 = current(&data);
    eventually("epoch 2 not picked up", || server.epoch() == 2).await;
    // No request holds epoch 1: it is gone from memory (dropped, so zeroized).
    eventually("epoch 1 still in memory", || {
        server.epochs_in_memory() == vec![2]
    })
    .await;
    assert_eq!(
        fs::read_to_string(data.join("state/served-epoch")).unwrap(),
        "2\n"
    );

    // `current` rolled back to epoch 1 (its directory is still kept): never switched to.
    fs::write(data.join("current"), format!("{epoch1}\n")).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await; // 6 poll periods
    assert_eq!(server.epoch(), 2);
    assert_eq!(server.epochs_in_memory(), vec![2]);
    // ... and a forward move after the rollback is still picked up.
    write_registry(&reg, &registry_rows(16, 0));
    fs::write(data.join("current"), format!("{epoch2}\n")).unwrap();
    build(&data, &reg);
    eventually("epoch 3 not picked up", || server.epoch() == 3).await;
    server.shutdown().await;
    drop(server);

    // A restart on a rolled-back `current` is refused, and so is `check`.
    fs::write(data.join("current"), format!("{epoch2}\n")).unwrap();
    let e = check_current_epoch(&data).unwrap_err().to_string();
    assert!(
        e.contains("epoch 2") && e.contains("already served epoch 3"),
        "{e}"
    );
    let e = Server::start(config(&pki, &data, CLIENTS))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("already served epoch 3") && e.contains("served-epoch"),
        "{e}"
    );
}
