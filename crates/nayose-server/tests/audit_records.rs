//! Issue 11 item 3, audit records written by a running server: peer-supplied text never enters
//! a record, and the operator's audit key authenticates every record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::*;
use nayose_server::{AuditKey, Server, verify_audit, verify_audit_with};

const CLIENTS: &str = "[[client]]\nid = \"hosp-a\"\nevaluations_per_day = 100\n";
const PATIENT: &str = "patient 01130012:0647:0950759:03";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_close_reason_or_bad_request_never_enters_the_audit_log_and_records_are_keyed() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"), "CA");
    let data = tmp.path().join("data");
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &registry_rows(10, 0));
    build(&data, &reg);
    let key_file = tmp.path().join("audit.key");
    fs::write(&key_file, [42u8; 32]).unwrap();
    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).unwrap();
    let mut cfg = config(&pki, &data, CLIENTS);
    cfg.audit_key_file = Some(key_file.clone());

    let server = Server::start(cfg.clone()).await.unwrap();
    let (cert, key) = pki.client("hosp-a");
    let ep = client_endpoint(&pki.ca_pem(), Some((&cert, &key)));
    let conn = connect(&ep, server.local_addr()).await.unwrap();
    info(&conn).await;
    // An undecodable request whose bytes spell a number: only its code and length are kept.
    let mut frame = (PATIENT.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(PATIENT.as_bytes());
    let _ = request_raw(&conn, &frame).await;
    conn.close(7u32.into(), PATIENT.as_bytes());
    drop(conn);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    server.shutdown().await;

    let log = fs::read_to_string(data.join("audit/audit.log")).unwrap();
    assert!(log.contains("\"event\":\"closed\""), "{log}");
    for secret in ["patient", "0950759", "01130012"] {
        assert!(!log.contains(secret), "{secret} in the audit log:\n{log}");
    }
    assert!(
        log.contains(&format!(
            "closed by peer: code 7 (reason of {} bytes not recorded)",
            PATIENT.len()
        )),
        "{log}"
    );
    assert!(log.contains("\"op\":\"Invalid\""), "{log}");

    // Every record carries the key's id and verifies only with the key.
    let k = AuditKey::load(&key_file, None).unwrap();
    assert_eq!(
        log.lines().count(),
        log.matches(&format!("\"key_id\":\"{}\"", k.id())).count()
    );
    let s = verify_audit_with(&data, Some(&k)).unwrap();
    assert_eq!(s.records as usize, log.lines().count());
    assert!(verify_audit(&data).is_err());

    // The server refuses a key file that is readable by others or inside the data directory,
    // and a keyed log without its key.
    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o644)).unwrap();
    let e = Server::start(cfg.clone()).await.unwrap_err().to_string();
    assert!(e.contains("audit.key") && e.contains("chmod 600"), "{e}");
    let inside = data.join("audit.key");
    fs::write(&inside, [42u8; 32]).unwrap();
    fs::set_permissions(&inside, fs::Permissions::from_mode(0o600)).unwrap();
    let mut c2 = cfg.clone();
    c2.audit_key_file = Some(inside.clone());
    let e = Server::start(c2).await.unwrap_err().to_string();
    assert!(e.contains("inside the data directory"), "{e}");
    fs::remove_file(&inside).unwrap();
    let e = Server::start(config(&pki, &data, CLIENTS))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("--key-file") || e.contains("audit key"), "{e}");
}
