//! The ciphersuite ristretto255-SHA512 of RFC 9497 §4.1 and its domain-separation tags.
//!
//! Invariant: every hash in the protocol is domain-separated by a tag built from the
//! context string `"OPRFV1-" || I2OSP(mode, 1) || "-" || "ristretto255-SHA512"` (RFC 9497 §3.1),
//! so OPRF-mode and VOPRF-mode outputs of the same key and input never coincide.

/// The ciphersuite identifier of RFC 9497 §4.1.
pub const IDENTIFIER: &[u8] = b"ristretto255-SHA512";

/// Length in bytes of a serialized group element (`Ne`).
pub const ELEMENT_LEN: usize = 32;
/// Length in bytes of a serialized scalar (`Ns`).
pub const SCALAR_LEN: usize = 32;
/// Length in bytes of a serialized DLEQ proof `c || s`.
pub const PROOF_LEN: usize = 2 * SCALAR_LEN;
/// Length in bytes of a `Finalize` output (`Nh`, SHA-512).
pub const OUTPUT_LEN: usize = 64;
/// The largest batch: DLEQ composites number elements with a 2-byte index (RFC 9497 §2.2.1).
pub const MAX_BATCH: usize = u16::MAX as usize;

/// The protocol variant (RFC 9497 §3.1). POPRF (mode 2) is not implemented: nayose has no
/// public input to bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Mode 0: the client cannot verify which key the server used.
    Oprf,
    /// Mode 1: every evaluation carries a DLEQ proof against the server's public key.
    Voprf,
}

impl Mode {
    /// The mode's identifier byte.
    pub const fn id(self) -> u8 {
        match self {
            Mode::Oprf => 0x00,
            Mode::Voprf => 0x01,
        }
    }

    /// `contextString` of RFC 9497 §3.1.
    pub fn context_string(self) -> Vec<u8> {
        let mut c = Vec::with_capacity(7 + 1 + 1 + IDENTIFIER.len());
        c.extend_from_slice(b"OPRFV1-");
        c.push(self.id());
        c.push(b'-');
        c.extend_from_slice(IDENTIFIER);
        c
    }

    /// The DST of `HashToGroup`: `"HashToGroup-" || contextString`.
    pub fn hash_to_group_dst(self) -> Vec<u8> {
        [b"HashToGroup-".as_slice(), &self.context_string()].concat()
    }

    /// The DST of `HashToScalar`: `"HashToScalar-" || contextString`.
    pub fn hash_to_scalar_dst(self) -> Vec<u8> {
        [b"HashToScalar-".as_slice(), &self.context_string()].concat()
    }

    /// The DST of `DeriveKeyPair`: `"DeriveKeyPair" || contextString` (no dash, as in the RFC).
    pub fn derive_key_pair_dst(self) -> Vec<u8> {
        [b"DeriveKeyPair".as_slice(), &self.context_string()].concat()
    }

    /// The seed DST of `ComputeComposites`: `"Seed-" || contextString`.
    pub fn seed_dst(self) -> Vec<u8> {
        [b"Seed-".as_slice(), &self.context_string()].concat()
    }
}
