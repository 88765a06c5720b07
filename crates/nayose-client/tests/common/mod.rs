//! Fixtures: a development PKI, a synthetic registry with known persons, a held file mixing
//! known, unknown, duplicate and differently spelled numbers, a real server on 127.0.0.1, the
//! ground-truth check of an output file, and a tiny fake server for misbehaviour the real one
//! cannot be made to show (a wrong proof).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nayose_client::{ClientConfig, RetrySettings};
use nayose_server::{BuildOptions, RunningServer, Server, ServerConfig, build_epoch};

/// Upper bound of any one test's network work.
pub const TEST_LIMIT: Duration = Duration::from_secs(120);

pub const CLIENT_ID: &str = "hospital-a";

pub fn write_private(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

/// A valid 8-digit insurer number with its check digit.
pub fn insurer(i: u32) -> String {
    let body = format!("06{:02}{:03}", 1 + (i / 1000) % 47, i % 1000);
    let cd = nayose_number::check_digit(body.as_bytes()).unwrap();
    format!("{body}{cd}")
}

/// One number of the registry: (person, insurer, symbol, number, branch).
#[derive(Clone, Debug)]
pub struct Num {
    pub person: String,
    pub insurer: String,
    pub symbol: String,
    pub number: String,
    pub branch: String,
}

impl Num {
    fn dashed(&self) -> String {
        format!(
            "{}-{}-{}-{}",
            self.insurer, self.symbol, self.number, self.branch
        )
    }
}

/// `persons` persons; person p holds (p % 4) + 1 numbers under different insurers.
pub fn registry(persons: u32) -> Vec<Num> {
    let mut out = Vec::new();
    for p in 0..persons {
        for k in 0..(p % 4) + 1 {
            out.push(Num {
                person: format!("P{p:06}"),
                insurer: insurer(p * 7 + k * 131),
                symbol: format!("{}", 200 + k),
                number: format!("{}", 700_000 + p),
                branch: format!("{:02}", 1 + k),
            });
        }
    }
    out
}

pub fn write_registry(path: &Path, nums: &[Num]) {
    let mut s = String::from("person_id,insurer_number,symbol,number,branch\n");
    for n in nums {
        s.push_str(&format!(
            "{},{},{},{},{}\n",
            n.person, n.insurer, n.symbol, n.number, n.branch
        ));
    }
    fs::write(path, s).unwrap();
}

/// To fullwidth digits (the number model folds them back, NFKC).
fn fullwidth(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '0'..='9' => char::from_u32(c as u32 - '0' as u32 + 0xFF10).unwrap(),
            c => c,
        })
        .collect()
}

/// The held file (four columns plus an id column carried through): the numbers of every
/// `step`-th person (all their numbers), some rows written twice, some in fullwidth digits,
/// plus `unknown` valid numbers the registry lacks. Returns, per data row, the expected person
/// (`None` = unknown to the server).
pub fn write_held(path: &Path, reg: &[Num], step: usize, unknown: u32) -> Vec<Option<String>> {
    let mut s = String::from("row_id,insurer_number,symbol,number,branch\n");
    let mut truth = Vec::new();
    let persons: BTreeSet<&str> = reg.iter().map(|n| n.person.as_str()).collect();
    let chosen: BTreeSet<&str> = persons.into_iter().step_by(step).collect();
    let mut i = 0;
    for n in reg.iter().filter(|n| chosen.contains(n.person.as_str())) {
        let (ins, num) = if i % 5 == 1 {
            (fullwidth(&n.insurer), fullwidth(&n.number))
        } else {
            (n.insurer.clone(), n.number.clone())
        };
        s.push_str(&format!("r{i},{ins},{},{num},{}\n", n.symbol, n.branch));
        truth.push(Some(n.person.clone()));
        i += 1;
        if i % 4 == 0 {
            // duplicate row
            s.push_str(&format!(
                "r{i},{},{},{},{}\n",
                n.insurer, n.symbol, n.number, n.branch
            ));
            truth.push(Some(n.person.clone()));
            i += 1;
        }
    }
    for u in 0..unknown {
        s.push_str(&format!(
            "r{i},{},9,{},01\n",
            insurer(900_000 + u),
            1_000 + u
        ));
        truth.push(None);
        i += 1;
    }
    fs::write(path, s).unwrap();
    truth
}

/// Reads an output file: (group, status) per data row, checking the header.
pub fn read_output(path: &Path) -> Vec<(String, String)> {
    let text = fs::read_to_string(path).unwrap();
    let mut r = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let h = r.headers().unwrap().clone();
    let n = h.len();
    assert_eq!(&h[n - 3], "nayose_group");
    assert_eq!(&h[n - 2], "nayose_status");
    assert_eq!(&h[n - 1], "nayose_note");
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[n - 3].to_owned(), rec[n - 2].to_owned())
        })
        .collect()
}

/// Checks the output against the truth: known numbers linked, same person ⇔ same group,
/// unknown numbers not_found without a group. Returns person → label.
pub fn check_ground_truth(
    out: &[(String, String)],
    truth: &[Option<String>],
) -> BTreeMap<String, String> {
    assert_eq!(out.len(), truth.len(), "one output row per input row");
    let mut by_person: BTreeMap<String, String> = BTreeMap::new();
    let mut by_label: BTreeMap<String, String> = BTreeMap::new();
    for (i, ((group, status), t)) in out.iter().zip(truth).enumerate() {
        match t {
            None => {
                assert_eq!(status, "not_found", "row {i}");
                assert_eq!(group, "", "row {i}");
            }
            Some(p) => {
                assert_eq!(status, "linked", "row {i}");
                assert!(
                    group.starts_with('g') && group.len() == 9,
                    "row {i}: {group}"
                );
                let prev = by_person.entry(p.clone()).or_insert_with(|| group.clone());
                assert_eq!(prev, group, "row {i}: person {p} split over two groups");
                let owner = by_label.entry(group.clone()).or_insert_with(|| p.clone());
                assert_eq!(owner, p, "row {i}: two persons share group {group}");
            }
        }
    }
    by_person
}

/// PKI files: a server CA (`server-ca.pem`) with the server certificate for "localhost", a
/// client CA (`client-ca.pem`) with the client certificate.
pub struct Pki {
    pub dir: PathBuf,
    pub server_ca: nayose_pki::Issued,
    pub client_ca: nayose_pki::Issued,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        fs::create_dir_all(dir).unwrap();
        let server_ca = nayose_pki::generate_ca("test server CA").unwrap();
        let client_ca = nayose_pki::generate_ca("test client CA").unwrap();
        fs::write(dir.join("server-ca.pem"), &server_ca.cert_pem).unwrap();
        fs::write(dir.join("client-ca.pem"), &client_ca.cert_pem).unwrap();
        let server = nayose_pki::issue_server_cert(&server_ca, "localhost").unwrap();
        fs::write(dir.join("server.pem"), &server.cert_pem).unwrap();
        write_private(&dir.join("server.key"), &server.key_pem);
        let c = nayose_pki::issue_client_cert(&client_ca, CLIENT_ID).unwrap();
        fs::write(dir.join("client.pem"), &c.cert_pem).unwrap();
        write_private(&dir.join("client.key"), &c.key_pem);
        Pki {
            dir: dir.to_owned(),
            server_ca,
            client_ca,
        }
    }
}

/// A registry, its epoch, and a running server.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub data: PathBuf,
    pub registry_path: PathBuf,
    pub reg: Vec<Num>,
    pub server_config: ServerConfig,
}

impl Fixture {
    /// Builds the first epoch of a registry of `persons` persons.
    pub fn new(persons: u32, tweak: impl FnOnce(&mut ServerConfig)) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(&dir.path().join("pki"));
        let data = dir.path().join("data");
        let registry_path = dir.path().join("registry.csv");
        let reg = registry(persons);
        write_registry(&registry_path, &reg);
        build_epoch(&BuildOptions::new(&data, &registry_path)).unwrap();
        let clients = pki.dir.join("clients.toml");
        fs::write(
            &clients,
            format!("[[client]]\nid = \"{CLIENT_ID}\"\nevaluations_per_day = 10000000\n"),
        )
        .unwrap();
        let mut server_config = ServerConfig {
            data_dir: Some(data.clone()),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            cert: Some(pki.dir.join("server.pem")),
            key: Some(pki.dir.join("server.key")),
            client_ca: Some(pki.dir.join("client-ca.pem")),
            clients: Some(clients),
            max_batch: 256,
            epoch_poll_ms: 100,
            status_interval_secs: 0,
            shutdown_grace_ms: 500,
            ..ServerConfig::default()
        };
        tweak(&mut server_config);
        Fixture {
            dir,
            pki,
            data,
            registry_path,
            reg,
            server_config,
        }
    }

    pub async fn start(&self) -> RunningServer {
        Server::start(self.server_config.clone()).await.unwrap()
    }

    /// Restarts on the same address after a shutdown.
    pub async fn start_at(&self, addr: std::net::SocketAddr) -> RunningServer {
        let mut cfg = self.server_config.clone();
        cfg.listen = Some(addr);
        let mut last = None;
        for _ in 0..100 {
            match Server::start(cfg.clone()).await {
                Ok(s) => return s,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("restart failed: {last:?}");
    }

    /// Publishes the next epoch of `reg` (the running server picks it up).
    pub fn new_epoch(&self, reg: &[Num]) {
        write_registry(&self.registry_path, reg);
        build_epoch(&BuildOptions::new(&self.data, &self.registry_path)).unwrap();
    }

    /// Starts a new key period (the running server picks it up).
    pub fn new_key_period(&self) {
        let mut o = BuildOptions::new(&self.data, &self.registry_path);
        o.new_key_period = true;
        build_epoch(&o).unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A client config for `addr` reading `input`, writing `output`, with fast retries.
    pub fn client(&self, addr: std::net::SocketAddr, input: &Path, output: &Path) -> ClientConfig {
        client_config(&self.pki, addr, input, output, &self.path("cache"))
    }
}

pub fn client_config(
    pki: &Pki,
    addr: std::net::SocketAddr,
    input: &Path,
    output: &Path,
    cache: &Path,
) -> ClientConfig {
    ClientConfig {
        server: Some(addr.to_string()),
        server_name: Some("localhost".into()),
        ca: Some(pki.dir.join("server-ca.pem")),
        cert: Some(pki.dir.join("client.pem")),
        key: Some(pki.dir.join("client.key")),
        input: Some(input.to_owned()),
        output: Some(output.to_owned()),
        cache_dir: Some(cache.to_owned()),
        batch_size: Some(16),
        pipeline_depth: Some(4),
        retry: Some(RetrySettings {
            max_attempts: Some(20),
            initial_backoff_ms: Some(50),
            max_backoff_ms: Some(400),
            connect_timeout_ms: Some(2000),
            request_timeout_ms: Some(10_000),
            max_epoch_restarts: Some(3),
        }),
        ..Default::default()
    }
}

/// A fake nayose/2 server that publishes the public key of one key but evaluates with another:
/// every proof it sends is wrong. Returns its address; it serves until the runtime ends.
pub async fn lying_server(pki: &Pki) -> std::net::SocketAddr {
    fake_server(pki, true, None).await
}

/// A fake nayose/2 server with an empty table. `lie`: evaluate with another key than the one
/// published. `refuse_above`: answer BatchTooLarge to batches larger than this, although Info
/// announces 64.
pub async fn fake_server(
    pki: &Pki,
    lie: bool,
    refuse_above: Option<usize>,
) -> std::net::SocketAddr {
    use nayose_wire::{
        BaseEnd, ElementBatch, EvaluateResponse, InfoResponse, KeyPeriodId, Proof, PublicKeyBytes,
        Request, Response, TableDigest, decode_request_frame, encode_response_frame,
    };
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    let published = nayose_oprf::ServerKey::generate(&mut rand::rng());
    let used = Arc::new(if lie {
        nayose_oprf::ServerKey::generate(&mut rand::rng())
    } else {
        nayose_oprf::ServerKey::from_bytes(&published.to_bytes()).unwrap()
    });
    let pk = published.public_key().to_bytes();
    let table_kp = nayose_table::KeyPeriodId::new(1, &pk);
    let kp = KeyPeriodId(table_kp.to_bytes());
    let digest = TableDigest(
        nayose_table::table_digest(
            table_kp,
            1,
            &nayose_table::UpsertChain::first(table_kp, 1),
            std::iter::empty::<&nayose_table::Tag>(),
        )
        .unwrap()
        .0,
    );
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(pki.dir.join("server.pem"))
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
    let key = PrivateKeyDer::from_pem_file(pki.dir.join("server.key")).unwrap();
    let provider = Arc::new(nayose_server::tls_crypto_provider(false));
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    tls.alpn_protocols = vec![nayose_wire::ALPN.to_vec()];
    let qc = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    let sc = quinn::ServerConfig::with_crypto(Arc::new(qc));
    let ep = quinn::Endpoint::server(sc, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = ep.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(incoming) = ep.accept().await {
            let used = used.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    let used = used.clone();
                    tokio::spawn(async move {
                        let bytes = recv.read_to_end(1 << 22).await.unwrap();
                        let response = match decode_request_frame(&bytes).unwrap() {
                            Request::Info => Response::Info(InfoResponse {
                                key_period: kp,
                                public_key: PublicKeyBytes(pk),
                                epoch: 1,
                                table_entries: 0,
                                table_digest: digest,
                                upsert_chain: nayose_wire::UpsertChain(
                                    nayose_table::UpsertChain::first(table_kp, 1).0,
                                ),
                                oldest_delta_base: 1,
                                max_batch: 64,
                                quota_left_today: 1_000_000,
                                quota_reset_secs: 3600,
                                quota_left_key_period: 1_000_000,
                                announcement: None,
                                entity: nayose_wire::EntityId::new("fake-entity").unwrap(),
                            }),
                            Request::Evaluate(r)
                                if refuse_above.is_some_and(|m| r.elements.len() > m) =>
                            {
                                Response::Error(nayose_wire::ErrorResponse::new(
                                    nayose_wire::ErrorCode::BatchTooLarge,
                                    "batch too large",
                                ))
                            }
                            Request::FetchBase(_) => Response::BaseEnd(BaseEnd {
                                key_period: kp,
                                epoch: 1,
                                total: 0,
                            }),
                            Request::Evaluate(r) => {
                                let (evaluated, proof) = used
                                    .blind_evaluate_batch_with_proof(
                                        &r.elements.to_arrays(),
                                        &mut rand::rng(),
                                    )
                                    .unwrap();
                                Response::Evaluated(EvaluateResponse {
                                    key_period: kp,
                                    elements: ElementBatch::from_arrays(&evaluated).unwrap(),
                                    proof: Proof(proof.to_bytes()),
                                })
                            }
                            other => panic!("unexpected {other:?}"),
                        };
                        let frame = encode_response_frame(&response).unwrap();
                        send.write_all(&frame).await.unwrap();
                        send.finish().unwrap();
                        let _ = send.stopped().await;
                    });
                }
            });
        }
    });
    addr
}
