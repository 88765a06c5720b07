//! The link run's steps after a response was routed: Info, server errors, starting and
//! verifying a sync, and matching.

use super::*;

impl LinkCore {
    pub(super) fn on_info(&mut self, id: u64, info: InfoResponse) -> Result<(), ProtoError> {
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

    pub(super) fn restart_key_period(&mut self) {
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

    pub(super) fn on_error(&mut self, id: u64, e: &ErrorResponse) -> Result<(), ProtoError> {
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

    pub(super) fn start_sync(&mut self) -> Result<Action, ProtoError> {
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

    pub(super) fn start_base(&mut self, kp: KeyPeriodId, c: u32) {
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

    pub(super) fn finish_matching(&mut self) -> Result<Action, ProtoError> {
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

    pub(super) fn poll_queued(&mut self) -> Result<Action, ProtoError> {
        Ok(self.actions.pop_front().unwrap_or(Action::Wait))
    }

    pub(super) fn verify(
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
pub(super) fn apply_open(d: &mut DeltaSync) -> Result<(), ProtoError> {
    if let Some((epoch, removed, upserts)) = d.open.take() {
        let c = d
            .state
            .apply_delta(epoch, &removed, &upserts)
            .map_err(|e| violation(format!("the delta of epoch {epoch}: {e}")))?;
        d.counts += c;
    }
    Ok(())
}
