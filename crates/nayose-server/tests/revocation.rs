//! Client certificates over real QUIC on 127.0.0.1, with an independent client: a certificate
//! listed in a client CRL is refused, and so are certificates issued for another role (by the
//! server CA, or by the client CA without `clientAuth`); CRLs that cannot apply stop the start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use nayose_pki::{Purpose, Revocation};
use nayose_server::Server;
use nayose_wire::Request;

const CLIENTS: &str = "[[client]]\nid = \"hosp-a\"\nevaluations_per_day = 1000\n\
                       [[client]]\nid = \"hosp-b\"\nevaluations_per_day = 1000\n\
                       [[client]]\nid = \"hosp-c\"\nevaluations_per_day = 1000\n";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn serial_of(cert: &Path) -> Vec<u8> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let der = CertificateDer::from_pem_file(cert).unwrap();
    let s = nayose_pki::certificate_summary(der.as_ref()).unwrap();
    nayose_pki::parse_serial_hex(&s.serial).unwrap()
}

/// Connects with `identity` and asks for Info: `Ok` if answered, else the refusal.
async fn attempt(pki: &Pki, addr: std::net::SocketAddr, cert: &Path, key: &Path) -> String {
    let ep = client_endpoint(&pki.ca_pem(), Some((cert, key)));
    match connect(&ep, addr).await {
        Err(e) => e,
        Ok(c) => match request(&c, &Request::Info).await {
            Ok(_) => "answered".to_owned(),
            Err(_) => tokio::time::timeout(STEP, c.closed())
                .await
                .unwrap()
                .to_string(),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_wrong_role_client_certificates_are_refused() {
    init_tracing();
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(&tmp.path().join("pki"), "management body CA");
    let data = tmp.path().join("data");
    let reg = tmp.path().join("registry.csv");
    write_registry(&reg, &registry_rows(20, 0));
    build(&data, &reg);

    let (a_cert, a_key) = pki.client("hosp-a");
    let (b_cert, b_key) = pki.client("hosp-b");
    let crl = tmp.path().join("client-crl.pem");
    std::fs::write(
        &crl,
        nayose_pki::make_crl(
            &pki.client_ca,
            &[Revocation {
                serial: serial_of(&a_cert),
                revoked_at: now(),
            }],
            now(),
            30,
        )
        .unwrap(),
    )
    .unwrap();
    let mut cfg = config(&pki, &data, CLIENTS);
    cfg.client_crl = vec![crl.clone()];
    let server = Server::start(cfg.clone()).await.unwrap();
    let addr = server.local_addr();

    // The revoked certificate: refused in the handshake with certificate_revoked (alert 44).
    let refused = attempt(&pki, addr, &a_cert, &a_key).await;
    assert!(refused.contains("error 44"), "{refused}");
    // A certificate of the same CA that is not listed works.
    assert_eq!(attempt(&pki, addr, &b_cert, &b_key).await, "answered");

    // The server's own certificate (server CA, serverAuth) presented as a client certificate.
    let refused = attempt(
        &pki,
        addr,
        &pki.dir.join("server.pem"),
        &pki.dir.join("server.key"),
    )
    .await;
    assert!(refused.contains("handshake failed"), "{refused}");
    // A certificate for an accredited id, issued by the server CA with clientAuth.
    let by_server_ca = nayose_pki::issue_client_cert(&pki.server_ca, "hosp-c").unwrap();
    let (c, k) = pki.write_pair("hosp-c-server-ca", &by_server_ca);
    let refused = attempt(&pki, addr, &c, &k).await;
    assert!(refused.contains("error 48"), "unknown_ca: {refused}");
    // Issued by the client CA for the server role (serverAuth only): WebPKI refuses it.
    let server_role = nayose_pki::issue_cert_with_purposes(
        &pki.client_ca,
        "hosp-c",
        None,
        &[Purpose::ServerAuth],
    )
    .unwrap();
    let (c, k) = pki.write_pair("hosp-c-server-role", &server_role);
    let refused = attempt(&pki, addr, &c, &k).await;
    assert!(
        refused.contains("error 43"),
        "unsupported_certificate: {refused}"
    );
    // Issued by the client CA with no extended key usage at all: nayose refuses it too.
    let no_role =
        nayose_pki::issue_cert_with_purposes(&pki.client_ca, "hosp-c", None, &[]).unwrap();
    let (c, k) = pki.write_pair("hosp-c-no-role", &no_role);
    let refused = attempt(&pki, addr, &c, &k).await;
    assert!(
        refused.contains("error 43"),
        "unsupported_certificate: {refused}"
    );
    // The same id with a proper client certificate is accepted.
    let (c, k) = pki.client("hosp-c");
    assert_eq!(attempt(&pki, addr, &c, &k).await, "answered");
    server.shutdown().await;

    // A CRL of another CA cannot apply: the server does not start, and says which file.
    let other = nayose_pki::generate_ca("someone else's CA").unwrap();
    let foreign = tmp.path().join("foreign-crl.pem");
    std::fs::write(
        &foreign,
        nayose_pki::make_crl(&other, &[], now(), 30).unwrap(),
    )
    .unwrap();
    let mut bad = cfg.clone();
    bad.client_crl = vec![foreign.clone()];
    let e = Server::start(bad).await.err().unwrap().to_string();
    assert!(
        e.contains("foreign-crl.pem") && e.contains("not signed by a CA of client_ca"),
        "{e}"
    );
    // Two client CAs and a CRL of only one: every certificate of the other would be refused
    // as of unknown status, so the server does not start.
    let both = tmp.path().join("two-cas.pem");
    std::fs::write(
        &both,
        format!("{}{}", pki.client_ca.cert_pem, other.cert_pem),
    )
    .unwrap();
    let mut bad = cfg.clone();
    bad.client_ca = Some(both);
    let e = Server::start(bad).await.err().unwrap().to_string();
    assert!(
        e.contains("no CRL of the client CA") && e.contains("someone else's CA"),
        "{e}"
    );
    // A file that is not a CRL.
    let mut bad = cfg.clone();
    bad.client_crl = vec![pki.dir.join("server.pem")];
    let e = Server::start(bad).await.err().unwrap().to_string();
    assert!(e.contains("server.pem"), "{e}");
}
