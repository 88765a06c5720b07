//! Issue 11 item 3, rotation of the audit log by a running server over real QUIC on loopback:
//! `audit.log` is closed as a segment whenever it reaches `audit_rotate_bytes`, the chain (seq,
//! links, audit key) continues across the segments, verification walks them all with the
//! anchors the server wrote, `audit rotate` refuses to run beside the server, a restarted server
//! continues the chain, and archived segments are reported, or verified with `--archive`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;
use nayose_server::{
    AuditKey, AuditRecord, Server, VerifyOptions, rotate_audit, verify_audit_opts,
};

const CLIENTS: &str = "[[client]]\nid = \"hosp-a\"\nevaluations_per_day = 100\n";
const ROTATE_BYTES: u64 = 4096;

/// The closed segments of `data`'s audit log, oldest first.
fn segments(data: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(data.join("audit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with("audit.") && n.ends_with(".log") && n.len() == "audit.".len() + 24
        })
        .collect();
    v.sort();
    v
}

fn records(path: &Path) -> Vec<AuditRecord> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn infos(server: &nayose_server::RunningServer, pki: &Pki, n: usize) {
    let (cert, key) = pki.client("hosp-a");
    let ep = client_endpoint(&pki.ca_pem(), Some((&cert, &key)));
    let conn = connect(&ep, server.local_addr()).await.unwrap();
    for _ in 0..n {
        info(&conn).await;
    }
    conn.close(0u32.into(), b"");
    drop(conn);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_server_rotates_its_audit_log_by_size_and_the_chain_verifies_across_segments() {
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
    let k = AuditKey::load(&key_file, None).unwrap();
    let anchors = tmp.path().join("anchors.jsonl");
    let mut cfg = config(&pki, &data, CLIENTS);
    cfg.audit_key_file = Some(key_file.clone());
    cfg.audit_anchor_file = Some(anchors.clone());
    cfg.audit_rotate_bytes = ROTATE_BYTES;

    let server = Server::start(cfg.clone()).await.unwrap();
    infos(&server, &pki, 60).await;
    // Beside the running server: `audit rotate` refuses and changes nothing; verification
    // works while the server appends.
    let before = segments(&data);
    let e = rotate_audit(
        &data,
        Some(AuditKey::load(&key_file, None).unwrap()),
        "t".into(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("serve.lock") && e.contains("audit_rotate_bytes"),
        "{e}"
    );
    assert_eq!(segments(&data), before);
    let key_opts = VerifyOptions {
        key: Some(&k),
        ..VerifyOptions::default()
    };
    verify_audit_opts(&data, &key_opts).unwrap();
    let head = server.audit_head();
    server.shutdown().await;

    // 60 Info records and the connection's: several segments, each closed at the first record
    // that took it to ROTATE_BYTES, each after the first starting with a `rotated` record.
    let segs = segments(&data);
    assert!(segs.len() >= 3, "{segs:?}");
    let mut all = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        let len = fs::metadata(s).unwrap().len();
        assert!(
            (ROTATE_BYTES..ROTATE_BYTES + 1024).contains(&len),
            "{s:?}: {len} bytes"
        );
        let recs = records(s);
        let name = format!("audit.{:020}.log", recs[0].seq);
        assert_eq!(s.file_name().unwrap().to_string_lossy(), name);
        assert_eq!(recs[0].event == "rotated", i > 0, "{:?}", recs[0]);
        all.extend(recs);
    }
    let live = records(&data.join("audit/audit.log"));
    assert_eq!(live[0].event, "rotated");
    all.extend(live);
    let seqs: Vec<u64> = all.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=all.len() as u64).collect::<Vec<_>>());
    assert!(all.iter().all(|r| r.key_id == k.id()));
    assert_eq!(all.iter().filter(|r| r.op == "Info").count(), 60);

    // Every segment, in order, with the key and the anchor written at shutdown.
    let with_anchors = VerifyOptions {
        anchors: Some(&anchors),
        ..key_opts
    };
    let s = verify_audit_opts(&data, &with_anchors).unwrap();
    assert!(
        s.records >= head.count && s.records == all.len() as u64,
        "{s:?}"
    );
    assert_eq!((s.segments, s.first_verified), (segs.len() as u64, 1));
    assert!(s.anchors_checked >= 1, "{s:?}");
    assert!(verify_audit_opts(&data, &VerifyOptions::default()).is_err());

    // A restart continues the chain in the live file (and rotates further).
    let server = Server::start(cfg.clone()).await.unwrap();
    infos(&server, &pki, 20).await;
    server.shutdown().await;
    let s = verify_audit_opts(&data, &with_anchors).unwrap();
    assert!(s.records > all.len() as u64);
    let segs = segments(&data);

    // The two oldest segments archived: verification starts at the third and says so; with
    // the archive the whole chain verifies again.
    let archive = tmp.path().join("archive");
    fs::create_dir(&archive).unwrap();
    for p in &segs[..2] {
        fs::rename(p, archive.join(p.file_name().unwrap())).unwrap();
    }
    let s = verify_audit_opts(&data, &with_anchors).unwrap();
    let start = records(&segs[2])[0].seq;
    assert_eq!(s.first_verified, start);
    assert!(s.to_string().contains("NOT CHECKED"), "{s}");
    let s = verify_audit_opts(
        &data,
        &VerifyOptions {
            archive: Some(&archive),
            ..with_anchors
        },
    )
    .unwrap();
    assert_eq!((s.first_verified, s.archived_segments), (1, 2));
    // The server starts and appends with the old segments gone (it reads only audit.log).
    let server = Server::start(cfg).await.unwrap();
    infos(&server, &pki, 1).await;
    server.shutdown().await;
    verify_audit_opts(&data, &with_anchors).unwrap();
}
