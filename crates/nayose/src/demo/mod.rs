//! `nayose demo`: the whole system, on loopback, on synthetic data, checked against the ground
//! truth. One command, no arguments needed; exits 0 only if every output row is what it must be.
//!
//! Steps: a development PKI → a synthetic registry and held file → `server build` → the server on
//! 127.0.0.1 (an OS-chosen port) → `client link` → the check; then the registry's next day (new
//! numbers, removed numbers, merged persons) → `server build` of the next epoch (a delta) →
//! `client link` again, which syncs by delta and evaluates nothing → the check again, with the
//! cost of both runs side by side. All files live in a temporary directory that is removed
//! afterwards, unless `--keep DIR` is given.

mod check;
mod synth;

use std::{
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Instant,
};

use anyhow::{Context, Result, bail};
use nayose_client::{ClientConfig, ColumnNames, LinkSummary, link_async};
use nayose_server::{BuildOptions, Server, ServerConfig, build_epoch};

use crate::{cli::DemoArgs, progress};

const CLIENT_ID: &str = "demo-research-db";

fn write_registry(path: &Path, world: &synth::World) -> Result<()> {
    let mut w = csv::Writer::from_path(path)?;
    w.write_record(["person_id", "insurer_number", "symbol", "number", "branch"])?;
    for r in &world.registry {
        w.write_record([&r.person, &r.insurer, &r.symbol, &r.number, &r.branch])?;
    }
    w.flush()?;
    Ok(())
}

fn write_held(path: &Path, world: &synth::World) -> Result<()> {
    let mut w = csv::Writer::from_path(path)?;
    w.write_record(["record_id", "insured_number", "note"])?;
    for h in &world.held {
        w.write_record([&h.record_id, &h.insured_number, &h.note])?;
    }
    w.flush()?;
    Ok(())
}

pub(crate) fn run(args: &DemoArgs) -> Result<ExitCode> {
    if args.persons == 0 || args.held < 10 {
        bail!("--persons must be at least 1 and --held at least 10");
    }
    let temp;
    let dir: PathBuf = match &args.keep {
        Some(d) => {
            fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => {
            temp = tempfile::tempdir().context("creating a temporary directory")?;
            temp.path().to_path_buf()
        }
    };
    let started = Instant::now();
    let say = |msg: String| eprintln!("[{:>6.2}s] {msg}", started.elapsed().as_secs_f64());

    let pki = dir.join("pki");
    nayose_pki::init(&pki, "localhost").context("creating the demo PKI")?;
    let (client_cert, client_key) =
        nayose_pki::issue_client(&pki, CLIENT_ID).context("issuing the demo client certificate")?;
    say(format!("development PKI in {}", pki.display()));

    let mut world = synth::generate(args.seed, args.persons, args.held);
    let registry = dir.join("registry.csv");
    let held = dir.join("held.csv");
    write_registry(&registry, &world)?;
    write_held(&held, &world)?;
    say(format!(
        "synthetic registry: {} numbers of {} persons; held file: {} rows",
        world.registry.len(),
        args.persons,
        world.held.len()
    ));

    let data_dir = dir.join("server");
    let mut build = BuildOptions::new(&data_dir, &registry);
    if progress::enabled(false) {
        build.progress = Some(progress::build_bars());
    }
    let report = build_epoch(&build).context("building the demo epoch")?;
    say(format!(
        "epoch {} built: {} numbers, {} persons, {} conflicts, in {:.2}s",
        report.epoch_number,
        report.numbers,
        report.persons,
        report.conflicts.len(),
        report.total.as_secs_f64()
    ));

    let clients = dir.join("clients.toml");
    fs::write(
        &clients,
        format!("[[client]]\nid = \"{CLIENT_ID}\"\nevaluations_per_day = 100000000\n"),
    )?;
    let server_cfg = ServerConfig {
        data_dir: Some(data_dir.clone()),
        listen: Some("127.0.0.1:0".parse()?),
        cert: Some(pki.join("server.pem")),
        key: Some(pki.join("server.key")),
        client_ca: Some(pki.join(nayose_pki::dir::CLIENT_CA)),
        clients: Some(clients),
        ..ServerConfig::default()
    };
    let output = dir.join("held.linked.csv");
    let client_cfg = |addr: std::net::SocketAddr| ClientConfig {
        server: Some(addr.to_string()),
        server_name: Some("localhost".into()),
        ca: Some(pki.join(nayose_pki::dir::SERVER_CA)),
        cert: Some(client_cert.clone()),
        key: Some(client_key.clone()),
        input: Some(held.clone()),
        output: Some(output.clone()),
        cache_dir: Some(dir.join("cache")),
        columns: Some(ColumnNames {
            combined: Some("insured_number".into()),
            ..Default::default()
        }),
        skip_invalid: Some(true),
        ..ClientConfig::default()
    };

    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let link = |label: &str| -> Result<LinkSummary> {
        rt.block_on(async {
            let server = Server::start(server_cfg.clone())
                .await
                .context("starting the demo server")?;
            say(format!(
                "server listening on {} (QUIC, mutual TLS); {label}",
                server.local_addr()
            ));
            let cfg = client_cfg(server.local_addr());
            let result = if progress::enabled(false) {
                link_async(&cfg, &progress::ClientBars::default()).await
            } else {
                link_async(&cfg, &progress::NotesOnly).await
            };
            server.shutdown().await;
            result.context("the demo client's link run failed")
        })
    };
    let first = link("first run of the client")?;
    say(format!(
        "client linked {} into {}",
        held.display(),
        output.display()
    ));
    eprintln!("\n{first}");
    let first_check = check::check(&output, &world.held)?;
    if !first_check.mismatches.is_empty() {
        return report_mismatches(&first_check);
    }
    say(format!(
        "OK: all {} rows match the ground truth ({} persons in {} groups)",
        first_check.rows, first_check.persons, first_check.groups
    ));

    // The next day: the registry changes, the server publishes a delta epoch, the client syncs.
    let changes = synth::evolve(&mut world, args.seed);
    write_registry(&registry, &world)?;
    let report2 = build_epoch(&build).context("building the demo's second epoch")?;
    say(format!(
        "next day: {} numbers added, {} removed, {} relabelled (persons merged); epoch {} \
         built as a delta: evaluated {} numbers in {:.2}s",
        report2.added,
        report2.removed,
        report2.relabelled,
        report2.epoch_number,
        report2.evaluated,
        report2.total.as_secs_f64()
    ));
    say(format!(
        "(the synthetic registry changed by {} new, {} removed and {} relabelled numbers)",
        changes.added, changes.removed, changes.relabelled
    ));
    let second = link("second run, same held file")?;
    eprintln!("\n{second}");
    eprintln!(
        "\nCost of keeping up: first run received {} bytes and evaluated {} numbers ({}); the \
         run after the next day's epoch received {} bytes ({:.2}% of the first) and evaluated \
         {} ({}).",
        first.bytes_received,
        first.evaluated_numbers,
        sync_text(&first),
        second.bytes_received,
        100.0 * second.bytes_received as f64 / first.bytes_received.max(1) as f64,
        second.evaluated_numbers,
        sync_text(&second)
    );
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"first": first, "second": second}))?
        );
    }

    let report = check::check(&output, &world.held)?;
    eprintln!("\nA few groups (rows the server says are one person, as the entity spelled them):");
    for (label, rows) in &report.examples {
        eprintln!("  {label}");
        for r in rows {
            eprintln!("      {r}");
        }
    }
    if report.mismatches.is_empty() {
        say(format!(
            "OK: after the next day's epoch, all {} rows still match the ground truth ({} \
             persons in {} groups)",
            report.rows, report.persons, report.groups
        ));
        Ok(ExitCode::SUCCESS)
    } else {
        report_mismatches(&report)
    }
}

fn report_mismatches(report: &check::CheckReport) -> Result<ExitCode> {
    eprintln!(
        "\n{} rows do NOT match the ground truth:",
        report.mismatches.len()
    );
    for m in report.mismatches.iter().take(20) {
        eprintln!("  {m}");
    }
    Ok(ExitCode::FAILURE)
}

fn sync_text(s: &LinkSummary) -> String {
    match s.sync.kind.as_str() {
        "delta" => format!(
            "deltas from epoch {} to {}",
            s.sync.from.unwrap_or(0),
            s.sync.to
        ),
        "base" => format!("base download of epoch {}", s.sync.to),
        "current" => "table already current".to_owned(),
        other => other.to_owned(),
    }
}
