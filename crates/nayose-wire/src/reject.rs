//! How a field's own `Deserialize` reports a typed rejection through bincode.
//!
//! serde lets a `Deserialize` impl fail only with `Error::custom(impl Display)`, which bincode
//! turns into `DecodeError::OtherString`. A [`Rejection`] displays as a fixed, private marker
//! string that [`Rejection::parse`] turns back into the field, the kind and the value, so the
//! codec can return a typed [`crate::WireError`] instead of a free-form string.
//!
//! Invariant: the marker starts with a prefix no serde or bincode message starts with, and the
//! field index round-trips through [`Field::ALL`].

use std::fmt;

use crate::limits::{
    MAX_BATCH_ELEMENTS, MAX_ENTITY_ID_LEN, MAX_ENTRIES_PER_CHUNK, MAX_ERROR_MESSAGE_LEN,
    MAX_FRAME_LEN,
};

const MARKER: &str = "\u{1}nayose-wire-reject:";

/// A field whose decoding can be rejected by this crate's own checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Elements,
    Entries,
    ErrorMessage,
    TagLen,
    LabelLen,
    MaxBatch,
    ErrorCode,
    CurrentEpoch,
    ChunkEnd,
    DeltaSize,
    OldestDelta,
    InfoEpoch,
    Gaps,
    RiceParameter,
    BlockLabels,
    Entity,
}

impl Field {
    const ALL: [Field; 16] = [
        Field::Elements,
        Field::Entries,
        Field::ErrorMessage,
        Field::TagLen,
        Field::LabelLen,
        Field::MaxBatch,
        Field::DeltaSize,
        Field::OldestDelta,
        Field::ErrorCode,
        Field::CurrentEpoch,
        Field::ChunkEnd,
        Field::InfoEpoch,
        Field::Gaps,
        Field::RiceParameter,
        Field::BlockLabels,
        Field::Entity,
    ];

    /// The field's name as the spec writes it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Field::Elements => "elements",
            Field::Entries => "entries",
            Field::ErrorMessage => "message",
            Field::TagLen => "tag_len",
            Field::LabelLen => "label_len",
            Field::MaxBatch => "max_batch",
            Field::ErrorCode => "code",
            Field::CurrentEpoch => "current",
            Field::ChunkEnd => "offset",
            Field::DeltaSize => "removed+upserts",
            Field::OldestDelta => "oldest_delta_base",
            Field::InfoEpoch => "epoch",
            Field::Gaps => "gaps",
            Field::RiceParameter => "rice",
            Field::BlockLabels => "labels",
            Field::Entity => "entity",
        }
    }

    /// Allowed count range for length-prefixed fields.
    pub(crate) fn count_bounds(self) -> (u64, u64) {
        match self {
            Field::Elements => (1, MAX_BATCH_ELEMENTS as u64),
            Field::Entries => (0, MAX_ENTRIES_PER_CHUNK as u64),
            Field::ErrorMessage => (0, MAX_ERROR_MESSAGE_LEN as u64),
            Field::Gaps => (0, MAX_FRAME_LEN as u64),
            Field::BlockLabels => (1, MAX_ENTRIES_PER_CHUNK as u64),
            Field::Entity => (1, MAX_ENTITY_ID_LEN as u64),
            _ => (0, 0),
        }
    }

    /// What the spec requires of a fixed-size field.
    pub(crate) fn requirement(self) -> &'static str {
        match self {
            Field::TagLen => "tag_len must be 9",
            Field::LabelLen => "label_len must be 4",
            Field::RiceParameter => "rice must be at most 71",
            Field::MaxBatch => "max_batch must be between 1 and 4096",
            Field::ErrorCode => "not a defined error code",
            Field::CurrentEpoch => {
                "an EpochChanged or KeyPeriodChanged error must carry the current state (tag 1)"
            }
            Field::ChunkEnd => "offset + number of entries must not exceed total",
            Field::DeltaSize => {
                "a delta chunk holds at most 65536 removed tags and upserts together"
            }
            Field::OldestDelta => "oldest_delta_base must not be above epoch",
            Field::InfoEpoch => "epoch must be at least 1 (0 never names an epoch)",
            Field::Entity => {
                "an entity id holds only A-Z a-z 0-9 . _ - (value: the first other byte)"
            }
            Field::Elements
            | Field::Entries
            | Field::ErrorMessage
            | Field::Gaps
            | Field::BlockLabels => "count out of range",
        }
    }
}

/// What was wrong with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// A count (elements, entries, bytes) outside [`Field::count_bounds`].
    Count(Field, u64),
    /// A value violating [`Field::requirement`].
    Invalid(Field, u64),
}

impl Rejection {
    /// Turns the error into the serde error of any deserializer.
    pub(crate) fn into_de<E: serde::de::Error>(self) -> E {
        E::custom(self)
    }

    /// Recovers a rejection from the message bincode carried, if it is one.
    pub(crate) fn parse(s: &str) -> Option<Rejection> {
        let rest = s.strip_prefix(MARKER)?;
        let mut parts = rest.split(':');
        let kind = parts.next()?;
        let field = *Field::ALL.get(parts.next()?.parse::<usize>().ok()?)?;
        let value = parts.next()?.parse::<u64>().ok()?;
        if parts.next().is_some() {
            return None;
        }
        match kind {
            "count" => Some(Rejection::Count(field, value)),
            "invalid" => Some(Rejection::Invalid(field, value)),
            _ => None,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, field, value) = match *self {
            Rejection::Count(field, value) => ("count", field, value),
            Rejection::Invalid(field, value) => ("invalid", field, value),
        };
        let index = Field::ALL
            .iter()
            .position(|f| *f == field)
            .unwrap_or(usize::MAX);
        write!(f, "{MARKER}{kind}:{index}:{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rejection_round_trips_through_its_string() {
        for field in Field::ALL {
            for r in [
                Rejection::Count(field, 7),
                Rejection::Invalid(field, u64::MAX),
            ] {
                assert_eq!(Rejection::parse(&r.to_string()), Some(r));
            }
        }
        assert_eq!(Rejection::parse("invalid value: integer `9`"), None);
    }
}
