//! `clients.toml`: the accredited **entities**, the certificates that may act for each, and
//! each entity's quotas and enumeration controls (protocol-spec/wire.md §2.3–2.4,
//! security.md §6.1).
//!
//! ```toml
//! [[entity]]
//! id = "research-db-01"          # immutable, never reused: the domain of the entity's labels
//! spki_sha256 = ["1f35…", "9a0c…"]   # certificates by key (from any CA of client_ca)
//! evaluations_per_day = 50000
//! evaluations_per_key_period = 2000000   # optional, default 10 × evaluations_per_day
//! declared_holdings = 1500000            # optional: warn when passed
//! hard_cap = 1800000                     # optional: refuse beyond it
//! [[entity.certificate]]                 # and/or by issuer + subject
//! issuer = "O=Example, CN=Example client CA"
//! subject = "O=Example, CN=research-db-01"
//!
//! [[client]]                             # the earlier form, still accepted:
//! id = "clinic-7"                        # entity "clinic-7", credential: any certificate
//! evaluations_per_day = 1000             # of a client_ca CA whose CommonName is "clinic-7"
//! ```
//!
//! The server derives the entity of a connection from its verified end-entity certificate
//! ([`AccreditedClients::resolve`]), in this order:
//! 1. its SPKI fingerprint is listed under an `[[entity]]` → that entity;
//! 2. its (issuer, subject) is listed under an `[[entity]]` **and** it is signed by the
//!    certificate of `client_ca` whose subject is that issuer → that entity;
//! 3. its subject CommonName is the id of a `[[client]]` → that entity;
//! 4. otherwise it is not accredited. A CommonName never selects an `[[entity]]`: an entity
//!    that lists its certificates accepts only those, whichever CA signed another one.
//!
//! Invariants (checked at load; a file breaking one is refused whole and the previous list stays
//! in force on a reload): entity ids satisfy the id rule (table.md §6) and are unique across
//! `[[entity]]` and `[[client]]`; every `[[entity]]` lists at least one certificate; a
//! fingerprint or an (issuer, subject) pair belongs to at most one entity; `hard_cap`, when set,
//! is at least 1 and at least `declared_holdings`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use nayose_pki::CertIdentity;
use nayose_table::ClientId;
use serde::{Deserialize, Serialize};

use crate::error::ServerError;

/// Multiplier of the daily quota that gives the default key-period quota.
pub const DEFAULT_KEY_PERIOD_QUOTA_DAYS: u64 = 10;

/// One accredited entity in the earlier form (`[[client]]`): its only credential is a
/// certificate of any `client_ca` CA whose subject CommonName is `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    /// The entity id, and the CommonName its certificates carry.
    pub id: String,
    /// Blinded elements the entity may have evaluated per quota day.
    pub evaluations_per_day: u64,
    /// Blinded elements the entity may have evaluated per key period (default: 10 ×
    /// `evaluations_per_day`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluations_per_key_period: Option<u64>,
    /// How many numbers the entity declared it holds: a warning when its evaluations pass it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_holdings: Option<u64>,
    /// Evaluations beyond which the entity is refused (`HardCapReached`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_cap: Option<u64>,
}

/// A certificate named by its issuer and subject (`[[entity.certificate]]`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateName {
    /// The issuer's name as `nayose pki fingerprint` prints it; a CA of `client_ca` with this
    /// subject must have signed the certificate.
    pub issuer: String,
    /// The certificate's subject name as `nayose pki fingerprint` prints it.
    pub subject: String,
}

/// One accredited entity (`[[entity]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityEntry {
    /// The entity id: immutable, never reused; the domain of the entity's labels.
    pub id: String,
    /// Certificates that may act for the entity, by the SHA-256 of their SubjectPublicKeyInfo
    /// (hex; `nayose pki fingerprint`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spki_sha256: Vec<String>,
    /// Certificates that may act for the entity, by issuer and subject.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate: Vec<CertificateName>,
    /// Blinded elements the entity may have evaluated per quota day.
    pub evaluations_per_day: u64,
    /// Blinded elements per key period (default: 10 × `evaluations_per_day`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluations_per_key_period: Option<u64>,
    /// How many numbers the entity declared it holds: a warning when its evaluations pass it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_holdings: Option<u64>,
    /// Evaluations beyond which the entity is refused (`HardCapReached`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_cap: Option<u64>,
}

/// The quotas and enumeration controls of one entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// Evaluations per quota day.
    pub per_day: u64,
    /// Evaluations per key period.
    pub per_key_period: u64,
    /// Declared holdings: passing them (in the key period) is logged as a warning.
    pub declared_holdings: Option<u64>,
    /// Hard cap on the evaluations of the key period and of the rolling window.
    pub hard_cap: Option<u64>,
}

impl ClientLimits {
    /// Limits with the two quotas only (no enumeration controls).
    pub fn quotas(per_day: u64, per_key_period: u64) -> Self {
        ClientLimits {
            per_day,
            per_key_period,
            declared_holdings: None,
            hard_cap: None,
        }
    }

    fn new(
        per_day: u64,
        per_key_period: Option<u64>,
        declared_holdings: Option<u64>,
        hard_cap: Option<u64>,
    ) -> Result<Self, String> {
        if let Some(cap) = hard_cap {
            if cap == 0 {
                return Err(
                    "hard_cap = 0 would refuse every evaluation; remove the entity \
                            instead, or give a cap of at least 1"
                        .into(),
                );
            }
            if let Some(h) = declared_holdings
                && cap < h
            {
                return Err(format!(
                    "hard_cap = {cap} is below declared_holdings = {h}: the entity would be \
                     refused before it evaluated the numbers it declared; raise hard_cap"
                ));
            }
        }
        Ok(ClientLimits {
            per_day,
            per_key_period: per_key_period
                .unwrap_or(per_day.saturating_mul(DEFAULT_KEY_PERIOD_QUOTA_DAYS)),
            declared_holdings,
            hard_cap,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientsFile {
    #[serde(default)]
    entity: Vec<EntityEntry>,
    #[serde(default)]
    client: Vec<ClientEntry>,
}

/// What the server knows of a connection's verified end-entity certificate, for
/// [`AccreditedClients::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// Its fingerprint and names.
    pub identity: CertIdentity,
    /// The subjects of the `client_ca` certificates whose signature on it verifies.
    pub signed_by: Vec<String>,
}

impl Presented {
    /// The identity of `leaf` (DER), and which of `client_cas` (DER) signed it.
    pub fn of(leaf: &[u8], client_cas: &[Vec<u8>]) -> Result<Self, String> {
        let identity = nayose_pki::cert_identity(leaf).map_err(|e| e.to_string())?;
        let signed_by = client_cas
            .iter()
            .filter(|ca| nayose_pki::issued_by(leaf, ca))
            .filter_map(|ca| nayose_pki::cert_identity(ca).ok().map(|i| i.subject))
            .collect();
        Ok(Presented {
            identity,
            signed_by,
        })
    }

    /// `subject …, issuer …, SPKI SHA-256 …`, for messages and audit records.
    pub fn describe(&self) -> String {
        format!(
            "subject {}, issuer {}, SPKI SHA-256 {}",
            self.identity.subject, self.identity.issuer, self.identity.spki_sha256
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Accredited {
    limits: ClientLimits,
    /// `[[client]]`: accepted by CommonName.
    by_common_name: bool,
}

/// The accredited entities (`clients.toml`), by id, with their credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccreditedClients {
    entities: BTreeMap<ClientId, Accredited>,
    by_spki: BTreeMap<String, ClientId>,
    by_name: BTreeMap<CertificateName, ClientId>,
}

impl AccreditedClients {
    /// Reads `clients.toml`.
    pub fn load(path: &Path) -> Result<Self, ServerError> {
        let text = std::fs::read_to_string(path).map_err(ServerError::io("cannot read", path))?;
        Self::from_toml_str(&text).map_err(|reason| ServerError::Config {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses `clients.toml` text (see the module documentation for what is checked).
    pub fn from_toml_str(text: &str) -> Result<Self, String> {
        let file: ClientsFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut a = AccreditedClients::default();
        for (i, e) in file.entity.into_iter().enumerate() {
            a.add_entity(e)
                .map_err(|why| format!("[[entity]] #{}: {why}", i + 1))?;
        }
        for (i, c) in file.client.into_iter().enumerate() {
            a.add_client(&c)
                .map_err(|why| format!("[[client]] #{}: {why}", i + 1))?;
        }
        Ok(a)
    }

    /// The list from `[[client]]` entries (for embedding and tests).
    pub fn from_entries(entries: &[ClientEntry]) -> Result<Self, String> {
        let mut a = AccreditedClients::default();
        for c in entries {
            a.add_client(c)?;
        }
        Ok(a)
    }

    fn insert(&mut self, id: ClientId, acc: Accredited) -> Result<(), String> {
        if self.entities.contains_key(&id) {
            return Err(format!(
                "entity id {:?} is listed twice (ids are unique across [[entity]] and \
                 [[client]])",
                id.as_str()
            ));
        }
        self.entities.insert(id, acc);
        Ok(())
    }

    fn add_client(&mut self, c: &ClientEntry) -> Result<(), String> {
        let id = ClientId::new(&c.id).map_err(|e| e.to_string())?;
        let limits = ClientLimits::new(
            c.evaluations_per_day,
            c.evaluations_per_key_period,
            c.declared_holdings,
            c.hard_cap,
        )?;
        self.insert(
            id,
            Accredited {
                limits,
                by_common_name: true,
            },
        )
    }

    fn add_entity(&mut self, e: EntityEntry) -> Result<(), String> {
        let id = ClientId::new(&e.id).map_err(|err| err.to_string())?;
        if e.spki_sha256.is_empty() && e.certificate.is_empty() {
            return Err(format!(
                "entity {:?} lists no certificate: give spki_sha256 = [\"…\"] or \
                 [[entity.certificate]] (nayose pki fingerprint --cert FILE prints both)",
                e.id
            ));
        }
        let limits = ClientLimits::new(
            e.evaluations_per_day,
            e.evaluations_per_key_period,
            e.declared_holdings,
            e.hard_cap,
        )?;
        for f in &e.spki_sha256 {
            let f = nayose_pki::normalize_fingerprint(f).ok_or_else(|| {
                format!(
                    "spki_sha256 {f:?} of entity {:?} is not 64 hex digits (SHA-256 of the \
                     SubjectPublicKeyInfo; nayose pki fingerprint --cert FILE)",
                    e.id
                )
            })?;
            if let Some(other) = self.by_spki.insert(f.clone(), id.clone()) {
                return Err(format!(
                    "spki_sha256 {f} is listed for entity {:?} and for entity {:?}: a \
                     certificate acts for one entity only",
                    other.as_str(),
                    e.id
                ));
            }
        }
        for n in e.certificate {
            if n.issuer.trim().is_empty() || n.subject.trim().is_empty() {
                return Err(format!(
                    "a certificate of entity {:?} has an empty issuer or subject",
                    e.id
                ));
            }
            if let Some(other) = self.by_name.insert(n.clone(), id.clone()) {
                return Err(format!(
                    "the certificate (issuer {}, subject {}) is listed for entity {:?} and for \
                     entity {:?}: a certificate acts for one entity only",
                    n.issuer,
                    n.subject,
                    other.as_str(),
                    e.id
                ));
            }
        }
        self.insert(
            id,
            Accredited {
                limits,
                by_common_name: false,
            },
        )
    }

    /// The entity `presented` acts for and its limits, or why it acts for none (a sentence
    /// naming the certificate, for the `NotAccredited` message and the log).
    pub fn resolve(&self, presented: &Presented) -> Result<(ClientId, ClientLimits), String> {
        let id = &presented.identity;
        let found = |e: &ClientId| {
            self.entities
                .get(e)
                .map(|a| (e.clone(), a.limits))
                .ok_or_else(|| format!("entity {e} is not accredited"))
        };
        if let Some(e) = self.by_spki.get(&id.spki_sha256) {
            return found(e);
        }
        let name = CertificateName {
            issuer: id.issuer.clone(),
            subject: id.subject.clone(),
        };
        if let Some(e) = self.by_name.get(&name) {
            if presented.signed_by.contains(&id.issuer) {
                return found(e);
            }
            return Err(format!(
                "the certificate ({}) names the issuer listed for entity {e}, but no client_ca \
                 certificate of that name signed it",
                presented.describe()
            ));
        }
        if let Some(cn) = &id.common_name
            && let Ok(cid) = ClientId::new(cn)
            && let Some(acc) = self.entities.get(&cid)
        {
            if acc.by_common_name {
                return Ok((cid, acc.limits));
            }
            return Err(format!(
                "the certificate ({}) carries the CommonName of entity {cid}, which accepts \
                 only the certificates it lists; this one is not among them: list it with nayose \
                 pki fingerprint",
                presented.describe()
            ));
        }
        Err(format!(
            "no accredited entity lists the certificate ({})",
            presented.describe()
        ))
    }

    /// The limits of entity `id`, or `None` if it is not accredited.
    pub fn limits_of(&self, id: &ClientId) -> Option<ClientLimits> {
        self.entities.get(id).map(|a| a.limits)
    }

    /// The daily evaluation quota of entity `id`, or `None` if it is not accredited.
    pub fn quota_of(&self, id: &ClientId) -> Option<u64> {
        self.limits_of(id).map(|l| l.per_day)
    }

    /// The ids of the `[[client]]` entries (accepted by CommonName from any client CA).
    pub fn by_common_name(&self) -> Vec<&ClientId> {
        self.entities
            .iter()
            .filter(|(_, a)| a.by_common_name)
            .map(|(id, _)| id)
            .collect()
    }

    /// Every entity with its limits.
    pub fn iter(&self) -> impl Iterator<Item = (&ClientId, ClientLimits)> {
        self.entities.iter().map(|(id, a)| (id, a.limits))
    }

    /// Number of accredited entities.
    pub fn len(&self) -> usize {
        self.entities.len()
    }

    /// Whether no entity is accredited.
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }
}

/// The subjects of the `client_ca` certificates `cas` (DER), checked to be distinct: an
/// `[[entity.certificate]]` names its issuer by subject, so two CAs of one name would make it
/// ambiguous. The error names the file and the name.
pub(crate) fn check_client_cas(path: &Path, cas: &[Vec<u8>]) -> Result<(), ServerError> {
    let mut seen = BTreeSet::new();
    for der in cas {
        let subject = nayose_pki::cert_identity(der)
            .map_err(|e| ServerError::Tls {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?
            .subject;
        if !seen.insert(subject.clone()) {
            return Err(ServerError::Tls {
                path: path.to_path_buf(),
                reason: format!(
                    "holds two CA certificates named {subject}: an [[entity.certificate]] names                      its issuer by name, so client CAs must have distinct names"
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn der(pem: &str) -> Vec<u8> {
        rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .map(|c: rustls::pki_types::CertificateDer<'static>| c.as_ref().to_vec())
            .unwrap()
    }

    #[test]
    fn clients_file() {
        let a = AccreditedClients::from_toml_str(
            "[[client]]\nid = \"hosp-a\"\nevaluations_per_day = 10\n\
             [[client]]\nid = \"hosp-b\"\nevaluations_per_day = 0\n",
        )
        .unwrap();
        assert_eq!(a.quota_of(&ClientId::new("hosp-a").unwrap()), Some(10));
        assert_eq!(
            a.limits_of(&ClientId::new("hosp-a").unwrap()),
            Some(ClientLimits::quotas(10, 100)),
            "the key-period quota defaults to 10 days' worth"
        );
        let b = AccreditedClients::from_toml_str(
            "[[client]]\nid = \"x\"\nevaluations_per_day = 10\nevaluations_per_key_period = 15\n",
        )
        .unwrap();
        assert_eq!(
            b.limits_of(&ClientId::new("x").unwrap())
                .unwrap()
                .per_key_period,
            15
        );
        assert_eq!(a.quota_of(&ClientId::new("hosp-c").unwrap()), None);
        assert!(AccreditedClients::from_toml_str(
            "[[client]]\nid = \"a\"\nevaluations_per_day = 1\n[[client]]\nid = \"a\"\nevaluations_per_day = 1\n"
        )
        .unwrap_err()
        .contains("twice"));
        assert!(
            AccreditedClients::from_toml_str("[[client]]\nid = \"a b\"\nevaluations_per_day = 1\n")
                .is_err()
        );
    }

    #[test]
    fn entities_are_checked_at_load() {
        let f = "ab".repeat(32);
        let bad = |text: &str, says: &str| {
            let e = AccreditedClients::from_toml_str(text).unwrap_err();
            assert!(e.contains(says), "{e}");
        };
        bad(
            "[[entity]]\nid = \"e\"\nevaluations_per_day = 1\n",
            "lists no certificate",
        );
        bad(
            "[[entity]]\nid = \"e\"\nspki_sha256 = [\"abc\"]\nevaluations_per_day = 1\n",
            "not 64 hex digits",
        );
        bad(
            &format!(
                "[[entity]]\nid = \"e\"\nspki_sha256 = [\"{f}\"]\nevaluations_per_day = 1\n\
                 [[entity]]\nid = \"g\"\nspki_sha256 = [\"{}\"]\nevaluations_per_day = 1\n",
                f.to_uppercase()
            ),
            "for entity \"e\" and for entity \"g\"",
        );
        bad(
            &format!(
                "[[entity]]\nid = \"e\"\nspki_sha256 = [\"{f}\"]\nevaluations_per_day = 1\n\
                 [[client]]\nid = \"e\"\nevaluations_per_day = 1\n"
            ),
            "listed twice",
        );
        bad(
            &format!(
                "[[entity]]\nid = \"e\"\nspki_sha256 = [\"{f}\"]\nevaluations_per_day = 1\n\
                 declared_holdings = 10\nhard_cap = 9\n"
            ),
            "below declared_holdings",
        );
        bad(
            "[[client]]\nid = \"e\"\nevaluations_per_day = 1\nhard_cap = 0\n",
            "hard_cap = 0",
        );
        let ok = AccreditedClients::from_toml_str(&format!(
            "[[entity]]\nid = \"e\"\nspki_sha256 = [\"{f}\"]\nevaluations_per_day = 5\n\
             declared_holdings = 10\nhard_cap = 12\n\
             [[entity.certificate]]\nissuer = \"CN=ca\"\nsubject = \"CN=x\"\n"
        ))
        .unwrap();
        let l = ok.limits_of(&ClientId::new("e").unwrap()).unwrap();
        assert_eq!(
            (l.declared_holdings, l.hard_cap, l.per_key_period),
            (Some(10), Some(12), 50)
        );
        assert!(ok.by_common_name().is_empty());
    }

    #[test]
    fn a_certificate_acts_for_the_entity_that_lists_it_and_for_no_other() {
        let ca = nayose_pki::generate_ca("client CA").unwrap();
        let other_ca = nayose_pki::generate_ca("other CA").unwrap();
        let twin_ca = nayose_pki::generate_ca("client CA").unwrap();
        let cas = vec![der(&ca.cert_pem), der(&other_ca.cert_pem)];
        let cert = |issuer: &nayose_pki::Issued, cn: &str| {
            let d = der(&nayose_pki::issue_client_cert(issuer, cn).unwrap().cert_pem);
            Presented::of(&d, &cas).unwrap()
        };
        let old = cert(&ca, "research-01");
        let new = cert(&ca, "research-01");
        let named = cert(&ca, "research-01-2027");
        let text = format!(
            "[[entity]]\nid = \"research-01\"\nspki_sha256 = [\"{}\", \"{}\"]\n\
             evaluations_per_day = 5\n\
             [[entity.certificate]]\nissuer = \"{}\"\nsubject = \"{}\"\n\
             [[client]]\nid = \"clinic-7\"\nevaluations_per_day = 5\n",
            old.identity.spki_sha256,
            new.identity.spki_sha256,
            named.identity.issuer,
            named.identity.subject
        );
        let a = AccreditedClients::from_toml_str(&text).unwrap();
        let entity = |p: &Presented| a.resolve(p).map(|(id, _)| id.to_string());
        // Two keys of one entity, and a certificate by issuer + subject: one entity.
        assert_eq!(entity(&old).unwrap(), "research-01");
        assert_eq!(entity(&new).unwrap(), "research-01");
        assert_eq!(entity(&named).unwrap(), "research-01");
        // The entity's CommonName from another client CA (or the same CA, another key): refused.
        let e = entity(&cert(&other_ca, "research-01")).unwrap_err();
        assert!(e.contains("accepts only the certificates it lists"), "{e}");
        let e = entity(&cert(&ca, "research-01")).unwrap_err();
        assert!(e.contains("SPKI SHA-256"), "{e}");
        // A CA with the same name as the listed issuer, not configured: its signature fails.
        let d = der(&nayose_pki::issue_client_cert(&twin_ca, "research-01-2027")
            .unwrap()
            .cert_pem);
        let twin = Presented::of(&d, &cas).unwrap();
        assert_eq!(twin.identity.subject, named.identity.subject);
        let e = entity(&twin).unwrap_err();
        assert!(e.contains("no client_ca certificate of that name"), "{e}");
        // [[client]]: by CommonName, from any client CA.
        assert_eq!(entity(&cert(&other_ca, "clinic-7")).unwrap(), "clinic-7");
        let e = entity(&cert(&ca, "clinic-8")).unwrap_err();
        assert!(e.contains("no accredited entity lists"), "{e}");
    }
}
