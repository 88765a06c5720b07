//! The state that server replicas share through PostgreSQL: both quotas and the audit log
//! (`postgres` in server.toml). Without that setting the files of `state/` and `audit/` are
//! used, as by one server ([`crate::quota`], [`crate::audit`]).
//!
//! ```text
//!  replica A ──┐                      nayose_quota        one row per entity: day, used,
//!  replica B ──┼── PostgreSQL ──────  nayose_quota_day    key period, used in it; and one
//!  replica C ──┘                      nayose_audit        per entity and quota day of the
//!                                     nayose_audit_head   rolling window; one chain: seq,
//!                                     nayose_schema_version  line, link
//! ```
//!
//! **An Evaluate's charge and its audit record are one transaction.** A replica decides on a
//! quota view it reads ([`PgState::view`]), evaluates the batch in memory, then, before
//! anything is sent, runs one transaction: the entity's row is locked (`SELECT … FOR UPDATE`,
//! after inserting an empty one if it has none), its key-period and window totals are checked
//! against its `hard_cap`, then the charge — one `INSERT … ON CONFLICT DO UPDATE … WHERE`
//! statement that adds n to both counters only if both stay within their limits (checked
//! against the row's newest version, so replicas racing for the last evaluations can never
//! grant more together than the quota or the cap) — and n is added to the day's row of
//! `nayose_quota_day` (rows older than the window are deleted); then the audit record, then
//! COMMIT. Only then is the answer sent. If the charge finds the
//! quota spent (another replica took it since the view was read), nothing is charged or
//! recorded and the client gets `QuotaExhausted`; the evaluated elements are dropped. So in the
//! database the counters and the audit log agree exactly: every evaluation charged is recorded,
//! every recorded evaluation is charged once. A replica that dies before COMMIT charged
//! nothing; one that dies after COMMIT and before its answer left charged a batch the client
//! never received: the client re-sends it (fresh blinds, so no server can tell it from a new
//! batch) and it is charged again (protocol-spec/flows.md §4.2, as with one server).
//!
//! **One audit chain for all replicas.** Every append locks the single row of
//! `nayose_audit_head` (`SELECT … FOR UPDATE`), writes the record with `seq` = head + 1 and
//! `prev` = the head's link, and moves the head in the same transaction; the records of all
//! replicas thus form one chain of the file format ([`crate::audit`]: each `line` is exactly
//! the JSON line the file would hold, `link` its HMAC-SHA256 under the operator's key or its
//! SHA-256). `nayose server audit export` writes it out as `audit/audit.log` and
//! `audit/audit.head`, which `audit verify` checks. One chain (rather than one per replica)
//! keeps a single order and a single head to anchor; the price is that appends are serialised
//! through one row lock, as they are through one file today.
//!
//! **Schema.** Created or migrated at start-up under an advisory lock, in one transaction;
//! `nayose_schema_version` holds the versions applied. A database of a newer version than this
//! server knows is refused.
//!
//! Connections: NoTls only (a Unix socket, loopback, or a trusted network); a small pool of
//! connections, each used by one request at a time. Errors name the host, port, user and
//! database, never the password.

#[cfg(test)]
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use nayose_proto::server::{QuotaView, Totals, quota_day};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};
use tracing::warn;

use crate::audit::{AuditEntry, AuditHead, AuditKey, AuditRecord, GENESIS_HASH, line_hash};
use crate::clock::unix_secs;
use crate::config::ClientLimits;
use crate::error::ServerError;

mod export;
mod schema;
#[cfg(test)]
mod tests;

pub use export::{export_audit_postgres, postgres_quota_used};
use schema::migrate;

/// The schema version this server writes (2: `nayose_quota_day`, the rolling window).
pub(crate) const SCHEMA_VERSION: i32 = 2;
/// Connections kept open per replica.
const POOL_SIZE: usize = 8;

/// The sum of an entity's evaluations over the window of `$3` days ending on day `$2`.
const WINDOW_TOTAL: &str = "SELECT coalesce(sum(used), 0)::bigint FROM nayose_quota_day \
                            WHERE client = $1 AND day > $2::bigint - $3::bigint";

/// The charge: both counters, in one statement, only if both stay within their limits. A new
/// row is inserted only if n fits both limits; an existing row is updated only if its key
/// period is not newer than this one (a late request of an older key period must not reset the
/// newer counter). A row of a later day (a replica whose clock is behind) is charged in that
/// day, never reset. Returns the new usage, or no row when refused.
const CHARGE: &str = "
INSERT INTO nayose_quota AS q (client, day, used, key_period, key_period_number, key_period_used)
SELECT $1::text, $2::bigint, $3::bigint, $4::text, $5::bigint, $3::bigint
 WHERE $3::bigint <= $6::bigint AND $3::bigint <= $7::bigint
ON CONFLICT (client) DO UPDATE SET
    day = GREATEST(q.day, EXCLUDED.day),
    used = CASE WHEN q.day >= EXCLUDED.day THEN q.used ELSE 0 END + EXCLUDED.used,
    key_period = EXCLUDED.key_period,
    key_period_number = EXCLUDED.key_period_number,
    key_period_used = CASE WHEN q.key_period = EXCLUDED.key_period
                           THEN q.key_period_used ELSE 0 END + EXCLUDED.used
 WHERE q.key_period_number <= EXCLUDED.key_period_number
   AND CASE WHEN q.day >= EXCLUDED.day THEN q.used ELSE 0 END + EXCLUDED.used <= $6::bigint
   AND CASE WHEN q.key_period = EXCLUDED.key_period
            THEN q.key_period_used ELSE 0 END + EXCLUDED.used <= $7::bigint
RETURNING used, key_period_used";

/// Host, port, user and database of a connection string (never its password); the string
/// itself if it does not parse (it is then not used, and holds no parsed password either…
/// so only its length is shown).
pub(crate) fn describe_target(conn: &str) -> String {
    match conn.parse::<Config>() {
        Ok(c) => describe(&c),
        Err(_) => format!("an unparsable connection string of {} bytes", conn.len()),
    }
}

fn describe(c: &Config) -> String {
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(s) => s.clone(),
            Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = c.get_ports().iter().map(u16::to_string).collect();
    format!(
        "host={} port={} user={} dbname={}",
        if hosts.is_empty() {
            "(default)".to_string()
        } else {
            hosts.join(",")
        },
        if ports.is_empty() {
            "5432".to_string()
        } else {
            ports.join(",")
        },
        c.get_user().unwrap_or("(default)"),
        c.get_dbname().unwrap_or("(default)")
    )
}

/// The database's message (with its SQLSTATE) or the driver's, never a parameter value.
fn reason(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    match std::error::Error::source(e) {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The number of a key period as displayed (`<number>-<key check>`); 0 for none.
fn key_period_number(key_period: &str) -> i64 {
    key_period
        .split_once('-')
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(0)
}

/// An Evaluate's charge, made with its audit record ([`PgState::append`]).
#[derive(Debug, Clone)]
pub(crate) struct PgCharge {
    pub(crate) client: String,
    pub(crate) n: u64,
    pub(crate) now: SystemTime,
    pub(crate) key_period: String,
    pub(crate) limits: ClientLimits,
}

/// Why a charge was refused (nothing was charged or recorded).
#[derive(Debug, Clone)]
pub(crate) enum ChargeRefused {
    /// The quota is spent (another replica charged since the view was read): the view now.
    Exhausted(QuotaView),
    /// The client's counter already belongs to a newer key period.
    Superseded,
}

/// The error of a failed statement `action` against `target` (host and database, never the
/// password): the one mapping every PostgreSQL call of this module uses.
fn pg_err(
    target: &str,
    action: &'static str,
) -> impl FnOnce(tokio_postgres::Error) -> ServerError + use<> {
    let target = target.to_string();
    move |e| ServerError::Postgres {
        target,
        action,
        reason: reason(&e),
    }
}

/// Connects to `conn` with NoTls; the connection's task ends when the client is dropped.
async fn connect(config: &Config, target: &str) -> Result<Client, ServerError> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(pg_err(target, "cannot connect"))?;
    let target = target.to_string();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            warn!(postgres = %target, "PostgreSQL connection ended: {}", reason(&e));
        }
    });
    Ok(client)
}

fn parse(conn: &str) -> Result<(Config, String), ServerError> {
    let mut config: Config = conn.parse().map_err(|e| ServerError::Postgres {
        target: describe_target(conn),
        action: "cannot parse the connection string",
        reason: format!("{e}; write it as host=... user=... dbname=... (libpq key=value form)"),
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("nayose-server");
    }
    let target = describe(&config);
    Ok((config, target))
}

/// The shared state of a replica: a pool of connections, the audit key, the head last seen.
pub(crate) struct PgState {
    config: Config,
    target: String,
    pool: Mutex<Vec<Client>>,
    permits: Semaphore,
    key: Option<AuditKey>,
    head: Mutex<AuditHead>,
    offset_secs: i64,
    /// Quota days in the rolling window (`enumeration_window_days`).
    window_days: i64,
}

impl std::fmt::Debug for PgState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgState")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// A pooled connection, given back when dropped (unless it was closed).
struct Conn<'a> {
    st: &'a PgState,
    client: Option<Client>,
    _permit: SemaphorePermit<'a>,
}

impl Conn<'_> {
    fn client(&mut self) -> Result<&mut Client, ServerError> {
        self.client
            .as_mut()
            .ok_or_else(|| ServerError::Internal("pooled connection already returned".into()))
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take()
            && !c.is_closed()
        {
            self.st
                .pool
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(c);
        }
    }
}

impl PgState {
    /// Connects, creates or migrates the schema, and checks the shared audit chain's last
    /// record against `key` (the same key on every replica).
    pub(crate) async fn open(
        conn: &str,
        key: Option<AuditKey>,
        utc_offset_minutes: i32,
        window_days: u32,
    ) -> Result<Self, ServerError> {
        let (config, target) = parse(conn)?;
        let mut client = connect(&config, &target).await?;
        migrate(&mut client, &target).await?;
        let st = PgState {
            config,
            target,
            pool: Mutex::new(vec![client]),
            permits: Semaphore::new(POOL_SIZE),
            key,
            head: Mutex::new(AuditHead {
                count: 0,
                hash: GENESIS_HASH.to_string(),
            }),
            offset_secs: i64::from(utc_offset_minutes) * 60,
            window_days: i64::from(window_days.max(1)),
        };
        let head = st.check_chain_end().await?;
        *st.head.lock().unwrap_or_else(|p| p.into_inner()) = head;
        Ok(st)
    }

    /// Host, port, user and database.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    fn err(&self, action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> ServerError {
        pg_err(&self.target, action)
    }

    async fn conn(&self) -> Result<Conn<'_>, ServerError> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ServerError::Internal("PostgreSQL pool closed".into()))?;
        let pooled = loop {
            let c = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match c {
                Some(c) if c.is_closed() => continue,
                other => break other,
            }
        };
        let client = match pooled {
            Some(c) => c,
            None => connect(&self.config, &self.target).await?,
        };
        Ok(Conn {
            st: self,
            client: Some(client),
            _permit: permit,
        })
    }

    /// The head row and the last record: the record must carry this replica's key id (or none
    /// when this replica has no key and the log is unkeyed) and must link to the head's link.
    async fn check_chain_end(&self) -> Result<AuditHead, ServerError> {
        let mut c = self.conn().await?;
        let client = c.client()?;
        let row = client
            .query_one("SELECT seq, link FROM nayose_audit_head WHERE id = 1", &[])
            .await
            .map_err(self.err("cannot read the audit head"))?;
        let seq: i64 = row
            .try_get(0)
            .map_err(self.err("cannot read the audit head"))?;
        let link: String = row
            .try_get(1)
            .map_err(self.err("cannot read the audit head"))?;
        let head = AuditHead {
            count: to_u64(seq),
            hash: link,
        };
        if seq == 0 {
            return Ok(head);
        }
        let bad = |reason: String| ServerError::Postgres {
            target: self.target.clone(),
            action: "the shared audit log cannot be appended to",
            reason,
        };
        let row = client
            .query_opt("SELECT line FROM nayose_audit WHERE seq = $1", &[&seq])
            .await
            .map_err(self.err("cannot read the last audit record"))?
            .ok_or_else(|| {
                bad(format!(
                    "the head names record {seq}, which is not in nayose_audit: records were \
                     removed. Keep the database as evidence (nayose server audit export)"
                ))
            })?;
        let line: String = row
            .try_get(0)
            .map_err(self.err("cannot read the last audit record"))?;
        let rec: AuditRecord = serde_json::from_str(&line)
            .map_err(|e| bad(format!("record {seq} is not a valid record: {e}")))?;
        let computed = match (&self.key, rec.key_id.as_str()) {
            (None, "") => line_hash(line.as_bytes()),
            (None, id) => {
                return Err(bad(format!(
                    "its records are authenticated with audit key {id}: give every replica \
                     that key (audit_key_file)"
                )));
            }
            (Some(k), id) if !id.is_empty() && id != k.id() => {
                return Err(bad(format!(
                    "its records are authenticated with audit key {id}, this replica's \
                     audit_key_file is key {}: every replica needs the same key",
                    k.id()
                )));
            }
            (Some(k), "") => {
                // An unkeyed log continued with a key: allowed (as with the file log).
                let _ = k;
                line_hash(line.as_bytes())
            }
            (Some(k), _) => k.link(line.as_bytes()),
        };
        if computed != head.hash || rec.seq != head.count {
            return Err(bad(format!(
                "record {seq} does not match the head's link: the end of the log was modified. \
                 Keep the database as evidence (nayose server audit export)"
            )));
        }
        Ok(head)
    }

    /// Both quotas of `client` now, and whether its counter belongs to a newer key period
    /// than `key_period` (a charge for `key_period` would then be refused).
    pub(crate) async fn view(
        &self,
        client: &str,
        limits: ClientLimits,
        key_period: &str,
        now: SystemTime,
    ) -> Result<(QuotaView, bool), ServerError> {
        let mut c = self.conn().await?;
        view_on(c.client()?, self, client, limits, key_period, now).await
    }

    /// Appends one record durably (committed); with a charge, charges it in the same
    /// transaction first (see the module doc), filling in the record's quotas before and
    /// after. `Ok(Err(_))`: the charge was refused; nothing was charged or recorded.
    pub(crate) async fn append(
        &self,
        mut e: AuditEntry,
        charge: Option<&PgCharge>,
    ) -> Result<Result<u64, ChargeRefused>, ServerError> {
        let mut c = self.conn().await?;
        let client = c.client()?;
        let tx = client
            .transaction()
            .await
            .map_err(self.err("cannot begin a transaction"))?;
        if let Some(ch) = charge {
            let (day, _) = quota_day(unix_secs(ch.now), self.offset_secs);
            let n = to_i64(ch.n);
            let kpn = key_period_number(&ch.key_period);
            // Lock the entity's row (made empty if it has none): every charge of the entity,
            // from any replica, is serialised from here to COMMIT, so the cap holds exactly.
            tx.execute(
                "INSERT INTO nayose_quota AS q \
                 (client, day, used, key_period, key_period_number, key_period_used) \
                 VALUES ($1, $2, 0, $3, $4, 0) ON CONFLICT (client) DO NOTHING",
                &[&ch.client, &day, &ch.key_period, &kpn],
            )
            .await
            .map_err(self.err("cannot charge the quota"))?;
            let locked = tx
                .query_one(
                    "SELECT key_period, key_period_used FROM nayose_quota \
                     WHERE client = $1 FOR UPDATE",
                    &[&ch.client],
                )
                .await
                .map_err(self.err("cannot charge the quota"))?;
            if let Some(cap) = ch.limits.hard_cap {
                let e = || self.err("cannot charge the quota");
                let row_kp: String = locked.try_get(0).map_err(e())?;
                let row_kp_used: i64 = locked.try_get(1).map_err(e())?;
                let kp_total = if row_kp == ch.key_period {
                    to_u64(row_kp_used)
                } else {
                    0
                };
                let window: i64 = tx
                    .query_one(WINDOW_TOTAL, &[&ch.client, &day, &self.window_days])
                    .await
                    .map_err(e())?
                    .try_get(0)
                    .map_err(e())?;
                if kp_total.saturating_add(ch.n) > cap || to_u64(window).saturating_add(ch.n) > cap
                {
                    drop(tx);
                    let (view, superseded) =
                        view_on(client, self, &ch.client, ch.limits, &ch.key_period, ch.now)
                            .await?;
                    return Ok(Err(if superseded {
                        ChargeRefused::Superseded
                    } else {
                        ChargeRefused::Exhausted(view)
                    }));
                }
            }
            let row = tx
                .query_opt(
                    CHARGE,
                    &[
                        &ch.client,
                        &day,
                        &n,
                        &ch.key_period,
                        &kpn,
                        &to_i64(ch.limits.per_day),
                        &to_i64(ch.limits.per_key_period),
                    ],
                )
                .await
                .map_err(self.err("cannot charge the quota"))?;
            let Some(row) = row else {
                drop(tx);
                let (view, superseded) =
                    view_on(client, self, &ch.client, ch.limits, &ch.key_period, ch.now).await?;
                return Ok(Err(if superseded {
                    ChargeRefused::Superseded
                } else {
                    ChargeRefused::Exhausted(view)
                }));
            };
            tx.execute(
                "INSERT INTO nayose_quota_day AS d (client, day, used) VALUES ($1, $2, $3) \
                 ON CONFLICT (client, day) DO UPDATE SET used = d.used + EXCLUDED.used",
                &[&ch.client, &day, &n],
            )
            .await
            .map_err(self.err("cannot charge the quota"))?;
            tx.execute(
                "DELETE FROM nayose_quota_day WHERE client = $1 AND day <= $2::bigint - $3::bigint",
                &[&ch.client, &day, &self.window_days],
            )
            .await
            .map_err(self.err("cannot charge the quota"))?;
            let used: i64 = row
                .try_get(0)
                .map_err(self.err("cannot charge the quota"))?;
            let kp_used: i64 = row
                .try_get(1)
                .map_err(self.err("cannot charge the quota"))?;
            let left_today = ch.limits.per_day.saturating_sub(to_u64(used));
            let left_kp = ch.limits.per_key_period.saturating_sub(to_u64(kp_used));
            e.quota_after = Some(left_today);
            e.quota_before = Some(left_today + ch.n);
            e.key_period_quota_after = Some(left_kp);
            e.key_period_quota_before = Some(left_kp + ch.n);
        }
        let row = tx
            .query_one(
                "SELECT seq, link FROM nayose_audit_head WHERE id = 1 FOR UPDATE",
                &[],
            )
            .await
            .map_err(self.err("cannot lock the audit head"))?;
        let seq: i64 = row
            .try_get(0)
            .map_err(self.err("cannot lock the audit head"))?;
        let prev: String = row
            .try_get(1)
            .map_err(self.err("cannot lock the audit head"))?;
        let next = seq + 1;
        let rec = AuditRecord {
            seq: to_u64(next),
            prev,
            key_id: self
                .key
                .as_ref()
                .map(|k| k.id().to_string())
                .unwrap_or_default(),
            ..e
        };
        let line = serde_json::to_string(&rec)
            .map_err(|err| ServerError::Internal(format!("audit record encoding: {err}")))?;
        let link = match &self.key {
            Some(k) => k.link(line.as_bytes()),
            None => line_hash(line.as_bytes()),
        };
        tx.execute(
            "INSERT INTO nayose_audit (seq, line, link) VALUES ($1, $2, $3)",
            &[&next, &line, &link],
        )
        .await
        .map_err(self.err("cannot append the audit record"))?;
        tx.execute(
            "UPDATE nayose_audit_head SET seq = $1, link = $2 WHERE id = 1",
            &[&next, &link],
        )
        .await
        .map_err(self.err("cannot move the audit head"))?;
        tx.commit()
            .await
            .map_err(self.err("cannot commit the audit record"))?;
        let mut h = self.head.lock().unwrap_or_else(|p| p.into_inner());
        if rec.seq > h.count {
            *h = AuditHead {
                count: rec.seq,
                hash: link,
            };
        }
        Ok(Ok(rec.seq))
    }

    /// The head as this replica last saw it (its own appends, or start-up).
    pub(crate) fn cached_head(&self) -> AuditHead {
        self.head.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The shared chain's head now.
    pub(crate) async fn head(&self) -> Result<AuditHead, ServerError> {
        let mut c = self.conn().await?;
        let row = c
            .client()?
            .query_one("SELECT seq, link FROM nayose_audit_head WHERE id = 1", &[])
            .await
            .map_err(self.err("cannot read the audit head"))?;
        let seq: i64 = row
            .try_get(0)
            .map_err(self.err("cannot read the audit head"))?;
        let hash: String = row
            .try_get(1)
            .map_err(self.err("cannot read the audit head"))?;
        Ok(AuditHead {
            count: to_u64(seq),
            hash,
        })
    }

    /// The audit key's id, if any.
    pub(crate) fn key_id(&self) -> String {
        self.key
            .as_ref()
            .map(|k| k.id().to_string())
            .unwrap_or_default()
    }
}

async fn view_on(
    client: &Client,
    st: &PgState,
    who: &str,
    limits: ClientLimits,
    key_period: &str,
    now: SystemTime,
) -> Result<(QuotaView, bool), ServerError> {
    let (day, reset_secs) = quota_day(unix_secs(now), st.offset_secs);
    let row = client
        .query_opt(
            "SELECT day, used, key_period, key_period_number, key_period_used \
             FROM nayose_quota WHERE client = $1",
            &[&who],
        )
        .await
        .map_err(st.err("cannot read the quota"))?;
    let (mut used, mut kp_used, mut superseded) = (0u64, 0u64, false);
    if let Some(r) = row {
        let e = || st.err("cannot read the quota");
        let row_day: i64 = r.try_get(0).map_err(e())?;
        let row_used: i64 = r.try_get(1).map_err(e())?;
        let row_kp: String = r.try_get(2).map_err(e())?;
        let row_kpn: i64 = r.try_get(3).map_err(e())?;
        let row_kp_used: i64 = r.try_get(4).map_err(e())?;
        if row_day >= day {
            used = to_u64(row_used);
        }
        if row_kp == key_period {
            kp_used = to_u64(row_kp_used);
        } else {
            superseded = row_kpn > key_period_number(key_period);
        }
    }
    let window: i64 = client
        .query_one(WINDOW_TOTAL, &[&who, &day, &st.window_days])
        .await
        .map_err(st.err("cannot read the quota"))?
        .try_get(0)
        .map_err(st.err("cannot read the quota"))?;
    Ok((
        QuotaView {
            left_today: limits.per_day.saturating_sub(used),
            left_key_period: limits.per_key_period.saturating_sub(kp_used),
            reset_secs,
            totals: Totals {
                key_period: kp_used,
                window: to_u64(window),
                window_days: u32::try_from(st.window_days).unwrap_or(u32::MAX),
            },
            hard_cap: limits.hard_cap,
        },
        superseded,
    ))
}
