//! The server's Prometheus endpoint over real loopback: a link run over QUIC, then
//! `GET /metrics` over TCP, and the counters it shows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use nayose_client::{NoProgress, link_async};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` on `addr`; (status line, body).
async fn get(addr: std::net::SocketAddr, request: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(TEST_LIMIT, s.read_to_end(&mut raw))
        .await
        .expect("the endpoint answers in bounded time")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// The value of the sample `name{labels}` (or `name` without labels).
fn sample(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in\n{body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_metrics_endpoint_counts_a_link_run() {
    let fx = Fixture::new(200, |c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    });
    let server = fx.start().await;
    let addr = server.metrics_addr().expect("metrics_listen is set");
    let input = fx.path("held.csv");
    write_held(&input, &fx.reg, 3, 4);
    let out = fx.path("out.csv");
    let cfg = fx.client(server.local_addr(), &input, &out);
    let s = tokio::time::timeout(TEST_LIMIT, link_async(&cfg, &NoProgress))
        .await
        .unwrap()
        .unwrap();

    let (status, body) = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let c = format!("client=\"{CLIENT_ID}\"");
    assert_eq!(
        sample(&body, &format!("nayose_evaluations_total{{{c}}}")),
        s.evaluated_numbers as f64
    );
    assert_eq!(
        sample(
            &body,
            &format!("nayose_requests_total{{{c},kind=\"Evaluate\"}}")
        ),
        s.evaluate_requests as f64
    );
    assert_eq!(
        sample(
            &body,
            &format!("nayose_requests_total{{{c},kind=\"Info\"}}")
        ),
        1.0
    );
    assert_eq!(
        sample(
            &body,
            &format!("nayose_requests_total{{{c},kind=\"FetchBase\"}}")
        ),
        1.0
    );
    assert_eq!(
        sample(&body, &format!("nayose_entries_sent_total{{{c}}}")),
        s.table_entries as f64
    );
    // The server counts the bytes of its frames as the client does.
    assert_eq!(
        sample(&body, &format!("nayose_bytes_sent_total{{{c}}}")),
        s.bytes_received as f64
    );
    assert_eq!(
        sample(&body, &format!("nayose_bytes_received_total{{{c}}}")),
        s.bytes_sent as f64
    );
    assert_eq!(sample(&body, "nayose_epoch"), f64::from(server.epoch()));
    assert_eq!(
        sample(
            &body,
            &format!(
                "nayose_key_period_info{{key_period=\"{}\"}}",
                server.key_period()
            )
        ),
        1.0
    );
    assert_eq!(
        sample(&body, "nayose_audit_records"),
        server.audit_head().count as f64
    );
    assert!(
        body.contains("# TYPE nayose_open_connections gauge"),
        "{body}"
    );
    assert!(
        !body.contains("nayose_errors_total{"),
        "no error yet: {body}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");

    // A client that is not accredited is counted under its error code.
    let stranger = nayose_pki::issue_client_cert(&fx.pki.client_ca, "stranger").unwrap();
    std::fs::write(fx.pki.dir.join("client.pem"), &stranger.cert_pem).unwrap();
    write_private(&fx.pki.dir.join("client.key"), &stranger.key_pem);
    let refused = link_async(&cfg, &NoProgress).await;
    assert!(refused.is_err());
    let (_, body) = get(addr, "GET /metrics HTTP/1.1\r\n\r\n").await;
    assert!(
        sample(&body, "nayose_errors_total{code=\"NotAccredited\"}") >= 1.0,
        "{body}"
    );

    // Anything but GET /metrics is refused.
    let (status, _) = get(addr, "GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _) = get(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    server.shutdown().await;
}
