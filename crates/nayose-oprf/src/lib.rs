//! RFC 9497 oblivious pseudorandom functions, modes OPRF (0) and VOPRF (1), with the
//! ciphersuite ristretto255-SHA512, on curve25519-dalek and sha2. No I/O: randomness comes in as
//! an RNG argument, bytes come in and go out as arrays.
//!
//! One link run, as nayose uses it (VOPRF mode):
//!
//! ```text
//!  client (accredited entity)                      server (management body, key skS)
//!  ─────────────────────────                       ──────────────────────────────────
//!  number y ──canonical bytes──► x
//!  ClientBatch::blind: C = r·HashToGroup(x)  ──C──►  blind_evaluate_batch_with_proof:
//!                                                    D = skS·C, proof π (DLEQ, whole batch)
//!  ClientBatch::verify(pkS, D, π) ◄──────D, π────
//!    └─► VerifiedBatch::finalize: o_y = H(x, r⁻¹·D)      evaluate(x) = H(x, skS·HashToGroup(x))
//!  o_y ─► tag, label key (nayose-table)  ══ equal ══  o_y ─► the epoch's table entry for y
//! ```
//!
//! Invariants:
//! - Every element from outside is decoded strictly: non-canonical encodings and the identity
//!   are rejected with a typed [`OprfError`] naming the position in the batch.
//! - Secrets ([`ServerKey`], the client's blinds, [`Output`]) are zeroized on drop, print nothing
//!   through `Debug`, and are never compared with `==`; every product with a secret scalar uses
//!   dalek's constant-time arithmetic. Variable-time code touches public values only.
//! - A VOPRF batch is finalized only through a [`VerifiedBatch`], which only a verified proof
//!   produces.
//! - Batch paths share one scalar inversion (client unblinding), one field inversion per chunk
//!   (all compressions), one multiscalar multiplication per composite, and spread over all cores
//!   from [`PARALLEL_THRESHOLD`] elements on.

mod client;
mod dleq;
mod error;
mod group;
pub mod hash_to_curve;
mod key;
mod output;
mod server;
mod suite;

pub use client::{ClientBatch, VerifiedBatch};
pub use dleq::Proof;
pub use error::OprfError;
pub use group::{PARALLEL_THRESHOLD, decode_element};
pub use key::{PublicKey, ServerKey};
pub use output::Output;
pub use suite::{ELEMENT_LEN, IDENTIFIER, MAX_BATCH, Mode, OUTPUT_LEN, PROOF_LEN, SCALAR_LEN};
