//! The server core: the per-request decision of flows.md §5.2, without I/O (no tokio, no
//! files, no clock reads).
//!
//! The server's service (nayose-server's `service.rs`) reads a request, takes its snapshot of
//! the current state
//! once ([`Current`]), the client's standing ([`Standing`]: accredited or not, both quotas as
//! of a time it passes in, base downloads in progress) and calls [`decide`]. The decision says
//! what to answer and what to charge:
//!
//! ```text
//!  request ─┬─ not accredited ─────────────────────────────────▶ Reply(Error NotAccredited)
//!           ├─ Info ────────────────────────────────────────────▶ Reply(Info …both quotas…)
//!           ├─ names another key period ────────────────────────▶ Reply(Error KeyPeriodChanged{current})
//!           ├─ Evaluate: n > max_batch ─────────────────────────▶ Reply(Error BatchTooLarge)
//!           │            past the hard cap (key period or
//!           │            rolling window) ───────────────────────▶ Reply(Error HardCapReached)
//!           │            n > left in key period ────────────────▶ Reply(Error QuotaExhausted, retry 0)
//!           │            n > left today ────────────────────────▶ Reply(Error QuotaExhausted, retry = to 00:00)
//!           │            otherwise ─────────────────────────────▶ Evaluate { charge: n on both counters }
//!           ├─ FetchBase: epoch ≠ current ──────────────────────▶ Reply(Error EpochChanged{current})
//!           │             offset > N ───────────────────────────▶ Reply(Error OffsetOutOfRange)
//!           │             downloads at their limit ─────────────▶ Reply(Error Busy, retry 1)
//!           │             otherwise ────────────────────────────▶ StreamBase { offset }
//!           └─ FetchDelta: from = current ──────────────────────▶ Reply(DeltaEnd{from, N})
//!                          from < oldest_delta_base, > current,
//!                          or not an epoch of the kept chain ───▶ Reply(Error DeltaUnavailable)
//!                          otherwise ───────────────────────────▶ StreamDelta { from }
//! ```
//!
//! Invariants: the decision depends only on its arguments (so every branch is unit-tested with
//! a fixed time); a refused Evaluate charges nothing; an Evaluate is refused whole if either
//! quota is short or it would take the entity past its hard cap; Info names the entity the
//! request came from (its label domain); an Error for another key period or epoch always carries `current`; the
//! driver charges exactly `charge` (persisted, atomically with the quota check that admitted
//! it) before it evaluates.

use nayose_wire::{
    Announcement, BaseEnd, CurrentState, DeltaEnd, EntityId, ErrorCode, ErrorResponse,
    InfoResponse, KeyPeriodId, Request, Response, TableDigest,
};

/// Seconds per quota day.
const DAY: i64 = 86_400;

/// The quota day of `now` (Unix seconds) at `offset_secs` from UTC, and the seconds until that
/// day ends (1 ..= 86 400).
pub fn quota_day(now_unix: i64, offset_secs: i64) -> (i64, u32) {
    let local = now_unix + offset_secs;
    (local.div_euclid(DAY), (DAY - local.rem_euclid(DAY)) as u32)
}

/// The server's current state as one request sees it (taken once at the request's start).
#[derive(Debug, Clone)]
pub struct Current {
    /// The current key period id.
    pub key_period: KeyPeriodId,
    /// pkS.
    pub public_key: [u8; 32],
    /// The current epoch.
    pub epoch: u32,
    /// Entries of the current table.
    pub entries: u64,
    /// The current table digest.
    pub digest: [u8; 32],
    /// The current epoch's upsert chain.
    pub chain: [u8; 32],
    /// The least epoch a FetchDelta may start from.
    pub oldest_delta_base: u32,
    /// Every epoch below `epoch` a FetchDelta may start from (the previous epochs of the kept
    /// deltas), ascending; the first is `oldest_delta_base` (empty if no delta is kept).
    pub delta_bases: Vec<u32>,
    /// Most elements per Evaluate.
    pub max_batch: u32,
    /// The signed statements of this key period and epoch, when the server has them and their
    /// facts are this snapshot's (protocol-spec/announcements.md §6); carried in Info.
    pub announcement: Option<Announcement>,
}

impl Current {
    fn current(&self) -> CurrentState {
        CurrentState {
            key_period: self.key_period,
            epoch: self.epoch,
        }
    }
}

/// A client's quotas at the time of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaView {
    /// Evaluations left in the current quota day.
    pub left_today: u64,
    /// Evaluations left in the current key period.
    pub left_key_period: u64,
    /// Seconds until the quota day ends (1 ..= 86 400).
    pub reset_secs: u32,
    /// The entity's evaluations so far (the totals of the enumeration controls).
    pub totals: Totals,
    /// The entity's hard cap on each total, if it has one (security.md §6.1).
    pub hard_cap: Option<u64>,
}

/// An entity's totals of evaluated elements: what the server can count of its "distinct
/// evaluations" without learning its numbers (security.md §6.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Elements evaluated for the entity in the current key period.
    pub key_period: u64,
    /// Elements evaluated for the entity in the rolling window (across key periods).
    pub window: u64,
    /// Quota days in the rolling window, today included.
    pub window_days: u32,
}

/// Base downloads in progress and their limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseLoad {
    /// Downloads this client has in progress.
    pub client: u32,
    /// Downloads in progress server-wide.
    pub total: u32,
    /// Limit per client.
    pub max_client: u32,
    /// Limit server-wide.
    pub max_total: u32,
}

/// What the server knows about the requesting client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Not (or no longer) in the accredited list.
    NotAccredited,
    /// Accredited, with its quotas and base downloads.
    Accredited {
        /// Both quotas now.
        quota: QuotaView,
        /// Base downloads in progress.
        bases: BaseLoad,
    },
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send this one frame and finish the stream.
    Reply(Response),
    /// Charge `charge` evaluations on both counters (persisted), then evaluate the batch.
    Evaluate {
        /// Elements admitted (the batch size).
        charge: u64,
    },
    /// Stream the base of the current epoch from `offset`, then BaseEnd.
    StreamBase {
        /// First entry to send.
        offset: u64,
    },
    /// Stream the deltas of the kept epochs after `from` (< current), then DeltaEnd.
    StreamDelta {
        /// The client's epoch.
        from: u32,
    },
}

fn error(code: ErrorCode, message: &str) -> Decision {
    Decision::Reply(Response::Error(ErrorResponse::new(code, message)))
}

fn error_retry(code: ErrorCode, retry_after_secs: u32, message: &str) -> Decision {
    Decision::Reply(reply_retry(code, retry_after_secs, message))
}

fn reply(code: ErrorCode, message: &str) -> Response {
    Response::Error(ErrorResponse::new(code, message))
}

fn reply_retry(code: ErrorCode, retry_after_secs: u32, message: &str) -> Response {
    let mut e = ErrorResponse::new(code, message);
    e.retry_after_secs = retry_after_secs;
    Response::Error(e)
}

/// The answer to a request that names `named`, a key period other than the current one: a
/// KeyPeriodChanged error carrying the current key period and epoch.
pub fn key_period_changed(cur: &Current, named: &KeyPeriodId) -> Decision {
    Decision::Reply(Response::Error(ErrorResponse::with_current(
        ErrorCode::KeyPeriodChanged,
        cur.current(),
        &format!(
            "key period changed: the request names {}, the current key period is {} (epoch {})",
            display_kp(named),
            display_kp(&cur.key_period),
            cur.epoch
        ),
    )))
}

/// A wire key period id as displayed (`<number>-<hex>`).
pub fn display_kp(k: &KeyPeriodId) -> String {
    nayose_table::KeyPeriodId::from_bytes(k.0).to_string()
}

/// The decision of flows.md §5.2 for `request` from `client` (the entity the server derived
/// from the connection's certificate; for a certificate that acts for no entity, the reason
/// why, as the `NotAccredited` message).
pub fn decide(client: &str, standing: Standing, request: &Request, cur: &Current) -> Decision {
    let Standing::Accredited { quota, bases } = standing else {
        return error(
            ErrorCode::NotAccredited,
            &format!(
                "entity {client} is not accredited, or this certificate no longer acts for it"
            ),
        );
    };
    if let Some(named) = request.key_period()
        && *named != cur.key_period
    {
        return key_period_changed(cur, named);
    }
    match request {
        Request::Info => {
            let Ok(entity) = EntityId::new(client) else {
                return error(
                    ErrorCode::Internal,
                    "internal error: the entity id breaks the id rule",
                );
            };
            Decision::Reply(Response::Info(InfoResponse {
                key_period: cur.key_period,
                public_key: nayose_wire::PublicKeyBytes(cur.public_key),
                epoch: cur.epoch,
                table_entries: cur.entries,
                table_digest: TableDigest(cur.digest),
                upsert_chain: nayose_wire::UpsertChain(cur.chain),
                oldest_delta_base: cur.oldest_delta_base,
                max_batch: cur.max_batch,
                quota_left_today: quota.left_today,
                quota_reset_secs: quota.reset_secs,
                quota_left_key_period: quota.left_key_period,
                announcement: cur.announcement.map(Box::new),
                entity,
            }))
        }
        Request::Evaluate(r) => {
            let n = r.elements.len() as u64;
            if n > u64::from(cur.max_batch) {
                return error(
                    ErrorCode::BatchTooLarge,
                    &format!(
                        "batch of {n} elements; this server accepts at most {}",
                        cur.max_batch
                    ),
                );
            }
            match evaluate_refusal(&quota, n) {
                Some(refused) => Decision::Reply(refused),
                None => Decision::Evaluate { charge: n },
            }
        }
        Request::FetchBase(r) => {
            if r.epoch != cur.epoch {
                return Decision::Reply(Response::Error(ErrorResponse::with_current(
                    ErrorCode::EpochChanged,
                    cur.current(),
                    &format!(
                        "epoch changed: the request names epoch {}, the current epoch is {}",
                        r.epoch, cur.epoch
                    ),
                )));
            }
            if r.offset > cur.entries {
                return error(
                    ErrorCode::OffsetOutOfRange,
                    &format!(
                        "offset {} is beyond the table's {} entries",
                        r.offset, cur.entries
                    ),
                );
            }
            if bases.client >= bases.max_client || bases.total >= bases.max_total {
                return error_retry(
                    ErrorCode::Busy,
                    1,
                    "too many base downloads in progress; retry shortly",
                );
            }
            Decision::StreamBase { offset: r.offset }
        }
        Request::FetchDelta(r) => {
            let from = r.from_epoch;
            if from == cur.epoch {
                return Decision::Reply(Response::DeltaEnd(DeltaEnd {
                    key_period: cur.key_period,
                    epoch: from,
                    total: cur.entries,
                }));
            }
            if from < cur.oldest_delta_base
                || from > cur.epoch
                || cur.delta_bases.binary_search(&from).is_err()
            {
                return error(
                    ErrorCode::DeltaUnavailable,
                    &format!(
                        "no deltas kept from epoch {from} (deltas are kept from epoch {} up to \
                         the current epoch {}); download a base",
                        cur.oldest_delta_base, cur.epoch
                    ),
                );
            }
            Decision::StreamDelta { from }
        }
    }
}

/// Why an Evaluate of `n` elements is refused with `quota` (the hard cap first, then the
/// key-period quota, then the daily quota), or `None` if it is admitted. The decision's rule,
/// also used when another replica's charges refuse a batch after its decision.
pub fn evaluate_refusal(quota: &QuotaView, n: u64) -> Option<Response> {
    let t = quota.totals;
    if let Some(cap) = quota.hard_cap
        && (t.key_period.saturating_add(n) > cap || t.window.saturating_add(n) > cap)
    {
        return Some(reply(
            ErrorCode::HardCapReached,
            &format!(
                "hard cap: {} evaluations in this key period and {} in the last {} days; \
                 a batch of {n} would pass this entity's hard cap of {}; nothing was \
                 evaluated; the management body must review the entity's use and raise \
                 hard_cap (security.md §6.1)",
                t.key_period, t.window, t.window_days, cap
            ),
        ));
    }
    if n > quota.left_key_period {
        return Some(reply_retry(
            ErrorCode::QuotaExhausted,
            0,
            &format!(
                "key-period quota: {} evaluations left in this key period, the batch \
                 needs {n}; it renews only with a new key period",
                quota.left_key_period
            ),
        ));
    }
    if n > quota.left_today {
        return Some(reply_retry(
            ErrorCode::QuotaExhausted,
            quota.reset_secs,
            &format!(
                "daily quota: {} evaluations left today, the batch needs {n}; it \
                 renews in {} s (00:00 of the quota day)",
                quota.left_today, quota.reset_secs
            ),
        ));
    }
    None
}

/// The BaseEnd of a base stream of `cur`.
pub fn base_end(cur: &Current) -> Response {
    Response::BaseEnd(BaseEnd {
        key_period: cur.key_period,
        epoch: cur.epoch,
        total: cur.entries,
    })
}

/// The DeltaEnd of a delta stream of `cur` that reached the current epoch.
pub fn delta_end(cur: &Current) -> Response {
    Response::DeltaEnd(DeltaEnd {
        key_period: cur.key_period,
        epoch: cur.epoch,
        total: cur.entries,
    })
}

/// How one epoch's delta of `removed` tags and `upserts` entries is cut into DeltaChunks
/// (wire.md §5.2.5): consecutive pieces of at most `max` items of removed ‖ upserts; at least
/// one (empty) chunk for an empty delta. Returns (removed range, upserts range) per chunk.
pub fn delta_chunks(
    removed: usize,
    upserts: usize,
    max: usize,
) -> Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> {
    let max = max.max(1);
    let total = removed + upserts;
    if total == 0 {
        return vec![(0..0, 0..0)];
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < total {
        let end = (at + max).min(total);
        let r = at.min(removed)..end.min(removed);
        let u = at.saturating_sub(removed)..end.saturating_sub(removed);
        out.push((r, u));
        at = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nayose_wire::{ElementBatch, EvaluateRequest, FetchBaseRequest, FetchDeltaRequest};

    const KP: KeyPeriodId = KeyPeriodId([7u8; 16]);

    fn cur() -> Current {
        Current {
            key_period: KP,
            public_key: [1u8; 32],
            epoch: 12,
            entries: 1000,
            digest: [2u8; 32],
            chain: [3u8; 32],
            oldest_delta_base: 9,
            delta_bases: vec![9, 10, 11],
            max_batch: 8,
            announcement: None,
        }
    }

    fn ok(left_today: u64, left_key_period: u64) -> Standing {
        Standing::Accredited {
            quota: QuotaView {
                left_today,
                left_key_period,
                reset_secs: 3600,
                totals: Totals::default(),
                hard_cap: None,
            },
            bases: BaseLoad {
                client: 0,
                total: 0,
                max_client: 2,
                max_total: 3,
            },
        }
    }

    fn eval(kp: KeyPeriodId, n: usize) -> Request {
        Request::Evaluate(EvaluateRequest {
            key_period: kp,
            elements: ElementBatch::from_arrays(&vec![[3u8; 32]; n]).unwrap(),
        })
    }

    fn code(d: &Decision) -> (ErrorCode, u32, Option<CurrentState>) {
        match d {
            Decision::Reply(Response::Error(e)) => (e.code, e.retry_after_secs, e.current),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn quota_day_is_jst_and_resets_at_midnight() {
        // 2026-03-01T12:00:00Z = 21:00 JST: 3 hours left.
        let (d0, r0) = quota_day(1_772_366_400, 540 * 60);
        assert_eq!(r0, 3 * 3600);
        let (d1, r1) = quota_day(1_772_366_400 + 3 * 3600, 540 * 60);
        assert_eq!((d1, r1), (d0 + 1, 86_400));
        let (d2, r2) = quota_day(1_772_366_400 + 3 * 3600 - 1, 540 * 60);
        assert_eq!((d2, r2), (d0, 1));
    }

    #[test]
    fn not_accredited_is_refused_whatever_the_request() {
        for r in [Request::Info, eval(KP, 1)] {
            let d = decide("hosp-z", Standing::NotAccredited, &r, &cur());
            assert_eq!(code(&d).0, ErrorCode::NotAccredited);
            match d {
                Decision::Reply(Response::Error(e)) => {
                    assert!(e.message.as_str().contains("hosp-z"))
                }
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn info_states_the_snapshot_and_both_quotas() {
        match decide("a", ok(5, 40), &Request::Info, &cur()) {
            Decision::Reply(Response::Info(i)) => {
                assert_eq!(i.key_period, KP);
                assert_eq!(
                    (i.epoch, i.table_entries, i.oldest_delta_base),
                    (12, 1000, 9)
                );
                assert_eq!(i.table_digest.0, [2u8; 32]);
                assert_eq!(i.public_key.0, [1u8; 32]);
                assert_eq!(i.max_batch, 8);
                assert_eq!((i.quota_left_today, i.quota_left_key_period), (5, 40));
                assert_eq!(i.quota_reset_secs, 3600);
                assert_eq!(i.entity.as_str(), "a", "Info names the requesting entity");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn another_key_period_gets_key_period_changed_with_current() {
        let old = KeyPeriodId([6u8; 16]);
        let reqs = [
            eval(old, 1),
            Request::FetchBase(FetchBaseRequest {
                key_period: old,
                epoch: 12,
                offset: 0,
            }),
            Request::FetchDelta(FetchDeltaRequest {
                key_period: old,
                from_epoch: 11,
            }),
        ];
        for r in reqs {
            let (c, retry, current) = code(&decide("a", ok(5, 5), &r, &cur()));
            assert_eq!((c, retry), (ErrorCode::KeyPeriodChanged, 0));
            assert_eq!(
                current,
                Some(CurrentState {
                    key_period: KP,
                    epoch: 12
                })
            );
        }
    }

    #[test]
    fn evaluate_checks_batch_then_key_period_quota_then_daily_quota() {
        let (c, _, _) = code(&decide("a", ok(100, 100), &eval(KP, 9), &cur()));
        assert_eq!(c, ErrorCode::BatchTooLarge);
        // Both short: the key-period quota is named, retry 0 (waiting does not help).
        let (c, retry, _) = code(&decide("a", ok(2, 2), &eval(KP, 3), &cur()));
        assert_eq!((c, retry), (ErrorCode::QuotaExhausted, 0));
        // Only the key-period quota short.
        let (c, retry, _) = code(&decide("a", ok(100, 2), &eval(KP, 3), &cur()));
        assert_eq!((c, retry), (ErrorCode::QuotaExhausted, 0));
        // Only the daily quota short: retry at the end of the quota day.
        let (c, retry, _) = code(&decide("a", ok(2, 100), &eval(KP, 3), &cur()));
        assert_eq!((c, retry), (ErrorCode::QuotaExhausted, 3600));
        // Exactly what is left on both: admitted, charging the whole batch.
        assert_eq!(
            decide("a", ok(3, 3), &eval(KP, 3), &cur()),
            Decision::Evaluate { charge: 3 }
        );
        assert_eq!(
            decide("a", ok(100, 100), &eval(KP, 8), &cur()),
            Decision::Evaluate { charge: 8 }
        );
    }

    #[test]
    fn the_hard_cap_binds_on_the_key_period_and_on_the_window_before_any_quota() {
        let capped = |key_period_used, window_used| {
            let Standing::Accredited { mut quota, bases } = ok(0, 0) else {
                unreachable!()
            };
            quota.hard_cap = Some(10);
            quota.totals = Totals {
                key_period: key_period_used,
                window: window_used,
                window_days: 30,
            };
            Standing::Accredited { quota, bases }
        };
        // Up to the cap exactly: the quotas decide (both 0 here).
        let (c, _, _) = code(&decide("a", capped(7, 7), &eval(KP, 3), &cur()));
        assert_eq!(c, ErrorCode::QuotaExhausted);
        // One past it on the key-period total, or on the window's: refused, retry 0, and the
        // message gives the totals and the cap.
        for standing in [capped(8, 0), capped(0, 8)] {
            let d = decide("a", standing, &eval(KP, 3), &cur());
            assert_eq!(code(&d), (ErrorCode::HardCapReached, 0, None));
            let Decision::Reply(Response::Error(e)) = d else {
                unreachable!()
            };
            assert!(
                e.message.as_str().contains("hard cap of 10")
                    && e.message.as_str().contains("last 30 days"),
                "{}",
                e.message
            );
        }
        let Standing::Accredited { mut quota, bases } = capped(7, 7) else {
            unreachable!()
        };
        quota.left_today = 5;
        quota.left_key_period = 5;
        assert_eq!(
            decide(
                "a",
                Standing::Accredited { quota, bases },
                &eval(KP, 3),
                &cur()
            ),
            Decision::Evaluate { charge: 3 }
        );
    }

    fn base(epoch: u32, offset: u64) -> Request {
        Request::FetchBase(FetchBaseRequest {
            key_period: KP,
            epoch,
            offset,
        })
    }

    #[test]
    fn fetch_base_checks_epoch_offset_and_load() {
        let (c, _, current) = code(&decide("a", ok(0, 0), &base(11, 0), &cur()));
        assert_eq!(c, ErrorCode::EpochChanged);
        assert_eq!(current.map(|s| s.epoch), Some(12));
        let (c, _, _) = code(&decide("a", ok(0, 0), &base(13, 0), &cur()));
        assert_eq!(
            c,
            ErrorCode::EpochChanged,
            "a future epoch is not served either"
        );
        let (c, _, _) = code(&decide("a", ok(0, 0), &base(12, 1001), &cur()));
        assert_eq!(c, ErrorCode::OffsetOutOfRange);
        assert_eq!(
            decide("a", ok(0, 0), &base(12, 1000), &cur()),
            Decision::StreamBase { offset: 1000 },
            "offset = N is valid (only BaseEnd follows)"
        );
        assert_eq!(
            decide("a", ok(0, 0), &base(12, 0), &cur()),
            Decision::StreamBase { offset: 0 },
            "downloads need no evaluation quota"
        );
        for (client, total) in [(2, 0), (0, 3)] {
            let s = Standing::Accredited {
                quota: QuotaView {
                    left_today: 1,
                    left_key_period: 1,
                    reset_secs: 1,
                    totals: Totals::default(),
                    hard_cap: None,
                },
                bases: BaseLoad {
                    client,
                    total,
                    max_client: 2,
                    max_total: 3,
                },
            };
            let (c, retry, _) = code(&decide("a", s, &base(12, 0), &cur()));
            assert_eq!((c, retry), (ErrorCode::Busy, 1));
        }
    }

    fn delta(from: u32) -> Request {
        Request::FetchDelta(FetchDeltaRequest {
            key_period: KP,
            from_epoch: from,
        })
    }

    #[test]
    fn fetch_delta_serves_only_the_kept_chain() {
        match decide("a", ok(0, 0), &delta(12), &cur()) {
            Decision::Reply(Response::DeltaEnd(e)) => {
                assert_eq!((e.epoch, e.total, e.key_period), (12, 1000, KP));
            }
            other => panic!("{other:?}"),
        }
        for from in [9, 10, 11] {
            assert_eq!(
                decide("a", ok(0, 0), &delta(from), &cur()),
                Decision::StreamDelta { from }
            );
        }
        for from in [0, 8, 13, u32::MAX] {
            let (c, _, _) = code(&decide("a", ok(0, 0), &delta(from), &cur()));
            assert_eq!(c, ErrorCode::DeltaUnavailable, "from {from}");
        }
        // An epoch number inside the range that is not in the chain (never published, or of
        // a gap left by a failed build) has no state a client could hold.
        let mut gap = cur();
        gap.delta_bases = vec![9, 11];
        let (c, _, _) = code(&decide("a", ok(0, 0), &delta(10), &gap));
        assert_eq!(c, ErrorCode::DeltaUnavailable);
        // No delta kept (first epoch of a key period): only from = current works.
        let mut first = cur();
        first.oldest_delta_base = 12;
        first.delta_bases = vec![];
        let (c, _, _) = code(&decide("a", ok(0, 0), &delta(11), &first));
        assert_eq!(c, ErrorCode::DeltaUnavailable);
    }

    #[test]
    fn delta_chunks_follow_the_wire_rules() {
        assert_eq!(delta_chunks(0, 0, 4), vec![(0..0, 0..0)]);
        assert_eq!(delta_chunks(2, 1, 4), vec![(0..2, 0..1)]);
        assert_eq!(
            delta_chunks(5, 6, 4),
            vec![(0..4, 0..0), (4..5, 0..3), (5..5, 3..6)]
        );
        // Every item exactly once, no empty chunk, removed before upserts.
        for (r, u) in [(0, 9), (9, 0), (4, 4), (7, 1)] {
            let c = delta_chunks(r, u, 4);
            assert!(c.iter().all(|(a, b)| !a.is_empty() || !b.is_empty()));
            assert!(c.iter().all(|(a, b)| a.len() + b.len() <= 4));
            assert_eq!(c.iter().map(|(a, _)| a.len()).sum::<usize>(), r);
            assert_eq!(c.iter().map(|(_, b)| b.len()).sum::<usize>(), u);
            let first_upsert = c.iter().position(|(_, b)| !b.is_empty());
            if let Some(i) = first_upsert {
                assert!(c[i + 1..].iter().all(|(a, _)| a.is_empty()));
            }
        }
    }
}
