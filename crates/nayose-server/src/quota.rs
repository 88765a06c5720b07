//! Per-entity evaluation quotas, per quota day and per key period, and the totals of the
//! enumeration controls (the key period's, and the rolling window's of
//! `enumeration_window_days` quota days), persisted in `DATA_DIR/state/quota.json`.
//!
//! The window total is kept as one counter per quota day of the window (older days are
//! dropped); it spans key periods, so starting a new key period does not reset it. An entity's
//! `hard_cap` binds both totals ([`nayose_proto::server::decide`] refuses with
//! `HardCapReached`).
//!
//! A quota day runs from 00:00 to 24:00 at the configured UTC offset (default +09:00, JST); a
//! key period's counter starts at zero with the key period (it is keyed by the key period id).
//! An Evaluate of n elements is admitted only if n elements are left on **both** counters
//! ([`crate::decide`] decides); the admission and the new usage of both counters are written to
//! disk in one atomic replacement (temp file, fsync, rename, fsync dir) before the elements are
//! evaluated, so a restart — or a crash — never hands out evaluations twice. An evaluation that
//! then fails (an invalid element) is refunded on both counters.
//!
//! Invariant: `used` of a client refers to the day recorded next to it, `key_period_used` to
//! the key period recorded next to it; a different day or key period means nothing was used
//! yet there. A record's key period only ever moves forward (key period numbers compared): a
//! charge for an older key period than the record's — a request whose snapshot predates a key
//! period switch — is refused, never allowed to reset the newer counter. The decision runs
//! under the book's lock, so two concurrent requests of a client
//! cannot both spend the last evaluations.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::clock::unix_secs;
use crate::config::ClientLimits;
use crate::error::ServerError;
use crate::fsutil::atomic_write;
use nayose_proto::server::{QuotaView, Totals, quota_day};

/// The number of a key period as displayed (`<number>-<key check>`); 0 for none or an
/// unreadable one (a record from before key periods: older than any).
fn key_period_number(key_period: &str) -> u64 {
    key_period
        .split_once('-')
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(0)
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Usage {
    /// Quota day number (days since 1970-01-01 at the configured offset).
    day: i64,
    /// Evaluations used that day.
    used: u64,
    /// The key period (`<number>-<key check>`) of `key_period_used`.
    #[serde(default)]
    key_period: String,
    /// Evaluations used in that key period.
    #[serde(default)]
    key_period_used: u64,
    /// Evaluations per quota day of the rolling window, `[day, used]`, ascending (a book of an
    /// earlier version has none: its window starts empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    recent: Vec<(i64, u64)>,
}

impl Usage {
    /// Drops the days before the window of `window_days` days ending on `day`.
    fn prune(&mut self, day: i64, window_days: u32) {
        let first = day - i64::from(window_days) + 1;
        self.recent.retain(|&(d, _)| d >= first);
    }

    fn window_total(&self) -> u64 {
        self.recent
            .iter()
            .fold(0u64, |a, &(_, n)| a.saturating_add(n))
    }

    /// Adds `n` to `day`'s window counter.
    fn add_recent(&mut self, day: i64, n: u64) {
        match self.recent.iter_mut().find(|(d, _)| *d == day) {
            Some((_, used)) => *used = used.saturating_add(n),
            None => {
                self.recent.push((day, n));
                self.recent.sort_unstable();
            }
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuotaFile {
    format: u32,
    clients: BTreeMap<String, Usage>,
}

/// The quota book: usage per client, persisted.
#[derive(Debug)]
pub(crate) struct QuotaBook {
    path: PathBuf,
    offset_secs: i64,
    window_days: u32,
    state: Mutex<QuotaFile>,
}

impl QuotaBook {
    /// Opens (or starts) the book at `path`, with a rolling window of `window_days` quota days.
    /// A nayose/1 book (format 1) keeps its daily usage.
    pub(crate) fn open(
        path: PathBuf,
        utc_offset_minutes: i32,
        window_days: u32,
    ) -> Result<Self, ServerError> {
        let mut state: QuotaFile = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ServerError::Config {
                path: path.clone(),
                reason: format!(
                    "quota state is unreadable ({e}); it is written only by the server"
                ),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => QuotaFile {
                format: 2,
                clients: BTreeMap::new(),
            },
            Err(e) => {
                return Err(ServerError::Io {
                    action: "cannot read",
                    path,
                    source: e,
                });
            }
        };
        state.format = 2;
        Ok(QuotaBook {
            path,
            offset_secs: i64::from(utc_offset_minutes) * 60,
            window_days: window_days.max(1),
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QuotaFile> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, st: &QuotaFile) -> Result<(), ServerError> {
        let bytes = serde_json::to_vec_pretty(st)
            .map_err(|e| ServerError::Internal(format!("quota state encoding: {e}")))?;
        atomic_write(&self.path, &bytes)
    }

    /// `client`'s usage normalised to the day of `now` and to `key_period`, and whether the
    /// record already belongs to a newer key period than `key_period` (then a charge for
    /// `key_period` must be refused: writing it would reset the newer key period's counter).
    fn usage(&self, st: &QuotaFile, client: &str, day: i64, key_period: &str) -> (Usage, bool) {
        let mut u = st.clients.get(client).cloned().unwrap_or_default();
        u.prune(day, self.window_days);
        if u.day != day {
            u.day = day;
            u.used = 0;
        }
        let mut superseded = false;
        if u.key_period != key_period {
            superseded = key_period_number(&u.key_period) > key_period_number(key_period);
            u.key_period = key_period.to_string();
            u.key_period_used = 0;
        }
        (u, superseded)
    }

    /// Runs `decide` on `client`'s quotas now (under the book's lock); if it returns a charge
    /// n > 0, charges n on both counters and persists the book before returning. On a failure
    /// to persist nothing is charged.
    ///
    /// `Ok(None)`: `decide` asked for a charge in `key_period`, but the client's record already
    /// holds a newer key period (a request that took its snapshot before a key period switch,
    /// charged after a request under the new one). Nothing is charged — the record's key period
    /// is never replaced by an older one, which would reset the newer counter — and the caller
    /// answers `KeyPeriodChanged`.
    pub(crate) fn decide_and_charge<T>(
        &self,
        client: &str,
        limits: ClientLimits,
        key_period: &str,
        now: SystemTime,
        decide: impl FnOnce(QuotaView) -> (T, u64),
    ) -> Result<Option<(T, QuotaView)>, ServerError> {
        let (day, reset_secs) = quota_day(unix_secs(now), self.offset_secs);
        let mut st = self.lock();
        let (mut u, superseded) = self.usage(&st, client, day, key_period);
        let view = self.view_of(&u, limits, reset_secs);
        let (out, charge) = decide(view);
        if charge == 0 {
            return Ok(Some((out, view)));
        }
        if superseded {
            return Ok(None);
        }
        u.used = u.used.saturating_add(charge);
        u.key_period_used = u.key_period_used.saturating_add(charge);
        u.add_recent(day, charge);
        let prev = st.clients.insert(client.to_string(), u);
        if let Err(e) = self.persist(&st) {
            match prev {
                Some(p) => st.clients.insert(client.to_string(), p),
                None => st.clients.remove(client),
            };
            return Err(e);
        }
        Ok(Some((out, view)))
    }

    fn view_of(&self, u: &Usage, limits: ClientLimits, reset_secs: u32) -> QuotaView {
        QuotaView {
            left_today: limits.per_day.saturating_sub(u.used),
            left_key_period: limits.per_key_period.saturating_sub(u.key_period_used),
            reset_secs,
            totals: Totals {
                key_period: u.key_period_used,
                window: u.window_total(),
                window_days: self.window_days,
            },
            hard_cap: limits.hard_cap,
        }
    }

    /// Both quotas and the totals of `client` now (nothing charged).
    #[cfg(test)]
    pub(crate) fn view(
        &self,
        client: &str,
        limits: ClientLimits,
        key_period: &str,
        now: SystemTime,
    ) -> QuotaView {
        let (day, reset_secs) = quota_day(unix_secs(now), self.offset_secs);
        let st = self.lock();
        let (u, _) = self.usage(&st, client, day, key_period);
        self.view_of(&u, limits, reset_secs)
    }

    /// Gives back `n` evaluations charged at `now` in `key_period` that were not performed.
    pub(crate) fn refund(
        &self,
        client: &str,
        n: u64,
        now: SystemTime,
        key_period: &str,
    ) -> Result<(), ServerError> {
        let (day, _) = quota_day(unix_secs(now), self.offset_secs);
        let mut st = self.lock();
        let Some(u) = st.clients.get_mut(client) else {
            return Ok(());
        };
        if u.day == day {
            u.used = u.used.saturating_sub(n);
        }
        if u.key_period == key_period {
            u.key_period_used = u.key_period_used.saturating_sub(n);
        }
        if let Some((_, used)) = u.recent.iter_mut().find(|(d, _)| *d == day) {
            *used = used.saturating_sub(n);
        }
        self.persist(&st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const L: ClientLimits = ClientLimits {
        per_day: 10,
        per_key_period: 15,
        declared_holdings: None,
        hard_cap: None,
    };

    fn take(book: &QuotaBook, n: u64, kp: &str, t: SystemTime) -> Result<QuotaView, QuotaView> {
        let (admitted, view) = book
            .decide_and_charge("a", L, kp, t, |v| {
                let ok = n <= v.left_today && n <= v.left_key_period;
                (ok, if ok { n } else { 0 })
            })
            .unwrap()
            .expect("not superseded");
        if admitted { Ok(view) } else { Err(view) }
    }

    #[test]
    fn a_late_charge_for_an_older_key_period_does_not_reset_the_newer_counter() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("quota.json");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let book = QuotaBook::open(p.clone(), 540, 30).unwrap();
        take(&book, 2, "9-aa", t).unwrap();
        // The key period switches to 10; the client spends 6 of its 15 there.
        take(&book, 6, "10-bb", t).unwrap();
        // A request that took its snapshot under key period 9 charges late: refused.
        let late = book
            .decide_and_charge("a", L, "9-aa", t, |v| {
                assert_eq!(v.left_today, 2, "the daily counter is shared");
                ((), 1)
            })
            .unwrap();
        assert!(
            late.is_none(),
            "a charge for an older key period is refused"
        );
        // Nothing changed: key period 10 keeps its 6 used (numbers compare as numbers:
        // 9 < 10), the day keeps its 8.
        let v = book.view("a", L, "10-bb", t);
        assert_eq!((v.left_today, v.left_key_period), (2, 9));
        drop(book);
        let book = QuotaBook::open(p, 540, 30).unwrap();
        let v = book.view("a", L, "10-bb", t);
        assert_eq!((v.left_today, v.left_key_period), (2, 9), "persisted");
        // A request charging nothing (Info) under the old snapshot is still answered.
        let info = book
            .decide_and_charge("a", L, "9-aa", t, |v| (v.left_key_period, 0))
            .unwrap();
        assert!(info.is_some());
        // A newer key period still starts its counter at zero.
        take(&book, 1, "11-cc", t).unwrap();
        let v = book.view("a", L, "11-cc", t);
        assert_eq!((v.left_today, v.left_key_period), (1, 14));
    }

    #[test]
    fn both_counters_persist_and_reset_independently() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("quota.json");
        // 2026-01-01T00:00:00Z = 09:00 JST.
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let book = QuotaBook::open(p.clone(), 540, 30).unwrap();
        assert_eq!(book.view("a", L, "1-aa", t0).reset_secs, 15 * 3600);
        take(&book, 7, "1-aa", t0).unwrap();
        let refused = take(&book, 4, "1-aa", t0).unwrap_err();
        assert_eq!((refused.left_today, refused.left_key_period), (3, 8));
        drop(book);
        let book = QuotaBook::open(p.clone(), 540, 30).unwrap();
        let v = book.view("a", L, "1-aa", t0);
        assert_eq!((v.left_today, v.left_key_period), (3, 8), "persisted");
        book.refund("a", 2, t0, "1-aa").unwrap();
        let v = book.view("a", L, "1-aa", t0);
        assert_eq!((v.left_today, v.left_key_period), (5, 10));
        // The next JST day: the daily counter resets, the key-period counter does not.
        let t1 = t0 + Duration::from_secs(15 * 3600);
        let v = book.view("a", L, "1-aa", t1);
        assert_eq!(
            (v.left_today, v.left_key_period, v.reset_secs),
            (10, 10, 86_400)
        );
        take(&book, 10, "1-aa", t1).unwrap();
        let refused = take(&book, 1, "1-aa", t1).unwrap_err();
        assert_eq!(refused.left_key_period, 0);
        // A new key period starts its counter at zero.
        let v = book.view("a", L, "2-bb", t1);
        assert_eq!((v.left_today, v.left_key_period), (0, 15));
        drop(book);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"key_period_used\": 15"), "{text}");
    }

    #[test]
    fn the_window_total_spans_key_periods_and_forgets_days_past_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("quota.json");
        let day0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let at = |d: u64| day0 + Duration::from_secs(d * 86_400);
        // A window of 3 quota days.
        let book = QuotaBook::open(p.clone(), 540, 3).unwrap();
        take(&book, 4, "1-aa", at(0)).unwrap();
        take(&book, 2, "1-aa", at(1)).unwrap();
        // A new key period: its own total starts at 0, the window keeps the earlier days.
        take(&book, 3, "2-bb", at(2)).unwrap();
        let v = book.view("a", L, "2-bb", at(2));
        assert_eq!(
            (v.totals.key_period, v.totals.window, v.totals.window_days),
            (3, 9, 3)
        );
        // Day 3: day 0 has left the window.
        assert_eq!(book.view("a", L, "2-bb", at(3)).totals.window, 5);
        // A refund gives back today's window counter too; and it all persists.
        book.refund("a", 1, at(2), "2-bb").unwrap();
        drop(book);
        let book = QuotaBook::open(p, 540, 3).unwrap();
        let v = book.view("a", L, "2-bb", at(2));
        assert_eq!((v.totals.key_period, v.totals.window), (2, 8));
        // The limits' hard cap is carried to the decision.
        let capped = ClientLimits {
            hard_cap: Some(8),
            ..L
        };
        assert_eq!(book.view("a", capped, "2-bb", at(2)).hard_cap, Some(8));
    }
}
