//! The connection side of a run: connect (with bounded retries and backoff), hand out the live
//! connection, count consecutive failures, close politely.
//!
//! Invariants: one connection at a time (requests are multiplexed on it by the driver); the
//! count of consecutive failures resets only when a request makes progress, so a server that
//! fails the same request forever exhausts the retries instead of looping; a run that has never
//! connected gives up after about 30 seconds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Resolved;
use crate::error::ClientError;
use crate::net::{Conn, Counters, Failure, classify_connection};
use crate::progress::Progress;
use crate::tls::PeerInfo;

/// Counters a run reports in its summary.
#[derive(Debug, Default)]
pub(crate) struct NetStats {
    pub(crate) connections: u64,
    pub(crate) evaluate_requests: u64,
    pub(crate) entries_received: u64,
}

/// The server connection manager of one run.
pub(crate) struct Session<'a> {
    cfg: &'a Resolved,
    quic: quinn::ClientConfig,
    peer: Arc<PeerInfo>,
    endpoint: Option<quinn::Endpoint>,
    conn: Option<Conn>,
    pub(crate) counters: Arc<Counters>,
    failures: u32,
    /// When this run first tried to connect (until its first connection succeeds).
    first_attempt: Option<std::time::Instant>,
    pub(crate) stats: NetStats,
    progress: &'a dyn Progress,
}

/// A run that has never reached the server gives up after this long: a server that is not
/// running is reported within about half a minute, not after the whole retry schedule.
const FIRST_CONNECT_DEADLINE: Duration = Duration::from_secs(30);

impl<'a> Session<'a> {
    pub(crate) fn new(
        cfg: &'a Resolved,
        quic: quinn::ClientConfig,
        peer: Arc<PeerInfo>,
        progress: &'a dyn Progress,
    ) -> Self {
        Session {
            cfg,
            quic,
            peer,
            endpoint: None,
            conn: None,
            first_attempt: None,
            counters: Arc::new(Counters::default()),
            failures: 0,
            stats: NetStats::default(),
            progress,
        }
    }

    /// Records a failure: gives up after `max_attempts` consecutive ones, else waits the
    /// backoff (at least the server's `hint`, capped at the maximum backoff... or one minute for
    /// a server hint).
    pub(crate) async fn fail(
        &mut self,
        reason: &str,
        hint: Option<Duration>,
    ) -> Result<(), ClientError> {
        self.failures += 1;
        let policy = &self.cfg.retry;
        let never_connected = self.stats.connections == 0
            && self.first_attempt.is_some_and(|t| {
                t.elapsed() + policy.backoff(self.failures) > FIRST_CONNECT_DEADLINE
            });
        if never_connected {
            return Err(ClientError::CouldNotConnect {
                server: self.cfg.server.clone(),
                waited_secs: self.first_attempt.map_or(0, |t| t.elapsed().as_secs()),
                last: reason.to_owned(),
            });
        }
        if self.failures >= policy.max_attempts {
            return Err(ClientError::Unreachable {
                server: self.cfg.server.clone(),
                attempts: self.failures,
                last: reason.to_owned(),
            });
        }
        let mut wait = policy.backoff(self.failures);
        if let Some(h) = hint {
            wait = wait.max(h.min(Duration::from_secs(60)));
        }
        self.progress.note(&format!(
            "{reason}; retrying in {:.1}s (attempt {} of {})",
            wait.as_secs_f64(),
            self.failures + 1,
            policy.max_attempts
        ));
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// A job made progress: the failure count starts over.
    pub(crate) fn progressed(&mut self) {
        self.failures = 0;
    }

    /// Closes the connection with `ProtocolViolation` (wire.md §2.5): the server broke the spec.
    pub(crate) fn close_for_violation(&mut self) {
        if let Some(c) = self.conn.take() {
            c.close_with(nayose_wire::CloseCode::ProtocolViolation);
        }
    }

    pub(crate) fn drop_connection(&mut self) {
        if let Some(c) = self.conn.take() {
            c.close();
        }
    }

    async fn resolve_addr(&self) -> Result<SocketAddr, String> {
        let mut addrs = tokio::net::lookup_host(&self.cfg.server)
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", self.cfg.server))?;
        addrs
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.cfg.server))
    }

    fn endpoint_for(&mut self, addr: SocketAddr) -> Result<quinn::Endpoint, ClientError> {
        if let Some(e) = &self.endpoint {
            let family_ok = e.local_addr().is_ok_and(|l| l.is_ipv4() == addr.is_ipv4());
            if family_ok {
                return Ok(e.clone());
            }
        }
        let bind: SocketAddr = if addr.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let mut endpoint = quinn::Endpoint::client(bind).map_err(|source| ClientError::Io {
            path: format!("UDP socket {bind}").into(),
            source,
        })?;
        endpoint.set_default_client_config(self.quic.clone());
        self.endpoint = Some(endpoint.clone());
        Ok(endpoint)
    }

    /// The live connection, (re)connecting with retries as needed.
    pub(crate) async fn connection(&mut self) -> Result<Conn, ClientError> {
        if let Some(c) = &self.conn {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
            self.conn = None;
        }
        loop {
            let addr = match self.resolve_addr().await {
                Ok(a) => a,
                Err(reason) => {
                    self.fail(&reason, None).await?;
                    continue;
                }
            };
            let endpoint = self.endpoint_for(addr)?;
            if self.stats.connections == 0 && self.first_attempt.is_none() {
                self.first_attempt = Some(std::time::Instant::now());
            }
            let connecting =
                endpoint
                    .connect(addr, &self.cfg.server_name)
                    .map_err(|e| ClientError::Config {
                        setting: "server_name",
                        reason: format!(
                            "cannot connect to {addr} as {:?}: {e}",
                            self.cfg.server_name
                        ),
                    })?;
            let failure =
                match tokio::time::timeout(self.cfg.retry.connect_timeout, connecting).await {
                    Ok(Ok(conn)) => {
                        self.stats.connections += 1;
                        let c = Conn::new(
                            conn,
                            self.counters.clone(),
                            self.cfg.retry.request_timeout,
                            self.peer.clone(),
                        );
                        self.conn = Some(c.clone());
                        return Ok(c);
                    }
                    Ok(Err(e)) => classify_connection(&e, &self.peer),
                    Err(_) => Failure::Transport(format!(
                        "no QUIC handshake with {addr} within {:.1}s",
                        self.cfg.retry.connect_timeout.as_secs_f64()
                    )),
                };
            match failure {
                Failure::Fatal(e) => return Err(e),
                Failure::Transport(r) => self.fail(&format!("connecting: {r}"), None).await?,
                Failure::RetryLater { after, reason } => self.fail(&reason, Some(after)).await?,
            }
        }
    }

    /// Closes the connection and lets the endpoint send the close (bounded wait).
    pub(crate) async fn shutdown(&mut self) {
        self.drop_connection();
        if let Some(e) = self.endpoint.take() {
            let _ = tokio::time::timeout(Duration::from_millis(500), e.wait_idle()).await;
        }
    }
}
