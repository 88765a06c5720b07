//! Field types of nayose/2 messages: fixed-size byte strings and bounded lists.
//!
//! Invariants:
//! - A fixed-size byte string of N bytes is exactly N raw bytes on the wire (no length), written
//!   as a serde tuple, which bincode emits without a length.
//! - A bounded list is a u64 LE count followed by the elements; its count is checked against the
//!   spec's bounds before anything is allocated, and its allocation never runs ahead of the bytes
//!   actually decoded by more than [`PREALLOC_CAP`] elements.
//! - A value of these types is always within the spec's limits: constructors check.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};

use crate::error::WireError;
use crate::limits::{
    ELEMENT_LEN, KEY_PERIOD_ID_LEN, LABEL_LEN, MAX_ENTITY_ID_LEN, MAX_ERROR_MESSAGE_LEN,
    MAX_FRAME_LEN, PROOF_LEN, PUBLIC_KEY_LEN, SIGNED_EPOCH_STATEMENT_LEN,
    SIGNED_KEY_PERIOD_STATEMENT_LEN, TABLE_DIGEST_LEN, TAG_LEN, UPSERT_CHAIN_LEN,
};
use crate::reject::{Field, Rejection};

/// Most elements a bounded list reserves memory for before it has decoded them.
const PREALLOC_CAP: usize = 1024;

fn serialize_fixed<S: Serializer, const N: usize>(
    bytes: &[u8; N],
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut t = s.serialize_tuple(N)?;
    for b in bytes {
        t.serialize_element(b)?;
    }
    t.end()
}

struct FixedVisitor<const N: usize>;

impl<'de, const N: usize> Visitor<'de> for FixedVisitor<N> {
    type Value = [u8; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{N} bytes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; N], A::Error> {
        let mut out = [0u8; N];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = seq
                .next_element::<u8>()?
                .ok_or_else(|| de::Error::invalid_length(i, &self))?;
        }
        Ok(out)
    }
}

fn deserialize_fixed<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
    d.deserialize_tuple(N, FixedVisitor::<N>)
}

fn fmt_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

macro_rules! fixed_bytes {
    ($(#[$meta:meta])* $name:ident, $len:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes on the wire.
            pub const LEN: usize = $len;

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl From<[u8; $len]> for $name {
            fn from(bytes: [u8; $len]) -> Self {
                $name(bytes)
            }
        }

        impl From<$name> for [u8; $len] {
            fn from(v: $name) -> Self {
                v.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "("))?;
                fmt_hex(f, &self.0)?;
                f.write_str(")")
            }
        }

        impl fmt::Display for $name {
            /// Lowercase hex.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt_hex(f, &self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serialize_fixed(&self.0, s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                deserialize_fixed::<D, { $len }>(d).map($name)
            }
        }
    };
}

fixed_bytes!(
    /// Identifier of a key period (one VOPRF key pair). Opaque on the wire;
    /// protocol-spec/table.md says how the server derives it.
    KeyPeriodId,
    KEY_PERIOD_ID_LEN
);
fixed_bytes!(
    /// A table digest (protocol-spec/table.md): commits to one epoch's tags and upsert chain.
    TableDigest,
    TABLE_DIGEST_LEN
);
fixed_bytes!(
    /// An upsert-chain value (protocol-spec/table.md): commits to every upsert of the key
    /// period up to one epoch.
    UpsertChain,
    UPSERT_CHAIN_LEN
);
fixed_bytes!(
    /// A ristretto255 element as RFC 9497 serializes it: a blinded element in a request, an
    /// evaluated element in a response. The codec does not check that it decodes to a point.
    Element,
    ELEMENT_LEN
);
fixed_bytes!(
    /// The server's VOPRF public key pkS (a serialized ristretto255 element).
    PublicKeyBytes,
    PUBLIC_KEY_LEN
);
fixed_bytes!(
    /// A batched DLEQ proof `c || s` (RFC 9497 section 2.2), two 32-byte scalars.
    Proof,
    PROOF_LEN
);
fixed_bytes!(
    /// A table tag (protocol-spec/table.md).
    Tag,
    TAG_LEN
);
fixed_bytes!(
    /// An encrypted label (protocol-spec/table.md), specific to the requesting client.
    EncryptedLabel,
    LABEL_LEN
);

fixed_bytes!(
    /// A signed key period statement (protocol-spec/announcements.md §4): opaque bytes here;
    /// `nayose-proto` parses and verifies them.
    SignedKeyPeriodStatement,
    SIGNED_KEY_PERIOD_STATEMENT_LEN
);
fixed_bytes!(
    /// A signed epoch statement (protocol-spec/announcements.md §4): opaque bytes here;
    /// `nayose-proto` parses and verifies them.
    SignedEpochStatement,
    SIGNED_EPOCH_STATEMENT_LEN
);

/// One delta upsert as it travels: tag, then the encrypted label for the requesting client
/// (its version is the epoch of the delta chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Entry {
    /// The entry's tag.
    pub tag: Tag,
    /// The entry's label, encrypted for the requesting client.
    pub label: EncryptedLabel,
}

/// The Rice-coded tag gaps of a base chunk: 0 to [`crate::MAX_FRAME_LEN`] bytes, a u64 LE
/// length then the bytes. The codec does not decode them (protocol-spec/table.md does).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct GapBytes(Vec<u8>);

impl GapBytes {
    /// Wraps `bytes`, checking the length bound.
    pub fn new(bytes: Vec<u8>) -> Result<Self, WireError> {
        if bytes.len() > MAX_FRAME_LEN {
            return Err(WireError::OutOfSpec {
                field: Field::Gaps.name(),
                value: bytes.len() as u64,
                reason: "gap bytes never exceed a frame",
            });
        }
        Ok(GapBytes(bytes))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, by value.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

impl fmt::Debug for GapBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GapBytes({} bytes)", self.0.len())
    }
}

impl Serialize for GapBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

struct GapVisitor;

impl<'de> Visitor<'de> for GapVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at most {MAX_FRAME_LEN} bytes")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        if v.len() > MAX_FRAME_LEN {
            return Err(Rejection::Count(Field::Gaps, v.len() as u64).into_de());
        }
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        self.visit_bytes(&v)
    }
}

impl<'de> Deserialize<'de> for GapBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_byte_buf(GapVisitor).map(GapBytes)
    }
}

/// A u64-count-prefixed list whose count is checked against `field`'s bounds before allocating.
struct BoundedVisitor<T> {
    field: Field,
    marker: PhantomData<T>,
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for BoundedVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (min, max) = self.field.count_bounds();
        write!(f, "a list of {min} to {max} items")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let (min, max) = self.field.count_bounds();
        let announced = seq.size_hint();
        if let Some(n) = announced {
            let n = n as u64;
            if n < min || n > max {
                return Err(Rejection::Count(self.field, n).into_de());
            }
        }
        let mut out = Vec::with_capacity(announced.unwrap_or(0).min(PREALLOC_CAP));
        while let Some(item) = seq.next_element::<T>()? {
            if out.len() as u64 >= max {
                return Err(Rejection::Count(self.field, out.len() as u64 + 1).into_de());
            }
            out.push(item);
        }
        if (out.len() as u64) < min {
            return Err(Rejection::Count(self.field, out.len() as u64).into_de());
        }
        Ok(out)
    }
}

fn serialize_list<S: Serializer, T: Serialize>(items: &[T], s: S) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(items.len()))?;
    for item in items {
        seq.serialize_element(item)?;
    }
    seq.end()
}

fn check_count(field: Field, count: usize) -> Result<(), WireError> {
    let (min, max) = field.count_bounds();
    let n = count as u64;
    if n < min || n > max {
        return Err(WireError::OutOfSpec {
            field: field.name(),
            value: n,
            reason: match field {
                Field::Elements => "a batch holds 1 to 4096 elements",
                Field::Entries => "a chunk holds at most 65536 entries",
                Field::Entity => "an entity id is 1 to 64 bytes of A-Z a-z 0-9 . _ -",
                _ => "an error message is at most 1024 bytes",
            },
        });
    }
    Ok(())
}

/// A batch of 1 to [`crate::MAX_BATCH_ELEMENTS`] elements (Evaluate request and response).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ElementBatch(Vec<Element>);

impl ElementBatch {
    /// Wraps `elements`, checking 1 <= count <= [`crate::MAX_BATCH_ELEMENTS`].
    pub fn new(elements: Vec<Element>) -> Result<Self, WireError> {
        check_count(Field::Elements, elements.len())?;
        Ok(ElementBatch(elements))
    }

    /// Wraps raw 32-byte encodings, as `nayose-oprf` produces them.
    pub fn from_arrays(elements: &[[u8; ELEMENT_LEN]]) -> Result<Self, WireError> {
        Self::new(elements.iter().copied().map(Element).collect())
    }

    /// The elements.
    pub fn as_slice(&self) -> &[Element] {
        &self.0
    }

    /// The elements as raw 32-byte arrays, as `nayose-oprf` takes them.
    pub fn to_arrays(&self) -> Vec<[u8; ELEMENT_LEN]> {
        self.0.iter().map(|e| e.0).collect()
    }

    /// Number of elements (at least 1).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a batch holds at least one element. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The elements, by value.
    pub fn into_vec(self) -> Vec<Element> {
        self.0
    }
}

impl Serialize for ElementBatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_list(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for ElementBatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(BoundedVisitor {
            field: Field::Elements,
            marker: PhantomData,
        })
        .map(ElementBatch)
    }
}

/// A list of 0 to [`crate::MAX_ENTRIES_PER_CHUNK`] items (base entries, removed tags or delta
/// upserts of one chunk).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChunkList<T>(Vec<T>);

impl<T> Default for ChunkList<T> {
    fn default() -> Self {
        ChunkList(Vec::new())
    }
}

impl<T> ChunkList<T> {
    /// Wraps `items`, checking count <= [`crate::MAX_ENTRIES_PER_CHUNK`].
    pub fn new(items: Vec<T>) -> Result<Self, WireError> {
        check_count(Field::Entries, items.len())?;
        Ok(ChunkList(items))
    }

    /// The items.
    pub fn as_slice(&self) -> &[T] {
        &self.0
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are no items.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The items, by value.
    pub fn into_vec(self) -> Vec<T> {
        self.0
    }
}

impl<T: Serialize> Serialize for ChunkList<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_list(&self.0, s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ChunkList<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(BoundedVisitor {
            field: Field::Entries,
            marker: PhantomData,
        })
        .map(ChunkList)
    }
}

/// A human-readable error text of at most [`MAX_ERROR_MESSAGE_LEN`] bytes of UTF-8.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ErrorMessage(String);

impl ErrorMessage {
    /// Wraps `text`, checking its length.
    pub fn new(text: impl Into<String>) -> Result<Self, WireError> {
        let text = text.into();
        check_count(Field::ErrorMessage, text.len())?;
        Ok(ErrorMessage(text))
    }

    /// Wraps `text`, cutting it at the last character boundary that fits the limit.
    pub fn truncating(text: &str) -> Self {
        let mut end = text.len().min(MAX_ERROR_MESSAGE_LEN);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        ErrorMessage(text[..end].to_owned())
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ErrorMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ErrorMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = ErrorMessage;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a UTF-8 string of at most {MAX_ERROR_MESSAGE_LEN} bytes")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ErrorMessage, E> {
        if v.len() > MAX_ERROR_MESSAGE_LEN {
            return Err(Rejection::Count(Field::ErrorMessage, v.len() as u64).into_de());
        }
        Ok(ErrorMessage(v.to_owned()))
    }
}

impl<'de> Deserialize<'de> for ErrorMessage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Borrowing: bincode checks the length against the bytes present and UTF-8 in place,
        // so nothing is allocated before the length check above.
        d.deserialize_str(MessageVisitor)
    }
}

/// An entity id (Info `entity`): 1 to [`MAX_ENTITY_ID_LEN`] bytes, each from
/// `A-Z a-z 0-9 . _ -` (the id rule of protocol-spec/table.md §6). On the wire a u64 LE length
/// and the bytes; a decoded one always satisfies the rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityId(String);

/// The first byte of `id` that breaks the id rule, if any.
fn bad_entity_byte(id: &str) -> Option<u8> {
    id.bytes()
        .find(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')))
}

impl EntityId {
    /// Wraps `id`, checking the id rule.
    pub fn new(id: impl Into<String>) -> Result<Self, WireError> {
        let id = id.into();
        check_count(Field::Entity, id.len())?;
        if let Some(b) = bad_entity_byte(&id) {
            return Err(WireError::OutOfSpec {
                field: Field::Entity.name(),
                value: u64::from(b),
                reason: "an entity id is 1 to 64 bytes of A-Z a-z 0-9 . _ -",
            });
        }
        Ok(EntityId(id))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for EntityId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

struct EntityVisitor;

impl<'de> Visitor<'de> for EntityVisitor {
    type Value = EntityId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1 to {MAX_ENTITY_ID_LEN} bytes of A-Z a-z 0-9 . _ -")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<EntityId, E> {
        if v.is_empty() || v.len() > MAX_ENTITY_ID_LEN {
            return Err(Rejection::Count(Field::Entity, v.len() as u64).into_de());
        }
        if let Some(b) = bad_entity_byte(v) {
            return Err(Rejection::Invalid(Field::Entity, u64::from(b)).into_de());
        }
        Ok(EntityId(v.to_owned()))
    }
}

impl<'de> Deserialize<'de> for EntityId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Borrowing, as for ErrorMessage: the length is checked before anything is allocated.
        d.deserialize_str(EntityVisitor)
    }
}
