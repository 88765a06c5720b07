//! The management body's server node: epoch build and QUIC service.
