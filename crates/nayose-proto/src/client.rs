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

/// `CacheKey(K, x) = H(DST_CACHE_KEY, key_period_id || x)[0..16]` (table.md §3.5).
pub fn cache_key(key_period: KeyPeriodId, canonical_number: &[u8]) -> [u8; 16] {
    let mut h = Sha512::new();
    h.update((DST_CACHE_KEY.len() as u16).to_be_bytes());
    h.update(DST_CACHE_KEY);
    h.update(key_period.as_bytes());
    h.update(canonical_number);
    let d: [u8; 64] = h.finalize().into();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

/// Settings of a run.
#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    /// Largest Evaluate batch the client sends (further capped by Info's `max_batch`).
    pub batch_size: u32,
    /// Evaluate requests in flight at once.
    pub window: usize,
    /// Key-period restarts allowed in one run.
    pub max_key_period_restarts: u32,
    /// Syncs allowed in one run (an epoch change during a sync starts another).
    pub max_syncs: u32,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            batch_size: 1024,
            window: 8,
            max_key_period_restarts: 3,
            max_syncs: 4,
        }
    }
}

/// A base download that has not finished yet: the entry blocks received so far, in table
/// order. Made only through [`PartialBase::new`], which decodes every block, so its blocks are
/// sound and ascending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartialBase {
    key_period: KeyPeriodId,
    epoch: u32,
    entries: u64,
    last: Option<Tag>,
    blocks: Vec<EntryBlock>,
}

impl PartialBase {
    /// A partial base of (`key_period`, `epoch`) from `blocks` (e.g. loaded from disk); fails if
    /// a block does not decode or the tags do not ascend across blocks.
    pub fn new(
        key_period: KeyPeriodId,
        epoch: u32,
        blocks: Vec<EntryBlock>,
    ) -> Result<Self, TableError> {
        let mut p = PartialBase {
            key_period,
            epoch,
            entries: 0,
            last: None,
            blocks: Vec::with_capacity(blocks.len()),
        };
        let mut tags = Vec::new();
        for b in blocks {
            p.push(b, &mut tags)?;
        }
        Ok(p)
    }

    fn push(&mut self, block: EntryBlock, tags: &mut Vec<Tag>) -> Result<(), TableError> {
        block.decode_tags(self.entries, tags)?;
        if self.last.is_some_and(|l| l >= tags[0]) {
            return Err(TableError::NotAscending {
                index: self.entries,
                tag: tags[0].to_string(),
            });
        }
        self.last = tags.last().copied();
        self.entries += tags.len() as u64;
        self.blocks.push(block);
        Ok(())
    }

    /// Its key period.
    pub fn key_period(&self) -> KeyPeriodId {
        self.key_period
    }

    /// The epoch whose base it is.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Entries received so far.
    pub fn len(&self) -> u64 {
        self.entries
    }

    /// Whether no entry has arrived yet.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The blocks received so far.
    pub fn blocks(&self) -> &[EntryBlock] {
        &self.blocks
    }
}

/// What the driver loaded for one key period (each part already checked against its own
/// checksum by the driver; the core checks the table against the server's digest).
#[derive(Default)]
pub struct Caches {
    /// Cache key → OPRF output, for numbers evaluated earlier in this key period.
    pub oprf: HashMap<[u8; 16], Output>,
    /// The last verified table state.
    pub table: Option<ClientTable>,
    /// An unfinished base download.
    pub partial: Option<PartialBase>,
}

impl fmt::Debug for Caches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caches")
            .field("oprf_entries", &self.oprf.len())
            .field("table_epoch", &self.table.as_ref().map(ClientTable::epoch))
            .field(
                "partial_entries",
                &self.partial.as_ref().map(PartialBase::len),
            )
            .finish()
    }
}

/// How the run brought its table up to date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncKind {
    /// The cached state was already at the current epoch.
    Current {
        /// The epoch.
        epoch: u32,
    },
    /// Deltas from one epoch to another.
    Delta {
        /// The cached state's epoch.
        from: u32,
        /// The epoch reached.
        to: u32,
    },
    /// A base download of one epoch.
    Base {
        /// The epoch.
        epoch: u32,
        /// The entry offset a download resumed from (0: a fresh download).
        resumed_from: u64,
    },
}

/// The outcome of a run.
pub struct LinkResult {
    /// The key period of the results.
    pub key_period: KeyPeriodId,
    /// The epoch of the verified table matched against.
    pub epoch: u32,
    /// Labels by number index.
    pub matches: Matches,
    /// Numbers evaluated by the server in this run.
    pub evaluated: u64,
    /// Numbers whose output came from the OPRF cache.
    pub from_cache: u64,
    /// How the table was brought up to date (the last sync of the run).
    pub sync: SyncKind,
    /// What the applied deltas changed (zero unless a delta sync).
    pub delta_counts: DeltaCounts,
    /// Entries in the table.
    pub table_entries: u64,
    /// The last Info.
    pub info: InfoResponse,
    /// Whether the last Info was checked against the management body's announcements
    /// (protocol-spec/announcements.md): `Unchecked` when no announcement key is trusted.
    pub announcement: Coverage,
}

impl fmt::Debug for LinkResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkResult")
            .field("key_period", &self.key_period)
            .field("epoch", &self.epoch)
            .field("matched", &self.matches.matched())
            .field("evaluated", &self.evaluated)
            .field("sync", &self.sync)
            .finish_non_exhaustive()
    }
}

/// What the driver does next.
pub enum Action {
    /// Open a stream and send `request`; feed its response frames to
    /// [`LinkCore::on_response`] with `id`, or report [`LinkCore::on_transit_failure`].
    Send {
        /// The request's id within this run.
        id: u64,
        /// The request.
        request: Request,
    },
    /// Load (and checksum-verify) the caches of this entity and key period, delete those of
    /// every other key period, then call [`LinkCore::on_caches`].
    LoadCaches {
        /// The key period.
        key_period: KeyPeriodId,
        /// The entity the server derived from the client's certificate (Info `entity`): the
        /// caches of another entity are not this one's (its labels have another domain).
        entity: ClientId,
    },
    /// Add these outputs to the OPRF cache of the key period (persist before going on).
    SaveOprf {
        /// The key period.
        key_period: KeyPeriodId,
        /// Cache key → output.
        entries: Vec<([u8; 16], Output)>,
    },
    /// Append this entry block to the partial base of (key period, epoch) at `offset` (0: start
    /// a new partial base, replacing any other).
    AppendPartialBase {
        /// The key period.
        key_period: KeyPeriodId,
        /// The base's epoch.
        epoch: u32,
        /// Index of the block's first entry.
        offset: u64,
        /// The block (decoded and checked by the core).
        block: EntryBlock,
    },
    /// Delete the partial base of the key period.
    DiscardPartialBase {
        /// The key period.
        key_period: KeyPeriodId,
    },
    /// Replace the persisted table state with this verified one (atomically) and delete the
    /// partial base. No request follows: the driver closes the connection now, before the
    /// core matches (so the close does not depend on how many numbers matched).
    SaveTable {
        /// The verified state.
        table: ClientTable,
    },
    /// Delete the persisted table state of the key period (it failed verification).
    DiscardTable {
        /// The key period.
        key_period: KeyPeriodId,
    },
    /// Wait this long before polling again (the server asked to retry later).
    Backoff(Duration),
    /// Nothing to do until a response or failure arrives.
    Wait,
    /// The run is complete.
    Done(Box<LinkResult>),
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Send { id, request } => write!(f, "Send({id}, {})", request.name()),
            Action::LoadCaches { .. } => f.write_str("LoadCaches"),
            Action::SaveOprf { entries, .. } => write!(f, "SaveOprf({})", entries.len()),
            Action::AppendPartialBase { offset, block, .. } => {
                write!(f, "AppendPartialBase({offset}, {})", block.count)
            }
            Action::DiscardPartialBase { .. } => f.write_str("DiscardPartialBase"),
            Action::SaveTable { table } => write!(f, "SaveTable(epoch {})", table.epoch()),
            Action::DiscardTable { .. } => f.write_str("DiscardTable"),
            Action::Backoff(d) => write!(f, "Backoff({d:?})"),
            Action::Wait => f.write_str("Wait"),
            Action::Done(r) => write!(f, "Done({r:?})"),
        }
    }
}

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

    fn on_info(&mut self, id: u64, info: InfoResponse) -> Result<(), ProtoError> {
        if !matches!(self.phase, Phase::AwaitInfo(i) if i == id) {
            return Err(violation("Info answers no Info request"));
        }
        let kp = KeyPeriodId::from_bytes(info.key_period.0);
        if !kp.matches_public_key(&info.public_key.0) {
            return Err(violation(
                "Info's key period id does not belong to its public key",
            ));
        }
        let pk = PublicKey::from_bytes(&info.public_key.0)
            .map_err(|e| violation(format!("Info's public key: {e}")))?;
        // Before anything of this Info is used: its key and table must be the announced ones.
        let now = self.now_unix_secs.and_then(|t| u64::try_from(t).ok());
        self.coverage = check_info(&self.trusted, &info, now)?;
        let entity = ClientId::new(info.entity.as_str())
            .map_err(|e| violation(format!("Info's entity: {e}")))?;
        match &self.client {
            Some(e) if *e != entity => {
                return Err(violation(format!(
                    "the server named this client entity {e}, then entity {entity}, in one run"
                )));
            }
            Some(_) => {}
            None => self.client = Some(entity.clone()),
        }
        let changed = self.key_period.is_some_and(|k| k != kp);
        if changed {
            self.key_period_restarts += 1;
            if self.key_period_restarts > self.cfg.max_key_period_restarts {
                return Err(ProtoError::Unstable {
                    what: "key period",
                    count: self.key_period_restarts,
                });
            }
            self.restart_key_period();
        }
        let first = self.key_period.is_none() || changed;
        self.key_period = Some(kp);
        self.public_key = Some(pk);
        self.info = Some(info);
        if first {
            self.actions.push_back(Action::LoadCaches {
                key_period: kp,
                entity,
            });
            self.phase = Phase::AwaitCaches;
        } else if !self.queue.is_empty() || !self.in_flight.is_empty() {
            // Same key period (an epoch change): every output is still valid; finish evaluating.
            self.phase = Phase::Evaluating;
        } else {
            self.phase = Phase::StartSync;
        }
        Ok(())
    }

    fn restart_key_period(&mut self) {
        for o in &mut self.outputs {
            *o = None;
        }
        self.queue.clear();
        self.in_flight.clear();
        self.live.clear();
        self.table = None;
        self.partial = None;
        self.evaluated = 0;
        self.from_cache = 0;
        self.base_after_mismatch = false;
    }

    fn on_error(&mut self, id: u64, e: &ErrorResponse) -> Result<(), ProtoError> {
        let request: &'static str = if self.in_flight.contains_key(&id) {
            "Evaluate"
        } else {
            match &self.phase {
                Phase::Base(_) => "FetchBase",
                Phase::Delta(_) => "FetchDelta",
                _ => "Info",
            }
        };
        match e.code {
            ErrorCode::KeyPeriodChanged => {
                if e.current
                    .is_some_and(|c| Some(c.key_period.0) == self.key_period.map(|k| k.to_bytes()))
                {
                    return Err(violation(
                        "KeyPeriodChanged names the key period the request named",
                    ));
                }
                // Batches in flight go back to the queue (they are discarded anyway if the next
                // Info shows a new key period, and re-sent if it does not).
                for (_, (indices, _)) in self.in_flight.drain() {
                    self.queue.push_front(indices);
                }
                self.live.clear();
                self.phase = Phase::NeedInfo;
                Ok(())
            }
            ErrorCode::EpochChanged if request == "FetchBase" => {
                if let Some(kp) = self.key_period {
                    self.actions
                        .push_back(Action::DiscardPartialBase { key_period: kp });
                }
                self.partial = None;
                self.phase = Phase::NeedInfo;
                Ok(())
            }
            ErrorCode::DeltaUnavailable if request == "FetchDelta" => {
                self.table = None;
                self.phase = Phase::StartSync;
                self.syncs = self.syncs.saturating_sub(1);
                Ok(())
            }
            ErrorCode::OffsetOutOfRange if request == "FetchBase" && self.offset_retries == 0 => {
                self.offset_retries += 1;
                if let Some(kp) = self.key_period {
                    self.actions
                        .push_back(Action::DiscardPartialBase { key_period: kp });
                }
                self.partial = None;
                self.phase = Phase::StartSync;
                self.syncs = self.syncs.saturating_sub(1);
                Ok(())
            }
            ErrorCode::BatchTooLarge if request == "Evaluate" => {
                let Some((indices, _)) = self.in_flight.remove(&id) else {
                    return Err(server_error(request, e));
                };
                if indices.len() <= 1 {
                    return Err(violation(
                        "the server refused a batch of one element as too large",
                    ));
                }
                self.batch = indices.len().div_ceil(2);
                let mut all: Vec<usize> = indices;
                for q in self.queue.drain(..) {
                    all.extend(q);
                }
                self.queue = all.chunks(self.batch).map(<[usize]>::to_vec).collect();
                Ok(())
            }
            ErrorCode::HardCapReached => Err(ProtoError::HardCap {
                message: e.message.as_str().to_owned(),
            }),
            ErrorCode::QuotaExhausted => Err(ProtoError::Quota {
                need: self.queue.iter().map(Vec::len).sum::<usize>() as u64
                    + self.in_flight.values().map(|(i, _)| i.len()).sum::<usize>() as u64,
                today: 0,
                period: 0,
                retry: format!(" ({})", e.message.as_str()),
            }),
            c if c.is_retryable() => {
                // Wait first: the re-sent request must not overtake the server's retry_after.
                self.actions
                    .push_back(Action::Backoff(Duration::from_secs(u64::from(
                        e.retry_after_secs.max(1),
                    ))));
                self.live.insert(id);
                self.on_transit_failure(id);
                Ok(())
            }
            _ => Err(server_error(request, e)),
        }
    }

    fn start_sync(&mut self) -> Result<Action, ProtoError> {
        self.syncs += 1;
        if self.syncs > self.cfg.max_syncs {
            return Err(ProtoError::Unstable {
                what: "epoch",
                count: self.syncs,
            });
        }
        let kp = self.kp()?;
        let info = self.info()?.clone();
        let c = info.epoch;
        match self.table.take() {
            Some(t) if t.epoch() == c => {
                self.phase = Phase::Finished;
                self.verify(t, SyncKind::Current { epoch: c }, DeltaCounts::default())?;
            }
            Some(t) if info.oldest_delta_base <= t.epoch() && t.epoch() < c => {
                let from = t.epoch();
                let a = self.send(Request::FetchDelta(FetchDeltaRequest {
                    key_period: wire_kp(kp),
                    from_epoch: from,
                }));
                if let Action::Send { id, .. } = &a {
                    self.phase = Phase::Delta(DeltaSync {
                        id: *id,
                        from,
                        state: t,
                        open: None,
                        counts: DeltaCounts::default(),
                    });
                }
                self.actions.push_back(a);
            }
            _ => self.start_base(kp, c),
        }
        self.poll_queued()
    }

    fn start_base(&mut self, kp: KeyPeriodId, c: u32) {
        let partial = match self.partial.take() {
            Some(p) if p.key_period == kp && p.epoch == c => p,
            other => {
                if other.is_some() {
                    self.actions
                        .push_back(Action::DiscardPartialBase { key_period: kp });
                }
                PartialBase {
                    key_period: kp,
                    epoch: c,
                    entries: 0,
                    last: None,
                    blocks: Vec::new(),
                }
            }
        };
        let resumed = partial.len();
        self.base_request(partial, resumed);
    }

    fn finish_matching(&mut self) -> Result<Action, ProtoError> {
        let Phase::Matching(m) = std::mem::replace(&mut self.phase, Phase::Finished) else {
            return Ok(Action::Wait);
        };
        let (table, kind, counts, info) = *m;
        let outs: Vec<&[u8; 64]> = self
            .outputs
            .iter()
            .map(|o| o.as_ref().map(Output::as_bytes))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| violation("a number has no OPRF output"))?;
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| violation("matching before any Info"))?;
        let matches = match_outputs(client, &table, &outs);
        self.last_sync = Some(kind);
        self.last_counts = counts;
        Ok(Action::Done(Box::new(LinkResult {
            key_period: table.key_period(),
            epoch: table.epoch(),
            matches,
            evaluated: self.evaluated,
            from_cache: self.from_cache,
            sync: kind,
            delta_counts: counts,
            table_entries: table.len() as u64,
            info,
            announcement: self.coverage,
        })))
    }

    fn poll_queued(&mut self) -> Result<Action, ProtoError> {
        Ok(self.actions.pop_front().unwrap_or(Action::Wait))
    }

    fn verify(
        &mut self,
        table: ClientTable,
        kind: SyncKind,
        counts: DeltaCounts,
    ) -> Result<(), ProtoError> {
        let info = self.info()?.clone();
        let ok = table.epoch() == info.epoch
            && table.len() as u64 == info.table_entries
            && table.chain().0 == info.upsert_chain.0
            && table.digest() == TableDigest(info.table_digest.0);
        if ok {
            self.actions.push_back(Action::SaveTable {
                table: table.clone(),
            });
            self.phase = Phase::Matching(Box::new((table, kind, counts, info)));
            return Ok(());
        }
        match kind {
            SyncKind::Base {
                epoch,
                resumed_from,
            } => {
                self.actions.push_back(Action::DiscardPartialBase {
                    key_period: table.key_period(),
                });
                if resumed_from > 0 && !self.base_retried {
                    // The part from an earlier run may be what is damaged: download it all once.
                    self.base_retried = true;
                    self.start_base(table.key_period(), info.epoch);
                    return Ok(());
                }
                // Discard the bad download first (the queued action), then fail.
                self.failure = Some(ProtoError::BaseDigestMismatch { epoch });
                Ok(())
            }
            _ if self.base_after_mismatch => {
                Err(ProtoError::BaseDigestMismatch { epoch: info.epoch })
            }
            _ => {
                self.base_after_mismatch = true;
                self.actions.push_back(Action::DiscardTable {
                    key_period: table.key_period(),
                });
                self.table = None;
                self.start_base(table.key_period(), info.epoch);
                Ok(())
            }
        }
    }
}

/// Applies the delta epoch collected so far, if any.
fn apply_open(d: &mut DeltaSync) -> Result<(), ProtoError> {
    if let Some((epoch, removed, upserts)) = d.open.take() {
        let c = d
            .state
            .apply_delta(epoch, &removed, &upserts)
            .map_err(|e| violation(format!("the delta of epoch {epoch}: {e}")))?;
        d.counts += c;
    }
    Ok(())
}
