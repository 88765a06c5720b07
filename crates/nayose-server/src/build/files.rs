//! The build's file work: the build lock, a new key period's directory, the epoch's files and
//! its publication, and pruning of what is no longer kept (the publication protocol is in the
//! parent module's documentation).

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

use nayose_table::{KeyPeriodId, LabelMasterKey, UpsertChain};

use super::now_unix;
use crate::epoch::{
    KeyPeriod, KeyPeriodMeta, Manifest, numbered_entries, published_epochs, read_current,
    read_manifest, to_toml,
};
use crate::error::ServerError;
use crate::fsutil::{
    create_dir_private, create_new_private, fsync_dir, read_secret, remove_stale_temp_files,
};
use crate::keys::{generate_oprf_key, write_label_master_key};
use crate::layout::{
    BUILD_DELTA, DataDir, KEY_PERIOD_LABEL_MASTER_KEY, KEY_PERIOD_META, OPRF_KEY, epoch_dir_name,
    parse_delta_file_name, parse_dir_name, parse_epoch_dir_name,
};
use crate::safety::{BUILD_LOCK_PATIENCE, try_lock_file};

/// Takes the data directory's build lock (`DATA_DIR/build.lock`, an exclusive lock on an open
/// file, released when the returned file is dropped or the process exits, even on SIGKILL).
/// Two builds at once could both allocate epoch n and publish two different deltas for it — two
/// labels under one versioned pad — so a second build fails. A busy lock is tried again for
/// [`BUILD_LOCK_PATIENCE`]: a process being spawned elsewhere in this program holds a copy of
/// every open file for a moment (until it execs); another build holds it far longer.
pub(super) fn lock_build(data: &DataDir) -> Result<fs::File, ServerError> {
    let path = data.build_lock();
    try_lock_file(&path, false, BUILD_LOCK_PATIENCE)?.ok_or(ServerError::BuildLocked { path })
}

/// Starts key period (greatest existing number + 1): fresh skS, a copy of the data directory's
/// K_L, metadata; written through a temporary directory and a rename.
pub(super) fn start_key_period(
    data: &DataDir,
    first_epoch: u32,
    master: &LabelMasterKey,
) -> Result<KeyPeriod, ServerError> {
    let kps = numbered_entries(&data.key_periods(), parse_dir_name)?;
    let kp_number = kps.last().copied().unwrap_or(0) + 1;
    let key = generate_oprf_key()?;
    let public_key = key.public_key().to_bytes();
    let id = KeyPeriodId::new(kp_number, &public_key);
    let meta = KeyPeriodMeta {
        format: 1,
        number: kp_number,
        key_period_id: hex::encode(id.to_bytes()),
        public_key: hex::encode(public_key),
        label_master_key_id: master.key_id().to_string(),
        first_epoch,
        created_unix: now_unix(),
    };
    let tmp = data.key_periods().join(format!(
        ".new-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        create_dir_private(&tmp)?;
        write_file_synced(&tmp.join(OPRF_KEY), key.to_bytes().as_ref())?;
        write_label_master_key(&tmp.join(KEY_PERIOD_LABEL_MASTER_KEY), master)?;
        write_file_synced(&tmp.join(KEY_PERIOD_META), to_toml(&meta)?.as_bytes())?;
        fsync_dir(&tmp)?;
        let dir = data.key_period_dir(kp_number);
        fs::rename(&tmp, &dir).map_err(ServerError::io("cannot rename into place", &dir))?;
        fsync_dir(&data.key_periods())
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    tracing::info!(key_period = %id, first_epoch, "key period started");
    KeyPeriod::load(data, kp_number)
}

/// Writes `bytes` to the new owner-only file `path` and syncs it.
pub(super) fn write_file_synced(path: &Path, bytes: &[u8]) -> Result<(), ServerError> {
    let f = create_new_private(path)?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    w.write_all(bytes)
        .map_err(ServerError::io("cannot write", path))?;
    let f = w.into_inner().map_err(|e| ServerError::Io {
        action: "cannot write",
        path: path.to_path_buf(),
        source: e.into_error(),
    })?;
    f.sync_all().map_err(ServerError::io("cannot fsync", path))
}

/// Moves the delta of the just renamed epoch `number` from its directory to `deltas/`: a hard
/// link, which fails rather than replace an existing delta file (a delta, once published, is
/// never overwritten: its upserts' labels are bound to its epoch's pad), then the epoch
/// directory's copy is removed. Each step is synced.
pub(super) fn publish_delta(data: &DataDir, number: u32) -> Result<(), ServerError> {
    let dir = data.epoch_dir(number);
    let from = dir.join(BUILD_DELTA);
    let to = data.delta_file(number);
    match fs::hard_link(&from, &to) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(ServerError::Internal(format!(
                "{} already exists; a published delta is never replaced (was another build \
                 running on this data directory?); epoch {number} is not made current",
                to.display()
            )));
        }
        Err(e) => return Err(ServerError::io("cannot link into place", &to)(e)),
    }
    fsync_dir(&data.deltas())?;
    fs::remove_file(&from).map_err(ServerError::io("cannot remove", &from))?;
    fsync_dir(&dir)
}

/// Removes `.build-*` and `.new-*` directories left by builds that did not finish, and the
/// temporary files of atomic writes whose process died before the rename (in the data
/// directory, `deltas/`, `keyperiods/*/` and `state/`; they may hold label keys and person ids,
/// which must not outlive their key period). Runs under the build lock.
pub(super) fn remove_stale_builds(data: &DataDir) -> Result<(), ServerError> {
    for (dir, prefix) in [(data.epochs(), ".build-"), (data.key_periods(), ".new-")] {
        let rd = fs::read_dir(&dir).map_err(ServerError::io("cannot list", &dir))?;
        for ent in rd {
            let ent = ent.map_err(ServerError::io("cannot list", &dir))?;
            if ent.file_name().to_string_lossy().starts_with(prefix) {
                let p = ent.path();
                tracing::warn!(path = %p.display(), "removing an unfinished build");
                fs::remove_dir_all(&p).map_err(ServerError::io("cannot remove", &p))?;
            }
        }
    }
    let mut dirs = vec![data.root().to_path_buf(), data.deltas(), data.state()];
    dirs.extend(
        numbered_entries(&data.key_periods(), parse_dir_name)?
            .into_iter()
            .map(|n| data.key_period_dir(n)),
    );
    for dir in dirs {
        for p in remove_stale_temp_files(&dir)? {
            tracing::warn!(path = %p.display(), "removed a temporary file of an unfinished write");
        }
    }
    Ok(())
}

/// Deletes epoch directories that never became current (numbers between the previous current
/// epoch and the new one: builds that failed after their rename), then published epochs older
/// than the newest `keep` (never the current one).
pub(super) fn prune_epochs(
    data: &DataDir,
    current: u32,
    previous_current: Option<u32>,
    keep: usize,
) -> Result<Vec<u32>, ServerError> {
    let mut pruned = Vec::new();
    let floor = previous_current.unwrap_or(0);
    for n in published_epochs(data)? {
        if n > floor && n != current && n < current {
            let p = data.epoch_dir(n);
            fs::remove_dir_all(&p).map_err(ServerError::io("cannot remove", &p))?;
            pruned.push(n);
        }
    }
    let all = published_epochs(data)?;
    if all.len() > keep {
        for &n in &all[..all.len() - keep] {
            if n == current {
                continue;
            }
            let p = data.epoch_dir(n);
            fs::remove_dir_all(&p).map_err(ServerError::io("cannot remove", &p))?;
            pruned.push(n);
        }
    }
    if !pruned.is_empty() {
        fsync_dir(&data.epochs())?;
    }
    pruned.sort_unstable();
    Ok(pruned)
}

/// Keeps the delta files of the last `history` epochs of the current chain; deletes every other
/// delta file (older ones, other key periods', orphans of unpublished epochs).
pub(super) fn prune_deltas(
    data: &DataDir,
    current: &Manifest,
    kp: &KeyPeriod,
    history: u32,
) -> Result<Vec<u32>, ServerError> {
    let mut keep = std::collections::BTreeSet::new();
    let mut e = current.number;
    let mut prev = current.previous_epoch;
    while let Some(p) = prev {
        if keep.len() >= history as usize {
            break;
        }
        keep.insert(e);
        if p <= kp.meta.first_epoch {
            break;
        }
        // The previous epoch's predecessor, from its delta's header.
        let path = data.delta_file(p);
        let Ok(bytes) = read_secret(&path) else {
            break;
        };
        let Ok(d) = crate::epoch::decode_delta("delta", &path, &bytes) else {
            break;
        };
        e = p;
        prev = Some(d.previous);
    }
    let mut pruned = Vec::new();
    for n in numbered_entries(&data.deltas(), parse_delta_file_name)? {
        if !keep.contains(&n) {
            let p = data.delta_file(n);
            fs::remove_file(&p).map_err(ServerError::io("cannot remove", &p))?;
            pruned.push(n);
        }
    }
    if !pruned.is_empty() {
        fsync_dir(&data.deltas())?;
    }
    Ok(pruned)
}

/// Deletes key period directories that no kept epoch uses (never the current key period).
pub(super) fn prune_key_periods(data: &DataDir, current: u64) -> Result<(), ServerError> {
    let mut used = std::collections::BTreeSet::from([current]);
    for n in published_epochs(data)? {
        if let Ok(m) = read_manifest(data, n) {
            used.insert(m.key_period);
        } else {
            // An unreadable epoch: keep every key period rather than guess.
            return Ok(());
        }
    }
    let mut removed = false;
    for n in numbered_entries(&data.key_periods(), parse_dir_name)? {
        if n < current && !used.contains(&n) {
            let p = data.key_period_dir(n);
            fs::remove_dir_all(&p).map_err(ServerError::io("cannot remove", &p))?;
            tracing::info!(
                key_period = n,
                "key period retired: its key and label key deleted"
            );
            removed = true;
        }
    }
    if removed {
        fsync_dir(&data.key_periods())?;
    }
    Ok(())
}

/// The greatest epoch number ever allocated in `data` (0 if none).
pub(super) fn last_allocated_epoch(data: &DataDir) -> Result<u32, ServerError> {
    let mut last = published_epochs(data)?.last().copied().unwrap_or(0);
    if let Some(n) = read_current(data)?.and_then(|n| parse_epoch_dir_name(&n)) {
        last = last.max(n);
    }
    if let Some(&n) = numbered_entries(&data.deltas(), parse_delta_file_name)?.last() {
        last = last.max(n);
    }
    let path = data.last_epoch();
    match fs::read_to_string(&path) {
        Ok(s) => {
            let n: u32 = s.trim().parse().map_err(|_| ServerError::CorruptEpoch {
                epoch: "last-epoch".into(),
                path: path.clone(),
                reason: "does not hold an epoch number".into(),
            })?;
            last = last.max(n);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ServerError::Io {
                action: "cannot read",
                path,
                source: e,
            });
        }
    }
    Ok(last)
}

/// The upsert chain the manifest of the previous epoch states.
pub(super) fn previous_chain(m: &Manifest) -> Result<UpsertChain, ServerError> {
    let mut c = [0u8; 32];
    if hex::decode_to_slice(&m.upsert_chain, &mut c).is_err() {
        return Err(ServerError::CorruptEpoch {
            epoch: epoch_dir_name(u64::from(m.number)),
            path: std::path::PathBuf::from("manifest.toml"),
            reason: "upsert_chain is not 64 hex digits".into(),
        });
    }
    Ok(UpsertChain(c))
}

/// The manifest and key period of epoch `number`, which a build continues. Its table and
/// index are read later, in one streaming pass each, and checked against the manifest's
/// SHA-256 before anything built from them is published (`previous.rs`).
pub(super) fn open_previous(
    data: &DataDir,
    number: u32,
) -> Result<(Manifest, KeyPeriod), ServerError> {
    let manifest = read_manifest(data, number)?;
    let kp = KeyPeriod::load(data, manifest.key_period)?;
    Ok((manifest, kp))
}
