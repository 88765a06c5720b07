//! One request's answer: the snapshot, the accreditation re-check, the decision under the
//! quota book's lock (which charges an Evaluate durably), and the evaluation itself.

use std::sync::Arc;

use nayose_proto::server::{
    BaseLoad, Current, Decision, QuotaView, Standing, decide, key_period_changed,
};
use nayose_table::ClientId;
use nayose_wire::{
    ElementBatch, ErrorCode, EvaluateResponse, KeyPeriodId as WireKeyPeriodId, Proof, Request,
    Response,
};
use tracing::{error, warn};

use crate::audit::AuditEntry;
use crate::config::ServerConfig;
use crate::epoch::Epoch;
use crate::stats::ClientCounters;

use super::Shared;
use super::connection::ConnCtx;
use super::frames::err_resp;
use super::requests::{Answer, Charge, PendingCharge};
use super::state::QuotaStore;
use super::streams::{BaseSlot, Stream};

/// The snapshot as the decision sees it, with the statements of its epoch when loaded.
pub(super) fn current_of(epoch: &Epoch, shared: &Shared) -> Current {
    let cfg: &ServerConfig = &shared.s.cfg;
    Current {
        key_period: WireKeyPeriodId(epoch.key_period().to_bytes()),
        public_key: epoch.public_key(),
        epoch: epoch.number(),
        entries: epoch.len() as u64,
        digest: epoch.digest().0,
        chain: epoch.chain().0,
        oldest_delta_base: epoch.oldest_delta_base(),
        delta_bases: epoch.delta_bases(),
        max_batch: cfg.max_batch,
        announcement: shared.announcements.get(epoch),
    }
}

pub(super) async fn answer(
    shared: &Arc<Shared>,
    ctx: &Arc<ConnCtx>,
    req: Request,
    mut a: AuditEntry,
    mut counters: ClientCounters,
) -> Answer {
    // One snapshot for the whole request (flows.md §5.2).
    let epoch = shared.epoch();
    let cur = current_of(&epoch, shared);
    let kp = epoch.key_period().to_string();
    a.key_period_current = kp.clone();
    a.epoch_current = Some(cur.epoch);
    let internal = |mut a: AuditEntry, counters, why: &str| {
        error!("{why}");
        a.outcome = "Internal".into();
        Answer::one(
            err_resp(ErrorCode::Internal, "internal error; retry later"),
            a,
            counters,
        )
    };
    // Accreditation is re-read on every request, so removing an entity or one of its
    // certificates from clients.toml takes effect without a restart (wire.md §2.4).
    let resolved = shared.clients().resolve(&ctx.presented);
    let Some(limits) = resolved
        .ok()
        .and_then(|(id, l)| (id == ctx.client).then_some(l))
    else {
        let d = decide(ctx.client.as_str(), Standing::NotAccredited, &req, &cur);
        let Decision::Reply(r) = d else {
            unreachable!("an unaccredited client only gets a reply")
        };
        a.outcome = "NotAccredited".into();
        return Answer::one(r, a, counters);
    };
    let now = shared.clock.now();
    let decided = match &shared.quota {
        QuotaStore::File(book) => {
            let (s, book) = (shared.clone(), book.clone());
            let client = ctx.client.clone();
            let kp = kp.clone();
            let req = req.clone();
            let cur = cur.clone();
            tokio::task::spawn_blocking(move || {
                book.decide_and_charge(client.as_str(), limits, &kp, now, |quota| {
                    decide_with(&s, &client, &req, &cur, quota)
                })
            })
            .await
            .map_err(|e| format!("quota task failed: {e}"))
            .and_then(|r| r.map_err(|e| format!("cannot persist the quota state: {e}")))
        }
        // PostgreSQL: decide on the quotas read now; an Evaluate is charged later, with its
        // audit record, by one conditional statement (see [`super::state`]).
        QuotaStore::Postgres(pg) => match pg.view(ctx.client.as_str(), limits, &kp, now).await {
            Err(e) => Err(format!("cannot read the quota: {e}")),
            Ok((quota, superseded)) => {
                let (out, charge) = decide_with(shared, &ctx.client, &req, &cur, quota);
                Ok((charge == 0 || !superseded).then_some((out, quota)))
            }
        },
    };
    let ((decision, slot), quota) = match decided {
        Ok(Some(v)) => v,
        Ok(None) => {
            // This request's snapshot is older than a key period the client was already
            // charged in (a switch happened in between): nothing was charged; the request is
            // answered as one naming a previous key period, with the current snapshot.
            let now_cur = current_of(&shared.epoch(), shared);
            let named = req.key_period().copied().unwrap_or(cur.key_period);
            let Decision::Reply(r) = key_period_changed(&now_cur, &named) else {
                unreachable!("key_period_changed is a reply")
            };
            a.outcome = "KeyPeriodChanged".into();
            return Answer::one(r, a, counters);
        }
        Err(why) => return internal(a, counters, &why),
    };
    a.quota_before = Some(quota.left_today);
    a.quota_after = Some(quota.left_today);
    a.key_period_quota_before = Some(quota.left_key_period);
    a.key_period_quota_after = Some(quota.left_key_period);
    match decision {
        Decision::Reply(r) => Answer::one(r, a, counters),
        Decision::StreamBase { offset } => {
            a.offset = Some(offset);
            a.entries = Some(cur.entries - offset);
            let Some(slot) = slot else {
                return internal(a, counters, "base download slot missing");
            };
            Answer {
                frame: None,
                audit: a,
                counters,
                stream: Some(Stream::Base {
                    epoch,
                    cur,
                    offset,
                    _slot: slot,
                }),
                charge: None,
            }
        }
        Decision::StreamDelta { from } => Answer {
            frame: None,
            audit: a,
            counters,
            stream: Some(Stream::Delta { epoch, cur, from }),
            charge: None,
        },
        Decision::Evaluate { charge: n } => {
            a.elements = Some(n);
            a.quota_after = Some(quota.left_today - n);
            a.key_period_quota_after = Some(quota.left_key_period - n);
            let charge = Charge {
                n,
                now,
                key_period: kp,
                pending: matches!(shared.quota, QuotaStore::Postgres(_)).then(|| PendingCharge {
                    limits,
                    named: cur.key_period,
                }),
                totals: quota.totals,
                declared_holdings: limits.declared_holdings,
            };
            let Request::Evaluate(r) = req else {
                unreachable!("only an Evaluate is evaluated")
            };
            let e2 = epoch.clone();
            let arrays = r.elements.to_arrays();
            let evaluated = tokio::task::spawn_blocking(move || {
                let mut rng = rand::rng();
                e2.key().blind_evaluate_batch_with_proof(&arrays, &mut rng)
            })
            .await;
            let outcome = match evaluated {
                Ok(Ok((elements, proof))) => match ElementBatch::from_arrays(&elements) {
                    Ok(batch) => Ok(Response::Evaluated(EvaluateResponse {
                        key_period: cur.key_period,
                        elements: batch,
                        proof: Proof(proof.to_bytes()),
                    })),
                    Err(e) => Err((ErrorCode::Internal, format!("encoding failed: {e}"))),
                },
                Ok(Err(e)) => Err((ErrorCode::InvalidElement, e.to_string())),
                Err(e) => Err((ErrorCode::Internal, format!("evaluation task failed: {e}"))),
            };
            match outcome {
                Ok(resp) => {
                    counters.evaluations = n;
                    Answer {
                        frame: Some(resp),
                        audit: a,
                        counters,
                        stream: None,
                        charge: Some(charge),
                    }
                }
                Err((code, msg)) => {
                    refund(shared, ctx, charge).await;
                    a.quota_after = a.quota_before;
                    a.key_period_quota_after = a.key_period_quota_before;
                    if code == ErrorCode::Internal {
                        error!("{msg}");
                    }
                    let text = if code == ErrorCode::Internal {
                        "internal error; retry later"
                    } else {
                        msg.as_str()
                    };
                    Answer::one(err_resp(code, text), a, counters)
                }
            }
        }
    }
}

/// The decision on `quota` (base-download counters are taken and, for a base stream,
/// incremented under the same locks as the decision) and the charge it asks.
fn decide_with(
    s: &Arc<Shared>,
    client: &ClientId,
    req: &Request,
    cur: &Current,
    quota: QuotaView,
) -> ((Decision, Option<BaseSlot>), u64) {
    let (max_client, max_total) = (
        s.s.cfg.max_base_downloads_per_client,
        s.s.cfg.max_base_downloads,
    );
    let mut b = s.bases.lock().unwrap_or_else(|p| p.into_inner());
    let bases = BaseLoad {
        client: b.0.get(client).copied().unwrap_or(0),
        total: b.1,
        max_client,
        max_total,
    };
    let d = decide(
        client.as_str(),
        Standing::Accredited { quota, bases },
        req,
        cur,
    );
    let slot = if matches!(d, Decision::StreamBase { .. }) {
        *b.0.entry(client.clone()).or_insert(0) += 1;
        b.1 += 1;
        Some(BaseSlot {
            shared: s.clone(),
            client: client.clone(),
        })
    } else {
        None
    };
    let charge = match d {
        Decision::Evaluate { charge } => charge,
        _ => 0,
    };
    ((d, slot), charge)
}

/// The answer to an Evaluate of `n` whose charge another replica's charges made impossible
/// since its decision: what [`decide`] answers for the quotas and totals `view`.
pub(super) fn quota_refusal(view: QuotaView, n: u64) -> Response {
    nayose_proto::server::evaluate_refusal(&view, n)
        .unwrap_or_else(|| err_resp(ErrorCode::Internal, "internal error; retry later"))
}

/// The answer to an Evaluate whose client was charged in a newer key period meanwhile.
pub(super) fn superseded(shared: &Arc<Shared>, named: &WireKeyPeriodId) -> Response {
    let now_cur = current_of(&shared.epoch(), shared);
    match key_period_changed(&now_cur, named) {
        Decision::Reply(r) => r,
        _ => err_resp(ErrorCode::Internal, "internal error; retry later"),
    }
}

pub(super) async fn refund(shared: &Arc<Shared>, ctx: &ConnCtx, c: Charge) {
    let book = match &shared.quota {
        QuotaStore::File(book) => book.clone(),
        // Charged only with the audit record: nothing to give back.
        QuotaStore::Postgres(_) => return,
    };
    if c.pending.is_some() {
        return;
    }
    let client = ctx.client.to_string();
    let r =
        tokio::task::spawn_blocking(move || book.refund(&client, c.n, c.now, &c.key_period)).await;
    if !matches!(r, Ok(Ok(()))) {
        warn!(client = %ctx.client, "cannot refund {} evaluations", c.n);
    }
}
