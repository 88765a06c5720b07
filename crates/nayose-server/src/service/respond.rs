//! Sending an answer: its audit record first (durably; `Internal` and a refund if that
//! fails), then the frame or the stream, then the `fetch_end` record and the counters.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nayose_wire::{ErrorCode, Response};
use tracing::{debug, error, warn};

use crate::audit::AuditEntry;

use super::answer::refund;
use super::answer::{quota_refusal, superseded};
use super::connection::ConnCtx;
use super::frames::{WriteFail, encode, err_resp, write_bytes};
use super::refusals::refused;
use super::requests::Answer;
use super::streams::{Stream, stream_base, stream_delta};
use super::{Shared, audit, audit_charging, ms_since};
use crate::pgstate::{ChargeRefused, PgCharge};

pub(super) async fn send_answer(
    shared: &Arc<Shared>,
    ctx: &ConnCtx,
    mut send: quinn::SendStream,
    mut ans: Answer,
    started: Instant,
) {
    let mut frame = ans.frame.as_ref().and_then(encode);
    let mut error_code = match &ans.frame {
        Some(Response::Error(e)) => Some(format!("{:?}", e.code)),
        _ => None,
    };
    if let Some(Response::Error(e)) = &ans.frame {
        ans.counters.errors += 1;
        if ans.audit.outcome.is_empty() {
            ans.audit.outcome = format!("{:?}", e.code);
        }
    }
    if ans.frame.is_some() && frame.is_none() {
        ans.audit.outcome = "Internal".into();
        error_code = Some("Internal".into());
        frame = encode(&err_resp(ErrorCode::Internal, "internal error"));
    }
    if ans.audit.outcome.is_empty() {
        ans.audit.outcome = "ok".into();
    }
    ans.audit.bytes_in = Some(ans.counters.bytes_in);
    ans.audit.bytes_out = frame.as_ref().map(|f| f.len() as u64);
    ans.audit.duration_ms = ms_since(started);
    let stream_record = ans.audit.clone();
    let kind = stream_record.op.clone();
    let deadline = Duration::from_millis(shared.s.cfg.write_timeout_ms);
    // An answer without data (an Error: nothing evaluated, nothing streamed) is counted for
    // the aggregated `refusals` record instead of being written and fsynced on its own, so a
    // client cannot grow the log or saturate the audit path with refused requests.
    let refusal = error_code.is_some() && ans.stream.is_none() && ans.charge.is_none();
    // With PostgreSQL an Evaluate is charged here, in the transaction of its record.
    let pending = ans.charge.as_ref().and_then(|c| {
        c.pending.as_ref().map(|p| {
            (
                PgCharge {
                    client: ctx.client.to_string(),
                    n: c.n,
                    now: c.now,
                    key_period: c.key_period.clone(),
                    limits: p.limits,
                },
                p.named,
            )
        })
    });
    let written = if refusal {
        refused(shared, &ans.audit);
        Ok(Ok(()))
    } else {
        audit_charging(shared, ans.audit.clone(), pending.as_ref().map(|(c, _)| c)).await
    };
    if let (Ok(Err(why)), Some((c, named))) = (&written, &pending) {
        // Other replicas spent the quota since the decision: nothing was charged or
        // recorded; the evaluated elements are dropped and the refusal is counted.
        let resp = match why {
            ChargeRefused::Exhausted(view) => quota_refusal(*view, c.n),
            ChargeRefused::Superseded => superseded(shared, named),
        };
        let code = match &resp {
            Response::Error(e) => e.code,
            _ => ErrorCode::Internal,
        };
        ans.audit.outcome = format!("{code:?}");
        ans.audit.elements = None;
        ans.audit.quota_after = ans.audit.quota_before;
        ans.audit.key_period_quota_after = ans.audit.key_period_quota_before;
        refused(shared, &ans.audit);
        frame = encode(&resp);
        error_code = Some(format!("{code:?}"));
        ans.counters.errors += 1;
        ans.counters.evaluations = 0;
        ans.charge = None;
    } else if let Err(e) = written {
        error!("cannot write the audit log; refusing to answer: {e}");
        frame = encode(&err_resp(
            ErrorCode::Internal,
            "server cannot record the request; retry later",
        ));
        ans.stream = None;
        error_code = Some("Internal".into());
        ans.counters.errors += 1;
        ans.counters.evaluations = 0;
        if let Some(c) = ans.charge.take() {
            refund(shared, ctx, c).await;
        }
    }
    // Charged (and recorded): the entity's totals move on, and passing its declared holdings
    // is logged (security.md §6.1).
    if let Some(c) = &ans.charge {
        shared.entity_totals.charged(
            &ctx.client,
            &c.key_period,
            c.totals,
            c.n,
            c.declared_holdings,
        );
    }
    let mut bytes_out = 0u64;
    let mut ok = true;
    if let Some(f) = &frame {
        match write_bytes(&mut send, f, deadline).await {
            Ok(()) => bytes_out += f.len() as u64,
            Err(e) => {
                ok = false;
                if e == WriteFail::Stalled {
                    debug!(client = %ctx.client, "answer stalled past write_timeout_ms; stream reset");
                    shared.metrics.error("Stalled");
                }
            }
        }
    }
    if let Some(st) = ans.stream.take() {
        let (sent, end, reached) = match &st {
            Stream::Base {
                epoch, cur, offset, ..
            } => {
                let (n, end) =
                    stream_base(shared, ctx, &mut send, epoch, cur, *offset, &mut bytes_out).await;
                (n, end, None)
            }
            Stream::Delta { epoch, cur, from } => {
                let (n, end) =
                    stream_delta(shared, ctx, &mut send, epoch, cur, *from, &mut bytes_out).await;
                let reached = end.is_ok().then_some(cur.epoch);
                (n, end, reached)
            }
        };
        drop(st);
        ok = end.is_ok();
        let outcome = match end {
            Ok(()) => "completed",
            Err(WriteFail::Stalled) => {
                warn!(client = %ctx.client, peer = %ctx.peer, "download stalled past write_timeout_ms; stream reset, its slots freed");
                shared.metrics.error("Stalled");
                "stalled"
            }
            Err(WriteFail::Gone) => "cancelled",
        };
        ans.counters.entries = sent;
        let _ = audit(
            shared,
            AuditEntry {
                event: "fetch_end".into(),
                time: String::new(),
                entries: Some(sent),
                epoch_reached: reached,
                bytes_in: None,
                bytes_out: Some(bytes_out),
                duration_ms: ms_since(started),
                outcome: outcome.into(),
                ..stream_record
            },
        )
        .await;
    }
    if ok {
        let _ = send.finish();
        let _ = tokio::time::timeout(deadline, send.stopped()).await;
    }
    // flows.md §4.2: evaluations are charged once computed, even when the answer could not be
    // written: a client can read the evaluated elements and then reset the stream before the
    // proof, so a refund here would be an unmetered oracle.
    ans.counters.bytes_out += bytes_out;
    shared.metrics.request(
        ctx.client.as_str(),
        &kind,
        error_code.as_deref(),
        &ans.counters,
    );
    shared.stats.record(ctx.client.as_str(), ans.counters);
}
