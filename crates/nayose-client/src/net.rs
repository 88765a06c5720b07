//! One QUIC connection to the server: one request per bidirectional stream, framed responses,
//! byte counters, and the classification of every connection failure into "reconnect and
//! retry", "retry later" or "give up". Error responses are protocol events: they go to the link
//! core (`nayose-proto`), except `NotAccredited`, which ends the run here.
//!
//! Invariants: every response is checked against its request ([`Request::accepts`]) before it
//! is used; a response frame is never larger than [`MAX_FRAME_LEN`]; every wait on the peer is
//! bounded by the request timeout; nothing here retries — the caller decides.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nayose_wire::{
    CloseCode, ErrorCode, FRAME_HEADER_LEN, MAX_FRAME_LEN, Request, Response, decode_response,
    encode_request_frame, frame_len,
};

use crate::error::ClientError;
use crate::tls::PeerInfo;

/// Application bytes (frames) sent and received over all connections of a run.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
}

/// Why a request did not produce a usable response.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection or the stream broke (or timed out): reconnect and send again.
    Transport(String),
    /// The server asked to retry later (Busy, Internal, ShuttingDown).
    RetryLater {
        /// The server's retry hint.
        after: Duration,
        /// For messages.
        reason: String,
    },
    /// Retrying cannot help.
    Fatal(ClientError),
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Fatal(e)
    }
}

pub(crate) fn protocol(msg: impl Into<String>) -> Failure {
    Failure::Fatal(ClientError::Protocol(msg.into()))
}

/// What a connection-level error means for the run.
pub(crate) fn classify_connection(e: &quinn::ConnectionError, peer: &PeerInfo) -> Failure {
    use quinn::ConnectionError as C;
    match e {
        C::ApplicationClosed(close) => {
            let code = CloseCode::from_u64(close.error_code.into_inner());
            let reason = String::from_utf8_lossy(&close.reason).into_owned();
            match code {
                Some(CloseCode::NotAccredited) => Failure::Fatal(ClientError::NotAccredited {
                    client_id: peer.client_id.clone(),
                    message: reason,
                }),
                Some(CloseCode::ProtocolViolation) => protocol(format!(
                    "the server closed the connection for a protocol violation: {reason}"
                )),
                Some(CloseCode::TooManyConnections) => Failure::RetryLater {
                    after: Duration::from_secs(1),
                    reason: format!("server: {reason}"),
                },
                _ => Failure::Transport(format!("the server closed the connection: {reason}")),
            }
        }
        // This client ended the handshake: usually it refused the server's certificate.
        C::TransportError(t) if is_tls_code(u64::from(t.code)) => {
            Failure::Fatal(ClientError::Handshake {
                server: peer.server.clone(),
                reason: peer.server_refusal().unwrap_or_else(|| t.to_string()),
            })
        }
        // The server ended the handshake with a TLS alert because of the key exchange.
        C::ConnectionClosed(c) if is_key_exchange_refusal(c, peer) => {
            Failure::Fatal(key_exchange_refused(c, peer))
        }
        // The server ended the handshake with a TLS alert: it refused this client's certificate.
        C::ConnectionClosed(c) if is_tls_code(u64::from(c.error_code)) => {
            let alert = u64::from(c.error_code) - 0x100;
            Failure::Fatal(ClientError::CertificateRefused {
                server: peer.server.clone(),
                certificate: peer.client_cert(),
                why: alert_reason(alert),
            })
        }
        C::VersionMismatch => protocol("the server speaks no QUIC version this client knows"),
        other => Failure::Transport(other.to_string()),
    }
}

/// TLS alert `handshake_failure` (RFC 8446 §6.2) as a QUIC transport error code (RFC 9001 §4.8).
const HANDSHAKE_FAILURE: u64 = 0x100 + 40;

/// Whether the server's close is a refusal of the key exchange: `handshake_failure` with rustls'
/// reason `NoKxGroupsInCommon`, or, when this client offers X25519MLKEM768 alone, any
/// `handshake_failure` (a peer that is not rustls gives its own reason or none; a nayose server
/// accepts X25519MLKEM768, so a classical-only server is by far the likeliest cause).
fn is_key_exchange_refusal(c: &quinn::ConnectionClose, peer: &PeerInfo) -> bool {
    u64::from(c.error_code) == HANDSHAKE_FAILURE
        && (!peer.allow_classical_key_exchange
            || String::from_utf8_lossy(&c.reason).contains("NoKxGroupsInCommon"))
}

fn key_exchange_refused(c: &quinn::ConnectionClose, peer: &PeerInfo) -> ClientError {
    let reason = String::from_utf8_lossy(&c.reason);
    let alert = if reason.is_empty() {
        "TLS alert HandshakeFailure".to_owned()
    } else {
        format!("TLS alert HandshakeFailure: {reason}")
    };
    let pq = crate::tls::POST_QUANTUM_KEY_EXCHANGE;
    let why = if peer.allow_classical_key_exchange {
        format!(
            "it accepts none of the key exchanges this client offers ({pq}, X25519, P-256, \
             P-384); ask the server's operator which TLS key exchange it accepts"
        )
    } else {
        format!(
            "no key exchange in common: this client offers only the post-quantum key exchange \
             {pq} (allow_classical_key_exchange = false), and the server does not accept it (a \
             server offering only classical key exchange, e.g. an old version); ask the server's \
             operator to upgrade, or, if you accept that this traffic could be decrypted once \
             quantum computers can break X25519, set allow_classical_key_exchange = true \
             (--allow-classical-key-exchange)"
        )
    };
    ClientError::KeyExchangeRefused {
        server: peer.server.clone(),
        alert,
        why,
    }
}

/// A TLS alert (RFC 8446 §6.2) sent by the server, in words.
fn alert_reason(alert: u64) -> String {
    let name = u8::try_from(alert)
        .map(|a| format!("{:?}", rustls::AlertDescription::from(a)))
        .unwrap_or_else(|_| alert.to_string());
    let why = match alert {
        42 => "the server found the certificate bad",
        44 => "the certificate was revoked",
        45 => "the server says the certificate has expired",
        46 | 48 => "the server does not accept the CA that issued it",
        116 => "the server requires a client certificate",
        _ => "the server refused the handshake",
    };
    format!("{why} (TLS alert {name})")
}

/// QUIC carries TLS alerts as transport error codes 0x100..=0x1ff (RFC 9001 §4.8).
fn is_tls_code(code: u64) -> bool {
    (0x100..=0x1ff).contains(&code)
}

fn read_failure(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::Transport(format!("{what}: {e}"))
}

/// A live connection. Cheap to clone (one QUIC connection underneath).
#[derive(Clone)]
pub(crate) struct Conn {
    conn: quinn::Connection,
    counters: Arc<Counters>,
    timeout: Duration,
    peer: Arc<PeerInfo>,
}

/// The response side of a request stream: reads frames one by one.
pub(crate) struct ResponseStream {
    recv: quinn::RecvStream,
    counters: Arc<Counters>,
    timeout: Duration,
    conn: quinn::Connection,
    peer: Arc<PeerInfo>,
}

impl Conn {
    pub(crate) fn new(
        conn: quinn::Connection,
        counters: Arc<Counters>,
        timeout: Duration,
        peer: Arc<PeerInfo>,
    ) -> Self {
        Conn {
            conn,
            counters,
            timeout,
            peer,
        }
    }

    /// Why the connection is closed, if it is.
    pub(crate) fn close_reason(&self) -> Option<Failure> {
        self.conn
            .close_reason()
            .map(|e| classify_connection(&e, &self.peer))
    }

    /// Closes the connection politely.
    pub(crate) fn close(&self) {
        self.close_with(CloseCode::NoError);
    }

    /// Closes the connection with `code` (wire.md §2.5), e.g. `ProtocolViolation` after the
    /// server broke the protocol.
    pub(crate) fn close_with(&self, code: CloseCode) {
        self.conn.close(code.to_u32().into(), code.reason());
    }

    fn lost(&self, what: &str, e: impl std::fmt::Display) -> Failure {
        // A stream error caused by the connection ending is classified by the connection's
        // close reason (e.g. NotAccredited is fatal).
        match self.close_reason() {
            Some(f @ Failure::Fatal(_)) | Some(f @ Failure::RetryLater { .. }) => f,
            _ => read_failure(what, e),
        }
    }

    /// Opens a stream, sends `request` and finishes the sending side.
    pub(crate) async fn send(&self, request: &Request) -> Result<ResponseStream, Failure> {
        let frame = encode_request_frame(request)
            .map_err(|e| Failure::Fatal(ClientError::Protocol(format!("encoding: {e}"))))?;
        let open = tokio::time::timeout(self.timeout, self.conn.open_bi()).await;
        let (mut send, recv) = match open {
            Err(_) => return Err(Failure::Transport("opening a stream timed out".into())),
            Ok(Err(e)) => return Err(classify_connection(&e, &self.peer)),
            Ok(Ok(s)) => s,
        };
        send.write_all(&frame)
            .await
            .map_err(|e| self.lost("sending a request", e))?;
        send.finish()
            .map_err(|e| self.lost("finishing a request", e))?;
        self.counters
            .sent
            .fetch_add(frame.len() as u64, Ordering::Relaxed);
        Ok(ResponseStream {
            recv,
            counters: self.counters.clone(),
            timeout: self.timeout,
            conn: self.conn.clone(),
            peer: self.peer.clone(),
        })
    }
}

impl ResponseStream {
    fn lost(&self, what: &str, e: impl std::fmt::Display) -> Failure {
        match self.conn.close_reason() {
            Some(c) => match classify_connection(&c, &self.peer) {
                f @ (Failure::Fatal(_) | Failure::RetryLater { .. }) => f,
                _ => read_failure(what, e),
            },
            None => read_failure(what, e),
        }
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` if the stream ended cleanly before the first
    /// byte (only allowed when `at_boundary`).
    async fn read_exact(&mut self, buf: &mut [u8], at_boundary: bool) -> Result<bool, Failure> {
        let mut filled = 0;
        while filled < buf.len() {
            let read = tokio::time::timeout(self.timeout, self.recv.read(&mut buf[filled..]))
                .await
                .map_err(|_| Failure::Transport("the server did not answer in time".into()))?;
            match read {
                Ok(Some(n)) => filled += n,
                Ok(None) if filled == 0 && at_boundary => return Ok(false),
                Ok(None) => return Err(protocol("a response stream ended inside a frame")),
                Err(e) => return Err(self.lost("reading a response", e)),
            }
        }
        Ok(true)
    }

    /// The next response on the stream, or `None` at its clean end. A `NotAccredited` Error
    /// response is turned into a fatal [`Failure`]; every other response, Error included, is
    /// returned for the link core to judge.
    pub(crate) async fn next(&mut self, request: &Request) -> Result<Option<Response>, Failure> {
        let mut header = [0u8; FRAME_HEADER_LEN];
        if !self.read_exact(&mut header, true).await? {
            return Ok(None);
        }
        let len = frame_len(header).map_err(|e| protocol(format!("response frame: {e}")))?;
        debug_assert!(len <= MAX_FRAME_LEN);
        let mut payload = vec![0u8; len];
        self.read_exact(&mut payload, false).await?;
        self.counters
            .received
            .fetch_add((FRAME_HEADER_LEN + len) as u64, Ordering::Relaxed);
        let response = decode_response(&payload)
            .map_err(|e| protocol(format!("response to {}: {e}", request.name())))?;
        if !request.accepts(&response) {
            return Err(protocol(format!(
                "{} answered with {}",
                request.name(),
                response.name()
            )));
        }
        match response {
            Response::Error(e) if e.code == ErrorCode::NotAccredited => {
                Err(Failure::Fatal(ClientError::NotAccredited {
                    client_id: self.peer.client_id.clone(),
                    message: e.message.as_str().to_owned(),
                }))
            }
            r => Ok(Some(r)),
        }
    }

    /// Checks that nothing follows the last expected response.
    pub(crate) async fn expect_end(&mut self, request: &Request) -> Result<(), Failure> {
        let mut byte = [0u8; 1];
        if self.read_exact(&mut byte, true).await? {
            return Err(protocol(format!(
                "data after the last response to {}",
                request.name()
            )));
        }
        Ok(())
    }
}
