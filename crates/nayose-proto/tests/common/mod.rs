//! An in-memory nayose/2 server — the real server core (`nayose_proto::server::decide`) over a
//! model registry and table, no I/O — and a driver that runs a [`LinkCore`] against it,
//! persisting its cache writes in memory, on a seeded RNG.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};

use nayose_oprf::{Mode, Output, ServerKey};
use nayose_proto::announce::{AnnouncementKey, AnnouncementSigner, EpochFacts, Validity};
use nayose_proto::server::{
    BaseLoad, Current, Decision, QuotaView, Standing, base_end, decide, delta_chunks, delta_end,
};
use nayose_proto::{Action, Caches, LinkConfig, LinkCore, LinkResult, PartialBase, ProtoError};
use nayose_table::{
    ClientId, ClientTable, EntryBlock, KeyPeriodId, LabelMasterKey, LabelPermutation, TableEntry,
    Tag, UpsertChain, encrypt_entry, label_for, table_digest,
};
use nayose_wire::{
    BaseChunk, ChunkList, CurrentState, DeltaChunk, ElementBatch, EncryptedLabel, Entry,
    EvaluateResponse, GapBytes, KeyPeriodId as WireKp, Proof, Request, Response,
    TableDigest as WireDigest, Tag as WireTag,
};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// A number of the model registry: its canonical bytes are `b"n" || seed`.
pub fn number(seed: u64) -> Vec<u8> {
    let mut v = b"n".to_vec();
    v.extend_from_slice(&seed.to_be_bytes());
    v
}

struct Delta {
    epoch: u32,
    removed: Vec<Tag>,
    upserts: Vec<(TableEntry, String)>,
}

/// The server's side of the protocol, in memory.
pub struct ModelServer {
    pub key: ServerKey,
    pub kp_number: u64,
    pub kp: KeyPeriodId,
    pub master: LabelMasterKey,
    pub epoch: u32,
    pub registry: BTreeMap<u64, String>,
    /// Person id → serial, given on first sight and kept (as the real server's person map).
    serials: HashMap<String, u32>,
    chain: UpsertChain,
    table: BTreeMap<Tag, (TableEntry, String)>,
    deltas: Vec<Delta>,
    /// Deltas of epochs at or below this are compacted away.
    pub compacted_through: u32,
    pub evaluations: u64,
    pub quota_key_period: u64,
    pub max_batch: u32,
    pub chunk: usize,
    /// Serve one delta that removes a tag no table holds (a broken delta), then behave.
    pub break_next_delta: bool,
    /// When set, every Info carries statements signed with this key (announcements.md §6).
    pub announcer: Option<(AnnouncementSigner, Validity)>,
    rng: StdRng,
}

impl ModelServer {
    pub fn new(seed: u64, registry: BTreeMap<u64, String>) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let key = ServerKey::generate(&mut rng);
        let kp = KeyPeriodId::new(1, &key.public_key().to_bytes());
        let mut s = ModelServer {
            key,
            kp_number: 1,
            kp,
            master: LabelMasterKey::from_bytes(&[0x42; 32]).unwrap(),
            epoch: 1,
            registry: BTreeMap::new(),
            serials: HashMap::new(),
            chain: UpsertChain::first(kp, 1),
            table: BTreeMap::new(),
            deltas: Vec::new(),
            compacted_through: 0,
            evaluations: 0,
            quota_key_period: u64::MAX,
            max_batch: 64,
            chunk: 7,
            break_next_delta: false,
            announcer: None,
            rng,
        };
        s.rebuild(registry);
        s
    }

    fn serial(&mut self, person: &str) -> u32 {
        let next = self.serials.len() as u32;
        *self.serials.entry(person.to_string()).or_insert(next)
    }

    fn entry(&self, seed: u64, serial: u32, version: u32) -> TableEntry {
        let o = self.key.evaluate(Mode::Voprf, &number(seed)).unwrap();
        TableEntry::derive(o.as_bytes(), serial, version)
    }

    fn rebuild(&mut self, registry: BTreeMap<u64, String>) {
        let mut table = BTreeMap::new();
        for (s, p) in &registry {
            let serial = self.serial(p);
            let e = self.entry(*s, serial, self.epoch);
            table.insert(e.tag, (e, p.clone()));
        }
        self.table = table;
        self.registry = registry;
        self.chain = UpsertChain::first(self.kp, self.epoch);
        self.deltas.clear();
    }

    /// A new epoch of the same key period with registry `next`.
    pub fn advance(&mut self, next: BTreeMap<u64, String>) {
        self.epoch += 1;
        let epoch = self.epoch;
        let mut removed = Vec::new();
        let mut upserts = Vec::new();
        let gone: Vec<u64> = self
            .registry
            .keys()
            .filter(|s| !next.contains_key(s))
            .copied()
            .collect();
        for s in gone {
            let tag = self.entry(s, 0, 0).tag;
            self.table.remove(&tag);
            removed.push(tag);
        }
        for (s, p) in &next {
            if self.registry.get(s) != Some(p) {
                let serial = self.serial(p);
                let e = self.entry(*s, serial, epoch);
                self.table.insert(e.tag, (e.clone(), p.clone()));
                upserts.push((e, p.clone()));
            }
        }
        removed.sort();
        upserts.sort_by_key(|u| u.0.tag);
        self.chain = self
            .chain
            .next(self.kp, epoch, upserts.iter().map(|u| &u.0.tag))
            .unwrap();
        self.registry = next;
        self.deltas.push(Delta {
            epoch,
            removed,
            upserts,
        });
    }

    /// A new key period: fresh key, every entry re-derived, no deltas.
    pub fn new_key_period(&mut self) {
        self.key = ServerKey::generate(&mut self.rng);
        self.kp_number += 1;
        self.kp = KeyPeriodId::new(self.kp_number, &self.key.public_key().to_bytes());
        self.epoch += 1;
        self.compacted_through = self.epoch;
        let reg = self.registry.clone();
        self.rebuild(reg);
    }

    pub fn oldest_delta_base(&self) -> u32 {
        let first = self.deltas.first().map_or(self.epoch, |d| d.epoch - 1);
        first.max(self.compacted_through).min(self.epoch)
    }

    fn digest(&self) -> WireDigest {
        WireDigest(
            table_digest(self.kp, self.epoch, &self.chain, self.table.keys())
                .unwrap()
                .0,
        )
    }

    fn current(&self) -> CurrentState {
        CurrentState {
            key_period: WireKp(self.kp.to_bytes()),
            epoch: self.epoch,
        }
    }

    /// The state a request sees, as the real server's service snapshots it.
    fn snapshot(&self) -> Current {
        let oldest = self.oldest_delta_base();
        Current {
            key_period: WireKp(self.kp.to_bytes()),
            public_key: self.key.public_key().to_bytes(),
            epoch: self.epoch,
            entries: self.table.len() as u64,
            digest: self.digest().0,
            chain: self.chain.0,
            oldest_delta_base: oldest,
            delta_bases: self
                .deltas
                .iter()
                .map(|d| d.epoch - 1)
                .filter(|&b| b >= oldest)
                .collect(),
            max_batch: self.max_batch,
            announcement: self.announcer.as_ref().map(|(signer, validity)| {
                nayose_wire::Announcement {
                    key_period_statement: signer
                        .sign_key_period(
                            *validity,
                            self.kp.to_bytes(),
                            self.key.public_key().to_bytes(),
                        )
                        .unwrap(),
                    epoch_statement: signer
                        .sign_epoch(
                            *validity,
                            EpochFacts {
                                key_period: self.kp.to_bytes(),
                                epoch: self.epoch,
                                table_entries: self.table.len() as u64,
                                table_digest: self.digest().0,
                                upsert_chain: self.chain.0,
                            },
                        )
                        .unwrap(),
                }
            }),
        }
    }

    /// Every response frame to `request` from client `c`: the server core
    /// ([`nayose_proto::server::decide`]) decides, this model carries the decision out.
    pub fn answer(&mut self, c: &ClientId, request: &Request) -> Vec<Response> {
        let cur = self.snapshot();
        let standing = Standing::Accredited {
            quota: QuotaView {
                left_today: u64::MAX / 2,
                left_key_period: self.quota_key_period,
                reset_secs: 3600,
                totals: Default::default(),
                hard_cap: None,
            },
            bases: BaseLoad {
                client: 0,
                total: 0,
                max_client: 1,
                max_total: 1,
            },
        };
        match decide(c.as_str(), standing, request, &cur) {
            Decision::Reply(r) => vec![r],
            Decision::Evaluate { charge } => {
                let Request::Evaluate(r) = request else {
                    unreachable!("the core admits only an Evaluate for evaluation")
                };
                let (els, proof) = self
                    .key
                    .blind_evaluate_batch_with_proof(&r.elements.to_arrays(), &mut self.rng)
                    .unwrap();
                assert_eq!(els.len() as u64, charge);
                self.evaluations += charge;
                self.quota_key_period = self.quota_key_period.saturating_sub(charge);
                vec![Response::Evaluated(EvaluateResponse {
                    key_period: r.key_period,
                    elements: ElementBatch::from_arrays(&els).unwrap(),
                    proof: Proof(proof.to_bytes()),
                })]
            }
            Decision::StreamBase { offset } => {
                let perm = LabelPermutation::new(&self.master, c);
                let all: Vec<(Tag, nayose_table::EncryptedLabel)> = self
                    .table
                    .values()
                    .map(|(e, _)| {
                        let l = perm.label(e.person);
                        (e.tag, encrypt_entry(e, c, self.kp, self.epoch, &l))
                    })
                    .collect();
                let total = all.len() as u64;
                let mut out = Vec::new();
                let mut at = offset as usize;
                while at < all.len() {
                    let end = (at + self.chunk).min(all.len());
                    let b = EntryBlock::encode(&all[at..end]).unwrap();
                    out.push(Response::BaseChunk(BaseChunk {
                        key_period: WireKp(self.kp.to_bytes()),
                        epoch: self.epoch,
                        offset: at as u64,
                        total,
                        rice: b.rice,
                        first_tag: WireTag(b.first.0),
                        gaps: GapBytes::new(b.gaps).unwrap(),
                        labels: ChunkList::new(
                            all[at..end].iter().map(|e| EncryptedLabel(e.1.0)).collect(),
                        )
                        .unwrap(),
                    }));
                    at = end;
                }
                out.push(base_end(&cur));
                out
            }
            Decision::StreamDelta { from } => {
                let mut out = Vec::new();
                let broken = std::mem::take(&mut self.break_next_delta);
                for d in self.deltas.iter().filter(|d| d.epoch > from) {
                    let mut removed: Vec<WireTag> =
                        d.removed.iter().map(|t| WireTag(t.0)).collect();
                    if broken {
                        removed.insert(0, WireTag([0; 9]));
                    }
                    let perm = LabelPermutation::new(&self.master, c);
                    let upserts: Vec<Entry> = d
                        .upserts
                        .iter()
                        .map(|(e, _)| {
                            let l = perm.label(e.person);
                            let ce = encrypt_entry(e, c, self.kp, d.epoch, &l);
                            Entry {
                                tag: WireTag(e.tag.0),
                                label: EncryptedLabel(ce.0),
                            }
                        })
                        .collect();
                    for (r, u) in delta_chunks(removed.len(), upserts.len(), self.chunk) {
                        out.push(Response::DeltaChunk(DeltaChunk {
                            key_period: WireKp(self.kp.to_bytes()),
                            epoch: d.epoch,
                            removed: ChunkList::new(removed[r].to_vec()).unwrap(),
                            upserts: ChunkList::new(upserts[u].to_vec()).unwrap(),
                        }));
                    }
                }
                out.push(delta_end(&cur));
                out
            }
        }
    }

    /// The label client `c` must see for number `seed` now.
    pub fn label_of(&self, c: &ClientId, seed: u64) -> Option<nayose_table::Label> {
        self.registry
            .get(&seed)
            .map(|p| label_for(&self.master, c, self.serials[p]))
    }
}

/// What the client persisted (its cache directory), in memory.
#[derive(Default)]
pub struct Disk {
    pub kp: Option<KeyPeriodId>,
    pub oprf: HashMap<[u8; 16], [u8; 64]>,
    pub table: Option<ClientTable>,
    pub partial: Option<PartialBase>,
}

impl Disk {
    fn caches(&mut self, kp: KeyPeriodId) -> Caches {
        if self.kp != Some(kp) {
            *self = Disk {
                kp: Some(kp),
                ..Disk::default()
            };
        }
        Caches {
            oprf: self
                .oprf
                .iter()
                .map(|(k, v)| (*k, Output::from_bytes(*v)))
                .collect(),
            table: self.table.clone(),
            partial: self.partial.clone(),
        }
    }

    fn apply(&mut self, a: &Action) {
        match a {
            Action::SaveOprf { entries, .. } => {
                for (k, o) in entries {
                    self.oprf.insert(*k, *o.as_bytes());
                }
            }
            Action::AppendPartialBase {
                key_period,
                epoch,
                offset,
                block,
            } => {
                let mut blocks = match (&self.partial, *offset) {
                    (_, 0) => Vec::new(),
                    (Some(p), _) => {
                        assert_eq!(p.len(), *offset, "appends are contiguous");
                        p.blocks().to_vec()
                    }
                    (None, _) => panic!("an append at {offset} without a partial base"),
                };
                blocks.push(block.clone());
                self.partial = Some(PartialBase::new(*key_period, *epoch, blocks).unwrap());
            }
            Action::DiscardPartialBase { .. } => self.partial = None,
            Action::SaveTable { table } => {
                self.table = Some(table.clone());
                self.partial = None;
            }
            Action::DiscardTable { .. } => self.table = None,
            _ => {}
        }
    }
}

/// Counts of one run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Traffic {
    pub requests: u64,
    pub frames: u64,
}

/// Hooks that perturb a run: called before each server answer with the request count so far.
pub type Perturb<'a> = &'a mut dyn FnMut(u64, &mut ModelServer) -> Option<Fail>;

/// What a perturbation does to the request about to be answered.
pub enum Fail {
    /// The stream fails in transit after `frames` response frames.
    Transit { frames: usize },
    /// The client process crashes here (the run ends; the disk keeps what was persisted).
    Crash,
}

/// Runs one link of `seeds` for client `c` against `server`, with `disk` as the client's cache.
/// Returns `Ok(None)` if a perturbation crashed the client.
pub fn run(
    server: &mut ModelServer,
    disk: &mut Disk,
    c: &ClientId,
    seeds: &[u64],
    rng_seed: u64,
    perturb: Perturb<'_>,
) -> Result<Option<(LinkResult, Traffic)>, ProtoError> {
    run_trusting(server, disk, c, seeds, rng_seed, perturb, Vec::new(), 0)
}

/// [`run`] for a client that trusts `trusted` announcement keys, at time `now` (Unix seconds).
#[allow(clippy::too_many_arguments)]
pub fn run_trusting(
    server: &mut ModelServer,
    disk: &mut Disk,
    c: &ClientId,
    seeds: &[u64],
    rng_seed: u64,
    perturb: Perturb<'_>,
    trusted: Vec<AnnouncementKey>,
    now: i64,
) -> Result<Option<(LinkResult, Traffic)>, ProtoError> {
    let inputs: Vec<Vec<u8>> = seeds.iter().map(|s| number(*s)).collect();
    let mut core = LinkCore::new(
        inputs,
        LinkConfig {
            batch_size: 16,
            window: 3,
            ..LinkConfig::default()
        },
    );
    core.trust_announcement_keys(trusted);
    core.on_clock(now);
    let mut rng = StdRng::seed_from_u64(rng_seed);
    let mut traffic = Traffic::default();
    let mut pending: Vec<(u64, Request)> = Vec::new();
    for _ in 0..100_000 {
        match core.poll_action(&mut rng)? {
            Action::Send { id, request } => pending.push((id, request)),
            Action::LoadCaches { key_period, entity } => {
                assert_eq!(&entity, c, "the caches of the entity the server named");
                let caches = disk.caches(key_period);
                core.on_caches(caches)?;
            }
            Action::Done(r) => return Ok(Some((*r, traffic))),
            Action::Wait | Action::Backoff(_) => {
                // Answer the oldest request (in-order delivery; pipelining is exercised by the
                // window, since several requests wait here at once).
                assert!(!pending.is_empty(), "the core waits with nothing in flight");
                let (id, request) = pending.remove(0);
                traffic.requests += 1;
                let fail = perturb(traffic.requests, server);
                let frames = server.answer(c, &request);
                match fail {
                    Some(Fail::Crash) => return Ok(None),
                    Some(Fail::Transit { frames: keep }) => {
                        for f in frames.into_iter().take(keep) {
                            if f.is_final() {
                                break;
                            }
                            traffic.frames += 1;
                            core.on_response(id, f)?;
                        }
                        core.on_transit_failure(id);
                    }
                    None => {
                        for f in frames {
                            traffic.frames += 1;
                            core.on_response(id, f)?;
                        }
                    }
                }
            }
            other => disk.apply(&other),
        }
    }
    panic!("the run did not finish");
}

/// Registry: `seed → person` for `n` numbers over `persons` persons.
pub fn registry(seeds: impl Iterator<Item = u64>, persons: u64) -> BTreeMap<u64, String> {
    seeds.map(|s| (s, format!("P{}", s % persons))).collect()
}

/// Checks every label of a result against the server's truth.
pub fn assert_labels(server: &ModelServer, c: &ClientId, seeds: &[u64], r: &LinkResult) {
    for (i, s) in seeds.iter().enumerate() {
        assert_eq!(
            r.matches.label(i),
            server.label_of(c, *s),
            "number seed {s}"
        );
    }
}
