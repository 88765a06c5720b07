//! The networked part of a run: connect, Info, pipelined Evaluate, table retrieval, with
//! reconnection, bounded retries and epoch restarts.
//!
//! Invariants:
//! * one connection at a time; requests are pipelined on it (at most `pipeline_depth` streams);
//! * every Evaluate response is verified against the epoch's public key before its outputs are
//!   kept; a failed proof ends the run ([`ClientError::ProofInvalid`]);
//! * a job (batch, range, table chunk) is applied exactly once ([`crate::plan::Plan`], the
//!   download offset); after a reconnect the server's epoch is checked again, and any change
//!   — there or as an `EpochChanged` error — discards everything of the old epoch
//!   ([`Interrupt::Restart`]);
//! * the count of consecutive failures resets only when a job makes progress, so a server that
//!   fails the same request forever exhausts the retries instead of looping.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use nayose_oprf::{ClientBatch, Mode, OprfError, PublicKey};
use nayose_table::{ClientId, Matcher};
use nayose_wire::{
    ElementBatch, EpochId, ErrorCode, EvaluateRequest, FetchAllRequest, FetchRangeRequest,
    InfoResponse, Request, Response, TagPrefix,
};
use tokio::task::JoinSet;
use zeroize::Zeroizing;

use crate::cache::{self, CacheKey, CacheMiss, CacheWriter};
use crate::config::Resolved;
use crate::error::ClientError;
use crate::net::{Conn, Counters, Failure, classify_connection, protocol};
use crate::plan::{Plan, batches};
use crate::progress::{Phase, Progress};

/// Why an epoch's work stopped early.
#[derive(Debug)]
pub(crate) enum Interrupt {
    /// The server moved to another epoch: start over, discarding everything.
    Restart,
    /// Give up.
    Fatal(ClientError),
}

impl From<ClientError> for Interrupt {
    fn from(e: ClientError) -> Self {
        Interrupt::Fatal(e)
    }
}

/// Finalized OPRF outputs, one per distinct number (secret: zeroized on drop).
pub(crate) type Outputs = Zeroizing<Vec<[u8; 64]>>;

/// Counters a run reports in its summary.
#[derive(Debug, Default)]
pub(crate) struct NetStats {
    pub(crate) connections: u64,
    pub(crate) evaluate_requests: u64,
    pub(crate) entries_received: u64,
    pub(crate) ranges_fetched: u64,
    /// FetchRange requests sent in the current run (any epoch): after one, a new epoch must
    /// not be looked up in k-anon mode (security.md §3.4).
    pub(crate) ranges_requested: u64,
}

/// How a k-anon retrieval ended.
#[derive(Debug)]
pub(crate) enum RangeOutcome {
    /// Every range fetched and matched, at this prefix length.
    Done(u8),
    /// k-anon is not possible or not sensible here; retrieve the full table instead (with a
    /// fresh matcher: ranges already matched would be matched twice).
    UseFull(String),
}

/// The server connection manager of one run.
pub(crate) struct Session<'a> {
    cfg: &'a Resolved,
    quic: quinn::ClientConfig,
    client_id: ClientId,
    endpoint: Option<quinn::Endpoint>,
    conn: Option<Conn>,
    pub(crate) counters: Arc<Counters>,
    failures: u32,
    /// When this run first tried to connect (until its first connection succeeds).
    first_attempt: Option<std::time::Instant>,
    pub(crate) stats: NetStats,
    progress: &'a dyn Progress,
}

/// A run that has never reached the server gives up after this long: a server that is not
/// running is reported within about half a minute, not after the whole retry schedule.
const FIRST_CONNECT_DEADLINE: Duration = Duration::from_secs(30);

impl<'a> Session<'a> {
    pub(crate) fn new(
        cfg: &'a Resolved,
        quic: quinn::ClientConfig,
        client_id: ClientId,
        progress: &'a dyn Progress,
    ) -> Self {
        Session {
            cfg,
            quic,
            client_id,
            endpoint: None,
            conn: None,
            first_attempt: None,
            counters: Arc::new(Counters::default()),
            failures: 0,
            stats: NetStats::default(),
            progress,
        }
    }

    pub(crate) fn progress(&self) -> &dyn Progress {
        self.progress
    }

    pub(crate) fn client_id(&self) -> &ClientId {
        &self.client_id
    }

    /// Records a failure: gives up after `max_attempts` consecutive ones, else waits the
    /// backoff (at least the server's `hint`, capped at the maximum backoff... or one minute for
    /// a server hint).
    async fn fail(&mut self, reason: &str, hint: Option<Duration>) -> Result<(), ClientError> {
        self.failures += 1;
        let policy = &self.cfg.retry;
        let never_connected = self.stats.connections == 0
            && self.first_attempt.is_some_and(|t| {
                t.elapsed() + policy.backoff(self.failures) > FIRST_CONNECT_DEADLINE
            });
        if never_connected {
            return Err(ClientError::CouldNotConnect {
                server: self.cfg.server.clone(),
                waited_secs: self.first_attempt.map_or(0, |t| t.elapsed().as_secs()),
                last: reason.to_owned(),
            });
        }
        if self.failures >= policy.max_attempts {
            return Err(ClientError::Unreachable {
                server: self.cfg.server.clone(),
                attempts: self.failures,
                last: reason.to_owned(),
            });
        }
        let mut wait = policy.backoff(self.failures);
        if let Some(h) = hint {
            wait = wait.max(h.min(Duration::from_secs(60)));
        }
        self.progress.note(&format!(
            "{reason}; retrying in {:.1}s (attempt {} of {})",
            wait.as_secs_f64(),
            self.failures + 1,
            policy.max_attempts
        ));
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// A job made progress: the failure count starts over.
    fn progressed(&mut self) {
        self.failures = 0;
    }

    fn drop_connection(&mut self) {
        if let Some(c) = self.conn.take() {
            c.close();
        }
    }

    async fn resolve_addr(&self) -> Result<SocketAddr, String> {
        let mut addrs = tokio::net::lookup_host(&self.cfg.server)
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", self.cfg.server))?;
        addrs
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.cfg.server))
    }

    fn endpoint_for(&mut self, addr: SocketAddr) -> Result<quinn::Endpoint, ClientError> {
        if let Some(e) = &self.endpoint {
            let family_ok = e.local_addr().is_ok_and(|l| l.is_ipv4() == addr.is_ipv4());
            if family_ok {
                return Ok(e.clone());
            }
        }
        let bind: SocketAddr = if addr.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let mut endpoint = quinn::Endpoint::client(bind).map_err(|source| ClientError::Io {
            path: format!("UDP socket {bind}").into(),
            source,
        })?;
        endpoint.set_default_client_config(self.quic.clone());
        self.endpoint = Some(endpoint.clone());
        Ok(endpoint)
    }

    fn handshake_error(&self, f: Failure) -> Failure {
        match f {
            Failure::Fatal(ClientError::Handshake { reason, .. }) => {
                Failure::Fatal(ClientError::Handshake {
                    server: self.cfg.server.clone(),
                    reason,
                })
            }
            f => f,
        }
    }

    /// The live connection, (re)connecting with retries as needed.
    pub(crate) async fn connection(&mut self) -> Result<Conn, ClientError> {
        if let Some(c) = &self.conn {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
            self.conn = None;
        }
        loop {
            let addr = match self.resolve_addr().await {
                Ok(a) => a,
                Err(reason) => {
                    self.fail(&reason, None).await?;
                    continue;
                }
            };
            let endpoint = self.endpoint_for(addr)?;
            if self.stats.connections == 0 && self.first_attempt.is_none() {
                self.first_attempt = Some(std::time::Instant::now());
            }
            let connecting =
                endpoint
                    .connect(addr, &self.cfg.server_name)
                    .map_err(|e| ClientError::Config {
                        setting: "server_name",
                        reason: format!(
                            "cannot connect to {addr} as {:?}: {e}",
                            self.cfg.server_name
                        ),
                    })?;
            let failure =
                match tokio::time::timeout(self.cfg.retry.connect_timeout, connecting).await {
                    Ok(Ok(conn)) => {
                        self.stats.connections += 1;
                        let c = Conn::new(
                            conn,
                            self.counters.clone(),
                            self.cfg.retry.request_timeout,
                            self.client_id.as_str(),
                        );
                        self.conn = Some(c.clone());
                        return Ok(c);
                    }
                    Ok(Err(e)) => {
                        self.handshake_error(classify_connection(&e, self.client_id.as_str()))
                    }
                    Err(_) => Failure::Transport(format!(
                        "no QUIC handshake with {addr} within {:.1}s",
                        self.cfg.retry.connect_timeout.as_secs_f64()
                    )),
                };
            match failure {
                Failure::Fatal(e) => return Err(e),
                Failure::Transport(r) => self.fail(&format!("connecting: {r}"), None).await?,
                Failure::RetryLater { after, reason } => self.fail(&reason, Some(after)).await?,
                Failure::EpochChanged(_) => {
                    return Err(ClientError::Protocol(
                        "EpochChanged while connecting".into(),
                    ));
                }
            }
        }
    }

    /// Info, retried across reconnects. Checks the epoch id against the public key.
    pub(crate) async fn info(&mut self) -> Result<InfoResponse, ClientError> {
        loop {
            let conn = self.connection().await?;
            match conn.call(&Request::Info).await {
                Ok(Response::Info(info)) => {
                    let epoch = nayose_table::EpochId::from_bytes(info.epoch.0);
                    if !epoch.matches_public_key(info.public_key.as_bytes()) {
                        return Err(ClientError::Protocol(format!(
                            "epoch id {epoch} does not belong to the public key the server sent"
                        )));
                    }
                    return Ok(info);
                }
                Ok(other) => {
                    return Err(ClientError::Protocol(format!(
                        "Info answered with {}",
                        other.name()
                    )));
                }
                Err(Failure::Transport(r)) => {
                    self.drop_connection();
                    self.fail(&r, None).await?;
                }
                Err(Failure::RetryLater { after, reason }) => {
                    self.fail(&reason, Some(after)).await?
                }
                Err(Failure::EpochChanged(_)) => {
                    return Err(ClientError::Protocol(
                        "Info answered with EpochChanged".into(),
                    ));
                }
                Err(Failure::Fatal(e)) => return Err(e),
            }
        }
    }

    /// Handles a failed job: reconnect or wait as needed, and check that the epoch is unchanged.
    async fn recover(&mut self, f: Failure, epoch: EpochId) -> Result<(), Interrupt> {
        match f {
            Failure::Transport(r) => {
                self.drop_connection();
                self.fail(&format!("connection lost: {r}"), None).await?;
                let info = self.info().await?;
                if info.epoch != epoch {
                    return Err(Interrupt::Restart);
                }
                Ok(())
            }
            Failure::RetryLater { after, reason } => {
                self.fail(&reason, Some(after)).await?;
                Ok(())
            }
            Failure::EpochChanged(current) => {
                if let Some(e) = current {
                    let e = nayose_table::EpochId::from_bytes(e.0);
                    self.progress
                        .note(&format!("the server is now in epoch {e}"));
                }
                Err(Interrupt::Restart)
            }
            Failure::Fatal(e) => {
                if matches!(e, ClientError::Protocol(_))
                    && let Some(c) = self.conn.take()
                {
                    // wire.md: a peer that broke the protocol is told so with 0x1.
                    c.close_with(nayose_wire::CloseCode::ProtocolViolation);
                }
                Err(Interrupt::Fatal(e))
            }
        }
    }

    /// Evaluates every input (canonical number encodings) under the epoch's key: pipelined
    /// batches, each proof verified, outputs finalized in input order.
    pub(crate) async fn evaluate(
        &mut self,
        info: &InfoResponse,
        inputs: Arc<Vec<Zeroizing<Vec<u8>>>>,
    ) -> Result<Outputs, Interrupt> {
        let pk = PublicKey::from_bytes(info.public_key.as_bytes()).map_err(|e| {
            ClientError::Protocol(format!("the epoch's public key is unusable: {e}"))
        })?;
        let size = (self.cfg.batch_size as usize).min(info.max_batch as usize);
        let ranges = Arc::new(batches(inputs.len(), size));
        let mut plan = Plan::new(ranges.len());
        let mut outputs: Outputs = Zeroizing::new(vec![[0u8; 64]; inputs.len()]);
        let depth = self.cfg.pipeline_depth as usize;
        let epoch = info.epoch;
        self.progress
            .start(Phase::Evaluate, Some(inputs.len() as u64));
        while !plan.is_finished() {
            let conn = self.connection().await?;
            type Evaluated = Result<(Vec<nayose_oprf::Output>, u64), Failure>;
            let mut tasks: JoinSet<(usize, Evaluated)> = JoinSet::new();
            let failure = loop {
                while tasks.len() < depth {
                    let Some(job) = plan.take() else { break };
                    let (conn, pk, inputs) = (conn.clone(), pk.clone(), inputs.clone());
                    let range = ranges[job].clone();
                    tasks.spawn(async move {
                        (
                            job,
                            evaluate_batch(conn, epoch, pk, inputs, range, job).await,
                        )
                    });
                }
                match tasks.join_next().await {
                    None => break None,
                    Some(Ok((job, Ok((outs, requests))))) => {
                        if plan.complete(job) {
                            let range = ranges[job].clone();
                            for (slot, o) in outputs[range.clone()].iter_mut().zip(&outs) {
                                slot.copy_from_slice(o.as_bytes());
                            }
                            self.stats.evaluate_requests += requests;
                            self.progressed();
                            self.progress.advance(Phase::Evaluate, range.len() as u64);
                        }
                    }
                    Some(Ok((_, Err(f)))) => break Some(f),
                    Some(Err(e)) => {
                        break Some(Failure::Fatal(ClientError::Protocol(format!(
                            "an Evaluate task failed: {e}"
                        ))));
                    }
                }
            };
            tasks.abort_all();
            plan.requeue_in_flight();
            if let Some(f) = failure {
                self.recover(f, epoch).await?;
            }
        }
        self.progress.finish(Phase::Evaluate);
        Ok(outputs)
    }

    /// Full mode: the whole table from the cache or downloaded (resuming from the last entry
    /// received after a reconnect), matched into `matcher`. Returns whether the cache was used.
    pub(crate) async fn fetch_full(
        &mut self,
        info: &InfoResponse,
        matcher: &mut Matcher,
        outputs: &Outputs,
    ) -> Result<bool, Interrupt> {
        let total = info.table_entries;
        let epoch = info.epoch;
        let key = CacheKey {
            server_name: self.cfg.server_name.clone(),
            client_id: self.client_id.as_str().to_owned(),
            epoch,
            public_key: info.public_key,
        };
        self.progress.start(Phase::Fetch, Some(total));
        if let Some(root) = &self.cfg.cache_dir {
            let replayed = cache::replay(root, &key, total, |block| {
                self.progress.advance(Phase::Fetch, block.len() as u64);
                matcher.absorb(block).map(|_| ()).map_err(|e| e.to_string())
            });
            match replayed {
                Ok(()) => {
                    self.progress.finish(Phase::Fetch);
                    return Ok(true);
                }
                Err(CacheMiss::Absent) => {}
                Err(CacheMiss::Invalid(why) | CacheMiss::Consumer(why)) => {
                    self.progress
                        .note(&format!("table cache not used ({why}); downloading"));
                    *matcher = fresh_matcher(&self.client_id, epoch, outputs);
                    self.progress.start(Phase::Fetch, Some(total));
                }
            }
        }
        let mut writer = match &self.cfg.cache_dir {
            Some(root) => match CacheWriter::create(root, &key, total) {
                Ok(w) => Some(w),
                Err(e) => {
                    self.progress.note(&format!(
                        "table cache disabled for this run: cannot write under {}: {e}",
                        root.display()
                    ));
                    None
                }
            },
            None => None,
        };
        let mut offset: u64 = 0;
        loop {
            let conn = self.connection().await?;
            let request = Request::FetchAll(FetchAllRequest { epoch, offset });
            let result: Result<(), Failure> = async {
                let mut stream = conn.send(&request).await?;
                loop {
                    match stream.next(&request).await? {
                        Some(Response::TableChunk(chunk)) => {
                            if chunk.epoch != epoch
                                || chunk.offset != offset
                                || chunk.total != total
                            {
                                return Err(protocol(format!(
                                    "TableChunk for offset {} of {} entries (epoch {}) while \
                                     expecting offset {offset} of {total} (epoch {epoch})",
                                    chunk.offset, chunk.total, chunk.epoch
                                )));
                            }
                            let entries = chunk.entries.into_vec();
                            if entries.is_empty() && offset < total {
                                // An empty chunk before the end makes no progress: a server
                                // sending only those would stall the run forever.
                                return Err(protocol(format!(
                                    "empty TableChunk at entry {offset} of {total}"
                                )));
                            }
                            let converted: Vec<_> = entries
                                .iter()
                                .map(|e| {
                                    (
                                        nayose_table::Tag(e.tag.0),
                                        nayose_table::EncryptedLabel(e.label.0),
                                    )
                                })
                                .collect();
                            matcher.absorb(&converted).map_err(|e| {
                                protocol(format!("table chunk at entry {offset}: {e}"))
                            })?;
                            if let Some(Err(e)) = writer.as_mut().map(|w| w.append(&entries)) {
                                self.progress
                                    .note(&format!("table cache disabled for this run: {e}"));
                                writer = None;
                            }
                            offset += entries.len() as u64;
                            self.stats.entries_received += entries.len() as u64;
                            self.progressed();
                            self.progress.advance(Phase::Fetch, entries.len() as u64);
                        }
                        Some(Response::TableEnd(end)) => {
                            if end.epoch != epoch || end.total != total || offset != total {
                                return Err(protocol(format!(
                                    "TableEnd after {offset} of {total} entries (it says {})",
                                    end.total
                                )));
                            }
                            stream.expect_end(&request).await?;
                            return Ok(());
                        }
                        Some(other) => {
                            return Err(protocol(format!(
                                "FetchAll answered with {}",
                                other.name()
                            )));
                        }
                        None => {
                            return Err(Failure::Transport(format!(
                                "the table download stopped at entry {offset} of {total}"
                            )));
                        }
                    }
                }
            }
            .await;
            match result {
                Ok(()) => break,
                Err(Failure::Fatal(ClientError::Server {
                    code: ErrorCode::OffsetOutOfRange,
                    message,
                    ..
                })) => {
                    // flows.md §3.5: discard what was downloaded and start again from 0.
                    self.fail(
                        &format!("the server refused the download offset {offset}: {message}"),
                        None,
                    )
                    .await?;
                    *matcher = fresh_matcher(&self.client_id, epoch, outputs);
                    offset = 0;
                    let had_writer = writer.take().is_some(); // removes the partial file
                    writer = match (had_writer, &self.cfg.cache_dir) {
                        (true, Some(root)) => CacheWriter::create(root, &key, total).ok(),
                        _ => None,
                    };
                    self.progress.start(Phase::Fetch, Some(total));
                }
                Err(f) => self.recover(f, epoch).await?,
            }
        }
        if let Some(Err(e)) = writer.map(CacheWriter::finish) {
            self.progress
                .note(&format!("the table cache could not be saved: {e}"));
        }
        self.progress.finish(Phase::Fetch);
        Ok(false)
    }

    /// k-anon mode: the prefix ranges of the client's tags at `L = min(max_prefix_bits of
    /// Info, the client's cap)`, pipelined, each checked (epoch, prefix, size, order) and
    /// matched.
    pub(crate) async fn fetch_ranges(
        &mut self,
        info: &InfoResponse,
        matcher: &mut Matcher,
    ) -> Result<RangeOutcome, Interrupt> {
        let epoch = info.epoch;
        let Some(offered) = info.max_prefix_bits else {
            return Ok(RangeOutcome::UseFull(
                "the server does not offer k-anon mode for this epoch".into(),
            ));
        };
        let bits = offered.min(self.cfg.max_prefix_bits);
        let prefixes = matcher
            .prefixes(bits)
            .map_err(|e| ClientError::Protocol(format!("prefix length {bits}: {e}")))?;
        // flows.md §3.3: with more than half of all ranges needed, k-anon costs about as much
        // as the full table and reveals D prefixes besides.
        if bits < 63 && prefixes.len() as u128 > (1u128 << bits) / 2 {
            return Ok(RangeOutcome::UseFull(format!(
                "{} distinct {bits}-bit prefixes are more than half of all {} ranges",
                prefixes.len(),
                1u128 << bits
            )));
        }
        let wire: Arc<Vec<TagPrefix>> = Arc::new(
            prefixes
                .iter()
                .map(|p| {
                    let mut v = [0u8; nayose_wire::PREFIX_LEN];
                    v[..p.as_bytes().len()].copy_from_slice(p.as_bytes());
                    TagPrefix::new(bits, v)
                })
                .collect::<Result<_, _>>()
                .map_err(|e| ClientError::Protocol(format!("prefix length {bits}: {e}")))?,
        );
        let min_entries = info.min_range_entries as usize;
        let mut waiting: BTreeMap<usize, Vec<nayose_wire::Entry>> = BTreeMap::new();
        let mut next = 0usize;
        let mut plan = Plan::new(prefixes.len());
        let depth = self.cfg.pipeline_depth as usize;
        self.progress
            .start(Phase::Fetch, Some(prefixes.len() as u64));
        while !plan.is_finished() {
            let conn = self.connection().await?;
            let mut tasks: JoinSet<(usize, Result<Vec<nayose_wire::Entry>, Failure>)> =
                JoinSet::new();
            let failure = loop {
                while tasks.len() < depth {
                    let Some(job) = plan.take() else { break };
                    let (conn, wire) = (conn.clone(), wire.clone());
                    self.stats.ranges_requested += 1;
                    tasks.spawn(async move { (job, fetch_range(conn, epoch, wire[job]).await) });
                }
                match tasks.join_next().await {
                    None => break None,
                    Some(Ok((job, Ok(entries)))) => {
                        if !plan.complete(job) {
                            continue;
                        }
                        if entries.len() < min_entries {
                            break Some(protocol(format!(
                                "range {} holds {} entries, fewer than the minimum {min_entries}",
                                prefixes[job],
                                entries.len()
                            )));
                        }
                        self.stats.entries_received += entries.len() as u64;
                        self.stats.ranges_fetched += 1;
                        self.progressed();
                        self.progress.advance(Phase::Fetch, 1);
                        // The matcher takes ranges in ascending prefix order (table order);
                        // responses arrive in any order, so later ones wait here.
                        waiting.insert(job, entries);
                        if let Err(f) = absorb_ready(matcher, &prefixes, &mut waiting, &mut next) {
                            break Some(f);
                        }
                    }
                    Some(Ok((_, Err(f)))) => break Some(f),
                    Some(Err(e)) => {
                        break Some(Failure::Fatal(ClientError::Protocol(format!(
                            "a FetchRange task failed: {e}"
                        ))));
                    }
                }
            };
            tasks.abort_all();
            plan.requeue_in_flight();
            match failure {
                None => {}
                Some(Failure::Fatal(ClientError::Server {
                    code: c @ (ErrorCode::RangeTooLarge | ErrorCode::ModeNotOffered),
                    message,
                    ..
                })) => {
                    self.progress.finish(Phase::Fetch);
                    return Ok(RangeOutcome::UseFull(format!(
                        "the server answered FetchRange with {c}: {message}"
                    )));
                }
                Some(f) => self.recover(f, epoch).await?,
            }
        }
        self.progress.finish(Phase::Fetch);
        Ok(RangeOutcome::Done(bits))
    }

    /// Deletes the full-mode cache of `info`'s epoch (after the server left that epoch).
    pub(crate) fn discard_cache(&self, info: &InfoResponse) {
        if let Some(root) = &self.cfg.cache_dir {
            let key = CacheKey {
                server_name: self.cfg.server_name.clone(),
                client_id: self.client_id.as_str().to_owned(),
                epoch: info.epoch,
                public_key: info.public_key,
            };
            let _ = std::fs::remove_file(key.path(root));
        }
    }

    /// Closes the connection and lets the endpoint send the close (bounded wait).
    pub(crate) async fn shutdown(&mut self) {
        self.drop_connection();
        if let Some(e) = self.endpoint.take() {
            let _ = tokio::time::timeout(Duration::from_millis(500), e.wait_idle()).await;
        }
    }
}

/// A matcher over `outputs` for `epoch`.
pub(crate) fn fresh_matcher(client: &ClientId, epoch: EpochId, outputs: &Outputs) -> Matcher {
    Matcher::new(
        client.clone(),
        nayose_table::EpochId::from_bytes(epoch.0),
        &outputs[..],
    )
}

/// One Evaluate round trip: blind (fresh blinds every attempt), send, verify, finalize.
///
/// If the server refuses the batch as too large (its limit shrank since Info), the batch is sent
/// again as smaller requests, halving until accepted (flows.md §3.5). Returns the outputs and
/// the number of Evaluate requests that succeeded.
async fn evaluate_batch(
    conn: Conn,
    epoch: EpochId,
    pk: PublicKey,
    inputs: Arc<Vec<Zeroizing<Vec<u8>>>>,
    range: Range<usize>,
    job: usize,
) -> Result<(Vec<nayose_oprf::Output>, u64), Failure> {
    let mut size = range.len();
    'sizes: loop {
        let mut outputs = Vec::with_capacity(range.len());
        let mut requests = 0;
        for part in batches(range.len(), size) {
            let sub = range.start + part.start..range.start + part.end;
            match evaluate_request(&conn, epoch, &pk, &inputs, sub, job).await {
                Ok(o) => {
                    outputs.extend(o);
                    requests += 1;
                }
                Err(Failure::Fatal(ClientError::Server {
                    code: ErrorCode::BatchTooLarge,
                    ..
                })) if size > 1 => {
                    size = size.div_ceil(2);
                    continue 'sizes;
                }
                Err(f) => return Err(f),
            }
        }
        return Ok((outputs, requests));
    }
}

/// One Evaluate request for `range` of the inputs.
async fn evaluate_request(
    conn: &Conn,
    epoch: EpochId,
    pk: &PublicKey,
    inputs: &Arc<Vec<Zeroizing<Vec<u8>>>>,
    range: Range<usize>,
    job: usize,
) -> Result<Vec<nayose_oprf::Output>, Failure> {
    let pk = pk.clone();
    let blind_inputs = inputs.clone();
    let blind_range = range.clone();
    let batch = tokio::task::spawn_blocking(move || {
        let refs: Vec<&[u8]> = blind_inputs[blind_range]
            .iter()
            .map(|v| v.as_slice())
            .collect();
        ClientBatch::blind(Mode::Voprf, &refs, &mut rand::rng())
    })
    .await
    .map_err(|e| protocol(format!("blinding task failed: {e}")))?
    .map_err(|e| protocol(format!("blinding batch {job}: {e}")))?;
    let elements = ElementBatch::from_arrays(batch.blinded_elements())
        .map_err(|e| protocol(format!("batch {job}: {e}")))?;
    let request = Request::Evaluate(EvaluateRequest { epoch, elements });
    let response = conn.call(&request).await?;
    let Response::Evaluated(ev) = response else {
        return Err(protocol(format!(
            "Evaluate answered with {}",
            response.name()
        )));
    };
    if ev.epoch != epoch {
        return Err(protocol(format!(
            "Evaluate for epoch {epoch} answered for epoch {}",
            ev.epoch
        )));
    }
    if ev.elements.len() != range.len() {
        return Err(protocol(format!(
            "Evaluate batch {job} of {} elements answered with {}",
            range.len(),
            ev.elements.len()
        )));
    }
    let evaluated = ev.elements.to_arrays();
    let proof = ev.proof.0;
    tokio::task::spawn_blocking(move || {
        batch
            .verify(&pk, &evaluated, &proof)
            .map(|v| v.finalize())
            .map_err(|e| match e {
                OprfError::ProofInvalid => Failure::Fatal(ClientError::ProofInvalid {
                    batch: job,
                    epoch: nayose_table::EpochId::from_bytes(epoch.0).to_string(),
                }),
                other => protocol(format!(
                    "Evaluate batch {job}: the evaluated elements are invalid: {other}"
                )),
            })
    })
    .await
    .map_err(|e| protocol(format!("verification task failed: {e}")))?
}

/// Absorbs the waiting ranges that continue the ascending prefix order.
fn absorb_ready(
    matcher: &mut Matcher,
    prefixes: &[nayose_table::TagPrefix],
    waiting: &mut BTreeMap<usize, Vec<nayose_wire::Entry>>,
    next: &mut usize,
) -> Result<(), Failure> {
    while let Some(entries) = waiting.remove(next) {
        let converted: Vec<_> = entries
            .iter()
            .map(|e| {
                (
                    nayose_table::Tag(e.tag.0),
                    nayose_table::EncryptedLabel(e.label.0),
                )
            })
            .collect();
        matcher
            .absorb_range(&prefixes[*next], &converted)
            .map_err(|e| protocol(format!("range {}: {e}", prefixes[*next])))?;
        *next += 1;
    }
    Ok(())
}

/// One FetchRange round trip.
async fn fetch_range(
    conn: Conn,
    epoch: EpochId,
    prefix: TagPrefix,
) -> Result<Vec<nayose_wire::Entry>, Failure> {
    let request = Request::FetchRange(FetchRangeRequest { epoch, prefix });
    let response = conn.call(&request).await?;
    let Response::Range(r) = response else {
        return Err(protocol(format!(
            "FetchRange answered with {}",
            response.name()
        )));
    };
    if r.epoch != epoch || r.prefix != prefix {
        return Err(protocol(format!(
            "FetchRange {prefix:?} (epoch {epoch}) answered for {:?} (epoch {})",
            r.prefix, r.epoch
        )));
    }
    Ok(r.entries.into_vec())
}
