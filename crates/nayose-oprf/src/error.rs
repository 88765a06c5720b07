//! The one error type of the OPRF core.

use thiserror::Error;

/// Everything that can go wrong in the OPRF core. Each variant says what was rejected and, for
/// batches, at which position, so a node can report it to its peer or operator.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OprfError {
    /// A 32-byte string is not the canonical ristretto255 encoding of any group element
    /// (RFC 9496 §4.3.1 `Decode` failed).
    #[error("element {index} is not a canonical ristretto255 encoding")]
    NonCanonicalElement {
        /// Position of the element in its batch (0 for a single element).
        index: usize,
    },
    /// A group element decoded to the identity, which RFC 9497 §2.1 `DeserializeElement`
    /// must reject (it would make the evaluation independent of the key).
    #[error("element {index} is the identity element, which is never a valid input or output")]
    IdentityElement {
        /// Position of the element in its batch (0 for a single element).
        index: usize,
    },
    /// A 32-byte scalar is not reduced modulo the group order (RFC 9497 `DeserializeScalar`).
    #[error("{what} is not a canonical scalar (it must be below the group order)")]
    NonCanonicalScalar {
        /// Which scalar: "private key", "proof c", "proof s", ...
        what: &'static str,
    },
    /// A private key was zero.
    #[error("the private key is zero")]
    ZeroKey,
    /// `HashToGroup(input)` gave the identity (RFC 9497 `InvalidInputError`; probability 2^-252).
    #[error("input {index} hashes to the identity element and cannot be evaluated")]
    InvalidInput {
        /// Position of the input in its batch.
        index: usize,
    },
    /// `DeriveKeyPair` found no non-zero scalar in 256 attempts (RFC 9497 `DeriveKeyPairError`).
    #[error("DeriveKeyPair failed: no non-zero scalar for this seed and info")]
    DeriveKeyPair,
    /// `DeriveKeyPair` info longer than the 2-byte length prefix allows.
    #[error("key info is {len} bytes, more than 65535")]
    InfoTooLong {
        /// The rejected length.
        len: usize,
    },
    /// An input longer than the 2-byte length prefix of `Finalize` allows.
    #[error("input {index} is {len} bytes, more than 65535")]
    InputTooLong {
        /// Position of the input in its batch.
        index: usize,
        /// The rejected length.
        len: usize,
    },
    /// A batch is empty or larger than the 65535 elements a DLEQ composite index can number.
    #[error("batch of {len} elements: a batch holds 1 to {max} elements")]
    BatchSize {
        /// The rejected batch length.
        len: usize,
        /// The largest batch allowed.
        max: usize,
    },
    /// The server returned a different number of evaluated elements than were blinded.
    #[error("{got} evaluated elements for a batch of {expected}")]
    BatchMismatch {
        /// Number of blinded elements sent.
        expected: usize,
        /// Number of evaluated elements received.
        got: usize,
    },
    /// The DLEQ proof does not verify: the server did not evaluate this batch with the key whose
    /// public key the client holds. Nothing from the batch may be used.
    #[error("the server's DLEQ proof does not verify against its public key")]
    ProofInvalid,
    /// The batch was blinded in one mode and is being finalized as the other.
    #[error("this operation belongs to {expected:?} mode, the batch is in {actual:?} mode")]
    WrongMode {
        /// The mode the operation needs.
        expected: crate::Mode,
        /// The mode of the batch or key.
        actual: crate::Mode,
    },
}
