//! Reading the shared state out of PostgreSQL for the operator: `nayose server audit export`
//! and an entity's quota usage (used by the replica tests).

use std::path::Path;

use super::*;

/// `nayose server audit export`: writes the shared audit log of `conn` as
/// `to/audit/audit.log` and `to/audit/audit.head` (one consistent snapshot), for
/// [`crate::verify_audit_with`] to check and to keep as evidence. Returns the head written.
pub async fn export_audit_postgres(conn: &str, to: &Path) -> Result<AuditHead, ServerError> {
    use std::io::Write;
    let (config, target) = parse(conn)?;
    let mut client = connect(&config, &target).await?;
    let err = |action: &'static str| pg_err(&target, action);
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(err("cannot begin a snapshot"))?;
    let row = tx
        .query_one("SELECT seq, link FROM nayose_audit_head WHERE id = 1", &[])
        .await
        .map_err(err("cannot read the audit head"))?;
    let head_seq: i64 = row.try_get(0).map_err(err("cannot read the audit head"))?;
    let head_link: String = row.try_get(1).map_err(err("cannot read the audit head"))?;
    let dir = to.join("audit");
    crate::fsutil::create_dir_private(to)?;
    crate::fsutil::create_dir_private(&dir)?;
    let log = dir.join("audit.log");
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(crate::fsutil::FILE_MODE)
            .open(&log)
            .map_err(ServerError::io("cannot create", &log))?
    };
    let mut out = std::io::BufWriter::new(file);
    let mut after = 0i64;
    loop {
        let rows = tx
            .query(
                "SELECT seq, line FROM nayose_audit WHERE seq > $1 ORDER BY seq LIMIT 10000",
                &[&after],
            )
            .await
            .map_err(err("cannot read the audit records"))?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            after = r.try_get(0).map_err(err("cannot read the audit records"))?;
            let line: String = r.try_get(1).map_err(err("cannot read the audit records"))?;
            out.write_all(line.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .map_err(ServerError::io("cannot write", &log))?;
        }
    }
    let file = out
        .into_inner()
        .map_err(|e| ServerError::io("cannot write", &log)(e.into_error()))?;
    file.sync_all()
        .map_err(ServerError::io("cannot fsync", &log))?;
    let head = AuditHead {
        count: to_u64(head_seq),
        hash: head_link,
    };
    crate::audit::write_head(&dir.join("audit.head"), head.count, &head.hash)?;
    Ok(head)
}

/// The usage of `client` in the shared state of `conn`: (evaluations used on the day of its
/// last charge, evaluations used in its key period), or `None` if it was never charged. For
/// operators and tests.
pub async fn postgres_quota_used(
    conn: &str,
    client: &str,
) -> Result<Option<(u64, u64)>, ServerError> {
    let (config, target) = parse(conn)?;
    let c = connect(&config, &target).await?;
    let err = |e| pg_err(&target, "cannot read the quota")(e);
    let row = c
        .query_opt(
            "SELECT used, key_period_used FROM nayose_quota WHERE client = $1",
            &[&client],
        )
        .await
        .map_err(err)?;
    match row {
        None => Ok(None),
        Some(r) => {
            let used: i64 = r.try_get(0).map_err(err)?;
            let kp: i64 = r.try_get(1).map_err(err)?;
            Ok(Some((to_u64(used), to_u64(kp))))
        }
    }
}
