//! Entities and their certificates (issue 12 items 1 and 4), with the real client against the
//! real server over QUIC on 127.0.0.1: an entity listed by the SPKI fingerprints of two
//! certificates (different keys, different CommonNames — a rotation) gets the same labels
//! through either and shares one quota; a certificate with the entity's CommonName signed by a
//! second client CA (configured in `client_ca`, not listed for the entity) is refused; and an
//! entity past its hard cap is refused with the error the client reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use nayose_client::{ClientConfig, ClientError, LinkSummary, NoProgress, link_async};

const ENTITY: &str = "research-01";

async fn run(cfg: &ClientConfig) -> Result<LinkSummary, ClientError> {
    tokio::time::timeout(Duration::from_secs(120), link_async(cfg, &NoProgress))
        .await
        .expect("the link run must end in bounded time")
}

fn der(pem_file: &Path) -> Vec<u8> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::from_pem_file(pem_file)
        .unwrap()
        .as_ref()
        .to_vec()
}

/// A client config presenting `cert`/`key`, with its own cache directory `cache`.
fn as_cert(
    fx: &Fixture,
    addr: std::net::SocketAddr,
    (cert, key): (&Path, &Path),
    cache: &str,
    out: &Path,
) -> ClientConfig {
    let mut cfg = client_config(&fx.pki, addr, &fx.path("held.csv"), out, &fx.path(cache));
    cfg.cert = Some(cert.to_path_buf());
    cfg.key = Some(key.to_path_buf());
    cfg
}

fn write_pair(dir: &Path, name: &str, c: &nayose_pki::Issued) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert, &c.cert_pem).unwrap();
    write_private(&key, &c.key_pem);
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotated_certificate_keeps_the_labels_and_the_quota_and_another_cas_is_refused() {
    let mut fx = Fixture::new(300, |_| {});
    let dir = fx.pki.dir.clone();
    // The entity's certificates: the fixture's (CommonName "hospital-a") and its successor,
    // with a new key and another CommonName. Neither CommonName is the entity id.
    let old = (dir.join("client.pem"), dir.join("client.key"));
    let next = write_pair(
        &dir,
        "next",
        &nayose_pki::issue_client_cert(&fx.pki.client_ca, "hospital-a-2027").unwrap(),
    );
    // A second client CA, trusted by the server (client_ca holds both), that mints a
    // certificate carrying the entity id as its CommonName.
    let other_ca = nayose_pki::generate_ca("another client CA").unwrap();
    let forged = write_pair(
        &dir,
        "forged",
        &nayose_pki::issue_client_cert(&other_ca, ENTITY).unwrap(),
    );
    let both = dir.join("client-cas.pem");
    std::fs::write(
        &both,
        format!("{}{}", fx.pki.client_ca.cert_pem, other_ca.cert_pem),
    )
    .unwrap();
    fx.server_config.client_ca = Some(both);
    let fp = |c: &Path| nayose_pki::spki_fingerprint(&der(c)).unwrap();
    let input = fx.path("held.csv");
    write_held(&input, &fx.reg, 3, 2);
    std::fs::write(
        fx.server_config.clients.as_ref().unwrap(),
        format!(
            "[[entity]]\nid = \"{ENTITY}\"\nspki_sha256 = [\"{}\", \"{}\"]\n\
             evaluations_per_day = 100000\n",
            fp(&old.0),
            fp(&next.0)
        ),
    )
    .unwrap();
    let server = fx.start().await;
    let addr = server.local_addr();

    // The old certificate: the server names the entity, and the summary shows it.
    let out_old = fx.path("old.csv");
    let s1 = run(&as_cert(&fx, addr, (&old.0, &old.1), "cache-old", &out_old))
        .await
        .unwrap();
    assert_eq!(s1.entity, ENTITY);
    assert_eq!(s1.client_id, CLIENT_ID, "the certificate's own name");
    assert!(
        s1.to_string()
            .contains(&format!("as entity {ENTITY} (certificate {CLIENT_ID})")),
        "{s1}"
    );
    assert_eq!(s1.sync.kind, "base");
    assert!(s1.evaluated_numbers > 0);

    // The rotated certificate, from nothing (its own empty cache): it evaluates and downloads
    // again and gets the same labels, row for row.
    let out_next = fx.path("next.csv");
    let s2 = run(&as_cert(
        &fx,
        addr,
        (&next.0, &next.1),
        "cache-next",
        &out_next,
    ))
    .await
    .unwrap();
    assert_eq!(s2.entity, ENTITY);
    assert_eq!(
        (s2.sync.kind.as_str(), s2.evaluated_numbers),
        ("base", s1.evaluated_numbers)
    );
    assert_eq!(
        std::fs::read(&out_old).unwrap(),
        std::fs::read(&out_next).unwrap(),
        "the same labels through either certificate"
    );
    assert!(
        s1.linked_numbers > 0,
        "the comparison covers linked numbers"
    );
    // Both certificates' evaluations are the entity's: one quota record, keyed by the entity.
    let book: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.data.join("state/quota.json")).unwrap()).unwrap();
    let clients = book["clients"].as_object().unwrap();
    assert_eq!(clients.keys().collect::<Vec<_>>(), [ENTITY]);
    assert_eq!(
        clients[ENTITY]["key_period_used"].as_u64().unwrap(),
        s1.evaluated_numbers + s2.evaluated_numbers
    );

    // The other CA's certificate with the entity id as CommonName: refused, final.
    let err = run(&as_cert(
        &fx,
        addr,
        (&forged.0, &forged.1),
        "cache-forged",
        &fx.path("f.csv"),
    ))
    .await
    .unwrap_err();
    let ClientError::NotAccredited { message, .. } = &err else {
        panic!("expected NotAccredited, got {err}");
    };
    assert!(
        message.contains("accepts only the certificates it lists"),
        "{message}"
    );
    assert!(!fx.path("f.csv").exists());

    // A hard cap just above what was used: the next fresh run is refused before its first
    // batch is evaluated, and the client says what it is and whom to ask.
    let used = s1.evaluated_numbers + s2.evaluated_numbers;
    std::fs::write(
        fx.server_config.clients.as_ref().unwrap(),
        format!(
            "[[entity]]\nid = \"{ENTITY}\"\nspki_sha256 = [\"{}\", \"{}\"]\n\
             evaluations_per_day = 100000\ndeclared_holdings = {}\nhard_cap = {}\n",
            fp(&old.0),
            fp(&next.0),
            s1.evaluated_numbers,
            used + 5
        ),
    )
    .unwrap();
    // clients.toml is picked up within epoch_poll_ms; wait for a modification time the
    // server can tell from the previous one.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let err = run(&as_cert(
        &fx,
        addr,
        (&old.0, &old.1),
        "cache-third",
        &fx.path("t.csv"),
    ))
    .await
    .unwrap_err();
    let ClientError::Link(nayose_proto::ProtoError::HardCap { message }) = &err else {
        panic!("expected the hard cap, got {err}");
    };
    assert!(
        message.contains(&format!("hard cap of {}", used + 5)),
        "{message}"
    );
    assert!(
        err.to_string().contains("contact the management body"),
        "{err}"
    );
    let after: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.data.join("state/quota.json")).unwrap()).unwrap();
    assert_eq!(
        after["clients"][ENTITY]["key_period_used"]
            .as_u64()
            .unwrap(),
        used,
        "nothing charged past the cap"
    );
    server.shutdown().await;
}
