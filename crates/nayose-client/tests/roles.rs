//! Certificate roles and revocation, seen by the client over real QUIC on 127.0.0.1: a revoked
//! client certificate is refused by the server and the client's error says whose and that it
//! is revoked; a server certificate without `serverAuth`, or issued by the client CA, is
//! refused by the client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use nayose_client::{ClientError, NoProgress, link_async};
use nayose_pki::{Purpose, Revocation};
use rustls_pki_types::pem::PemObject;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn link(cfg: &nayose_client::ClientConfig) -> Result<(), ClientError> {
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        link_async(cfg, &NoProgress),
    )
    .await
    .expect("the link run must end in bounded time")
    .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_client_certificate_is_refused_and_named() {
    let crl = std::sync::Mutex::new(None);
    let fx = Fixture::new(20, |c| {
        let pki = c.client_ca.as_ref().unwrap().parent().unwrap().to_owned();
        let path = pki.join("client-crl.pem");
        c.client_crl = vec![path.clone()];
        *crl.lock().unwrap() = Some(path);
    });
    // Revoke the fixture's client certificate.
    let der =
        rustls_pki_types::CertificateDer::from_pem_file(fx.pki.dir.join("client.pem")).unwrap();
    let summary = nayose_pki::certificate_summary(der.as_ref()).unwrap();
    let revoked = Revocation {
        serial: nayose_pki::parse_serial_hex(&summary.serial).unwrap(),
        revoked_at: now(),
    };
    let crl = crl.lock().unwrap().clone().unwrap();
    std::fs::write(
        &crl,
        nayose_pki::make_crl(&fx.pki.client_ca, &[revoked], now(), 30).unwrap(),
    )
    .unwrap();
    let server = fx.start().await;
    let input = fx.path("held.csv");
    write_held(&input, &fx.reg, 2, 0);
    let out = fx.path("out.csv");
    let cfg = fx.client(server.local_addr(), &input, &out);
    let err = link(&cfg).await.unwrap_err();
    assert!(
        matches!(err, ClientError::CertificateRefused { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("client.pem") && text.contains(&format!("CN={CLIENT_ID}")),
        "whose: {text}"
    );
    assert!(text.contains("revoked"), "why: {text}");
    assert!(!out.exists());

    // A fresh certificate for the same id (a new serial) is accepted.
    let fresh = nayose_pki::issue_client_cert(&fx.pki.client_ca, CLIENT_ID).unwrap();
    std::fs::write(fx.pki.dir.join("client.pem"), &fresh.cert_pem).unwrap();
    write_private(&fx.pki.dir.join("client.key"), &fresh.key_pem);
    link(&cfg).await.unwrap();
    server.shutdown().await;
}

/// Replaces the fixture's server certificate with the one `make` issues and expects the
/// client to refuse it with a handshake error containing `why`.
async fn refused_server_certificate(make: impl FnOnce(&Pki) -> nayose_pki::Issued, why: &str) {
    let fx = Fixture::new(20, |_| {});
    let cert = make(&fx.pki);
    std::fs::write(fx.pki.dir.join("server.pem"), &cert.cert_pem).unwrap();
    write_private(&fx.pki.dir.join("server.key"), &cert.key_pem);
    let server = fx.start().await;
    let input = fx.path("held.csv");
    write_held(&input, &fx.reg, 2, 0);
    let out = fx.path("out.csv");
    let cfg = fx.client(server.local_addr(), &input, &out);
    let err = link(&cfg).await.unwrap_err();
    assert!(matches!(err, ClientError::Handshake { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("this client refused the server's certificate (") && text.contains(why),
        "{why}: {text}"
    );
    assert!(!out.exists());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_certificate_with_client_auth_only_is_refused() {
    // WebPKI refuses a certificate whose extended key usages leave out serverAuth.
    refused_server_certificate(
        |pki| {
            nayose_pki::issue_cert_with_purposes(
                &pki.server_ca,
                "localhost",
                Some("localhost"),
                &[Purpose::ClientAuth],
            )
            .unwrap()
        },
        "it lacks the serverAuth extended key usage",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_certificate_without_any_extended_key_usage_is_refused() {
    // WebPKI alone would accept it; nayose requires serverAuth.
    refused_server_certificate(
        |pki| {
            nayose_pki::issue_cert_with_purposes(
                &pki.server_ca,
                "localhost",
                Some("localhost"),
                &[],
            )
            .unwrap()
        },
        "it lacks the serverAuth extended key usage",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_certificate_issued_by_the_client_ca_is_refused() {
    refused_server_certificate(
        |pki| nayose_pki::issue_server_cert(&pki.client_ca, "localhost").unwrap(),
        "it was not issued by the server CA of --ca",
    )
    .await;
}
