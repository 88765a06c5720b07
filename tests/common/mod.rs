//! Helpers shared by the tests of the `nayose` binary: a small world of persons and numbers,
//! the PKI and the first epoch, a server child process, and the `client link` arguments.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    dead_code,
    unreachable_pub
)]

use std::{
    collections::HashMap,
    fs,
    io::{BufRead, BufReader},
    net::UdpSocket,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use nayose_number::check_digit;

pub const BIN: &str = env!("CARGO_BIN_EXE_nayose");

pub fn nayose(args: &[&str]) -> Output {
    nayose_env(args, &[])
}

/// `nayose` with `env` set; the locale is C unless `env` sets it, so messages are in English.
pub fn nayose_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("LC_MESSAGES")
        .env("LC_ALL", "C")
        .env("LANG", "C");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run nayose")
}

pub fn ok(args: &[&str]) -> Output {
    let out = nayose(args);
    assert!(
        out.status.success(),
        "nayose {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn insurer(body: &str) -> String {
    format!("{body}{}", check_digit(body.as_bytes()).unwrap())
}

/// A small world: persons with 1–3 numbers under different insurers; the held file spells them
/// in several ways, repeats some and adds numbers the server does not know.
pub struct World {
    pub dir: tempfile::TempDir,
    /// record_id → Some(person) for known numbers, None for unknown ones.
    pub truth: HashMap<String, Option<String>>,
}

impl World {
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    pub fn s(&self, p: &str) -> String {
        self.path(p).to_string_lossy().into_owned()
    }
}

pub fn world(persons: usize) -> World {
    let dir = tempfile::tempdir().unwrap();
    let insurers = [
        insurer("0113001"),
        insurer("0627045"),
        insurer("3113002"),
        insurer("13204"), // 6-digit 国民健康保険
        insurer("3913101"),
    ];
    let mut registry = String::from("person_id,insurer_number,symbol,number,branch\n");
    let mut held = String::from("record_id,insured_number,note\n");
    let mut truth = HashMap::new();
    let mut rec = 0;
    for p in 0..persons {
        let person = format!("P{p:06}");
        for k in 0..(1 + p % 3) {
            let ins = &insurers[(p + k) % insurers.len()];
            let (symbol, number, branch) = if ins.starts_with("39") {
                (String::new(), format!("{:08}", p * 7 + k), String::new())
            } else if ins.len() == 6 {
                (
                    format!("札幌東{}", k + 1),
                    format!("{:06}", p),
                    format!("{:02}", k),
                )
            } else {
                (
                    format!("{:04}", 100 + k),
                    format!("{}", 5000 + p),
                    format!("{:02}", k),
                )
            };
            registry.push_str(&format!("{person},{ins},{symbol},{number},{branch}\n"));
            if p % 2 == 0 || k == 0 {
                let spelled = if ins.starts_with("39") {
                    format!("{ins}-{number}")
                } else if p % 3 == 0 {
                    // Full-width digits and dashes, as typed in Japanese mode.
                    format!("{ins}－{symbol}－{number}{branch}")
                        .chars()
                        .map(|c| {
                            if c.is_ascii_digit() {
                                char::from_u32(c as u32 + 0xFEE0).unwrap()
                            } else {
                                c
                            }
                        })
                        .collect()
                } else {
                    format!("{ins}:{symbol}:{number}:{branch}")
                };
                for _ in 0..(1 + (p % 5 == 0) as usize) {
                    rec += 1;
                    held.push_str(&format!("R{rec},{spelled},note {rec}\n"));
                    truth.insert(format!("R{rec}"), Some(person.clone()));
                }
            }
        }
    }
    for u in 0..(persons / 10).max(1) {
        rec += 1;
        held.push_str(&format!(
            "R{rec},{}:0999:{}:01,unknown\n",
            insurers[0],
            900_000 + u
        ));
        truth.insert(format!("R{rec}"), None);
    }
    fs::write(dir.path().join("registry.csv"), registry).unwrap();
    fs::write(dir.path().join("held.csv"), held).unwrap();
    World { dir, truth }
}

pub fn setup_pki_and_epoch(w: &World, client: &str) {
    ok(&[
        "pki",
        "init",
        "--dir",
        &w.s("pki"),
        "--server-name",
        "localhost",
    ]);
    ok(&["pki", "issue-client", "--dir", &w.s("pki"), "--id", client]);
    fs::write(
        w.path("clients.toml"),
        format!("[[client]]\nid = \"{client}\"\nevaluations_per_day = 1000000\n"),
    )
    .unwrap();
    ok(&[
        "server",
        "build",
        "--data-dir",
        &w.s("server"),
        "--registry",
        &w.s("registry.csv"),
    ]);
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `nayose server serve` child process; killed on drop.
pub struct ServerProc {
    pub child: Child,
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(w: &World, port: u16) -> ServerProc {
    serve_with(w, port, &[])
}

/// `server serve` with the test's paths as flags, plus `extra` arguments (e.g. `--config`).
pub fn serve_with(w: &World, port: u16, extra: &[&str]) -> ServerProc {
    let mut child = Command::new(BIN)
        .args([
            "server",
            "serve",
            "--data-dir",
            &w.s("server"),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--cert",
            &w.s("pki/server.pem"),
            "--key",
            &w.s("pki/server.key"),
            "--client-ca",
            &w.s("pki/client-ca.pem"),
            "--clients",
            &w.s("clients.toml"),
        ])
        .args(extra)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the "listening" line (bounded).
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("server did not start listening");
    ServerProc { child }
}

pub fn link_args<'a>(w: &'a World, port: u16, client: &str, out: &'a str) -> Vec<String> {
    [
        "client",
        "link",
        "--server",
        &format!("127.0.0.1:{port}"),
        "--server-name",
        "localhost",
        "--ca",
        &w.s("pki/server-ca.pem"),
        "--cert",
        &w.s(&format!("pki/clients/{client}.pem")),
        "--key",
        &w.s(&format!("pki/clients/{client}.key")),
        "--input",
        &w.s("held.csv"),
        "--output",
        &w.s(out),
        "--cache-dir",
        &w.s("cache"),
        "--combined-column",
        "insured_number",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub fn run_link(args: &[String]) -> serde_json::Value {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ok(&a);
    serde_json::from_slice(&out.stdout).expect("--json prints the summary")
}

/// Checks an output file against the world's ground truth.
pub fn assert_groups_match(w: &World, out: &str) {
    assert_groups_match_min(w, out, 10);
}

/// As [`assert_groups_match`], requiring at least `min_persons` linked persons.
pub fn assert_groups_match_min(w: &World, out: &str, min_persons: usize) {
    assert_groups_match_text(w, &fs::read_to_string(w.path(out)).unwrap(), min_persons);
}

/// As [`assert_groups_match_min`], on an output already decoded.
pub fn assert_groups_match_text(w: &World, text: &str, min_persons: usize) {
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let h = rdr.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|x| x == n).unwrap();
    let (id, group, status, note) = (
        col("record_id"),
        col("nayose_group"),
        col("nayose_status"),
        col("note"),
    );
    let mut label_person = HashMap::new();
    let mut person_label = HashMap::new();
    let mut rows = 0;
    for r in rdr.records() {
        let r = r.unwrap();
        rows += 1;
        assert!(
            r[note].starts_with("note") || &r[note] == "unknown",
            "carried column intact"
        );
        match &w.truth[&r[id]] {
            Some(person) => {
                assert_eq!(&r[status], "linked", "row {}", &r[id]);
                assert!(r[group].starts_with('g'), "printable label");
                assert_eq!(
                    label_person
                        .entry(r[group].to_string())
                        .or_insert(person.clone()),
                    person
                );
                assert_eq!(
                    person_label
                        .entry(person.clone())
                        .or_insert(r[group].to_string()),
                    &r[group]
                );
            }
            None => {
                assert_eq!(&r[status], "not_found", "row {}", &r[id]);
                assert_eq!(&r[group], "");
            }
        }
    }
    assert_eq!(rows, w.truth.len());
    assert!(person_label.len() >= min_persons);
}

/// `args` with the value of `flag` replaced (or the flag removed when `value` is `None`).
pub fn with_flag(args: &[String], flag: &str, value: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i] == flag {
            if let Some(v) = value {
                out.push(flag.to_owned());
                out.push(v.to_owned());
            }
            i += 2;
        } else {
            out.push(args[i].clone());
            i += 1;
        }
    }
    if let Some(v) = value
        && !args.iter().any(|a| a == flag)
    {
        out.push(flag.to_owned());
        out.push(v.to_owned());
    }
    out
}

/// record_id → nayose_group of an output.
pub fn groups_by_record(path: &PathBuf) -> HashMap<String, String> {
    let mut rdr = csv::Reader::from_path(path).unwrap();
    let h = rdr.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|x| x == n).unwrap();
    let (id, group) = (col("record_id"), col("nayose_group"));
    rdr.records()
        .map(|r| {
            let r = r.unwrap();
            (r[id].to_owned(), r[group].to_owned())
        })
        .collect()
}
