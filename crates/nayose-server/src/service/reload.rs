//! Pickup without restart: the epoch watcher (a new `current` epoch or key period) and the
//! reload of `clients.toml`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::AccreditedClients;
use crate::epoch::{Epoch, read_current};
use crate::layout::parse_epoch_dir_name;

use super::Shared;

pub(super) async fn epoch_watcher(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_millis(shared.s.cfg.epoch_poll_ms);
    let mut failed: Option<String> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        reload_clients(&shared);
        // Statements signed after the epoch went live are picked up here.
        shared
            .announcements
            .refresh(&shared.s.data, &shared.epoch());
        let name = match read_current(&shared.s.data) {
            Ok(Some(n)) => n,
            Ok(None) => continue,
            Err(e) => {
                warn!("cannot read the current epoch pointer: {e}");
                continue;
            }
        };
        let serving = shared.epoch();
        if name == serving.dir_name() || failed.as_deref() == Some(name.as_str()) {
            continue;
        }
        // Epochs only move forward: a `current` rolled back to an older epoch (than the one
        // served now, or than any served before) is refused before anything is loaded.
        let number = parse_epoch_dir_name(&name);
        let greatest = shared
            .served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .greatest();
        if number.is_none_or(|n| n < serving.number() || n < greatest) {
            error!(
                current = %name,
                serving = serving.number(),
                greatest_served = greatest,
                "`current` names an epoch older than the one being served (rolled back?); epochs \
                 only move forward: still serving epoch {}. Point `current` at epoch {} or newer",
                serving.number(),
                serving.number().max(greatest)
            );
            failed = Some(name);
            continue;
        }
        drop(serving);
        let data = shared.s.data.clone();
        let history = shared.s.cfg.delta_history;
        let n2 = name.clone();
        let loaded = tokio::task::spawn_blocking(move || Epoch::load(&data, &n2, history)).await;
        match loaded {
            Ok(Ok(e)) => {
                let recorded = shared
                    .served
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .advance(e.number());
                if let Err(err) = recorded {
                    error!(
                        "the published epoch {name} is not served; still serving the previous \
                         one: {err}"
                    );
                    failed = Some(name);
                    continue;
                }
                let old = shared.epoch();
                if old.key_period() != e.key_period() {
                    info!(old = %old.key_period(), new = %e.key_period(), "new key period is now current");
                }
                info!(old = old.number(), new = e.number(), key_period = %e.key_period(), entries = e.len(), oldest_delta_base = e.oldest_delta_base(), "new epoch is now current");
                drop(old);
                shared.install_epoch(e);
                shared
                    .announcements
                    .refresh(&shared.s.data, &shared.epoch());
                failed = None;
            }
            Ok(Err(e)) => {
                error!(
                    "the published epoch {name} cannot be loaded; still serving the previous one: {e}"
                );
                failed = Some(name);
            }
            Err(e) => error!("epoch loading task failed: {e}"),
        }
    }
}

/// Modification time and length of a file, to notice that it changed.
pub(super) fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Reloads `clients.toml` when it changed since it was last loaded. A file that does not parse
/// is reported and the previous list stays in force. The connections of an id no longer listed
/// are closed at once with `CloseCode::NotAccredited` (their running requests end with the
/// connection, freeing their slots); a new quota applies from the client's next request on.
pub(super) fn reload_clients(shared: &Arc<Shared>) {
    let stamp = file_stamp(&shared.clients_path);
    let mut last = shared
        .clients_stamp
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if stamp.is_none() || stamp == *last {
        return;
    }
    match AccreditedClients::load(&shared.clients_path) {
        Ok(c) => {
            info!(
                path = %shared.clients_path.display(),
                clients = c.len(),
                "accredited clients reloaded"
            );
            *shared.clients.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c);
            *last = stamp;
            drop(last);
            let closed = super::limits::close_unaccredited(shared);
            if closed > 0 {
                info!(
                    connections = closed,
                    "closed the connections of clients no longer accredited"
                );
            }
        }
        Err(e) => {
            error!("clients.toml changed but cannot be loaded; keeping the previous list: {e}");
            *last = stamp;
        }
    }
}
