//! Operator metrics: counters per client, reported as a status line per interval.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Counters of one client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCounters {
    /// Requests received (every stream that carried a request).
    pub requests: u64,
    /// Blinded elements evaluated.
    pub evaluations: u64,
    /// Table entries sent.
    pub entries: u64,
    /// Bytes received on request streams.
    pub bytes_in: u64,
    /// Bytes sent on request streams.
    pub bytes_out: u64,
    /// Requests answered with an Error, and connections refused.
    pub errors: u64,
}

impl ClientCounters {
    fn add(&mut self, o: &ClientCounters) {
        self.requests += o.requests;
        self.evaluations += o.evaluations;
        self.entries += o.entries;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.errors += o.errors;
    }
}

/// Counters per client id since the server started.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    total: Mutex<BTreeMap<String, ClientCounters>>,
    interval: Mutex<BTreeMap<String, ClientCounters>>,
}

impl Stats {
    pub(crate) fn record(&self, client: &str, c: ClientCounters) {
        for m in [&self.total, &self.interval] {
            let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
            m.entry(client.to_string()).or_default().add(&c);
        }
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<String, ClientCounters> {
        self.total.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The counters since the previous call (and resets them).
    pub(crate) fn take_interval(&self) -> BTreeMap<String, ClientCounters> {
        std::mem::take(&mut *self.interval.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
