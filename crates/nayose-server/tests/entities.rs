//! Entities over real QUIC on 127.0.0.1 with an independent client (issue 12 items 1 and 4): an
//! entity's two certificates (different keys) get the same entity in Info, the same encrypted
//! base and one shared quota; a certificate by issuer + subject is accepted (and one of a CA of
//! the same name is not; two client CAs of one name stop the start); the declared-holdings warning appears in the log when it is passed and in the
//! status lines while it lasts; the hard cap refuses a batch with `HardCapReached` and charges
//! nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use nayose_server::Server;
use nayose_wire::{ErrorCode, Request, Response};

/// Every log line of this test binary (a global subscriber writing here).
fn log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter(tracing_subscriber::EnvFilter::new("nayose_server=info"))
            .with_writer(move || Sink(sink.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged() -> String {
    String::from_utf8_lossy(&log().lock().unwrap()).into_owned()
}

fn fingerprint(cert: &Path) -> String {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    nayose_pki::spki_fingerprint(CertificateDer::from_pem_file(cert).unwrap().as_ref()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_certificates_one_entity_its_warning_and_its_hard_cap() {
    let log = log();
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"), "body");
    let data = tmp.path().join("data");
    let reg = tmp.path().join("registry.csv");
    let rows = registry_rows(40, 0);
    write_registry(&reg, &rows);
    build(&data, &reg);
    let (a_cert, a_key) = pki.client("lab-2026");
    let (b_cert, b_key) = pki.client("lab-2027");
    let named = pki.write_pair(
        "lab-named",
        &nayose_pki::issue_client_cert(&pki.client_ca, "lab-named").unwrap(),
    );
    // A CA of the same name as the client CA, not configured: its certificate names the listed
    // issuer and subject, but the configured CA did not sign it.
    let twin = nayose_pki::generate_ca("body (clients)").unwrap();
    let twin_pair = pki.write_pair(
        "twin",
        &nayose_pki::issue_client_cert(&twin, "lab-named").unwrap(),
    );
    let id = |p: &Path| {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        nayose_pki::cert_identity(CertificateDer::from_pem_file(p).unwrap().as_ref()).unwrap()
    };
    let n = id(&named.0);
    let clients = format!(
        "[[entity]]\nid = \"lab\"\nspki_sha256 = [\"{}\", \"{}\"]\nevaluations_per_day = 1000\n\
         declared_holdings = 6\nhard_cap = 10\n\
         [[entity.certificate]]\nissuer = \"{}\"\nsubject = \"{}\"\n",
        fingerprint(&a_cert),
        fingerprint(&b_cert),
        n.issuer,
        n.subject
    );
    let mut cfg = config(&pki, &data, &clients);
    cfg.status_interval_secs = 1;
    let server = Server::start(cfg).await.unwrap();
    let addr = server.local_addr();
    let conn_of = |c: &Path, k: &Path| {
        let ep = client_endpoint(&pki.ca_pem(), Some((c, k)));
        async move { connect(&ep, addr).await.unwrap() }
    };
    let a = conn_of(&a_cert, &a_key).await;
    let b = conn_of(&b_cert, &b_key).await;
    let (ia, ib) = (info(&a).await, info(&b).await);
    assert_eq!((ia.entity.as_str(), ib.entity.as_str()), ("lab", "lab"));
    // The same entity: the same encrypted base, byte for byte (labels are the entity's).
    assert_eq!(
        fetch_base(&a, &ia, 0).await.unwrap(),
        fetch_base(&b, &ib, 0).await.unwrap()
    );
    let named_conn = conn_of(&named.0, &named.1).await;
    assert_eq!(info(&named_conn).await.entity.as_str(), "lab");
    // The twin CA is not in client_ca: its certificate is refused in the handshake.
    let twin_conn = conn_of(&twin_pair.0, &twin_pair.1).await;
    assert!(request(&twin_conn, &Request::Info).await.is_err());

    // 4 numbers through one certificate, then 4 through the other: one quota, and the
    // key-period total passes the declared holdings (6) with the second batch.
    let inputs: Vec<Vec<u8>> = rows.iter().take(8).map(Row::canonical).collect();
    evaluate(&a, &ia, &inputs[..4]).await.unwrap();
    assert!(!logged().contains("entity passed its declared holdings"));
    evaluate(&b, &ib, &inputs[4..]).await.unwrap();
    let i = info(&a).await;
    assert_eq!(
        (i.quota_left_today, i.quota_left_key_period),
        (992, 9992),
        "both certificates charge the entity"
    );
    let text = logged();
    let warning = text
        .lines()
        .find(|l| l.contains("entity passed its declared holdings"))
        .expect("a warning when the declared holdings are passed");
    assert!(
        warning.contains("WARN")
            && warning.contains("entity=lab")
            && warning.contains("evaluations_key_period=8")
            && warning.contains("declared_holdings=6"),
        "{warning}"
    );

    // Past the hard cap (8 + 3 > 10): refused, retry 0, nothing charged.
    let refused = evaluate(&b, &ib, &inputs[..3]).await.unwrap_err();
    let Response::Error(e) = &refused else {
        panic!("{refused:?}")
    };
    assert_eq!((e.code, e.retry_after_secs), (ErrorCode::HardCapReached, 0));
    assert!(
        e.message.as_str().contains("hard cap of 10"),
        "{}",
        e.message
    );
    assert_eq!(info(&a).await.quota_left_today, 992, "nothing charged");
    // Up to the cap exactly is still allowed.
    evaluate(&a, &ia, &inputs[..2]).await.unwrap();

    // The status lines say it while it lasts.
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let text = logged();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("status: entity over its declared holdings"))
        {
            assert!(
                line.contains("entity=lab")
                    && line.contains("evaluations_key_period=10")
                    && line.contains("hard_cap=Some(10)"),
                "{line}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no status line");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for c in [a, b, named_conn, twin_conn] {
        c.close(0u32.into(), b"");
    }
    server.shutdown().await;
    let audit = std::fs::read_to_string(data.join("audit/audit.log")).unwrap();
    assert!(
        audit.contains(&format!("SPKI SHA-256 {}", fingerprint(&a_cert))),
        "the connected record names the certificate's key"
    );
    assert!(audit.contains("\"outcome\":\"HardCapReached\""), "{audit}");
    drop(log);

    // And it cannot be configured beside the client CA: an [[entity.certificate]] names its
    // issuer by name, so two client CAs of one name stop the start.
    let both = tmp.path().join("twins.pem");
    std::fs::write(
        &both,
        format!("{}{}", pki.client_ca.cert_pem, twin.cert_pem),
    )
    .unwrap();
    let mut cfg = config(&pki, &data, &clients);
    cfg.client_ca = Some(both);
    let Err(e) = Server::start(cfg).await else {
        panic!("two client CAs of one name must stop the start")
    };
    assert!(e.to_string().contains("two CA certificates named"), "{e}");
}
