//! Streaming CSV readers and writers for registry and held-number files.
