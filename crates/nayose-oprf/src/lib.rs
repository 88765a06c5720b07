//! RFC 9497 (V)OPRF with ristretto255-SHA512: I/O-free.
