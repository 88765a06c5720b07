//! The real certificate workflow through the `nayose` binary: the entity makes its key and a
//! CSR (`pki request`), the management body signs it with the client CA (`pki sign`) and lists
//! it under its entity with the lines `pki fingerprint` prints, the certificate links end to end
//! over real QUIC on 127.0.0.1; then the body revokes it (`pki revoke`) and the server given the
//! CRL (`--client-crl`) refuses it.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fs;

mod common;

use common::*;

#[test]
fn request_sign_link_then_revoke_and_refuse() {
    let w = world(300);
    ok(&["pki", "init", "--dir", &w.s("pki")]);
    // The entity's machine: key and request; only the request leaves it.
    let out = ok(&[
        "pki",
        "request",
        "--id",
        "clinic-7",
        "--out",
        &w.s("pki/clients"),
    ]);
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        said.contains("clinic-7.key") && said.contains("clinic-7.csr"),
        "{said}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(w.path("pki/clients/clinic-7.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The management body: a request for another id than expected is refused.
    let refused = nayose(&[
        "pki",
        "sign",
        "--ca-dir",
        &w.s("pki"),
        "--csr",
        &w.s("pki/clients/clinic-7.csr"),
        "--out",
        &w.s("pki/clients/other.pem"),
        "--id",
        "clinic-8",
    ]);
    assert!(!refused.status.success());
    let e = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(e.contains("clinic-7.csr") && e.contains("clinic-8"), "{e}");
    assert!(!w.path("pki/clients/other.pem").exists());
    let out = ok(&[
        "pki",
        "sign",
        "--ca-dir",
        &w.s("pki"),
        "--csr",
        &w.s("pki/clients/clinic-7.csr"),
        "--out",
        &w.s("pki/clients/clinic-7.pem"),
        "--id",
        "clinic-7",
    ]);
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(said.contains("serial") && said.contains("JST"), "{said}");

    // The management body lists the certificate under its entity: `pki fingerprint` prints
    // the lines to paste (its key's fingerprint, and its issuer and subject).
    let out = ok(&[
        "pki",
        "fingerprint",
        "--cert",
        &w.s("pki/clients/clinic-7.pem"),
    ]);
    let lines = String::from_utf8(out.stdout).unwrap();
    let fp = lines
        .lines()
        .find_map(|l| l.strip_prefix("spki_sha256 = [\"")?.strip_suffix("\"]"))
        .unwrap_or_else(|| panic!("{lines}"));
    assert!(
        fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit()),
        "{fp}"
    );
    assert!(lines.contains("\nsubject = \"CN=clinic-7\"\n"), "{lines}");
    fs::write(
        w.path("clients.toml"),
        format!("[[entity]]\nid = \"clinic-7\"\nevaluations_per_day = 1000000\n{lines}"),
    )
    .unwrap();
    ok(&[
        "server",
        "build",
        "--data-dir",
        &w.s("server"),
        "--registry",
        &w.s("registry.csv"),
    ]);
    let port = free_udp_port();
    let server = serve(&w, port);
    run_link(&link_args(&w, port, "clinic-7", "first.csv"));
    assert_groups_match(&w, "first.csv");
    drop(server);

    // Revoked: the CRL is written, and the server given it refuses the certificate.
    let out = ok(&[
        "pki",
        "revoke",
        "--ca-dir",
        &w.s("pki"),
        "--cert",
        &w.s("pki/clients/clinic-7.pem"),
    ]);
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        said.contains("revoked") && said.contains("CN=clinic-7"),
        "{said}"
    );
    assert!(w.path("pki/client-crl.pem").exists());
    let port = free_udp_port();
    let _server = serve_with(&w, port, &["--client-crl", &w.s("pki/client-crl.pem")]);
    let args = link_args(&w, port, "clinic-7", "second.csv");
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let refused = nayose(&a);
    assert!(!refused.status.success());
    let e = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(
        e.contains("clinic-7.pem") && e.contains("CN=clinic-7") && e.contains("revoked"),
        "{e}"
    );
    assert!(!w.path("second.csv").exists());
}
