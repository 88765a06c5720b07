//! Base and delta downloads: the frames of a FetchBase (BaseChunks, BaseEnd) and of a
//! FetchDelta (DeltaChunks of each kept epoch, DeltaEnd), and the base download slot.

use std::sync::Arc;
use std::time::Duration;

use nayose_proto::server::Current;
use nayose_table::ClientId;
use nayose_wire::{
    BaseChunk, ChunkList, DeltaChunk, EncryptedLabel, GapBytes, KeyPeriodId as WireKeyPeriodId,
    MAX_ENTRIES_PER_CHUNK, Response,
};
use tracing::error;

use crate::epoch::Epoch;
use crate::error::ServerError;

use super::Shared;
use super::connection::ConnCtx;
use super::frames::{WriteFail, write_frame};

/// What to stream after the audit record.
pub(super) enum Stream {
    /// A base of the snapshot's epoch from `offset`.
    Base {
        epoch: Arc<Epoch>,
        cur: Current,
        offset: u64,
        _slot: BaseSlot,
    },
    /// The deltas of the snapshot's chain after `from`.
    Delta {
        epoch: Arc<Epoch>,
        cur: Current,
        from: u32,
    },
}

/// A base download in progress (released when dropped).
pub(super) struct BaseSlot {
    pub(super) shared: Arc<Shared>,
    pub(super) client: ClientId,
}

impl Drop for BaseSlot {
    fn drop(&mut self) {
        let mut b = self.shared.bases.lock().unwrap_or_else(|p| p.into_inner());
        b.1 = b.1.saturating_sub(1);
        if let Some(n) = b.0.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                b.0.remove(&self.client);
            }
        }
    }
}

/// Sends the BaseChunks from `offset` and BaseEnd; returns (entries sent, how the stream
/// ended). Every frame must be taken by the peer within `write_timeout_ms`.
pub(super) async fn stream_base(
    shared: &Arc<Shared>,
    ctx: &ConnCtx,
    send: &mut quinn::SendStream,
    epoch: &Arc<Epoch>,
    cur: &Current,
    offset: u64,
    bytes_out: &mut u64,
) -> (u64, Result<(), WriteFail>) {
    let deadline = Duration::from_millis(shared.s.cfg.write_timeout_ms);
    let chunk = u64::from(shared.s.cfg.fetch_chunk_entries).min(MAX_ENTRIES_PER_CHUNK as u64);
    let mut at = offset;
    while at < cur.entries {
        let end = (at + chunk).min(cur.entries);
        let e = epoch.clone();
        let client = ctx.client.clone();
        let block =
            tokio::task::spawn_blocking(move || e.base_block(at as usize..end as usize, &client))
                .await;
        let Ok(Ok(block)) = block else {
            return (at - offset, Err(WriteFail::Gone));
        };
        let labels = block
            .labels
            .chunks_exact(4)
            .map(|l| EncryptedLabel([l[0], l[1], l[2], l[3]]))
            .collect();
        let (Ok(labels), Ok(gaps)) = (ChunkList::new(labels), GapBytes::new(block.gaps)) else {
            return (at - offset, Err(WriteFail::Gone));
        };
        let r = Response::BaseChunk(BaseChunk {
            key_period: cur.key_period,
            epoch: cur.epoch,
            offset: at,
            total: cur.entries,
            rice: block.rice,
            first_tag: nayose_wire::Tag(block.first.0),
            gaps,
            labels,
        });
        if let Err(e) = write_frame(send, &r, bytes_out, deadline).await {
            // A chunk whose write started counts as sent: the client may hold most of it.
            return (end - offset, Err(e));
        }
        at = end;
    }
    let end = write_frame(
        send,
        &nayose_proto::server::base_end(cur),
        bytes_out,
        deadline,
    )
    .await;
    (cur.entries - offset, end)
}

/// Sends the DeltaChunks of every kept epoch after `from` and DeltaEnd; returns (items sent,
/// how the stream ended), with the same write deadline per frame as [`stream_base`].
pub(super) async fn stream_delta(
    shared: &Arc<Shared>,
    ctx: &ConnCtx,
    send: &mut quinn::SendStream,
    epoch: &Arc<Epoch>,
    cur: &Current,
    from: u32,
    bytes_out: &mut u64,
) -> (u64, Result<(), WriteFail>) {
    let deadline = Duration::from_millis(shared.s.cfg.write_timeout_ms);
    let mut sent = 0u64;
    let count = epoch.deltas_after(from).len();
    for i in 0..count {
        let e = epoch.clone();
        let client = ctx.client.clone();
        // Read and encrypt one epoch's delta off the async threads.
        let built = tokio::task::spawn_blocking(move || {
            let h = &e.deltas_after(from)[i];
            let d = h.read()?;
            let mut frames = Vec::new();
            for (r, u) in nayose_proto::server::delta_chunks(
                d.removed.len(),
                d.upserts.len(),
                MAX_ENTRIES_PER_CHUNK,
            ) {
                let removed: Vec<nayose_wire::Tag> =
                    d.removed[r].iter().map(|t| nayose_wire::Tag(t.0)).collect();
                let upserts = e.delta_upserts(&d, u, &client);
                let items = (removed.len() + upserts.len()) as u64;
                let chunk = DeltaChunk {
                    key_period: WireKeyPeriodId(e.key_period().to_bytes()),
                    epoch: d.epoch,
                    removed: ChunkList::new(removed)
                        .map_err(|e| ServerError::Internal(e.to_string()))?,
                    upserts: ChunkList::new(upserts)
                        .map_err(|e| ServerError::Internal(e.to_string()))?,
                };
                frames.push((Response::DeltaChunk(chunk), items));
            }
            Ok::<_, ServerError>(frames)
        })
        .await;
        let frames = match built {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                error!("cannot serve a delta: {e}");
                return (sent, Err(WriteFail::Gone));
            }
            Err(e) => {
                error!("delta task failed: {e}");
                return (sent, Err(WriteFail::Gone));
            }
        };
        for (f, items) in frames {
            if let Err(e) = write_frame(send, &f, bytes_out, deadline).await {
                return (sent + items, Err(e));
            }
            sent += items;
        }
    }
    let end = write_frame(
        send,
        &nayose_proto::server::delta_end(cur),
        bytes_out,
        deadline,
    )
    .await;
    (sent, end)
}
