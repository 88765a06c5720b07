//! Insured-number throughput: parse + normalize + validate + canonical encoding, per row, over a
//! mix of realistic rows (ASCII fields, full-width fields with ideographic spaces, kanji and
//! kana 記号, 6-digit 国保 insurers, 後期高齢者 numbers, dashed and colon combined strings).
//!
//! Run: `cargo bench --bench number`. Throughput is reported in rows per second.

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nayose_number::{InsuredNumber, check_digit};

fn insurer(i: usize) -> String {
    let body = match i % 4 {
        0 => format!("0113{:03}", i % 1000),
        1 => format!("0613{:03}", i % 1000),
        2 => format!("3913{:03}", i % 1000),
        _ => format!("13{:03}", i % 1000), // 国保, 6 digits
    };
    let c = check_digit(body.as_bytes()).unwrap();
    format!("{body}{c}")
}

fn wide(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_digit() {
                char::from_u32(c as u32 + 0xFEE0).unwrap()
            } else {
                c
            }
        })
        .collect()
}

/// (insurer, symbol, number, branch) rows as found in files.
fn field_rows(n: usize) -> Vec<[String; 4]> {
    (0..n)
        .map(|i| {
            let ins = insurer(i);
            let late = ins.starts_with("39");
            let sym = if late {
                String::new()
            } else {
                ["0647", "札幌東１２", "あいう", "ＡＢ１２"][i % 4].to_owned()
            };
            let num = format!("{:08}", i * 7919 % 100_000_000);
            let br = if late {
                String::new()
            } else {
                format!("{:02}", i % 5)
            };
            if i % 3 == 0 {
                [
                    format!("\u{3000}{}", wide(&ins)),
                    sym,
                    wide(&num),
                    wide(&br),
                ]
            } else {
                [ins, sym, num, br]
            }
        })
        .collect()
}

fn combined_rows(n: usize) -> Vec<String> {
    field_rows(n)
        .into_iter()
        .enumerate()
        .map(|(i, [ins, sym, num, br])| {
            let n = InsuredNumber::from_fields(&ins, &sym, &num, &br).unwrap();
            if i % 2 == 0 {
                n.dashed().replace('-', "－")
            } else {
                n.to_string()
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("number");
    for size in [1_000usize, 10_000] {
        let rows = field_rows(size);
        g.throughput(Throughput::Elements(size as u64));
        g.bench_with_input(BenchmarkId::new("fields", size), &rows, |b, rows| {
            b.iter(|| {
                let mut total = 0usize;
                for [i, s, n, br] in rows {
                    let num = InsuredNumber::from_fields(i, s, n, br).unwrap();
                    total += black_box(num.canonical_bytes()).len();
                }
                total
            })
        });
        let combined = combined_rows(size);
        g.bench_with_input(BenchmarkId::new("combined", size), &combined, |b, rows| {
            b.iter(|| {
                let mut total = 0usize;
                for s in rows {
                    let num = InsuredNumber::parse(s).unwrap();
                    total += black_box(num.canonical_bytes()).len();
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
