//! The thin driver of a link run: carries out what the link core ([`nayose_proto::LinkCore`])
//! asks — requests on QUIC streams, cache reads and writes, waits — and feeds it every response
//! frame and every transit failure. It makes no protocol decision of its own.
//!
//! Invariants: every request runs on its own stream in its own task; its frames reach the core in
//! stream order; a connection failure is counted once per connection (all streams of a lost
//! connection fail together), so a dropped connection costs one backoff, not one per stream; a
//! cache write completes before the core is polled again (persist before the next step).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nayose_proto::{Action, LinkCore, LinkResult, ProtoError};
use nayose_wire::{Request, Response};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::cache::CacheStore;
use crate::error::ClientError;
use crate::net::{Conn, Failure};
use crate::progress::{Phase, Progress};
use crate::session::Session;

enum Event {
    Frame(Response),
    End,
    Failed(Failure),
}

impl From<ProtoError> for ClientError {
    fn from(e: ProtoError) -> Self {
        match e {
            ProtoError::ProofInvalid => ClientError::ProofInvalid {
                detail: e.to_string(),
            },
            ProtoError::Protocol(m) => ClientError::Protocol(m),
            other => ClientError::Link(other),
        }
    }
}

fn cache_io(what: &str, e: std::io::Error) -> ClientError {
    ClientError::Io {
        path: what.into(),
        source: e,
    }
}

async fn request_task(
    conn: Conn,
    generation: u64,
    id: u64,
    request: Request,
    tx: mpsc::UnboundedSender<(u64, u64, Event)>,
) {
    let send = |ev| {
        let _ = tx.send((id, generation, ev));
    };
    let mut stream = match conn.send(&request).await {
        Ok(s) => s,
        Err(f) => return send(Event::Failed(f)),
    };
    loop {
        match stream.next(&request).await {
            Ok(Some(r)) => {
                let last = r.is_final();
                send(Event::Frame(r));
                if last {
                    return match stream.expect_end(&request).await {
                        Ok(()) => send(Event::End),
                        Err(f) => send(Event::Failed(f)),
                    };
                }
            }
            Ok(None) => {
                return send(Event::Failed(Failure::Transport(format!(
                    "the {} stream ended without its last response",
                    request.name()
                ))));
            }
            Err(f) => return send(Event::Failed(f)),
        }
    }
}

/// Where the caches of a server live; the entity (from the server's Info) picks the
/// directory.
pub(crate) struct CacheRoot<'a> {
    pub(crate) root: Option<&'a std::path::Path>,
    pub(crate) server_name: &'a str,
}

impl CacheRoot<'_> {
    fn of(&self, entity: &str) -> CacheStore {
        CacheStore::new(self.root, self.server_name, entity)
    }
}

/// The caches opened by the core's `LoadCaches` (the first cache action of every run).
fn opened(store: &Option<CacheStore>) -> Result<&CacheStore, ClientError> {
    store.as_ref().ok_or_else(|| {
        ClientError::Protocol("internal: a cache action before the caches were loaded".into())
    })
}

/// Runs `core` to completion over `session`, persisting through the caches of the entity the
/// server names (under `caches`); adds the time spent in each phase (connect, evaluate, fetch)
/// to `times`.
pub(crate) async fn drive(
    session: &mut Session<'_>,
    core: &mut LinkCore,
    caches: &CacheRoot<'_>,
    progress: &dyn Progress,
    times: &mut BTreeMap<Phase, Duration>,
) -> Result<LinkResult, ClientError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut store: Option<CacheStore> = None;
    let mut tasks = JoinSet::new();
    let mut in_flight = 0usize;
    let mut generation = 0u64;
    let mut rng = StdRng::from_os_rng();
    let mut phase: Option<(Phase, Instant)> = None;
    let mut set_phase = |p: Phase,
                         total: Option<u64>,
                         progress: &dyn Progress,
                         times: &mut BTreeMap<Phase, Duration>| {
        if phase.map(|(q, _)| q) != Some(p) {
            if let Some((old, since)) = phase {
                progress.finish(old);
                *times.entry(old).or_default() += since.elapsed();
            }
            progress.start(p, total);
            phase = Some((p, Instant::now()));
        }
    };
    let result: Result<LinkResult, ClientError> = async {
        loop {
            match core.poll_action(&mut rng)? {
                Action::Send { id, request } => {
                    set_phase(
                        match &request {
                            Request::Info => Phase::Connect,
                            Request::Evaluate(_) => Phase::Evaluate,
                            Request::FetchBase(_) | Request::FetchDelta(_) => Phase::Fetch,
                        },
                        core.work_remaining(),
                        progress,
                        times,
                    );
                    if matches!(request, Request::Info)
                        && let Ok(now) =
                            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)
                    {
                        // The validity of announcements is checked against this time.
                        core.on_clock(i64::try_from(now.as_secs()).unwrap_or(i64::MAX));
                    }
                    if matches!(request, Request::Evaluate(_)) {
                        session.stats.evaluate_requests += 1;
                    }
                    let conn = session.connection().await?;
                    in_flight += 1;
                    tasks.spawn(request_task(conn, generation, id, request, tx.clone()));
                }
                Action::LoadCaches { key_period, entity } => {
                    // The caches of the entity the server named (its Info); the same entity
                    // for the whole run (the core refuses a change).
                    let s = store.get_or_insert_with(|| caches.of(entity.as_str()));
                    let (caches, notes) = s.load(key_period);
                    for n in notes {
                        progress.note(&n);
                    }
                    if let Ok(now) =
                        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)
                    {
                        core.on_clock(i64::try_from(now.as_secs()).unwrap_or(i64::MAX));
                    }
                    core.on_caches(caches)?;
                }
                Action::SaveOprf {
                    key_period,
                    entries,
                } => {
                    opened(&store)?
                        .save_oprf(key_period, &entries)
                        .map_err(|e| cache_io("OPRF cache", e))?;
                    progress.advance(Phase::Evaluate, entries.len() as u64);
                }
                Action::AppendPartialBase {
                    key_period,
                    epoch,
                    offset,
                    block,
                } => {
                    session.stats.entries_received += u64::from(block.count);
                    opened(&store)?
                        .append_partial(key_period, epoch, offset, &block)
                        .map_err(|e| cache_io("partial base download", e))?;
                    progress.advance(Phase::Fetch, u64::from(block.count));
                }
                Action::DiscardPartialBase { key_period } => {
                    opened(&store)?.discard_partial(key_period)
                }
                Action::SaveTable { table } => {
                    opened(&store)?
                        .save_table(&table)
                        .map_err(|e| cache_io("table cache", e))?;
                    // The sync was the last request: close before the core matches.
                    session.drop_connection();
                }
                Action::DiscardTable { key_period } => {
                    progress.note(
                        "the cached table did not match the server's digest; downloading it again",
                    );
                    opened(&store)?.discard_table(key_period);
                }
                Action::Backoff(d) => tokio::time::sleep(d.min(Duration::from_secs(60))).await,
                Action::Wait => {
                    if in_flight == 0 {
                        return Err(ClientError::Protocol(
                            "internal: the link core waits with no request in flight".into(),
                        ));
                    }
                    let Some((id, conn_gen, ev)) = rx.recv().await else {
                        return Err(ClientError::Runtime("request tasks ended".into()));
                    };
                    match ev {
                        Event::Frame(r) => {
                            session.progressed();
                            core.on_response(id, r)?;
                        }
                        Event::End => in_flight -= 1,
                        Event::Failed(f) => {
                            in_flight -= 1;
                            match f {
                                Failure::Fatal(e) => return Err(e),
                                Failure::Transport(reason) => {
                                    if conn_gen == generation {
                                        generation += 1;
                                        session.drop_connection();
                                        session
                                            .fail(&format!("connection lost: {reason}"), None)
                                            .await?;
                                    }
                                }
                                Failure::RetryLater { after, reason } => {
                                    if conn_gen == generation {
                                        generation += 1;
                                        session.drop_connection();
                                        session.fail(&reason, Some(after)).await?;
                                    }
                                }
                            }
                            core.on_transit_failure(id);
                        }
                    }
                }
                Action::Done(r) => return Ok(*r),
            }
        }
    }
    .await;
    if let Some((p, since)) = phase {
        progress.finish(p);
        *times.entry(p).or_default() += since.elapsed();
    }
    tasks.abort_all();
    if matches!(result, Err(ClientError::Protocol(_))) {
        session.close_for_violation();
    }
    result
}
