//! Signed announcements on the server side (protocol-spec/announcements.md §6): creating the
//! management body's Ed25519 key pair, signing the statements of the current key period and
//! of its epochs still on disk, and loading the statements that match the served epoch.
//!
//! ```text
//!   DATA_DIR/announcements/                     0700
//!     keyperiod-<20-digit key period number>.stmt   statement ‖ signature, 160 bytes
//!     epoch-<20-digit epoch number>.stmt             statement ‖ signature, 204 bytes
//! ```
//!
//! Invariants: signing reads only public facts (`current` and each epoch's `manifest.toml`),
//! never the OPRF key or the label master key; the signing key file must be owner-only, its
//! bytes are zeroized after use and never printed; a statement file always holds exactly the
//! signed bytes; the service serves statements only when their facts equal the served epoch's
//! (it never needs, and never checks, the signature).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nayose_proto::announce::{
    AnnouncementKey, AnnouncementSigner, Body, EpochFacts, Statement, Validity, parse_hex32,
};
use nayose_table::KeyPeriodId;
use nayose_wire::{Announcement, SignedEpochStatement, SignedKeyPeriodStatement};
use tracing::warn;
use zeroize::Zeroizing;

use crate::epoch::{Epoch, Manifest, published_epochs, read_current, read_manifest};
use crate::error::ServerError;
use crate::fsutil::{atomic_write, create_dir_private, create_new_private, read_secret};
use crate::layout::{DataDir, parse_epoch_dir_name};

/// Seconds per day.
const DAY: u64 = 86_400;
/// Default validity of a statement, in days.
pub const DEFAULT_VALID_DAYS: u32 = 400;

fn dir(data: &DataDir) -> PathBuf {
    data.root().join("announcements")
}

fn key_period_file(data: &DataDir, number: u64) -> PathBuf {
    dir(data).join(format!("keyperiod-{number:020}.stmt"))
}

fn epoch_file(data: &DataDir, number: u32) -> PathBuf {
    dir(data).join(format!("epoch-{number:020}.stmt"))
}

fn announce_error(e: impl std::fmt::Display) -> ServerError {
    ServerError::Announce(e.to_string())
}

/// Creates a new announcement key pair: the private key (the 32-byte seed as 64 hex digits and
/// a newline) in `out`, created owner-only and never overwritten, and the public key (64 hex
/// digits) in `out` + `.pub`. Returns the public key.
pub fn keygen_announce(out: &Path) -> Result<AnnouncementKey, ServerError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    rand::Rng::fill(&mut rand::rng(), &mut seed[..]);
    let signer = AnnouncementSigner::from_seed(&seed).map_err(announce_error)?;
    let mut text = Zeroizing::new(String::with_capacity(65));
    for b in seed.iter() {
        text.push_str(&format!("{b:02x}"));
    }
    text.push('\n');
    let mut f = create_new_private(out)?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(ServerError::io("cannot write", out))?;
    let public = signer.public().clone();
    let pub_path = public_key_path(out);
    fs::write(&pub_path, format!("{}\n", public.to_hex()))
        .map_err(ServerError::io("cannot write", &pub_path))?;
    Ok(public)
}

/// Where [`keygen_announce`] writes the public key of the private key file `out`.
pub fn public_key_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Reads an announcement signing key file (owner-only, 64 hex digits).
pub fn read_signing_key(path: &Path) -> Result<AnnouncementSigner, ServerError> {
    let bytes = read_secret(path)?;
    let bad = |reason: &str| ServerError::BadKeyFile {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("it is not text"))?;
    let seed = Zeroizing::new(parse_hex32(text.trim()).ok_or_else(|| {
        bad("an announcement signing key is 64 hex digits (made by `nayose server keygen-announce`)")
    })?);
    AnnouncementSigner::from_seed(&seed).map_err(|e| bad(&e.to_string()))
}

/// What [`announce`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceReport {
    /// The signing key's id (16 hex digits).
    pub key_id: String,
    /// The key period announced, as displayed.
    pub key_period: String,
    /// The current epoch.
    pub epoch: u32,
    /// Statement files written (signed now).
    pub written: Vec<PathBuf>,
    /// Statement files already valid and kept.
    pub kept: Vec<PathBuf>,
}

fn hex_field<const N: usize>(m: &Manifest, field: &str, s: &str) -> Result<[u8; N], ServerError> {
    hex::decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| {
            announce_error(format!(
                "the manifest of epoch {} has an invalid {field}",
                m.number
            ))
        })
}

fn epoch_facts(m: &Manifest) -> Result<EpochFacts, ServerError> {
    Ok(EpochFacts {
        key_period: hex_field(m, "key_period_id", &m.key_period_id)?,
        epoch: m.number,
        table_entries: m.entries,
        table_digest: hex_field(m, "digest", &m.digest)?,
        upsert_chain: hex_field(m, "upsert_chain", &m.upsert_chain)?,
    })
}

/// Whether the statement in `path` can stay: it verifies under `signer`, states `wanted` and
/// stays valid past the renewal point.
fn keep(
    path: &Path,
    signer: &AnnouncementSigner,
    wanted: &Body,
    kp: [u8; 16],
    renew_at: u64,
) -> bool {
    let Ok(bytes) = fs::read(path) else {
        return false;
    };
    let now = renew_at; // valid now and still at the renewal point: checked at the later time
    match nayose_proto::announce::verify(std::slice::from_ref(signer.public()), &bytes, now) {
        Ok(s) => s.body == *wanted && s.key_period == kp,
        Err(_) => false,
    }
}

/// Signs the statements of the current key period and of every epoch of it still on disk into
/// `DATA_DIR/announcements/` (announcements.md §6). A statement already there is kept when it
/// verifies under `signer`, states the same facts and is valid for more than a tenth of
/// `valid_days` after `now`; any other is signed again, valid from `now` − 1 hour for
/// `valid_days` days. Reads only `current` and the manifests.
pub fn announce(
    data_dir: &Path,
    signer: &AnnouncementSigner,
    valid_days: u32,
    now: u64,
) -> Result<AnnounceReport, ServerError> {
    if valid_days == 0 {
        return Err(announce_error("--valid-days must be at least 1"));
    }
    let data = DataDir::new(data_dir);
    let Some(current) = read_current(&data)? else {
        return Err(ServerError::NoEpoch {
            data_dir: data_dir.to_owned(),
        });
    };
    let number =
        parse_epoch_dir_name(&current).ok_or_else(|| announce_error("`current` names no epoch"))?;
    let m = read_manifest(&data, number)?;
    let kp: [u8; 16] = hex_field(&m, "key_period_id", &m.key_period_id)?;
    let pk: [u8; 32] = hex_field(&m, "public_key", &m.public_key)?;
    let kp_id = KeyPeriodId::from_bytes(kp);
    if kp_id.number() != m.key_period || !kp_id.matches_public_key(&pk) {
        return Err(announce_error(format!(
            "the manifest of epoch {number} names key period {kp_id}, which does not belong to \
             its public key or number; the data directory is damaged"
        )));
    }
    let span = u64::from(valid_days) * DAY;
    let validity = Validity {
        not_before: now.saturating_sub(3600),
        not_after: now.saturating_add(span),
    };
    let renew_at = now.saturating_add(span / 10);
    create_dir_private(&dir(&data))?;
    let mut report = AnnounceReport {
        key_id: signer.public().id_hex(),
        key_period: kp_id.to_string(),
        epoch: number,
        written: Vec::new(),
        kept: Vec::new(),
    };
    let path = key_period_file(&data, m.key_period);
    let body = Body::KeyPeriod { public_key: pk };
    if keep(&path, signer, &body, kp, renew_at) {
        report.kept.push(path);
    } else {
        let s = signer
            .sign_key_period(validity, kp, pk)
            .map_err(announce_error)?;
        atomic_write(&path, s.as_bytes())?;
        report.written.push(path);
    }
    for e in published_epochs(&data)? {
        let em = read_manifest(&data, e)?;
        if em.key_period_id != m.key_period_id {
            continue; // an epoch of an earlier key period, never served again
        }
        let facts = epoch_facts(&em)?;
        let path = epoch_file(&data, e);
        if keep(&path, signer, &Body::Epoch(facts), kp, renew_at) {
            report.kept.push(path);
        } else {
            let s = signer.sign_epoch(validity, facts).map_err(announce_error)?;
            atomic_write(&path, s.as_bytes())?;
            report.written.push(path);
        }
    }
    Ok(report)
}

/// The statements of `epoch`, if both files exist and state exactly its facts.
fn load(data: &DataDir, epoch: &Epoch) -> Result<Announcement, String> {
    let kp = epoch.key_period();
    let read = |p: PathBuf| fs::read(&p).map_err(|e| format!("{}: {e}", p.display()));
    let k = read(key_period_file(data, kp.number()))?;
    let e = read(epoch_file(data, epoch.number()))?;
    let k: [u8; 160] = k
        .try_into()
        .map_err(|_| "the key period statement file is not 160 bytes".to_owned())?;
    let e: [u8; 204] = e
        .try_into()
        .map_err(|_| "the epoch statement file is not 204 bytes".to_owned())?;
    let ks = Statement::parse(&k[..96]).map_err(|x| x.to_string())?;
    let es = Statement::parse(&e[..140]).map_err(|x| x.to_string())?;
    let want_k = Body::KeyPeriod {
        public_key: epoch.public_key(),
    };
    let want_e = Body::Epoch(EpochFacts {
        key_period: kp.to_bytes(),
        epoch: epoch.number(),
        table_entries: epoch.len() as u64,
        table_digest: epoch.digest().0,
        upsert_chain: epoch.chain().0,
    });
    if ks.key_period != kp.to_bytes() || ks.body != want_k {
        return Err(format!(
            "the key period statement does not state key period {kp} with this server's key"
        ));
    }
    if es.body != want_e {
        return Err(format!(
            "the epoch statement does not state epoch {}'s table (entries, digest, upsert chain)",
            epoch.number()
        ));
    }
    Ok(Announcement {
        key_period_statement: SignedKeyPeriodStatement(k),
        epoch_statement: SignedEpochStatement(e),
    })
}

/// Modification time and length of a file, to notice that it was replaced.
type Stamp = Option<(std::time::SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// The statements of one epoch as loaded, with the stamps of their files.
#[derive(Debug)]
struct Loaded {
    epoch: u32,
    key_period: [u8; 16],
    stamps: [Stamp; 2],
    announcement: Announcement,
}

/// The service's statements of the served epoch: loaded when the epoch goes live, and again
/// whenever their files change (cheaply: two `stat`s per poll), so `announce` can run after the
/// epoch is live and a re-signed statement replaces the old one without a restart.
#[derive(Debug, Default)]
pub(crate) struct AnnouncementCache {
    loaded: Mutex<Option<Loaded>>,
    /// The epoch and file stamps a missing or mismatching announcement was last reported for.
    warned: Mutex<Option<(u32, [Stamp; 2])>>,
}

impl AnnouncementCache {
    /// The statements of `epoch`, if loaded.
    pub(crate) fn get(&self, epoch: &Epoch) -> Option<Announcement> {
        let loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        loaded
            .as_ref()
            .filter(|l| l.epoch == epoch.number() && l.key_period == epoch.key_period().to_bytes())
            .map(|l| l.announcement)
    }

    /// Loads the statements of `epoch` unless the loaded ones are its and their files are
    /// unchanged; warns once per epoch and file state when they are missing or do not match
    /// (and then serves none).
    pub(crate) fn refresh(&self, data: &DataDir, epoch: &Epoch) {
        let stamps = [
            stamp(&key_period_file(data, epoch.key_period().number())),
            stamp(&epoch_file(data, epoch.number())),
        ];
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.as_ref().is_some_and(|l| {
            l.epoch == epoch.number()
                && l.key_period == epoch.key_period().to_bytes()
                && l.stamps == stamps
        }) {
            return;
        }
        match load(data, epoch) {
            Ok(announcement) => {
                *loaded = Some(Loaded {
                    epoch: epoch.number(),
                    key_period: epoch.key_period().to_bytes(),
                    stamps,
                    announcement,
                });
                tracing::info!(
                    epoch = epoch.number(),
                    "the management body's statements of this epoch are served in Info"
                );
            }
            Err(why) => {
                *loaded = None;
                let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
                if *warned != Some((epoch.number(), stamps)) {
                    *warned = Some((epoch.number(), stamps));
                    warn!(
                        epoch = epoch.number(),
                        "epoch {} is served without an announcement ({why}); clients that \
                         require announcements refuse this server until `nayose server \
                         announce` has signed it",
                        epoch.number()
                    );
                }
            }
        }
    }
}
