//! A reader that adds the bytes read through it to a shared counter: the read phase's progress
//! of `client link` and `server build` (bytes of the input file against its size).

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Wraps `inner`; every byte read through it is added to `read` (relaxed: progress only).
#[derive(Debug)]
pub struct CountingReader<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R> CountingReader<R> {
    /// Counts the bytes read from `inner` into `read`.
    pub fn new(inner: R, read: Arc<AtomicU64>) -> Self {
        CountingReader { inner, read }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
