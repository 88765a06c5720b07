//! Fairness under load (issue 11 item 1): each request's slot (per client and in one of two
//! server-wide pools), and the token buckets that throttle peers whose connections fail or are
//! refused.
//!
//! Slots: an Info or Evaluate takes one of `max_concurrent_requests`, a FetchBase or FetchDelta
//! one of `max_concurrent_downloads` (a separate pool, so downloads that stall or saturate the
//! server never make Info and Evaluate `Busy`); every request also takes one of its client's
//! `max_requests_per_client`, a download one of `max_downloads_per_client`. A slot is held until
//! the answer is fully sent (or the stream is reset for stalling past `write_timeout_ms`) and
//! released when dropped.
//!
//! Buckets: a source IP address and a certificate (its SHA-256) each have `refused_burst`
//! tokens, refilled at `refused_per_minute`. A refused or failed connection (handshake failure,
//! no accredited id, over the connection allowance) takes a token from both; an address without
//! a token is refused before the TLS handshake, a certificate without one is closed right after
//! it, without waiting for a request. Accredited connections take no token.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nayose_table::ClientId;
use tokio::sync::SemaphorePermit;

use super::Shared;

/// Requests and downloads one client has in progress.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ClientLoad {
    requests: u32,
    downloads: u32,
}

/// Why a request got no slot (answered `Busy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NoSlot {
    /// The client has `max_requests_per_client` requests in progress.
    ClientRequests,
    /// The client has `max_downloads_per_client` downloads in progress.
    ClientDownloads,
    /// The pool of the request's kind is exhausted.
    Pool,
}

impl NoSlot {
    pub(super) fn message(self) -> &'static str {
        match self {
            NoSlot::ClientRequests => "too many requests of this client in progress; retry shortly",
            NoSlot::ClientDownloads => {
                "too many downloads of this client in progress; retry shortly"
            }
            NoSlot::Pool => "server busy; retry shortly",
        }
    }
}

/// One request's slots; released when dropped.
pub(super) struct Slot<'a> {
    shared: &'a Shared,
    client: ClientId,
    download: bool,
    _permit: SemaphorePermit<'a>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut m = self
            .shared
            .per_client
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(l) = m.get_mut(&self.client) {
            l.requests = l.requests.saturating_sub(1);
            if self.download {
                l.downloads = l.downloads.saturating_sub(1);
            }
            if l.requests == 0 && l.downloads == 0 {
                m.remove(&self.client);
            }
        }
    }
}

/// Takes the slots of one request of `client` (`download`: a FetchBase or FetchDelta).
pub(super) fn admit<'a>(
    shared: &'a Shared,
    client: &ClientId,
    download: bool,
) -> Result<Slot<'a>, NoSlot> {
    let cfg = &shared.s.cfg;
    let mut m = shared.per_client.lock().unwrap_or_else(|p| p.into_inner());
    let l = m.get(client).copied().unwrap_or_default();
    if l.requests >= cfg.max_requests_per_client {
        return Err(NoSlot::ClientRequests);
    }
    if download && l.downloads >= cfg.max_downloads_per_client {
        return Err(NoSlot::ClientDownloads);
    }
    let pool = if download {
        &shared.downloads
    } else {
        &shared.busy
    };
    let permit = pool.try_acquire().map_err(|_| NoSlot::Pool)?;
    let e = m.entry(client.clone()).or_default();
    e.requests += 1;
    if download {
        e.downloads += 1;
    }
    Ok(Slot {
        shared,
        client: client.clone(),
        download,
        _permit: permit,
    })
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by key; a full bucket is forgotten, so the map holds only keys that failed
/// recently (and at most `MAX_KEYS`: when full, the fullest buckets are dropped first).
struct Buckets<K> {
    map: HashMap<K, Bucket>,
}

const MAX_KEYS: usize = 65_536;

impl<K: Hash + Eq + Clone> Buckets<K> {
    fn refill(b: &mut Bucket, now: Instant, burst: f64, per_sec: f64) {
        let dt = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + dt * per_sec).min(burst);
        b.at = now;
    }

    fn has_token(&mut self, k: &K, now: Instant, burst: f64, per_sec: f64) -> bool {
        match self.map.get_mut(k) {
            None => true,
            Some(b) => {
                Self::refill(b, now, burst, per_sec);
                b.tokens >= 1.0
            }
        }
    }

    fn take(&mut self, k: &K, now: Instant, burst: f64, per_sec: f64) {
        if self.map.len() >= MAX_KEYS && !self.map.contains_key(k) {
            for b in self.map.values_mut() {
                Self::refill(b, now, burst, per_sec);
            }
            self.map.retain(|_, b| b.tokens < burst);
            if self.map.len() >= MAX_KEYS {
                // Still full of throttled keys: forget the one with the most tokens.
                if let Some(k) = self
                    .map
                    .iter()
                    .max_by(|a, b| a.1.tokens.total_cmp(&b.1.tokens))
                    .map(|(k, _)| k.clone())
                {
                    self.map.remove(&k);
                }
            }
        }
        let b = self.map.entry(k.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        Self::refill(b, now, burst, per_sec);
        b.tokens = (b.tokens - 1.0).max(0.0);
    }
}

/// The throttle of failing peers, per source address and per certificate.
pub(super) struct Limiter {
    burst: f64,
    per_sec: f64,
    inner: Mutex<(Buckets<IpAddr>, Buckets<String>)>,
}

impl Limiter {
    pub(super) fn new(burst: u32, per_minute: u32) -> Self {
        Limiter {
            burst: f64::from(burst),
            per_sec: f64::from(per_minute) / 60.0,
            inner: Mutex::new((
                Buckets {
                    map: HashMap::new(),
                },
                Buckets {
                    map: HashMap::new(),
                },
            )),
        }
    }

    /// Whether a connection from `ip` may be handshaken.
    pub(super) fn address_allowed(&self, ip: IpAddr) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0.has_token(&ip, Instant::now(), self.burst, self.per_sec)
    }

    /// Whether a connection with this certificate (SHA-256 hex) may be served at all.
    pub(super) fn certificate_allowed(&self, cert_sha256: &str) -> bool {
        if cert_sha256.is_empty() {
            return true;
        }
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.1.has_token(
            &cert_sha256.to_string(),
            Instant::now(),
            self.burst,
            self.per_sec,
        )
    }

    /// Charges a refused or failed connection to its address and certificate.
    pub(super) fn failed(&self, ip: IpAddr, cert_sha256: &str) {
        let now = Instant::now();
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0.take(&ip, now, self.burst, self.per_sec);
        if !cert_sha256.is_empty() {
            g.1.take(&cert_sha256.to_string(), now, self.burst, self.per_sec);
        }
    }
}

/// Closes, at once, every connection whose certificate no longer acts for its entity (after a
/// reload of `clients.toml`: the entity was removed, or this certificate was removed from it).
/// Returns how many were closed.
pub(super) fn close_unaccredited(shared: &Arc<Shared>) -> usize {
    let clients = shared.clients();
    let gone: Vec<quinn::Connection> = shared
        .live
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .filter(|(id, presented, _)| {
            clients
                .resolve(presented)
                .map_or(true, |(now, _)| now != *id)
        })
        .map(|(_, _, c)| c.clone())
        .collect();
    for c in &gone {
        super::connection::close(c, nayose_wire::CloseCode::NotAccredited);
    }
    gone.len()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let mut b: Buckets<u8> = Buckets {
            map: HashMap::new(),
        };
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(b.has_token(&1, t0, 3.0, 1.0));
            b.take(&1, t0, 3.0, 1.0);
        }
        assert!(!b.has_token(&1, t0, 3.0, 1.0));
        assert!(b.has_token(&2, t0, 3.0, 1.0), "other keys are not affected");
        assert!(b.has_token(&1, t0 + Duration::from_millis(1100), 3.0, 1.0));
    }
}
