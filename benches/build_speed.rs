//! How close a full epoch build comes to the machine's limit (issue 10 item 4).
//!
//! The limit: what every number of a full build cannot avoid, the RFC 9380 hash to ristretto255
//! of its canonical encoding plus one variable-base scalar multiplication, run on all cores over
//! the same numbers. The build: `build_epoch` of a generated registry (new key period: every
//! number read, parsed, keyed, sorted, evaluated in VOPRF mode, its tag and label key derived,
//! spilled, merged into the table, and the index, person map and manifest written and
//! fsynced). Both run in the same process, interleaved: limit, build, limit, build, … limit. Each
//! build's ratio is to the mean of the limit just before and just after it, and the report is the
//! median over the rounds, so the ratio holds on a shared, noisy machine whose speed drifts by
//! 10–20 % within a minute. The limit is also sampled during each build: after each of its
//! evaluation batches (in the progress callback, when nothing else of the build runs), a slice of
//! [`SLICE`] numbers; the build's times exclude those slices, and its ratio to the sampled limit
//! is the finer measure, since a drift of the machine's speed during the build hits both alike.
//!
//! Run: `cargo bench --bench build_speed` (`NAYOSE_BUILD_NUMBERS`, default 200,000;
//! `NAYOSE_BUILD_ROUNDS`, default 5). For the
//! native build a management body should use:
//! `RUSTFLAGS='-C target-cpu=native --cfg curve25519_dalek_backend="avx512"' CARGO_TARGET_DIR=target/native cargo bench --bench build_speed`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use curve25519_dalek::Scalar;
use nayose_number::{InsuredNumber, check_digit};
use nayose_oprf::Mode;
use nayose_oprf::hash_to_curve::{XmdPrefix, hash_to_ristretto255_with};
use rayon::prelude::*;

/// A registry line: person, 8-digit insurer (with its check digit), 記号, 番号, 枝番.
fn line(i: usize) -> (String, String, String, String, String) {
    let body = format!("06{:05}", 10_000 + (i / 7_000) % 90_000);
    let insurer = format!("{body}{}", check_digit(body.as_bytes()).unwrap());
    (
        format!("P{:09}", i / 3),
        insurer,
        format!("{}", 100 + i % 900),
        format!("{}", 1_000_000 + i),
        "01".to_string(),
    )
}

/// Numbers per second of the limit over `inputs`, on all cores.
fn limit(inputs: &[Vec<u8>], dst: &[u8]) -> f64 {
    inputs.len() as f64 / limit_secs(inputs, dst)
}

/// Seconds the limit takes over `inputs`, on all cores.
fn limit_secs(inputs: &[Vec<u8>], dst: &[u8]) -> f64 {
    let prefix = XmdPrefix::default();
    let k = Scalar::from(0x1234_5678_9abc_def1u64) * Scalar::from(0x0fed_cba9_8765_4321u64);
    let t = Instant::now();
    // The product is consumed by `black_box` only: no encoding, which the build must pay too.
    // Tasks of at most 16 numbers: rayon's adaptive splitting alone stops after a few halvings,
    // and a core could wait for a large piece of the other's share at the end (the limit would
    // read low, the more so in the short slices sampled during a build).
    inputs.par_iter().with_max_len(16).for_each(|i| {
        let p = hash_to_ristretto255_with(&prefix, &[i], dst);
        std::hint::black_box(k * std::hint::black_box(p));
    });
    t.elapsed().as_secs_f64()
}

/// Numbers of the limit run between two evaluation batches of a build.
const SLICE: usize = 4096;

/// The limit sampled during a build: after each evaluation batch (when the build's progress
/// callback runs and no other work of the build is running), [`SLICE`] numbers of the limit.
#[derive(Default)]
struct Sampled {
    next: usize,
    numbers: usize,
    secs: f64,
}

impl Sampled {
    fn run(&mut self, inputs: &[Vec<u8>], dst: &[u8]) {
        let start = self.next % inputs.len();
        let end = (start + SLICE).min(inputs.len());
        let secs = limit_secs(&inputs[start..end], dst);
        self.next = end;
        self.numbers += end - start;
        self.secs += secs;
    }
}

/// The median of `v` (mean of the middle two for an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}

fn main() {
    let n: usize = std::env::var("NAYOSE_BUILD_NUMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let rounds: usize = std::env::var("NAYOSE_BUILD_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry.csv");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&registry).unwrap());
    writeln!(w, "person_id,insurer_number,symbol,number,branch").unwrap();
    let mut inputs = Vec::with_capacity(n);
    for i in 0..n {
        let (p, ins, sym, num, br) = line(i);
        writeln!(w, "{p},{ins},{sym},{num},{br}").unwrap();
        let number = InsuredNumber::from_fields(&ins, &sym, &num, &br).unwrap();
        inputs.push(number.canonical_bytes());
    }
    w.into_inner().unwrap().sync_all().unwrap();
    let dst = Mode::Voprf.hash_to_group_dst();
    let threads = rayon::current_num_threads();

    println!(
        "## Full build against the machine's limit (issue 10 item 4): {n} numbers, {threads} threads, {rounds} rounds\n"
    );
    println!(
        "Each round: a full build (`build_epoch`, new key period, fresh data directory) between two \
         measurements of the limit (hash to group + scalar multiplication, all cores); its ratio is \
         to the mean of those two.\n"
    );
    println!(
        "Also, after each of the build's evaluation batches (its progress callback, when nothing \
         else of the build runs), {SLICE} numbers of the limit: the limit sampled through the \
         build, so a drift of the machine's speed hits both alike. The build's times exclude \
         those samples.\n"
    );
    let shared = Arc::new(inputs);
    let inputs = &*shared;
    // Calibration, outside any build: the limit run in slices as during a build against the limit
    // over all the numbers at once, alternated.
    let (mut sliced, mut whole) = (0.0, 0.0);
    for i in 0..2 {
        let run_sliced = || {
            let mut s = Sampled::default();
            while s.numbers < inputs.len() {
                s.run(inputs, &dst);
            }
            s.secs
        };
        if i == 0 {
            sliced += run_sliced();
            whole += limit_secs(inputs, &dst);
        } else {
            whole += limit_secs(inputs, &dst);
            sliced += run_sliced();
        }
    }
    println!(
        "Calibration (no build running): the limit in slices of {SLICE} ran at {:.3} × the limit over all {n} numbers at once.\n",
        whole / sliced
    );
    println!(
        "| round | limit before / after (numbers/s) | limit sampled during the build | full build (numbers/s) | ratio to before/after | ratio to sampled | evaluation phase alone (to sampled) | phases (s): read, sort, evaluate, write, publish |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut before = limit(inputs, &dst);
    let mut full = Vec::with_capacity(rounds);
    let mut full_sampled = Vec::with_capacity(rounds);
    let mut eval = Vec::with_capacity(rounds);
    let mut peak = None;
    for round in 1..=rounds {
        let data = dir.path().join(format!("data-{round}"));
        let mut opts = nayose_server::BuildOptions::new(&data, &registry);
        let sampled = Arc::new(Mutex::new(Sampled::default()));
        let (s, i, d) = (Arc::clone(&sampled), Arc::clone(&shared), dst.clone());
        opts.progress = Some(Arc::new(move |p: nayose_server::BuildProgress| {
            if p.phase == "evaluate" {
                s.lock().unwrap().run(&i, &d);
            }
        }));
        let report = nayose_server::build_epoch(&opts).unwrap();
        assert_eq!(report.numbers, n as u64);
        let after = limit(inputs, &dst);
        let base = (before + after) / 2.0;
        let sampled = std::mem::take(&mut *sampled.lock().unwrap());
        assert!(
            sampled.numbers > 0,
            "the build reported no evaluation batch"
        );
        let during = sampled.numbers as f64 / sampled.secs;
        let build = n as f64 / (report.total.as_secs_f64() - sampled.secs);
        let p = report.phases;
        let evaluate = n as f64 / (p.evaluate.as_secs_f64() - sampled.secs);
        full.push(build / base);
        full_sampled.push(build / during);
        eval.push(evaluate / during);
        peak = report.peak_resident;
        println!(
            "| {round} | {before:.0} / {after:.0} | {during:.0} | {build:.0} | {:.2} | {:.2} | {:.2} | {:.2}, {:.2}, {:.2}, {:.2}, {:.2} |",
            build / base,
            build / during,
            evaluate / during,
            p.read.as_secs_f64(),
            p.sort.as_secs_f64(),
            p.evaluate.as_secs_f64() - sampled.secs,
            p.write.as_secs_f64(),
            p.publish.as_secs_f64(),
        );
        std::fs::remove_dir_all(&data).unwrap();
        before = after;
    }
    let full = median(full);
    let full_sampled = median(full_sampled);
    let eval = median(eval);
    println!(
        "\n**median: full build {full_sampled:.2} × the limit sampled during it ({full:.2} × the limit before and after it); evaluation phase alone {eval:.2} × the sampled limit**; peak memory {}",
        peak.map_or("unknown".to_string(), |b| format!("{b} bytes"))
    );
    println!(
        "target ≥ 0.85 × the limit: {} against the sampled limit, {} against the limit before and after",
        if full_sampled >= 0.85 {
            "met"
        } else {
            "not met"
        },
        if full >= 0.85 { "met" } else { "not met" }
    );
}
