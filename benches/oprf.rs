//! OPRF benchmarks, per element, against two baselines measured in the same run:
//! a raw variable-base scalar multiplication (the limit) and the `voprf` crate.
//!
//! Run: `cargo bench --bench oprf`, then `python3 benches/report.py` for the ratio table.
//! Groups ending in `/1thread` run inside a one-thread rayon pool, so they compare with the
//! single-threaded raw multiplication like for like; the others use every core.

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use curve25519_dalek::{ristretto::RistrettoPoint, scalar::Scalar};
use nayose_oprf::{ClientBatch, Mode, ServerKey};
use rand_core_06::OsRng;
use voprf::{BlindedElement, Ristretto255, VoprfClient, VoprfServer};

const SIZES: [usize; 3] = [16, 256, 5000];

fn inputs(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("nayose bench input {i:08}").into_bytes())
        .collect()
}

fn one_thread() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
}

fn raw(c: &mut Criterion) {
    let mut g = c.benchmark_group("raw");
    g.throughput(Throughput::Elements(1));
    let mut rng = rand::rng();
    let k = Scalar::from_bytes_mod_order_wide(&rand::Rng::random(&mut rng));
    let p = RistrettoPoint::from_uniform_bytes(&rand::Rng::random(&mut rng));
    g.bench_function("scalar_mul", |b| b.iter(|| black_box(&k) * black_box(&p)));
    let enc = p.compress();
    g.bench_function("decompress_mul_compress", |b| {
        b.iter(|| (black_box(&k) * black_box(&enc).decompress().unwrap()).compress())
    });
    g.finish();
}

fn server(c: &mut Criterion) {
    let key = ServerKey::derive(Mode::Voprf, &[9u8; 32], b"bench").unwrap();
    let their = VoprfServer::<Ristretto255>::new_with_key(&key.to_bytes()[..]).unwrap();
    let pool = one_thread();
    for threads in ["1thread", "all"] {
        let mut g = c.benchmark_group(format!("server/{threads}"));
        g.sample_size(10).measurement_time(Duration::from_secs(4));
        for n in SIZES {
            let ins = inputs(n);
            let refs: Vec<&[u8]> = ins.iter().map(Vec::as_slice).collect();
            let batch = ClientBatch::blind(Mode::Voprf, &refs, &mut rand::rng()).unwrap();
            let blinded = batch.blinded_elements().to_vec();
            g.throughput(Throughput::Elements(n as u64));
            let run = |f: &mut (dyn FnMut() + Send)| {
                if threads == "1thread" {
                    pool.install(f)
                } else {
                    f()
                }
            };
            g.bench_with_input(BenchmarkId::new("ours_oprf", n), &blinded, |b, bl| {
                b.iter(|| {
                    run(&mut || {
                        black_box(key.blind_evaluate_batch(bl).unwrap());
                    })
                })
            });
            g.bench_with_input(
                BenchmarkId::new("ours_voprf_proof", n),
                &blinded,
                |b, bl| {
                    b.iter(|| {
                        run(&mut || {
                            black_box(
                                key.blind_evaluate_batch_with_proof(bl, &mut rand::rng())
                                    .unwrap(),
                            );
                        })
                    })
                },
            );
            if threads == "1thread" {
                // voprf is single-threaded; measure it once, from wire bytes to wire bytes.
                g.bench_with_input(
                    BenchmarkId::new("voprf_batch_blind_evaluate", n),
                    &blinded,
                    |b, bl| {
                        b.iter(|| {
                            let msgs: Vec<BlindedElement<Ristretto255>> = bl
                                .iter()
                                .map(|e| BlindedElement::deserialize(e).unwrap())
                                .collect();
                            let res = their.batch_blind_evaluate(&mut OsRng, &msgs).unwrap();
                            let out: Vec<_> = res.messages.iter().map(|m| m.serialize()).collect();
                            black_box((out, res.proof.serialize()))
                        })
                    },
                );
            }
        }
        g.finish();
    }
}

fn client(c: &mut Criterion) {
    let key = ServerKey::derive(Mode::Voprf, &[9u8; 32], b"bench").unwrap();
    let their = VoprfServer::<Ristretto255>::new_with_key(&key.to_bytes()[..]).unwrap();
    let pk = key.public_key().clone();
    let pool = one_thread();
    for threads in ["1thread", "all"] {
        let mut g = c.benchmark_group(format!("client/{threads}"));
        g.sample_size(10).measurement_time(Duration::from_secs(4));
        for n in [256usize, 5000] {
            let ins = inputs(n);
            let refs: Vec<&[u8]> = ins.iter().map(Vec::as_slice).collect();
            g.throughput(Throughput::Elements(n as u64));
            let run = |f: &mut (dyn FnMut() + Send)| {
                if threads == "1thread" {
                    pool.install(f)
                } else {
                    f()
                }
            };
            g.bench_function(BenchmarkId::new("ours_blind", n), |b| {
                b.iter(|| {
                    run(&mut || {
                        black_box(
                            ClientBatch::blind(Mode::Voprf, &refs, &mut rand::rng()).unwrap(),
                        );
                    })
                })
            });
            g.bench_function(BenchmarkId::new("ours_verify_finalize", n), |b| {
                b.iter_batched(
                    || {
                        let batch =
                            ClientBatch::blind(Mode::Voprf, &refs, &mut rand::rng()).unwrap();
                        let (ev, proof) = key
                            .blind_evaluate_batch_with_proof(
                                batch.blinded_elements(),
                                &mut rand::rng(),
                            )
                            .unwrap();
                        (batch, ev, proof.to_bytes())
                    },
                    |(batch, ev, proof)| {
                        if threads == "1thread" {
                            pool.install(|| {
                                black_box(batch.verify(&pk, &ev, &proof).unwrap().finalize())
                            })
                        } else {
                            black_box(batch.verify(&pk, &ev, &proof).unwrap().finalize())
                        }
                    },
                    BatchSize::PerIteration,
                )
            });
            if threads == "1thread" {
                g.bench_function(BenchmarkId::new("voprf_blind", n), |b| {
                    b.iter(|| {
                        for i in &refs {
                            black_box(
                                VoprfClient::<Ristretto255>::blind(i, &mut OsRng)
                                    .unwrap()
                                    .message
                                    .serialize(),
                            );
                        }
                    })
                });
                let mut clients = Vec::with_capacity(n);
                let mut msgs = Vec::with_capacity(n);
                for i in &refs {
                    let r = VoprfClient::<Ristretto255>::blind(i, &mut OsRng).unwrap();
                    clients.push(r.state);
                    msgs.push(r.message);
                }
                let res = their.batch_blind_evaluate(&mut OsRng, &msgs).unwrap();
                let pk_elem = their.get_public_key();
                g.bench_function(BenchmarkId::new("voprf_batch_finalize", n), |b| {
                    b.iter(|| {
                        let out: Vec<_> = VoprfClient::batch_finalize(
                            &refs,
                            &clients,
                            &res.messages,
                            &res.proof,
                            pk_elem,
                        )
                        .unwrap()
                        .collect();
                        black_box(out)
                    })
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, raw, server, client);
criterion_main!(benches);
