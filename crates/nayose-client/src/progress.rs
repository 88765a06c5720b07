//! Progress reporting: a callback trait the CLI implements (e.g. with indicatif bars on a
//! terminal); the library itself never writes to the terminal.
//!
//! Invariant: callbacks carry counts and phase names only, never a number, a tag or a label.

use std::fmt;

use serde::Serialize;

/// The phases of a link run, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Reading and checking the input file, deduplicating numbers.
    Read,
    /// Connecting (QUIC + mutual TLS) and asking for the epoch (Info).
    Connect,
    /// Blinding, Evaluate round trips, proof verification, finalization.
    Evaluate,
    /// Retrieving table entries (download, cache, or prefix ranges) and matching them.
    Fetch,
    /// Writing the output file.
    Write,
}

impl Phase {
    /// Every phase, in run order.
    pub const ALL: [Phase; 5] = [
        Phase::Read,
        Phase::Connect,
        Phase::Evaluate,
        Phase::Fetch,
        Phase::Write,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Read => "read",
            Phase::Connect => "connect",
            Phase::Evaluate => "evaluate",
            Phase::Fetch => "fetch",
            Phase::Write => "write",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What happened during a run, for a progress display or a log. All methods have empty
/// defaults; implement the ones you show. Called from the run's tasks, so `Send + Sync`.
pub trait Progress: Send + Sync {
    /// A phase starts; `total` is its unit count when known (rows, numbers, table entries,
    /// ranges).
    fn start(&self, phase: Phase, total: Option<u64>) {
        let _ = (phase, total);
    }
    /// A phase starts whose progress is counted in bytes, `total` of them (the held file's
    /// size while it is read). By default a [`Progress::start`] with that total.
    fn start_bytes(&self, phase: Phase, total: u64) {
        self.start(phase, Some(total));
    }
    /// `n` more units (or bytes) of `phase` are done.
    fn advance(&self, phase: Phase, n: u64) {
        let _ = (phase, n);
    }
    /// A phase ended.
    fn finish(&self, phase: Phase) {
        let _ = phase;
    }
    /// Something worth telling the user (a reconnect, an epoch restart, a cache decision).
    fn note(&self, message: &str) {
        let _ = message;
    }
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
