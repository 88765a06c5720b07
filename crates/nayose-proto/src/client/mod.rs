//! The client's link run (protocol-spec/flows.md §3): Info → load caches → evaluate the numbers
//! missing from the OPRF cache → sync (current / deltas / base) → verify the digest → match.
//!
//! Invariants (besides the crate's): the label domain is the entity the server names in Info
//! (wire.md §2.3), the same in every Info of the run, and the caches are those of that entity;
//! every request carries the key period of the last Info; a
//! response to a request that a restart made stale is ignored; a batch is re-blinded with fresh
//! blinds whenever it is sent again; a base is appended only at its own offset with tags strictly
//! ascending; a delta result stays in memory until verified; at most one base download follows a
//! digest mismatch of a cached or delta-built state.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::time::Duration;

use nayose_oprf::{ClientBatch, Mode, Output, PublicKey};
use nayose_table::{
    ClientId, ClientTable, DST_CACHE_KEY, DeltaCounts, EncryptedLabel, EntryBlock, KeyPeriodId,
    LABEL_LEN, Matches, TableDigest, TableError, Tag, UpsertChain, match_outputs,
};
use nayose_wire::{
    ElementBatch, ErrorCode, ErrorResponse, EvaluateRequest, FetchBaseRequest, FetchDeltaRequest,
    InfoResponse, KeyPeriodId as WireKeyPeriod, Request, Response,
};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha512};
use zeroize::Zeroize;

use crate::announce::{AnnouncementKey, Coverage, check_info};
use crate::error::ProtoError;

mod flow;
use flow::apply_open;
mod types;

pub use types::{Action, Caches, LinkConfig, LinkResult, PartialBase, SyncKind, cache_key};

/// One epoch's delta being collected: its epoch, removed tags and upserts.
type OpenDelta = (u32, Vec<Tag>, Vec<(Tag, EncryptedLabel)>);

/// Where a delta download is.
struct DeltaSync {
    id: u64,
    from: u32,
    state: ClientTable,
    /// The epoch being collected, its removed tags and upserts.
    open: Option<OpenDelta>,
    counts: DeltaCounts,
}

/// Where a base download is.
struct BaseSync {
    id: u64,
    partial: PartialBase,
    resumed_from: u64,
}

enum Phase {
    NeedInfo,
    AwaitInfo(u64),
    AwaitCaches,
    Evaluating,
    StartSync,
    Delta(DeltaSync),
    Base(BaseSync),
    /// The table is verified and saved; matching happens on the next poll, after the driver
    /// has closed the connection, so nothing the server can time depends on the match.
    Matching(Box<(ClientTable, SyncKind, DeltaCounts, InfoResponse)>),
    Finished,
}

/// The client's link run (see the module documentation).
pub struct LinkCore {
    cfg: LinkConfig,
    /// The entity of the first Info: the label domain.
    client: Option<ClientId>,
    inputs: Vec<Vec<u8>>,
    outputs: Vec<Option<Output>>,
    key_period: Option<KeyPeriodId>,
    public_key: Option<PublicKey>,
    info: Option<InfoResponse>,
    phase: Phase,
    next_id: u64,
    actions: VecDeque<Action>,
    queue: VecDeque<Vec<usize>>,
    in_flight: HashMap<u64, (Vec<usize>, ClientBatch)>,
    batch: usize,
    evaluated: u64,
    from_cache: u64,
    table: Option<ClientTable>,
    partial: Option<PartialBase>,
    base_after_mismatch: bool,
    /// A resumed base failed the digest once; the next failure is final.
    base_retried: bool,
    /// An error to return once the queued actions (e.g. discarding a bad cache) are done.
    failure: Option<ProtoError>,
    key_period_restarts: u32,
    syncs: u32,
    offset_retries: u32,
    last_sync: Option<SyncKind>,
    last_counts: DeltaCounts,
    live: HashSet<u64>,
    /// The wall-clock time the driver last gave ([`LinkCore::on_clock`]): messages, and the
    /// validity of announcements.
    now_unix_secs: Option<i64>,
    /// Announcement keys the client trusts; when not empty, every Info must be covered.
    trusted: Vec<AnnouncementKey>,
    /// The coverage of the last accepted Info.
    coverage: Coverage,
}

impl fmt::Debug for LinkCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkCore")
            .field("numbers", &self.inputs.len())
            .field("evaluated", &self.evaluated)
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl Drop for LinkCore {
    fn drop(&mut self) {
        self.inputs.zeroize();
    }
}

fn violation(msg: impl Into<String>) -> ProtoError {
    ProtoError::Protocol(msg.into())
}

fn server_error(request: &'static str, e: &ErrorResponse) -> ProtoError {
    ProtoError::Server {
        request,
        code: e.code.to_string(),
        message: e.message.as_str().to_owned(),
    }
}

fn wire_kp(k: KeyPeriodId) -> WireKeyPeriod {
    WireKeyPeriod(k.to_bytes())
}

impl LinkCore {
    /// A run over `inputs` (the canonical encodings of the client's distinct numbers; index =
    /// number index). The label domain is the entity the server names in its Info.
    pub fn new(inputs: Vec<Vec<u8>>, cfg: LinkConfig) -> Self {
        let n = inputs.len();
        LinkCore {
            cfg,
            client: None,
            inputs,
            outputs: (0..n).map(|_| None).collect(),
            key_period: None,
            public_key: None,
            info: None,
            phase: Phase::NeedInfo,
            next_id: 0,
            actions: VecDeque::new(),
            queue: VecDeque::new(),
            in_flight: HashMap::new(),
            batch: cfg.batch_size.clamp(1, 4096) as usize,
            evaluated: 0,
            from_cache: 0,
            table: None,
            partial: None,
            base_after_mismatch: false,
            base_retried: false,
            failure: None,
            key_period_restarts: 0,
            syncs: 0,
            offset_retries: 0,
            last_sync: None,
            last_counts: DeltaCounts::default(),
            live: HashSet::new(),
            now_unix_secs: None,
            trusted: Vec::new(),
            coverage: Coverage::Unchecked,
        }
    }

    /// Requires every Info of the run to be covered by statements signed with one of `keys`
    /// (protocol-spec/announcements.md §5); an Info that is not is refused with
    /// [`ProtoError::Announcement`] before anything of it is used. With no key (the default)
    /// nothing is checked. Give the clock with [`LinkCore::on_clock`] before the Info arrives.
    pub fn trust_announcement_keys(&mut self, keys: Vec<AnnouncementKey>) {
        self.trusted = keys;
    }

    fn send(&mut self, request: Request) -> Action {
        self.next_id += 1;
        self.live.insert(self.next_id);
        Action::Send {
            id: self.next_id,
            request,
        }
    }

    fn kp(&self) -> Result<KeyPeriodId, ProtoError> {
        self.key_period
            .ok_or_else(|| violation("a response arrived before Info"))
    }

    fn info(&self) -> Result<&InfoResponse, ProtoError> {
        self.info
            .as_ref()
            .ok_or_else(|| violation("a response arrived before Info"))
    }

    /// The next thing for the driver to do. `rng` blinds Evaluate batches.
    pub fn poll_action<R: RngCore + CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
    ) -> Result<Action, ProtoError> {
        if let Some(a) = self.actions.pop_front() {
            return Ok(a);
        }
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        match &self.phase {
            Phase::NeedInfo => {
                let a = self.send(Request::Info);
                if let Action::Send { id, .. } = &a {
                    self.phase = Phase::AwaitInfo(*id);
                }
                Ok(a)
            }
            Phase::Evaluating => self.poll_evaluate(rng),
            Phase::StartSync => self.start_sync(),
            Phase::Matching(_) => self.finish_matching(),
            Phase::Finished => Ok(Action::Wait),
            Phase::AwaitInfo(_) | Phase::AwaitCaches | Phase::Delta(_) | Phase::Base(_) => {
                Ok(Action::Wait)
            }
        }
    }

    fn poll_evaluate<R: RngCore + CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
    ) -> Result<Action, ProtoError> {
        if self.queue.is_empty() && self.in_flight.is_empty() {
            self.phase = Phase::StartSync;
            return self.start_sync();
        }
        if self.in_flight.len() >= self.cfg.window.max(1) {
            return Ok(Action::Wait);
        }
        let Some(indices) = self.queue.pop_front() else {
            return Ok(Action::Wait);
        };
        let refs: Vec<&[u8]> = indices.iter().map(|&i| self.inputs[i].as_slice()).collect();
        let batch = ClientBatch::blind(Mode::Voprf, &refs, rng)
            .map_err(|e| violation(format!("blinding failed: {e}")))?;
        let elements = ElementBatch::from_arrays(batch.blinded_elements())
            .map_err(|e| violation(format!("batch encoding failed: {e}")))?;
        let kp = self.kp()?;
        let a = self.send(Request::Evaluate(EvaluateRequest {
            key_period: wire_kp(kp),
            elements,
        }));
        if let Action::Send { id, .. } = &a {
            self.in_flight.insert(*id, (indices, batch));
        }
        Ok(a)
    }

    /// Units of work left in the current step, when known (for progress bars): numbers still
    /// to evaluate while evaluating, entries still to download in a base download; `None`
    /// otherwise (a delta's size is not known in advance).
    pub fn work_remaining(&self) -> Option<u64> {
        match &self.phase {
            Phase::Evaluating => Some(
                self.queue
                    .iter()
                    .map(Vec::len)
                    .chain(self.in_flight.values().map(|(i, _)| i.len()))
                    .sum::<usize>() as u64,
            ),
            Phase::Base(b) => self
                .info
                .as_ref()
                .map(|i| i.table_entries.saturating_sub(b.partial.len())),
            _ => None,
        }
    }

    /// The wall-clock time (seconds since the UNIX epoch, UTC), given by the driver: the core
    /// reads no clock. It is used in messages (the JST time at which the daily quota resets;
    /// without it they say how long until then) and to check the validity of announcements,
    /// which needs it before each Info arrives when announcement keys are trusted.
    pub fn on_clock(&mut self, now_unix_secs: i64) {
        self.now_unix_secs = Some(now_unix_secs);
    }

    /// The driver loaded the caches asked for by [`Action::LoadCaches`].
    pub fn on_caches(&mut self, caches: Caches) -> Result<(), ProtoError> {
        if !matches!(self.phase, Phase::AwaitCaches) {
            return Err(violation("caches delivered when none were asked for"));
        }
        let kp = self.kp()?;
        let info = self.info()?.clone();
        let mut missing = Vec::new();
        let mut oprf = caches.oprf;
        for i in 0..self.inputs.len() {
            match oprf.remove(&cache_key(kp, &self.inputs[i])) {
                Some(o) => {
                    self.outputs[i] = Some(o);
                    self.from_cache += 1;
                }
                None => missing.push(i),
            }
        }
        self.table = caches.table.filter(|t| t.key_period() == kp);
        // A partial base from disk is sound by construction (PartialBase::new decoded it); one
        // of another key period is discarded.
        let sound = |p: &PartialBase| p.key_period == kp;
        match caches.partial {
            Some(p) if sound(&p) => self.partial = Some(p),
            Some(_) => self
                .actions
                .push_back(Action::DiscardPartialBase { key_period: kp }),
            None => {}
        }
        let need = missing.len() as u64;
        if need > info.quota_left_today.min(info.quota_left_key_period) {
            return Err(ProtoError::Quota {
                need,
                today: info.quota_left_today,
                period: info.quota_left_key_period,
                retry: if need <= info.quota_left_key_period {
                    let wait = crate::jst::duration(u64::from(info.quota_reset_secs));
                    match self.now_unix_secs {
                        Some(now) => format!(
                            "; the daily quota resets at {} (in {wait})",
                            crate::jst::clock(now + i64::from(info.quota_reset_secs))
                        ),
                        None => format!("; the daily quota resets in {wait}"),
                    }
                } else {
                    String::new()
                },
            });
        }
        self.batch = self.batch.min(info.max_batch as usize).max(1);
        self.queue = missing.chunks(self.batch).map(<[usize]>::to_vec).collect();
        self.phase = Phase::Evaluating;
        Ok(())
    }

    /// A request's stream failed in transit (connection lost, stream reset, FIN without a final
    /// frame). Its work is re-queued.
    pub fn on_transit_failure(&mut self, id: u64) {
        if !self.live.remove(&id) {
            return;
        }
        if let Some((indices, _batch)) = self.in_flight.remove(&id) {
            self.queue.push_front(indices);
            return;
        }
        match &mut self.phase {
            Phase::AwaitInfo(i) if *i == id => self.phase = Phase::NeedInfo,
            Phase::Base(b) if b.id == id => {
                let Phase::Base(b) = std::mem::replace(&mut self.phase, Phase::StartSync) else {
                    unreachable!("matched above")
                };
                self.base_request(b.partial, b.resumed_from);
            }
            Phase::Delta(d) if d.id == id => {
                // Start the delta over from the last whole epoch applied (a consistent state;
                // the digest still decides at the end). A half-received epoch is dropped.
                let Phase::Delta(d) = std::mem::replace(&mut self.phase, Phase::StartSync) else {
                    unreachable!("matched above")
                };
                self.table = Some(d.state);
                self.syncs = self.syncs.saturating_sub(1);
            }
            _ => {}
        }
    }

    fn base_request(&mut self, partial: PartialBase, resumed_from: u64) {
        let req = Request::FetchBase(FetchBaseRequest {
            key_period: wire_kp(partial.key_period),
            epoch: partial.epoch,
            offset: partial.len(),
        });
        let a = self.send(req);
        if let Action::Send { id, .. } = &a {
            self.phase = Phase::Base(BaseSync {
                id: *id,
                partial,
                resumed_from,
            });
        }
        self.actions.push_back(a);
    }

    /// One response frame of request `id`.
    pub fn on_response(&mut self, id: u64, response: Response) -> Result<(), ProtoError> {
        if !self.live.contains(&id) {
            return Ok(()); // a request made stale by a restart
        }
        if response.is_final() {
            self.live.remove(&id);
        }
        if let Response::Error(e) = &response {
            return self.on_error(id, e);
        }
        if let (Some(named), Some(kp)) = (response.key_period(), self.key_period)
            && !matches!(response, Response::Info(_))
            && named.0 != kp.to_bytes()
        {
            return Err(violation(format!(
                "{} names another key period than its request",
                response.name()
            )));
        }
        match response {
            Response::Info(info) => self.on_info(id, info),
            Response::Evaluated(r) => {
                let (indices, batch) = self
                    .in_flight
                    .remove(&id)
                    .ok_or_else(|| violation("Evaluated answers no Evaluate request"))?;
                if r.elements.len() != indices.len() {
                    return Err(violation(format!(
                        "Evaluated has {} elements for a batch of {}",
                        r.elements.len(),
                        indices.len()
                    )));
                }
                let pk = self
                    .public_key
                    .as_ref()
                    .ok_or_else(|| violation("no key"))?;
                let verified = batch
                    .verify(pk, &r.elements.to_arrays(), &r.proof.0)
                    .map_err(|_| ProtoError::ProofInvalid)?;
                let outs = verified.finalize();
                let kp = self.kp()?;
                let mut save = Vec::with_capacity(outs.len());
                for (&i, o) in indices.iter().zip(outs) {
                    save.push((
                        cache_key(kp, &self.inputs[i]),
                        Output::from_bytes(*o.as_bytes()),
                    ));
                    self.outputs[i] = Some(o);
                }
                self.evaluated += indices.len() as u64;
                self.actions.push_back(Action::SaveOprf {
                    key_period: kp,
                    entries: save,
                });
                Ok(())
            }
            Response::BaseChunk(c) => {
                let info_entries = self.info()?.table_entries;
                let Phase::Base(b) = &mut self.phase else {
                    return Err(violation("BaseChunk outside a base download"));
                };
                if b.id != id || c.epoch != b.partial.epoch {
                    return Err(violation("BaseChunk for another epoch or request"));
                }
                if c.offset != b.partial.len() || c.total != info_entries {
                    return Err(violation(format!(
                        "BaseChunk at offset {} (expected {}) of {} entries (Info said {})",
                        c.offset,
                        b.partial.len(),
                        c.total,
                        info_entries
                    )));
                }
                let mut labels = Vec::with_capacity(c.labels.len() * LABEL_LEN);
                for l in c.labels.as_slice() {
                    labels.extend_from_slice(&l.0);
                }
                let block = EntryBlock {
                    count: c.labels.len() as u32,
                    rice: c.rice,
                    first: Tag(c.first_tag.0),
                    gaps: c.gaps.into_vec(),
                    labels,
                };
                let offset = b.partial.len();
                let mut tags = Vec::new();
                b.partial
                    .push(block.clone(), &mut tags)
                    .map_err(|e| violation(format!("BaseChunk: {e}")))?;
                let (key_period, epoch) = (b.partial.key_period, b.partial.epoch);
                self.actions.push_back(Action::AppendPartialBase {
                    key_period,
                    epoch,
                    offset,
                    block,
                });
                Ok(())
            }
            Response::BaseEnd(end) => {
                let chain = UpsertChain(self.info()?.upsert_chain.0);
                let Phase::Base(b) = std::mem::replace(&mut self.phase, Phase::Finished) else {
                    return Err(violation("BaseEnd outside a base download"));
                };
                if end.epoch != b.partial.epoch || end.total != b.partial.len() {
                    return Err(violation("BaseEnd does not match the chunks received"));
                }
                let epoch = b.partial.epoch;
                let table =
                    ClientTable::from_base(b.partial.key_period, epoch, chain, b.partial.blocks)
                        .map_err(|e| violation(e.to_string()))?;
                self.partial = None;
                self.verify(
                    table,
                    SyncKind::Base {
                        epoch,
                        resumed_from: b.resumed_from,
                    },
                    DeltaCounts::default(),
                )
            }
            Response::DeltaChunk(c) => {
                let Phase::Delta(d) = &mut self.phase else {
                    return Err(violation("DeltaChunk outside a delta download"));
                };
                let removed: Vec<Tag> = c.removed.as_slice().iter().map(|t| Tag(t.0)).collect();
                let upserts: Vec<(Tag, EncryptedLabel)> = c
                    .upserts
                    .as_slice()
                    .iter()
                    .map(|u| (Tag(u.tag.0), EncryptedLabel(u.label.0)))
                    .collect();
                match &mut d.open {
                    Some((e, r, u)) if *e == c.epoch => {
                        if !u.is_empty() && !removed.is_empty() {
                            return Err(violation("removed tags after upserts in one epoch"));
                        }
                        r.extend(removed);
                        u.extend(upserts);
                    }
                    _ => {
                        if c.epoch <= d.state.epoch()
                            || d.open.as_ref().is_some_and(|(e, _, _)| c.epoch < *e)
                        {
                            return Err(violation("DeltaChunk epochs do not ascend"));
                        }
                        if apply_open(d).is_err() {
                            return self.delta_failed();
                        }
                        let Phase::Delta(d) = &mut self.phase else {
                            unreachable!("still in the delta phase")
                        };
                        d.open = Some((c.epoch, removed, upserts));
                    }
                }
                Ok(())
            }
            Response::DeltaEnd(end) => {
                let Phase::Delta(mut d) = std::mem::replace(&mut self.phase, Phase::Finished)
                else {
                    return Err(violation("DeltaEnd outside a delta download"));
                };
                if apply_open(&mut d).is_err() {
                    self.phase = Phase::Delta(d);
                    return self.delta_failed();
                }
                if end.epoch != d.state.epoch() || end.total != d.state.len() as u64 {
                    return Err(violation(format!(
                        "DeltaEnd says epoch {} with {} entries, the deltas gave epoch {} with {}",
                        end.epoch,
                        end.total,
                        d.state.epoch(),
                        d.state.len()
                    )));
                }
                let target = self.info()?.epoch;
                let kind = SyncKind::Delta {
                    from: d.from,
                    to: d.state.epoch(),
                };
                if end.epoch != target {
                    // The server moved on since Info: ask again and continue from this
                    // (unverified, in-memory) state.
                    self.table = Some(d.state);
                    self.phase = Phase::NeedInfo;
                    return Ok(());
                }
                self.verify(d.state, kind, d.counts)
            }
            Response::Error(_) => unreachable!("handled above"),
        }
    }

    /// A delta did not apply to the verified state (table.md §9.3): discard the candidate and
    /// download a base instead (flows.md §3.5), cancelling the rest of the delta stream.
    fn delta_failed(&mut self) -> Result<(), ProtoError> {
        if let Phase::Delta(d) = &self.phase {
            self.live.remove(&d.id);
        }
        self.table = None;
        self.phase = Phase::StartSync;
        self.syncs = self.syncs.saturating_sub(1);
        Ok(())
    }
}
