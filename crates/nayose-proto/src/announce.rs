//! Signed announcements (protocol-spec/announcements.md): the management body's Ed25519
//! statements of a key period (key period id ↔ pkS) and of an epoch (epoch, N, digest, upsert
//! chain), their byte layout, signing, and the client's check of an Info against them.
//!
//! ```text
//!   offline signer                         server                 client (this check)
//!   ─────────────                          ──────                 ───────────────────
//!   manifest facts ─▶ statement bytes      files ─▶ Info.announcement ─▶ parse ─▶ key by id
//!                     ─▶ Ed25519 sign ─▶ statement ‖ sig                 ─▶ verify_strict
//!                                                                       ─▶ not_before/after
//!                                                                       ─▶ facts = Info's
//! ```
//!
//! Invariants: a statement is parsed from exactly its fixed length and its every field is
//! checked before use; a signature is verified with `verify_strict` over exactly the bytes that
//! were signed; no clock is read (the caller passes `now`); [`check_info`] accepts an Info only
//! when both statements verify under a trusted key, are valid at `now` and state exactly the
//! Info's key period, pkS, epoch, N, digest and upsert chain. The signing key is zeroized on drop
//! and never printed.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use nayose_table::KeyPeriodId;
use nayose_wire::{InfoResponse, SignedEpochStatement, SignedKeyPeriodStatement};
use sha2::{Digest, Sha512};

use crate::error::ProtoError;

/// `DST_ANNOUNCEMENT`: the first bytes (after their length) of every statement.
pub const DST_ANNOUNCEMENT: &[u8] = b"nayose/2 announcement";
/// `DST_ANNOUNCEMENT_KEY_ID`: derives a key id from an announcement public key.
pub const DST_ANNOUNCEMENT_KEY_ID: &[u8] = b"nayose/2 announcement key id";
/// Seconds by which a client's clock may lag the signer's (applied to `not_before` only).
pub const CLOCK_SKEW_SECS: u64 = 600;
/// A key period statement without its signature.
pub const KEY_PERIOD_STATEMENT_LEN: usize = 96;
/// An epoch statement without its signature.
pub const EPOCH_STATEMENT_LEN: usize = 140;
/// An Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Statement kind of a key period statement.
pub const KIND_KEY_PERIOD: u8 = 1;
/// Statement kind of an epoch statement.
pub const KIND_EPOCH: u8 = 2;

const HEADER_LEN: usize = 64;
const KIND_AT: usize = 2 + DST_ANNOUNCEMENT.len();

/// The 8-byte id of an announcement public key: `H(DST_ANNOUNCEMENT_KEY_ID, A)[0..8]`.
pub fn key_id(public_key: &[u8; 32]) -> [u8; 8] {
    let mut h = Sha512::new();
    h.update((DST_ANNOUNCEMENT_KEY_ID.len() as u16).to_be_bytes());
    h.update(DST_ANNOUNCEMENT_KEY_ID);
    h.update(public_key);
    let d: [u8; 64] = h.finalize().into();
    let mut id = [0u8; 8];
    id.copy_from_slice(&d[..8]);
    id
}

/// Which step of `CheckAnnounced` (announcements.md §5) refused an Info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The Info carries no announcement.
    Unannounced,
    /// A statement's bytes break the layout (length, DST, kind, validity order, key check).
    Malformed,
    /// No trusted key has the key id a statement names.
    UnknownSigner,
    /// The signature does not verify (strictly) under the named key.
    BadSignature,
    /// The statement is not valid at the client's time.
    NotValidNow,
    /// The statement states other facts than the Info.
    Mismatch,
}

impl Fault {
    /// The failure's name in announcements.md §5 and the vectors.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Unannounced => "Unannounced",
            Fault::Malformed => "Malformed",
            Fault::UnknownSigner => "UnknownSigner",
            Fault::BadSignature => "BadSignature",
            Fault::NotValidNow => "NotValidNow",
            Fault::Mismatch => "Mismatch",
        }
    }
}

fn fault(fault: Fault, detail: impl Into<String>) -> ProtoError {
    ProtoError::Announcement {
        fault,
        detail: detail.into(),
    }
}

/// When a statement is valid: `not_before ≤ now + CLOCK_SKEW_SECS` and `now < not_after`
/// (seconds since 1970-01-01 UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First second of validity.
    pub not_before: u64,
    /// First second after validity; greater than `not_before`.
    pub not_after: u64,
}

impl Validity {
    /// Whether a statement with this validity may be used at `now`.
    pub fn covers(&self, now: u64) -> bool {
        self.not_before <= now.saturating_add(CLOCK_SKEW_SECS) && now < self.not_after
    }
}

/// What an epoch statement states (all of it public: an epoch manifest holds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochFacts {
    /// The key period id.
    pub key_period: [u8; 16],
    /// The epoch number (≥ 1).
    pub epoch: u32,
    /// N, the entries of the epoch's table.
    pub table_entries: u64,
    /// The epoch's table digest.
    pub table_digest: [u8; 32],
    /// The epoch's upsert chain.
    pub upsert_chain: [u8; 32],
}

/// The kind-specific part of a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Kind 1: the key period's pkS.
    KeyPeriod {
        /// pkS.
        public_key: [u8; 32],
    },
    /// Kind 2: the epoch's facts (their `key_period` equals the statement's).
    Epoch(EpochFacts),
}

/// A parsed statement (signature not yet checked unless it came from [`verify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statement {
    /// The key id of the signing key.
    pub signer: [u8; 8],
    /// When it is valid.
    pub validity: Validity,
    /// The key period id.
    pub key_period: [u8; 16],
    /// What it states.
    pub body: Body,
}

impl Statement {
    /// The statement's bytes (announcements.md §4): 96 bytes for kind 1, 140 for kind 2.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(EPOCH_STATEMENT_LEN);
        out.extend_from_slice(&(DST_ANNOUNCEMENT.len() as u16).to_be_bytes());
        out.extend_from_slice(DST_ANNOUNCEMENT);
        out.push(match self.body {
            Body::KeyPeriod { .. } => KIND_KEY_PERIOD,
            Body::Epoch(_) => KIND_EPOCH,
        });
        out.extend_from_slice(&self.signer);
        out.extend_from_slice(&self.validity.not_before.to_be_bytes());
        out.extend_from_slice(&self.validity.not_after.to_be_bytes());
        out.extend_from_slice(&self.key_period);
        match &self.body {
            Body::KeyPeriod { public_key } => out.extend_from_slice(public_key),
            Body::Epoch(f) => {
                out.extend_from_slice(&f.epoch.to_be_bytes());
                out.extend_from_slice(&f.table_entries.to_be_bytes());
                out.extend_from_slice(&f.table_digest);
                out.extend_from_slice(&f.upsert_chain);
            }
        }
        out
    }

    /// Parses a statement (without its signature), checking every rule of announcements.md
    /// §4–§5 `Parse`.
    pub fn parse(bytes: &[u8]) -> Result<Statement, ProtoError> {
        let malformed = |what: String| fault(Fault::Malformed, what);
        if bytes.len() < HEADER_LEN {
            return Err(malformed(format!(
                "{} bytes, shorter than a statement",
                bytes.len()
            )));
        }
        let (dst_len, dst) = (&bytes[..2], &bytes[2..KIND_AT]);
        if dst_len != (DST_ANNOUNCEMENT.len() as u16).to_be_bytes() || dst != DST_ANNOUNCEMENT {
            return Err(malformed(
                "it does not start with the nayose/2 announcement prefix".into(),
            ));
        }
        let kind = bytes[KIND_AT];
        let expected_len = match kind {
            KIND_KEY_PERIOD => KEY_PERIOD_STATEMENT_LEN,
            KIND_EPOCH => EPOCH_STATEMENT_LEN,
            other => return Err(malformed(format!("unknown statement kind {other}"))),
        };
        if bytes.len() != expected_len {
            return Err(malformed(format!(
                "a kind {kind} statement is {expected_len} bytes, not {}",
                bytes.len()
            )));
        }
        let signer = arr::<8>(&bytes[24..32]);
        let validity = Validity {
            not_before: u64::from_be_bytes(arr(&bytes[32..40])),
            not_after: u64::from_be_bytes(arr(&bytes[40..48])),
        };
        if validity.not_before >= validity.not_after {
            return Err(malformed(format!(
                "not_before {} is not before not_after {}",
                validity.not_before, validity.not_after
            )));
        }
        let key_period = arr::<16>(&bytes[48..64]);
        let body = if kind == KIND_KEY_PERIOD {
            let public_key = arr::<32>(&bytes[64..96]);
            if !KeyPeriodId::from_bytes(key_period).matches_public_key(&public_key) {
                return Err(malformed(
                    "its key period id does not belong to its public key".into(),
                ));
            }
            Body::KeyPeriod { public_key }
        } else {
            let epoch = u32::from_be_bytes(arr(&bytes[64..68]));
            if epoch == 0 {
                return Err(malformed("epoch 0 names no epoch".into()));
            }
            Body::Epoch(EpochFacts {
                key_period,
                epoch,
                table_entries: u64::from_be_bytes(arr(&bytes[68..76])),
                table_digest: arr(&bytes[76..108]),
                upsert_chain: arr(&bytes[108..140]),
            })
        };
        Ok(Statement {
            signer,
            validity,
            key_period,
            body,
        })
    }

    /// The statement's kind as a word, for messages.
    pub fn kind_name(&self) -> &'static str {
        match self.body {
            Body::KeyPeriod { .. } => "key period",
            Body::Epoch(_) => "epoch",
        }
    }
}

fn arr<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    a
}

/// A public announcement key a client trusts, with its key id.
#[derive(Clone, PartialEq, Eq)]
pub struct AnnouncementKey {
    key: VerifyingKey,
    id: [u8; 8],
}

impl fmt::Debug for AnnouncementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AnnouncementKey(id {})", hex8(&self.id))
    }
}

fn hex8(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl AnnouncementKey {
    /// The key with public bytes `A` (RFC 8032 encoding). Refuses bytes that are not a point,
    /// and keys of small order (any signature would verify under them).
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, ProtoError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| {
            fault(
                Fault::Malformed,
                "the announcement public key is not an Ed25519 public key",
            )
        })?;
        if key.is_weak() {
            return Err(fault(
                Fault::Malformed,
                "the announcement public key is of small order (it would accept forged \
                 signatures)",
            ));
        }
        Ok(AnnouncementKey {
            key,
            id: key_id(bytes),
        })
    }

    /// The key from 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, ProtoError> {
        let t = text.trim();
        let bytes = parse_hex32(t).ok_or_else(|| {
            fault(
                Fault::Malformed,
                format!(
                    "an announcement public key is 64 hex digits; got {} characters",
                    t.chars().count()
                ),
            )
        })?;
        Self::from_bytes(&bytes)
    }

    /// The key's id.
    pub fn id(&self) -> [u8; 8] {
        self.id
    }

    /// The key's id as 16 hex digits.
    pub fn id_hex(&self) -> String {
        hex8(&self.id)
    }

    /// The public bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The public bytes as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex8(&self.key.to_bytes())
    }
}

/// 64 hex digits → 32 bytes.
pub fn parse_hex32(t: &str) -> Option<[u8; 32]> {
    let b = t.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// The management body's signing key (offline). Zeroized on drop; `Debug` shows only its id.
pub struct AnnouncementSigner {
    key: SigningKey,
    public: AnnouncementKey,
}

impl fmt::Debug for AnnouncementSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AnnouncementSigner(id {}, secret hidden)",
            self.public.id_hex()
        )
    }
}

impl AnnouncementSigner {
    /// The signer of the 32-byte Ed25519 seed (RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, ProtoError> {
        let key = SigningKey::from_bytes(seed);
        let public = AnnouncementKey::from_bytes(&key.verifying_key().to_bytes())?;
        Ok(AnnouncementSigner { key, public })
    }

    /// The public key clients trust.
    pub fn public(&self) -> &AnnouncementKey {
        &self.public
    }

    fn sign(&self, statement: &Statement) -> Vec<u8> {
        let mut bytes = statement.encode();
        let sig: Signature = self.key.sign(&bytes);
        bytes.extend_from_slice(&sig.to_bytes());
        bytes
    }

    /// Signs the statement of a key period: `key_period` (its id) belongs to `public_key` (pkS).
    pub fn sign_key_period(
        &self,
        validity: Validity,
        key_period: [u8; 16],
        public_key: [u8; 32],
    ) -> Result<SignedKeyPeriodStatement, ProtoError> {
        let s = Statement {
            signer: self.public.id,
            validity,
            key_period,
            body: Body::KeyPeriod { public_key },
        };
        check_encodable(&s)?;
        let bytes = self.sign(&s);
        Ok(SignedKeyPeriodStatement(arr(&bytes)))
    }

    /// Signs the statement of an epoch.
    pub fn sign_epoch(
        &self,
        validity: Validity,
        facts: EpochFacts,
    ) -> Result<SignedEpochStatement, ProtoError> {
        let s = Statement {
            signer: self.public.id,
            validity,
            key_period: facts.key_period,
            body: Body::Epoch(facts),
        };
        check_encodable(&s)?;
        let bytes = self.sign(&s);
        Ok(SignedEpochStatement(arr(&bytes)))
    }
}

/// Refuses to sign what a client would refuse to parse.
fn check_encodable(s: &Statement) -> Result<(), ProtoError> {
    Statement::parse(&s.encode()).map(|_| ())
}

/// Parses a signed statement (statement ‖ signature), finds its key among `trusted` by key id,
/// verifies the signature strictly and checks its validity at `now` (announcements.md §5).
pub fn verify(
    trusted: &[AnnouncementKey],
    signed: &[u8],
    now: u64,
) -> Result<Statement, ProtoError> {
    let Some(split) = signed.len().checked_sub(SIGNATURE_LEN) else {
        return Err(fault(
            Fault::Malformed,
            format!("{} bytes cannot hold a signed statement", signed.len()),
        ));
    };
    let (message, sig) = signed.split_at(split);
    let statement = Statement::parse(message)?;
    let key = trusted
        .iter()
        .find(|k| k.id == statement.signer)
        .ok_or_else(|| {
            fault(
                Fault::UnknownSigner,
                format!(
                    "the {} statement is signed by key id {}, which is not among the trusted \
                     announcement keys ({})",
                    statement.kind_name(),
                    hex8(&statement.signer),
                    trusted
                        .iter()
                        .map(AnnouncementKey::id_hex)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
    let signature = Signature::from_bytes(&arr(sig));
    key.key.verify_strict(message, &signature).map_err(|_| {
        fault(
            Fault::BadSignature,
            format!(
                "the signature of the {} statement does not verify under key id {}",
                statement.kind_name(),
                key.id_hex()
            ),
        )
    })?;
    if !statement.validity.covers(now) {
        return Err(fault(
            Fault::NotValidNow,
            format!(
                "the {} statement is valid from {} to {} (Unix seconds), not at {now}; check \
                 this machine's clock, or ask the management body to announce again",
                statement.kind_name(),
                statement.validity.not_before,
                statement.validity.not_after
            ),
        ));
    }
    Ok(statement)
}

/// The outcome of [`check_info`] for an accepted Info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// No announcement key is configured: nothing was checked.
    Unchecked,
    /// Both statements verified under the trusted key with this id.
    Verified {
        /// The signing key's id (of the epoch statement; the key period one may differ
        /// during a rotation).
        signer: [u8; 8],
    },
}

/// `CheckAnnounced(info, trusted, now)` of announcements.md §5. `now` is the client's clock in
/// seconds since 1970-01-01 UTC; it is needed only when `trusted` is not empty.
pub fn check_info(
    trusted: &[AnnouncementKey],
    info: &InfoResponse,
    now: Option<u64>,
) -> Result<Coverage, ProtoError> {
    if trusted.is_empty() {
        return Ok(Coverage::Unchecked);
    }
    let Some(a) = &info.announcement else {
        return Err(fault(
            Fault::Unannounced,
            format!(
                "the server's Info for epoch {} carries no announcement; the management body \
                 has not announced it, or this server does not serve its statements",
                info.epoch
            ),
        ));
    };
    let now = now.ok_or_else(|| {
        fault(
            Fault::NotValidNow,
            "the client has no time to check the statements' validity against",
        )
    })?;
    let k = verify(trusted, a.key_period_statement.as_bytes(), now)?;
    let e = verify(trusted, a.epoch_statement.as_bytes(), now)?;
    let mismatch = |what: &str| fault(Fault::Mismatch, what.to_owned());
    match k.body {
        Body::KeyPeriod { public_key } => {
            if k.key_period != info.key_period.0 || public_key != info.public_key.0 {
                return Err(mismatch(&format!(
                    "the key period statement announces key period {} with another key than \
                     the server's Info shows (key period {}); the server is not using the \
                     announced key",
                    KeyPeriodId::from_bytes(k.key_period),
                    KeyPeriodId::from_bytes(info.key_period.0)
                )));
            }
        }
        Body::Epoch(_) => {
            return Err(mismatch(
                "the key period statement slot holds an epoch statement",
            ));
        }
    }
    let Body::Epoch(f) = e.body else {
        return Err(mismatch(
            "the epoch statement slot holds a key period statement",
        ));
    };
    if f.key_period != info.key_period.0 || f.epoch != info.epoch {
        return Err(mismatch(&format!(
            "the epoch statement announces epoch {} of key period {}, the server's Info is at \
             epoch {} of key period {}",
            f.epoch,
            KeyPeriodId::from_bytes(f.key_period),
            info.epoch,
            KeyPeriodId::from_bytes(info.key_period.0)
        )));
    }
    if f.table_entries != info.table_entries
        || f.table_digest != info.table_digest.0
        || f.upsert_chain != info.upsert_chain.0
    {
        return Err(mismatch(&format!(
            "the server's Info for epoch {} states another table (entries, digest or upsert \
             chain) than the management body announced",
            info.epoch
        )));
    }
    Ok(Coverage::Verified { signer: e.signer })
}
