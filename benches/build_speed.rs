//! How close a full epoch build comes to the machine's limit (issue 10 item 4).
//!
//! The limit: what every number of a full build cannot avoid, the RFC 9380 hash to ristretto255
//! of its canonical encoding plus one variable-base scalar multiplication, run on all cores over
//! the same numbers. The build: `build_epoch` of a generated registry (new key period: every
//! number read, parsed, keyed, sorted, evaluated in VOPRF mode, its tag and label key derived,
//! spilled, merged into the table, and the index, person map and manifest written and
//! fsynced). Both run in the same process, the limit before and after the build (their mean is
//! the baseline), so the ratio holds on a shared, noisy machine.
//!
//! Run: `cargo bench --bench build_speed` (`NAYOSE_BUILD_NUMBERS`, default 300,000). For the
//! native build a management body should use:
//! `RUSTFLAGS='-C target-cpu=native --cfg curve25519_dalek_backend="avx512"' CARGO_TARGET_DIR=target/native cargo bench --bench build_speed`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
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
    let prefix = XmdPrefix::default();
    let k = Scalar::from(0x1234_5678_9abc_def1u64) * Scalar::from(0x0fed_cba9_8765_4321u64);
    let t = Instant::now();
    // The product is consumed by `black_box` only: no encoding, which the build must pay too.
    inputs.par_iter().for_each(|i| {
        let p = hash_to_ristretto255_with(&prefix, &[i], dst);
        std::hint::black_box(k * std::hint::black_box(p));
    });
    inputs.len() as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let n: usize = std::env::var("NAYOSE_BUILD_NUMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
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

    let before = limit(&inputs, &dst);
    let opts = nayose_server::BuildOptions::new(dir.path().join("data"), &registry);
    let report = nayose_server::build_epoch(&opts).unwrap();
    assert_eq!(report.numbers, n as u64);
    let build = n as f64 / report.total.as_secs_f64();
    let after = limit(&inputs, &dst);
    let base = (before + after) / 2.0;
    let p = report.phases;

    println!(
        "## Full build against the machine's limit (issue 10 item 4): {n} numbers, {threads} threads\n"
    );
    println!("| measure | numbers per second | ratio |");
    println!("|---|---|---|");
    println!(
        "| limit: hash to group + scalar multiplication, all cores (before / after the build) | {before:.0} / {after:.0} | 1.00 |"
    );
    println!(
        "| full build (`build_epoch`, new key period) | {build:.0} | **{:.2} × the limit** |",
        build / base
    );
    println!(
        "| evaluation phase alone | {:.0} | {:.2} × the limit |",
        n as f64 / p.evaluate.as_secs_f64(),
        n as f64 / p.evaluate.as_secs_f64() / base
    );
    println!(
        "\nphases (s): read {:.2}, sort {:.2}, evaluate {:.2}, write {:.2}, publish {:.2}; total {:.2}; peak memory {}",
        p.read.as_secs_f64(),
        p.sort.as_secs_f64(),
        p.evaluate.as_secs_f64(),
        p.write.as_secs_f64(),
        p.publish.as_secs_f64(),
        report.total.as_secs_f64(),
        report
            .peak_resident
            .map_or("unknown".to_string(), |b| format!("{b} bytes"))
    );
    println!(
        "target ≥ 0.85 × the limit: {}",
        if build / base >= 0.85 {
            "met"
        } else {
            "not met"
        }
    );
}
