//! Test fixtures: a development PKI, synthetic registries, a server on 127.0.0.1, and a minimal
//! nayose/2 client (quinn + rustls + nayose-wire + nayose-oprf + nayose-table) independent of
//! nayose-client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nayose_oprf::{ClientBatch, Mode, PublicKey};
use nayose_server::{BuildOptions, BuildReport, ServerConfig, build_epoch};
use nayose_table::{
    ClientEntry, ClientId, ClientTable, EncryptedLabel, EntryBlock, KeyPeriodId, Tag, UpsertChain,
};
use nayose_wire::{
    ElementBatch, EvaluateRequest, FetchBaseRequest, FetchDeltaRequest, FrameDecoder, InfoResponse,
    Request, Response, decode_response, encode_request_frame,
};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Every network step of a test is bounded by this.
pub const STEP: Duration = Duration::from_secs(20);

pub fn write_private(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

/// A server CA with a server certificate for "localhost", and a client CA issuing client
/// certificates on demand (the two roles kept apart, as `nayose pki init` does).
pub struct Pki {
    pub dir: PathBuf,
    pub server_ca: nayose_pki::Issued,
    pub client_ca: nayose_pki::Issued,
}

impl Pki {
    pub fn new(dir: &Path, ca_name: &str) -> Pki {
        fs::create_dir_all(dir).unwrap();
        let server_ca = nayose_pki::generate_ca(&format!("{ca_name} (servers)")).unwrap();
        let client_ca = nayose_pki::generate_ca(&format!("{ca_name} (clients)")).unwrap();
        fs::write(dir.join("server-ca.pem"), &server_ca.cert_pem).unwrap();
        fs::write(dir.join("client-ca.pem"), &client_ca.cert_pem).unwrap();
        let server = nayose_pki::issue_server_cert(&server_ca, "localhost").unwrap();
        fs::write(dir.join("server.pem"), &server.cert_pem).unwrap();
        write_private(&dir.join("server.key"), &server.key_pem);
        Pki {
            dir: dir.to_path_buf(),
            server_ca,
            client_ca,
        }
    }

    /// The server CA's certificate: what clients trust.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join("server-ca.pem")
    }

    /// The client CA's certificate: what the server trusts (`client_ca`).
    pub fn client_ca_pem(&self) -> PathBuf {
        self.dir.join("client-ca.pem")
    }

    /// (cert.pem, key.pem) of a client certificate with CommonName `id`.
    pub fn client(&self, id: &str) -> (PathBuf, PathBuf) {
        self.write_pair(
            id,
            &nayose_pki::issue_client_cert(&self.client_ca, id).unwrap(),
        )
    }

    /// Writes `name.pem` and `name.key` of `c`; returns their paths.
    pub fn write_pair(&self, name: &str, c: &nayose_pki::Issued) -> (PathBuf, PathBuf) {
        let cert = self.dir.join(format!("{name}.pem"));
        let key = self.dir.join(format!("{name}.key"));
        fs::write(&cert, &c.cert_pem).unwrap();
        write_private(&key, &c.key_pem);
        (cert, key)
    }
}

/// A valid 8-digit insurer number (法別番号 06) with its check digit.
pub fn insurer(i: u32) -> String {
    let body = format!("0613{:03}", i % 1000);
    let cd = nayose_number::check_digit(body.as_bytes()).unwrap();
    format!("{body}{cd}")
}

/// One registry row: (person id, insurer, symbol, number, branch).
#[derive(Clone, Debug)]
pub struct Row {
    pub person: String,
    pub insurer: String,
    pub symbol: String,
    pub number: String,
    pub branch: String,
}

impl Row {
    pub fn canonical(&self) -> Vec<u8> {
        nayose_number::InsuredNumber::from_fields(
            &self.insurer,
            &self.symbol,
            &self.number,
            &self.branch,
        )
        .unwrap()
        .canonical_bytes()
    }
}

/// `persons` persons, person p holding (p % 3) + 1 numbers under different insurers.
pub fn registry_rows(persons: u32, salt: u32) -> Vec<Row> {
    let mut rows = Vec::new();
    for p in 0..persons {
        for k in 0..(p % 3) + 1 {
            rows.push(Row {
                person: format!("P{p:06}"),
                insurer: insurer(p * 3 + k + salt),
                symbol: format!("{}", 100 + k),
                number: format!("{}", 500_000 + p),
                branch: "01".into(),
            });
        }
    }
    rows
}

pub fn write_registry(path: &Path, rows: &[Row]) {
    let mut s = String::from("person_id,insurer_number,symbol,number,branch\n");
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{},{}\n",
            r.person, r.insurer, r.symbol, r.number, r.branch
        ));
    }
    fs::write(path, s).unwrap();
}

pub fn build(data: &Path, registry: &Path) -> BuildReport {
    build_epoch(&BuildOptions::new(data, registry)).unwrap()
}

/// A server config for the fixture, listening on 127.0.0.1 port 0.
pub fn config(pki: &Pki, data: &Path, clients_toml: &str) -> ServerConfig {
    let clients = pki.dir.join("clients.toml");
    fs::write(&clients, clients_toml).unwrap();
    ServerConfig {
        data_dir: Some(data.to_path_buf()),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        cert: Some(pki.dir.join("server.pem")),
        key: Some(pki.dir.join("server.key")),
        client_ca: Some(pki.client_ca_pem()),
        clients: Some(clients),
        max_batch: 64,
        epoch_poll_ms: 100,
        status_interval_secs: 0,
        shutdown_grace_ms: 2000,
        ..ServerConfig::default()
    }
}

/// A QUIC client endpoint trusting `ca_pem`, presenting `identity` (cert, key) if given.
pub fn client_endpoint(ca_pem: &Path, identity: Option<(&Path, &Path)>) -> quinn::Endpoint {
    let provider = Arc::new(nayose_server::tls_crypto_provider(false));
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca_pem).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match identity {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_file(key).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![nayose_wire::ALPN.to_vec()];
    let qc = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(cfg).unwrap()));
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(qc);
    ep
}

pub async fn connect(
    ep: &quinn::Endpoint,
    addr: std::net::SocketAddr,
) -> Result<quinn::Connection, String> {
    let connecting = ep.connect(addr, "localhost").map_err(|e| e.to_string())?;
    tokio::time::timeout(STEP, connecting)
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())
}

/// Sends one request on a new stream and reads every response frame until FIN.
pub async fn request_raw(conn: &quinn::Connection, frame: &[u8]) -> Result<Vec<Response>, String> {
    let fut = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| format!("open: {e}"))?;
        send.write_all(frame)
            .await
            .map_err(|e| format!("write: {e}"))?;
        send.finish().map_err(|e| format!("finish: {e}"))?;
        let bytes = recv
            .read_to_end(64 << 20)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let mut dec = FrameDecoder::new();
        dec.push(&bytes);
        let mut out = Vec::new();
        while let Some(p) = dec.next_frame().map_err(|e| e.to_string())? {
            out.push(decode_response(&p).map_err(|e| e.to_string())?);
        }
        dec.finish().map_err(|e| e.to_string())?;
        Ok(out)
    };
    tokio::time::timeout(STEP, fut)
        .await
        .map_err(|_| "request timed out".to_string())?
}

pub async fn request(conn: &quinn::Connection, req: &Request) -> Result<Vec<Response>, String> {
    request_raw(conn, &encode_request_frame(req).unwrap()).await
}

/// The single response of a one-frame request.
pub async fn one(conn: &quinn::Connection, req: &Request) -> Response {
    let mut r = request(conn, req).await.unwrap();
    assert_eq!(r.len(), 1, "{r:?}");
    r.pop().unwrap()
}

pub async fn info(conn: &quinn::Connection) -> nayose_wire::InfoResponse {
    match one(conn, &Request::Info).await {
        Response::Info(i) => i,
        other => panic!("expected Info, got {other:?}"),
    }
}

/// The error code of an Error response (panics otherwise).
pub fn error_code(r: &Response) -> nayose_wire::ErrorCode {
    match r {
        Response::Error(e) => e.code,
        other => panic!("expected an Error, got {other:?}"),
    }
}

/// The epoch directory name `current` points at.
pub fn current(data: &Path) -> String {
    fs::read_to_string(data.join("current"))
        .unwrap()
        .trim()
        .to_string()
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// The key period id of an Info, as nayose-table's type (checked against pkS).
pub fn key_period(i: &InfoResponse) -> KeyPeriodId {
    let kp = KeyPeriodId::from_bytes(i.key_period.0);
    assert!(
        kp.matches_public_key(&i.public_key.0),
        "key period id matches pkS"
    );
    kp
}

/// Blinds `inputs`, evaluates them over `conn` in key period `kp`, verifies the proof against
/// `info`'s pkS, and returns the outputs; the server's answer if it was not Evaluated.
pub async fn evaluate_in(
    conn: &quinn::Connection,
    info: &InfoResponse,
    kp: nayose_wire::KeyPeriodId,
    inputs: &[Vec<u8>],
) -> Result<Vec<[u8; 64]>, Response> {
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let mut rng = rand::rng();
    let batch = ClientBatch::blind(Mode::Voprf, &refs, &mut rng).unwrap();
    let blinded = batch.blinded_elements().to_vec();
    let req = Request::Evaluate(EvaluateRequest {
        key_period: kp,
        elements: ElementBatch::from_arrays(&blinded).unwrap(),
    });
    match one(conn, &req).await {
        Response::Evaluated(ev) => {
            assert_eq!(ev.key_period, kp);
            let pk = PublicKey::from_bytes(&info.public_key.0).unwrap();
            let verified = batch
                .verify(&pk, &ev.elements.to_arrays(), &ev.proof.0)
                .expect("the server's DLEQ proof verifies against pkS from Info");
            Ok(verified.finalize().iter().map(|o| *o.as_bytes()).collect())
        }
        other => Err(other),
    }
}

/// [`evaluate_in`] the key period of `info`.
pub async fn evaluate(
    conn: &quinn::Connection,
    info: &InfoResponse,
    inputs: &[Vec<u8>],
) -> Result<Vec<[u8; 64]>, Response> {
    evaluate_in(conn, info, info.key_period, inputs).await
}

/// FetchBase of `info`'s epoch from `offset`: the entries received (checked: contiguous
/// offsets, constant total, ascending tags, versions ≤ epoch, BaseEnd last), or the Error.
pub async fn fetch_base(
    conn: &quinn::Connection,
    info: &InfoResponse,
    offset: u64,
) -> Result<Vec<ClientEntry>, Response> {
    let frames = request(
        conn,
        &Request::FetchBase(FetchBaseRequest {
            key_period: info.key_period,
            epoch: info.epoch,
            offset,
        }),
    )
    .await
    .unwrap();
    if let [Response::Error(_)] = frames.as_slice() {
        return Err(frames.into_iter().next().unwrap());
    }
    let mut out: Vec<ClientEntry> = Vec::new();
    let (last, chunks) = frames.split_last().unwrap();
    for f in chunks {
        match f {
            Response::BaseChunk(c) => {
                assert_eq!(c.key_period, info.key_period);
                assert_eq!(c.epoch, info.epoch);
                assert_eq!(c.offset, offset + out.len() as u64, "contiguous chunks");
                assert_eq!(c.total, info.table_entries);
                let block = EntryBlock {
                    count: c.labels.len() as u32,
                    rice: c.rice,
                    first: Tag(c.first_tag.0),
                    gaps: c.gaps.as_slice().to_vec(),
                    labels: c.labels.as_slice().iter().flat_map(|l| l.0).collect(),
                };
                let mut tags = Vec::new();
                block.decode_tags(c.offset, &mut tags).unwrap();
                for (i, t) in tags.iter().enumerate() {
                    out.push(ClientEntry {
                        tag: *t,
                        pad_epoch: info.epoch,
                        label: block.label(i),
                    });
                }
            }
            other => panic!("expected a BaseChunk, got {other:?}"),
        }
    }
    match last {
        Response::BaseEnd(e) => {
            assert_eq!((e.key_period, e.epoch), (info.key_period, info.epoch));
            assert_eq!(e.total, info.table_entries);
        }
        other => panic!("expected BaseEnd, got {other:?}"),
    }
    assert!(
        out.windows(2).all(|w| w[0].tag < w[1].tag),
        "ascending tags"
    );
    Ok(out)
}

/// The client table of a base received with `info` (entries as [`fetch_base`] returns them).
pub fn client_table(info: &InfoResponse, entries: &[ClientEntry]) -> ClientTable {
    let kp = KeyPeriodId::from_bytes(info.key_period.0);
    let pairs: Vec<(Tag, EncryptedLabel)> = entries.iter().map(|e| (e.tag, e.label)).collect();
    let blocks = pairs
        .chunks(1000)
        .map(|c| EntryBlock::encode(c).unwrap())
        .collect();
    ClientTable::from_base(kp, info.epoch, UpsertChain(info.upsert_chain.0), blocks).unwrap()
}

/// The serial of person `person` in the current epoch's person map (`persons.bin` format 2:
/// magic 16, key check 16, count u64 LE, then (HMAC-SHA256(person-id.key, id)[0..16], serial
/// u32 LE) entries).
pub fn serial_of(data: &Path, person: &str) -> u32 {
    use hmac::{KeyInit, Mac};
    let key = fs::read(data.join("person-id.key")).unwrap();
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(person.as_bytes());
    let k = mac.finalize().into_bytes();
    let current = fs::read_to_string(data.join("current")).unwrap();
    let b = fs::read(data.join("epochs").join(current.trim()).join("persons.bin")).unwrap();
    b[40..]
        .chunks_exact(20)
        .find(|e| e[..16] == k[..16])
        .map(|e| u32::from_le_bytes(e[16..].try_into().unwrap()))
        .unwrap_or_else(|| panic!("person {person} not in persons.bin"))
}

/// One epoch's delta as received: (epoch, removed, upserts, number of chunks).
pub type EpochDelta = (u32, Vec<Tag>, Vec<(Tag, EncryptedLabel)>, usize);

/// FetchDelta from `from`: the deltas per epoch and the DeltaEnd (epoch, total), checked
/// against the chunking rules of wire.md §5.2.5; or the Error.
pub async fn fetch_delta(
    conn: &quinn::Connection,
    kp: nayose_wire::KeyPeriodId,
    from: u32,
) -> Result<(Vec<EpochDelta>, u32, u64), Response> {
    let frames = request(
        conn,
        &Request::FetchDelta(FetchDeltaRequest {
            key_period: kp,
            from_epoch: from,
        }),
    )
    .await
    .unwrap();
    if let [Response::Error(_)] = frames.as_slice() {
        return Err(frames.into_iter().next().unwrap());
    }
    let (last, chunks) = frames.split_last().unwrap();
    let mut out: Vec<EpochDelta> = Vec::new();
    for f in chunks {
        let Response::DeltaChunk(c) = f else {
            panic!("expected a DeltaChunk, got {f:?}");
        };
        assert_eq!(c.key_period, kp);
        assert!(c.epoch > from);
        assert!(c.removed.len() + c.upserts.len() <= 65_536);
        let removed: Vec<Tag> = c.removed.as_slice().iter().map(|t| Tag(t.0)).collect();
        let upserts: Vec<(Tag, EncryptedLabel)> = c
            .upserts
            .as_slice()
            .iter()
            .map(|e| (Tag(e.tag.0), EncryptedLabel(e.label.0)))
            .collect();
        match out.last_mut() {
            Some(d) if d.0 == c.epoch => {
                assert!(
                    removed.is_empty() || d.2.is_empty(),
                    "no removed tag after an upsert"
                );
                assert!(
                    !removed.is_empty() || !upserts.is_empty(),
                    "no empty follow-up chunk"
                );
                d.1.extend(removed);
                d.2.extend(upserts);
                d.3 += 1;
            }
            Some(d) => {
                assert!(c.epoch > d.0, "epochs ascend");
                out.push((c.epoch, removed, upserts, 1));
            }
            None => out.push((c.epoch, removed, upserts, 1)),
        }
    }
    match last {
        Response::DeltaEnd(e) => {
            assert_eq!(e.key_period, kp);
            assert_eq!(e.epoch, out.last().map_or(from, |d| d.0));
            Ok((out, e.epoch, e.total))
        }
        other => panic!("expected DeltaEnd, got {other:?}"),
    }
}

/// Applies received deltas to `table` (nayose-table's client logic).
pub fn apply(table: &mut ClientTable, deltas: &[EpochDelta]) {
    for (e, removed, upserts, _) in deltas {
        table.apply_delta(*e, removed, upserts).unwrap();
    }
}

/// The label master key of key period `kp` (the test plays auditor).
pub fn label_master_key(data: &Path, kp: u64) -> nayose_table::LabelMasterKey {
    let bytes: [u8; 32] = fs::read(
        data.join("keyperiods")
            .join(format!("{kp:020}"))
            .join("label-master.key"),
    )
    .unwrap()
    .try_into()
    .unwrap();
    nayose_table::LabelMasterKey::from_bytes(&bytes).unwrap()
}

/// The labels of `outputs` in `table` for `client`.
pub fn labels(
    client: &str,
    table: &ClientTable,
    outputs: &[[u8; 64]],
) -> Vec<Option<nayose_table::Label>> {
    nayose_table::match_outputs(&ClientId::new(client).unwrap(), table, outputs)
        .labels()
        .to_vec()
}
