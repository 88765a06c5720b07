//! Per-client daily evaluation quotas, persisted in `DATA_DIR/state/quota.json`.
//!
//! A quota day runs from 00:00 to 24:00 at the configured UTC offset (default +09:00, JST).
//! An Evaluate of n elements is admitted only if n elements are left; admission and the new
//! usage are written to disk atomically (temp file, fsync, rename, fsync dir) before the
//! elements are evaluated, so a restart — or a crash — never hands out evaluations twice. An
//! evaluation that then fails (an invalid element) is refunded.
//!
//! Invariant: `used` of a client refers to the day recorded next to it; a different day means
//! nothing was used yet that day.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::clock::unix_secs;
use crate::error::ServerError;
use crate::fsutil::atomic_write;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Usage {
    /// Quota day number (days since 1970-01-01 at the configured offset).
    day: i64,
    /// Evaluations used that day.
    used: u64,
    /// Counters of the epoch the client last used (security.md §5.1).
    #[serde(default)]
    epoch: EpochUsage,
}

/// Per-epoch counters of one client.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct EpochUsage {
    /// The epoch id (`<number>-<key check>`); other epochs count from zero.
    id: String,
    /// Elements evaluated in the epoch.
    evaluations: u64,
    /// FetchRange requests accepted in the epoch.
    range_fetches: u64,
    /// FetchAll entries granted in the epoch.
    full_entries: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaFile {
    format: u32,
    clients: BTreeMap<String, Usage>,
}

/// Where a client stands in the current quota day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaStatus {
    /// Evaluations left today.
    pub left: u64,
    /// Seconds until the quota day ends.
    pub reset_secs: u32,
}

/// The quota book: usage per client, persisted.
#[derive(Debug)]
pub(crate) struct QuotaBook {
    path: PathBuf,
    offset_secs: i64,
    state: Mutex<QuotaFile>,
}

impl QuotaBook {
    /// Opens (or starts) the book at `path`.
    pub(crate) fn open(path: PathBuf, utc_offset_minutes: i32) -> Result<Self, ServerError> {
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ServerError::Config {
                path: path.clone(),
                reason: format!(
                    "quota state is unreadable ({e}); it is written only by the server"
                ),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => QuotaFile {
                format: 1,
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
        Ok(QuotaBook {
            path,
            offset_secs: i64::from(utc_offset_minutes) * 60,
            state: Mutex::new(state),
        })
    }

    fn day(&self, now: SystemTime) -> (i64, u32) {
        let local = unix_secs(now) + self.offset_secs;
        let day = local.div_euclid(86_400);
        let reset = 86_400 - local.rem_euclid(86_400);
        (day, reset as u32)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QuotaFile> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The client's standing today under a daily limit of `limit`.
    pub(crate) fn status(&self, client: &str, limit: u64, now: SystemTime) -> QuotaStatus {
        let (day, reset_secs) = self.day(now);
        let st = self.lock();
        let used = st
            .clients
            .get(client)
            .filter(|u| u.day == day)
            .map_or(0, |u| u.used);
        drop(st);
        QuotaStatus {
            left: limit.saturating_sub(used),
            reset_secs,
        }
    }

    fn persist(&self, st: &QuotaFile) -> Result<(), ServerError> {
        let bytes = serde_json::to_vec_pretty(st)
            .map_err(|e| ServerError::Internal(format!("quota state encoding: {e}")))?;
        atomic_write(&self.path, &bytes)
    }

    /// Admits `n` evaluations for `client` if that many are left today, persisting the new
    /// usage before returning. `Err(status)` (nothing consumed) if fewer are left; the outer
    /// error is a failure to persist (nothing consumed either).
    pub(crate) fn try_consume(
        &self,
        client: &str,
        limit: u64,
        n: u64,
        now: SystemTime,
        epoch: &str,
    ) -> Result<Result<QuotaStatus, QuotaStatus>, ServerError> {
        let (day, reset_secs) = self.day(now);
        let mut st = self.lock();
        let prev = st.clients.get(client).cloned();
        let mut u = prev.clone().unwrap_or_default();
        if u.day != day {
            u.day = day;
            u.used = 0;
        }
        let left = limit.saturating_sub(u.used);
        if n > left {
            return Ok(Err(QuotaStatus { left, reset_secs }));
        }
        u.used += n;
        epoch_of(&mut u, epoch).evaluations += n;
        self.commit(&mut st, client, u, prev)?;
        Ok(Ok(QuotaStatus {
            left: left - n,
            reset_secs,
        }))
    }

    /// Stores `u` for `client` and persists; restores `prev` if persisting fails.
    fn commit(
        &self,
        st: &mut QuotaFile,
        client: &str,
        u: Usage,
        prev: Option<Usage>,
    ) -> Result<(), ServerError> {
        st.clients.insert(client.to_string(), u);
        if let Err(e) = self.persist(st) {
            match prev {
                Some(p) => st.clients.insert(client.to_string(), p),
                None => st.clients.remove(client),
            };
            return Err(e);
        }
        Ok(())
    }

    /// Admits one FetchRange in `epoch` if the client has made fewer range fetches in it than
    /// it has had elements evaluated in it (security.md §5.1). `Ok(false)`: allowance spent.
    pub(crate) fn try_range_fetch(&self, client: &str, epoch: &str) -> Result<bool, ServerError> {
        let mut st = self.lock();
        let prev = st.clients.get(client).cloned();
        let mut u = prev.clone().unwrap_or_default();
        let e = epoch_of(&mut u, epoch);
        if e.range_fetches >= e.evaluations {
            return Ok(false);
        }
        e.range_fetches += 1;
        self.commit(&mut st, client, u, prev)?;
        Ok(true)
    }

    /// Admits a FetchAll of `entries` entries in `epoch` if the client's full-download entries
    /// in the epoch stay within `allowance`. `Ok(false)`: allowance spent.
    pub(crate) fn try_full_download(
        &self,
        client: &str,
        epoch: &str,
        entries: u64,
        allowance: u64,
    ) -> Result<bool, ServerError> {
        let mut st = self.lock();
        let prev = st.clients.get(client).cloned();
        let mut u = prev.clone().unwrap_or_default();
        let e = epoch_of(&mut u, epoch);
        if e.full_entries.saturating_add(entries) > allowance {
            return Ok(false);
        }
        e.full_entries += entries;
        self.commit(&mut st, client, u, prev)?;
        Ok(true)
    }

    /// Gives back full-download entries granted but not sent (a cancelled stream).
    pub(crate) fn refund_full_download(
        &self,
        client: &str,
        epoch: &str,
        entries: u64,
    ) -> Result<(), ServerError> {
        let mut st = self.lock();
        if let Some(u) = st.clients.get_mut(client)
            && u.epoch.id == epoch
        {
            u.epoch.full_entries = u.epoch.full_entries.saturating_sub(entries);
            self.persist(&st)?;
        }
        Ok(())
    }

    /// Gives back `n` evaluations admitted today that were not performed.
    pub(crate) fn refund(
        &self,
        client: &str,
        n: u64,
        now: SystemTime,
        epoch: &str,
    ) -> Result<(), ServerError> {
        let (day, _) = self.day(now);
        let mut st = self.lock();
        if let Some(u) = st.clients.get_mut(client).filter(|u| u.day == day) {
            u.used = u.used.saturating_sub(n);
            if u.epoch.id == epoch {
                u.epoch.evaluations = u.epoch.evaluations.saturating_sub(n);
            }
            self.persist(&st)?;
        }
        Ok(())
    }
}

/// The client's counters for `epoch`, reset if they belonged to another epoch.
fn epoch_of<'a>(u: &'a mut Usage, epoch: &str) -> &'a mut EpochUsage {
    if u.epoch.id != epoch {
        u.epoch = EpochUsage {
            id: epoch.to_string(),
            ..EpochUsage::default()
        };
    }
    &mut u.epoch
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn days_limits_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("quota.json");
        // 2026-01-01T00:00:00Z = 09:00 JST.
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let book = QuotaBook::open(p.clone(), 540).unwrap();
        assert_eq!(book.status("a", 10, t0).reset_secs, 15 * 3600);
        assert_eq!(
            book.try_consume("a", 10, 7, t0, "e1").unwrap(),
            Ok(QuotaStatus {
                left: 3,
                reset_secs: 15 * 3600
            })
        );
        assert_eq!(
            book.try_consume("a", 10, 4, t0, "e1")
                .unwrap()
                .unwrap_err()
                .left,
            3
        );
        drop(book);
        let book = QuotaBook::open(p, 540).unwrap();
        assert_eq!(book.status("a", 10, t0).left, 3);
        book.refund("a", 2, t0, "e1").unwrap();
        // 5 evaluations in e1 allow 5 range fetches there, none in e2.
        for _ in 0..5 {
            assert!(book.try_range_fetch("a", "e1").unwrap());
        }
        assert!(!book.try_range_fetch("a", "e1").unwrap());
        assert!(book.try_full_download("a", "e1", 30, 30).unwrap());
        assert!(!book.try_full_download("a", "e1", 1, 30).unwrap());
        book.refund_full_download("a", "e1", 10).unwrap();
        assert!(book.try_full_download("a", "e1", 10, 30).unwrap());
        assert!(!book.try_range_fetch("a", "e2").unwrap());
        assert_eq!(book.status("a", 10, t0).left, 5);
        // 15 hours later a new JST day starts.
        let t1 = t0 + Duration::from_secs(15 * 3600);
        assert_eq!(book.status("a", 10, t1).left, 10);
        assert_eq!(book.status("a", 10, t1).reset_secs, 86_400);
    }
}
