//! The shared database's schema and its migration (see the parent module's "Schema").

use tokio_postgres::Client;

use super::{SCHEMA_VERSION, pg_err};
use crate::audit::GENESIS_HASH;
use crate::error::ServerError;

/// The advisory lock under which the schema is created or migrated.
const MIGRATION_LOCK: i64 = 0x6e61_796f_7365_0001;

const SCHEMA_V1: &str = "
CREATE TABLE nayose_quota (
    client            text PRIMARY KEY,
    day               bigint NOT NULL,
    used              bigint NOT NULL CHECK (used >= 0),
    key_period        text NOT NULL,
    key_period_number bigint NOT NULL,
    key_period_used   bigint NOT NULL CHECK (key_period_used >= 0)
);
CREATE TABLE nayose_audit (
    seq  bigint PRIMARY KEY CHECK (seq >= 1),
    line text NOT NULL,
    link text NOT NULL
);
CREATE TABLE nayose_audit_head (
    id   integer PRIMARY KEY CHECK (id = 1),
    seq  bigint NOT NULL,
    link text NOT NULL
);
";

/// Version 2: evaluations per entity and quota day, for the rolling window of the enumeration
/// controls (only the days of the window are kept).
const SCHEMA_V2: &str = "
CREATE TABLE nayose_quota_day (
    client text NOT NULL,
    day    bigint NOT NULL,
    used   bigint NOT NULL CHECK (used >= 0),
    PRIMARY KEY (client, day)
);
";

/// Creates the schema or migrates it to [`SCHEMA_VERSION`], in one transaction under an
/// advisory lock (replicas starting together do it once).
pub(super) async fn migrate(client: &mut Client, target: &str) -> Result<(), ServerError> {
    let err = |action: &'static str| pg_err(target, action);
    let tx = client
        .transaction()
        .await
        .map_err(err("cannot begin the schema migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(err("cannot take the migration lock"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS nayose_schema_version (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(err("cannot create nayose_schema_version"))?;
    let row = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM nayose_schema_version",
            &[],
        )
        .await
        .map_err(err("cannot read the schema version"))?;
    let version: i32 = row
        .try_get(0)
        .map_err(err("cannot read the schema version"))?;
    if version > SCHEMA_VERSION {
        return Err(ServerError::Postgres {
            target: target.to_string(),
            action: "the schema is newer than this server",
            reason: format!(
                "nayose_schema_version is {version}, this server knows up to \
                 {SCHEMA_VERSION}: upgrade this replica"
            ),
        });
    }
    if version < 1 {
        tx.batch_execute(SCHEMA_V1)
            .await
            .map_err(err("cannot create the schema (version 1)"))?;
        tx.execute(
            "INSERT INTO nayose_audit_head (id, seq, link) VALUES (1, 0, $1)",
            &[&GENESIS_HASH],
        )
        .await
        .map_err(err("cannot create the audit head"))?;
        tx.execute(
            "INSERT INTO nayose_schema_version (version) VALUES (1)",
            &[],
        )
        .await
        .map_err(err("cannot record the schema version"))?;
    }
    if version < 2 {
        tx.batch_execute(SCHEMA_V2)
            .await
            .map_err(err("cannot migrate the schema to version 2"))?;
        tx.execute(
            "INSERT INTO nayose_schema_version (version) VALUES (2)",
            &[],
        )
        .await
        .map_err(err("cannot record the schema version"))?;
    }
    tx.commit()
        .await
        .map_err(err("cannot commit the schema migration"))
}
