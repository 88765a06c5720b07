//! The operator's Prometheus endpoint: `metrics_listen = "127.0.0.1:9464"` in `server.toml`
//! serves `GET /metrics` over plain HTTP in the text exposition format of the
//! `prometheus-client` crate (OpenMetrics text).
//!
//! ```text
//! nayose_requests_total{client,kind}      requests by kind (Info, Evaluate, FetchBase, …)
//! nayose_evaluations_total{client}        blinded elements evaluated
//! nayose_entries_sent_total{client}       table entries sent
//! nayose_bytes_sent_total{client}         bytes sent on request streams
//! nayose_bytes_received_total{client}     bytes received on request streams
//! nayose_errors_total{code}               Error responses and refused connections, by code
//! nayose_epoch                            the epoch being served
//! nayose_key_period                       the key period's number
//! nayose_key_period_info{key_period}      1, labelled with the key period id
//! nayose_open_connections                 connections of accredited clients
//! nayose_audit_records                    records in the audit log (the head's sequence)
//! ```
//!
//! Invariants: the endpoint carries counts and client ids only — never a number, a tag, a
//! label or a key; it answers only `GET /metrics` (anything else gets 404 or 400), reads at
//! most [`MAX_REQUEST`] bytes of a request within [`READ_TIMEOUT`], and closes each connection
//! after one answer. It is plain HTTP without authentication: bind it to loopback or an
//! operator network, never to the clients' network.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::debug;

use crate::stats::ClientCounters;

/// Most bytes read of one HTTP request (the request line and headers).
pub(crate) const MAX_REQUEST: usize = 8 * 1024;
/// Time a scraper has to send its request.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    client: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClientLabels {
    client: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyPeriodLabels {
    key_period: String,
}

/// The state read at each scrape (epoch, connections, audit head).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) epoch: u32,
    pub(crate) key_period_number: u64,
    pub(crate) key_period: String,
    pub(crate) open_connections: u64,
    pub(crate) audit_records: u64,
}

/// The server's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    evaluations: Family<ClientLabels, Counter>,
    entries: Family<ClientLabels, Counter>,
    bytes_sent: Family<ClientLabels, Counter>,
    bytes_received: Family<ClientLabels, Counter>,
    errors: Family<CodeLabels, Counter>,
    epoch: Gauge,
    key_period: Gauge,
    key_period_info: Family<KeyPeriodLabels, Gauge>,
    connections: Gauge,
    audit_records: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("nayose");
        let m = Metrics {
            requests: Family::default(),
            evaluations: Family::default(),
            entries: Family::default(),
            bytes_sent: Family::default(),
            bytes_received: Family::default(),
            errors: Family::default(),
            epoch: Gauge::default(),
            key_period: Gauge::default(),
            key_period_info: Family::default(),
            connections: Gauge::default(),
            audit_records: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "Requests received, by client and kind",
            m.requests.clone(),
        );
        registry.register(
            "evaluations",
            "Blinded elements evaluated, by client",
            m.evaluations.clone(),
        );
        registry.register(
            "entries_sent",
            "Table entries sent, by client",
            m.entries.clone(),
        );
        registry.register(
            "bytes_sent",
            "Bytes sent on request streams, by client",
            m.bytes_sent.clone(),
        );
        registry.register(
            "bytes_received",
            "Bytes received on request streams, by client",
            m.bytes_received.clone(),
        );
        registry.register(
            "errors",
            "Error responses and refused connections, by code",
            m.errors.clone(),
        );
        registry.register("epoch", "The epoch being served", m.epoch.clone());
        registry.register(
            "key_period",
            "The number of the key period being served",
            m.key_period.clone(),
        );
        registry.register(
            "key_period_info",
            "1, labelled with the id of the key period being served",
            m.key_period_info.clone(),
        );
        registry.register(
            "open_connections",
            "Open connections of accredited clients",
            m.connections.clone(),
        );
        registry.register(
            "audit_records",
            "Records in the audit log (the sequence number of its head)",
            m.audit_records.clone(),
        );
        Metrics { registry, ..m }
    }

    /// One answered request of `client`: its kind (the request's name, or `Invalid`), the
    /// error code if it was answered with an Error, and its counters.
    pub(crate) fn request(
        &self,
        client: &str,
        kind: &str,
        error: Option<&str>,
        c: &ClientCounters,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                client: client.to_owned(),
                kind: kind.to_owned(),
            })
            .inc();
        let who = ClientLabels {
            client: client.to_owned(),
        };
        for (family, n) in [
            (&self.evaluations, c.evaluations),
            (&self.entries, c.entries),
            (&self.bytes_sent, c.bytes_out),
            (&self.bytes_received, c.bytes_in),
        ] {
            if n > 0 {
                family.get_or_create(&who).inc_by(n);
            }
        }
        if let Some(code) = error {
            self.error(code);
        }
    }

    /// An error (an Error response or a refused connection) with `code`.
    pub(crate) fn error(&self, code: &str) {
        self.errors
            .get_or_create(&CodeLabels {
                code: code.to_owned(),
            })
            .inc();
    }

    /// The text exposition, after setting the gauges from `now`.
    pub(crate) fn encode(&self, now: &Snapshot) -> Result<String, std::fmt::Error> {
        self.epoch.set(i64::from(now.epoch));
        self.key_period.set(gauge_value(now.key_period_number));
        self.key_period_info.clear();
        self.key_period_info
            .get_or_create(&KeyPeriodLabels {
                key_period: now.key_period.clone(),
            })
            .set(1);
        self.connections.set(gauge_value(now.open_connections));
        self.audit_records.set(gauge_value(now.audit_records));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Serves `GET /metrics` on `listener` until `stop` turns true; `snapshot` reads the state at
/// each scrape.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    snapshot: Arc<dyn Fn() -> Snapshot + Send + Sync>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => {
                if *stop.borrow() {
                    return;
                }
            }
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let (m, s) = (metrics.clone(), snapshot.clone());
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, &m, &*s).await {
                        debug!(%peer, "metrics request failed: {e}");
                    }
                });
            }
        }
    }
}

/// Reads one request (up to the blank line ending its headers) and answers it.
async fn answer(
    mut stream: TcpStream,
    metrics: &Metrics,
    snapshot: &(dyn Fn() -> Snapshot + Send + Sync),
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let complete = tokio::time::timeout(READ_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<bool, std::io::Error>(buf.windows(4).any(|w| w == b"\r\n\r\n"))
    })
    .await
    .unwrap_or(Ok(false))?;
    let line = buf.split(|&b| b == b'\r').next().unwrap_or_default();
    let (status, content_type, body) = match (complete, route(line)) {
        (false, _) => (
            "400 Bad Request",
            "text/plain",
            "incomplete request\n".to_owned(),
        ),
        (true, Route::Metrics) => match metrics.encode(&snapshot()) {
            Ok(text) => (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            ),
            Err(_) => (
                "500 Internal Server Error",
                "text/plain",
                "cannot encode the metrics\n".to_owned(),
            ),
        },
        (true, Route::NotFound) => ("404 Not Found", "text/plain", "GET /metrics\n".to_owned()),
        (true, Route::Bad) => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET /metrics\n".to_owned(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    Bad,
}

/// The route of a request line `GET /metrics HTTP/1.1` (a query string is ignored).
fn route(line: &[u8]) -> Route {
    let mut parts = line.split(|&b| b == b' ');
    match (parts.next(), parts.next()) {
        (Some(b"GET"), Some(path)) => {
            let path = path.split(|&b| b == b'?').next().unwrap_or_default();
            if path == b"/metrics" {
                Route::Metrics
            } else {
                Route::NotFound
            }
        }
        _ => Route::Bad,
    }
}

/// Binds the metrics listener.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_get_metrics_is_served() {
        assert_eq!(route(b"GET /metrics HTTP/1.1"), Route::Metrics);
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.1"), Route::Metrics);
        assert_eq!(route(b"GET / HTTP/1.1"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1"), Route::Bad);
        assert_eq!(route(b""), Route::Bad);
    }

    #[test]
    fn counters_and_gauges_are_exposed() {
        let m = Metrics::new();
        let c = ClientCounters {
            requests: 1,
            evaluations: 16,
            bytes_in: 100,
            bytes_out: 900,
            ..ClientCounters::default()
        };
        m.request("research-01", "Evaluate", None, &c);
        m.request(
            "research-01",
            "Evaluate",
            Some("QuotaExhausted"),
            &ClientCounters::default(),
        );
        let text = m
            .encode(&Snapshot {
                epoch: 3,
                key_period_number: 1,
                key_period: "1-0011223344556677".into(),
                open_connections: 2,
                audit_records: 42,
            })
            .unwrap();
        for want in [
            "nayose_requests_total{client=\"research-01\",kind=\"Evaluate\"} 2",
            "nayose_evaluations_total{client=\"research-01\"} 16",
            "nayose_bytes_sent_total{client=\"research-01\"} 900",
            "nayose_errors_total{code=\"QuotaExhausted\"} 1",
            "nayose_epoch 3",
            "nayose_key_period_info{key_period=\"1-0011223344556677\"} 1",
            "nayose_open_connections 2",
            "nayose_audit_records 42",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
    }
}
