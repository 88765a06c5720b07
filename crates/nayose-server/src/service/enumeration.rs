//! The enumeration controls an operator sees (issue 12 item 4, security.md §6.1): each
//! entity's totals of evaluated elements in the key period and in the rolling window, a
//! warning when its key-period total passes its `declared_holdings` (in the log when it
//! happens, and in every status line while it lasts), next to the refusal at `hard_cap` that
//! the decision makes ([`nayose_proto::server::evaluate_refusal`]).
//!
//! Invariant: the totals noted here are those after a charge that was made (an answer with
//! evaluated elements); a refused or refunded batch is never noted. They are this replica's
//! latest view: with PostgreSQL another replica's charges show up with the entity's next
//! charge here.

use std::collections::HashMap;
use std::sync::Mutex;

use nayose_proto::server::Totals;
use nayose_table::ClientId;
use tracing::{info, warn};

use super::Shared;

/// The latest totals of each entity that was charged, with their key period.
#[derive(Debug, Default)]
pub(super) struct EntityTotals(Mutex<HashMap<ClientId, (String, Totals)>>);

/// Whether `n` more elements take a total from at most `declared` to beyond it.
pub(super) fn passes(before: u64, n: u64, declared: u64) -> bool {
    before <= declared && before.saturating_add(n) > declared
}

impl EntityTotals {
    /// Notes a charge of `n` elements in `key_period` for `entity`, whose totals were `before`;
    /// warns once, when the key-period total passes `declared_holdings`.
    pub(super) fn charged(
        &self,
        entity: &ClientId,
        key_period: &str,
        before: Totals,
        n: u64,
        declared_holdings: Option<u64>,
    ) {
        let after = Totals {
            key_period: before.key_period.saturating_add(n),
            window: before.window.saturating_add(n),
            window_days: before.window_days,
        };
        if let Some(h) = declared_holdings
            && passes(before.key_period, n, h)
        {
            warn!(
                entity = %entity,
                evaluations_key_period = after.key_period,
                declared_holdings = h,
                key_period = key_period,
                "entity passed its declared holdings: it has now had more numbers evaluated in \
                 this key period than it declared it holds (a lost OPRF cache, grown holdings, or \
                 enumeration); review its use (security.md §6.1)"
            );
        }
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(entity.clone(), (key_period.to_owned(), after));
    }
}

/// The status lines of the enumeration controls: each entity charged in the current key
/// period, with its totals, and a warning for each one over its declared holdings.
pub(super) fn status_lines(shared: &Shared, key_period: &str) {
    let clients = shared.clients();
    let totals = shared
        .entity_totals
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut entities: Vec<_> = totals.into_iter().collect();
    entities.sort_by(|a, b| a.0.cmp(&b.0));
    for (entity, (kp, t)) in entities {
        if kp != key_period {
            continue;
        }
        let Some(limits) = clients.limits_of(&entity) else {
            continue;
        };
        let declared = limits.declared_holdings;
        if let Some(h) = declared
            && t.key_period > h
        {
            warn!(
                entity = %entity,
                evaluations_key_period = t.key_period,
                evaluations_window = t.window,
                window_days = t.window_days,
                declared_holdings = h,
                hard_cap = ?limits.hard_cap,
                "status: entity over its declared holdings"
            );
        } else {
            info!(
                entity = %entity,
                evaluations_key_period = t.key_period,
                evaluations_window = t.window,
                window_days = t.window_days,
                declared_holdings = ?declared,
                hard_cap = ?limits.hard_cap,
                "status per entity (evaluations)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passing_is_noted_once_at_the_crossing() {
        assert!(passes(9, 2, 10));
        assert!(passes(10, 1, 10));
        assert!(!passes(8, 2, 10), "reaching it is not passing it");
        assert!(!passes(11, 5, 10), "already past: the status lines say so");
    }
}
