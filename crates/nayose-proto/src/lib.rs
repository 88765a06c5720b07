//! The nayose/2 protocol cores, I/O-free: the client's link run as a state machine
//! (protocol-spec/flows.md §3, [`LinkCore`]) and the server's per-request decision
//! (flows.md §5.2, [`server`]). The node crates drive them; `tests/pair.rs` runs the two
//! together in memory.
//!
//! ```text
//!   driver (tokio + quinn + files)                 LinkCore (this crate)
//!   ───────────────────────────────                ─────────────────────────────────────────
//!   poll_action(rng) ─────────────────────────────▶ Send(id, Info) / LoadCaches(K) /
//!                                                   Send(id, Evaluate(K, blinded)) / SaveOprf /
//!                                                   Send(id, FetchDelta|FetchBase) /
//!                                                   AppendPartialBase / SaveTable / Wait / Done
//!   on_response(id, frame) ───────────────────────▶ verify proof → finalize → OPRF cache;
//!   on_transit_failure(id) ───────────────────────▶ re-queue (fresh blinds, resume offset);
//!   on_caches(..) ────────────────────────────────▶ which numbers are missing, which sync
//!   on_clock(now) ────────────────────────────────▶ wall time, for messages only
//! ```
//!
//! The core makes every protocol decision (what to request, which response to accept, when to
//! restart, when a state is verified) and no I/O: the driver owns the connection, the clock and
//! the files, and only carries out the [`Action`]s. This keeps the run deterministic under a
//! seeded RNG, so it can be tested against a server core in memory.
//!
//! Invariants: a batch's outputs are used only after its DLEQ proof verified (the types of
//! `nayose-oprf` enforce it); a table state is matched only after its digest equals the one
//! stated in the Info of the same key period and epoch; a run's results never mix key periods
//! or epochs; nothing secret (numbers, blinds, OPRF outputs, label keys) appears in an error or
//! a `Debug` output.

pub mod announce;
mod client;
mod error;
pub mod jst;
pub mod server;

pub use client::{
    Action, Caches, LinkConfig, LinkCore, LinkResult, PartialBase, SyncKind, cache_key,
};
pub use error::ProtoError;
