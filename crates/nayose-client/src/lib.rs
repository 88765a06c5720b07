//! The accredited entity's client node: link run over QUIC.
