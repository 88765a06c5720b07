//! One request stream: read the request within the timeout, shed load (shutdown, `Busy`),
//! get its [`Answer`] and hand it to [`super::respond`].

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nayose_proto::server::display_kp;
use nayose_wire::{CloseCode, ErrorCode, ErrorResponse, Request, Response, StreamCode};
use quinn::VarInt;
use tracing::debug;

use crate::audit::AuditEntry;
use crate::stats::ClientCounters;

use super::answer::answer;
use super::connection::{ConnCtx, close};
use super::frames::{ReadFail, err_resp, read_request};
use super::limits::admit;
use super::refusals::refused;
use super::respond::send_answer;
use super::streams::Stream;
use super::{InflightGuard, Shared};

/// An Evaluate's charge, refunded if nothing was evaluated.
pub(super) struct Charge {
    pub(super) n: u64,
    pub(super) now: SystemTime,
    pub(super) key_period: String,
    /// With PostgreSQL: not charged yet; it is charged with the audit record.
    pub(super) pending: Option<PendingCharge>,
    /// The entity's totals before the charge, and its declared holdings (for the warning).
    pub(super) totals: nayose_proto::server::Totals,
    pub(super) declared_holdings: Option<u64>,
}

/// What a charge made with the audit record needs (PostgreSQL, [`super::state`]).
pub(super) struct PendingCharge {
    pub(super) limits: crate::config::ClientLimits,
    /// The key period the request named (for `KeyPeriodChanged`).
    pub(super) named: nayose_wire::KeyPeriodId,
}

/// The outcome of one request: what to audit and what to send.
pub(super) struct Answer {
    pub(super) frame: Option<Response>,
    pub(super) audit: AuditEntry,
    pub(super) counters: ClientCounters,
    pub(super) stream: Option<Stream>,
    pub(super) charge: Option<Charge>,
}

impl Answer {
    pub(super) fn one(frame: Response, audit: AuditEntry, counters: ClientCounters) -> Self {
        Answer {
            frame: Some(frame),
            audit,
            counters,
            stream: None,
            charge: None,
        }
    }
}

pub(super) async fn handle_stream(
    shared: Arc<Shared>,
    ctx: Arc<ConnCtx>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let _inflight = InflightGuard::new(&shared);
    let started = Instant::now();
    let mut counters = ClientCounters {
        requests: 1,
        ..ClientCounters::default()
    };
    let timeout = Duration::from_millis(shared.s.cfg.request_timeout_ms);
    let base = AuditEntry {
        event: "request".into(),
        client: ctx.client.to_string(),
        cert_sha256: ctx.cert_sha256.clone(),
        peer: ctx.peer.to_string(),
        conn: ctx.conn_id,
        stream: Some(u64::from(send.id())),
        ..AuditEntry::default()
    };
    let read = tokio::time::timeout(timeout, read_request(&mut recv, &mut counters.bytes_in)).await;
    // The request's slots (its client's, and one of the request pool or of the download pool,
    // see [`super::limits`]), held until its answer is fully sent or its stream is reset.
    let mut permit = None;
    let answer = match read {
        Err(_) => {
            debug!(client = %ctx.client, "request timed out");
            let _ = recv.stop(VarInt::from_u32(StreamCode::Timeout.to_u32()));
            let _ = send.reset(VarInt::from_u32(StreamCode::Timeout.to_u32()));
            counters.errors += 1;
            refused(
                &shared,
                &AuditEntry {
                    op: "Invalid".into(),
                    outcome: "Timeout".into(),
                    ..base
                },
            );
            shared
                .metrics
                .request(ctx.client.as_str(), "Invalid", Some("Timeout"), &counters);
            shared.stats.record(ctx.client.as_str(), counters);
            return;
        }
        Ok(Err(ReadFail::Gone)) => {
            shared.stats.record(ctx.client.as_str(), counters);
            return;
        }
        Ok(Err(ReadFail::Bad(e, stop))) => {
            if stop {
                let _ = recv.stop(VarInt::from_u32(StreamCode::BadFrame.to_u32()));
            }
            let code = e.error_code();
            debug!(client = %ctx.client, "bad request: {e}");
            Answer::one(
                err_resp(code, &e.to_string()),
                AuditEntry {
                    op: "Invalid".into(),
                    outcome: format!("{code:?}"),
                    // Only the code and the byte count: a decoder's message may quote what
                    // the peer sent.
                    detail: format!("undecodable request of {} bytes", counters.bytes_in),
                    ..base
                },
                counters,
            )
        }
        Ok(Ok(req)) => {
            let a = AuditEntry {
                op: req.name().into(),
                key_period_requested: req.key_period().map(display_kp).unwrap_or_default(),
                epoch_requested: match &req {
                    Request::FetchBase(r) => Some(r.epoch),
                    Request::FetchDelta(r) => Some(r.from_epoch),
                    _ => None,
                },
                ..base
            };
            // Load shedding before accreditation and the key period check, on purpose
            // (flows.md §5.2): the cheapest refusal stays the cheapest under overload.
            if shared.is_shutting_down() {
                let mut e = ErrorResponse::new(
                    ErrorCode::ShuttingDown,
                    "server shutting down; reconnect later",
                );
                e.retry_after_secs = 5;
                Answer::one(Response::Error(e), a, counters)
            } else {
                let download = matches!(req, Request::FetchBase(_) | Request::FetchDelta(_));
                match admit(&shared, &ctx.client, download) {
                    Err(why) => {
                        let mut e = ErrorResponse::new(ErrorCode::Busy, why.message());
                        e.retry_after_secs = 1;
                        Answer::one(Response::Error(e), a, counters)
                    }
                    Ok(p) => {
                        permit = Some(p);
                        answer(&shared, &ctx, req, a, counters).await
                    }
                }
            }
        }
    };
    let revoked = matches!(
        &answer.frame,
        Some(Response::Error(e)) if e.code == ErrorCode::NotAccredited
    );
    send_answer(&shared, &ctx, send, answer, started).await;
    drop(permit);
    if revoked {
        close(&ctx.conn, CloseCode::NotAccredited);
    }
}
