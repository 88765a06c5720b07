//! Tests of the shared state against a real PostgreSQL (`NAYOSE_TEST_POSTGRES`, started by
//! `.ci/run`).
#![allow(clippy::unwrap_used)]

use super::*;

/// The PostgreSQL of the tests (`NAYOSE_TEST_POSTGRES`, set by `.ci/run`), with a fresh schema
/// of its own; `None` (and a SKIPPED line) when it is not set outside CI. Under CI a missing
/// PostgreSQL fails the test, so CI never skips silently.
async fn test_database(name: &str) -> Option<String> {
    let Some(base) = std::env::var("NAYOSE_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "NAYOSE_TEST_POSTGRES is not set under CI: .ci/run must start PostgreSQL"
        );
        eprintln!(
            "SKIPPED {name}: NAYOSE_TEST_POSTGRES not set (.ci/run starts PostgreSQL; README \
             \"Tests and CI\" says how to run these tests locally)"
        );
        return None;
    };
    let (config, target) = parse(&base).ok()?;
    let admin = connect(&config, &target).await.ok()?;
    let schema = format!(
        "t_{name}_{}_{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .ok()?;
    Some(format!("{base} options='-c search_path={schema}'"))
}

fn entry(client: &str) -> AuditEntry {
    AuditEntry {
        event: "request".into(),
        time: "2026-01-01T00:00:00Z".into(),
        client: client.into(),
        op: "Evaluate".into(),
        outcome: "ok".into(),
        ..AuditEntry::default()
    }
}

fn charge(n: u64, kp: &str, per_day: u64, per_kp: u64) -> PgCharge {
    PgCharge {
        client: "a".into(),
        n,
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
        key_period: kp.into(),
        limits: ClientLimits::quotas(per_day, per_kp),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hard_cap_holds_across_replicas_and_its_window_across_key_periods() {
    let Some(conn) = test_database("hardcap").await else {
        return;
    };
    let key = || AuditKey::from_bytes(&[7u8; 32]);
    // A window of 3 quota days.
    let (a, b) = tokio::join!(
        PgState::open(&conn, key(), 540, 3),
        PgState::open(&conn, key(), 540, 3)
    );
    let (a, b) = (Arc::new(a.unwrap()), Arc::new(b.unwrap()));
    let capped = |n: u64, kp: &str, day: u64| {
        let mut c = charge(n, kp, 1000, 1000);
        c.limits.hard_cap = Some(40);
        c.now += Duration::from_secs(day * 86_400);
        c
    };
    // 2 × 20 charges of 3 against a cap of 40: exactly 13 are granted (39).
    let mut tasks = Vec::new();
    for i in 0..40 {
        let st = if i % 2 == 0 { a.clone() } else { b.clone() };
        let c = capped(3, "1-aa", 0);
        tasks.push(tokio::spawn(async move {
            st.append(entry("a"), Some(&c)).await.unwrap().is_ok()
        }));
    }
    let mut granted = 0;
    for t in tasks {
        granted += u64::from(t.await.unwrap());
    }
    assert_eq!(granted, 13);
    // A new key period the next day: its own total is 0, but the window still holds the
    // 39 of the day before, so a charge of 3 passes the cap and is refused.
    let c = capped(3, "2-bb", 1);
    let Err(ChargeRefused::Exhausted(v)) = a.append(entry("a"), Some(&c)).await.unwrap() else {
        panic!("past the cap over the window")
    };
    assert_eq!(
        (v.totals.key_period, v.totals.window, v.hard_cap),
        (0, 39, Some(40))
    );
    assert_eq!(
        nayose_proto::server::evaluate_refusal(&v, 3).map(|r| match r {
            nayose_wire::Response::Error(e) => e.code,
            _ => nayose_wire::ErrorCode::Internal,
        }),
        Some(nayose_wire::ErrorCode::HardCapReached)
    );
    // Three days later day 0 has left the window: granted, and the view shows it.
    assert!(
        a.append(entry("a"), Some(&capped(3, "2-bb", 3)))
            .await
            .unwrap()
            .is_ok()
    );
    let (v, _) = b
        .view(
            "a",
            capped(0, "2-bb", 3).limits,
            "2-bb",
            capped(0, "2-bb", 3).now,
        )
        .await
        .unwrap();
    assert_eq!(
        (v.totals.key_period, v.totals.window, v.totals.window_days),
        (3, 3, 3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_charges_from_two_replicas_never_exceed_either_quota() {
    let Some(conn) = test_database("charges").await else {
        return;
    };
    let key = || AuditKey::from_bytes(&[7u8; 32]);
    // Two replicas: two pools of connections, started together (one migration).
    let (a, b) = tokio::join!(
        PgState::open(&conn, key(), 540, 30),
        PgState::open(&conn, key(), 540, 30)
    );
    let (a, b) = (Arc::new(a.unwrap()), Arc::new(b.unwrap()));
    // 2 × 40 charges of 3 against a daily quota of 50: exactly 16 can be granted.
    let mut tasks = Vec::new();
    for i in 0..80 {
        let st = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            st.append(entry("a"), Some(&charge(3, "1-aa", 50, 1000)))
                .await
                .unwrap()
                .is_ok()
        }));
    }
    let mut granted = 0;
    for t in tasks {
        granted += u64::from(t.await.unwrap());
    }
    assert_eq!(granted, 16);
    let used = postgres_quota_used(&conn, "a").await.unwrap();
    assert_eq!(used, Some((48, 48)), "both counters, charged once each");
    // The key-period quota binds the same way (a new day, the same key period).
    let mut next_day = charge(3, "1-aa", 50, 54);
    next_day.now += Duration::from_secs(86_400);
    let mut tasks = Vec::new();
    for i in 0..10 {
        let st = if i % 2 == 0 { a.clone() } else { b.clone() };
        let c = next_day.clone();
        tasks.push(tokio::spawn(async move {
            st.append(entry("a"), Some(&c)).await.unwrap()
        }));
    }
    let mut granted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => granted += 1,
            Err(ChargeRefused::Exhausted(v)) => assert!(v.left_key_period < 3, "{v:?}"),
            Err(ChargeRefused::Superseded) => panic!("same key period"),
        }
    }
    assert_eq!(
        granted, 2,
        "54 - 48 = 6 left in the key period: two charges of 3"
    );
    assert_eq!(
        postgres_quota_used(&conn, "a").await.unwrap(),
        Some((6, 54))
    );
    // A newer key period starts at zero; a late charge of the older one is refused and
    // does not reset it.
    let mut kp2 = charge(5, "2-bb", 50, 100);
    kp2.now = next_day.now;
    assert!(a.append(entry("a"), Some(&kp2)).await.unwrap().is_ok());
    let mut late = next_day.clone();
    late.n = 1;
    assert!(matches!(
        b.append(entry("a"), Some(&late)).await.unwrap(),
        Err(ChargeRefused::Superseded)
    ));
    assert_eq!(
        postgres_quota_used(&conn, "a").await.unwrap(),
        Some((11, 5))
    );
    // Records without a charge (connection events) join the same chain.
    a.append(entry("b"), None).await.unwrap().unwrap();
    // One chain from both replicas: 16 + 2 + 1 + 1 records, verified as the file log is.
    let dir = tempfile::tempdir().unwrap();
    let head = export_audit_postgres(&conn, dir.path()).await.unwrap();
    assert_eq!(head.count, 20);
    let k = key().unwrap();
    let summary = crate::audit::verify_audit_with(dir.path(), Some(&k)).unwrap();
    assert_eq!(summary.records, 20);
    let text = std::fs::read_to_string(dir.path().join("audit/audit.log")).unwrap();
    let charged: u64 = text
        .lines()
        .map(|l| serde_json::from_str::<AuditRecord>(l).unwrap())
        .filter(|r| r.client == "a")
        .filter_map(|r| r.quota_before.zip(r.quota_after).map(|(b, a)| b - a))
        .sum();
    assert_eq!(charged, 48 + 6 + 5, "the records carry exactly the charges");
    // A replica with another key, or none, refuses to append to this chain.
    let other = PgState::open(&conn, AuditKey::from_bytes(&[8u8; 32]), 540, 30)
        .await
        .unwrap_err()
        .to_string();
    assert!(other.contains("same key"), "{other}");
    let none = PgState::open(&conn, None, 540, 30)
        .await
        .unwrap_err()
        .to_string();
    assert!(none.contains("audit_key_file"), "{none}");
    // Start-up is idempotent: the schema stays at version 1.
    let again = PgState::open(&conn, key(), 540, 30).await.unwrap();
    assert_eq!(again.cached_head().count, 20);
    assert!(!again.target().contains("password"));
}

#[test]
fn a_password_never_appears_in_the_description_of_a_connection_string() {
    let d = describe_target("host=/var/run/postgresql user=nayose password=s3cret dbname=q");
    assert!(!d.contains("s3cret"), "{d}");
    assert!(d.contains("user=nayose") && d.contains("dbname=q"), "{d}");
    let d = describe_target("postgresql://nayose:s3cret@db.example:5433/q");
    assert!(!d.contains("s3cret") && d.contains("port=5433"), "{d}");
    let d = describe_target("host=x password='un closed");
    assert!(!d.contains("un closed"), "{d}");
    let dbg = format!(
        "{:?}",
        crate::config::PostgresSetting("host=h password=s3cret".into())
    );
    assert!(!dbg.contains("s3cret"), "{dbg}");
}
