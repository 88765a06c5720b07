//! The client core against an in-memory server, on a seeded RNG: sync from several epochs
//! behind, compaction, a key-period change, an epoch change in the middle of a run, transit
//! failures and a crash between any two steps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use nayose_proto::{LinkResult, ProtoError, SyncKind};
use nayose_table::ClientId;

fn client() -> ClientId {
    ClientId::new("hospital-a").unwrap()
}

fn no_perturb() -> impl FnMut(u64, &mut ModelServer) -> Option<Fail> {
    |_, _| None
}

/// A link run without perturbation that must succeed.
fn link(
    server: &mut ModelServer,
    disk: &mut Disk,
    seeds: &[u64],
    rng: u64,
) -> (LinkResult, Traffic) {
    run(server, disk, &client(), seeds, rng, &mut no_perturb())
        .unwrap()
        .unwrap()
}

/// A server over `reg` and a client disk after one successful run over [`held`].
fn linked_once(seed: u64, reg: std::collections::BTreeMap<u64, String>) -> (ModelServer, Disk) {
    let mut server = ModelServer::new(seed, reg);
    let mut disk = Disk::default();
    link(&mut server, &mut disk, &held(), 1);
    (server, disk)
}

/// Holds numbers 0..40 and 1000..1005 (unknown to the server).
fn held() -> Vec<u64> {
    (0..40).chain(1000..1005).collect()
}

#[test]
fn first_run_downloads_a_base_and_a_rerun_costs_nothing() {
    let mut server = ModelServer::new(1, registry(0..100, 30));
    let mut disk = Disk::default();
    let c = client();
    let seeds = held();
    let (r, t1) = link(&mut server, &mut disk, &seeds, 7);
    assert_eq!(r.evaluated, seeds.len() as u64);
    assert_eq!(
        r.sync,
        SyncKind::Base {
            epoch: 1,
            resumed_from: 0
        }
    );
    assert_labels(&server, &c, &seeds, &r);
    assert_eq!(r.matches.matched(), 40);

    let evaluations = server.evaluations;
    let (r2, t2) = link(&mut server, &mut disk, &seeds, 8);
    assert_eq!(r2.evaluated, 0, "outputs come from the OPRF cache");
    assert_eq!(r2.from_cache, seeds.len() as u64);
    assert_eq!(server.evaluations, evaluations, "nothing charged");
    assert_eq!(r2.sync, SyncKind::Current { epoch: 1 });
    assert_eq!(t2.requests, 1, "only Info");
    assert!(t2.frames < t1.frames);
    assert_labels(&server, &c, &seeds, &r2);
}

#[test]
fn several_epochs_behind_syncs_by_deltas_and_evaluates_only_new_numbers() {
    let (mut server, mut disk) = linked_once(2, registry(0..100, 30));
    let c = client();
    let mut seeds = held();
    // Three epochs: adds, removals, relabels (a number moves to another person), merges.
    let mut reg = server.registry.clone();
    reg.remove(&3);
    reg.insert(200, "P7".into());
    reg.insert(5, "P99".into());
    server.advance(reg.clone());
    reg.insert(1001, "P5".into()); // a number the client holds becomes known
    server.advance(reg.clone());
    reg.insert(6, "P5".into());
    reg.remove(&7);
    server.advance(reg);
    seeds.push(200); // a new held number
    let before = server.evaluations;
    let (r, _) = link(&mut server, &mut disk, &seeds, 2);
    assert_eq!(r.sync, SyncKind::Delta { from: 1, to: 4 });
    assert_eq!(r.evaluated, 1, "only the new held number");
    assert_eq!(server.evaluations - before, 1);
    assert_eq!(r.delta_counts.removed, 2);
    assert_labels(&server, &c, &seeds, &r);
    assert!(
        r.matches
            .label(seeds.iter().position(|s| *s == 1001).unwrap())
            .is_some()
    );
}

#[test]
fn compacted_history_falls_back_to_a_base() {
    let (mut server, mut disk) = linked_once(3, registry(0..60, 20));
    let c = client();
    let seeds = held();
    let mut reg = server.registry.clone();
    reg.insert(300, "P1".into());
    server.advance(reg.clone());
    reg.insert(301, "P1".into());
    server.advance(reg);
    server.compacted_through = 2; // the delta of epoch 2 is gone
    let (r, _) = link(&mut server, &mut disk, &seeds, 2);
    assert_eq!(
        r.sync,
        SyncKind::Base {
            epoch: 3,
            resumed_from: 0
        }
    );
    assert_eq!(r.evaluated, 0);
    assert_labels(&server, &c, &seeds, &r);
}

#[test]
fn a_new_key_period_starts_over_and_old_outputs_are_not_used() {
    let (mut server, mut disk) = linked_once(4, registry(0..60, 20));
    let c = client();
    let seeds = held();
    server.new_key_period();
    let (r, _) = link(&mut server, &mut disk, &seeds, 2);
    assert_eq!(
        r.evaluated,
        seeds.len() as u64,
        "new key, every number again"
    );
    assert!(matches!(r.sync, SyncKind::Base { .. }));
    assert_eq!(r.key_period, server.kp);
    assert_labels(&server, &c, &seeds, &r);
}

#[test]
fn a_key_period_change_in_the_middle_of_a_run_restarts_it() {
    let mut server = ModelServer::new(5, registry(0..60, 20));
    let mut disk = Disk::default();
    let c = client();
    let seeds = held();
    let mut once = false;
    let mut perturb = |n: u64, s: &mut ModelServer| {
        if n == 3 && !once {
            once = true;
            s.new_key_period();
        }
        None
    };
    let (r, _) = run(&mut server, &mut disk, &c, &seeds, 1, &mut perturb)
        .unwrap()
        .unwrap();
    assert_eq!(r.key_period, server.kp);
    assert_labels(&server, &c, &seeds, &r);
}

#[test]
fn an_epoch_change_during_a_base_download_restarts_the_sync_at_the_new_epoch() {
    let mut server = ModelServer::new(6, registry(0..80, 20));
    server.chunk = 5;
    let mut disk = Disk::default();
    let c = client();
    let seeds = held();
    let mut done = false;
    let mut perturb = |_n: u64, s: &mut ModelServer| {
        // Before the first FetchBase is answered (after Info and the Evaluate batches).
        if !done && s.evaluations >= 45 {
            done = true;
            let mut reg = s.registry.clone();
            reg.insert(500, "P3".into());
            reg.insert(2, "P77".into());
            s.advance(reg);
        }
        None
    };
    let (r, _) = run(&mut server, &mut disk, &c, &seeds, 1, &mut perturb)
        .unwrap()
        .unwrap();
    assert_eq!(r.epoch, 2);
    assert_labels(&server, &c, &seeds, &r);
}

#[test]
fn a_base_download_resumes_at_its_offset_after_a_transit_failure_and_after_a_crash() {
    let mut server = ModelServer::new(7, registry(0..90, 20));
    server.chunk = 4;
    let mut disk = Disk::default();
    let c = client();
    let seeds = held();
    // A stream fails after 5 chunks; then the client crashes on the next FetchBase.
    let mut fetches = 0;
    let mut perturb = |_n: u64, s: &mut ModelServer| {
        if s.evaluations >= seeds.len() as u64 {
            fetches += 1;
            return match fetches {
                1 => Some(Fail::Transit { frames: 5 }),
                2 => Some(Fail::Transit { frames: 3 }),
                3 => Some(Fail::Crash),
                _ => None,
            };
        }
        None
    };
    assert!(
        run(&mut server, &mut disk, &c, &seeds, 1, &mut perturb)
            .unwrap()
            .is_none()
    );
    let held_partial = disk.partial.as_ref().map_or(0, |p| p.len());
    assert_eq!(held_partial, 32, "8 chunks of 4 entries persisted");
    let evaluations = server.evaluations;
    let (r, _) = link(&mut server, &mut disk, &seeds, 2);
    assert_eq!(
        r.sync,
        SyncKind::Base {
            epoch: 1,
            resumed_from: 32
        }
    );
    assert_eq!(
        server.evaluations, evaluations,
        "outputs were cached before the crash"
    );
    assert_labels(&server, &c, &seeds, &r);
}

#[test]
fn a_crash_between_any_two_steps_recovers_to_the_same_result() {
    for crash_at in 1..14u64 {
        let mut server = ModelServer::new(8, registry(0..50, 15));
        server.chunk = 9;
        let mut disk = Disk::default();
        let c = client();
        let seeds = held();
        link(&mut server, &mut disk, &seeds, 1);
        let mut reg = server.registry.clone();
        reg.insert(77, "P2".into());
        reg.remove(&4);
        reg.insert(8, "P40".into());
        server.advance(reg);
        let mut more = seeds.clone();
        more.extend(400..420);
        let mut perturb = |n: u64, _s: &mut ModelServer| (n == crash_at).then_some(Fail::Crash);
        let first = run(&mut server, &mut disk, &c, &more, 2, &mut perturb).unwrap();
        let (r, _) = match first {
            Some(done) => done,
            None => link(&mut server, &mut disk, &more, 3),
        };
        assert_eq!(r.epoch, 2, "crash at request {crash_at}");
        assert_labels(&server, &c, &more, &r);
    }
}

#[test]
fn a_damaged_cached_state_is_replaced_by_a_base() {
    let (mut server, mut disk) = linked_once(9, registry(0..50, 15));
    let c = client();
    let seeds = held();
    // Drop one entry from the cached state: it no longer matches the digest.
    let t = disk.table.take().unwrap();
    let mut entries: Vec<_> = t.entries().iter().map(|e| (e.tag, e.label)).collect();
    entries.remove(10);
    let block = nayose_table::EntryBlock::encode(&entries).unwrap();
    disk.table = Some(
        nayose_table::ClientTable::from_base(t.key_period(), t.epoch(), t.chain(), vec![block])
            .unwrap(),
    );
    let (r, _) = link(&mut server, &mut disk, &seeds, 2);
    assert!(matches!(r.sync, SyncKind::Base { .. }));
    assert_labels(&server, &c, &seeds, &r);
}

#[test]
fn a_batch_refused_as_too_large_is_sent_again_in_halves() {
    let mut server = ModelServer::new(10, registry(0..50, 15));
    server.max_batch = 64;
    let mut disk = Disk::default();
    let c = client();
    let seeds = held();
    let mut perturb = |n: u64, s: &mut ModelServer| {
        if n == 2 {
            s.max_batch = 5; // the server's limit shrank after Info
        }
        None
    };
    let (r, _) = run(&mut server, &mut disk, &c, &seeds, 1, &mut perturb)
        .unwrap()
        .unwrap();
    assert_eq!(r.evaluated, seeds.len() as u64);
    assert_labels(&server, &c, &seeds, &r);
}

#[test]
fn too_little_key_period_quota_fails_before_any_evaluation() {
    let mut server = ModelServer::new(11, registry(0..50, 15));
    server.quota_key_period = 10;
    let mut disk = Disk::default();
    let c = client();
    let err = run(&mut server, &mut disk, &c, &held(), 1, &mut no_perturb()).unwrap_err();
    assert!(matches!(err, ProtoError::Quota { need: 45, .. }), "{err}");
    assert_eq!(server.evaluations, 0);
}

#[test]
fn a_delta_interrupted_in_transit_is_fetched_again_as_a_delta() {
    let (mut server, mut disk) = linked_once(12, registry(0..60, 20));
    let c = client();
    let seeds = held();
    let mut reg = server.registry.clone();
    reg.insert(600, "P1".into());
    server.advance(reg.clone());
    reg.insert(601, "P2".into());
    reg.insert(9, "P55".into());
    server.advance(reg);
    // The second request of the rerun is the FetchDelta: it fails after one chunk.
    let mut fetches = 0;
    let mut perturb = |n: u64, _s: &mut ModelServer| {
        if n >= 2 {
            fetches += 1;
            if fetches == 1 {
                return Some(Fail::Transit { frames: 1 });
            }
        }
        None
    };
    let (r, _) = run(&mut server, &mut disk, &c, &seeds, 2, &mut perturb)
        .unwrap()
        .unwrap();
    assert!(
        matches!(r.sync, SyncKind::Delta { to: 3, .. }),
        "{:?}",
        r.sync
    );
    assert_labels(&server, &c, &seeds, &r);
}

#[test]
fn a_delta_that_does_not_apply_falls_back_to_a_base() {
    let (mut server, mut disk) = linked_once(13, registry(0..60, 20));
    let c = client();
    let seeds = held();
    let mut reg = server.registry.clone();
    reg.insert(700, "P1".into());
    server.advance(reg);
    server.break_next_delta = true;
    let (r, _) = link(&mut server, &mut disk, &seeds, 2);
    assert!(
        matches!(r.sync, SyncKind::Base { epoch: 2, .. }),
        "{:?}",
        r.sync
    );
    assert_labels(&server, &c, &seeds, &r);
}

#[test]
fn a_damaged_partial_base_is_downloaded_again_once() {
    let mut server = ModelServer::new(14, registry(0..90, 20));
    server.chunk = 4;
    let mut disk = Disk::default();
    let c = client();
    let seeds = held();
    let mut fetches = 0;
    let mut perturb = |_n: u64, s: &mut ModelServer| {
        if s.evaluations >= seeds.len() as u64 {
            fetches += 1;
            if fetches == 1 {
                return Some(Fail::Crash);
            }
        }
        None
    };
    // Crash on the first FetchBase: nothing downloaded yet; then download part of it.
    assert!(
        run(&mut server, &mut disk, &c, &seeds, 1, &mut perturb)
            .unwrap()
            .is_none()
    );
    // The rerun evaluates nothing: request 1 is Info, 2 the FetchBase (fails after 3 chunks),
    // 3 its resumption (the client crashes).
    let mut perturb = |n: u64, _s: &mut ModelServer| match n {
        2 => Some(Fail::Transit { frames: 3 }),
        3 => Some(Fail::Crash),
        _ => None,
    };
    assert!(
        run(&mut server, &mut disk, &c, &seeds, 2, &mut perturb)
            .unwrap()
            .is_none()
    );
    // Damage a tag in the persisted part so that the order still holds: only the digest at the
    // end can see it.
    let p = disk.partial.take().unwrap();
    assert!(p.len() >= 8);
    let mut blocks = p.blocks().to_vec();
    // The first tag of the second block, moved up by one: still ascending, still decodes.
    let mut tags = Vec::new();
    blocks[1].decode_tags(0, &mut tags).unwrap();
    let mut t = blocks[1].first;
    t.0[8] = t.0[8].wrapping_add(1);
    assert!(t > blocks[1].first && (tags.len() < 2 || t < tags[1]));
    let entries: Vec<_> = tags
        .iter()
        .enumerate()
        .map(|(i, x)| (if i == 0 { t } else { *x }, blocks[1].label(i)))
        .collect();
    blocks[1] = nayose_table::EntryBlock::encode(&entries).unwrap();
    disk.partial = Some(nayose_proto::PartialBase::new(p.key_period(), p.epoch(), blocks).unwrap());
    let (r, _) = link(&mut server, &mut disk, &seeds, 3);
    assert!(
        matches!(
            r.sync,
            SyncKind::Base {
                resumed_from: 0,
                ..
            }
        ),
        "{:?}",
        r.sync
    );
    assert_labels(&server, &c, &seeds, &r);
}
