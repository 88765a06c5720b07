//! Epoch table derivation, labels and matching (I/O-free).
