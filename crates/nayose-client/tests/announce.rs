//! Signed announcements over real QUIC on 127.0.0.1 (protocol-spec/announcements.md): a client
//! that trusts the management body's announcement key refuses a server without statements and a
//! server whose statements are signed by another key, writing nothing; it links once the
//! statements are signed with its key, the server picking them up without a restart; a new epoch
//! is refused until it is announced too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use nayose_client::{ClientConfig, ClientError, LinkSummary, NoProgress, ProtoError, link_async};
use nayose_proto::announce::Fault;
use nayose_server::{announce, keygen_announce, public_key_path, read_signing_key};

async fn run(cfg: &ClientConfig) -> Result<LinkSummary, ClientError> {
    tokio::time::timeout(Duration::from_secs(60), link_async(cfg, &NoProgress))
        .await
        .expect("the link run must end in bounded time")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Every regular file under `dir` (none if it does not exist).
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn fault(r: Result<LinkSummary, ClientError>) -> Fault {
    match r {
        Err(ClientError::Link(ProtoError::Announcement { fault, .. })) => fault,
        Err(other) => panic!("expected an announcement refusal, got: {other}"),
        Ok(_) => panic!("expected an announcement refusal, the run succeeded"),
    }
}

/// Signs the current key period and epochs of the fixture with `key`, then waits until the
/// server's epoch watcher (polling every 100 ms) has seen the files.
async fn announce_with(fx: &Fixture, key: &Path) {
    let signer = read_signing_key(key).unwrap();
    let r = announce(&fx.data, &signer, 400, now()).unwrap();
    assert!(!r.written.is_empty() || !r.kept.is_empty());
    tokio::time::sleep(Duration::from_millis(400)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unsigned_and_wrongly_signed_servers_are_refused_and_a_signed_one_is_linked() {
    let fx = Fixture::new(40, |_| {});
    let server = fx.start().await;
    let addr = server.local_addr();
    let trusted = fx.path("announce.key");
    let public = keygen_announce(&trusted).unwrap();
    let other = fx.path("other.key");
    keygen_announce(&other).unwrap();

    let input = fx.path("held.csv");
    let truth = write_held(&input, &fx.reg, 2, 3);
    let out = fx.path("out").join("linked.csv");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let cache = fx.path("cache");
    let mut cfg = fx.client(addr, &input, &out);
    // The public key as a file (relative paths are resolved by ClientConfig::load; here the
    // path is absolute).
    cfg.announcement_keys = Some(vec![
        public_key_path(&trusted).to_string_lossy().into_owned(),
    ]);

    // 1. No statements on the server: refused at Info, nothing used or written.
    assert_eq!(fault(run(&cfg).await), Fault::Unannounced);
    assert!(files_under(out.parent().unwrap()).is_empty(), "no output");
    assert!(files_under(&cache).is_empty(), "nothing cached");

    // 2. Statements signed by a key the client does not trust: refused the same way.
    announce_with(&fx, &other).await;
    assert_eq!(fault(run(&cfg).await), Fault::UnknownSigner);
    assert!(files_under(out.parent().unwrap()).is_empty(), "no output");
    assert!(files_under(&cache).is_empty(), "nothing cached");

    // 3. Signed with the trusted key (replacing the other key's files; no server restart): the
    // run links, and matches the ground truth. The key is given as hex this time.
    announce_with(&fx, &trusted).await;
    cfg.announcement_keys = Some(vec![public.to_hex()]);
    let s = run(&cfg).await.unwrap();
    assert_eq!(s.sync.kind, "base");
    check_ground_truth(&read_output(&out), &truth);

    // Announcing again changes nothing (idempotent).
    let r = announce(&fx.data, &read_signing_key(&trusted).unwrap(), 400, now()).unwrap();
    assert!(r.written.is_empty(), "{:?}", r.written);

    // 4. A new epoch is refused until it is announced: the statement of the previous epoch
    // does not cover it. The verified table of the previous epoch stays as it was.
    let mut reg = fx.reg.clone();
    reg.pop();
    fx.new_epoch(&reg);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let cached_before: Vec<_> = files_under(&cache)
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    assert_eq!(fault(run(&cfg).await), Fault::Unannounced);
    let cached_after: Vec<_> = files_under(&cache)
        .into_iter()
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    assert_eq!(
        cached_before, cached_after,
        "the refused run changed no cache"
    );
    announce_with(&fx, &trusted).await;
    let s = run(&cfg).await.unwrap();
    assert_eq!(s.sync.kind, "delta");
    assert_eq!(s.epoch, server.epoch());

    // A client without a key still links (development), unchecked.
    let mut plain = cfg.clone();
    plain.announcement_keys = None;
    run(&plain).await.unwrap();
    server.shutdown().await;
}

#[test]
fn a_signing_key_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("announce.key");
    keygen_announce(&key).unwrap();
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Never overwritten.
    assert!(keygen_announce(&key).is_err());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let e = read_signing_key(&key).unwrap_err().to_string();
    assert!(e.contains("chmod 600"), "{e}");
}
