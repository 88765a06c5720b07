//! Announcements in a whole run (protocol-spec/announcements.md §5): the client core against
//! the in-memory server, trusting an announcement key. A covered server is linked as before,
//! through a delta and a key-period change; an unannounced server, one signing with another key,
//! and one whose announcement is stale (the previous epoch) are refused at Info, before any
//! evaluation or download, and nothing is written to the client's disk.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use nayose_proto::announce::{AnnouncementKey, AnnouncementSigner, Coverage, Fault, Validity};
use nayose_proto::{ProtoError, SyncKind};
use nayose_table::ClientId;

const NOW: i64 = 1_800_000_000;

fn client() -> ClientId {
    ClientId::new("hospital-a").unwrap()
}

fn signer(byte: u8) -> AnnouncementSigner {
    AnnouncementSigner::from_seed(&[byte; 32]).unwrap()
}

fn validity() -> Validity {
    Validity {
        not_before: NOW as u64 - 86_400,
        not_after: NOW as u64 + 86_400,
    }
}

fn held() -> Vec<u64> {
    (0..40).chain(1000..1005).collect()
}

fn trusting(key: &AnnouncementSigner) -> Vec<AnnouncementKey> {
    vec![key.public().clone()]
}

fn refused(
    server: &mut ModelServer,
    disk: &mut Disk,
    trusted: Vec<AnnouncementKey>,
) -> (Fault, u64) {
    let before = server.evaluations;
    let err = run_trusting(
        server,
        disk,
        &client(),
        &held(),
        3,
        &mut |_, _| None,
        trusted,
        NOW,
    )
    .unwrap_err();
    let ProtoError::Announcement { fault, .. } = err else {
        panic!("expected an announcement refusal, got {err}");
    };
    (fault, server.evaluations - before)
}

fn assert_untouched(disk: &Disk) {
    assert!(disk.oprf.is_empty(), "no OPRF output was cached");
    assert!(disk.table.is_none(), "no table was saved");
    assert!(disk.partial.is_none(), "no base was downloaded");
}

#[test]
fn an_announced_server_is_linked_through_a_delta_and_a_new_key_period() {
    let key = signer(7);
    let mut server = ModelServer::new(1, registry(0..100, 30));
    server.announcer = Some((signer(7), validity()));
    let mut disk = Disk::default();
    let c = client();
    let run = |server: &mut ModelServer, disk: &mut Disk| {
        run_trusting(
            server,
            disk,
            &c,
            &held(),
            5,
            &mut |_, _| None,
            trusting(&key),
            NOW,
        )
        .unwrap()
        .unwrap()
        .0
    };
    let r = run(&mut server, &mut disk);
    assert_eq!(
        r.announcement,
        Coverage::Verified {
            signer: key.public().id()
        }
    );
    assert_labels(&server, &c, &held(), &r);

    server.advance(registry(0..110, 31));
    let r = run(&mut server, &mut disk);
    assert_eq!(r.sync, SyncKind::Delta { from: 1, to: 2 });
    assert_labels(&server, &c, &held(), &r);

    server.new_key_period();
    let r = run(&mut server, &mut disk);
    assert!(matches!(r.sync, SyncKind::Base { .. }));
    assert_labels(&server, &c, &held(), &r);
    assert!(matches!(r.announcement, Coverage::Verified { .. }));
}

#[test]
fn an_unannounced_server_is_refused_before_anything_is_used() {
    let mut server = ModelServer::new(1, registry(0..100, 30));
    let mut disk = Disk::default();
    let (fault, charged) = refused(&mut server, &mut disk, trusting(&signer(7)));
    assert_eq!(fault, Fault::Unannounced);
    assert_eq!(charged, 0, "nothing was evaluated");
    assert_untouched(&disk);
}

#[test]
fn a_server_signing_with_another_key_is_refused() {
    let mut server = ModelServer::new(1, registry(0..100, 30));
    server.announcer = Some((signer(8), validity()));
    let mut disk = Disk::default();
    let (fault, charged) = refused(&mut server, &mut disk, trusting(&signer(7)));
    assert_eq!(fault, Fault::UnknownSigner);
    assert_eq!(charged, 0);
    assert_untouched(&disk);
}

#[test]
fn expired_statements_are_refused() {
    let mut server = ModelServer::new(1, registry(0..100, 30));
    server.announcer = Some((
        signer(7),
        Validity {
            not_before: 1,
            not_after: NOW as u64,
        },
    ));
    let mut disk = Disk::default();
    let (fault, _) = refused(&mut server, &mut disk, trusting(&signer(7)));
    assert_eq!(fault, Fault::NotValidNow);
    assert_untouched(&disk);
}

#[test]
fn a_client_without_a_key_links_an_unannounced_server_unchecked() {
    let mut server = ModelServer::new(1, registry(0..100, 30));
    let mut disk = Disk::default();
    let (r, _) = run(
        &mut server,
        &mut disk,
        &client(),
        &held(),
        3,
        &mut |_, _| None,
    )
    .unwrap()
    .unwrap();
    assert_eq!(r.announcement, Coverage::Unchecked);
}
