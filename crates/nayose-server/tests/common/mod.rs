//! Test fixtures: a development PKI, synthetic registries, a server on 127.0.0.1, and a minimal
//! nayose/1 client (quinn + rustls + nayose-wire + nayose-oprf) independent of nayose-client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nayose_server::{BuildOptions, BuildReport, ServerConfig, build_epoch};
use nayose_wire::{FrameDecoder, Request, Response, decode_response, encode_request_frame};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Every network step of a test is bounded by this.
pub const STEP: Duration = Duration::from_secs(20);

pub fn write_private(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

/// A CA, a server certificate for "localhost", and client certificates on demand.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: nayose_pki::Issued,
}

impl Pki {
    pub fn new(dir: &Path, ca_name: &str) -> Pki {
        fs::create_dir_all(dir).unwrap();
        let ca = nayose_pki::generate_ca(ca_name).unwrap();
        fs::write(dir.join("ca.pem"), &ca.cert_pem).unwrap();
        let server = nayose_pki::issue_server_cert(&ca, "localhost").unwrap();
        fs::write(dir.join("server.pem"), &server.cert_pem).unwrap();
        write_private(&dir.join("server.key"), &server.key_pem);
        Pki {
            dir: dir.to_path_buf(),
            ca,
        }
    }

    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// (cert.pem, key.pem) of a client certificate with CommonName `id`.
    pub fn client(&self, id: &str) -> (PathBuf, PathBuf) {
        let c = nayose_pki::issue_client_cert(&self.ca, id).unwrap();
        let cert = self.dir.join(format!("{id}.pem"));
        let key = self.dir.join(format!("{id}.key"));
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
        client_ca: Some(pki.ca_pem()),
        clients: Some(clients),
        min_range_entries: 4,
        max_batch: 64,
        epoch_poll_ms: 100,
        status_interval_secs: 0,
        shutdown_grace_ms: 2000,
        ..ServerConfig::default()
    }
}

/// A QUIC client endpoint trusting `ca_pem`, presenting `identity` (cert, key) if given.
pub fn client_endpoint(ca_pem: &Path, identity: Option<(&Path, &Path)>) -> quinn::Endpoint {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
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
