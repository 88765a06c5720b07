//! What the link run takes and hands out: its configuration, the caches it is given, the
//! actions it asks its driver for, and its result.

use super::*;

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
    pub(super) key_period: KeyPeriodId,
    pub(super) epoch: u32,
    pub(super) entries: u64,
    pub(super) last: Option<Tag>,
    pub(super) blocks: Vec<EntryBlock>,
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

    pub(super) fn push(
        &mut self,
        block: EntryBlock,
        tags: &mut Vec<Tag>,
    ) -> Result<(), TableError> {
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
