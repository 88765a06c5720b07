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

/// Issue 11 item 3, anchors: the server appends the chain's head to `audit_anchor_file` (outside
/// the data directory) at shutdown, `anchor_audit` (`nayose server audit anchor`) appends one on
/// demand, and verification against the anchors detects records cut off the end and history
/// rewritten consistently (which the log and head alone cannot show).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anchors_detect_truncation_and_rewriting_of_anchored_history() {
    use nayose_server::{AuditRecord, anchor_audit, read_anchors, verify_audit_anchored};
    use sha2::{Digest, Sha256};
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"), "CA");
    let data = tmp.path().join("data");
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &registry_rows(10, 0));
    build(&data, &reg);
    let anchors = tmp.path().join("anchors.jsonl");
    let mut cfg = config(&pki, &data, CLIENTS);
    cfg.audit_anchor_file = Some(anchors.clone());

    // An anchors file inside the data directory is refused.
    let mut inside = cfg.clone();
    inside.audit_anchor_file = Some(data.join("anchors.jsonl"));
    let e = Server::start(inside).await.unwrap_err().to_string();
    assert!(e.contains("inside the data directory"), "{e}");

    let server = Server::start(cfg.clone()).await.unwrap();
    let (cert, key) = pki.client("hosp-a");
    let ep = client_endpoint(&pki.ca_pem(), Some((&cert, &key)));
    let conn = connect(&ep, server.local_addr()).await.unwrap();
    for _ in 0..3 {
        info(&conn).await;
    }
    conn.close(0u32.into(), b"");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    server.shutdown().await;
    let head = server.audit_head();
    let list = read_anchors(&anchors).unwrap();
    assert_eq!(list.len(), 1, "the shutdown anchor");
    assert_eq!((list[0].seq, list[0].link.clone()), (head.count, head.hash));

    // More records, then an anchor on demand.
    let server = Server::start(cfg.clone()).await.unwrap();
    let conn = connect(&ep, server.local_addr()).await.unwrap();
    info(&conn).await;
    conn.close(0u32.into(), b"");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    server.shutdown().await;
    let a = anchor_audit(&data, None, &anchors, "2026-01-01T00:00:00Z".into()).unwrap();
    assert_eq!(a.seq, server.audit_head().count);
    let s = verify_audit_anchored(&data, None, &anchors).unwrap();
    assert_eq!(s.anchors_checked, 3);
    assert!(s.to_string().contains("3 checked"), "{s}");
    let e = anchor_audit(&data, None, &data.join("a.jsonl"), String::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("inside the data directory"), "{e}");

    // Rewrite the log as a consistent chain (someone who can write the data directory, no
    // key): cut the last record off, and edit record 2, recomputing every link and the head.
    let text = fs::read_to_string(data.join("audit/audit.log")).unwrap();
    let rewrite = |keep: usize, edit: bool| {
        let mut prev = nayose_server::audit::GENESIS_HASH.to_string();
        let mut out = String::new();
        for (i, line) in text.lines().take(keep).enumerate() {
            let mut r: AuditRecord = serde_json::from_str(line).unwrap();
            if edit && i == 1 {
                r.op = "FetchBase".into();
            }
            r.prev = prev;
            let l = serde_json::to_string(&r).unwrap();
            prev = hex::encode(Sha256::digest(l.as_bytes()));
            out.push_str(&l);
            out.push('\n');
        }
        fs::write(data.join("audit/audit.log"), out).unwrap();
        fs::write(
            data.join("audit/audit.head"),
            format!("{{\"count\":{keep},\"hash\":\"{prev}\"}}"),
        )
        .unwrap();
    };
    let n = text.lines().count();
    rewrite(n - 1, false);
    verify_audit(&data).expect("the log and head alone look fine");
    let e = verify_audit_anchored(&data, None, &anchors)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cut off"), "{e}");
    rewrite(n, true);
    verify_audit(&data).expect("the log and head alone look fine");
    let e = verify_audit_anchored(&data, None, &anchors)
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not match the anchor"), "{e}");
}
