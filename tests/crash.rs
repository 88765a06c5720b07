//! SIGKILL of the management body's processes at random points (issue 11 item 5), through the
//! `nayose` binary over real QUIC on 127.0.0.1:
//!
//! - `server serve` killed while several `client link` runs evaluate and download: the server
//!   is restarted on the same port, every run finishes (it reconnects and re-sends what was not
//!   answered) with the ground truth, and afterwards the quota state holds **at least** every
//!   evaluation that was answered to a client and at most that plus what was in flight at the
//!   kills (a charge is made durable before the evaluation; an evaluated batch stays charged
//!   even if its answer was lost), the audit log verifies (`server audit verify`, over every
//!   segment: the server rotates it every 16 KiB, so kills also fall on rotations), and its
//!   Evaluate records cover every answered evaluation (a record is durable before its answer)
//!   and none beyond the charges. No temporary file of the server is left.
//! - `server build` killed at random points while `serve` runs: the data directory stays
//!   consistent (`server check` passes on the epoch `current` names, the previous one or the
//!   new one), the running server keeps serving it (a link run matches the ground truth), and
//!   the next build succeeds and leaves no unfinished build directory and no temporary file
//!   (they hold keys and person ids).
//!
//! The kill points come from a seeded RNG; the seed is printed, and `NAYOSE_CRASH_SEED=N`
//! reruns a failure. CI runs a few kill points; the long variants are ignored:
//! `cargo test --test crash -- --ignored --nocapture`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CLIENTS: [&str; 3] = ["crash-a", "crash-b", "crash-c"];
/// The clients' Evaluate batch and pipeline (client.toml): what can be in flight per client.
const BATCH: u64 = 32;
const PIPELINE: u64 = 2;
/// The server's `audit_rotate_bytes`: small, so that the log is rotated several times a round
/// and kills also fall on rotations.
const AUDIT_ROTATE_BYTES: u64 = 16_384;

fn seed() -> u64 {
    let seed = std::env::var("NAYOSE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash test seed: {seed} (rerun with NAYOSE_CRASH_SEED={seed})");
    seed
}

/// The world with one certificate per client, all accredited with large quotas, a client.toml
/// per client (fast retries, small batches) and a server.toml (fast epoch polling).
fn setup(persons: usize) -> World {
    let w = world(persons);
    setup_pki_and_epoch(&w, CLIENTS[0]);
    let mut clients = String::new();
    for (i, id) in CLIENTS.iter().enumerate() {
        if i > 0 {
            ok(&["pki", "issue-client", "--dir", &w.s("pki"), "--id", id]);
        }
        clients.push_str(&format!(
            "[[client]]\nid = \"{id}\"\nevaluations_per_day = 100000000\n\
             evaluations_per_key_period = 100000000\n"
        ));
        fs::write(
            w.path(&format!("{id}.toml")),
            format!(
                "batch_size = {BATCH}\npipeline_depth = {PIPELINE}\n[retry]\nmax_attempts = 60\n\
                 initial_backoff_ms = 100\nmax_backoff_ms = 500\nconnect_timeout_ms = 5000\n\
                 request_timeout_ms = 20000\n"
            ),
        )
        .unwrap();
    }
    fs::write(w.path("clients.toml"), clients).unwrap();
    fs::write(
        w.path("server.toml"),
        format!(
            "epoch_poll_ms = 100\nstatus_interval_secs = 0\naudit_rotate_bytes = {AUDIT_ROTATE_BYTES}\n"
        ),
    )
    .unwrap();
    w
}

fn start_server(w: &World, port: u16) -> ServerProc {
    serve_with(w, port, &["--config", &w.s("server.toml")])
}

/// SIGKILL (std's `Child::kill` on Unix), and reap.
fn kill9(server: &mut ServerProc) {
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// A `client link` child for `id` writing `out`, with a cache directory of its own.
fn start_link(w: &World, port: u16, id: &str, out: &str, cache: &str, input: &str) -> Child {
    let mut args = link_args(w, port, id, out);
    args = with_flag(&args, "--cache-dir", Some(&w.s(cache)));
    args = with_flag(&args, "--input", Some(&w.s(input)));
    args.push("--config".into());
    args.push(w.s(&format!("{id}.toml")));
    Command::new(BIN)
        .args(&args)
        .env("LC_ALL", "C")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a link child (bounded) and returns its JSON summary; panics with its stderr if
/// it failed.
fn finish_link(child: Child, what: &str) -> serde_json::Value {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(300))
        .unwrap_or_else(|_| panic!("{what}: the link run did not end within 300 s"))
        .unwrap();
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--json summary")
}

/// Checks every row of an output against the world's ground truth (the output may cover only
/// part of the held file).
fn check_output(w: &World, out: &str) {
    let text = fs::read_to_string(w.path(out)).unwrap();
    let mut rdr = csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let h = rdr.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|x| x == n).unwrap();
    let (id, group, status) = (col("record_id"), col("nayose_group"), col("nayose_status"));
    let mut label_person = BTreeMap::new();
    let mut person_label = BTreeMap::new();
    let mut rows = 0;
    for r in rdr.records() {
        let r = r.unwrap();
        rows += 1;
        match &w.truth[&r[id]] {
            Some(p) => {
                assert_eq!(&r[status], "linked", "{out}: row {}", &r[id]);
                assert_eq!(
                    label_person.entry(r[group].to_owned()).or_insert(p.clone()),
                    p,
                    "{out}: two persons share a group"
                );
                assert_eq!(
                    person_label.entry(p.clone()).or_insert(r[group].to_owned()),
                    &r[group],
                    "{out}: a person split over two groups"
                );
            }
            None => assert_eq!(&r[status], "not_found", "{out}: row {}", &r[id]),
        }
    }
    assert!(rows > 0 && !person_label.is_empty(), "{out}: no rows");
}

/// Whether the temporary file `name` (`.NAME.tmp-PID-RANDOM`) belongs to a running process
/// (the running server writing its audit head right now).
fn of_live_process(name: &str) -> bool {
    name.rsplit_once(".tmp-")
        .and_then(|(_, tail)| tail.split_once('-'))
        .is_some_and(|(pid, _)| Path::new("/proc").join(pid).exists())
}

/// Temporary files the server's atomic writes or a build leave when killed: `.NAME.tmp-…`
/// (of processes that are gone), `.build-…`, `.new-…`, anywhere in the data directory.
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp") && !of_live_process(&name)
            || name.starts_with(".build-")
        {
            out.push(p.clone());
        }
        if name.starts_with(".new-") {
            out.push(p.clone());
        }
        if p.is_dir() {
            out.extend(leftovers(&p));
        }
    }
    out
}

/// (key-period charges per client) of `state/quota.json`.
fn charged(data: &Path) -> BTreeMap<String, u64> {
    let v: serde_json::Value =
        serde_json::from_slice(&fs::read(data.join("state/quota.json")).unwrap()).unwrap();
    v["clients"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, u)| (k.clone(), u["key_period_used"].as_u64().unwrap()))
        .collect()
}

/// The audit log's files: the closed segments (`audit.<20 digits>.log`), then `audit.log`.
fn audit_files(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(data.join("audit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.len() == "audit..log".len() + 20 && n.starts_with("audit.") && n.ends_with(".log")
        })
        .collect();
    files.sort();
    files.push(data.join("audit/audit.log"));
    files
}

/// Elements of the answered Evaluate requests in the audit log (every segment), per client.
fn audited(data: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let text: String = audit_files(data)
        .iter()
        .map(|f| fs::read_to_string(f).unwrap())
        .collect();
    for line in text.lines() {
        let Ok(r) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if r["event"] == "request" && r["op"] == "Evaluate" && r["outcome"] == "ok" {
            *out.entry(r["client"].as_str().unwrap().to_owned())
                .or_default() += r["elements"].as_u64().unwrap();
        }
    }
    out
}

fn serve_kills(rounds: usize, max_kills: usize, persons: usize) {
    let mut rng = StdRng::seed_from_u64(seed());
    let w = setup(persons);
    let data = w.path("server");
    let port = free_udp_port();
    let mut server = start_server(&w, port);

    // A first round without a kill measures how long the runs take: the kill points fall
    // within that time.
    let mut answered: BTreeMap<String, u64> = BTreeMap::new();
    let mut kills = 0u64;
    let mut span = Duration::from_secs(1);
    for round in 0..=rounds {
        let t = Instant::now();
        let children: Vec<(&str, String, Child)> = CLIENTS
            .iter()
            .map(|id| {
                let out = format!("out-{round}-{id}.csv");
                let cache = format!("cache-{round}");
                let child = start_link(&w, port, id, &out, &cache, "held.csv");
                (*id, out, child)
            })
            .collect();
        if round > 0 {
            let n = rng.random_range(1..=max_kills);
            for k in 0..n {
                let at = rng.random_range(0..span.as_millis() as u64 / n as u64 + 1);
                let down = rng.random_range(0..300);
                eprintln!("round {round}: kill {k} after {at} ms, restart after {down} ms");
                thread::sleep(Duration::from_millis(at));
                kill9(&mut server);
                kills += 1;
                thread::sleep(Duration::from_millis(down));
                server = start_server(&w, port);
            }
        }
        for (id, out, child) in children {
            let s = finish_link(child, &format!("round {round}, {id}"));
            check_output(&w, &out);
            assert_eq!(s["sync"]["kind"], "base", "a fresh cache downloads a base");
            *answered.entry(id.to_owned()).or_default() += s["evaluated_numbers"].as_u64().unwrap();
        }
        if round == 0 {
            span = t.elapsed();
            eprintln!("an uninterrupted round takes {} ms", span.as_millis());
        }
    }
    // A last kill with nothing running, then a restart: the server starts on what it left.
    kill9(&mut server);
    let server = start_server(&w, port);
    drop(server);

    let charged = charged(&data);
    let audited = audited(&data);
    let in_flight = kills * BATCH * PIPELINE;
    eprintln!(
        "{kills} kills; per client: answered {answered:?}, audited {audited:?}, charged {charged:?}"
    );
    for id in CLIENTS {
        let (a, r, c) = (answered[id], audited[id], charged[id]);
        assert!(r >= a, "{id}: answered evaluations without an audit record");
        assert!(c >= r, "{id}: audited evaluations that were not charged");
        assert!(
            c - a <= in_flight,
            "{id}: {c} charged, {a} answered: more than the {in_flight} in flight at the kills"
        );
    }
    let segments = audit_files(&data).len() - 1;
    eprintln!("the audit log was rotated into {segments} segments");
    assert!(segments > 0, "the audit log was never rotated");
    let verify = nayose(&["server", "audit", "verify", &w.s("server")]);
    assert!(
        verify.status.success(),
        "audit verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    ok(&["server", "check", "--data-dir", &w.s("server")]);
    let left = leftovers(&data);
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

/// The epoch `current` names, as a number.
fn current_epoch(w: &World) -> u32 {
    fs::read_to_string(w.path("server/current"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn build_args(w: &World, new_key_period: bool) -> Vec<String> {
    let mut a: Vec<String> = [
        "server",
        "build",
        "--data-dir",
        &w.s("server"),
        "--registry",
        &w.s("registry.csv"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if new_key_period {
        a.push("--new-key-period".into());
    }
    a
}

/// A held file of the first `rows` rows (a link run that is quick beside a large registry).
fn short_held(w: &World, rows: usize) {
    let text = fs::read_to_string(w.path("held.csv")).unwrap();
    let short: Vec<&str> = text.lines().take(rows + 1).collect();
    fs::write(w.path("short.csv"), short.join("\n") + "\n").unwrap();
}

/// Checks the served epoch after the running server has had time to poll `current`: a link
/// run of the short held file is correct and reports the epoch `current` names.
fn served_epoch_is_current(w: &World, port: u16, tag: &str) {
    thread::sleep(Duration::from_millis(400));
    let out = format!("out-{tag}.csv");
    let child = start_link(
        w,
        port,
        CLIENTS[0],
        &out,
        &format!("cache-{tag}"),
        "short.csv",
    );
    let s = finish_link(child, tag);
    check_output(w, &out);
    assert_eq!(
        s["epoch"].as_u64(),
        Some(u64::from(current_epoch(w))),
        "{tag}"
    );
}

fn build_kills(points: usize, persons: usize) {
    let mut rng = StdRng::seed_from_u64(seed());
    let w = setup(persons);
    short_held(&w, 60);
    let port = free_udp_port();
    let _server = start_server(&w, port);

    // How long a build takes, of each kind.
    let mut span = [Duration::ZERO; 2];
    for (i, nkp) in [false, true].into_iter().enumerate() {
        let t = Instant::now();
        ok(&build_args(&w, nkp)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>());
        span[i] = t.elapsed();
    }
    eprintln!(
        "a build takes {} ms, with a new key period {} ms",
        span[0].as_millis(),
        span[1].as_millis()
    );
    served_epoch_is_current(&w, port, "start");

    for point in 0..points {
        let nkp = rng.random_bool(0.5);
        let at = rng.random_range(0..span[usize::from(nkp)].as_millis() as u64 + 1);
        let before = current_epoch(&w);
        let mut child = Command::new(BIN)
            .args(build_args(&w, nkp))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        thread::sleep(Duration::from_millis(at));
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        child.wait().unwrap();
        let after = current_epoch(&w);
        eprintln!(
            "kill {point}: build{} killed after {at} ms{}; current {before} -> {after}",
            if nkp { " --new-key-period" } else { "" },
            if finished { " (it had finished)" } else { "" }
        );
        assert!(after >= before, "current never moves back");
        // Consistent after the kill: the epoch `current` names verifies and is served.
        ok(&["server", "check", "--data-dir", &w.s("server")]);
        served_epoch_is_current(&w, port, &format!("kill-{point}"));
        // The next build succeeds and clears what the killed one left.
        ok(&build_args(&w, false)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>());
        assert!(current_epoch(&w) > after);
        let left = leftovers(&w.path("server"));
        assert!(
            left.is_empty(),
            "kill {point}: left after the next build: {left:?}"
        );
    }
    served_epoch_is_current(&w, port, "end");
    ok(&["server", "check", "--data-dir", &w.s("server")]);
}

#[test]
fn a_restarted_server_removes_the_temporary_files_a_killed_one_left() {
    let w = setup(30);
    let port = free_udp_port();
    drop(start_server(&w, port));
    // What a server killed in the middle of its atomic writes leaves: a temporary file of a
    // process that is gone, beside the quota state, the served epoch and the audit head.
    let mut gone = Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let left: Vec<PathBuf> = [
        "state/.quota.json",
        "state/.served-epoch",
        "audit/.audit.head",
    ]
    .iter()
    .map(|f| w.path(&format!("server/{f}.tmp-{pid}-00000000deadbeef")))
    .collect();
    for p in &left {
        fs::write(p, "{}").unwrap();
        fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    let _server = start_server(&w, port);
    for p in &left {
        assert!(!p.exists(), "{} is still there", p.display());
    }
}

#[test]
fn sigkill_of_serve_during_link_runs_loses_no_charge_and_no_audit_record() {
    serve_kills(2, 2, 800);
}

#[test]
fn sigkill_of_build_at_random_points_keeps_the_data_directory_consistent() {
    build_kills(3, 6000);
}

#[test]
#[ignore = "long: cargo test --test crash -- --ignored --nocapture"]
fn long_sigkill_of_serve_at_many_points() {
    serve_kills(20, 3, 3000);
}

#[test]
#[ignore = "long: cargo test --test crash -- --ignored --nocapture"]
fn long_sigkill_of_build_at_many_points() {
    build_kills(30, 20_000);
}
